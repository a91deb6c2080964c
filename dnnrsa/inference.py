"""Model inference for RSA: noise ceilings, bootstrap model evaluation, weighted models.

Arrays in, arrays out. Subject RDMs are a matrix ``(n_subjects, n_pairs)`` and model
RDMs a matrix ``(n_models, n_pairs)``, both upper triangles in the order of
:func:`dnnrsa.rdm.pair_indices`. The definitions follow rsatoolbox (0.3) so that results
can be compared number for number; the computation is batched over bootstrap samples,
subjects and models (numpy, or CuPy when the inputs are CuPy arrays or ``device="cuda"``).

* :func:`noise_ceiling`: lower bound = each subject against the pooled RDM of the
  others, upper bound = each subject against the pooled RDM of all, averaged over
  subjects (rsatoolbox ``boot_noise_ceiling``; pooling as rsatoolbox ``pool_rdm``:
  mean ranks for Spearman, mean of z-scored RDMs for Pearson and ``corr_cov``, mean
  of RMS-normalised RDMs for cosine and ``cosine_cov``).
* :func:`evaluate_models`: bootstrap over subjects, over stimuli or over both (the
  corrected two-factor variance of Schütt et al. 2023, rsatoolbox
  ``eval_dual_bootstrap``), with tests against zero, against the lower noise ceiling
  and between all pairs of models (FDR or Bonferroni).
* :func:`fit_weights` and :func:`crossvalidate`: non-negative weighted combinations of
  model RDMs, fitted on training subjects/conditions and evaluated on held-out ones
  (rsatoolbox ``ModelWeighted`` with ``fit_regress_nn``, ``sets_k_fold``, ``crossval``).

A stimulus bootstrap sample draws conditions with replacement. As in rsatoolbox
(``RDMs.subsample_pattern``), the dissimilarity between two copies of the same
condition is dropped, and every other pair ``(i, j)`` enters ``w_i * w_j`` times, where
``w_i`` is how often condition ``i`` was drawn. dnnrsa never builds the resampled RDMs:
every comparator is computed with these pair weights (weighted ranks for Spearman,
weighted inner products otherwise), which gives rsatoolbox's numbers exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, stats

from ._cpus import single_threaded_blas
from ._registries import COMPARATOR_REGISTRY, comparator_names
from .backend import get_namespace, to_numpy
from .rdm import (
    _whitening_terms,
    compare_rdms,
    n_conditions_from_pairs,
    pair_indices,
)

#: Comparators supported by the inference functions: those whose entry in
#: :data:`dnnrsa._registries.COMPARATOR_REGISTRY` sets ``inference``.
INFERENCE_COMPARATORS = comparator_names(inference=True)
#: The same comparators under rsatoolbox's names (from the registry).
RSATOOLBOX_NAMES = {
    name: COMPARATOR_REGISTRY[name].rsatoolbox_name for name in INFERENCE_COMPARATORS
}
#: Bootstrap modes of :func:`evaluate_models`.
MODES = ("subjects", "stimuli", "both")
#: Multiple-comparison corrections.
CORRECTIONS = ("fdr", "bonferroni", "holm", "none")

_BUDGET_BYTES = 192 * 2**20
_EPS = np.finfo(float).eps


# --------------------------------------------------------------------------- checks
def _check_method(method: str) -> None:
    supported = comparator_names(inference=True)
    if method not in supported:
        hint = ""
        if method in COMPARATOR_REGISTRY:
            hint = f" ({method} has no batched bootstrap: use spearman)"
        raise ValueError(f"method must be one of {list(supported)}; got {method!r}{hint}")


def _as_matrix(x, name: str, xp):
    x = xp.asarray(x, dtype=xp.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (n_rdms, n_pairs); got {tuple(x.shape)}")
    return x


def _check_inputs(model_rdms, data_rdms, xp, *, min_subjects=2, allow_nan=False):
    data = _as_matrix(data_rdms, "data_rdms", xp)
    models = None if model_rdms is None else _as_matrix(model_rdms, "model_rdms", xp)
    n_pairs = data.shape[1]
    if models is not None and models.shape[1] != n_pairs:
        raise ValueError(
            f"model_rdms and data_rdms must have the same number of pairs; "
            f"got {models.shape[1]} and {n_pairs}"
        )
    n_cond = n_conditions_from_pairs(n_pairs)
    if n_cond < 3:
        raise ValueError(f"at least 3 conditions are needed; got {n_cond}")
    if data.shape[0] < min_subjects:
        raise ValueError(f"at least {min_subjects} subject RDMs are needed; got {data.shape[0]}")
    if not allow_nan:
        for name, arr in (("data_rdms", data), ("model_rdms", models)):
            if arr is not None and not bool(xp.isfinite(arr).all()):
                raise ValueError(f"{name} contains NaN or infinite entries")
    return models, data, n_cond


# --------------------------------------------------------------------------- weighted ranks
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


# --------------------------------------------------------------------------- the engine
@dataclass
class _Engine:
    """Evaluations and noise ceilings for batches of bootstrap weights."""

    models: object  # (M, P) or None
    data: object  # (S, P)
    method: str
    xp: object
    n_cond: int
    base: object = field(init=False)

    def __post_init__(self):
        xp = self.xp
        parts = [self.data]
        if self.models is not None:
            parts.append(self.models)
        base = xp.concatenate(parts, axis=0)
        if self.method in ("pearson", "corr_cov"):
            # a shift by a constant is undone by the centring below; it keeps
            # the Gram matrices free of cancellation
            base = base - base.mean(axis=1, keepdims=True)
        ones = xp.ones((1, base.shape[1]), dtype=xp.float64)
        self.base = xp.concatenate([base, ones], axis=0)
        self.n_sub = self.data.shape[0]
        self.n_mod = 0 if self.models is None else self.models.shape[0]
        if self.method != "spearman":
            # products of every pair of base vectors: a weighted Gram matrix for a
            # whole batch of samples is then one matrix product
            k = self.base.shape[0]
            ti, tj = np.triu_indices(k)
            self._tri = (xp.asarray(ti), xp.asarray(tj))
            self._products = self.base[self._tri[0]] * self.base[self._tri[1]]
            n = self.n_cond
            iu, ju = pair_indices(n)
            sq = xp.zeros((k, n, n), dtype=xp.float64)
            sq[:, xp.asarray(iu), xp.asarray(ju)] = self.base
            sq[:, xp.asarray(ju), xp.asarray(iu)] = self.base
            self._square = sq.reshape(k * n, n)

    # ----------------------------------------------------------------- Gram path
    def _gram(self, q):
        xp = self.xp
        k = self.base.shape[0]
        flat = q @ self._products.T  # (Bq, K(K+1)/2)
        g = xp.zeros((q.shape[0], k, k), dtype=xp.float64)
        g[:, self._tri[0], self._tri[1]] = flat
        g[:, self._tri[1], self._tri[0]] = flat
        return g

    def _whitened(self, gp, q, c, w):
        xp = self.xp
        k = self.base.shape[0]
        n = self.n_cond
        if w is None:
            rhs, sol = _whitening_terms(self.base[None], q, c, xp)
            return 2.0 * gp - xp.matmul(rhs, sol)
        # product weights q_ij = w_i w_j: rhs_k = w * (X_k @ w) and A from w alone
        b = w.shape[0]
        rhs = (self._square @ w.T).reshape(k, n, b).transpose(2, 0, 1) * w[:, None, :]
        total = w.sum(axis=1, keepdims=True)
        a = w[:, :, None] * w[:, None, :] / 2.0
        idx = xp.arange(n)
        diag = (w * (total - w)) / 2.0 + w
        a[:, idx, idx] = xp.where(diag > 0, diag, 1.0)
        sol = xp.linalg.solve(a, xp.swapaxes(rhs, 1, 2))
        return 2.0 * gp - xp.matmul(rhs, sol)

    def _metric(self, q, c, w):
        """Metric Gram matrix of subjects and models (Bq, S+M, S+M) and pooling scales."""
        xp = self.xp
        k1 = self.base.shape[0] - 1
        gp = self._gram(q)
        if self.method in ("corr_cov", "cosine_cov"):
            g = self._whitened(gp, q, c, w)
        else:
            g = gp
        n = gp[:, k1, k1]
        if self.method in ("pearson", "corr_cov"):
            mu = gp[:, :, k1] / n[:, None]  # q-weighted mean of every base vector
            t = xp.broadcast_to(xp.eye(k1 + 1), gp.shape).copy()
            t[:, :, k1] -= mu
            g = xp.matmul(xp.matmul(t, g), xp.swapaxes(t, 1, 2))
            gpc = xp.matmul(xp.matmul(t, gp), xp.swapaxes(t, 1, 2))
            spread = xp.einsum("bii->bi", gpc)[:, : self.n_sub] / n[:, None]
        else:
            spread = xp.einsum("bii->bi", gp)[:, : self.n_sub] / n[:, None]
        with np.errstate(divide="ignore"):
            scale = xp.where(spread > 0, 1.0 / xp.sqrt(xp.where(spread > 0, spread, 1.0)), 0.0)
        return g[:, :k1, :k1], scale

    def _gram_batch(self, q, c, w, cnts):
        xp = self.xp
        s = self.n_sub
        gm, scale = self._metric(q, c, w)
        diag = xp.einsum("bii->bi", gm)
        ds = diag[:, :s]
        gss = gm[:, :s, :s]
        sim = None
        if self.n_mod:
            sim = _safe_ratio(gm[:, s:, :s], diag[:, s:, None] * ds[:, None, :], xp)
        out = []
        for cnt in cnts:
            evals = None if sim is None else (sim * cnt[:, None, :]).sum(axis=-1) / s
            a = cnt * scale
            ga = xp.einsum("bst,bt->bs", gss, a)
            aga = (a * ga).sum(axis=-1)
            upper = _safe_ratio(ga, aga[:, None] * ds, xp)
            lower = _safe_ratio(ga - a * ds, (aga[:, None] - 2 * a * ga + a * a * ds) * ds, xp)
            out.append((evals, xp.where(cnt >= s, upper, lower), upper))
        return out

    # ----------------------------------------------------------------- rank path
    def _rank_batch(self, q, cnts):
        xp = self.xp
        s = self.n_sub
        rs = _weighted_ranks(self.data[None], q, xp)
        zs = _wcentre(rs, q, xp)
        qx = q[:, None, :]
        ns = (zs * zs * qx).sum(axis=-1)  # (Bq, S)
        sim = None
        if self.n_mod:
            zm = _wcentre(_weighted_ranks(self.models[None], q, xp), q, xp)
            nm = (zm * zm * qx).sum(axis=-1)
            inner = xp.matmul(zm * qx, xp.ascontiguousarray(xp.swapaxes(zs, 1, 2)))
            sim = _safe_ratio(inner, nm[:, :, None] * ns[:, None, :], xp)
        if q.shape[0] > 1:
            # drop the pairs no sample uses (a pair of an undrawn condition), padding
            # every sample to the same length with weight-0 entries, before the
            # per-sample ranking of the pooled RDMs
            rs, zs, q = _compact(q, [rs, zs], xp)
        out = []
        for cnt in cnts:
            evals = None if sim is None else (sim * cnt[:, None, :]).sum(axis=-1) / s
            pool = xp.matmul(cnt[:, None, :], rs)[:, 0]
            pooled = xp.concatenate([pool[:, None, :] - cnt[:, :, None] * rs, pool[:, None, :]], 1)
            corr = self._paired_rank_corr(pooled, zs, ns, q)
            lower, upper = corr[:, :s], corr[:, s:]
            out.append((evals, xp.where(cnt >= s, upper, lower), upper))
        return out

    def _paired_rank_corr(self, pooled, zs, ns, q):
        xp = self.xp
        rp = _wcentre(_weighted_ranks(pooled, q, xp), q, xp)
        qx = q[:, None, :]
        rq = rp * qx
        if rp.shape[1] > zs.shape[1]:  # the last row (pooled over all) against every subject
            inner = xp.concatenate(
                [
                    (rq[:, :-1] * zs).sum(axis=-1),
                    xp.matmul(xp.broadcast_to(zs, rq[:, :-1].shape), rq[:, -1, :, None])[..., 0],
                ],
                axis=1,
            )
            npool = (rq * rp).sum(axis=-1)
            npool = xp.concatenate(
                [npool[:, :-1], xp.broadcast_to(npool[:, -1:], npool[:, :-1].shape)], axis=1
            )
            ns = xp.concatenate([ns, ns], axis=1)
        else:
            inner = (rq * zs).sum(axis=-1)
            npool = (rq * rp).sum(axis=-1)
        return _safe_ratio(inner, npool * ns, xp)

    # ----------------------------------------------------------------- public
    def batch(self, q, c, cnts, w=None):
        """Model evaluations (B, M) and noise ceilings (B, 2), one pair per subject-count
        array in ``cnts`` (each (B, S)), for pair weights ``q`` (Bq, P) and condition
        weights ``c`` (Bq, n); ``w`` (Bq, n) when ``q`` are the products ``w_i w_j``."""
        xp = self.xp
        if self.method == "spearman":
            parts = self._rank_batch(q, cnts)
        else:
            parts = self._gram_batch(q, c, w, cnts)
        out = []
        for cnt, (evals, lower, upper) in zip(cnts, parts, strict=True):
            present = (cnt > 0).astype(xp.float64)
            n_present = present.sum(axis=-1)
            nc = xp.stack(
                [(lower * present).sum(-1) / n_present, (upper * present).sum(-1) / n_present],
                axis=-1,
            )
            out.append((evals, nc))
        return out

    def per_sample_bytes(self) -> int:
        k = self.base.shape[0]
        p = self.base.shape[1]
        if self.method == "spearman":
            return int(8 * p * k * 12)
        return int(8 * (k * k * 6 + self.n_cond**2 * (k + 2) + p * 2))


def _pair_weights(w, xp):
    """Pair weights ``w_i * w_j`` (B, P) from condition counts ``w`` (B, n)."""
    iu, ju = pair_indices(w.shape[1])
    return w[:, xp.asarray(iu)] * w[:, xp.asarray(ju)]


# --------------------------------------------------------------------------- noise ceiling
def noise_ceiling(data_rdms, method: str = "spearman", *, device: str | None = None):
    """Lower and upper bound of the noise ceiling of a set of subject RDMs.

    Lower bound: each subject compared with the pooled RDM of all other subjects;
    upper bound: each subject compared with the pooled RDM of all subjects; both
    averaged over subjects. Identical to rsatoolbox's
    ``boot_noise_ceiling(rdms, method)`` (Nili et al. 2014).

    Parameters
    ----------
    data_rdms : array (n_subjects, n_pairs)
        Entries that are NaN in any subject are dropped from all.
    method : {"spearman", "pearson", "cosine", "corr_cov", "cosine_cov"}
    device : {"auto", "cpu", "cuda"}, optional

    Returns
    -------
    (lower, upper) : tuple of float
    """
    _check_method(method)
    xp = get_namespace(data_rdms, device=device)
    _, data, n_cond = _check_inputs(None, data_rdms, xp, allow_nan=True)
    keep = xp.isfinite(data).all(axis=0)
    q = keep.astype(xp.float64)[None, :]
    data = xp.where(keep[None, :], data, 0.0)
    engine = _Engine(None, data, method, xp, n_cond)
    ((_, nc),) = engine.batch(q, xp.ones((1, n_cond)), [xp.ones((1, data.shape[0]))])
    nc = to_numpy(nc)[0]
    return float(nc[0]), float(nc[1])


# --------------------------------------------------------------------------- corrections
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


# --------------------------------------------------------------------------- result
@dataclass(frozen=True)
class ModelEvaluation:
    """Evaluation of model RDMs against subject RDMs with bootstrap statistics.

    Arrays over models have length ``n_models``; pairwise arrays are
    ``(n_models, n_models)`` with ``p_pairwise[i, j]`` testing model i against j.
    """

    method: str
    mode: str
    model_names: tuple
    point: np.ndarray  #: evaluation on the full data (mean over subjects)
    mean: np.ndarray  #: mean over bootstrap samples (rsatoolbox's ``get_means``)
    se: np.ndarray  #: bootstrap standard error (corrected as rsatoolbox)
    ci: np.ndarray  #: (2, n_models) t-based confidence interval around ``mean``
    p_zero: np.ndarray  #: one-sided t-test of mean > 0
    p_noise_ceiling: np.ndarray  #: two-sided t-test of mean vs lower noise ceiling
    p_pairwise: np.ndarray  #: two-sided t-tests of all model differences
    p_zero_adjusted: np.ndarray
    p_noise_ceiling_adjusted: np.ndarray
    p_pairwise_adjusted: np.ndarray
    noise_ceiling: np.ndarray  #: (lower, upper), mean over bootstrap samples
    noise_ceiling_point: np.ndarray  #: (lower, upper) on the full data
    variance: np.ndarray  #: model variances (as ``se**2``)
    diff_variance: np.ndarray  #: (n_models, n_models) variances of differences
    nc_variance: np.ndarray  #: (n_models, 2) variances of model - noise ceiling
    dof: int
    correction: str
    alpha: float
    ci_level: float
    n_boot: int  #: usable bootstrap samples
    samples: np.ndarray  #: (n_boot, n_models) evaluations, both factors resampled
    nc_samples: np.ndarray  #: (n_boot, 2)

    @property
    def significant_pairwise(self) -> np.ndarray:
        """Boolean (n_models, n_models): pairs that differ after correction."""
        return np.nan_to_num(self.p_pairwise_adjusted, nan=1.0) <= self.alpha

    def better_than(self) -> np.ndarray:
        """Boolean (n_models, n_models): model i significantly better than model j."""
        diff = self.mean[:, None] - self.mean[None, :]
        return self.significant_pairwise & (diff > 0)

    def table(self):
        """One row per model: a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(
            {
                "model": list(self.model_names),
                "point": self.point,
                "mean": self.mean,
                "se": self.se,
                "ci_low": self.ci[0],
                "ci_high": self.ci[1],
                "p_zero": self.p_zero,
                "p_zero_adjusted": self.p_zero_adjusted,
                "p_noise_ceiling": self.p_noise_ceiling,
                "p_noise_ceiling_adjusted": self.p_noise_ceiling_adjusted,
            }
        )

    def pairwise_table(self):
        """One row per pair of models (i < j): a pandas DataFrame."""
        import pandas as pd

        i, j = np.triu_indices(len(self.model_names), 1)
        names = np.asarray(self.model_names, dtype=object)
        return pd.DataFrame(
            {
                "model_a": names[i],
                "model_b": names[j],
                "difference": self.mean[i] - self.mean[j],
                "se": np.sqrt(np.maximum(self.diff_variance[i, j], 0.0)),
                "p": self.p_pairwise[i, j],
                "p_adjusted": self.p_pairwise_adjusted[i, j],
                "significant": self.significant_pairwise[i, j],
            }
        )


