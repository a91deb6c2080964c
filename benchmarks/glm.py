"""Per-stimulus patterns of one subject at 2 mm: dnnrsa's GLM beside nilearn's.

One subject simulated with the demo generator's machinery (``dnnrsa.demo``): the MNI
grid at 2 mm (235,375 brain voxels), 6 runs of 72 stimuli of 3 s in random order with
2.5-4.5 s gaps (about 245 volumes at TR 2 s), BOLD with AR(1) noise (rho 0.2-0.5),
drift, physiological and motion signals; confounds: the 6 motion parameters, CSF and
white matter. Each run's masked data are scaled to percent signal change (nilearn's
``mean_scaling``, as ``estimate_patterns`` does) and every run goes through:

- LSA (one regressor per stimulus, cosine drift 0.01 Hz, confounds): dnnrsa
  (``dnnrsa.glm._fit_contrasts``, i.e. ``dnnrsa._fastglm.fit_lsa``, effects and t)
  beside nilearn (``run_glm`` and ``compute_contrast`` of each of the 72 stimuli,
  giving both effect and t);
- LSS (each trial against all others): dnnrsa (the designs' pieces from one nilearn
  design, ``dnnrsa.glm._lss_pieces``, and ``dnnrsa._fastglm.fit_lss``, effects and t)
  beside one complete nilearn GLM per trial (its design, ``run_glm``,
  ``compute_contrast``), timed on ``--nilearn-trials`` trials of the first run and
  scaled to all trials of all runs;

with the OLS and AR(1) noise models. Each row prints the wall and CPU time (this
process, all threads), the peak memory above the stage's start (resident memory
sampled every 20 ms; for dnnrsa's stages also the peak traced by ``tracemalloc``,
numpy's arrays included), and for the nilearn rows the largest relative difference
of dnnrsa's numbers from nilearn's: ``max |dnnrsa - nilearn| / max |nilearn|`` per
map, the maximum over maps (``diff/scale``), and the largest per-value relative
difference over the values above 1e-3 of their map's maximum (``diff/value``).

nilearn's LSA runs on ``--nilearn-runs`` runs (all by default) and
``--nilearn-voxels`` of the voxels (1 = all; a fraction takes every k-th voxel, and
dnnrsa is refitted on the same voxels for the comparison, since nilearn's AR(1) uses
the mean of all voxels' residuals); its time is scaled to the whole subject and the
row says by how much.

Run::

    python benchmarks/glm.py                      # 2 mm, 6 runs (5-15 minutes on 2 cores)
    python benchmarks/glm.py --voxel-size 6 --runs 2 --nilearn-trials 2   # smoke run

``--parallel-runs`` times instead the whole of ``estimate_patterns`` on the runs written
as NIfTI files (with their brain mask and confounds) with ``n_jobs=1`` and
``n_jobs=2`` (runs fitted one after another, then two at once in worker processes),
for each ``--methods`` and ``--noise-models``: wall time, CPU time (this process and its
workers), peak memory (the proportional resident memory of this process and its workers,
summed, sampled every 20 ms by another process) and whether the patterns are equal (``np.array_equal``)::

    python benchmarks/glm.py --parallel-runs --methods lsa --noise-models ar1

``--device cuda`` (or ``auto``, ``cpu``) times instead dnnrsa's fits of every run (LSA
and LSS, each ``--noise-models``, effects and t: ``dnnrsa._fastglm.fit_lsa`` and
``fit_lss``) on that device beside the CPU, after one untimed fit on the device (CuPy
compiles its kernels on first use), and prints each fit's CPU and device times (summed
over runs, the results copied back to the host included), their ratio and the largest
difference of the device's numbers from the CPU's (``max |device - cpu| / max |cpu|``
per map, the maximum over maps)::

    python benchmarks/glm.py --device cuda --runs 1
"""

from __future__ import annotations

import argparse
import contextlib
import os
import threading
import time
import tracemalloc
import warnings

import numpy as np

# benchmarks/_simulate.py, beside this script (run as python benchmarks/<name>.py)
from _simulate import CLIP_S, CONFOUNDS, N_STIMULI, TR_S, simulated_run, stimulus_betas

