"""TFCE by flooding the merge tree: equal to nilearn's TFCE, on small and whole-brain masks.

nilearn's ``calculate_tfce`` labels the volume at each of its 100 thresholds; the
compiled flooding of ``dnnrsa._tfce_numba`` builds the merge tree of the clusters
over the thresholds in one pass. Both are run on identical inputs (the map scattered
into the volume, zeros outside the mask).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage

from dnnrsa import _tfce

CONNECTIVITY_RANK = {6: 1, 18: 2, 26: 3}


def _nilearn_tfce(map_, mask, connectivity=6, two_sided=True, e=0.5, h=2.0, n_steps=100):
    from nilearn.mass_univariate._utils import calculate_tfce

    vol = np.zeros((*mask.shape, 1))
    vol[mask, 0] = map_
    top = np.max(np.abs(map_)) if two_sided else np.max(map_)
    structure = ndimage.generate_binary_structure(3, CONNECTIVITY_RANK[connectivity])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = calculate_tfce(
            vol,
            structure,
            E=e,
            H=h,
            dh="auto" if n_steps == 100 else top / n_steps,
            two_sided_test=two_sided,
        )
    return out[..., 0][mask]


def _smooth_map(rng, mask, sigma=1.5, decimals=2, scale=2.0):
    """Smooth random map with both signs, rounded so that many voxels tie."""
    vol = ndimage.gaussian_filter(rng.standard_normal(mask.shape), sigma)
    values = vol[mask]
    return np.round(values / values.std() * scale, decimals)


def _tree_layout(mask, connectivity, monkeypatch):
    """A layout whose TFCE goes through the compiled flooding, whatever the mask size."""
    monkeypatch.setattr(_tfce, "GRAPH_MIN_VOXELS", 1)
    layout = _tfce.VolumeLayout(mask, connectivity=connectivity)
    assert layout.use_graph
    return layout


def _small_mask(shape=(14, 16, 12)):
    mask = np.zeros(shape, dtype=bool)
    mask[1:-1, 1:-1, 1:-1] = True
    mask[5:9, 5:9, :] = False  # a hole, so that clusters must go around it
    mask[2, 2, 2] = False
    return mask


@pytest.fixture(scope="module")
def brain_mask():
    from nilearn.datasets import load_mni152_brain_mask

    mask = np.asanyarray(load_mni152_brain_mask(resolution=2).dataobj) > 0
    assert mask.sum() > 200_000
    return mask


@pytest.mark.parametrize("connectivity", [6, 18, 26])
@pytest.mark.parametrize("two_sided", [True, False])
def test_equal_to_nilearn_on_small_masks(rng, monkeypatch, connectivity, two_sided):
    mask = _small_mask()
    layout = _tree_layout(mask, connectivity, monkeypatch)
    maps = np.stack([_smooth_map(rng, mask, sigma=s) for s in (0.8, 1.2, 2.0)])
    maps[2] = np.round(maps[2], 0)  # few distinct values: plateaus and ties everywhere
    ours = _tfce.tfce(maps, layout, two_sided=two_sided)
    for i, map_ in enumerate(maps):
        ref = _nilearn_tfce(map_, mask, connectivity, two_sided)
        assert np.abs(ref).max() > 10
        np.testing.assert_allclose(ours[i], ref, rtol=1e-10, atol=0)


@pytest.mark.parametrize(
    ("e", "h", "n_steps"), [(0.5, 2.0, 100), (1.0, 1.5, 37), (2.0 / 3, 2.0, 250)]
)
def test_equal_to_nilearn_with_other_exponents_and_steps(rng, monkeypatch, e, h, n_steps):
    mask = _small_mask()
    layout = _tree_layout(mask, 6, monkeypatch)
    map_ = _smooth_map(rng, mask, sigma=1.0)
    ours = _tfce.tfce(map_[None], layout, two_sided=True, e=e, h=h, n_steps=n_steps)[0]
    ref = _nilearn_tfce(map_, mask, 6, True, e=e, h=h, n_steps=n_steps)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=0)


def test_equal_to_nilearn_on_unsmoothed_noise(rng, monkeypatch):
    """Many small clusters at every threshold."""
    mask = _small_mask((20, 20, 20))
    layout = _tree_layout(mask, 26, monkeypatch)
    map_ = rng.standard_normal(int(mask.sum()))
    ours = _tfce.tfce(map_[None], layout, two_sided=True)[0]
    np.testing.assert_allclose(ours, _nilearn_tfce(map_, mask, 26, True), rtol=1e-10, atol=0)


@pytest.mark.parametrize(
    ("connectivity", "two_sided", "sigma"),
    [(6, True, 1.5), (26, False, 2.5), (18, True, 0.7), (6, True, 0.0), (26, True, 0.0)],
)
def test_equal_to_nilearn_on_a_whole_brain_map(rng, brain_mask, connectivity, two_sided, sigma):
    """MNI 2 mm mask (235,375 voxels): maps with ties and both signs (sigma 0: noise)."""
    layout = _tfce.VolumeLayout(brain_mask, connectivity=connectivity)
    assert layout.use_graph  # the compiled flooding, by default at this size
    map_ = _smooth_map(rng, brain_mask, sigma=sigma)
    assert (map_ > 0).any() and (map_ < 0).any()
    assert np.unique(map_).size < map_.size // 100  # ties
    ours = _tfce.tfce(map_[None], layout, two_sided=two_sided)[0]
    ref = _nilearn_tfce(map_, brain_mask, connectivity, two_sided)
    assert np.abs(ref).max() > 1000
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=0)
    assert np.abs(ours - ref).max() <= 1e-10


@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_batched_equals_unbatched(rng, brain_mask, connectivity):
    layout = _tfce.VolumeLayout(brain_mask, connectivity=connectivity)
    maps = np.stack([_smooth_map(rng, brain_mask, sigma=s) for s in (1.0, 1.5, 2.0, 0.0)])
    maps[1] *= 3.0
    maps[2] = -np.abs(maps[2])  # negative only: nothing one-sided
    for two_sided in (True, False):
        batched = _tfce.tfce(maps, layout, two_sided=two_sided)
        assert np.abs(batched).max() > 1000
        for i, map_ in enumerate(maps):
            one = _tfce.tfce(map_[None], layout, two_sided=two_sided)[0]
            np.testing.assert_array_equal(batched[i], one)
        # a batch mixing maps of different maxima gives each map its own thresholds
        np.testing.assert_array_equal(
            _tfce.tfce(maps[::-1], layout, two_sided=two_sided), batched[::-1]
        )
        # maps computed on several threads at once: the same numbers
        np.testing.assert_array_equal(
            _tfce.tfce(maps, layout, two_sided=two_sided, n_jobs=3), batched
        )
    np.testing.assert_array_equal(batched[2], 0.0)


def test_batch_of_noise_maps_equal_to_nilearn_on_threads(rng, monkeypatch):
    """A batch of unsmoothed noise maps on several threads, each map against nilearn."""
    mask = _small_mask((24, 22, 20))
    layout = _tree_layout(mask, 6, monkeypatch)
    maps = rng.standard_normal((5, int(mask.sum())))
    maps[3] = np.round(maps[3], 1)  # ties
    ours = _tfce.tfce(maps, layout, two_sided=True, n_jobs=2)
    for i, map_ in enumerate(maps):
        np.testing.assert_allclose(ours[i], _nilearn_tfce(map_, mask), rtol=1e-10, atol=0)


@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_tree_equals_labelling_at_every_threshold(rng, monkeypatch, connectivity):
    """The flooding against scipy.ndimage labels on a 4-D batch (the GPU path)."""
    mask = _small_mask()
    maps = np.stack([_smooth_map(rng, mask, sigma=1.2, decimals=1) for _ in range(4)])
    by_volume = _tfce.tfce(maps, _tfce.VolumeLayout(mask, connectivity), two_sided=True)
    by_tree = _tfce.tfce(maps, _tree_layout(mask, connectivity, monkeypatch), two_sided=True)
    np.testing.assert_allclose(by_tree, by_volume, rtol=1e-12, atol=0)


def test_edge_cases(rng, monkeypatch):
    mask = _small_mask()
    n = int(mask.sum())
    layout = _tree_layout(mask, 6, monkeypatch)
    zeros = np.zeros(n)
    negative = -np.abs(_smooth_map(rng, mask)) - 0.1
    constant = np.full(n, 1.5)
    single = np.zeros(n)
    single[n // 2] = 4.0
    with_nan = _smooth_map(rng, mask)
    with_nan[::7] = np.nan
    maps = np.stack([zeros, negative, constant, single, with_nan])
    one_sided = _tfce.tfce(maps, layout, two_sided=False)
    two_sided = _tfce.tfce(maps, layout, two_sided=True)
    np.testing.assert_array_equal(one_sided[0], 0.0)
    np.testing.assert_array_equal(two_sided[0], 0.0)
    np.testing.assert_array_equal(one_sided[1], 0.0)  # nothing above 0
    # a constant map is one cluster at all 100 thresholds
    expected = np.sqrt(n) * np.sum((np.arange(1, 101) * (1.5 / 100)) ** 2)
    np.testing.assert_allclose(one_sided[2], expected, rtol=1e-12)
    # a lone voxel: size 1 at every threshold
    expected_single = np.sum((np.arange(1, 101) * (4.0 / 100)) ** 2)
    np.testing.assert_allclose(two_sided[3][n // 2], expected_single, rtol=1e-12)
    assert np.count_nonzero(two_sided[3]) == 1
    # NaN counts as 0, on both paths and in nilearn once set to 0
    clean = np.nan_to_num(with_nan, nan=0.0)
    np.testing.assert_array_equal(two_sided[4], _tfce.tfce(clean[None], layout, two_sided=True)[0])
    np.testing.assert_allclose(two_sided[4], _nilearn_tfce(clean, mask), rtol=1e-10, atol=0)
    np.testing.assert_allclose(two_sided[1], _nilearn_tfce(negative, mask), rtol=1e-10, atol=0)


def test_levels_match_searchsorted(rng):
    from dnnrsa import _tfce_numba

    for top in (1e-320, 1e-300, 1e-3, 1.0, 7.3, 1e12):
        threshs = np.arange(1, 101) * (top / 100)
        threshs[-1] = top
        values = np.concatenate(
            [rng.uniform(0, top, 2000), threshs, np.nextafter(threshs, 0), [top]]
        )
        values = values[values > 0]
        with np.errstate(over="ignore"):
            scale = threshs.size / threshs[-1]  # inf for the smallest tops, as in the kernel
        levels = [_tfce_numba._level(v, threshs, scale) for v in values]
        np.testing.assert_array_equal(levels, np.searchsorted(threshs, values, side="right"))


def test_map_of_subnormal_numbers_equal_to_nilearn(monkeypatch):
    """Thresholds that round to 0: voxels at 0 stay background, as in nilearn."""
    mask = _small_mask()
    layout = _tree_layout(mask, 6, monkeypatch)
    n = int(mask.sum())
    map_ = np.zeros(n)
    map_[::3] = 1e-320
    map_[1::3] = -5e-321
    for two_sided in (True, False):
        ours = _tfce.tfce(map_[None], layout, two_sided=two_sided)[0]
        ref = _nilearn_tfce(map_, mask, 6, two_sided)
        np.testing.assert_array_equal(ours, ref)


def test_importing_the_statistics_does_not_load_numba():
    """numba (and the compiled TFCE) load on the first TFCE of a large mask only."""
    import subprocess
    import sys

    code = (
        "import sys, dnnrsa, dnnrsa.stats, dnnrsa._tfce; "
        "print('numba' in sys.modules, 'dnnrsa._tfce_numba' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
