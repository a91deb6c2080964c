"""Time the banded ridge encoding of ``dnnrsa.encoding.fit_encoding``, beside himalaya.

Data: 72 stimuli, 6 runs, 2,000 voxels (by default), three bands of three layers each
(500 units per layer, mixtures of the band's own latent features plus noise). A
quarter of the voxels is driven by the first band, a quarter by the second, a quarter
by both, a quarter by nothing (signal and noise of equal variance). The patterns are
float32, built run by run, and the benchmark never holds them all in float64 (the peer
converts one block of voxels at a time; ``fit_encoding``'s own float64 copy counts in
its peak), so whole-brain sizes work: ``--voxels 235375`` is MNI space at 2 mm.

It prints:

* the voxel count and the shape, dtype and size of the patterns;
* the whole analysis (joint model, the three leave-one-band-out models, the nine
  per-layer models, the noise ceiling; ``--no-full`` skips it): wall clock and CPU time,
  peak resident memory, and the mean R² and unique variance of each voxel group, so a
  faster version can be checked for the same answers;
* with the peer (``--peer``, the default): the joint model alone, fitted by
  ``fit_encoding(..., partition=False, layer_maps=False)`` and by a plain himalaya
  script on the same matrices: for each outer fold of ``encoding_folds``, dnnrsa's own
  features (``layer_features``: a PCA per layer fitted on the training stimuli, the
  layers of a band concatenated) and their linear kernels, then
  ``himalaya.kernel_ridge.MultipleKernelRidgeCV(kernels="precomputed",
  solver="random_search")`` with dnnrsa's penalties (``DEFAULT_ALPHAS``), ``n_iter``,
  seed and inner splits (``dnnrsa._encoding_solve.inner_rows``), fitted on those rows
  and predicting the held-out run's test stimuli; R² per voxel on each held-out run
  (himalaya's ``r2_score``, each run centred over its stimuli), averaged over runs, as
  dnnrsa scores. Printed: both wall and CPU times and peak memory, the ratios
  peer/dnnrsa, the largest absolute difference of the joint R² and its correlation
  across voxels, and the share of fold x voxel fits where both chose the same
  penalties. himalaya's estimator refits on every row of the inner cross-validation
  (with 2 runs: the training run and the held-out run's training stimuli), dnnrsa on
  the mean of the training runs (``fit_encoding``'s Notes), so the R² may differ even
  where the penalties agree.

Memory: each part runs in its own process (multiprocessing, "spawn"), all started
before this one holds any data (a child inherits its parent's peak) and run one after
the other. "peak RSS" is that process's ``ru_maxrss`` (its data included, built the
same way in each); "+N MB" is how much the peak rose during the fit.

Voxels are fitted in blocks of ``--voxel-batch`` (``fit_encoding``'s ``voxel_batch``;
the peer loops over the same blocks; 0: all at once). ``--n-jobs`` sets dnnrsa's
threads (each with one BLAS thread) and caps the peer's BLAS threads (default: all
CPUs for both). On a busy machine the peer's multithreaded BLAS can lose much of its
time to the other jobs; ``--n-jobs 1`` compares one core with one core.

Run: ``python benchmarks/encoding.py`` (``--help`` for the settings).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import multiprocessing
import resource
import time
import traceback
import warnings

import numpy as np

from dnnrsa._cpus import resolve_n_jobs
from dnnrsa.encoding import DEFAULT_N_COMPONENTS, DEFAULT_N_ITER, encoding_folds, fit_encoding

BANDS = ("visual", "auditory", "crossmodal")
DEFAULT_VOXEL_BATCH = inspect.signature(fit_encoding).parameters["voxel_batch"].default


def make_data(n_voxels: int, n_stimuli: int, n_runs: int, seed: int):
    """Activations, parts, float32 patterns of shape (n_runs, n_stimuli, n_voxels) and
    the voxel groups; float64 is used one group of voxels or one run at a time."""
    rng = np.random.default_rng(seed)
    n_latent, n_units = 6, 500
    latents = {band: rng.standard_normal((n_stimuli, n_latent)) for band in BANDS}
    activations, parts = {}, {}
    for band in BANDS:
        for j in range(3):
            mixing = rng.standard_normal((n_latent, n_units))
            noise = 0.3 * rng.standard_normal((n_stimuli, n_units))
            activations[f"{band}_{j}"] = (latents[band] @ mixing + noise).astype(np.float32)
            parts[f"{band}_{j}"] = band
    drivers = [("visual",), ("auditory",), ("visual", "auditory"), ()]
    quarter = n_voxels // 4
    signal = np.zeros((n_stimuli, n_voxels), dtype=np.float32)
    for i, group in enumerate(drivers):
        cols = slice(i * quarter, n_voxels if i == 3 else (i + 1) * quarter)
        block = np.zeros((n_stimuli, cols.stop - cols.start))
        for band in group:
            block += latents[band] @ rng.standard_normal((n_latent, block.shape[1]))
        std = block.std(axis=0)
        signal[:, cols] = np.where(
            std > 0, (block - block.mean(axis=0)) / np.where(std > 0, std, 1), 0
        )
        del block
    patterns = np.empty((n_runs, n_stimuli, n_voxels), dtype=np.float32)
    for run in range(n_runs):
        # the same draws as one (n_runs, n_stimuli, n_voxels) call
        patterns[run] = signal + rng.standard_normal((n_stimuli, n_voxels))
    groups = {
        "visual": slice(0, quarter),
        "auditory": slice(quarter, 2 * quarter),
        "both": slice(2 * quarter, 3 * quarter),
        "none": slice(3 * quarter, n_voxels),
    }
    return activations, parts, patterns, groups


# --------------------------------------------------------------------------- the parts
def _peak_mb() -> float:
    """Peak resident memory of this process in MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _data(s: dict):
    return make_data(s["voxels"], s["stimuli"], s["runs"], s["seed"])


