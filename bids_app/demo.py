"""The one-command demo: ``dnnrsa-demo OUTPUT_DIR``.

From nothing to a group report, on the built-in demo data set:

1. generate the demo data set (72 audio-visual clips of 6 actors x 6 emotions x
   2 sentences, a separate training set, simulated BOLD in MNI space with known
   representational geometry in visual, auditory and superior temporal regions);
2. train the cross-channel network to recognise emotion on the training clips;
3. run the BIDS App at participant level (per-stimulus patterns, layer RDMs,
   searchlight RSA of all 29 layers of each trained network and of every layer of an
   untrained standard network, :data:`DEMO_NETWORK`, the RDMs of the ground-truth
   regions and of a negative-control region, the emotion network's encoding model in
   those regions) and at group level (permutation inference, cluster tables, the
   evaluation of every layer in each region, reports);
4. score the group maps against the planted ground truth with
   :func:`dnnrsa.demo.evaluate_groundtruth` (area under the ROC curve of each
   part's layers within its planted region), check the region evaluations with
   :func:`dnnrsa.demo.roi_acceptance` and the encoding models' variance partition
   with :func:`dnnrsa.demo.encoding_partition`, and print where the group report is.

Each step is skipped when its result is already there, so a rerun resumes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from dnnrsa._cpus import available_cpus
from dnnrsa.demo import GENERATOR_REVISION, DemoPaths, evaluate_groundtruth, make_demo_dataset

from .. import __version__
from .errors import AppError, CommandParser, handle_errors

#: The networks the demo trains, one per regime of the study, from the same seed, and the
#: column each is validated on (held-out sentence; the sentence network on an unseen actor).
DEMO_REGIMES = {
    "emotion": "sentence",
    "identity": "sentence",
    "gender": "sentence",
    "sentence": "identity",
}

DEMO_SETTINGS = {
    # per setting: training of the four networks (epochs at most, stopping once the
    # validation accuracy has been 1 for stop_after_perfect epochs, learning rate,
    # renditions of each clip in the training set), group permutations, participants,
    # planted signal-to-noise ratio
    "full": {
        "epochs": 30,
        "stop_after_perfect": 3,
        "n_permutations": 1000,
        "learning_rate": 3e-4,
        "n_subjects": 8,
        "n_training_takes": 5,
        "snr": 2.0,
    },
    "fast": {
        "epochs": 15,
        "stop_after_perfect": 3,
        "n_permutations": 200,
        "learning_rate": 3e-4,
        "n_subjects": 2,
        "n_training_takes": 3,
        "snr": 3.0,  # fewer, larger voxels and two participants: a stronger planted signal
    },
}


def _step(message: str, start: float) -> None:
    print(f"[{time.perf_counter() - start:7.1f} s] {message}", flush=True)


_PATHS_FILE = "demo_paths.json"


def _save_paths(data_dir: Path, paths, seed: int, setting: str) -> None:
    """Record a completed generation (written last, so its presence means complete)."""
    import dataclasses

    from .._io import atomic_write

    payload = {
        "seed": seed,
        "setting": setting,
        "version": __version__,
        "generator": GENERATOR_REVISION,
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
    record = data_dir / _PATHS_FILE
    if not record.is_file():
        return None
    payload = json.loads(record.read_text())
    recorded = (payload.pop("seed"), payload.pop("setting"), payload.pop("version"))
    options = payload.pop("options", None)
    if payload.pop("generator", None) != GENERATOR_REVISION:
        return None  # written by another revision of the generator
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


class StepFailed(AppError):
    """A BIDS App level of the demo failed; its exit code is the demo's."""

    def __init__(self, step: str, exit_code: int):
        super().__init__(f"the {step} level of the BIDS App failed (exit code {exit_code})")
        self.exit_code = exit_code


def build_parser() -> argparse.ArgumentParser:
    """Parser of ``dnnrsa-demo`` (no side effects)."""
    parser = CommandParser(
        prog="dnnrsa-demo",
        description="Run dnnrsa end to end on the built-in demo data set.",
    )
    parser.add_argument("output_dir", type=Path, help="folder for the data, models and derivatives")
    parser.add_argument(
        "--setting",
        choices=sorted(DEMO_SETTINGS),
        default="full",
        help="'full' (the README demo) or 'fast' (smaller, for tests) (default: full)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed of every step (default: 0)"
    )
    parser.add_argument(
        "--epochs",
        type=int,
        help="training epochs (default: "
        + ", ".join(f"{v['epochs']} in the {k} setting" for k, v in DEMO_SETTINGS.items())
        + ")",
    )
    parser.add_argument(
        "--nprocs", type=int, help="processes (default: every CPU this process may use)"
    )
    parser.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="where the network trains and the searchlight runs; auto uses a CUDA GPU when "
        "there is one (default: auto)",
    )
    parser.add_argument("--version", action="version", version=f"dnnrsa {__version__}")
    return parser


