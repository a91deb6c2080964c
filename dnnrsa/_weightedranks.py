"""Ranks and moments of RDM entries under pair weights: the pieces the bootstrap engine
(:mod:`dnnrsa._evalengine`) computes with, for numpy and CuPy.

A stimulus bootstrap sample enters every pair ``(i, j)`` of conditions ``w_i * w_j``
times; these functions rank and centre RDM rows as if every entry were repeated that
often, without building the repeated vectors.
"""

from __future__ import annotations

import numpy as np


def _tie_groups(xs, xp):
    """For sorted rows ``xs`` (..., P): position of the first and of the last element
    of every element's tie group, within its row."""
    p = xs.shape[-1]
    new = xp.ones(xs.shape, dtype=bool)
    new[..., 1:] = xs[..., 1:] != xs[..., :-1]
    flat = new.reshape(-1)
    gid = xp.cumsum(flat) - 1
    first = xp.flatnonzero(flat)
    last = xp.concatenate([first[1:], xp.asarray([flat.size], dtype=first.dtype)]) - 1
    offset = (xp.arange(flat.size) // p) * p
    return (first[gid] - offset).reshape(xs.shape), (last[gid] - offset).reshape(xs.shape)


def _sparse_ties(xs):
    """Tie groups of sorted rows ``xs`` (..., P), in flat indices (numpy).

    Returns None without ties; else ``(members, first, last)``: every element that
    is tied with a neighbour, and the first and last element of its group."""
    p = xs.shape[-1]
    eq = xs[..., 1:] == xs[..., :-1]
    links = np.flatnonzero(eq)
    if links.size == 0:
        return None
    left = links + links // (p - 1)  # flat index of the first element of each link
    cand = np.concatenate([left, left + 1])
    cand.sort()
    members = cand[np.concatenate([[True], cand[1:] != cand[:-1]])]
    # a member is joined to the next one if it is the left end of a link
    pos = np.minimum(np.searchsorted(left, members[:-1]), left.size - 1)
    joined = (np.diff(members) == 1) & (left[pos] == members[:-1])
    starts = np.concatenate([[True], ~joined])
    ends = np.concatenate([~joined, [True]])
    gid = np.cumsum(starts) - 1
    return members, members[starts][gid], members[ends][gid]


def _ranks_from_cums(xs, qs, cum):
    """Weighted tie-averaged ranks in sorted order (numpy): ``xs`` sorted values,
    ``qs`` their weights, ``cum`` the inclusive cumulative weights. ``qs`` and
    ``cum`` may carry a trailing axis of samples that ``xs`` lacks."""
    ranks = cum - (qs - 1.0) / 2.0  # every copy of an entry shares its rank
    ties = _sparse_ties(xs)
    if ties is not None:
        members, first, last = ties
        shape = ranks.shape
        tail = shape[xs.ndim :]
        flat_r = ranks.reshape((-1,) + tail)
        flat_c = cum.reshape((-1,) + tail)
        flat_q = qs.reshape((-1,) + tail)
        flat_r[members] = (flat_c[first] - flat_q[first] + flat_c[last] + 1.0) / 2.0
        ranks = flat_r.reshape(shape)
    return ranks


def _weighted_ranks(x, q, xp):
    """Tie-averaged ranks of each row of ``x`` when entry ``p`` is repeated ``q_p`` times.

    Parameters
    ----------
    x : array (Bx, R, P)
    q : array (Bq, P), non-negative integer-valued weights (0 = entry absent)

    Returns
    -------
    array (max(Bx, Bq), R, P): the rank every copy of the entry gets in the
    expanded vector (meaningless where ``q`` is 0).
    """
    if xp is not np:
        return _weighted_ranks_indexed(x, q, xp)
    bx, r, p = x.shape
    bq = q.shape[0]
    if bx == 1:
        # one ordering for all samples: work in (R, P, B) layout, so that every
        # gather and scatter moves contiguous rows of B samples
        order = np.argsort(x[0], axis=-1)
        xs = np.take_along_axis(x[0], order, axis=-1)
        qs = q.T[order]  # (R, P, Bq)
        ranks = _ranks_from_cums(xs, qs, np.cumsum(qs, axis=1))
        out = np.empty_like(ranks)
        out[np.arange(r)[:, None], order] = ranks
        return np.ascontiguousarray(out.transpose(2, 0, 1))
    order = np.argsort(x, axis=-1)
    xs = np.take_along_axis(x, order, axis=-1)
    if bq == 1:
        qs = q[0][order]
    else:
        qs = q[np.arange(bx)[:, None, None], order]
    ranks = _ranks_from_cums(xs, qs, np.cumsum(qs, axis=-1))
    out = np.empty(x.shape, dtype=np.float64)
    np.put_along_axis(out, order, ranks, axis=-1)
    return out


def _weighted_ranks_indexed(x, q, xp):
    """:func:`_weighted_ranks` by dense index arithmetic (the CuPy path)."""
    bx, r, p = x.shape
    bq = q.shape[0]
    if bx == 1:
        # one ordering for all samples: work in (R, P, B) layout, so that every
        # gather and scatter moves contiguous rows of B samples
        order = xp.argsort(x[0], axis=-1)
        xs = xp.take_along_axis(x[0], order, axis=-1)
        start, end = _tie_groups(xs, xp)
        rows = xp.arange(r)[:, None]
        qs = q.T[order]  # (R, P, Bq)
        cum = xp.zeros((r, p + 1, bq), dtype=xp.float64)
        cum[:, 1:] = xp.cumsum(qs, axis=1)
        ranks_sorted = (cum[rows, start] + cum[rows, end + 1] + 1.0) / 2.0
        out = xp.empty_like(ranks_sorted)
        out[rows, order] = ranks_sorted
        return xp.ascontiguousarray(out.transpose(2, 0, 1))
    order = xp.argsort(x, axis=-1)
    offsets = (xp.arange(bx * r) * p).reshape(bx, r, 1)
    flat_order = (order + offsets).reshape(-1)
    xs = x.reshape(-1)[flat_order].reshape(x.shape)
    start, end = _tie_groups(xs, xp)
    if bq == 1:
        qs = q[0][order]
    else:
        qs = q[xp.arange(bx)[:, None, None], order]
    cum = xp.zeros((bx, r, p + 1), dtype=xp.float64)
    cum[..., 1:] = xp.cumsum(qs, axis=-1)
    cum_offsets = (xp.arange(bx * r) * (p + 1)).reshape(bx, r, 1)
    cum_flat = cum.reshape(-1)
    ranks_sorted = (cum_flat[start + cum_offsets] + cum_flat[end + 1 + cum_offsets] + 1.0) / 2.0
    out = xp.empty(x.size, dtype=xp.float64)
    out[flat_order] = ranks_sorted.reshape(-1)
    return out.reshape(x.shape)


def _compact(q, arrays, xp):
    """Keep, per sample, only the entries with weight > 0 (padded with weight 0).

    ``q``: (B, P); ``arrays``: each (B, R, P). Returns the compacted arrays and
    weights, with the last axis cut to the largest number of kept entries."""
    keep = q > 0
    n_keep = keep.sum(axis=1)
    width = int(n_keep.max())
    pos = xp.cumsum(keep, axis=1) - 1
    rows, cols = xp.nonzero(keep)
    idx = xp.zeros((q.shape[0], width), dtype=xp.int64)
    idx[rows, pos[rows, cols]] = cols
    pad = xp.arange(width)[None, :] >= n_keep[:, None]
    qc = xp.where(pad, 0.0, xp.take_along_axis(q, idx, axis=1))
    out = []
    for a in arrays:
        a = xp.broadcast_to(a, (q.shape[0],) + a.shape[1:])
        g = xp.take_along_axis(a, xp.broadcast_to(idx[:, None, :], a.shape[:2] + (width,)), axis=2)
        out.append(xp.where(pad[:, None, :], 0.0, g))
    return (*out, qc)


def _wcentre(x, q, xp):
    """Centre rows of ``x`` (B, R, P) on their ``q``-weighted mean (q: (Bq, P))."""
    n = q.sum(axis=-1)[:, None, None]
    return x - (x * q[:, None, :]).sum(axis=-1, keepdims=True) / n


def _safe_ratio(num, den, xp):
    ok = den > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / xp.sqrt(xp.where(ok, den, 1.0))
    return xp.where(ok, out, 0.0)
