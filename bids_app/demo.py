"""The one-command demo: ``dnnrsa-demo OUTPUT_DIR``.

From nothing to a group report, on the built-in demo data set:

1. generate the demo data set (72 audio-visual clips of 6 actors x 6 emotions x
   2 sentences, a separate training set, simulated BOLD in MNI space with known
   representational geometry in visual, auditory and superior temporal regions);
2. train the cross-channel network to recognise emotion on the training clips;
3. run the BIDS App at participant level (per-stimulus patterns, layer RDMs,
   searchlight RSA of all 29 layers) and at group level (permutation inference,
   cluster tables, reports);
4. score the group maps against the planted ground truth (area under the ROC
   curve of each part's layers within its planted region) and print where the
   group report is.

Each step is skipped when its result is already there, so a rerun resumes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .. import __version__

PARTS = ("visual", "auditory", "crossmodal")
DEMO_SETTINGS = {
    # per setting: emotion training (epochs, learning rate, renditions of each clip in the
    # training set), group permutations, participants, planted signal-to-noise ratio
    "full": {
        "epochs": 10,
        "n_permutations": 1000,
        "learning_rate": 3e-4,
        "n_subjects": 6,
        "n_training_takes": 5,
        "snr": 2.0,
    },
    "fast": {
        "epochs": 15,
        "n_permutations": 200,
        "learning_rate": 3e-4,
        "n_subjects": 2,
        "n_training_takes": 3,
        "snr": 3.0,  # fewer, larger voxels and two participants: a stronger planted signal
    },
}


def _step(message: str, start: float) -> None:
    print(f"[{time.perf_counter() - start:7.1f} s] {message}", flush=True)


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for the boolean labels ``positive``.

    Computed from ranks (the Mann-Whitney U statistic), ties averaged.
    """
    from scipy.stats import rankdata

    scores = np.asarray(scores, dtype=float)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def evaluate_groundtruth(derivatives: Path, groundtruth: dict[str, Path], *, task: str, space: str):
    """AUC of each part's group-mean map against every planted region mask.

    The group-mean map of a part is the mean over subjects and over that part's
    layers of the Fisher z of the participants' searchlight scores.

    Parameters
    ----------
    derivatives : Path
        Output folder of the BIDS App.
    groundtruth : dict of region -> path of the planted region mask
    task, space : str

    Returns
    -------
    pandas.DataFrame
        Rows: layer groups (visual, auditory, crossmodal); columns: the planted
        regions; values: AUC (voxels in the region against all other voxels that
        have a score).
    """
    import nibabel as nib
    import pandas as pd

    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    affine = shape = None
    pattern = f"sub-*/func/sub-*_task-{task}_space-{space}_model-*_layer-*_statmap.nii.gz"
    for path in sorted(derivatives.glob(pattern)):
        side = json.loads(path.with_name(path.name.replace(".nii.gz", ".json")).read_text())
        part = side.get("Part")
        if part not in PARTS:
            continue
        img = nib.load(path)
        affine, shape = img.affine, img.shape[:3]
        z = np.arctanh(np.clip(np.asarray(img.dataobj, dtype=np.float64), -0.999999, 0.999999))
        sums[part] = sums.get(part, 0.0) + z
        counts[part] = counts.get(part, 0) + 1
    rows = {}
    for part in PARTS:
        if part not in sums:
            continue
        mean = sums[part] / counts[part]
        scored = np.isfinite(mean)
        row = {}
        for region, mask_path in groundtruth.items():
            mask_img = nib.load(mask_path)
            if mask_img.shape[:3] != shape or not np.allclose(mask_img.affine, affine, atol=1e-3):
                from nilearn.image import resample_to_img

                mask_img = resample_to_img(
                    mask_img,
                    nib.Nifti1Image(mean, affine),
                    interpolation="nearest",
                    force_resample=True,
                    copy_header=True,
                )
            region_mask = np.asarray(mask_img.dataobj) > 0
            row[region] = roc_auc(mean[scored], region_mask[scored])
        rows[part] = row
    return pd.DataFrame(rows).T.rename_axis("layers")


_PATHS_FILE = "demo_paths.json"


def _save_paths(data_dir: Path, paths, seed: int, setting: str) -> None:
    """Record a completed generation (written last, so its presence means complete)."""
    import dataclasses

    from .._io import atomic_write

    payload = {
        "seed": seed,
        "setting": setting,
        "version": __version__,
        "options": DEMO_SETTINGS[setting],
    }
    for f in dataclasses.fields(paths):
        value = getattr(paths, f.name)
        if isinstance(value, dict):
            value = {k: str(v) for k, v in value.items()}
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Path):
            value = str(value)
        payload[f.name] = value
    with atomic_write(data_dir / _PATHS_FILE) as fh:
        json.dump(payload, fh, indent=2)


def _load_paths(data_dir: Path, seed: int, setting: str):
    from dnnrsa.datasets import DemoPaths

    record = data_dir / _PATHS_FILE
    if not record.is_file():
        return None
    payload = json.loads(record.read_text())
    recorded = (payload.pop("seed"), payload.pop("setting"), payload.pop("version"))
    options = payload.pop("options", None)
    if recorded != (seed, setting, __version__) or options != DEMO_SETTINGS[setting]:
        return None
    kwargs = {}
    for key, value in payload.items():
        if isinstance(value, dict):
            kwargs[key] = {k: Path(v) for k, v in value.items()}
        elif isinstance(value, list):
            kwargs[key] = tuple(value)
        elif key != "task":
            kwargs[key] = Path(value)
        else:
            kwargs[key] = value
    return DemoPaths(**kwargs)