# --------------------------------------------------------------------------- variances
def _variance_parts(cov, n_mod):
    """Model variances, variances of pairwise differences, of model - noise ceiling."""
    model_var = np.diagonal(cov, axis1=-2, axis2=-1)[..., :n_mod]
    cmm = cov[..., :n_mod, :n_mod]
    dmm = np.diagonal(cmm, axis1=-2, axis2=-1)
    diff_var = dmm[..., :, None] + dmm[..., None, :] - 2 * cmm
    nc_var = (
        model_var[..., :, None]
        - 2 * cov[..., :n_mod, n_mod:]
        + np.diagonal(cov, axis1=-2, axis2=-1)[..., None, n_mod:]
    )
    return model_var, diff_var, nc_var


def _dual(v, n_rdm, n_pattern):
    """rsatoolbox's two-factor combination (``_dual_bootstrap``, small-sample form)."""
    fr = n_rdm / (n_rdm - 1)
    fp = n_pattern / (n_pattern - 1)
    out = fr * v[1] + fp * v[2] - fr * fp * (v[0] - v[1] - v[2])
    out = np.maximum(np.maximum(out, fr * v[1]), fp * v[2])
    return np.minimum(out, v[0])


def _cov(x):
    x = x - x.mean(axis=0, keepdims=True)
    return x.T @ x / (x.shape[0] - 1)


