"""Entry point of the BIDS App: ``dnnrsa bids_dir output_dir {participant,group}``."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from pathlib import Path

from nipype import config as nipype_config
from nipype import logging as nipype_logging

from dnnrsa._cpus import available_cpus

from .config import RunConfig
from .errors import (
    CannotWrite,
    DatasetInvalid,
    InputMissing,
    UnknownLevel,
    UsageError,
    handle_errors,
)
from .group import run_group
from .parser import LEVELS, build_parser
from .participant import run_participant

logger = logging.getLogger("dnnrsa")


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING - 10 * min(verbosity + 1, 2)  # INFO by default, DEBUG with -v
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s [%(name)s] %(levelname)s: %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger("dnnrsa")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    nipype_config.set("logging", "workflow_level", "INFO" if verbosity > 0 else "WARNING")
    nipype_config.set("logging", "interface_level", "INFO" if verbosity > 1 else "WARNING")
    nipype_config.set("execution", "check_version", "false")
    nipype_logging.update_logging(nipype_config)


def _is_within(child: Path, parent: Path) -> bool:
    child, parent = child.resolve(), parent.resolve()
    return child == parent or parent in child.parents


def config_from_options(opts) -> RunConfig:
    """Check the parsed options against the file system and build the run configuration."""
    if opts.analysis_level not in LEVELS:
        raise UnknownLevel(
            f"analysis_level must be one of {list(LEVELS)}; got {opts.analysis_level!r}"
        )
    _check_radius(opts.radius_mm)
    bids_dir, output_dir, work_dir = _folders(opts)
    filters = _bids_filters(opts)
    _check_input_files(opts)
    _check_rois(opts)
    if opts.tfce and opts.tfce_layers:
        raise UsageError(
            "--tfce (every layer) and --tfce-layers (some layers) exclude each other; "
            f"got both, --tfce-layers {' '.join(opts.tfce_layers)}"
        )
    if opts.analysis_level == "participant":
        if not opts.checkpoint and not opts.model_rdm and not opts.networks:
            raise UsageError(
                "nothing to compare with the brain: give a trained network with --checkpoint, "
                "a standard network with --network NAME and/or model RDMs with "
                "--model-rdm NAME=FILE.tsv"
            )
        if opts.encoding and opts.encoding_mask == "rois" and not (opts.roi or opts.roi_labels):
            raise UsageError(
                "--encoding-mask rois fits the encoding models within the regions of --roi: "
                "give at least one --roi NAME=MASK.nii.gz (or --roi-atlas with --roi-labels), "
                "or leave out --encoding-mask rois to fit the whole brain mask"
            )
        if opts.encoding_networks and not opts.encoding:
            raise UsageError(
                "--encoding-networks chooses the networks of --encoding: give --encoding too, "
                "or leave out --encoding-networks"
            )
        if opts.checkpoint or opts.layers:
            _check_model_and_layers(opts.model, opts.layers)
        _check_checkpoints(opts.checkpoint, opts.model)
    _check_face_crop(opts.face_crop)
    plugin_args = {}
    if opts.plugin_args:
        try:
            plugin_args = json.loads(opts.plugin_args.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"--plugin-args {opts.plugin_args}: cannot read JSON ({exc})") from exc
    nprocs = opts.nprocs or available_cpus()
    return RunConfig(
        bids_dir=bids_dir.resolve(),
        output_dir=output_dir.resolve(),
        analysis_level=opts.analysis_level,
        work_dir=work_dir.resolve(),
        participant_label=tuple(opts.participant_label),
        task=opts.task,
        space=opts.space,
        derivatives=tuple(d.resolve() for d in opts.derivatives),
        bids_filters=filters,
        skip_bids_validation=opts.skip_bids_validation,
        model=opts.model,
        checkpoints=tuple(c.resolve() for c in opts.checkpoint),
        networks=tuple(dict.fromkeys(opts.networks)),
        feature_budget=opts.feature_budget,
        layers=tuple(opts.layers),
        model_rdms=tuple((n, p.resolve()) for n, p in opts.model_rdm),
        dnn_metric=opts.dnn_metric,
        face_crop=opts.face_crop,
        allow_silent_video=opts.allow_silent_video,
        condition_column=opts.condition_column,
        glm_method=opts.glm_method,
        glm_output=opts.glm_output,
        noise_model=opts.noise_model,
        noise_normalisation=opts.noise_normalisation,
        confounds=tuple(opts.confounds),
        smoothing_fwhm=opts.smoothing_fwhm,
        metric=opts.metric,
        comparator=opts.comparator,
        radius_mm=opts.radius_mm,
        min_voxels=opts.min_voxels,
        searchlight_memory_mb=opts.searchlight_memory_mb,
        encoding=opts.encoding,
        encoding_components=opts.encoding_components,
        encoding_stimulus_folds=opts.encoding_stimulus_folds,
        encoding_layer_maps=opts.encoding_layer_maps,
        encoding_mask=opts.encoding_mask,
        encoding_networks=list(opts.encoding_networks or []),
        rois=tuple((n, p.resolve()) for n, p in opts.roi),
        roi_atlas=opts.roi_atlas,
        roi_labels=tuple(opts.roi_labels),
        roi_bootstrap=opts.roi_bootstrap,
        roi_n_boot=opts.roi_n_boot,
        n_permutations=opts.n_permutations,
        tfce=opts.tfce,
        tfce_layers=tuple(opts.tfce_layers),
        cluster_threshold=opts.cluster_threshold,
        nprocs=nprocs,
        mem_gb=opts.mem_gb,
        device=opts.device,
        plugin=opts.plugin,
        plugin_args=plugin_args,
        seed=opts.seed,
        reports=opts.reports,
        verbosity=opts.verbosity,
    )


def _folders(opts) -> tuple[Path, Path, Path]:
    """The data set (66 when missing, 16 when not BIDS), and the output and work folders:
    outside the data set (64) and writable (73)."""
    bids_dir: Path = opts.bids_dir
    if not bids_dir.is_dir():
        raise InputMissing(f"bids_dir not found: {bids_dir}")
    if not (bids_dir / "dataset_description.json").is_file():
        raise DatasetInvalid(f"{bids_dir} is not a BIDS data set (no dataset_description.json)")
    output_dir: Path = opts.output_dir
    if _is_within(output_dir, bids_dir):
        raise UsageError(
            f"output_dir {output_dir} is or lies inside bids_dir {bids_dir}; dnnrsa never writes "
            "into the input data set: choose a folder outside it"
        )
    work_dir = opts.work_dir or (output_dir.parent / f"{output_dir.name}_work")
    if _is_within(work_dir, bids_dir):
        raise UsageError(f"--work-dir {work_dir} lies inside bids_dir {bids_dir}")
    for path, what in ((output_dir, "output_dir"), (work_dir, "--work-dir")):
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / f".dnnrsa-write-test-{os.getpid()}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise CannotWrite(f"cannot write to {what} {path}: {exc.strerror or exc}") from exc
    return bids_dir, output_dir, work_dir


def _bids_filters(opts) -> dict:
    """The pybids filters of ``--bids-filter-file`` (66 when missing, 64 when not a JSON
    object)."""
    filters = {}
    if opts.bids_filter_file:
        try:
            filters = json.loads(opts.bids_filter_file.read_text())
        except FileNotFoundError:
            raise InputMissing(f"--bids-filter-file not found: {opts.bids_filter_file}") from None
        except json.JSONDecodeError as exc:
            raise UsageError(
                f"--bids-filter-file {opts.bids_filter_file} is not valid JSON: {exc}"
            ) from exc
        if not isinstance(filters, dict):
            raise UsageError(
                f"--bids-filter-file must hold a JSON object; got {type(filters).__name__}"
            )
    return filters


def _check_input_files(opts) -> None:
    """The derivatives folders, checkpoints and model RDM files exist (66), and the
    model RDM names are unique (64)."""
    for deriv in opts.derivatives:
        if not deriv.is_dir():
            raise InputMissing(f"derivatives folder not found: {deriv}")
    for ckpt in opts.checkpoint:
        if not ckpt.is_file():
            raise InputMissing(f"checkpoint not found: {ckpt}")
    names = [n for n, _ in opts.model_rdm]
    if len(set(names)) != len(names):
        raise UsageError(f"--model-rdm names must be unique; got {names}")
    for name, path in opts.model_rdm:
        if not path.is_file():
            raise InputMissing(f"--model-rdm {name}: file not found: {path}")


def _check_rois(opts) -> None:
    """ROI files exist (66), names are unique and atlas labels are known (64), by name."""
    from dnnrsa.bidsnames import to_label

    for name, path in opts.roi:
        if not path.is_file():
            raise InputMissing(f"--roi {name}: mask file not found: {path}")
    if opts.roi_labels and not opts.roi_atlas:
        raise UsageError("--roi-labels needs --roi-atlas")
    if opts.roi_atlas and not opts.roi_labels:
        raise UsageError("--roi-atlas needs --roi-labels: the atlas labels to use")
    names = [n for n, _ in opts.roi]
    if opts.roi_labels:
        from dnnrsa.roi import atlas_labels

        try:
            known = set(atlas_labels(opts.roi_atlas))
        except (ImportError, OSError) as exc:
            raise InputMissing(
                f"--roi-atlas {opts.roi_atlas}: atlas files not found ({exc})"
            ) from exc
        for label in opts.roi_labels:
            if label not in known:
                close = [k for k in sorted(known) if label.lower() in k.lower()][:5]
                hint = f"; did you mean {close}?" if close else ""
                raise UsageError(
                    f"--roi-labels: ROI {label} is not a label of the {opts.roi_atlas} atlas{hint}"
                )
            names.append(to_label(label))
    if len(set(names)) != len(names):
        raise UsageError(f"ROI names must be unique; got {names}")


def _check_face_crop(face_crop: str) -> None:
    """A crop table must exist (66) and have its columns and valid boxes (64, naming the row)."""
    from dnnrsa.faces import CROP_MODES, CropTableError, read_crop_table

    if face_crop in CROP_MODES:
        return
    if not Path(face_crop).is_file():
        raise InputMissing(f"--face-crop table not found: {face_crop}")
    try:
        read_crop_table(face_crop, "stim_file")
    except CropTableError as exc:
        raise UsageError(f"--face-crop: {exc}") from exc


def _check_radius(radius_mm: float) -> None:
    """Refuse a searchlight radius that is not a finite, positive number of mm."""
    if not (math.isfinite(radius_mm) and radius_mm > 0):
        raise UsageError(
            f"--radius-mm must be a finite number of millimetres above 0; got {radius_mm!r}"
        )


def _check_checkpoints(checkpoints, model: str | None = None) -> None:
    """Load every checkpoint up front (safely) and check it against its model: a file
    torch cannot read, pickled objects, an unregistered or other model than ``--model``,
    tensors missing or of another shape, NaN or infinite weights are refused (64) with
    dnnrsa's message naming the file and the tensors."""
    from dnnrsa.models import check_checkpoint

    for ckpt in checkpoints:
        try:
            check_checkpoint(ckpt, model=model)
        except (ValueError, KeyError, TypeError) as exc:
            text = str(exc)
            where = "--checkpoint" if str(ckpt) in text else f"--checkpoint {ckpt}"
            raise UsageError(f"{where}: {text}") from None


def _check_model_and_layers(model: str, layers) -> None:
    from dnnrsa.models import available_models, get_model

    models = available_models()
    if model not in models:
        raise UsageError(f"--model must be one of {models}; got {model!r}")
    if layers:
        names = get_model(model).layer_names
        unknown = [layer for layer in layers if layer not in names]
        if unknown:
            raise UsageError(
                f"--layers {unknown} are not layers of {model!r}; valid layers: {names}"
            )


def main(argv: list[str] | None = None) -> int:
    """Run the BIDS App; return the exit code (see :mod:`dnnrsa.bids_app.errors`)."""
    with handle_errors("dnnrsa") as outcome:
        opts = build_parser().parse_args(argv)
        _setup_logging(opts.verbosity)
        outcome.log, outcome.traceback = logger, opts.verbosity > 0
        start = time.perf_counter()
        config = config_from_options(opts)
        if config.analysis_level == "participant":
            run_participant(config)
        else:
            run_group(config)
        logger.info("%s level finished in %.1f s", opts.analysis_level, time.perf_counter() - start)
    return outcome.exit_code


def cli() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
