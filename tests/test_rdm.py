"""Known-answer tests for dnnrsa.rdm against scipy, brute force and rsatoolbox."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from rsatoolbox.data import Dataset
from rsatoolbox.rdm import RDMs, calc_rdm, compare
from scipy import stats
from scipy.spatial.distance import pdist

from dnnrsa import rdm
from dnnrsa.backend import gpu_available

from .conftest import shared_data


def _rsa_rdm(patterns, method, conditions=None, runs=None, noise=None):
    obs = {}
    if conditions is not None:
        obs["cond"] = np.asarray(conditions)
    if runs is not None:
        obs["run"] = np.asarray(runs)
    ds = Dataset(patterns, obs_descriptors=obs or None)
    res = calc_rdm(
        ds,
        method=method,
        descriptor="cond" if conditions is not None else None,
        cv_descriptor="run" if runs is not None else None,
        noise=noise,
    )
    return res.get_vectors()[0]


# ----------------------------------------------------------------- metrics vs scipy
@pytest.mark.parametrize("n_cond,n_chan", [(3, 2), (12, 40), (30, 7)])
def test_metrics_match_scipy(rng, n_cond, n_chan):
    x = rng.normal(size=(n_cond, n_chan))
    np.testing.assert_allclose(
        rdm.compute_rdm(x, "correlation"), pdist(x, "correlation"), atol=1e-12
    )
    np.testing.assert_allclose(rdm.compute_rdm(x, "cosine"), pdist(x, "cosine"), atol=1e-12)
    np.testing.assert_allclose(
        rdm.compute_rdm(x, "euclidean"), pdist(x, "sqeuclidean") / n_chan, atol=1e-12
    )
    a = rng.normal(size=(n_chan, n_chan))
    precision = a @ a.T + n_chan * np.eye(n_chan)
    np.testing.assert_allclose(
        rdm.compute_rdm(x, "mahalanobis", noise=precision),
        pdist(x, "mahalanobis", VI=precision) ** 2 / n_chan,
        rtol=1e-10,
    )


def test_condition_averaging_uses_unique_order(rng):
    x = rng.normal(size=(9, 5))
    cond = np.array(["c", "a", "b"] * 3)
    means = np.stack([x[cond == c].mean(0) for c in ["a", "b", "c"]])
    np.testing.assert_allclose(
        rdm.compute_rdm(x, "euclidean", conditions=cond), pdist(means, "sqeuclidean") / 5
    )


def test_crossnobis_brute_force(rng):
    n_cond, n_runs, n_chan = 5, 3, 6
    x = rng.normal(size=(n_cond * n_runs, n_chan))
    cond = np.tile(np.arange(n_cond), n_runs)
    runs = np.repeat(np.arange(n_runs), n_cond)
    expected = np.zeros(n_cond * (n_cond - 1) // 2)
    for r in range(n_runs):
        test = x[runs == r]
        train = np.stack([x[(runs != r) & (cond == c)].mean(0) for c in range(n_cond)])
        for k, (i, j) in enumerate(itertools.combinations(range(n_cond), 2)):
            expected[k] += (train[i] - train[j]) @ (test[i] - test[j])
    expected /= n_runs * n_chan
    np.testing.assert_allclose(
        rdm.compute_rdm(x, "crossnobis", conditions=cond, runs=runs), expected
    )


def test_crossnobis_is_unbiased_for_identical_conditions(rng):
    # pure noise: the expected crossnobis distance is zero, euclidean is positive
    n_cond, n_runs, n_chan = 4, 6, 50
    cond = np.tile(np.arange(n_cond), n_runs)
    runs = np.repeat(np.arange(n_runs), n_cond)
    vals = []
    for _ in range(40):
        x = rng.normal(size=(n_cond * n_runs, n_chan))
        vals.append(rdm.compute_rdm(x, "crossnobis", conditions=cond, runs=runs).mean())
    assert abs(np.mean(vals)) < 4 * np.std(vals) / np.sqrt(len(vals))
    assert rdm.compute_rdm(x, "euclidean", conditions=cond).mean() > 0.1


# ----------------------------------------------------------------- metrics vs rsatoolbox
@pytest.mark.parametrize("metric", ["correlation", "euclidean", "mahalanobis"])
def test_metrics_match_rsatoolbox(rng, metric):
    n_chan = 20
    x = rng.normal(size=(24, n_chan))
    cond = np.repeat(np.arange(8), 3)
    noise = None
    if metric == "mahalanobis":
        a = rng.normal(size=(n_chan, n_chan))
        noise = np.linalg.inv(a @ a.T / n_chan + np.eye(n_chan))
    ours = rdm.compute_rdm(x, metric, conditions=cond, noise=noise)
    ref = _rsa_rdm(x, metric, conditions=cond, noise=noise)
    np.testing.assert_allclose(ours, ref, atol=1e-10, rtol=0)


@pytest.mark.parametrize("use_noise", [False, True])
def test_crossnobis_matches_rsatoolbox(rng, use_noise):
    n_cond, n_runs, n_chan = 6, 4, 15
    x = rng.normal(size=(n_cond * n_runs, n_chan)) + np.tile(
        rng.normal(size=(n_cond, n_chan)), (n_runs, 1)
    )
    cond = np.tile(np.arange(n_cond), n_runs)
    runs = np.repeat(np.arange(n_runs), n_cond)
    perm = rng.permutation(x.shape[0])  # rows in any order
    x, cond, runs = x[perm], cond[perm], runs[perm]
    noise = None
    if use_noise:
        a = rng.normal(size=(n_chan, n_chan))
        noise = np.linalg.inv(a @ a.T / n_chan + np.eye(n_chan))
    ours = rdm.compute_rdm(x, "crossnobis", conditions=cond, runs=runs, noise=noise)
    ref = _rsa_rdm(x, "crossnobis", conditions=cond, runs=runs, noise=noise)
    np.testing.assert_allclose(ours, ref, atol=1e-10, rtol=0)


# ----------------------------------------------------------------- comparators
def _brute_tau_a(x, y):
    n = len(x)
    s = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            s += np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
    return s / (n * (n - 1) / 2)


def test_kendall_tau_a_brute_force_with_ties(rng):
    a = rng.integers(0, 4, size=(3, 21)).astype(float)  # many ties
    b = rng.integers(0, 5, size=(2, 21)).astype(float)
    ours = rdm.compare_rdms(a, b, "kendall_tau_a")
    expected = np.array([[_brute_tau_a(x, y) for y in b] for x in a])
    np.testing.assert_allclose(ours, expected, atol=1e-12)


def test_spearman_pearson_match_scipy(rng):
    a = rng.normal(size=(4, 45))
    b = np.round(rng.normal(size=(3, 45)), 1)  # ties
    sp = rdm.compare_rdms(a, b, "spearman")
    pe = rdm.compare_rdms(a, b, "pearson")
    for i, j in itertools.product(range(4), range(3)):
        assert sp[i, j] == pytest.approx(stats.spearmanr(a[i], b[j]).statistic, abs=1e-12)
        assert pe[i, j] == pytest.approx(stats.pearsonr(a[i], b[j]).statistic, abs=1e-12)


@pytest.mark.parametrize(
    "method,rsa_method",
    [
        ("spearman", "spearman"),
        ("pearson", "corr"),
        ("kendall_tau_a", "tau-a"),
        ("cosine", "cosine"),
    ],
)
def test_comparators_match_rsatoolbox(rng, method, rsa_method):
    a = rng.normal(size=(3, 28))
    b = np.round(rng.normal(size=(4, 28)), 1)
    ours = rdm.compare_rdms(a, b, method)
    ref = compare(RDMs(a), RDMs(b), method=rsa_method)
    np.testing.assert_allclose(ours, ref, atol=1e-10, rtol=0)


def test_nan_entries_dropped_pairwise(rng):
    a = rng.normal(size=(2, 36))
    b = rng.normal(size=(3, 36))
    a[0, [3, 7]] = np.nan
    b[2, [1]] = np.nan
    got = rdm.compare_rdms(a, b, "spearman")
    for i, j in itertools.product(range(2), range(3)):
        keep = ~(np.isnan(a[i]) | np.isnan(b[j]))
        assert got[i, j] == pytest.approx(
            stats.spearmanr(a[i, keep], b[j, keep]).statistic, abs=1e-12
        )


def test_cosine_of_zero_rdm_is_zero_and_constant_correlation_is_nan():
    z = np.zeros(10)
    x = np.arange(10.0)
    assert rdm.compare_rdms(z, x, "cosine")[0, 0] == 0.0
    assert np.isnan(rdm.compare_rdms(np.ones(10), x, "pearson")[0, 0])


def test_rankdata_matches_scipy(rng):
    x = np.round(rng.normal(size=(5, 7, 40)), 1)
    for axis in (0, 1, 2):
        np.testing.assert_allclose(
            rdm.rankdata(x, axis=axis), stats.rankdata(x, method="average", axis=axis)
        )


# ----------------------------------------------------------------- conversion and files
def test_square_vector_roundtrip(rng):
    v = rng.random(15)
    sq = rdm.vector_to_squareform(v)
    from scipy.spatial.distance import squareform

    np.testing.assert_array_equal(sq, squareform(v))
    np.testing.assert_array_equal(rdm.squareform_to_vector(sq), v)
    assert rdm.n_conditions_from_pairs(2556) == 72
    with pytest.raises(ValueError, match="n\\*\\(n-1\\)/2"):
        rdm.n_conditions_from_pairs(14)


def test_tsv_roundtrip(tmp_path, rng):
    v = rng.random(10)
    labels = ["face", "house", "cat", "shoe", "chair"]
    path = tmp_path / "model.tsv"
    rdm.write_rdm_tsv(path, v, labels)
    back, back_labels = rdm.read_rdm_tsv(path)
    np.testing.assert_array_equal(back, v)
    assert back_labels == labels


def test_tsv_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("condition\ta\tb\tc\na\t0\t1\t2\nb\t1\t0\t3\nc\t5\t3\t0\n")
    with pytest.raises(ValueError, match="bad.tsv.*not symmetric"):
        rdm.read_rdm_tsv(bad)
    bad.write_text("condition\ta\tb\tc\na\t0\t1\t2\nb\t1\t0\t3\n")
    with pytest.raises(ValueError, match="bad.tsv.*as many rows as columns"):
        rdm.read_rdm_tsv(bad)
    with pytest.raises(FileNotFoundError, match="missing.tsv"):
        rdm.read_rdm_tsv(tmp_path / "missing.tsv")


# ----------------------------------------------------------------- bad input
def test_bad_input_messages(rng):
    x = rng.normal(size=(6, 4))
    with pytest.raises(
        ValueError, match=r"metric must be one of \['correlation', 'cosine', 'crossnobis'"
    ):
        rdm.compute_rdm(x, "manhattan")
    with pytest.raises(ValueError, match="method must be one of"):
        rdm.compare_rdms(np.ones(3), np.ones(3), "spearmann")
    with pytest.raises(ValueError, match="2-D array"):
        rdm.compute_rdm(x[0])
    with pytest.raises(ValueError, match="at least 3 conditions"):
        rdm.compute_rdm(x, conditions=[0, 0, 0, 1, 1, 1])
    with pytest.raises(ValueError, match="needs runs"):
        rdm.compute_rdm(x, "crossnobis", conditions=[0, 1, 2] * 2)
    with pytest.raises(ValueError, match="at least 2 runs"):
        rdm.compute_rdm(x, "crossnobis", conditions=[0, 1, 2] * 2, runs=[0] * 6)
    with pytest.raises(ValueError, match=r"run 1 lacks condition\(s\) \[2\]"):
        rdm.compute_rdm(x, "crossnobis", conditions=[0, 1, 2, 0, 1, 1], runs=[0, 0, 0, 1, 1, 1])
    with pytest.raises(ValueError, match="needs noise"):
        rdm.compute_rdm(x, "mahalanobis")
    with pytest.raises(ValueError, match="same number of pairs"):
        rdm.compare_rdms(np.ones(3), np.ones(6))


# ----------------------------------------------------------------- real fMRI
def _haxby_block_patterns():
    import nibabel as nib
    import pandas as pd

    root = shared_data("haxby2001", "sub001")
    mask = nib.load(root / "masks" / "25mm" / "brain.nii.gz").get_fdata() > 0
    rows, conds, runs = [], [], []
    for run_dir in sorted((root / "BOLD").glob("task001_run*")):
        bold = nib.load(run_dir / "bold_25mm.nii.gz").get_fdata()[mask]  # (n_vox, n_t)
        bold = bold - bold.mean(axis=1, keepdims=True)
        t = np.arange(bold.shape[1]) * 2.5
        events = pd.read_csv(run_dir / "bold_events.tsv", sep="\t")
        for ev in events.itertuples():
            # block average, shifted by 5 s for the haemodynamic delay
            sel = (t >= ev.onset + 5.0) & (t < ev.onset + ev.duration + 5.0)
            rows.append(bold[:, sel].mean(axis=1))
            conds.append(ev.trial_type)
            runs.append(run_dir.name)
    return np.array(rows), np.array(conds), np.array(runs)


def test_crossnobis_on_haxby_matches_rsatoolbox():
    patterns, conds, runs = _haxby_block_patterns()
    ours = rdm.compute_rdm(patterns, "crossnobis", conditions=conds, runs=runs)
    ref = _rsa_rdm(patterns, "crossnobis", conditions=conds, runs=runs)
    np.testing.assert_allclose(ours, ref, atol=1e-8, rtol=0)
    labels = list(np.unique(conds))
    square = rdm.vector_to_squareform(ours)
    face_house = square[labels.index("face"), labels.index("house")]
    assert face_house > 0
    # the face/house distance is among the larger distances, well above the noise floor
    assert face_house > np.median(ours)


# ----------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.parametrize("metric", ["correlation", "euclidean", "cosine", "crossnobis"])
def test_cupy_matches_numpy(rng, metric):
    assert gpu_available()
    import cupy as cp

    x = rng.normal(size=(24, 30))
    cond = np.tile(np.arange(8), 3)
    runs = np.repeat(np.arange(3), 8)
    kw = {"conditions": cond, "runs": runs if metric == "crossnobis" else None}
    ref = rdm.compute_rdm(x, metric, **kw)
    got = rdm.compute_rdm(cp.asarray(x), metric, **kw)
    np.testing.assert_allclose(cp.asnumpy(got), ref, atol=1e-5)
    a, b = rng.normal(size=(3, 28)), rng.normal(size=(4, 28))
    for method in rdm.COMPARATORS:
        np.testing.assert_allclose(
            cp.asnumpy(rdm.compare_rdms(cp.asarray(a), cp.asarray(b), method)),
            rdm.compare_rdms(a, b, method),
            atol=1e-5,
        )
