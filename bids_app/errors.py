"""Exit codes and error handling shared by every dnnrsa command.

One table of exit codes serves ``dnnrsa`` (the BIDS App), ``dnnrsa-train`` and the
demo commands. A command reports an error the same way everywhere: it raises one of
the :class:`AppError` subclasses below (or lets a library exception through), and
its ``main`` runs inside :func:`handle_errors`, which prints one clear message and
turns the exception into the exit code.

How a command uses it::

    from .errors import EXIT_USAGE, CommandParser, InputMissing, handle_errors
    from .parser import DefaultsFormatter


    def build_parser():
        # usage errors exit with 64; every option's help states its default once
        parser = CommandParser(prog="dnnrsa-mycommand", formatter_class=DefaultsFormatter)
        parser.add_argument("folder", type=Path, help="...")
        return parser


    def main(argv=None) -> int:
        with handle_errors("dnnrsa-mycommand", also={ValueError: EXIT_USAGE}) as outcome:
            args = build_parser().parse_args(argv)  # --help and --version give 0
            if not args.folder.is_dir():
                raise InputMissing(f"folder not found: {args.folder}")  # exit code 66
            do_the_work(args)
        return outcome.exit_code

Inside the block, ``outcome.log`` (a :class:`logging.Logger`) and
``outcome.traceback`` may be set once the command has configured its logging: from
then on messages go through that logger, and unexpected errors carry their traceback
when ``traceback`` is true. Add the new parser to ``PARSERS`` in
``tests/test_cli_help.py``, which checks every option's help.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_DATASET_INVALID = 16
EXIT_UNKNOWN_LEVEL = 17
EXIT_NOTHING_SELECTED = 18
EXIT_USAGE = 64
EXIT_INPUT_MISSING = 66
EXIT_CANNOT_WRITE = 73
EXIT_INTERRUPTED = 130

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_FAILURE: "unexpected failure",
    EXIT_DATASET_INVALID: "dataset invalid",
    EXIT_UNKNOWN_LEVEL: "unknown analysis level",
    EXIT_NOTHING_SELECTED: "the filters select nothing",
    EXIT_USAGE: "usage error",
    EXIT_INPUT_MISSING: "required input missing (bold, events, stimuli)",
    EXIT_CANNOT_WRITE: "cannot write output",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); completed outputs are kept",
}


class AppError(Exception):
    """An error the command line reports with a message and an exit code."""

    exit_code = EXIT_FAILURE


class DatasetInvalid(AppError):
    exit_code = EXIT_DATASET_INVALID


class UnknownLevel(AppError):
    exit_code = EXIT_UNKNOWN_LEVEL


class NothingSelected(AppError):
    exit_code = EXIT_NOTHING_SELECTED


class UsageError(AppError):
    exit_code = EXIT_USAGE


class InputMissing(AppError):
    exit_code = EXIT_INPUT_MISSING


class CannotWrite(AppError):
    exit_code = EXIT_CANNOT_WRITE


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser that raises :class:`UsageError` (exit code 64) instead of exiting 2."""

    def error(self, message):  # noqa: D102
        raise UsageError(f"{message}\n\n{self.format_usage().strip()}")


@dataclass
class Outcome:
    """What :func:`handle_errors` yields: the exit code, and how to report errors.

    Attributes
    ----------
    exit_code : int
        :data:`EXIT_OK` unless the block raised.
    log : logging.Logger or None
        Report through this logger; ``None`` prints ``<prog>: error: <message>`` to
        standard error (before the command has set up its logging).
    traceback : bool
        Add the traceback to the report of an unexpected error.
    """

    prog: str
    exit_code: int = EXIT_OK
    log: logging.Logger | None = None
    traceback: bool = False


def exit_code_for(exc: BaseException, also: Mapping[type[BaseException], int] | None = None) -> int:
    """The exit code of an exception.

    An :class:`AppError` carries its own; ``SystemExit`` (``--help``, ``--version``)
    keeps its status; ``KeyboardInterrupt`` gives :data:`EXIT_INTERRUPTED`; then the
    first entry of ``also`` that the exception is an instance of; anything else is
    :data:`EXIT_FAILURE`.
    """
    if isinstance(exc, AppError):
        return exc.exit_code
    if isinstance(exc, SystemExit):
        if exc.code is None:
            return EXIT_OK
        return exc.code if isinstance(exc.code, int) else EXIT_FAILURE
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    for kind, code in (also or {}).items():
        if isinstance(exc, kind):
            return code
    return EXIT_FAILURE


@contextmanager
def handle_errors(
    prog: str, *, also: Mapping[type[BaseException], int] | None = None
) -> Iterator[Outcome]:
    """Run a command's body; report an error once and record its exit code.

    Parameters
    ----------
    prog : str
        The command's name, put before messages printed to standard error.
    also : mapping of exception type to exit code, optional
        Library exceptions the command maps to a documented code (checked in order,
        after :class:`AppError`), e.g. ``{FileNotFoundError: EXIT_INPUT_MISSING,
        ValueError: EXIT_USAGE}``.

    Yields
    ------
    Outcome
        Its ``exit_code`` is the command's return value after the block.
    """
    outcome = Outcome(prog)
    try:
        yield outcome
    except (Exception, KeyboardInterrupt, SystemExit) as exc:
        outcome.exit_code = exit_code_for(exc, also)
        if isinstance(exc, SystemExit) and not isinstance(exc.code, str):
            return  # --help, --version: argparse has printed what it had to
        if isinstance(exc, KeyboardInterrupt):
            message = "interrupted; completed outputs are kept, nothing half-written is left"
        else:
            message = str(exc) or exc.__class__.__name__
        unexpected = outcome.exit_code == EXIT_FAILURE and not isinstance(exc, AppError)
        show_traceback = outcome.traceback and unexpected
        # the traceback (with -v) comes first: the console's last line is dnnrsa's message
        if outcome.log is not None:
            if show_traceback:
                outcome.log.error("traceback of the error reported below", exc_info=exc)
            outcome.log.error("%s", message)
        else:
            if show_traceback:
                import traceback

                traceback.print_exception(exc, file=sys.stderr)
            print(f"{prog}: error: {message}", file=sys.stderr)
