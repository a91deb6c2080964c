"""Stimulus decoding and model inputs.

Video files (mp4, mov, mkv, avi, webm, flv with H.264, HEVC, VP8/VP9, VP6, Sorenson,
MPEG-4 ... streams), audio-only files (wav, flac, mp3, ogg) and still images (png, jpg,
...) are decoded with PyAV, in one pass from the start of the file and never seeking,
so containers that cannot seek (FLV) and pipes are read too. Model inputs follow an
:class:`InputRecipe`:

* **visual**: a grayscale face image of ``image_size x image_size`` pixels. The
  ``n_frames`` frames shown at evenly spaced times, by the stream's timestamps (the
  frame shown at the middle of the clip when ``n_frames=1``; see
  ``dnnrsa._decode._frame_indices``) are converted to gray (ITU-R BT.601 luma weights), averaged,
  cropped to a square (the centred largest square, or a crop box given per
  stimulus) and resized by area averaging. Values lie in [-0.5, 0.5] (gray level
  / 255 - 0.5).
* **auditory**: a log-mel spectrogram of the mono mix of the audio track, resampled to ``sample_rate`` with torchaudio, over a
  window of ``duration_s`` seconds: a longer track is cut to its central window, a
  shorter one is zero-padded equally on both sides (``align="center"``), or the window
  starts at the beginning of the track (``align="start"``, padding at the end). Shape
  ``(1, n_mels, n_time)`` with ``n_time = 1 + round(duration_s * sample_rate) // hop``.
  Values are ``(log(mel power + 1e-6) - mel_center) / mel_scale``; the fixed
  constants (default -9 and 4.5, close to the mean and standard deviation of speech
  recorded at ordinary levels, padding included) bring inputs near unit scale
  without per-clip normalisation, so loudness differences between stimuli remain.

An audio track that is present but silent or nearly so (all zero, or an RMS below
``SILENT_RMS`` = 1e-3 of full scale, i.e. -60 dBFS; speech recorded at ordinary
levels lies near -20 to -30 dBFS) gives a warning naming the clip: stock footage
often carries such a track, and the auditory arm then sees nothing.

A stimulus that lacks a modality the recipe needs is handled as follows: an audio-only
file gets a blank (mid-gray, i.e. all-zero) face; a still image gets silence; a video
without an audio track raises :class:`StimulusError` naming the file (a silent video is
almost always a mistake in an audio-visual study). Pass ``missing="blank"`` to accept it
(``--allow-silent-video`` of the ``dnnrsa`` and ``dnnrsa-train`` commands);
:func:`has_audio_track` tells beforehand.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._cpus import resolve_n_jobs
from ._decode import (
    AUDIO_EXTENSIONS,
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    StimulusError,
    _decode_file,
    _face_image,
    _frame_indices,
    _image,
    _open,
    _read_image,
    stimulus_kind,
)
from .faces import resolve_crops

logger = logging.getLogger(__name__)

MODALITIES = ("visual", "auditory")
_LOG_FLOOR = 1e-6
#: RMS (of full scale) below which an audio track counts as silent (-60 dBFS).
SILENT_RMS = 1e-3

__all__ = [
    "AUDIO_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "MODALITIES",
    "SILENT_RMS",
    "VIDEO_EXTENSIONS",
    "Clip",
    "InputRecipe",
    "StimulusError",
    "face_input",
    "has_audio_track",
    "load_inputs",
    "logmel_input",
    "prepare_inputs",
    "read_clip",
    "stimulus_kind",
    "warn_if_silent",
    "write_clip",
]


@dataclass(frozen=True)
class InputRecipe:
    """How stimuli become model inputs.

    Parameters
    ----------
    modalities : tuple of {"visual", "auditory"}
        Inputs the model takes, in the order of its ``forward`` arguments.
    image_size : int
        Side of the square grayscale face image in pixels.
    n_frames : int
        Number of evenly spaced video frames averaged into the face image
        (1: the middle frame).
    sample_rate : int
        Audio sampling rate in Hz after resampling.
    duration_s : float
        Length of the audio window in seconds.
    n_mels : int
        Number of mel bands.
    n_fft : int
        FFT size in samples.
    win_ms, hop_ms : float
        Analysis window and hop in milliseconds.
    f_min_hz, f_max_hz : float
        Mel filter bank range in Hz (``f_max_hz=None``: Nyquist).
    align : {"center", "start"}
        Where the audio window sits in a longer clip and where padding goes in a
        shorter one.
    mel_center, mel_scale : float
        Fixed shift and scale applied to the natural-log mel power.
    """

    modalities: tuple[str, ...] = MODALITIES
    image_size: int = 64
    n_frames: int = 1
    sample_rate: int = 16000
    duration_s: float = 3.0
    n_mels: int = 80
    n_fft: int = 512
    win_ms: float = 25.0
    hop_ms: float = 10.0
    f_min_hz: float = 0.0
    f_max_hz: float | None = None
    align: str = "center"
    mel_center: float = -9.0
    mel_scale: float = 4.5

    def __post_init__(self):
        mods = tuple(self.modalities)
        object.__setattr__(self, "modalities", mods)
        bad = [m for m in mods if m not in MODALITIES]
        if bad or not mods:
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}; got {mods!r}")
        for name in ("image_size", "n_frames", "sample_rate", "n_mels", "n_fft"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if not self.duration_s > 0:
            raise ValueError(f"duration_s must be positive; got {self.duration_s!r}")
        if not self.mel_scale > 0:
            raise ValueError(f"mel_scale must be positive; got {self.mel_scale!r}")
        if self.align not in ("center", "start"):
            raise ValueError(f"align must be 'center' or 'start'; got {self.align!r}")
        if self.win_samples > self.n_fft:
            raise ValueError(
                f"win_ms={self.win_ms} gives {self.win_samples} samples, more than n_fft={self.n_fft}"
            )

    @property
    def n_samples(self) -> int:
        """Audio window length in samples."""
        return int(round(self.duration_s * self.sample_rate))

    @property
    def win_samples(self) -> int:
        return int(round(self.win_ms * self.sample_rate / 1000))

    @property
    def hop_samples(self) -> int:
        return int(round(self.hop_ms * self.sample_rate / 1000))

    @property
    def n_time(self) -> int:
        """Number of spectrogram frames."""
        return 1 + self.n_samples // self.hop_samples

    @property
    def visual_shape(self) -> tuple[int, int, int]:
        """Shape of one visual input, ``(1, image_size, image_size)``."""
        return (1, self.image_size, self.image_size)

    @property
    def auditory_shape(self) -> tuple[int, int, int]:
        """Shape of one auditory input, ``(1, n_mels, n_time)``."""
        return (1, self.n_mels, self.n_time)

    def input_shape(self, modality: str) -> tuple[int, ...]:
        if modality == "visual":
            return self.visual_shape
        if modality == "auditory":
            return self.auditory_shape
        raise ValueError(f"modality must be one of {MODALITIES}; got {modality!r}")

    def to_dict(self) -> dict:
        """Plain-type dictionary (JSON and checkpoint friendly)."""
        out = dataclasses.asdict(self)
        out["modalities"] = list(self.modalities)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> InputRecipe:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown recipe fields {unknown}")
        data = dict(data)
        if "modalities" in data:
            data["modalities"] = tuple(data["modalities"])
        return cls(**data)

    def key(self) -> str:
        """Stable text identifying the recipe (used in cache keys)."""
        return json.dumps(self.to_dict(), sort_keys=True)


@dataclass
class Clip:
    """Decoded stimulus.

    Attributes
    ----------
    frames : ndarray of shape (n_frames, height, width, 3), uint8, or None
        RGB video frames (a still image is one frame); None for audio-only files.
    fps : float or None
        Average frame rate as the stream's header gives it (from the frame times when
        the header has none).
    audio : ndarray of shape (n_samples,), float32, or None
        Mono mix of the audio track in [-1, 1]; None when there is none.
    sample_rate : int or None
        Audio sampling rate in Hz.
    path : str
    frame_times : ndarray of shape (n_frames,), float64, or None
        When each frame is shown, in seconds from the first, from the stream's
        timestamps (variable frame rates included); None for audio-only files.
    """

    frames: np.ndarray | None
    fps: float | None
    audio: np.ndarray | None
    sample_rate: int | None
    path: str = ""
    frame_times: np.ndarray | None = None


# --------------------------------------------------------------------------- writing
def write_clip(
    path: str | os.PathLike,
    frames,
    fps: float,
    audio=None,
    sample_rate: int | None = None,
    *,
    video_codec: str = "libx264",
    audio_codec: str = "aac",
    crf: int = 18,
    threads: int | None = None,
    x264_params: str | None = None,
) -> Path:
    """Encode RGB frames and a mono waveform into a video file with PyAV.

    Parameters
    ----------
    path : path-like
        Output file; the container follows the extension (mp4, mov, mkv, webm, avi, flv).
    frames : ndarray of shape (n_frames, height, width, 3), uint8
        RGB frames. Height and width must be even (4:2:0 chroma subsampling).
    fps : float
        Frame rate.
    audio : ndarray of shape (n_samples,), float, or None
        Mono waveform in [-1, 1]; None writes a video without audio.
    sample_rate : int
        Audio sampling rate in Hz (required with ``audio``).
    video_codec, audio_codec : str
        FFmpeg encoder names (e.g. ``"libx264"``, ``"libx265"``, ``"libvpx-vp9"``,
        ``"mpeg4"``, ``"flv"`` (Sorenson H.263); ``"aac"``, ``"flac"``, ``"libopus"``,
        ``"mp3"``, ``"vorbis"`` (written as stereo, the only layout FFmpeg's Vorbis
        encoder takes)).
    crf : int
        Constant rate factor for x264/x265 (lower is better quality).
    threads : int, optional
        Video encoder threads; None (default) lets FFmpeg choose from the machine's
        CPUs. x264's stream depends on the thread count (128-pixel frames: one thread
        gives another stream than two or more), so give a number for clips that must
        be the same on every machine.
    x264_params : str, optional
        Extra x264 settings (``"key=value:key=value"``, as ``x264 --x264-params``),
        for example ``"mbtree=0"``: on 96-pixel frames x264's macroblock-tree rate
        control gave 4 different streams in 12 encodings of the same frames in one
        process (one thread), and none without it.

    Returns
    -------
    Path
        The written file (written under a temporary name, then renamed).
    """
    import av

    from ._io import _tmp_name

    frames, audio, sample_rate = _check_clip(frames, fps, audio, sample_rate, threads)
    _check_flv_audio(Path(path), audio, audio_codec, sample_rate)
    n_frames, height, width, _ = frames.shape
    from fractions import Fraction

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path, path.suffix)
    try:
        with av.open(str(tmp), mode="w", format=_container_format(path)) as container:
            rate = Fraction(fps).limit_denominator(1001)
            vstream = _video_stream(
                container, video_codec, rate, width, height, crf, threads, x264_params
            )
            astream = None
            if audio is not None:
                astream = _audio_stream(container, audio_codec, sample_rate)
            for i in range(n_frames):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[i]), format="rgb24")
                frame.pts = i
                frame.time_base = 1 / rate
                for packet in vstream.encode(frame):
                    container.mux(packet)
            for packet in vstream.encode():
                container.mux(packet)
            if astream is not None:
                _mux_audio(container, astream, audio, sample_rate)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    return path


def _check_clip(frames, fps, audio, sample_rate, threads):
    """The frames (uint8, even sides), the audio (float32, mono) and its rate, checked."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape (n_frames, height, width, 3); got {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8; got {frames.dtype}")
    if frames.shape[0] < 1:
        raise ValueError("frames must contain at least one frame")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"frame height and width must be even; got {height}x{width}")
    if not fps > 0:
        raise ValueError(f"fps must be positive; got {fps!r}")
    if threads is not None and (
        isinstance(threads, bool) or int(threads) != threads or threads < 1
    ):
        raise ValueError(f"threads must be a positive integer or None; got {threads!r}")
    if audio is not None:
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"audio must have shape (n_samples,); got {audio.shape}")
        if sample_rate is None or int(sample_rate) < 1:
            raise ValueError(f"sample_rate must be a positive integer; got {sample_rate!r}")
        sample_rate = int(sample_rate)

    return frames, audio, sample_rate


