"""Standard video, image and audio networks, registered without user code.

Three families of :class:`~dnnrsa.models.ModelFamily`, named ``<library>/<architecture>``:

* ``torchvision/``: the video classifiers ``r3d_18``, ``r2plus1d_18``, ``mc3_18`` and
  ``s3d`` (Kinetics-400; input :class:`~dnnrsa.models.recipes.VideoClipRecipe`), the image
  classifiers ``resnet18``, ``resnet50`` and ``vit_b_16`` (ImageNet; run on frames,
  :class:`~dnnrsa.models.recipes.ImageFramesRecipe`, each layer averaged over them) and
  ``resnet18_logmel``, torchvision's ResNet-18 as a spectrogram CNN on a log-mel image
  (:class:`~dnnrsa.models.recipes.LogMelImageRecipe`);
* ``torchaudio/``: the self-supervised speech models ``wav2vec2_base``, ``hubert_base``,
  ``wavlm_base`` and ``wavlm_base_plus`` on the raw waveform
  (:class:`~dnnrsa.models.recipes.WaveformRecipe`), each transformer layer a named layer;
* ``timm/``: any architecture of timm (the ``networks`` extra) by its name, optionally with
  a pretrained tag (``timm/resnet50``, ``timm/vit_base_patch16_224.augreg2_in21k_ft_in1k``),
  run on frames like the torchvision image networks, with timm's own input size, crop
  fraction, interpolation, mean and std; its layers are those timm's ``feature_info``
  names, then the classifier.

Every layer has a name, the submodule whose output is recorded and its part
(``visual`` for the video and image networks, ``auditory`` for the audio ones).

Weights are never downloaded. :func:`load_network` builds the library's network with
random weights (``weights=None`` in the libraries' terms) and then, in this order:

1. ``NAME=FILE``: a state dict in ``FILE`` (``.pth``, ``.pt``: read with
   ``torch.load(weights_only=True)``; ``.safetensors``);
2. ``NAME``: the file the library itself would have downloaded, where it keeps it: for
   torchvision and torchaudio ``$TORCH_HOME/hub/checkpoints/<official file name>``
   (``torch.hub.get_dir()``; the names come from the libraries' weight enums and bundles,
   e.g. ``r3d_18-b3b3357e.pth``); for timm the Hugging Face cache
   (``$HF_HOME/hub/models--timm--<name>.<tag>/snapshots/<revision>/model.safetensors``),
   then ``$TORCH_HOME/hub/checkpoints/`` under the file name of timm's legacy URL;
3. otherwise :class:`WeightsNotFound` naming the exact file and where to put it.

:func:`locate_weights` finds the file of 1. or 2. without reading it.

``NAME=random`` keeps the seeded random weights: the untrained control, marked
``trained: False`` in what :func:`load_network` returns. A file that does not fit the
architecture raises :class:`WeightsMismatch` naming the first mismatched tensor.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import file_sha256
from . import LayerSpec, ModelFamily, ModelSpec, _non_finite, build_model, get_model
from .recipes import (
    ImageFramesRecipe,
    LogMelImageRecipe,
    VideoClipRecipe,
    WaveformRecipe,
)

logger = logging.getLogger(__name__)

__all__ = [
    "RANDOM",
    "OfficialWeights",
    "WeightsError",
    "WeightsMismatch",
    "WeightsNotFound",
    "describe_network",
    "list_networks",
    "load_network",
    "locate_weights",
    "parse_network",
    "read_state_dict",
    "timm_family",
    "torchaudio_family",
    "torchvision_family",
]

#: The weights source of the seeded untrained network.
RANDOM = "random"
_STATE_SUFFIXES = (".pth", ".pt", ".safetensors")


class WeightsError(ValueError):
    """A weight file that cannot be used: unreadable, not a state dict, not finite."""


class WeightsMismatch(WeightsError):
    """A weight file whose tensors do not fit the network's architecture."""


class WeightsNotFound(FileNotFoundError):
    """No weight file where it was looked for."""


