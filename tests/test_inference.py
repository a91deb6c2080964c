"""Known-answer tests for dnnrsa.inference (and the whitened comparators of dnnrsa.rdm)
against rsatoolbox on identical inputs, plus planted effects."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from rsatoolbox.inference import (
    boot_noise_ceiling,
    eval_bootstrap_pattern,
    eval_bootstrap_rdm,
    eval_dual_bootstrap,
)
from rsatoolbox.model import ModelFixed
from rsatoolbox.rdm import RDMs, compare
from scipy import stats

from dnnrsa import inference as inf
from dnnrsa.rdm import compare_rdms

METHODS = inf.INFERENCE_COMPARATORS


def _problem(rng, n_cond=12, n_sub=7, n_mod=3, noise=0.5, ties=False):
    n_pairs = n_cond * (n_cond - 1) // 2
    truth = rng.random(n_pairs)
    data = truth + noise * rng.random((n_sub, n_pairs))
    models = np.vstack([truth + 0.4 * rng.random(n_pairs) for _ in range(n_mod)])
    if ties:  # tied dissimilarities exercise the tie-averaged ranks
        data[:, : n_pairs // 3] = np.round(data[:, : n_pairs // 3], 1)
        models[0] = np.round(models[0], 1)
    return models, data


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# ----------------------------------------------------------------- whitened comparators
@pytest.mark.parametrize("method", ["corr_cov", "cosine_cov"])
@pytest.mark.parametrize("n_cond", [4, 12, 25])
def test_whitened_comparators_equal_rsatoolbox(rng, method, n_cond):
    n_pairs = n_cond * (n_cond - 1) // 2
    a = rng.random((3, n_pairs))
    b = rng.random((5, n_pairs))
    np.testing.assert_allclose(
        compare_rdms(a, b, method), compare(RDMs(a), RDMs(b), method), atol=1e-10
    )
    # missing entries (same positions in both, as rsatoolbox requires)
    a[:, [0, 3]] = np.nan
    b[:, [0, 3]] = np.nan
    np.testing.assert_allclose(
        compare_rdms(a, b, method), compare(RDMs(a), RDMs(b), method), atol=1e-10
    )


def test_whitened_comparators_leave_the_others_unchanged(rng):
    a = rng.random((2, 45))
    b = rng.random((3, 45))
    np.testing.assert_allclose(compare_rdms(a, b, "cosine"), compare(RDMs(a), RDMs(b), "cosine"))
    np.testing.assert_allclose(compare_rdms(a, b, "pearson"), compare(RDMs(a), RDMs(b), "corr"))
    with pytest.raises(ValueError, match="method"):
        compare_rdms(a, b, "cov")


# ----------------------------------------------------------------- noise ceilings
@pytest.mark.parametrize("method", METHODS)
def test_noise_ceiling_equals_rsatoolbox(rng, method):
    _, data = _problem(rng, n_sub=8, ties=True)
    ref = _quiet(boot_noise_ceiling, RDMs(data), method=inf.RSATOOLBOX_NAMES[method])
    np.testing.assert_allclose(inf.noise_ceiling(data, method), ref, atol=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_noise_ceiling_with_missing_entries(rng, method):
    _, data = _problem(rng, n_sub=6)
    data[:, [2, 7, 11]] = np.nan
    ref = _quiet(boot_noise_ceiling, RDMs(data), method=inf.RSATOOLBOX_NAMES[method])
    np.testing.assert_allclose(inf.noise_ceiling(data, method), ref, atol=1e-10)


def test_noise_ceiling_bounds_order(rng):
    _, data = _problem(rng, n_sub=10)
    for method in METHODS:
        lower, upper = inf.noise_ceiling(data, method)
        assert lower <= upper <= 1.0


# ----------------------------------------------------------------- bootstrap samples
@pytest.mark.parametrize("method", METHODS)
def test_resampled_evaluations_equal_rsatoolbox(rng, method):
    """Each bootstrap sample (duplicated subjects and conditions) gives rsatoolbox's numbers."""
    n_cond, n_sub = 12, 7
    models, data = _problem(rng, n_cond=n_cond, n_sub=n_sub, ties=True)
    name = inf.RSATOOLBOX_NAMES[method]
    sidx = rng.integers(0, n_sub, (4, n_sub))
    pidx = rng.integers(0, n_cond, (4, n_cond))
    sidx[0] = 2  # a single subject, drawn n times
    cnt = np.stack([np.bincount(s, minlength=n_sub) for s in sidx])
    w = np.stack([np.bincount(p, minlength=n_cond) for p in pidx])
    ev, nc = inf.evaluate_samples(models, data, cnt, w, method)
    for k in range(4):
        sample = RDMs(data).subsample("index", sidx[k]).subsample_pattern("index", pidx[k])
        ref = [
            np.mean(compare(RDMs(m[None]).subsample_pattern("index", pidx[k]), sample, name))
            for m in models
        ]
        np.testing.assert_allclose(ev[k], ref, atol=1e-10)
        ref_nc = _quiet(boot_noise_ceiling, sample, method=name)
        np.testing.assert_allclose(nc[k], ref_nc, atol=1e-10)


