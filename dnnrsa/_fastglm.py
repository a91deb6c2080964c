"""nilearn's first-level GLM numbers (OLS and AR(1), LSA and LSS) by matrix products.

Everything here works on arrays: ``y`` is the masked data of one run, shape
``(n_scans, n_voxels)`` (already scaled as the caller wants), and the design
matrices are arrays (or DataFrames) built by nilearn. The results are the numbers
of nilearn 0.14's :func:`nilearn.glm.first_level.run_glm` followed by
:func:`nilearn.glm.contrasts.compute_contrast` with a unit t contrast on one column:

- ``output="effect"``: ``Contrast.effect_size()``, the column's coefficient
  ``theta[j]`` of the fit of the voxel's noise-model group;
- ``output="t"``: ``Contrast.stat()``, ``effect / sqrt(max(variance, 1e-50))`` with
  ``variance = normalized_cov_beta[j, j] * dispersion``, where
  ``normalized_cov_beta = pinv(Xw) @ pinv(Xw).T`` and ``dispersion = sum(wresid**2) /
  (n_scans - n_columns)`` (nilearn divides by the number of columns of the design,
  not by its rank).

What nilearn does, and what is reproduced:

- ``noise_model="ols"``: ``OLSModel(X).fit(y)``: ``theta = pinv(X) @ y``.
- ``noise_model="ar1"``: the OLS fit first; then ``_yule_walker`` on the OLS
  residuals: the **global** mean of the whole residual array (every voxel and scan)
  is subtracted, and per voxel ``rho = (sum_t e_t e_{t+1} / ((T - 1) T)) /
  (sum_t e_t**2 / (T T))``; each rho is binned as ``(rho * bins).astype(int) / bins``
  (truncation toward zero, ``bins=100``), and the voxels of each bin are refitted by
  ``ARModel(X, rho).fit``: data and design whitened as ``w_0 = x_0``, ``w_t = x_t -
  rho x_{t-1}`` (the first scan is not rescaled), then the OLS formulas above on the
  whitened design ``Xw``.

nilearn fits the groups one after another and ``compute_contrast`` loops over the
groups once per contrast (and, for LSS, nilearn fits a complete GLM per trial);
here every column and every trial comes out of a few matrix products. The routes are
exact in exact arithmetic and agree with nilearn to rounding: ``tests/test_fastglm.py``
checks 1e-8 relative on real (Haxby) and simulated runs, where the largest differences
are about 1e-12 of a map's largest value (1e-9 of the value itself for values down to
a thousandth of the map's largest). With an ill-conditioned design (unscaled confounds)
nilearn's own rounding dominates the difference.

The small factorisations run on one BLAS thread
(:func:`dnnrsa._cpus.single_threaded_blas`): BLAS threads only slow them down, badly so
when the cores are shared; the large products keep the BLAS threads.

The large products (those over the voxels: the data with the design's pieces, the
residuals, their lag sums, the per-bin refits, the t statistic's element-wise steps)
run through an array module ``xp``, numpy on the CPU or CuPy on a GPU, chosen once by
``device=`` at :func:`fit_lsa` and :func:`fit_lss` (:mod:`dnnrsa.backend`). The small
factorisations of the designs (pseudo-inverses, SVDs, the per-bin tables) and the
recomputation of the few coefficients near a bin edge stay in numpy and scipy on the
CPU; their results are moved to the device once. On the CPU the operations are those
of numpy alone, in the same order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg

from ._cpus import single_threaded_blas
from .backend import get_namespace, to_numpy

__all__ = [
    "NOISE_MODELS",
    "OUTPUTS",
    "TINY",
    "ar1_coefficients",
    "fit_lsa",
    "fit_lss",
    "lss_pieces",
]

#: Noise models computed here (nilearn's ``"ar1"`` and ``"ols"``).
NOISE_MODELS = ("ols", "ar1")
OUTPUTS = ("effect", "t")
#: ``nilearn.glm.contrasts.DEF_TINY``: the floor of the variance in the t statistic.
TINY = 1e-50
#: An AR(1) coefficient whose ``rho * bins`` lies closer than this to an integer (a
#: bin edge) is recomputed with nilearn's own operations from explicit OLS residuals
#: (the fast sums agree with nilearn's to about 1e-13 of rho at worst).
EDGE_TOL = 1e-7


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _check(noise_model: str, output: str, bins: int) -> None:
    if noise_model not in NOISE_MODELS:
        raise ValueError(f"noise_model must be one of {list(NOISE_MODELS)}; got {noise_model!r}")
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {list(OUTPUTS)}; got {output!r}")
    if int(bins) != bins or bins < 1:
        raise ValueError(f"bins must be a positive integer; got {bins!r}")


def _data(y: Any) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 2:
        raise ValueError(f"y must have shape (n_scans, n_voxels); got {y.shape}")
    return y


def _lagsum(x: np.ndarray) -> np.ndarray:
    """``L x`` with ``L = J + J'``: ``(L x)_t = x_{t-1} + x_{t+1}`` (zero outside)."""
    out = np.zeros_like(x)
    out[1:] += x[:-1]
    out[:-1] += x[1:]
    return out


