"""The regions-of-interest section of the group report.

For each region evaluated at the group level (``task-<t>_space-<sp>_roi-<NAME>_desc-
evaluation_stats.tsv`` and its noise-ceiling, pairwise and weighted tables): the bar plot
of every layer and model RDM with the noise ceiling and the significant pairwise
differences, the region's RDM (mean over participants) next to the best layers' RDMs,
and the top rows of the evaluation table. The section exists only when such tables do.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..bidsnames import build_name, build_stem, parse_name
from . import figures as rf
from . import roi_figures as rof
from .discovery import (
    Context,
    aligned_labels,
    condition_order,
    ordering_sets,
    read_tsv,
    sidecar,
)
from .render import code, escape, note, table_html

logger = logging.getLogger(__name__)

_PART_ORDER = ("visual", "auditory", "crossmodal")
_TABLE_ROWS = 15


@dataclass
class RoiEntry:
    """One row of a region's evaluation table, placed in its network."""

    name: str  # the table's model name, ``model-<m>[_layer-<l>]``
    label: str  # shown on the axes
    part: str
    network: str
    index: float
    rdm_path: Path | None


def roi_names(ctx: Context) -> list[str]:
    """Regions with an evaluation table for the report's task and space, sorted."""
    pattern = f"task-{ctx.task}_space-{ctx.space}_roi-*_desc-evaluation_stats.tsv"
    names = []
    for path in sorted(ctx.output_dir.glob(pattern)):
        entities = parse_name(path).entities
        if list(entities) == ["task", "space", "roi", "desc"]:
            names.append(entities["roi"])
    return names


def roi_sections(ctx: Context) -> list:
    """The section of the group page, when the group level evaluated any region."""
    if not roi_names(ctx):
        return []
    return [("roi", "Regions of interest", lambda: roi_section(ctx))]


def roi_file(ctx: Context, roi: str, desc: str) -> Path:
    """``task-<t>_space-<sp>_roi-<NAME>_desc-<desc>_stats.tsv`` in the output folder."""
    entities = {"task": ctx.task, "space": ctx.space, "roi": roi, "desc": desc}
    return ctx.output_dir / build_name(entities, "stats", ".tsv")


def _entry(ctx: Context, name: str, k: int) -> RoiEntry:
    """Part, network, position and RDM file of a table's model name."""
    entities = parse_name(f"{name}_rdm").entities
    network = entities.get("model", name)
    layer_key = entities.get("layer", network)
    for model in ctx.models:
        layer = model.lookup(layer_key) if model.label == network else None
        if layer is not None:
            label = layer.name if model.is_dnn else model.label
            return RoiEntry(name, label, layer.part, network, layer.index, layer.rdm_path)
    path = ctx.output_dir / f"task-{ctx.task}_{name}_rdm.tsv"
    meta = sidecar(path) if path.is_file() else {}
    part = str(meta.get("Part", "model" if "layer" not in entities else "layer"))
    label = str(meta.get("LayerName", layer_key))
    return RoiEntry(name, label, part, network, 1e9 + k, path if path.is_file() else None)


def display_order(entries: Sequence[RoiEntry]) -> list[int]:
    """Rows grouped by network part (visual, auditory, crossmodal, others, user models
    last), then by network and layer order."""
    parts = [p for p in _PART_ORDER if any(e.part == p for e in entries)]
    parts += sorted({e.part for e in entries} - set(parts) - {"model"})
    parts += ["model"] if any(e.part == "model" for e in entries) else []
    rank = {p: i for i, p in enumerate(parts)}
    return sorted(
        range(len(entries)),
        key=lambda k: (rank[entries[k].part], entries[k].network, entries[k].index, k),
    )


def _unique_labels(entries: Sequence[RoiEntry]) -> list[str]:
    """Layer names, prefixed by the network when several networks share the plot."""
    networks = {e.network for e in entries if e.part != "model"}
    if len(networks) <= 1:
        return [e.label for e in entries]
    return [e.label if e.part == "model" else f"{e.network}/{e.label}" for e in entries]


