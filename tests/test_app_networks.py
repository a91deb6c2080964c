"""Standard networks in the BIDS App (``--network NAME[=FILE|=random]``).

- the preflight refuses, before anything is written: an unknown name (64, pointing to
  ``dnnrsa --list-networks``), weights that are not where they are looked for (66,
  naming the file and where to put it), a file of another architecture (64, naming
  the first tensor that does not fit);
- the model label of a network in file names, and the output folder's record;
- the seeded sparse random projection of layers above ``--feature-budget``: the same
  for the same seed, and its correlation-distance RDM correlates with the exact one;
- a participant and group run with two untrained networks (slow): a layer RDM and a
  searchlight map per layer of each network, sidecars with the network, the part and
  the weights, layer RDMs equal to those computed from ``extract_features`` directly,
  the group maps, ROI tables and the reports; each network's encoding model (no
  ``--checkpoint``, 2 runs) within the region, equal to ``fit_encoding`` on the same
  patterns and features.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dnnrsa.bids_app.run import main

from .bids_fixtures import make_small_bids
from .conftest import participant_argv


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return make_small_bids(tmp_path_factory.mktemp("nets") / "bids", n_subjects=1)


def _participant(small, tmp_path, *extra):
    return main(participant_argv(small.root, tmp_path, *extra))


def _nothing_written(tmp_path) -> bool:
    out = tmp_path / "o"
    return not (out / "dnnrsa_config.toml").exists() and not any(out.glob("*.tsv"))


def _last_error(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if "ERROR" in line]
    return lines[-1] if lines else text


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    home = tmp_path / "torch_home"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


# ---------------------------------------------------------------- the preflight's exits
def test_unknown_network_exits_64_pointing_to_the_list(small, tmp_path, torch_home, capsys):
    code = _participant(small, tmp_path, "--network", "torchvision/resnet19=random")
    err = _last_error(capsys.readouterr().err)
    assert code == 64
    assert "torchvision/resnet19" in err and "dnnrsa --list-networks" in err
    assert _nothing_written(tmp_path)


def test_not_a_standard_network_exits_64(small, tmp_path, torch_home, capsys):
    code = _participant(small, tmp_path, "--network", "crosschannel")
    err = _last_error(capsys.readouterr().err)
    assert code == 64
    assert "not a standard network" in err and "--checkpoint" in err


def test_missing_weights_exit_66_naming_the_file_and_where(small, tmp_path, torch_home, capsys):
    code = _participant(small, tmp_path, "--network", "torchvision/resnet18")
    err = _last_error(capsys.readouterr().err)
    assert code == 66
    expected = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert str(expected) in err
    assert "--network torchvision/resnet18=FILE" in err
    assert "torchvision/resnet18=random" in err
    assert _nothing_written(tmp_path)


def test_missing_weight_file_exits_66(small, tmp_path, torch_home, capsys):
    missing = tmp_path / "nowhere" / "r18.pth"
    code = _participant(small, tmp_path, "--network", f"torchvision/resnet18={missing}")
    err = _last_error(capsys.readouterr().err)
    assert code == 66
    assert str(missing) in err and "resnet18-f37072fd.pth" in err


def _wrong_resnet18(path: Path) -> Path:
    """A ResNet-18 state dict with a 10-class classifier (fc.weight is (10, 512))."""
    import torch
    import torchvision

    state = torchvision.models.resnet18(weights=None).state_dict()
    state["fc.weight"] = torch.zeros(10, 512)
    state["fc.bias"] = torch.zeros(10)
    torch.save(state, path)
    return path


def test_wrong_shape_file_exits_64_naming_the_tensor(small, tmp_path, torch_home, capsys):
    bad = _wrong_resnet18(tmp_path / "ten_classes.pth")
    code = _participant(small, tmp_path, "--network", f"torchvision/resnet18={bad}")
    err = _last_error(capsys.readouterr().err)
    assert code == 64
    assert "'fc.weight'" in err and "(10, 512)" in err and "(1000, 512)" in err
    assert _nothing_written(tmp_path)
    # the same file where the library keeps its own: refused the same way
    shutil.copy(bad, torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    code = _participant(small, tmp_path, "--network", "torchvision/resnet18")
    err = _last_error(capsys.readouterr().err)
    assert code == 64 and "'fc.weight'" in err


def test_two_networks_of_one_label_exit_64(small, tmp_path, torch_home, capsys):
    import torch
    import torchvision

    state = torchvision.models.resnet18(weights=None).state_dict()
    files = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        files.append(tmp_path / folder / "mine.pth")
        torch.save(state, files[-1])
    nets = [arg for f in files for arg in ("--network", f"torchvision/resnet18={f}")]
    code = _participant(small, tmp_path, *nets)
    err = _last_error(capsys.readouterr().err)
    assert code == 64
    assert "'resnet18mine'" in err and "own label" in err
    assert _nothing_written(tmp_path)


# ---------------------------------------------------------------- labels and the record
@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("torchvision/r3d_18=random", "r3d18random"),
        ("torchvision/r3d_18", "r3d18"),
        ("torchvision/r3d_18=/w/r3d_18-b3b3357e.pth", "r3d18"),
        ("torchaudio/hubert_base=/w/hubert_emotion.pth", "hubertbasehubertemotion"),
        ("timm/resnet50", "timmresnet50"),
        ("torchaudio/wav2vec2_base=random", "wav2vec2baserandom"),
    ],
)
def test_network_labels(text, label):
    from dnnrsa.bids_app.preflight import network_label

    assert network_label(text) == label


def test_record_holds_networks_and_weights(small, tmp_path, torch_home):
    import torch
    import torchvision

    from dnnrsa._io import file_sha256
    from dnnrsa.bids_app.outputs import analysis_record, differences
    from dnnrsa.bids_app.parser import build_parser
    from dnnrsa.bids_app.run import config_from_options

    good = tmp_path / "mine.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), good)

    def record(*nets):
        args = [str(small.root), str(tmp_path / "o"), "participant"]
        for n in nets:
            args += ["--network", n]
        return analysis_record(config_from_options(build_parser().parse_args(args)))

    a = record("torchvision/resnet18=random", f"torchvision/resnet18={good}")
    assert a["networks"] == {
        "resnet18random": "torchvision/resnet18 random seed 0",
        "resnet18mine": f"torchvision/resnet18 mine.pth sha256:{file_sha256(good)}",
    }
    assert a["feature_budget"] == 1_000_000
    b = record("torchvision/resnet18=random")
    (diff,) = differences(a, b)
    assert diff.startswith("--network: ") and "resnet18mine" in diff


def test_library_weights_in_torch_home_pass_and_are_recorded(small, tmp_path, torch_home):
    """The library's own file where TORCH_HOME says: the preflight passes, the label is
    the architecture's alone and the sidecar fields name the file and its SHA-256."""
    import torch
    import torchvision

    from dnnrsa._io import file_sha256
    from dnnrsa.bids_app.parser import build_parser
    from dnnrsa.bids_app.preflight import _check_networks, resolve_networks
    from dnnrsa.bids_app.run import config_from_options

    official = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), official)
    args = [str(small.root), str(tmp_path / "o"), "participant", "--network"]
    config = config_from_options(build_parser().parse_args([*args, "torchvision/resnet18"]))
    _check_networks(config)  # no error
    (network,) = resolve_networks(config)
    assert network.label == "resnet18"
    assert network.sidecar() == {
        "Network": "torchvision/resnet18",
        "Weights": {"Source": "cache", "File": str(official), "SHA256": file_sha256(official)},
        "Untrained": False,
    }
    assert set(network.parts) == {"visual"} and len(network.parts) == 7