#: The MP3 sampling rates an FLV file can declare.
FLV_MP3_RATES = (11025, 22050, 44100)


def _check_flv_audio(path: Path, audio, audio_codec: str, sample_rate) -> None:
    """FLV holds MP3 only at 11.025, 22.05 or 44.1 kHz (FFmpeg fails later, without saying why)."""
    mp3 = audio_codec in ("mp3", "libmp3lame")
    if path.suffix.lower() == ".flv" and audio is not None and mp3:
        if sample_rate not in FLV_MP3_RATES:
            raise ValueError(
                f"{path.name}: FLV holds MP3 audio at {', '.join(map(str, FLV_MP3_RATES))} Hz "
                f"only; got sample_rate={sample_rate} (resample the audio first, or use AAC)"
            )


def _video_stream(container, video_codec, rate, width, height, crf, threads, x264_params):
    """The video stream of ``container`` with the encoder settings of :func:`write_clip`."""
    vstream = container.add_stream(video_codec, rate=rate)
    vstream.width, vstream.height = width, height
    vstream.pix_fmt = "yuv420p"
    if threads is not None:
        vstream.codec_context.thread_count = int(threads)
    if video_codec in ("libx264", "libx265"):
        vstream.options = {"crf": str(crf), "preset": "fast"}
        if x264_params and video_codec == "libx264":
            vstream.options["x264-params"] = x264_params
        if video_codec == "libx265":
            vstream.options["x265-params"] = "log-level=error"
    elif video_codec in ("libvpx-vp9", "libvpx"):
        vstream.options = {"crf": str(crf + 12), "b": "0", "deadline": "realtime"}
    else:
        vstream.bit_rate = max(2_000_000, width * height * 40)
    return vstream