def _generate(data_dir: Path, *, setting: str, seed: int, nprocs: int, start: float) -> DemoPaths:
    """Step 1: the demo data set, or the one already in ``data_dir`` for the same options."""
    _step(
        "1/4 generating the demo data set (stimuli, training clips, BIDS fMRI, ground truth)", start
    )
    paths = _load_paths(data_dir, seed, setting)
    if paths is not None:
        _step(f"    using the data set already in {data_dir}", start)
        return paths
    opts = DEMO_SETTINGS[setting]
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
    return paths


def _train(paths: DemoPaths, models_dir: Path, *, setting, seed, epochs, device, start):
    """Step 2: train one cross-channel network per regime of the study (emotion, identity,
    gender, sentence) from the same seed, unless their checkpoints exist; return them."""
    from dnnrsa.train import train_regimes

    opts = DEMO_SETTINGS[setting]
    n_epochs = epochs or opts["epochs"]
    ckpts = [models_dir / f"{regime}.pt" for regime in DEMO_REGIMES]
    if all(c.is_file() for c in ckpts):
        _step(f"2/4 using the trained networks in {models_dir}", start)
        return ckpts
    _step(
        f"2/4 training the cross-channel network on {', '.join(DEMO_REGIMES)} "
        f"(at most {n_epochs} epochs each, fewer once every validation clip has been "
        f"right for {opts['stop_after_perfect']})",
        start,
    )
    results = train_regimes(
        paths.training_dir,
        paths.training_labels,
        list(DEMO_REGIMES),
        models_dir,
        validation_column=dict(DEMO_REGIMES),
        epochs=n_epochs,
        learning_rate=opts["learning_rate"],
        stop_after_perfect=opts["stop_after_perfect"],
        seed=seed,
        device=device,
        progress=True,
    )
    for regime, result in results.items():
        _step(
            f"    {regime}: validation accuracy (held-out {DEMO_REGIMES[regime]}) "
            f"{result.val_accuracy:.2f} after {len(result.history)} epochs",
            start,
        )
    return ckpts


def _remove(folder: Path, start: float) -> None:
    """Remove a folder of the demo's own earlier results (made from other inputs)."""
    import shutil

    if folder.exists():
        _step(f"    removing {folder} (made from another data set or other networks)", start)
        shutil.rmtree(folder)


def _run_app(level: str, paths: DemoPaths, deriv: Path, common: list[str], extra: list[str]):
    """Run one level of the BIDS App; raise :class:`StepFailed` on a non-zero exit code."""
    from .run import main as app_main

    rc = app_main([str(paths.bids_dir), str(deriv), level, *extra, *common])
    if rc != 0:
        raise StepFailed(level, rc)


def _score(deriv: Path, paths: DemoPaths):
    """Scoring: AUC of each part's maps within each planted region, saved as TSV."""
    from .collect import DEFAULT_DERIV_SPACE

    auc = evaluate_groundtruth(
        deriv,
        {k: Path(v) for k, v in paths.region_masks.items()},
        task=paths.task,
        space=DEFAULT_DERIV_SPACE,
    )
    auc.to_csv(deriv / "demo_groundtruth_auc.tsv", sep="\t", float_format="%.3f")
    return auc


def _findings(deriv: Path, task: str):
    """The findings table the group level wrote, or None."""
    import pandas as pd

    from dnnrsa.bidsnames import build_name

    path = deriv / build_name({"task": task, "desc": "findings"}, "stats", ".tsv")
    return pd.read_csv(path, sep="\t") if path.is_file() else None


#: Random effect of the ROI evaluation per setting: the fast setting's two participants
#: make a bootstrap over participants degenerate, so only the stimuli are resampled.
ROI_BOOTSTRAP = {"full": "both", "fast": "stimuli"}


def _roi_args(paths: DemoPaths) -> list[str]:
    """``--roi NAME=MASK`` for the planted regions and the negative control (the masks in
    ``derivatives/groundtruth``), for the participant and the group level."""
    from dnnrsa.demo.design import CONTROL

    masks = dict(paths.region_masks)
    if paths.control_mask is not None:
        masks[CONTROL] = paths.control_mask
    return [arg for name, path in masks.items() for arg in ("--roi", f"{name}={path}")]


#: The standard network the demo compares with the study's: an untrained spectrogram
#: CNN (the usual untrained control; no weights to fetch), labelled so in every report.
DEMO_NETWORK = "torchvision/resnet18_logmel=random"
#: The encoding models of the emotion network (the study's; the one the planted partition
#: is scored on), fitted in the planted regions and the control, with 3 groups of stimuli
#: held out (a third of the default's fits; the partition holds on both settings).
DEMO_ENCODING = [
    *("--encoding", "--encoding-mask", "rois", "--encoding-networks", "emotion"),
    *("--encoding-stimulus-folds", "3"),
]