# --------------------------------------------------------------------------- weights
def _torch_hub_checkpoints() -> Path:
    """Where ``torch.hub.load_state_dict_from_url`` keeps files: ``$TORCH_HOME/hub/checkpoints``."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def _hf_hub_cache() -> Path:
    """The Hugging Face cache folder (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
    )
    return Path(home) / "hub"


def _hf_cached(repo: str, filename: str) -> Path | None:
    """A file of a Hugging Face model repository in the local cache (never fetched):
    the revision ``refs/main`` names, else the only snapshot that has it."""
    folder = _hf_hub_cache() / ("models--" + repo.replace("/", "--"))
    ref = folder / "refs" / "main"
    if ref.is_file():
        candidate = folder / "snapshots" / ref.read_text().strip() / filename
        if candidate.is_file():
            return candidate
    found = sorted((folder / "snapshots").glob(f"*/{filename}"))
    return found[0] if len(found) == 1 else None


@dataclass(frozen=True)
class OfficialWeights:
    """The trained weights a standard network is published with, and where to find them.

    Parameters
    ----------
    library : {"torchvision", "torchaudio", "timm"}
    source : str
        What the library calls them (its weight enum member, bundle or pretrained tag).
    file_name : str
        The file's name where the library keeps it after a download.
    url : str
        Where the library would download it from (shown to the user; never fetched).
    module : str
        The submodule of the registered network whose state dict the file holds
        (``""``: the whole network).
    hf_repo : str, optional
        The Hugging Face repository (timm).
    """

    library: str
    source: str
    file_name: str
    url: str = ""
    module: str = ""
    hf_repo: str | None = None

    def expected(self) -> list[Path]:
        """The paths looked for, in order (for timm the Hugging Face cache path with
        ``<revision>`` as a placeholder when nothing is there)."""
        paths = []
        if self.hf_repo:
            found = _hf_cached(self.hf_repo, self.file_name)
            folder = _hf_hub_cache() / ("models--" + self.hf_repo.replace("/", "--"))
            paths.append(found or folder / "snapshots" / "<revision>" / self.file_name)
            if self.url:
                paths.append(_torch_hub_checkpoints() / self.url.rsplit("/", 1)[-1])
        else:
            paths.append(_torch_hub_checkpoints() / self.file_name)
        return paths

    def find(self) -> Path | None:
        """The first expected file that exists."""
        for path in self.expected():
            if path.is_file():
                return path
        return None

    def where(self) -> str:
        """What file to put where, in words."""
        what = f"{self.file_name} ({self.library}'s {self.source}"
        if self.hf_repo:
            return (
                f"{what}, from https://huggingface.co/{self.hf_repo}) at {self.expected()[0]} "
                "(the Hugging Face cache: $HF_HUB_CACHE, or $HF_HOME/hub)"
            )
        return (
            f"{what}, from {self.url}) at {self.expected()[0]} "
            "($TORCH_HOME/hub/checkpoints/; TORCH_HOME defaults to ~/.cache/torch)"
        )


def parse_network(text: str) -> tuple[str, str | None]:
    """``"NAME"`` or ``"NAME=SOURCE"`` -> ``(NAME, SOURCE or None)``.

    ``SOURCE`` is a weight file or ``random``.
    """
    name, sep, source = str(text).partition("=")
    name = name.strip()
    if not name:
        raise ValueError(f"network must be NAME or NAME=FILE or NAME=random; got {text!r}")
    if sep and not source.strip():
        raise ValueError(f"network {text!r} names no weights after '=' (a file or 'random')")
    return name, (source.strip() if sep else None)


