"""Inputs checked before any computation, and nothing silently lost.

- the brain mask: voxels with a non-finite sample are excluded and counted, a mask that
  loses a large part of the brain warns, the mask used is written as a derivative;
- model RDMs: degenerate or mislabelled tables are refused up front (exit 64);
- the preflight over every selected file: a truncated BOLD file or a non-numeric onset
  (16), an unwritable folder inside the output (73), an impossible radius (64);
- checkpoint errors end with dnnrsa's own message.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from dnnrsa.bids_app.run import main

from .bids_fixtures import make_small_bids
from .conftest import participant_argv


@pytest.fixture(scope="module")
def small(bids_one_subject):
    """The session's one-participant data set (a test that edits it edits a copy)."""
    return bids_one_subject


def _copy(small, tmp_path):
    root = tmp_path / "bids"
    shutil.copytree(small.root, root)
    return root


def _participant(small, root, tmp_path, *extra, model=None):
    model_rdm = f"category={model or small.model_rdm}"
    return main(participant_argv(root, tmp_path, "--model-rdm", model_rdm, *extra))


def _nothing_computed(tmp_path) -> bool:
    """The workflow was never started (the refusal came from the up-front checks)."""
    return not (tmp_path / "w" / "participant_all" / "dnnrsa_participant_wf").exists()


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


def _warnings(records) -> list[str]:
    return [r.getMessage() for r in records if r.levelno == logging.WARNING]


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


# ---------------------------------------------------------------- (3) the brain mask
SHAPE = (12, 12, 12)
N_SCANS = 40


def _bold(seed=0, shape=SHAPE, n_scans=N_SCANS):
    """A ball of brain (1000 + noise) in a field of low noise, 3 mm voxels."""
    rng = np.random.default_rng(seed)
    ijk = np.indices(shape).reshape(3, -1).T
    centre = (np.array(shape) - 1) / 2
    brain = (np.linalg.norm(ijk - centre, axis=1) <= 6.0).reshape(shape)
    data = np.abs(20.0 * rng.normal(size=(*shape, n_scans)))
    data[brain] = 1000.0 + 10.0 * rng.normal(size=(int(brain.sum()), n_scans))
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    return data, brain, affine


def test_zeroed_slices_warn_and_are_counted(logged):
    from dnnrsa.glm import brain_mask

    data, brain, affine = _bold()
    data[:, :, 5:7, :] = 0.0  # two slices through the middle: two pieces of brain
    img = nib.Nifti1Image(data.astype(np.float32), affine)
    info = brain_mask([img], names=["sub-01_task-x_run-1_bold.nii.gz"])
    kept = np.asarray(info.img.dataobj) > 0
    assert info.n_nonfinite == 0
    assert info.n_voxels == int(kept.sum()) < info.n_candidates
    assert not (kept[:, :, :5].any() and kept[:, :, 7:].any())  # one half is kept ...
    assert info.n_pruned > 0.4 * info.n_candidates  # ... the other, as large, is counted
    assert info.lost_fraction > 0.2
    warned = _warnings(logged)
    assert warned and "sub-01_task-x_run-1_bold.nii.gz" in warned[-1]
    assert "%" in warned[-1]


def test_nan_slab_is_excluded_counted_and_warns(logged):
    from dnnrsa.glm import brain_mask

    data, brain, affine = _bold()
    data[:, :, 5:7, 10:20] = np.nan  # two slices lost in ten volumes
    img = nib.Nifti1Image(data.astype(np.float32), affine)
    info = brain_mask([img], names=["run-1"])
    kept = np.asarray(info.img.dataobj) > 0
    slab = np.zeros(SHAPE, dtype=bool)
    slab[:, :, 5:7] = True
    assert not np.any(kept & slab)
    assert 0.5 * (brain & slab).sum() < info.n_nonfinite <= (brain & slab).sum()
    assert info.nonfinite_per_run == [int(slab.sum())]
    assert info.lost_fraction > 0.2 and info.n_pruned > 0
    assert any("run-1" in m and "%" in m for m in _warnings(logged))


