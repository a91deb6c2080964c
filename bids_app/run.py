"""Entry point of the BIDS App: ``dnnrsa bids_dir output_dir {participant,group}``."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

from .. import __version__
from .config import RunConfig
from .errors import (
    EXIT_FAILURE,
    EXIT_OK,
    AppError,
    CannotWrite,
    DatasetInvalid,
    InputMissing,
    UnknownLevel,
    UsageError,
)
from .parser import LEVELS, build_parser

logger = logging.getLogger("dnnrsa")

BIDSIGNORE = [
    "*_statmap.nii.gz",
    "*_statmap.json",
    "*_rdm.tsv",
    "*_rdm.json",
    "*_stats.tsv",
    "*_matrix.tsv",
    "*_clusters.tsv",
    "*_stimuli.tsv",
    "*.html",
    "figures",
    "figures/**",
    "logs",
    "logs/**",
    "*_auc.tsv",
    "dnnrsa_config.toml",
]


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
    from nipype import config as nipype_config
    from nipype import logging as nipype_logging

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
    if opts.analysis_level == "participant":
        if not opts.checkpoint and not opts.model_rdm:
            raise UsageError(
                "nothing to compare with the brain: give a trained network with --checkpoint "
                "and/or model RDMs with --model-rdm NAME=FILE.tsv"
            )
        if opts.checkpoint or opts.layers:
            _check_model_and_layers(opts.model, opts.layers)
    plugin_args = {}
    if opts.plugin_args:
        try:
            plugin_args = json.loads(opts.plugin_args.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"--plugin-args {opts.plugin_args}: cannot read JSON ({exc})") from exc
    nprocs = opts.nprocs or max(1, len(os.sched_getaffinity(0)))
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
        layers=tuple(opts.layers),
        model_rdms=tuple((n, p.resolve()) for n, p in opts.model_rdm),
        dnn_metric=opts.dnn_metric,
        condition_column=opts.condition_column,
        glm_method=opts.glm_method,
        glm_output=opts.glm_output,
        noise_normalisation=opts.noise_normalisation,
        confounds=tuple(opts.confounds),
        smoothing_fwhm=opts.smoothing_fwhm,
        metric=opts.metric,
        comparator=opts.comparator,
        radius_mm=opts.radius_mm,
        min_voxels=opts.min_voxels,
        searchlight_memory_mb=opts.searchlight_memory_mb,
        n_permutations=opts.n_permutations,
        tfce=opts.tfce,
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


def write_dataset_description(config: RunConfig) -> None:
    """``dataset_description.json`` and ``.bidsignore`` of the derivatives."""
    from .._io import atomic_write
    from ..interfaces.bids import write_json

    write_json(
        config.output_dir / "dataset_description.json",
        {
            "Name": "dnnrsa: searchlight RSA of deep neural network layers",
            "BIDSVersion": "1.10.0",
            "DatasetType": "derivative",
            "GeneratedBy": [
                {
                    "Name": "dnnrsa",
                    "Version": __version__,
                    "Container": {"Type": os.environ.get("DNNRSA_CONTAINER", "none")},
                }
            ],
            "SourceDatasets": [{"URL": config.bids_dir.as_uri()}],
        },
    )
    with atomic_write(config.output_dir / ".bidsignore") as fh:
        fh.write("\n".join(BIDSIGNORE) + "\n")
    with atomic_write(config.output_dir / "dnnrsa_config.toml") as fh:
        fh.write(config.to_toml())


def _worker_logging(config: RunConfig) -> None:
    """Give nipype's worker processes the same log levels as this process.

    Workers started by a fresh multiprocessing context read nipype's configuration
    file anew; point them at one in the work directory (unless the user set one).
    """
    if "NIPYPE_CONFIG_DIR" in os.environ and not os.environ.get("DNNRSA_NIPYPE_CONFIG"):
        return
    folder = config.work_dir / "nipype_config"
    folder.mkdir(parents=True, exist_ok=True)
    level = "INFO" if config.verbosity > 0 else "WARNING"
    (folder / "nipype.cfg").write_text(
        "[logging]\n"
        f"workflow_level = {level}\n"
        f"interface_level = {'INFO' if config.verbosity > 1 else 'WARNING'}\n"
        "[execution]\ncheck_version = false\n"
    )
    os.environ["NIPYPE_CONFIG_DIR"] = str(folder)
    os.environ["DNNRSA_NIPYPE_CONFIG"] = "1"


def run_workflow(wf, config: RunConfig) -> None:
    """Run a nipype workflow with the configured plugin; name the failing step on error."""
    logs = config.output_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    wf.config["execution"] = {
        "crashdump_dir": str(logs),
        "crashfile_format": "txt",
        "remove_unnecessary_outputs": "false",
        "stop_on_first_crash": "true",
        "hash_method": "content",
    }
    if config.plugin == "MultiProc":  # local workers: poll often (a scheduler is polled less)
        wf.config["execution"]["poll_sleep_duration"] = "0.2"
    plugin_args = dict(config.plugin_args)
    if config.plugin == "MultiProc":
        plugin_args.setdefault("n_procs", config.nprocs)
        if config.mem_gb:
            plugin_args.setdefault("memory_gb", config.mem_gb)
        plugin_args.setdefault("raise_insufficient", False)
        # Fresh worker processes: forking a process whose torch/OpenMP thread pools are
        # already running (training, a test session) can deadlock the child.
        plugin_args.setdefault("mp_context", "forkserver")
    _worker_logging(config)
    before = set(logs.glob("crash-*"))
    try:
        wf.run(plugin=config.plugin, plugin_args=plugin_args)
    except Exception as exc:
        crashes = sorted(set(logs.glob("crash-*")) - before)
        detail = ""
        for crash in crashes[:3]:
            text = crash.read_text(errors="replace")
            node = next(
                (ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("Node:")),
                "?",
            )
            last = [ln for ln in text.strip().splitlines() if ln.strip()][-1:]
            detail += f"\n  step {node} failed: {last[0] if last else ''}\n  crash report: {crash}"
        raise RuntimeError(f"the workflow failed ({exc.__class__.__name__}){detail}") from exc


def main(argv: list[str] | None = None) -> int:
    """Run the BIDS App; return the exit code (see :mod:`dnnrsa.bids_app.errors`)."""
    parser = build_parser()
    try:
        opts = parser.parse_args(argv)
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    except SystemExit as exc:  # --help and --version
        return int(exc.code or 0)
    _setup_logging(opts.verbosity)
    start = time.perf_counter()
    try:
        config = config_from_options(opts)
        if config.analysis_level == "participant":
            from .participant import run_participant

            run_participant(config)
        else:
            from .group import run_group

            run_group(config)
    except AppError as exc:
        logger.error("%s", exc)
        return exc.exit_code
    except KeyboardInterrupt:
        logger.error("interrupted; completed outputs are kept, nothing half-written is left")
        return 130
    except Exception as exc:
        logger.error("%s", exc, exc_info=opts.verbosity > 0)
        return EXIT_FAILURE
    logger.info("%s level finished in %.1f s", opts.analysis_level, time.perf_counter() - start)
    return EXIT_OK


def cli() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