def _voxel_size_mm(fmriprep_dir: Path) -> float:
    import nibabel as nib

    bold = next(Path(fmriprep_dir).rglob("*_desc-preproc_bold.nii.gz"))
    return float(max(nib.load(bold).header.get_zooms()[:3]))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dnnrsa-demo",
        description="Run dnnrsa end to end on the built-in demo data set.",
    )
    parser.add_argument("output_dir", type=Path, help="folder for the data, models and derivatives")
    parser.add_argument(
        "--setting",
        choices=sorted(DEMO_SETTINGS),
        default="full",
        help="'full' (the README demo) or 'fast' (smaller, for tests)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of every step")
    parser.add_argument(
        "--epochs", type=int, default=None, help="training epochs (default per setting)"
    )
    parser.add_argument("--nprocs", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--version", action="version", version=f"dnnrsa {__version__}")
    return parser


def run_demo(
    output_dir: Path,
    *,
    setting: str = "full",
    seed: int = 0,
    epochs: int | None = None,
    nprocs: int | None = None,
    device: str = "auto",
) -> dict:
    """Run the whole demo; return paths, timings and ground-truth AUCs."""
    import os

    from dnnrsa.datasets import make_demo_dataset
    from dnnrsa.train import train_model

    from .run import main as app_main

    start = time.perf_counter()
    output_dir = Path(output_dir).absolute()
    output_dir.mkdir(parents=True, exist_ok=True)
    nprocs = nprocs or max(1, len(os.sched_getaffinity(0)))
    opts = DEMO_SETTINGS[setting]
    timings = {}

    _step(f"dnnrsa {__version__} demo ({setting} setting) in {output_dir}", start)
    t = time.perf_counter()
    data_dir = output_dir / "data"
    _step(
        "1/4 generating the demo data set (stimuli, training clips, BIDS fMRI, ground truth)", start
    )
    paths = _load_paths(data_dir, seed, setting)
    if paths is None:
        paths = make_demo_dataset(
            data_dir,
            seed=seed,
            setting=setting,
            n_subjects=opts["n_subjects"],
            n_training_takes=opts["n_training_takes"],
            snr=opts["snr"],
            n_jobs=nprocs,
            progress=True,
            overwrite=True,
        )
        _save_paths(data_dir, paths, seed, setting)
    else:
        _step(f"    using the data set already in {data_dir}", start)
    timings["generate_s"] = time.perf_counter() - t

    t = time.perf_counter()
    ckpt = output_dir / "models" / "crosschannel_emotion.pt"
    n_epochs = epochs or opts["epochs"]
    if ckpt.is_file():
        _step(f"2/4 using the trained network {ckpt}", start)
    else:
        _step(f"2/4 training the cross-channel network on emotion ({n_epochs} epochs)", start)
        result = train_model(
            paths.training_dir,
            paths.training_labels,
            "emotion",
            ckpt,
            validation_column="sentence",
            epochs=n_epochs,
            learning_rate=opts["learning_rate"],
            seed=seed,
            device=device,
            progress=True,
        )
        _step(f"    validation accuracy (held-out sentence): {result.val_accuracy:.2f}", start)
    timings["train_s"] = time.perf_counter() - t

    deriv = output_dir / "derivatives" / "dnnrsa"
    work = output_dir / "work"
    radius_mm = 2.0 * _voxel_size_mm(paths.fmriprep_dir)  # spheres of 33 voxels on any grid
    common = [
        "-w",
        str(work),
        "--nprocs",
        str(nprocs),
        "--device",
        device,
        "--seed",
        str(seed),
    ]
    t = time.perf_counter()
    _step("3/4 participant level: patterns, layer RDMs, searchlight RSA of every layer", start)
    rc = app_main(
        [
            str(paths.bids_dir),
            str(deriv),
            "participant",
            "-d",
            str(paths.fmriprep_dir),
            "--checkpoint",
            str(ckpt),
            "--radius-mm",
            f"{radius_mm:g}",
            *common,
        ]
    )
    if rc != 0:
        raise SystemExit(rc)
    timings["participant_s"] = time.perf_counter() - t
    t = time.perf_counter()
    _step("4/4 group level: permutation inference, clusters, reports", start)
    rc = app_main(
        [
            str(paths.bids_dir),
            str(deriv),
            "group",
            "--n-permutations",
            str(opts["n_permutations"]),
            *common,
        ]
    )
    if rc != 0:
        raise SystemExit(rc)
    timings["group_s"] = time.perf_counter() - t

    from .collect import DEFAULT_DERIV_SPACE

    auc = evaluate_groundtruth(
        deriv,
        {k: Path(v) for k, v in paths.region_masks.items()},
        task=paths.task,
        space=DEFAULT_DERIV_SPACE,
    )
    auc_path = deriv / "demo_groundtruth_auc.tsv"
    auc.to_csv(auc_path, sep="\t", float_format="%.3f")
    timings["total_s"] = time.perf_counter() - start
    report = deriv / "group.html"
    print()
    print(
        "Ground truth recovered (AUC of each part's layers, rows, within each planted region, columns):"
    )
    print(auc.round(3).to_string())
    print()
    print("Timings: " + ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in timings.items()))
    print(f"Group report: {report}")
    return {"report": report, "auc": auc, "timings": timings, "derivatives": deriv, "paths": paths}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run_demo(
            args.output_dir,
            setting=args.setting,
            seed=args.seed,
            epochs=args.epochs,
            nprocs=args.nprocs,
            device=args.device,
        )
    except SystemExit as exc:
        return int(exc.code or 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
