"""Checks of the DNN-side analyses' inputs: RDMs as condensed vectors, seeds, labels
(used by :mod:`dnnrsa.analysis`'s rooms and :mod:`dnnrsa._findingtests`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .rdm import n_conditions_from_pairs


def _as_rdm_vector(rdm: Any, name: str = "rdm") -> np.ndarray:
    """Return an RDM as a float64 condensed vector; accept a square matrix too."""
    arr = np.asarray(rdm, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[0] == arr.shape[1] and arr.shape[0] > 1:
        n = arr.shape[0]
        iu = np.triu_indices(n, 1)
        return arr[iu]
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be a condensed vector (n_pairs,) or a square matrix; "
            f"got an array of shape {arr.shape}"
        )
    n_conditions_from_pairs(arr.shape[0])  # raises on a length that is not n(n-1)/2
    return arr


def _check_random_state(random_state: Any) -> np.random.Generator:
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, int | np.integer):
        return np.random.default_rng(random_state)
    raise ValueError(
        f"random_state must be None, an int or a numpy Generator; got {random_state!r}"
    )


def _check_labels(labels: Any, n_conditions: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != n_conditions:
        raise ValueError(
            f"labels must have one entry per condition ({n_conditions}); got shape {labels.shape}"
        )
    _, codes = np.unique(labels, return_inverse=True)
    n_categories = codes.max() + 1 if codes.size else 0
    if n_categories < 2:
        raise ValueError(f"labels must contain at least two categories; got {np.unique(labels)!r}")
    if n_categories == n_conditions:
        raise ValueError("labels must repeat at least once: every condition has its own label")
    return codes.ravel()
