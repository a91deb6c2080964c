"""The whole participant level of the BIDS App, as a user runs it: one subject, timed.

The data set is the demo generator's (``dnnrsa-demo-data``: 72 stimuli, simulated BOLD
on its MNI grid, fMRIPrep-style derivatives and the planted regions' masks) with one
subject, ``--runs`` runs and ``--voxel-size-mm`` voxels (2 mm and 6 runs by default);
the networks are four checkpoints of the study's cross-channel network (29 layers each),
by default seeded untrained ones saved with ``dnnrsa.models.save_checkpoint``, named
and labelled as the demo's four regimes (emotion, identity, gender, sentence; the
forward pass costs the same trained or not), or the files of ``--checkpoints``.

``dnnrsa <bids> <out> participant`` runs as a subprocess with the options the demo
(``dnnrsa-demo``) gives it: the fMRIPrep-style derivatives (``-d``), the four
checkpoints, a searchlight radius of twice the voxel size, the planted regions and the
control region as ``--roi``, ``--seed 0``; and ``--noise-model``, ``--nprocs``. Every
node of the participant workflow runs: the stimuli's face crops and decoding, each
network's features, layer RDMs, analyses, arm relevance and lesion, the networks
compared, the GLM, the brain mask, the searchlight and its maps, the ROI RDMs, and
the participant's HTML report. Three runs, each with a fresh output folder:

1. ``cold``: a fresh work folder (the first subject of a study);
2. ``warm``: a fresh work folder holding only the first run's caches shared by the
   runs of a study (``<work>/feature_cache``: features keyed by the stimulus and the
   weight file, face crops; ``<work>/decoded_clips``): what one more subject costs
   (the per-study nodes run again in the new run's folder, reading the caches);
3. ``warm, --no-reports``: the same without the HTML report.

For each run it prints the wall time; the CPU time of the process tree, sampled from
/proc every 0.5 s (nipype's workers are children of a forkserver that the app does
not wait for, so ``os.wait4``, like ``getrusage(RUSAGE_CHILDREN)``, misses them; it is
printed beside); the peak resident memory of the largest process and the peak of the
tree's summed resident memory (shared pages counted once per process); the time
before the workflow (validation, inputs, face crops), in the workflow and after it
(the report); and the ten slowest nodes from the app's progress lines (``step i/N
(node) done in X s``), per study or per subject.

Run::

    python benchmarks/participant.py                           # 2 mm, 6 runs
    python benchmarks/participant.py --voxel-size-mm 6 --runs 3  # a smoke run
    python benchmarks/participant.py --checkpoints demo/models/{emotion,identity,gender,sentence}.pt

The data set is written once into ``--work-dir`` and reused; every output of the
benchmark goes under ``--work-dir`` (a temporary folder, removed at the end, unless
given or ``--keep``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

N_STIMULI = 72
#: The demo's four training regimes (``dnnrsa.bids_app.demo.DEMO_REGIMES``).
REGIMES = ("emotion", "identity", "gender", "sentence")
#: The caches of the work folder shared by the participant runs of a study.
SHARED_CACHES = ("feature_cache", "decoded_clips")
_STEP = re.compile(r"step (\d+)/(\d+) \((.*)\) done in ([0-9.]+) s")
_STEPS = re.compile(r"participant level: (\d+) steps")
_SUBJECT = re.compile(r", sub-([^,)]+)$")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--voxel-size-mm", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=6, help="runs of the subject (default 6)")
    parser.add_argument("--noise-model", choices=("ar1", "ols"), default="ar1")
    parser.add_argument("--nprocs", type=int, default=None, help="default: every CPU")
    parser.add_argument(
        "--checkpoints",
        nargs=4,
        type=Path,
        default=None,
        metavar="FILE",
        help="four checkpoints (default: seeded untrained cross-channel networks)",
    )
    parser.add_argument(
        "--radius-mm", type=float, default=None, help="default: twice the voxel size, as the demo"
    )
    parser.add_argument(
        "--skip-no-reports", action="store_true", help="leave out the run without reports"
    )
    parser.add_argument("--keep", action="store_true", help="keep a temporary --work-dir")
    return parser


# --------------------------------------------------------------------------- inputs
def make_data(args, work: Path) -> Path:
    """The demo data set of one subject (reused when complete); returns its folder."""
    vs = f"{args.voxel_size_mm:g}".replace(".", "p")
    data = work / f"data-{vs}mm-{args.runs}runs"
    done = work / f"{data.name}.complete"
    if done.is_file():
        print(f"data set: reusing {data}")
        return data
    if data.exists():
        shutil.rmtree(data)  # an interrupted generation
    cmd = [
        str(Path(sys.executable).with_name("dnnrsa-demo-data")),
        str(data),
        "--n-subjects",
        "1",
        "--n-runs",
        str(args.runs),
        "--voxel-size-mm",
        f"{args.voxel_size_mm:g}",
        "--n-training-takes",
        "0",
        "--no-progress",
    ]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    print(f"data set: written in {time.perf_counter() - t0:.1f} s (not part of the totals): {data}")
    done.write_text("")
    return data


def write_checkpoints(bids: Path, folder: Path) -> list[Path]:
    """Four seeded untrained cross-channel networks, one per demo regime, whose labels
    are the regime's values in the events (so that the arm lesion runs, as for the
    demo's trained networks); rewritten on every run."""
    import pandas as pd

    from dnnrsa.models import build_model, get_model, save_checkpoint

    events = pd.read_csv(next(bids.glob("sub-*/func/*_events.tsv")), sep="\t", dtype=str)
    spec = get_model("crosschannel")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed, regime in enumerate(REGIMES):
        labels = sorted(events[regime].unique())
        model = build_model(spec, len(labels), seed=seed)
        path = folder / f"{regime}.pt"
        # the face crop recorded as dnnrsa-train records it (the app's default, auto)
        extra = {"face_crop": "auto"}
        paths.append(save_checkpoint(path, model, spec, labels=labels, regime=regime, extra=extra))
    return paths


