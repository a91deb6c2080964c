"""Benchmark: decoding, feature extraction and one training epoch of the cross-channel CNN.

Synthesises 72 three-second audio-visual clips (H.264 + AAC in mp4, 25 fps, 128x128
pixels, 44.1 kHz audio), then times

1. decoding them into model inputs (face crops and log-mel spectrograms);
2. extracting the activations of all 29 layers (no cache);
3. the same extraction again from the on-disk cache (nothing is decoded);
4. one training epoch on the 72 clips (emotion, batch size 16, augmentation on).

Usage::

    python benchmarks/features.py [--n-clips 72] [--device cpu] [--threads N]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def synthesise(folder: Path, n_clips: int, seed: int = 0) -> list[Path]:
    from dnnrsa.stimuli import write_clip

    rng = np.random.default_rng(seed)
    fps, sr, duration_s, side = 25, 44100, 3.0, 128
    n_frames = int(fps * duration_s)
    t = np.arange(int(sr * duration_s)) / sr
    yy, xx = np.mgrid[:side, :side] / side
    paths = []
    for k in range(n_clips):
        cx, cy, r = 0.5 + 0.1 * rng.standard_normal(2).clip(-2, 2).tolist()[0], 0.5, 0.3
        face = (((xx - cx) ** 2 + (yy - cy) ** 2) < r**2).astype(np.float64)
        frames = np.empty((n_frames, side, side, 3), np.uint8)
        for i in range(n_frames):
            level = 80 + 100 * face * (0.8 + 0.2 * np.sin(2 * np.pi * (i / n_frames + k / 7)))
            frames[i] = np.clip(level, 0, 255)[..., None].astype(np.uint8)
        f0 = 120 + 10 * (k % 12)
        audio = 0.2 * np.sin(2 * np.pi * f0 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
        audio += 0.01 * rng.standard_normal(len(t))
        paths.append(write_clip(folder / f"clip{k:02d}.mp4", frames, fps, audio, sr))
    return paths


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-clips", type=int, default=72)
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)

    import torch

    from dnnrsa.features import extract_activations, extract_features, torch_device
    from dnnrsa.models import build_model, get_model
    from dnnrsa.stimuli import prepare_inputs
    from dnnrsa.train import fit

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch_device(args.device)
    print(f"device {device}, torch threads {torch.get_num_threads()}, clips {args.n_clips}")
    tmp = Path(tempfile.mkdtemp(prefix="dnnrsa-bench-"))
    try:
        t0 = time.perf_counter()
        paths = synthesise(tmp / "clips", args.n_clips)
        print(
            f"synthesised {len(paths)} clips in {time.perf_counter() - t0:.1f} s (not timed below)"
        )

        spec = get_model("crosschannel")
        model = build_model(spec, 6)
        t0 = time.perf_counter()
        inputs = prepare_inputs(paths, spec.recipe)
        t_decode = time.perf_counter() - t0
        print(f"decode (frames + audio -> face crops + log-mel): {t_decode:.2f} s")

        modules = {layer.name: layer.module for layer in spec.layers}
        extract_activations(model, {m: a[:2] for m, a in inputs.items()}, modules, device=device)
        t0 = time.perf_counter()
        acts = extract_activations(
            model, inputs, modules, modalities=spec.recipe.modalities, batch_size=32, device=device
        )
        t_extract = time.perf_counter() - t0
        n_values = sum(a[0].size for a in acts.values())
        print(f"extraction, all {len(acts)} layers ({n_values} values per clip): {t_extract:.2f} s")
        print(f"decode + extraction: {t_decode + t_extract:.2f} s")

        cache = tmp / "cache"
        t0 = time.perf_counter()
        extract_features(paths, cache_dir=cache, device=device)
        t_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        extract_features(paths, cache_dir=cache, device=device)
        t_cached = time.perf_counter() - t0
        print(
            f"extract_features from files: first run {t_first:.2f} s (decode, extract, write "
            f"cache), second run {t_cached:.2f} s (from cache, nothing decoded)"
        )

        y = np.arange(len(paths)) % 6
        history = fit(
            model, inputs, y, epochs=1, batch_size=16, device=device, progress=False, seed=0
        )
        print(f"one training epoch ({len(paths)} clips, batch 16): {history[0]['seconds']:.2f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
