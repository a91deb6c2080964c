"""The participant level: per-subject searchlight maps, and the data set's model RDMs."""

from __future__ import annotations

import logging

from .._io import atomic_write
from ..bidsnames import build_name
from .collect import collect_inputs, resolve_stim_file, run_validator, stimulus_table
from .config import RunConfig
from .errors import InputMissing, UsageError
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
    return {
        "stim_paths": stim_paths,
        "stim_labels": stim_labels,
        "stim_conditions": stim_conditions,
        "conditions": conditions,
        "stimulus_table": str(table_path),
        "task": task,
    }


def _check_sphere_size(config: RunConfig, subjects) -> None:
    """Refuse a radius whose spheres cannot reach ``min_voxels`` on the data's grid."""
    import nibabel as nib

    from dnnrsa.searchlight import sphere_offsets

    bold = next(iter(subjects.values())).runs[0].bold
    affine = nib.load(str(bold)).affine
    largest = len(sphere_offsets(affine, config.radius_mm))
    if largest < config.min_voxels:
        zooms = [round(float(z), 2) for z in nib.load(str(bold)).header.get_zooms()[:3]]
        raise UsageError(
            f"--radius-mm {config.radius_mm} holds at most {largest} voxels of {zooms} mm on the "
            f"grid of {bold.name}, fewer than --min-voxels {config.min_voxels}: every sphere would "
            "be empty; increase --radius-mm or lower --min-voxels"
        )


def run_participant(config: RunConfig) -> None:
    """Validate, collect inputs, build and run the participant workflow."""
    if not config.skip_bids_validation:
        logger.info("validating %s with the BIDS validator", config.bids_dir)
        run_validator(config.bids_dir)
    subjects = collect_inputs(config)
    _check_sphere_size(config, subjects)
    logger.info(
        "participants: %s; %d conditions; models: %d checkpoint(s), %d model RDM(s)",
        ", ".join(f"sub-{s}" for s in subjects),
        len(next(iter(subjects.values())).conditions),
        len(config.checkpoints),
        len(config.model_rdms),
    )
    write_dataset_description(config)
    dnn_kwargs = prepare_stimuli(config, subjects)
    wf = init_dnnrsa_participant_wf(config, subjects, dnn_kwargs)
    run_workflow(wf, config)
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
