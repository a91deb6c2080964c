"""Tests of dnnrsa.stats: sign-flip permutation tests, TFCE, clusters, layer comparison."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage, stats

from dnnrsa import stats as dstats

ALPHA = 0.05


def _smooth_noise(rng, n_subjects, shape, sigma=1.0):
    """Spatially smooth unit-variance noise, one volume per subject."""
    vols = rng.standard_normal((n_subjects, *shape))
    vols = np.stack([ndimage.gaussian_filter(v, sigma) for v in vols])
    return vols / vols.std()


def _box_mask(shape, margin=1):
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(margin, s - margin) for s in shape)] = True
    return mask


def _nilearn_sign_flips(random_state: int, n_subjects: int, n_perm: int) -> np.ndarray:
    """The sign patterns nilearn's permuted_ols draws with n_jobs=1.

    permuted_ols seeds its single worker from RandomState(random_state) and, for a
    one-sample test, multiplies the (already flipped) data by fresh random signs at
    every permutation, so the k-th pattern is the product of the first k draws.
    """
    outer = np.random.RandomState(random_state)
    inner = np.random.RandomState(outer.randint(1, np.iinfo(np.int32).max - 1))
    current = np.ones((n_subjects, 1))
    flips = np.empty((n_perm, n_subjects))
    for k in range(n_perm):
        current = current * (inner.randint(2, size=(n_subjects, 1)) * 2 - 1)
        flips[k] = current[:, 0]
    return flips


# -- small pieces ------------------------------------------------------------------


def test_fisher_z_known_values():
    r = np.array([-0.5, 0.0, 0.3, 0.9, np.nan])
    z = dstats.fisher_z(r)
    np.testing.assert_allclose(z[:4], np.arctanh(r[:4]), rtol=1e-12)
    assert np.isnan(z[4])
    ends = dstats.fisher_z(np.array([-1.0, 1.0]))
    assert np.all(np.isfinite(ends))
    np.testing.assert_allclose(ends, [-np.arctanh(1 - 1e-7), np.arctanh(1 - 1e-7)])
    with pytest.raises(ValueError, match="clip"):
        dstats.fisher_z(r, clip=1.5)


def test_t_to_z_matches_normal_quantiles_and_stays_finite():
    t = np.array([-3.0, -0.5, 0.0, 1.0, 2.5, 6.0])
    df = 11
    expected = stats.norm.isf(stats.t.sf(t, df))
    np.testing.assert_allclose(dstats.t_to_z(t, df), expected, rtol=1e-9, atol=1e-12)
    big = dstats.t_to_z(np.array([50.0, 200.0, 1e4]), 5)
    assert np.all(np.isfinite(big)) and np.all(np.diff(big) > 0)


def test_sign_flip_matrix_exhaustive_and_random():
    signs, exhaustive = dstats.sign_flip_matrix(4, 16)
    assert exhaustive and signs.shape == (16, 4)
    assert np.all(signs[0] == 1)
    assert len({tuple(row) for row in signs}) == 16
    signs, exhaustive = dstats.sign_flip_matrix(10, 100, random_state=3)
    again, _ = dstats.sign_flip_matrix(10, 100, random_state=3)
    assert not exhaustive and signs.shape == (100, 10)
    np.testing.assert_array_equal(signs, again)
    assert set(np.unique(signs)) == {-1.0, 1.0}
    # fair coins: the mean sign is close to zero
    assert abs(signs.mean()) < 4 * 1 / np.sqrt(signs.size)


# -- the one-sample test -----------------------------------------------------------


@pytest.mark.parametrize("two_sided", [False, True])
def test_uncorrected_statistics_match_scipy(rng, two_sided):
    data = rng.standard_normal((9, 50)) + np.linspace(-1, 1, 50)
    res = dstats.sign_flip_test(data, n_permutations=100, two_sided=two_sided, random_state=0)
    ref = stats.ttest_1samp(data, 0.0, alternative="two-sided" if two_sided else "greater")
    np.testing.assert_allclose(res.t, ref.statistic, rtol=1e-12)
    np.testing.assert_allclose(res.p, ref.pvalue, rtol=1e-9)
    np.testing.assert_allclose(res.z, dstats.t_to_z(ref.statistic, 8), rtol=1e-12)
    assert res.df == 8


@pytest.mark.parametrize("two_sided", [False, True])
def test_exhaustive_permutation_p_matches_scipy_permutation_test(rng, two_sided):
    n_subjects = 7  # 128 sign patterns, all enumerated
    data = rng.standard_normal((n_subjects, 12)) + 0.6
    res = dstats.sign_flip_test(data, n_permutations=1000, two_sided=two_sided)
    assert res.exhaustive and res.n_permutations == 2**n_subjects

    def tstat(x, axis=-1):
        return stats.ttest_1samp(x, 0.0, axis=axis).statistic

    for v in range(data.shape[1]):
        ref = stats.permutation_test(
            (data[:, v],),
            tstat,
            permutation_type="samples",
            alternative="two-sided" if two_sided else "greater",
            n_resamples=np.inf,
            vectorized=True,
        )
        if two_sided:
            # scipy doubles the smaller tail; for a null symmetric about 0 (sign
            # flips) that is the proportion of |t*| >= |t|
            expected = np.mean(np.abs(ref.null_distribution) >= abs(ref.statistic) * (1 - 1e-12))
        else:
            expected = ref.pvalue
        assert res.p_perm[v] == pytest.approx(expected, abs=1e-12)


def test_exhaustive_fwe_matches_brute_force_enumeration(rng):
    n_subjects, n_voxels = 6, 15
    data = rng.standard_normal((n_subjects, n_voxels))
    data[:, :3] += 1.5
    res = dstats.sign_flip_test(data, n_permutations=64, two_sided=True)
    assert res.exhaustive
    maxima = []
    for code in range(2**n_subjects):
        signs = np.array([-1.0 if (code >> i) & 1 else 1.0 for i in range(n_subjects)])
        t = stats.ttest_1samp(data * signs[:, None], 0.0).statistic
        maxima.append(np.abs(t).max())
    maxima = np.array(maxima)
    np.testing.assert_allclose(np.sort(res.h0_max_t), np.sort(maxima), rtol=1e-10)
    expected = np.array([np.mean(maxima >= abs(t) * (1 - 1e-12)) for t in res.t])
    np.testing.assert_allclose(res.p_fwe, expected, atol=1e-12)
    # the smallest attainable p of an exhaustive two-sided test is 2 / 2**n
    assert res.p_fwe.min() >= 2 / 2**n_subjects - 1e-12


def test_seeded_and_batching_invariant(rng):
    data = rng.standard_normal((14, 300)) + 0.2
    a = dstats.sign_flip_test(data, n_permutations=400, random_state=7)
    b = dstats.sign_flip_test(data, n_permutations=400, random_state=7, max_memory_mb=0.05)
    c = dstats.sign_flip_test(data, n_permutations=400, random_state=8)
    np.testing.assert_allclose(a.h0_max_t, b.h0_max_t, rtol=1e-12)
    np.testing.assert_array_equal(a.p_fwe, b.p_fwe)
    np.testing.assert_array_equal(a.p_perm, b.p_perm)
    assert not np.allclose(a.h0_max_t, c.h0_max_t)


def test_invalid_voxels_are_excluded(rng):
    data = rng.standard_normal((10, 40)) + 0.3
    bad = data.copy()
    bad[3, 5] = np.nan
    bad[:, 9] = 2.0  # constant: no variance
    flips, _ = dstats.sign_flip_matrix(10, 200, random_state=1)
    res = dstats.sign_flip_test(bad, sign_flips=flips)
    keep = np.setdiff1d(np.arange(40), [5, 9])
    ref = dstats.sign_flip_test(data[:, keep], sign_flips=flips)
    assert np.isnan(res.t[[5, 9]]).all() and np.all(res.p_fwe[[5, 9]] == 1)
    np.testing.assert_allclose(res.t[keep], ref.t)
    np.testing.assert_allclose(res.p_fwe[keep], ref.p_fwe)
    np.testing.assert_allclose(res.h0_max_t, ref.h0_max_t)


def test_argument_errors(rng):
    data = rng.standard_normal((5, 8))
    with pytest.raises(ValueError, match="mask is required"):
        dstats.sign_flip_test(data, tfce=True)
    with pytest.raises(ValueError, match="threshold_type"):
        dstats.sign_flip_test(data, threshold_type="z")
    with pytest.raises(ValueError, match="sign_flips"):
        dstats.sign_flip_test(data, sign_flips=np.zeros((3, 5)))
    with pytest.raises(ValueError, match="mask has 27 voxels"):
        dstats.sign_flip_test(data, mask=np.ones((3, 3, 3), bool), tfce=True)
    with pytest.raises(ValueError, match="cluster_forming_threshold"):
        dstats.sign_flip_test(data, mask=np.ones((2, 2, 2), bool), cluster_forming_threshold=3.0)
    with pytest.raises(ValueError, match="data needs at least 2 subjects"):
        dstats.sign_flip_test(data[:1])


# -- agreement with nilearn --------------------------------------------------------


def _nilearn_setup(rng, n_subjects=10, shape=(10, 10, 8)):
    from nilearn.maskers import NiftiMasker

    mask = _box_mask(shape)
    vols = _smooth_noise(rng, n_subjects, shape)
    vols[:, 3:6, 3:6, 2:5] += 0.9  # a blob, so that clusters and TFCE have structure
    vols[:, 6:8, 2:4, 4:6] -= 0.9  # and a negative one
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    mask_img = nib.Nifti1Image(mask.astype(np.uint8), affine)
    masker = NiftiMasker(mask_img).fit()
    return vols[:, mask], mask, mask_img, masker, affine, vols


@pytest.mark.parametrize("two_sided", [False, True])
def test_identical_to_nilearn_permuted_ols_with_the_same_sign_flips(rng, two_sided):
    from nilearn.mass_univariate import permuted_ols

    data, mask, _, masker, _, _ = _nilearn_setup(rng)
    n_perm, seed = 60, 11
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = permuted_ols(
            np.ones((data.shape[0], 1)),
            data,
            model_intercept=False,
            n_perm=n_perm,
            two_sided_test=two_sided,
            random_state=seed,
            n_jobs=1,
            masker=masker,
            tfce=True,
            threshold=0.01,
            output_type="dict",
            verbose=0,
        )
    flips = _nilearn_sign_flips(seed, data.shape[0], n_perm)
    res = dstats.sign_flip_test(
        data,
        mask=mask,
        sign_flips=flips,
        two_sided=two_sided,
        tfce=True,
        cluster_forming_threshold=0.01,
    )
    np.testing.assert_allclose(res.t, ref["t"][0], rtol=1e-10)
    np.testing.assert_allclose(res.h0_max_t, ref["h0_max_t"][0], rtol=1e-10)
    np.testing.assert_allclose(res.p_fwe, 10 ** -ref["logp_max_t"][0], rtol=1e-10)
    np.testing.assert_allclose(res.tfce, ref["tfce"][0], rtol=1e-10)
    assert np.abs(res.tfce).max() > 100  # there is something to compare
    np.testing.assert_allclose(res.h0_max_tfce, ref["h0_max_tfce"][0], rtol=1e-10)
    np.testing.assert_allclose(res.p_tfce_fwe, 10 ** -ref["logp_max_tfce"][0], rtol=1e-10)
    np.testing.assert_array_equal(res.cluster_size, ref["size"][0])
    np.testing.assert_allclose(res.cluster_mass, ref["mass"][0], rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(res.h0_max_size, ref["h0_max_size"][0])
    np.testing.assert_allclose(res.h0_max_mass, ref["h0_max_mass"][0], rtol=1e-10)
    assert res.cluster_threshold_t == pytest.approx(
        stats.t.isf(0.005 if two_sided else 0.01, data.shape[0] - 1)
    )
    # nilearn's cluster p is #{null >= observed} / n_perm (clipped); ours adds the
    # observed pattern to the null, (1 + #) / (1 + n_perm): convert and compare
    counts = res.p_cluster_size_fwe * (n_perm + 1) - 1
    in_cluster = res.cluster_size > 0
    nl = 10 ** -ref["logp_max_size"][0]
    np.testing.assert_allclose(
        np.clip(counts[in_cluster] / n_perm, 1 / n_perm, 1 - 1 / n_perm), nl[in_cluster]
    )


def test_fwe_p_agrees_with_non_parametric_inference_within_monte_carlo_error(rng):
    import pandas as pd
    from nilearn.glm.second_level import non_parametric_inference

    _, mask, mask_img, _, affine, vols = _nilearn_setup(rng, n_subjects=12)
    imgs = [nib.Nifti1Image(v, affine) for v in vols]
    n_perm = 1000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = non_parametric_inference(
            imgs,
            design_matrix=pd.DataFrame({"intercept": np.ones(len(imgs))}),
            mask=mask_img,
            n_perm=n_perm,
            two_sided_test=True,
            random_state=0,
        )
    ref_p = 10 ** -np.asanyarray(ref.dataobj)[mask]
    res, images = dstats.sign_flip_test_imgs(
        imgs, mask_img, n_permutations=n_perm, two_sided=True, random_state=123
    )
    # different random sign patterns: each p has binomial error sqrt(p(1-p)/n_perm)
    se = np.sqrt(np.clip(ref_p * (1 - ref_p), 1e-3, None) / n_perm)
    assert np.all(np.abs(res.p_fwe - ref_p) <= 5 * np.sqrt(2) * se)
    assert (res.p_fwe < ALPHA).any() and (res.p_fwe > 0.5).any()
    # the image round trip puts every value back at its voxel
    np.testing.assert_allclose(images["t"].get_fdata()[mask], res.t, rtol=1e-6)


# -- planted effects and error rates ----------------------------------------------


def test_planted_blob_is_found_by_every_fwe_map_and_nothing_far_away():
    rng = np.random.default_rng(5)
    shape = (14, 14, 12)
    mask = _box_mask(shape)
    vols = _smooth_noise(rng, 16, shape)
    blob = np.zeros(shape, bool)
    blob[5:9, 5:9, 4:8] = True
    vols[:, blob] += 1.2
    data = vols[:, mask]
    res = dstats.sign_flip_test(
        data,
        mask=mask,
        n_permutations=300,
        tfce=True,
        cluster_forming_threshold=0.001,
        random_state=0,
    )
    in_blob = blob[mask]
    far = ~ndimage.binary_dilation(blob, iterations=3)[mask]
    for p in (res.p_fwe, res.p_tfce_fwe, res.p_cluster_size_fwe, res.p_cluster_mass_fwe):
        assert np.mean(p[in_blob] < ALPHA) > 0.5
        assert np.mean(p[far] < ALPHA) < 0.02
    # the peak lies in the blob
    assert in_blob[np.argmax(res.t)]


def test_two_sided_finds_a_negative_effect_one_sided_does_not(rng):
    data = rng.standard_normal((12, 30))
    data[:, :5] -= 2.5
    one = dstats.sign_flip_test(data, n_permutations=500, random_state=0)
    two = dstats.sign_flip_test(data, n_permutations=500, random_state=0, two_sided=True)
    assert np.all(two.p_fwe[:5] < ALPHA)
    assert np.all(one.p_fwe[:5] > 0.5)


def _fwe_false_positive_rate(n_datasets, seed, **kwargs):
    rng = np.random.default_rng(seed)
    shape = (8, 8, 6)
    mask = np.ones(shape, bool)
    hits = 0
    for _ in range(n_datasets):
        data = _smooth_noise(rng, 10, shape, sigma=0.8)[:, mask]
        res = dstats.sign_flip_test(data, mask=mask, random_state=rng, **kwargs)
        p = {
            "t": res.p_fwe,
            "tfce": res.p_tfce_fwe if res.p_tfce_fwe is not None else res.p_fwe,
        }
        key = "tfce" if kwargs.get("tfce") else "t"
        if kwargs.get("cluster_forming_threshold") is not None:
            p[key] = res.p_cluster_mass_fwe
        hits += bool((p[key] <= ALPHA).any())
    return hits / n_datasets


def test_family_wise_error_rate_of_max_t_on_pure_noise():
    n = 400
    rate = _fwe_false_positive_rate(n, 2024, n_permutations=100, two_sided=True)
    se = np.sqrt(ALPHA * (1 - ALPHA) / n)
    # controlled at alpha (within Monte Carlo error) and not grossly conservative
    assert rate <= ALPHA + 3 * se
    assert rate >= ALPHA - 3 * se


@pytest.mark.parametrize(
    "kwargs", [{"tfce": True}, {"cluster_forming_threshold": 0.01}], ids=["tfce", "cluster"]
)
def test_family_wise_error_rate_of_tfce_and_clusters_on_pure_noise(kwargs):
    n = 100
    rate = _fwe_false_positive_rate(n, 99, n_permutations=40, **kwargs)
    se = np.sqrt(ALPHA * (1 - ALPHA) / n)
    assert rate <= ALPHA + 3 * se


def test_uncorrected_permutation_p_is_uniform_under_the_null(rng):
    data = rng.standard_normal((10, 4000))
    res = dstats.sign_flip_test(data, n_permutations=200, random_state=rng)
    # the proportion below alpha is alpha within binomial error
    se = np.sqrt(ALPHA * (1 - ALPHA) / data.shape[1])
    assert abs(np.mean(res.p_perm <= ALPHA) - ALPHA) < 4 * se
    assert abs(np.mean(res.p <= ALPHA) - ALPHA) < 4 * se


# -- layers compared with each other ---------------------------------------------


def test_winner_take_all_recovers_planted_layers(rng):
    n_subjects, n_layers, n_voxels = 8, 5, 60
    maps = rng.normal(0, 0.3, (n_subjects, n_layers, n_voxels))
    truth = np.repeat(np.arange(n_layers), n_voxels // n_layers)
    maps[:, truth, np.arange(n_voxels)] += 2.0
    winner, margin = dstats.winner_take_all(maps)
    np.testing.assert_array_equal(winner, truth)
    assert np.all(margin > 1.0)
    with pytest.raises(ValueError, match="n_layers"):
        dstats.winner_take_all(maps[:, :1])


def test_best_versus_second_layer_test_is_valid_and_powerful():
    rng = np.random.default_rng(17)
    n_subjects, n_layers, n_voxels = 16, 4, 400
    # null: all layers equally good; the test must hold its level although the two
    # layers it compares are the best two of four
    maps = rng.standard_normal((n_subjects, n_layers, n_voxels))
    res = dstats.compare_best_layers(maps, n_permutations=300, random_state=0)
    assert len(np.intersect1d(res.selection_subjects, res.test_subjects)) == 0
    assert res.differences.shape == (len(res.test_subjects), n_voxels)
    se = np.sqrt(ALPHA * (1 - ALPHA) / n_voxels)
    assert np.mean(res.test.p_perm <= ALPHA) <= ALPHA + 3 * se

    # planted: layer 2 better than the others by 1.5 SD in the first half of voxels
    maps[:, 2, : n_voxels // 2] += 1.5
    res = dstats.compare_best_layers(maps, n_permutations=300, random_state=0)
    assert np.mean(res.winner[: n_voxels // 2] == 2) > 0.95
    assert np.mean(res.test.p_perm[: n_voxels // 2] <= ALPHA) > 0.7
    assert np.mean(res.test.p_perm[n_voxels // 2 :] <= ALPHA) <= ALPHA + 3 * se


@pytest.mark.gpu
def test_cupy_matches_numpy(rng):
    import cupy

    shape = (10, 10, 8)
    mask = _box_mask(shape)
    data = _smooth_noise(rng, 10, shape)[:, mask] + 0.5
    kwargs = dict(
        mask=mask,
        n_permutations=100,
        random_state=4,
        tfce=True,
        cluster_forming_threshold=0.01,
        two_sided=True,
    )
    cpu = dstats.sign_flip_test(data, **kwargs)
    gpu = dstats.sign_flip_test(cupy.asarray(data), **kwargs)
    for name in ("t", "p_fwe", "p_perm", "tfce", "p_tfce_fwe", "cluster_mass"):
        np.testing.assert_allclose(getattr(gpu, name), getattr(cpu, name), rtol=1e-8, atol=1e-8)
    assert isinstance(gpu.t, np.ndarray)


@pytest.mark.parametrize("connectivity", [6, 26])
def test_graph_labelling_matches_volume_labelling(rng, monkeypatch, connectivity):
    """Large masks on the CPU label clusters as graph components: same results."""
    from dnnrsa import _tfce

    shape = (16, 18, 14)
    mask = _box_mask(shape)
    mask[6:10, 6:10, :] = False  # a hole, so that clusters must go around it
    maps = _smooth_noise(rng, 4, shape, sigma=1.2)[:, mask] * 2.0
    layout = _tfce.VolumeLayout(mask, connectivity=connectivity)
    assert not layout.use_graph
    by_volume = _tfce.tfce(maps, layout, two_sided=True)
    clusters_by_volume = _tfce.cluster_measures(maps, layout, 1.5, two_sided=True)
    monkeypatch.setattr(_tfce, "GRAPH_MIN_VOXELS", 1)
    assert layout.use_graph
    by_graph = _tfce.tfce(maps, layout, two_sided=True)
    clusters_by_graph = _tfce.cluster_measures(maps, layout, 1.5, two_sided=True)
    assert np.abs(by_volume).max() > 100
    np.testing.assert_allclose(by_graph, by_volume, rtol=1e-12)
    for a, b in zip(clusters_by_graph, clusters_by_volume, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    # cluster sizes agree with scipy.ndimage on the full volume
    vol = np.zeros(shape)
    vol[mask] = maps[0]
    labels, _ = ndimage.label(
        vol > 1.5, ndimage.generate_binary_structure(3, {6: 1, 26: 3}[connectivity])
    )
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    np.testing.assert_array_equal(
        clusters_by_graph[0][0][maps[0] > 1.5], sizes[labels[mask]][maps[0] > 1.5]
    )


# -- the blocked max-T kernel --------------------------------------------------------


def _max_t_reference(data, signs, two_sided, exhaustive):
    """Every permuted t map at once, as the textbook formula gives them."""
    n = data.shape[0]
    valid = np.isfinite(data).all(axis=0)
    valid[valid] = data[:, valid].std(axis=0) > 0
    x = data[:, valid]
    s = signs @ x
    t = (s / n) / np.sqrt((np.sum(x * x, axis=0) - s**2 / n) / (n * (n - 1)))
    t_obs = x.mean(axis=0) / (x.std(axis=0, ddof=1) / np.sqrt(n))
    stat, ref = (np.abs(t), np.abs(t_obs)) if two_sided else (t, t_obs)
    ref = ref - 1e-9 * np.maximum(np.abs(ref), 1.0)
    h0 = stat.max(axis=1)
    counts = (stat >= ref).sum(axis=0)
    n_ge = (h0[:, None] >= ref).sum(axis=0)
    if exhaustive:
        p_perm, p_fwe = counts / len(signs), n_ge / len(signs)
    else:
        p_perm, p_fwe = (counts + 1) / (len(signs) + 1), (n_ge + 1) / (len(signs) + 1)
    return valid, h0, p_perm, p_fwe


@pytest.mark.parametrize("two_sided", [False, True])
@pytest.mark.parametrize(("n_subjects", "n_perm"), [(5, 100), (9, 400), (16, 300), (23, 250)])
def test_blocked_max_t_equals_an_unblocked_reference(rng, two_sided, n_subjects, n_perm):
    data = rng.standard_normal((n_subjects, 301)) + 0.25
    data[2, 7] = np.nan
    data[0, 40] = -np.inf
    data[:, 11] = 2.0  # no variance
    signs, exhaustive = dstats.sign_flip_matrix(n_subjects, n_perm, random_state=5)
    valid, h0, p_perm, p_fwe = _max_t_reference(data, signs, two_sided, exhaustive)
    for max_memory_mb, n_jobs in [(512.0, 1), (0.001, 1), (0.05, 2), (0.2, 3)]:
        res = dstats.sign_flip_test(
            data,
            n_permutations=n_perm,
            random_state=5,
            two_sided=two_sided,
            max_memory_mb=max_memory_mb,
            n_jobs=n_jobs,
        )
        assert res.exhaustive == exhaustive
        np.testing.assert_allclose(res.h0_max_t, h0, rtol=1e-12)
        np.testing.assert_array_equal(res.p_perm[valid], p_perm)
        np.testing.assert_array_equal(res.p_fwe[valid], p_fwe)
        assert np.all(res.p_fwe[~valid] == 1) and np.all(res.p_perm[~valid] == 1)
        assert np.isnan(res.t[~valid]).all()


@pytest.mark.parametrize("two_sided", [False, True])
def test_table_kernel_equals_matrix_products_for_any_batch(rng, two_sided):
    n_subjects, n_perm = 21, 700
    x = rng.standard_normal((n_subjects, 257)) + 0.2
    xn = x / np.sqrt(np.sum(x * x, axis=0))
    signs, _ = dstats.sign_flip_matrix(n_subjects, n_perm, random_state=2)
    u_ref = rng.uniform(0.2, 1.5, size=x.shape[1])
    full = signs @ xn
    stat = np.abs(full) if two_sided else full
    expected_max, expected_counts = stat.max(axis=1), (stat >= u_ref).sum(axis=0)
    flipped = signs < 0
    for groups in ([(0, 21)], [(0, 10), (10, 21)], [(0, 7), (7, 14), (14, 21)]):
        codes = [
            (flipped[:, lo:hi] << np.arange(hi - lo)).sum(axis=1).astype(np.intp)
            for lo, hi in groups
        ]
        for groups_, codes_ in ((groups, codes), (None, None)):
            for batch in (1, 37, 255, 256, 700):
                max_u, counts = dstats._max_t_block(
                    xn,
                    signs,
                    u_ref,
                    two_sided=two_sided,
                    batch=batch,
                    groups=groups_,
                    codes=codes_,
                    xp=np,
                )
                np.testing.assert_allclose(max_u, expected_max, rtol=1e-12)
                np.testing.assert_array_equal(counts, expected_counts)


@pytest.mark.parametrize("two_sided", [False, True])
def test_max_t_equals_the_permuted_t_maps_of_the_tfce_path(rng, two_sided):
    shape = (9, 9, 7)
    mask = _box_mask(shape)
    data = _smooth_noise(rng, 12, shape)[:, mask] + 0.3
    kwargs = dict(n_permutations=500, random_state=3, two_sided=two_sided)
    maps = dstats.sign_flip_test(data, mask=mask, cluster_forming_threshold=0.01, **kwargs)
    fast = dstats.sign_flip_test(data, **kwargs)
    np.testing.assert_array_equal(fast.t, maps.t)
    np.testing.assert_array_equal(fast.z, maps.z)
    np.testing.assert_allclose(fast.h0_max_t, maps.h0_max_t, rtol=1e-12)
    np.testing.assert_array_equal(fast.p_fwe, maps.p_fwe)
    np.testing.assert_array_equal(fast.p_perm, maps.p_perm)


@pytest.mark.parametrize("two_sided", [False, True])
def test_max_t_identical_to_nilearn_permuted_ols(rng, two_sided):
    from nilearn.mass_univariate import permuted_ols

    data = rng.standard_normal((11, 500)) + 0.3
    n_perm, seed = 200, 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = permuted_ols(
            np.ones((data.shape[0], 1)),
            data,
            model_intercept=False,
            n_perm=n_perm,
            two_sided_test=two_sided,
            random_state=seed,
            n_jobs=1,
            output_type="dict",
            verbose=0,
        )
    flips = _nilearn_sign_flips(seed, data.shape[0], n_perm)
    res = dstats.sign_flip_test(data, sign_flips=flips, two_sided=two_sided, max_memory_mb=0.05)
    np.testing.assert_allclose(res.t, ref["t"][0], rtol=1e-10)
    np.testing.assert_allclose(res.h0_max_t, ref["h0_max_t"][0], rtol=1e-10)
    np.testing.assert_allclose(res.p_fwe, 10 ** -ref["logp_max_t"][0], rtol=1e-10)


@pytest.mark.gpu
@pytest.mark.parametrize("two_sided", [False, True])
def test_cupy_max_t_matches_numpy(rng, two_sided):
    import cupy

    data = rng.standard_normal((14, 2000)) + 0.2
    data[3, 10] = np.nan
    kwargs = dict(n_permutations=600, random_state=1, two_sided=two_sided, max_memory_mb=0.5)
    cpu = dstats.sign_flip_test(data, **kwargs)
    gpu = dstats.sign_flip_test(cupy.asarray(data), **kwargs)
    np.testing.assert_array_equal(gpu.t, cpu.t)
    np.testing.assert_allclose(gpu.h0_max_t, cpu.h0_max_t, rtol=1e-12)
    np.testing.assert_array_equal(gpu.p_fwe, cpu.p_fwe)
    np.testing.assert_array_equal(gpu.p_perm, cpu.p_perm)