GLM_KWARGS = {
    "hrf_model": "glover",
    "drift_model": "cosine",
    "high_pass": 0.01,
    "n_jobs": 1,
    "random_state": 0,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxel-size", type=float, default=2.0, help="grid in mm")
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--nilearn-runs", type=int, default=None, help="LSA runs (default all)")
    parser.add_argument("--nilearn-voxels", type=float, default=1.0, help="fraction for LSA")
    parser.add_argument("--nilearn-trials", type=int, default=2, help="LSS trials timed")
    parser.add_argument("--noise-models", default="ols,ar1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--parallel-runs",
        action="store_true",
        help="time estimate_patterns with n_jobs=1 and n_jobs=2 (runs written as NIfTI)",
    )
    parser.add_argument("--methods", default="lsa,lss", help="with --parallel-runs")
    parser.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default=None,
        help="time dnnrsa's fits on this device beside the CPU (no nilearn)",
    )
    return parser


# --------------------------------------------------------------------------- measuring
def _rss_mb(pid="self") -> float:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # a worker that has just ended
        return 0.0


def _children(pid="self") -> list[str]:
    """This process's descendants (from /proc/<pid>/task/*/children)."""
    out = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids = f.read().split()
        except OSError:
            continue
        for kid in kids:
            out += [kid, *_children(kid)]
    return out


def _pss_mb(pid="self") -> float:
    """Proportional set size: resident memory with pages shared with other processes
    (a forked worker's, before it writes them) divided among them."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 2**10
    except OSError:
        pass
    return 0.0


def _tree_rss_mb(pid="self", skip=()) -> float:
    """Proportional resident memory of a process and its descendants (but ``skip``), summed."""
    return _pss_mb(pid) + sum(_pss_mb(kid) for kid in _children(pid) if kid not in skip)


class _TreePeakRSS:
    """Peak proportional resident memory of this process and its descendants above the
    start, summed, sampled every 20 ms by a separate process (a thread here would make
    ``estimate_patterns`` spawn its workers rather than fork them)."""

    def __enter__(self):
        import subprocess
        import sys

        code = (
            "import sys, select, glm as g; pid = sys.argv[1]; me = str(__import__('os').getpid())"
            "\npeak = 0.0\nwhile not select.select([sys.stdin], [], [], 0.02)[0]:"
            "\n    peak = max(peak, g._tree_rss_mb(pid, skip=(me,)))"
            "\nprint(peak)"
        )
        self.start = _tree_rss_mb()
        self._proc = subprocess.Popen(
            [sys.executable, "-c", code, str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        )
        return self

    def __exit__(self, *exc):
        out, _ = self._proc.communicate("stop\n")
        self.mb = max(float(out.strip() or 0.0), _tree_rss_mb()) - self.start


class _PeakRSS:
    """Peak resident memory above the start, sampled every 20 ms by a thread."""

    def __enter__(self):
        self.start = self.peak = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())
        self.mb = self.peak - self.start


class Totals:
    """Time and memory summed (or maximised) over runs, per stage."""

    def __init__(self):
        self.rows: dict[str, dict] = {}

    @contextlib.contextmanager
    def stage(self, name: str, traced: bool = False):
        row = self.rows.setdefault(
            name, {"wall": 0.0, "cpu": 0.0, "rss": 0.0, "traced": None, "n": 0}
        )
        if traced:
            tracemalloc.start()
        wall, cpu = time.perf_counter(), time.process_time()
        with _PeakRSS() as rss:
            yield row
        row["wall"] += time.perf_counter() - wall
        row["cpu"] += time.process_time() - cpu
        row["rss"] = max(row["rss"], rss.mb)
        if traced:
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            row["traced"] = max(row["traced"] or 0.0, peak)
        row["n"] += 1


def _quiet():
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


def _differences(got, ref):
    """(max over maps of max|d| / max|ref|, max per-value relative above 1e-3 of scale)."""
    got, ref = np.atleast_2d(got), np.atleast_2d(ref)
    scale = np.abs(ref).max(axis=1, keepdims=True)
    err = np.abs(got - ref)
    big = np.abs(ref) > 1e-3 * scale
    return float(np.max(err / scale)), float(np.max(err[big] / np.abs(ref[big])))


# --------------------------------------------------------------------------- data
def simulate_run(grid, rng, betas):
    """One run's masked BOLD (n_volumes, n_voxels), events and confounds."""
    import pandas as pd

    order, onsets, run = simulated_run(grid, betas, rng)
    events = pd.DataFrame(
        {"onset": onsets, "duration": CLIP_S, "trial_type": [f"cond{i:05d}" for i in order]}
    )
    conf = np.stack([run.confounds[k] for k in CONFOUNDS], axis=1)
    return run.bold, events, (conf, [f"confound_{k}" for k in CONFOUNDS])


