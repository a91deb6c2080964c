"""BIDS derivative names: built and parsed one way, labels cleaned one way."""

from __future__ import annotations

import json

import pytest

from dnnrsa.bidsnames import (
    build_name,
    build_stem,
    check_label,
    model_stem,
    parse_name,
    read_json,
    sidecar_path,
    split_extension,
    subject_dir,
    to_label,
    write_json,
)


def test_build_and_parse_round_trip():
    entities = {"sub": "01", "task": "av", "space": "MNI152NLin2009cAsym", "model": "emotion"}
    entities |= {"layer": "conv1", "stat": "spearman"}
    name = build_name(entities, "statmap", ".nii.gz")
    assert name == (
        "sub-01_task-av_space-MNI152NLin2009cAsym_model-emotion_layer-conv1_stat-spearman"
        "_statmap.nii.gz"
    )
    parsed = parse_name(name)
    assert parsed.entities == entities and list(parsed.entities) == list(entities)
    assert (parsed.suffix, parsed.extension) == ("statmap", ".nii.gz")
    assert parse_name(f"/out/sub-01/func/{name}").entities == entities


def test_none_entities_are_left_out_and_bad_labels_refused():
    assert build_name({"task": "av", "layer": None}, "rdm", ".tsv") == "task-av_rdm.tsv"
    with pytest.raises(ValueError, match="'layer'"):
        build_name({"task": "av", "layer": "conv_1"}, "rdm", ".tsv")
    with pytest.raises(ValueError, match="suffix"):
        build_name({"task": "av"}, "r-dm", ".tsv")


@pytest.mark.parametrize(
    "text, label",
    [("conv 1/a", "conv1a"), ("fc-7", "fc7"), ("émotion", "motion"), ("A1", "A1")],
)
def test_to_label_keeps_ascii_letters_and_digits(text, label):
    assert to_label(text) == label


def test_to_label_without_letters():
    with pytest.raises(ValueError, match="'/-'"):
        to_label("/-")
    assert to_label("/-", fallback="dnn") == "dnn"


def test_check_label():
    assert check_label("sub-01", "subject", prefix="sub-") == "01"
    assert check_label("01", "subject", prefix="sub-") == "01"
    assert check_label(None, "subject") is None
    with pytest.raises(ValueError, match="subject must be an alphanumeric BIDS label; got '0 1'"):
        check_label("0 1", "subject")


def test_model_stem_and_extensions():
    assert model_stem("emotion", "conv1") == "model-emotion_layer-conv1"
    assert model_stem("category") == "model-category"
    assert split_extension("a_bold.nii.gz") == ("a_bold", ".nii.gz")
    assert split_extension("a_rdm.tsv") == ("a_rdm", ".tsv")
    assert sidecar_path("/x/a_statmap.nii.gz").as_posix() == "/x/a_statmap.json"
    assert sidecar_path("/x/a_rdm.tsv").as_posix() == "/x/a_rdm.json"


def test_build_stem_and_subject_dir():
    stem = build_stem({"task": "av", "space": "MNI", "model": "emotion", "layer": None})
    assert stem == "task-av_space-MNI_model-emotion"
    assert build_stem({"layer": None}) == ""
    assert build_name({"layer": None}, "stimuli", ".tsv") == "stimuli.tsv"
    assert build_name({"task": "av"}, "stimuli", ".tsv") == "task-av_stimuli.tsv"
    with pytest.raises(ValueError, match="'desc'"):
        build_stem({"desc": "a_b"})
    assert subject_dir("/out", "01").as_posix() == "/out/sub-01/func"
    assert subject_dir("/out", "01", "anat").as_posix() == "/out/sub-01/anat"
    with pytest.raises(ValueError, match="'sub'"):
        subject_dir("/out", "0/1")


def test_json_round_trip(tmp_path):
    path = tmp_path / "deep" / "a_rdm.json"
    write_json(path, {"b": 1, "a": [1, 2], "p": tmp_path})
    assert json.loads(path.read_text()) == {"b": 1, "a": [1, 2], "p": str(tmp_path)}
    assert list(read_json(path)) == ["b", "a", "p"]  # order kept
    assert read_json(tmp_path / "absent.json") == {}
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(ValueError, match="expected a JSON object"):
        read_json(tmp_path / "list.json")
