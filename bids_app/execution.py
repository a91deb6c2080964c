"""Running nipype workflows for the BIDS App, and the derivatives' top-level files.

The participant and group levels build a workflow and hand it to :func:`run_workflow`;
both write :func:`write_dataset_description` first. Nothing here parses the command
line or chooses what to analyse.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import threading
import time
from traceback import format_exception

from nipype.pipeline.plugins.multiproc import MultiProcPlugin, process_initializer

from .. import __version__
from .._io import atomic_write, sweep_stale_temporaries
from ..bidsnames import write_json
from .config import RunConfig
from .errors import step_disk_full

logger = logging.getLogger(__name__)

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
    "dnnrsa_group_config.toml",
    ".dnnrsa.lock",
]


def write_dataset_description(config: RunConfig) -> None:
    """``dataset_description.json`` and ``.bidsignore`` of the derivatives."""
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
    with atomic_write(folder / "nipype.cfg") as fh:  # concurrent runs write it too
        fh.write(
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


# --------------------------------------------------------------------------- workers
#: How often (seconds) a worker checks that the run which started it is still alive.
WATCHDOG_INTERVAL_S = 1.0
_PR_SET_PDEATHSIG = 1


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` (from /proc), or None when it is gone or a zombie."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def _alive(pid: int, started: str | None) -> bool:
    """Whether process ``pid``, which started at ``started``, still runs."""
    if started is not None:
        return _start_time(pid) == started
    try:  # no /proc: signal 0 tells whether the pid exists
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _die_with_parent() -> None:
    """Linux: the kernel kills this process when its parent process ends."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _watch(run_pid: int, started: str | None) -> None:
    while _alive(run_pid, started):
        time.sleep(WATCHDOG_INTERVAL_S)
    os.kill(os.getpid(), signal.SIGKILL)


def worker_initializer(cwd: str, run_pid: int, started: str | None) -> None:
    """Set up a worker process: nipype's set-up, and end it when the run ends.

    Two guards, because a worker's parent is the forkserver, not the run: the parent
    death signal (the worker dies with the forkserver) and a watchdog thread that ends
    the worker once the run's process ``run_pid`` is gone (killed with ``kill -9``).
    """
    process_initializer(cwd)
    _die_with_parent()
    if not _alive(run_pid, started):
        os.kill(os.getpid(), signal.SIGKILL)
    threading.Thread(
        target=_watch, args=(run_pid, started), name="dnnrsa-watchdog", daemon=True
    ).start()


def shutdown_joblib_workers() -> None:
    """End the worker processes joblib's loky backend keeps for reuse, if any.

    A step that runs joblib in parallel (nilearn's GLM with ``n_jobs``) leaves loky
    workers idle for 300 s; a run's worker that still holds them cannot exit, so the
    end of the run would wait that long. Called after every step.
    """
    module = sys.modules.get("joblib.externals.loky.reusable_executor")
    executor = getattr(module, "_executor", None) if module is not None else None
    if executor is not None:
        executor.shutdown(wait=True)


def run_node(node, updatehash, taskid) -> dict:
    """nipype's ``run_node`` that never raises: a step that fails before writing its
    result file gives a traceback, not an exception in the pool's callback. The joblib
    workers a step started end with it (:func:`shutdown_joblib_workers`)."""
    result = {"result": None, "traceback": None, "taskid": taskid}
    try:
        result["result"] = node.run(updatehash=updatehash)
    except BaseException:  # noqa: BLE001 - every failure is reported as the step's
        result["traceback"] = format_exception(*sys.exc_info())
        try:
            result["result"] = node.result
        except Exception:  # noqa: BLE001 - no result file: the traceback says why
            result["result"] = None
    finally:
        shutdown_joblib_workers()
    return result


class GuardedMultiProcPlugin(MultiProcPlugin):
    """nipype's MultiProc whose workers end with the run, and which ends on a failure.

    - Workers are started with :func:`worker_initializer` (they exit when the run dies).
    - A task whose future fails (a step that could not write its result, a worker that
      died) is reported as a failed step instead of waiting forever for its result.
    - When the run stops (a failed step with ``stop_on_first_crash``, an interrupt), the
      workers still running are ended and the pool is shut down.
    """

    def __init__(self, plugin_args=None):
        super().__init__(plugin_args=plugin_args)
        self.pool.shutdown(wait=False)  # no worker has started yet
        pid = os.getpid()
        self.pool = self.pool.__class__(
            max_workers=self.processors,
            initializer=worker_initializer,
            initargs=(self._cwd, pid, _start_time(pid)),
            mp_context=self.pool._mp_context,
        )

    def _task_done(self, taskid, future) -> None:
        try:
            result = future.result()
        except BaseException as exc:  # noqa: BLE001 - a broken pool, a lost worker
            result = {"result": None, "traceback": format_exception(exc), "taskid": taskid}
        self._taskresult[taskid] = result

    def _submit_job(self, node, updatehash=False):
        self._taskid += 1
        if getattr(node.interface, "terminal_output", "") == "stream":
            node.interface.terminal_output = "allatonce"
        future = self.pool.submit(run_node, node, updatehash, self._taskid)
        future.add_done_callback(functools.partial(self._task_done, self._taskid))
        self._task_obj[self._taskid] = future
        return self._taskid

    def run(self, graph, config, updatehash=False):
        try:
            return super().run(graph, config, updatehash=updatehash)
        except BaseException:
            self.stop_workers()
            raise

    def stop_workers(self) -> None:
        """End the workers (a running step is lost; its outputs are never half-written)."""
        workers = list((getattr(self.pool, "_processes", None) or {}).values())
        for proc in workers:
            try:
                proc.kill()
            except (OSError, ValueError, AttributeError):
                pass
        self.pool.shutdown(wait=False, cancel_futures=True)
        for proc in workers:
            try:
                proc.join(timeout=10)
            except (OSError, ValueError, AssertionError):
                pass


def _plugin(config: RunConfig, plugin_args: dict):
    """The plugin object or name handed to nipype."""
    if config.plugin == "MultiProc":
        return GuardedMultiProcPlugin(plugin_args=plugin_args)
    return config.plugin


def run_workflow(wf, config: RunConfig) -> None:
    """Run a nipype workflow with the configured plugin; name the failing step on error.

    Temporary files that a killed run left in the output folder are removed first.
    Crash reports are written as text under ``<output_dir>/logs``; a failure (the first
    failing step ends the run and its workers) raises :class:`RuntimeError` naming up to
    three failed steps and their reports, or :class:`~.errors.CannotWrite` (exit 73) when
    the disk is full or the quota used up.
    """
    for path in sweep_stale_temporaries(config.output_dir):
        logger.info("removed a temporary file left by an interrupted run: %s", path)
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
        wf.run(plugin=_plugin(config, plugin_args), plugin_args=plugin_args)
    except Exception as exc:
        detail = _crash_summary(sorted(set(logs.glob("crash-*")) - before))
        full = step_disk_full(exc, detail)
        if full is not None:
            raise full from exc
        raise RuntimeError(f"the workflow failed ({exc.__class__.__name__}){detail}") from exc