# --------------------------------------------------------------------------- the fits
def nilearn_lsa(y, design, columns, noise_model):
    from nilearn.glm.contrasts import compute_contrast
    from nilearn.glm.first_level import run_glm

    x = design.to_numpy()
    labels, results = run_glm(y, x, noise_model=noise_model)
    effects = np.empty((len(columns), y.shape[1]))
    stats = np.empty_like(effects)
    for k, column in enumerate(columns):
        con = np.zeros(x.shape[1])
        con[list(design.columns).index(column)] = 1.0
        contrast = compute_contrast(labels, results, con, stat_type="t")
        effects[k] = contrast.effect_size()
        stats[k] = contrast.stat()
    return effects, stats


def nilearn_lss_trial(y, frame_times, events, trial, conf, noise_model):
    from dnnrsa.glm import _lss_design

    design = _lss_design(frame_times, events, trial, conf, GLM_KWARGS)
    effects, stats = nilearn_lsa(y, design, ["lsstarget"], noise_model)
    return effects[0], stats[0]


def fit_run(args, totals, diffs, run, y, events, conf):
    from dnnrsa._fastglm import fit_lss
    from dnnrsa.glm import _design, _fit_contrasts, _lss_pieces

    n_scans = y.shape[0]
    frame_times = np.linspace(0.0, (n_scans - 1) * TR_S, n_scans)
    with _quiet():
        lsa_design = _design(frame_times, events, conf, GLM_KWARGS)
    columns = sorted(events["trial_type"])
    n_lsa_runs = args.runs if args.nilearn_runs is None else args.nilearn_runs
    step = max(1, int(round(1.0 / args.nilearn_voxels)))
    sub = slice(None, None, step)
    for noise_model in args.noise_models:
        kwargs = dict(GLM_KWARGS, noise_model=noise_model)
        label = {"ols": "OLS", "ar1": "AR(1)"}[noise_model]
        got = {}
        for output in ("effect", "t"):
            with totals.stage(f"dnnrsa LSA {label} {output}", traced=True), _quiet():
                got[output] = _fit_contrasts(y, lsa_design, columns, output, kwargs)
        if run < n_lsa_runs:
            with totals.stage(f"nilearn LSA {label}"), _quiet():
                ref = nilearn_lsa(y[:, sub], lsa_design, columns, noise_model)
            if step > 1:
                got = {o: _fit_contrasts(y[:, sub], lsa_design, columns, o, kwargs) for o in got}
            for output, r in zip(("effect", "t"), ref, strict=True):
                _record(diffs, f"LSA {label} {output}", _differences(got[output], r))

        got = {}
        for output in ("effect", "t"):
            with totals.stage(f"dnnrsa LSS {label} {output}", traced=True), _quiet():
                own, shared, target = _lss_pieces(frame_times, events, conf, kwargs)
                got[output] = fit_lss(y, own, shared, target, output, noise_model)
        if run == 0 and args.nilearn_trials > 0:
            trials = np.linspace(0, len(events) - 1, args.nilearn_trials).round().astype(int)
            refs = []
            for trial in trials:
                with totals.stage(f"nilearn LSS {label} (per trial)"):
                    refs.append(nilearn_lss_trial(y, frame_times, events, trial, conf, noise_model))
            for k, output in enumerate(("effect", "t")):
                ref = np.stack([r[k] for r in refs])
                _record(diffs, f"LSS {label} {output}", _differences(got[output][trials], ref))


def _record(diffs, key, values):
    old = diffs.get(key, (0.0, 0.0))
    diffs[key] = (max(old[0], values[0]), max(old[1], values[1]))


