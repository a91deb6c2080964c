"""Time the banded ridge encoding of ``dnnrsa.encoding.fit_encoding``.

Data: 72 stimuli, 6 runs, 2,000 voxels (by default), three bands of three layers each
(500 units per layer, mixtures of the band's own latent features plus noise). A
quarter of the voxels is driven by the first band, a quarter by the second, a quarter
by both, a quarter by nothing (signal and noise of equal variance).

It prints the time of the whole analysis (joint model, the three leave-one-band-out
models, the nine per-layer models, the noise ceiling), wall clock and CPU time of
this process, and the mean R² and unique variance of each voxel group, so a faster
version can be checked for the same answers.

Run: ``python benchmarks/encoding.py`` (``--help`` for the settings).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dnnrsa.encoding import DEFAULT_N_COMPONENTS, DEFAULT_N_ITER, fit_encoding

BANDS = ("visual", "auditory", "crossmodal")


def make_data(n_voxels: int, n_stimuli: int, n_runs: int, seed: int):
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
    signal = np.zeros((n_stimuli, n_voxels))
    for i, group in enumerate(drivers):
        cols = slice(i * quarter, n_voxels if i == 3 else (i + 1) * quarter)
        width = cols.stop - cols.start
        for band in group:
            signal[:, cols] += latents[band] @ rng.standard_normal((n_latent, width))
    std = signal.std(axis=0)
    signal = np.where(std > 0, (signal - signal.mean(axis=0)) / np.where(std > 0, std, 1), 0)
    patterns = signal[None] + rng.standard_normal((n_runs, n_stimuli, n_voxels))
    groups = {
        "visual": slice(0, quarter),
        "auditory": slice(quarter, 2 * quarter),
        "both": slice(2 * quarter, 3 * quarter),
        "none": slice(3 * quarter, n_voxels),
    }
    return activations, parts, patterns, groups


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxels", type=int, default=2000)
    parser.add_argument("--stimuli", type=int, default=72)
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--n-components", type=int, default=DEFAULT_N_COMPONENTS)
    parser.add_argument("--n-iter", type=int, default=DEFAULT_N_ITER)
    parser.add_argument("--stimulus-folds", type=int, default=None)
    parser.add_argument("--n-jobs", type=int, default=None, help="threads (default: all CPUs)")
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--no-layer-maps", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    activations, parts, patterns, groups = make_data(
        args.voxels, args.stimuli, args.runs, args.seed
    )
    print(
        f"{args.voxels} voxels x {args.stimuli} stimuli x {args.runs} runs, "
        f"{len(BANDS)} bands of 3 layers, {args.n_components} components per layer, "
        f"n_iter {args.n_iter}, stimulus folds {args.stimulus_folds}, device {args.device}"
    )
    wall, cpu = time.perf_counter(), time.process_time()
    result = fit_encoding(
        activations,
        parts,
        patterns,
        n_components=args.n_components,
        n_iter=args.n_iter,
        stimulus_folds=args.stimulus_folds,
        layer_maps=not args.no_layer_maps,
        device=args.device,
        n_jobs=args.n_jobs,
        random_state=args.seed,
    )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"fit_encoding: {wall:.1f} s wall, {cpu:.1f} s CPU (himalaya backend {result.backend})")
    print("group      R2     unique (" + ", ".join(result.bands) + ")   shared")
    for name, cols in groups.items():
        unique = ", ".join(f"{u:+.3f}" for u in result.unique[:, cols].mean(axis=1))
        print(
            f"{name:8s} {result.r2[cols].mean():+.3f}   {unique}   {result.shared[cols].mean():+.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
