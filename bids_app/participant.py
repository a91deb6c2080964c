"""The participant level: per-subject searchlight maps, and the data set's model RDMs."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from .._io import atomic_write
from ..bidsnames import build_name
from .collect import collect_inputs, resolve_stim_file, run_validator, stimulus_table
from .config import RunConfig
from .errors import CannotWrite, DatasetInvalid, InputMissing, UsageError
from .execution import run_workflow, write_dataset_description
from .workflows import init_dnnrsa_participant_wf

logger = logging.getLogger("dnnrsa.participant")


def prepare_stimuli(config: RunConfig, subjects) -> dict:
    """Write ``task-<t>_stimuli.tsv`` and return the stimulus arguments of the DNN workflow."""
    first = next(iter(subjects.values()))
    task = first.task
    table = stimulus_table(config.bids_dir, subjects, config.condition_column)
    conditions = list(first.conditions)
    if table is None:
        if config.checkpoints:
            raise InputMissing(
                "--checkpoint needs stimuli: the events files have no 'stim_file' column"
            )
        stim_paths, stim_labels, stim_conditions = [], [], []
    else:
        if config.condition_column == "stim_file":
            table["condition"] = table["stim_file"]
        else:
            table["condition"] = table[config.condition_column].astype(str)
        table = table[table["condition"].isin(conditions)].reset_index(drop=True)
        stim_labels = table["stim_file"].tolist()
        stim_conditions = table["condition"].tolist()
        stim_paths = [
            str(resolve_stim_file(config.bids_dir, s, config.bids_dir / "events.tsv"))
            for s in stim_labels
        ]
    table_path = config.output_dir / build_name({"task": task}, "stimuli", ".tsv")
    if table is not None:
        with atomic_write(table_path) as fh:
            table.to_csv(fh, sep="\t", index=False, na_rep="n/a")
    crop_file, crops = None, {}
    if stim_paths and config.checkpoints:
        crop_file, crops = face_crops(config, task, stim_paths, stim_labels)
    return {
        "crop_file": crop_file,
        "face_crops": crops,
        "stim_paths": stim_paths,
        "stim_labels": stim_labels,
        "stim_conditions": stim_conditions,
        "conditions": conditions,
        "stimulus_table": str(table_path),
        "task": task,
    }


def face_crops(config: RunConfig, task: str, stim_paths, stim_labels) -> tuple[str, dict]:
    """The face crop of every stimulus (``--face-crop``), written as
    ``task-<t>_desc-facecrops_stimuli.tsv``; returns its path and stim_file -> box."""
    from dnnrsa.faces import (
        CropTableError,
        crop_mode,
        resolve_crops,
        table_mode,
        warn_if_mode_differs,
        write_crop_table,
    )
    from dnnrsa.models import load_checkpoint

    infos = [load_checkpoint(c) for c in config.checkpoints]
    try:
        crops = resolve_crops(
            stim_paths,
            config.face_crop,
            names=stim_labels,
            column="stim_file",
            model_frames=sorted({info["recipe"].n_frames for info in infos}),
            cache_dir=config.work_dir / "feature_cache" / "faces",
            n_jobs=config.nprocs,
        )
    except CropTableError as exc:
        raise UsageError(f"--face-crop: {exc}") from exc
    mode = crop_mode(config.face_crop)
    mode = table_mode(crops) if mode == "table" else mode
    for ckpt, info in zip(config.checkpoints, infos, strict=True):
        warn_if_mode_differs((info.get("extra") or {}).get("face_crop"), mode, ckpt.name)
    n_faces = sum(c.source == "detected" for c in crops)
    logger.info("face crops (%s): a face was found in %d of %d stimuli", mode, n_faces, len(crops))
    recipe = infos[0]["recipe"]
    path = write_crop_table(
        config.output_dir / build_name({"task": task, "desc": "facecrops"}, "stimuli", ".tsv"),
        stim_labels,
        crops,
        mode=mode,
        input_frames=recipe.n_frames,
        input_size=recipe.image_size,
    )
    boxes = {s: list(c.box) for s, c in zip(stim_labels, crops, strict=True) if c.box is not None}
    return str(path), boxes


def _sphere_size(affine, radius_mm: float, shape=None) -> int:
    """Voxel centres within ``radius_mm`` of a centre (the sphere's size before masking).

    Counted slice by slice, and within the grid's extent when ``shape`` is given, so a
    huge radius is measured without enumerating its offsets at once.
    """
    import numpy as np

    linear = np.asarray(affine, dtype=np.float64)[:3, :3]
    extent = np.ceil(radius_mm * np.linalg.norm(np.linalg.inv(linear), axis=1) + 1e-9)
    if shape is not None:
        extent = np.minimum(extent, np.asarray(shape[:3]) - 1)
    extent = extent.astype(np.int64)
    dj, dk = np.meshgrid(
        np.arange(-extent[1], extent[1] + 1), np.arange(-extent[2], extent[2] + 1), indexing="ij"
    )
    plane = np.stack([np.zeros_like(dj), dj, dk], axis=-1).reshape(-1, 3).astype(np.float64)
    size = 0
    for di in range(-extent[0], extent[0] + 1):
        plane[:, 0] = di
        size += int(np.count_nonzero(np.linalg.norm(plane @ linear.T, axis=1) <= radius_mm))
    return size


def searchlight_memory(
    affine, n_centres: int, radius_mm: float, n_runs: int, n_cond: int, shape=None
) -> tuple[int, float]:
    """The largest sphere (voxels) and the memory (MB) a searchlight needs at least.

    The searchlight holds the members of every sphere at once (a padded index array,
    ``n_centres`` rows as wide as the largest sphere, built with 8-byte indices) and
    the data of at least one sphere (as :mod:`dnnrsa.searchlight` sizes its blocks).
    """
    size = min(_sphere_size(affine, radius_mm, shape), int(n_centres))
    n_pairs = n_cond * (n_cond - 1) // 2
    one_sphere = 8 * (2 * size * n_runs * n_cond + 2 * n_cond * n_cond + 12 * n_pairs)
    return size, (8 * int(n_centres) * size + one_sphere) / 2**20


def _check_sphere_size(config: RunConfig, subjects) -> None:
    """Refuse a radius whose spheres hold fewer than ``min_voxels`` voxels, or whose
    searchlight would need more than ``--searchlight-memory-mb``."""
    import nibabel as nib
    import numpy as np

    for inputs in subjects.values():
        bold = inputs.runs[0].bold
        img = nib.load(str(bold))
        zooms = [round(float(z), 2) for z in img.header.get_zooms()[:3]]
        largest = _sphere_size(img.affine, config.radius_mm, img.shape)
        if largest < config.min_voxels:
            raise UsageError(
                f"--radius-mm {config.radius_mm:g} holds at most {largest} voxels of {zooms} mm "
                f"on the grid of {bold.name}, fewer than --min-voxels {config.min_voxels}: every "
                "sphere would be empty; increase --radius-mm or lower --min-voxels"
            )
        if inputs.mask is not None:
            n_centres = int(np.count_nonzero(np.asanyarray(nib.load(str(inputs.mask)).dataobj)))
            where = f"the {n_centres} voxels of {inputs.mask.name}"
        else:  # the mask is computed later: bound it by the grid
            n_centres = int(np.prod(img.shape[:3]))
            where = f"up to {n_centres} voxels (the grid of {bold.name})"
        size, mb = searchlight_memory(
            img.affine,
            n_centres,
            config.radius_mm,
            len(inputs.runs),
            len(inputs.conditions),
            img.shape,
        )
        if mb > config.searchlight_memory_mb:
            raise UsageError(
                f"--radius-mm {config.radius_mm:g} makes spheres of up to {size} voxels of "
                f"{zooms} mm; a searchlight over {where} would need about {mb:,.0f} MB, more "
                f"than --searchlight-memory-mb {config.searchlight_memory_mb}: lower "
                "--radius-mm or raise --searchlight-memory-mb"
            )


def _nifti_complete(path) -> None:
    """Read a NIfTI file to its end; raise DatasetInvalid when it is truncated or corrupt."""
    import gzip
    import zlib

    import nibabel as nib
    import numpy as np

    try:
        img = nib.load(str(path))
        header = img.header
        expected = int(header.get_data_offset()) + int(
            np.prod(img.shape) * header.get_data_dtype().itemsize
        )
        if str(path).endswith(".gz"):
            size = 0
            with gzip.open(path, "rb") as fh:
                while chunk := fh.read(1 << 22):
                    size += len(chunk)
        else:
            size = path.stat().st_size
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise DatasetInvalid(f"{path}: cannot be read to its end ({exc})") from exc
    except Exception as exc:  # nibabel raises several error types for broken headers
        raise DatasetInvalid(f"{path}: cannot be read as NIfTI ({exc})") from exc
    if size < expected:
        raise DatasetInvalid(
            f"{path}: the file is truncated ({size} bytes of image data and header, "
            f"{expected} expected)"
        )


def _check_events_numeric(events, condition_column: str) -> None:
    """Every event with a condition has a numeric onset and duration."""
    import pandas as pd

    table = pd.read_csv(events, sep="\t", dtype=str, keep_default_na=False)
    if condition_column not in table.columns:
        return  # reported by collect
    used = table[~table[condition_column].str.strip().isin(("", "n/a"))]
    for column in ("onset", "duration"):
        if column not in used.columns:
            continue
        text = used[column].str.strip()
        numbers = pd.to_numeric(text, errors="coerce")
        bad = numbers.isna() | ~numbers.map(lambda v: bool(pd.notna(v) and abs(v) != float("inf")))
        if bad.any():
            row = int(bad.idxmax())
            raise DatasetInvalid(
                f"{events}: column {column!r} must hold numbers of seconds; row {row + 2} "
                f"(trial {used.loc[row, condition_column]!r}) has {text.loc[row]!r} "
                f"({int(bad.sum())} such row(s))"
            )


def _check_output_folders(config: RunConfig, subjects) -> None:
    """Every folder the run writes in can be created and written to (exit 73 otherwise)."""
    import os

    from ..bidsnames import subject_dir

    out = config.output_dir
    folders = [out, out / "figures", *(subject_dir(out, s) for s in subjects)]
    existing = [Path(root) for root, _dirs, _files in os.walk(out)]
    for folder in dict.fromkeys([*folders, *existing]):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".dnnrsa-write-test-{os.getpid()}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            reason = (
                "a file is in the way"
                if isinstance(exc, FileExistsError | NotADirectoryError)
                else exc.strerror or str(exc)
            )
            raise CannotWrite(f"cannot write in the output folder {folder}: {reason}") from exc


def _check_model_rdms(config: RunConfig, subjects) -> None:
    """Refuse a model RDM that cannot be compared with the brain's (exit 64)."""
    from dnnrsa.rdm import validate_model_rdm

    conditions = list(next(iter(subjects.values())).conditions)
    for name, path in config.model_rdms:
        try:
            validate_model_rdm(path, conditions=conditions)
        except ValueError as exc:
            raise UsageError(f"--model-rdm {name}: {exc}") from None


def log_brain_masks(config: RunConfig, subjects) -> None:
    """Log each participant's brain mask: its size, the voxels excluded and lost."""
    from dnnrsa.bidsnames import read_json, sidecar_path, subject_dir
    from dnnrsa.glm import MAX_MASK_LOSS

    for s, inputs in subjects.items():
        name = build_name(
            {"sub": s, "task": inputs.task, "space": inputs.space, "desc": "brain"},
            "mask",
            ".nii.gz",
        )
        side = read_json(sidecar_path(subject_dir(config.output_dir, s) / name))
        if not side:
            continue
        runs = ", ".join(Path(r).name for r in side.get("Runs", []))
        logger.info(
            "sub-%s brain mask: %s voxels; %s excluded for NaN or infinite samples; %s outside "
            "the largest connected piece",
            s,
            side.get("MaskVoxels"),
            side.get("NonFiniteVoxelsExcluded"),
            side.get("PrunedVoxels"),
        )
        if side.get("NonFiniteVoxelsExcluded"):
            logger.warning(
                "sub-%s: %d voxel(s) with NaN or infinite samples excluded from the mask (%s)",
                s,
                side["NonFiniteVoxelsExcluded"],
                runs,
            )
        if side.get("LostFraction", 0.0) > MAX_MASK_LOSS:
            logger.warning(
                "sub-%s: the brain mask of %s lost %.0f%% of its %d candidate voxels (more than "
                "%.0f%%): check the data (zeroed or NaN slices) or give a brain mask with -d",
                s,
                runs,
                100 * side["LostFraction"],
                side.get("CandidateVoxels", 0),
                100 * MAX_MASK_LOSS,
            )


def resolve_rois(config: RunConfig) -> dict[str, Path]:
    """ROI name -> mask file: the ``--roi`` files, and each ``--roi-labels`` region of the
    ``--roi-atlas`` written as a mask under the work directory."""
    from dnnrsa._io import atomic_save_nifti
    from dnnrsa.bidsnames import to_label
    from dnnrsa.roi import atlas_region

    rois = {name: Path(path) for name, path in config.rois}
    for label in config.roi_labels:
        name = to_label(label)
        path = (
            config.work_dir
            / "rois"
            / build_name({"atlas": to_label(config.roi_atlas), "roi": name}, "mask", ".nii.gz")
        )
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                atomic_save_nifti(atlas_region(label, config.roi_atlas), path)
            except ValueError as exc:
                raise UsageError(f"--roi-labels: {exc}") from None
        rois[name] = path
    return rois


def _check_rois(rois: dict[str, Path], subjects) -> None:
    """Every region keeps enough voxels inside each participant's brain on the BOLD grid
    (64 naming the region); a missing or unreadable mask gives 66 or 16."""
    import nibabel as nib
    import numpy as np

    from dnnrsa.roi import MIN_ROI_VOXELS, check_roi

    for name, path in rois.items():
        if not Path(path).is_file():
            raise InputMissing(f"--roi {name}: mask file not found: {path}")
        _nifti_complete(Path(path))
    for s, inputs in subjects.items():
        bold = nib.load(str(inputs.runs[0].bold))
        if inputs.mask is not None:
            brain = np.asarray(nib.load(str(inputs.mask)).dataobj) > 0
            what = inputs.mask.name
        else:
            first = np.asarray(bold.dataobj[..., 0] if bold.ndim == 4 else bold.dataobj)
            brain = np.isfinite(first) & (first != 0)
            what = f"the non-zero voxels of {inputs.runs[0].bold.name}"
        if brain.shape != bold.shape[:3]:
            brain = None
        for name, path in rois.items():
            try:
                check_roi(name, path, bold, brain, min_voxels=MIN_ROI_VOXELS)
            except ValueError as exc:
                raise UsageError(f"sub-{s}: {exc} (brain: {what})") from None


def preflight(config: RunConfig, subjects, rois: dict[str, Path] | None = None) -> None:
    """Check every selected input before any computation, so a mistake costs seconds.

    Every BOLD file and mask is read to its end (16 naming a truncated file), every
    events file has numeric onsets and durations (16), every model RDM is usable (64),
    every output folder can be written (73), and the searchlight's spheres fit the
    grid and the memory budget (64).
    """
    for inputs in subjects.values():
        for run in inputs.runs:
            _nifti_complete(run.bold)
            _check_events_numeric(run.events, config.condition_column)
            if run.mask is not None:
                _nifti_complete(run.mask)
    _check_model_rdms(config, subjects)
    _check_output_folders(config, subjects)
    _check_sphere_size(config, subjects)
    if rois:
        _check_rois(rois, subjects)


def run_participant(config: RunConfig) -> None:
    """Validate, collect inputs, build and run the participant workflow."""
    if not config.skip_bids_validation:
        logger.info("validating %s with the BIDS validator", config.bids_dir)
        run_validator(config.bids_dir)
    subjects = collect_inputs(config)
    rois = resolve_rois(config)
    preflight(config, subjects, rois)
    logger.info(
        "participants: %s; %d conditions; models: %d checkpoint(s), %d model RDM(s)",
        ", ".join(f"sub-{s}" for s in subjects),
        len(next(iter(subjects.values())).conditions),
        len(config.checkpoints),
        len(config.model_rdms),
    )
    dnn_kwargs = prepare_stimuli(config, subjects)
    config = dataclasses.replace(config, face_crops=dnn_kwargs.pop("face_crops"))
    write_dataset_description(config)  # the run configuration records the crops used
    wf = init_dnnrsa_participant_wf(config, subjects, dnn_kwargs, rois=rois)
    run_workflow(wf, config)
    log_brain_masks(config, subjects)
    if config.reports:
        from dnnrsa.reports import build_subject_report  # matplotlib: loaded only when needed

        for subject, inputs in subjects.items():
            path = build_subject_report(
                config.output_dir,
                subject,
                task=inputs.task,
                space=inputs.space,
                alpha=config.fwe_alpha,
            )
            logger.info("report: %s", path)
