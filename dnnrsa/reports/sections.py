"""The sections of the model side of the reports: what to show and how to caption it.

One function per section; each takes the report's :class:`~.discovery.Context` and
returns the section's HTML, or a note naming the files it looked for when they are
absent. Also the rules that choose which layers are drawn (shared with
:mod:`.brain_sections`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence

import numpy as np

from ..analysis import mds
from ..bidsnames import build_stem, read_json
from . import figures as rf
from .discovery import (
    Context,
    Layer,
    Model,
    aligned_labels,
    category_table,
    condition_order,
    label_columns,
    ordering_sets,
    read_tsv,
    sidecar,
)
from .discovery import logger as discovery_logger
from .render import code, escape, missing, note

logger = logging.getLogger(__name__)

_PART_ORDER = ("visual", "auditory", "crossmodal")


def stimuli_section(ctx: Context) -> str:
    """The label sets of the stimulus table and their categories."""
    if ctx.stimuli is None:
        return missing(f"task-{ctx.task}_stimuli.tsv", "stimulus table")
    rows = []
    for column in label_columns(ctx.stimuli):
        counts = ctx.stimuli[column].value_counts(sort=False)
        cats = ", ".join(f"{escape(k)} ({v})" for k, v in counts.items())
        rows.append(
            f"<tr><td class='text'>{escape(column)}</td><td>{len(counts)}</td>"
            f"<td class='text'>{cats}</td></tr>"
        )
    return (
        f"<p>{len(ctx.stimuli)} stimuli; their order in {code(f'task-{ctx.task}_stimuli.tsv')} "
        "is the condition order of every RDM. Label sets:</p>"
        "<table><thead><tr><th class='text'>label set</th><th>categories</th>"
        "<th class='text'>stimuli per category</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def rdms_section(ctx: Context) -> str:
    """Every layer RDM of each network, ordered by each label set; the user's model RDMs."""
    out = []
    user_models = []
    for model in ctx.models:
        layers = [la for la in model.layers if la.rdm_path is not None]
        if not layers:
            continue
        if model.is_dnn:
            out.append(_network_rdms(ctx, model, layers))
        else:
            user_models.append(model)
    if user_models:
        out.append(_user_model_rdms(ctx, user_models))
    if not out:
        return missing(f"task-{ctx.task}_model-*[_layer-*]_rdm.tsv", "layer RDMs")
    return "".join(out)


def _network_rdms(ctx: Context, model: Model, layers: Sequence[Layer]) -> str:
    """One grid of a network's layer RDMs per ordering label set (file order without labels)."""
    rdms, conditions = ctx.rdms(model)
    labels = aligned_labels(ctx.stimuli, conditions)
    out = [f"<h3>model {escape(model.title)}</h3>"]
    if labels is None:
        out.append(note("No stimulus labels match these RDMs; conditions are shown in file order."))
        sets = [None]
    else:
        sets = ordering_sets(labels)
    for primary in sets:
        if primary is None:
            order = np.arange(len(conditions))
            blocks = [""] * len(conditions)
            desc, by_text = "rdms", "file order"
        else:
            keys = [primary] + [s for s in ordering_sets(labels) if s != primary]
            order = condition_order(labels, keys)
            blocks = list(labels[primary])
            desc, by_text = f"rdmsby{re.sub('[^a-zA-Z0-9]', '', primary)}", primary
        out.append(
            ctx.figures.html(
                build_stem({"task": ctx.task, "model": model.label, "desc": desc}),
                lambda order=order, blocks=blocks, by=by_text: rf.rdm_grid(
                    rdms,
                    [la.name for la in layers],
                    [rf.part_colour(la.part) for la in layers],
                    order,
                    blocks,
                    ordered_by=by,
                ),
                f"Layer RDMs of model {escape(model.label)} ({len(layers)} layers, titles "
                f"coloured by network part), conditions ordered by {escape(by_text)}; white "
                "lines separate its categories. Colours are percentiles of each RDM's "
                "dissimilarities.",
                inputs=[la.rdm_path for la in layers],
            )
        )
    return "".join(out)


