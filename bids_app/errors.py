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
import errno
import logging
import os
import re
import sys
import traceback as _traceback
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


#: errno values that mean the device is full or the quota used up: the output cannot be
#: written (exit 73), whatever the command was writing.
DISK_FULL = {
    code: reason
    for code, reason in (
        (errno.ENOSPC, "no space left on the device"),
        (getattr(errno, "EDQUOT", None), "the disk quota is exceeded"),
    )
    if code is not None
}
#: A full disk as a traceback's last line reports it (a failed step's crash report).
_DISK_FULL_LINE = re.compile(
    r"\[Errno (?P<code>"
    + "|".join(str(c) for c in DISK_FULL)
    + r")\][^:\n]*(?::\s*'(?P<file>[^']+)')?"
)


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


def disk_full(exc: BaseException | None) -> OSError | None:
    """The error of a full disk (or an exceeded quota) behind ``exc``, if any.

    ``exc`` itself, its cause or its context (an error raised while handling it) is an
    :class:`OSError` whose ``errno`` is one of :data:`DISK_FULL`.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _file_being_written(exc: OSError) -> str | None:
    """The file a failed write was writing: the error's own file name, else the
    ``path`` of the innermost dnnrsa function on the traceback (the writers of
    :mod:`dnnrsa._io` and :mod:`dnnrsa.bidsnames` name their target so)."""
    for name in (exc.filename, exc.filename2):
        if name not in (None, ""):
            return os.fsdecode(name) if isinstance(name, bytes | os.PathLike) else str(name)
    found = None
    for frame, _line in _traceback.walk_tb(exc.__traceback__):
        if not str(frame.f_globals.get("__name__", "")).startswith("dnnrsa"):
            continue
        value = frame.f_locals.get("path")
        if isinstance(value, str | os.PathLike) and str(value):
            found = os.fspath(value)
    return found


def disk_full_message(code: int, target: str | None = None, *, what: str = "the outputs") -> str:
    """dnnrsa's message for a write that failed because the disk is full.

    Parameters
    ----------
    code : int
        The ``errno`` (one of :data:`DISK_FULL`).
    target : str, optional
        The file being written; without it, ``what`` is named.
    what : str
        What could not be written when the file is not known.
    """
    return (
        f"cannot write {target or what}: {DISK_FULL[code]} ({os.strerror(code)}): free space "
        "there, or write to a folder on a device with room, and run again; completed outputs "
        "are kept and a rerun resumes"
    )


def disk_full_in_text(text: str) -> tuple[int, str | None] | None:
    """``(errno, file or None)`` of a full disk reported in a traceback's text (a failed
    step's crash report), or None."""
    match = _DISK_FULL_LINE.search(text)
    if match is None:
        return None
    return int(match.group("code")), match.group("file")


def step_disk_full(exc: BaseException, detail: str = "") -> CannotWrite | None:
    """The error to raise when a workflow failed because the disk is full, else None.

    Parameters
    ----------
    exc : BaseException
        What the workflow engine raised (in this process).
    detail : str
        The failed steps' summary: each step's name, the last line of its crash
        report (where a step's own ``OSError`` ends up) and the report's path.
    """
    own = disk_full(exc)
    if own is not None:
        return CannotWrite(disk_full_message(own.errno, _file_being_written(own)) + detail)
    found = disk_full_in_text(detail)
    if found is None:
        return None
    code, target = found
    return CannotWrite(disk_full_message(code, target, what="the outputs of a step") + detail)


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
    keeps its status; ``KeyboardInterrupt`` gives :data:`EXIT_INTERRUPTED`; a full disk
    or an exceeded quota (:func:`disk_full`) gives :data:`EXIT_CANNOT_WRITE`; then the
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
    if disk_full(exc) is not None:
        return EXIT_CANNOT_WRITE
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
        full = None if isinstance(exc, AppError) else disk_full(exc)
        if isinstance(exc, KeyboardInterrupt):
            message = "interrupted; completed outputs are kept, nothing half-written is left"
        elif full is not None:
            message = disk_full_message(full.errno, _file_being_written(full))
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