def roi_mean_rdm(ctx: Context, roi: str, subjects: Sequence[str] | None = None):
    """Mean over participants of the region's RDMs, in the first RDM's condition order.

    Returns ``(vector, conditions, files)``; RDMs with undefined entries are left out
    (as the evaluation leaves them out). ``(None, [], [])`` when none is usable.
    """
    from ..modelbank import reorder_rdm
    from ..rdm import read_rdm_tsv

    pattern = f"sub-*/func/sub-*_task-{ctx.task}_space-{ctx.space}_roi-{roi}_rdm.tsv"
    files = []
    for path in sorted(ctx.output_dir.glob(pattern)):
        entities = parse_name(path).entities
        if list(entities) == ["sub", "task", "space", "roi"] and (
            not subjects or entities["sub"] in subjects
        ):
            files.append(path)
    vectors, conditions, used = [], None, []
    for path in files:
        vec, labels = read_rdm_tsv(path)
        conditions = conditions or list(labels)
        vec = reorder_rdm(vec, labels, conditions, name=path.name)
        if np.isfinite(vec).all():
            vectors.append(vec)
            used.append(path)
    if not vectors:
        return None, [], []
    return np.mean(vectors, axis=0), conditions, used


def roi_section(ctx: Context) -> str:
    """Every region: bar plot, RDMs and evaluation table."""
    return "".join(_one_roi(ctx, roi) for roi in roi_names(ctx))


def _one_roi(ctx: Context, roi: str) -> str:
    path = roi_file(ctx, roi, "evaluation")
    table = read_tsv(path)
    head = f"<h3>region {escape(roi)}</h3>"
    needed = {"model", "mean", "ci_low", "ci_high", "p_zero_adjusted"}
    if table is None or not needed <= set(table.columns) or table.empty:
        return head + note(f"{code(path.name)} lacks the columns {sorted(needed)}; skipped.")
    meta = sidecar(path)
    entries = [_entry(ctx, str(m), k) for k, m in enumerate(table["model"])]
    order = display_order(entries)
    table = table.iloc[order].reset_index(drop=True)
    entries = [entries[k] for k in order]
    parts = [e.part for e in entries]
    ceiling, ceiling_text = _noise_ceiling(ctx, roi)
    beats, n_pairs, pairwise_path = _pairwise(ctx, roi, table)
    mean = table["mean"].to_numpy(float)
    above = table["p_zero_adjusted"].to_numpy(float) < ctx.alpha
    labels = _unique_labels(entries)
    stem = build_stem({"task": ctx.task, "space": ctx.space, "roi": roi, "desc": "evaluation"})
    bars = ctx.figures.html(
        stem,
        lambda: rof.roi_bar_figure(
            labels,
            parts,
            mean,
            table[["ci_low", "ci_high"]].to_numpy(float).T,
            above,
            beats,
            ceiling,
            comparator=str(meta.get("Comparator", "")),
        ),
        _bar_caption(ctx, roi, meta, len(entries), n_pairs, int(beats.sum()), ceiling_text),
        inputs=[p for p in (path, roi_file(ctx, roi, "noiseceiling"), pairwise_path) if p],
    )
    best = [entries[k] for k in np.argsort(-np.nan_to_num(mean, nan=-np.inf))]
    rdms = _rdm_figure(ctx, roi, meta, best)
    shown = table.sort_values("mean", ascending=False, kind="stable")
    return (
        head
        + _summary(meta, above.sum(), len(entries))
        + bars
        + rdms
        + f"<p>Evaluation ({code(path.name)}), best models first:</p>"
        + table_html(shown, max_rows=_TABLE_ROWS)
        + _weighted(ctx, roi)
    )


def _noise_ceiling(ctx: Context, roi: str) -> tuple[tuple[float, float], str]:
    """The bootstrap mean of the noise-ceiling bounds (the point estimate when absent)."""
    path = roi_file(ctx, roi, "noiseceiling")
    table = read_tsv(path) if path.is_file() else None
    if table is None or not {"bound", "point"} <= set(table.columns):
        return (np.nan, np.nan), "no noise ceiling table was found"
    column = "mean" if "mean" in table and table["mean"].notna().all() else "point"
    bounds = dict(zip(table["bound"].astype(str), table[column].astype(float), strict=True))
    lower, upper = bounds.get("lower", np.nan), bounds.get("upper", np.nan)
    what = "bootstrap mean" if column == "mean" else "estimate on all data"
    return (lower, upper), f"noise ceiling ({what}) from {lower:.3g} to {upper:.3g}"


def _pairwise(ctx: Context, roi: str, table) -> tuple[np.ndarray, int, Path | None]:
    """Which model beats which (FDR-adjusted p < ``ctx.alpha``), the number of pairs."""
    n = len(table)
    path = roi_file(ctx, roi, "pairwise")
    pairs = read_tsv(path) if path.is_file() else None
    needed = {"model_a", "model_b", "difference", "p_adjusted"}
    if pairs is None or not needed <= set(pairs.columns):
        return np.zeros((n, n), dtype=bool), 0, None
    beats = rof.beats_matrix(
        [str(m) for m in table["model"]],
        pairs["model_a"],
        pairs["model_b"],
        pairs["difference"].to_numpy(float),
        pairs["p_adjusted"].to_numpy(float),
        ctx.alpha,
    )
    return beats, len(pairs), path


