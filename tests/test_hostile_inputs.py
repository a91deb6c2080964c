"""Faulty inputs a user may hand the app, each refused before any computation.

Most cases share one shape (:data:`CASES`): copy a small data set, corrupt one thing,
run the app and check the exit code, that the message names the file or option at
fault and says what is wrong, that it carries none of torch's advice, and that the
output folder holds no derivative (no ``dataset_description.json``, no map or table).
The others: a full disk (73, naming the file being written), accepted near-misses
(an event that starts inside the scan but ends after it), the ``--allow-silent-video``
option end to end, and the GLM's warning about events of duration 0.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from dnnrsa.bids_app.errors import EXIT_CANNOT_WRITE, handle_errors
from dnnrsa.bids_app.run import main

FAST = ["--skip-bids-validation", "--radius-mm", "6", "--min-voxels", "5", "--nprocs", "1"]
N_SCANS, T_R = 70, 2.0  # make_small_bids: 70 volumes of 2 s per run
#: torch's advice, which a dnnrsa message never repeats.
TORCH_ADVICE = (
    "weights_only",
    "Re-running",
    "high likelihood",
    "Check the documentation",
    "add_safe_globals",
    "trust",
    "Please",
)


@pytest.fixture(scope="module")
def small(bids_one_subject):
    """The session's one-participant data set (a test that edits it edits a copy)."""
    return bids_one_subject


@pytest.fixture(scope="module")
def checkpoint(crosschannel_checkpoint):
    """The session's cross-channel checkpoint (a test that edits it edits a copy)."""
    return crosschannel_checkpoint


def _func(root: Path) -> Path:
    return root / "sub-01" / "func"


def _events(root: Path, run: int) -> Path:
    return _func(root) / f"sub-01_task-cat_run-{run}_events.tsv"


def _bold(root: Path, run: int) -> Path:
    return _func(root) / f"sub-01_task-cat_run-{run}_bold.nii.gz"


def _model_rdm(small) -> list[str]:
    return ["--model-rdm", f"category={small.model_rdm}"]


def _edit_payload(checkpoint: Path, path: Path, change) -> Path:
    """A copy of ``checkpoint`` whose payload ``change`` edits in place."""
    import torch

    payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    change(payload)
    torch.save(payload, path)
    return path


