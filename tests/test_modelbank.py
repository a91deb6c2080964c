"""The model bank, and the core functions behind the DNN and group-statistics interfaces."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from scipy.spatial.distance import squareform

from dnnrsa.analysis import (
    arm_layers,
    category_index_table,
    condition_label_sets,
    dnn_analysis_tables,
    layer_rdms,
    layer_similarity,
    variance_partitioning,
)
from dnnrsa.bidsnames import model_stem, to_label
from dnnrsa.modelbank import (
    ModelBank,
    layer_bank,
    merge_banks,
    reorder_rdm,
    user_model_bank,
)
from dnnrsa.stats import (
    compare_best_layers,
    fisher_z,
    group_test_imgs,
    layer_winner_imgs,
    sign_flip_test,
    winner_take_all,
)


def _bank(n_cond=4, n_models=2, seed=0, **overrides):
    rng = np.random.default_rng(seed)
    fields = dict(
        rdms=rng.random((n_models, n_cond * (n_cond - 1) // 2)),
        model_labels=["net"] * n_models,
        layer_labels=[f"l{i}" for i in range(n_models)],
        layer_names=[f"net.l{i}" for i in range(n_models)],
        parts=["visual"] * n_models,
        conditions=[f"c{i}" for i in range(n_cond)],
        metrics=["correlation"] * n_models,
    )
    fields.update(overrides)
    return ModelBank(**fields)


# -- ModelBank ------------------------------------------------------------------------


def test_bank_round_trips_through_npz(tmp_path):
    bank = _bank(layer_labels=["l0", ""])
    bank.save(tmp_path / "bank.npz")
    back = ModelBank.load(tmp_path / "bank.npz")
    for name in ("model_labels", "layer_labels", "layer_names", "parts", "conditions", "metrics"):
        assert getattr(back, name) == getattr(bank, name)
    np.testing.assert_array_equal(back.rdms, bank.rdms)
    # the on-disk format: one array per field, str lists
    with np.load(tmp_path / "bank.npz") as data:
        assert sorted(data.files) == sorted(
            [
                "rdms",
                "model_labels",
                "layer_labels",
                "layer_names",
                "parts",
                "conditions",
                "metrics",
            ]
        )
        assert data["layer_labels"].tolist() == ["l0", ""]


def test_bank_rejects_inconsistent_fields():
    with pytest.raises(ValueError, match="parts must have 2 entries"):
        _bank(parts=["visual"])
    with pytest.raises(ValueError, match="pairs"):
        _bank(conditions=["a", "b", "c"])
    with pytest.raises(ValueError, match="n_models, n_pairs"):
        _bank(rdms=np.zeros(6))


def test_entity_stem_and_labels():
    assert model_stem("emotion", "conv1") == "model-emotion_layer-conv1"
    assert model_stem("category", "") == "model-category"
    assert _bank().entity_stem(1) == "model-net_layer-l1"
    assert to_label("visual.conv1_1") == "visualconv11"
    with pytest.raises(ValueError, match="BIDS label"):
        to_label("._-")


def test_check_conditions():
    bank = _bank()
    bank.check_conditions(["c3", "c0", "c1", "c2", "c0"])  # order and repeats do not matter
    with pytest.raises(ValueError, match="differ"):
        bank.check_conditions(["c0", "c1", "c2"])


def test_reorder_rdm_matches_a_square_reindex():
    rng = np.random.default_rng(1)
    square = squareform(rng.random(10))
    labels = ["a", "b", "c", "d", "e"]
    conditions = ["d", "a", "e"]
    order = [labels.index(c) for c in conditions]
    expected = squareform(square[np.ix_(order, order)], checks=False)
    np.testing.assert_array_equal(reorder_rdm(squareform(square), labels, conditions), expected)
    with pytest.raises(ValueError, match=r"lacks condition\(s\) \['z'\]"):
        reorder_rdm(squareform(square), labels, ["a", "z"], name="'m'")


def test_user_model_bank_reorders_and_labels():
    rng = np.random.default_rng(2)
    vec = rng.random(6)
    labels = ["w", "x", "y", "z"]
    conditions = ["z", "y", "x", "w"]
    bank = user_model_bank(["my model"], [vec], [labels], conditions, sources=["m.tsv"])
    np.testing.assert_array_equal(bank.rdms[0], reorder_rdm(vec, labels, conditions))
    assert bank.model_labels == ["mymodel"] and bank.layer_labels == [""]
    assert bank.layer_names == ["my model"] and bank.parts == ["model"]
    assert bank.metrics == ["user"] and bank.conditions == conditions
    with pytest.raises(ValueError, match=r"'my model' \(m.tsv\) lacks"):
        user_model_bank(["my model"], [vec], [labels], ["w", "q"], sources=["m.tsv"])


def test_layer_bank_averages_conditions():
    rng = np.random.default_rng(3)
    acts = {"net.a": rng.normal(size=(6, 5)), "net.b": rng.normal(size=(6, 2, 3))}
    conditions = ["s2", "s1", "s0", "s2", "s1", "s0"]
    bank = layer_bank(
        acts, parts=["visual", "auditory"], model_label="emo-1", conditions=conditions
    )
    names, rdms = layer_rdms(acts, "correlation", conditions=np.asarray(conditions))
    np.testing.assert_array_equal(bank.rdms, rdms)
    assert bank.layer_names == names == ["net.a", "net.b"]
    assert bank.layer_labels == ["neta", "netb"] and bank.model_labels == ["emo1", "emo1"]
    assert bank.conditions == ["s0", "s1", "s2"] and bank.parts == ["visual", "auditory"]
    with pytest.raises(ValueError, match="one entry per stimulus"):
        layer_bank(acts, parts=["visual", "auditory"], model_label="m", conditions=["a"])


def test_merge_banks_concatenates_and_checks_order():
    a, b = _bank(seed=1), _bank(seed=2, model_labels=["other"] * 2, metrics=["user"] * 2)
    merged = merge_banks([a, b])
    np.testing.assert_array_equal(merged.rdms, np.concatenate([a.rdms, b.rdms]))
    assert merged.model_labels == ["net", "net", "other", "other"]
    assert merged.metrics == ["correlation"] * 2 + ["user"] * 2
    c = _bank(conditions=["c1", "c0", "c2", "c3"])
    with pytest.raises(ValueError, match="y.npz: condition order differs from x.npz"):
        merge_banks([a, c], sources=["x.npz", "y.npz"])


# -- DNN analysis tables --------------------------------------------------------------


def _stimulus_table():
    return pd.DataFrame(
        {
            "stim_file": [f"s{i}.mp4" for i in range(6)],
            "condition": [f"c{i}" for i in range(6)],
            "trial_type": ["x"] * 6,
            "emotion": ["happy", "sad", "happy", "sad", "happy", "sad"],
            "actor": ["a", "a", "b", "b", "c", "c"],
            "constant": ["k"] * 6,
            "unique": [str(i) for i in range(6)],
        }
    )


def test_condition_label_sets_chooses_grouping_columns():
    table = _stimulus_table()
    conditions = ["c5", "c4", "c3", "c2", "c1", "c0"]
    sets = condition_label_sets(table, conditions)
    assert list(sets) == ["emotion", "actor"]  # constant and unique columns group nothing
    np.testing.assert_array_equal(sets["actor"], ["c", "c", "b", "b", "a", "a"])
    assert list(condition_label_sets(table, conditions, ["actor", "unique"])) == ["actor"]
    with pytest.raises(ValueError, match=r"no labels for conditions \['c9'\]"):
        condition_label_sets(table, ["c0", "c9"])
    with pytest.raises(ValueError, match="not in the stimulus table"):
        condition_label_sets(table, conditions, ["colour"])


def test_arm_layers():
    parts = ["visual", "visual", "auditory", "auditory", "crossmodal", "crossmodal"]
    assert arm_layers(parts) == (1, 3, [4, 5])
    assert arm_layers(["visual", "crossmodal"]) is None


def test_dnn_analysis_tables_matches_the_analyses():
    parts = ["visual", "visual", "auditory", "crossmodal", "crossmodal"]
    bank = _bank(
        n_cond=6,
        n_models=5,
        seed=4,
        parts=parts,
        conditions=[f"c{i}" for i in range(6)],
    )
    tables = dnn_analysis_tables(bank, _stimulus_table(), n_permutations=50, random_state=3)
    expected = category_index_table(
        bank.rdms,
        condition_label_sets(_stimulus_table(), bank.conditions),
        layer_names=bank.layer_names,
        n_permutations=50,
        random_state=3,
    ).to_frame()
    ci = tables["category_index"]
    assert list(ci.columns) == ["layer", "part", "label_set", "index", "p_value"]
    np.testing.assert_array_equal(ci["index"], expected["index"])
    np.testing.assert_array_equal(ci["p_value"], expected["p_value"])
    assert list(ci["layer"]) == [lab for lab in bank.layer_labels for _ in range(2)]
    assert list(ci["part"]) == [p for p in parts for _ in range(2)]
    sim = tables["layer_similarity"]
    np.testing.assert_array_equal(sim.to_numpy(), layer_similarity(bank.rdms))
    assert list(sim.index) == bank.layer_labels and sim.index.name == "layer"
    vp = tables["varpart"]
    assert list(vp["layer"]) == ["l3", "l4"]
    ref = variance_partitioning(bank.rdms[4], bank.rdms[1], bank.rdms[2])
    for key in ("unique_visual", "unique_auditory", "shared", "total"):
        assert vp[key].iloc[1] == ref[key]
    no_arms = _bank(n_cond=6, n_models=2, parts=["visual", "crossmodal"])
    assert "varpart" not in dnn_analysis_tables(no_arms, _stimulus_table(), n_permutations=0)


# -- group tests on images ------------------------------------------------------------


def _subject_imgs(n_sub, shape=(5, 5, 4), effect=0.3, seed=0, nan_voxel=(0, 0, 0)):
    rng = np.random.default_rng(seed)
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    imgs = []
    for _ in range(n_sub):
        data = np.tanh(effect + 0.2 * rng.normal(size=shape))
        data[nan_voxel] = np.nan
        imgs.append(nib.Nifti1Image(data.astype(np.float32), affine))
    return imgs


def test_group_test_imgs_is_the_sign_flip_test_of_fisher_z():
    imgs = _subject_imgs(6)
    res = group_test_imgs(imgs, n_permutations=100, random_state=1, atlas=None)
    data = np.stack([np.asarray(i.dataobj, dtype=np.float64) for i in imgs])
    mask = np.isfinite(data).all(axis=0)
    np.testing.assert_array_equal(np.asarray(res.mask_img.dataobj), mask.astype(np.uint8))
    expected = sign_flip_test(
        fisher_z(data[:, mask]),
        mask=mask,
        n_permutations=100,
        cluster_forming_threshold=0.001,
        random_state=1,
    )
    np.testing.assert_array_equal(res.test.t, expected.t)
    np.testing.assert_array_equal(res.test.p_fwe, expected.p_fwe)
    t = np.asarray(res.images["t"].dataobj)
    np.testing.assert_allclose(
        t[mask], sps.ttest_1samp(np.arctanh(data[:, mask]), 0.0).statistic, rtol=1e-5
    )
    for name in ("p", "p_perm", "p_fwe", "p_cluster_size_fwe", "p_cluster_mass_fwe"):
        p = np.asarray(res.images[name].dataobj)
        assert (p[~mask] == 1.0).all(), name  # p is 1, not 0, outside the tested voxels
        np.testing.assert_array_equal(p[mask], getattr(res.test, name).astype(np.float32))
    assert t[~mask].tolist() == [0.0] and res.clusters is None


def test_group_test_imgs_cluster_table_and_errors():
    from dnnrsa.atlas import cluster_table

    imgs = _subject_imgs(5, effect=0.6, seed=2)
    res = group_test_imgs(imgs, n_permutations=32, random_state=0)
    expected = cluster_table(
        res.images["z"], float(sps.norm.isf(0.001)), two_sided=False, p_img=res.images["p_fwe"]
    )
    pd.testing.assert_frame_equal(res.clusters, expected)
    with pytest.raises(ValueError, match="at least 2"):
        group_test_imgs(imgs[:1])
    moved = nib.Nifti1Image(np.asarray(imgs[1].dataobj), np.diag([2.0, 2.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="grid"):
        group_test_imgs([imgs[0], moved], atlas=None)
    empty = [nib.Nifti1Image(np.full((2, 2, 2), np.nan, np.float32), np.eye(4))] * 2
    with pytest.raises(ValueError, match="no voxel is finite"):
        group_test_imgs(empty, atlas=None)


def test_layer_winner_imgs_calls_the_comparison_once():
    weak = _subject_imgs(6, effect=0.1, seed=5)
    strong = _subject_imgs(6, effect=0.5, seed=6)
    out = layer_winner_imgs([weak, strong], n_permutations=64, random_state=2)
    maps = np.stack(
        [
            np.stack([np.asarray(i.dataobj, dtype=np.float64).ravel() for i in layer])
            for layer in (weak, strong)
        ],
        axis=1,
    )
    maps = fisher_z(maps)
    inside = np.isfinite(maps).all(axis=(0, 1))
    ref = compare_best_layers(maps[:, :, inside], random_state=2, n_permutations=64)
    winner = np.asarray(out["winner"].dataobj).ravel()
    margin = np.asarray(out["margin"].dataobj).ravel()
    p = np.asarray(out["p"].dataobj).ravel()
    np.testing.assert_array_equal(winner[inside], ref.winner)
    np.testing.assert_array_equal(margin[inside], ref.margin.astype(np.float32))
    np.testing.assert_array_equal(p[inside], ref.test.p_fwe.astype(np.float32))
    assert winner[~inside].tolist() == [-1] and p[~inside].tolist() == [1.0]
    assert (winner[inside] == 1).mean() > 0.9  # the planted stronger layer wins
    assert out["winner"].get_data_dtype() == np.int16


def test_layer_winner_imgs_without_enough_subjects_has_no_test():
    a, b = _subject_imgs(3, seed=7), _subject_imgs(3, seed=8)
    out = layer_winner_imgs([a, b])
    assert set(out) == {"winner", "margin"}
    maps = fisher_z(
        np.stack(
            [
                np.stack([np.asarray(i.dataobj, dtype=np.float64).ravel() for i in layer])
                for layer in (a, b)
            ],
            axis=1,
        )
    )
    inside = np.isfinite(maps).all(axis=(0, 1))
    w, _ = winner_take_all(maps[:, :, inside])
    np.testing.assert_array_equal(np.asarray(out["winner"].dataobj).ravel()[inside], w)
    with pytest.raises(ValueError, match="same subjects"):
        layer_winner_imgs([a, b[:2]])


def test_dnn_analysis_tables_on_a_category_design_without_label_columns():
    """One stimulus file per trial, conditions from trial_type, no coarser label column:
    the category index is skipped (nothing groups the conditions), the rest is computed."""
    bank = _bank(n_cond=6, n_models=3, seed=5)
    table = pd.DataFrame(
        {
            "stim_file": [f"s{i}.png" for i in range(6)],
            "condition": [f"c{i}" for i in range(6)],
            "trial_type": [f"c{i}" for i in range(6)],
        }
    )
    tables = dnn_analysis_tables(bank, table, n_permutations=10)
    assert "category_index" not in tables
    expected = layer_similarity(bank.rdms)
    np.testing.assert_allclose(tables["layer_similarity"].to_numpy(), expected, atol=1e-12)
