"""Face detection and face crops (dnnrsa.faces)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from dnnrsa.faces import (
    CropTableError,
    centre_box,
    choose_face,
    combine_boxes,
    detect_face_crop,
    read_crop_table,
    resolve_crops,
    search_frames,
    write_crop_table,
)
from dnnrsa.stimuli import InputRecipe, load_inputs, write_clip

from .conftest import shared_data

#: The face in talking_face/jwpIntro.mp4 (pixels, x1 and y1 exclusive).
JWP_FACE = (180, 40, 360, 290)


def iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


def gradient_frames(n=12, height=120, width=160):
    """A smooth moving colour gradient: no face anywhere."""
    yy, xx = np.mgrid[:height, :width].astype(np.float64)
    out = [
        np.stack([xx / width * 255, yy / height * 255, np.full_like(xx, 60 + 5 * t)], -1)
        for t in range(n)
    ]
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def demo_face(size: int, identity: int = 2, emotion: int = 3, n_frames: int = 12):
    """Frames of one of the demo's drawn faces."""
    from dnnrsa.demo.clips import _actors
    from dnnrsa.demo.design import EMOTIONS, IDENTITIES, STREAM_CLIP
    from dnnrsa.demo.talking_faces import expression_tracks, render_face_clip

    face = _actors(0)[IDENTITIES[identity]][0]
    rng = np.random.default_rng([0, STREAM_CLIP, identity, emotion, 0, 0, 0])
    tracks = expression_tracks(EMOTIONS[emotion], n_frames, 12, rng)
    return render_face_clip(face, tracks, size=size, rng=rng)


# --------------------------------------------------------------------------- boxes
def test_box_rules():
    assert centre_box(640, 480) == (80, 0, 560, 480)
    assert centre_box(96, 96) == (0, 0, 96, 96)
    # the largest face wins; between equal ones, the one nearest the centre
    assert choose_face([[0, 0, 10, 10], [50, 50, 80, 80]], 100, 100) == 1
    assert choose_face([[0, 0, 20, 20], [40, 40, 60, 60]], 100, 100) == 1
    assert choose_face(np.empty((0, 4)), 100, 100) is None
    # median centre and side, plus the margin; a stray box does not move it
    boxes = [[40, 40, 60, 60], [42, 40, 62, 60], [41, 41, 61, 61], [0, 0, 90, 90]]
    x0, y0, x1, y1 = combine_boxes(boxes, 200, 100, margin=0.25)
    assert (x1 - x0) == (y1 - y0) == 30
    assert abs((x0 + x1) / 2 - 51.5) <= 1 and abs((y0 + y1) / 2 - 50.5) <= 1
    # a box larger than the frame shrinks to its shorter side and stays inside
    assert combine_boxes([[0, 0, 90, 90]], 160, 100, margin=0.25) == (0, 0, 100, 100)
    assert search_frames(36, (1,)) == sorted(set(search_frames(36, ())) | {18})
    assert len(search_frames(3, (1,))) == 3


# --------------------------------------------------------------------------- real footage
def test_real_talking_face_is_found_and_tracked():
    path = shared_data("talking_face", "jwpIntro.mp4")
    (crop,) = resolve_crops([path], "auto")
    assert crop.source == "detected"
    assert len(crop.frames) >= 5 and crop.width == 640 and crop.height == 480
    score = iou(crop.box, JWP_FACE)
    print(f"jwpIntro.mp4: automatic box {crop.box}, IoU with the face region {score:.3f}")
    assert score >= 0.5
    # the middle frame (the one the default recipe feeds the model) was searched
    assert 86 in crop.frames
    # per-frame detections agree: every frame finds the face, and each box lies
    # within a few pixels of the median box (at most 1/8 of the face side: the head moves)
    boxes = np.array([d for d in crop.detections if d is not None], float)
    assert len(boxes) == len(crop.frames)
    median = np.median(boxes, axis=0)
    side = median[2] - median[0]
    deviation = np.abs(boxes - median)
    print(
        f"per-frame boxes: median absolute deviation {np.median(deviation):.1f} px, "
        f"largest {deviation.max():.1f} px (face side {side:.0f} px)"
    )
    assert np.median(deviation) <= 5
    assert deviation.max() <= 0.125 * side
    # the model's input is a face: the crop is far smaller than the centred square
    assert (crop.box[2] - crop.box[0]) < 0.6 * 480


