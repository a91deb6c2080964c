"""Voxelwise encoding with banded ridge regression (dnnrsa.encoding).

Planted effects are recovered (the band that drives a voxel group has the unique
variance, noise voxels none, R² near its theoretical value for a known SNR); with one
band the cross-validated predictions are sklearn's ``Ridge`` on sklearn's PCA, and the
penalties chosen per fold are those himalaya's own ``RidgeCV`` chooses on the same
inner cross-validation; the held-out run and the held-out stimuli never reach the fit,
nor do test stimuli reach the PCA; the noise ceiling follows the Spearman-Brown
formula on known cases; wrong inputs are refused naming the parameter.
"""

from __future__ import annotations

import numpy as np
import pytest
from himalaya.ridge import RidgeCV
from sklearn.decomposition import PCA
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

from dnnrsa.encoding import (
    DEFAULT_ALPHAS,
    DEFAULT_STIMULUS_FOLDS,
    encoding_folds,
    fit_encoding,
    layer_features,
    make_bands,
    noise_ceiling,
    patterns_by_run,
    spearman_brown,
    variance_partition,
)

PARTS = ("visual", "auditory", "crossmodal")
N_RUNS = 6
N_STIMULI = 72
N_LATENT = 4


def _layers(rng, n_stimuli, parts=PARTS, layers_per_part=2, n_units=40):
    """Each part's layers are noisy mixtures of the part's own latent features."""
    latents = {part: rng.standard_normal((n_stimuli, N_LATENT)) for part in parts}
    activations, layer_parts = {}, {}
    for part in parts:
        for j in range(layers_per_part):
            mixing = rng.standard_normal((N_LATENT, n_units))
            noise = 0.05 * rng.standard_normal((n_stimuli, n_units))
            activations[f"{part}_{j}"] = latents[part] @ mixing + noise
            layer_parts[f"{part}_{j}"] = part
    return latents, activations, layer_parts


def _signal(rng, latents, drivers, n_voxels):
    """Voxel signals driven by the latents of ``drivers``, unit variance over stimuli."""
    n_stimuli = next(iter(latents.values())).shape[0]
    signal = np.zeros((n_stimuli, n_voxels))
    for part in drivers:
        signal += latents[part] @ rng.standard_normal((N_LATENT, n_voxels))
    if drivers:
        signal -= signal.mean(axis=0)
        signal /= signal.std(axis=0)
    return signal


def _runs(rng, signal, n_runs, noise_sd):
    return signal[None] + noise_sd * rng.standard_normal((n_runs, *signal.shape))


GROUPS = {
    "visual": ("visual",),
    "auditory": ("auditory",),
    "visual+auditory": ("visual", "auditory"),
    "none": (),
}
PER_GROUP = 16
NOISE_SD = 1.0  # signal variance 1: R² of a perfect model on one run is 1 / (1 + 1)


@pytest.fixture(scope="module")
def planted():
    rng = np.random.default_rng(20261126)
    latents, activations, parts = _layers(rng, N_STIMULI)
    signal = np.concatenate(
        [_signal(rng, latents, drivers, PER_GROUP) for drivers in GROUPS.values()], axis=1
    )
    patterns = _runs(rng, signal, N_RUNS, NOISE_SD)
    result = fit_encoding(
        activations, parts, patterns, n_components=N_LATENT, n_iter=10, device="cpu", n_jobs=2
    )
    groups = {name: slice(i * PER_GROUP, (i + 1) * PER_GROUP) for i, name in enumerate(GROUPS)}
    return result, groups, activations, parts, patterns


# --------------------------------------------------------------------------- planted effects
def test_unique_variance_finds_the_band_of_each_voxel_group(planted):
    result, groups, *_ = planted
    assert list(result.bands) == list(PARTS)
    band = {name: i for i, name in enumerate(PARTS)}
    for part in ("visual", "auditory"):
        unique = result.unique[:, groups[part]]
        assert np.all(np.argmax(unique, axis=0) == band[part]), part
        assert unique[band[part]].mean() > 0.3
        others = np.delete(unique, band[part], axis=0)
        assert np.abs(others.mean(axis=1)).max() < 0.02
    both = result.unique[:, groups["visual+auditory"]]
    assert both[band["visual"]].mean() > 0.1 and both[band["auditory"]].mean() > 0.1
    assert abs(both[band["crossmodal"]].mean()) < 0.02
    # noise voxels: nothing explained, by any band or together
    none = groups["none"]
    assert np.abs(result.unique[:, none].mean(axis=1)).max() < 0.02
    assert abs(result.r2[none].mean()) < 0.03
    assert abs(result.shared[none].mean()) < 0.02