def _argv(root: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [str(root), str(tmp_path / "o"), "participant", "-w", str(tmp_path / "w"), *FAST, *extra]


def _derivatives(tmp_path: Path) -> list[Path]:
    """Files in the output folder (hidden lock and probe files aside)."""
    out = tmp_path / "o"
    if not out.exists():
        return []
    return [p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")]


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


# ------------------------------------------------------------------ the cases of one shape
# Each case edits a copy of the data set (``root``) and returns the models' options and the
# phrases its message must hold.


def _onset_at_end_of_scan(small, root, tmp_path, ckpt):
    ev = _events(root, 2)
    table = pd.read_csv(ev, sep="\t")
    table.loc[4, "onset"] = N_SCANS * T_R  # exactly the end of the scan: 140 s
    table.to_csv(ev, sep="\t", index=False)
    trial = table.loc[4, "stim_file"]
    return _model_rdm(small), [ev.name, trial, "onset 140", "140 s", "70 volumes"]


def _onset_in_the_last_volume(small, root, tmp_path, ckpt):
    """The design is sampled at 0, 2, ... 138 s: an event at 139 s has a regressor of zeros."""
    ev = _events(root, 1)
    table = pd.read_csv(ev, sep="\t")
    table.loc[0, "onset"] = (N_SCANS - 1) * T_R + 1.0
    table.to_csv(ev, sep="\t", index=False)
    return _model_rdm(small), [ev.name, table.loc[0, "stim_file"], "onset 139", "138 s"]


def _onset_after_end_of_scan(small, root, tmp_path, ckpt):
    ev = _events(root, 1)
    table = pd.read_csv(ev, sep="\t")
    table.loc[[2, 6], "onset"] = [512.0, 900.5]  # milliseconds mistaken for seconds, say
    table.to_csv(ev, sep="\t", index=False)
    trials = list(table.loc[[2, 6], "stim_file"])
    return _model_rdm(small), [ev.name, *trials, "512", "900.5", "140 s"]


def _video_without_audio(small, root, tmp_path, ckpt):
    from dnnrsa.stimuli import write_clip

    frames = np.full((4, 32, 32, 3), 128, np.uint8)
    write_clip(root / "stimuli" / "stim00.mp4", frames, 25)  # a video stream only
    (root / "stimuli" / "stim00.wav").unlink()
    for run in (1, 2):
        ev = _events(root, run)
        ev.write_text(ev.read_text().replace("stim00.wav", "stim00.mp4"))
    return ["--checkpoint", str(ckpt)], ["stim00.mp4", "no audio track", "--allow-silent-video"]


def _checkpoint_of_unknown_model(small, root, tmp_path, ckpt):
    path = _edit_payload(ckpt, tmp_path / "other.pt", lambda p: p.update(model="nosuchnet"))
    return ["--checkpoint", str(path)], ["--checkpoint", str(path), "'nosuchnet'", "crosschannel"]


def _checkpoint_with_wrong_shape(small, root, tmp_path, ckpt):
    import torch

    def change(payload):
        payload["state_dict"]["visual.conv1_2.0.weight"] = torch.zeros(8, 16, 3, 3)

    path = _edit_payload(ckpt, tmp_path / "shape.pt", change)
    phrases = [
        "--checkpoint",
        str(path),
        "visual.conv1_2.0.weight",
        "(8, 16, 3, 3)",
        "(16, 16, 3, 3)",
    ]
    return ["--checkpoint", str(path)], phrases


def _checkpoint_with_missing_tensor(small, root, tmp_path, ckpt):
    path = _edit_payload(
        ckpt, tmp_path / "missing.pt", lambda p: p["state_dict"].pop("visual.conv1_1.1.bias")
    )
    return ["--checkpoint", str(path)], [str(path), "visual.conv1_1.1.bias", "missing"]


def _checkpoint_with_non_finite_weights(small, root, tmp_path, ckpt):
    def change(payload):
        state = payload["state_dict"]
        state["visual.conv1_1.0.weight"][0, 0, 0, 0] = float("nan")
        state["auditory.conv1.1.bias"].fill_(float("inf"))

    path = _edit_payload(ckpt, tmp_path / "nan.pt", change)
    phrases = ["--checkpoint", str(path), "visual.conv1_1.0.weight", "auditory.conv1.1.bias"]
    return ["--checkpoint", str(path)], [*phrases, "NaN or infinite"]


def _truncated_checkpoint(small, root, tmp_path, ckpt):
    path = tmp_path / "truncated.pt"
    raw = ckpt.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return ["--checkpoint", str(path)], ["--checkpoint", str(path), "truncated", "dnnrsa-train"]


class _Payload:
    """Unpickling this would run a shell command (never done: weights_only=True)."""

    marker = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _pickled_object_checkpoint(small, root, tmp_path, ckpt):
    import torch

    payload = _Payload()
    payload.marker = str(tmp_path / "EXECUTED")
    path = tmp_path / "pickle.pt"
    torch.save({"format": "dnnrsa-checkpoint", "state_dict": payload}, path)
    return ["--checkpoint", str(path)], ["--checkpoint", str(path), "posix.system", "dnnrsa-train"]


def _crossnobis_with_one_run(small, root, tmp_path, ckpt):
    _bold(root, 2).unlink()
    _events(root, 2).unlink()
    return [*_model_rdm(small), "--metric", "crossnobis"], [
        "sub-01",
        "--metric crossnobis",
        "1 run",
        "at least 2",
    ]


def _repetition_times_differ(small, root, tmp_path, ckpt):
    bold = _bold(root, 2)
    img = nib.load(bold)
    img.header["pixdim"][4] = 2.5  # header and sidecar agree: 2.5 s
    nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine, img.header).to_filename(bold)
    sidecar = bold.with_name(bold.name.replace(".nii.gz", ".json"))
    sidecar.write_text('{"RepetitionTime": 2.5}')
    return _model_rdm(small), [_bold(root, 1).name, bold.name, "2.5 s", "2 s"]


def _sidecar_contradicts_header(small, root, tmp_path, ckpt):
    bold = _bold(root, 1)
    sidecar = bold.with_name(bold.name.replace(".nii.gz", ".json"))
    sidecar.write_text('{"RepetitionTime": 1.5}')  # the header says 2 s
    return _model_rdm(small), [bold.name, "RepetitionTime 1.5", "pixdim[4]", "2 s"]


CASES = [
    pytest.param(_onset_at_end_of_scan, 16, id="onset-at-end-of-scan"),
    pytest.param(_onset_after_end_of_scan, 16, id="onsets-after-end-of-scan"),
    pytest.param(_onset_in_the_last_volume, 16, id="onset-in-last-volume"),
    pytest.param(_video_without_audio, 66, id="video-without-audio"),
    pytest.param(_checkpoint_of_unknown_model, 64, id="checkpoint-unknown-model"),
    pytest.param(_checkpoint_with_wrong_shape, 64, id="checkpoint-wrong-shape"),
    pytest.param(_checkpoint_with_missing_tensor, 64, id="checkpoint-missing-tensor"),
    pytest.param(_checkpoint_with_non_finite_weights, 64, id="checkpoint-non-finite"),
    pytest.param(_truncated_checkpoint, 64, id="checkpoint-truncated"),
    pytest.param(_pickled_object_checkpoint, 64, id="checkpoint-pickled-object"),
    pytest.param(_crossnobis_with_one_run, 64, id="crossnobis-one-run"),
    pytest.param(_repetition_times_differ, 16, id="repetition-times-differ"),
    pytest.param(_sidecar_contradicts_header, 16, id="sidecar-contradicts-header"),
]


@pytest.mark.parametrize(("corrupt", "code"), CASES)
def test_fault_is_refused_up_front(small, checkpoint, tmp_path, capsys, corrupt, code):
    root = tmp_path / "bids"
    shutil.copytree(small.root, root)
    models, phrases = corrupt(small, root, tmp_path, checkpoint)
    rc = main(_argv(root, tmp_path, *models))
    err = capsys.readouterr().err
    message = _last_line(err)
    assert rc == code, err[-3000:]
    missing = [p for p in phrases if p not in message]
    assert not missing, f"{missing} not in {message!r}"
    assert not [a for a in TORCH_ADVICE if a in err], err[-3000:]
    assert not (tmp_path / "o" / "dataset_description.json").exists()
    assert _derivatives(tmp_path) == []
    assert not (tmp_path / "EXECUTED").exists()


# ------------------------------------------------------------------ accepted near-misses
class _Passed(Exception):
    """Raised right after the up-front checks, so nothing is computed."""


@pytest.fixture
def stop_after_checks(monkeypatch):
    """Runs of the app end right after the up-front checks (exit 1 with 'checks passed')."""
    import dnnrsa.bids_app.participant as participant

    real = participant.preflight

    def checked(*args, **kwargs):
        real(*args, **kwargs)
        raise _Passed("checks passed")

    monkeypatch.setattr(participant, "preflight", checked)


def test_event_starting_inside_the_scan_and_ending_after_it_is_accepted(
    small, tmp_path, capsys, stop_after_checks
):
    root = tmp_path / "bids"
    shutil.copytree(small.root, root)
    ev = _events(root, 2)
    table = pd.read_csv(ev, sep="\t")
    # starts 3 volumes before the last, ends 12 s after the scan
    table.loc[len(table) - 1, ["onset", "duration"]] = [(N_SCANS - 4) * T_R, 20.0]
    table.to_csv(ev, sep="\t", index=False)
    rc = main(_argv(root, tmp_path, *_model_rdm(small)))
    assert rc == 1 and "checks passed" in _last_line(capsys.readouterr().err)


def test_header_time_unit_unknown_leaves_the_sidecar_alone(
    small, tmp_path, capsys, stop_after_checks
):
    """pixdim[4] in a header without a time unit means nothing: the sidecar's TR holds."""
    root = tmp_path / "bids"
    shutil.copytree(small.root, root)
    bold = _bold(root, 1)
    img = nib.load(bold)
    header = img.header.copy()
    header.set_xyzt_units("mm", "unknown")
    header["pixdim"][4] = 1.0
    nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine, header).to_filename(bold)
    rc = main(_argv(root, tmp_path, *_model_rdm(small)))
    assert rc == 1 and "checks passed" in _last_line(capsys.readouterr().err)


