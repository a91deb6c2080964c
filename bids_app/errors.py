"""Errors of the BIDS App, each with its documented exit code."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_DATASET_INVALID = 16
EXIT_UNKNOWN_LEVEL = 17
EXIT_NOTHING_SELECTED = 18
EXIT_USAGE = 64
EXIT_INPUT_MISSING = 66
EXIT_CANNOT_WRITE = 73

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_FAILURE: "unexpected failure",
    EXIT_DATASET_INVALID: "dataset invalid",
    EXIT_UNKNOWN_LEVEL: "unknown analysis level",
    EXIT_NOTHING_SELECTED: "the filters select nothing",
    EXIT_USAGE: "usage error",
    EXIT_INPUT_MISSING: "required input missing (bold, events, stimuli)",
    EXIT_CANNOT_WRITE: "cannot write output",
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