def _bin(rho: np.ndarray, bins: int) -> np.ndarray:
    """nilearn's binning: ``(rho * bins).astype(int) * 1.0 / bins``."""
    return (rho * bins).astype(int) * 1.0 / bins


def _pinv_factors(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``W = V S^-1`` and ``U`` of the SVD of ``x``, truncated as ``scipy.linalg.pinv``
    truncates (singular values above ``max(x.shape) * eps * s_max``), so that
    ``pinv(x) = W @ U.T`` and ``pinv(x) @ pinv(x).T = W @ W.T``."""
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    if s.size == 0 or s[0] == 0:
        return np.zeros((x.shape[1], 0)), np.zeros((x.shape[0], 0))
    rank = int(np.sum(s > s[0] * max(x.shape) * np.finfo(np.float64).eps))
    return vt[:rank].T / s[:rank], u[:, :rank]


def _orthonormal_basis(x: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the columns of ``x`` (rank as ``scipy.linalg.pinv`` counts it)."""
    if x.shape[1] == 0:
        return np.zeros((x.shape[0], 0))
    return _pinv_factors(x)[1]


def _project_out(q: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``x`` minus its projection on the orthonormal columns ``q``, twice (so that the
    result is orthogonal to ``q`` to rounding even when ``x`` lies close to its span)."""
    if q.shape[1] == 0:
        return np.array(x, dtype=np.float64, copy=True)
    out = x - q @ (q.T @ x)
    out -= q @ (q.T @ out)
    return out


def _whiten(x: np.ndarray, rho: float) -> np.ndarray:
    """nilearn's ``ARModel.whiten`` for AR(1): ``w_0 = x_0``, ``w_t = x_t - rho x_{t-1}``."""
    out = x.copy()
    out[1:] -= rho * x[:-1]
    return out


def _t_stat(effect, variance, xp=np):
    """``Contrast.stat()``: ``effect / sqrt(max(sd ** 2, 1e-50))`` with ``sd =
    sqrt(variance)`` (nilearn stores ``sd ** 2``). Computed in ``variance``, a
    temporary of the caller's, which is returned."""
    xp.sqrt(variance, out=variance)
    xp.square(variance, out=variance)
    xp.maximum(variance, TINY, out=variance)
    xp.sqrt(variance, out=variance)
    return xp.divide(effect, variance, out=variance)


def ar1_coefficients(residuals: Any, bins: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """nilearn's AR(1) coefficient of every voxel, raw and binned.

    The same operations, in the same order, as ``run_glm``'s call of
    ``nilearn.glm.first_level.first_level._yule_walker(residuals.T, 1)`` (the global
    mean of the whole array subtracted, the lag-0 and lag-1 sums divided by ``T * T``
    and ``(T - 1) * T``, the 1 x 1 Yule-Walker system solved) followed by its binning
    ``(rho * bins).astype(int) * 1.0 / bins``: given the same residual array the
    coefficients are the same bits.

    Parameters
    ----------
    residuals : ndarray of shape (n_scans, n_voxels)
        OLS residuals of one fit (every voxel of it: the mean is global).
    bins : int, default=100

    Returns
    -------
    binned, rho : ndarray of shape (n_voxels,)
    """
    x = np.asarray(residuals, dtype=np.float64).T
    n_scans = x.shape[-1]
    mean = x.mean()
    r = np.zeros((x.shape[0], 2), np.float64)
    # by blocks of voxels (each voxel's sums are the same operations as nilearn's)
    for start in range(0, x.shape[0], 16384):
        block = slice(start, start + 16384)
        centred = x[block] - mean
        r[block, 0] += (centred[:, np.newaxis, :] @ centred[:, :, np.newaxis])[:, 0, 0]
        r[block, 1] += (centred[:, np.newaxis, 0:-1] @ centred[:, 1:, np.newaxis])[:, 0, 0]
    r /= (n_scans - np.arange(2)) * n_scans
    rho = np.linalg.solve(r[:, :1, np.newaxis], r[:, 1:, np.newaxis])[..., 0][:, 0]
    return _bin(rho, bins), rho


def _column_indices(design: Any, columns: Any) -> tuple[np.ndarray, list[int]]:
    names = list(getattr(design, "columns", []))
    x = np.asarray(design.to_numpy() if hasattr(design, "to_numpy") else design, np.float64)
    if x.ndim != 2:
        raise ValueError(f"design must have shape (n_scans, n_columns); got {x.shape}")
    cols = []
    for column in columns:
        if isinstance(column, str):
            if column not in names:
                raise ValueError(f"column {column!r} is not in the design's columns {names}")
            cols.append(names.index(column))
        else:
            index = int(column)
            if not 0 <= index < x.shape[1]:
                raise ValueError(f"column index {index} out of range for {x.shape[1]} columns")
            cols.append(index)
    return x, cols


# ---------------------------------------------------------------------------
# LSA: one design, many columns
# ---------------------------------------------------------------------------


def fit_lsa(
    y: Any,
    design: Any,
    columns: Any,
    output: str = "effect",
    noise_model: str = "ar1",
    bins: int = 100,
    device: str = "cpu",
) -> np.ndarray:
    """The effect or t statistic of every column of one design, as nilearn computes them.

    Reproduces ``labels, results = run_glm(y, design, noise_model)`` followed, for
    every column ``j`` in ``columns``, by ``compute_contrast(labels, results, e_j,
    "t").effect_size()`` (``output="effect"``) or ``.stat()`` (``output="t"``).

    How: the OLS fit is nilearn's (``theta = pinv(X) @ y`` with
    ``scipy.linalg.pinv``; for OLS the same operations, so the same numbers to the
    last bits or nearly: the pseudo-inverse runs on one BLAS thread, nilearn's on the
    BLAS threads, which can change its last bits). For AR(1) the residuals are formed
    voxel by voxel (rows), their Yule-Walker coefficients from their lag-0 and lag-1
    sums, sum, first and last values (the global mean subtracted algebraically), and
    a coefficient within ``EDGE_TOL / bins`` of a bin edge is recomputed with
    nilearn's own operations (:func:`ar1_coefficients`' sums) on residuals computed
    as nilearn computes them, so rounding cannot move a voxel into another bin. The
    AR(1) refit of a bin ``rho`` then needs no pass over the data: with ``A`` the
    whitening and ``e`` the OLS residuals, ``y = X theta + e`` gives ``pinv(A X) A y
    = theta + pinv(A X) A e`` and the whitened residual sum of squares ``||A e||^2 -
    ||U' A e||^2`` (``U`` the left singular vectors of ``A X``), and ``(A X)' A e =
    -rho (L X)' e - rho^2 x_T e_T`` (``X' e = 0``, ``L`` the lag-sum operator,
    ``x_T`` the last scan), so one product ``(L X)' e`` for all voxels and, per bin,
    the SVD of the whitened design (its pseudo-inverse as scipy truncates it) and
    products with ``n_columns`` columns, on that bin's voxels (contiguous once the
    voxels are sorted by bin), give every column's effect and variance at once.

    Parameters
    ----------
    y : ndarray of shape (n_scans, n_voxels)
    design : ndarray or DataFrame of shape (n_scans, n_columns)
    columns : sequence of int or str
        The columns to report (names need a DataFrame).
    output : {"effect", "t"}
    noise_model : {"ar1", "ols"}
    bins : int, default=100
        nilearn's number of AR(1) bins per unit of rho.
    device : {"cpu", "auto", "cuda"}, default="cpu"
        Where the products over the voxels run (:func:`dnnrsa.backend.resolve_device`):
        numpy on the CPU, or CuPy on a GPU, with the run's data in float64 on the
        device. The result is a numpy array either way.

    Returns
    -------
    ndarray of shape (len(columns), n_voxels)

    Raises
    ------
    ValueError
        On an invalid option (``device`` included) or shapes that do not match.
    RuntimeError
        If ``device="cuda"`` and CuPy cannot use a GPU.
    """
    _check(noise_model, output, bins)
    xp = get_namespace(device=device)
    y = _data(y)
    x, cols = _column_indices(design, columns)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"design has {x.shape[0]} rows; y has {y.shape[0]} scans")
    return to_numpy(_fit_design(y, x, cols, output, noise_model, bins, xp, xp.asarray(y)))


def _fit_design(y, x, cols, output, noise_model, bins, xp=np, y_dev=None):
    """:func:`fit_lsa` on checked arrays: ``y`` and ``x`` numpy, ``y_dev`` the data on
    ``xp``'s device (``y`` itself for numpy). Returns an ``xp`` array."""
    y_dev = y if y_dev is None else y_dev
    n_scans, n_columns = x.shape
    with single_threaded_blas(np):
        pinv = scipy.linalg.pinv(x)
    # gathers by an index array: the same values as by the list (and CuPy needs one)
    idx = cols if xp is np else xp.asarray(np.asarray(cols, dtype=np.intp))
    if noise_model == "ols":
        theta = xp.asarray(pinv) @ y_dev
        effect = theta[idx]
        if output == "effect":
            return effect
        resid = xp.asarray(x) @ theta
        xp.subtract(y_dev, resid, out=resid)
        dispersion = xp.einsum("tv,tv->v", resid, resid) / (n_scans - n_columns)
        cov = xp.asarray(np.diag(pinv @ pinv.T)[cols])
        return _t_stat(effect, cov[:, None] * dispersion, xp)

    # AR(1): voxel-major arrays, so that every bin's voxels are contiguous rows
    theta = y_dev.T @ xp.asarray(pinv.T)  # (n_voxels, n_columns)
    resid = theta @ xp.asarray(-x.T)
    resid += y_dev.T  # (n_voxels, n_scans): the OLS residuals
    mean = resid.mean()
    r0 = xp.einsum("vt,vt->v", resid, resid)
    r1 = xp.einsum("vt,vt->v", resid[:, :-1], resid[:, 1:])
    # nilearn's Yule-Walker sums of the centred residuals: sum (e_t - m)^2 and
    # sum (e_t - m)(e_t+1 - m), from the uncentred sums
    e_sum = resid.sum(axis=1)
    e_first, e_last = resid[:, 0].copy(), resid[:, -1].copy()
    c0 = r0 - 2.0 * mean * e_sum + n_scans * mean**2
    c1 = r1 - mean * (2.0 * e_sum - e_first - e_last) + (n_scans - 1) * mean**2
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (c1 / ((n_scans - 1) * n_scans)) / (c0 / (n_scans * n_scans))
    rho[~xp.isfinite(rho)] = 0.0
    scaled = rho * bins
    near = xp.flatnonzero(xp.abs(scaled - xp.rint(scaled)) < EDGE_TOL)
    if near.size:  # nilearn's own operations on nilearn's residuals, for these voxels
        near_cpu = to_numpy(near)
        y_near = y[:, near_cpu]
        e_near = y_near - x @ (pinv @ y_near)
        centred = e_near.T - (mean if xp is np else float(mean))
        n0 = (centred[:, np.newaxis, :] @ centred[:, :, np.newaxis])[:, 0, 0]
        n1 = (centred[:, np.newaxis, 0:-1] @ centred[:, 1:, np.newaxis])[:, 0, 0]
        scaled[near] = xp.asarray(
            (n1 / ((n_scans - 1) * n_scans)) / (n0 / (n_scans * n_scans)) * bins
        )
    codes = to_numpy(scaled.astype(int))
    z1 = resid @ xp.asarray(_lagsum(x))  # rows: (L X)' e of each voxel
    if output == "t":
        ele = 2.0 * r1
    del resid
    values, inverse = np.unique(codes, return_inverse=True)
    # the whitened designs' pseudo-inverses: small factorisations, on one BLAS thread
    # (BLAS threads only slow them down, badly so on shared cores)
    with single_threaded_blas(np):
        factors = [_pinv_factors(_whiten(x, code * 1.0 / bins))[0] for code in values]
    order = np.argsort(inverse, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(inverse, minlength=values.size))])
    order_dev = xp.asarray(order)
    z1 = z1[order_dev]
    effect = theta[:, idx][order_dev]
    del theta
    e_last = e_last[order_dev]
    if output == "t":
        ee, ele = r0[order_dev], ele[order_dev]
    for b, code in enumerate(values):
        rho = code * 1.0 / bins
        sl = slice(bounds[b], bounds[b + 1])
        w = factors[b]  # pinv(A X) = w @ U'
        if rho != 0.0:  # rho 0: ARModel is the OLS model
            # g = U' A e = w' (A X)' A e, with (A X)' A e = -rho (L X)' e - rho^2 x_T e_T
            g = z1[sl] @ xp.asarray(-rho * w)
            g -= xp.outer(e_last[sl], xp.asarray(rho**2 * (x[-1] @ w)))
            effect[sl] += g @ xp.asarray(w[cols].T)
        if output == "t":
            ssr = ee[sl] - rho * ele[sl] + rho**2 * (ee[sl] - e_last[sl] ** 2)
            if rho != 0.0:
                ssr -= xp.einsum("vr,vr->v", g, g)
            cov = xp.asarray(np.einsum("cr,cr->c", w[cols], w[cols]))
            var = (xp.maximum(ssr, 0.0) / (n_scans - n_columns))[:, None] * cov
            effect[sl] = _t_stat(effect[sl], var, xp)
    out = xp.empty_like(effect)
    out[order_dev] = effect
    return xp.ascontiguousarray(out.T)