def _readable(path: Path, exc: BaseException) -> str:
    """Why ``torch.load`` refused a weight file, in dnnrsa's words (torch's own advice,
    to load with ``weights_only=False``, would run whatever code a pickle holds)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    blocked = re.search(r"GLOBAL\s+([\w.]+)", text)
    if blocked:
        return (
            f"weight file {path} holds a pickled Python object ({blocked.group(1)}), which "
            "dnnrsa never loads: save the network's state_dict() (tensors only), or use "
            "the library's own file"
        )
    return (
        f"weight file {path} cannot be read as a state dict ({type(exc).__name__}); it may be "
        "truncated: copy it again"
    )


def read_state_dict(path: str | os.PathLike) -> dict[str, Any]:
    """The tensors of a weight file: ``.safetensors``, or ``.pth``/``.pt``/``.bin`` read
    with ``torch.load(weights_only=True)`` (a plain state dict, or a dictionary holding
    one under ``state_dict`` or ``model``).

    Raises
    ------
    WeightsNotFound
        No such file.
    WeightsError
        Another format, unreadable, no tensors, or NaN or infinite values.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsNotFound(f"weight file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in (*_STATE_SUFFIXES, ".bin"):
        raise WeightsError(
            f"weight file {path} must be a state dict in a .pth, .pt or .safetensors file; "
            f"got {suffix or 'no suffix'!r}"
        )
    if suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise WeightsError(
                f"reading {path} needs the safetensors package (pip install 'dnnrsa[networks]')"
            ) from exc
        try:
            state = load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types
            raise WeightsError(
                f"weight file {path} is not a readable safetensors file: {exc}"
            ) from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except OSError:
            raise
        except Exception as exc:  # torch raises many types for a file it cannot read
            raise WeightsError(_readable(path, exc)) from None
    if isinstance(state, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), Mapping) and len(state) <= 8:
                state = state[key]
                break
    if (
        not isinstance(state, Mapping)
        or not state
        or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items())
    ):
        raise WeightsError(f"weight file {path} holds no state dict (a mapping of named tensors)")
    bad = _non_finite(state)
    if bad:
        raise WeightsError(
            f"weight file {path} has NaN or infinite values in {len(bad)} tensor(s), first "
            f"{bad[0]!r}"
        )
    # torch's own mapping keeps its _metadata (module versions its loading hooks read)
    return state if isinstance(state, dict) else dict(state)