def test_too_few_conditions_in_a_sample_give_nan(rng):
    models, data = _problem(rng, n_cond=6, n_sub=6)
    w = np.array([[3, 3, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]])
    ev, nc = inf.evaluate_samples(models, data, np.ones((2, 6)), w, "pearson")
    assert np.isnan(ev[0]).all() and np.isnan(nc[0]).all()
    assert np.isfinite(ev[1]).all()


# ----------------------------------------------------------------- bootstrap statistics
def _mc_spread(models, data, method, mode, n_boot, reps=12):
    runs = [
        inf.evaluate_models(models, data, method, mode=mode, n_boot=n_boot, seed=s)
        for s in range(reps)
    ]
    means = np.array([r.mean for r in runs])
    ses = np.array([r.se for r in runs])
    return runs[0], means.std(axis=0, ddof=1), ses.std(axis=0, ddof=1)


@pytest.mark.parametrize(
    "mode,rsa_fn,method",
    [
        ("subjects", eval_bootstrap_rdm, "pearson"),
        ("stimuli", eval_bootstrap_pattern, "pearson"),
        ("both", eval_dual_bootstrap, "pearson"),
        pytest.param("both", eval_dual_bootstrap, "spearman", marks=pytest.mark.slow),
        pytest.param("both", eval_dual_bootstrap, "cosine_cov", marks=pytest.mark.slow),
    ],
)
def test_bootstrap_mean_and_se_match_rsatoolbox(mode, rsa_fn, method):
    """Means and SEs within three Monte Carlo SEs of rsatoolbox at 2,000 samples.

    The Monte Carlo SE of each tool's estimate is measured from independent replicates
    of dnnrsa's bootstrap (the same estimator); the difference of two independent
    estimates has sqrt(2) times that SE.
    """
    rng = np.random.default_rng(7)
    models, data = _problem(rng, n_cond=9, n_sub=6, n_mod=2, noise=0.8)
    n_boot = 2000
    ours, mc_mean, mc_se = _mc_spread(models, data, method, mode, n_boot)
    fixed = [ModelFixed(f"m{i}", RDMs(m[None])) for i, m in enumerate(models)]
    np.random.seed(11)  # noqa: NPY002 (rsatoolbox draws from numpy's global generator)
    ref = _quiet(rsa_fn, fixed, RDMs(data), method=inf.RSATOOLBOX_NAMES[method], N=n_boot)
    tol = 3 * np.sqrt(2)
    assert np.all(np.abs(ours.mean - ref.get_means()) <= tol * mc_mean), (
        ours.mean,
        ref.get_means(),
    )
    assert np.all(np.abs(ours.se - ref.get_sem()) <= tol * mc_se), (ours.se, ref.get_sem())


