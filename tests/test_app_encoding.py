"""``dnnrsa participant --encoding``: the banded ridge encoding maps of each checkpoint
(one band per part) and each standard network (one band of all its layers), written per
participant with their sidecars, recorded in the folder's analysis."""

from __future__ import annotations

import json
import tomllib

import nibabel as nib
import numpy as np
import pytest

from dnnrsa.bids_app.run import main

SL = ["--radius-mm", "6", "--min-voxels", "5", "--nprocs", "2"]
LAYERS = ["--layers", "visual_conv1_1", "auditory_conv1", "crossmodal_dense"]
ENCODING = ["--encoding", "--encoding-stimulus-folds", "3", "--encoding-layer-maps"]
#: The cheapest standard network on the fixture's sounds (0.5 s each): an untrained
#: ResNet-18 on log-mel spectrograms, 7 layers of one part.
NETWORK = ["--network", "torchvision/resnet18_logmel=random"]
NETWORK_LABEL = "resnet18logmelrandom"


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory):
    """One participant of 3 runs (the encoding models need 3), 9 stimuli."""
    from .bids_fixtures import make_small_bids

    return make_small_bids(tmp_path_factory.mktemp("enc") / "bids", n_subjects=1, n_runs=3)


def region_masks(data, folder) -> tuple[list[str], dict[str, np.ndarray]]:
    """Two regions on the grid of ``make_small_bids``: ``centre`` (the planted sphere)
    and ``side`` (a slab of the brain away from it), written as masks into ``folder``;
    their ``--roi`` options and the masks."""
    ijk = np.indices(data.region_mask.shape)
    masks = {
        "centre": data.region_mask,
        "side": data.brain_mask & (ijk[0] <= 2) & (ijk[1] <= 4),
    }
    argv = []
    for name, mask in masks.items():
        path = folder / f"{name}.nii.gz"
        nib.Nifti1Image(mask.astype(np.uint8), data.affine).to_filename(path)
        argv += ["--roi", f"{name}={path}"]
    return argv, masks


@pytest.fixture(scope="module")
def regions(three_runs, tmp_path_factory):
    return region_masks(three_runs, tmp_path_factory.mktemp("enc_rois"))


@pytest.fixture(scope="module")
def encoding_run(tmp_path_factory, three_runs, crosschannel_checkpoint, regions):
    """A participant run with ``--encoding`` (the checkpoint's 3 layers in 3 parts, per-layer
    maps), a standard network (:data:`NETWORK`, its own model of one band) and two
    regions (``--roi``: the per-region table; the brain mask is fitted)."""
    top = tmp_path_factory.mktemp("enc_run")
    out, work = top / "out", top / "work"
    argv = [str(three_runs.root), str(out), "participant", *NETWORK]
    argv += ["--checkpoint", str(crosschannel_checkpoint), *LAYERS, *ENCODING, *regions[0]]
    argv += ["-w", str(work), "--skip-bids-validation", "--no-reports", *SL]
    assert main(argv) == 0
    return out, work


def _func(out):
    return out / "sub-01" / "func"


