"""Benchmark: training the four regimes on a RAVDESS-named corpus, with an extrapolation
to the whole audio-visual speech set (24 actors, 1,440 clips).

Generates a RAVDESS subset in the corpus's own naming and container
(``Actor_XX/01-01-EE-II-SS-RR-AA.mp4``, H.264 + AAC): ``--actors`` actors (default 4)
x 60 audio-visual speech clips (8 emotions, 2 intensities but neutral only normal,
2 statements, 2 repetitions). The frames are the demo's rendered faces
(:func:`dnnrsa.demo.clips.render_clip`, rendered at ``--render-size`` pixels and 10
frames a second), enlarged and padded to ``--frame-size`` (default 1280x720, RAVDESS's)
and repeated to ``--fps`` (default 30); the audio is the demo's synthetic voice at
16 kHz. The demo has no neutral or calm face or voice: those clips show sad; the four
takes of an emotion and statement (2 intensities x 2 repetitions) are one encoded file
copied under their four names (decoding them costs what four different files of that
size would). Clips last 3 s (RAVDESS's about 3.5-4 s).

Then, as ``dnnrsa-train --corpus ravdess`` does, it reads the labels from the names
(:func:`dnnrsa.corpora.read_corpus`, default selection: the study's six emotions, 48
clips per actor), splits by actor (:func:`dnnrsa.corpora.actor_split`) and trains the
four regimes with :func:`dnnrsa.train.train_regimes` for ``--epochs`` epochs on the CPU,
and times

1. reading the labels from the names;
2. face detection, decoding and cropping (the part of ``train_regimes`` before the
   first epoch: its wall time minus the epochs' own seconds);
3. the epochs of each regime (from each network's history);
4. the forward pass alone over the validation clips (to split an epoch into its
   training and validation parts).

It prints the figures and extrapolates them to the 24 actors: decoding and cropping
per clip times 1,440 (every audio-visual speech clip) and 1,152 (the default emotions),
and an epoch of each regime from its training and validation clips under the default
split (actors 21-24 held out; identity: statement ``kids`` held out), with the cost
of a training clip averaged over the four regimes (they train the same network on as
many clips; what differs between them is the machine's load) and the machine's load
average printed beside the figures.

Usage::

    nice python benchmarks/corpus_training.py [--actors 4] [--epochs 2] [--jobs 2]
        [--frame-size 1280x720] [--fps 30] [--render-size 96] [--corpus-dir DIR]

``--corpus-dir`` keeps the generated corpus there and reuses it on the next run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

RENDER_FPS = 10
#: Each actor's audio-visual speech clips in RAVDESS: 7 emotions x 2 intensities plus
#: neutral at normal intensity, x 2 statements x 2 repetitions.
CLIPS_PER_ACTOR = 60
FULL_ACTORS = 24
#: The demo's face shown for each corpus emotion (no neutral or calm in the demo).
SHOWN = {
    "01": "sad",
    "02": "sad",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgusted",
    "08": "surprised",
}


def _names(actor: int) -> dict[tuple[str, str], list[str]]:
    """The 60 audio-visual speech names of one actor, by (emotion, statement)."""
    out: dict[tuple[str, str], list[str]] = {}
    for emotion in SHOWN:
        for statement in ("01", "02"):
            out[(emotion, statement)] = [
                f"01-01-{emotion}-{intensity}-{statement}-{repetition}-{actor:02d}.mp4"
                for intensity in (("01",) if emotion == "01" else ("01", "02"))
                for repetition in ("01", "02")
            ]
    return out


def _job(job: dict) -> float:
    """Render one (actor, emotion, statement), encode it and copy it under its other names."""
    import cv2

    from dnnrsa.demo.clips import render_clip
    from dnnrsa.demo.design import EMOTIONS, SAMPLE_RATE, SENTENCES
    from dnnrsa.stimuli import write_clip

    t0 = time.perf_counter()
    shown = SHOWN[job["emotion"]]
    sentence = int(job["statement"]) - 1
    key = (job["face"], EMOTIONS.index(shown), sentence, job["actor"])
    frames, audio = render_clip(
        0,
        key,
        job["params"],
        shown,
        SENTENCES[sentence],
        fps=RENDER_FPS,
        image_size=job["render_size"],
    )
    width, height = job["frame_size"]
    side = min(width, height)
    big = np.stack([cv2.resize(f, (side, side), interpolation=cv2.INTER_LINEAR) for f in frames])
    left, top = (width - side) // 2, (height - side) // 2
    pad = ((0, 0), (top, height - side - top), (left, width - side - left), (0, 0))
    big = np.pad(big, pad, mode="edge")
    big = np.repeat(big, max(1, round(job["fps"] / RENDER_FPS)), axis=0)
    first = job["folder"] / job["names"][0]
    write_clip(first, big, job["fps"], audio, SAMPLE_RATE, threads=1)
    for name in job["names"][1:]:
        shutil.copyfile(first, job["folder"] / name)
    return time.perf_counter() - t0


def generate(root: Path, n_actors: int, args) -> float:
    """Write the corpus (skipping clips already there); return the seconds taken."""
    from dnnrsa.demo.clips import clip_jobs

    demo_jobs, _ = clip_jobs(
        0, {"fps": RENDER_FPS, "image_size": args.render_size, "n_training_takes": 0}, root, root
    )
    faces = {job["key"][0]: job["actor"] for job in demo_jobs}  # demo actors: female, male, ...
    jobs = []
    for actor in range(1, n_actors + 1):
        face = (1 if actor % 2 else 0) + 2 * ((actor - 1) // 2 % 3)  # odd actors male
        folder = root / f"Actor_{actor:02d}"
        for (emotion, statement), names in _names(actor).items():
            if all((folder / n).is_file() for n in names):
                continue
            jobs.append(
                dict(
                    actor=actor,
                    face=face,
                    params=faces[face],
                    emotion=emotion,
                    statement=statement,
                    names=names,
                    folder=folder,
                    render_size=args.render_size,
                    frame_size=args.frame_size,
                    fps=args.fps,
                )
            )
    t0 = time.perf_counter()
    if jobs:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(_job, jobs))
    return time.perf_counter() - t0


def _frame_size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    size = int(width), int(height)
    if min(size) < 16 or size[0] % 2 or size[1] % 2:
        raise argparse.ArgumentTypeError(f"--frame-size must be WxH, even sides; got {text!r}")
    return size


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actors", type=int, default=4, help="actors generated (even)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=2, help="processes generating clips")
    parser.add_argument("--frame-size", type=_frame_size, default=(1280, 720))
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--render-size", type=int, default=96)
    parser.add_argument("--corpus-dir", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    from dnnrsa.corpora import actor_split, corpus_validation, read_corpus, write_corpus_labels
    from dnnrsa.models import load_model
    from dnnrsa.train import REGIMES, TRAINING_THREADS, evaluate, train_regimes

    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="dnnrsa_corpus_bench_"))
    root = args.corpus_dir or work / "ravdess"
    try:
        generate_s = generate(root, args.actors, args)
        n_files = len(list(root.glob("Actor_*/*.mp4")))
        size_mb = sum(p.stat().st_size for p in root.glob("Actor_*/*.mp4")) / 1e6

        t0 = time.perf_counter()
        table = read_corpus(root, "ravdess")
        read_s = time.perf_counter() - t0
        held = actor_split(table)
        columns, values = corpus_validation(table, REGIMES, held)
        labels = write_corpus_labels(table, work / "networks" / "corpus_labels.tsv")

        t0 = time.perf_counter()
        results = train_regimes(
            root,
            labels,
            REGIMES,
            work / "networks",
            validation_column=columns,
            validation_values=values,
            epochs=args.epochs,
            device="cpu",
            progress=False,
        )
        total_s = time.perf_counter() - t0
        epochs_s = {r: [h["seconds"] for h in res.history] for r, res in results.items()}
        prepare_s = total_s - sum(sum(s) for s in epochs_s.values())

        # the forward pass alone, per validation clip (inputs of the recipe's shapes)
        model, spec, _ = load_model(checkpoint=results["emotion"].checkpoint)
        n_val = len(results["emotion"].val_files)
        inputs = {
            m: np.zeros((n_val, *spec.recipe.input_shape(m)), np.float32)
            for m in spec.recipe.modalities
        }
        previous = torch.get_num_threads()
        torch.set_num_threads(TRAINING_THREADS)
        try:
            t0 = time.perf_counter()
            evaluate(model, inputs, np.zeros(n_val, int), modalities=spec.recipe.modalities)
            eval_per_clip = (time.perf_counter() - t0) / n_val
        finally:
            torch.set_num_threads(previous)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    n = len(table)
    width, height = args.frame_size
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"machine: {os.cpu_count()} CPUs; load average {load_before:.1f} at the start, "
        f"{load} (1, 5, 15 min) at the end"
    )
    print(f"corpus: {n_files} clips of {args.actors} actors ({size_mb:.0f} MB), {width}x{height}")
    print(f"  {args.fps} fps, 3 s, H.264 + AAC; generated in {generate_s:.0f} s")
    print(
        f"labels from the names: {read_s * 1000:.0f} ms; {n} clips kept (the study's six emotions)"
    )
    print(
        f"face detection + decoding + cropping of {n} clips: {prepare_s:.1f} s "
        f"({prepare_s / n * 1000:.0f} ms per clip)"
    )
    print(f"forward pass alone: {eval_per_clip * 1000:.1f} ms per clip")
    per_train_clip = {}
    for regime, result in results.items():
        n_train, n_v = len(result.train_files), len(result.val_files)
        mean_epoch = float(np.mean(epochs_s[regime]))
        per_train_clip[regime] = (mean_epoch - n_v * eval_per_clip) / n_train
        print(
            f"  {regime}: {mean_epoch:.1f} s per epoch over {args.epochs} "
            f"({n_train} training, {n_v} validation clips; "
            f"{per_train_clip[regime] * 1000:.0f} ms per training clip)"
        )
    train_s = sum(sum(s) for s in epochs_s.values())
    print(f"training of the four regimes: {train_s:.1f} s; all in all {total_s:.1f} s")

    # extrapolation to the 24 actors (actors 21-24 held out; identity: kids held out)
    full_all = FULL_ACTORS * CLIPS_PER_ACTOR
    full_kept = FULL_ACTORS * n // args.actors
    per_clip = prepare_s / n
    print(f"extrapolated to {FULL_ACTORS} actors (per-clip costs measured above):")
    print(
        f"  decoding + cropping: {per_clip * full_all / 60:.1f} min for all {full_all} clips, "
        f"{per_clip * full_kept / 60:.1f} min for the {full_kept} clips of the six emotions"
    )
    # every regime trains the same network on as many clips: their costs differ by the
    # machine's load only, so their mean is used
    per_train = float(np.mean(list(per_train_clip.values())))
    print(f"  (mean over the regimes: {per_train * 1000:.0f} ms per training clip)")
    held_full = 4 * full_kept // FULL_ACTORS
    splits = {r: (full_kept - held_full, held_full) for r in REGIMES}
    splits["identity"] = (full_kept // 2, full_kept // 2)
    epoch_full = {r: splits[r][0] * per_train + splits[r][1] * eval_per_clip for r in REGIMES}
    for r in REGIMES:
        print(
            f"  {r}: {epoch_full[r]:.0f} s per epoch ({splits[r][0]} training, "
            f"{splits[r][1]} validation clips)"
        )
    one_epoch = sum(epoch_full.values())
    print(
        f"  four regimes: {one_epoch / 60:.1f} min per epoch; 20 epochs (the default): "
        f"{20 * one_epoch / 3600:.1f} h"
    )


if __name__ == "__main__":
    main()
