"""Searchlight RSA throughput: dnnrsa against rsatoolbox on identical data.

Builds synthetic condition patterns on nilearn's MNI152 brain mask, random model
RDMs and the searchlight spheres, then

* runs dnnrsa's engine on every sphere of the mask (in a child process, so that
  its peak resident memory, BLAS buffers included, can be read back), and
* times rsatoolbox's pipeline (``get_searchlight_RDMs`` followed by
  ``evaluate_models_searchlight`` with ``eval_fixed``) on an evenly spaced subset
  of the same spheres, given exactly the same neighbourhoods,

and prints both throughputs (spheres per second), their ratio, dnnrsa's peak
memory and the largest difference between the two tools' scores on the subset.

Usage::

    python benchmarks/searchlight.py                       # whole brain, 2 mm, 72 x 29
    python benchmarks/searchlight.py --resolution 3 --rsa-spheres 300
    python benchmarks/searchlight.py --device cuda --skip-rsatoolbox

Timings vary with the load on the machine; the load average is printed with them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

RSA_METHODS = {
    "spearman": "spearman",
    "pearson": "corr",
    "kendall_tau_a": "tau-a",
    "cosine": "cosine",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=2, help="MNI mask resolution in mm")
    parser.add_argument("--radius-mm", type=float, default=6.0)
    parser.add_argument("--conditions", type=int, default=72)
    parser.add_argument("--models", type=int, default=29)
    parser.add_argument(
        "--metric", default="correlation", choices=["correlation", "euclidean", "crossnobis"]
    )
    parser.add_argument("--comparator", default="spearman", choices=sorted(RSA_METHODS))
    parser.add_argument("--runs", type=int, default=4, help="runs (crossnobis only)")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--n-jobs", type=int, default=-1, help="CPU threads (-1: all cores)")
    parser.add_argument("--memory-budget-mb", type=float, default=None)
    parser.add_argument(
        "--rsa-spheres", type=int, default=500, help="spheres timed with rsatoolbox"
    )
    parser.add_argument(
        "--rsa-jobs", type=int, default=1, help="n_jobs for rsatoolbox's model evaluation"
    )
    parser.add_argument("--skip-rsatoolbox", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser


def make_problem(args):
    """Mask, neighbourhoods, patterns and models, identical for both tools."""
    from nilearn.datasets import load_mni152_brain_mask

    from dnnrsa.searchlight import volume_neighbourhoods

    mask_img = load_mni152_brain_mask(resolution=args.resolution)
    t0 = time.perf_counter()
    nb = volume_neighbourhoods(mask_img, radius_mm=args.radius_mm)
    t_nb = time.perf_counter() - t0
    rng = np.random.default_rng(args.seed)
    n_cond = args.conditions
    n_pairs = n_cond * (n_cond - 1) // 2
    if args.metric == "crossnobis":
        conditions = np.tile(np.arange(n_cond), args.runs)
        runs = np.repeat(np.arange(args.runs), n_cond)
    else:
        conditions = np.arange(n_cond)
        runs = None
    # Smooth-ish signal: a shared pattern per condition plus voxel noise.
    patterns = rng.standard_normal((conditions.size, nb.n_voxels))
    patterns += rng.standard_normal((n_cond, 1))[conditions]
    models = rng.random((args.models, n_pairs))
    return nb, t_nb, patterns, conditions, runs, models


def run_child(args) -> dict:
    """dnnrsa on the whole mask; returns timings and peak memory of this process."""
    from dnnrsa.backend import get_namespace, resolve_device, to_numpy
    from dnnrsa.searchlight import searchlight_rsa_array

    nb, t_nb, patterns, conditions, runs, models = make_problem(args)
    device = resolve_device(args.device)
    xp = get_namespace(device=device)
    kwargs = {
        "metric": args.metric,
        "comparator": args.comparator,
        "conditions": conditions,
        "runs": runs,
        "xp": xp,
        "n_jobs": args.n_jobs,
        "memory_budget_mb": args.memory_budget_mb,
        "min_voxels": 1,
    }
    if device == "cuda":  # warm up: CUDA context, kernels, memory pool
        from dnnrsa._neighbourhoods import Neighbourhoods

        small = Neighbourhoods(nb.indices[:2000], nb.sizes[:2000], nb.centres[:2000], nb.n_voxels)
        to_numpy(searchlight_rsa_array(xp.asarray(patterns), small, models, **kwargs))
    t0 = time.perf_counter()
    data = xp.asarray(patterns)
    scores = to_numpy(searchlight_rsa_array(data, nb, models, **kwargs))
    t_engine = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {
        "n_spheres": int(nb.n_centres),
        "n_voxels": int(nb.n_voxels),
        "median_sphere": float(np.median(nb.sizes)),
        "t_neighbourhoods_s": t_nb,
        "t_engine_s": t_engine,
        "peak_rss_mb": peak_kb / 1024.0,
        "device": device,
        "finite_fraction": float(np.isfinite(scores).mean()),
    }
    if device == "cuda":
        import cupy

        out["gpu_peak_pool_mb"] = cupy.get_default_memory_pool().total_bytes() / 2**20
        out["gpu_name"] = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    return out


def run_rsatoolbox(args, nb, patterns, conditions, models) -> dict:
    from rsatoolbox.inference import eval_fixed
    from rsatoolbox.model import ModelFixed
    from rsatoolbox.rdm import RDMs
    from rsatoolbox.util.searchlight import evaluate_models_searchlight, get_searchlight_RDMs

    from dnnrsa._neighbourhoods import Neighbourhoods
    from dnnrsa.searchlight import searchlight_rsa_array

    n = min(args.rsa_spheres, nb.n_centres)
    subset = np.linspace(0, nb.n_centres - 1, n).astype(np.int64)
    neighbours = [nb.members(c) for c in subset]
    rsa_models = [ModelFixed(f"model{i}", RDMs(m[None, :])) for i, m in enumerate(models)]
    n_jobs = args.rsa_jobs if args.rsa_jobs > 0 else len(os.sched_getaffinity(0))
    sink = io.StringIO()
    with contextlib.redirect_stderr(sink), contextlib.redirect_stdout(sink):
        t0 = time.perf_counter()
        sl_rdms = get_searchlight_RDMs(
            patterns, subset, neighbours, conditions, method=args.metric, verbose=False
        )
        t1 = time.perf_counter()
        results = evaluate_models_searchlight(
            sl_rdms, rsa_models, eval_fixed, method=RSA_METHODS[args.comparator], n_jobs=n_jobs
        )
        t2 = time.perf_counter()
    theirs = np.array([r.evaluations.ravel() for r in results])
    sub_nb = Neighbourhoods(nb.indices[subset], nb.sizes[subset], subset, nb.n_voxels)
    ours = searchlight_rsa_array(
        patterns,
        sub_nb,
        models,
        metric=args.metric,
        comparator=args.comparator,
        conditions=conditions,
        min_voxels=1,
        xp=np,
    )
    return {
        "n_spheres": int(n),
        "t_rdms_s": t1 - t0,
        "t_evaluate_s": t2 - t1,
        "n_jobs": n_jobs,
        "max_abs_diff": float(np.nanmax(np.abs(ours - theirs))),
    }


def blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    infos = [
        f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')}, "
        f"{i.get('num_threads')} threads)"
        for i in threadpool_info()
        if i.get("user_api") == "blas"
    ]
    return "; ".join(infos) or "no BLAS found"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        print(json.dumps(run_child(args)))
        return 0
    if args.metric == "crossnobis" and not args.skip_rsatoolbox:
        print("rsatoolbox's searchlight has no run labels for crossnobis: timing dnnrsa only")
        args.skip_rsatoolbox = True

    print(
        f"searchlight benchmark: MNI152 {args.resolution} mm mask, radius {args.radius_mm} mm, "
        f"{args.conditions} conditions, {args.models} models, {args.metric} / {args.comparator}"
    )
    print(f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs")
    env = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}
    print(f"BLAS: {blas_info()}; environment: {env or 'no OPENBLAS_* overrides'}")
    print(f"load average before: {os.getloadavg()[0]:.2f}")

    child_argv = [sys.executable, os.path.abspath(__file__), "--child", *(argv or sys.argv[1:])]
    proc = subprocess.run(child_argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        return proc.returncode
    ours = json.loads(proc.stdout.strip().splitlines()[-1])
    ours_rate = ours["n_spheres"] / ours["t_engine_s"]
    print(
        f"dnnrsa   : {ours['n_spheres']} spheres (median {ours['median_sphere']:.0f} voxels) "
        f"on {ours['device']} in {ours['t_engine_s']:.2f} s "
        f"(+ {ours['t_neighbourhoods_s']:.2f} s for the neighbourhoods) -> "
        f"{ours_rate:,.0f} spheres/s; peak memory {ours['peak_rss_mb']:.0f} MB"
        + (
            f"; GPU {ours['gpu_name']}, pool {ours['gpu_peak_pool_mb']:.0f} MB"
            if "gpu_name" in ours
            else ""
        )
    )
    figures = {"args": vars(args), "dnnrsa": ours, "dnnrsa_spheres_per_s": ours_rate}

    if not args.skip_rsatoolbox:
        nb, _, patterns, conditions, _, models = make_problem(args)
        theirs = run_rsatoolbox(args, nb, patterns, conditions, models)
        t_total = theirs["t_rdms_s"] + theirs["t_evaluate_s"]
        rate = theirs["n_spheres"] / t_total
        print(
            f"rsatoolbox: {theirs['n_spheres']} spheres in {t_total:.2f} s "
            f"(RDMs {theirs['t_rdms_s']:.2f} s, evaluation {theirs['t_evaluate_s']:.2f} s, "
            f"n_jobs={theirs['n_jobs']}) -> {rate:,.1f} spheres/s; whole brain would take "
            f"{ours['n_spheres'] / rate / 60:.0f} min"
        )
        print(f"ratio    : dnnrsa is {ours_rate / rate:,.0f}x rsatoolbox's throughput")
        print(f"agreement: max |dnnrsa - rsatoolbox| on the subset = {theirs['max_abs_diff']:.2e}")
        figures.update(rsatoolbox=theirs, rsatoolbox_spheres_per_s=rate, ratio=ours_rate / rate)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
