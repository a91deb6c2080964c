"""Input recipes of the standard video, image and audio networks.

Each recipe turns one stimulus file into the input a library's network was trained on,
decoding it with :mod:`dnnrsa._decode` (one pass, no seeking; frames chosen by the
stream's timestamps). A recipe has the interface the feature pipeline reads
(:func:`dnnrsa.stimuli.prepare_inputs`, :func:`dnnrsa.features.extract_features`):
``modalities``, ``input_shape(modality)``, ``to_dict()`` and ``key()`` (the cache key)
and ``load(path, crop_box=None, *, missing="error", store=None)``, which returns
``{modality: ndarray of shape input_shape(modality)}`` (float32). Given ``store`` (the
stimuli decoded once for several networks, :class:`dnnrsa._decodedclips.DecodedClips`),
a recipe takes its frames and audio from the stored ones when the store holds the
stimulus, with the same result.

* :class:`VideoClipRecipe` (torchvision's video classifiers): ``n_frames`` frames shown
  at evenly spaced times of the clip (the frame shown at the centre of each of
  ``n_frames`` equal segments of its duration, by the stream's timestamps, so variable
  frame rates are honoured: ``dnnrsa._decode._frame_indices``); each frame, as RGB
  values / 255, is resized so that its short side is ``resize`` pixels (aspect kept;
  bilinear, no antialiasing, as torchvision's ``VideoClassification`` preset), the
  centred ``crop x crop`` square is cut out and each channel is normalised with the
  Kinetics-400 ``mean`` and ``std``. Shape ``(3, n_frames, crop, crop)``.
* :class:`ImageFramesRecipe` (image networks, run on each frame): the same frame
  choice, each frame resized (short side ``resize``, antialiased), centre-cropped and
  normalised as torchvision's ``ImageClassification`` preset (ImageNet mean and std).
  Shape ``(n_frames, 3, crop, crop)``; the network runs on every frame and each layer's
  activation is averaged over the frames (:class:`dnnrsa.models._framemean.FrameMean`).
* :class:`WaveformRecipe` (torchaudio's wav2vec 2.0, HuBERT, WavLM): the mono mix of the
  audio track (the mean over channels), resampled to ``sample_rate`` with torchaudio's
  band-limited sinc resampler and cut to its central ``duration_s`` seconds or
  zero-padded equally on both sides (``align="center"``; ``"start"``: from the start,
  padding at the end). Raw samples in [-1, 1], no normalisation (the base models were
  trained so). Shape ``(round(duration_s * sample_rate),)``.
* :class:`LogMelImageRecipe` (an image CNN on the spectrogram): the same waveform as a
  log-mel spectrogram (:func:`dnnrsa.stimuli.logmel_input`: 128 bands, 25 ms
  windows every 10 ms, FFT size 1024, ``(log(mel power + 1e-6) - mel_center) / mel_scale``) repeated
  on the three colour channels. Shape ``(3, n_mels, n_time)``.

A stimulus without what a recipe needs: a still image is a clip whose every frame is
that image, and it is silent for the audio recipes; an audio-only file gives the visual
recipes an all-zero input (after normalisation: every pixel at the training set's mean
colour); a video without an audio track raises :class:`~dnnrsa.stimuli.StimulusError`
for the audio recipes unless ``missing="blank"`` (then silence, all zeros). A crop box
``(x0, y0, x1, y1)``, when given, is cut from every frame before resizing; without one
the whole frame is used (the libraries' own evaluation transforms).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._decode import (
    StimulusError,
    _decode_file,
    _frame_indices,
    _image,
    stimulus_kind,
)
from ..stimuli import InputRecipe, _fit_window, _resampler, logmel_input, warn_if_silent

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "KINETICS_MEAN",
    "KINETICS_STD",
    "ImageFramesRecipe",
    "LogMelImageRecipe",
    "VideoClipRecipe",
    "WaveformRecipe",
    "recipe_from_dict",
]

#: Channel means and standard deviations of Kinetics-400 (torchvision's video models).
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
#: Channel means and standard deviations of ImageNet (torchvision's image models).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
_MISSING = ("error", "blank")


def _check_missing(missing: str) -> None:
    if missing not in _MISSING:
        raise ValueError(f"missing must be 'error' or 'blank'; got {missing!r}")


class _Recipe:
    """What every recipe here shares: its name in dictionaries, cache key and checks."""

    kind = ""

    def to_dict(self) -> dict:
        """Plain-type dictionary (JSON friendly), with the recipe's ``kind``."""
        out = {"kind": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def key(self) -> str:
        """Stable text identifying the recipe (used in cache keys)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def _positive(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")


# --------------------------------------------------------------------------- frames
def _clip_frames(path: Path, n_frames: int, store=None) -> np.ndarray | None:
    """RGB frames shown at ``n_frames`` evenly spaced times (uint8, ``(n, h, w, 3)``); a
    still image repeated; None for an audio-only file. Read from ``store`` (a
    :class:`dnnrsa._decodedclips.DecodedClips`) when it holds the stimulus."""
    kind = stimulus_kind(path)
    if kind == "audio":
        if not path.is_file():
            raise StimulusError(f"stimulus file not found: {path}")
        return None
    if kind == "image":
        return np.repeat(_image(path, store)[None], n_frames, axis=0)
    frames, *_ = _decode_file(
        path,
        video=True,
        audio=False,
        select=lambda timeline: _frame_indices(timeline, n_frames),
        store=store,
    )
    if frames is None:
        raise StimulusError(f"{path} holds no video stream")
    return frames


def _frames_tensor(
    frames: np.ndarray,
    crop_box: Sequence[int] | None,
    *,
    resize: int,
    crop: int,
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: str,
    antialias: bool,
):
    """``(n, 3, crop, crop)`` float32 tensor: RGB / 255, cropped to the box, short side
    resized to ``resize``, centre ``crop`` square, normalised per channel."""
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    x = x.to(torch.float32) / 255.0
    if crop_box is not None:
        height, width = x.shape[-2:]
        x0, y0, x1, y1 = (int(v) for v in crop_box)
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise ValueError(
                f"crop_box must satisfy 0 <= x0 < x1 <= {width} and 0 <= y0 < y1 <= {height}; "
                f"got {tuple(crop_box)!r}"
            )
        x = x[..., y0:y1, x0:x1]
    mode = InterpolationMode(interpolation)
    x = TF.resize(x, [int(resize)], interpolation=mode, antialias=antialias)
    x = TF.center_crop(x, [int(crop), int(crop)])
    return TF.normalize(x, mean=list(mean), std=list(std))


@dataclass(frozen=True)
class _FrameRecipe(_Recipe):
    n_frames: int = 16
    resize: int = 128
    crop: int = 112
    mean: tuple[float, ...] = KINETICS_MEAN
    std: tuple[float, ...] = KINETICS_STD
    interpolation: str = "bilinear"
    antialias: bool = False

    modalities = ("visual",)

    def __post_init__(self):
        for name in ("mean", "std"):
            value = tuple(float(v) for v in getattr(self, name))
            object.__setattr__(self, name, value)
            if len(value) != 3:
                raise ValueError(f"{name} must give 3 channel values; got {value!r}")
        if not all(s > 0 for s in self.std):
            raise ValueError(f"std must be positive; got {self.std!r}")
        self._positive("n_frames", "resize", "crop")
        if self.crop > self.resize:
            raise ValueError(f"crop ({self.crop}) must not exceed resize ({self.resize})")
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(
                f"interpolation must be one of {_INTERPOLATIONS}; got {self.interpolation!r}"
            )

    def _frames(self, path, crop_box, store=None):
        """The frames as a ``(n_frames, 3, crop, crop)`` tensor (zeros without frames)."""
        import torch

        frames = _clip_frames(Path(path), self.n_frames, store)
        if frames is None:
            return torch.zeros((self.n_frames, 3, self.crop, self.crop), dtype=torch.float32)
        return self.preprocess(frames, crop_box)

    def preprocess(self, frames, crop_box: Sequence[int] | None = None):
        """Already chosen RGB frames (uint8, ``(n, height, width, 3)``) as a
        ``(n, 3, crop, crop)`` float32 tensor."""
        return _frames_tensor(
            np.asarray(frames),
            crop_box,
            resize=self.resize,
            crop=self.crop,
            mean=self.mean,
            std=self.std,
            interpolation=self.interpolation,
            antialias=self.antialias,
        )


@dataclass(frozen=True)
class VideoClipRecipe(_FrameRecipe):
    """A video clip for a 3-D convolutional network: ``(3, n_frames, crop, crop)``.

    Parameters
    ----------
    n_frames : int
        Frames taken at evenly spaced times over the whole clip (16: for a 3-s clip,
        about 5.3 per second; the networks were trained on 16 consecutive frames).
    resize : int
        Short side after resizing, in pixels (aspect ratio kept). torchvision's preset
        resizes to 128x171 whatever the aspect; for a 4:3 clip the two agree.
    crop : int
        Side of the centred square cut from the resized frames.
    mean, std : tuple of 3 float
        Per-channel normalisation of RGB / 255 (default Kinetics-400's).
    interpolation : {"bilinear", "bicubic", "nearest"}
    antialias : bool
        Antialiased resizing (torchvision's video preset: off).
    """

    kind = "video-clip"

    def input_shape(self, modality: str) -> tuple[int, ...]:
        if modality != "visual":
            raise ValueError(f"modality must be 'visual'; got {modality!r}")
        return (3, self.n_frames, self.crop, self.crop)

    def load(
        self, path, crop_box=None, *, missing: str = "error", store=None
    ) -> dict[str, np.ndarray]:
        """``{"visual": (3, n_frames, crop, crop)}`` float32 (``missing`` is checked but
        has nothing to do: the recipe needs no sound; ``store``: decoded stimuli to read
        from, :class:`dnnrsa._decodedclips.DecodedClips`)."""
        _check_missing(missing)
        clip = self._frames(path, crop_box, store).permute(1, 0, 2, 3)
        return {"visual": clip.contiguous().numpy()}

    def describe(self) -> str:
        return (
            f"{self.n_frames} frames at evenly spaced times over the clip, short side "
            f"resized to {self.resize} ({self.interpolation}), centre {self.crop}x{self.crop}, "
            f"RGB normalised (mean {list(self.mean)}, std {list(self.std)})"
        )


@dataclass(frozen=True)
class ImageFramesRecipe(_FrameRecipe):
    """Frames for an image network, each its own image: ``(n_frames, 3, crop, crop)``.

    Parameters
    ----------
    n_frames : int
        Frames taken at evenly spaced times over the clip; the network's activations
        are averaged over them.
    resize, crop, mean, std, interpolation, antialias
        As :class:`VideoClipRecipe` (defaults: torchvision's ImageNet evaluation,
        short side 256, centre 224, antialiased bilinear).
    """

    n_frames: int = 8
    resize: int = 256
    crop: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    antialias: bool = True

    kind = "image-frames"

    def input_shape(self, modality: str) -> tuple[int, ...]:
        if modality != "visual":
            raise ValueError(f"modality must be 'visual'; got {modality!r}")
        return (self.n_frames, 3, self.crop, self.crop)

    def load(
        self, path, crop_box=None, *, missing: str = "error", store=None
    ) -> dict[str, np.ndarray]:
        """``{"visual": (n_frames, 3, crop, crop)}`` float32 (``store``: as
        :meth:`VideoClipRecipe.load`)."""
        _check_missing(missing)
        return {"visual": self._frames(path, crop_box, store).contiguous().numpy()}

    def describe(self) -> str:
        return (
            f"{self.n_frames} frames at evenly spaced times over the clip, each an image: "
            f"short side resized to {self.resize} ({self.interpolation}"
            f"{', antialiased' if self.antialias else ''}), centre {self.crop}x{self.crop}, "
            f"RGB normalised (mean {list(self.mean)}, std {list(self.std)}); activations "
            f"averaged over the {self.n_frames} frames"
        )


# --------------------------------------------------------------------------- audio
def _waveform(path: Path, sample_rate: int, n_samples: int, align: str, missing: str, store=None):
    """Mono waveform at ``sample_rate``, fitted to ``n_samples`` (float32); the audio read
    from ``store`` when it holds the stimulus."""
    import torch

    _check_missing(missing)
    kind = stimulus_kind(path)
    audio = rate = None
    if kind == "image":
        if not path.is_file():
            raise StimulusError(f"stimulus file not found: {path}")
    else:
        _, _, _, audio, rate = _decode_file(path, video=False, audio=True, store=store)
        if audio is None and kind == "audio":
            raise StimulusError(f"{path} holds no audio stream")
        if audio is None and missing == "error":
            raise StimulusError(
                f"{path} has no audio track, but the input recipe needs auditory input "
                "(to use silence: missing='blank', or --allow-silent-video on the "
                "command line)"
            )
    if audio is None:
        return np.zeros(n_samples, np.float32)
    warn_if_silent(audio, path)
    wave = torch.from_numpy(np.asarray(audio, dtype=np.float32))
    if int(rate) != sample_rate:
        wave = _resampler(int(rate), sample_rate)(wave)
    return _fit_window(wave.numpy(), n_samples, align).astype(np.float32)


@dataclass(frozen=True)
class WaveformRecipe(_Recipe):
    """The raw mono waveform: ``(n_samples,)``.

    Parameters
    ----------
    sample_rate : int
        Hz after resampling (16 kHz: what wav2vec 2.0, HuBERT and WavLM were trained on).
    duration_s : float
        Length of the window in seconds.
    align : {"center", "start"}
        Where the window sits in a longer track and where padding goes in a shorter one.
    """

    sample_rate: int = 16000
    duration_s: float = 3.0
    align: str = "center"

    kind = "waveform"
    modalities = ("auditory",)

    def __post_init__(self):
        self._positive("sample_rate")
        if not self.duration_s > 0:
            raise ValueError(f"duration_s must be positive; got {self.duration_s!r}")
        if self.align not in ("center", "start"):
            raise ValueError(f"align must be 'center' or 'start'; got {self.align!r}")

    @property
    def n_samples(self) -> int:
        return int(round(self.duration_s * self.sample_rate))

    def input_shape(self, modality: str) -> tuple[int, ...]:
        if modality != "auditory":
            raise ValueError(f"modality must be 'auditory'; got {modality!r}")
        return (self.n_samples,)

    def load(
        self, path, crop_box=None, *, missing: str = "error", store=None
    ) -> dict[str, np.ndarray]:
        """``{"auditory": (n_samples,)}`` float32 (``crop_box`` is ignored; ``store``: as
        :meth:`VideoClipRecipe.load`)."""
        wave = _waveform(Path(path), self.sample_rate, self.n_samples, self.align, missing, store)
        return {"auditory": wave}

    def describe(self) -> str:
        return (
            f"mono waveform resampled to {self.sample_rate} Hz, the {self.align} "
            f"{self.duration_s:g} s ({self.n_samples} samples; shorter tracks zero-padded)"
        )


@dataclass(frozen=True)
class LogMelImageRecipe(_Recipe):
    """A log-mel spectrogram as a three-channel image: ``(3, n_mels, n_time)``.

    Parameters
    ----------
    sample_rate, duration_s, align
        As :class:`WaveformRecipe`.
    n_mels : int
        Mel bands (image height).
    n_fft : int
        FFT size in samples (1024: every one of 128 mel bands gets frequency bins; the
        25-ms window is zero-padded to it).
    win_ms, hop_ms : float
        Window and hop (image width: ``1 + n_samples // hop``).
    f_max_hz : float, optional
        Top of the mel filter bank (None: Nyquist).
    mel_center, mel_scale : float
        Fixed shift and scale of the natural-log mel power (as
        :class:`dnnrsa.stimuli.InputRecipe`: no per-clip normalisation).
    """

    sample_rate: int = 16000
    duration_s: float = 3.0
    align: str = "center"
    n_mels: int = 128
    n_fft: int = 1024
    win_ms: float = 25.0
    hop_ms: float = 10.0
    f_max_hz: float | None = None
    mel_center: float = -9.0
    mel_scale: float = 4.5

    kind = "logmel-image"
    modalities = ("auditory",)

    def __post_init__(self):
        self._mel_recipe()  # checks the values

    def _mel_recipe(self) -> InputRecipe:
        return InputRecipe(
            modalities=("auditory",),
            sample_rate=self.sample_rate,
            duration_s=self.duration_s,
            n_mels=self.n_mels,
            n_fft=self.n_fft,
            win_ms=self.win_ms,
            hop_ms=self.hop_ms,
            f_max_hz=self.f_max_hz,
            align=self.align,
            mel_center=self.mel_center,
            mel_scale=self.mel_scale,
        )

    def input_shape(self, modality: str) -> tuple[int, ...]:
        if modality != "auditory":
            raise ValueError(f"modality must be 'auditory'; got {modality!r}")
        _, n_mels, n_time = self._mel_recipe().auditory_shape
        return (3, n_mels, n_time)

    def load(
        self, path, crop_box=None, *, missing: str = "error", store=None
    ) -> dict[str, np.ndarray]:
        """``{"auditory": (3, n_mels, n_time)}`` float32 (``crop_box`` is ignored; ``store``:
        as :meth:`VideoClipRecipe.load`)."""
        mel = self._mel_recipe()
        wave = _waveform(Path(path), self.sample_rate, mel.n_samples, self.align, missing, store)
        logmel = logmel_input(wave, self.sample_rate, mel)
        return {"auditory": np.repeat(logmel, 3, axis=0)}

    def describe(self) -> str:
        mel = self._mel_recipe()
        return (
            f"log-mel spectrogram of the mono waveform at {self.sample_rate} Hz, the "
            f"{self.align} {self.duration_s:g} s: {self.n_mels} bands x {mel.n_time} frames "
            f"({self.win_ms:g} ms windows every {self.hop_ms:g} ms), (log(power + 1e-6) - "
            f"{self.mel_center:g}) / {self.mel_scale:g}, on 3 channels"
        )


_KINDS = {
    cls.kind: cls for cls in (VideoClipRecipe, ImageFramesRecipe, WaveformRecipe, LogMelImageRecipe)
}


def recipe_from_dict(data: dict):
    """The recipe a :meth:`to_dict` dictionary describes."""
    data = dict(data)
    kind = data.pop("kind", None)
    if kind not in _KINDS:
        raise ValueError(f"recipe kind must be one of {sorted(_KINDS)}; got {kind!r}")
    cls = _KINDS[kind]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {kind} recipe fields {unknown}")
    for name in ("mean", "std"):
        if name in data:
            data[name] = tuple(data[name])
    return cls(**data)
