"""Every option of every command has a help text that states its real default once, the
options and choices the docs name are the parser's, and options that exclude each
other are refused."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

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

REPO = Path(__file__).resolve().parents[1]
PARSERS = {
    "dnnrsa": app_parser,
    "dnnrsa-train": train_parser,
    "dnnrsa-demo": demo_parser,
    "dnnrsa-demo-data": demo_data_parser,
}
MEANINGLESS = re.compile(r"\(default: (\[\]|None|True|False|\(\))\)")
#: The value a help text gives as its default: ``(default: X)``, ``(default X)``,
#: ``(...; default: X)``; what follows up to the closing parenthesis or semicolon.
STATED = re.compile(r"\bdefault\b:?\s*([^;()]*?)\s*(?:\)|;|$)", flags=re.IGNORECASE)
#: Options of other programs that the docs name (fMRIPrep's, in the -d section).
FOREIGN_OPTIONS = {"--output-spaces"}
#: RunConfig's names for the app's options whose names differ.
CONFIG_FIELD = {
    "checkpoint": "checkpoints",
    "model_rdm": "model_rdms",
    "roi": "rois",
    "bids_filter_file": "bids_filters",
}


def _rendered(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help of one action as ``--help`` prints it, on one line."""
    formatter = parser.formatter_class(prog=parser.prog, width=10_000)
    formatter.add_argument(action)
    return " ".join(formatter.format_help().split())


def _actions(parser: argparse.ArgumentParser):
    skip = (argparse._HelpAction, argparse._VersionAction)
    return [a for a in parser._actions if not isinstance(a, skip)]


def _name(action: argparse.Action) -> str:
    return "/".join(action.option_strings) or action.dest


def _stated_default(text: str) -> str | None:
    """The default a rendered help states (None when it states none): ``(default: X)``,
    or the value a parenthesis calling it a default follows (``ar1 (nilearn's default,
    ...)``)."""
    match = STATED.search(text) or re.search(r"([\w.+-]+) \([^()]*\bdefault\b", text)
    return None if match is None else match.group(1)


# --------------------------------------------------------------------------- help texts
@pytest.mark.parametrize("command", sorted(PARSERS))
def test_every_option_has_help_stating_its_default_once(command, monkeypatch):
    monkeypatch.setenv("COLUMNS", "10000")
    parser = PARSERS[command]()
    printed = " ".join(parser.format_help().split())  # what --help prints, on one line
    problems = []
    for action in _actions(parser):
        name = _name(action)
        help_text = (action.help or "").strip()
        if not help_text:
            problems.append(f"{name}: no help text")
            continue
        if help_text != action.help or help_text[-1] in ".,;:" or help_text[0] in ".,;:":
            problems.append(f"{name}: help starts or ends with a space or punctuation")
        if help_text.count("(") != help_text.count(")"):
            problems.append(f"{name}: unbalanced parentheses in {help_text!r}")
        text = _rendered(parser, action)
        if text not in printed:
            problems.append(f"{name}: not printed by --help as rendered: {text!r}")
        if MEANINGLESS.search(text):
            problems.append(f"{name}: prints a meaningless default: {text!r}")
        stated = len(re.findall(r"\bdefault\b", text, flags=re.IGNORECASE))
        has_default = bool(action.option_strings) and not action.required
        if has_default and stated != 1:
            problems.append(f"{name}: states its default {stated} times: {text!r}")
        if not has_default and stated:
            problems.append(f"{name}: has no default but mentions one: {text!r}")
    assert not problems, "\n".join(problems)


def _agrees(stated: str, value, action: argparse.Action) -> bool:
    """Whether a default stated in a help text is ``value``, the one the command applies.

    Numbers are compared as numbers (the last number stated: "the smaller of 2 and the
    number of CPUs, here 2"), words and lists of words as text. A flag, an absent value
    or an empty list is stated in words ("off", "all", "none"), and so may a count
    option's 0 be ("progress messages").
    """
    if isinstance(value, bool) or value is None or value in ((), [], {}):
        return stated not in ("True", "False", "None", "[]", "()", "{}")
    if isinstance(value, int | float):
        numbers = re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", stated)
        if not numbers:
            return isinstance(action, argparse._CountAction) and value == 0
        return float(numbers[-1]) == float(value)
    if isinstance(value, list | tuple):
        return stated == " ".join(map(str, value))
    return stated == str(value)


def _app_config(tmp_path: Path):
    """The configuration of ``dnnrsa BIDS OUT participant --model-rdm m=M.tsv``: every
    other option at its default, as the app applies it."""
    from dnnrsa.bids_app.run import config_from_options

    bids, out = tmp_path / "bids", tmp_path / "out"
    bids.mkdir()
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.10.0"}')
    rdm = tmp_path / "m.tsv"
    rdm.write_text("\ta\tb\na\t0\t1\nb\t1\t0\n")
    opts = app_parser().parse_args([str(bids), str(out), "participant", "--model-rdm", f"m={rdm}"])
    return config_from_options(opts), out