def test_the_encoding_maps_are_written_with_their_sidecars(encoding_run):
    out, _ = encoding_run
    stem = "sub-01_task-cat_space-native_model-net"
    names = [
        f"{stem}_desc-encoding_stat-r2_statmap.nii.gz",
        f"{stem}_desc-encoding_stat-r_statmap.nii.gz",
        f"{stem}_desc-encodingshared_stat-r2_statmap.nii.gz",
        f"{stem}_desc-encodingceiling_stat-r2_statmap.nii.gz",
        f"{stem}_desc-encodingreliability_stat-r_statmap.nii.gz",
        f"{stem}_desc-encodingfraction_stat-r2_statmap.nii.gz",
    ]
    for band in ("visual", "auditory", "crossmodal"):
        names += [
            f"{stem}_band-{band}_desc-encodingsplit_stat-r2_statmap.nii.gz",
            f"{stem}_band-{band}_desc-encodingunique_stat-r2_statmap.nii.gz",
        ]
    for layer in ("visualconv11", "auditoryconv1", "crossmodaldense"):
        names += [
            f"{stem}_layer-{layer}_desc-encoding_stat-{s}_statmap.nii.gz" for s in ("r2", "r")
        ]
    written = sorted(p.name for p in _func(out).glob(f"{stem}_*encoding*_statmap.nii.gz"))
    assert written == sorted(names)
    for name in names:
        side = json.loads((_func(out) / name.replace(".nii.gz", ".json")).read_text())
        assert side["Bands"] == {
            "visual": ["visual_conv1_1"],
            "auditory": ["auditory_conv1"],
            "crossmodal": ["crossmodal_dense"],
        }
        assert set(side["FeaturesPerBand"]) == set(side["Bands"])
        assert all(len(v) == 9 for v in side["FeaturesPerBand"].values())  # 3 runs x 3 groups
        assert set(side["AlphasChosen"]) == set(side["Bands"])
        assert side["Folds"]["NumberOfFolds"] == 9
        assert side["Folds"]["Runs"] == ["0", "1", "2"]  # the runs' order in the patterns
        assert len(side["Runs"]) == 3  # their BIDS labels
        assert side["StimulusFolds"] == 3 and side["NComponents"] == 10
        assert side["NoiseCeiling"]["Halves"] == "all"
        assert side["NoiseCeiling"]["MinReliability"] == 0.3
        assert side["Checkpoint"].endswith("net.pt")
    unique = json.loads(
        (_func(out) / f"{stem}_band-visual_desc-encodingunique_stat-r2_statmap.json").read_text()
    )
    assert "never clipped" in unique["NegativeEstimates"]
    record = tomllib.loads((out / "dnnrsa_config.toml").read_text())["analysis"]
    assert record["encoding"] == {"components": 10, "stimulus_folds": 3, "layer_maps": True}
    # the group level and the reports read no encoding map as a searchlight map
    from dnnrsa.bids_app.group import _subject_map

    assert all(_subject_map(_func(out) / n) is None for n in names)
    assert "EncodingMask" not in unique  # the brain mask: the sidecars as before


def test_the_region_table_is_the_mean_of_each_map_in_each_region(encoding_run, regions):
    """Known answer: each written map's finite values averaged over the region's voxels
    of the brain mask, with numpy."""
    import pandas as pd

    out, _ = encoding_run
    stem = "sub-01_task-cat_space-native_model-net"
    path = _func(out) / f"{stem}_desc-encodingroi_stats.tsv"
    table = pd.read_csv(path, sep="\t")
    assert list(table.columns) == ["roi", "quantity", "stat", "band", "layer", "mean", "n_voxels"]
    (mask_file,) = _func(out).glob("*_desc-brain_mask.nii.gz")
    brain = np.asarray(nib.load(mask_file).dataobj).astype(bool)
    maps = sorted(_func(out).glob(f"{stem}_*desc-encoding*_statmap.nii.gz"))
    assert len(table) == 2 * len(maps) == 2 * 18  # every map, both regions
    seen = set()
    for row in table.itertuples(index=False):
        extra = "".join(
            f"{k}-{v}_" for k, v in (("band", row.band), ("layer", row.layer)) if isinstance(v, str)
        )
        name = f"{stem}_{extra}desc-{row.quantity}_stat-{row.stat}_statmap.nii.gz"
        seen.add((row.roi, name))
        values = np.asarray(nib.load(_func(out) / name).dataobj, dtype=np.float64)
        inside = values[regions[1][row.roi] & brain]
        finite = inside[np.isfinite(inside)]
        assert row.n_voxels == finite.size > 0
        np.testing.assert_allclose(row.mean, finite.mean(), rtol=1e-5, atol=1e-7)
    assert seen == {(r, m.name) for r in ("centre", "side") for m in maps}
    side = json.loads(path.with_suffix("").with_suffix(".json").read_text())
    assert side["EncodingMask"] == "brain" and side["Checkpoint"].endswith("net.pt")
    assert list(side["ROIs"]) == ["centre", "side"]
    for name, mask in regions[1].items():
        assert side["ROIs"][name]["NumberOfVoxels"] == int((mask & brain).sum())
        assert side["ROIs"][name]["Mask"].endswith(f"{name}.nii.gz")
    assert set(side["Columns"]) == set(table.columns)