# --------------------------------------------------------------------------- report
def report(args, totals, diffs, n_vox, n_trials_total):
    n_lsa_runs = args.runs if args.nilearn_runs is None else args.nilearn_runs
    step = max(1, int(round(1.0 / args.nilearn_voxels)))
    print(
        f"\n{'stage':<34}{'wall s':>9}{'cpu s':>9}{'RSS+ MB':>9}{'traced MB':>11}"
        f"{'nilearn s':>11}{'ratio':>8}{'diff/scale':>12}{'diff/value':>12}"
    )
    for method in ("LSA", "LSS"):
        for noise_model in args.noise_models:
            label = {"ols": "OLS", "ar1": "AR(1)"}[noise_model]
            if method == "LSA":
                peer = totals.rows.get(f"nilearn LSA {label}")
                scale = args.runs / n_lsa_runs * step if peer else None
                how = f"{n_lsa_runs} of {args.runs} runs, 1/{step} of the voxels"
            else:
                peer = totals.rows.get(f"nilearn LSS {label} (per trial)")
                scale = n_trials_total / peer["n"] if peer else None
                how = f"{peer['n'] if peer else 0} of {n_trials_total} trials"
            peer_s = peer["wall"] * scale if peer else None
            for output in ("effect", "t"):
                row = totals.rows[f"dnnrsa {method} {label} {output}"]
                d = diffs.get(f"{method} {label} {output}")
                print(
                    f"{f'dnnrsa {method} {label} {output}':<34}{row['wall']:>9.2f}{row['cpu']:>9.2f}"
                    f"{row['rss']:>9.0f}{row['traced']:>11.0f}"
                    + (f"{peer_s:>11.1f}{peer_s / row['wall']:>7.1f}x" if peer else f"{'':>19}")
                    + (f"{d[0]:>12.1e}{d[1]:>12.1e}" if d else "")
                )
            if peer:
                print(
                    f"{f'nilearn {method} {label}':<34}{peer['wall']:>9.2f}{peer['cpu']:>9.2f}"
                    f"{peer['rss']:>9.0f}{'':>11}  timed on {how}, scaled x{scale:.1f} "
                    f"to {peer_s:.1f} s"
                )
    print(
        f"\n{n_vox} voxels, {args.runs} runs, {n_trials_total} trials; times summed over runs; "
        "RSS+ is the largest increase of resident memory within one call"
    )


# --------------------------------------------------------------------------- device
def _device_fits(y, events, conf, noise_models):
    """Each (name, function of a device) of one run: dnnrsa's LSA and LSS fits."""
    from dnnrsa._fastglm import fit_lsa, fit_lss
    from dnnrsa.glm import _design, _lss_pieces

    n_scans = y.shape[0]
    frame_times = np.linspace(0.0, (n_scans - 1) * TR_S, n_scans)
    with _quiet():
        design = _design(frame_times, events, conf, GLM_KWARGS)
        own, shared, target = _lss_pieces(frame_times, events, conf, GLM_KWARGS)
    x = design.to_numpy()
    cols = [list(design.columns).index(c) for c in sorted(events["trial_type"])]
    fits = []
    for noise_model in noise_models:
        label = {"ols": "OLS", "ar1": "AR(1)"}[noise_model]
        for output in ("effect", "t"):
            kw = {"output": output, "noise_model": noise_model}
            fits.append(
                (
                    f"LSA {label} {output}",
                    lambda device, kw=kw: fit_lsa(y, x, cols, device=device, **kw),
                )
            )
            fits.append(
                (
                    f"LSS {label} {output}",
                    lambda device, kw=kw: fit_lss(y, own, shared, target, device=device, **kw),
                )
            )
    return fits


def device_runs(args, grid, rng, betas) -> None:
    """dnnrsa's fits of every run on ``args.device`` beside the CPU."""
    from nilearn.glm.first_level import mean_scaling

    from dnnrsa.backend import resolve_device

    device = resolve_device(args.device)
    print(f"device: {args.device} -> {device}")
    times: dict[str, list[float]] = {}
    diffs: dict[str, float] = {}
    for run in range(args.runs):
        bold, events, conf = simulate_run(grid, rng, betas)
        y, _ = mean_scaling(np.asarray(bold, dtype=np.float64), 0)
        del bold
        fits = _device_fits(y, events, conf, args.noise_models)
        if run == 0:  # untimed: the device's first use (CuPy compiles its kernels)
            for _, fit in fits:
                fit(device)
        for name, fit in fits:
            t0 = time.perf_counter()
            ref = fit("cpu")
            t1 = time.perf_counter()
            got = fit(device)
            t2 = time.perf_counter()
            row = times.setdefault(name, [0.0, 0.0])
            row[0] += t1 - t0
            row[1] += t2 - t1
            scale = np.abs(ref).max(axis=1, keepdims=True)
            diffs[name] = max(diffs.get(name, 0.0), float(np.max(np.abs(got - ref) / scale)))
            print(f"  run {run + 1} {name:<16} cpu {t1 - t0:7.2f} s, {device} {t2 - t1:7.2f} s")
    print(f"\n{'fit':<18}{'cpu s':>9}{f'{device} s':>9}{'ratio':>8}{'diff/scale':>12}")
    for name, (cpu_s, dev_s) in times.items():
        print(f"{name:<18}{cpu_s:>9.2f}{dev_s:>9.2f}{cpu_s / dev_s:>7.1f}x{diffs[name]:>12.1e}")
    print(f"\n{y.shape[1]} voxels, {args.runs} runs; times summed over runs")


