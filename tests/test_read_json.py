"""One reader of JSON files (dnnrsa.bidsnames.read_json) with two policies: the pipeline's
(errors raise) and the reports' (an unreadable file is skipped with a warning)."""

from __future__ import annotations

import json
import logging

import pytest

from dnnrsa.bidsnames import read_json
from dnnrsa.reports import discovery
from dnnrsa.reports.discovery import sidecar

CONTENTS = {
    "invalid": (b'{"a": ', json.JSONDecodeError, "Expecting value"),
    "empty": (b"", json.JSONDecodeError, "Expecting value"),
    "latin1": ('{"a": "\xe9"}'.encode("latin-1"), UnicodeDecodeError, "can't decode byte 0xe9"),
    "list": (b"[1, 2]", ValueError, "expected a JSON object, got list"),
}


def test_absent_files_and_objects_read_alike_under_both_policies(tmp_path):
    (tmp_path / "a.json").write_text('{"b": 1, "a": [1, 2], "p": {"x": null}}')
    (tmp_path / "folder.json").mkdir()
    for on_error in ("raise", "warn"):
        assert list(read_json(tmp_path / "a.json", on_error=on_error)) == ["b", "a", "p"]
        assert read_json(tmp_path / "absent.json", on_error=on_error) == {}
        assert read_json(tmp_path / "folder.json", on_error=on_error) == {}


@pytest.mark.parametrize("name", sorted(CONTENTS))
def test_the_pipeline_raises_and_the_reports_warn(tmp_path, caplog, name):
    content, error, message = CONTENTS[name]
    path = tmp_path / f"{name}.json"
    path.write_bytes(content)
    with pytest.raises(error, match=message):
        read_json(path)
    caplog.set_level(logging.WARNING)
    assert read_json(path, on_error="warn", logger=discovery.logger) == {}
    assert sidecar(tmp_path / f"{name}.nii.gz") == {}
    if name == "list":  # another JSON value than an object: no warning
        assert caplog.records == []
    else:
        assert [r.name for r in caplog.records] == ["dnnrsa.reports.discovery"] * 2
        assert all(
            r.getMessage().startswith(f"cannot read {path} (") and "ignoring it" in r.getMessage()
            for r in caplog.records
        )


def test_the_policy_is_checked(tmp_path):
    with pytest.raises(
        ValueError, match=r"on_error must be one of \['raise', 'warn'\]; got 'skip'"
    ):
        read_json(tmp_path / "a.json", on_error="skip")