# ---------------------------------------------------------------- the feature budget
def _synthetic_layer(rng, n_stim=24, n_features=300_000):
    """Activations of a wide layer: a low-rank stimulus structure (4 categories) plus
    independent noise, rectified (non-negative, with a large common mean, as a ReLU
    layer's)."""
    cats = np.repeat(np.arange(4), n_stim // 4)
    codes = rng.normal(size=(4, n_features))
    stim = rng.normal(size=(n_stim, 8)) @ rng.normal(size=(8, n_features))
    x = 1.5 * codes[cats] + 0.5 * stim + rng.normal(size=(n_stim, n_features))
    return np.maximum(x, 0).astype(np.float32)


def test_reduction_keeps_the_correlation_rdm_and_is_seeded(rng):
    from scipy.spatial.distance import pdist

    from dnnrsa.bids_app.config import DEFAULT_FEATURE_BUDGET
    from dnnrsa.featurebudget import reduce_features

    x = _synthetic_layer(rng)
    budget = 100_000  # a third of the features (the default, 1,000,000, keeps more)
    assert budget <= DEFAULT_FEATURE_BUDGET
    exact = pdist(x.astype(np.float64), "correlation")
    reduced = reduce_features(x, budget, seed=0, layer="stem")
    assert reduced.shape == (x.shape[0], budget)
    approx = pdist(reduced.astype(np.float64), "correlation")
    r = np.corrcoef(exact, approx)[0, 1]
    assert r >= 0.95, r
    # identical for the same seed and layer, different for another seed or layer
    again = reduce_features(x.copy(), budget, seed=0, layer="stem")
    assert np.array_equal(reduced, again)
    assert not np.array_equal(reduced, reduce_features(x, budget, seed=1, layer="stem"))
    assert not np.array_equal(reduced, reduce_features(x, budget, seed=0, layer="layer1"))
    # a layer within the budget is left as it is
    assert np.array_equal(reduce_features(x[:, :1000], budget), x[:, :1000])


def test_reduction_at_the_default_budget(rng):
    """A layer of 3.2 million features (r3d_18's stem) reduced to the default budget."""
    from scipy.spatial.distance import pdist

    from dnnrsa.bids_app.config import DEFAULT_FEATURE_BUDGET
    from dnnrsa.featurebudget import reduce_features

    x = _synthetic_layer(rng, n_stim=12, n_features=3_211_264)
    exact = pdist(x.astype(np.float64), "correlation")
    reduced = reduce_features(x, DEFAULT_FEATURE_BUDGET, seed=3, layer="stem")
    approx = pdist(reduced.astype(np.float64), "correlation")
    assert np.corrcoef(exact, approx)[0, 1] >= 0.95
    assert np.array_equal(reduced, reduce_features(x, DEFAULT_FEATURE_BUDGET, seed=3, layer="stem"))


# ---------------------------------------------------------------- a run (slow)
NETWORKS = ("torchvision/resnet18=random", "torchaudio/wav2vec2_base=random")
LABELS = {
    "torchvision/resnet18": "resnet18random",
    "torchaudio/wav2vec2_base": "wav2vec2baserandom",
}


def _video_bids(root: Path):
    """The small data set with a 1-s audio-visual clip (25 fps, 64 x 80, 16 kHz) per
    stimulus: moving stripes and a tone, each stimulus its own."""
    from dnnrsa.stimuli import write_clip

    small = make_small_bids(root, n_subjects=2, write_stimuli=False)
    yy, xx = np.mgrid[:64, :80]
    t = np.arange(16000) / 16000
    names = {}
    for k, wav in enumerate(small.stim_files):
        frames = np.empty((25, 64, 80, 3), np.uint8)
        for i in range(25):
            frames[i, ..., 0] = (127 + 100 * np.sin(xx / (3 + k) + i / 4)).astype(np.uint8)
            frames[i, ..., 1] = (127 + 100 * np.cos(yy / (2 + k % 4) - i / 5)).astype(np.uint8)
            frames[i, ..., 2] = ((xx + yy + 5 * i + 25 * k) % 256).astype(np.uint8)
        audio = 0.3 * np.sin(2 * np.pi * (150 + 70 * k) * t)
        name = wav.replace(".wav", ".mp4")
        write_clip(root / "stimuli" / name, frames, 25, audio, 16000, threads=1)
        names[wav] = name
    for events in root.glob("sub-*/func/*_events.tsv"):
        table = pd.read_csv(events, sep="\t")
        table["stim_file"] = table["stim_file"].map(names)
        table.to_csv(events, sep="\t", index=False)
    return small, [names[w] for w in small.stim_files]


@pytest.fixture(scope="module")
def network_run(tmp_path_factory):
    """A participant run of both subjects with two untrained networks, a region and
    their encoding models in it (no checkpoint, 2 runs), then the group level."""
    import time

    tmp = tmp_path_factory.mktemp("netrun")
    small, stimuli = _video_bids(tmp / "bids")
    roi = tmp / "centre.nii.gz"
    import nibabel as nib

    nib.Nifti1Image(small.region_mask.astype(np.uint8), small.affine).to_filename(roi)
    out, work = tmp / "out", tmp / "work"
    common = [str(small.root), str(out)]
    nets = [arg for n in NETWORKS for arg in ("--network", n)]
    start = time.perf_counter()
    code = main(
        [
            *common,
            "participant",
            *nets,
            "--feature-budget",
            "100000",
            "--roi",
            f"centre={roi}",
            "--encoding",  # networks only, 2 runs: penalties chosen on groups of stimuli
            "--encoding-mask",
            "rois",
            "--encoding-stimulus-folds",
            "3",
            "--skip-bids-validation",
            "-w",
            str(work),
            "--radius-mm",
            "6",
            "--min-voxels",
            "5",
            "--nprocs",
            "2",
            "--device",
            "cpu",
        ]
    )
    participant_s = time.perf_counter() - start
    assert code == 0
    start = time.perf_counter()
    code = main(
        [
            *common,
            "group",
            "-w",
            str(work),
            "--n-permutations",
            "50",
            "--roi-bootstrap",
            "stimuli",
            "--roi-n-boot",
            "50",
            "--nprocs",
            "2",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    return {
        "out": out,
        "stimuli": [str(small.root / "stimuli" / s) for s in stimuli],
        "names": stimuli,
        "timings": (participant_s, time.perf_counter() - start),
    }


@pytest.mark.slow
def test_every_layer_of_every_network_is_a_model(network_run):
    from dnnrsa.models import get_model

    out = network_run["out"]
    participant_s, group_s = network_run["timings"]
    print(f"participant level {participant_s:.1f} s, group level {group_s:.1f} s")
    for name, label in LABELS.items():
        spec = get_model(name)
        for layer in spec.layer_names:
            layer_label = "".join(ch for ch in layer if ch.isalnum())
            rdm = out / f"task-cat_model-{label}_layer-{layer_label}_rdm.tsv"
            assert rdm.is_file(), rdm
            side = json.loads(rdm.with_suffix(".json").read_text())
            assert side["Network"] == name and side["Untrained"] is True
            assert side["Part"] == spec.parts[layer] and side["LayerName"] == layer
            assert side["Weights"] == {"Source": "random", "Seed": 0}
            for sub in ("01", "02"):
                stem = f"sub-{sub}_task-cat_space-native_model-{label}_layer-{layer_label}"
                statmap = out / f"sub-{sub}" / "func" / f"{stem}_stat-spearman_statmap.nii.gz"
                assert statmap.is_file(), statmap
                meta = json.loads(Path(str(statmap).replace(".nii.gz", ".json")).read_text())
                assert meta["Network"] == name and meta["Untrained"] is True
                assert meta["Part"] == spec.parts[layer] and meta["Weights"]["Seed"] == 0
            group = (
                out
                / f"task-cat_space-native_model-{label}_layer-{layer_label}_stat-t_statmap.nii.gz"
            )
            assert group.is_file(), group
            gmeta = json.loads(Path(str(group).replace(".nii.gz", ".json")).read_text())
            assert gmeta["Network"] == name and gmeta["Untrained"] is True
            assert gmeta["Part"] == spec.parts[layer]
        winner = out / f"task-cat_space-native_model-{label}_desc-winner_statmap.nii.gz"
        wmeta = json.loads(Path(str(winner).replace(".nii.gz", ".json")).read_text())
        assert wmeta["Network"] == name and wmeta["Untrained"] is True
        assert wmeta["Weights"]["Source"] == "random"
        assert (out / f"task-cat_model-{label}_desc-layersimilarity_matrix.tsv").is_file()
        assert not (out / f"task-cat_model-{label}_desc-armrelevance_stats.tsv").exists()
    # layers above the budget were reduced, and say so; the others were not
    maxpool = json.loads((out / "task-cat_model-resnet18random_layer-maxpool_rdm.json").read_text())
    assert maxpool["FeatureReduction"]["Features"] == 64 * 56 * 56
    assert maxpool["FeatureReduction"]["ReducedTo"] == 100_000
    fc = json.loads((out / "task-cat_model-resnet18random_layer-fc_rdm.json").read_text())
    assert "FeatureReduction" not in fc
    # the record names both networks and their weights
    import tomllib

    record = tomllib.loads((out / "dnnrsa_config.toml").read_text())["analysis"]
    assert record["networks"] == {
        "resnet18random": "torchvision/resnet18 random seed 0",
        "wav2vec2baserandom": "torchaudio/wav2vec2_base random seed 0",
    }


@pytest.mark.slow
def test_layer_rdms_equal_those_of_extract_features(network_run):
    """Known answer: the layer RDM written is the correlation distance of the
    activations extract_features gives for the same network and seed (the reduced
    layers: of the same seeded projection)."""
    from dnnrsa.analysis import layer_rdms
    from dnnrsa.featurebudget import reduce_features
    from dnnrsa.features import extract_features
    from dnnrsa.rdm import read_rdm_tsv

    out = network_run["out"]
    names = np.array(network_run["names"])
    for model, layer, reduced in (
        ("torchvision/resnet18=random", "fc", False),
        ("torchvision/resnet18=random", "maxpool", True),
        ("torchaudio/wav2vec2_base=random", "transformer_6", True),
        ("torchaudio/wav2vec2_base=random", "feature_extractor", False),
    ):
        fs = extract_features(network_run["stimuli"], model, layers=[layer], seed=0)
        acts = fs.activations[layer]
        if reduced:
            acts = reduce_features(acts, 100_000, seed=0, layer=layer)
        _, expected = layer_rdms({layer: acts}, "correlation", conditions=names)
        label = LABELS[model.split("=")[0]]
        path = out / f"task-cat_model-{label}_layer-{layer.replace('_', '')}_rdm.tsv"
        written, conditions = read_rdm_tsv(path)
        assert conditions == sorted(names.tolist())
        np.testing.assert_allclose(written, expected[0], rtol=0, atol=1e-6)


@pytest.mark.slow
def test_group_roi_tables_and_reports_include_the_networks(network_run):
    out = network_run["out"]
    table = pd.read_csv(
        out / "task-cat_space-native_roi-centre_desc-evaluation_stats.tsv", sep="\t"
    )
    text = " ".join(table.astype(str).to_numpy().ravel())
    for label in LABELS.values():
        assert label in text
    report = (out / "group.html").read_text()
    assert "resnet18random (torchvision/resnet18, untrained control)" in report
    assert not (out / "task-cat_desc-findings_stats.tsv").exists()


@pytest.mark.slow
def test_encoding_of_networks_alone_in_the_region_equals_the_core(network_run):
    """``--encoding`` with standard networks and no checkpoint, on 2 runs: each network's
    model of one band fitted on the region's voxels only (NaN elsewhere), its joint R²
    equal to :func:`fit_encoding` on the written patterns and the network's features
    (the penalties chosen on groups of stimuli of the one training run); the group
    level tests the maps."""
    import nibabel as nib

    from dnnrsa.encoding import DEFAULT_N_COMPONENTS, fit_encoding

    out = network_run["out"]
    func = out / "sub-01" / "func"
    (patterns,) = func.glob("*_desc-lsa_stat-effect_statmap.nii.gz")
    side = json.loads(patterns.with_name(patterns.name.replace(".nii.gz", ".json")).read_text())
    (mask_file,) = func.glob("*_desc-brain_mask.nii.gz")
    region = np.asarray(nib.load(out.parent / "centre.nii.gz").dataobj) > 0
    mask = region & (np.asarray(nib.load(mask_file).dataobj) > 0)
    conditions, n_runs = side["Conditions"], len(side["Runs"])
    assert n_runs == 2
    data = np.asarray(nib.load(patterns).dataobj)[mask].T  # (n_rows, n_voxels), run-major
    for label in LABELS.values():
        (features,) = (out.parent / "work").glob(f"**/extract_{label}/features.npz")
        with np.load(features) as f:
            names = [str(n) for n in f["layer_names"]]
            acts = {n: f[f"layer{i:03d}"] for i, n in enumerate(names)}
            stimuli = [str(s) for s in f["stimuli"]]
        by_name = {c.rsplit("/", 1)[-1]: i for i, c in enumerate(conditions)}
        pats = data.reshape(n_runs, len(conditions), -1)[:, [by_name[s] for s in stimuli]]
        res = fit_encoding(
            acts,
            dict.fromkeys(names, "network"),
            pats,
            n_components=DEFAULT_N_COMPONENTS,
            stimulus_folds=3,
            layer_maps=False,
            device="cpu",
        )
        stem = f"sub-01_task-cat_space-native_model-{label}"
        r2 = np.asarray(nib.load(func / f"{stem}_desc-encoding_stat-r2_statmap.nii.gz").dataobj)
        assert np.all(np.isnan(r2[~mask])) and np.isfinite(r2[mask]).sum() > 5
        np.testing.assert_allclose(r2[mask], res.r2.astype(np.float32), atol=1e-6, equal_nan=True)
        meta = json.loads((func / f"{stem}_desc-encoding_stat-r2_statmap.json").read_text())
        assert meta["EncodingMask"]["Kind"] == "rois"
        assert meta["EncodingMask"]["Regions"] == ["centre"]
        group = out / f"task-cat_space-native_model-{label}_desc-encodingr2_stat-t_statmap.nii.gz"
        assert group.is_file(), group