# ------------------------------------------------------------------ silent videos, on purpose
def test_allow_silent_video_lets_the_run_through_and_reaches_the_network(
    small, checkpoint, tmp_path, capsys, stop_after_checks
):
    from dnnrsa.bids_app.parser import build_parser
    from dnnrsa.bids_app.run import config_from_options
    from dnnrsa.bids_app.workflows import init_dnn_wf
    from dnnrsa.interfaces.dnn import ExtractFeatures

    root = tmp_path / "bids"
    shutil.copytree(small.root, root)
    _video_without_audio(small, root, tmp_path, checkpoint)
    argv = _argv(root, tmp_path, "--checkpoint", str(checkpoint), "--allow-silent-video")
    rc = main(argv)
    assert rc == 1 and "checks passed" in _last_line(capsys.readouterr().err)
    # the option reaches the network's node ...
    config = config_from_options(build_parser().parse_args(argv))
    assert config.allow_silent_video
    stim = [str(root / "stimuli" / "stim00.mp4"), str(root / "stimuli" / "stim01.wav")]
    table = tmp_path / "stimuli.tsv"
    pd.DataFrame({"stim_file": ["stim00.mp4", "stim01.wav"]}).to_csv(table, sep="\t", index=False)
    wf = init_dnn_wf(
        config,
        stim_paths=stim,
        stim_labels=["stim00.mp4", "stim01.wav"],
        stim_conditions=["stim00.mp4", "stim01.wav"],
        conditions=["stim00.mp4", "stim01.wav"],
        stimulus_table=str(table),
        task="cat",
    )
    node = wf.get_node(f"extract_{checkpoint.stem}")
    assert node.inputs.missing == "blank"
    # ... which reads the silent video as silence
    (tmp_path / "node").mkdir()
    result = ExtractFeatures(
        stim_files=stim,
        checkpoint=str(checkpoint),
        layers=["auditory_conv1"],
        device="cpu",
        missing="blank",
        n_jobs=1,
    ).run(cwd=str(tmp_path / "node"))
    with np.load(result.outputs.features_file) as data:
        assert data["layer000"].shape[0] == 2 and np.all(np.isfinite(data["layer000"]))