def _voxel_batch(s: dict) -> int | None:
    return s["voxel_batch"] or None


def _run_dnnrsa(s: dict, joint_only: bool) -> dict:
    activations, parts, patterns, groups = _data(s)
    base = _peak_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    result = fit_encoding(
        activations,
        parts,
        patterns,
        n_components=s["n_components"],
        n_iter=s["n_iter"],
        stimulus_folds=s["stimulus_folds"],
        partition=not joint_only,
        layer_maps=not (joint_only or s["no_layer_maps"]),
        device=s["device"],
        n_jobs=s["n_jobs"],
        random_state=s["seed"],
        voxel_batch=_voxel_batch(s),
    )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    out = {"wall": wall, "cpu": cpu, "peak": _peak_mb(), "base": base, "backend": result.backend}
    if joint_only:
        out.update(r2=result.r2, valid=result.valid, alphas=result.alphas.astype(np.float32))
    else:
        out["bands"] = list(result.bands)
        out["table"] = [
            (
                name,
                float(result.r2[cols].mean()),
                [float(u) for u in result.unique[:, cols].mean(axis=1)],
                float(result.shared[cols].mean()),
            )
            for name, cols in groups.items()
        ]
    return out


def _peer_joint(activations, parts, patterns, s: dict, backend):
    """The joint model with himalaya's estimator: R² per voxel (mean over held-out runs)
    and the penalties chosen, shape (n_folds, n_bands, n_voxels)."""
    from himalaya.kernel_ridge import MultipleKernelRidgeCV
    from himalaya.scoring import r2_score

    from dnnrsa._encoding_solve import inner_rows
    from dnnrsa.encoding import DEFAULT_ALPHAS, layer_features, make_bands

    n_runs, n_stimuli, n_voxels = patterns.shape
    folds = encoding_folds(n_runs, n_stimuli, s["stimulus_folds"])
    bands = make_bands(parts, list(activations))
    # each fold's features (dnnrsa's, fitted on the fold's training stimuli), one
    # linear kernel per band over all stimuli
    kernels = []
    for fold in folds:
        features = [
            np.hstack(
                [
                    layer_features(activations[name], fold.train_stimuli, s["n_components"])
                    for name in layers
                ]
            )
            for layers in bands.values()
        ]
        kernels.append(np.stack([x @ x.T for x in features]))
    r2 = np.zeros(n_voxels)
    alphas = np.zeros((len(folds), len(bands), n_voxels), dtype=np.float32)
    batch = _voxel_batch(s) or n_voxels
    for start in range(0, n_voxels, batch):
        cols = slice(start, min(start + batch, n_voxels))
        y = np.asarray(patterns[:, :, cols], dtype=np.float64)
        pred = np.zeros_like(y)
        for i, (fold, k) in enumerate(zip(folds, kernels, strict=True)):
            row_stimuli, rows, splits, _ = inner_rows(y, fold)
            pos = fold.train_stimuli[row_stimuli]
            model = MultipleKernelRidgeCV(
                kernels="precomputed",
                solver="random_search",
                solver_params=dict(n_iter=s["n_iter"], alphas=DEFAULT_ALPHAS, progress_bar=False),
                cv=splits,
                random_state=s["seed"],
            )
            model.fit(k[:, pos][:, :, pos], rows)
            test = fold.test_stimuli
            pred[fold.test_run, test] = backend.to_numpy(model.predict(k[:, test][:, :, pos]))
            alphas[i, :, cols] = np.exp(-np.asarray(backend.to_numpy(model.deltas_)))
        targets = y - y.mean(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            r2[cols] = np.mean(
                [backend.to_numpy(r2_score(targets[run], pred[run])) for run in range(n_runs)],
                axis=0,
            )
    return r2, alphas


def _run_peer(s: dict) -> dict:
    from himalaya.backend import set_backend
    from threadpoolctl import threadpool_info, threadpool_limits

    from dnnrsa._encoding_solve import himalaya_backend_name

    activations, parts, patterns, _ = _data(s)
    backend_name = himalaya_backend_name(s["device"])
    threads = s["n_jobs"] if s["n_jobs"] and s["n_jobs"] > 0 else None
    base = _peak_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    backend = set_backend(backend_name, on_error="raise")
    limit = threadpool_limits(limits=threads) if threads else contextlib.nullcontext()
    with limit, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # as dnnrsa does around the solver
        blas = max((pool["num_threads"] for pool in threadpool_info()), default=0)
        r2, alphas = _peer_joint(activations, parts, patterns, s, backend)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "wall": wall,
        "cpu": cpu,
        "peak": _peak_mb(),
        "base": base,
        "backend": backend_name,
        "blas_threads": blas,
        "r2": r2,
        "alphas": alphas,
    }


