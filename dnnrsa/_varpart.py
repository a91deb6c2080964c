"""Variance partitioning: the variance of a target RDM explained uniquely and jointly by
the last layers of the two arms, and which layers those are (re-exported by
:mod:`dnnrsa.analysis`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

#: The public module's logger: its messages read as dnnrsa.analysis's, as before the split.
logger = logging.getLogger("dnnrsa.analysis")


def _r_squared(y: np.ndarray, predictors: np.ndarray) -> np.ndarray:
    """R^2 of ordinary least squares with an intercept, for each column of ``y``.

    y : (n, n_targets); predictors : (n, p).
    """
    design = np.column_stack([np.ones(y.shape[0]), predictors])
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ beta
    centred = y - y.mean(axis=0)
    ss_tot = np.einsum("ij,ij->j", centred, centred)
    ss_res = np.einsum("ij,ij->j", resid, resid)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - ss_res / ss_tot


def variance_partitioning(target_rdm: Any, rdm_visual: Any, rdm_auditory: Any) -> dict[str, Any]:
    """Split the variance of a target RDM into unique and shared parts.

    Three ordinary least-squares regressions with an intercept are fitted across
    the dissimilarities: the target on both predictors (``R2_full``), on the visual
    RDM alone (``R2_visual``) and on the auditory RDM alone (``R2_auditory``). Then

    - ``unique_visual = R2_full - R2_auditory``
    - ``unique_auditory = R2_full - R2_visual``
    - ``shared = R2_full - unique_visual - unique_auditory``
      (``= R2_visual + R2_auditory - R2_full``)
    - ``total = R2_full``

    Pairs where any of the three RDMs is NaN are dropped.

    Parameters
    ----------
    target_rdm : ndarray of shape (n_pairs,) or (n_targets, n_pairs)
        RDM(s) to explain, e.g. the cross-modal layers of the network.
    rdm_visual : ndarray of shape (n_pairs,)
        First predictor, e.g. the RDM of the visual arm's top layer.
    rdm_auditory : ndarray of shape (n_pairs,)
        Second predictor, e.g. the RDM of the auditory arm's top layer.

    Returns
    -------
    dict
        Keys ``unique_visual``, ``unique_auditory``, ``shared``, ``total``,
        ``r2_visual``, ``r2_auditory``: floats for a 1-D target, arrays of shape
        (n_targets,) for a 2-D one.
    """
    target = np.asarray(target_rdm, dtype=np.float64)
    single = target.ndim == 1
    target = np.atleast_2d(target)
    vis = np.asarray(rdm_visual, dtype=np.float64)
    aud = np.asarray(rdm_auditory, dtype=np.float64)
    if target.ndim != 2:
        raise ValueError(
            f"target_rdm must have shape (n_pairs,) or (n_targets, n_pairs); got {target.shape}"
        )
    for name, arr in (("rdm_visual", vis), ("rdm_auditory", aud)):
        if arr.shape != (target.shape[1],):
            raise ValueError(
                f"{name} must have shape ({target.shape[1]},) like target_rdm; got {arr.shape}"
            )
    out = {key: np.full(target.shape[0], np.nan) for key in ("r2_full", "r2_visual", "r2_auditory")}
    ok_pred = np.isfinite(vis) & np.isfinite(aud)
    finite_t = np.isfinite(target)
    # Targets sharing a NaN pattern are fitted together.
    patterns, group = np.unique(finite_t & ok_pred, axis=0, return_inverse=True)
    group = group.ravel()
    for g, keep in enumerate(patterns):
        rows = np.flatnonzero(group == g)
        if keep.sum() < 4:
            logger.warning("variance_partitioning: fewer than 4 usable pairs; result is NaN")
            continue
        y = target[rows][:, keep].T
        out["r2_full"][rows] = _r_squared(y, np.column_stack([vis[keep], aud[keep]]))
        out["r2_visual"][rows] = _r_squared(y, vis[keep][:, None])
        out["r2_auditory"][rows] = _r_squared(y, aud[keep][:, None])
    unique_v = out["r2_full"] - out["r2_auditory"]
    unique_a = out["r2_full"] - out["r2_visual"]
    result = {
        "unique_visual": unique_v,
        "unique_auditory": unique_a,
        "shared": out["r2_full"] - unique_v - unique_a,
        "total": out["r2_full"],
        "r2_visual": out["r2_visual"],
        "r2_auditory": out["r2_auditory"],
    }
    if single:
        return {key: float(value[0]) for key, value in result.items()}
    return result


def arm_layers(parts: Sequence[str]) -> tuple[int, int, list[int]] | None:
    """Which layers variance partitioning compares, from the part of every layer.

    Returns
    -------
    (visual, auditory, crossmodal) or None
        The last layer of the visual arm, the last of the auditory arm and every
        cross-modal layer (indices into ``parts``); None unless the network has all
        three parts.
    """
    vis = [i for i, p in enumerate(parts) if p == "visual"]
    aud = [i for i, p in enumerate(parts) if p == "auditory"]
    cross = [i for i, p in enumerate(parts) if p == "crossmodal"]
    if not (vis and aud and cross):
        return None
    return vis[-1], aud[-1], cross