def _glm_inputs(data, affine, seed=0):
    rng = np.random.default_rng(seed)
    labels = [f"s{k}" for k in range(4)]
    order = rng.permutation(np.repeat(labels, 2))
    events = pd.DataFrame({"onset": 4.0 + 9.0 * np.arange(order.size), "duration": 2.0})
    events["stim_file"] = order
    return nib.Nifti1Image(data.astype(np.float32), affine), events


def test_single_nan_sample_excludes_its_voxel_and_no_value_uses_it():
    from dnnrsa.glm import estimate_patterns

    data, brain, affine = _bold(n_scans=90)
    victim = (6, 6, 6)
    assert brain[victim]
    clean_img, events = _glm_inputs(data, affine)
    data[(*victim, 17)] = np.nan
    nan_img, _ = _glm_inputs(data, affine)
    res = estimate_patterns(nan_img, events, t_r=2.0, noise_model="ols")
    mask = np.asarray(res.mask_img.dataobj) > 0
    assert not mask[victim]
    assert res.mask_info.n_nonfinite == 1
    assert np.all(np.isfinite(res.patterns))
    # every value equals the clean data's over the same mask: nothing came from a filled NaN
    ref = estimate_patterns(clean_img, events, t_r=2.0, noise_model="ols", mask_img=res.mask_img)
    np.testing.assert_array_equal(res.patterns, ref.patterns)


def test_given_mask_excludes_and_counts_non_finite_voxels():
    from dnnrsa.glm import brain_mask

    data, brain, affine = _bold()
    data[(6, 6, 6, 3)] = np.inf
    data[(5, 6, 6)] = np.nan  # every sample
    img = nib.Nifti1Image(data.astype(np.float32), affine)
    given = nib.Nifti1Image(brain.astype(np.uint8), affine)
    info = brain_mask([img], mask_img=given)
    kept = np.asarray(info.img.dataobj) > 0
    assert info.n_nonfinite == 2 and info.n_voxels == int(brain.sum()) - 2
    assert not kept[6, 6, 6] and not kept[5, 6, 6]
    assert info.sidecar()["NonFiniteVoxelsExcluded"] == 2


def test_app_writes_the_mask_and_warns_on_a_halved_brain(tmp_path, capsys):
    big = make_small_bids(tmp_path / "bids", n_subjects=1, shape=(14, 14, 14))
    for bold in sorted(big.root.rglob("*_bold.nii.gz")):
        img = nib.load(bold)
        data = np.asarray(img.dataobj).copy()
        data[:, :, 6:8, :] = 0.0  # two slices through the middle: the brain falls in two
        nib.Nifti1Image(data, img.affine, img.header).to_filename(bold)
    rc = _participant(big, big.root, tmp_path)
    assert rc == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "WARNING" in line and "mask" in line]
    assert any("run-1_bold" in line for line in warnings), err[-3000:]
    out = tmp_path / "o" / "sub-01" / "func"
    mask = out / "sub-01_task-cat_space-native_desc-brain_mask.nii.gz"
    side = json.loads(mask.with_name(mask.name.replace(".nii.gz", ".json")).read_text())
    n_mask = int(np.count_nonzero(np.asarray(nib.load(mask).dataobj)))
    assert side["MaskVoxels"] == n_mask
    assert side["NonFiniteVoxelsExcluded"] == 0
    assert side["CandidateVoxels"] > n_mask
    assert side["LostFraction"] > 0.2
    stat = out / "sub-01_task-cat_space-native_model-category_stat-spearman_statmap.nii.gz"
    values = np.asarray(nib.load(stat).dataobj)
    assert not np.any(np.isfinite(values) & (np.asarray(nib.load(mask).dataobj) == 0))


# ---------------------------------------------------------------- (4) model RDMs
def _rdm_file(path: Path, values, labels) -> Path:
    table = pd.DataFrame(values, index=labels, columns=labels)
    table.index.name = "condition"
    table.to_csv(path, sep="\t", na_rep="n/a")
    return path


def _good(small):
    cats = small.categories
    return (cats[:, None] != cats[None, :]).astype(float), list(small.stim_files)