def _encoding_partition(deriv: Path, paths: DemoPaths):
    """The planted variance partition (:func:`dnnrsa.demo.scoring.encoding_partition`),
    saved as TSV."""
    from dnnrsa.demo.scoring import encoding_partition

    from .collect import DEFAULT_DERIV_SPACE

    table = encoding_partition(deriv, task=paths.task, space=DEFAULT_DERIV_SPACE)
    table.to_csv(deriv / "demo_encoding_partition.tsv", sep="\t", index=False, float_format="%.4g")
    return table


def _roi_acceptance(deriv: Path, paths: DemoPaths):
    """The ROI acceptance checks (:func:`dnnrsa.demo.scoring.roi_acceptance`), saved as TSV."""
    from dnnrsa.demo.scoring import roi_acceptance

    from .collect import DEFAULT_DERIV_SPACE

    checks = roi_acceptance(deriv, task=paths.task, space=DEFAULT_DERIV_SPACE)
    checks.to_csv(deriv / "demo_roi_acceptance.tsv", sep="\t", index=False, float_format="%.4g")
    return checks


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

    start = time.perf_counter()
    output_dir = Path(output_dir).absolute()
    output_dir.mkdir(parents=True, exist_ok=True)
    nprocs = nprocs or available_cpus()
    timings = {}
    _step(f"dnnrsa {__version__} demo ({setting} setting) in {output_dir}", start)
    t = time.perf_counter()
    data_reused = _load_paths(output_dir / "data", seed, setting) is not None
    paths = _generate(output_dir / "data", setting=setting, seed=seed, nprocs=nprocs, start=start)
    timings["generate_s"] = time.perf_counter() - t

    t = time.perf_counter()
    models_dir = output_dir / "models"
    if not data_reused:  # networks trained on another data set are not reused
        _remove(models_dir, start)
    models_reused = all((models_dir / f"{r}.pt").is_file() for r in DEMO_REGIMES)
    ckpts = _train(
        paths, models_dir, setting=setting, seed=seed, epochs=epochs, device=device, start=start
    )
    timings["train_s"] = time.perf_counter() - t

    deriv = output_dir / "derivatives" / "dnnrsa"
    if not (data_reused and models_reused):  # results of other data or networks: start again
        _remove(deriv, start)
        _remove(output_dir / "work", start)
    common = ["-w", str(output_dir / "work"), "--nprocs", str(nprocs)]
    common += ["--device", device, "--seed", str(seed)]
    radius_mm = 2.0 * _voxel_size_mm(paths.fmriprep_dir)  # spheres of 33 voxels on any grid
    t = time.perf_counter()
    _step(
        "3/4 participant level: patterns, layer RDMs, searchlight RSA of every layer, "
        "encoding models",
        start,
    )
    participant = ["-d", str(paths.fmriprep_dir), "--checkpoint", *map(str, ckpts)]
    participant += ["--network", DEMO_NETWORK, *DEMO_ENCODING]
    _run_app(
        "participant",
        paths,
        deriv,
        common,
        [*participant, "--radius-mm", f"{radius_mm:g}", *_roi_args(paths)],
    )
    timings["participant_s"] = time.perf_counter() - t
    t = time.perf_counter()
    _step("4/4 group level: permutation inference, clusters, reports", start)
    permutations = ["--n-permutations", str(DEMO_SETTINGS[setting]["n_permutations"])]
    roi = [*_roi_args(paths), "--roi-bootstrap", ROI_BOOTSTRAP[setting]]
    _run_app("group", paths, deriv, common, [*permutations, *roi])
    timings["group_s"] = time.perf_counter() - t

    auc = _score(deriv, paths)
    acceptance = _roi_acceptance(deriv, paths)
    partition = _encoding_partition(deriv, paths)
    findings = _findings(deriv, paths.task)
    timings["total_s"] = time.perf_counter() - start
    report = deriv / "group.html"
    print()
    print(
        "Ground truth recovered (AUC of each part's layers, rows, within each planted region, columns):"
    )
    print(auc.round(3).to_string())
    print()
    print("Regions of interest (demo_roi_acceptance.tsv):")
    print(acceptance.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print()
    print(
        "Encoding models of the emotion network, variance partition in each region "
        "(R², mean over participants; demo_encoding_partition.tsv):"
    )
    print(partition.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print()
    if findings is not None:
        print("The study's findings on the demo (task-*_desc-findings_stats.tsv):")
        cols = ["finding", "verdict", "value", "p_value", "p_holm"]
        print(findings[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        print()
    print("Timings: " + ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in timings.items()))
    print(f"Group report: {report}")
    return {
        "report": report,
        "auc": auc,
        "roi_acceptance": acceptance,
        "encoding_partition": partition,
        "findings": findings,
        "timings": timings,
        "derivatives": deriv,
        "paths": paths,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``dnnrsa-demo``; return the exit code (see :mod:`dnnrsa.bids_app.errors`)."""
    with handle_errors("dnnrsa-demo") as outcome:
        args = build_parser().parse_args(argv)
        run_demo(
            args.output_dir,
            setting=args.setting,
            seed=args.seed,
            epochs=args.epochs,
            nprocs=args.nprocs,
            device=args.device,
        )
    return outcome.exit_code


def cli() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    cli()