# ------------------------------------------------------------------ a full disk
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_full_disk_while_writing_an_output_exits_73_naming_the_file(
    small, tmp_path, capsys, monkeypatch
):
    """Every output's bytes go to /dev/full, which answers ENOSPC like a full disk."""
    import dnnrsa._io

    real = dnnrsa._io._mkstemp

    def full_disk(path):
        fd, tmp = real(path)
        os.close(fd)
        return os.open("/dev/full", os.O_WRONLY), tmp

    monkeypatch.setattr(dnnrsa._io, "_mkstemp", full_disk)
    rc = main(_argv(small.root, tmp_path, *_model_rdm(small)))
    err = capsys.readouterr().err
    message = _last_line(err)
    assert rc == 73, err[-3000:]
    assert "no space left on the device" in message
    assert str(tmp_path / "o") in message  # the file being written, in the output folder
    written = message.split("cannot write ")[1].split(":")[0]
    assert written.startswith(str(tmp_path / "o")) and not Path(written).exists()
    assert not (tmp_path / "o" / "dataset_description.json").exists()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_disk_full_or_quota_exceeded_exits_73_naming_the_file(code, capsys):
    with handle_errors("dnnrsa") as outcome:
        raise OSError(code, os.strerror(code), "/data/out/sub-01/func/map.nii.gz")
    assert outcome.exit_code == EXIT_CANNOT_WRITE
    message = capsys.readouterr().err
    assert "/data/out/sub-01/func/map.nii.gz" in message and os.strerror(code) in message


