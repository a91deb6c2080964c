"""Decoding every container real footage comes in, without seeking.

Clips are written with PyAV's own encoders: each frame a flat gray level of its own
(frame ``i`` has level ``10 i``), the audio a 440 Hz tone. Each decoded clip must give
the frames in order with their levels, the stream's frame times, and the tone at the
stream's rate; the model inputs must come out of it. FLV, Matroska, WebM, Ogg and WAV
are also read through a named pipe, where nothing can seek (FFmpeg has no VP6 encoder,
so CREMA-D's FLV codec cannot be written here; its container's non-seekable reading is
what the pipe tests).
"""

from __future__ import annotations

import os
import threading
from fractions import Fraction

import av
import numpy as np
import pytest

from dnnrsa.faces import crop_preview, frame_size
from dnnrsa.stimuli import InputRecipe, StimulusError, load_inputs, read_clip, write_clip

N_FRAMES = 24
FPS = 24
LEVELS = (np.arange(N_FRAMES) * 10).astype(np.uint8)
TONE_HZ = 440.0

# (extension, video encoder, audio encoder, audio rate)
VIDEO_CASES = [
    ("flv", "flv", "mp3", 22050),  # Sorenson H.263 + MP3, as FLV footage
    ("flv", "flv", "aac", 44100),
    ("mp4", "libx264", "aac", 16000),
    ("mp4", "libx265", "aac", 22050),
    ("mov", "libx264", "aac", 44100),
    ("avi", "mpeg4", "mp3", 22050),
    ("mkv", "libx264", "vorbis", 22050),
    ("mkv", "libvpx-vp9", "libopus", 48000),
    ("webm", "libvpx", "vorbis", 44100),
    ("webm", "libvpx-vp9", "libopus", 48000),
]
# (extension, encoder, rate, container format)
AUDIO_CASES = [
    ("wav", "pcm_s16le", 16000, None),
    ("mp3", "mp3", 22050, None),
    ("flac", "flac", 44100, None),
    ("ogg", "vorbis", 22050, None),
    ("ogg", "libopus", 48000, "ogg"),
]


def _tone(rate: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.3 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)


def _frames(height: int = 64, width: int = 96) -> np.ndarray:
    return np.broadcast_to(LEVELS[:, None, None, None], (N_FRAMES, height, width, 3)).copy()


def _peak_hz(audio: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio))
    return float(np.argmax(spectrum) * rate / audio.size)


def _write_audio(path, codec: str, rate: int, fmt: str | None = None):
    """An audio-only file of the tone with PyAV (Vorbis as stereo, FFmpeg's encoder
    takes no other layout)."""
    audio = _tone(rate)
    with av.open(str(path), "w", format=fmt) as container:
        options = {"strict": "-2"} if codec == "vorbis" else {}
        stream = container.add_stream(codec, rate=rate, options=options)
        stream.layout = "stereo" if codec == "vorbis" else "mono"
        fmt_name = stream.codec_context.format.name
        channels = 2 if codec == "vorbis" else 1
        size = stream.codec_context.frame_size or 1024
        for start in range(0, audio.size, size):
            chunk = audio[start : start + size]
            if fmt_name.startswith("s16"):
                data = np.round(chunk * 32767).astype(np.int16)
            elif fmt_name.startswith("s32"):
                data = np.round(chunk * 2147483647.0).astype(np.int32)
            else:
                data = chunk
            data = (
                np.repeat(data[None], channels, 0)
                if fmt_name.endswith("p")
                else np.repeat(data, channels)[None]
            )
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(data), format=fmt_name, layout=stream.layout.name
            )
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _check_levels(frames: np.ndarray, levels=LEVELS, tol: float = 4.0) -> None:
    means = frames.reshape(len(frames), -1).mean(axis=1)
    np.testing.assert_allclose(means, levels, atol=tol)