def test_r2_of_a_known_snr_is_near_its_theoretical_value(planted):
    result, groups, *_ = planted
    theory = 1.0 / (1.0 + NOISE_SD**2)
    for part in ("visual", "auditory", "visual+auditory"):
        assert abs(result.r2[groups[part]].mean() - theory) < 0.05, part
        # the ceiling of one run is the same quantity, estimated from the runs alone
        assert abs(result.ceiling.ceiling[groups[part]].mean() - theory) < 0.05, part
        assert abs(np.nanmean(result.r2_fraction[groups[part]]) - 1.0) < 0.12, part
    assert np.isnan(result.r2_fraction[groups["none"]]).mean() > 0.9


def test_split_scores_sum_to_the_joint_r2_and_partition_adds_up(planted):
    result, groups, *_ = planted
    np.testing.assert_allclose(result.r2_split.sum(axis=0), result.r2, atol=1e-10)
    np.testing.assert_allclose(result.shared, result.r2 - result.unique.sum(axis=0), atol=1e-12)
    np.testing.assert_allclose(result.unique, result.r2[None] - result.r2_without, atol=1e-12)
    np.testing.assert_allclose(result.r2, result.fold_r2.mean(axis=0), atol=1e-12)
    # the split puts the visual voxels' R² on the visual band
    visual = result.r2_split[:, groups["visual"]].mean(axis=1)
    assert visual[0] > 0.4 and np.abs(visual[1:]).max() < 0.02


def test_layer_maps_follow_the_driving_part(planted):
    result, groups, *_ = planted
    assert result.layers == [f"{p}_{j}" for p in PARTS for j in range(2)]
    for part in ("visual", "auditory"):
        means = result.layer_r2[:, groups[part]].mean(axis=1)
        own = [i for i, name in enumerate(result.layers) if name.startswith(part)]
        assert means[own].min() > 0.4
        assert np.delete(means, own).max() < 0.05
    assert result.alphas.shape == (N_RUNS * DEFAULT_STIMULUS_FOLDS, 3, 4 * PER_GROUP)
    assert {k: v.tolist() for k, v in result.n_features.items()} == {
        p: [2 * N_LATENT] * (N_RUNS * DEFAULT_STIMULUS_FOLDS) for p in PARTS
    }


# --------------------------------------------------------------------------- peers
def _sklearn_features(x, train):
    pca = PCA(n_components=3, svd_solver="full").fit(x[train])
    scores = pca.transform(x)
    return StandardScaler().fit(scores[train]).transform(scores)


def _centred_runs(patterns, runs, stimuli):
    block = patterns[np.ix_(list(runs), stimuli)]
    return block - block.mean(axis=1, keepdims=True)


def _one_band(rng, n_stimuli=N_STIMULI, n_runs=5, n_voxels=6):
    latents, activations, parts = _layers(rng, n_stimuli, parts=("visual",), layers_per_part=1)
    signal = _signal(rng, latents, ("visual",), n_voxels)
    noise = np.linspace(0.5, 3.0, n_voxels)
    patterns = signal[None] + noise * rng.standard_normal((n_runs, n_stimuli, n_voxels))
    return activations, parts, patterns


