"""Input collection never mixes variants of one run, never guesses among them, and asks
for stimulus files only when a network needs them.

Each case builds a small data set (fMRIPrep-style derivatives where needed), then
stops at input collection: ``collect_inputs`` directly, or the app's exit code for a
refusal, which comes before any computation.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from dnnrsa.bids_app.collect import collect_inputs
from dnnrsa.bids_app.config import RunConfig
from dnnrsa.bids_app.errors import DatasetInvalid, InputMissing, NothingSelected, UsageError
from dnnrsa.bids_app.run import main

from .bids_fixtures import make_small_bids

MNI = "MNI152NLin2009cAsym"
RES1 = {"space": MNI, "res": "1"}
RES2 = {"space": MNI, "res": "2"}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return make_small_bids(
        tmp_path_factory.mktemp("faults") / "bids", n_subjects=1, n_runs=2, shape=(7, 7, 7)
    )


def _derivatives(small, deriv: Path, variants) -> Path:
    """fMRIPrep-style outputs of every raw run: for each entity set in ``variants`` a
    ``desc-preproc_bold``, its ``desc-brain_mask`` (res-1 on a finer grid than res-2),
    and one ``desc-confounds_timeseries.tsv`` per run."""
    deriv.mkdir(parents=True, exist_ok=True)
    (deriv / "dataset_description.json").write_text(
        json.dumps(
            {
                "Name": "fmriprep",
                "BIDSVersion": "1.10.0",
                "DatasetType": "derivative",
                "GeneratedBy": [{"Name": "fMRIPrep"}],
            }
        )
    )
    for bold in sorted(small.root.rglob("*_bold.nii.gz")):
        func = deriv / bold.relative_to(small.root).parent
        func.mkdir(parents=True, exist_ok=True)
        stem = bold.name[: -len("_bold.nii.gz")]
        img = nib.load(bold)
        data = np.asarray(img.dataobj)
        for ents in variants:
            tag = "".join(f"_{k}-{v}" for k, v in ents.items())
            affine = img.affine.copy()
            if ents.get("res") == "1":  # a finer grid than res-2: two voxels per voxel
                affine[:3, :3] /= 2
                vol = np.repeat(np.repeat(np.repeat(data, 2, 0), 2, 1), 2, 2)
            else:
                vol = data
            out = nib.Nifti1Image(vol, affine)
            out.header.set_xyzt_units("mm", "sec")
            out.header["pixdim"][4] = 2.0
            out.to_filename(func / f"{stem}{tag}_desc-preproc_bold.nii.gz")
            mask = (vol.std(axis=-1) > 0).astype(np.uint8)
            nib.Nifti1Image(mask, affine).to_filename(func / f"{stem}{tag}_desc-brain_mask.nii.gz")
        confounds = pd.DataFrame(
            np.zeros((data.shape[-1], 6)),
            columns=["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"],
        )
        confounds.to_csv(func / f"{stem}_desc-confounds_timeseries.tsv", sep="\t", index=False)
    return deriv


def _config(small, tmp_path, *, root=None, derivatives=(), **kwargs) -> RunConfig:
    return RunConfig(
        bids_dir=(root or small.root).resolve(),
        output_dir=tmp_path / "out",
        analysis_level="participant",
        work_dir=tmp_path / "work",
        derivatives=tuple(Path(d).resolve() for d in derivatives),
        model_rdms=(("category", small.model_rdm),),
        **kwargs,
    )


def _app(small, tmp_path, *extra, root=None) -> int:
    """The participant level with the category model, up to its first refusal."""
    argv = [str(root or small.root), str(tmp_path / "out"), "participant"]
    argv += ["--model-rdm", f"category={small.model_rdm}", "--skip-bids-validation"]
    return main([*argv, "-w", str(tmp_path / "work"), *extra])


def _filter_file(tmp_path, filters: dict) -> str:
    path = tmp_path / "filters.json"
    path.write_text(json.dumps(filters))
    return str(path)


# ------------------------------------------------ 1: several variants of one run
@pytest.mark.parametrize(
    ("variants", "expected"),
    [
        pytest.param([RES1, RES2], ["res-1", "res-2"], id="two-resolutions"),
        pytest.param([{"space": MNI}, RES2], ["res-2", "no res"], id="native-and-res-2"),
        pytest.param(
            [{**RES2, "den": "91k"}, {**RES2, "den": "170k"}], ["den-91k", "den-170k"], id="den"
        ),
    ],
)
def test_variants_of_one_run_are_refused_listing_them(small, tmp_path, variants, expected):
    deriv = _derivatives(small, tmp_path / "prep", variants)
    with pytest.raises(UsageError) as info:
        collect_inputs(_config(small, tmp_path, derivatives=[deriv]))
    message = str(info.value)
    assert info.value.exit_code == 64
    for variant in expected:
        assert variant in message
    assert "run-1" in message and "--bids-filter-file" in message
    assert "--space" in message


def test_variants_of_one_run_exit_64_before_any_computation(small, tmp_path, capsys):
    deriv = _derivatives(small, tmp_path / "prep", [RES1, RES2])
    assert _app(small, tmp_path, "-d", str(deriv)) == 64
    err = capsys.readouterr().err
    assert "res-1" in err and "res-2" in err and '{"bold": {"res": "2"}}' in err
    assert not list((tmp_path / "work").rglob("dnnrsa_participant_wf"))


@pytest.mark.parametrize(
    ("variants", "choice", "tag"),
    [
        pytest.param([RES1, RES2], {"bold": {"res": "2"}}, "_res-2", id="filter-res-2"),
        pytest.param([RES1, RES2], {"bold": {"res": "1"}}, "_res-1", id="filter-res-1"),
        pytest.param([RES1, RES2], {"bold": {"res": 2}}, "_res-2", id="filter-res-int"),
        pytest.param([RES1, RES2], f"{MNI}:res-2", "_res-2", id="space-res-2"),
        pytest.param([RES1, RES2], f"{MNI}:res-1", "_res-1", id="space-res-1"),
        pytest.param([{"space": MNI}, RES2], {"bold": {"res": None}}, "", id="filter-no-res"),
        pytest.param(
            [{"space": MNI}, RES2],
            {"bold": {"res": "2"}},
            "_res-2",
            id="filter-res-2-of-native",
        ),
    ],
)
def test_chosen_variant_takes_bold_mask_and_confounds_of_that_variant(
    small, tmp_path, variants, choice, tag
):
    deriv = _derivatives(small, tmp_path / "prep", variants)
    how = {"space": choice} if isinstance(choice, str) else {"bids_filters": choice}
    inputs = collect_inputs(_config(small, tmp_path, derivatives=[deriv], **how))["01"]
    assert inputs.space == MNI
    assert [r.run for r in inputs.runs] == ["run-1", "run-2"]
    for run in inputs.runs:
        stem = f"sub-01_task-cat_{run.run}_space-{MNI}{tag}"
        assert run.bold.name == f"{stem}_desc-preproc_bold.nii.gz"
        assert run.mask.name == f"{stem}_desc-brain_mask.nii.gz"
        assert run.confounds.name == f"sub-01_task-cat_{run.run}_desc-confounds_timeseries.tsv"
        # one grid: nothing needs resampling
        bold, mask = nib.load(run.bold), nib.load(run.mask)
        assert bold.shape[:3] == mask.shape and np.allclose(bold.affine, mask.affine)
    assert inputs.mask == inputs.runs[0].mask


def test_one_run_in_two_derivatives_folders_is_refused(small, tmp_path):
    first = _derivatives(small, tmp_path / "prep1", [RES2])
    second = _derivatives(small, tmp_path / "prep2", [RES2])
    with pytest.raises(UsageError) as info:
        collect_inputs(_config(small, tmp_path, derivatives=[first, second]))
    assert "prep1" in str(info.value) and "prep2" in str(info.value)


def test_runs_in_different_resolutions_are_refused(small, tmp_path):
    deriv = _derivatives(small, tmp_path / "prep", [RES1, RES2])
    for stray in (*deriv.rglob("*_run-1_*_res-2_*"), *deriv.rglob("*_run-2_*_res-1_*")):
        stray.unlink()
    with pytest.raises(UsageError) as info:
        collect_inputs(_config(small, tmp_path, derivatives=[deriv]))
    assert f"{MNI}:res-1" in str(info.value) and f"{MNI}:res-2" in str(info.value)


def test_resolution_without_derivatives_is_refused(small, tmp_path):
    with pytest.raises(UsageError, match="-d"):
        collect_inputs(_config(small, tmp_path, space=f"{MNI}:res-2"))


def test_space_and_filter_that_disagree_are_refused(small, tmp_path):
    deriv = _derivatives(small, tmp_path / "prep", [RES1, RES2])
    config = _config(
        small,
        tmp_path,
        derivatives=[deriv],
        space=f"{MNI}:res-2",
        bids_filters={"bold": {"res": "1"}},
    )
    with pytest.raises(UsageError, match="--space .*res-2.* --bids-filter-file"):
        collect_inputs(config)


def test_chosen_variant_from_the_command_line_passes_collection(small, tmp_path, monkeypatch):
    """``--space SPACE:res-2`` and a filter file reach collection unchanged; the run
    stops right after it."""
    from dnnrsa.bids_app import participant

    seen = {}

    def collect_then_stop(config):
        seen.update(collect_inputs(config))
        raise UsageError("stopped after collection")

    monkeypatch.setattr(participant, "collect_inputs", collect_then_stop)
    deriv = _derivatives(small, tmp_path / "prep", [RES1, RES2])
    for extra in (
        ["--space", f"{MNI}:res-2"],
        ["--bids-filter-file", _filter_file(tmp_path, {"bold": {"res": "2"}})],
    ):
        seen.clear()
        assert _app(small, tmp_path, "-d", str(deriv), "--confounds", "none", *extra) == 64
        runs = seen["01"].runs
        assert [r.bold.name for r in runs] == [
            f"sub-01_task-cat_run-{i}_space-{MNI}_res-2_desc-preproc_bold.nii.gz" for i in (1, 2)
        ]
        assert all("_res-2_desc-brain_mask" in r.mask.name for r in runs)


@pytest.mark.parametrize("value", [f"{MNI}:res", f"{MNI}:foo-2", f"{MNI}:res-2:res-1", ":res-2"])
def test_malformed_space_exits_64_naming_it(small, tmp_path, capsys, value):
    deriv = _derivatives(small, tmp_path / "prep", [RES2])
    assert _app(small, tmp_path, "-d", str(deriv), "--space", value) == 64
    err = capsys.readouterr().err
    assert "--space" in err and value in err


# ------------------------------------------------ 2: a --space or filter that selects nothing
@pytest.mark.parametrize(
    "choice",
    [
        pytest.param({"space": "T1w"}, id="space-T1w"),
        pytest.param({"space": f"{MNI}:res-3"}, id="space-res-3"),
        pytest.param({"bids_filters": {"bold": {"res": "3"}}}, id="filter-res-3"),
    ],
)
def test_nothing_selected_lists_the_spaces_found(small, tmp_path, choice):
    deriv = _derivatives(small, tmp_path / "prep", [RES1, RES2])
    with pytest.raises(NothingSelected) as info:
        collect_inputs(_config(small, tmp_path, derivatives=[deriv], **choice))
    message = str(info.value)
    assert info.value.exit_code == 18
    assert f"{MNI}:res-1" in message and f"{MNI}:res-2" in message


def test_unknown_space_exits_18_listing_the_spaces(small, tmp_path, capsys):
    deriv = _derivatives(small, tmp_path / "prep", [{"space": MNI}, {"space": "T1w"}])
    assert _app(small, tmp_path, "-d", str(deriv), "--space", "MNI152NLin6Asym") == 18
    err = capsys.readouterr().err
    assert "MNI152NLin6Asym" in err and MNI in err and "T1w" in err


# ------------------------------------------------ 3: stimulus files only for a network
def _with_stim_file(small, tmp_path, value: str | None = None, *, delete: bool = True) -> Path:
    """A copy of the data set whose first stimulus is missing (``delete``), or whose
    first events row names ``value``."""
    root = tmp_path / "bids"
    shutil.copytree(small.root, root)
    if delete:
        (root / "stimuli" / small.stim_files[0]).unlink()
    if value is not None:
        for events in root.rglob("*_events.tsv"):
            table = pd.read_csv(events, sep="\t")
            table.loc[table["stim_file"] == small.stim_files[1], "stim_file"] = value
            table.to_csv(events, sep="\t", index=False)
    return root


def test_model_rdm_alone_does_not_need_the_stimulus_files(small, tmp_path):
    from dnnrsa.bids_app.participant import prepare_stimuli

    root = _with_stim_file(small, tmp_path)
    config = _config(small, tmp_path, root=root)
    subjects = collect_inputs(config)
    assert small.stim_files[0] in subjects["01"].stim_files
    config.output_dir.mkdir()
    kwargs = prepare_stimuli(config, subjects)
    table = pd.read_csv(kwargs["stimulus_table"], sep="\t")
    assert table["stim_file"].tolist() == sorted(small.stim_files)


@pytest.mark.parametrize(
    ("value", "checkpoint", "error", "code"),
    [
        pytest.param(None, True, InputMissing, 66, id="missing-with-checkpoint"),
        pytest.param("../participants.tsv", False, DatasetInvalid, 16, id="escape-without"),
        pytest.param("../participants.tsv", True, DatasetInvalid, 16, id="escape-with"),
        pytest.param("/etc/passwd", False, DatasetInvalid, 16, id="absolute-without"),
        pytest.param("a/../../x.wav", False, DatasetInvalid, 16, id="dotdot-without"),
    ],
)
def test_stimulus_rule_holds_with_or_without_a_network(
    small, tmp_path, value, checkpoint, error, code
):
    root = _with_stim_file(small, tmp_path, value)
    extra = {"checkpoints": (tmp_path / "net.pt",)} if checkpoint else {}
    with pytest.raises(error) as info:
        collect_inputs(_config(small, tmp_path, root=root, **extra))
    assert info.value.exit_code == code
    assert (value or small.stim_files[0]) in str(info.value)


def test_stimulus_link_leading_outside_is_refused_without_a_network(small, tmp_path):
    root = _with_stim_file(small, tmp_path)
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"RIFF")
    (root / "stimuli" / small.stim_files[0]).symlink_to(secret)
    with pytest.raises(DatasetInvalid, match="outside the data set"):
        collect_inputs(_config(small, tmp_path, root=root))
    # a dangling link inside the data set is accepted: the file is not needed
    (root / "stimuli" / small.stim_files[0]).unlink()
    (root / "stimuli" / small.stim_files[0]).symlink_to("not_there.wav")
    assert collect_inputs(_config(small, tmp_path, root=root))


def test_another_resolution_of_the_folder_s_space_is_refused(small, tmp_path, capsys):
    """Maps are named by space, not resolution: a second run into the folder with the
    other resolution of its space would put maps of one name on two grids. It is
    refused (64) before anything is written, naming both grids."""
    deriv = _derivatives(small, tmp_path / "prep", [RES1, RES2])
    fast = ["-d", str(deriv), "--confounds", "none", "--radius-mm", "6", "--min-voxels", "5"]
    fast += ["--nprocs", "1", "--no-reports"]
    assert _app(small, tmp_path, *fast, "--space", f"{MNI}:res-2") == 0
    out = tmp_path / "out"
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert _app(small, tmp_path, *fast, "--space", f"{MNI}:res-1") == 64
    err = capsys.readouterr().err
    assert f"the grid of space {MNI}: 7x7x7 at 4x4x4 mm in the folder, 14x14x14 at 2x2x2 mm" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