def _audio_stream(container, audio_codec, sample_rate):
    """The audio stream of ``container``: mono, except FFmpeg's own Vorbis encoder, which
    writes stereo only (the mono track then goes to both channels) and is marked
    experimental."""
    if audio_codec == "vorbis":
        astream = container.add_stream(audio_codec, rate=sample_rate, options={"strict": "-2"})
        astream.layout = "stereo"
    else:
        astream = container.add_stream(audio_codec, rate=sample_rate)
        astream.layout = "mono"
    return astream


def _mux_audio(container, astream, audio, sample_rate) -> None:
    """Encode the mono waveform into ``astream`` in blocks and mux it."""
    from fractions import Fraction

    fmt = astream.codec_context.format.name if astream.codec_context.format else "fltp"
    block = 4096
    for start in range(0, len(audio), block):
        chunk = audio[start : start + block]
        aframe = _audio_frame(chunk, fmt, astream.layout.name)
        aframe.sample_rate = sample_rate
        aframe.pts = start
        aframe.time_base = Fraction(1, sample_rate)
        for packet in astream.encode(aframe):
            container.mux(packet)
    for packet in astream.encode():
        container.mux(packet)


def _container_format(path: Path) -> str | None:
    ext = path.suffix.lower()
    return {
        ".mp4": "mp4",
        ".m4v": "mp4",
        ".mov": "mov",
        ".mkv": "matroska",
        ".webm": "webm",
        ".avi": "avi",
        ".flv": "flv",
    }.get(ext)