@pytest.mark.parametrize("stimulus_folds", [None, 4])
def test_one_band_predictions_equal_sklearn_ridge(stimulus_folds):
    rng = np.random.default_rng(7)
    activations, parts, patterns = _one_band(rng)
    result = fit_encoding(
        activations,
        parts,
        patterns,
        n_components=3,
        stimulus_folds=stimulus_folds,
        layer_maps=False,
        device="cpu",
        n_jobs=1,
        return_predictions=True,
    )
    x = activations["visual_0"]
    checked = 0
    for i, fold in enumerate(result.folds):
        train, test = fold.train_stimuli, fold.test_stimuli
        z = _sklearn_features(x, train)
        target = _centred_runs(patterns, fold.train_runs, train).mean(axis=0)
        for v in range(patterns.shape[2]):
            model = Ridge(alpha=result.alphas[i, 0, v], fit_intercept=False, solver="svd")
            expected = model.fit(z[train], target[:, v]).predict(z[test])
            np.testing.assert_allclose(
                result.predictions[fold.test_run, test, v], expected, rtol=0, atol=1e-8
            )
            checked += 1
    assert checked == len(result.folds) * patterns.shape[2]
    # the penalties are not all at one end of the grid: the comparison means something
    assert len(np.unique(result.alphas)) > 2


def test_penalty_selection_equals_himalaya_ridgecv():
    """Per fold, himalaya's primal RidgeCV on the inner leave-one-run-out (fit on the
    mean of the other training runs, score on the left-out one) picks the same alphas
    (runs held out only, whose inner folds the peer's splits can state)."""
    rng = np.random.default_rng(11)
    activations, parts, patterns = _one_band(rng, n_voxels=8)
    result = fit_encoding(
        activations,
        parts,
        patterns,
        n_components=3,
        stimulus_folds=None,
        layer_maps=False,
        device="cpu",
        n_jobs=1,
    )
    x = activations["visual_0"]
    for i, fold in enumerate(result.folds):
        train = fold.train_stimuli
        z = _sklearn_features(x, train)[train]
        runs = _centred_runs(patterns, fold.train_runs, train)
        xs, ys, splits, start = [], [], [], 0
        for j in range(len(runs)):
            others = np.delete(runs, j, axis=0).mean(axis=0)
            xs += [z, z]
            ys += [others, runs[j]]
            m = len(train)
            splits.append((np.arange(start, start + m), np.arange(start + m, start + 2 * m)))
            start += 2 * m
        peer = RidgeCV(alphas=DEFAULT_ALPHAS, cv=splits).fit(np.vstack(xs), np.vstack(ys))
        np.testing.assert_allclose(result.alphas[i, 0], peer.best_alphas_, rtol=1e-12)
    assert len(np.unique(result.alphas)) > 2


def test_two_runs_choose_penalties_across_runs_as_himalaya_ridgecv():
    """With 2 runs, each fold's penalties are those himalaya's RidgeCV picks when each
    group of the training stimuli in turn is left out of the training run and scored on
    the held-out run (the other stimuli than the fold's test group); the predictions
    are sklearn's Ridge with them, fitted on the training run."""
    rng = np.random.default_rng(12)
    activations, parts, patterns = _one_band(rng, n_runs=2, n_voxels=8)
    result = fit_encoding(
        activations,
        parts,
        patterns,
        n_components=3,
        stimulus_folds=4,
        layer_maps=False,
        device="cpu",
        n_jobs=1,
        return_predictions=True,
    )
    x = activations["visual_0"]
    groups = np.arange(N_STIMULI) % 4
    assert len(result.folds) == 2 * 4
    for i, fold in enumerate(result.folds):
        train, test = fold.train_stimuli, fold.test_stimuli
        assert fold.train_runs == (1 - fold.test_run,)
        z = _sklearn_features(x, train)
        target = _centred_runs(patterns, fold.train_runs, train)[0]
        held = _centred_runs(patterns, [fold.test_run], train)[0]
        labels, m = groups[train], len(train)
        splits = [
            (np.flatnonzero(labels != g), m + np.flatnonzero(labels == g))
            for g in np.unique(labels)
        ]
        assert len(splits) == 3
        peer = RidgeCV(alphas=DEFAULT_ALPHAS, cv=splits)
        peer.fit(np.vstack([z[train], z[train]]), np.vstack([target, held]))
        np.testing.assert_allclose(result.alphas[i, 0], peer.best_alphas_, rtol=1e-12)
        for v in range(patterns.shape[2]):
            model = Ridge(alpha=result.alphas[i, 0, v], fit_intercept=False, solver="svd")
            expected = model.fit(z[train], target[:, v]).predict(z[test])
            np.testing.assert_allclose(
                result.predictions[fold.test_run, test, v], expected, rtol=0, atol=1e-8
            )
    assert len(np.unique(result.alphas)) > 2


