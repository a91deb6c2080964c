"""The cross-channel convolutional network for audio-visual emotion recognition.

A PyTorch version of the cross-channel design (Barros & Wermter): a visual arm on a
grayscale face image, an auditory arm on a log-mel spectrogram, each ending in a
shunting-inhibition stage, and a cross-modal part in which a dense projection of
each arm is reshaped to a 32x32 map, the two maps are stacked as two channels and
fused by a convolution, pooling, a dense layer and the output layer.

Shunting inhibition: an excitatory convolution ``E`` and a parallel inhibitory
convolution ``I`` (both rectified) see the same input; the stage outputs
``E / (d + I)`` with a learned positive decay ``d`` per channel.

The network has exactly 29 named layers (15 visual, 7 auditory, 7 cross-modal),
listed with their shapes in ``docs/crosschannel.md`` and in :data:`LAYERS`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..stimuli import InputRecipe
from . import LayerSpec, ModelSpec

__all__ = [
    "LAYERS",
    "RECIPE",
    "REGIME_CLASSES",
    "CrossChannelCNN",
    "Shunting",
    "StackMaps",
    "registration",
]

#: Output sizes of the study's four training regimes (identity: number of actors).
REGIME_CLASSES = {"emotion": 6, "identity": 6, "gender": 2, "sentence": 2}

#: Default input recipe: one 64x64 grayscale face (middle frame) and 3 s of 16 kHz
#: audio as an 80-band log-mel spectrogram (25 ms windows, 10 ms hop: 301 frames).
RECIPE = InputRecipe()

_VISUAL_WIDTHS = (16, 32, 64, 64)
_AUDITORY_WIDTHS = (16, 32)
_PROJECTION_SIDE = 32
_FUSION_CHANNELS = 32
_DENSE_UNITS = 256


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 convolution (same padding), batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=False),
    )


class Shunting(nn.Module):
    """Shunting inhibition ``E / (d + I)`` with a learned positive decay per channel.

    Parameters
    ----------
    channels : int
    init_decay : float
        Initial decay ``d``.
    """

    def __init__(self, channels: int, init_decay: float = 1.0):
        super().__init__()
        raw = torch.log(torch.expm1(torch.tensor(float(init_decay))))
        self.raw_decay = nn.Parameter(raw.repeat(channels))

    @property
    def decay(self) -> torch.Tensor:
        return F.softplus(self.raw_decay) + 1e-3

    def forward(self, excitation: torch.Tensor, inhibition: torch.Tensor) -> torch.Tensor:
        return excitation / (self.decay.view(1, -1, 1, 1) + inhibition)


class StackMaps(nn.Module):
    """Reshape two projections of ``side*side`` units to maps, stacked as channels."""

    def __init__(self, side: int):
        super().__init__()
        self.side = side

    def forward(self, visual: torch.Tensor, auditory: torch.Tensor) -> torch.Tensor:
        n = visual.shape[0]
        maps = torch.stack([visual, auditory], dim=1)
        return maps.reshape(n, 2, self.side, self.side)


class VisualArm(nn.Module):
    def __init__(self):
        super().__init__()
        w1, w2, w3, w4 = _VISUAL_WIDTHS
        self.conv1_1 = _conv_block(1, w1)
        self.conv1_2 = _conv_block(w1, w1)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2_1 = _conv_block(w1, w2)
        self.conv2_2 = _conv_block(w2, w2)
        self.pool2 = nn.MaxPool2d(2)
        self.conv3_1 = _conv_block(w2, w3)
        self.conv3_2 = _conv_block(w3, w3)
        self.conv3_3 = _conv_block(w3, w3)
        self.pool3 = nn.MaxPool2d(2)
        self.conv4_1 = _conv_block(w3, w4)
        self.excitatory = _conv_block(w4, w4)
        self.inhibitory = _conv_block(w4, w4)
        self.shunting = Shunting(w4)
        self.pool4 = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.conv1_2(self.conv1_1(x)))
        x = self.pool2(self.conv2_2(self.conv2_1(x)))
        x = self.pool3(self.conv3_3(self.conv3_2(self.conv3_1(x))))
        x = self.conv4_1(x)
        x = self.shunting(self.excitatory(x), self.inhibitory(x))
        return self.pool4(x)


class AuditoryArm(nn.Module):
    def __init__(self):
        super().__init__()
        w1, w2 = _AUDITORY_WIDTHS
        self.conv1 = _conv_block(1, w1)
        self.pool1 = nn.MaxPool2d(4)
        self.conv2 = _conv_block(w1, w2)
        self.excitatory = _conv_block(w2, w2)
        self.inhibitory = _conv_block(w2, w2)
        self.shunting = Shunting(w2)
        self.pool2 = nn.MaxPool2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(self.pool1(self.conv1(x)))
        x = self.shunting(self.excitatory(x), self.inhibitory(x))
        return self.pool2(x)


class CrossModal(nn.Module):
    def __init__(self, n_visual: int, n_auditory: int, n_outputs: int, dropout: float):
        super().__init__()
        units = _PROJECTION_SIDE * _PROJECTION_SIDE
        self.visual_dense = nn.Sequential(nn.Flatten(), nn.Linear(n_visual, units), nn.ReLU())
        self.auditory_dense = nn.Sequential(nn.Flatten(), nn.Linear(n_auditory, units), nn.ReLU())
        self.stack = StackMaps(_PROJECTION_SIDE)
        self.conv = _conv_block(2, _FUSION_CHANNELS)
        self.pool = nn.MaxPool2d(2)
        n_fused = _FUSION_CHANNELS * (_PROJECTION_SIDE // 2) ** 2
        self.dense = nn.Sequential(
            nn.Flatten(), nn.Linear(n_fused, _DENSE_UNITS), nn.ReLU(), nn.Dropout(dropout)
        )
        self.output = nn.Linear(_DENSE_UNITS, n_outputs)

    def forward(self, visual: torch.Tensor, auditory: torch.Tensor) -> torch.Tensor:
        x = self.stack(self.visual_dense(visual), self.auditory_dense(auditory))
        x = self.pool(self.conv(x))
        return self.output(self.dense(x))


class CrossChannelCNN(nn.Module):
    """The cross-channel CNN.

    Parameters
    ----------
    n_outputs : int
        Number of classes (emotion 6, identity = number of actors, gender 2,
        sentence 2; see :data:`REGIME_CLASSES`).
    recipe : InputRecipe, optional
        Input recipe; sets the input sizes (default :data:`RECIPE`).
    dropout : float
        Dropout after the cross-modal dense layer (training only).

    Notes
    -----
    ``forward(visual, auditory)`` takes ``visual`` of shape
    ``(batch, 1, image_size, image_size)`` and ``auditory`` of shape
    ``(batch, 1, n_mels, n_time)`` and returns logits ``(batch, n_outputs)``.
    """

    def __init__(self, n_outputs: int = 6, recipe: InputRecipe | None = None, dropout: float = 0.5):
        super().__init__()
        if int(n_outputs) < 1:
            raise ValueError(f"n_outputs must be a positive integer; got {n_outputs!r}")
        recipe = recipe or RECIPE
        self.visual = VisualArm()
        self.auditory = AuditoryArm()
        with torch.no_grad():
            n_visual = self.visual(torch.zeros(2, *recipe.visual_shape)).flatten(1).shape[1]
            n_auditory = self.auditory(torch.zeros(2, *recipe.auditory_shape)).flatten(1).shape[1]
        self.crossmodal = CrossModal(n_visual, n_auditory, int(n_outputs), dropout)

    def forward(self, visual: torch.Tensor, auditory: torch.Tensor) -> torch.Tensor:
        return self.crossmodal(self.visual(visual), self.auditory(auditory))


def _layers() -> tuple[LayerSpec, ...]:
    visual = [
        ("conv1_1", "3x3 convolution, batch norm, ReLU"),
        ("conv1_2", "3x3 convolution, batch norm, ReLU"),
        ("pool1", "2x2 max pooling"),
        ("conv2_1", "3x3 convolution, batch norm, ReLU"),
        ("conv2_2", "3x3 convolution, batch norm, ReLU"),
        ("pool2", "2x2 max pooling"),
        ("conv3_1", "3x3 convolution, batch norm, ReLU"),
        ("conv3_2", "3x3 convolution, batch norm, ReLU"),
        ("conv3_3", "3x3 convolution, batch norm, ReLU"),
        ("pool3", "2x2 max pooling"),
        ("conv4_1", "3x3 convolution, batch norm, ReLU"),
        ("excitatory", "excitatory 3x3 convolution of the shunting stage"),
        ("inhibitory", "parallel inhibitory 3x3 convolution of the shunting stage"),
        ("shunting", "shunting inhibition E / (d + I)"),
        ("pool4", "2x2 max pooling; the visual arm's output"),
    ]
    auditory = [
        ("conv1", "3x3 convolution, batch norm, ReLU (first stage)"),
        ("pool1", "4x4 max pooling"),
        ("conv2", "3x3 convolution, batch norm, ReLU (second stage)"),
        ("excitatory", "excitatory 3x3 convolution of the shunting stage"),
        ("inhibitory", "parallel inhibitory 3x3 convolution of the shunting stage"),
        ("shunting", "shunting inhibition E / (d + I)"),
        ("pool2", "4x4 max pooling; the auditory arm's output"),
    ]
    crossmodal = [
        ("visual_dense", "dense projection of the visual arm (1024 units, ReLU)"),
        ("auditory_dense", "dense projection of the auditory arm (1024 units, ReLU)"),
        ("stack", "both projections as two 32x32 channels"),
        ("conv", "3x3 fusion convolution, batch norm, ReLU"),
        ("pool", "2x2 max pooling"),
        ("dense", "dense layer (256 units, ReLU)"),
        ("output", "output layer (logits)"),
    ]
    out = []
    for part, items in (("visual", visual), ("auditory", auditory), ("crossmodal", crossmodal)):
        for name, text in items:
            out.append(LayerSpec(f"{part}_{name}", f"{part}.{name}", part, text))
    return tuple(out)


#: The 29 named layers in order.
LAYERS = _layers()


def _factory(n_outputs: int = 6) -> CrossChannelCNN:
    return CrossChannelCNN(n_outputs=n_outputs, recipe=RECIPE)


#: Registry entry (entry point ``dnnrsa.models: crosschannel``).
registration = ModelSpec(
    name="crosschannel",
    factory=_factory,
    layers=LAYERS,
    recipe=RECIPE,
    arms={"visual": "crossmodal.visual_dense", "auditory": "crossmodal.auditory_dense"},
    default_outputs=6,
    description="Cross-channel CNN: visual and auditory arms with shunting inhibition, "
    "fused by a cross-modal convolution (29 layers).",
)
