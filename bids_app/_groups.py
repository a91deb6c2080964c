"""What the group level's discovery (:mod:`.group`) hands to its workflows
(:mod:`.workflows`): the subject maps of one model, and the comparator of the ROI
evaluation. Both sides import it; it imports neither."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from dnnrsa.bidsnames import build_stem

from .config import RunConfig

logger = logging.getLogger("dnnrsa.group")


@dataclass(frozen=True)
class MapGroup:
    """The subject maps of one model (layer) for one task and space."""

    task: str
    space: str
    model: str
    layer: str | None
    stat: str
    files: tuple[Path, ...]
    subjects: tuple[str, ...]
    part: str
    layer_index: int
    layer_name: str
    #: a standard network's sidecar fields (Network, Weights, Untrained), else empty
    network: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def stem(self) -> str:
        return build_stem(
            {"task": self.task, "space": self.space, "model": self.model, "layer": self.layer}
        )


@dataclass(frozen=True)
class EncodingMapGroup:
    """The subject encoding maps of one quantity (``desc`` and ``stat`` of the
    participant's file, with its ``band`` or ``layer``) of one network, task and space."""

    task: str
    space: str
    model: str
    band: str | None
    layer: str | None
    desc: str
    stat: str
    files: tuple[Path, ...]
    subjects: tuple[str, ...]
    #: the first subject's sidecar (bands, layer name, description, settings)
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def entities(self) -> dict[str, str | None]:
        """The entities of its group outputs: the participant's ``desc`` with its
        ``stat`` appended (``desc-encodinguniquer2``); each statistic adds its ``stat``."""
        return {
            "task": self.task,
            "space": self.space,
            "model": self.model,
            "band": self.band,
            "layer": self.layer,
            "desc": f"{self.desc}{self.stat}",
        }

    @property
    def stem(self) -> str:
        return build_stem(self.entities)


def roi_comparator(config: RunConfig) -> str:
    """The comparator of the ROI evaluation: ``--comparator`` where the inference supports
    it, Spearman otherwise."""
    from dnnrsa.inference import INFERENCE_COMPARATORS

    if config.comparator in INFERENCE_COMPARATORS:
        return config.comparator
    logger.warning(
        "the ROI evaluation does not support --comparator %s; it uses spearman",
        config.comparator,
    )
    return "spearman"