def _user_model_rdms(ctx: Context, user_models: Sequence[Model]) -> str:
    """The user's model RDMs in one grid, when they share their conditions."""
    vectors, titles, colours, condition_sets = [], [], [], set()
    for model in user_models:
        rdms, conditions = ctx.rdms(model)
        vectors.append(rdms)
        titles += [
            f"{model.label}" if len(model.layers) == 1 else f"{model.label}/{la.name}"
            for la in model.layers
        ]
        colours += [rf.part_colour("model")] * len(model.layers)
        condition_sets.add(tuple(conditions))
    out = "<h3>model RDMs</h3>"
    if len(condition_sets) != 1:
        return out + note("Model RDMs use different conditions; not drawn together.")
    conditions = list(condition_sets.pop())
    labels = aligned_labels(ctx.stimuli, conditions)
    sets = ordering_sets(labels) if labels is not None else []
    order = condition_order(labels, sets) if sets else np.arange(len(conditions))
    blocks = list(labels[sets[0]]) if sets else [""] * len(conditions)
    by_text = sets[0] if sets else "file order"
    return out + ctx.figures.html(
        build_stem({"task": ctx.task, "desc": "modelrdms"}),
        lambda: rf.rdm_grid(np.vstack(vectors), titles, colours, order, blocks, ordered_by=by_text),
        f"Model RDMs given by the user, conditions ordered by {escape(by_text)}.",
        inputs=[la.rdm_path for m in user_models for la in m.layers],
    )


def _embedding(vector: np.ndarray) -> np.ndarray:
    """Two-dimensional classical MDS of one RDM, shape (n_conditions, 2)."""
    return np.asarray(mds(vector, n_components=2).coordinates)[:, :2]


def best_per_part(layers: Sequence[Layer], scores: Mapping[str, float]) -> list[Layer]:
    """The layer with the highest finite score in each network part, parts in network order."""
    chosen = []
    parts = [p for p in _PART_ORDER if any(la.part == p for la in layers)]
    parts += sorted({la.part for la in layers} - set(parts))
    for part in parts:
        candidates = [
            la for la in layers if la.part == part and np.isfinite(scores.get(la.label, np.nan))
        ]
        if candidates:
            chosen.append(max(candidates, key=lambda la: scores[la.label]))
    return chosen


def mds_section(ctx: Context) -> str:
    """MDS of the stimuli for the best layer of each part (by category index) and those asked for."""
    out = []
    for model in ctx.models:
        layers = [la for la in model.layers if la.rdm_path is not None]
        if not layers or not model.is_dnn:
            continue
        rdms, conditions = ctx.rdms(model)
        index = {la.label: i for i, la in enumerate(layers)}
        # a layer whose activations do not vary over some stimuli (e.g. the visual arm on
        # audio-only stimuli) has undefined correlation distances: no embedding for it
        undefined = [la for la in layers if not np.isfinite(rdms[index[la.label]]).all()]
        layers = [la for la in layers if la not in undefined]
        skipped = (
            note(
                f"Not embedded (their RDMs have undefined entries): "
                f"{', '.join(escape(la.name) for la in undefined)}."
            )
            if undefined
            else ""
        )
        if not layers:
            out.append(f"<h3>model {escape(model.title)}</h3>{skipped}")
            continue
        labels = aligned_labels(ctx.stimuli, conditions)
        columns = label_columns(labels) if labels is not None else []
        colour_by = next((c for c in ("emotion", *columns) if c in columns), None)
        marker_by = "gender" if "gender" in columns else None
        table, _ = category_table(ctx, model)
        chosen, how = [], ""
        if table is not None and colour_by is not None:
            rows = table[table["label_set"] == colour_by]
            scores = {}
            for key, value in zip(rows["layer"], rows["index"], strict=True):
                layer = model.lookup(str(key))
                if layer is not None:
                    scores[layer.label] = float(value)
            chosen = best_per_part(layers, scores)
            how = f"the layer of each part with the highest {escape(colour_by)} category index"
        if not chosen:
            parts = [p for p in dict.fromkeys(la.part for la in layers)]
            chosen = [[la for la in layers if la.part == p][-1] for p in parts]
            how = "the last layer of each part"
        chosen = add_requested(ctx, model, chosen, layers)
        embeddings = [(la.name, _embedding(rdms[index[la.label]])) for la in chosen]
        colour_labels = list(labels[colour_by]) if colour_by else None
        marker_labels = list(labels[marker_by]) if marker_by else None
        out.append(f"<h3>model {escape(model.title)}</h3>")
        out.append(
            ctx.figures.html(
                build_stem({"task": ctx.task, "model": model.label, "desc": "mds"}),
                lambda e=embeddings, c=colour_labels, m=marker_labels, cb=colour_by, mb=marker_by: (
                    rf.mds_figure(e, c, m, colour_name=cb or "", marker_name=mb or "")
                ),
                f"Classical multidimensional scaling of the stimuli for {how} "
                f"({', '.join(escape(la.name) for la in chosen)})"
                + (f"; colour: {escape(colour_by)}" if colour_by else "")
                + (f", marker: {escape(marker_by)}" if marker_by else "")
                + ".",
                inputs=[la.rdm_path for la in chosen],
            )
            + skipped
        )
    if not out:
        return missing(
            f"task-{ctx.task}_model-*_layer-*_rdm.tsv", "network layer RDMs (MDS is drawn for them)"
        )
    return "".join(out)