#: Minimal command lines, and the options they give: every other option at its default.
MINIMAL = {
    "dnnrsa-train": (["clips", "labels.tsv", "out.pt", "--regime", "emotion"], {"regime"}),
    "dnnrsa-demo": (["out"], set()),
    "dnnrsa-demo-data": (["out"], set()),
}


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_printed_defaults_are_the_applied_ones(command, tmp_path):
    """The default ``--help`` states is the value the command applies when the option is
    left out: the parsed value (after its type), and for dnnrsa the value of the run's
    configuration, which every option reaches."""
    from dnnrsa._cpus import available_cpus
    from dnnrsa.bids_app.collect import DEFAULT_DERIV_SPACE, NATIVE_SPACE

    parser = PARSERS[command]()
    if command == "dnnrsa":
        config, out = _app_config(tmp_path)
        given = {"model_rdm"}
        # defaults stated in words, and the rule the run applies for each
        space = _rendered(parser, next(a for a in parser._actions if a.dest == "space"))
        words = {
            "nprocs": config.nprocs == available_cpus(),
            "work_dir": config.work_dir == (out.parent / f"{out.name}_work").resolve(),
            # left to the inputs: the default space with -d, native without
            "space": config.space is None
            and f"{DEFAULT_DERIV_SPACE} with -d" in space
            and f"'{NATIVE_SPACE}' for raw BOLD" in space,
        }
    else:
        argv, given = MINIMAL[command]
        namespace, words = parser.parse_args(argv), {}
    problems, compared = [], 0
    for action in _actions(parser):
        if not action.option_strings or action.default is argparse.SUPPRESS:
            continue
        if action.dest in given:
            continue
        if command == "dnnrsa":
            field = CONFIG_FIELD.get(action.dest, action.dest)
            if not hasattr(config, field):
                problems.append(f"{_name(action)}: reaches no field of the run's configuration")
                continue
            value = getattr(config, field)
        else:
            value = getattr(namespace, action.dest)
        stated = _stated_default(_rendered(parser, action))
        if action.dest in words:
            if not words[action.dest]:
                problems.append(f"{_name(action)}: the run does not apply {stated!r}")
            continue
        if stated is None or not _agrees(stated, value, action):
            problems.append(
                f"{_name(action)}: --help states {stated!r}, the command applies {value!r}"
            )
        compared += 1
    assert not problems, "\n".join(problems)
    assert compared >= 5


# --------------------------------------------------------------------------- the docs
def _readme_app_section() -> str:
    text = (REPO / "README.md").read_text()
    return text.split("## The BIDS App", 1)[1].split("\n## ", 1)[0]


def _own_data() -> str:
    return (REPO / "docs" / "own-data.md").read_text()


