"""The study's findings (dnnrsa.findings): known answers, planted effects and controls."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from dnnrsa.analysis import category_index, layer_similarity, variance_partitioning
from dnnrsa.findings import (
    NetworkResults,
    _resampled_pairs,
    arm_coupling_test,
    arm_relevance_table,
    bootstrap_p,
    part_category_index_test,
    region_sign_flip_test,
    study_findings,
)
from dnnrsa.inference import adjust_pvalues
from dnnrsa.rdm import compute_rdm

N_COND = 24
EMOTION = np.repeat(np.arange(6), 4)  # 6 emotions x 4 stimuli


def _rdm(features):
    return np.asarray(compute_rdm(features, metric="correlation"))


def test_holm_known_answer():
    p = [0.01, 0.04, 0.03, 0.005, np.nan]
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> cummax
    np.testing.assert_allclose(
        adjust_pvalues(p, "holm"), [0.03, 0.06, 0.06, 0.02, np.nan], equal_nan=True
    )


def test_bootstrap_p_known_answers():
    s = np.array([-1.0, 1.0, 2.0, 3.0])
    assert bootstrap_p(s, alternative="greater") == pytest.approx(2 / 5)
    assert bootstrap_p(s, alternative="less") == pytest.approx(4 / 5)
    assert bootstrap_p(s) == pytest.approx(4 / 5)


def test_part_category_index_equals_mean_of_layers_and_detects_clustering():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(6, 20))
    clustered = [_rdm(codes[EMOTION] + s * rng.normal(size=(N_COND, 20))) for s in (0.5, 1.0)]
    noise = [_rdm(rng.normal(size=(N_COND, 20))) for _ in range(2)]
    res = part_category_index_test(np.vstack(clustered), EMOTION, 500, 1, statistic="mean")
    assert res["index"] == pytest.approx(np.mean([category_index(r, EMOTION) for r in clustered]))
    assert res["p_value"] == pytest.approx(1 / 501)
    null = part_category_index_test(np.vstack(noise), EMOTION, 500, 1, statistic="mean")
    assert abs(null["null"].mean()) < 0.02  # the label null is centred on zero
    # the maximum: one clustered layer among noise layers is found, and named
    mixed = np.vstack([noise[0], clustered[1], noise[1]])
    res = part_category_index_test(mixed, EMOTION, 500, 1)
    assert res["layer"] == 1 and res["p_value"] == pytest.approx(1 / 501)
    assert res["index"] == pytest.approx(category_index(clustered[1], EMOTION))
    # its null is the maximum over the layers under one shuffle of the labels
    rng2 = np.random.default_rng(5)
    perm = rng2.permuted(np.broadcast_to(EMOTION, (3, N_COND)), axis=1)
    direct = [max(category_index(r, p) for r in mixed) for p in perm]
    np.testing.assert_allclose(part_category_index_test(mixed, EMOTION, 3, 5)["null"], direct)
    # calibration: without clustering, p < 0.05 in about 5 % of data sets
    for statistic in ("mean", "max"):
        p = [
            part_category_index_test(
                np.vstack([_rdm(rng.normal(size=(N_COND, 20))) for _ in range(3)]),
                EMOTION,
                199,
                k,
                statistic=statistic,
            )["p_value"]
            for k in range(200)
        ]
        assert 0.01 <= np.mean(np.array(p) < 0.05) <= 0.10, statistic


def test_resampled_pairs_identity_and_duplicates():
    n = 7
    np.testing.assert_array_equal(_resampled_pairs(np.arange(n), n), np.arange(n * (n - 1) // 2))
    # a duplicated condition: its two copies form no pair, each copy pairs with the others
    pairs = _resampled_pairs(np.array([0, 0, 1]), 3)
    np.testing.assert_array_equal(pairs, [0, 0])  # (0, 1) twice


def test_bootstrap_unique_variance_equals_resampled_regressions():
    from dnnrsa.findings import _bootstrap_unique_variance

    rng = np.random.default_rng(9)
    vis, aud = rng.normal(size=(N_COND, 8)), rng.normal(size=(N_COND, 8))
    y, v, a = _rdm(np.hstack([vis, 0.5 * aud])), _rdm(vis), _rdm(aud)
    counts = rng.multinomial(N_COND, np.full(N_COND, 1 / N_COND), size=20).astype(float)
    fast = _bootstrap_unique_variance(counts, y, v, a)
    for b, c in enumerate(counts):
        idx = np.repeat(np.arange(N_COND), c.astype(int))
        pairs = _resampled_pairs(idx, N_COND)
        r = variance_partitioning(y[pairs], v[pairs], a[pairs])
        np.testing.assert_allclose(fast[b], [r["unique_visual"], r["unique_auditory"]], atol=1e-10)


def test_arm_relevance_known_answers():
    rng = np.random.default_rng(2)
    n = 72
    outcomes = pd.DataFrame(
        {
            "stim_file": [f"s{i}" for i in range(n)],
            "target": np.repeat(list("abcdef"), 12),
            "correct_none": (rng.random(n) < 0.9).astype(int),
            "correct_visual": (rng.random(n) < 0.4).astype(int),
            "correct_auditory": (rng.random(n) < 0.8).astype(int),
        }
    )
    outcomes.attrs["n_classes"] = 6
    table = arm_relevance_table(outcomes, n_boot=4000, seed=0).set_index(["measure", "arm"])
    acc = outcomes["correct_none"].mean()
    assert table.loc[("accuracy", "none"), "value"] == pytest.approx(acc)
    assert table.loc[("accuracy", "none"), "chance"] == pytest.approx(1 / 6)
    binom = stats.binomtest(int(outcomes["correct_none"].sum()), n, 1 / 6, alternative="greater")
    assert table.loc[("accuracy", "none"), "p_value"] == pytest.approx(binom.pvalue)
    drop_v = acc - outcomes["correct_visual"].mean()
    drop_a = acc - outcomes["correct_auditory"].mean()
    assert table.loc[("lesion_drop", "visual"), "value"] == pytest.approx(drop_v)
    assert table.loc[("lesion_drop", "visual_minus_auditory"), "value"] == pytest.approx(
        drop_v - drop_a
    )
    # the percentile interval of a proportion: about +- 1.96 binomial standard errors
    p = outcomes["correct_visual"].mean()
    half = (
        table.loc[("accuracy", "visual"), "ci_high"] - table.loc[("accuracy", "visual"), "ci_low"]
    ) / 2
    assert half == pytest.approx(1.96 * np.sqrt(p * (1 - p) / n), rel=0.15)
    assert table.loc[("lesion_drop", "visual_minus_auditory"), "ci_low"] > 0


def test_arm_relevance_unique_variance_matches_variance_partitioning():
    rng = np.random.default_rng(3)
    vis = rng.normal(size=(N_COND, 10))
    aud = rng.normal(size=(N_COND, 10))
    rdms = np.vstack(
        [_rdm(vis), _rdm(aud), _rdm(np.hstack([vis, 0.2 * aud])), _rdm(vis + aud), _rdm(vis)]
    )
    parts = ["visual", "auditory", "crossmodal", "crossmodal", "crossmodal"]
    table = arm_relevance_table(None, rdms, parts, layers=list("abcde"), n_boot=300, seed=0)
    table = table.set_index(["measure", "arm"])
    direct = variance_partitioning(rdms[3], rdms[0], rdms[1])  # the last hidden layer: 'd'
    assert table.loc[("unique_variance", "visual"), "layer"] == "d"
    assert table.loc[("unique_variance", "visual"), "value"] == pytest.approx(
        direct["unique_visual"]
    )
    assert table.loc[("unique_variance", "auditory"), "value"] == pytest.approx(
        direct["unique_auditory"]
    )


def test_arm_coupling_matches_layer_similarity_and_detects_coupling():
    rng = np.random.default_rng(4)
    vis, aud = rng.normal(size=(N_COND, 12)), rng.normal(size=(N_COND, 12))
    rdms = np.vstack([_rdm(vis), _rdm(vis + 0.5 * rng.normal(size=vis.shape)), _rdm(aud),
                      _rdm(np.hstack([vis, aud])), _rdm(vis + aud)])  # fmt: skip
    parts = ["visual", "visual", "auditory", "crossmodal", "crossmodal"]
    res = arm_coupling_test(rdms, parts, 300, 0)
    sim = layer_similarity(rdms, method="spearman")
    assert res["visual"]["similarity"] == pytest.approx(sim[np.ix_([0, 1], [3, 4])].mean())
    assert res["auditory"]["similarity"] == pytest.approx(sim[np.ix_([2], [3, 4])].mean())
    assert res["visual"]["p_value"] < 0.01 and res["auditory"]["p_value"] < 0.01
    # an auditory arm unrelated to the cross-modal part: no coupling
    rdms[2] = _rdm(rng.normal(size=(N_COND, 12)))
    assert arm_coupling_test(rdms, parts, 300, 0)["auditory"]["p_value"] > 0.05


def test_region_sign_flip_exact_and_t():
    rng = np.random.default_rng(5)
    scores = rng.normal(size=(6, 50)) * 0.1
    region = np.zeros(50, bool)
    region[:10] = True
    scores[:, region] += 0.5
    res = region_sign_flip_test(scores, region)
    contrast = scores[:, region].mean(1) - scores[:, ~region].mean(1)
    np.testing.assert_allclose(res["contrast"], contrast)
    assert res["p_value"] == pytest.approx(1 / 64)  # all six positive: only the identity
    assert res["t"] == pytest.approx(stats.ttest_1samp(contrast, 0).statistic)


# --------------------------------------------------------------------------- the table


def _network(rng, *, vis_weight, aud_weight, cluster, accuracy=0.9, drops=(0.5, 0.1)):
    """A synthetic network: 3 visual, 2 auditory and 3 cross-modal layers over 24 stimuli."""
    face = rng.normal(size=(6, 15))[EMOTION] + rng.normal(size=(N_COND, 15))
    voice = rng.normal(size=(6, 15))[EMOTION] + rng.normal(size=(N_COND, 15))
    code = rng.normal(size=(6, 15))[EMOTION]
    layers = [face + 0.3 * rng.normal(size=face.shape) for _ in range(3)]
    layers += [voice + 0.3 * rng.normal(size=voice.shape) for _ in range(2)]
    fused = np.hstack([vis_weight * face, aud_weight * voice])
    layers += [fused + cluster * np.hstack([code, code]) for _ in range(3)]
    rdms = np.vstack([_rdm(x) for x in layers])
    parts = ["visual"] * 3 + ["auditory"] * 2 + ["crossmodal"] * 3
    n = 72
    outcomes = pd.DataFrame(
        {
            "stim_file": [f"s{i}" for i in range(n)],
            "target": np.repeat(list("abcdef"), 12),
            "correct_none": (rng.random(n) < accuracy).astype(int),
        }
    )
    outcomes["correct_visual"] = outcomes["correct_none"] * (rng.random(n) > drops[0] / accuracy)
    outcomes["correct_auditory"] = outcomes["correct_none"] * (rng.random(n) > drops[1] / accuracy)
    outcomes.attrs["n_classes"] = 6
    relevance = arm_relevance_table(outcomes, rdms, parts, n_boot=500, seed=0)
    return NetworkResults(
        rdms=rdms,
        parts=parts,
        layers=[f"l{i}" for i in range(8)],
        conditions=[f"c{i}" for i in range(N_COND)],
        labels={"emotion": EMOTION.astype(str)},
        arm_relevance=relevance,
        outcomes=outcomes,
    )


def _study(rng, **overrides):
    nets = {
        "emotion": _network(rng, vis_weight=1, aud_weight=1, cluster=2.0),
        "identity": _network(rng, vis_weight=1, aud_weight=0.3, cluster=1.5),
        "gender": _network(rng, vis_weight=1, aud_weight=0.3, cluster=0.0),
        "sentence": _network(rng, vis_weight=0.3, aud_weight=1, cluster=0.0, drops=(0.05, 0.45)),
    }
    nets.update(overrides)
    scores = rng.normal(size=(6, 200)) * 0.05
    region = np.zeros(200, bool)
    region[:30] = True
    scores[:, region] += 0.2
    return nets, {"emotion": (scores, region), "identity": (scores, region)}


def test_study_findings_all_hold_on_a_planted_study():
    rng = np.random.default_rng(6)
    nets, searchlight = _study(rng)
    table = study_findings(nets, searchlight=searchlight, n_permutations=300, n_boot=500, seed=0)
    assert list(table["finding"]) == [1, 2, 3, 4, 5]
    assert list(table["verdict"]) == ["holds"] * 5, table[["finding", "value", "p_value", "detail"]]
    np.testing.assert_allclose(
        table["p_holm"], adjust_pvalues(table["p_value"].to_numpy(float), "holm")
    )
    # finding 3's value: the smallest signed difference over the regimes, from the tables
    signed = [
        s
        * nets[r]
        .arm_relevance.query("measure == 'lesion_drop' and arm == 'visual_minus_auditory'")["value"]
        .iloc[0]
        for r, s in (("emotion", 1), ("identity", 1), ("gender", 1), ("sentence", -1))
    ]
    assert table.loc[2, "value"] == pytest.approx(min(signed))


def test_study_findings_control_does_not_hold():
    """The sentence network put in the place of the emotion network reverses finding 3."""
    rng = np.random.default_rng(7)
    nets, searchlight = _study(rng)
    swapped = dict(nets, emotion=nets["sentence"])
    table = study_findings(swapped, searchlight=searchlight, n_permutations=300, n_boot=500)
    verdict = table.set_index("finding")["verdict"]
    assert verdict[3] == "does not hold"
    assert table.set_index("finding").loc[3, "value"] < 0


def test_study_findings_undecided_without_networks_or_above_chance():
    rng = np.random.default_rng(8)
    nets, searchlight = _study(rng)
    table = study_findings({"emotion": nets["emotion"]}, searchlight=None, n_permutations=100)
    verdict = table.set_index("finding")["verdict"]
    assert verdict[1] == "undecided" and verdict[3] == "undecided" and verdict[5] == "undecided"
    assert verdict[4] == "holds" or verdict[4] == "does not hold"
    assert "no network trained on identity" in table.set_index("finding").loc[1, "detail"]
    # four participants cannot reach p < 0.05 with a sign-flip test (1/16 at best)
    few = {r: (s[:4], m) for r, (s, m) in searchlight.items()}
    row = study_findings(nets, searchlight=few, n_permutations=100).set_index("finding").loc[5]
    assert row["verdict"] == "undecided" and "cannot give p below 0.0625" in row["detail"]
    chance = _network(rng, vis_weight=1, aud_weight=1, cluster=2.0, accuracy=1 / 6, drops=(0, 0))
    table = study_findings(dict(nets, emotion=chance), searchlight=searchlight, n_permutations=100)
    row = table.set_index("finding").loc[4]
    assert row["verdict"] == "undecided" and "does not beat chance" in row["detail"]
    # undecided findings leave the Holm family
    decided = table["verdict"] != "undecided"
    np.testing.assert_allclose(
        table.loc[decided, "p_holm"],
        adjust_pvalues(table.loc[decided, "p_value"].to_numpy(float), "holm"),
    )