def test_two_runs_never_fit_the_tested_stimuli_of_the_held_out_run():
    """With 2 runs the held-out run's other stimuli choose the penalties, but the
    stimuli it is tested on (in both runs) never reach the fit."""
    rng = np.random.default_rng(5)
    activations, parts, patterns = _one_band(rng, n_stimuli=30, n_runs=2, n_voxels=5)
    kwargs = dict(
        n_components=3,
        stimulus_folds=3,
        layer_maps=False,
        device="cpu",
        n_jobs=1,
        return_predictions=True,
    )
    before = fit_encoding(activations, parts, patterns, **kwargs)
    fold = before.folds[0]
    changed = patterns.copy()
    changed[:, fold.test_stimuli] = -20.0 * rng.standard_normal(changed[:, fold.test_stimuli].shape)
    after = fit_encoding(activations, parts, changed, **kwargs)
    cell = np.ix_([fold.test_run], fold.test_stimuli)
    np.testing.assert_allclose(after.predictions[cell], before.predictions[cell], atol=1e-10)
    # the other folds trained on the changed stimuli: their predictions moved
    other = before.folds[1]
    moved = after.predictions[other.test_run, other.test_stimuli]
    assert np.abs(moved - before.predictions[other.test_run, other.test_stimuli]).max() > 1e-2


def test_two_runs_recover_the_band_of_each_voxel_group(planted):
    """The planted voxel groups of :func:`planted`, with 2 runs instead of 6: each band's
    unique variance is where it drives the voxels, none in the noise voxels."""
    _, groups, activations, parts, patterns = planted
    result = fit_encoding(
        activations, parts, patterns[:2], n_components=N_LATENT, n_iter=10, device="cpu", n_jobs=2
    )
    unique = {b: result.unique[i] for i, b in enumerate(result.band_names)}
    assert unique["visual"][groups["visual"]].mean() > 0.2
    assert unique["auditory"][groups["auditory"]].mean() > 0.2
    assert abs(unique["auditory"][groups["visual"]].mean()) < 0.05
    assert abs(unique["visual"][groups["auditory"]].mean()) < 0.05
    assert abs(result.r2[groups["none"]].mean()) < 0.06
    assert result.ceiling.n_splits == 1


# --------------------------------------------------------------------------- folds and leakage
def test_folds_never_train_on_what_they_test():
    folds = encoding_folds(N_RUNS, 10)
    assert [f.test_run for f in folds] == list(range(N_RUNS))
    for f in folds:
        assert f.test_run not in f.train_runs
        assert sorted(f.train_runs + (f.test_run,)) == list(range(N_RUNS))
    folds = encoding_folds(4, 12, stimulus_folds=3)
    assert len(folds) == 4 * 3
    tested = np.zeros((4, 12), dtype=int)
    for f in folds:
        assert f.test_run not in f.train_runs
        assert not set(f.train_stimuli) & set(f.test_stimuli)
        assert sorted([*f.train_stimuli, *f.test_stimuli]) == list(range(12))
        tested[f.test_run, f.test_stimuli] += 1
    assert np.all(tested == 1)  # every run and stimulus predicted exactly once
    labels = np.repeat(["a", "b", "c", "d"], 3)
    groups = [set(labels[f.test_stimuli]) for f in encoding_folds(3, 12, stimulus_folds=labels)]
    assert all(len(g) == 1 for g in groups) and len(groups) == 3 * 4


@pytest.mark.parametrize("stimulus_folds", [None, 3])
def test_held_out_data_never_reach_the_fit(stimulus_folds):
    """Replacing the held-out run (and the held-out stimuli in every run) by other
    numbers leaves its predictions unchanged; anything else changes them."""
    rng = np.random.default_rng(3)
    activations, parts, patterns = _one_band(rng, n_stimuli=30, n_runs=4, n_voxels=5)
    kwargs = dict(
        n_components=3,
        stimulus_folds=stimulus_folds,
        layer_maps=False,
        device="cpu",
        n_jobs=1,
        return_predictions=True,
    )
    before = fit_encoding(activations, parts, patterns, **kwargs)
    test_run = 2
    tested = (
        np.arange(30)
        if stimulus_folds is None
        else next(f.test_stimuli for f in before.folds if f.test_run == test_run)
    )
    changed = patterns.copy()
    changed[test_run] = 50.0 * rng.standard_normal(changed[test_run].shape)
    if stimulus_folds is not None:  # the held-out stimuli, in every run
        changed[:, tested] = -20.0 * rng.standard_normal(changed[:, tested].shape)
    after = fit_encoding(activations, parts, changed, **kwargs)
    np.testing.assert_allclose(
        after.predictions[test_run, tested], before.predictions[test_run, tested], atol=1e-10
    )
    # the other runs did train on the changed run: their predictions moved
    assert np.abs(after.predictions[0] - before.predictions[0]).max() > 1e-2