# --------------------------------------------------------------------------- runs at once
def write_subject(args, grid, rng, betas, folder):
    """The simulated runs written as NIfTI (float32, uncompressed), their events and
    confounds tables and the brain mask: ``(bold_files, events, confounds, mask_file)``."""
    import nibabel as nib
    import pandas as pd

    bold_files, events_list, confounds = [], [], []
    for run in range(args.runs):
        bold, events, (conf, names) = simulate_run(grid, rng, betas)
        data = np.zeros(grid.mask.shape + (bold.shape[0],), dtype=np.float32)
        data[grid.mask] = np.asarray(bold, dtype=np.float32).T
        path = os.path.join(folder, f"run-{run + 1}_bold.nii")
        nib.save(nib.Nifti1Image(data, grid.affine), path)
        del data, bold
        bold_files.append(path)
        events_list.append(events)
        confounds.append(pd.DataFrame(conf, columns=names))
        print(f"run {run + 1}: {events_list[-1].shape[0]} trials written", flush=True)
    mask_file = os.path.join(folder, "mask.nii")
    nib.save(nib.Nifti1Image(grid.mask.astype(np.uint8), grid.affine), mask_file)
    return bold_files, events_list, confounds, mask_file


def _cpu_s() -> float:
    """CPU time of this process and of its ended (waited-for) children."""
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def parallel_runs(args, grid, rng, betas) -> None:
    """``estimate_patterns`` with n_jobs=1 and n_jobs=2: time, memory, equality."""
    import tempfile

    from dnnrsa.glm import estimate_patterns

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    with tempfile.TemporaryDirectory() as folder:
        bold_files, events_list, confounds, mask_file = write_subject(
            args, grid, rng, betas, folder
        )
        print(
            f"\n{'estimate_patterns':<28}{'n_jobs':>7}{'wall s':>9}{'cpu s':>9}{'RSS+ MB':>9}  equal"
        )
        for method in methods:
            for noise_model in args.noise_models:
                label = f"{method.upper()} {({'ols': 'OLS', 'ar1': 'AR(1)'})[noise_model]}"
                first = None
                for n_jobs in (1, 2):
                    wall, cpu = time.perf_counter(), _cpu_s()
                    with _TreePeakRSS() as rss, _quiet():
                        res = estimate_patterns(
                            bold_files,
                            events_list,
                            t_r=TR_S,
                            mask_img=mask_file,
                            confounds=confounds,
                            method=method,
                            condition_column="trial_type",
                            noise_model=noise_model,
                            n_jobs=n_jobs,
                        )
                    wall, cpu = time.perf_counter() - wall, _cpu_s() - cpu
                    same = "" if first is None else str(np.array_equal(first, res.patterns))
                    first = res.patterns if first is None else first
                    print(
                        f"{label:<28}{n_jobs:>7}{wall:>9.2f}{cpu:>9.2f}{rss.mb:>9.0f}  {same}",
                        flush=True,
                    )
                    del res


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.noise_models = [m.strip() for m in args.noise_models.split(",") if m.strip()]
    from nilearn.glm.first_level import mean_scaling

    from dnnrsa.demo.bold import make_grid

    grid = make_grid(args.voxel_size)
    n_vox = int(grid.mask.sum())
    print(
        f"{args.voxel_size:g} mm grid {grid.mask.shape}, {n_vox} brain voxels, {args.runs} runs "
        f"x {N_STIMULI} stimuli, TR {TR_S:g} s; {len(os.sched_getaffinity(0))} cores",
        flush=True,
    )
    rng = np.random.default_rng(args.seed)
    betas = stimulus_betas(n_vox, rng)
    if args.parallel_runs:
        parallel_runs(args, grid, rng, betas)
        return 0
    if args.device is not None:
        device_runs(args, grid, rng, betas)
        return 0
    totals, diffs = Totals(), {}
    n_trials_total = 0
    for run in range(args.runs):
        t0 = time.perf_counter()
        bold, events, conf = simulate_run(grid, rng, betas)
        y, _ = mean_scaling(np.asarray(bold, dtype=np.float64), 0)
        del bold
        n_trials_total += len(events)
        print(f"run {run + 1}: {y.shape[0]} volumes, simulated in {time.perf_counter() - t0:.1f} s")
        fit_run(args, totals, diffs, run, y, events, conf)
        for name, row in totals.rows.items():
            print(f"  {name:<36} {row['wall']:8.2f} s so far ({row['n']} calls)", flush=True)
    report(args, totals, diffs, n_vox, n_trials_total)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