def _faults(small):
    """(name, values, labels, words the message must hold) of each degenerate model RDM."""
    good, labels = _good(small)
    n = len(labels)
    cases = []
    flat = np.ones((n, n)) - np.eye(n)
    cases.append(("equal", flat, labels, ["equal"]))
    nan = np.full((n, n), np.nan)
    np.fill_diagonal(nan, 0.0)
    cases.append(("allnan", nan, labels, ["NaN"]))
    inf = good.astype(float).copy()
    inf[0, 1] = inf[1, 0] = np.inf
    cases.append(("inf", inf, labels, ["infinite"]))
    diag = good.astype(float).copy()
    diag[2, 2] = 0.5
    cases.append(("diagonal", diag, labels, ["diagonal"]))
    cases.append(("unknown", good.astype(float), [*labels[:-1], "nosuch.wav"], ["nosuch.wav"]))
    cases.append(("missing", good.astype(float)[:-1, :-1], labels[:-1], [labels[-1]]))
    asym = good.astype(float).copy()
    asym[0, 4] = 0.25
    cases.append(("asymmetric", asym, labels, ["symmetric"]))
    text = good.astype(object).copy()
    text[1, 3] = text[3, 1] = "far"
    cases.append(("text", text, labels, ["'far'"]))
    return cases


FAULTS = ["equal", "allnan", "inf", "diagonal", "unknown", "missing", "asymmetric", "text"]


@pytest.mark.parametrize("fault", FAULTS)
def test_validate_model_rdm_refuses_degenerate_tables(small, tmp_path, fault):
    from dnnrsa.rdm import validate_model_rdm

    name, values, labels, words = next(c for c in _faults(small) if c[0] == fault)
    path = _rdm_file(tmp_path / f"{name}.tsv", values, labels)
    with pytest.raises(ValueError) as err:
        validate_model_rdm(path, conditions=small.stim_files)
    message = str(err.value)
    assert str(path) in message
    for word in words:
        assert word in message


def test_validate_model_rdm_warns_on_negative_entries(small, tmp_path, logged):
    from dnnrsa.rdm import validate_model_rdm

    good, labels = _good(small)
    values = good.astype(float) - 0.5
    np.fill_diagonal(values, 0.0)
    path = _rdm_file(tmp_path / "negative.tsv", values, labels)
    vector, got = validate_model_rdm(path, conditions=small.stim_files)
    assert got == labels and vector.min() == -0.5
    assert any("negative" in m and str(path) in m for m in _warnings(logged))


def test_validate_model_rdm_leaves_out_extra_labels_with_a_warning(small, tmp_path, logged):
    from dnnrsa.rdm import validate_model_rdm

    good, labels = _good(small)
    n = len(labels)
    values = np.zeros((n + 1, n + 1))
    values[:n, :n] = good
    values[n, :n] = values[:n, n] = 0.7
    path = _rdm_file(tmp_path / "superset.tsv", values, [*labels, "extra.wav"])
    _vector, got = validate_model_rdm(path, conditions=small.stim_files)
    assert got == [*labels, "extra.wav"]
    assert any("extra.wav" in m for m in _warnings(logged))
    # constant over the analysis's conditions: refused even if the extra label varies
    flat = np.ones((n + 1, n + 1)) - np.eye(n + 1)
    flat[n, :n] = flat[:n, n] = 0.2
    path = _rdm_file(tmp_path / "flat.tsv", flat, [*labels, "extra.wav"])
    with pytest.raises(ValueError, match="equal"):
        validate_model_rdm(path, conditions=small.stim_files)


@pytest.mark.parametrize("fault", FAULTS)
def test_app_refuses_degenerate_model_rdm_up_front(small, tmp_path, capsys, fault):
    name, values, labels, words = next(c for c in _faults(small) if c[0] == fault)
    path = _rdm_file(tmp_path / f"{name}.tsv", values, labels)
    rc = _participant(small, small.root, tmp_path, model=path)
    err = capsys.readouterr().err
    assert rc == 64, err[-2000:]
    assert str(path) in err and all(w in err for w in words)
    assert _nothing_computed(tmp_path)