def test_pca_is_fitted_on_training_stimuli_only():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((24, 30)) @ rng.standard_normal((30, 30))
    train, test = np.arange(18), np.arange(18, 24)
    leaked = np.column_stack([x, np.zeros(24)])
    leaked[test, -1] = 1e4 * (1 + np.arange(6))  # zero on training stimuli only
    plain = np.column_stack([x, np.zeros(24)])
    for n_components in (5, 0.9, None):
        np.testing.assert_allclose(
            layer_features(leaked, train, n_components),
            layer_features(plain, train, n_components),
            atol=1e-9,
        )
    # fitted on every stimulus, the unit would dominate the first component
    everything = np.arange(24)
    assert not np.allclose(
        layer_features(leaked, everything, 5), layer_features(plain, everything, 5)
    )
    # training features: mean 0, variance 1 over the training stimuli; shapes as promised
    z = layer_features(x, train, 5)
    assert z.shape == (24, 5)
    np.testing.assert_allclose(z[train].mean(axis=0), 0, atol=1e-10)
    np.testing.assert_allclose(z[train].std(axis=0), 1, atol=1e-10)
    share = np.cumsum(np.linalg.svd(x[train] - x[train].mean(0), compute_uv=False) ** 2)
    share /= share[-1]
    assert layer_features(x, train, 0.9).shape[1] == np.searchsorted(share, 0.9) + 1


def test_a_unit_seen_only_on_held_out_stimuli_leaves_their_predictions_alone():
    rng = np.random.default_rng(9)
    activations, parts, patterns = _one_band(rng, n_stimuli=30, n_runs=4, n_voxels=4)
    groups = np.arange(30) % 3
    leak = activations["visual_0"].copy()
    leak[:, 0] = np.where(groups == 0, 1e3 * rng.standard_normal(30), 0.0)
    kwargs = dict(
        n_components=3,
        stimulus_folds=groups,
        layer_maps=False,
        device="cpu",
        n_jobs=1,
        return_predictions=True,
    )
    clean = activations["visual_0"].copy()
    clean[:, 0] = 0.0
    a = fit_encoding({"visual_0": clean}, parts, patterns, **kwargs).predictions
    b = fit_encoding({"visual_0": leak}, parts, patterns, **kwargs).predictions
    np.testing.assert_allclose(b[:, groups == 0], a[:, groups == 0], atol=1e-9)
    assert np.abs(b[:, groups != 0] - a[:, groups != 0]).max() > 1e-3


# --------------------------------------------------------------------------- noise ceiling
def test_spearman_brown_on_known_values():
    assert spearman_brown(0.5, 2) == pytest.approx(2 / 3)
    assert spearman_brown(2 / 3, 0.5) == pytest.approx(0.5)
    assert spearman_brown(0.3, 1) == pytest.approx(0.3)
    assert spearman_brown(0.2, 4) == pytest.approx(0.8 / 1.6)
    np.testing.assert_allclose(spearman_brown([0.0, 1.0], 3), [0.0, 1.0])
    with pytest.raises(ValueError, match="factor"):
        spearman_brown(0.5, 0)