def test_subject_bootstrap_se_close_to_analytic(rng):
    """Subject bootstrap SE ~ the SE of the mean over subjects (n/(n-1) corrected)."""
    models, data = _problem(rng, n_cond=10, n_sub=12, n_mod=2)
    res = inf.evaluate_models(models, data, "pearson", mode="subjects", n_boot=4000, seed=1)
    per_subject = compare_rdms(models, data, "pearson")
    analytic = per_subject.std(axis=1, ddof=1) / np.sqrt(data.shape[0])
    np.testing.assert_allclose(res.se, analytic, rtol=0.1)
    np.testing.assert_allclose(res.point, per_subject.mean(axis=1), atol=1e-12)


def test_tests_follow_rsatoolbox_formulas(rng):
    models, data = _problem(rng, n_cond=10, n_sub=8, n_mod=4)
    res = inf.evaluate_models(models, data, "cosine", mode="both", n_boot=300, seed=3)
    t = res.mean / res.se
    np.testing.assert_allclose(res.p_zero, 1 - stats.t.cdf(t, res.dof), atol=1e-12)
    i, j = 0, 2
    tij = (res.mean[i] - res.mean[j]) / np.sqrt(res.diff_variance[i, j])
    np.testing.assert_allclose(res.p_pairwise[i, j], 2 * (1 - stats.t.cdf(abs(tij), res.dof)))
    assert res.dof == min(8, 10) - 1
    tcrit = stats.t.ppf(0.975, res.dof)
    np.testing.assert_allclose(res.ci[1] - res.mean, tcrit * res.se)
    assert res.samples.shape == (res.n_boot, 4)
    assert list(res.table()["model"]) == list(res.model_names)
    assert len(res.pairwise_table()) == 6


def test_adjust_pvalues_matches_scipy(rng):
    p = rng.random(40) ** 3
    np.testing.assert_allclose(inf.adjust_pvalues(p, "fdr"), stats.false_discovery_control(p))
    np.testing.assert_allclose(inf.adjust_pvalues(p, "bonferroni"), np.minimum(1, p * 40))
    q = p.copy()
    q[3] = np.nan
    out = inf.adjust_pvalues(q, "fdr")
    assert np.isnan(out[3])
    np.testing.assert_allclose(np.delete(out, 3), stats.false_discovery_control(np.delete(p, 3)))


def test_fdr_known_answer():
    """Benjamini-Hochberg by hand: p sorted, times m / rank, running minimum from the top."""
    p = [0.01, 0.04, 0.03, 0.005, np.nan]
    # sorted 0.005, 0.01, 0.03, 0.04 times 4/1, 4/2, 4/3, 4/4 -> 0.02, 0.02, 0.04, 0.04
    np.testing.assert_allclose(
        inf.adjust_pvalues(p, "fdr"), [0.02, 0.04, 0.04, 0.02, np.nan], rtol=1e-15, equal_nan=True
    )
    # ties share one value; 1 stays 1; a single test is unchanged; no finite entry: all NaN
    np.testing.assert_allclose(inf.adjust_pvalues([0.02, 0.02, 1.0], "fdr"), [0.03, 0.03, 1.0])
    np.testing.assert_array_equal(inf.adjust_pvalues([0.3], "fdr"), [0.3])
    assert np.isnan(inf.adjust_pvalues([np.nan, np.inf], "fdr")).all()
    # outside [0, 1] (scipy refuses): as R's p.adjust, above 1 gives 1, below 0 the formula
    np.testing.assert_allclose(inf.adjust_pvalues([1.5, 0.2], "fdr"), [1.0, 0.4])
    np.testing.assert_allclose(inf.adjust_pvalues([-0.01, 0.02, 0.5], "fdr"), [-0.03, 0.03, 0.5])


