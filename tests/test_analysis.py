"""Tests for dnnrsa.analysis: layer RDMs, category index, layer similarity,
variance partitioning and MDS, with known answers and reference implementations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import pdist
from scipy.stats import spearmanr

from dnnrsa.analysis import (
    category_index,
    category_index_table,
    category_index_test,
    layer_rdms,
    layer_similarity,
    mds,
    variance_partitioning,
)
from dnnrsa.rdm import compute_rdm, vector_to_squareform


def _clustered_rdm(labels, within=0.0, between=1.0):
    labels = np.asarray(labels)
    iu, ju = np.triu_indices(labels.size, 1)
    return np.where(labels[iu] == labels[ju], within, between).astype(float)


EMOTIONS = np.tile(np.arange(6), 12)  # 72 stimuli, 6 categories of 12


# ---------------------------------------------------------------------------
# layer RDMs
# ---------------------------------------------------------------------------


def test_layer_rdms_equal_scipy_on_flattened_features():
    rng = np.random.default_rng(0)
    acts = {
        "conv1": rng.normal(size=(10, 3, 4, 4)),
        "pool": rng.normal(size=(10, 7)),
        "dense": rng.normal(size=(10, 2, 5)),
    }
    names, rdms = layer_rdms(acts)
    assert names == ["conv1", "pool", "dense"]
    assert rdms.shape == (3, 45)
    for i, name in enumerate(names):
        flat = acts[name].reshape(10, -1)
        np.testing.assert_allclose(rdms[i], pdist(flat, "correlation"), atol=1e-12)
    names_e, rdms_e = layer_rdms(acts, "euclidean", layers=["dense", "conv1"])
    assert names_e == ["dense", "conv1"]
    flat = acts["dense"].reshape(10, -1)
    np.testing.assert_allclose(rdms_e[0], pdist(flat, "sqeuclidean") / flat.shape[1])
    with pytest.raises(ValueError, match="not in activations"):
        layer_rdms(acts, layers=["fc9"])
    with pytest.raises(ValueError, match="stimuli"):
        layer_rdms({"a": rng.normal(size=(10, 3)), "b": rng.normal(size=(9, 3))})


# ---------------------------------------------------------------------------
# category index
# ---------------------------------------------------------------------------


def test_category_index_perfect_clustering_is_one():
    rdm = _clustered_rdm(EMOTIONS)
    assert category_index(rdm, EMOTIONS) == pytest.approx(1.0, abs=1e-12)
    # shift and scale invariant: correlation-distance-like values
    assert category_index(0.3 + 1.4 * rdm, EMOTIONS) == pytest.approx(1.0, abs=1e-12)
    # a square RDM gives the same
    assert category_index(vector_to_squareform(rdm), EMOTIONS) == pytest.approx(1.0)
    # inverted clustering is -1
    assert category_index(1.0 - rdm, EMOTIONS) == pytest.approx(-1.0, abs=1e-12)


def test_category_index_hand_computed():
    labels = ["a", "a", "b", "b"]
    # pairs (0,1) (0,2) (0,3) (1,2) (1,3) (2,3); within: (0,1) and (2,3)
    rdm = np.array([0.2, 0.9, 0.7, 0.8, 1.0, 0.4])
    within = (0.2 + 0.4) / 2
    between = (0.9 + 0.7 + 0.8 + 1.0) / 4
    expected = (between - within) / (1.0 - 0.2)
    assert category_index(rdm, labels) == pytest.approx(expected, abs=1e-12)
    # a NaN pair is ignored
    with_nan = rdm.copy()
    with_nan[1] = np.nan
    expected_nan = ((0.7 + 0.8 + 1.0) / 3 - within) / (1.0 - 0.2)
    assert category_index(with_nan, labels) == pytest.approx(expected_nan, abs=1e-12)


def test_category_index_random_rdm_is_near_zero():
    rng = np.random.default_rng(1)
    values = [category_index(rng.random(EMOTIONS.size * 71 // 2), EMOTIONS) for _ in range(50)]
    assert abs(np.mean(values)) < 0.01
    assert np.max(np.abs(values)) < 0.06
    # RDM of random patterns too
    rdm = compute_rdm(rng.normal(size=(72, 100)), "correlation")
    assert abs(category_index(rdm, EMOTIONS)) < 0.05


def test_category_index_validation():
    rdm = _clustered_rdm(EMOTIONS)
    with pytest.raises(ValueError, match="one entry per condition"):
        category_index(rdm, EMOTIONS[:-1])
    with pytest.raises(ValueError, match="at least two categories"):
        category_index(rdm, np.zeros(72))
    with pytest.raises(ValueError, match="repeat"):
        category_index(rdm, np.arange(72))
    assert np.isnan(category_index(np.ones_like(rdm), EMOTIONS))


def test_category_index_test_planted_and_null():
    rng = np.random.default_rng(2)
    noisy = _clustered_rdm(EMOTIONS) * 0.3 + rng.random(EMOTIONS.size * 71 // 2)
    ci, p, null = category_index_test(noisy, EMOTIONS, n_permutations=500, random_state=3)
    assert ci == pytest.approx(category_index(noisy, EMOTIONS))
    assert null.shape == (500,)
    assert p == pytest.approx(1.0 / 501)
    assert abs(null.mean()) < 0.01
    random_rdm = rng.random(EMOTIONS.size * 71 // 2)
    _, p_random, _ = category_index_test(random_rdm, EMOTIONS, 500, random_state=4)
    assert p_random > 0.05
    # seeded: identical repeat
    _, p2, null2 = category_index_test(noisy, EMOTIONS, 500, random_state=3)
    np.testing.assert_array_equal(null, null2)


def test_category_index_test_vectorised_equals_loop():
    rng = np.random.default_rng(5)
    labels = np.repeat(["x", "y", "z"], 4)
    rdm = rng.random(66)
    rdm[[3, 40]] = np.nan
    _, _, null = category_index_test(rdm, labels, 64, random_state=6, chunk_size=16)
    # the same permutations, drawn chunk by chunk, evaluated one at a time
    gen = np.random.default_rng(6)
    _, codes = np.unique(labels, return_inverse=True)
    perms = np.concatenate([gen.permuted(np.tile(codes, (16, 1)), axis=1) for _ in range(4)])
    expected = [category_index(rdm, perm) for perm in perms]
    np.testing.assert_allclose(null, expected, atol=1e-12)


def test_category_index_table():
    rng = np.random.default_rng(7)
    identity = np.repeat(np.arange(6), 12)
    rdms = np.stack(
        [
            _clustered_rdm(EMOTIONS) + 0.5 * rng.random(2556),
            _clustered_rdm(identity) + 0.5 * rng.random(2556),
        ]
    )
    table = category_index_table(
        rdms,
        {"emotion": EMOTIONS, "identity": identity},
        layer_names=["a1", "x2"],
        n_permutations=200,
        random_state=8,
    )
    assert table.index.shape == (2, 2)
    for i in range(2):
        for j, labels in enumerate([EMOTIONS, identity]):
            assert table.index[i, j] == pytest.approx(category_index(rdms[i], labels))
    assert table.index[0, 0] > 0.5 and table.index[1, 1] > 0.5
    assert abs(table.index[0, 1]) < 0.05 and abs(table.index[1, 0]) < 0.05
    assert table.p_values[0, 0] < 0.01 and table.p_values[1, 1] < 0.01
    assert table.p_values[0, 1] > 0.01 and table.p_values[1, 0] > 0.01
    frame = table.to_frame()
    assert list(frame.columns) == ["layer", "label_set", "index", "p_value"]
    assert len(frame) == 4
    row = frame[(frame.layer == "x2") & (frame.label_set == "identity")].iloc[0]
    assert row["index"] == pytest.approx(table.index[1, 1])
    no_test = category_index_table(rdms, {"emotion": EMOTIONS}, n_permutations=0)
    assert np.all(np.isnan(no_test.p_values))
    assert no_test.layers == ["layer0", "layer1"]


# ---------------------------------------------------------------------------
# layer similarity
# ---------------------------------------------------------------------------


def test_layer_similarity_equals_scipy_spearman():
    rng = np.random.default_rng(9)
    base = rng.random(2556)
    rdms = np.stack([base + s * rng.random(2556) for s in (0.1, 0.5, 1.0, 3.0)])
    rdms[2, :40] = np.round(rdms[2, :40], 1)  # some ties
    sim = layer_similarity(rdms)
    assert sim.shape == (4, 4)
    np.testing.assert_allclose(np.diag(sim), 1.0)
    np.testing.assert_allclose(sim, sim.T)
    for i, j in [(0, 1), (1, 3), (2, 0)]:
        assert sim[i, j] == pytest.approx(spearmanr(rdms[i], rdms[j])[0], abs=1e-12)
    other = rng.random((3, 2556))
    between = layer_similarity(rdms, other, method="pearson")
    assert between.shape == (4, 3)
    assert between[1, 2] == pytest.approx(np.corrcoef(rdms[1], other[2])[0, 1], abs=1e-12)
    with pytest.raises(ValueError, match="method must be one of"):
        layer_similarity(rdms, method="r2")


# ---------------------------------------------------------------------------
# variance partitioning
# ---------------------------------------------------------------------------


def _reference_r2(y, *xs):
    from sklearn.linear_model import LinearRegression

    x = np.column_stack(xs)
    return LinearRegression().fit(x, y).score(x, y)


def test_variance_partitioning_recovers_mixture():
    rng = np.random.default_rng(10)
    vis = compute_rdm(rng.normal(size=(72, 200)), "correlation")
    aud = compute_rdm(rng.normal(size=(72, 50)), "correlation")
    vis_z = (vis - vis.mean()) / vis.std()
    aud_z = (aud - aud.mean()) / aud.std()
    target = 0.8 * vis_z + 0.4 * aud_z + 0.1 * rng.normal(size=vis.size)
    parts = variance_partitioning(target, vis, aud)
    total_var = 0.64 + 0.16 + 0.01
    assert parts["unique_visual"] == pytest.approx(0.64 / total_var, abs=0.03)
    assert parts["unique_auditory"] == pytest.approx(0.16 / total_var, abs=0.03)
    assert parts["shared"] == pytest.approx(0.0, abs=0.02)
    assert parts["total"] == pytest.approx(0.80 / total_var, abs=0.01)
    # exactly the R^2 algebra, with scikit-learn's regression as the reference
    r2_full = _reference_r2(target, vis, aud)
    r2_v = _reference_r2(target, vis)
    r2_a = _reference_r2(target, aud)
    assert parts["total"] == pytest.approx(r2_full, abs=1e-10)
    assert parts["unique_visual"] == pytest.approx(r2_full - r2_a, abs=1e-10)
    assert parts["unique_auditory"] == pytest.approx(r2_full - r2_v, abs=1e-10)
    assert parts["shared"] == pytest.approx(r2_v + r2_a - r2_full, abs=1e-10)


def test_variance_partitioning_shared_component():
    # target = s; visual = s + e1; auditory = s + e2 (unit variances):
    # R2_v = R2_a = 1/2, R2_full = 2/3 -> unique 1/6 each, shared 1/3
    rng = np.random.default_rng(11)
    s, e1, e2 = rng.normal(size=(3, 200_000))
    parts = variance_partitioning(s, s + e1, s + e2)
    assert parts["unique_visual"] == pytest.approx(1 / 6, abs=0.01)
    assert parts["unique_auditory"] == pytest.approx(1 / 6, abs=0.01)
    assert parts["shared"] == pytest.approx(1 / 3, abs=0.01)
    assert parts["total"] == pytest.approx(2 / 3, abs=0.01)


def test_variance_partitioning_many_targets_and_nan():
    rng = np.random.default_rng(12)
    vis, aud = rng.random((2, 300))
    targets = np.stack([vis + 0.1 * rng.random(300), aud + 0.1 * rng.random(300), rng.random(300)])
    targets[2, 5] = np.nan
    parts = variance_partitioning(targets, vis, aud)
    assert parts["unique_visual"].shape == (3,)
    for i in range(3):
        keep = np.isfinite(targets[i])
        single = variance_partitioning(targets[i, keep], vis[keep], aud[keep])
        for key, value in single.items():
            assert parts[key][i] == pytest.approx(value, abs=1e-12)
    assert parts["unique_visual"][0] > 0.8 and parts["unique_auditory"][1] > 0.8
    with pytest.raises(ValueError, match="rdm_auditory must have shape"):
        variance_partitioning(targets, vis, aud[:-1])


# ---------------------------------------------------------------------------
# MDS
# ---------------------------------------------------------------------------


def _procrustes_error(a, b):
    from scipy.spatial import procrustes

    return procrustes(a, b)[2]


def test_mds_recovers_known_geometry():
    rng = np.random.default_rng(13)
    points = rng.normal(size=(12, 2)) * [3.0, 1.0]
    dist = pdist(points)
    result = mds(dist)
    assert result.coordinates.shape == (12, 2)
    np.testing.assert_allclose(pdist(result.coordinates), dist, atol=1e-9)
    assert result.stress == pytest.approx(0.0, abs=1e-9)
    assert _procrustes_error(points, result.coordinates) < 1e-12
    # squared distances, as the euclidean RDM metric gives (up to a constant)
    squared = mds(pdist(points, "sqeuclidean"), squared=True)
    np.testing.assert_allclose(pdist(squared.coordinates), dist, atol=1e-9)
    # eigenvalues = variance along the principal axes times n
    centred = points - points.mean(axis=0)
    np.testing.assert_allclose(
        np.sort(result.eigenvalues), np.sort(np.linalg.eigvalsh(centred.T @ centred)), rtol=1e-9
    )
    # a regular square: side 1, diagonal sqrt(2)
    square = mds(pdist(np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float)))
    np.testing.assert_allclose(
        pdist(square.coordinates), [1, np.sqrt(2), 1, 1, np.sqrt(2), 1], atol=1e-12
    )


def test_mds_smacof_lowers_stress_on_non_euclidean_input():
    rng = np.random.default_rng(14)
    points = rng.normal(size=(15, 3))
    noisy = pdist(points) * np.exp(0.2 * rng.normal(size=105))
    classical = mds(noisy, n_components=2)
    smacof = mds(noisy, n_components=2, method="smacof")
    assert smacof.stress < classical.stress
    seeded = mds(noisy, n_components=2, method="smacof", random_state=1)
    again = mds(noisy, n_components=2, method="smacof", random_state=1)
    np.testing.assert_array_equal(seeded.coordinates, again.coordinates)
    assert seeded.stress < classical.stress + 0.05
    with pytest.raises(ValueError, match="n_components must be between"):
        mds(noisy, n_components=15)
    with pytest.raises(ValueError, match="method must be one of"):
        mds(noisy, method="tsne")


# ---------------------------------------------------------------------------
# layer similarity across regimes
# ---------------------------------------------------------------------------


def _network_rdms(rng, n_layers=29, n_stimuli=72, order=None):
    """Layer RDMs of a network whose layers drift away from one another."""
    x = rng.normal(size=(n_stimuli, 20))
    rdms = []
    for _ in range(n_layers):
        x = x + 0.4 * rng.normal(size=x.shape)
        rdms.append(pdist(x if order is None else x[order], "correlation"))
    return np.stack(rdms)


def test_cross_regime_similarity_blocks_of_identical_and_shuffled_networks():
    from dnnrsa.analysis import cross_regime_similarity

    rng = np.random.default_rng(14)
    emotion = _network_rdms(rng)
    order = np.random.default_rng(1).permutation(72)
    shuffled = _network_rdms(np.random.default_rng(14), order=order)  # stimuli shuffled
    names = [f"L{i}" for i in range(29)]
    result = cross_regime_similarity(
        {"emotion": emotion, "identity": emotion.copy(), "shuffled": shuffled},
        layer_names=names,
    )
    within = layer_similarity(emotion)
    assert result.matrix.shape == (87, 87)
    np.testing.assert_allclose(result.matrix, result.matrix.T, atol=1e-12)
    assert result.row_regimes == ["emotion"] * 29 + ["identity"] * 29 + ["shuffled"] * 29
    assert result.row_layers == names * 3
    # identical networks: every block is the within-network matrix
    assert set(result.blocks) == {
        ("emotion", "emotion"),
        ("emotion", "identity"),
        ("emotion", "shuffled"),
        ("identity", "identity"),
        ("identity", "shuffled"),
        ("shuffled", "shuffled"),
    }
    for pair in [("emotion", "emotion"), ("emotion", "identity"), ("identity", "identity")]:
        np.testing.assert_allclose(result.blocks[pair], within, atol=1e-12)
    # shuffling the stimuli keeps the layers' relations to one another and breaks the
    # correspondence with the other networks
    np.testing.assert_allclose(result.block("shuffled", "shuffled"), within, atol=1e-12)
    across = result.block("emotion", "shuffled")
    assert across.shape == (29, 29)
    assert np.abs(across).max() < 0.1 < within.min() and abs(across.mean()) < 0.05
    np.testing.assert_allclose(result.block("shuffled", "emotion"), across.T)
    assert across[3, 7] == pytest.approx(spearmanr(emotion[3], shuffled[7])[0], abs=1e-12)
    # tables
    frame = result.to_frame()
    assert frame.shape == (87, 87)
    assert frame.loc[("emotion", "L3"), ("shuffled", "L7")] == pytest.approx(across[3, 7])
    pairs = result.pairs_frame()
    assert len(pairs) == 3 * 29 * 29
    assert list(pairs.columns) == ["regime_a", "layer_a", "regime_b", "layer_b", "similarity"]
    assert len(result.pairs_frame(within=True)) == 6 * 29 * 29


def test_cross_regime_similarity_checks_its_inputs():
    from dnnrsa.analysis import cross_regime_similarity
    from dnnrsa.modelbank import ModelBank

    rng = np.random.default_rng(3)
    a, b = _network_rdms(rng, 3, 8), _network_rdms(rng, 2, 8)
    result = cross_regime_similarity({"a": a, "b": b}, method="pearson")
    assert result.layers == {"a": ["layer01", "layer02", "layer03"], "b": ["layer01", "layer02"]}
    assert result.block("a", "b")[2, 1] == pytest.approx(np.corrcoef(a[2], b[1])[0, 1])
    with pytest.raises(ValueError, match="same conditions"):
        cross_regime_similarity({"a": a, "b": _network_rdms(rng, 2, 9)})
    with pytest.raises(ValueError, match="layer names"):
        cross_regime_similarity({"a": a, "b": b}, layer_names=["x", "y", "z"])
    conds = [f"c{i}" for i in range(8)]
    with pytest.raises(ValueError, match="order their conditions differently"):
        cross_regime_similarity({"a": a, "b": b}, conditions={"a": conds, "b": conds[::-1]})
    with pytest.raises(ValueError, match="at least one"):
        cross_regime_similarity({})
    with pytest.raises(KeyError):
        result.block("a", "c")

    def bank(rdms, labels, order):
        n = len(rdms)
        return ModelBank(
            rdms=rdms,
            model_labels=["m"] * n,
            layer_labels=labels,
            layer_names=labels,
            parts=["crossmodal"] * n,
            conditions=order,
            metrics=["correlation"] * n,
        )

    banks = {"a": bank(a, ["v1", "v2", "x1"], conds), "b": bank(b, ["v1", "x1"], conds)}
    assert cross_regime_similarity(banks).layers == {"a": ["v1", "v2", "x1"], "b": ["v1", "x1"]}
    banks["b"] = bank(b, ["v1", "x1"], conds[::-1])
    with pytest.raises(ValueError, match="order their conditions differently"):
        cross_regime_similarity(banks)


#: Every name dnnrsa.analysis defined before it was split into its rooms.
_NAMES_BEFORE_THE_SPLIT = (
    "CategoryIndexTable CrossRegimeSimilarity MDSResult _NOT_LABELS _as_rdm_vector "
    "_category_index_from_masks _check_labels _check_random_state _pairwise_distances "
    "_r_squared arm_layers category_index category_index_table category_index_test "
    "condition_label_sets cross_regime_similarity dnn_analysis_tables layer_rdms "
    "layer_similarity mds variance_partitioning"
).split()


def test_every_name_stays_importable_from_the_public_module():
    """The rooms behind dnnrsa.analysis keep every name it had importable from it, the
    same object as in its room; its __all__ is unchanged."""
    import importlib

    import dnnrsa.analysis as analysis

    assert [n for n in _NAMES_BEFORE_THE_SPLIT if not hasattr(analysis, n)] == []
    for name in _NAMES_BEFORE_THE_SPLIT:
        obj = getattr(analysis, name)
        home = getattr(obj, "__module__", None)
        if home and home.startswith("dnnrsa._"):
            assert getattr(importlib.import_module(home), name) is obj, name
    assert sorted(analysis.__all__) == sorted(
        n for n in _NAMES_BEFORE_THE_SPLIT if not n.startswith("_")
    )
