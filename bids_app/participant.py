"""The participant level: per-subject searchlight maps, and the data set's model RDMs."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from .._io import atomic_write
from ..bidsnames import build_name
from .collect import collect_inputs, resolve_stim_file, run_validator, stimulus_table
from .config import RunConfig
from .errors import InputMissing, UsageError
from .execution import run_workflow, write_dataset_description
from .outputs import (
    claim_output_folder,
    folder_lock,
    hold_work_dir,
    run_work_dir,
    write_participant_config,
)
from .preflight import preflight
from .workflows import init_dnnrsa_participant_wf

logger = logging.getLogger("dnnrsa.participant")


def prepare_stimuli(config: RunConfig, subjects) -> dict:
    """Write ``task-<t>_stimuli.tsv`` and return the stimulus arguments of the DNN workflow."""
    first = next(iter(subjects.values()))
    task = first.task
    table = stimulus_table(config.bids_dir, subjects, config.condition_column)
    conditions = list(first.conditions)
    if table is None:
        if config.checkpoints or config.networks:
            which = "--checkpoint" if config.checkpoints else "--network"
            raise InputMissing(
                f"{which} needs stimuli: the events files have no 'stim_file' column"
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
        events = config.bids_dir / "events.tsv"
        need = bool(config.checkpoints or config.networks)
        stim_paths = [  # present only where a network reads them; the path rule always
            str(resolve_stim_file(config.bids_dir, s, events, must_exist=need)) for s in stim_labels
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


def run_participant(config: RunConfig) -> None:
    """Validate, collect inputs, check them and the output folder, run the workflow.

    Nothing is written to the output folder before every check has passed; the
    folder's data-set-level files are written under its lock (:mod:`.outputs`).
    """
    if not config.skip_bids_validation:
        logger.info("validating %s with the BIDS validator", config.bids_dir)
        run_validator(config.bids_dir)
    with hold_work_dir(run_work_dir(config)):
        subjects = collect_inputs(config)
        rois = resolve_rois(config)
        preflight(config, subjects, rois)
        logger.info(
            "participants: %s; %d conditions; models: %d checkpoint(s), %d standard "
            "network(s), %d model RDM(s)",
            ", ".join(f"sub-{s}" for s in subjects),
            len(next(iter(subjects.values())).conditions),
            len(config.checkpoints),
            len(config.networks),
            len(config.model_rdms),
        )
        with folder_lock(config.output_dir):
            record = claim_output_folder(config, subjects)
            dnn_kwargs = prepare_stimuli(config, subjects)
            config = dataclasses.replace(config, face_crops=dnn_kwargs.pop("face_crops"))
            write_dataset_description(config)
            write_participant_config(config, subjects, record)
        wf = init_dnnrsa_participant_wf(config, subjects, dnn_kwargs, rois=rois)
        run_workflow(wf, config, label="participant level")
    log_brain_masks(config, subjects)
    if config.reports:
        build_subject_reports(config, subjects)


def build_subject_reports(config: RunConfig, subjects: dict) -> None:
    """Write every participant's HTML report (:func:`dnnrsa.reports.build_subject_report`).

    The first is built here, drawing the figures that every report shares; the others
    are built side by side in up to ``--nprocs`` processes, which reuse those figures
    (figures are written atomically, so two reports never read half a file). The
    reports are the same as when built one after the other.
    """
    from dnnrsa.reports import build_subject_report  # matplotlib: loaded only when needed

    jobs = [
        dict(subject=subject, task=inputs.task, space=inputs.space, alpha=config.fwe_alpha)
        for subject, inputs in subjects.items()
    ]
    if not jobs:
        return
    first, rest = jobs[0], jobs[1:]
    logger.info("report: %s", build_subject_report(config.output_dir, **first))
    workers = min(max(1, int(config.nprocs)), len(rest))
    if workers <= 1:
        for job in rest:
            logger.info("report: %s", build_subject_report(config.output_dir, **job))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")  # no threads of this process carried over
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = [pool.submit(build_subject_report, config.output_dir, **job) for job in rest]
        for future in as_completed(futures):
            logger.info("report: %s", future.result())