def _failing_step(filename):
    def fill_the_disk(filename):
        import errno
        import os

        if filename:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    from nipype.interfaces.utility import Function
    from nipype.pipeline import engine as pe

    node = pe.Node(
        Function(input_names=["filename"], output_names=["out"], function=fill_the_disk),
        name="write_map",
    )
    node.inputs.filename = filename
    return node


@pytest.mark.parametrize("filename", ["/data/out/sub-01/func/map.nii.gz", ""])
def test_step_failing_for_a_full_disk_exits_73(tmp_path, filename):
    from nipype.pipeline import engine as pe

    from dnnrsa.bids_app.config import RunConfig
    from dnnrsa.bids_app.errors import CannotWrite
    from dnnrsa.bids_app.execution import run_workflow

    wf = pe.Workflow(name="full_disk_wf", base_dir=str(tmp_path / "w"))
    wf.add_nodes([_failing_step(filename)])
    config = RunConfig(
        bids_dir=tmp_path / "bids",
        output_dir=tmp_path / "o",
        analysis_level="participant",
        work_dir=tmp_path / "w",
        plugin="Linear",
    )
    with pytest.raises(CannotWrite) as err:
        run_workflow(wf, config)
    message = str(err.value)
    assert err.value.exit_code == EXIT_CANNOT_WRITE
    assert "write_map" in message and "no space left on the device" in message
    assert (filename or "crash report") in message


# ------------------------------------------------------------------ events of duration 0
@pytest.fixture
def logged():
    """Records of the ``dnnrsa`` loggers (whatever an earlier app run did to propagation)."""
    records: list[logging.LogRecord] = []

    class _Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = _Keep(level=logging.DEBUG)
    log = logging.getLogger("dnnrsa")
    before = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    yield records
    log.removeHandler(handler)
    log.setLevel(before)


@pytest.mark.parametrize("method", ["lsa", "lss"])
def test_events_of_duration_zero_are_named_by_their_conditions(logged, method):
    from dnnrsa.glm import estimate_patterns

    rng = np.random.default_rng(0)
    shape, n_scans = (4, 4, 4), 40
    img = nib.Nifti1Image((100 + rng.normal(size=(*shape, n_scans))).astype(np.float32), np.eye(4))
    mask = nib.Nifti1Image(np.ones(shape, np.uint8), np.eye(4))
    names = ["face.mp4", "voice.wav", "both.mp4"]
    events = pd.DataFrame(
        {"onset": 6.0 + 12.0 * np.arange(6), "duration": 0.0, "stim_file": names * 2}
    )
    events.loc[[0, 3], "duration"] = 2.0  # face.mp4 lasts 2 s; the others are instants
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        estimate_patterns([img], [events], t_r=2.0, mask_img=mask, method=method)
    texts = [str(w.message) for w in caught] + [r.getMessage() for r in logged]
    assert not [t for t in texts if "cond0" in t or "lsstarget" in t or "lssothers" in t], texts
    ours = [t for t in texts if "duration 0" in t]
    assert ours and "'voice.wav'" in ours[0] and "'both.mp4'" in ours[0]
    assert "face.mp4" not in ours[0]


def test_checkpoint_of_another_model_than_asked_is_refused(checkpoint):
    from dnnrsa.models import check_checkpoint

    assert check_checkpoint(checkpoint)["model"] == "crosschannel"
    with pytest.raises(ValueError, match=r"holds model 'crosschannel', not 'othernet'.*--model"):
        check_checkpoint(checkpoint, model="othernet")