# ---------------------------------------------------------------- (5) preflight
def test_truncated_bold_exits_16_naming_it(small, tmp_path, capsys):
    root = _copy(small, tmp_path)
    bold = root / "sub-01" / "func" / "sub-01_task-cat_run-2_bold.nii.gz"
    raw = bold.read_bytes()
    bold.write_bytes(raw[: len(raw) // 2])
    rc = _participant(small, root, tmp_path)
    err = capsys.readouterr().err
    assert rc == 16, err[-2000:]
    assert "sub-01_task-cat_run-2_bold.nii.gz" in _last_line(err)
    assert _nothing_computed(tmp_path)


def test_non_numeric_onset_exits_16_naming_the_file(small, tmp_path, capsys):
    root = _copy(small, tmp_path)
    ev = root / "sub-01" / "func" / "sub-01_task-cat_run-1_events.tsv"
    table = pd.read_csv(ev, sep="\t", dtype=str)
    table.loc[3, "onset"] = "4,5"
    table.to_csv(ev, sep="\t", index=False)
    rc = _participant(small, root, tmp_path)
    err = capsys.readouterr().err
    assert rc == 16, err[-2000:]
    assert ev.name in err and "onset" in err and "'4,5'" in err
    assert _nothing_computed(tmp_path)


def test_blocked_folder_inside_output_exits_73(small, tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "sub-01").write_text("a file where the participant's folder goes")
    rc = _participant(small, small.root, tmp_path)
    err = capsys.readouterr().err
    assert rc == 73, err[-2000:]
    assert "sub-01" in _last_line(err)
    assert _nothing_computed(tmp_path)


@pytest.mark.skipif(
    not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() == 0,
    reason="permission bits do not stop root",
)
def test_read_only_folder_inside_output_exits_73(small, tmp_path, capsys):
    func = tmp_path / "o" / "sub-01" / "func"
    func.mkdir(parents=True)
    func.chmod(0o555)
    try:
        rc = _participant(small, small.root, tmp_path)
    finally:
        func.chmod(0o755)
    assert rc == 73
    assert str(func) in capsys.readouterr().err


@pytest.mark.parametrize("radius", ["inf", "nan", "0", "-2", "Infinity"])
def test_radius_must_be_finite_and_positive(small, tmp_path, capsys, radius):
    rc = _participant(small, small.root, tmp_path, "--radius-mm", radius)
    assert rc == 64
    assert "--radius-mm" in capsys.readouterr().err
    assert _nothing_computed(tmp_path)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_huge_radius_is_refused_with_size_and_memory(small, tmp_path, capsys):
    rc = _participant(
        small, small.root, tmp_path, "--radius-mm", "500", "--searchlight-memory-mb", "1"
    )
    err = capsys.readouterr().err
    assert rc == 64, err[-2000:]
    line = _last_line(err)
    assert "--radius-mm 500" in line and "voxels" in line and "MB" in line
    assert "--searchlight-memory-mb" in line
    assert _nothing_computed(tmp_path)


def test_searchlight_memory_estimate_on_a_real_sized_grid():
    from dnnrsa.bids_app.preflight import searchlight_memory

    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    size, mb = searchlight_memory(affine, n_centres=70000, radius_mm=500.0, n_runs=8, n_cond=4)
    assert size == 70000 and mb > 1024 * 10  # the whole brain in every sphere: tens of GB
    size, mb = searchlight_memory(affine, n_centres=70000, radius_mm=6.0, n_runs=8, n_cond=4)
    assert size == 33 and mb < 100


# ---------------------------------------------------------------- (6) checkpoints
def _unsafe_checkpoint(path: Path) -> Path:
    import argparse

    import torch

    torch.save({"format": "dnnrsa", "payload": argparse.Namespace(a=1)}, path)
    return path


def test_load_checkpoint_message_ends_with_dnnrsa_text(tmp_path):
    from dnnrsa.models import load_checkpoint

    path = _unsafe_checkpoint(tmp_path / "unsafe.pt")
    with pytest.raises(ValueError) as err:
        load_checkpoint(path)
    last = _last_line(str(err.value))
    assert "Check the documentation of torch.load" not in str(err.value)
    assert str(path) in str(err.value) and "dnnrsa" in last


def test_app_checkpoint_error_last_line_is_dnnrsa(small, tmp_path, capsys):
    path = _unsafe_checkpoint(tmp_path / "unsafe.pt")
    rc = _participant(small, small.root, tmp_path, "--checkpoint", str(path))
    err = capsys.readouterr().err
    assert rc == 64, err[-2000:]
    last = _last_line(err)
    assert "Check the documentation" not in last
    assert "--checkpoint" in last and str(path) in last
    assert _nothing_computed(tmp_path)
