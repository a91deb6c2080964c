"""Every option of every command has a help text that states its real default once."""

from __future__ import annotations

import argparse
import re

import pytest

from dnnrsa.bids_app.demo import build_parser as demo_parser
from dnnrsa.bids_app.demo_data import build_parser as demo_data_parser
from dnnrsa.bids_app.errors import (
    EXIT_FAILURE,
    EXIT_INPUT_MISSING,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    InputMissing,
    handle_errors,
)
from dnnrsa.bids_app.parser import build_parser as app_parser
from dnnrsa.bids_app.train_cli import build_parser as train_parser

PARSERS = {
    "dnnrsa": app_parser,
    "dnnrsa-train": train_parser,
    "dnnrsa-demo": demo_parser,
    "dnnrsa-demo-data": demo_data_parser,
}
MEANINGLESS = re.compile(r"\(default: (\[\]|None|True|False|\(\))\)")


def _rendered(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help of one action as ``--help`` prints it, on one line."""
    formatter = parser.formatter_class(prog=parser.prog, width=10_000)
    formatter.add_argument(action)
    return " ".join(formatter.format_help().split())


def _actions(parser: argparse.ArgumentParser):
    skip = (argparse._HelpAction, argparse._VersionAction)
    return [a for a in parser._actions if not isinstance(a, skip)]


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_every_option_has_help_stating_its_default_once(command):
    parser = PARSERS[command]()
    problems = []
    for action in _actions(parser):
        name = "/".join(action.option_strings) or action.dest
        if not (action.help or "").strip():
            problems.append(f"{name}: no help text")
            continue
        text = _rendered(parser, action)
        if MEANINGLESS.search(text):
            problems.append(f"{name}: prints a meaningless default: {text!r}")
        stated = len(re.findall(r"\bdefault\b", text, flags=re.IGNORECASE))
        has_default = bool(action.option_strings) and not action.required
        if has_default and stated != 1:
            problems.append(f"{name}: states its default {stated} times: {text!r}")
        if not has_default and stated:
            problems.append(f"{name}: has no default but mentions one: {text!r}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_printed_defaults_are_the_real_ones(command):
    """A default the formatter prints is the parser's value."""
    parser = PARSERS[command]()
    for action in _actions(parser):
        if "default" in action.help.lower():
            continue  # stated in words by the option itself
        match = re.search(r"\(default: ([^()]*)\)$", _rendered(parser, action))
        value = action.default
        if match and isinstance(value, int | float | str) and not isinstance(value, bool):
            assert match.group(1) == str(value), (action.option_strings, match.group(1), value)


def test_help_exits_0_and_usage_errors_exit_64(capsys):
    from dnnrsa.bids_app.run import main as app_main
    from dnnrsa.bids_app.train_cli import main as train_main

    commands = (
        ("dnnrsa", app_main, ["bids", "out", "participant"]),
        ("dnnrsa-train", train_main, ["clips", "labels.tsv", "out.pt", "--regime", "emotion"]),
    )
    for prog, main, argv in commands:
        assert main(["--help"]) == EXIT_OK
        out = capsys.readouterr().out
        assert "(default: [])" not in out and "(default: None)" not in out
        assert main([*argv, "--no-such-option"]) == EXIT_USAGE
        err = capsys.readouterr().err
        assert err.startswith(f"{prog}: error: unrecognized arguments: --no-such-option")
        assert f"usage: {prog}" in err


def test_handle_errors_maps_exceptions_to_exit_codes(capsys):
    with handle_errors("prog") as outcome:
        pass
    assert outcome.exit_code == EXIT_OK
    with handle_errors("prog") as outcome:
        raise InputMissing("stimuli not found: x")
    assert outcome.exit_code == EXIT_INPUT_MISSING
    assert capsys.readouterr().err.strip() == "prog: error: stimuli not found: x"
    with handle_errors("prog", also={ValueError: EXIT_USAGE}) as outcome:
        raise ValueError("bad value")
    assert outcome.exit_code == EXIT_USAGE
    with handle_errors("prog") as outcome:
        raise ValueError("bad value")
    assert outcome.exit_code == EXIT_FAILURE
    with handle_errors("prog") as outcome:
        raise KeyboardInterrupt
    assert outcome.exit_code == EXIT_INTERRUPTED
    assert "interrupted" in capsys.readouterr().err