def _fit(module, state: Mapping[str, Any], path: Path, name: str) -> None:
    """Load ``state`` into ``module``, or raise :class:`WeightsMismatch` naming the
    first tensor (in the network's order) that does not fit."""
    expected = module.state_dict()
    shapes = [
        (k, tuple(state[k].shape), tuple(v.shape))
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if shapes:
        key, got, want = shapes[0]
        raise WeightsMismatch(
            f"weight file {path} does not fit {name}: tensor {key!r} has shape {got} in the "
            f"file and {want} in the network ({len(shapes)} tensor(s) of another shape); "
            f"use weights of the {name} architecture"
        )
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a module's own loading hook refused a tensor
        found = re.search(r"for ([\w.]+):", str(exc))
        what = f"tensor {found.group(1)!r}" if found else "a tensor"
        raise WeightsMismatch(f"weight file {path} does not fit {name}: {what}: {exc}") from None
    # BatchNorm files written before torch 0.4.1 lack num_batches_tracked (filled in by torch)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing:
        raise WeightsMismatch(
            f"weight file {path} does not fit {name}: tensor {missing[0]!r} of the network is "
            f"not in the file ({len(missing)} missing); use weights of the {name} architecture"
        )
    if result.unexpected_keys:
        raise WeightsMismatch(
            f"weight file {path} does not fit {name}: tensor {result.unexpected_keys[0]!r} of "
            f"the file is not in the network ({len(result.unexpected_keys)} unknown); use "
            f"weights of the {name} architecture"
        )


def locate_weights(
    name: str | ModelSpec, weights: str | os.PathLike | None = None, *, option: str = ""
) -> tuple[Path, str]:
    """Where the trained weights of a standard network are, nothing read: ``(path, kind)``.

    Parameters
    ----------
    name : str or ModelSpec
        A registered network with published weights.
    weights : path-like, optional
        A weight file, or None: the official file where the library keeps it.
    option : str
        How the network is given where the messages point to (``"--network "`` on the
        BIDS App's command line; ``""``: ``NAME=FILE`` as :func:`load_network` takes it).
        With an option, a missing file's message says how to use the library's own
        file instead of naming the state dict formats.

    Returns
    -------
    path : Path
    kind : {"cache", "file"}
        The library's own file where the library keeps it, or the file given.

    Raises
    ------
    WeightsNotFound
        No file given and none where the library keeps it (the message names the file
        and where to put it), or the given file does not exist.
    """
    spec = get_model(name)
    official: OfficialWeights | None = spec.weights
    if official is None:
        raise ValueError(f"{spec.name!r} is not a standard network (it has no published weights)")
    if weights is None:
        path = official.find()
        if path is None:
            raise WeightsNotFound(
                f"no weights for {spec.name}: dnnrsa never downloads them. Put {official.where()}, "
                f"or pass {option}{spec.name}=FILE (a state dict: .pth, .pt or .safetensors), or "
                f"{option}{spec.name}=random for the untrained network"
            )
        return path, "cache"
    path = Path(weights)
    if not path.is_file():
        if option:
            hint = (
                f"the library's own file is {official.file_name}; put it at $TORCH_HOME/hub/"
                f"checkpoints/{official.file_name} and pass {option}{spec.name}, or give an "
                "existing file"
            )
        else:
            hint = "expected a state dict: .pth, .pt or .safetensors"
        raise WeightsNotFound(f"weight file for {spec.name} not found: {path} ({hint})")
    return path, "file"


def load_network(
    name: str | ModelSpec,
    weights: str | os.PathLike | None = None,
    *,
    seed: int = 0,
):
    """Build a standard network with its weights, never downloading anything.

    Parameters
    ----------
    name : str or ModelSpec
        ``<library>/<architecture>``, or ``NAME=FILE`` / ``NAME=random`` (then
        ``weights`` must be None).
    weights : path-like or "random", optional
        A state dict file, ``"random"`` (the seeded untrained network), or None: the
        official file where the library keeps it (see the module's description).
    seed : int
        Seed of the random initialisation (the untrained network; with a weight file
        every tensor is then replaced).

    Returns
    -------
    model : torch.nn.Module
        In eval mode, on the CPU.
    spec : ModelSpec
    info : dict
        ``recipe``, ``labels`` (empty), ``regime`` (None) and ``weights``: ``source``
        (``"random"``, ``"file"`` or ``"cache"``), ``trained`` (bool), ``file`` and
        ``sha256`` (of the file; None for random weights), ``seed``, ``official`` (what
        the library calls its weights).

    Raises
    ------
    WeightsNotFound
        No file given and none where the library keeps it (the message names the file
        and where to put it), or the given file does not exist.
    WeightsMismatch
        The file's tensors do not fit the architecture (naming the first that does not).
    WeightsError
        The file cannot be read as a state dict.
    """
    if isinstance(name, str) and "=" in name:
        if weights is not None:
            raise ValueError(f"give the weights once: {name!r} and weights={weights!r}")
        name, weights = parse_network(name)
    spec = get_model(name)
    official: OfficialWeights | None = spec.weights
    if official is None:
        raise ValueError(
            f"{spec.name!r} is not a standard network (it has no published weights): load it "
            "with dnnrsa.models.load_model and a checkpoint written by dnnrsa-train"
        )
    record = {
        "source": RANDOM,
        "trained": False,
        "file": None,
        "sha256": None,
        "seed": int(seed),
        "official": f"{official.library} {official.source}",
    }
    if weights is not None and str(weights) == RANDOM:
        return build_model(spec, seed=seed), spec, _info(spec, record)
    path, source = locate_weights(spec, weights)
    model = build_model(spec, seed=seed)
    state = read_state_dict(path)
    target = model.get_submodule(official.module) if official.module else model
    _fit(target, state, path, spec.name)
    record.update(source=source, trained=True, file=str(path), sha256=file_sha256(path))
    record.pop("seed")
    logger.info("%s: weights from %s", spec.name, path)
    return model.eval(), spec, _info(spec, record)


def _info(spec: ModelSpec, record: dict) -> dict:
    return {"recipe": spec.recipe, "labels": [], "regime": None, "weights": record}


# --------------------------------------------------------------------------- frames
def _frame_mean(net, modules: Mapping[str, str]):
    """``net`` run on frames, its layers averaged over them (:class:`FrameMean`)."""
    from ._framemean import FrameMean

    return FrameMean(net, modules)


def _frame_layers(layers: Sequence[tuple[str, str, str]], part: str, n_frames: int):
    """LayerSpecs of a :class:`FrameMean` network from (name, submodule of net, text)."""
    return tuple(
        LayerSpec(
            name,
            f"frame_mean.{name}",
            part,
            f"{text} (net.{module}), averaged over the {n_frames} frames".strip(),
        )
        for name, module, text in layers
    )


# --------------------------------------------------------------------------- torchvision
_VIDEO_RESNET = (
    ("stem", "stem", "3-D convolution stem"),
    ("layer1", "layer1", "residual stage 1"),
    ("layer2", "layer2", "residual stage 2"),
    ("layer3", "layer3", "residual stage 3"),
    ("layer4", "layer4", "residual stage 4"),
    ("avgpool", "avgpool", "global average pool"),
    ("fc", "fc", "Kinetics-400 logits"),
)
_S3D = (
    ("conv1a", "features.0", "Conv_1a: separable 3-D convolution"),
    ("conv2b", "features.2", "Conv_2b: 1x1x1 convolution"),
    ("conv2c", "features.3", "Conv_2c: separable 3-D convolution"),
    ("mixed3b", "features.5", "Mixed_3b: separable inception block"),
    ("mixed3c", "features.6", "Mixed_3c"),
    ("mixed4b", "features.8", "Mixed_4b"),
    ("mixed4c", "features.9", "Mixed_4c"),
    ("mixed4d", "features.10", "Mixed_4d"),
    ("mixed4e", "features.11", "Mixed_4e"),
    ("mixed4f", "features.12", "Mixed_4f"),
    ("mixed5b", "features.14", "Mixed_5b"),
    ("mixed5c", "features.15", "Mixed_5c"),
    ("avgpool", "avgpool", "average pool"),
    ("classifier", "classifier", "Kinetics-400 logits per position"),
)
_RESNET = (
    ("maxpool", "maxpool", "stem: convolution and max pool"),
    ("layer1", "layer1", "residual stage 1"),
    ("layer2", "layer2", "residual stage 2"),
    ("layer3", "layer3", "residual stage 3"),
    ("layer4", "layer4", "residual stage 4"),
    ("avgpool", "avgpool", "global average pool"),
    ("fc", "fc", "logits"),
)
_VIT_B_16 = (
    ("conv_proj", "conv_proj", "patch embedding"),
    *(
        (f"encoder_layer_{i}", f"encoder.layers.encoder_layer_{i}", f"transformer block {i}")
        for i in range(12)
    ),
    ("encoder_ln", "encoder.ln", "final layer norm"),
    ("head", "heads.head", "ImageNet logits"),
)


@dataclass(frozen=True)
class _Torchvision:
    """One torchvision network: builder, weight enum, layers, recipe, part."""

    module: str  # torchvision.models or torchvision.models.video
    builder: str
    weights_enum: str
    layers: tuple[tuple[str, str, str], ...]
    kind: str  # "video", "image" or "logmel"
    description: str


_TORCHVISION = {
    "r3d_18": _Torchvision(
        "torchvision.models.video",
        "r3d_18",
        "R3D_18_Weights",
        _VIDEO_RESNET,
        "video",
        "ResNet3D-18 (3-D convolutions), Kinetics-400",
    ),
    "r2plus1d_18": _Torchvision(
        "torchvision.models.video",
        "r2plus1d_18",
        "R2Plus1D_18_Weights",
        _VIDEO_RESNET,
        "video",
        "R(2+1)D-18 (spatial and temporal convolutions), Kinetics-400",
    ),
    "mc3_18": _Torchvision(
        "torchvision.models.video",
        "mc3_18",
        "MC3_18_Weights",
        _VIDEO_RESNET,
        "video",
        "MC3-18 (3-D convolutions, then 2-D), Kinetics-400",
    ),
    "s3d": _Torchvision(
        "torchvision.models.video",
        "s3d",
        "S3D_Weights",
        _S3D,
        "video",
        "S3D (separable 3-D inception), Kinetics-400",
    ),
    "resnet18": _Torchvision(
        "torchvision.models",
        "resnet18",
        "ResNet18_Weights",
        _RESNET,
        "image",
        "ResNet-18, ImageNet",
    ),
    "resnet50": _Torchvision(
        "torchvision.models",
        "resnet50",
        "ResNet50_Weights",
        _RESNET,
        "image",
        "ResNet-50, ImageNet",
    ),
    "vit_b_16": _Torchvision(
        "torchvision.models",
        "vit_b_16",
        "ViT_B_16_Weights",
        _VIT_B_16,
        "image",
        "Vision Transformer B/16, ImageNet",
    ),
    "resnet18_logmel": _Torchvision(
        "torchvision.models",
        "resnet18",
        "ResNet18_Weights",
        _RESNET,
        "logmel",
        "ResNet-18 as a spectrogram CNN on a 3-channel log-mel image (ImageNet weights by "
        "default, the usual transfer start; any resnet18 state dict, e.g. one trained on "
        "audio, with NAME=FILE)",
    ),
}

_VIDEO_SHORT_SIDE = {112: 128, 224: 256}


def _torchvision_spec(arch: str) -> ModelSpec:
    import importlib

    if arch not in _TORCHVISION:
        raise ValueError(f"torchvision network must be one of {sorted(_TORCHVISION)}; got {arch!r}")
    entry = _TORCHVISION[arch]
    library = importlib.import_module(entry.module)
    builder = getattr(library, entry.builder)
    enum = getattr(library, entry.weights_enum)
    official = enum.DEFAULT
    preset = official.transforms.keywords  # crop_size, resize_size (never called)
    file_name = official.url.rsplit("/", 1)[-1]
    source = f"{entry.weights_enum}.{official.name}"
    default_outputs = len(official.meta["categories"])
    if entry.kind == "video":
        crop = int(preset["crop_size"][0])
        recipe = VideoClipRecipe(n_frames=16, resize=_VIDEO_SHORT_SIDE[crop], crop=crop)
        layers = tuple(LayerSpec(n, m, "visual", t) for n, m, t in entry.layers)

        def factory(n_outputs: int = default_outputs):
            return builder(weights=None, num_classes=n_outputs)

        module = ""
    elif entry.kind == "image":
        recipe = ImageFramesRecipe(
            n_frames=8, resize=int(preset.get("resize_size", 256)), crop=int(preset["crop_size"])
        )
        layers = _frame_layers(entry.layers, "visual", recipe.n_frames)
        modules = {n: m for n, m, _ in entry.layers}

        def factory(n_outputs: int = default_outputs):
            return _frame_mean(builder(weights=None, num_classes=n_outputs), modules)

        module = "net"
    else:
        recipe = LogMelImageRecipe()
        layers = tuple(LayerSpec(n, m, "auditory", t) for n, m, t in entry.layers)

        def factory(n_outputs: int = default_outputs):
            return builder(weights=None, num_classes=n_outputs)

        module = ""
    return ModelSpec(
        name=f"torchvision/{arch}",
        factory=factory,
        layers=layers,
        recipe=recipe,
        default_outputs=default_outputs,
        description=f"torchvision {entry.builder}: {entry.description}",
        weights=OfficialWeights("torchvision", source, file_name, official.url, module),
    )


torchvision_family = ModelFamily(
    name="torchvision",
    resolve=_torchvision_spec,
    members=lambda: sorted(_TORCHVISION),
    description="torchvision's video classifiers (Kinetics-400), image classifiers "
    "(ImageNet, run on frames) and ResNet-18 on log-mel spectrograms",
)


# --------------------------------------------------------------------------- torchaudio
_TORCHAUDIO = {
    "wav2vec2_base": ("wav2vec2_base", "WAV2VEC2_BASE", "wav2vec 2.0 Base, LibriSpeech 960 h"),
    "hubert_base": ("hubert_base", "HUBERT_BASE", "HuBERT Base, LibriSpeech 960 h"),
    "wavlm_base": ("wavlm_base", "WAVLM_BASE", "WavLM Base, LibriSpeech 960 h"),
    "wavlm_base_plus": (
        "wavlm_base",
        "WAVLM_BASE_PLUS",
        "WavLM Base+, 94k h (Libri-Light, GigaSpeech, VoxPopuli)",
    ),
}


def _torchaudio_spec(arch: str) -> ModelSpec:
    if arch not in _TORCHAUDIO:
        raise ValueError(f"torchaudio network must be one of {sorted(_TORCHAUDIO)}; got {arch!r}")
    import torchaudio

    builder_name, bundle_name, text = _TORCHAUDIO[arch]
    builder = getattr(torchaudio.models, builder_name)
    bundle = getattr(torchaudio.pipelines, bundle_name)
    # the bundle's file name and settings: read, never fetched (get_model would download)
    file_name = bundle._path
    if getattr(bundle, "_normalize_waveform", False):
        raise ValueError(f"torchaudio {bundle_name} normalises its waveform; not supported")
    params = getattr(bundle, "_params", {})
    n_layers = int(params.get("encoder_num_layers", 12))
    recipe = WaveformRecipe(sample_rate=int(bundle.sample_rate), duration_s=3.0)
    layers = (
        LayerSpec(
            "feature_extractor", "feature_extractor", "auditory", "convolutional feature encoder"
        ),
        *(
            LayerSpec(
                f"transformer_{i + 1}",
                f"encoder.transformer.layers.{i}",
                "auditory",
                f"transformer layer {i + 1}",
            )
            for i in range(n_layers)
        ),
    )

    def factory(n_outputs: int | None = None):
        return builder()

    return ModelSpec(
        name=f"torchaudio/{arch}",
        factory=factory,
        layers=layers,
        recipe=recipe,
        default_outputs=1,
        description=f"torchaudio {builder_name}: {text}",
        weights=OfficialWeights(
            "torchaudio",
            f"pipelines.{bundle_name}",
            file_name,
            f"https://download.pytorch.org/torchaudio/models/{file_name}",
        ),
    )


torchaudio_family = ModelFamily(
    name="torchaudio",
    resolve=_torchaudio_spec,
    members=lambda: sorted(_TORCHAUDIO),
    description="torchaudio's self-supervised speech models on the raw waveform",
)


# --------------------------------------------------------------------------- timm
def _timm_spec(arch: str) -> ModelSpec:
    try:
        import timm
        from timm.data import resolve_data_config
    except ImportError as exc:
        raise ImportError(
            f"timm/{arch} needs timm: install dnnrsa's networks extra "
            "(pip install 'dnnrsa[networks]'; make install includes it)"
        ) from exc
    import torch

    if not arch or ":" in arch or "/" in arch or not timm.is_model(arch):
        raise ValueError(
            f"timm has no architecture {arch!r}: give a name of timm.list_models() (optionally "
            "with a pretrained tag, e.g. resnet50.a1_in1k)"
        )
    with torch.device("meta"):  # names and settings only: no memory, no random numbers
        probe = timm.create_model(arch, pretrained=False)
    info = getattr(probe, "feature_info", None) or []
    paths = [f["module"] for f in info if isinstance(f, Mapping) and f.get("module")]
    classifier = probe.get_classifier()
    head = [n for n, m in probe.named_modules() if m is classifier and n]
    if not paths:
        raise ValueError(
            f"timm/{arch} declares no feature_info, so dnnrsa cannot name its layers; register "
            "it as a plugin model with its layers instead"
        )
    modules = {p.replace(".", "_"): p for p in dict.fromkeys(paths + head)}
    config = resolve_data_config({}, model=probe)
    size = config["input_size"][-2:]
    if size[0] != size[1]:
        raise ValueError(f"timm/{arch} takes {size[0]}x{size[1]} images; dnnrsa crops squares")
    crop = int(size[0])
    interpolation = config.get("interpolation", "bicubic")
    recipe = ImageFramesRecipe(
        n_frames=8,
        resize=int(math.floor(crop / float(config.get("crop_pct") or 0.875))),
        crop=crop,
        mean=tuple(config["mean"]),
        std=tuple(config["std"]),
        interpolation=interpolation if interpolation in ("bilinear", "bicubic") else "bicubic",
    )
    layers = _frame_layers(
        [(n, p, "classifier" if p in head else "feature stage") for n, p in modules.items()],
        "visual",
        recipe.n_frames,
    )
    cfg = dict(getattr(probe, "pretrained_cfg", {}) or {})
    repo = cfg.get("hf_hub_id") or None
    url = cfg.get("url") or ""
    tag = cfg.get("tag") or ""
    n_classes = int(getattr(probe, "num_classes", 1000) or 1000)
    name = arch.split(".", 1)[0]

    def factory(n_outputs: int = n_classes):
        return _frame_mean(
            timm.create_model(arch, pretrained=False, num_classes=n_outputs), modules
        )

    if repo:
        official = OfficialWeights(
            "timm", f"{name}.{tag}" if tag else name, "model.safetensors", url, "net", repo
        )
    else:
        official = OfficialWeights(
            "timm", name, url.rsplit("/", 1)[-1] if url else f"{name}.pth", url, "net"
        )
    return ModelSpec(
        name=f"timm/{arch}",
        factory=factory,
        layers=layers,
        recipe=recipe,
        default_outputs=n_classes,
        description=f"timm {arch}" + (f" (pretrained tag {tag})" if tag else ""),
        weights=official,
    )


def _timm_members() -> list[str]:
    """The timm networks listed (any other timm architecture resolves by name too)."""
    return []


timm_family = ModelFamily(
    name="timm",
    resolve=_timm_spec,
    members=_timm_members,
    description="any timm architecture by name (timm.list_models()), run on frames",
)


# --------------------------------------------------------------------------- listing
def _recipe_text(recipe) -> str:
    describe = getattr(recipe, "describe", None)
    if describe is not None:
        return describe()
    shapes = ", ".join(f"{m} {tuple(recipe.input_shape(m))}" for m in recipe.modalities)
    return f"{type(recipe).__name__}: {shapes}"


def describe_network(name: str | ModelSpec) -> str:
    """A network's layers, parts, recipe and the weight file it expects, as text."""
    spec = get_model(name)
    lines = [f"{spec.name}: {spec.description}"]
    lines.append(f"  recipe: {_recipe_text(spec.recipe)}")
    official: OfficialWeights | None = spec.weights
    if official is not None:
        lines.append(f"  weights: {official.library} {official.source}, file {official.file_name}")
        lines.append(f"    looked for at: {', '.join(str(p) for p in official.expected())}")
        lines.append(f"    or {spec.name}=FILE (a state dict), {spec.name}=random (untrained)")
    else:
        lines.append("  weights: a checkpoint written by dnnrsa-train (random without one)")
    lines.append(f"  layers ({len(spec.layers)}):")
    width = max(len(layer.name) for layer in spec.layers)
    for layer in spec.layers:
        text = f" - {layer.description}" if layer.description else ""
        lines.append(f"    {layer.name:<{width}}  {layer.part:<9}  {layer.module}{text}")
    return "\n".join(lines)


#: What ``timm/`` is shown with in :func:`list_networks`.
_TIMM_EXAMPLE = "resnet50"


def list_networks() -> str:
    """Every registered network with its layers, parts, recipe and expected weight file,
    then the families that resolve more names than they list (timm), with an example."""
    from . import available_families, available_models, get_family

    blocks = [describe_network(name) for name in available_models()]
    for family_name in available_families():
        family = get_family(family_name)
        if family.members():
            continue
        head = f"{family_name}/<name>: {family.description}"
        if family_name == "timm":
            try:
                import timm
            except ImportError:
                blocks.append(f"{head}\n  needs timm: pip install 'dnnrsa[networks]'")
                continue
            head += f" ({len(timm.list_models())} architectures), e.g."
            blocks.append(head + "\n" + describe_network(f"timm/{_TIMM_EXAMPLE}"))
        else:
            blocks.append(head)
    return "\n\n".join(blocks)
