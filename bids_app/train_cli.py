"""``dnnrsa-train``: train a registered model for one or several regimes.

``--regime emotion OUTPUT.pt`` trains one network into one checkpoint;
``--regime emotion identity gender sentence --output-dir DIR`` trains one network per
regime from the same seed into ``DIR/<regime>.pt``. The work is done by
:func:`dnnrsa.train.train_model` and :func:`dnnrsa.train.train_regimes`; this module
parses the options, checks the input paths and reports errors with the exit codes of
:mod:`dnnrsa.bids_app.errors` (0 success, 64 usage error, 66 required input missing).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from dnnrsa.stimuli import StimulusError
from dnnrsa.train import TRAINING_THREADS, read_labels, train_model, train_regimes

from .errors import (
    EXIT_INPUT_MISSING,
    EXIT_USAGE,
    CommandParser,
    InputMissing,
    UsageError,
    handle_errors,
)
from .parser import DefaultsFormatter

PROG = "dnnrsa-train"


def build_parser() -> argparse.ArgumentParser:
    """Parser of ``dnnrsa-train`` (no side effects)."""
    parser = CommandParser(
        prog=PROG,
        description="Train a registered model (default: the cross-channel CNN) for one regime, "
        "or one network per regime from the same seed, from a folder of stimuli and a labels "
        "table.",
        formatter_class=DefaultsFormatter,
    )
    parser.add_argument("stimulus_dir", type=Path, help="folder the 'file' column is relative to")
    parser.add_argument(
        "labels", type=Path, help="TSV with columns file, emotion, identity, gender, sentence"
    )
    parser.add_argument(
        "output",
        type=Path,
        nargs="?",
        help="checkpoint file to write (.pt), for one regime (not with --output-dir)",
    )
    parser.add_argument(
        "--regime",
        required=True,
        nargs="+",
        help="label column to learn, e.g. emotion (required); several columns, e.g. emotion "
        "identity gender sentence, train one network each into --output-dir",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        help="folder of the checkpoints, one <regime>.pt per regime, instead of the "
        "checkpoint file (default: none; one regime into the checkpoint file)",
    )
    parser.add_argument("--model", default="crosschannel", help="registered model name")
    parser.add_argument(
        "--validation-column",
        help="column defining the validation split (default: none; every stimulus trains)",
    )
    parser.add_argument(
        "--validation-column-for",
        nargs="+",
        default=[],
        metavar="REGIME=COLUMN",
        help="with several regimes, another validation column for a regime, e.g. "
        "sentence=identity; a regime cannot be validated on its own column, and REGIME= "
        "trains that regime on every stimulus (default: none; every regime uses "
        "--validation-column)",
    )
    parser.add_argument(
        "--validation-values",
        nargs="+",
        help="values of that column held out for validation (default: its last value in "
        "sorted order); with several regimes, COLUMN=VALUE entries hold out values of "
        "another validation column",
    )
    parser.add_argument("--epochs", type=int, default=20, help="passes over the training set")
    parser.add_argument("--batch-size", type=int, default=16, help="stimuli per training step")
    parser.add_argument(
        "--learning-rate", type=float, default=1e-4, help="learning rate of the Adam optimiser"
    )
    parser.add_argument(
        "--weight-decay", type=float, default=1e-4, help="L2 weight decay of the optimiser"
    )
    parser.add_argument(
        "--freeze",
        nargs="+",
        default=[],
        help="submodules kept fixed, e.g. visual (default: none; every weight trains)",
    )
    parser.add_argument(
        "--no-augment",
        action="store_true",
        help="disable augmentation of the training batches (default: augmentation on)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of initialisation, shuffling and augmentation"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=TRAINING_THREADS,
        help=f"torch threads while training (default {TRAINING_THREADS}); the weights depend "
        "on this number, not on the machine's cores, so keep it to reproduce a checkpoint",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where the network trains; auto uses a CUDA GPU when there is one",
    )
    parser.add_argument(
        "--allow-silent-video",
        action="store_true",
        help="use silence for videos without audio (default: such a video is an error)",
    )
    parser.add_argument(
        "--face-crop",
        default="auto",
        metavar="auto|centre|FILE.tsv",
        help="face crop of the visual input: auto detects the face in each clip, centre takes "
        "the centred square, FILE.tsv gives boxes by hand (columns file, x0, y0, x1, y1)",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="hide the progress bar (default: shown)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log more: -v info messages, -vv debug messages (default: warnings only)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``dnnrsa-train``; return the exit code (0 success, 64 usage, 66 missing input)."""
    also = {FileNotFoundError: EXIT_INPUT_MISSING, StimulusError: EXIT_INPUT_MISSING}
    also[ValueError] = EXIT_USAGE  # after StimulusError, which is a ValueError
    with handle_errors(PROG, also=also) as outcome:
        args = build_parser().parse_args(argv)
        logging.basicConfig(
            level=logging.WARNING - 10 * min(args.verbose, 2), format="%(levelname)s %(message)s"
        )
        if not args.stimulus_dir.is_dir():
            raise InputMissing(f"stimulus folder not found: {args.stimulus_dir}")
        if not args.labels.is_file():
            raise InputMissing(f"labels table not found: {args.labels}")
        face_crop = args.face_crop if args.face_crop in ("auto", "centre", "center") else None
        if face_crop is None:
            face_crop = Path(args.face_crop)
            if not face_crop.is_file():
                raise InputMissing(f"--face-crop table not found: {face_crop}")
        common = {
            "model": args.model,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
            "weight_decay": args.weight_decay,
            "augment": not args.no_augment,
            "seed": args.seed,
            "device": args.device,
            "missing": "blank" if args.allow_silent_video else "error",
            "freeze": args.freeze,
            "progress": not args.no_progress,
            "face_crop": face_crop,
            "threads": args.threads,
        }
        regimes, output = _regimes_and_output(args)
        if output is not None:
            results = [
                train_model(
                    args.stimulus_dir,
                    args.labels,
                    regimes[0],
                    output,
                    validation_column=args.validation_column,
                    validation_values=args.validation_values,
                    **common,
                )
            ]
        else:
            column, values = _validation_options(args, regimes)
            results = train_regimes(
                args.stimulus_dir,
                args.labels,
                regimes,
                args.output_dir,
                validation_column=column,
                validation_values=values,
                **common,
            ).values()
        for result in results:
            last = result.history[-1]
            print(
                f"wrote {result.checkpoint}: {len(result.labels)} classes, train accuracy "
                f"{last['train_accuracy']:.3f}, validation accuracy {last['val_accuracy']:.3f}"
            )
    return outcome.exit_code


