"""The model bank: a set of model RDMs that share one condition order.

A :class:`ModelBank` carries the RDMs that a searchlight compares with the brain (the
layer RDMs of one or more networks, and models of the user's own), with what names
them in file names (model and layer labels), the original layer names, the part of
the network each layer belongs to, the metric of each RDM and the condition order.
It is stored as an ``.npz`` file (:meth:`ModelBank.save`, :meth:`ModelBank.load`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ._io import atomic_save_npz
from .bidsnames import model_stem, to_label
from .rdm import squareform_to_vector, vector_to_squareform

__all__ = [
    "ModelBank",
    "layer_bank",
    "merge_banks",
    "reorder_rdm",
    "user_model_bank",
]

_LISTS = ("model_labels", "layer_labels", "layer_names", "parts", "conditions", "metrics")


@dataclasses.dataclass(frozen=True, eq=False)
class ModelBank:
    """Model RDMs sharing one condition order.

    Attributes
    ----------
    rdms : ndarray of shape (n_models, n_pairs)
        Condensed RDMs (upper triangle, row-major) in the order of ``conditions``.
    model_labels, layer_labels, layer_names, parts, metrics : list of str, length n_models
        Entity labels for file names (``layer_labels`` empty for a model without
        layers), the original layer names, the part of the network (``visual``,
        ``auditory``, ``crossmodal``, or ``model`` for a user's model) and the
        dissimilarity metric of each RDM.
    conditions : list of str
        Condition order of every RDM.
    """

    rdms: np.ndarray
    model_labels: list[str]
    layer_labels: list[str]
    layer_names: list[str]
    parts: list[str]
    conditions: list[str]
    metrics: list[str]

    def __post_init__(self):
        rdms = np.asarray(self.rdms, dtype=np.float64)
        if rdms.ndim != 2:
            raise ValueError(f"rdms must have shape (n_models, n_pairs); got {rdms.shape}")
        object.__setattr__(self, "rdms", rdms)
        n = rdms.shape[0]
        for name in _LISTS:
            values = [str(v) for v in getattr(self, name)]
            object.__setattr__(self, name, values)
            if name != "conditions" and len(values) != n:
                raise ValueError(f"{name} must have {n} entries; got {len(values)}")
        n_cond = len(self.conditions)
        if rdms.shape[1] != n_cond * (n_cond - 1) // 2:
            raise ValueError(
                f"rdms have {rdms.shape[1]} pairs; {n_cond} conditions make "
                f"{n_cond * (n_cond - 1) // 2}"
            )

    @property
    def n_models(self) -> int:
        return int(self.rdms.shape[0])

    def save(self, path: str | os.PathLike) -> None:
        """Write the bank as ``.npz`` (atomically)."""
        atomic_save_npz(
            path,
            rdms=self.rdms,
            **{name: np.array(getattr(self, name), dtype=str) for name in _LISTS},
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> ModelBank:
        """Read a bank written by :meth:`save`."""
        with np.load(path) as data:
            lists = {key: [str(v) for v in data[key]] for key in _LISTS}
            rdms = np.asarray(data["rdms"])
        return cls(rdms=rdms, **lists)

    def entity_stem(self, i: int) -> str:
        """``model-<m>[_layer-<l>]`` of model ``i``."""
        return model_stem(self.model_labels[i], self.layer_labels[i] or None)

    def check_conditions(self, conditions: Sequence[str]) -> None:
        """Raise ValueError unless ``conditions`` (in any order, with repeats) are the bank's."""
        present = sorted({str(c) for c in conditions})
        if present != sorted(self.conditions):
            raise ValueError(
                f"the patterns' conditions ({len(present)}) differ from the model RDMs' "
                f"({len(self.conditions)}): {sorted(set(present) ^ set(self.conditions))[:5]}"
            )


def reorder_rdm(
    rdm: Any, labels: Sequence[str], conditions: Sequence[str], *, name: str = "rdm"
) -> np.ndarray:
    """A condensed RDM over ``labels`` reordered (and subset) to ``conditions``.

    Raises ValueError naming the missing conditions when ``labels`` lacks any.
    """
    labels = [str(v) for v in labels]
    conditions = [str(c) for c in conditions]
    missing = [c for c in conditions if c not in labels]
    if missing:
        raise ValueError(
            f"model RDM {name} lacks condition(s) {missing[:10]}; its labels are {labels[:10]}..."
        )
    order = [labels.index(c) for c in conditions]
    square = vector_to_squareform(np.asarray(rdm, dtype=np.float64))[np.ix_(order, order)]
    return squareform_to_vector(square, check_symmetric=False)


def user_model_bank(
    names: Sequence[str],
    rdms: Sequence[Any],
    labels: Sequence[Sequence[str]],
    conditions: Sequence[str],
    *,
    sources: Sequence[str] | None = None,
) -> ModelBank:
    """A bank of a user's model RDMs, each reordered to ``conditions``.

    Parameters
    ----------
    names : sequence of str
        Name of each model (its label in file names keeps the alphanumeric characters).
    rdms : sequence of condensed RDMs
    labels : sequence of sequences of str
        Condition labels of each RDM, in its own order.
    conditions : sequence of str
        Condition order of the analysis.
    sources : sequence of str, optional
        Where each RDM came from (named in errors).
    """
    names = [str(n) for n in names]
    if not (len(names) == len(rdms) == len(labels)):
        raise ValueError(
            f"names, rdms and labels must have one entry per model; got {len(names)}, "
            f"{len(rdms)} and {len(labels)}"
        )
    sources = list(sources) if sources is not None else [None] * len(names)
    rows = [
        reorder_rdm(rdm, lab, conditions, name=f"{n!r}" + (f" ({src})" if src else ""))
        for n, rdm, lab, src in zip(names, rdms, labels, sources, strict=True)
    ]
    return ModelBank(
        rdms=np.stack(rows),
        model_labels=[to_label(n) for n in names],
        layer_labels=[""] * len(rows),
        layer_names=names,
        parts=["model"] * len(rows),
        conditions=list(conditions),
        metrics=["user"] * len(rows),
    )


def layer_bank(
    activations: Mapping[str, Any],
    *,
    parts: Sequence[str],
    model_label: str,
    conditions: Sequence[str],
    metric: str = "correlation",
) -> ModelBank:
    """A bank of one RDM per layer of a network (:func:`dnnrsa.analysis.layer_rdms`).

    Parameters
    ----------
    activations : mapping of str to ndarray of shape (n_stimuli, ...)
        Activations of each layer, in layer order.
    parts : sequence of str
        Part of the network of each layer, in the order of ``activations``.
    model_label : str
        Name of the network (its alphanumeric characters label it in file names).
    conditions : sequence of str, length n_stimuli
        Condition of each stimulus; stimuli of one condition are averaged, and the
        RDMs are over the sorted unique conditions.
    metric : str
    """
    from .analysis import layer_rdms

    conditions = np.asarray(conditions)
    n_stim = {np.asarray(a).shape[0] for a in activations.values()}
    if n_stim != {len(conditions)}:
        raise ValueError(
            f"conditions must have one entry per stimulus ({sorted(n_stim)}); got {len(conditions)}"
        )
    names, rdms = layer_rdms(activations, metric, conditions=conditions)
    return ModelBank(
        rdms=rdms,
        model_labels=[to_label(model_label)] * len(names),
        layer_labels=[to_label(n) for n in names],
        layer_names=names,
        parts=list(parts),
        conditions=[str(c) for c in np.unique(conditions)],
        metrics=[metric] * len(names),
    )


def budgeted_layer_bank(
    layers: Iterable[tuple[str, Any]],
    *,
    parts: Sequence[str],
    model_label: str,
    conditions: Sequence[str],
    metric: str = "correlation",
    feature_budget: int = 0,
    seed: int = 0,
) -> tuple[ModelBank, dict[str, dict]]:
    """:func:`layer_bank` of layers read one at a time, each larger than
    ``feature_budget`` features per stimulus reduced first
    (:func:`dnnrsa.featurebudget.reduce_layer`, seeded by ``seed`` and its name).

    Returns the bank and, for each reduced layer, the record of its reduction.
    """
    from .featurebudget import reduce_layer

    activations, reductions = {}, {}
    for name, values in layers:
        activations[name], record = reduce_layer(
            values, feature_budget, seed=seed, layer=name, metric=metric
        )
        if record is not None:
            reductions[name] = record
    bank = layer_bank(
        activations, parts=parts, model_label=model_label, conditions=conditions, metric=metric
    )
    return bank, reductions


def merge_banks(banks: Sequence[ModelBank], *, sources: Sequence[str] | None = None) -> ModelBank:
    """Concatenate banks that share one condition order.

    ``sources`` (one per bank) name the banks in the error raised when the orders differ.
    """
    banks = list(banks)
    if not banks:
        raise ValueError("merge_banks needs at least one bank")
    sources = list(sources) if sources is not None else [f"bank {i}" for i in range(len(banks))]
    for src, bank in zip(sources, banks, strict=True):
        if bank.conditions != banks[0].conditions:
            raise ValueError(f"{src}: condition order differs from {sources[0]}")
    return ModelBank(
        rdms=np.concatenate([b.rdms for b in banks]),
        conditions=banks[0].conditions,
        **{
            key: [v for b in banks for v in getattr(b, key)]
            for key in _LISTS
            if key != "conditions"
        },
    )