def roi_args(bids: Path) -> list[str]:
    """``--roi NAME=MASK`` for the planted regions and the control region, as the demo."""
    masks = sorted((bids / "derivatives" / "groundtruth").glob("space-*_desc-*_mask.nii.gz"))
    out = []
    for mask in masks:
        name = re.search(r"_desc-([^_]+)_mask", mask.name).group(1)
        out += ["--roi", f"{name}={mask}"]
    return out


# --------------------------------------------------------------------------- measuring
def _tree(root: int) -> dict[tuple[int, str], tuple[float, float]]:
    """``(pid, start time)`` of ``root`` and each of its descendants, with the CPU
    seconds it has used itself and its resident memory in MB, from /proc."""
    stats: dict[int, list[str]] = {}
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        stats[int(entry)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry))
    tick, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, ()))
        fields = stats.get(pid)
        if fields is None:
            continue
        # fields from the state on: utime 11, stime 12, start time 19, rss 21 (pages)
        cpu = (int(fields[11]) + int(fields[12])) / tick
        out[(pid, fields[19])] = (cpu, int(fields[21]) * page / 2**20)
    return out


def run_app(cmd: list[str], log_path: Path) -> dict:
    """Run ``cmd``; its output, each line with the seconds since the start, goes to
    ``log_path``. Returns wall, CPU, memory, the phases and the steps."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[tuple[float, str]] = []
    # per process of the tree: its last CPU seconds and its largest RSS; the tree's RSS
    cpu: dict[tuple[int, str], float] = {}
    rss: dict[tuple[int, str], float] = {}
    peak = [0.0]
    done = threading.Event()

    def read():
        with open(log_path, "w") as log:
            for line in proc.stdout:
                now = time.perf_counter() - t0
                lines.append((now, line.rstrip("\n")))
                log.write(f"{now:8.1f} {line}")
                log.flush()

    def sample():
        while not done.wait(0.5):
            tree = _tree(proc.pid)
            for key, (seconds, mb) in tree.items():
                cpu[key] = seconds
                rss[key] = max(mb, rss.get(key, 0.0))
            peak[0] = max(peak[0], sum(mb for _, mb in tree.values()))

    threads = [threading.Thread(target=read), threading.Thread(target=sample)]
    for t in threads:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    for t in threads:
        t.join()
    result = {
        "rc": proc.returncode,
        "wall_s": wall,
        # the workers are the forkserver's children, which the app does not wait for:
        # their CPU time is sampled (the last 0.5 s of each process are missed)
        "cpu_s": max(usage.ru_utime + usage.ru_stime, sum(cpu.values())),
        "cpu_wait4_s": usage.ru_utime + usage.ru_stime,
        "n_procs": len(cpu),
        "maxrss_mb": max(usage.ru_maxrss / 1024, max(rss.values(), default=0.0)),
        "tree_mb": peak[0],
        "steps": [],
        "lines": lines,
    }
    first = last = None
    for when, line in lines:
        if _STEPS.search(line) and first is None:
            first = when
        if m := _STEP.search(line):
            label, seconds = m.group(3), float(m.group(4))
            result["steps"].append((label, seconds))
            last = when
    result["before_s"] = first
    result["workflow_s"] = None if first is None or last is None else last - first
    result["after_s"] = None if last is None else wall - last
    return result


def _disk_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def _uptime() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3]


# --------------------------------------------------------------------------- main
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    temporary = args.work_dir is None
    work = Path(tempfile.mkdtemp(prefix="dnnrsa-participant-")) if temporary else args.work_dir
    work = work.absolute()
    work.mkdir(parents=True, exist_ok=True)
    nprocs = args.nprocs or len(os.sched_getaffinity(0))
    try:
        return _benchmark(args, work, nprocs)
    finally:
        if temporary and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"outputs kept in {work}")


def _benchmark(args, work: Path, nprocs: int) -> int:
    import nibabel as nib

    data = make_data(args, work)
    bids = data / "bids"
    fmriprep = bids / "derivatives" / "fmriprep"
    bolds = sorted(fmriprep.rglob("*_desc-preproc_bold.nii.gz"))
    mask = next(fmriprep.rglob("*_desc-brain_mask.nii.gz"))
    n_vox = int((nib.load(mask).get_fdata() > 0).sum())
    n_vols = [nib.load(b).shape[3] for b in bolds]
    if args.checkpoints:
        checkpoints = [c.absolute() for c in args.checkpoints]
    else:
        checkpoints = write_checkpoints(bids, work / "networks")
    radius = args.radius_mm or 2.0 * args.voxel_size_mm
    print(
        f"participant level: {args.voxel_size_mm:g} mm grid, {n_vox} brain voxels, "
        f"{len(bolds)} runs of {n_vols} volumes, {N_STIMULI} stimuli, GLM {args.noise_model}, "
        f"4 networks x 29 layers, radius {radius:g} mm, --nprocs {nprocs}, "
        f"{len(os.sched_getaffinity(0))} cores; load average {' '.join(_uptime())}"
    )
    app = str(Path(sys.executable).with_name("dnnrsa"))
    runs = [("cold", False, True), ("warm", True, True)]
    if not args.skip_no_reports:
        runs.append(("warm, --no-reports", True, False))
    results = {}
    for name, warm, reports in runs:
        folder = work / ("run-" + re.sub(r"[^a-z]+", "-", name).strip("-"))
        if folder.exists():
            shutil.rmtree(folder)
        out, wdir = folder / "out", folder / "work"
        wdir.mkdir(parents=True)
        if warm:
            for cache in SHARED_CACHES:
                source = work / "run-cold" / "work" / cache
                if source.exists():
                    shutil.copytree(source, wdir / cache)
        cmd = [app, str(bids), str(out), "participant", "--participant-label", "01"]
        cmd += ["-d", str(fmriprep), "--checkpoint", *map(str, checkpoints)]
        cmd += ["--radius-mm", f"{radius:g}", *roi_args(bids)]
        cmd += ["--noise-model", args.noise_model, "-w", str(wdir), "--nprocs", str(nprocs)]
        cmd += ["--seed", "0"]
        if not reports:
            cmd.append("--no-reports")
        print(f"\n[{name}] load average {' '.join(_uptime())}", flush=True)
        res = run_app(cmd, folder / "log.txt")
        res["disk_mb"] = _disk_mb(out) if out.exists() else 0.0
        results[name] = res
        print(f"[{name}] {_summary(res)}; load average {' '.join(_uptime())}", flush=True)
        if res["rc"] != 0:
            print("\n".join(line for _, line in res["lines"][-40:]))
            print(f"dnnrsa exited with {res['rc']}; log: {folder / 'log.txt'}")
            return 1
        _print_steps(res)
    print(f"\nload average at the end {' '.join(_uptime())}")
    _print_table(results)
    per_subject = results["warm"]["wall_s"]
    print(
        f"participant level per subject, {'AR(1)' if args.noise_model == 'ar1' else 'OLS'}, "
        f"4 networks: {per_subject:.1f} s (the first subject of a study: "
        f"{results['cold']['wall_s']:.1f} s)"
    )
    return 0


def _summary(res: dict) -> str:
    return (
        f"exit {res['rc']}, wall {res['wall_s']:.1f} s, CPU {res['cpu_s']:.1f} s "
        f"({res['n_procs']} processes sampled; {res['cpu_wait4_s']:.1f} s by wait4), "
        f"largest process {res['maxrss_mb']:.0f} MB, tree {res['tree_mb']:.0f} MB"
    )


def _print_steps(res: dict) -> None:
    steps = res["steps"]
    per_subject = sum(s for label, s in steps if _SUBJECT.search(label))
    per_study = sum(s for label, s in steps if not _SUBJECT.search(label))
    print(
        f"  {len(steps)} steps: {per_study:.1f} s in per-study nodes, {per_subject:.1f} s in "
        f"per-subject nodes (summed node times; nodes overlap with --nprocs > 1)"
    )
    for label, seconds in sorted(steps, key=lambda s: -s[1])[:10]:
        kind = "subject" if _SUBJECT.search(label) else "study"
        print(f"  {seconds:8.1f} s  {label:<44}({kind})")


def _print_table(results: dict) -> None:
    def num(v, fmt="{:.1f}"):
        return "" if v is None else fmt.format(v)

    head = (
        f"{'run':<22}{'wall s':>9}{'CPU s':>9}{'before s':>10}{'workflow s':>12}"
        f"{'after s':>9}{'max proc MB':>13}{'tree MB':>9}{'disk MB':>9}"
    )
    print("\n" + head)
    for name, r in results.items():
        print(
            f"{name:<22}{r['wall_s']:>9.1f}{r['cpu_s']:>9.1f}{num(r['before_s']):>10}"
            f"{num(r['workflow_s']):>12}{num(r['after_s']):>9}{r['maxrss_mb']:>13.0f}"
            f"{r['tree_mb']:>9.0f}{r['disk_mb']:>9.1f}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