def _audio_frame(chunk: np.ndarray, fmt: str, layout: str = "mono"):
    """An audio frame of ``chunk`` in sample format ``fmt``, on every channel of ``layout``."""
    import av

    packed = fmt.rstrip("p")
    if packed == "s16":
        data = np.clip(np.round(chunk * 32767.0), -32768, 32767).astype(np.int16)
    elif packed == "s32":
        data = np.clip(np.round(chunk * 2147483647.0), -2147483648, 2147483647).astype(np.int32)
    elif packed == "dbl":
        data = chunk.astype(np.float64)
    else:
        fmt, data = "fltp", chunk.astype(np.float32)
    if layout == "mono":
        return av.AudioFrame.from_ndarray(data[None, :], format=fmt, layout="mono")
    channels = 2
    if fmt.endswith("p"):
        data = np.repeat(data[None, :], channels, axis=0)
    else:
        data = np.repeat(data, channels)[None, :]
    return av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=fmt, layout=layout)


# --------------------------------------------------------------------------- reading
def has_audio_track(path: str | os.PathLike) -> bool:
    """Whether a stimulus file holds an audio stream (read from its header, not decoded).

    Raises
    ------
    StimulusError
        When the file is missing or cannot be opened.
    """
    with _open(Path(path)) as container:
        return bool(container.streams.audio)