# --------------------------------------------------------------------------- synthetic clips
def test_clip_without_a_face_falls_back_with_a_warning(tmp_path, caplog):
    path = write_clip(tmp_path / "house.mp4", gradient_frames(), 12)
    with caplog.at_level(logging.WARNING, logger="dnnrsa.faces"):
        (crop,) = resolve_crops([path], "auto", names=["house.mp4"])
    assert crop.source == "fallback" and crop.n_detected == 0
    assert crop.box == centre_box(160, 120)
    assert any("no face found in house.mp4" in r.getMessage() for r in caplog.records)


def test_many_clips_without_a_face_give_one_warning(tmp_path, caplog):
    """Beyond three clips without a face, one warning counts them and names the first
    three, instead of a line per clip."""
    paths = [write_clip(tmp_path / f"house{i}.mp4", gradient_frames(), 12) for i in range(5)]
    names = [p.name for p in paths]
    with caplog.at_level(logging.WARNING, logger="dnnrsa.faces"):
        crops = resolve_crops(paths, "auto", names=names, n_jobs=1)
    assert [c.source for c in crops] == ["fallback"] * 5
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert messages[0].startswith(
        "no face found in 5 of 5 clips (house0.mp4, house1.mp4, house2.mp4 and 2 more; "
    )


def test_two_faces_the_largest_is_chosen():
    big, small = demo_face(96, identity=2), demo_face(64, identity=3, emotion=1)
    n = len(big)
    frames = np.full((n, 128, 224, 3), 128, np.uint8)
    frames[:, 16:112, 112:208] = big  # the larger face, right of centre
    frames[:, 32:96, 16:80] = small  # the smaller face, left
    crop = detect_face_crop(frames)
    assert crop.source == "detected"
    cx = (crop.box[0] + crop.box[2]) / 2
    assert 112 <= cx <= 208, crop.box
    for det in crop.detections:
        if det is not None:
            assert det[0] >= 100, det  # every frame picked the larger face


def test_demo_faces_are_detected():
    """The drawn faces of the demo (fast setting, 96 px): detected in >= 95% of clips."""
    from dnnrsa.demo.clips import _actors
    from dnnrsa.demo.design import EMOTIONS, IDENTITIES, SENTENCES, STREAM_CLIP
    from dnnrsa.demo.talking_faces import expression_tracks, render_face_clip

    actors = _actors(0)
    found = total = 0
    for a, identity in enumerate(IDENTITIES):
        for e, emotion in enumerate(EMOTIONS):
            for s in range(len(SENTENCES)):
                rng = np.random.default_rng([0, STREAM_CLIP, a, e, s, 0, 0])
                tracks = expression_tracks(emotion, 36, 12, rng)
                frames = render_face_clip(actors[identity][0], tracks, size=96, rng=rng)
                idx = search_frames(len(frames), (1,))
                crop = detect_face_crop(frames[idx], idx, warn=False)
                found += crop.source == "detected"
                total += 1
    print(f"demo faces detected in {found} of {total} clips ({found / total:.1%})")
    assert found / total >= 0.95