# --------------------------------------------------------------------------- bootstrap
def bootstrap_counts(n_boot: int, n_subjects: int, n_conditions: int, mode: str, seed=None):
    """Draw bootstrap samples as counts: how often each subject and condition is drawn.

    Returns
    -------
    subject_counts : int array (n_boot, n_subjects) (all ones for ``"stimuli"``)
    condition_counts : int array (n_boot, n_conditions) (all ones for ``"subjects"``)
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}; got {mode!r}")
    rng = np.random.default_rng(seed)
    rows = np.arange(n_boot)[:, None]
    cnt = np.ones((n_boot, n_subjects), dtype=np.int64)
    w = np.ones((n_boot, n_conditions), dtype=np.int64)
    if mode in ("subjects", "both"):
        cnt = np.zeros((n_boot, n_subjects), dtype=np.int64)
        np.add.at(cnt, (rows, rng.integers(0, n_subjects, (n_boot, n_subjects))), 1)
    if mode in ("stimuli", "both"):
        w = np.zeros((n_boot, n_conditions), dtype=np.int64)
        np.add.at(w, (rows, rng.integers(0, n_conditions, (n_boot, n_conditions))), 1)
    return cnt, w


def evaluate_samples(
    model_rdms, data_rdms, subject_counts, condition_counts, method="spearman", *, device=None
):
    """Evaluations and noise ceilings for given bootstrap samples (batched).

    Parameters
    ----------
    model_rdms : array (n_models, n_pairs)
    data_rdms : array (n_subjects, n_pairs)
    subject_counts : int array (B, n_subjects)
        How often each subject is in each sample.
    condition_counts : int array (B, n_conditions) or None
        How often each condition is in each sample (None: every condition once).
    method : str

    Returns
    -------
    evaluations : array (B, n_models)
        Mean over the resampled subjects of each model's comparison with them,
        NaN for samples with fewer than 3 distinct conditions.
    noise_ceiling : array (B, 2)
    """
    _check_method(method)
    xp = get_namespace(model_rdms, data_rdms, device=device)
    models, data, n_cond = _check_inputs(model_rdms, data_rdms, xp)
    engine = _Engine(models, data, method, xp, n_cond)
    cnt = np.asarray(subject_counts, dtype=np.float64)
    w = None if condition_counts is None else np.asarray(condition_counts, dtype=np.float64)
    return _run(engine, [cnt], w)[0]


def _run(engine, cnts, w, chunk: int | None = None, n_jobs: int = 1):
    """Evaluate all samples in chunks, once per subject-count array in ``cnts``; ``w``
    (condition counts) None means all conditions once."""
    xp = engine.xp
    b = cnts[0].shape[0]
    chunk = chunk or max(1, _BUDGET_BYTES // engine.per_sample_bytes())
    out = [(np.full((b, engine.n_mod), np.nan), np.full((b, 2), np.nan)) for _ in cnts]

    def one(start):
        stop = min(b, start + chunk)
        cnt_x = [xp.asarray(cnt[start:stop]) for cnt in cnts]
        if w is None:
            q1 = xp.ones((1, engine.base.shape[1]))
            parts = engine.batch(q1, xp.ones((1, engine.n_cond)), cnt_x)
            valid = np.ones(stop - start, dtype=bool)
        else:
            w_x = xp.asarray(w[start:stop])
            parts = engine.batch(_pair_weights(w_x, xp), w_x, cnt_x, w=w_x)
            valid = (w[start:stop] > 0).sum(axis=1) >= 3
        for (evals, nc), (ev, n) in zip(out, parts, strict=True):
            if ev is not None:
                evals[start:stop] = np.where(valid[:, None], to_numpy(ev), np.nan)
            nc[start:stop] = np.where(valid[:, None], to_numpy(n), np.nan)

    starts = range(0, b, chunk)  # chunks of samples, batched inside
    with single_threaded_blas(xp):
        if n_jobs > 1 and xp is np and len(starts) > 1:
            # numpy releases the GIL in its sorts and array loops
            with ThreadPoolExecutor(max_workers=n_jobs) as pool:
                list(pool.map(one, starts))
        else:
            for start in starts:
                one(start)
    return out


def evaluate_models(
    model_rdms,
    data_rdms,
    method: str = "spearman",
    *,
    mode: str = "both",
    n_boot: int = 1000,
    seed=None,
    model_names: Sequence[str] | None = None,
    correction: str = "fdr",
    alpha: float = 0.05,
    ci: float = 0.95,
    device: str | None = None,
    n_jobs: int = 1,
) -> ModelEvaluation:
    """Evaluate model RDMs against subject RDMs with a bootstrap.

    Parameters
    ----------
    model_rdms : array (n_models, n_pairs)
    data_rdms : array (n_subjects, n_pairs)
        One RDM per subject; finite.
    method : {"spearman", "pearson", "cosine", "corr_cov", "cosine_cov"}
    mode : {"subjects", "stimuli", "both"}
        What is treated as a random effect. ``"subjects"``: resample subjects
        (rsatoolbox ``eval_bootstrap_rdm``); ``"stimuli"``: resample conditions
        (``eval_bootstrap_pattern``); ``"both"``: resample both and combine the
        variances of the three bootstraps (both, subjects only, stimuli only) into
        the corrected two-factor estimate of Schütt et al. (2023), as rsatoolbox's
        ``eval_dual_bootstrap``.
    n_boot : int
    seed : int or numpy Generator, optional
    model_names : sequence of str, optional
    correction : {"fdr", "bonferroni", "none"}
        Control over the family of pairwise tests (and, separately, over the
        tests against zero and against the noise ceiling across models).
    alpha, ci : float
        Significance level of the corrected tests; confidence level.
    device : {"auto", "cpu", "cuda"}, optional
    n_jobs : int
        Threads over chunks of bootstrap samples (CPU only); the results do not
        depend on it.

    Returns
    -------
    ModelEvaluation

    Notes
    -----
    Variances are the bootstrap covariances of the evaluations (and of the noise
    ceiling bounds) multiplied by ``n / (n - 1)`` for the resampled factor, as in
    rsatoolbox; t-tests use ``n - 1`` degrees of freedom (``min(n_subjects,
    n_conditions) - 1`` for two factors). For ``"both"``, ``mean`` is the average of
    the three bootstraps' means, as in rsatoolbox.
    """
    _check_method(method)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}; got {mode!r}")
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {list(CORRECTIONS)}; got {correction!r}")
    if not 0 < ci < 1 or not 0 < alpha < 1:
        raise ValueError("ci and alpha must lie strictly between 0 and 1")
    if int(n_boot) < 2:
        raise ValueError(f"n_boot must be at least 2; got {n_boot}")
    xp = get_namespace(model_rdms, data_rdms, device=device)
    models, data, n_cond = _check_inputs(model_rdms, data_rdms, xp)
    n_sub, n_mod = data.shape[0], models.shape[0]
    if model_names is None:
        model_names = tuple(f"model{i + 1}" for i in range(n_mod))
    model_names = tuple(str(m) for m in model_names)
    if len(model_names) != n_mod:
        raise ValueError(f"model_names has {len(model_names)} names for {n_mod} models")
    engine = _Engine(models, data, method, xp, n_cond)
    ((point, nc_point),) = _run(engine, [np.ones((1, n_sub))], None)

    cnt, w = bootstrap_counts(int(n_boot), n_sub, n_cond, mode, seed)
    cnt = cnt.astype(float)
    w = w.astype(float)
    if mode == "subjects":
        kinds = _run(engine, [cnt], None, n_jobs=n_jobs)
    elif mode == "stimuli":
        kinds = _run(engine, [cnt], w, n_jobs=n_jobs)
    else:  # both factors, subjects only, stimuli only (same draws)
        both, stimuli_only = _run(engine, [cnt, np.ones_like(cnt)], w, n_jobs=n_jobs)
        (subjects_only,) = _run(engine, [cnt], None, n_jobs=n_jobs)
        kinds = [both, subjects_only, stimuli_only]
    ok = np.all([np.isfinite(k[0][:, 0]) for k in kinds], axis=0)
    if ok.sum() < 2:
        raise ValueError("fewer than 2 usable bootstrap samples")
    covs = np.stack([_cov(np.concatenate([e[ok], n[ok]], axis=1)) for e, n in kinds])
    parts = _variance_parts(covs, n_mod)
    if mode == "both":
        model_var, diff_var, nc_var = (_dual(v, n_sub, n_cond) for v in parts)
        dof = min(n_sub, n_cond) - 1
    else:
        n_factor = n_sub if mode == "subjects" else n_cond
        f = n_factor / (n_factor - 1)
        model_var, diff_var, nc_var = (v[0] * f for v in parts)
        dof = n_factor - 1
    mean = np.mean([e[ok].mean(axis=0) for e, _ in kinds], axis=0)
    nc_mean = np.mean([n[ok].mean(axis=0) for _, n in kinds], axis=0)
    return _result(
        method=method,
        mode=mode,
        model_names=model_names,
        point=point[0],
        mean=mean,
        variances=(model_var, diff_var, nc_var),
        dof=dof,
        noise_ceiling=nc_mean,
        noise_ceiling_point=nc_point[0],
        correction=correction,
        alpha=alpha,
        ci=ci,
        samples=kinds[0][0][ok],
        nc_samples=kinds[0][1][ok],
    )


def _result(
    *, mean, variances, dof, noise_ceiling, correction, alpha, ci, samples, **fields
) -> ModelEvaluation:
    """Tests, corrections and intervals from means and (corrected) variances."""
    model_var, diff_var, nc_var = variances
    n_mod = mean.shape[0]
    se = np.sqrt(np.maximum(model_var, 0.0))
    tcrit = stats.t.ppf(1 - (1 - ci) / 2, dof)
    p_zero = stats.t.sf(mean / np.sqrt(np.maximum(model_var, _EPS)), dof)
    p_nc = 2 * stats.t.sf(
        np.abs(mean - noise_ceiling[0]) / np.sqrt(np.maximum(nc_var[:, 0], _EPS)), dof
    )
    diff = mean[:, None] - mean[None, :]
    p_pair = 2 * stats.t.sf(np.abs(diff) / np.sqrt(np.maximum(diff_var, _EPS)), dof)
    np.fill_diagonal(p_pair, np.nan)
    iu = np.triu_indices(n_mod, 1)
    p_pair_adj = np.full_like(p_pair, np.nan)
    p_pair_adj[iu] = adjust_pvalues(p_pair[iu], correction)
    p_pair_adj.T[iu] = p_pair_adj[iu]
    return ModelEvaluation(
        mean=mean,
        se=se,
        ci=np.stack([mean - tcrit * se, mean + tcrit * se]),
        p_zero=p_zero,
        p_noise_ceiling=p_nc,
        p_pairwise=p_pair,
        p_zero_adjusted=adjust_pvalues(p_zero, correction),
        p_noise_ceiling_adjusted=adjust_pvalues(p_nc, correction),
        p_pairwise_adjusted=p_pair_adj,
        noise_ceiling=noise_ceiling,
        variance=model_var,
        diff_variance=diff_var,
        nc_variance=nc_var,
        dof=int(dof),
        correction=correction,
        alpha=float(alpha),
        ci_level=float(ci),
        n_boot=int(samples.shape[0]),
        samples=samples,
        **fields,
    )


# --------------------------------------------------------------------------- weighted models
def _rdm_covariance(n_cond: int) -> np.ndarray:
    """Covariance of RDM entries under i.i.d. pattern noise (rsatoolbox ``get_v``)."""
    iu, ju = pair_indices(n_cond)
    contrast = np.zeros((iu.size, n_cond))
    rows = np.arange(iu.size)
    contrast[rows, iu] = 1.0
    contrast[rows, ju] = -1.0
    xi = contrast @ contrast.T
    return xi * xi


def _pool_for_fit(data: np.ndarray, method: str, v_inv: np.ndarray | None) -> np.ndarray:
    """The pooled data RDM that rsatoolbox's ``fit_regress_nn`` regresses on
    (``rsatoolbox.util.pooling.pool_rdm``); the additive constants it adds do not
    change the fit and are left out."""
    if method == "cosine":
        return (data / np.sqrt(np.mean(data**2, axis=1, keepdims=True))).mean(axis=0)
    if method == "cosine_cov":
        norms = np.einsum("sp,pq,sq->s", data, v_inv, data)
        return (data / np.sqrt(norms)[:, None]).mean(axis=0)
    centred = data - data.mean(axis=1, keepdims=True)
    if method == "corr_cov":
        norms = np.einsum("sp,pq,sq->s", centred, v_inv, centred)
        pooled = (centred / np.sqrt(norms)[:, None]).mean(axis=0)
    else:  # pearson, and the rank comparators fitted by the same linear objective
        pooled = (centred / centred.std(axis=1, keepdims=True)).mean(axis=0)
    return pooled - pooled.mean()


def fit_weights(model_rdms, data_rdms, method: str = "cosine", *, normalize: bool = True):
    """Non-negative weights of a combination of model RDMs fitted to subject RDMs.

    The objective is rsatoolbox's ``fit_regress_nn`` for ``ModelWeighted`` (which
    maximises the same criterion as ``fit_optimize_positive``): the pooled data RDM
    (mean of RMS-normalised RDMs for cosine, of z-scored RDMs for pearson) is
    regressed on the model RDMs by non-negative least squares, with the model RDMs
    centred for pearson and ``corr_cov``, and in the metric of the inverse RDM
    covariance ``V`` (rsatoolbox ``get_v`` with ``sigma_k=None``) for the whitened
    comparators. Rank comparators (spearman) have no least-squares objective; their
    weights are fitted as for pearson.

    Parameters
    ----------
    model_rdms : array (n_components, n_pairs)
    data_rdms : array (n_subjects, n_pairs)
        Finite training RDMs.
    method : {"spearman", "pearson", "cosine", "corr_cov", "cosine_cov"}
    normalize : bool
        Scale the weights to unit norm (as rsatoolbox); the comparators do not
        depend on the scale.

    Returns
    -------
    weights : array (n_components,), non-negative
    """
    _check_method(method)
    models, data, n_cond = _check_inputs(model_rdms, data_rdms, np, min_subjects=1)
    a = models.T
    if method in ("pearson", "corr_cov", "spearman"):
        a = a - a.mean(axis=0, keepdims=True)
    v_inv = None
    if method in ("corr_cov", "cosine_cov"):
        v_inv = np.linalg.inv(_rdm_covariance(n_cond))
    y = _pool_for_fit(data, method, v_inv)
    if v_inv is None:
        weights, _ = optimize.nnls(a, y)
    else:
        # (y - a x)' V^-1 (y - a x) = |L' x - L^-1 b|^2 + const with L L' = a' V^-1 a
        gram = a.T @ v_inv @ a
        chol = np.linalg.cholesky(gram + 1e-14 * np.trace(gram) * np.eye(gram.shape[0]))
        weights, _ = optimize.nnls(chol.T, np.linalg.solve(chol, a.T @ v_inv @ y))
    norm = np.sqrt(np.sum(weights**2))
    if normalize and norm > 0:
        weights = weights / norm
    return weights


def _k_fold_groups(items: np.ndarray, k: int) -> list[np.ndarray]:
    """rsatoolbox's ``sets_k_fold`` grouping of (possibly shuffled) items into k folds."""
    n = len(items)
    if k < 1 or k > n:
        raise ValueError(f"cannot make {k} folds of {n} items")
    size = n // k
    extra = n % k
    groups = []
    for g in range(k):
        idx = list(range(g * size, (g + 1) * size))
        if g < extra:
            idx.append(n - (g + 1))
        groups.append(np.sort(items[idx]))
    return groups