def add_requested(
    ctx: Context, model: Model, chosen: list[Layer], available: Sequence[Layer]
) -> list[Layer]:
    """``chosen`` plus the requested layers of ``model`` that are among ``available``."""
    extra = []
    for key in ctx.layers_requested:
        layer = model.lookup(key)
        if layer is not None and layer in available and layer not in chosen:
            extra.append(layer)
    return chosen + extra


def layer_meta(model: Model, keys: Sequence[str], parts_column=None) -> tuple[list, list]:
    """Original names and parts of layers given by label or name (``parts_column`` for unknown ones)."""
    names, parts = [], []
    for i, key in enumerate(keys):
        layer = model.lookup(str(key))
        names.append(layer.name if layer else str(key))
        if layer is not None:
            parts.append(layer.part)
        elif parts_column is not None:
            parts.append(str(parts_column[i]))
        else:
            parts.append("")
    return names, parts


def layer_position(model: Model, key: str, fallback: int) -> float:
    """Sort key of a layer: its index in the network, unknown layers last."""
    layer = model.lookup(str(key))
    return float(layer.index) if layer is not None else 1e9 + fallback


def category_index_section(ctx: Context) -> str:
    """Category index per layer and label set, filled markers where p < ``ctx.alpha``."""
    out = []
    for model in ctx.models:
        table, path = category_table(ctx, model)
        if table is None:
            continue
        first = list(dict.fromkeys(str(k) for k in table["layer"]))
        keys = sorted(first, key=lambda k: layer_position(model, k, first.index(k)))
        part_of = (
            dict(zip(table["layer"].astype(str), table.get("part", table["layer"]), strict=True))
            if "part" in table
            else {}
        )
        names, parts = layer_meta(model, keys, [part_of.get(k, "") for k in keys])
        values = {}
        for label_set, rows in table.groupby("label_set", sort=False):
            by_layer = {
                str(k): (float(i), float(p) if "p_value" in rows else np.nan)
                for k, i, p in zip(
                    rows["layer"],
                    rows["index"],
                    rows["p_value"] if "p_value" in rows else [np.nan] * len(rows),
                    strict=True,
                )
            }
            index = np.array([by_layer.get(k, (np.nan, np.nan))[0] for k in keys])
            p_values = np.array([by_layer.get(k, (np.nan, np.nan))[1] for k in keys])
            values[str(label_set)] = (index, p_values)
        out.append(f"<h3>model {escape(model.title)}</h3>")
        out.append(
            ctx.figures.html(
                build_stem({"task": ctx.task, "model": model.label, "desc": "categoryindex"}),
                lambda n=names, p=parts, v=values: rf.category_index_figure(
                    n, p, v, alpha=ctx.alpha
                ),
                f"Category index per layer and label set for model {escape(model.label)}: mean "
                "between-category minus mean within-category dissimilarity, relative to the RDM's "
                f"range. Filled markers: label-permutation p &lt; {ctx.alpha:g}.",
                inputs=[path],
            )
        )
    analysed = [
        m
        for m in ctx.models
        if m.is_dnn
        and ctx.dataset_file(model=m.label, desc="layersimilarity", suffix="matrix.tsv").is_file()
    ]
    if not out and analysed:
        return note(
            "No column of the stimulus table groups the conditions (for example a category "
            "design whose conditions are the values of <code>trial_type</code>, one stimulus "
            "per trial), so the category index, which needs such a labelling, was skipped. "
            "The layer RDMs, the layer similarity and the searchlight maps do not need labels; "
            "this section is omitted."
        )
    if not out:
        return missing(
            f"task-{ctx.task}_model-*_desc-categoryindex_stats.tsv", "category index tables"
        )
    return "".join(out)


