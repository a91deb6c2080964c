"""The BIDS App at participant level: outputs, values, reruns and the exit-code contract."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from dnnrsa.bids_app.run import main

from .conftest import shared_data

SL = ["--radius-mm", "6", "--min-voxels", "5", "--nprocs", "2"]


@pytest.fixture(scope="module")
def small(bids_two_subjects):
    """The session's two-participant data set (a test that edits it edits a copy)."""
    return bids_two_subjects


@pytest.fixture(scope="module")
def participant_run(small, tmp_path_factory):
    base = tmp_path_factory.mktemp("run")
    out, work = base / "out", base / "work"
    argv = [
        str(small.root),
        str(out),
        "participant",
        "-w",
        str(work),
        "--model-rdm",
        f"category={small.model_rdm}",
        *SL,
    ]
    rc = main(argv)
    return rc, out, work, argv


def test_participant_outputs(small, participant_run):
    rc, out, _work, _ = participant_run
    assert rc == 0
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    assert desc["GeneratedBy"][0]["Name"] == "dnnrsa"
    assert "*_statmap.nii.gz" in (out / ".bidsignore").read_text()
    assert 'comparator = "spearman"' in (out / "dnnrsa_config.toml").read_text()
    for s in ("01", "02"):
        func = out / f"sub-{s}" / "func"
        stat = func / f"sub-{s}_task-cat_space-native_model-category_stat-spearman_statmap.nii.gz"
        patterns = func / f"sub-{s}_task-cat_space-native_desc-lsa_stat-effect_statmap.nii.gz"
        assert stat.is_file() and patterns.is_file()
        side = json.loads(stat.with_name(stat.name.replace(".nii.gz", ".json")).read_text())
        assert side["Comparator"] == "spearman" and side["Metric"] == "correlation"
        assert side["RadiusMm"] == 6.0
        assert side["Conditions"] == sorted(small.stim_files)
        assert "dnnrsa" in side["SoftwareVersions"]
        assert nib.load(patterns).shape[3] == 2 * len(small.stim_files)
    rdm_side = json.loads((out / "task-cat_model-category_rdm.json").read_text())
    assert rdm_side["Part"] == "model" and rdm_side["Conditions"] == sorted(small.stim_files)
    # nothing temporary is left behind
    assert not list(out.rglob("*.part"))