def read_clip(path: str | os.PathLike) -> Clip:
    """Decode a video, audio or image file.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    Clip
        All RGB frames (uint8, ``(n_frames, height, width, 3)``) and the mono audio
        track (float32, ``(n_samples,)``) at its original rate.

    Raises
    ------
    StimulusError
        When the file is missing, unreadable or holds neither video nor audio.
    """
    path = Path(path)
    kind = stimulus_kind(path)
    if kind == "image":
        frame = _read_image(path)
        return Clip(frame[None], None, None, None, str(path))
    frames, timeline, fps, audio, rate = _decode_file(path, video=kind == "video")
    if frames is None and audio is None:
        raise StimulusError(f"{path} holds neither a video nor an audio stream")
    if frames is not None and fps is None and timeline.n > 1:
        fps = (timeline.n - 1) / float(timeline.times[-1])
    times = timeline.times if timeline is not None else None
    return Clip(frames, fps, audio, rate, str(path), times)


# --------------------------------------------------------------------------- inputs
def face_input(
    frames,
    recipe: InputRecipe | None = None,
    crop_box: Sequence[int] | None = None,
) -> np.ndarray:
    """Grayscale face image from RGB frames.

    Parameters
    ----------
    frames : ndarray of shape (n_frames, height, width, 3) or (height, width, 3), uint8
        The frames to average (already selected).
    recipe : InputRecipe, optional
    crop_box : (x0, y0, x1, y1), optional
        Pixel box (x1, y1 exclusive) to crop before resizing; default the centred
        largest square.

    Returns
    -------
    ndarray of shape (1, image_size, image_size), float32
        Gray level / 255 - 0.5.
    """
    recipe = recipe or InputRecipe()
    return _face_image(frames, recipe.image_size, crop_box)


def warn_if_silent(audio, name) -> bool:
    """Warn (naming the clip) when an audio track is all zero or its RMS is below ``SILENT_RMS``."""
    audio = np.asarray(audio, dtype=np.float64)
    rms = float(np.sqrt(np.mean(audio**2))) if audio.size else 0.0
    if rms >= SILENT_RMS:
        return False
    level = "all zero" if not np.any(audio) else f"RMS {20 * np.log10(rms):.0f} dBFS"
    logger.warning(
        "the audio track of %s is silent or nearly so (%s, below %.0f dBFS): the auditory arm "
        "sees no sound for it",
        name,
        level,
        20 * np.log10(SILENT_RMS),
    )
    return True


def _fit_window(audio: np.ndarray, n_samples: int, align: str) -> np.ndarray:
    n = audio.shape[-1]
    if n >= n_samples:
        start = (n - n_samples) // 2 if align == "center" else 0
        return audio[start : start + n_samples]
    pad = n_samples - n
    before = pad // 2 if align == "center" else 0
    return np.pad(audio, (before, pad - before))