# --------------------------------------------------------------------------- tables
def _write_tsv(path, rows, column="stim_file"):
    lines = [f"{column}\tx0\ty0\tx1\ty1"] + ["\t".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_hand_given_table_overrides_detection(tmp_path):
    a = write_clip(tmp_path / "stimuli" / "a.mp4", gradient_frames(), 12)
    b = write_clip(tmp_path / "stimuli" / "sub" / "b.mp4", gradient_frames(), 12)
    table = _write_tsv(tmp_path / "crops.tsv", [("sub/b.mp4", 10, 20, 90, 100)])
    crops = resolve_crops([a, b], table, names=["a.mp4", "sub/b.mp4"])
    assert crops[1].box == (10, 20, 90, 100) and crops[1].source == "table"
    assert crops[0].source == "fallback"  # no row: detected (here: nothing found)
    # the model's input is the hand-given crop
    visual = InputRecipe(modalities=("visual",))
    direct = load_inputs(b, visual, crop_box=(10, 20, 90, 100))["visual"]
    np.testing.assert_array_equal(load_inputs(b, visual, crops[1].box)["visual"], direct)
    assert not np.array_equal(load_inputs(b, visual)["visual"], direct)
    # the table written back is read back to the same boxes
    out = write_crop_table(tmp_path / "used.tsv", ["a.mp4", "sub/b.mp4"], crops, mode="table")
    again = resolve_crops([a, b], out, names=["a.mp4", "sub/b.mp4"])
    assert [c.box for c in again] == [c.box for c in crops]
    assert list(read_crop_table(out)["name"]) == ["a.mp4", "sub/b.mp4"]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (("b.mp4", 10, 20, 90, 100), "row 2 ('b.mp4'): no such stimulus"),
        (("a.mp4", 100, 20, 200, 100), "does not lie inside the 160x120 frame"),
        (("a.mp4", 50, 20, 40, 100), "row 2 (stim_file 'a.mp4')"),
        (("a.mp4", "x", 20, 40, 100), "integer pixels"),
    ],
)
def test_bad_table_rows_name_the_row(tmp_path, row, message):
    a = write_clip(tmp_path / "a.mp4", gradient_frames(), 12)
    c = write_clip(tmp_path / "c.mp4", gradient_frames(), 12)
    table = _write_tsv(tmp_path / "crops.tsv", [("c.mp4", 0, 0, 120, 120), row])
    with pytest.raises(CropTableError, match="row 2") as info:
        resolve_crops([a, c], table, names=["a.mp4", "c.mp4"])
    assert message in str(info.value)


