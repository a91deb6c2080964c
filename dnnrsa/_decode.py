"""Reading stimulus files into frames, and the gray face image of frames.

The low-level pieces shared by :mod:`dnnrsa.faces` (face detection, crop previews)
and :mod:`dnnrsa.stimuli` (model inputs), which re-exports the public ones: the file
kind from its extension, opening a container, decoding the video frames (all or a
chosen few), reading a still image, the evenly spaced frame indices of a clip, and
the cropped, resized grayscale image a face input is made of. Nothing here imports
another module of dnnrsa, so both sides may import it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg")
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
    import av

    if not path.is_file():
        raise StimulusError(f"stimulus file not found: {path}")
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise StimulusError(f"cannot open stimulus file {path}: {exc}") from exc


def _decode_video_frames(container, path: Path, select=None):
    """Decode RGB frames; with ``select(n_total) -> indices`` convert only those."""
    import av

    if not container.streams.video:
        return None, None
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    fps = float(stream.average_rate) if stream.average_rate else None
    try:
        container.seek(0)
        decoded = list(container.decode(stream))
    except av.error.FFmpegError as exc:
        raise StimulusError(f"cannot decode the video of {path}: {exc}") from exc
    if not decoded:
        raise StimulusError(f"the video stream of {path} holds no frames")
    indices = range(len(decoded)) if select is None else select(len(decoded))
    frames = np.stack([decoded[i].to_ndarray(format="rgb24") for i in indices])
    return frames, fps


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise StimulusError(f"stimulus file not found: {path}")
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise StimulusError(f"cannot read image {path}: {exc}") from exc


def _frame_indices(n_total: int, n_frames: int) -> np.ndarray:
    """Evenly spaced frame indices (the centres of ``n_frames`` equal segments)."""
    idx = np.floor((np.arange(n_frames) + 0.5) * n_total / n_frames).astype(int)
    return np.clip(idx, 0, n_total - 1)


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
