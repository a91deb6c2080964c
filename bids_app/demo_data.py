"""``dnnrsa-demo-data``: write the built-in demo data set from the command line.

The work is done by :func:`dnnrsa.demo.make_demo_dataset`; this module parses the
options and reports errors with the exit codes of :mod:`dnnrsa.bids_app.errors`
(0 success, 64 usage error or invalid value, 73 the output cannot be written).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from dnnrsa._cpus import available_cpus
from dnnrsa.demo import SETTINGS, make_demo_dataset

from .errors import EXIT_CANNOT_WRITE, EXIT_USAGE, CommandParser, handle_errors

PROG = "dnnrsa-demo-data"


def _per_setting(key: str, unit: str = "") -> str:
    full, fast = SETTINGS["full"][key], SETTINGS["fast"][key]
    return f"default: {full:g}{unit} in the full setting, {fast:g}{unit} in the fast one"


def _default_n_jobs() -> int:
    return min(2, available_cpus())


def build_parser() -> argparse.ArgumentParser:
    """Parser of ``dnnrsa-demo-data`` (no side effects)."""
    parser = CommandParser(
        prog=PROG,
        description="Write the dnnrsa demo data set: 72 audio-visual clips, training clips, "
        "a BIDS data set with simulated fMRI and fMRIPrep-style derivatives, and the "
        "planted ground truth.",
    )
    parser.add_argument("out_dir", type=Path, help="output folder (receives bids/ and training/)")
    size = parser.add_argument_group("size of the data set")
    size.add_argument(
        "--setting",
        choices=sorted(SETTINGS),
        default="full",
        help="'full' (the README demo) or 'fast' (smaller, for tests); the options below "
        "override its values one by one (default: full)",
    )
    size.add_argument("--n-subjects", type=int, help=f"participants ({_per_setting('n_subjects')})")
    size.add_argument("--n-runs", type=int, help=f"runs per participant ({_per_setting('n_runs')})")
    size.add_argument(
        "--n-training-takes",
        type=int,
        help="renditions of every clip in the training set, 72 clips each; 0 writes none "
        f"({_per_setting('n_training_takes')})",
    )
    size.add_argument(
        "--voxel-size-mm",
        type=float,
        help=f"edge of the isotropic MNI grid ({_per_setting('voxel_size_mm', ' mm')})",
    )
    sim = parser.add_argument_group("simulation")
    sim.add_argument("--seed", type=int, default=0, help="seed of every random step (default: 0)")
    sim.add_argument(
        "--snr",
        type=float,
        default=2.0,
        help="planted response SD relative to the noise SD (default: 2.0)",
    )
    run = parser.add_argument_group("running")
    n_jobs = _default_n_jobs()
    run.add_argument(
        "--n-jobs",
        type=int,
        default=n_jobs,
        help="processes rendering and encoding clips (default: the smaller of 2 and the "
        f"number of CPUs, here {n_jobs})",
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing data set (default: refuse, exit code 73)",
    )
    run.add_argument(
        "--no-progress", action="store_true", help="hide the progress bars (default: shown)"
    )
    run.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more log messages: -v info, -vv debug (default: warnings only)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``dnnrsa-demo-data``; return the exit code (see :mod:`dnnrsa.bids_app.errors`)."""
    also = {ValueError: EXIT_USAGE, FileExistsError: EXIT_CANNOT_WRITE}
    also[PermissionError] = EXIT_CANNOT_WRITE
    with handle_errors(PROG, also=also) as outcome:
        args = build_parser().parse_args(argv)
        logging.basicConfig(
            level=logging.WARNING - 10 * min(args.verbose, 2), format="%(levelname)s %(message)s"
        )
        outcome.traceback = args.verbose > 0
        paths = make_demo_dataset(
            args.out_dir,
            seed=args.seed,
            setting=args.setting,
            n_subjects=args.n_subjects,
            n_runs=args.n_runs,
            n_training_takes=args.n_training_takes,
            voxel_size_mm=args.voxel_size_mm,
            snr=args.snr,
            n_jobs=args.n_jobs,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
        print(f"BIDS data set:      {paths.bids_dir}")
        print(f"stimuli:            {paths.stimuli_dir}")
        print(f"fMRIPrep-style:     {paths.fmriprep_dir}")
        print(f"ground truth:       {paths.groundtruth_dir}")
        print(f"training clips:     {paths.training_dir} (labels: {paths.training_labels})")
    return outcome.exit_code


def cli() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    cli()