def _default_k_subjects(n: float) -> int:
    return 2 if n < 6 else 3 if n < 12 else 4 if n < 20 else 5


def _default_k_conditions(n: float) -> int:
    return 2 if n < 12 else 3 if n < 24 else 4 if n < 40 else 5


def make_folds(
    n_subjects: int,
    n_conditions: int,
    k_subjects: int | None = None,
    k_conditions: int | None = None,
    *,
    seed=None,
    shuffle: bool = True,
):
    """Training/test splits over subjects and conditions (rsatoolbox ``sets_k_fold``).

    ``k_subjects * k_conditions`` folds; k = 1 means no cross-validation over that
    factor (training and test sets are then the same). Defaults follow rsatoolbox
    (``default_k_rdm`` and ``default_k_pattern``). With ``shuffle`` the subjects, and
    the conditions within each subject fold, are assigned at random.

    Returns
    -------
    list of dict with integer arrays ``train_subjects``, ``test_subjects``,
    ``train_conditions``, ``test_conditions``.
    """
    k_subjects = _default_k_subjects(n_subjects) if k_subjects is None else int(k_subjects)
    k_conditions = (
        _default_k_conditions(n_conditions) if k_conditions is None else int(k_conditions)
    )
    rng = np.random.default_rng(seed)
    subjects = np.arange(n_subjects)
    if shuffle:
        subjects = rng.permutation(subjects)
    folds = []
    for test_s in _k_fold_groups(subjects, k_subjects):
        train_s = test_s if k_subjects == 1 else np.setdiff1d(np.arange(n_subjects), test_s)
        conds = np.arange(n_conditions)
        if shuffle:
            conds = rng.permutation(conds)
        for test_c in _k_fold_groups(conds, k_conditions):
            train_c = test_c if k_conditions == 1 else np.setdiff1d(np.arange(n_conditions), test_c)
            folds.append(
                {
                    "train_subjects": train_s,
                    "test_subjects": test_s,
                    "train_conditions": train_c,
                    "test_conditions": test_c,
                }
            )
    return folds