def _option_strings(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {o: a for a in parser._actions for o in a.option_strings}


@pytest.mark.parametrize("page", ["README.md", "docs/own-data.md"])
def test_options_the_docs_name_are_the_app_s(page):
    """Every option the BIDS App's pages name is an option of ``dnnrsa`` (the other
    way round: tests/test_docs.py::test_every_option_is_documented)."""
    text = _readme_app_section() if page == "README.md" else _own_data()
    named = set(re.findall(r"(?<![\w-])--[a-z][\w-]*", text)) - FOREIGN_OPTIONS
    assert len(named) > 20
    unknown = sorted(named - set(_option_strings(app_parser())))
    assert not unknown, f"{page} names options dnnrsa does not have: {unknown}"


def _documented_choices(text: str) -> dict[str, list[str]]:
    """``--option a|b|c`` of a page (a placeholder in capitals, ``COLUMN...``, left out)."""
    flat = " ".join(text.split())
    found = {}
    for option, values in re.findall(r"`(--[\w-]+) ([\w.+-]+(?:\|[\w.+-]+)+)(?:\.\.\.)?`", flat):
        found[option] = [v for v in values.split("|") if not v.isupper()]
    return found


def test_choices_the_docs_list_are_the_parser_s():
    """The README lists every choice of an option, docs/own-data.md some of them; each
    is a value the parser accepts (--confounds: a strategy of its own table)."""
    from dnnrsa.bids_app.parser import CONFOUND_STRATEGIES

    options = _option_strings(app_parser())

    def choices(option):
        action = options[option]
        return list(CONFOUND_STRATEGIES) if option == "--confounds" else list(action.choices)

    readme = _documented_choices(_readme_app_section())
    assert len(readme) >= 7
    for option, values in readme.items():
        assert sorted(values) == sorted(choices(option)), option
    own = _documented_choices(_own_data())
    assert len(own) >= 3
    for option, values in own.items():
        assert set(values) <= set(choices(option)), option


def _documented_defaults(text: str) -> dict[str, str]:
    """Defaults docs/own-data.md states in its sentences: "`--radius-mm` (default 6)",
    "`--glm lsa` (default)", "`--face-crop auto`, the default", "`--n-permutations`,
    default 1000", "`--cluster-threshold` is the cluster-forming p, default 0.001"."""
    flat = " ".join(text.split())
    found = {}
    patterns = (
        r"`(--[\w-]+)`\s*\(default:?\s*`?([\w.]+)`?",
        r"`(--[\w-]+) ([\w.+]+)`,? \(default\b",
        r"`(--[\w-]+) ([\w.+]+)`, the default\b",
        r"`(--[\w-]+)`(?: is [^,()]*)?, default ([\w.]+)",
        r"`(--[\w-]+)` [a-z ]+ \(default:? ([\w.]+)\)",
    )
    for pattern in patterns:
        for option, value in re.findall(pattern, flat):
            found[option] = value.rstrip(".")
    return found


def test_defaults_the_docs_state_are_applied(tmp_path):
    """docs/own-data.md's defaults are those of a run given no such option (--space: the
    space used with -d)."""
    from dnnrsa.bids_app.collect import DEFAULT_DERIV_SPACE

    documented = _documented_defaults(_own_data())
    assert len(documented) >= 8, documented
    config, _out = _app_config(tmp_path)
    options = _option_strings(app_parser())
    for option, value in documented.items():
        action = options[option]
        if action.dest == "space":
            assert value == DEFAULT_DERIV_SPACE
            continue
        applied = getattr(config, CONFIG_FIELD.get(action.dest, action.dest))
        if applied in ((), None):  # "(default: all named layers)": nothing chosen
            assert value in ("all", "none"), option
        elif isinstance(applied, int | float):
            assert float(value) == float(applied), option
        else:
            assert value == applied, option


def test_documented_command_lines_parse():
    """The command lines of the README's BIDS App section and of docs/own-data.md are
    accepted by dnnrsa's parser (optional parts in brackets included)."""
    from dnnrsa.bids_app.parser import LEVELS

    lines = []
    for text in (_readme_app_section(), _own_data()):
        for block in re.findall(r"^\s*```(?:bash|text)\n(.*?)^\s*```", text, flags=re.S | re.M):
            for line in block.replace("\\\n", " ").splitlines():
                if line.split()[:1] == ["dnnrsa"]:
                    lines.append(line.replace("[", " ").replace("]", " ").split()[1:])
    assert len(lines) >= 3
    for argv in lines:
        opts = app_parser().parse_args(argv)
        assert opts.analysis_level in LEVELS, argv


# --------------------------------------------------------------------------- refusals
def _exclusions() -> set[tuple[str, str]]:
    """The pairs a help text of any command says exclude each other: "(not with --X)"."""
    pairs = set()
    for command, build in PARSERS.items():
        for action in build()._actions:
            for other in re.findall(r"\bnot with (--[\w-]+)", action.help or ""):
                pairs.add((command, f"{_name(action)} / {other}"))
    return pairs


def test_options_that_exclude_each_other_are_refused(tmp_path, capsys):
    """Options whose help says they exclude each other, and --tfce with --tfce-layers,
    end with exit 64 and a message naming both, before anything is done."""
    from dnnrsa.bids_app.run import main as app_main
    from dnnrsa.bids_app.train_cli import main as train_main

    clips, labels = tmp_path / "clips", tmp_path / "labels.tsv"
    clips.mkdir()
    labels.write_text("file\temotion\n")
    bids = tmp_path / "bids"
    bids.mkdir()
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.10.0"}')
    cases = {
        ("dnnrsa-train", "stimulus_dir / --corpus"): (
            train_main,
            [str(clips), str(labels), "--corpus", "cremad", str(tmp_path / "c")],
            ["--corpus", str(clips)],
        ),
        ("dnnrsa-train", "labels / --corpus"): (
            train_main,
            [str(clips), str(labels), "--corpus", "cremad", str(tmp_path / "c")],
            ["--corpus", "the labels table"],
        ),
        ("dnnrsa-train", "output / --output-dir"): (
            train_main,
            [str(clips), str(labels), str(tmp_path / "o.pt"), "--regime", "emotion"]
            + ["--output-dir", str(tmp_path / "nets")],
            ["--output-dir", "checkpoint file", "not both"],
        ),
        ("dnnrsa", "--tfce / --tfce-layers"): (
            app_main,
            [str(bids), str(tmp_path / "out"), "group", "--tfce", "--tfce-layers", "fc1"],
            ["--tfce ", "--tfce-layers", "exclude each other"],
        ),
    }
    assert _exclusions() <= set(cases), "an exclusion stated in a help text has no case here"
    for (command, pair), (main, argv, words) in cases.items():
        assert main(argv) == EXIT_USAGE, (command, pair)
        err = capsys.readouterr().err
        missing = [w for w in words if w not in err]
        assert not missing, f"{command} {pair}: {missing} not in {err!r}"
    assert not (tmp_path / "nets").exists() and not (tmp_path / "o.pt").exists()
    assert not list((tmp_path / "out").glob("task-*"))


# --------------------------------------------------------------------------- exit codes
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
