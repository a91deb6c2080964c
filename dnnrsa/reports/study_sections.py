"""The study sections of the group report: the findings table and the comparison of the
networks trained under different regimes.

- Findings (``task-<t>_desc-findings_stats.tsv``, written by the group level when the
  networks are named after the study's regimes): one row per finding with its verdict,
  at the top of the page.
- Networks across regimes (``task-<t>_desc-crossregime_matrix.tsv`` and ``_stats.tsv``,
  written by the participant level with two or more checkpoints): the stacked
  layer-by-layer similarity matrix, and per pair of networks the mean similarity of
  their corresponding layers, part by part.
"""

from __future__ import annotations

import logging

import numpy as np

from . import figures as rf
from .discovery import Context, read_tsv, sidecar
from .render import code, escape, note, table_html

logger = logging.getLogger(__name__)

_VERDICT_MARK = {"holds": "\u2714 holds", "does not hold": "\u2718 does not hold"}


def study_sections(ctx: Context) -> list:
    """The findings and cross-regime sections, each only where its table exists."""
    out = []
    if ctx.dataset_file(desc="findings", suffix="stats.tsv").is_file():
        out.append(("findings", "Findings of the study", lambda: findings_section(ctx)))
    if ctx.dataset_file(desc="crossregime", suffix="matrix.tsv").is_file():
        out.append(("crossregime", "Networks across regimes", lambda: cross_regime_section(ctx)))
    return out


def findings_section(ctx: Context) -> str:
    """The findings table: verdict, statistic, value, interval, p values, detail."""
    path = ctx.dataset_file(desc="findings", suffix="stats.tsv")
    table = read_tsv(path)
    needed = {"finding", "statement", "verdict", "value", "p_value", "p_holm", "detail"}
    if not needed <= set(table.columns):
        logger.warning("%s lacks columns %s; skipped", path, sorted(needed - set(table.columns)))
        return note(f"{code(path.name)} lacks the columns of a findings table.")
    meta = sidecar(path)
    counts = table["verdict"].value_counts()
    summary = ", ".join(
        f"{counts[v]} {v}" for v in ("holds", "does not hold", "undecided") if v in counts
    )
    shown = table.copy()
    shown["verdict"] = [_VERDICT_MARK.get(v, v) for v in shown["verdict"]]
    cols = ["finding", "verdict", "statement", "statistic", "value", "ci_low", "ci_high",
            "p_value", "p_holm", "detail"]  # fmt: skip
    shown = shown[[c for c in cols if c in shown.columns]]
    alpha = meta.get("Alpha", ctx.alpha)
    return note(
        f"{escape(summary)} (alpha {escape(alpha)}). "
        + escape(
            meta.get(
                "MultipleComparisons",
                "Holm over the decided findings; within a finding every part must hold",
            )
        )
        + ". A finding is undecided when a network it needs is missing or does not beat "
        "chance on the held-out stimuli. The statistics are computed from the category-"
        "index, arm-relevance, layer-similarity tables and the participants' maps; see "
        f"{code(path.name)}."
    ) + table_html(shown)


def _regime_of(key: str) -> tuple[str, str]:
    regime, _, layer = str(key).partition(".")
    return regime, layer


def cross_regime_section(ctx: Context) -> str:
    """The stacked layer-by-layer similarity of every network and the per-pair summary."""
    path = ctx.dataset_file(desc="crossregime", suffix="matrix.tsv")
    import pandas as pd

    try:
        table = pd.read_csv(path, sep="\t", index_col=0, na_values=["n/a"])
    except Exception as exc:  # pandas raises several parser errors
        logger.warning("cannot read %s (%s)", path, exc)
        return note(f"{code(path.name)} could not be read.")
    keys = [str(k) for k in table.index]
    matrix = table.to_numpy(dtype=np.float64)
    if matrix.shape != (len(keys), len(keys)):
        return note(f"{code(path.name)} is not square.")
    regimes = [_regime_of(k)[0] for k in keys]
    names = [_regime_of(k)[1] for k in keys]
    meta = sidecar(path)
    method = str(meta.get("Comparator", meta.get("Method", "spearman")))
    html = [
        ctx.figures.html(
            path.name.replace("_matrix.tsv", ""),
            lambda: rf.similarity_figure(
                matrix, names, regimes, title="layers of every network", colour_label=method
            ),
            f"Similarity ({escape(method)}) of every layer RDM of every network with every "
            "other, network after network (white lines); each diagonal block is one "
            "network's own layer-by-layer matrix, each off-diagonal block compares the layers "
            "of two networks trained under different regimes.",
            inputs=[path],
        )
    ]
    pairs_path = ctx.dataset_file(desc="crossregime", suffix="stats.tsv")
    if pairs_path.is_file():
        pairs = read_tsv(pairs_path)
        models = {m.label: m for m in ctx.models}

        def part_of(regime, key):
            layer = models[regime].lookup(key) if regime in models else None
            return layer.part if layer is not None else ""

        same = pairs[pairs["layer_a"] == pairs["layer_b"]].copy()
        if len(same):
            same["part"] = [
                part_of(a, layer)
                for a, layer in zip(same["regime_a"], same["layer_a"], strict=True)
            ]
            summary = (
                same.pivot_table(
                    index=["regime_a", "regime_b"],
                    columns="part",
                    values="similarity",
                    aggfunc="mean",
                )
                .reset_index()
                .rename(columns={"regime_a": "network a", "regime_b": "network b"})
            )
            summary["all layers"] = (
                same.groupby(["regime_a", "regime_b"])["similarity"].mean().to_numpy()
            )
            html.append(
                note(
                    "Mean similarity of corresponding layers (the same layer in two networks), "
                    "per network part: how much training under a different regime changed "
                    f"each part's representation (full table: {code(pairs_path.name)})."
                )
            )
            html.append(table_html(summary))
    return "".join(html)