def _core_fit(out, work, label: str, *, one_band: str | None = None):
    """dnnrsa.encoding.fit_encoding called directly on the patterns written, in the mask
    written, and the features of network ``label`` (one band per part, or every layer in
    the band ``one_band``), as the run's settings say; the fit, the mask and the layers."""
    from dnnrsa.encoding import fit_encoding

    (patterns,) = _func(out).glob("*_desc-lsa_stat-effect_statmap.nii.gz")
    side = json.loads(patterns.with_name(patterns.name.replace(".nii.gz", ".json")).read_text())
    (mask_file,) = _func(out).glob("*_desc-brain_mask.nii.gz")
    mask = np.asarray(nib.load(mask_file).dataobj).astype(bool)
    data = np.asarray(nib.load(patterns).dataobj)[mask].T  # (n_rows, n_voxels), run-major
    conditions, n_runs = side["Conditions"], len(side["Runs"])
    (features,) = work.glob(f"**/extract_{label}/features.npz")
    with np.load(features) as f:
        names = [str(n) for n in f["layer_names"]]
        acts = {n: f[f"layer{i:03d}"] for i, n in enumerate(names)}
        parts = {n: one_band or str(p) for n, p in zip(names, f["parts"], strict=True)}
        stimuli = [str(s) for s in f["stimuli"]]
    by_name = {c.rsplit("/", 1)[-1]: i for i, c in enumerate(conditions)}
    rows = [by_name[s] for s in stimuli]  # the features' stimulus order
    pats = data.reshape(n_runs, len(conditions), -1)[:, rows]
    res = fit_encoding(
        acts, parts, pats, n_components=10, stimulus_folds=3, layer_maps=False, device="cpu"
    )
    return res, mask, names


def test_the_joint_r2_equals_the_core_on_the_same_patterns_and_features(encoding_run):
    """Known answer: the patterns written, in the mask written, and the network's features
    given to dnnrsa.encoding.fit_encoding directly."""
    out, work = encoding_run
    res, mask, _ = _core_fit(out, work, "net")
    (r2_file,) = _func(out).glob("*_model-net_desc-encoding_stat-r2_statmap.nii.gz")
    written = np.asarray(nib.load(r2_file).dataobj)
    assert np.isnan(written[~mask]).all()
    assert np.isfinite(res.r2).sum() > 10
    np.testing.assert_allclose(written[mask], res.r2.astype(np.float32), atol=1e-6, equal_nan=True)
    # the variance partition adds up as the core's does
    (shared,) = _func(out).glob("*_model-net_desc-encodingshared_stat-r2_statmap.nii.gz")
    np.testing.assert_allclose(
        np.asarray(nib.load(shared).dataobj)[mask],
        res.shared.astype(np.float32),
        atol=1e-6,
        equal_nan=True,
    )


