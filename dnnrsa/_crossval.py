"""Weighted models and cross-validation (re-exported by :mod:`dnnrsa.inference`):
non-negative combinations of model RDMs fitted on training subjects and conditions
and evaluated on held-out ones, alone or inside a bootstrap over subjects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from ._inferenceinputs import _as_matrix, _check_inputs, _check_method
from ._modeleval import ModelEvaluation, _cov, _result, _variance_parts, bootstrap_counts
from ._pvalues import CORRECTIONS
from .backend import to_numpy
from .rdm import compare_rdms, pair_indices


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
        As for :func:`dnnrsa.inference.evaluate_models`.

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
