"""The model bank: a set of model RDMs sharing one condition order, stored as ``.npz``."""

from __future__ import annotations

import numpy as np

from dnnrsa._io import atomic_save_npz

_LISTS = ("model_labels", "layer_labels", "layer_names", "parts", "conditions", "metrics")


def save_bank(path, *, rdms, model_labels, layer_labels, layer_names, parts, conditions, metric):
    """Write a model bank.

    Parameters
    ----------
    rdms : ndarray of shape (n_models, n_pairs)
    model_labels, layer_labels, layer_names, parts : sequences of length n_models
        Entity labels for file names (``layer_labels`` empty for a model without
        layers), the original layer names and the part of the network.
    conditions : sequence of str
        Condition order of every RDM.
    metric : str or sequence of str
    """
    rdms = np.asarray(rdms, dtype=np.float64)
    n = rdms.shape[0]
    metrics = [metric] * n if isinstance(metric, str) else list(metric)
    for name, values in (
        ("model_labels", model_labels),
        ("layer_labels", layer_labels),
        ("layer_names", layer_names),
        ("parts", parts),
        ("metrics", metrics),
    ):
        if len(values) != n:
            raise ValueError(f"{name} must have {n} entries; got {len(values)}")
    atomic_save_npz(
        path,
        rdms=rdms,
        model_labels=np.array(model_labels, dtype=str),
        layer_labels=np.array(layer_labels, dtype=str),
        layer_names=np.array(layer_names, dtype=str),
        parts=np.array(parts, dtype=str),
        conditions=np.array(conditions, dtype=str),
        metrics=np.array(metrics, dtype=str),
    )


def load_bank(path) -> dict:
    """Read a model bank written by :func:`save_bank` (lists of str and the RDM array)."""
    with np.load(path) as data:
        bank = {key: [str(v) for v in data[key]] for key in _LISTS}
        bank["rdms"] = data["rdms"]
    return bank


def entity_stem(model_label: str, layer_label: str) -> str:
    """``model-<m>_layer-<l>`` (or ``model-<m>`` for a model without layers)."""
    return f"model-{model_label}" + (f"_layer-{layer_label}" if layer_label else "")