def logmel_input(audio, sample_rate: int, recipe: InputRecipe | None = None) -> np.ndarray:
    """Log-mel spectrogram of a mono waveform.

    Parameters
    ----------
    audio : ndarray of shape (n_samples,)
        Mono waveform in [-1, 1].
    sample_rate : int
        Its sampling rate in Hz (resampled to ``recipe.sample_rate`` if different).
    recipe : InputRecipe, optional

    Returns
    -------
    ndarray of shape (1, n_mels, n_time), float32
        ``(log(mel power + 1e-6) - mel_center) / mel_scale`` over the recipe's window.
    """
    import torch

    recipe = recipe or InputRecipe()
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"audio must have shape (n_samples,); got {audio.shape}")
    wave = torch.from_numpy(audio)
    if int(sample_rate) != recipe.sample_rate:
        wave = _resampler(int(sample_rate), recipe.sample_rate)(wave)
    wave = torch.from_numpy(_fit_window(wave.numpy(), recipe.n_samples, recipe.align))
    mel = _mel_transform(recipe)(wave)
    logmel = (torch.log(mel + _LOG_FLOOR) - recipe.mel_center) / recipe.mel_scale
    return logmel[None].numpy().astype(np.float32)


_MEL_CACHE: dict = {}
_RESAMPLE_CACHE: dict = {}


def _resampler(orig_hz: int, new_hz: int):
    """torchaudio's band-limited sinc resampler, its kernel computed once per rate pair."""
    import torchaudio

    key = (orig_hz, new_hz)
    if key not in _RESAMPLE_CACHE:
        _RESAMPLE_CACHE[key] = torchaudio.transforms.Resample(orig_hz, new_hz)
    return _RESAMPLE_CACHE[key]


def _mel_transform(recipe: InputRecipe):
    import torchaudio

    key = (
        recipe.sample_rate,
        recipe.n_fft,
        recipe.win_samples,
        recipe.hop_samples,
        recipe.n_mels,
        recipe.f_min_hz,
        recipe.f_max_hz,
    )
    if key not in _MEL_CACHE:
        _MEL_CACHE[key] = torchaudio.transforms.MelSpectrogram(
            sample_rate=recipe.sample_rate,
            n_fft=recipe.n_fft,
            win_length=recipe.win_samples,
            hop_length=recipe.hop_samples,
            f_min=recipe.f_min_hz,
            f_max=recipe.f_max_hz,
            n_mels=recipe.n_mels,
            power=2.0,
            center=True,
        )
    return _MEL_CACHE[key]


def load_inputs(
    path: str | os.PathLike,
    recipe: InputRecipe | None = None,
    crop_box: Sequence[int] | None = None,
    *,
    missing: str = "error",
    store=None,
) -> dict[str, np.ndarray]:
    """Decode one stimulus into the inputs a recipe asks for.

    Parameters
    ----------
    path : path-like
        Video, audio or image file.
    recipe : InputRecipe, optional
        Or any recipe with a ``load(path, crop_box, missing=...)`` method (the
        standard networks' recipes, :mod:`dnnrsa.models.recipes`), which then decodes
        the stimulus itself.
    crop_box : (x0, y0, x1, y1), optional
        Face crop in pixels.
    missing : {"error", "blank"}
        What to do when a video lacks an audio track the recipe needs.
    store : dnnrsa._decodedclips.DecodedClips, optional
        Stimuli decoded once for several networks: the frames and audio are read from
        it when it holds the stimulus (the inputs are the same), else decoded here.

    Returns
    -------
    dict
        ``{"visual": (1, image_size, image_size), "auditory": (1, n_mels, n_time)}``
        (only the recipe's modalities), float32.
    """
    recipe = recipe or InputRecipe()
    if missing not in ("error", "blank"):
        raise ValueError(f"missing must be 'error' or 'blank'; got {missing!r}")
    if not isinstance(recipe, InputRecipe):
        if store is None:  # a recipe of one's own need not know the store
            return recipe.load(path, crop_box, missing=missing)
        return recipe.load(path, crop_box, missing=missing, store=store)
    path = Path(path)
    kind = stimulus_kind(path)
    need_visual = "visual" in recipe.modalities
    need_audio = "auditory" in recipe.modalities
    frames = audio = rate = None
    if kind == "image":
        if need_visual:
            frames = _image(path, store)[None]
    else:
        frames, _, _, audio, rate = _decode_file(
            path,
            video=kind == "video" and need_visual,
            audio=need_audio,
            select=lambda timeline: _frame_indices(timeline, recipe.n_frames),
            store=store,
        )
        if kind == "video" and need_visual and frames is None:
            raise StimulusError(f"{path} holds no video stream")
        if need_audio:
            if audio is None and kind == "audio":
                raise StimulusError(f"{path} holds no audio stream")
            if audio is not None:
                warn_if_silent(audio, path)
            if audio is None and missing == "error":
                raise StimulusError(
                    f"{path} has no audio track, but the input recipe needs auditory input "
                    "(to use silence: missing='blank', or --allow-silent-video on the "
                    "command line)"
                )
    out = {}
    if need_visual:
        out["visual"] = (
            face_input(frames, recipe, crop_box)
            if frames is not None
            else np.zeros(recipe.visual_shape, np.float32)
        )
    if need_audio:
        if audio is None:
            audio, rate = np.zeros(recipe.n_samples, np.float32), recipe.sample_rate
        out["auditory"] = logmel_input(audio, rate, recipe)
    return {m: out[m] for m in recipe.modalities}


