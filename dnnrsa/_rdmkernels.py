"""Kernels of the RDM comparators: ranks, row standardisation, Kendall's tau-a in
blocks, the whitened comparators, and the constant-vector test.

The lowest room of the RDM code: :mod:`dnnrsa._registries` builds the comparators
from these kernels and :mod:`dnnrsa.rdm` dispatches through the registry, so both
import this module and neither imports the other's kernels (no import cycle).
"""

from __future__ import annotations

import numpy as np

from .backend import get_namespace


def n_conditions_from_pairs(n_pairs: int) -> int:
    """Number of conditions ``n`` with ``n * (n - 1) / 2 == n_pairs``.

    Raises
    ------
    ValueError
        If ``n_pairs`` is not a triangular number of at least 3 conditions' worth.
    """
    n = int(round((1 + np.sqrt(1 + 8 * int(n_pairs))) / 2))
    if n * (n - 1) // 2 != int(n_pairs) or n < 2:
        raise ValueError(
            f"an RDM vector must have n*(n-1)/2 entries for some number of conditions n; "
            f"got {n_pairs} entries"
        )
    return n


def pair_indices(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the upper triangle, in RDM vector order."""
    return np.triu_indices(n, 1)


def rankdata(x, *, axis: int = -1, xp=None):
    """Tie-averaged ranks (1-based) along ``axis``, for many vectors at once.

    Equal to ``scipy.stats.rankdata(x, method="average", axis=axis)`` for finite
    input; works on numpy and CuPy arrays without a Python loop over vectors.

    Parameters
    ----------
    x : array of any shape
    axis : int
        Axis along which to rank.

    Returns
    -------
    array of float64 with the shape of ``x``
    """
    xp = xp or get_namespace(x)
    x = xp.asarray(x)
    x = xp.moveaxis(x, axis, -1)
    shape = x.shape
    n = shape[-1]
    if n == 0:
        return xp.moveaxis(xp.zeros(shape, dtype=xp.float64), -1, axis)
    flat = x.reshape(-1, n)
    n_rows = flat.shape[0]
    order = xp.argsort(flat, axis=1)
    sorted_vals = xp.take_along_axis(flat, order, axis=1)
    starts = xp.ones(flat.shape, dtype=bool)
    starts[:, 1:] = sorted_vals[:, 1:] != sorted_vals[:, :-1]
    starts_flat = starts.ravel()
    group = xp.cumsum(starts_flat) - 1  # global group id of each sorted element
    first = xp.flatnonzero(starts_flat)
    last = xp.concatenate([first[1:], xp.asarray([starts_flat.size], dtype=first.dtype)]) - 1
    row_offset = (first // n) * n
    avg_rank = (first + last).astype(xp.float64) / 2.0 - row_offset + 1.0
    ranks_sorted = avg_rank[group]
    out = xp.empty(n_rows * n, dtype=xp.float64)
    target = (xp.arange(n_rows)[:, None] * n + order).ravel()
    out[target] = ranks_sorted
    return xp.moveaxis(out.reshape(shape), -1, axis)


def _standardise_rows(x, xp, centre=True):
    if centre:
        x = x - x.mean(axis=1, keepdims=True)
    norms = xp.sqrt(xp.einsum("ij,ij->i", x, x))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = x / norms[:, None]
    return xp.where(norms[:, None] > 0, out, 0.0)


def _kendall_tau_a_block(a, b, xp, budget_bytes=256 * 2**20):
    """Tau-a of every row of ``a`` against every row of ``b`` (no NaN), by sign products."""
    n_a, m = a.shape
    n_b = b.shape[0]
    chunk = max(1, int(budget_bytes // (8 * m * (n_a + n_b))))
    acc = xp.zeros((n_a, n_b), dtype=xp.float64)
    for start in range(0, m, chunk):  # loop over blocks of entries, vectorised inside
        stop = min(m, start + chunk)
        sa = xp.sign(a[:, start:stop, None] - a[:, None, :]).reshape(n_a, -1)
        sb = xp.sign(b[:, start:stop, None] - b[:, None, :]).reshape(n_b, -1)
        acc += sa @ sb.T
    # every unordered pair was counted twice (i, j) and (j, i)
    return acc / (m * (m - 1))


def _whitening_terms(x, q, c, xp):
    """The parts of the whitened inner product of RDM vectors under pair weights.

    With ``Q`` the symmetric matrix of pair weights ``q`` (zero diagonal) and ``c``
    the weights of the conditions, the whitened inner product of two RDM vectors
    ``x`` and ``y`` (rsatoolbox's ``_cov_weighting`` with ``sigma_k=None``: the RDM
    turned into a double-centred second-moment matrix, off-diagonal entries counted
    twice) is ``2 * sum_p q_p x_p y_p - rhs(x) @ inv(A) @ rhs(y)``, where
    ``rhs(x)_i = sum_j Q_ij x_ij`` and ``A = (diag(Q 1) + Q) / 2 + diag(c)``.
    Pair weights 1 on the finite entries and 0 on the NaN ones with ``c = 1`` give
    rsatoolbox's result with missing entries; a bootstrap sample that drew condition
    ``i`` ``w_i`` times gives ``q_ij = w_i w_j`` and ``c = w``.

    Parameters
    ----------
    x : array (B or 1, K, n_pairs)
    q : array (B, n_pairs)
    c : array (B, n_conditions)

    Returns
    -------
    rhs : array (B, K, n_conditions)
    a_inv_rhs : array (B, n_conditions, K), ``inv(A) @ rhs.T``
    """
    n = c.shape[-1]
    iu, ju = pair_indices(n)
    iu_x, ju_x = xp.asarray(iu), xp.asarray(ju)
    big_q = xp.zeros((q.shape[0], n, n), dtype=xp.float64)
    big_q[:, iu_x, ju_x] = q
    big_q[:, ju_x, iu_x] = q
    x_sq = xp.zeros(x.shape[:-1] + (n, n), dtype=xp.float64)
    x_sq[..., iu_x, ju_x] = x
    x_sq[..., ju_x, iu_x] = x
    if x_sq.shape[0] == 1:
        rhs = xp.einsum("bij,kij->bki", big_q, x_sq[0])
    else:
        rhs = xp.einsum("bij,bkij->bki", big_q, x_sq)
    diag = big_q.sum(axis=-1) / 2.0 + c
    a = big_q / 2.0
    idx = xp.arange(n)
    a[:, idx, idx] = xp.where(diag > 0, diag, 1.0)  # an absent condition: alpha = 0
    return rhs, xp.linalg.solve(a, xp.swapaxes(rhs, -1, -2))


def _compare_whitened(a, b, method, keep, xp):
    """corr_cov / cosine_cov of every row of ``a`` with every row of ``b``.

    ``keep`` is the boolean mask of the entries used (finite in both).
    """
    n = n_conditions_from_pairs(a.shape[1])
    q = xp.asarray(keep, dtype=xp.float64)[None, :]
    a = xp.where(q > 0, a, 0.0)
    b = xp.where(q > 0, b, 0.0)
    if method == "corr_cov":
        n_keep = q.sum()
        a = xp.where(q > 0, a - (a * q).sum(axis=1, keepdims=True) / n_keep, 0.0)
        b = xp.where(q > 0, b - (b * q).sum(axis=1, keepdims=True) / n_keep, 0.0)
    c = xp.ones((1, n), dtype=xp.float64)
    rhs_a, sol_a = _whitening_terms(a[None], q, c, xp)
    rhs_b, sol_b = _whitening_terms(b[None], q, c, xp)
    inner = 2.0 * (a * q) @ b.T - rhs_a[0] @ sol_b[0]
    norm_a = 2.0 * (a * a * q).sum(axis=1) - xp.einsum("ki,ik->k", rhs_a[0], sol_a[0])
    norm_b = 2.0 * (b * b * q).sum(axis=1) - xp.einsum("ki,ik->k", rhs_b[0], sol_b[0])
    norm_a = xp.sqrt(xp.maximum(norm_a, 0.0))
    norm_b = xp.sqrt(xp.maximum(norm_b, 0.0))
    ok = (norm_a[:, None] > 0) & (norm_b[None, :] > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = inner / (norm_a[:, None] * norm_b[None, :])
    return xp.where(ok, out, 0.0)


def _is_constant(x, xp):
    with np.errstate(invalid="ignore"):
        lo = xp.nanmin(x, axis=1)
        hi = xp.nanmax(x, axis=1)
    return ~(hi > lo)
