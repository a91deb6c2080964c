import os

import pytest

from dnnrsa._io import atomic_write


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as fh:
            fh.write("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]  # no temporary left behind
    with atomic_write(target) as fh:
        fh.write("new")
    assert target.read_text() == "new"