def layer_similarity_section(ctx: Context) -> str:
    """The layer-by-layer RDM similarity matrix of each model."""
    out = []
    for model in ctx.models:
        path = ctx.dataset_file(model=model.label, desc="layersimilarity", suffix="matrix.tsv")
        if not path.is_file():
            continue
        import pandas as pd

        try:
            table = pd.read_csv(path, sep="\t", index_col=0, na_values=["n/a"])
        except Exception as exc:  # pandas raises several parser errors
            logger.warning("cannot read %s (%s)", path, exc)
            continue
        keys = [str(k) for k in table.index]
        matrix = table.to_numpy(dtype=np.float64)
        if matrix.shape != (len(keys), len(keys)):
            logger.warning("%s is not square; skipped", path)
            continue
        names, parts = layer_meta(model, keys)
        meta = sidecar(path)
        method = meta.get("Comparator", meta.get("Method"))
        out.append(
            ctx.figures.html(
                build_stem({"task": ctx.task, "model": model.label, "desc": "layersimilarity"}),
                lambda m=matrix, n=names, p=parts, t=f"model {model.label}", c=str(method or "RDM similarity"): (
                    rf.similarity_figure(m, n, p, title=t, colour_label=c)
                ),
                "Similarity"
                + (f" ({escape(method)})" if method else "")
                + " of every pair of layer RDMs, model "
                f"{escape(model.label)}; white lines separate the network parts.",
                inputs=[path],
            )
        )
    if not out:
        return missing(
            f"task-{ctx.task}_model-*_desc-layersimilarity_matrix.tsv",
            "layer-by-layer similarity matrices",
        )
    return "".join(out)


def arm_relevance_section(ctx: Context) -> str:
    """Arm lesion accuracies and variance partitioning of each network."""
    out = []
    for model in ctx.models:
        lesion_path = ctx.dataset_file(model=model.label, desc="armlesion", suffix="stats.tsv")
        var_path = ctx.dataset_file(model=model.label, desc="varpart", suffix="stats.tsv")
        lesion = read_tsv(lesion_path) if lesion_path.is_file() else None
        if lesion is not None and not {"arm", "accuracy"} <= set(lesion.columns):
            logger.warning("%s lacks the columns arm, accuracy; skipped", lesion_path)
            lesion = None
        varpart = read_tsv(var_path) if var_path.is_file() else None
        if varpart is not None and "layer" not in varpart:
            logger.warning("%s lacks the column layer; skipped", var_path)
            varpart = None
        if lesion is None and varpart is None:
            continue
        parts_of = {}
        if varpart is not None:
            varpart = varpart.copy()
            keys = [str(k) for k in varpart["layer"]]
            names, parts = layer_meta(model, keys)
            varpart["layer"] = names
            parts_of = dict(zip(names, parts, strict=True))
        captions = []
        if lesion is not None:
            captions.append(
                "left: accuracy of the trained network intact and with one arm's "
                "output silenced (the drop is written above each bar)"
            )
        if varpart is not None:
            captions.append(
                ("right" if lesion is not None else "bars") + ": variance of each "
                "layer's RDM explained uniquely by the visual arm, uniquely by the "
                "auditory arm, and shared (R\u00b2 of RDM regressions)"
            )
        out.append(f"<h3>model {escape(model.title)}</h3>")
        out.append(
            ctx.figures.html(
                build_stem({"task": ctx.task, "model": model.label, "desc": "armrelevance"}),
                lambda le=lesion, vp=varpart, po=parts_of: rf.arm_relevance_figure(le, vp, po),
                f"Arm relevance, model {escape(model.label)}: " + "; ".join(captions) + ".",
                inputs=[p for p in (lesion_path, var_path) if p.is_file()],
            )
        )
    if not out:
        return missing(
            f"task-{ctx.task}_model-*_desc-armlesion_stats.tsv / _desc-varpart_stats.tsv",
            "arm lesion or variance partitioning tables",
        )
    return "".join(out)


_MAX_CONTACT_SHEET = 96


def _stimulus_dir(ctx: Context):
    """``<bids_dir>/stimuli`` from the run configuration (None when it is not recorded)."""
    import tomllib
    from pathlib import Path

    path = ctx.output_dir / "dnnrsa_config.toml"
    try:
        bids_dir = tomllib.loads(path.read_text(encoding="utf-8")).get("bids_dir")
    except (OSError, ValueError):
        return None
    return Path(bids_dir) / "stimuli" if bids_dir else None


