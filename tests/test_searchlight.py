"""Tests of the searchlight RSA engine (dnnrsa.searchlight)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy.spatial.distance import pdist
from scipy.stats import rankdata as scipy_rankdata

from dnnrsa import backend
from dnnrsa._neighbourhoods import Neighbourhoods, mask_neighbourhoods, sphere_offsets
from dnnrsa.rdm import compare_rdms, compute_rdm
from dnnrsa.searchlight import (
    SearchlightRSA,
    _fast_ranks,
    searchlight_rdms,
    searchlight_rsa,
    searchlight_rsa_array,
    volume_neighbourhoods,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
HAXBY = DATA / "haxby2001"


# --------------------------------------------------------------------------- helpers
def _reference_rdms(patterns, nb, metric, conditions=None, runs=None, drop=()):
    """Per-sphere reference: dnnrsa.rdm.compute_rdm on each sphere's members."""
    rows = []
    for c in range(nb.n_centres):
        members = np.setdiff1d(nb.members(c), np.asarray(drop, dtype=np.int64))
        rows.append(
            compute_rdm(patterns[:, members], metric, conditions=conditions, runs=runs, xp=np)
        )
    return np.asarray(rows)


def _small_mask(shape=(6, 6, 5), holes=((0, 0, 0), (2, 3, 1), (5, 5, 4), (3, 0, 2))):
    mask = np.ones(shape, dtype=bool)
    for h in holes:
        mask[h] = False
    return mask