@pytest.mark.parametrize("mode", inf.MODES)
def test_planted_effect_beats_null_model(mode):
    """A model equal to the true RDM plus noise beats a null model in the pairwise test."""
    rng = np.random.default_rng(5)
    n_cond, n_sub = 16, 8
    n_pairs = n_cond * (n_cond - 1) // 2
    truth = rng.random(n_pairs)
    data = truth + 0.7 * rng.standard_normal((n_sub, n_pairs))
    good = truth + 0.3 * rng.standard_normal(n_pairs)
    null = rng.random(n_pairs)
    for method in METHODS:
        res = inf.evaluate_models(
            np.vstack([good, null]),
            data,
            method,
            mode=mode,
            n_boot=500,
            seed=2,
            model_names=["good", "null"],
        )
        assert res.better_than()[0, 1], (method, res.p_pairwise_adjusted)
        assert not res.better_than()[1, 0]
        assert res.p_zero_adjusted[0] < 0.05
        assert res.noise_ceiling[0] <= res.noise_ceiling[1]


def test_input_checks(rng):
    models, data = _problem(rng, n_cond=6, n_sub=6)
    with pytest.raises(ValueError, match="method"):
        inf.evaluate_models(models, data, "kendall_tau_a")
    with pytest.raises(ValueError, match="mode"):
        inf.evaluate_models(models, data, mode="runs")
    with pytest.raises(ValueError, match="pairs"):
        inf.evaluate_models(models[:, :10], data)
    bad = data.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        inf.evaluate_models(models, bad)
    with pytest.raises(ValueError, match="subject"):
        inf.noise_ceiling(data[:1])


# ----------------------------------------------------------------- weighted models
def _weighted_problem(rng, n_cond=12, n_sub=7):
    n_pairs = n_cond * (n_cond - 1) // 2
    comps = rng.random((3, n_pairs))
    truth = comps.T @ np.array([1.0, 0.5, -0.6])  # a negative part: fitted weight 0
    data = truth + 0.6 * rng.random((n_sub, n_pairs))
    return comps, data


@pytest.mark.parametrize("method", ["cosine", "pearson", "corr_cov", "cosine_cov"])
def test_fit_weights_equal_rsatoolbox(rng, method):
    from rsatoolbox.model import ModelWeighted
    from rsatoolbox.model.fitter import fit_regress_nn

    comps, data = _weighted_problem(rng)
    name = inf.RSATOOLBOX_NAMES[method]
    ref = fit_regress_nn(ModelWeighted("w", RDMs(comps)), RDMs(data), method=name)
    mine = inf.fit_weights(comps, data, method)
    np.testing.assert_allclose(mine, ref, atol=1e-6)
    assert np.all(mine >= 0)
    if method in ("pearson", "corr_cov"):
        assert mine[2] == 0.0  # the constraint is active


def test_fit_weights_spearman_is_scipy_nnls_of_the_pearson_objective(rng):
    from scipy.optimize import nnls

    comps, data = _weighted_problem(rng)
    a = comps.T - comps.T.mean(axis=0)
    z = (data - data.mean(1, keepdims=True)) / data.std(1, keepdims=True)
    y = z.mean(axis=0)
    ref, _ = nnls(a, y - y.mean())
    np.testing.assert_allclose(
        inf.fit_weights(comps, data, "spearman"), ref / np.linalg.norm(ref), atol=1e-10
    )


@pytest.mark.parametrize("method", ["cosine", "pearson", "corr_cov", "cosine_cov", "spearman"])
@pytest.mark.parametrize("k_subjects,k_conditions", [(3, 2), (1, 3), (2, 1)])
def test_crossvalidation_equals_rsatoolbox(rng, method, k_subjects, k_conditions):
    from rsatoolbox.inference import crossval, sets_k_fold
    from rsatoolbox.model import ModelWeighted
    from rsatoolbox.model.fitter import fit_regress_nn

    comps, data = _weighted_problem(rng, n_cond=12, n_sub=7)
    name = inf.RSATOOLBOX_NAMES[method]
    train, test, ceil = sets_k_fold(
        RDMs(data), k_rdm=k_subjects, k_pattern=k_conditions, random=False
    )
    rsa_models = [ModelFixed("fixed", RDMs(comps[:1]))]
    fitters = [None]
    if method != "spearman":
        rsa_models.append(ModelWeighted("weighted", RDMs(comps)))
        fitters.append(fit_regress_nn)
    ref = _quiet(crossval, rsa_models, RDMs(data), train, test, ceil, method=name, fitter=fitters)
    folds = inf.make_folds(7, 12, k_subjects, k_conditions, shuffle=False)
    ours = inf.crossvalidate([comps[0], comps][: len(rsa_models)], data, method, folds=folds)
    np.testing.assert_allclose(ours.evaluations, ref.evaluations[0], atol=1e-6)
    np.testing.assert_allclose(ours.noise_ceiling, ref.noise_ceiling, atol=1e-10)