# ---------------------------------------------------------------------------
# LSS: one design per trial, sharing all but a few columns
# ---------------------------------------------------------------------------


def lss_pieces(designs: Any, target: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """Split per-trial designs into the trials' own columns and the shared ones.

    Parameters
    ----------
    designs : sequence of ndarray or DataFrame, each (n_scans, n_columns)
        One design per trial (nilearn's LSS designs: target, others, drifts,
        confounds), all with the same columns in the same order.
    target : int or str
        The target column (a name needs DataFrames).

    Returns
    -------
    trial_columns : ndarray of shape (n_trials, n_scans, n_own)
        The columns that differ between trials (the target among them).
    shared : ndarray of shape (n_scans, n_shared)
        The columns equal in every design (with one trial: every column but the target).
    target_index : int
        Position of the target within ``trial_columns``.
    """
    designs = list(designs)
    if not designs:
        raise ValueError("designs is empty")
    arrays = []
    cols = None
    for design in designs:
        x, found = _column_indices(design, [target])
        if cols is not None and found != cols:
            raise ValueError("the designs name the target column at different positions")
        cols = found
        arrays.append(x)
    stack = np.stack(arrays)  # raises on different shapes
    same = np.all(stack == stack[:1], axis=(0, 1))
    same[cols[0]] = False
    own = np.flatnonzero(~same)
    return stack[:, :, own], stack[0][:, same], int(np.flatnonzero(own == cols[0])[0])


def fit_lss(
    y: Any,
    trial_columns: Any,
    shared: Any,
    target: int = 0,
    output: str = "effect",
    noise_model: str = "ar1",
    bins: int = 100,
    chunk_size: int = 16384,
    device: str = "cpu",
) -> np.ndarray:
    """Each trial's target effect or t statistic, as one nilearn GLM per trial gives it.

    Trial ``k``'s design is ``X_k = [trial_columns[k], shared]`` (nilearn's LSS
    design: the trial's regressor, the other trials' regressor, drifts, confounds;
    the order of the columns changes nothing). The result for trial ``k`` is
    ``run_glm(y, X_k, noise_model)`` followed by ``compute_contrast`` on the target
    column: for AR(1) with that trial's own coefficients (from that fit's OLS
    residuals, the mean of that fit's whole residual array subtracted, binned) and
    that trial's whitened refit per bin. No GLM is fitted per trial.

    How. Let ``Q`` be an orthonormal basis of the shared columns, ``y~`` the data
    and ``S_k`` the trial's own columns with ``Q`` projected out, and ``L = J + J'``
    the lag-sum operator (``J`` the one-scan shift). Fits on ``X_k`` and on ``[S_k,
    Q]`` have the same residuals and the same target coefficient and variance, and
    the shared part of ``y`` fits exactly, so ``y~`` can stand for ``y``. One product
    ``[S, L S, L Q]' y~`` (all trials' own columns at once, per block of voxels)
    holds every quantity either step needs:

    - OLS: ``beta = (S_k'S_k)^-1 S_k'y~``; residual sum of squares ``y~'y~ -
      beta'S_k'y~``; the residuals' lag-1 sum ``(y~'L y~ - 2 beta'(L S_k)'y~ +
      beta'S_k'L S_k beta) / 2``, their sum, first and last values, and the global
      mean of the fit's residual array (from the voxels' summed data) give nilearn's
      Yule-Walker coefficient, binned. A coefficient within ``EDGE_TOL`` / ``bins``
      of a bin edge is recomputed from the trial's explicit OLS residuals
      (``pinv(X_k)``), so rounding cannot move a voxel to another bin than
      nilearn's.
    - AR(1) with ``A = I - rho J`` (nilearn's whitening): ``A'A = I - rho L + rho^2
      (I - e_T e_T')``, so ``M = [S_k, Q]'A'A[S_k, Q]`` and ``z = [S_k, Q]'A'A y~``
      are sums of the pieces above. With the Schur complement of the shared block
      ``Sigma = M_SS - M_SQ M_QQ^-1 M_QS`` (a few numbers per trial and bin): target
      effect ``(Sigma^-1 s)_target`` with ``s = z_S - M_SQ M_QQ^-1 z_Q``; variance
      factor ``(Sigma^-1)_target,target`` (nilearn's ``normalized_cov_beta``);
      whitened residual sum of squares ``||A y~||^2 - z_Q'M_QQ^-1 z_Q - s'Sigma^-1
      s``. ``M_QQ^-1 z_Q`` depends on the voxel and the bin only, not on the trial,
      so it is computed once per (voxel, bin) pair that occurs and multiplied by all
      trials' ``(L S)'Q`` in one product.

    Per trial and voxel this is a handful of operations on vectors of the length of
    the trial's own columns (2 for a canonical HRF): the cost is that of the one
    product, about ``4 n_trials`` multiply-adds per scan and voxel, or ``2 n_trials``
    when every trial's two own columns add up to the same column (nilearn's LSS
    designs: "others" is all trials' regressor but the target's), where the product
    needs only the targets and their total (the others' products are differences).

    A trial whose own columns are (nearly) collinear with the shared ones, where
    nilearn's pseudo-inverse would truncate, is fitted with :func:`fit_lsa`'s route
    on its full design instead.

    Parameters
    ----------
    y : ndarray of shape (n_scans, n_voxels)
    trial_columns : ndarray of shape (n_trials, n_scans, n_own)
        Each trial's own columns (:func:`lss_pieces` splits nilearn's designs).
    shared : ndarray of shape (n_scans, n_shared)
        The columns common to every trial's design.
    target : int, default=0
        Position of the target within a trial's own columns.
    output : {"effect", "t"}
    noise_model : {"ar1", "ols"}
    bins : int, default=100
    chunk_size : int, default=16384
        Voxels per block (memory: about ``(2 n_trials n_own + n_scans) * chunk_size``
        float64 values, and about 30 ``n_trials * chunk_size`` arrays: 250 MB for 72
        trials).
    device : {"cpu", "auto", "cuda"}, default="cpu"
        Where the products over the voxels run (:func:`dnnrsa.backend.resolve_device`):
        numpy on the CPU, or CuPy on a GPU, with the run's data in float64 on the
        device (the voxel blocks then take the device's memory). The result is a numpy
        array either way.

    Returns
    -------
    ndarray of shape (n_trials, n_voxels)

    Raises
    ------
    ValueError
        On an invalid option (``device`` included) or shapes that do not match.
    RuntimeError
        If ``device="cuda"`` and CuPy cannot use a GPU.
    """
    _check(noise_model, output, bins)
    xp = get_namespace(device=device)
    y = _data(y)
    own = np.asarray(trial_columns, dtype=np.float64)
    if own.ndim == 2:
        own = own[:, :, None]
    n_trials, n_scans, n_own = own.shape
    shared = np.asarray(shared, dtype=np.float64)
    if shared.size == 0:
        shared = np.zeros((n_scans, 0))
    elif shared.ndim == 1:
        shared = shared[:, None]
    if n_scans != y.shape[0] or shared.shape[0] != n_scans:
        raise ValueError(
            f"trial_columns have {n_scans} scans, shared {shared.shape[0]}; y has {y.shape[0]}"
        )
    if not 0 <= target < n_own:
        raise ValueError(f"target {target} out of range for {n_own} own columns")
    out = np.empty((n_trials, y.shape[1]))
    y_dev = xp.asarray(y)
    with single_threaded_blas(np):
        q = _orthonormal_basis(shared)
        s_tilde = np.stack([_project_out(q, own[k]) for k in range(n_trials)])
        good = _well_posed(own, shared, s_tilde)
        if good.any():
            fit = _LSSFit(
                y_dev, own[good], shared, s_tilde[good], q, target, output, noise_model, bins, xp
            )
    for k in np.flatnonzero(~good):
        x = np.concatenate([own[k], shared], axis=1)
        out[k] = to_numpy(_fit_design(y, x, [target], output, noise_model, bins, xp, y_dev)[0])
    if good.any():
        out[good] = fit.run(max(1, int(chunk_size)))
    return out


def _common_total(own, target, rtol=1e-10):
    """Whether each trial's two own columns add up to the same column (to ``rtol``)."""
    if own.shape[2] != 2 or own.shape[0] < 2:
        return False
    total = own.sum(axis=2)
    scale = np.abs(total[0]).max()
    return bool(scale > 0 and np.all(np.abs(total - total[0]) <= rtol * scale))


def _well_posed(own, shared, s_tilde):
    """Trials whose own columns stay clear of the shared ones (no truncation by pinv)."""
    good = np.ones(own.shape[0], dtype=bool)
    for k in range(own.shape[0]):
        scale = np.linalg.norm(np.concatenate([own[k], shared], axis=1), 2)
        sv = np.linalg.svd(s_tilde[k], compute_uv=False)
        good[k] = scale > 0 and sv[-1] > 1e-8 * scale
    return good


class _LSSFit:
    """The pieces of :func:`fit_lss` shared by all voxel blocks.

    ``y`` is the data on ``xp``'s device; the pieces of the designs are computed with
    numpy and copied there once (the ``_dev`` attributes; numpy's are the same arrays).
    """

    def __init__(self, y, own, shared, s_tilde, q, target, output, noise_model, bins, xp=np):
        self.xp = xp
        self.y, self.own, self.shared, self.q = y, own, shared, q
        self.target, self.output, self.noise_model, self.bins = target, output, noise_model, bins
        n_trials, n_scans, n_own = s_tilde.shape
        self.n_trials, self.n_scans, self.n_own = n_trials, n_scans, n_own
        self.dof = n_scans - (n_own + shared.shape[1])  # nilearn: rows - columns
        st = s_tilde
        # nilearn's LSS designs: "others" is the sum of all trials' regressors but the
        # target's, so the trials' own columns span only the targets and their total
        # (to rounding); then the products need those alone, about half the work
        self.total = _common_total(own, target)
        if self.total:
            st = st.copy()
            st[:, :, 1 - target] = st[0].sum(axis=1) - st[:, :, target]
        lst = np.stack([_lagsum(st[k]) for k in range(n_trials)])
        lq = _lagsum(q)
        # one product per voxel block: [S, L S, L Q]' y~ (OLS needs S' y~ only)
        if self.total:
            cols = [st[:, :, target].T, st[0].sum(axis=1)[:, None]]
            lcols = [lst[:, :, target].T, lst[0].sum(axis=1)[:, None]]
        else:
            cols = [st.transpose(1, 0, 2).reshape(n_scans, -1)]
            lcols = [lst.transpose(1, 0, 2).reshape(n_scans, -1)]
        pieces = cols + (lcols + [lq] if noise_model == "ar1" else [])
        self.k_mat = np.concatenate(pieces, axis=1)
        self.n_prod = sum(c.shape[1] for c in cols)
        self.gram = np.einsum("kti,ktj->kij", st, st)
        self.gram_inv = np.linalg.inv(self.gram)
        self.lag = np.einsum("kti,ktj->kij", st, lst)
        self.lag = (self.lag + self.lag.transpose(0, 2, 1)) / 2
        self.s_last, self.s_first, self.s_sum = st[:, -1, :], st[:, 0, :], st.sum(axis=1)
        self.s_edges = np.stack([self.s_sum, self.s_first, self.s_last], axis=1)
        self.f = np.einsum("kti,tg->kig", lst, q)  # (L S_k)' Q
        self.qlq = q.T @ lq
        self.q_last = q[-1].copy()
        # the global mean of each trial's OLS residual array, from the summed data
        ysum = _project_out(q, to_numpy(y.sum(axis=1))[:, None])[:, 0]
        beta_sum = np.einsum("kij,kj->ki", self.gram_inv, np.einsum("kti,t->ki", st, ysum))
        rsum = ysum.sum() - np.einsum("ki,ki->k", self.s_sum, beta_sum)
        self.mean = rsum / (n_scans * y.shape[1])
        self._bin_cache: dict[int, tuple] = {}
        # the pieces the voxel blocks use, on the device
        self.q_dev, self.k_mat_dev = xp.asarray(q), xp.asarray(self.k_mat)
        self.gram_inv_dev, self.lag_dev = xp.asarray(self.gram_inv), xp.asarray(self.lag)
        self.s_edges_dev, self.s_last_dev = xp.asarray(self.s_edges), xp.asarray(self.s_last)
        self.f_dev, self.q_last_dev = xp.asarray(self.f), xp.asarray(self.q_last)
        self.mean_dev = xp.asarray(self.mean)

    # -- per bin -----------------------------------------------------------------

    def _bin_tables(self, code: int):
        """``M_QQ^-1`` and each trial's ``Sigma^-1`` for the bin ``code / bins``."""
        if code in self._bin_cache:
            return self._bin_cache[code]
        rho = code * 1.0 / self.bins
        g = self.q.shape[1]
        mqq = np.eye(g) - rho * self.qlq + rho**2 * (np.eye(g) - np.outer(self.q_last, self.q_last))
        mqq_inv = np.linalg.inv(mqq) if g else np.zeros((0, 0))
        last = np.einsum("ki,kj->kij", self.s_last, self.s_last)
        mss = self.gram - rho * self.lag + rho**2 * (self.gram - last)
        msq = -rho * self.f - rho**2 * np.einsum("ki,g->kig", self.s_last, self.q_last)
        sigma = mss - np.einsum("kig,gh,kjh->kij", msq, mqq_inv, msq)
        tables = (self.xp.asarray(mqq_inv), self.xp.asarray(np.linalg.inv(sigma)))
        self._bin_cache[code] = tables
        return tables

    # -- per voxel block ---------------------------------------------------------

    def run(self, chunk_size: int) -> np.ndarray:
        n_voxels = self.y.shape[1]
        out = np.empty((self.n_trials, n_voxels))
        for start in range(0, n_voxels, chunk_size):
            sl = slice(start, min(start + chunk_size, n_voxels))
            out[:, sl] = to_numpy(self._block(sl))
        return out

    def _block(self, sl):
        q = self.q_dev
        y_block = self.y[:, sl]
        # one projection suffices here: what is left of Q in yt (rounding of y's
        # shared part) meets S~, orthogonal to Q, in the products, and is left out of
        # z_Q; OLS effects need none (S~'y = S~'y~)
        yt = y_block
        if q.shape[1] and not (self.noise_model == "ols" and self.output == "effect"):
            yt = y_block - q @ (q.T @ y_block)
        prods = self.k_mat_dev.T @ yt
        # the rest: small products, on one BLAS thread
        with single_threaded_blas(np):
            return self._block_rest(y_block, yt, prods)

    def _block_rest(self, y_block, yt, prods):
        xp, n_prod = self.xp, self.n_prod
        a = self._own_products(prods[:n_prod])
        beta = xp.matmul(self.gram_inv_dev, a)
        if self.noise_model == "ols" and self.output == "effect":
            return beta[:, self.target]
        yy = xp.einsum("tv,tv->v", yt, yt)
        ssr = yy - xp.einsum("kiv,kiv->kv", a, beta)
        if self.noise_model == "ols":
            var = self.gram_inv_dev[:, self.target, self.target][:, None] * (
                xp.maximum(ssr, 0.0) / self.dof
            )
            return _t_stat(beta[:, self.target], var, xp)

        b = self._own_products(prods[n_prod : 2 * n_prod])
        e = prods[2 * n_prod :]
        yly = 2.0 * xp.einsum("tv,tv->v", yt[:-1], yt[1:])
        y_last, y_first, y_sum = yt[-1], yt[0], yt.sum(axis=0)
        codes = self._ar1_codes(beta, a, b, ssr, yy, yly, y_last, y_first, y_sum, y_block, yt)
        return self._ar1_block(codes, a, b, e, yy, yly, y_last)

    def _own_products(self, rows):
        """(n_trials, n_own, n_voxels) products of the trials' own columns from the
        product's rows (the targets and their total, when the designs share a total)."""
        if not self.total:
            return rows.reshape(self.n_trials, self.n_own, -1)
        out = self.xp.empty((self.n_trials, 2, rows.shape[1]))
        out[:, self.target] = rows[:-1]
        self.xp.subtract(rows[-1], rows[:-1], out=out[:, 1 - self.target])
        return out

    def _ar1_codes(self, beta, a, b, ssr, yy, yly, y_last, y_first, y_sum, y_block, yt):
        """Each (trial, voxel)'s binned AR(1) coefficient, as an integer ``rho * bins``."""
        xp = self.xp
        n_scans, m = self.n_scans, self.mean_dev[:, None]
        rlr = yly - 2.0 * xp.einsum("kiv,kiv->kv", b, beta)
        rlr += xp.einsum("kiv,kiv->kv", beta, xp.matmul(self.lag_dev, beta))
        # the residuals' sum, first and last values: one batched product
        r_sum, r_first, r_last = xp.moveaxis(xp.matmul(self.s_edges_dev, beta), 1, 0)
        r_sum = y_sum - r_sum
        r_first = y_first - r_first
        r_last = y_last - r_last
        s0 = ssr - 2.0 * m * r_sum + n_scans * m**2
        s1 = rlr / 2.0 - m * (2.0 * r_sum - r_first - r_last) + (n_scans - 1) * m**2
        with np.errstate(invalid="ignore", divide="ignore"):
            rho = (s1 / ((n_scans - 1) * n_scans)) / (s0 / (n_scans * n_scans))
        rho[~xp.isfinite(rho)] = 0.0
        scaled = rho * self.bins
        near = xp.abs(scaled - xp.rint(scaled)) < EDGE_TOL
        for k in to_numpy(xp.flatnonzero(near.any(axis=1))):
            idx = xp.flatnonzero(near[k])
            explicit = self._explicit_rho(k, to_numpy(y_block[:, idx]))
            scaled[k, idx] = xp.asarray(explicit) * self.bins
        return scaled.astype(int)

    def _explicit_rho(self, k, y_cols):
        """nilearn's coefficient from trial ``k``'s explicit OLS residuals (a few voxels)."""
        n_scans = self.n_scans
        x = np.concatenate([self.own[k], self.shared], axis=1)
        resid = y_cols - x @ (scipy.linalg.pinv(x) @ y_cols)
        centred = resid.T - self.mean[k]
        r0 = (centred[:, np.newaxis, :] @ centred[:, :, np.newaxis])[:, 0, 0]
        r1 = (centred[:, np.newaxis, 0:-1] @ centred[:, 1:, np.newaxis])[:, 0, 0]
        return (r1 / ((n_scans - 1) * n_scans)) / (r0 / (n_scans * n_scans))

    def _ar1_block(self, codes, a, b, e, yy, yly, y_last):
        """The whitened fits of a voxel block, each (trial, voxel) with its own bin."""
        xp = self.xp
        n_trials, n_own, t = self.n_trials, self.n_own, self.target
        g = self.q.shape[1]
        lo, hi = codes.min(axis=0), codes.max(axis=0)
        c_min, c_max = int(lo.min()), int(hi.max())
        tables = [self._bin_tables(code) for code in range(c_min, c_max + 1)]
        # per (voxel, bin) pair: w = M_QQ^-1 z_Q, z_Q'w and q_T'w
        offset = xp.concatenate([xp.zeros(1, dtype=hi.dtype), xp.cumsum(hi - lo + 1)])
        n_pairs = int(offset[-1])
        w_pairs = xp.zeros((g, n_pairs))
        zqw = xp.zeros(n_pairs)
        for code in range(c_min, c_max + 1) if g else ():
            idx = xp.flatnonzero((lo <= code) & (code <= hi))
            rho = code * 1.0 / self.bins
            zq = -rho * (e[:, idx] + rho * xp.outer(self.q_last_dev, y_last[idx]))
            w = tables[code - c_min][0] @ zq
            pos = offset[idx] + code - lo[idx]
            w_pairs[:, pos] = w
            zqw[pos] = xp.einsum("gv,gv->v", zq, w)
        fw = (self.f_dev.reshape(n_trials * n_own, g) @ w_pairs).reshape(n_trials, n_own, n_pairs)
        qtw = self.q_last_dev @ w_pairs
        pair = offset[:-1][None, :] + codes - lo[None, :]  # (n_trials, n_vox)
        fw_kv = xp.take_along_axis(fw, pair[:, None, :], axis=2)

        rho = codes * 1.0 / self.bins
        rho2 = rho**2
        # s = z_S - M_SQ w with z_S = a - rho b + rho^2 (a - s_T y_T) and
        # M_SQ w = -rho F_k w - rho^2 s_T (q_T'w)
        s = a * (1.0 + rho2)[:, None]
        s -= rho[:, None] * (b - fw_kv)
        s -= self.s_last_dev[:, :, None] * (rho2 * (y_last - qtw[pair]))[:, None]
        # Sigma^-1 of each (trial, voxel)'s bin, entry by entry: flat gathers
        sigma_inv = xp.stack([tab[1] for tab in tables])  # (n_codes, n_trials, own, own)
        flat = (codes - c_min) * n_trials + xp.arange(n_trials)[:, None]
        sig = {}
        for i in range(n_own):
            for j in range(i, n_own):
                sig[i, j] = sig[j, i] = sigma_inv[:, :, i, j].ravel()[flat]
        u_t = sum(sig[t, j] * s[:, j] for j in range(n_own))
        if self.output == "effect":
            return u_t
        quad = sum(s[:, i] * sum(sig[i, j] * s[:, j] for j in range(n_own)) for i in range(n_own))
        ay2 = yy - rho * yly + rho2 * (yy - y_last**2)
        ssr = ay2 - zqw[pair] - quad
        var = sig[t, t] * (xp.maximum(ssr, 0.0) / self.dof)
        return _t_stat(u_t, var, xp)
