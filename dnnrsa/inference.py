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

The module is the public face of its rooms, one job each: :mod:`dnnrsa._inferenceinputs`
(the comparators and bootstrap modes it accepts, checks of the RDMs),
:mod:`dnnrsa._weightedranks` (ranks and moments under pair weights),
:mod:`dnnrsa._evalengine` (the batched engine and its chunked runner),
:mod:`dnnrsa._modeleval` (noise ceiling, bootstrap evaluation, the result),
:mod:`dnnrsa._crossval` (weighted models, folds, cross-validation) and
:mod:`dnnrsa._pvalues` (adjusted p-values).
"""

from __future__ import annotations

# Every name the module held before it was split stays importable from it: the public
# ones (__all__) and the rooms' private ones (marked F401; tests reach some of them).
from ._crossval import (
    CrossValidation,
    _compare_mean,  # noqa: F401
    _crossval_sample,  # noqa: F401
    _default_k_conditions,  # noqa: F401
    _default_k_subjects,  # noqa: F401
    _k_fold_groups,  # noqa: F401
    _pairs_within,  # noqa: F401
    _pool_for_ceiling,  # noqa: F401
    _pool_for_fit,  # noqa: F401
    _rdm_covariance,  # noqa: F401
    bootstrap_crossvalidate,
    crossvalidate,
    fit_weights,
    make_folds,
)
from ._evalengine import (
    _BUDGET_BYTES,  # noqa: F401
    _BootstrapEngine,  # noqa: F401
    _pair_weights,  # noqa: F401
    _run,  # noqa: F401
)
from ._inferenceinputs import (
    INFERENCE_COMPARATORS,
    MODES,
    RSATOOLBOX_NAMES,
    _as_matrix,  # noqa: F401
    _check_inputs,  # noqa: F401
    _check_method,  # noqa: F401
)
from ._modeleval import (
    _EPS,  # noqa: F401
    ModelEvaluation,
    _cov,  # noqa: F401
    _dual,  # noqa: F401
    _result,  # noqa: F401
    _variance_parts,  # noqa: F401
    bootstrap_counts,
    evaluate_models,
    evaluate_samples,
    noise_ceiling,
)
from ._pvalues import (
    CORRECTIONS,
    _benjamini_hochberg,  # noqa: F401
    adjust_pvalues,
)
from ._weightedranks import (
    _compact,  # noqa: F401
    _ranks_from_cums,  # noqa: F401
    _safe_ratio,  # noqa: F401
    _sparse_ties,  # noqa: F401
    _tie_groups,  # noqa: F401
    _wcentre,  # noqa: F401
    _weighted_ranks,  # noqa: F401
    _weighted_ranks_indexed,  # noqa: F401
)

__all__ = [
    "CORRECTIONS",
    "INFERENCE_COMPARATORS",
    "MODES",
    "RSATOOLBOX_NAMES",
    "CrossValidation",
    "ModelEvaluation",
    "adjust_pvalues",
    "bootstrap_counts",
    "bootstrap_crossvalidate",
    "crossvalidate",
    "evaluate_models",
    "evaluate_samples",
    "fit_weights",
    "make_folds",
    "noise_ceiling",
]