def _pairs_within(conditions: np.ndarray, n_cond: int) -> np.ndarray:
    iu, ju = pair_indices(n_cond)
    inside = np.zeros(n_cond, dtype=bool)
    inside[conditions] = True
    return np.flatnonzero(inside[iu] & inside[ju])


def _pool_for_ceiling(data: np.ndarray, method: str) -> np.ndarray:
    """rsatoolbox ``inference_util.pool_rdm`` (finite input), up to constants."""
    if method == "spearman":
        return np.mean([stats.rankdata(d) for d in data], axis=0)
    if method in ("cosine", "cosine_cov"):
        return (data / np.sqrt(np.mean(data**2, axis=1, keepdims=True))).mean(axis=0)
    centred = data - data.mean(axis=1, keepdims=True)
    return (centred / centred.std(axis=1, keepdims=True)).mean(axis=0)


def _compare_mean(pred: np.ndarray, data: np.ndarray, method: str) -> float:
    """Mean comparison of one RDM with subject RDMs (0 for a constant prediction, as
    rsatoolbox)."""
    if np.ptp(pred) == 0 and not (method in ("cosine", "cosine_cov") and np.any(pred)):
        return 0.0
    return float(np.mean(to_numpy(compare_rdms(pred, data, method))))


@dataclass(frozen=True)
class CrossValidation:
    """Cross-validated evaluation of fixed and weighted models."""

    method: str
    model_names: tuple
    evaluations: np.ndarray  #: (n_models, n_folds)
    mean: np.ndarray  #: (n_models,) mean over folds
    noise_ceiling: np.ndarray  #: (lower, upper) mean over folds
    noise_ceiling_folds: np.ndarray  #: (n_folds, 2)
    weights: tuple  #: per model, (n_folds, n_components) fitted weights (None if fixed)
    folds: tuple  #: the splits, as from :func:`make_folds`