TASKS = {
    "full": lambda s: _run_dnnrsa(s, joint_only=False),
    "joint": lambda s: _run_dnnrsa(s, joint_only=True),
    "peer": _run_peer,
}


def _child(conn) -> None:
    """Import, say "ready", wait for a task, run it, send back ("ok", result) or
    ("error", traceback); return quietly if no task comes."""
    import himalaya.kernel_ridge  # noqa: F401
    import threadpoolctl  # noqa: F401

    conn.send("ready")
    try:
        task, settings = conn.recv()
    except EOFError:
        return
    try:
        conn.send(("ok", TASKS[task](settings)))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def _start(tasks) -> dict:
    """One idle spawned process per task, all started now, while this one is small."""
    ctx = multiprocessing.get_context("spawn")
    workers = {}
    for task in tasks:
        mine, theirs = ctx.Pipe()
        process = ctx.Process(target=_child, args=(theirs,), name=f"encoding-{task}")
        process.start()
        theirs.close()
        workers[task] = (process, mine)
    for task, (_process, mine) in workers.items():  # imports done before any clock starts
        if mine.recv() != "ready":
            raise RuntimeError(f"the {task} process did not start")
    return workers


def _run(workers: dict, task: str, settings: dict) -> dict:
    process, conn = workers.pop(task)
    conn.send((task, settings))
    try:
        status, value = conn.recv()
    except EOFError:
        process.join()
        raise RuntimeError(
            f"the {task} process died (exit code {process.exitcode}; out of memory?)"
        ) from None
    process.join()
    if status != "ok":
        raise RuntimeError(f"the {task} process failed:\n{value}")
    return value