def _summary(meta: dict, n_above: int, n_models: int) -> str:
    subjects = meta.get("Subjects") or []
    facts = [
        f"comparator {escape(meta.get('Comparator', '?'))}",
        f"bootstrap over {escape(meta.get('Bootstrap', '?'))} "
        f"({escape(meta.get('NumberOfBootstrapSamples', '?'))} samples)",
        f"{len(subjects)} participants" if subjects else "",
        f"{n_above} of {n_models} model RDMs above zero",
    ]
    left_out = meta.get("ModelsLeftOut") or []
    if left_out:
        facts.append("left out (undefined or constant RDM): " + escape(", ".join(left_out)))
    return "<p>" + "; ".join(f for f in facts if f) + ".</p>"


def _bar_caption(ctx, roi, meta, n_models, n_pairs, n_wins, ceiling_text) -> str:
    ci = meta.get("ConfidenceLevel", 0.95)
    return (
        f"Region {escape(roi)}: evaluation of each of the {n_models} model RDMs (bootstrap "
        f"mean, {float(ci):.0%} confidence interval), bars grouped and coloured by network "
        f"part, the best outlined in black; grey band: {ceiling_text}. "
        f"*: above zero (FDR-adjusted p &lt; {ctx.alpha:g} over models). "
        f"Below the bars, each model's column has a dot in the row of every model it beats "
        f"(FDR-adjusted p &lt; {ctx.alpha:g} over all {n_pairs} pairs; {n_wins} such pairs), "
        "so the best model's column shows every model reliably worse than it, and a model "
        "whose row is empty is beaten by none."
    )


def _rdm_figure(ctx: Context, roi: str, meta: dict, ranked: Sequence[RoiEntry]) -> str:
    """The region's mean RDM next to the best model RDM of each part, best first."""
    from ..modelbank import reorder_rdm
    from ..rdm import read_rdm_tsv

    vector, conditions, files = roi_mean_rdm(ctx, roi, meta.get("Subjects"))
    if vector is None:
        return note(f"No participant RDM of region {escape(roi)} was found; not drawn.")
    chosen, seen = [], set()
    for entry in ranked:
        if entry.rdm_path is not None and entry.part not in seen:
            seen.add(entry.part)
            chosen.append(entry)
    rdms, titles, colours = [vector], [f"{roi} (mean of {len(files)})"], ["black"]
    for entry in chosen:
        vec, labels = read_rdm_tsv(entry.rdm_path)
        try:
            rdms.append(reorder_rdm(vec, labels, conditions, name=entry.rdm_path.name))
        except ValueError as exc:
            logger.warning("%s; not drawn next to region %s", exc, roi)
            continue
        part = "user model" if entry.part == "model" else entry.part
        titles.append(f"best {part}: {entry.label}")
        colours.append(rf.part_colour(entry.part))
    labels = aligned_labels(ctx.stimuli, conditions)
    sets = ordering_sets(labels) if labels is not None else []
    order = condition_order(labels, sets) if sets else np.arange(len(conditions))
    blocks = list(labels[sets[0]]) if sets else [""] * len(conditions)
    by_text = sets[0] if sets else "file order"
    stem = build_stem({"task": ctx.task, "space": ctx.space, "roi": roi, "desc": "rdms"})
    return ctx.figures.html(
        stem,
        lambda: rf.rdm_grid(np.vstack(rdms), titles, colours, order, blocks, ordered_by=by_text),
        f"Region {escape(roi)}: its RDM (mean over the {len(files)} participants' RDMs with "
        "defined entries) next to the best-evaluated model RDM of each network part, the "
        f"overall best first; conditions ordered by {escape(by_text)}. Colours are "
        "percentiles of each RDM's dissimilarities.",
        inputs=[*files, *(e.rdm_path for e in chosen)],
    )


def _weighted(ctx: Context, roi: str) -> str:
    path = roi_file(ctx, roi, "weighted")
    table = read_tsv(path) if path.is_file() else None
    if table is None or table.empty:
        return ""
    return f"<p>Weighted models, cross-validated ({code(path.name)}):</p>" + table_html(
        table, max_rows=_TABLE_ROWS
    )
