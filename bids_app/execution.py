"""Running nipype workflows for the BIDS App, and the derivatives' top-level files.

The participant and group levels build a workflow and hand it to :func:`run_workflow`;
both write :func:`write_dataset_description` first. Nothing here parses the command
line or chooses what to analyse.
"""

from __future__ import annotations

import os

from .. import __version__
from .._io import atomic_write
from ..bidsnames import write_json
from .config import RunConfig

#: File patterns of the derivatives that are not (yet) BIDS, listed in ``.bidsignore``.
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


def write_dataset_description(config: RunConfig) -> None:
    """``dataset_description.json``, ``.bidsignore`` and the run configuration of the derivatives."""
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


def worker_logging(config: RunConfig) -> None:
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


def plugin_arguments(config: RunConfig) -> dict:
    """Arguments of the configured nipype plugin, with the run's resources filled in."""
    plugin_args = dict(config.plugin_args)
    if config.plugin == "MultiProc":
        plugin_args.setdefault("n_procs", config.nprocs)
        if config.mem_gb:
            plugin_args.setdefault("memory_gb", config.mem_gb)
        plugin_args.setdefault("raise_insufficient", False)
        # Fresh worker processes: forking a process whose torch/OpenMP thread pools are
        # already running (training, a test session) can deadlock the child.
        plugin_args.setdefault("mp_context", "forkserver")
    return plugin_args


def _crash_summary(crashes) -> str:
    detail = ""
    for crash in crashes[:3]:
        text = crash.read_text(errors="replace")
        node = next(
            (ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("Node:")),
            "?",
        )
        last = [ln for ln in text.strip().splitlines() if ln.strip()][-1:]
        detail += f"\n  step {node} failed: {last[0] if last else ''}\n  crash report: {crash}"
    return detail


def run_workflow(wf, config: RunConfig) -> None:
    """Run a nipype workflow with the configured plugin; name the failing step on error.

    Crash reports are written as text under ``<output_dir>/logs``; a failure raises
    :class:`RuntimeError` naming up to three failed steps and their reports.
    """
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
    plugin_args = plugin_arguments(config)
    worker_logging(config)
    before = set(logs.glob("crash-*"))
    try:
        wf.run(plugin=config.plugin, plugin_args=plugin_args)
    except Exception as exc:
        detail = _crash_summary(sorted(set(logs.glob("crash-*")) - before))
        raise RuntimeError(f"the workflow failed ({exc.__class__.__name__}){detail}") from exc