def test_table_needs_its_columns(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("stim_file\tleft\ttop\na.mp4\t1\t2\n")
    with pytest.raises(CropTableError, match="lacks the columns"):
        read_crop_table(bad)


# --------------------------------------------------------------------------- training
def _labelled_clips(folder, n=4):
    import pandas as pd

    sr = 16000
    t = np.arange(sr) / sr
    rows = []
    for k in range(n):
        audio = (0.3 * np.sin(2 * np.pi * (220 + 110 * k) * t)).astype(np.float32)
        write_clip(folder / f"c{k}.mp4", gradient_frames(6), 12, audio, sr)
        rows.append({"file": f"c{k}.mp4", "emotion": ["happy", "sad"][k % 2]})
    pd.DataFrame(rows).to_csv(folder / "labels.tsv", sep="\t", index=False)
    return folder / "labels.tsv"


def test_training_records_the_crop_and_extraction_warns(tmp_path, capsys, caplog):
    from dnnrsa.bids_app.train_cli import main
    from dnnrsa.features import extract_features
    from dnnrsa.models import load_model

    stim = tmp_path / "stim"
    stim.mkdir()
    labels = _labelled_clips(stim)
    out = tmp_path / "net.pt"
    common = [str(stim), str(labels), str(out), "--regime", "emotion", "--no-progress"]
    common += ["--epochs", "1", "--batch-size", "2"]
    # bad crop tables: exit 64 naming the row; a missing table: 66
    bad = _write_tsv(
        tmp_path / "bad.tsv", [("c0.mp4", 0, 0, 60, 60), ("c1.mp4", 0, 0, 500, 60)], "file"
    )
    assert main([*common, "--face-crop", str(bad)]) == 64
    assert "row 2" in capsys.readouterr().err
    unknown = _write_tsv(tmp_path / "unknown.tsv", [("zz.mp4", 0, 0, 60, 60)], "file")
    assert main([*common, "--face-crop", str(unknown)]) == 64
    assert "row 1 ('zz.mp4'): no such stimulus" in capsys.readouterr().err
    assert main([*common, "--face-crop", str(tmp_path / "none.tsv")]) == 66
    # the checkpoint records the mode; extraction with another mode warns
    assert main([*common, "--face-crop", "centre"]) == 0, capsys.readouterr().err
    assert load_model(checkpoint=out)[2]["extra"]["face_crop"] == "centre"
    paths = sorted(stim.glob("*.mp4"))
    with caplog.at_level(logging.WARNING, logger="dnnrsa.faces"):
        extract_features(paths, checkpoint=out, crop_boxes="centre", layers=["visual_pool1"])
        assert not [r for r in caplog.records if "was trained with face crop" in r.getMessage()]
        fs = extract_features(paths, checkpoint=out, crop_boxes="auto", layers=["visual_pool1"])
    assert any("trained with face crop 'centre'" in r.getMessage() for r in caplog.records)
    assert [c.source for c in fs.crops] == ["fallback"] * 4


# --------------------------------------------------------------------------- the BIDS App
def test_app_face_crop_table_errors(tmp_path, capsys):
    from dnnrsa.bids_app.run import main
    from dnnrsa.models import build_model, get_model, save_checkpoint

    from .bids_fixtures import make_small_bids

    small = make_small_bids(tmp_path / "bids")
    spec = get_model("crosschannel")
    ckpt = save_checkpoint(tmp_path / "net.pt", build_model(spec, 2), spec, labels=["a", "b"])
    base = [str(small.root), str(tmp_path / "o"), "participant", "--checkpoint", str(ckpt)]
    base += ["--skip-bids-validation", "-w", str(tmp_path / "w"), "--face-crop"]
    first = small.stim_files[0]
    cases = [
        (
            [(first, 0, 0, 8, 8), ("nosuch.mp4", 0, 0, 8, 8)],
            "row 2 ('nosuch.mp4'): no such stimulus",
        ),
        ([(first, 0, 0, 8, 8)], "row 1 (stim01.wav): the stimulus has no frames"),
        ([(first, 10, 0, 5, 8)], f"row 1 (stim_file '{first}')"),
    ]
    for k, (rows, message) in enumerate(cases):
        table = _write_tsv(tmp_path / f"crops{k}.tsv", rows)
        assert main([*base, str(table)]) == 64
        err = capsys.readouterr().err
        assert message.replace("stim01", first.split(".")[0]) in err, err
    assert main([*base, str(tmp_path / "none.tsv")]) == 66
    assert "--face-crop table not found" in capsys.readouterr().err


# --------------------------------------------------------------------------- report
def test_report_contact_sheet(tmp_path):
    from dnnrsa.reports.discovery import open_context
    from dnnrsa.reports.render import FigureStore
    from dnnrsa.reports.sections import face_crops_section

    bids, out = tmp_path / "bids", tmp_path / "out"
    face = write_clip(bids / "stimuli" / "face.mp4", demo_face(96), 12)
    plain = write_clip(bids / "stimuli" / "plain.mp4", gradient_frames(), 12)
    names = ["face.mp4", "plain.mp4"]
    crops = resolve_crops([face, plain], "auto", names=names)
    assert [c.source for c in crops] == ["detected", "fallback"]
    out.mkdir()
    ctx = open_context(out, "emotion", "MNI152NLin2009cAsym", None, None, FigureStore(out, True))
    assert "No face crops found" in face_crops_section(ctx)
    write_crop_table(out / "task-emotion_desc-facecrops_stimuli.tsv", names, crops)
    (out / "dnnrsa_config.toml").write_text(f'bids_dir = "{bids}"\n')
    html = face_crops_section(ctx)
    assert "a face was detected in 1 of 2 stimuli" in html
    assert "data:image/png;base64," in html
    assert (out / "figures" / "task-emotion_desc-facecrops_figure.png").is_file()


# --------------------------------------------------------------------------- determinism
def test_parallel_detection_equals_serial(tmp_path):
    """Detection in threads finds the same boxes as detection in one thread, every time."""
    paths = [
        write_clip(tmp_path / f"face{i}.mp4", demo_face(96, identity=i % 6, emotion=i % 6), 12)
        for i in range(12)
    ]
    names = [p.name for p in paths]
    serial = [c.to_dict() for c in resolve_crops(paths, "auto", names=names, n_jobs=1)]
    for _ in range(3):
        threaded = resolve_crops(paths, "auto", names=names, n_jobs=4)
        assert [c.to_dict() for c in threaded] == serial
