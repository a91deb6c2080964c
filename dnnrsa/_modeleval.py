"""Model evaluation with a bootstrap over subjects, stimuli or both, and the noise
ceiling (re-exported by :mod:`dnnrsa.inference`): the samples are drawn as counts,
evaluated by the batched engine (:mod:`dnnrsa._evalengine`), and their covariances
turned into standard errors, intervals and tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ._evalengine import _BootstrapEngine, _run
from ._inferenceinputs import MODES, _check_inputs, _check_method
from ._pvalues import CORRECTIONS, adjust_pvalues
from .backend import get_namespace, to_numpy

_EPS = np.finfo(float).eps


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
    engine = _BootstrapEngine(None, data, method, xp, n_cond)
    ((_, nc),) = engine.batch(q, xp.ones((1, n_cond)), [xp.ones((1, data.shape[0]))])
    nc = to_numpy(nc)[0]
    return float(nc[0]), float(nc[1])


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
    engine = _BootstrapEngine(models, data, method, xp, n_cond)
    cnt = np.asarray(subject_counts, dtype=np.float64)
    w = None if condition_counts is None else np.asarray(condition_counts, dtype=np.float64)
    return _run(engine, [cnt], w)[0]


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
    engine = _BootstrapEngine(models, data, method, xp, n_cond)
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
