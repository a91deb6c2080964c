"""Stimulus decoding and model inputs (dnnrsa.stimuli)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dnnrsa.stimuli import (
    InputRecipe,
    StimulusError,
    face_input,
    load_inputs,
    logmel_input,
    prepare_inputs,
    read_clip,
    write_clip,
)

RAVDESS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ravdess"


def _frames(n=20, height=48, width=64):
    """Smooth moving colour gradients (codec friendly), uint8 (n, h, w, 3)."""
    yy, xx = np.mgrid[:height, :width].astype(np.float64)
    out = []
    for t in range(n):
        r = 128 + 100 * np.sin(2 * np.pi * (xx / width + t / n))
        g = 128 + 100 * np.cos(2 * np.pi * yy / height)
        b = np.full_like(xx, 40 + 8 * t)
        out.append(np.stack([r, g, b], -1))
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _tone(freq_hz, duration_s, sample_rate, amplitude=0.5):
    t = np.arange(int(round(duration_s * sample_rate))) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


@pytest.mark.parametrize(
    ("suffix", "video_codec", "audio_codec"),
    [
        (".mp4", "libx264", "aac"),
        (".mov", "libx265", "aac"),
        (".mkv", "libvpx-vp9", "flac"),
        (".avi", "mpeg4", "mp3"),
    ],
)
def test_roundtrip_frames_and_audio(tmp_path, suffix, video_codec, audio_codec):
    frames = _frames()
    sr = 44100
    audio = _tone(440.0, 1.0, sr) * np.hanning(sr).astype(np.float32)
    path = write_clip(
        tmp_path / f"clip{suffix}",
        frames,
        25,
        audio,
        sr,
        video_codec=video_codec,
        audio_codec=audio_codec,
    )
    clip = read_clip(path)
    assert clip.frames.shape == frames.shape
    assert clip.fps == pytest.approx(25.0)
    # lossy codecs: mean absolute error of a few gray levels on smooth content
    err = np.abs(clip.frames.astype(float) - frames.astype(float)).mean()
    assert err < 6.0
    assert clip.sample_rate == sr
    # align (mp3 in avi has no gapless info) and compare the waveform
    ref = audio[2000:-2000]
    lags = np.arange(0, 3000)
    xc = [np.dot(clip.audio[k : k + len(ref)], ref) for k in lags]
    lag = int(lags[int(np.argmax(xc))])
    if audio_codec != "mp3":
        assert lag == 2000  # container timing preserved: no offset
    got = clip.audio[lag : lag + len(ref)]
    assert np.corrcoef(got, ref)[0, 1] > 0.99
    assert np.sqrt(np.mean((got - ref) ** 2)) < 0.02


def test_write_clip_checks_arguments(tmp_path):
    with pytest.raises(ValueError, match="even"):
        write_clip(tmp_path / "a.mp4", np.zeros((2, 5, 6, 3), np.uint8), 25)
    with pytest.raises(ValueError, match="uint8"):
        write_clip(tmp_path / "a.mp4", np.zeros((2, 4, 6, 3)), 25)
    with pytest.raises(ValueError, match="sample_rate"):
        write_clip(tmp_path / "a.mp4", np.zeros((2, 4, 6, 3), np.uint8), 25, np.zeros(10))
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_video_without_audio_and_corrupt_files_name_the_file(tmp_path):
    silent = write_clip(tmp_path / "silent.mp4", _frames(6), 25)
    with pytest.raises(StimulusError, match="silent.mp4.*no audio"):
        load_inputs(silent)
    blank = load_inputs(silent, missing="blank")
    recipe = InputRecipe()
    expected_silence = (np.log(1e-6) - recipe.mel_center) / recipe.mel_scale
    np.testing.assert_allclose(blank["auditory"], expected_silence, rtol=1e-6)
    corrupt = tmp_path / "broken.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with pytest.raises(StimulusError, match="broken.mp4"):
        read_clip(corrupt)
    with pytest.raises(StimulusError, match="missing.wav"):
        load_inputs(tmp_path / "missing.wav")


def test_face_input_centre_crop_and_area_resize():
    rng = np.random.default_rng(1)
    height, width = 192, 256  # centred square crop: columns 32..224, then 3x3 block means
    frame = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    out = face_input(frame)
    gray = frame.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    crop = gray[:, 32:224]
    expected = crop.reshape(64, 3, 64, 3).mean(axis=(1, 3)) / 255.0 - 0.5
    assert out.shape == (1, 64, 64)
    np.testing.assert_allclose(out[0], expected, atol=1e-5)
    # a user crop box selects that region
    box = (10, 20, 138, 148)
    out_box = face_input(frame, crop_box=box)
    sub = gray[20:148, 10:138].reshape(64, 2, 64, 2).mean(axis=(1, 3)) / 255.0 - 0.5
    np.testing.assert_allclose(out_box[0], sub, atol=1e-5)
    with pytest.raises(ValueError, match="crop_box"):
        face_input(frame, crop_box=(0, 0, 300, 10))


def test_frames_averaged_at_evenly_spaced_times(tmp_path):
    # frame t is uniformly gray at level 10 * t: a known average for n_frames
    frames = np.stack([np.full((64, 64, 3), 10 * t, np.uint8) for t in range(20)])
    path = write_clip(tmp_path / "ramp.mp4", frames, 25, _tone(300, 0.8, 16000), 16000, crf=0)
    for n_frames, idx in ((1, [10]), (4, [2, 7, 12, 17])):
        recipe = InputRecipe(n_frames=n_frames)
        visual = load_inputs(path, recipe)["visual"]
        expected = np.mean([10 * i for i in idx]) / 255.0 - 0.5
        assert visual.mean() == pytest.approx(expected, abs=2.5 / 255)


def test_logmel_shape_resampling_and_window():
    recipe = InputRecipe()
    assert recipe.auditory_shape == (1, 80, 301)
    # a 1 kHz tone peaks in the same mel band whatever the source rate
    peak = []
    for sr in (16000, 44100, 48000):
        spec = logmel_input(_tone(1000.0, 3.0, sr), sr, recipe)
        assert spec.shape == (1, 80, 301)
        peak.append(int(np.argmax(spec[0, :, 150])))
    assert len(set(peak)) == 1
    import torchaudio

    fb = torchaudio.functional.melscale_fbanks(257, 0.0, 8000.0, 80, 16000)
    assert peak[0] == int(np.argmax(fb[int(round(1000 / (16000 / 512)))].numpy()))
    # a 1-s tone in a 3-s window is centred: energy in the middle third only
    spec = logmel_input(_tone(1000.0, 1.0, 16000), 16000, recipe)[0]
    energy = spec.max(axis=0)
    silence = (np.log(1e-6) - recipe.mel_center) / recipe.mel_scale
    assert np.all(energy[110:190] > silence + 2)
    assert np.allclose(energy[:95], silence, atol=1e-4)
    assert np.allclose(energy[-95:], silence, atol=1e-4)
    # a long clip is cut to its centre: a tone only in its middle second stays
    long = np.zeros(16000 * 9, np.float32)
    long[4 * 16000 : 5 * 16000] = _tone(1000.0, 1.0, 16000)
    np.testing.assert_allclose(
        logmel_input(long, 16000, recipe), logmel_input(_tone(1000.0, 1.0, 16000), 16000, recipe)
    )
    start = logmel_input(long, 16000, InputRecipe(align="start"))[0]
    assert np.allclose(start.max(axis=0), silence, atol=1e-4)  # first 3 s are silent


def test_audio_and_image_stimuli(tmp_path):
    from PIL import Image

    img = np.zeros((80, 80, 3), np.uint8)
    img[:, 40:] = 255
    Image.fromarray(img).save(tmp_path / "face.png")
    inputs = load_inputs(tmp_path / "face.png")
    assert inputs["visual"][0, :, :31].max() == pytest.approx(-0.5)
    assert inputs["visual"][0, :, 33:].min() == pytest.approx(0.5)
    recipe = InputRecipe()
    silence = (np.log(1e-6) - recipe.mel_center) / recipe.mel_scale
    np.testing.assert_allclose(inputs["auditory"], silence, rtol=1e-6)
    audio_only = InputRecipe(modalities=("auditory",))
    both = prepare_inputs([tmp_path / "face.png"] * 2, audio_only)
    assert list(both) == ["auditory"] and both["auditory"].shape == (2, 1, 80, 301)


def test_threaded_decoding_gives_identical_inputs(tmp_path):
    paths = [
        write_clip(
            tmp_path / f"c{k}.mp4",
            _frames(8) // (k + 1),
            25,
            _tone(200 * (k + 1), 0.5, 22050),
            22050,
        )
        for k in range(4)
    ]
    one = prepare_inputs(paths, n_jobs=1)
    three = prepare_inputs(paths, n_jobs=3)
    for m in one:
        np.testing.assert_array_equal(one[m], three[m])
    assert not np.allclose(one["visual"][0], one["visual"][1])


def test_real_speech_wav():
    if not RAVDESS.is_dir():
        pytest.skip(f"real test data not found at {RAVDESS} (../shared/data is absent)")
    path = RAVDESS / "Actor_01" / "03-01-05-02-01-01-01.wav"  # angry, strong
    clip = read_clip(path)
    assert clip.frames is None and clip.sample_rate == 48000
    assert 3.0 < len(clip.audio) / 48000 < 5.0
    inputs = load_inputs(path)
    assert np.all(inputs["visual"] == 0)  # audio-only: blank face
    spec = inputs["auditory"][0]
    # speech energy lies in the low bands; the loudest frames are well above silence
    assert spec[:40].mean() > spec[60:].mean()
    assert spec.max() > 2.0


def test_stereo_audio_is_mixed_to_mono(tmp_path):
    import wave

    sr = 22050
    left = _tone(500.0, 0.5, sr, amplitude=0.6)
    right = np.zeros_like(left)
    pcm = np.round(np.stack([left, right], axis=1) * 32767).astype("<i2")
    with wave.open(str(tmp_path / "stereo.wav"), "wb") as fh:
        fh.setnchannels(2)
        fh.setsampwidth(2)
        fh.setframerate(sr)
        fh.writeframes(pcm.tobytes())
    clip = read_clip(tmp_path / "stereo.wav")
    assert clip.sample_rate == sr and clip.frames is None
    np.testing.assert_allclose(clip.audio, left / 2, atol=1e-4)


@pytest.mark.parametrize(("level", "silent"), [(0.0, True), (3e-4, True), (0.05, False)])
def test_silent_audio_track_warns_naming_the_clip(tmp_path, caplog, level, silent):
    import logging

    sr = 16000
    audio = _tone(300.0, 1.0, sr, amplitude=level * np.sqrt(2))  # RMS = level
    path = write_clip(tmp_path / "quiet.mp4", _frames(6), 12, audio, sr)
    with caplog.at_level(logging.WARNING, logger="dnnrsa.stimuli"):
        load_inputs(path)
    warned = [r.getMessage() for r in caplog.records if "silent or nearly so" in r.getMessage()]
    assert bool(warned) == silent
    if silent:
        assert "quiet.mp4" in warned[0]


def test_prepare_inputs_takes_a_crop_choice(tmp_path):
    paths = [write_clip(tmp_path / f"c{k}.mp4", _frames(6), 12) for k in range(2)]
    visual = InputRecipe(modalities=("visual",))
    centre = prepare_inputs(paths, visual, n_jobs=1)["visual"]
    np.testing.assert_array_equal(
        prepare_inputs(paths, visual, "centre", n_jobs=1)["visual"], centre
    )
    # no face in a gradient: "auto" falls back to the centred square
    np.testing.assert_array_equal(prepare_inputs(paths, visual, "auto", n_jobs=1)["visual"], centre)
    boxes = {"c1.mp4": (0, 0, 32, 32)}
    got = prepare_inputs(paths, visual, boxes, n_jobs=1)["visual"]
    np.testing.assert_array_equal(got[1], load_inputs(paths[1], visual, (0, 0, 32, 32))["visual"])
    assert not np.array_equal(got[1], centre[1])


def test_small_demo_clips_encode_to_the_same_bytes_every_time(tmp_path):
    """The fast demo's 96-pixel clips: the same frames give the same file, every time
    (x264's macroblock tree is off for clips that small; with it, 4 of 12 encodings
    in one process differed)."""
    import hashlib

    from dnnrsa.demo.clips import ENCODER_THREADS, REPRODUCIBLE_SIDE, SMALL_CLIP_X264

    from .test_faces import demo_face

    frames = demo_face(96, n_frames=36)
    assert frames.shape[1] < REPRODUCIBLE_SIDE
    digests = {
        hashlib.sha256(
            write_clip(
                tmp_path / f"c{i}.mp4", frames, 12, threads=ENCODER_THREADS,
                x264_params=SMALL_CLIP_X264,
            ).read_bytes()
        ).hexdigest()
        for i in range(12)
    }  # fmt: skip
    assert len(digests) == 1