@pytest.fixture(scope="module")
def small_problem():
    rng = np.random.default_rng(7)
    mask = _small_mask()
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    nb = mask_neighbourhoods(mask, affine, 6.0)
    n_cond, n_rep = 8, 3
    conditions = np.tile(np.arange(n_cond), n_rep)
    runs = np.repeat(np.arange(n_rep), n_cond)
    signal = rng.standard_normal((n_cond, nb.n_voxels))
    patterns = signal[conditions] + 0.7 * rng.standard_normal((n_cond * n_rep, nb.n_voxels)) + 3.0
    models = rng.random((3, n_cond * (n_cond - 1) // 2))
    return {
        "mask": mask,
        "affine": affine,
        "nb": nb,
        "patterns": patterns,
        "conditions": conditions,
        "runs": runs,
        "models": models,
    }


# --------------------------------------------------------------------------- neighbourhoods
@pytest.mark.parametrize(("radius_vox", "expected"), [(1, 7), (2, 33), (3, 123)])
def test_sphere_sizes_follow_nilearn_rule(radius_vox, expected):
    voxel_mm = 2.0
    offsets = sphere_offsets(np.diag([voxel_mm] * 3 + [1.0]), radius_vox * voxel_mm)
    assert offsets.shape == (expected, 3)
    assert np.array_equal(offsets[0], [0, 0, 0])
    # the same sizes away from the edges of a mask
    mask = np.ones((11, 11, 11), dtype=bool)
    nb = mask_neighbourhoods(mask, np.diag([voxel_mm] * 3 + [1.0]), radius_vox * voxel_mm)
    centre = np.ravel_multi_index((5, 5, 5), mask.shape)
    assert nb.sizes[centre] == expected
    assert nb.indices[centre, 0] == centre  # centre first


def _brute_force_members(mask, affine, radius_mm):
    ijk = np.argwhere(mask)
    xyz = nib.affines.apply_affine(affine, ijk)
    dist = np.linalg.norm(xyz[:, None, :] - xyz[None, :, :], axis=-1)
    return [np.flatnonzero(row <= radius_mm + 1e-6) for row in dist]


@pytest.mark.parametrize(
    "affine",
    [
        np.diag([2.0, 3.0, 4.5, 1.0]),
        # oblique, anisotropic: a rotation about z times voxel sizes 2 x 2.5 x 3
        np.array(
            [
                [2.0 * np.cos(0.4), -2.5 * np.sin(0.4), 0.0, -10.0],
                [2.0 * np.sin(0.4), 2.5 * np.cos(0.4), 0.0, 5.0],
                [0.0, 0.0, 3.0, 2.0],
                [0.0, 0.0, 0.0, 1.0],
            ]
        ),
    ],
)
def test_anisotropic_and_oblique_world_distances(affine):
    rng = np.random.default_rng(3)
    mask = rng.random((9, 8, 7)) > 0.25
    radius_mm = 6.5
    nb = mask_neighbourhoods(mask, affine, radius_mm)
    expected = _brute_force_members(mask, affine, radius_mm)
    assert nb.n_centres == mask.sum()
    for c in range(nb.n_centres):
        assert np.array_equal(np.sort(nb.members(c)), expected[c])
        assert nb.indices[c, 0] == c
    assert np.array_equal(nb.sizes, [e.size for e in expected])
    # anisotropy matters: along x (2 mm) the sphere reaches 3 voxels, along z (>= 3 mm) 2
    offsets = sphere_offsets(np.diag([2.0, 3.0, 4.5, 1.0]), radius_mm)
    assert np.abs(offsets).max(axis=0).tolist() == [3, 2, 1]


def test_neighbourhoods_only_in_mask_and_from_lists():
    mask = _small_mask()
    nb = mask_neighbourhoods(mask, np.eye(4), 1.0)
    assert np.all(nb.indices[nb.indices != nb.padding] < nb.n_voxels)
    # a corner voxel next to a hole has fewer than 7 members
    assert nb.sizes.min() < 7 and nb.sizes.max() == 7
    rebuilt = Neighbourhoods.from_lists([nb.members(c) for c in range(nb.n_centres)], nb.n_voxels)
    for c in range(nb.n_centres):
        assert np.array_equal(np.sort(rebuilt.members(c)), np.sort(nb.members(c)))
    with pytest.raises(ValueError, match="members"):
        Neighbourhoods.from_lists([[0, 99]], 10)
    with pytest.raises(ValueError, match="radius_mm"):
        sphere_offsets(np.eye(4), -1.0)


def test_volume_neighbourhoods_from_image():
    from nilearn.datasets import load_mni152_brain_mask

    mask_img = load_mni152_brain_mask(resolution=2)
    nb = volume_neighbourhoods(mask_img, radius_mm=6.0)
    mask = np.asanyarray(mask_img.dataobj) != 0
    assert nb.n_centres == mask.sum() > 200_000
    assert nb.max_size == 123
    assert nb.indices.dtype == np.int32
    assert np.median(nb.sizes) == 123


# --------------------------------------------------------------------------- agreement
@pytest.mark.parametrize("metric", ["correlation", "euclidean"])
def test_rdms_and_evaluations_equal_rsatoolbox(small_problem, metric):
    rsatoolbox = pytest.importorskip("rsatoolbox")
    from rsatoolbox.inference import eval_fixed
    from rsatoolbox.model import ModelFixed
    from rsatoolbox.util.searchlight import evaluate_models_searchlight, get_searchlight_RDMs

    p = small_problem
    nb = p["nb"]
    neighbours = [nb.members(c) for c in range(nb.n_centres)]
    ours = searchlight_rdms(
        p["patterns"], nb, metric=metric, conditions=p["conditions"], min_voxels=1
    )
    theirs = get_searchlight_RDMs(
        p["patterns"],
        np.arange(nb.n_centres),
        neighbours,
        p["conditions"],
        method=metric,
        verbose=False,
    )
    np.testing.assert_allclose(ours, theirs.dissimilarities, rtol=0, atol=1e-6)

    models = [ModelFixed(f"m{i}", rsatoolbox.rdm.RDMs(p["models"][i][None, :])) for i in range(3)]
    for ours_name, their_name in [("spearman", "spearman"), ("pearson", "corr")]:
        scores = searchlight_rsa_array(
            p["patterns"],
            nb,
            p["models"],
            metric=metric,
            comparator=ours_name,
            conditions=p["conditions"],
            min_voxels=1,
        )
        results = evaluate_models_searchlight(theirs, models, eval_fixed, method=their_name)
        expected = np.array([r.evaluations.ravel() for r in results])
        np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("metric", ["correlation", "euclidean", "crossnobis"])
@pytest.mark.parametrize("comparator", ["spearman", "pearson", "cosine", "kendall_tau_a"])
def test_engine_equals_per_sphere_reference(small_problem, metric, comparator):
    p = small_problem
    ref = _reference_rdms(p["patterns"], p["nb"], metric, p["conditions"], p["runs"])
    rdms = searchlight_rdms(
        p["patterns"],
        p["nb"],
        metric=metric,
        conditions=p["conditions"],
        runs=p["runs"],
        min_voxels=1,
    )
    np.testing.assert_allclose(rdms, ref, rtol=1e-9, atol=1e-10)
    scores = searchlight_rsa_array(
        p["patterns"],
        p["nb"],
        p["models"],
        metric=metric,
        comparator=comparator,
        conditions=p["conditions"],
        runs=p["runs"],
        min_voxels=1,
        memory_budget_mb=0.05,  # many small blocks
    )
    np.testing.assert_allclose(scores, compare_rdms(ref, p["models"], comparator), atol=1e-9)


def test_threads_and_block_sizes_do_not_change_results(small_problem):
    p = small_problem
    kwargs = {"conditions": p["conditions"], "min_voxels": 1}
    one = searchlight_rsa_array(p["patterns"], p["nb"], p["models"], **kwargs)
    many = searchlight_rsa_array(
        p["patterns"], p["nb"], p["models"], n_jobs=2, memory_budget_mb=0.02, **kwargs
    )
    np.testing.assert_allclose(one, many, rtol=0, atol=1e-12)


def test_default_uses_all_cores_and_equals_one_thread(small_problem, monkeypatch):
    import dnnrsa.searchlight as sl

    p = small_problem
    kwargs = {"conditions": p["conditions"], "min_voxels": 1, "memory_budget_mb": 0.02}
    assert sl._resolve_n_jobs(None, np) == sl._resolve_n_jobs(-1, np)
    assert sl._resolve_n_jobs(3, np) == 3  # an explicit number is kept
    seen = []
    resolve = sl._resolve_n_jobs
    monkeypatch.setattr(sl, "_resolve_n_jobs", lambda n, xp: seen.append(n) or resolve(n, xp))
    default = searchlight_rsa_array(p["patterns"], p["nb"], p["models"], **kwargs)
    one = searchlight_rsa_array(p["patterns"], p["nb"], p["models"], n_jobs=1, **kwargs)
    assert seen == [None, 1]
    np.testing.assert_allclose(default, one, rtol=0, atol=1e-12)  # blocks differ in size


def test_fast_ranks_equal_scipy_with_ties():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((6, 300))
    x[0] = 0.0  # all tied
    x[1, :50] = x[1, 50:100]  # many ties
    x[2] = np.round(x[2], 1)
    x[3, 7], x[3, 8] = -0.0, 0.0  # signed zeros are equal
    x[4] *= 1e-300  # subnormals
    x[5, 3] = np.nextafter(x[5, 4], np.inf)  # neighbours one ulp apart
    ranks, tied_rows = _fast_ranks(x, np)
    np.testing.assert_array_equal(ranks, scipy_rankdata(x, axis=1))
    assert {0, 1, 2, 3} <= set(tied_rows.tolist())


# --------------------------------------------------------------------------- robustness
def test_unusable_voxels_are_excluded_not_poisoning(small_problem):
    p = small_problem
    patterns = p["patterns"].copy()
    bad_nan, bad_const, bad_inf = 40, 41, 77
    patterns[3, bad_nan] = np.nan
    patterns[:, bad_const] = 2.5
    patterns[5, bad_inf] = np.inf
    drop = (bad_nan, bad_const, bad_inf)
    scores = searchlight_rsa_array(
        patterns, p["nb"], p["models"], conditions=p["conditions"], min_voxels=1
    )
    assert np.all(np.isfinite(scores))
    clean = patterns.copy()
    clean[:, list(drop)] = 0.0
    ref = _reference_rdms(clean, p["nb"], "correlation", p["conditions"], drop=drop)
    np.testing.assert_allclose(scores, compare_rdms(ref, p["models"], "spearman"), atol=1e-9)


def test_min_voxels_gives_nan():
    mask = np.zeros((5, 5, 5), dtype=bool)
    mask[1:4, 1:4, 1:4] = True
    mask[0, 0, 0] = True  # isolated voxel: a one-voxel sphere
    nb = mask_neighbourhoods(mask, np.eye(4), 1.0)
    rng = np.random.default_rng(0)
    patterns = rng.standard_normal((6, nb.n_voxels))
    models = rng.random((2, 15))
    scores = searchlight_rsa_array(patterns, nb, models, metric="euclidean", min_voxels=5)
    small = nb.sizes < 5
    assert small.any() and (~small).any()
    assert np.all(np.isnan(scores[small]))
    assert np.all(np.isfinite(scores[~small]))


def test_constant_pattern_in_sphere_drops_entries():
    # a condition constant across one sphere's voxels: correlation distance undefined
    rng = np.random.default_rng(5)
    nb = Neighbourhoods.from_lists([[0, 1, 2, 3], [2, 3, 4, 5]], 6)
    patterns = rng.standard_normal((5, 6))
    patterns[1, :4] = 1.0
    models = rng.random((2, 10))
    scores = searchlight_rsa_array(patterns, nb, models, comparator="pearson", min_voxels=1)
    ref = _reference_rdms(patterns, nb, "correlation")
    assert np.isnan(ref[0]).sum() == 4
    np.testing.assert_allclose(scores, compare_rdms(ref, models, "pearson"), atol=1e-12)
    assert np.all(np.isfinite(scores))


def test_models_with_missing_entries(small_problem):
    p = small_problem
    ref = _reference_rdms(p["patterns"], p["nb"], "correlation", p["conditions"])
    same = p["models"].copy()
    same[:, [0, 5]] = np.nan
    differing = p["models"].copy()
    differing[0, 3] = np.nan
    differing[2, [1, 9]] = np.nan
    for models in (same, differing):
        scores = searchlight_rsa_array(
            p["patterns"], p["nb"], models, conditions=p["conditions"], min_voxels=1
        )
        np.testing.assert_allclose(scores, compare_rdms(ref, models, "spearman"), atol=1e-9)


def test_errors_name_parameter_and_value(small_problem):
    p = small_problem
    with pytest.raises(ValueError, match="metric must be one of.*'cosine'"):
        searchlight_rsa_array(p["patterns"], p["nb"], p["models"], metric="cosine")
    with pytest.raises(ValueError, match="comparator must be one of.*'tau'"):
        searchlight_rsa_array(p["patterns"], p["nb"], p["models"], comparator="tau")
    with pytest.raises(ValueError, match="model_rdms have 28 entries"):
        searchlight_rsa_array(p["patterns"], p["nb"], p["models"])  # 24 conditions here
    with pytest.raises(ValueError, match="min_voxels"):
        searchlight_rdms(p["patterns"], p["nb"], min_voxels=0)
    with pytest.raises(ValueError, match="crossnobis' needs runs"):
        searchlight_rdms(p["patterns"], p["nb"], metric="crossnobis", conditions=p["conditions"])
    with pytest.raises(ValueError, match="neighbourhoods were built for"):
        searchlight_rdms(p["patterns"][:, :10], p["nb"])


# --------------------------------------------------------------------------- planted effect
def test_planted_effect_is_recovered():
    rng = np.random.default_rng(2024)
    shape = (14, 14, 10)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    mask = np.ones(shape, dtype=bool)
    n_cond = 12
    # Model A: a geometry of 12 conditions in a 3-D latent space; model B unrelated.
    latent = rng.standard_normal((n_cond, 3))
    model_a = pdist(latent, "sqeuclidean")
    model_b = rng.random(model_a.size)
    ijk = np.argwhere(mask)
    region = np.linalg.norm(ijk - np.array([4, 9, 5]), axis=1) <= 2.5
    data = rng.standard_normal((n_cond, mask.sum()))
    loadings = rng.standard_normal((3, region.sum()))
    data[:, region] += 1.5 * latent @ loadings
    img = nib.Nifti1Image(np.moveaxis(_unmask(data, mask), 0, -1).astype(np.float32), affine)
    mask_img = nib.Nifti1Image(mask.astype(np.uint8), affine)
    out = searchlight_rsa(
        img,
        mask_img,
        np.vstack([model_a, model_b]),
        radius_mm=6.0,
        metric="euclidean",
        progress=False,
    )
    maps = out.get_fdata()
    assert out.shape == shape + (2,)
    peak = np.unravel_index(np.nanargmax(maps[..., 0]), shape)
    assert region[np.flatnonzero((ijk == peak).all(axis=1))[0]]
    a_in = maps[..., 0][mask][region]
    b_in = maps[..., 1][mask][region]
    assert a_in.mean() > 0.5
    assert a_in.mean() > b_in.mean() + 0.4
    assert abs(maps[..., 0][mask][~region].mean()) < a_in.mean() / 3


def _unmask(data, mask):
    vol = np.zeros((data.shape[0],) + mask.shape)
    vol[:, mask] = data
    return vol


def test_estimator_wraps_function(small_problem):
    p = small_problem
    vol = np.moveaxis(_unmask(p["patterns"], p["mask"]), 0, -1)
    img = nib.Nifti1Image(vol, p["affine"])
    mask_img = nib.Nifti1Image(p["mask"].astype(np.uint8), p["affine"])
    est = SearchlightRSA(mask_img, radius_mm=6.0, min_voxels=1, progress=False)
    assert est.fit(img, p["models"], conditions=p["conditions"]) is est
    direct = searchlight_rsa_array(
        p["patterns"], p["nb"], p["models"], conditions=p["conditions"], min_voxels=1
    )
    np.testing.assert_allclose(est.scores_, direct, atol=1e-12)
    np.testing.assert_allclose(est.scores_img_.get_fdata()[p["mask"]], direct, atol=1e-6)
    assert np.all(np.isnan(est.scores_img_.get_fdata()[~p["mask"]]))
    wrong = nib.Nifti1Image(p["mask"].astype(np.uint8), np.diag([2.0, 2.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="same grid"):
        searchlight_rsa(img, wrong, p["models"], progress=False)


# --------------------------------------------------------------------------- real data
def _haxby_patterns(name, n_runs=6):
    """Per-run category patterns: mean of the volumes acquired 5-22.5 s into each block."""
    import pandas as pd

    if not HAXBY.is_dir():
        pytest.skip(f"real data not found at {HAXBY}")
    vols, conditions, runs = [], [], []
    affine = None
    for run in range(1, n_runs + 1):
        folder = HAXBY / "sub001" / "BOLD" / f"task001_run{run:03d}"
        img = nib.load(folder / name)
        affine = img.affine
        data = np.asanyarray(img.dataobj).astype(np.float64)
        tr = float(img.header.get_zooms()[3])
        times = np.arange(data.shape[-1]) * tr
        events = pd.read_csv(folder / "bold_events.tsv", sep="\t")
        for _, ev in events.iterrows():
            sel = (times >= ev.onset + 5.0) & (times < ev.onset + ev.duration + 5.0)
            vols.append(data[..., sel].mean(axis=-1))
            conditions.append(ev.trial_type)
            runs.append(run)
    return np.stack(vols, axis=-1), affine, np.asarray(conditions), np.asarray(runs)


@pytest.mark.parametrize(
    ("name", "radius_mm", "metric", "comparator"),
    [
        ("bold_25mm.nii.gz", 50.0, "correlation", "spearman"),
        ("bold_25mm.nii.gz", 50.0, "crossnobis", "pearson"),
        ("bold_1slice.nii.gz", 8.0, "euclidean", "spearman"),
        ("bold_1slice.nii.gz", 8.0, "crossnobis", "kendall_tau_a"),
    ],
)
def test_real_haxby_end_to_end(name, radius_mm, metric, comparator):
    vol, affine, conditions, runs = _haxby_patterns(name)
    if name == "bold_25mm.nii.gz":
        mask = np.asanyarray(nib.load(HAXBY / "sub001" / "masks" / "25mm" / "brain.nii.gz").dataobj)
        mask = mask != 0
    else:
        mean = vol.mean(axis=-1)
        mask = mean > np.percentile(mean, 40)
    labels = np.unique(conditions)
    n_pairs = labels.size * (labels.size - 1) // 2
    rng = np.random.default_rng(1)
    # a category model (faces and cats are animate) and a random one
    animate = np.isin(labels, ["face", "cat"]).astype(float)
    models = np.vstack([pdist(animate[:, None], "cityblock"), rng.random(n_pairs)])
    img = nib.Nifti1Image(vol.astype(np.float32), affine)
    mask_img = nib.Nifti1Image(mask.astype(np.uint8), affine)
    out = searchlight_rsa(
        img,
        mask_img,
        models,
        radius_mm=radius_mm,
        metric=metric,
        comparator=comparator,
        conditions=conditions,
        runs=runs,
        min_voxels=3,
        progress=False,
    )
    maps = out.get_fdata()
    assert np.all(np.isnan(maps[~mask]))

    nb = mask_neighbourhoods(mask, affine, radius_mm)
    patterns = vol.astype(np.float32).astype(np.float64)[mask].T
    usable = np.isfinite(patterns).all(0) & (np.ptp(patterns, axis=0) > 0)
    drop = np.flatnonzero(~usable)
    ref_rdms = _reference_rdms(patterns, nb, metric, conditions, runs, drop=drop)
    counts = np.array([np.setdiff1d(nb.members(c), drop).size for c in range(nb.n_centres)])
    expected = compare_rdms(ref_rdms, models, comparator)
    expected[counts < 3] = np.nan
    got = maps[mask]
    assert np.isfinite(got).sum() > 0.8 * nb.n_centres
    np.testing.assert_allclose(got, expected, atol=1e-6)


# --------------------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.skipif(not backend.gpu_available(), reason="no usable CUDA device")
@pytest.mark.parametrize("metric", ["correlation", "euclidean", "crossnobis"])
@pytest.mark.parametrize("comparator", ["spearman", "pearson", "cosine", "kendall_tau_a"])
def test_gpu_equals_cpu(small_problem, metric, comparator):
    import cupy

    p = small_problem
    kwargs = {
        "metric": metric,
        "comparator": comparator,
        "conditions": p["conditions"],
        "runs": p["runs"],
        "min_voxels": 1,
    }
    cpu = searchlight_rsa_array(p["patterns"], p["nb"], p["models"], **kwargs)
    gpu = searchlight_rsa_array(cupy.asarray(p["patterns"]), p["nb"], p["models"], **kwargs)
    assert isinstance(gpu, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(gpu), cpu, atol=1e-9)
    rdms_gpu = searchlight_rdms(
        p["patterns"],
        p["nb"],
        device="cuda",
        **{k: v for k, v in kwargs.items() if k != "comparator"},
    )
    rdms_cpu = searchlight_rdms(
        p["patterns"], p["nb"], **{k: v for k, v in kwargs.items() if k != "comparator"}
    )
    np.testing.assert_allclose(cupy.asnumpy(rdms_gpu), rdms_cpu, rtol=1e-9, atol=1e-10)


@pytest.mark.gpu
@pytest.mark.skipif(not backend.gpu_available(), reason="no usable CUDA device")
def test_gpu_fast_ranks_equal_scipy():
    import cupy

    rng = np.random.default_rng(12)
    x = rng.standard_normal((5, 400))
    x[0, :100] = x[0, 100:200]
    x[1, 3], x[1, 4] = -0.0, 0.0
    ranks, _ = _fast_ranks(cupy.asarray(x), cupy)
    np.testing.assert_array_equal(cupy.asnumpy(ranks), scipy_rankdata(x, axis=1))