def test_noise_ceiling_known_case_two_runs():
    rng = np.random.default_rng(1)
    a = rng.standard_normal(40)
    a -= a.mean()
    a /= np.linalg.norm(a)
    b = rng.standard_normal(40)
    b -= b.mean()
    b -= a * (a @ b)
    b /= np.linalg.norm(b)  # centred, unit norm, orthogonal to a
    cosines = np.array([0.9, 0.5, 0.1, -0.2])
    first = np.column_stack([a] * 4)
    second = np.column_stack([c * a + np.sqrt(1 - c**2) * b for c in cosines])
    nc = noise_ceiling(np.stack([first, second]))
    np.testing.assert_allclose(nc.split_half, cosines, atol=1e-12)
    np.testing.assert_allclose(nc.reliability, 2 * cosines / (1 + cosines), atol=1e-12)
    np.testing.assert_allclose(nc.ceiling, cosines, atol=1e-12)  # one run is one half
    assert nc.n_splits == 1
    fraction = nc.fraction(np.full(4, 0.2))
    keep = nc.reliability > nc.min_reliability
    np.testing.assert_allclose(fraction[keep], 0.2 / cosines[keep])
    assert np.isnan(fraction[~keep]).all() and keep.sum() == 2


def test_noise_ceiling_matches_the_theory_for_many_stimuli():
    rng = np.random.default_rng(2)
    n_runs, snr = 6, np.array([0.25, 1.0, 4.0])
    signal = rng.standard_normal((4000, 3)) * np.sqrt(snr)
    patterns = signal[None] + rng.standard_normal((n_runs, 4000, 3))
    one_run = snr / (1 + snr)  # correlation of two runs
    for halves, n_splits in (("all", 10), ("odd-even", 1)):
        nc = noise_ceiling(patterns, halves=halves)
        assert nc.n_splits == n_splits
        np.testing.assert_allclose(nc.ceiling, one_run, atol=0.03)
        np.testing.assert_allclose(
            nc.reliability, n_runs * one_run / (1 + (n_runs - 1) * one_run), atol=0.02
        )
    assert noise_ceiling(patterns[:5]).n_splits == 10  # 5 runs: 2 against 3, C(5, 2)


# --------------------------------------------------------------------------- small pieces
def test_variance_partition_on_known_numbers():
    unique, shared = variance_partition(
        np.array([0.5, 0.1]), np.array([[0.3, 0.1], [0.4, 0.12], [0.5, 0.1]])
    )
    np.testing.assert_allclose(unique, [[0.2, 0.0], [0.1, -0.02], [0.0, 0.0]])
    np.testing.assert_allclose(shared, [0.2, 0.12])
    with pytest.raises(ValueError, match="r2_without"):
        variance_partition(np.zeros(3), np.zeros((2, 4)))


def test_make_bands_default_and_given():
    parts = {"v1": "visual", "a1": "auditory", "v2": "visual", "x": "crossmodal"}
    assert make_bands(parts) == {"visual": ["v1", "v2"], "auditory": ["a1"], "crossmodal": ["x"]}
    assert make_bands(parts, bands={"early": ["v1", "a1"], "late": "x"}) == {
        "early": ["v1", "a1"],
        "late": ["x"],
    }
    with pytest.raises(ValueError, match=r"bands\['b'\]"):
        make_bands(parts, bands={"a": ["v1"], "b": ["nope"]})
    with pytest.raises(ValueError, match="'v1' is in bands 'a' and 'b'"):
        make_bands(parts, bands={"a": ["v1"], "b": ["v1"]})
    with pytest.raises(ValueError, match="parts lacks"):
        make_bands(parts, layers=["v1", "z"])


def test_patterns_by_run_reorders_a_pattern_result():
    from dnnrsa.glm import PatternResult

    order = ["a", "b", "c"]
    rows, conditions, runs = [], [], []
    for run, labels in enumerate([["c", "a", "b"], ["b", "c", "a"]]):
        for label in labels:
            rows.append([10 * run + order.index(label), -1.0])
            conditions.append(label)
            runs.append(run)
    result = PatternResult(
        patterns=np.array(rows),
        conditions=np.array(conditions),
        runs=np.array(runs),
        condition_order=order,
        mask_img=None,
    )
    out = patterns_by_run(result)
    assert out.shape == (2, 3, 2)
    np.testing.assert_array_equal(out[:, :, 0], [[0, 1, 2], [10, 11, 12]])


