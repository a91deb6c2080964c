"""The output folder's contract (bids_app.outputs): one analysis per folder, never mixed
or stale, a group level that checks what it combines, and concurrent participant runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib

import pytest

from dnnrsa.bids_app.run import main

SL = ["--min-voxels", "5", "--nprocs", "1", "--skip-bids-validation", "--no-reports"]


@pytest.fixture(scope="module")
def small(bids_two_subjects):
    """The session's two-participant data set (a test that edits it edits a copy)."""
    return bids_two_subjects


@pytest.fixture(scope="module")
def checkpoint(crosschannel_checkpoint):
    """The session's cross-channel checkpoint (a test that edits it edits a copy)."""
    return crosschannel_checkpoint


def _argv(small, out, *extra, work=None):
    argv = [str(small.root), str(out), "participant", "--model-rdm", f"category={small.model_rdm}"]
    if work is not None:
        argv += ["-w", str(work)]
    return [*argv, *SL, *extra]


def _files(folder):
    """Every file under ``folder`` with its bytes (the lock file aside)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".dnnrsa.lock"
    }


def _config(out):
    return tomllib.loads((out / "dnnrsa_config.toml").read_text())


@pytest.fixture(scope="module")
def first_subject(small, tmp_path_factory):
    """sub-01 alone, radius 6 mm, correlation distance, Spearman."""
    out = tmp_path_factory.mktemp("first") / "out"
    rc = main(_argv(small, out, "--participant-label", "01", "--radius-mm", "6"))
    assert rc == 0
    return out


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--radius-mm", "10"], "--radius-mm: 6.0 in the folder, 10.0 in this run"),
        (["--radius-mm", "6", "--metric", "euclidean"], "--metric: correlation in the folder"),
        (["--radius-mm", "6", "--comparator", "pearson"], "--comparator: spearman in the folder"),
        (["--radius-mm", "6", "--glm", "lss"], "--glm: lsa in the folder"),
    ],
)
def test_a_second_subject_with_other_options_is_refused(
    small, first_subject, tmp_path, capsys, options, named
):
    """Another participant with options that change a map's meaning: exit 64 before
    anything is written, naming the option and both values and saying how to proceed."""
    out = tmp_path / "out"
    import shutil

    shutil.copytree(first_subject, out)
    before = _files(out)
    rc = main(_argv(small, out, "--participant-label", "02", *options, work=tmp_path / "w"))
    assert rc == 64
    err = capsys.readouterr().err
    assert named in err
    assert "never mixed in one folder" in err and "sub-01" in err
    assert _files(out) == before  # nothing written, nothing removed


def test_rerun_with_another_model_rdm_and_comparator_leaves_no_stale_map(
    small, first_subject, tmp_path, capsys
):
    """The rerun that used to leave the first run's Spearman maps beside the new Pearson
    ones is refused: the folder keeps one consistent analysis."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(first_subject, out)
    before = _files(out)
    other = tmp_path / "other_rdm.tsv"
    import numpy as np
    import pandas as pd

    labels = pd.read_csv(small.model_rdm, sep="\t", index_col=0).index
    order = np.arange(len(labels), dtype=float)
    distance = np.abs(order[:, None] - order[None, :])  # stimulus order: another model
    pd.DataFrame(distance, index=labels, columns=labels).to_csv(other, sep="\t")
    argv = [str(small.root), str(out), "participant", "--model-rdm", f"other={other}"]
    argv += [*SL, "--participant-label", "01", "--radius-mm", "6", "--comparator", "pearson"]
    assert main(argv) == 64
    err = capsys.readouterr().err
    assert "--model-rdm" in err and "--comparator" in err
    assert _files(out) == before
    maps = sorted(p.name for p in (out / "sub-01" / "func").glob("*_statmap.nii.gz"))
    assert not [m for m in maps if "pearson" in m or "model-other" in m]


