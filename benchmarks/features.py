"""Benchmark: decoding, feature extraction and one training epoch of the cross-channel CNN;
with ``--networks``, extraction time and peak memory of every network.

Synthesises 72 three-second audio-visual clips (H.264 + AAC in mp4, 25 fps, 128x128
pixels, 44.1 kHz audio), then times

1. decoding them into model inputs (face crops and log-mel spectrograms);
2. extracting the activations of all 29 layers (no cache);
3. the same extraction again from the on-disk cache (nothing is decoded);
4. one training epoch on the 72 clips (emotion, batch size 16, augmentation on).

With ``--networks [NAME ...]`` (default: every registered network, and ``timm/resnet50``
when timm is installed) it instead runs, for each network in a process of its own, what
``dnnrsa.features.extract_features`` does without a cache, on the same clips and with the
untrained (seeded random) weights: building the network, decoding the clips with its
recipe, the forward passes recording every layer. It prints one row per network: the
seconds of each step, the values per clip over all layers, and the process's peak
resident memory (and the GPU's peak allocation when the device is a GPU).

With ``--shared-decoding [NAME ...]`` (default: ``torchvision/r3d_18``,
``torchvision/resnet18`` and ``torchaudio/hubert_base``) it times making the networks'
inputs from the same clips, as the BIDS App does: once with every network decoding every
clip itself, once with the clips decoded once into a store on disk
(:class:`dnnrsa._decodedclips.DecodedClips`, what the workflow's ``decode_stimuli`` node
does) that every network's recipe reads. It prints the seconds of each, their ratio, the
decodings counted and the store's size, and checks that the inputs are the same.

Usage::

    python benchmarks/features.py [--n-clips 72] [--device cpu] [--threads N]
    python benchmarks/features.py --networks [NAME ...] [--n-clips 72] [--device auto]
    python benchmarks/features.py --shared-decoding [NAME ...] [--n-clips 72] [--size 128x128]
        [--duration 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def synthesise(
    folder: Path, n_clips: int, seed: int = 0, size=(128, 128), duration_s: float = 3.0
) -> list[Path]:
    """``n_clips`` clips of ``duration_s`` seconds and ``size`` (height, width) pixels at
    25 fps, 44.1 kHz audio."""
    from dnnrsa.stimuli import write_clip

    rng = np.random.default_rng(seed)
    fps, sr = 25, 44100
    height, width = size
    n_frames = int(fps * duration_s)
    t = np.arange(int(sr * duration_s)) / sr
    yy, xx = np.mgrid[:height, :width] / min(height, width)
    paths = []
    for k in range(n_clips):
        cx, cy, r = 0.5 + 0.1 * rng.standard_normal(2).clip(-2, 2).tolist()[0], 0.5, 0.3
        face = (((xx - cx) ** 2 + (yy - cy) ** 2) < r**2).astype(np.float64)
        frames = np.empty((n_frames, height, width, 3), np.uint8)
        for i in range(n_frames):
            level = 80 + 100 * face * (0.8 + 0.2 * np.sin(2 * np.pi * (i / n_frames + k / 7)))
            frames[i] = np.clip(level, 0, 255)[..., None].astype(np.uint8)
        f0 = 120 + 10 * (k % 12)
        audio = 0.2 * np.sin(2 * np.pi * f0 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
        audio += 0.01 * rng.standard_normal(len(t))
        paths.append(write_clip(folder / f"clip{k:02d}.mp4", frames, fps, audio, sr))
    return paths


def _one_network(name: str, clips: Path, device: str, batch_size: int, n_jobs: int) -> dict:
    """Build, decode, forward for one network on the clips of a folder (in this process)."""
    import resource

    import torch

    from dnnrsa.features import extract_activations, torch_device
    from dnnrsa.models import get_model, load_model
    from dnnrsa.models.standard import load_network
    from dnnrsa.stimuli import prepare_inputs

    device = torch_device(device)
    paths = sorted(clips.glob("*.mp4"))
    t0 = time.perf_counter()
    if get_model(name).weights is None:
        net, spec, _ = load_model(name, seed=0)
    else:
        net, spec, _ = load_network(name, "random", seed=0)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    inputs = prepare_inputs(paths, spec.recipe, n_jobs=n_jobs)
    t_decode = time.perf_counter() - t0
    modules = {layer.name: layer.module for layer in spec.layers}
    modalities = spec.recipe.modalities
    first = {m: a[:1] for m, a in inputs.items()}  # warm-up (kernels, allocator), not timed
    extract_activations(net, first, modules, modalities=modalities, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    acts = extract_activations(
        net, inputs, modules, modalities=modalities, batch_size=batch_size, device=device
    )
    if device == "cuda":
        torch.cuda.synchronize()
    t_forward = time.perf_counter() - t0
    row = {
        "network": name,
        "device": device,
        "clips": len(paths),
        "layers": len(acts),
        "values_per_clip": int(sum(a[0].size for a in acts.values())),
        "build_s": t_build,
        "decode_s": t_decode,
        "forward_s": t_forward,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if device == "cuda":
        row["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return row


def _networks_table(args) -> None:
    """One child process per network; a Markdown table of their rows."""
    from dnnrsa.models import available_models

    names = list(args.networks) or available_models()
    if not args.networks:
        try:
            import timm  # noqa: F401

            names.append("timm/resnet50")
        except ImportError:
            pass
    tmp = Path(tempfile.mkdtemp(prefix="dnnrsa-bench-networks-"))
    try:
        t0 = time.perf_counter()
        synthesise(tmp / "clips", args.n_clips)
        print(
            f"synthesised {args.n_clips} clips (3 s, 128x128, 25 fps, 44.1 kHz) in "
            f"{time.perf_counter() - t0:.1f} s; device {args.device}, batch {args.batch_size}"
        )
        print()
        print(
            "| network | layers | values per clip | build s | decode s | forward s | "
            "peak RSS MB | GPU peak MB |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name in names:
            command = [sys.executable, __file__, "--one", name, "--clips", str(tmp / "clips")]
            command += ["--device", args.device, "--batch-size", str(args.batch_size)]
            if args.threads:
                command += ["--threads", str(args.threads)]
            proc = subprocess.run(command, capture_output=True, text=True)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode or not lines:
                tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
                print(f"| {name} | failed (exit {proc.returncode}): {tail} |||||||")
                continue
            r = json.loads(lines[-1])
            gpu = f"{r['gpu_peak_mb']:.0f}" if "gpu_peak_mb" in r else "-"
            print(
                f"| {name} | {r['layers']} | {r['values_per_clip']:,} | {r['build_s']:.1f} | "
                f"{r['decode_s']:.1f} | {r['forward_s']:.1f} | {r['peak_rss_mb']:.0f} | {gpu} |",
                flush=True,
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


SHARED_DECODING_NETWORKS = ("torchvision/r3d_18", "torchvision/resnet18", "torchaudio/hubert_base")


def _shared_decoding(args) -> None:
    """The networks' inputs made with each network decoding every clip, then from clips
    decoded once into a store; the seconds of each and their ratio."""
    from collections import Counter

    from dnnrsa import _decode
    from dnnrsa._decodedclips import DecodedClips
    from dnnrsa.models import get_model
    from dnnrsa.stimuli import prepare_inputs

    names = list(args.shared_decoding) or list(SHARED_DECODING_NETWORKS)
    recipes = {name: get_model(name).recipe for name in names}
    n_jobs = args.threads or -1
    decodings, decoding_s = Counter(), [0.0]
    real = _decode._decode_streams

    def counting(container, path, **kwargs):
        decodings[Path(path).name] += 1
        t0 = time.perf_counter()
        try:
            return real(container, path, **kwargs)
        finally:
            decoding_s[0] += time.perf_counter() - t0

    _decode._decode_streams = counting
    tmp = Path(tempfile.mkdtemp(prefix="dnnrsa-bench-shared-"))
    try:
        t0 = time.perf_counter()
        height, width = args.size
        paths = synthesise(
            tmp / "clips", args.n_clips, size=(height, width), duration_s=args.duration
        )
        print(
            f"synthesised {len(paths)} clips ({args.duration:g} s, {width}x{height}, 25 fps, "
            f"44.1 kHz) in "
            f"{time.perf_counter() - t0:.1f} s; networks {', '.join(names)}; n_jobs {n_jobs}"
        )
        per_network, inputs = {}, {}
        for name, recipe in recipes.items():
            t0 = time.perf_counter()
            inputs[name] = prepare_inputs(paths, recipe, n_jobs=n_jobs)
            per_network[name] = time.perf_counter() - t0
        alone = sum(per_network.values())
        n_alone, decode_alone = sum(decodings.values()), decoding_s[0]
        decodings.clear()
        decoding_s[0] = 0.0
        counts = [r.n_frames for r in recipes.values() if "visual" in r.modalities]
        store = DecodedClips(tmp / "decoded_clips", counts)
        t0 = time.perf_counter()
        store.fill(paths, n_jobs=n_jobs)
        fill = time.perf_counter() - t0
        reads = {}
        for name, recipe in recipes.items():
            t0 = time.perf_counter()
            shared = prepare_inputs(paths, recipe, n_jobs=n_jobs, store=store)
            reads[name] = time.perf_counter() - t0
            same = all(np.array_equal(shared[m], inputs[name][m]) for m in shared)
            if not same:
                raise SystemExit(f"{name}: the inputs from the store differ from the direct ones")
        together = fill + sum(reads.values())
        size_mb = sum(f.stat().st_size for f in store.root.glob("*.npz")) / 2**20
        print()
        print("| network | each decodes s | from the store s |")
        print("|---|---:|---:|")
        for name in names:
            print(f"| {name} | {per_network[name]:.2f} | {reads[name]:.2f} |")
        print(f"| (decoding once: decode_stimuli) | | {fill:.2f} |")
        print(f"| total | {alone:.2f} | {together:.2f} |")
        print()
        decode_once = decoding_s[0]
        print(
            f"{len(paths)} clips, {len(names)} networks: decoding (time in the decoder) "
            f"{decode_alone:.2f} s per network ({n_alone} decodings) vs {decode_once:.2f} s "
            f"once, shared ({sum(decodings.values())} decodings): ratio "
            f"{decode_alone / decode_once:.2f}"
        )
        print(
            f"the networks' inputs in all (decoding, the store written and read, "
            f"preprocessing): {alone:.2f} s vs {together:.2f} s: ratio {alone / together:.2f} "
            f"(store {size_mb:.0f} MB, frames kept for counts {counts}); inputs identical"
        )
    finally:
        _decode._decode_streams = real
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-clips", type=int, default=72)
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--networks", nargs="*", default=None, help="the per-network table (default: all)"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="with --networks")
    parser.add_argument(
        "--shared-decoding",
        nargs="*",
        default=None,
        help="inputs of networks decoded per network vs once, shared (default: "
        + ", ".join(SHARED_DECODING_NETWORKS)
        + ")",
    )
    parser.add_argument(
        "--size",
        type=lambda text: tuple(int(v) for v in text.split("x"))[::-1],
        default=(128, 128),
        help="with --shared-decoding: the clips' WIDTHxHEIGHT (default 128x128)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=3.0,
        help="with --shared-decoding: the clips' length in seconds (default 3)",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--clips", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        row = _one_network(args.one, args.clips, args.device, args.batch_size, args.threads or -1)
        print(json.dumps(row))
        return
    if args.networks is not None:
        _networks_table(args)
        return
    if args.shared_decoding is not None:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        _shared_decoding(args)
        return

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