def _times(out: dict) -> str:
    return (
        f"{out['wall']:.1f} s wall, {out['cpu']:.1f} s CPU, "
        f"peak RSS {out['peak']:.0f} MB (+{out['peak'] - out['base']:.0f} MB during the fit)"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxels", type=int, default=2000, help="235375: MNI 2 mm")
    parser.add_argument("--stimuli", type=int, default=72)
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--n-components", type=int, default=DEFAULT_N_COMPONENTS)
    parser.add_argument("--n-iter", type=int, default=DEFAULT_N_ITER)
    parser.add_argument("--stimulus-folds", type=int, default=None)
    parser.add_argument("--n-jobs", type=int, default=None, help="threads (default: all CPUs)")
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--no-layer-maps", action="store_true")
    parser.add_argument(
        "--voxel-batch",
        type=int,
        default=DEFAULT_VOXEL_BATCH,
        help=f"voxels fitted together, both sides (default {DEFAULT_VOXEL_BATCH}; 0: all)",
    )
    parser.add_argument(
        "--peer",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time the joint model against himalaya's MultipleKernelRidgeCV (default: on)",
    )
    parser.add_argument(
        "--full",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time the whole analysis (default: on; --no-full: the joint model only)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.voxels < 4:
        parser.error("--voxels must be at least 4 (four groups of voxels)")
    if args.voxel_batch < 0:
        parser.error("--voxel-batch must be 0 (all voxels) or positive")
    folds = encoding_folds(args.runs, args.stimuli, args.stimulus_folds)
    settings = vars(args)

    tasks = (["full"] if args.full else []) + (["joint"] if args.peer or not args.full else [])
    tasks += ["peer"] if args.peer else []
    workers = _start(tasks)
    try:
        shape = (args.runs, args.stimuli, args.voxels)
        size = np.prod(shape) * np.dtype(np.float32).itemsize / 2**20
        print(
            f"{args.voxels} voxels x {args.stimuli} stimuli x {args.runs} runs: patterns "
            f"{shape} float32, {size:.1f} MB; {len(BANDS)} bands of 3 layers, "
            f"{args.n_components} components per layer, n_iter {args.n_iter}, stimulus folds "
            f"{args.stimulus_folds} ({len(folds)} outer folds), voxel batch "
            f"{args.voxel_batch or 'all'}, device {args.device}, "
            f"dnnrsa CPU threads {min(resolve_n_jobs(args.n_jobs), len(folds))}"
        )
        print(
            "each part in its own process: peak RSS = its ru_maxrss (data included), "
            "+ = the rise of that peak during the fit"
        )
        if args.full:
            full = _run(workers, "full", settings)
            print(f"fit_encoding: {_times(full)} (himalaya backend {full['backend']})")
            print("group      R2     unique (" + ", ".join(full["bands"]) + ")   shared")
            for name, r2, unique, shared in full["table"]:
                print(
                    f"{name:8s} {r2:+.3f}   {', '.join(f'{u:+.3f}' for u in unique)}   {shared:+.3f}"
                )
        if "joint" in workers:
            joint = _run(workers, "joint", settings)
            print("joint model only:")
            print(
                f"  dnnrsa fit_encoding(partition=False, layer_maps=False): {_times(joint)} "
                f"(himalaya backend {joint['backend']})"
            )
        if args.peer:
            peer = _run(workers, "peer", settings)
            print(
                f"  himalaya MultipleKernelRidgeCV (random search, precomputed kernels): "
                f"{_times(peer)} (backend {peer['backend']}, {peer['blas_threads']} BLAS threads)"
            )
            print(
                f"  peer/dnnrsa: wall {peer['wall'] / joint['wall']:.2f}, "
                f"CPU {peer['cpu'] / joint['cpu']:.2f}, peak RSS {peer['peak'] / joint['peak']:.2f}"
            )
            valid = joint["valid"]
            ours, theirs = joint["r2"][valid], peer["r2"][valid]
            same = np.isclose(peer["alphas"][..., valid], joint["alphas"][..., valid], rtol=1e-4)
            print(
                f"  joint R2 over {valid.sum()} voxels: dnnrsa mean {ours.mean():+.4f}, "
                f"himalaya mean {theirs.mean():+.4f}; max |difference| "
                f"{np.abs(ours - theirs).max():.4f}, correlation across voxels "
                f"{np.corrcoef(ours, theirs)[0, 1]:.4f}; same penalties in "
                f"{100 * same.all(axis=1).mean():.1f}% of fold x voxel fits"
            )
    finally:
        for process, conn in workers.values():  # not run (an earlier part failed)
            conn.close()
            process.join()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