def test_same_options_add_a_subject_and_the_group_combines_them(small, first_subject, tmp_path):
    """sub-02 with the folder's options joins it; the configuration lists both, the
    group level writes its own configuration and takes the analysis options from the
    record (a group --comparator that differs is ignored with a warning)."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(first_subject, out)
    shared = out / "task-cat_model-category_rdm.tsv"
    rdm_before = shared.read_bytes()
    assert main(_argv(small, out, "--participant-label", "02", "--radius-mm", "6")) == 0
    assert shared.read_bytes() == rdm_before
    config = _config(out)
    assert config["participants"] == ["01", "02"]
    assert config["analysis"]["radius_mm"] == 6.0
    assert config["analysis"]["model_rdms"]["category"].startswith(small.model_rdm.name)
    argv = [str(small.root), str(out), "group", "--n-permutations", "50", "--no-reports"]
    argv += ["--seed", "7"]  # the group's own draws follow the group run's seed
    assert main([*argv, "--comparator", "pearson", "--skip-bids-validation"]) == 0
    group = tomllib.loads((out / "dnnrsa_group_config.toml").read_text())
    assert group["analysis_level"] == "group"
    assert group["participants"] == ["01", "02"]
    assert group["comparator"] == "spearman"  # the maps' comparator, not the command line's
    assert group["seed"] == 7 and _config(out)["seed"] == 0
    assert _config(out)["analysis_level"] == "participant"
    # the group report shows both configurations
    from dnnrsa.reports.discovery import open_context
    from dnnrsa.reports.render import FigureStore
    from dnnrsa.reports.sections import config_section

    (space,) = {p.name.split("_space-")[1].split("_")[0] for p in out.glob("sub-*/func/*.nii.gz")}
    ctx = open_context(out, "cat", space, None, None, FigureStore(out, True))
    html = config_section(ctx, group=True)
    assert "dnnrsa_group_config.toml" in html and "[analysis]" in html
    assert "analysis_level = &quot;group&quot;" in html or 'analysis_level = "group"' in html


def test_group_refuses_maps_made_with_different_options(small, first_subject, tmp_path, capsys):
    """Maps whose sidecars disagree (an older folder, files copied in by hand) are never
    combined: exit 64 naming the map, the field and both subjects."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(first_subject, out)
    func1, func2 = out / "sub-01" / "func", out / "sub-02" / "func"
    func2.mkdir(parents=True)
    for path in func1.glob("*_model-category_stat-spearman_statmap.*"):
        target = func2 / path.name.replace("sub-01", "sub-02")
        if path.suffix == ".json":
            side = json.loads(path.read_text())
            side["RadiusMm"] = 18.0
            target.write_text(json.dumps(side))
        else:
            shutil.copy(path, target)
    argv = [str(small.root), str(out), "group", "--n-permutations", "50", "--no-reports"]
    assert main([*argv, "--skip-bids-validation"]) == 64
    err = capsys.readouterr().err
    assert "RadiusMm is 6.0 and 18.0 for sub-01 and sub-02" in err
    assert not list(out.glob("task-*_stat-t_statmap.nii.gz"))


def test_a_folder_of_results_without_a_record_is_refused(small, first_subject, tmp_path, capsys):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(first_subject, out)
    text = (out / "dnnrsa_config.toml").read_text()
    (out / "dnnrsa_config.toml").write_text(text.split("[analysis]")[0])
    assert main(_argv(small, out, "--participant-label", "02", "--radius-mm", "6")) == 64
    assert "no record of the options" in capsys.readouterr().err


def test_a_busy_work_folder_is_refused_with_a_clear_message(small, tmp_path, capsys):
    """Two runs of the same participants in one work folder at once: the second is refused."""
    from dnnrsa.bids_app.outputs import LOCK_FILE, hold_work_dir

    work = tmp_path / "w"
    with hold_work_dir(work / "participant_01"):
        rc = main(_argv(small, tmp_path / "out", "--participant-label", "01", work=work))
    assert rc == 64
    err = capsys.readouterr().err
    assert "is using the work folder" in err and f"process {os.getpid()}" in err
    assert (work / "participant_01" / LOCK_FILE).is_file()
    assert not (tmp_path / "out" / "dataset_description.json").exists()


@pytest.mark.slow
def test_two_subjects_at_once_into_one_folder(small, checkpoint, tmp_path):
    """A SLURM array's pattern: two participant runs started together into one output
    folder with the default work directory and a network, both succeed, and the
    folder equals the one written by a single run of both participants."""
    out = tmp_path / "together" / "out"
    extra = ["--checkpoint", str(checkpoint), "--layers", "visual_conv1_1", "auditory_conv1"]
    extra += ["--radius-mm", "6"]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "dnnrsa.bids_app.run", *_argv(small, out, *extra)]
            + ["--participant-label", s],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        for s in ("01", "02")
    ]
    outputs = [p.communicate(timeout=900)[0].decode() for p in procs]
    for p, text in zip(procs, outputs, strict=True):
        assert p.returncode == 0, text
    assert _config(out)["participants"] == ["01", "02"]
    alone = tmp_path / "alone" / "out"
    assert main(_argv(small, alone, *extra)) == 0
    ours, theirs = _files(out), _files(alone)
    skip = ("dnnrsa_config.toml",)
    assert sorted(ours) == sorted(theirs)
    assert {k: v for k, v in ours.items() if k not in skip and not k.startswith("logs")} == {
        k: v for k, v in theirs.items() if k not in skip and not k.startswith("logs")
    }
