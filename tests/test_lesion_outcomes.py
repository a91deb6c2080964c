"""Reading lesion outcomes back from their table: the class count comes from the
network's checkpoint (given, or recorded by the table's sidecar), not from the table."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest

pytest.importorskip("torch")

from dnnrsa.lesions import checkpoint_class_count, read_lesion_outcomes  # noqa: E402


def _table(path):
    """Outcomes of a 4-class network on stimuli of 3 of its classes (numbers as strings)."""
    targets = ["1", "2", "3", "1", "2", "3"]
    table = pd.DataFrame(
        {
            "stim_file": ["001", "002", "003", "004", "005", "006"],
            "target": targets,
            "predicted_none": targets,
            "correct_none": 1,
            "predicted_visual": ["4"] * 6,
            "correct_visual": 0,
        }
    )
    table.to_csv(path, sep="\t", index=False)
    return table


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from dnnrsa.models import build_model, get_model, save_checkpoint

    spec = get_model("crosschannel")
    path = tmp_path_factory.mktemp("ckpt") / "emotion.pt"
    return save_checkpoint(
        path, build_model(spec, 4, seed=1), spec, labels=["1", "2", "3", "4"], regime="emotion"
    )


def test_class_count_from_the_checkpoint(tmp_path, checkpoint):
    written = _table(tmp_path / "outcomes.tsv")
    assert checkpoint_class_count(checkpoint) == 4
    got = read_lesion_outcomes(tmp_path / "outcomes.tsv", checkpoint=checkpoint)
    assert got.attrs["n_classes"] == 4  # the table's targets hold 3 of the 4 classes
    assert got["stim_file"].tolist() == written["stim_file"].tolist()  # strings kept
    assert got["target"].tolist() == written["target"].tolist()
    for column in ("correct_none", "correct_visual"):
        assert got[column].tolist() == written[column].tolist()
    # an explicit count wins
    assert (
        read_lesion_outcomes(tmp_path / "outcomes.tsv", 6, checkpoint=checkpoint).attrs["n_classes"]
        == 6
    )


def test_class_count_from_the_checkpoint_the_sidecar_records(tmp_path, checkpoint, caplog):
    _table(tmp_path / "outcomes.tsv")
    side = tmp_path / "outcomes.json"
    side.write_text(json.dumps({"Description": "x", "Checkpoint": str(checkpoint)}))
    assert read_lesion_outcomes(tmp_path / "outcomes.tsv").attrs["n_classes"] == 4
    # a checkpoint that is no longer there: the targets' classes, with a warning
    side.write_text(json.dumps({"Checkpoint": str(tmp_path / "gone.pt")}))
    with caplog.at_level(logging.WARNING, logger="dnnrsa.lesions"):
        assert read_lesion_outcomes(tmp_path / "outcomes.tsv").attrs["n_classes"] == 3
    assert "gone.pt" in caplog.text
    # no sidecar, no checkpoint: the targets' classes
    side.unlink()
    assert read_lesion_outcomes(tmp_path / "outcomes.tsv").attrs["n_classes"] == 3
    assert read_lesion_outcomes(tmp_path / "outcomes.tsv", 5).attrs["n_classes"] == 5
