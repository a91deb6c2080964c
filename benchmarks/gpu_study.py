"""Study-scale GPU benchmark: searchlight, TFCE, max-T and feature extraction on CUDA.

The Python part of ``benchmarks/gpu_check.sh``. It needs numpy, scipy, torch, CuPy,
tqdm and threadpoolctl, and no nibabel or nilearn: the brain is an ellipsoid on a
2 mm grid of MNI's shape (91 x 109 x 91) with about as many voxels as the MNI 2 mm
brain mask (235,000), and every array is built here. Stages, each on the GPU and
(smaller, scaled up where marked) on this machine's CPU for reference:

1. searchlight: ``searchlight_rsa_array`` on the whole ellipsoid, radius 6 mm,
   6 runs x 72 conditions (averaged per condition), correlation distance,
   116 random model RDMs, Spearman;
2. features: all 29 layers of four random-weight ``crosschannel`` networks for
   72 stimuli (random inputs of the recipe's shapes);
3. max-T: ``sign_flip_test`` over 116 maps at once (20 subjects), ``--n-perm``
   permutations;
4. TFCE (last, the longest): ``sign_flip_test(tfce=True)`` of one map, 20 subjects,
   ``--tfce-perm`` permutations (5,000) on the GPU, in batches; a pilot of
   ``--pilot-perm`` permutations first, and the full count only when the pilot
   predicts it fits in ``--stage-budget`` seconds (else the pilot's rate, scaled).
   The CPU reference of a mask of 20,000 voxels or more runs dnnrsa's compiled TFCE,
   which needs numba: where numba does not import, the reference is skipped (the row
   says why) and the GPU figure stays.

``--cpu`` is a dry run on the CPU at a tiny size (a small ellipsoid, a few
permutations): it checks the script, not the speed. Results go to ``--out``
(default ``$OUT`` or the current folder) as ``gpu_study.json`` and are printed.

Run: ``python benchmarks/gpu_study.py`` (on the GPU machine) or
``python benchmarks/gpu_study.py --cpu``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np

N_CONDITIONS = 72
N_RUNS = 6
N_MODELS = 116
N_SUBJECTS = 20


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="tiny dry run on the CPU")
    parser.add_argument("--tfce-perm", type=int, default=5000)
    parser.add_argument("--pilot-perm", type=int, default=200)
    parser.add_argument("--n-perm", type=int, default=5000, help="max-T permutations")
    parser.add_argument("--cpu-spheres", type=int, default=20000, help="CPU reference subset")
    parser.add_argument("--cpu-tfce-perm", type=int, default=10, help="CPU reference TFCE perms")
    parser.add_argument("--cpu-n-perm", type=int, default=100, help="CPU reference max-T perms")
    parser.add_argument("--stage-budget", type=float, default=90.0, help="seconds per stage")
    parser.add_argument("--skip", default="", help="stages to skip, comma-separated")
    parser.add_argument("--out", default=None)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def ellipsoid_mask(shape, semi_axes) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(n) - (n - 1) / 2 for n in shape], indexing="ij")
    r2 = sum((g / a) ** 2 for g, a in zip(grids, semi_axes, strict=True))
    return r2 <= 1.0


def smooth_maps(mask, n_maps, rng, xp=np):
    """Smooth random maps in mask order, unit variance, a planted effect on the first 1%."""
    from scipy import ndimage

    rows = [
        ndimage.gaussian_filter(rng.standard_normal(mask.shape), 1.0)[mask] for _ in range(n_maps)
    ]
    data = np.stack(rows)
    data /= data.std(axis=1, keepdims=True)
    data[:, : max(1, data.shape[1] // 100)] += 0.8
    return data


class Recorder:
    def __init__(self, device_name):
        self.rows = []
        self.device_name = device_name

    def add(self, stage, gpu_s=None, cpu_s=None, note=""):
        row = {"stage": stage, "gpu_s": gpu_s, "cpu_s": cpu_s, "note": note}
        self.rows.append(row)
        print(self.format(row), flush=True)

    @staticmethod
    def format(row):
        gpu = "" if row["gpu_s"] is None else f"{row['gpu_s']:.2f}"
        cpu = "" if row["cpu_s"] is None else f"{row['cpu_s']:.2f}"
        ratio = ""
        if row["gpu_s"] and row["cpu_s"]:
            ratio = f"{row['cpu_s'] / row['gpu_s']:.1f}x"
        return f"{row['stage']:<44}{gpu:>10}{cpu:>11}{ratio:>9}  {row['note']}"

    def header(self):
        print(f"{'stage':<44}{'device s':>10}{'CPU s':>11}{'ratio':>9}  note", flush=True)


def sync(xp):
    if xp is not np:
        xp.cuda.Device().synchronize()


def timed(func, xp):
    sync(xp)
    t0 = time.perf_counter()
    out = func()
    sync(xp)
    return out, time.perf_counter() - t0


def stage_searchlight(args, rec, mask, affine, xp, rng):
    from dnnrsa._neighbourhoods import Neighbourhoods, mask_neighbourhoods
    from dnnrsa.backend import to_numpy
    from dnnrsa.searchlight import searchlight_rsa_array

    t0 = time.perf_counter()
    nb = mask_neighbourhoods(mask, affine, 6.0)
    print(f"neighbourhoods: {nb.n_centres} spheres in {time.perf_counter() - t0:.1f} s")
    n_pairs = N_CONDITIONS * (N_CONDITIONS - 1) // 2
    conditions = np.tile(np.arange(N_CONDITIONS), N_RUNS)
    patterns = rng.standard_normal((conditions.size, nb.n_voxels))
    patterns += rng.standard_normal((N_CONDITIONS, 1))[conditions]
    models = rng.random((N_MODELS, n_pairs))
    kwargs = {"conditions": conditions, "min_voxels": 1}

    def subset(n):
        idx = np.linspace(0, nb.n_centres - 1, min(n, nb.n_centres)).astype(np.int64)
        return Neighbourhoods(nb.indices[idx], nb.sizes[idx], nb.centres[idx], nb.n_voxels)

    gpu_s = None
    if xp is not np:
        data = xp.asarray(patterns)
        to_numpy(searchlight_rsa_array(data, subset(2000), models, xp=xp, **kwargs))  # warm-up
        _, gpu_s = timed(
            lambda: to_numpy(
                searchlight_rsa_array(
                    xp.asarray(patterns), nb, models, xp=xp, memory_budget_mb=8192, **kwargs
                )
            ),
            xp,
        )
    small = subset(args.cpu_spheres)
    _, cpu_s = timed(lambda: searchlight_rsa_array(patterns, small, models, xp=np, **kwargs), np)
    cpu_s *= nb.n_centres / small.n_centres
    n_cores = len(os.sched_getaffinity(0))
    rec.add(
        f"searchlight {nb.n_centres} spheres x {N_MODELS} models",
        gpu_s,
        cpu_s,
        f"CPU: {small.n_centres} spheres on {n_cores} cores, scaled",
    )


def cpu_tfce_backend(n_vox):
    """How this machine's CPU computes the TFCE of a mask of ``n_vox`` voxels.

    Returns ``(usable, description)``: masks of ``GRAPH_MIN_VOXELS`` voxels or more go
    through the flooding compiled with numba, which is not usable where numba does not
    import (absent, or refusing this numpy).
    """
    from dnnrsa._tfce import GRAPH_MIN_VOXELS

    if n_vox < GRAPH_MIN_VOXELS:
        return True, "labelling at each threshold"
    try:
        import numba
    except Exception as exc:  # ImportError, or numba refusing the installed numpy
        return False, (
            f"numba does not import ({type(exc).__name__}: {exc}); dnnrsa's CPU TFCE "
            f"of masks of {GRAPH_MIN_VOXELS:,} voxels or more needs it"
        )
    return True, f"compiled flooding, numba {numba.__version__}"


def stage_tfce(args, rec, mask, xp, rng):
    from dnnrsa.stats import sign_flip_test

    data = smooth_maps(mask, N_SUBJECTS, rng)
    n_vox = data.shape[1]
    cpu_ok, cpu_how = cpu_tfce_backend(n_vox)
    print(f"TFCE CPU reference: {cpu_how if cpu_ok else 'SKIPPED, ' + cpu_how}", flush=True)

    def run(n_perm, on):
        if on is np:
            return sign_flip_test(data, mask=mask, tfce=True, n_permutations=n_perm, random_state=0)
        return sign_flip_test(
            xp.asarray(data),
            mask=mask,
            tfce=True,
            n_permutations=n_perm,
            random_state=0,
            device="cuda",
            max_memory_mb=16384,
        )

    gpu_s, note = None, ""
    if xp is not np:
        run(4, xp)  # warm-up: kernels, memory pool
        _, pilot = timed(lambda: run(args.pilot_perm, xp), xp)
        predicted = pilot * args.tfce_perm / args.pilot_perm
        if predicted <= args.stage_budget:
            _, gpu_s = timed(lambda: run(args.tfce_perm, xp), xp)
            note = "measured"
        else:
            gpu_s = predicted
            note = f"scaled from {args.pilot_perm} permutations ({pilot:.1f} s)"
    cpu_s, cpu_note = None, f"CPU reference skipped: {cpu_how}"
    if cpu_ok:
        try:  # a failing CPU reference keeps the GPU figure measured above
            run(1, np)  # warm-up: numba compiles, or loads its cache, outside the timing
            _, cpu_s = timed(lambda: run(args.cpu_tfce_perm, np), np)
            cpu_s *= args.tfce_perm / args.cpu_tfce_perm
            cpu_note = f"CPU ({cpu_how}): {args.cpu_tfce_perm} permutations, scaled"
        except Exception as exc:
            cpu_note = f"CPU reference FAILED: {type(exc).__name__}: {exc}"
    rec.add(
        f"TFCE 1 map ({n_vox} vox), {args.tfce_perm} perm",
        gpu_s,
        cpu_s,
        "; ".join(x for x in (note, cpu_note) if x),
    )


def stage_max_t(args, rec, mask, xp, rng):
    from dnnrsa.stats import sign_flip_test

    one = smooth_maps(mask, N_SUBJECTS, rng).astype(np.float32)
    n_vox = one.shape[1]
    data = np.empty((N_SUBJECTS, N_MODELS * n_vox), dtype=np.float32)
    for k in range(N_MODELS):
        data[:, k * n_vox : (k + 1) * n_vox] = np.roll(one, 97 * k, axis=1)
    data += 0.3 * rng.standard_normal(data.shape).astype(np.float32)
    gpu_s = None
    if xp is not np:
        sign_flip_test(xp.asarray(data[:, :n_vox]), n_permutations=16, device="cuda")
        _, gpu_s = timed(
            lambda: sign_flip_test(
                xp.asarray(data),
                n_permutations=args.n_perm,
                random_state=0,
                device="cuda",
                max_memory_mb=16384,
            ),
            xp,
        )
    _, cpu_s = timed(
        lambda: sign_flip_test(data, n_permutations=args.cpu_n_perm, random_state=0), np
    )
    cpu_s *= args.n_perm / args.cpu_n_perm
    rec.add(
        f"max-T {N_MODELS} maps x {n_vox} vox, {args.n_perm} perm",
        gpu_s,
        cpu_s,
        f"CPU: {args.cpu_n_perm} permutations, scaled",
    )


def stage_features(args, rec, xp, rng):
    import torch

    from dnnrsa.features import extract_activations
    from dnnrsa.models import build_model, get_model
    from dnnrsa.rdm import compute_rdm

    spec = get_model("crosschannel")
    n_stim = N_CONDITIONS if not args.cpu else 8
    inputs = {
        m: rng.standard_normal((n_stim, *spec.recipe.input_shape(m))).astype(np.float32)
        for m in spec.recipe.modalities
    }
    modules = {layer.name: layer.module for layer in spec.layers}
    models = [build_model(spec, 6, seed=k) for k in range(4)]

    def run(device):
        rdms = []
        for model in models:
            acts = extract_activations(
                model, inputs, modules, modalities=spec.recipe.modalities, device=device
            )
            rdms += [compute_rdm(a.reshape(n_stim, -1)) for a in acts.values()]
        return rdms

    gpu_s = None
    if xp is not np:
        run("cuda")  # warm-up: cuDNN, kernels
        _, gpu_s = timed(lambda: (run("cuda"), torch.cuda.synchronize()), xp)
    _, cpu_s = timed(lambda: run("cpu"), np)
    rec.add(
        f"features: 4 nets x 29 layers, {n_stim} stimuli",
        gpu_s,
        cpu_s,
        f"torch CPU threads {torch.get_num_threads()}",
    )


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if args.cpu:
        xp, device_name = np, "cpu (dry run)"
        shape, axes = (30, 34, 30), (11, 14, 11)
        args.tfce_perm, args.pilot_perm, args.n_perm = 20, 4, 20
        args.cpu_tfce_perm, args.cpu_n_perm = 4, 10
        args.cpu_spheres = min(args.cpu_spheres, 1000)
    else:
        import cupy

        xp = cupy
        props = cupy.cuda.runtime.getDeviceProperties(0)
        device_name = props["name"].decode()
        shape, axes = (91, 109, 91), (34.5, 45.0, 36.5)
    mask = ellipsoid_mask(shape, axes)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    rng = np.random.default_rng(args.seed)
    out = Path(args.out or os.environ.get("OUT") or ".")
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"device {device_name}; grid {shape} at 2 mm, {int(mask.sum())} voxels; "
        f"{len(os.sched_getaffinity(0))} CPU cores; numpy {np.__version__}; "
        f"python {platform.python_version()}"
    )
    rec = Recorder(device_name)
    rec.header()
    stages = {
        "searchlight": lambda: stage_searchlight(args, rec, mask, affine, xp, rng),
        "features": lambda: stage_features(args, rec, xp, rng),
        "maxt": lambda: stage_max_t(args, rec, mask, xp, rng),
        "tfce": lambda: stage_tfce(args, rec, mask, xp, rng),  # last: the longest
    }

    def save():  # after every stage, so that a run stopped by a timeout keeps its figures
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        result = {
            "device": device_name,
            "voxels": int(mask.sum()),
            "rows": rec.rows,
            "peak_rss_gib": peak,
        }
        (out / "gpu_study.json").write_text(json.dumps(result, indent=2))
        return peak

    for name, run in stages.items():
        if name in skip:
            continue
        try:
            run()
        except Exception as exc:  # report and go on: one failing stage keeps the others
            rec.add(name, note=f"FAILED: {type(exc).__name__}: {exc}")
        if xp is not np:
            xp.get_default_memory_pool().free_all_blocks()
        save()
    print(f"peak resident memory of the process: {save():.2f} GiB")
    return 1 if any("FAILED" in r["note"] for r in rec.rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