def prepare_inputs(
    paths: Sequence[str | os.PathLike],
    recipe: InputRecipe | None = None,
    crop_boxes: Sequence[Sequence[int] | None] | None = None,
    *,
    missing: str = "error",
    progress: bool = False,
    n_jobs: int = -1,
    store=None,
) -> dict[str, np.ndarray]:
    """Decode many stimuli into stacked model inputs.

    Parameters
    ----------
    paths : sequence of path-like
    recipe : InputRecipe, optional
    crop_boxes : {"auto", "centre"}, path-like, mapping or sequence, optional
        Face crops: one ``(x0, y0, x1, y1)`` (or None) per stimulus, a mapping from
        file name to box, ``"auto"`` (faces detected), ``"centre"`` or None (the
        centred square) or a crop table (TSV); see :func:`dnnrsa.faces.resolve_crops`.
    missing : {"error", "blank"}
    progress : bool
        Show a progress bar.
    n_jobs : int
        Number of decoding threads (PyAV and torch release the GIL); -1 (default)
        for one per CPU this process may use (its CPU affinity). Results do not depend on it.
    store : dnnrsa._decodedclips.DecodedClips, optional
        Stimuli decoded once for several networks (see :func:`load_inputs`).

    Returns
    -------
    dict
        modality -> ndarray of shape (n_stimuli, *recipe.input_shape(modality)), float32.
    """
    recipe = recipe or InputRecipe()
    paths = list(paths)
    if isinstance(crop_boxes, str | os.PathLike | dict):
        crops = resolve_crops(paths, crop_boxes, model_frames=(getattr(recipe, "n_frames", 1),))
        crop_boxes = [c.box for c in crops]
    if crop_boxes is not None and len(crop_boxes) != len(paths):
        raise ValueError(
            f"crop_boxes must have one entry per stimulus ({len(paths)}); got {len(crop_boxes)}"
        )
    out = {m: np.empty((len(paths), *recipe.input_shape(m)), np.float32) for m in recipe.modalities}
    n_jobs = resolve_n_jobs(n_jobs)

    def work(i):
        box = None if crop_boxes is None else crop_boxes[i]
        return i, load_inputs(paths[i], recipe, box, missing=missing, store=store)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(paths), desc="decoding", unit="stim")
    if n_jobs == 1:
        results = map(work, range(len(paths)))
        pool = None
    else:
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(max_workers=n_jobs)
        results = pool.map(work, range(len(paths)))
    try:
        for i, arrays in results:
            for m, arr in arrays.items():
                out[m][i] = arr
            if bar is not None:
                bar.update()
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        if bar is not None:
            bar.close()
    return out