def test_weighted_combination_beats_its_parts():
    """'visual + auditory' fitted on training data beats either arm on held-out data."""
    rng = np.random.default_rng(4)
    n_cond, n_sub = 18, 10
    n_pairs = n_cond * (n_cond - 1) // 2
    visual, auditory = rng.random((2, n_pairs))
    data = visual + auditory + 0.3 * rng.standard_normal((n_sub, n_pairs))
    res = inf.crossvalidate(
        [visual, auditory, np.vstack([visual, auditory])],
        data,
        "pearson",
        k_subjects=2,
        k_conditions=3,
        seed=0,
        model_names=["visual", "auditory", "both"],
    )
    assert res.mean[2] > res.mean[0] + 0.1 and res.mean[2] > res.mean[1] + 0.1
    w = res.weights[2]
    assert np.all(w > 0.5)  # both arms get weight in every fold
    assert res.noise_ceiling[0] <= res.noise_ceiling[1]
    assert len(res.folds) == 6 and res.weights[0] is None


# ----------------------------------------------------------------- engine pieces
@pytest.mark.parametrize("shared", [True, False])
def test_weighted_ranks_equal_ranks_of_the_expanded_vector(rng, shared):
    n_pairs, n_rows, n_samples = 40, 3, 5
    x = np.round(rng.random((1 if shared else n_samples, n_rows, n_pairs)) * 8) / 2  # ties
    q = rng.integers(0, 4, (n_samples, n_pairs)).astype(float)
    got = inf._weighted_ranks(x, q, np)
    got_indexed = inf._weighted_ranks_indexed(x, q, np)  # the CuPy path, run on numpy
    for b in range(n_samples):
        for r in range(n_rows):
            row = x[0 if shared else b, r]
            keep = q[b] > 0
            expanded = np.repeat(row[keep], q[b][keep].astype(int))
            ranks = stats.rankdata(expanded)
            want = np.array([ranks[expanded == v][0] for v in row[keep]])
            np.testing.assert_allclose(got[b, r, keep], want)
            np.testing.assert_allclose(got_indexed[b, r, keep], want)


def test_compaction_keeps_the_weighted_entries(rng):
    q = rng.integers(0, 3, (4, 30)).astype(float)
    a = rng.random((1, 2, 30))
    (ac, qc) = inf._compact(q, [a], np)
    for b in range(4):
        keep = q[b] > 0
        n = keep.sum()
        np.testing.assert_array_equal(qc[b, :n], q[b, keep])
        np.testing.assert_array_equal(ac[b, :, :n], a[0][:, keep])
        assert np.all(qc[b, n:] == 0)


@pytest.mark.gpu
@pytest.mark.parametrize("method", METHODS)
def test_gpu_equals_cpu(method):
    rng = np.random.default_rng(9)
    models, data = _problem(rng, n_cond=14, n_sub=6, ties=True)
    cpu = inf.evaluate_models(models, data, method, n_boot=50, seed=1)
    gpu = inf.evaluate_models(models, data, method, n_boot=50, seed=1, device="cuda")
    np.testing.assert_allclose(gpu.mean, cpu.mean, atol=1e-10)
    np.testing.assert_allclose(gpu.se, cpu.se, atol=1e-10)
    np.testing.assert_allclose(
        inf.noise_ceiling(data, method, device="cuda"), inf.noise_ceiling(data, method), atol=1e-10
    )


