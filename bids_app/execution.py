"""Running nipype workflows for the BIDS App, and the derivatives' top-level files.

The participant and group levels build a workflow and hand it to :func:`run_workflow`;
both write :func:`write_dataset_description` first. Nothing here parses the command
line or chooses what to analyse.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import gc
import logging
import multiprocessing.util
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
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


# --------------------------------------------------------------------------- progress
_SUBJECT_WF = re.compile(r"(?:^|\.)sub_([A-Za-z0-9]+)_wf(?:\.|$)")


def step_label(node) -> str:
    """A step's name for the progress lines: ``searchlight, sub-01`` for the node
    ``dnnrsa_participant_wf.sub_01_wf.searchlight``, the node's name for a node that
    belongs to no subject's workflow."""
    name = getattr(node, "name", None) or str(node)
    match = _SUBJECT_WF.search(getattr(node, "fullname", "") or "")
    return f"{name}, sub-{match.group(1)}" if match else name


def format_duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s`` or ``1 h 02 min``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class StepProgress:
    """One log line per finished step of a workflow run.

    Each line gives the steps done out of all, the step's name (and subject), how long
    it ran, the time elapsed since the run started and an estimate of the time left.
    The estimate sums the expected duration of every step not yet done (the mean
    duration of the finished steps of the same name, else of the same kind, such as
    ``write``, else of all finished steps; less what a running step has run so far)
    and divides it by the parallelism measured so far (time spent in steps per time
    elapsed). Steps found done in the work folder count as done, are logged at debug
    level only and do not enter the estimate.

    Parameters
    ----------
    label : str
        What runs, at the start of every line (``participant level``).
    log : logging.Logger, optional
        Where the lines go (default: this module's logger, under ``dnnrsa``).
    clock : callable, optional
        Monotonic time in seconds (replaceable for tests).
    """

    def __init__(
        self,
        label: str,
        log: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.label = label
        self.log = log or logger
        self.clock = clock
        self.nodes: list = []
        self.t0 = clock()
        self.started_at: dict[int, float] = {}
        self.durations: dict[int, float] = {}
        self.cached: set[int] = set()

    @property
    def total(self) -> int:
        """Steps of the run."""
        return len(self.nodes)

    @property
    def done(self) -> int:
        """Steps done, those found done in the work folder included."""
        return len(self.durations) + len(self.cached)

    def begin(self, nodes: list) -> None:
        """Start counting; ``nodes`` is the plugin's list of steps (it may grow)."""
        self.nodes = nodes
        self.t0 = self.clock()
        names = (getattr(n, "fullname", "") or "" for n in nodes)
        subjects = {m.group(1) for name in names if (m := _SUBJECT_WF.search(name))}
        per = f" for {len(subjects)} participant(s)" if subjects else ""
        self.log.info("%s: %d steps%s", self.label, len(nodes), per)

    def started(self, jobid: int) -> None:
        """Step ``jobid`` starts (or is checked for a result in the work folder)."""
        self.started_at.setdefault(jobid, self.clock())

    def finished(self, jobid: int, cached: bool = False) -> None:
        """Step ``jobid`` is done: log the progress line."""
        now = self.clock()
        node = self.nodes[jobid] if 0 <= jobid < len(self.nodes) else jobid
        label = step_label(node)
        start = self.started_at.pop(jobid, now)
        if cached:
            self.cached.add(jobid)
            self.log.debug(
                "%s: step %d/%d (%s) found done in the work folder",
                self.label,
                self.done,
                self.total,
                label,
            )
            if self.done == self.total:
                self.log.info(
                    "%s: all %d steps done (%d found done in the work folder); elapsed %s",
                    self.label,
                    self.total,
                    len(self.cached),
                    format_duration(now - self.t0),
                )
            return
        self.durations[jobid] = now - start
        elapsed = now - self.t0
        line = "%s: step %d/%d (%s) done in %.1f s; elapsed %s"
        args = [self.label, self.done, self.total, label, now - start, format_duration(elapsed)]
        left = self.remaining(now)
        if self.done < self.total and left is not None:
            line += ", about %s left"
            args.append(format_duration(left))
        if self.done == self.total and self.cached:
            line += " (%d step(s) found done in the work folder)"
            args.append(len(self.cached))
        self.log.info(line, *args)

    def remaining(self, now: float | None = None) -> float | None:
        """Estimated seconds until every step is done, or None before any step ran."""
        if not self.durations:
            return None
        now = self.clock() if now is None else now
        by_name: dict[str, list[float]] = {}
        by_kind: dict[str, list[float]] = {}
        for jobid, seconds in self.durations.items():
            name = self._name(jobid)
            by_name.setdefault(name, []).append(seconds)
            by_kind.setdefault(name.split("_")[0], []).append(seconds)
        overall = sum(self.durations.values()) / len(self.durations)
        work = 0.0
        for jobid in range(self.total):
            if jobid in self.durations or jobid in self.cached:
                continue
            name = self._name(jobid)
            same = by_name.get(name) or by_kind.get(name.split("_")[0])
            expected = sum(same) / len(same) if same else overall
            if jobid in self.started_at:
                expected = max(0.0, expected - (now - self.started_at[jobid]))
            work += expected
        busy = sum(self.durations.values()) + sum(now - t for t in self.started_at.values())
        parallel = max(1.0, busy / max(now - self.t0, 1e-9))
        return work / parallel

    def _name(self, jobid: int) -> str:
        return str(getattr(self.nodes[jobid], "name", jobid))


class ProgressMixin:
    """Progress lines (:class:`StepProgress`) for a nipype plugin derived from
    ``DistributedPluginBase`` (MultiProc, SLURM, SGE, PBS, ...): set ``progress``
    before the run."""

    progress: StepProgress | None = None

    def _generate_dependency_list(self, graph):
        super()._generate_dependency_list(graph)
        if self.progress is not None:
            self.progress.begin(self.procs)

    def _local_hash_check(self, jobid, graph):
        if self.progress is not None:  # called just before a step runs or is submitted
            self.progress.started(jobid)
        return super()._local_hash_check(jobid, graph)

    def _task_finished_cb(self, jobid, cached=False):
        super()._task_finished_cb(jobid, cached=cached)
        if self.progress is not None:
            self.progress.finished(jobid, cached=cached)


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
    """Set up a worker process: nipype's set-up, its exit handlers run when it ends
    (:func:`run_exit_handlers`), and end it when the run ends.

    Two guards, because a worker's parent is the forkserver, not the run: the parent
    death signal (the worker dies with the forkserver) and a watchdog thread that ends
    the worker once the run's process ``run_pid`` is gone (killed with ``kill -9``).
    """
    process_initializer(cwd)
    _die_with_parent()
    # at the worker's normal end (the pool shut down), as at the end of a Python program
    multiprocessing.util.Finalize(None, run_exit_handlers, exitpriority=0)
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


def run_exit_handlers() -> None:
    """Run the interpreter exit handlers (:mod:`atexit`) of this process now, once.

    A multiprocessing child ends with ``os._exit``, which skips them. joblib relies on
    them: every parallel call registers a temporary memmapping folder with joblib's
    resource tracker and unregisters it in an exit handler (a folder that no array was
    written to, and those of a call that reused the loky executor, are unregistered
    nowhere else). A run's worker that skipped them left the tracker it started to
    find those folders "leaked" when the worker ended, and to warn about it on the
    console. :func:`worker_initializer` has this run as the worker ends normally.
    """
    run = getattr(atexit, "_run_exitfuncs", None)
    if run is not None:
        run()


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


class GuardedMultiProcPlugin(ProgressMixin, MultiProcPlugin):
    """nipype's MultiProc whose workers end with the run, and which ends on a failure.

    - One log line per finished step (:class:`ProgressMixin`).
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


def _plugin(config: RunConfig, plugin_args: dict, progress: StepProgress):
    """The plugin object handed to nipype, reporting to ``progress`` where it can.

    MultiProc is :class:`GuardedMultiProcPlugin`; a plugin that runs the steps one by
    one from nipype's scheduling loop (SLURM, SGE, PBS, ...) gets :class:`ProgressMixin`;
    any other (Linear, the ``*Graph`` plugins, which submit the whole graph at once) is
    handed over by name, and only the run's start and end are logged.
    """
    if config.plugin == "MultiProc":
        plugin = GuardedMultiProcPlugin(plugin_args=plugin_args)
        plugin.progress = progress
        return plugin
    from nipype.pipeline import plugins
    from nipype.pipeline.plugins.base import DistributedPluginBase

    base = getattr(plugins, f"{config.plugin}Plugin", None)
    if (
        isinstance(base, type)
        and issubclass(base, DistributedPluginBase)
        and "Graph" not in config.plugin
    ):
        # same class name: nipype derives the plugin's name from it
        plugin = type(base.__name__, (ProgressMixin, base), {})(plugin_args=plugin_args)
        plugin.progress = progress
        return plugin
    return config.plugin


@contextlib.contextmanager
def frozen_heap():
    """Keep the objects alive now out of Python's garbage collections while the
    scheduler runs (:func:`gc.freeze`), and give them back afterwards.

    nipype's MultiProc scheduler calls :func:`gc.collect` in its own process before
    each round of submissions and after each step it runs itself. With torch,
    torchvision and nilearn imported, a full collection walks millions of objects:
    0.27 s a call, 9.3 s of a 44 s workflow of one participant (35 steps, profiled),
    during which no finished step is noticed and no ready step is sent. Frozen, a
    collection walks only the objects created since."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run_workflow(wf, config: RunConfig, label: str | None = None) -> None:
    """Run a nipype workflow with the configured plugin; name the failing step on error.

    Temporary files that a killed run left in the output folder are removed first.
    Progress goes to the log, one line per finished step (:class:`StepProgress`,
    starting with ``label``, by default the workflow's name). Crash reports are written
    as text under ``<output_dir>/logs``; a failure (the first failing step ends the run
    and its workers) raises :class:`RuntimeError` naming up to three failed steps and
    their reports, or :class:`~.errors.CannotWrite` (exit 73) when the disk is full or
    the quota used up.
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
    if config.plugin == "MultiProc":  # local workers: poll often (a cluster scheduler less)
        wf.config["execution"]["poll_sleep_duration"] = "0.05"
    plugin_args = plugin_arguments(config)
    worker_logging(config)
    before = set(logs.glob("crash-*"))
    progress = StepProgress(label or wf.name)
    plugin = _plugin(config, plugin_args, progress)
    if isinstance(plugin, str):
        logger.info("%s: running with nipype's %s plugin", progress.label, plugin)
    try:
        with frozen_heap():
            wf.run(plugin=plugin, plugin_args=plugin_args)
    except Exception as exc:
        detail = _crash_summary(sorted(set(logs.glob("crash-*")) - before))
        full = step_disk_full(exc, detail)
        if full is not None:
            raise full from exc
        raise RuntimeError(f"the workflow failed ({exc.__class__.__name__}){detail}") from exc
    if isinstance(plugin, str):
        logger.info(
            "%s: done in %s", progress.label, format_duration(time.monotonic() - progress.t0)
        )