def test_a_standard_network_gets_its_own_model_of_one_band(encoding_run, three_runs, tmp_path):
    """The network's maps, named with its model label, one band (``network``) of every
    layer it records; its joint R² is the core's on its features in one band, its
    unique variance the joint R² and its shared variance 0 (one band)."""
    import pandas as pd

    out, work = encoding_run
    res, mask, layers = _core_fit(out, work, NETWORK_LABEL, one_band="network")
    assert len(layers) == 7 and res.band_names == ["network"]
    stem = f"sub-01_task-cat_space-native_model-{NETWORK_LABEL}"
    names = [
        f"{stem}_desc-encoding_stat-r2_statmap.nii.gz",
        f"{stem}_desc-encoding_stat-r_statmap.nii.gz",
        f"{stem}_band-network_desc-encodingsplit_stat-r2_statmap.nii.gz",
        f"{stem}_band-network_desc-encodingunique_stat-r2_statmap.nii.gz",
        f"{stem}_desc-encodingshared_stat-r2_statmap.nii.gz",
        f"{stem}_desc-encodingceiling_stat-r2_statmap.nii.gz",
        f"{stem}_desc-encodingreliability_stat-r_statmap.nii.gz",
        f"{stem}_desc-encodingfraction_stat-r2_statmap.nii.gz",
    ]
    from dnnrsa.bidsnames import to_label

    names += [
        f"{stem}_layer-{to_label(layer)}_desc-encoding_stat-{s}_statmap.nii.gz"
        for layer in layers
        for s in ("r2", "r")
    ]
    written = sorted(p.name for p in _func(out).glob(f"{stem}_*encoding*_statmap.nii.gz"))
    assert written == sorted(names)
    for name in names:
        side = json.loads((_func(out) / name.replace(".nii.gz", ".json")).read_text())
        assert side["Bands"] == {"network": layers}
        assert "every layer" in side["BandsFrom"]
        assert side["Network"] == "torchvision/resnet18_logmel" and side["Untrained"]
        assert side["Weights"] == {"Source": "random", "Seed": 0}
        assert "Checkpoint" not in side and len(side["Runs"]) == 3
    # the checkpoint's sidecars say nothing of it (their bands are its parts)
    ckpt = json.loads(
        (
            _func(out) / "sub-01_task-cat_space-native_model-net_desc-encoding_stat-r2_statmap.json"
        ).read_text()
    )
    assert "BandsFrom" not in ckpt and "Network" not in ckpt

    def load(name):
        return np.asarray(nib.load(_func(out) / name).dataobj)[mask]

    joint = load(names[0])
    assert np.isfinite(res.r2).sum() > 10
    np.testing.assert_allclose(joint, res.r2.astype(np.float32), atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(load(names[3]), joint, atol=1e-6, equal_nan=True)  # unique
    shared = load(names[4])
    assert np.all(shared[np.isfinite(joint)] == 0)
    # its region table, one row per region and map
    table = pd.read_csv(_func(out) / f"{stem}_desc-encodingroi_stats.tsv", sep="\t")
    assert len(table) == 2 * len(names)
    assert set(table["band"].dropna()) == {"network"}
    # the group level finds its maps as it finds the checkpoint's
    from dnnrsa.bids_app.group import find_encoding_maps
    from dnnrsa.bids_app.parser import build_parser
    from dnnrsa.bids_app.run import config_from_options

    argv = [str(three_runs.root), str(out), "group", "-w", str(tmp_path)]
    config = config_from_options(build_parser().parse_args(argv))
    found = {(g.model, g.band, g.desc, g.stat) for g in find_encoding_maps(config)}
    assert (NETWORK_LABEL, "network", "encodingunique", "r2") in found
    assert (NETWORK_LABEL, None, "encoding", "r2") in found


def test_a_rerun_with_other_encoding_settings_is_refused(
    encoding_run, three_runs, crosschannel_checkpoint, regions, tmp_path, capsys
):
    out, _ = encoding_run
    before = sorted(p.name for p in _func(out).iterdir())
    for other in (["--encoding-components", "5"], ["--encoding-mask", "rois"]):
        argv = [str(three_runs.root), str(out), "participant", *NETWORK]
        argv += ["--checkpoint", str(crosschannel_checkpoint), *LAYERS, *ENCODING, *regions[0]]
        argv += [*other, "-w", str(tmp_path / "work")]
        argv += ["--skip-bids-validation", "--no-reports", *SL]
        assert main(argv) == 64
        err = capsys.readouterr().err
        assert "--encoding:" in err and "--roi" not in err, err
    # and one without --encoding: the folder's maps would lack theirs
    argv = [str(three_runs.root), str(out), "participant", *NETWORK]
    argv += ["--checkpoint", str(crosschannel_checkpoint), *LAYERS, *regions[0]]
    argv += ["-w", str(tmp_path / "work2"), "--skip-bids-validation", "--no-reports", *SL]
    assert main(argv) == 64
    assert sorted(p.name for p in _func(out).iterdir()) == before


def test_encoding_needs_a_checkpoint_and_three_runs_without_stimulus_folds(
    bids_one_subject, three_runs, crosschannel_checkpoint, tmp_path, capsys
):
    small = bids_one_subject  # 2 runs
    common = ["--skip-bids-validation", "--no-reports", *SL]
    argv = [str(three_runs.root), str(tmp_path / "out1"), "participant", "--encoding"]
    argv += ["--model-rdm", f"cat={small.model_rdm}", "-w", str(tmp_path / "w1"), *common]
    assert main(argv) == 64
    assert "give at least one --checkpoint" in capsys.readouterr().err
    argv = [str(small.root), str(tmp_path / "out2"), "participant", "--encoding"]
    argv += ["--encoding-stimulus-folds", "0", "--checkpoint", str(crosschannel_checkpoint)]
    argv += [*LAYERS, "-w", str(tmp_path / "w2"), *common]
    assert main(argv) == 64
    err = capsys.readouterr().err
    assert "--encoding-stimulus-folds 0 needs at least 3 runs per participant" in err
    assert "sub-01 has 2" in err
    for out in ("out1", "out2"):
        assert not list((tmp_path / out).glob("sub-*/func/*"))


def test_encoding_mask_rois_needs_regions(three_runs, tmp_path, capsys):
    """Refused (64) as the options are read, before any data is looked at."""
    argv = [str(three_runs.root), str(tmp_path / "out"), "participant", *ENCODING]
    argv += ["--encoding-mask", "rois", "--model-rdm", f"cat={three_runs.model_rdm}"]
    argv += ["-w", str(tmp_path / "w"), "--skip-bids-validation", "--no-reports", *SL]
    assert main(argv) == 64
    err = capsys.readouterr().err
    assert "--encoding-mask rois" in err and "--roi" in err
    assert not list((tmp_path / "out").glob("*"))


def test_a_run_without_encoding_writes_no_encoding_file(
    three_runs, crosschannel_checkpoint, tmp_path
):
    out = tmp_path / "out"
    argv = [str(three_runs.root), str(out), "participant"]
    argv += ["--checkpoint", str(crosschannel_checkpoint), *LAYERS]
    argv += ["-w", str(tmp_path / "work"), "--skip-bids-validation", "--no-reports", *SL]
    assert main(argv) == 0
    assert list(_func(out).glob("*_statmap.nii.gz"))
    assert not list(out.rglob("*encoding*"))
    config = tomllib.loads((out / "dnnrsa_config.toml").read_text())
    assert not [key for key in config if key.startswith("encoding")]
    assert "encoding" not in config["analysis"]


def _workflow(data, ckpt, tmp_path, *extra, rois=None):
    from dnnrsa.bids_app.collect import collect_inputs
    from dnnrsa.bids_app.parser import build_parser
    from dnnrsa.bids_app.run import config_from_options
    from dnnrsa.bids_app.workflows import init_participant_wf

    argv = [str(data.root), str(tmp_path / "o"), "participant", "-w", str(tmp_path / "w")]
    argv += ["--checkpoint", str(ckpt), "--skip-bids-validation", *extra]
    config = config_from_options(build_parser().parse_args(argv))
    inputs = collect_inputs(config)["01"]
    return init_participant_wf(config, inputs, stim_conditions=[], rois=rois)


def test_the_encoding_node_is_added_only_with_encoding_and_declares_its_memory(
    three_runs, crosschannel_checkpoint, regions, tmp_path
):
    from dnnrsa.bids_app.resources import encoding_memory_gb

    plain = _workflow(three_runs, crosschannel_checkpoint, tmp_path)
    assert not [n for n in plain.list_node_names() if "encoding" in n]
    assert plain.get_node("inputnode").inputs.copyable_trait_names() == ["bank_file"]
    wf = _workflow(three_runs, crosschannel_checkpoint, tmp_path, "--encoding")
    node = wf.get_node("encoding_net")
    assert node.inputs.stimulus_folds == 6 and node.inputs.n_components == 10
    assert not node.inputs.layer_maps
    # no region, the brain mask: the inputs of the regions are left out of the hash
    from nipype.interfaces.base import isdefined

    hashed = [name for name, _ in node.inputs.get_hashval()[0]]
    assert not {"roi_names", "roi_files", "fit_mask", "band"} & set(hashed)
    assert not isdefined(node.inputs.fit_mask) and not isdefined(node.inputs.roi_files)
    assert wf.get_node("write_encoding_net") is not None
    assert node.mem_gb == pytest.approx(
        encoding_memory_gb(9 * 9 * 9, 9 * 9 * 9, n_runs=3, n_cond=9, n_jobs=node.n_procs)
    )
    # fitted in the regions only: the voxels of the regions (an upper bound of their union)
    argv, masks = regions
    rois = {a.split("=")[0]: a.split("=")[1] for a in argv[1::2]}
    in_rois = _workflow(
        three_runs,
        crosschannel_checkpoint,
        tmp_path,
        "--encoding",
        *argv,
        "--encoding-mask",
        "rois",
        rois=rois,
    ).get_node("encoding_net")
    n_region = sum(int(m.sum()) for m in masks.values())
    assert n_region < 9 * 9 * 9
    assert in_rois.mem_gb == pytest.approx(
        encoding_memory_gb(9 * 9 * 9, n_region, n_runs=3, n_cond=9, n_jobs=in_rois.n_procs)
    )
    assert in_rois.mem_gb < node.mem_gb
    # more voxels, runs, threads or per-layer maps: more memory
    base = dict(n_runs=3, n_cond=72, n_jobs=1)
    small = encoding_memory_gb(100_000, 50_000, **base)
    assert encoding_memory_gb(200_000, 100_000, **base) > small
    assert encoding_memory_gb(100_000, 50_000, **{**base, "n_runs": 6}) > small
    assert encoding_memory_gb(100_000, 50_000, **{**base, "n_jobs": 4}) > small
    assert encoding_memory_gb(100_000, 50_000, **base, layer_maps=True) > small


def test_the_participant_report_has_the_encoding_section(encoding_run, tmp_path):
    """The participant page of the run (its report built here, on a copy of the folder:
    the run has --no-reports): a section per network with the bars of its region table,
    drawn into figures/, and the list of its maps."""
    import re
    import shutil

    from dnnrsa.reports import build_subject_report

    out = tmp_path / "out"
    shutil.copytree(encoding_run[0], out)
    page = build_subject_report(out, "01", task="cat", space="native").read_text()
    match = re.search(r'<section id="encoding"><h2>Encoding models</h2>(.*?)</section>', page, re.S)
    assert match, "no encoding section"
    section = match.group(1)
    for model in ("net", NETWORK_LABEL):
        assert f"<h3>model {model}</h3>" in section
        stem = f"sub-01_task-cat_space-native_model-{model}_desc-encodingroibars"
        assert (out / "figures" / f"{stem}_figure.png").is_file()
        assert f'data-file="figures/{stem}_figure.png"' in section
        for path in _func(out).glob(f"sub-01_task-cat_space-native_model-{model}_*_statmap.nii.gz"):
            if "desc-encoding" in path.name:
                assert f"<code>{path.name}</code>" in section
    assert "bands: network: maxpool, layer1" in section  # the network's one band
    assert "unique:network" in section and "unique:crossmodal" in section  # the numbers
    assert "searchlight" in page.lower()  # the other sections stay


def test_encoding_networks_chooses_the_networks_fitted(
    three_runs, crosschannel_checkpoint, tmp_path, capsys
):
    """``--encoding-networks LABEL``: only the named networks get encoding nodes (and
    their features reach the participant's workflow); a label no network has, or the
    option without ``--encoding``, is refused (64) before anything is written."""
    both = _workflow(three_runs, crosschannel_checkpoint, tmp_path, "--encoding", *NETWORK)
    assert {"encoding_net", f"encoding_{NETWORK_LABEL}"} <= set(both.list_node_names())
    one = _workflow(
        three_runs,
        crosschannel_checkpoint,
        tmp_path,
        "--encoding",
        *NETWORK,
        "--encoding-networks",
        NETWORK_LABEL,
    )
    names = set(one.list_node_names())
    assert f"encoding_{NETWORK_LABEL}" in names and "encoding_net" not in names
    fields = one.get_node("inputnode").inputs.copyable_trait_names()
    assert fields == ["bank_file", f"features_{NETWORK_LABEL}"]
    common = ["--checkpoint", str(crosschannel_checkpoint), *LAYERS, *SL]
    common += ["--skip-bids-validation", "--no-reports", "-w", str(tmp_path / "w")]
    out = tmp_path / "out"
    argv = [str(three_runs.root), str(out), "participant", "--encoding", *common]
    assert main([*argv, "--encoding-networks", "other"]) == 64
    assert "--encoding-networks other: no network of this run has this label" in (
        capsys.readouterr().err
    )
    argv = [str(three_runs.root), str(out), "participant", *common]
    assert main([*argv, "--encoding-networks", "net"]) == 64
    assert "give --encoding too" in capsys.readouterr().err
    assert not list(out.glob("sub-*/func/*"))