@pytest.mark.parametrize(("ext", "vcodec", "acodec", "rate"), VIDEO_CASES)
def test_video_containers_decode_frames_times_and_audio(tmp_path, ext, vcodec, acodec, rate):
    path = write_clip(
        tmp_path / f"clip.{ext}",
        _frames(),
        FPS,
        _tone(rate),
        rate,
        video_codec=vcodec,
        audio_codec=acodec,
        threads=1,
    )
    clip = read_clip(path)
    assert clip.frames.shape == (N_FRAMES, 64, 96, 3)
    _check_levels(clip.frames)
    assert clip.fps == pytest.approx(FPS)
    # the stream's own timestamps: every frame shown one period after the one before
    # (FLV counts milliseconds, so its steps are 41 or 42 ms)
    steps = np.diff(clip.frame_times)
    assert clip.frame_times[0] == 0.0
    if ext != "avi":  # see test_avi_frame_times_follow_the_file
        np.testing.assert_allclose(steps, 1 / FPS, atol=1.01e-3)
    assert clip.sample_rate == rate
    # the codec adds its priming and padding, never a second
    assert rate <= clip.audio.size < rate * 1.1
    assert _peak_hz(clip.audio, rate) == pytest.approx(TONE_HZ, abs=2.0)
    assert frame_size(path) == (96, 64)
    inputs = load_inputs(path, InputRecipe())
    # the middle frame (of 24 at a constant rate: frame 12) is what the face sees; the
    # AVI muxer shifts the video after the first frame by the MP3 encoder's delay, so
    # there the frame shown at the middle of the clip is the file's frame 11
    middle = 11 if ext == "avi" else 12
    assert inputs["visual"].mean() == pytest.approx(LEVELS[middle] / 255 - 0.5, abs=0.02)
    assert np.isfinite(inputs["auditory"]).all()
    assert inputs["auditory"].shape == InputRecipe().input_shape("auditory")


def test_avi_frame_times_follow_the_file(tmp_path):
    """AVI counts frames: the frame times are the file's frame numbers over its rate."""
    path = write_clip(tmp_path / "clip.avi", _frames(), FPS, video_codec="mpeg4", threads=1)
    clip = read_clip(path)
    with av.open(str(path)) as container:
        pts = [f.pts for f in container.decode(video=0)]
    np.testing.assert_allclose(clip.frame_times, (np.array(pts) - pts[0]) / FPS)
    np.testing.assert_allclose(clip.frame_times, np.arange(N_FRAMES) / FPS)


@pytest.mark.parametrize(("ext", "codec", "rate", "fmt"), AUDIO_CASES)
def test_audio_only_files_decode_at_their_rate(tmp_path, ext, codec, rate, fmt):
    path = _write_audio(tmp_path / f"voice_{codec}.{ext}", codec, rate, fmt)
    clip = read_clip(path)
    assert clip.frames is None and clip.frame_times is None
    assert clip.sample_rate == rate
    assert rate <= clip.audio.size < rate * 1.1
    assert _peak_hz(clip.audio, rate) == pytest.approx(TONE_HZ, abs=2.0)
    if codec == "pcm_s16le":  # lossless: the samples themselves
        np.testing.assert_allclose(clip.audio, _tone(rate), atol=1 / 32767)
    inputs = load_inputs(path, InputRecipe())
    assert np.all(inputs["visual"] == 0.0)  # no frames: the blank face
    assert np.isfinite(inputs["auditory"]).all()


def test_the_audio_is_resampled_to_the_recipe_rate(tmp_path):
    """The same tone at 48 kHz (Opus) and 16 kHz (WAV) gives nearly the same log-mel input
    at the recipe's 16 kHz."""
    high = _write_audio(tmp_path / "high.wav", "pcm_s16le", 48000)
    low = _write_audio(tmp_path / "low.wav", "pcm_s16le", 16000)
    recipe = InputRecipe()
    a = load_inputs(high, recipe)["auditory"]
    b = load_inputs(low, recipe)["auditory"]
    assert a.shape == b.shape
    band = np.argmax(b[0].mean(axis=1))
    assert np.argmax(a[0].mean(axis=1)) == band
    np.testing.assert_allclose(a[0, band], b[0, band], atol=0.05)