@pytest.mark.parametrize("method", ["cosine", "pearson", "corr_cov", "spearman"])
def test_crossvalidation_of_a_subject_bootstrap_sample_equals_rsatoolbox(rng, method):
    """Copies of a resampled subject stay in one fold, pool and average as in rsatoolbox."""
    from rsatoolbox.inference import crossval, sets_k_fold
    from rsatoolbox.model import ModelWeighted
    from rsatoolbox.model.fitter import fit_regress_nn

    comps, data = _weighted_problem(rng, n_cond=12, n_sub=8)
    name = inf.RSATOOLBOX_NAMES[method]
    sidx = np.array([0, 0, 2, 3, 3, 3, 5, 7])
    sample = RDMs(data).subsample("index", sidx)
    train, test, ceil = sets_k_fold(sample, k_rdm=2, k_pattern=2, random=False)
    rsa_models = [ModelFixed("fixed", RDMs(comps[:1]))]
    fitters = [None]
    if method != "spearman":
        rsa_models.append(ModelWeighted("weighted", RDMs(comps)))
        fitters.append(fit_regress_nn)
    ref = _quiet(crossval, rsa_models, sample, train, test, ceil, method=name, fitter=fitters)
    counts = np.bincount(sidx, minlength=8)
    folds = inf.make_folds(5, 12, 2, 2, shuffle=False)
    ours = inf._crossval_sample([comps[0], comps][: len(rsa_models)], data, method, counts, folds)
    np.testing.assert_allclose(ours.evaluations, ref.evaluations[0], atol=1e-6)
    np.testing.assert_allclose(ours.noise_ceiling, ref.noise_ceiling, atol=1e-10)


def test_bootstrap_crossvalidation_finds_the_better_weighted_model():
    rng = np.random.default_rng(6)
    n_cond, n_sub = 16, 10
    n_pairs = n_cond * (n_cond - 1) // 2
    visual, auditory = rng.random((2, n_pairs))
    data = visual + auditory + 0.5 * rng.standard_normal((n_sub, n_pairs))
    res = inf.bootstrap_crossvalidate(
        [visual, auditory, np.vstack([visual, auditory])],
        data,
        "pearson",
        n_boot=60,
        seed=0,
        model_names=["visual", "auditory", "both"],
    )
    assert res.mode == "subjects" and res.dof == n_sub - 1
    assert res.better_than()[2, 0] and res.better_than()[2, 1]
    assert np.all(res.se >= 0) and res.samples.shape[1] == 3
    assert res.noise_ceiling[0] <= res.noise_ceiling[1]


#: Every name dnnrsa.inference defined before it was split into its rooms.
_NAMES_BEFORE_THE_SPLIT = (
    "CORRECTIONS CrossValidation INFERENCE_COMPARATORS MODES ModelEvaluation "
    "RSATOOLBOX_NAMES _BUDGET_BYTES _EPS _BootstrapEngine _as_matrix _benjamini_hochberg "
    "_check_inputs _check_method _compact _compare_mean _cov _crossval_sample "
    "_default_k_conditions _default_k_subjects _dual _k_fold_groups _pair_weights "
    "_pairs_within _pool_for_ceiling _pool_for_fit _ranks_from_cums _rdm_covariance "
    "_result _run _safe_ratio _sparse_ties _tie_groups _variance_parts _wcentre "
    "_weighted_ranks _weighted_ranks_indexed adjust_pvalues bootstrap_counts "
    "bootstrap_crossvalidate crossvalidate evaluate_models evaluate_samples fit_weights "
    "make_folds noise_ceiling"
).split()


def test_every_name_stays_importable_from_the_public_module():
    """The rooms behind dnnrsa.inference keep every name it had importable from it, the
    same object as in its room, and its __all__ lists exactly the public ones."""
    import importlib

    missing = [n for n in _NAMES_BEFORE_THE_SPLIT if not hasattr(inf, n)]
    assert missing == []
    for name in _NAMES_BEFORE_THE_SPLIT:
        obj = getattr(inf, name)
        home = getattr(obj, "__module__", None)
        if home and home.startswith("dnnrsa._"):
            assert getattr(importlib.import_module(home), name) is obj, name
    public = sorted(n for n in _NAMES_BEFORE_THE_SPLIT if not n.startswith("_"))
    assert sorted(inf.__all__) == public