def crossvalidate(
    models: Sequence,
    data_rdms,
    method: str = "cosine",
    *,
    folds: Sequence[dict] | None = None,
    k_subjects: int | None = None,
    k_conditions: int | None = None,
    seed=None,
    model_names: Sequence[str] | None = None,
) -> CrossValidation:
    """Fit weighted models on training subjects/conditions and evaluate them on held-out ones.

    Parameters
    ----------
    models : sequence
        Each entry is either one RDM ``(n_pairs,)`` (a fixed model) or a stack
        ``(n_components, n_pairs)`` combined with non-negative weights fitted by
        :func:`fit_weights` on each fold's training subjects and conditions.
    data_rdms : array (n_subjects, n_pairs)
    method : {"spearman", "pearson", "cosine", "corr_cov", "cosine_cov"}
    folds : sequence of dict, optional
        Splits as returned by :func:`make_folds`; by default
        ``make_folds(n_subjects, n_conditions, k_subjects, k_conditions, seed=seed)``.

    Returns
    -------
    CrossValidation
        Per fold: the model's mean comparison with the test subjects' RDMs on the
        test conditions; the noise ceiling of rsatoolbox's ``cv_noise_ceiling``
        (lower: pooled training subjects on the test conditions; upper: pooled all
        subjects, restricted to the test conditions).
    """
    _check_method(method)
    data = _as_matrix(to_numpy(data_rdms), "data_rdms", np)
    _, data, n_cond = _check_inputs(None, data, np)
    entries = [np.asarray(to_numpy(m), dtype=np.float64) for m in models]
    for e in entries:
        if e.shape[-1] != data.shape[1] or e.ndim not in (1, 2):
            raise ValueError("each model must be an RDM (n_pairs,) or a stack (k, n_pairs)")
    names = tuple(model_names or (f"model{i + 1}" for i in range(len(entries))))
    if len(names) != len(entries):
        raise ValueError(f"model_names has {len(names)} names for {len(entries)} models")
    if folds is None:
        folds = make_folds(data.shape[0], n_cond, k_subjects, k_conditions, seed=seed)
    pooled_all = _pool_for_ceiling(data, method)
    evals = np.full((len(entries), len(folds)), np.nan)
    ncs = np.full((len(folds), 2), np.nan)
    weights = [np.full((len(folds), e.shape[0]), np.nan) if e.ndim == 2 else None for e in entries]
    for f, fold in enumerate(folds):  # a few folds; each fold is batched
        train_p = _pairs_within(np.asarray(fold["train_conditions"]), n_cond)
        test_p = _pairs_within(np.asarray(fold["test_conditions"]), n_cond)
        train_s = np.asarray(fold["train_subjects"])
        test_s = np.asarray(fold["test_subjects"])
        test_data = data[np.ix_(test_s, test_p)]
        ceil = _pool_for_ceiling(data[np.ix_(train_s, test_p)], method)
        ncs[f] = [
            _compare_mean(ceil, test_data, method),
            _compare_mean(pooled_all[test_p], test_data, method),
        ]
        if len(fold["train_conditions"]) <= 2 or len(fold["test_conditions"]) <= 2:
            continue
        for m, e in enumerate(entries):
            if e.ndim == 1:
                pred = e[test_p]
            else:
                theta = fit_weights(e[:, train_p], data[np.ix_(train_s, train_p)], method)
                weights[m][f] = theta
                pred = theta @ e[:, test_p]
            evals[m, f] = _compare_mean(pred, test_data, method)
    return CrossValidation(
        method=method,
        model_names=names,
        evaluations=evals,
        mean=np.nanmean(evals, axis=1),
        noise_ceiling=ncs.mean(axis=0),
        noise_ceiling_folds=ncs,
        weights=tuple(weights),
        folds=tuple(folds),
    )


