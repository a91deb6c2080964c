"""Adjusted p-values for a family of tests (FDR, Bonferroni, Holm), re-exported by
:mod:`dnnrsa.inference`."""

from __future__ import annotations

import numpy as np
from scipy import stats

#: Multiple-comparison corrections.
CORRECTIONS = ("fdr", "bonferroni", "holm", "none")


def adjust_pvalues(p, correction: str = "fdr"):
    """Adjusted p-values for a family of tests (NaN entries are left out).

    ``"fdr"``: Benjamini-Hochberg step-up (:func:`scipy.stats.false_discovery_control`);
    ``"bonferroni"``: ``min(1, m p)``; ``"holm"``: Holm's step-down (family-wise, never
    above Bonferroni); ``"none"``: unchanged. Reject where the adjusted p-value is at
    most alpha.

    Non-finite entries (NaN, +-inf) get NaN and leave the family (``m`` counts the
    finite ones). Values outside [0, 1], which scipy refuses, are adjusted as R's
    ``p.adjust`` does: under ``"fdr"`` a p above 1 counts as 1 (its adjusted value is 1
    either way) and a p below 0 keeps the step-up's ``min_{j >= k} p_(j) m / j``.
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {list(CORRECTIONS)}; got {correction!r}")
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    vals = p[ok]
    m = vals.size
    if m == 0 or correction == "none":
        out[ok] = vals
        return out
    if correction == "bonferroni":
        out[ok] = np.minimum(1.0, vals * m)
        return out
    if correction == "holm":
        order = np.argsort(vals, kind="stable")
        adj = np.empty(m)
        adj[order] = np.minimum(1.0, np.maximum.accumulate(vals[order] * (m - np.arange(m))))
        out[ok] = adj
        return out
    out[ok] = _benjamini_hochberg(vals)
    return out


def _benjamini_hochberg(vals: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted values of finite p-values, by scipy.

    scipy refuses values outside [0, 1]; those above 1 are adjusted as 1 (the same
    result), those below 0 (never a p-value computed here) as the step-up formula
    gives them: they are the smallest, ranks ``1..n``, so their values depend on them
    alone.
    """
    adj = stats.false_discovery_control(np.clip(vals, 0.0, 1.0))
    below = vals < 0
    if below.any():
        order = np.argsort(vals[below])
        ranked = vals[below][order] * vals.size / np.arange(1, order.size + 1)
        neg = np.empty(order.size)
        neg[order] = np.minimum.accumulate(ranked[::-1])[::-1]
        adj[below] = neg
    return adj