def test_excluded_voxels_and_blocks_do_not_change_the_others():
    rng = np.random.default_rng(4)
    latents, activations, parts = _layers(rng, 30, parts=("visual", "auditory"), layers_per_part=1)
    signal = _signal(rng, latents, ("visual", "auditory"), 6)
    patterns = _runs(rng, signal, 4, 1.0)
    kwargs = dict(n_components=3, n_iter=4, device="cpu", layer_maps=False)
    whole = fit_encoding(activations, parts, patterns, n_jobs=2, **kwargs)
    broken = np.concatenate([patterns, np.ones((4, 30, 2))], axis=2)
    broken[1, 3, -2] = np.nan  # non-finite in one run
    broken[:, :, -1] = 7.0  # constant
    blocks = fit_encoding(activations, parts, broken, n_jobs=1, voxel_batch=4, **kwargs)
    assert blocks.valid.tolist() == [True] * 6 + [False, False]
    # the same choices, the same numbers up to rounding (products of other shapes)
    np.testing.assert_array_equal(blocks.alphas[..., :6], whole.alphas)
    for name in ("r2", "r", "shared", "r2_fraction"):
        np.testing.assert_allclose(getattr(blocks, name)[:6], getattr(whole, name), atol=1e-12)
        assert np.isnan(getattr(blocks, name)[6:]).all()
    for name in ("r2_split", "unique", "r2_without", "fold_r2"):
        np.testing.assert_allclose(getattr(blocks, name)[..., :6], getattr(whole, name), atol=1e-12)
    assert blocks.backend == "numpy"


def _inputs():
    rng = np.random.default_rng(0)
    _, activations, parts = _layers(rng, 12, parts=("visual",), layers_per_part=1, n_units=5)
    return activations, parts, rng.standard_normal((3, 12, 4))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"patterns": np.zeros((12, 4))}, r"patterns must be an array of shape \(n_runs"),
        ({"patterns": np.zeros((1, 12, 4))}, "patterns must hold at least 2 runs"),
        ({"patterns": np.zeros((2, 12, 4)), "stimulus_folds": None}, "2 runs need stimulus_folds"),
        ({"activations": {"visual_0": np.zeros((11, 5))}}, r"activations\['visual_0'\] has 11"),
        ({"parts": {"other": "visual"}}, "parts lacks layers"),
        ({"n_components": 0}, "n_components"),
        ({"n_components": 1.5}, "n_components"),
        ({"alphas": [1.0, -1.0]}, "alphas"),
        ({"stimulus_folds": 2}, "stimulus_folds"),
        ({"stimulus_folds": np.zeros(11)}, r"stimulus_folds.*shape \(n_stimuli,\)"),
        ({"stimulus_folds": np.arange(12) % 2}, "stimulus_folds must define at least 3"),
        ({"n_iter": 0}, "n_iter"),
        ({"device": "tpu"}, "device must be one of"),
        ({"bands": {"b": ["missing"]}}, r"bands\['b'\]"),
        ({"halves": "thirds"}, "halves"),
    ],
)
def test_wrong_inputs_are_refused_naming_the_parameter(change, match):
    activations, parts, patterns = _inputs()
    args = {"activations": activations, "parts": parts, "patterns": patterns, **change}
    positional = [args.pop(k) for k in ("activations", "parts", "patterns")]
    with pytest.raises(ValueError, match=match):
        fit_encoding(*positional, layer_maps=False, **args)


@pytest.mark.gpu
def test_torch_cuda_backend_matches_numpy():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    rng = np.random.default_rng(6)
    latents, activations, parts = _layers(rng, N_STIMULI)
    signal = _signal(rng, latents, ("visual", "crossmodal"), 40)
    patterns = _runs(rng, signal, N_RUNS, 1.0)
    kwargs = dict(n_components=N_LATENT, n_iter=10, layer_maps=True)
    cpu = fit_encoding(activations, parts, patterns, device="cpu", **kwargs)
    gpu = fit_encoding(activations, parts, patterns, device="cuda", **kwargs)
    assert gpu.backend == "torch_cuda"
    assert np.mean(np.isclose(gpu.alphas, cpu.alphas, rtol=1e-6)) > 0.98
    assert np.mean(np.isclose(gpu.r2, cpu.r2, atol=1e-6)) > 0.95
    np.testing.assert_allclose(gpu.layer_r2, cpu.layer_r2, atol=1e-6)
