"""The README's exit-code table, one test per row, each running the app on a small data set.

More cases of several rows live next to the feature they check:
``test_bids_app.py`` (missing events or stimuli 66, invalid events 16, unknown
participants 18, unknown models and layers 64, output inside the data set 64) and
``test_preflight.py`` (truncated BOLD and non-numeric onsets 16, degenerate model RDMs
64, impossible radii 64, blocked output folders 73, checkpoint messages).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from dnnrsa.bids_app.errors import EXIT_CODES, EXIT_INTERRUPTED
from dnnrsa.bids_app.run import main

README = Path(__file__).resolve().parents[1] / "README.md"
FAST = ["--skip-bids-validation", "--radius-mm", "6", "--min-voxels", "5", "--nprocs", "1"]


@pytest.fixture(scope="module")
def small(bids_one_subject):
    """The session's one-participant data set (a test that edits it edits a copy)."""
    return bids_one_subject


def _argv(small, tmp_path, *extra, root=None):
    return [
        str(root or small.root),
        str(tmp_path / "out"),
        "participant",
        "-w",
        str(tmp_path / "work"),
        "--model-rdm",
        f"category={small.model_rdm}",
        *FAST,
        *extra,
    ]


def _readme_codes() -> dict[int, str]:
    """The exit codes the README documents, with their meaning."""
    text = README.read_text()
    start = text.index("- Exit codes:")
    block = " ".join(text[start:].split("\n\n")[0].split())
    block = block.split(".")[0]
    return {int(code): what.strip() for code, what in re.findall(r"(\d+) ([^,]+)", block)}


def test_readme_table_matches_the_code():
    documented = _readme_codes()
    assert set(documented) == {0, 1, 16, 17, 18, 64, 66, 73}
    assert set(documented) == set(EXIT_CODES) - {EXIT_INTERRUPTED}
    tested = {int(m) for m in re.findall(r"def test_exit_(\d+)_", Path(__file__).read_text())}
    assert tested == set(documented), "every documented exit code has its test here"


def test_exit_0_success(small, tmp_path):
    assert main(_argv(small, tmp_path)) == 0
    func = tmp_path / "out" / "sub-01" / "func"
    assert (func / "sub-01_task-cat_space-native_desc-brain_mask.nii.gz").is_file()
    assert list(func.glob("*_model-category_stat-spearman_statmap.nii.gz"))
    assert main(["--version"]) == 0


def test_exit_1_unexpected_failure(small, tmp_path, monkeypatch, capsys):
    import dnnrsa.rdm

    def broken(*args, **kwargs):
        raise RuntimeError("injected internal fault")

    monkeypatch.setattr(dnnrsa.rdm, "validate_model_rdm", broken)
    assert main(_argv(small, tmp_path, "-v")) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err  # -v shows where it happened ...
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert "injected internal fault" in lines[-1]  # ... and the last line is the message


def test_exit_16_dataset_invalid(small, tmp_path, capsys):
    root = tmp_path / "bids"
    shutil.copytree(small.root, root)
    (root / "dataset_description.json").unlink()
    assert main(_argv(small, tmp_path, root=root)) == 16
    assert "dataset_description.json" in capsys.readouterr().err


def test_exit_17_unknown_level(small, tmp_path):
    assert main([str(small.root), str(tmp_path / "out"), "subject"]) == 17


def test_exit_18_filters_select_nothing(small, tmp_path, capsys):
    assert main(_argv(small, tmp_path, "--participant-label", "99")) == 18
    assert "99" in capsys.readouterr().err


def test_exit_64_usage(small, tmp_path, capsys):
    assert main(_argv(small, tmp_path, "--radius-mm", "inf")) == 64
    assert "--radius-mm" in capsys.readouterr().err
    assert main(_argv(small, tmp_path, "--no-such-option")) == 64


def test_exit_66_input_missing(small, tmp_path, capsys):
    argv = _argv(small, tmp_path, root=tmp_path / "absent")
    assert main(argv) == 66
    assert "absent" in capsys.readouterr().err


def test_exit_73_cannot_write(small, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    argv = _argv(small, tmp_path)
    argv[1] = str(blocker / "out")
    assert main(argv) == 73
    assert "a_file" in capsys.readouterr().err