def _variable_rate_mp4(path, times_ms, levels):
    """An MP4 whose frames are shown at the given milliseconds (a variable frame rate)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.time_base = Fraction(1, 1000)
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {"crf": "10"}
        for t, level in zip(times_ms, levels, strict=True):
            frame = av.VideoFrame.from_ndarray(np.full((64, 96, 3), level, np.uint8), "rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_variable_frame_rate_frames_are_taken_by_time(tmp_path):
    times_ms = [0, 40, 80, 120, 160, 200, 1000]
    levels = [20, 50, 80, 110, 140, 170, 200]
    path = _variable_rate_mp4(tmp_path / "vfr.mp4", times_ms, levels)
    clip = read_clip(path)
    np.testing.assert_allclose(clip.frame_times, np.array(times_ms) / 1000, atol=1e-9)
    _check_levels(clip.frames, levels)
    # the middle of the clip (after 0.5 s, whatever the last frame's length) shows the
    # frame of 0.2 s (index 5), not the middle index (3)
    visual = load_inputs(path, InputRecipe(n_frames=1), missing="blank")["visual"]
    assert visual.mean() == pytest.approx(170 / 255 - 0.5, abs=0.02)
    frame, _ = crop_preview(path, None)
    assert frame.mean() == pytest.approx(170, abs=4)
    # three frames: those shown at the centres of three equal thirds, the last frame
    # lasting one period at the stream's average rate
    with av.open(str(path)) as container:
        period_ms = 1000 / float(container.streams.video[0].average_rate)
    end = times_ms[-1] + period_ms
    expected = [
        max(i for i, t in enumerate(times_ms) if t <= (j + 0.5) * end / 3) for j in range(3)
    ]
    assert expected != [1, 3, 5]  # what evenly spaced indices would take
    visual3 = load_inputs(path, InputRecipe(n_frames=3), missing="blank")["visual"]
    want = np.mean([levels[i] for i in expected]) / 255 - 0.5
    assert visual3.mean() == pytest.approx(want, abs=0.02)


def _through_pipe(tmp_path, source):
    """A named pipe carrying the bytes of ``source`` (written when a reader opens it)."""
    fifo = tmp_path / f"pipe_{source.name}"
    os.mkfifo(fifo)
    data = source.read_bytes()

    def feed():
        with open(fifo, "wb") as fh:
            fh.write(data)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    return fifo, writer


@pytest.mark.parametrize(
    ("ext", "vcodec", "acodec", "rate"),
    [c for c in VIDEO_CASES if c[0] in ("flv", "mkv", "webm")],
)
def test_streaming_containers_decode_through_a_pipe(tmp_path, ext, vcodec, acodec, rate):
    """Through a named pipe nothing can seek: the same frames and samples as the file."""
    source = write_clip(
        tmp_path / f"clip.{ext}",
        _frames(),
        FPS,
        _tone(rate),
        rate,
        video_codec=vcodec,
        audio_codec=acodec,
        threads=1,
    )
    fifo, writer = _through_pipe(tmp_path, source)
    piped = read_clip(fifo)
    writer.join(timeout=30)
    direct = read_clip(source)
    np.testing.assert_array_equal(piped.frames, direct.frames)
    np.testing.assert_array_equal(piped.audio, direct.audio)
    np.testing.assert_array_equal(piped.frame_times, direct.frame_times)


@pytest.mark.parametrize(("ext", "codec", "rate", "fmt"), AUDIO_CASES[::3])
def test_audio_files_decode_through_a_pipe(tmp_path, ext, codec, rate, fmt):
    source = _write_audio(tmp_path / f"voice.{ext}", codec, rate, fmt)
    fifo, writer = _through_pipe(tmp_path, source)
    piped = read_clip(fifo)
    writer.join(timeout=30)
    np.testing.assert_array_equal(piped.audio, read_clip(source).audio)


def test_model_inputs_through_a_pipe_equal_those_of_the_file(tmp_path):
    source = write_clip(
        tmp_path / "clip.flv", _frames(), FPS, _tone(22050), 22050,
        video_codec="flv", audio_codec="mp3", threads=1,
    )
    fifo, writer = _through_pipe(tmp_path, source)
    piped = load_inputs(fifo, InputRecipe(n_frames=3))
    writer.join(timeout=30)
    direct = load_inputs(source, InputRecipe(n_frames=3))
    for modality in ("visual", "auditory"):
        np.testing.assert_array_equal(piped[modality], direct[modality])


def test_a_truncated_file_is_an_error_naming_it(tmp_path):
    source = write_clip(
        tmp_path / "clip.flv", _frames(), FPS, _tone(22050), 22050,
        video_codec="flv", audio_codec="mp3", threads=1,
    )
    broken = tmp_path / "broken.flv"
    broken.write_bytes(source.read_bytes()[:200])
    with pytest.raises(StimulusError, match="broken.flv"):
        read_clip(broken)


def test_flv_with_mp3_at_a_rate_flv_cannot_declare_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"clip\.flv: FLV holds MP3 audio at 11025, 22050, 44100"):
        write_clip(tmp_path / "clip.flv", _frames(), FPS, _tone(16000), 16000,
                   video_codec="flv", audio_codec="mp3")  # fmt: skip
    assert not list(tmp_path.iterdir())  # nothing half-written
