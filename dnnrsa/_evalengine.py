"""The batched engine of the ROI inference: model evaluations and noise ceilings for
whole batches of bootstrap samples at once (rank path for Spearman, weighted Gram
matrices for the other comparators), run in chunks of samples.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ._cpus import single_threaded_blas
from ._weightedranks import _compact, _safe_ratio, _wcentre, _weighted_ranks
from .backend import to_numpy
from .rdm import _whitening_terms, pair_indices

_BUDGET_BYTES = 192 * 2**20


@dataclass
class _BootstrapEngine:
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
