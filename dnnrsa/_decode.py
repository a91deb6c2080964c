"""Reading stimulus files into frames, and the gray face image of frames.

The low-level pieces shared by :mod:`dnnrsa.faces` (face detection, crop previews)
and :mod:`dnnrsa.stimuli` (model inputs), which re-exports the public ones: the file
kind from its extension, opening a container, decoding its video and audio in one
pass without seeking (with the frames' :class:`Timeline`), reading a still image,
the frames shown at evenly spaced times of a clip, and
the cropped, resized grayscale image a face input is made of. :func:`_decode_file` and
:func:`_image` read a stimulus from a store of decoded stimuli when given one
(:class:`dnnrsa._decodedclips.DecodedClips`, used through its ``read`` and ``image``),
else decode it. Nothing here imports another module of dnnrsa, so both sides may
import it.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import numpy as np

VIDEO_EXTENSIONS = (
    ".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".flv", ".mpg", ".mpeg",
)
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".m4a", ".aac", ".opus")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class StimulusError(ValueError):
    """A stimulus file cannot be decoded or lacks what the recipe needs."""


def stimulus_kind(path: str | os.PathLike) -> str:
    """Return ``"video"``, ``"audio"`` or ``"image"`` from the file extension.

    Unknown extensions are treated as video containers (PyAV probes the content).
    """
    ext = Path(path).suffix.lower()
    if ext in AUDIO_EXTENSIONS:
        return "audio"
    if ext in IMAGE_EXTENSIONS:
        return "image"
    return "video"


def _open(path: Path):
    """Open a container for reading; ``path`` may be a pipe (nothing here seeks)."""
    import av

    if not path.exists() or path.is_dir():
        raise StimulusError(f"stimulus file not found: {path}")
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise StimulusError(f"cannot open stimulus file {path}: {exc}") from exc


@dataclass(frozen=True)
class Timeline:
    """When each decoded video frame is shown, from the stream's own timestamps.

    Attributes
    ----------
    pts : tuple of int
        Presentation time of each frame in ``time_base`` units, counted from the
        first frame (0), strictly increasing.
    end : int
        End of the last frame in the same units: its start plus one period at the
        stream's average frame rate (rounded to the time unit), or plus the interval
        before it when the header gives no rate.
    time_base : fractions.Fraction
        Seconds per unit. Streams whose timestamps are missing or not increasing get
        the frame index as time (``time_base`` one frame at the average rate).
    """

    pts: tuple[int, ...]
    end: int
    time_base: Fraction

    @property
    def n(self) -> int:
        return len(self.pts)

    @property
    def times(self) -> np.ndarray:
        """Frame start times in seconds from the first frame, float64."""
        return np.array([float(p * self.time_base) for p in self.pts], dtype=np.float64)

    @property
    def duration(self) -> float:
        """Seconds from the first frame's start to the last frame's end."""
        return float(self.end * self.time_base)

    @classmethod
    def evenly_spaced(cls, n: int, fps: float | None = None) -> Timeline:
        base = Fraction(1, 1) if not fps else 1 / Fraction(fps).limit_denominator(1001)
        return cls(tuple(range(n)), n, base)


def _timeline(frames, stream) -> Timeline:
    """The :class:`Timeline` of decoded frames (their ``pts`` in the stream's time base)."""
    fps = float(stream.average_rate) if stream.average_rate else None
    pts = [f.pts for f in frames]
    base = frames[0].time_base or stream.time_base
    if base is None or any(p is None for p in pts) or any(b <= a for a, b in pairwise(pts)):
        return Timeline.evenly_spaced(len(frames), fps)
    base = Fraction(base.numerator, base.denominator)
    rel = [int(p - pts[0]) for p in pts]
    if fps:
        last = max(1, round(1 / (fps * base)))
    elif len(rel) > 1:
        last = rel[-1] - rel[-2]
    else:
        last = 1
    return Timeline(tuple(rel), rel[-1] + last, base)


def _decode_streams(container, path: Path, *, video: bool = True, audio: bool = True, select=None):
    """Decode the first video and audio streams of ``container`` in one pass, no seeking.

    A container opened from a pipe, or in a format that cannot seek where it is
    (FLV), is read from its start once; video and audio packets are decoded as they
    come.

    Parameters
    ----------
    select : callable, optional
        ``select(timeline) -> frame indices`` (see :class:`Timeline`): only these
        frames are converted to RGB (default all).

    Returns
    -------
    frames : ndarray of shape (n, height, width, 3), uint8, or None
        The selected RGB frames (None without a video stream or ``video=False``).
    timeline : Timeline or None
        Times of every decoded frame.
    fps : float or None
        The stream's average frame rate as its header gives it.
    audio : ndarray of shape (n_samples,), float32, or None
        Mono mix (mean over channels) of the first audio stream.
    rate : int or None
        Its sampling rate in Hz.
    """
    import av

    vstream = container.streams.video[0] if video and container.streams.video else None
    astream = container.streams.audio[0] if audio and container.streams.audio else None
    if vstream is None and astream is None:
        return None, None, None, None, None
    if vstream is not None:
        vstream.thread_type = "AUTO"
    decoded, chunks = [], []
    rate = (astream.codec_context.sample_rate or astream.rate) if astream is not None else None
    current = "video"
    try:
        for packet in container.demux(*(s for s in (vstream, astream) if s is not None)):
            current = "video" if packet.stream is vstream else "audio"
            for frame in packet.decode():
                if packet.stream is vstream:
                    decoded.append(frame)
                else:
                    chunks.append(_mono(frame))
                    rate = frame.sample_rate
    except av.error.FFmpegError as exc:
        raise StimulusError(f"cannot decode the {current} of {path}: {exc}") from exc
    frames = timeline = fps = None
    if vstream is not None:
        if not decoded:
            raise StimulusError(f"the video stream of {path} holds no frames")
        fps = float(vstream.average_rate) if vstream.average_rate else None
        timeline = _timeline(decoded, vstream)
        indices = range(len(decoded)) if select is None else select(timeline)
        frames = np.stack([decoded[i].to_ndarray(format="rgb24") for i in indices])
    samples = None
    if astream is not None:
        if not chunks:
            raise StimulusError(f"the audio track of {path} holds no samples")
        samples, rate = np.concatenate(chunks), int(rate)
    return frames, timeline, fps, samples, rate


def _decode_file(path: Path, *, video: bool = True, audio: bool = True, select=None, store=None):
    """:func:`_decode_streams` of the file at ``path``, or its entry in ``store`` (a
    :class:`dnnrsa._decodedclips.DecodedClips`) when the store holds what is asked for;
    the arrays are the same either way."""
    if store is not None:
        stored = store.read(path, video=video, audio=audio, select=select)
        if stored is not None:
            return stored
    with _open(path) as container:
        return _decode_streams(container, path, video=video, audio=audio, select=select)


def _mono(frame) -> np.ndarray:
    """Mean over channels of a decoded audio frame, float32 in [-1, 1]."""
    arr = frame.to_ndarray()
    fmt = frame.format
    if not fmt.is_planar:
        arr = arr.reshape(-1, len(frame.layout.channels)).T
    arr = _to_float(arr, fmt.name.rstrip("p"))
    return arr.mean(axis=0, dtype=np.float64).astype(np.float32)


def _to_float(arr: np.ndarray, fmt: str) -> np.ndarray:
    if fmt == "s16":
        return arr.astype(np.float32) / 32768.0
    if fmt == "s32":
        return arr.astype(np.float32) / 2147483648.0
    if fmt == "u8":
        return (arr.astype(np.float32) - 128.0) / 128.0
    return arr.astype(np.float32)


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise StimulusError(f"stimulus file not found: {path}")
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise StimulusError(f"cannot read image {path}: {exc}") from exc


def _image(path: Path, store=None) -> np.ndarray:
    """:func:`_read_image`, or the image's entry in ``store`` when it holds one."""
    if store is not None:
        stored = store.image(path)
        if stored is not None:
            return stored
    return _read_image(path)


def _frame_indices(timeline: Timeline | int, n_frames: int) -> np.ndarray:
    """The frames shown at ``n_frames`` evenly spaced times: the centres of equal segments.

    With a :class:`Timeline`, segment ``j`` of the clip's duration has its centre at
    ``(j + 1/2) / n_frames`` of it, and the frame shown then (the last one starting at
    or before it) is taken; the arithmetic is exact, in the stream's time units. For a
    constant frame rate this is frame ``floor((j + 1/2) * n_total / n_frames)``, which is
    what an integer ``n_total`` gives (frames taken as evenly spaced).
    """
    if not isinstance(timeline, Timeline):
        timeline = Timeline.evenly_spaced(int(timeline))
    n = int(n_frames)
    doubled = [2 * n * p for p in timeline.pts]
    idx = [bisect_right(doubled, (2 * j + 1) * timeline.end) - 1 for j in range(n)]
    return np.clip(np.array(idx, dtype=int), 0, timeline.n - 1)


def _face_image(frames, image_size: int, crop_box: Sequence[int] | None = None) -> np.ndarray:
    """Grayscale image of ``image_size x image_size`` pixels from RGB frames.

    The frames are converted to gray (ITU-R BT.601 luma weights), averaged, cropped
    to ``crop_box`` (default the centred largest square) and resized by area
    averaging (bilinear interpolation when the crop is smaller than the image).

    Parameters
    ----------
    frames : ndarray of shape (n_frames, height, width, 3) or (height, width, 3), uint8
    image_size : int
    crop_box : (x0, y0, x1, y1), optional
        Pixel box (x1, y1 exclusive).

    Returns
    -------
    ndarray of shape (1, image_size, image_size), float32
        Gray level / 255 - 0.5.
    """
    import torch
    import torch.nn.functional as F

    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape (n, height, width, 3); got {frames.shape}")
    gray = (frames.astype(np.float32) @ _LUMA).mean(axis=0) / 255.0
    height, width = gray.shape
    if crop_box is None:
        side = min(height, width)
        y0, x0 = (height - side) // 2, (width - side) // 2
        x1, y1 = x0 + side, y0 + side
    else:
        x0, y0, x1, y1 = (int(v) for v in crop_box)
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise ValueError(
                f"crop_box must satisfy 0 <= x0 < x1 <= {width} and 0 <= y0 < y1 <= {height}; "
                f"got {tuple(crop_box)!r}"
            )
    crop = torch.from_numpy(np.ascontiguousarray(gray[y0:y1, x0:x1]))[None, None]
    size = image_size
    if crop.shape[-2:] != (size, size):
        if crop.shape[-1] >= size and crop.shape[-2] >= size:
            crop = F.adaptive_avg_pool2d(crop, (size, size))
        else:
            crop = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False)
    return (crop[0].numpy() - 0.5).astype(np.float32)
