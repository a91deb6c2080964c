"""``dnnrsa-train``: train a registered model for one or several regimes.

``--regime emotion OUTPUT.pt`` trains one network into one checkpoint;
``--regime emotion identity gender sentence --output-dir DIR`` trains one network per
regime from the same seed into ``DIR/<regime>.pt``; ``--corpus {cremad,ravdess} PATH
--output-dir DIR`` reads a public corpus by its file names (:mod:`dnnrsa.corpora`),
writes its labels table to ``DIR/corpus_labels.tsv`` and trains the four regimes (or
``--regime``) with a split by actor. The work is done by
:func:`dnnrsa.train.train_model` and :func:`dnnrsa.train.train_regimes`; this module
parses the options, checks the input paths and reports errors with the exit codes of
:mod:`dnnrsa.bids_app.errors` (0 success, 64 usage error or a corpus folder that does
not follow the corpus's layout and naming, 66 required input missing).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from dnnrsa.corpora import (
    CORPORA,
    CREMAD_LEVELS,
    RAVDESS_INTENSITIES,
    VALIDATION_FRACTION,
    CorpusError,
    CorpusMissing,
    actor_split,
    corpus_validation,
    describe_split,
    read_corpus,
    write_corpus_labels,
)
from dnnrsa.stimuli import StimulusError
from dnnrsa.train import REGIMES, TRAINING_THREADS, read_labels, train_model, train_regimes

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
#: The labels table written into --output-dir when training from --corpus.
CORPUS_LABELS = "corpus_labels.tsv"


def build_parser() -> argparse.ArgumentParser:
    """Parser of ``dnnrsa-train`` (no side effects)."""
    parser = CommandParser(
        prog=PROG,
        description="Train a registered model (default: the cross-channel CNN) for one regime, "
        "or one network per regime from the same seed, from a folder of stimuli and a labels "
        "table, or from a public corpus (--corpus cremad|ravdess PATH).",
        formatter_class=DefaultsFormatter,
    )
    parser.add_argument(
        "stimulus_dir",
        type=Path,
        nargs="?",
        help="folder the 'file' column is relative to (not with --corpus)",
    )
    parser.add_argument(
        "labels",
        type=Path,
        nargs="?",
        help="TSV with columns file, emotion, identity, gender, sentence (not with --corpus)",
    )
    parser.add_argument(
        "output",
        type=Path,
        nargs="?",
        help="checkpoint file to write (.pt), for one regime (not with --output-dir)",
    )
    parser.add_argument(
        "--regime",
        nargs="+",
        help="label column to learn, e.g. emotion; several columns, e.g. emotion identity "
        "gender sentence, train one network each into --output-dir (required without "
        f"--corpus; default with --corpus: {' '.join(REGIMES)})",
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
        "--nprocs",
        type=int,
        metavar="N",
        help="regimes trained at once, each in its own process (default: one per CPU this "
        "process may use divided by --threads); the checkpoints do not depend on it",
    )
    parser.add_argument(
        "--stop-after-perfect",
        type=int,
        metavar="N",
        help="stop before --epochs once every validation clip has been classified correctly "
        "in N consecutive epochs (default: train every epoch); needs a validation split",
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
    _add_corpus_options(parser)
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log more: -v info messages, -vv debug messages (default: warnings only)",
    )
    return parser


def _add_corpus_options(parser: argparse.ArgumentParser) -> None:
    """The options of training from a public corpus (see docs/corpora.md)."""
    group = parser.add_argument_group(
        "public corpora",
        "train from CREMA-D or RAVDESS as distributed, labelled by their file names; the "
        f"labels table is written to <output-dir>/{CORPUS_LABELS}",
    )
    group.add_argument(
        "--corpus",
        nargs=2,
        metavar=("NAME", "PATH"),
        help=f"the corpus ({', '.join(CORPORA)}) and its folder, instead of the stimulus folder "
        "and labels table; needs --output-dir (default: none; train from a labels table)",
    )
    group.add_argument(
        "--corpus-modality",
        choices=("audiovisual", "video", "audio"),
        default="audiovisual",
        help="recordings used: audiovisual (CREMA-D VideoFlash/*.flv, RAVDESS 01-*.mp4), "
        "video (RAVDESS 02-*.mp4) or audio (CREMA-D AudioWAV/*.wav, RAVDESS 03-*.wav)",
    )
    group.add_argument(
        "--corpus-channel",
        choices=("speech", "song"),
        default="speech",
        help="RAVDESS vocal channel (CREMA-D is speech only)",
    )
    group.add_argument(
        "--corpus-emotions",
        nargs="+",
        metavar="EMOTION",
        help="emotions kept, by name, or all (default: the study's six, angry disgusted "
        "fearful happy sad surprised, for RAVDESS; CREMA-D's six, with neutral in place of "
        "surprised)",
    )
    group.add_argument(
        "--corpus-calm",
        choices=("calm", "neutral"),
        default="calm",
        help="RAVDESS: label its calm clips calm (a class of its own) or neutral (merged with "
        "neutral); either is kept only when named in --corpus-emotions",
    )
    levels = " ".join([*RAVDESS_INTENSITIES.values(), *CREMAD_LEVELS])
    group.add_argument(
        "--corpus-intensity",
        nargs="+",
        metavar="LEVEL",
        help="intensities kept: RAVDESS normal or strong, CREMA-D levels LO MD HI XX X "
        f"(default: all; one of {levels})",
    )
    group.add_argument(
        "--corpus-validation-actors",
        nargs="+",
        metavar="ACTOR",
        help="actors held out for validation, e.g. 21 22 23 24 (default: in each gender the "
        "actors with the highest numbers, a share --corpus-validation-fraction of them)",
    )
    group.add_argument(
        "--corpus-validation-fraction",
        type=float,
        default=VALIDATION_FRACTION,
        help="share of each gender's actors held out for validation",
    )
    group.add_argument(
        "--corpus-identity-sentence",
        metavar="SENTENCE",
        help="sentence held out to validate identity, which cannot be validated on unseen "
        "actors (default: the last in sorted order: RAVDESS kids, CREMA-D WSI)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``dnnrsa-train``; return the exit code (0 success, 64 usage error or malformed
    corpus, 66 missing input)."""
    also = {
        CorpusMissing: EXIT_INPUT_MISSING,
        CorpusError: EXIT_USAGE,
        FileNotFoundError: EXIT_INPUT_MISSING,
        StimulusError: EXIT_INPUT_MISSING,
    }
    also[ValueError] = EXIT_USAGE  # after CorpusError and StimulusError, which are ValueErrors
    with handle_errors(PROG, also=also) as outcome:
        args = build_parser().parse_args(argv)
        logging.basicConfig(
            level=logging.WARNING - 10 * min(args.verbose, 2), format="%(levelname)s %(message)s"
        )
        face_crop = _face_crop(args)
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
            "stop_after_perfect": args.stop_after_perfect,
        }
        if args.corpus is not None:
            results = _train_corpus(args, common)
        else:
            results = _train_table(args, common)
        for result in results:
            last = result.history[-1]
            print(
                f"wrote {result.checkpoint}: {len(result.labels)} classes, train accuracy "
                f"{last['train_accuracy']:.3f}, validation accuracy {last['val_accuracy']:.3f}"
            )
    return outcome.exit_code