def face_crops_section(ctx: Context) -> str:
    """What the network saw: each stimulus with its face crop, and the model's input."""
    import pandas as pd

    from ..faces import crop_preview

    path = ctx.dataset_file(desc="facecrops", suffix="stimuli.tsv")
    table = read_tsv(path) if path.is_file() else None
    if table is None or not {"stim_file", "x0", "y0", "x1", "y1", "source"} <= set(table.columns):
        return missing(path.name, "face crops")
    counts = table["source"].value_counts()
    n = len(table)
    found = int(counts.get("detected", 0))
    mode = str(table["face_crop"].iloc[0]) if "face_crop" in table else "?"
    text = (
        f"<p>Face crop mode {code(mode)}: a face was detected in {found} of {n} stimuli "
        f"({found / max(n, 1):.0%}); {int(counts.get('fallback', 0))} fell back to the centred "
        f"square and {int(counts.get('table', 0))} were given by hand ({code(path.name)}). "
        "Each frame (the middle one) shows the crop (green: detected, orange: no face found, "
        "blue: given), and beside it the network's input.</p>"
    )
    stim_dir = _stimulus_dir(ctx)
    if stim_dir is None or not stim_dir.is_dir():
        return text + note(f"The stimuli were not found ({escape(stim_dir)}); no contact sheet.")
    size = int(table["input_size"].iloc[0]) if "input_size" in table else 64
    n_frames = int(table["input_frames"].iloc[0]) if "input_frames" in table else 1
    boxes = table[["x0", "y0", "x1", "y1"]].apply(pd.to_numeric, errors="coerce")
    with_frames = table[np.isfinite(boxes.to_numpy(dtype=float)).all(axis=1)]
    if with_frames.empty:
        return text + note("No stimulus has video frames (audio only): no contact sheet.")
    rows = with_frames.head(_MAX_CONTACT_SHEET)
    inputs = [path] + [stim_dir / str(f) for f in rows["stim_file"]]

    def make():
        items = []
        for row in rows.itertuples(index=False):
            if not np.isfinite([row.x0, row.y0, row.x1, row.y1]).all():
                continue
            box = (int(row.x0), int(row.y0), int(row.x1), int(row.y1))
            try:
                frame, visual = crop_preview(stim_dir / str(row.stim_file), box, n_frames, size)
            except (OSError, ValueError) as exc:
                logger.warning("contact sheet: %s skipped (%s)", row.stim_file, exc)
                continue
            items.append((row.stim_file, frame, box, visual, row.source))
        return rf.contact_sheet_figure(items)

    if len(table) > _MAX_CONTACT_SHEET:
        text += note(f"The first {_MAX_CONTACT_SHEET} of {n} stimuli are shown.")
    caption = f"Face crops and the network's {size}x{size} input, stimulus by stimulus."
    return text + ctx.figures.html(
        build_stem({"task": ctx.task, "desc": "facecrops"}), make, caption, inputs=inputs
    )


def config_section(ctx: Context, *, group: bool = False) -> str:
    """The configuration files, verbatim: the participant level's (its ``[analysis]``
    table holds the options every participant was run with) and, with ``group``, the
    group run's."""
    names = ["dnnrsa_config.toml"] + (["dnnrsa_group_config.toml"] if group else [])
    parts = []
    for name in names:
        path = ctx.output_dir / name
        if not path.is_file():
            parts.append(missing(name, "run configuration"))
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        parts.append(f"<p>{code(path.name)}:</p><pre>{escape(text)}</pre>")
    return "".join(parts)


def overview_section(ctx: Context, facts: Sequence[tuple[str, str]]) -> str:
    """Data set, software, task, space, models and the page's own ``facts``."""
    description = read_json(
        ctx.output_dir / "dataset_description.json", on_error="warn", logger=discovery_logger
    )
    generated = description.get("GeneratedBy") or []
    if isinstance(generated, dict):
        generated = [generated]
    tools = ", ".join(
        f"{g.get('Name', '?')} {g.get('Version', '')}".strip()
        for g in generated
        if isinstance(g, dict)
    )
    rows = [
        ("data set", description.get("Name", ctx.output_dir.name)),
        ("generated by", tools or "n/a"),
        ("task", ctx.task),
        ("space", ctx.space),
        ("models", ", ".join(m.title for m in ctx.models) or "none found"),
        *facts,
    ]
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in rows)
    return f'<dl class="facts">{items}</dl>'