def _regimes_and_output(args) -> tuple[list[str], Path | None]:
    """The regimes to train and the checkpoint file (None: one per regime in --output-dir).

    ``--regime`` takes several values, so ``--regime emotion out.pt`` (a checkpoint file
    after the option, as before several regimes were possible) is read as one regime
    and its file when the second value is not a column of the labels table.
    """
    regimes, output = list(args.regime), args.output
    if args.output_dir is not None:
        if output is not None:
            raise UsageError("give either the checkpoint file or --output-dir, not both")
        if args.output_dir.exists() and not args.output_dir.is_dir():
            raise UsageError(f"--output-dir {args.output_dir} exists and is not a folder")
        return regimes, None
    if args.validation_column_for:
        raise UsageError("--validation-column-for needs several regimes and --output-dir")
    if output is None and len(regimes) == 2:
        if regimes[1] not in read_labels(args.labels).columns:
            return regimes[:1], Path(regimes[1])
    if len(regimes) > 1:
        raise UsageError(
            f"{len(regimes)} regimes ({' '.join(regimes)}) need --output-dir, the folder of "
            "their checkpoints"
        )
    if output is None:
        raise UsageError("give the checkpoint file to write, or --output-dir")
    return regimes, output


def _validation_options(args, regimes):
    """Per-regime validation columns and per-column held-out values for train_regimes."""
    columns = dict.fromkeys(regimes, args.validation_column)
    for entry in args.validation_column_for:
        regime, sep, column = entry.partition("=")
        if not sep:
            raise UsageError(f"--validation-column-for takes REGIME=COLUMN entries; got {entry!r}")
        if regime not in columns:
            raise UsageError(
                f"--validation-column-for names regime {regime!r}, not one of {regimes}"
            )
        columns[regime] = column or None
    values = args.validation_values
    if values and (args.validation_column_for or any("=" in v for v in values)):
        by_column: dict[str, list[str]] = {}
        for entry in values:
            column, sep, value = entry.partition("=")
            if not sep:
                if args.validation_column is None:
                    raise UsageError(
                        f"--validation-values {entry!r} has no column: give "
                        "--validation-column or a COLUMN=VALUE entry"
                    )
                column, value = args.validation_column, entry
            by_column.setdefault(column, []).append(value)
        values = by_column
    return (columns if args.validation_column_for else args.validation_column), values


def cli() -> None:
    """Console entry point ``dnnrsa-train``."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