def _face_crop(args):
    """The --face-crop choice: a mode, or the path of an existing crop table."""
    if args.face_crop in ("auto", "centre", "center"):
        return args.face_crop
    face_crop = Path(args.face_crop)
    if not face_crop.is_file():
        raise InputMissing(f"--face-crop table not found: {face_crop}")
    return face_crop


_CORPUS_DEFAULTS = {
    "corpus_modality": "audiovisual",
    "corpus_channel": "speech",
    "corpus_emotions": None,
    "corpus_calm": "calm",
    "corpus_intensity": None,
    "corpus_validation_actors": None,
    "corpus_validation_fraction": VALIDATION_FRACTION,
    "corpus_identity_sentence": None,
}


def _train_table(args, common):
    """Train from a stimulus folder and a labels table (one checkpoint or one per regime)."""
    given = [name for name, default in _CORPUS_DEFAULTS.items() if getattr(args, name) != default]
    if given:
        options = ", ".join("--" + name.replace("_", "-") for name in given)
        raise UsageError(f"{options} apply to --corpus only")
    if args.stimulus_dir is None or args.labels is None:
        raise UsageError(
            "give the stimulus folder and the labels table, or --corpus NAME PATH\n\n"
            + build_parser().format_usage().strip()
        )
    if args.regime is None:
        raise UsageError("the following arguments are required: --regime")
    if not args.stimulus_dir.is_dir():
        raise InputMissing(f"stimulus folder not found: {args.stimulus_dir}")
    if not args.labels.is_file():
        raise InputMissing(f"labels table not found: {args.labels}")
    regimes, output = _regimes_and_output(args)
    if output is not None:
        return [
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
    column, values = _validation_options(args, regimes)
    return train_regimes(
        args.stimulus_dir,
        args.labels,
        regimes,
        args.output_dir,
        validation_column=column,
        validation_values=values,
        n_procs=args.nprocs,
        **common,
    ).values()


def _train_corpus(args, common):
    """Train from a public corpus: its labels table into --output-dir, a split by actor
    (identity: by sentence), then :func:`dnnrsa.train.train_regimes`."""
    name, root = args.corpus[0], Path(args.corpus[1])
    if name not in CORPORA:
        raise UsageError(f"--corpus NAME must be one of {', '.join(CORPORA)}; got {name!r}")
    given = [p for p in (args.stimulus_dir, args.labels, args.output) if p is not None]
    if given:
        raise UsageError(
            f"--corpus replaces the stimulus folder and the labels table; got {given[0]} as "
            "well: give either --corpus NAME PATH or STIMULUS_DIR LABELS"
        )
    for option in ("validation_column", "validation_column_for", "validation_values"):
        if getattr(args, option):
            raise UsageError(
                f"--{option.replace('_', '-')} does not apply to --corpus, whose split is by "
                "actor (--corpus-validation-actors, --corpus-validation-fraction, "
                f"--corpus-identity-sentence); to split otherwise, train from its {CORPUS_LABELS} "
                "as a labels table"
            )
    if args.output_dir is None:
        raise UsageError(f"--corpus needs --output-dir (the checkpoints and {CORPUS_LABELS})")
    if args.output_dir.exists() and not args.output_dir.is_dir():
        raise UsageError(f"--output-dir {args.output_dir} exists and is not a folder")
    regimes = list(args.regime or REGIMES)
    table = read_corpus(
        root,
        name,
        modality=args.corpus_modality,
        channel=args.corpus_channel,
        emotions=args.corpus_emotions,
        calm=args.corpus_calm,
        intensity=args.corpus_intensity,
    )
    unknown = [r for r in regimes if r not in table.columns or r == "file"]
    if unknown:
        raise UsageError(
            f"--regime {' '.join(unknown)}: not a label of {name} (labels: "
            f"{', '.join(c for c in table.columns if c != 'file')})"
        )
    actors = actor_split(
        table, fraction=args.corpus_validation_fraction, actors=args.corpus_validation_actors
    )
    columns, values = corpus_validation(
        table, regimes, actors, identity_sentence=args.corpus_identity_sentence
    )
    labels = write_corpus_labels(table, args.output_dir / CORPUS_LABELS)
    print(
        f"{name} {root}: {len(table)} clips of {table['actor'].nunique()} actors, emotions "
        f"{' '.join(sorted(table['emotion'].unique()))}; labels table {labels}"
    )
    for line in describe_split(table, columns, values):
        print(f"  {line}")
    return train_regimes(
        root,
        labels,
        regimes,
        args.output_dir,
        validation_column=columns,
        validation_values=values,
        n_procs=args.nprocs,
        **common,
    ).values()


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