def test_output_passes_bids_validator(participant_run):
    from dnnrsa.bids_app.collect import validator_executable

    exe = validator_executable()
    if exe is None:
        pytest.skip("bids-validator-deno is not installed")
    _rc, out, _work, _ = participant_run
    proc = subprocess.run([exe, str(out), "--ignoreWarnings"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_values_equal_core_functions(small, participant_run):
    from dnnrsa.glm import estimate_patterns
    from dnnrsa.rdm import read_rdm_tsv
    from dnnrsa.searchlight import searchlight_rsa

    _rc, out, _work, _ = participant_run
    func = small.root / "sub-01" / "func"
    runs = sorted(func.glob("*_bold.nii.gz"))
    events = [Path(str(r).replace("_bold.nii.gz", "_events.tsv")) for r in runs]
    res = estimate_patterns(
        [str(r) for r in runs], [str(e) for e in events], t_r=2.0, random_state=0
    )
    model, _labels = read_rdm_tsv(small.model_rdm)
    expected = searchlight_rsa(
        res.to_img(),
        res.mask_img,
        model[None],
        radius_mm=6.0,
        min_voxels=5,
        conditions=res.conditions,
        runs=res.runs,
        progress=False,
    )
    got = nib.load(
        out / "sub-01/func/sub-01_task-cat_space-native_model-category_stat-spearman_statmap.nii.gz"
    )
    exp = np.asarray(expected.dataobj)[..., 0]
    np.testing.assert_allclose(np.asarray(got.dataobj), exp, atol=1e-6, equal_nan=True)
    # the planted category geometry is found where it was planted
    inside = exp[small.region_mask & np.isfinite(exp)]
    outside = exp[~small.region_mask & np.isfinite(exp)]
    assert inside.mean() > 0.4
    assert inside.mean() > outside.mean() + 0.3


def test_noise_model_ols_equals_the_core_function(small, tmp_path):
    """``--noise-model ols`` reaches estimate_patterns and is recorded in the sidecar."""
    from dnnrsa.glm import estimate_patterns

    rc = _participant(
        small, small.root, tmp_path, "--participant-label", "01", "--noise-model", "ols", *SL
    )
    assert rc == 0
    func = small.root / "sub-01" / "func"
    runs = sorted(func.glob("*_bold.nii.gz"))
    events = [str(r).replace("_bold.nii.gz", "_events.tsv") for r in runs]
    kwargs = {"t_r": 2.0, "random_state": 0}
    ols = estimate_patterns([str(r) for r in runs], events, noise_model="ols", **kwargs)
    ar1 = estimate_patterns([str(r) for r in runs], events, **kwargs)
    path = (
        tmp_path / "o/sub-01/func/sub-01_task-cat_space-native_desc-lsa_stat-effect_statmap.nii.gz"
    )
    got = np.asarray(nib.load(path).dataobj)
    expected = np.asarray(ols.to_img().dataobj)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    # the two noise models give different patterns, so the equality says which was used
    assert np.abs(np.asarray(ar1.to_img().dataobj) - expected).max() > 1e-3
    side = json.loads(path.with_name(path.name.replace(".nii.gz", ".json")).read_text())
    assert side["NoiseModel"] == "ols" and side["Method"] == "lsa"


def test_unknown_noise_model_exits_64(small, tmp_path, capsys):
    rc = _participant(small, small.root, tmp_path, "--noise-model", "ar2")
    assert rc == 64
    err = capsys.readouterr().err
    assert "--noise-model" in err and "ar2" in err
    assert not (tmp_path / "o" / "sub-01").exists()


def test_nprocs_reaches_the_glm_and_the_searchlight(small, participant_run, tmp_path):
    """--nprocs is the n_jobs of the searchlight and bounds the runs the GLM fits at
    once (no more than the subject's runs, here 2), and their nodes declare it to nipype
    (n_procs), in the built graph and in the nodes the run executed."""
    from nipype.utils.filemanip import loadpkl

    from dnnrsa._cpus import blas_threads
    from dnnrsa.bids_app.collect import collect_inputs
    from dnnrsa.bids_app.execution import plugin_arguments
    from dnnrsa.bids_app.parser import build_parser
    from dnnrsa.bids_app.run import config_from_options
    from dnnrsa.bids_app.workflows import init_participant_wf

    argv = [str(small.root), str(tmp_path / "o"), "participant", "-w", str(tmp_path / "w")]
    argv += ["--model-rdm", f"category={small.model_rdm}", "--skip-bids-validation"]
    config = config_from_options(build_parser().parse_args([*argv, "--nprocs", "5"]))
    wf = init_participant_wf(config, collect_inputs(config)["01"])
    glm, searchlight = wf.get_node("estimate_patterns"), wf.get_node("searchlight")
    # the GLM: the data set's 2 runs at once at most, each with the BLAS threads
    blas = blas_threads() or 1

    def glm_runs(nprocs):
        return max(1, min(nprocs // blas, 2))

    assert glm.inputs.n_jobs == glm_runs(5) and glm.n_procs == min(5, glm_runs(5) * blas)
    assert searchlight.inputs.n_jobs == 5 and searchlight.n_procs == 5
    assert plugin_arguments(config)["n_procs"] == 5
    # the run of the fixture (--nprocs 2) executed its nodes with that value
    _rc, _out, work, _ = participant_run
    for name in ("estimate_patterns", "searchlight"):
        node = loadpkl(work / "participant_all" / "dnnrsa_participant_wf" / "sub_01_wf" / name / "_node.pklz")
        if name == "estimate_patterns":
            assert node.inputs.n_jobs == glm_runs(2), name
            assert node.n_procs == min(2, glm_runs(2) * blas), name
        else:
            assert node.inputs.n_jobs == 2 and node.n_procs == 2, name


def test_nprocs_reaches_the_feature_extraction(small, tmp_path):
    """--nprocs is the n_jobs of every network's ExtractFeatures node (torch's threads
    and the decoding), which declares it to nipype (n_procs); it is not hashed."""
    from dnnrsa.bids_app.parser import build_parser
    from dnnrsa.bids_app.run import config_from_options
    from dnnrsa.bids_app.workflows import init_dnn_wf
    from dnnrsa.models import build_model, get_model, save_checkpoint

    spec = get_model("crosschannel")
    ckpts = [
        save_checkpoint(
            tmp_path / f"{regime}.pt", build_model(spec, 3, seed=seed), spec, regime=regime
        )
        for seed, regime in ((1, "emotion"), (2, "identity"))
    ]
    argv = [str(small.root), str(tmp_path / "o"), "participant", "-w", str(tmp_path / "w")]
    argv += ["--checkpoint", *map(str, ckpts), "--skip-bids-validation", "--nprocs", "5"]
    config = config_from_options(build_parser().parse_args(argv))
    stim = [str(small.root / "stimuli" / f) for f in small.stim_files]
    table = tmp_path / "stimuli.tsv"
    pd.DataFrame({"stim_file": small.stim_files}).to_csv(table, sep="\t", index=False)
    wf = init_dnn_wf(
        config,
        stim_paths=stim,
        stim_labels=list(small.stim_files),
        stim_conditions=list(small.stim_files),
        conditions=list(small.stim_files),
        stimulus_table=str(table),
        task="cat",
    )
    for regime in ("emotion", "identity"):
        node = wf.get_node(f"extract_{regime}")
        assert node.inputs.n_jobs == 5 and node.n_procs == 5, regime
        hashed, _ = node.inputs.get_hashval()
        assert "n_jobs" not in dict(hashed), regime


def test_rerun_recomputes_nothing(small, participant_run):
    rc, out, work, argv = participant_run
    node_dirs = [
        work / "participant_all" / "dnnrsa_participant_wf" / "sub_01_wf" / "estimate_patterns",
        work / "participant_all" / "dnnrsa_participant_wf" / "sub_01_wf" / "searchlight",
    ]
    stamps = {p: (p / f"result_{p.name}.pklz").stat().st_mtime_ns for p in node_dirs}
    assert main(argv) == 0
    for p, stamp in stamps.items():
        assert (p / f"result_{p.name}.pklz").stat().st_mtime_ns == stamp, f"{p.name} was recomputed"


# ----------------------------------------------------------------- exit codes
def _copy(small, tmp_path):
    root = tmp_path / "bids"
    shutil.copytree(small.root, root)
    return root


def _participant(small, root, tmp_path, *extra):
    """Participant level on ``root`` with the category model, no validation."""
    argv = [
        str(root),
        str(tmp_path / "o"),
        "participant",
        "--model-rdm",
        f"category={small.model_rdm}",
    ]
    return main([*argv, "--skip-bids-validation", "-w", str(tmp_path / "w"), *extra])


def test_output_inside_bids_is_refused(small, tmp_path):
    before = sorted(p.name for p in small.root.iterdir())
    rc = main(
        [
            str(small.root),
            str(small.root / "derivatives" / "dnnrsa"),
            "participant",
            "--model-rdm",
            f"category={small.model_rdm}",
        ]
    )
    assert rc == 64
    assert sorted(p.name for p in small.root.iterdir()) == before  # nothing written into bids_dir


def test_unknown_level_and_usage(small, tmp_path):
    assert main([str(small.root), str(tmp_path / "o"), "subject"]) == 17
    assert main([str(small.root), str(tmp_path / "o"), "participant", "--radius-mm", "-3"]) == 64
    assert main(["--version"]) == 0
    # nothing to compare
    assert (
        main([str(small.root), str(tmp_path / "o"), "participant", "--skip-bids-validation"]) == 64
    )


def test_unknown_participant_exits_18(small, tmp_path, capsys):
    rc = _participant(small, small.root, tmp_path, "--participant-label", "sub-99")
    assert rc == 18
    err = capsys.readouterr().err
    assert "99" in err and "available" in err


def test_unknown_model_and_layer_exit_64(small, tmp_path, capsys):
    ckpt = tmp_path / "fake.pt"
    ckpt.write_bytes(b"x")
    rc = main(
        [
            str(small.root),
            str(tmp_path / "o"),
            "participant",
            "--checkpoint",
            str(ckpt),
            "--model",
            "nosuchnet",
            "--skip-bids-validation",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 64 and "crosschannel" in err
    capsys.readouterr()
    rc = main(
        [
            str(small.root),
            str(tmp_path / "o"),
            "participant",
            "--checkpoint",
            str(ckpt),
            "--layers",
            "conv99",
            "--skip-bids-validation",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 64 and "conv99" in err and "valid layers" in err


def test_missing_events_exits_66(small, tmp_path, capsys):
    root = _copy(small, tmp_path)
    victim = root / "sub-01" / "func" / "sub-01_task-cat_run-2_events.tsv"
    victim.unlink()
    rc = _participant(small, root, tmp_path)
    assert rc == 66
    err = capsys.readouterr().err
    assert "run-2_bold" in err and "events" in err


def test_missing_stim_file_exits_66(small, tmp_path, capsys):
    """A stimulus a network reads (--checkpoint) is missing; with --model-rdm alone the
    stimuli are not read (tests/test_collect_faults.py)."""
    from dnnrsa.models import build_model, get_model, save_checkpoint

    root = _copy(small, tmp_path)
    (root / "stimuli" / small.stim_files[4]).unlink()
    spec = get_model("crosschannel")
    ckpt = save_checkpoint(tmp_path / "net.pt", build_model(spec, 3, seed=1), spec, labels="abc")
    rc = _participant(small, root, tmp_path, "--checkpoint", str(ckpt))
    assert rc == 66
    err = capsys.readouterr().err
    assert small.stim_files[4] in err


def test_stim_file_escaping_stimuli_is_rejected(small, tmp_path, capsys):
    root = _copy(small, tmp_path)
    ev = root / "sub-01" / "func" / "sub-01_task-cat_run-1_events.tsv"
    table = pd.read_csv(ev, sep="\t")
    table.loc[0, "stim_file"] = "../participants.tsv"
    table.to_csv(ev, sep="\t", index=False)
    rc = _participant(small, root, tmp_path)
    assert rc == 16
    err = capsys.readouterr().err
    assert "../participants.tsv" in err


def test_stimuli_differ_between_runs_exits_16(small, tmp_path, capsys):
    root = _copy(small, tmp_path)
    ev = root / "sub-02" / "func" / "sub-02_task-cat_run-2_events.tsv"
    table = pd.read_csv(ev, sep="\t")
    table = table[table["stim_file"] != small.stim_files[0]]
    table.to_csv(ev, sep="\t", index=False)
    rc = _participant(small, root, tmp_path)
    assert rc == 16
    err = capsys.readouterr().err
    assert "differ between runs" in err


def test_3d_bold_and_missing_tr_exit_16(small, tmp_path, capsys):
    root = _copy(small, tmp_path)
    bold = root / "sub-01" / "func" / "sub-01_task-cat_run-1_bold.nii.gz"
    img = nib.load(bold)
    nib.Nifti1Image(np.asarray(img.dataobj)[..., 0], img.affine).to_filename(bold)
    assert _participant(small, root, tmp_path) == 16
    err = capsys.readouterr().err
    assert "4D" in err and "run-1_bold" in err
    capsys.readouterr()
    root2 = tmp_path / "bids2"
    shutil.copytree(small.root, root2)
    (root2 / "task-cat_bold.json").write_text(json.dumps({"TaskName": "cat"}))
    for bold in root2.rglob("*_bold.nii.gz"):
        img = nib.load(bold)
        img.header["pixdim"][4] = 0.0
        nib.Nifti1Image(np.asarray(img.dataobj), img.affine, img.header).to_filename(bold)
    assert _participant(small, root2, tmp_path / "second") == 16
    err = capsys.readouterr().err
    assert "repetition time is missing" in err


def test_empty_mask_exits_16(small, tmp_path, capsys):
    root = _copy(small, tmp_path)
    deriv = tmp_path / "prep"
    (deriv).mkdir()
    (deriv / "dataset_description.json").write_text(
        json.dumps(
            {
                "Name": "prep",
                "BIDSVersion": "1.10.0",
                "DatasetType": "derivative",
                "GeneratedBy": [{"Name": "test"}],
            }
        )
    )
    for bold in root.rglob("*_bold.nii.gz"):
        rel = bold.relative_to(root)
        target = (
            deriv
            / rel.parent
            / bold.name.replace("_bold", "_space-MNI152NLin2009cAsym_desc-preproc_bold")
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(bold, target)
        img = nib.load(bold)
        mask = nib.Nifti1Image(np.zeros(img.shape[:3], dtype=np.uint8), img.affine)
        mask.to_filename(str(target).replace("desc-preproc_bold", "desc-brain_mask"))
    rc = _participant(small, root, tmp_path, "-d", str(deriv), "--confounds", "none")
    assert rc == 16
    err = capsys.readouterr().err
    assert "mask" in err and "empty" in err


def test_unwritable_output_exits_73(small, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    rc = main(
        [
            str(small.root),
            str(blocker / "out"),
            "participant",
            "--model-rdm",
            f"category={small.model_rdm}",
            "--skip-bids-validation",
        ]
    )
    assert rc == 73


# ----------------------------------------------------------------- real data
def _haxby_to_bids(root: Path, deriv: Path) -> None:
    """Haxby 2001 subject 1 as raw BIDS plus a preprocessed-derivatives layout (mask, motion)."""
    src = shared_data("haxby2001", "sub001")
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "haxby", "BIDSVersion": "1.10.0"})
    )
    (root / "task-objects_bold.json").write_text(
        json.dumps({"TaskName": "objects", "RepetitionTime": 2.5})
    )
    (deriv / "sub-1" / "func").mkdir(parents=True)
    (deriv / "dataset_description.json").write_text(
        json.dumps(
            {
                "Name": "prep",
                "BIDSVersion": "1.10.0",
                "DatasetType": "derivative",
                "GeneratedBy": [{"Name": "test"}],
            }
        )
    )
    func = root / "sub-1" / "func"
    func.mkdir(parents=True)
    motion = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
    for run_dir in sorted((src / "BOLD").glob("task001_run*")):
        stem = f"sub-1_task-objects_run-{int(run_dir.name[-3:]):02d}"
        shutil.copy(run_dir / "bold_25mm.nii.gz", func / f"{stem}_bold.nii.gz")
        shutil.copy(run_dir / "bold_events.tsv", func / f"{stem}_events.tsv")
        prep = deriv / "sub-1" / "func"
        shutil.copy(
            run_dir / "bold_25mm.nii.gz", prep / f"{stem}_space-haxby25mm_desc-preproc_bold.nii.gz"
        )
        shutil.copy(
            src / "masks" / "25mm" / "brain.nii.gz",
            prep / f"{stem}_space-haxby25mm_desc-brain_mask.nii.gz",
        )
        moest = np.loadtxt(run_dir / "bold_moest.txt")
        pd.DataFrame(moest, columns=motion).to_csv(
            prep / f"{stem}_desc-confounds_timeseries.tsv", sep="\t", index=False
        )


def test_haxby_participant_with_category_model(tmp_path):
    from dnnrsa.rdm import compute_rdm, vector_to_squareform, write_rdm_tsv

    root, deriv = tmp_path / "haxby", tmp_path / "prep"
    _haxby_to_bids(root, deriv)
    cats = ["bottle", "cat", "chair", "face", "house", "scissors", "scrambledpix", "shoe"]
    # a user model RDM that predicts only the face/house distinction
    iu, ju = np.triu_indices(len(cats), 1)
    model = np.array(
        [float({cats[i], cats[j]} == {"face", "house"}) for i, j in zip(iu, ju, strict=True)]
    )
    write_rdm_tsv(tmp_path / "facehouse.tsv", model, cats)
    out = tmp_path / "out"
    rc = main(
        [
            str(root),
            str(out),
            "participant",
            "-d",
            str(deriv),
            "--space",
            "haxby25mm",
            "--conditions-from",
            "trial_type",
            "--metric",
            "crossnobis",
            "--confounds",
            "motion6",
            "--glm-output",
            "t",
            "--comparator",
            "pearson",
            "--model-rdm",
            f"facehouse={tmp_path / 'facehouse.tsv'}",
            "--radius-mm",
            "25",
            "--min-voxels",
            "3",
            "-w",
            str(tmp_path / "w"),
            "--nprocs",
            "2",
            "--no-reports",
        ]
    )
    assert rc == 0
    func = out / "sub-1" / "func"
    img = nib.load(
        func / "sub-1_task-objects_space-haxby25mm_model-facehouse_stat-pearson_statmap.nii.gz"
    )
    data = np.asarray(img.dataobj)
    mask = (
        np.asarray(
            nib.load(
                deriv
                / "sub-1/func/sub-1_task-objects_run-01_space-haxby25mm_desc-brain_mask.nii.gz"
            ).dataobj
        )
        > 0
    )
    assert np.isfinite(data[mask]).all() and not np.isfinite(data[~mask]).any()
    assert np.nanmax(data) > 0.5  # somewhere, faces and houses are far apart relative to the rest
    # the (noise-normalised) pattern maps written for the subject carry the face/house
    # distinction: its crossnobis distance is positive and above the median pair
    pat_file = func / "sub-1_task-objects_space-haxby25mm_desc-lsa_stat-t_statmap.nii.gz"
    side = json.loads(pat_file.with_name(pat_file.name.replace(".nii.gz", ".json")).read_text())
    assert side["Conditions"] == cats and len(side["Runs"]) == 12
    patterns = np.asarray(nib.load(pat_file).dataobj)[mask].T  # (12 * 8, n_voxels), run-major
    conds = np.tile(cats, 12)
    runs = np.repeat(np.arange(12), 8)
    square = vector_to_squareform(compute_rdm(patterns, "crossnobis", conditions=conds, runs=runs))
    face_house = square[cats.index("face"), cats.index("house")]
    assert face_house > 0
    assert face_house > np.median(square[iu, ju])


def test_checkpoint_on_a_category_design_without_label_columns(
    tmp_path, bids_one_subject, crosschannel_checkpoint
):
    """A trained network on a design whose events carry no label column (conditions from
    trial_type, nothing coarser): layer maps are written, the category index is skipped
    and the report says why."""
    small, ckpt = bids_one_subject, crosschannel_checkpoint
    out = tmp_path / "out"
    argv = [str(small.root), str(out), "participant", "--checkpoint", str(ckpt)]
    argv += ["--conditions-from", "trial_type", "--layers", "visual_conv1_1", "auditory_conv1"]
    argv += ["-w", str(tmp_path / "work"), "--skip-bids-validation", *SL]
    assert main(argv) == 0
    maps = sorted((out / "sub-01" / "func").glob("*_layer-*_statmap.nii.gz"))
    assert len(maps) == 2
    assert not list(out.glob("*_desc-categoryindex_stats.tsv"))
    assert list(out.glob("*_desc-layersimilarity_matrix.tsv"))
    html = (out / "sub-01.html").read_text()
    assert "the category index, which needs such a labelling, was skipped" in html
    # the brain mask used is written and shown with its voxel count
    (mask,) = (out / "sub-01" / "func").glob("*_desc-brain_mask.nii.gz")
    n_mask = int(np.asarray(nib.load(mask).dataobj).astype(bool).sum())
    assert 'id="brainmask"' in html
    assert f'voxels in the mask</td><td class="text">{n_mask}<' in html


def test_several_checkpoints_write_the_cross_regime_similarity(tmp_path, bids_one_subject):
    """Two networks (regimes emotion and identity): the stacked layer-by-layer similarity
    of both is written at dataset level, and equals the core function on the written
    layer RDMs; its within-network blocks are each network's own layer similarity."""
    from dnnrsa.analysis import cross_regime_similarity
    from dnnrsa.models import build_model, get_model, save_checkpoint
    from dnnrsa.rdm import read_rdm_tsv

    small = bids_one_subject
    spec = get_model("crosschannel")
    ckpts = [
        save_checkpoint(
            tmp_path / f"{regime}.pt",
            build_model(spec, 3, seed=seed),
            spec,
            labels=["a", "b", "c"],
            regime=regime,
        )
        for seed, regime in ((1, "emotion"), (2, "identity"))
    ]
    out = tmp_path / "out"
    argv = [str(small.root), str(out), "participant", "--checkpoint", *map(str, ckpts)]
    argv += ["--layers", "auditory_pool2", "crossmodal_dense"]
    argv += ["-w", str(tmp_path / "work"), "--skip-bids-validation", *SL]
    assert main(argv) == 0
    matrix_file = out / "task-cat_desc-crossregime_matrix.tsv"
    pairs_file = out / "task-cat_desc-crossregime_stats.tsv"
    assert matrix_file.is_file() and pairs_file.is_file()
    rdms, names, conditions = {}, {}, {}
    for regime in ("emotion", "identity"):
        files = sorted(out.glob(f"task-cat_model-{regime}_layer-*_rdm.tsv"))
        sides = [json.loads(f.with_suffix(".json").read_text()) for f in files]
        files = [f for _, f in sorted(zip([s["LayerIndex"] for s in sides], files, strict=True))]
        read = [read_rdm_tsv(f) for f in files]
        rdms[regime] = np.array([vec for vec, _ in read])
        names[regime] = [f.name.split("_layer-")[1].split("_")[0] for f in files]
        conditions[regime] = read[0][1]
    assert [len(n) for n in names.values()] == [2, 2]
    direct = cross_regime_similarity(rdms, layer_names=names, conditions=conditions)
    matrix = pd.read_csv(matrix_file, sep="\t", index_col=0)
    labels = [f"{r}.{n}" for r, n in zip(direct.row_regimes, direct.row_layers, strict=True)]
    assert matrix.index.tolist() == labels and matrix.columns.tolist() == labels
    assert np.isfinite(direct.matrix).all()
    np.testing.assert_allclose(matrix.to_numpy(), direct.matrix, rtol=0, atol=5e-7)
    for regime in ("emotion", "identity"):
        own = pd.read_csv(
            out / f"task-cat_model-{regime}_desc-layersimilarity_matrix.tsv", sep="\t"
        )
        own = own.set_index("layer")
        assert [f"{regime}.{n}" for n in own.index] == labels[direct.rows(regime)]
        block = matrix.to_numpy()[direct.rows(regime), direct.rows(regime)]
        np.testing.assert_allclose(block, own.to_numpy(), rtol=0, atol=1e-6)
    pairs = pd.read_csv(pairs_file, sep="\t")
    assert len(pairs) == 4
    assert set(pairs["regime_a"]) == {"emotion"} and set(pairs["regime_b"]) == {"identity"}
    np.testing.assert_allclose(
        pairs["similarity"], direct.block("emotion", "identity").ravel(), rtol=0, atol=5e-7
    )
    for path in (matrix_file, pairs_file):
        side = json.loads(path.with_suffix(".json").read_text())
        assert side["Regimes"] == ["emotion", "identity"]
        assert side["LayerCounts"] == {"emotion": 2, "identity": 2}
        assert side["Comparator"] == "spearman"
        assert side["Conditions"] == conditions["emotion"]
        assert side["Checkpoints"] == {"emotion": str(ckpts[0]), "identity": str(ckpts[1])}
    # the events carry no emotion or identity column: no arm lesion, with a note
    assert not list(out.glob("*_desc-armlesion_stats.tsv"))
    # the extraction nodes the app ran carry --nprocs 2
    from nipype.utils.filemanip import loadpkl

    for regime in ("emotion", "identity"):
        wf_dir = tmp_path / "work" / "participant_all" / "dnnrsa_participant_wf" / "dnn_wf"
        node = loadpkl(wf_dir / f"extract_{regime}" / "_node.pklz")
        assert node.inputs.n_jobs == 2 and node.n_procs == 2, regime


def test_checkpoints_sharing_a_regime_exit_64(tmp_path, capsys, bids_one_subject):
    from dnnrsa.models import build_model, get_model, save_checkpoint

    small = bids_one_subject
    spec = get_model("crosschannel")
    ckpts = [
        save_checkpoint(
            tmp_path / f"net{seed}.pt", build_model(spec, 3, seed=seed), spec, regime="emotion"
        )
        for seed in (1, 2)
    ]
    out = tmp_path / "out"
    argv = [str(small.root), str(out), "participant", "--checkpoint", *map(str, ckpts)]
    argv += ["-w", str(tmp_path / "work"), "--skip-bids-validation", *SL]
    assert main(argv) == 64
    assert "every network needs its own label" in capsys.readouterr().err