def _crossval_sample(models, data, method, counts, folds):
    """Cross-validation on one subject-bootstrap sample.

    ``counts[s]``: how often subject ``s`` was drawn; ``folds`` split the drawn
    subjects (indices into ``flatnonzero(counts)``) and the conditions. All copies of
    a subject fall in the same fold, as in rsatoolbox's ``sets_k_fold`` on a
    resampled ``RDMs``."""
    present = np.flatnonzero(counts)
    rows = np.repeat(np.arange(counts.size), counts)
    mapped = []
    for fold in folds:
        f = dict(fold)
        for key in ("train_subjects", "test_subjects"):
            f[key] = np.flatnonzero(np.isin(rows, present[np.asarray(fold[key])]))
        mapped.append(f)
    return crossvalidate(models, data[rows], method, folds=mapped)


def bootstrap_crossvalidate(
    models: Sequence,
    data_rdms,
    method: str = "cosine",
    *,
    n_boot: int = 200,
    n_cv: int = 2,
    k_subjects: int | None = None,
    k_conditions: int | None = None,
    seed=None,
    model_names: Sequence[str] | None = None,
    correction: str = "fdr",
    alpha: float = 0.05,
    ci: float = 0.95,
) -> ModelEvaluation:
    """Fixed and weighted models with subjects as the random effect: a bootstrap over
    subjects with k-fold cross-validation inside every sample.

    As rsatoolbox's ``bootstrap_crossval(..., boot_type="rdm")``: every sample is
    split ``n_cv`` times at random into ``k_subjects * k_conditions`` folds (copies of
    a subject stay together), every weighted model is fitted on each fold's training
    part and evaluated on its test part, and the variance is corrected for the
    randomness of the splits, ``(n_cv var(mean over splits) - mean var(one split)) /
    (n_cv - 1)``, then multiplied by ``n_subjects / (n_subjects - 1)``.

    Parameters
    ----------
    models : sequence
        As for :func:`crossvalidate`: single RDMs (fixed) or stacks (weighted).
    data_rdms : array (n_subjects, n_pairs)
    method : {"spearman", "pearson", "cosine", "corr_cov", "cosine_cov"}
    n_boot, n_cv : int
        Bootstrap samples and random splits per sample (n_cv >= 2).
    k_subjects, k_conditions : int, optional
        Folds; by default rsatoolbox's ``default_k_rdm`` and ``default_k_pattern`` of
        the expected number of distinct subjects and conditions in a sample.
    seed, model_names, correction, alpha, ci
        As for :func:`evaluate_models`.

    Returns
    -------
    ModelEvaluation
        ``point`` is one cross-validation on the full data; ``samples`` are the
        per-sample evaluations averaged over the splits.

    Notes
    -----
    Each sample refits every weighted model on every fold (``scipy.optimize.nnls``),
    so this runs a Python loop over samples: budget seconds, not milliseconds, per
    hundred samples.
    """
    _check_method(method)
    if int(n_cv) < 2:
        raise ValueError(f"n_cv must be at least 2; got {n_cv}")
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {list(CORRECTIONS)}; got {correction!r}")
    data = _as_matrix(to_numpy(data_rdms), "data_rdms", np)
    _, data, n_cond = _check_inputs(None, data, np)
    n_sub = data.shape[0]
    expected = 1 - 1 / np.e
    k_s = _default_k_subjects(expected * n_sub) if k_subjects is None else int(k_subjects)
    k_c = _default_k_conditions(expected * n_cond) if k_conditions is None else int(k_conditions)
    rng = np.random.default_rng(seed)
    full = crossvalidate(
        models, data, method, k_subjects=k_s, k_conditions=k_c, seed=rng, model_names=model_names
    )
    n_mod = len(full.model_names)
    cnt, _ = bootstrap_counts(int(n_boot), n_sub, n_cond, "subjects", rng)
    evals = np.full((int(n_boot), n_mod, int(n_cv)), np.nan)
    ncs = np.full((int(n_boot), 2, int(n_cv)), np.nan)
    for b in range(int(n_boot)):  # every sample refits on every fold
        n_present = int(np.count_nonzero(cnt[b]))
        if n_present < k_s:
            continue
        for r in range(int(n_cv)):
            folds = make_folds(n_present, n_cond, k_s, k_c, seed=rng)
            res = _crossval_sample(models, data, method, cnt[b], folds)
            evals[b, :, r] = res.evaluations.mean(axis=1)
            ncs[b, :, r] = res.noise_ceiling
    ok = np.all(np.isfinite(evals), axis=(1, 2)) & np.all(np.isfinite(ncs), axis=(1, 2))
    if ok.sum() < 2:
        raise ValueError("fewer than 2 usable bootstrap samples")
    both = np.concatenate([evals[ok], ncs[ok]], axis=1)  # (N, M + 2, n_cv)
    var_mean = _cov(both.mean(axis=2))
    var_one = np.mean([_cov(both[:, :, r]) for r in range(int(n_cv))], axis=0)
    cov = (n_cv * var_mean - var_one) / (n_cv - 1)
    f = n_sub / (n_sub - 1)
    variances = tuple(v * f for v in _variance_parts(cov, n_mod))
    return _result(
        method=method,
        mode="subjects",
        model_names=full.model_names,
        point=full.mean,
        mean=evals[ok].mean(axis=(0, 2)),
        variances=variances,
        dof=n_sub - 1,
        noise_ceiling=ncs[ok].mean(axis=(0, 2)),
        noise_ceiling_point=full.noise_ceiling,
        correction=correction,
        alpha=alpha,
        ci=ci,
        samples=evals[ok].mean(axis=2),
        nc_samples=ncs[ok].mean(axis=2),
    )
