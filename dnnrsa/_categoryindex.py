"""The category index of layer RDMs: how strongly an RDM groups the stimuli by a label,
with a label-permutation p value, for one RDM or every layer and label set
(re-exported by :mod:`dnnrsa.analysis`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._analysisinputs import _as_rdm_vector, _check_labels, _check_random_state
from .rdm import n_conditions_from_pairs


def _category_index_from_masks(
    rdm: np.ndarray, same: np.ndarray, finite: np.ndarray, spread: float
) -> np.ndarray:
    """Category index for a batch of same-category masks.

    ``same`` has shape (n_masks, n_pairs) (bool); ``rdm`` has NaN replaced by 0 and
    ``finite`` marks the usable pairs.
    """
    same_f = same.astype(np.float64)
    diff_f = 1.0 - same_f
    w_fin = finite.astype(np.float64)
    n_within = same_f @ w_fin
    n_between = diff_f @ w_fin
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_within = (same_f @ rdm) / n_within
        mean_between = (diff_f @ rdm) / n_between
        return (mean_between - mean_within) / spread


def category_index(rdm: Any, labels: Any) -> float:
    """Category index of an RDM for one labelling of its conditions.

    .. math::

        CI = \\frac{\\bar d_{between} - \\bar d_{within}}{\\max d - \\min d}

    where :math:`\\bar d_{within}` is the mean dissimilarity over pairs of conditions
    with the same label, :math:`\\bar d_{between}` over pairs with different labels,
    and the denominator is the range of all dissimilarities in the RDM.

    The index lies in [-1, 1], does not change when the RDM is shifted or scaled
    (so correlation, euclidean and crossnobis RDMs are comparable), is exactly 1 for
    a perfectly clustered RDM (all within-category pairs at the minimum, all
    between-category pairs at the maximum) and is close to 0 when the
    dissimilarities do not depend on the labels. NaN entries are ignored. A
    constant RDM has no range: the index is NaN.

    Parameters
    ----------
    rdm : ndarray of shape (n_pairs,) or (n_conditions, n_conditions)
        Condensed (upper triangle, row-major) or square RDM.
    labels : array-like of shape (n_conditions,)
        Category of each condition (at least two categories, at least one repeated).

    Returns
    -------
    index : float
    """
    vec = _as_rdm_vector(rdm)
    n = n_conditions_from_pairs(vec.shape[0])
    codes = _check_labels(labels, n)
    iu, ju = np.triu_indices(n, 1)
    finite = np.isfinite(vec)
    if not finite.any():
        return float("nan")
    spread = float(np.max(vec[finite]) - np.min(vec[finite]))
    if spread == 0:
        return float("nan")
    same = (codes[iu] == codes[ju])[None, :]
    return float(_category_index_from_masks(np.where(finite, vec, 0.0), same, finite, spread)[0])


def category_index_test(
    rdm: Any,
    labels: Any,
    n_permutations: int = 1000,
    random_state: Any = None,
    *,
    chunk_size: int = 1000,
) -> tuple[float, float, np.ndarray]:
    """Category index with a label-permutation p-value.

    The labels are shuffled across conditions (the number of conditions per
    category is kept), the index is recomputed for every permutation, and the
    one-sided p-value is :math:`(1 + \\#\\{CI_{null} \\ge CI\\}) / (1 + n_{perm})`.
    All permutations are evaluated at once as matrix products, ``chunk_size``
    permutations at a time.

    Parameters
    ----------
    rdm : ndarray of shape (n_pairs,) or (n_conditions, n_conditions)
        Condensed or square RDM.
    labels : array-like of shape (n_conditions,)
        Category of each condition.
    n_permutations : int, default=1000
        Number of label permutations (>= 1).
    random_state : None, int or numpy.random.Generator
        Seed of the permutations.
    chunk_size : int, default=1000
        Permutations evaluated per matrix product (bounds the memory).

    Returns
    -------
    index : float
        Category index of the observed labels (see :func:`category_index`).
    p_value : float
        One-sided permutation p-value.
    null : ndarray of shape (n_permutations,)
        Category index for each permutation.
    """
    if int(n_permutations) < 1:
        raise ValueError(f"n_permutations must be >= 1; got {n_permutations!r}")
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size!r}")
    rng = _check_random_state(random_state)
    vec = _as_rdm_vector(rdm)
    n = n_conditions_from_pairs(vec.shape[0])
    codes = _check_labels(labels, n)
    observed = category_index(vec, codes)
    if not np.isfinite(observed):
        return observed, float("nan"), np.full(int(n_permutations), np.nan)
    finite = np.isfinite(vec)
    spread = float(np.max(vec[finite]) - np.min(vec[finite]))
    clean = np.where(finite, vec, 0.0)
    iu, ju = np.triu_indices(n, 1)
    null = np.empty(int(n_permutations), dtype=np.float64)
    for start in range(0, int(n_permutations), int(chunk_size)):
        stop = min(start + int(chunk_size), int(n_permutations))
        perm = rng.permuted(np.broadcast_to(codes, (stop - start, n)), axis=1)
        same = perm[:, iu] == perm[:, ju]
        null[start:stop] = _category_index_from_masks(clean, same, finite, spread)
    # A small tolerance keeps permutations that equal the observed labelling counted.
    p_value = (1.0 + np.count_nonzero(null >= observed - 1e-12)) / (1.0 + null.size)
    return observed, float(p_value), null


@dataclass
class CategoryIndexTable:
    """Category index for every layer and label set.

    Attributes
    ----------
    layers : list of str
        Layer names (rows).
    label_sets : list of str
        Label-set names (columns), e.g. ``["emotion", "identity"]``.
    index : ndarray of shape (n_layers, n_label_sets)
        Category index.
    p_values : ndarray of shape (n_layers, n_label_sets)
        Permutation p-values (NaN when ``n_permutations=0``).
    n_permutations : int
        Number of permutations behind each p-value.
    """

    layers: list[str]
    label_sets: list[str]
    index: np.ndarray
    p_values: np.ndarray
    n_permutations: int = 0
    null: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def to_frame(self):
        """Return a long table (pandas DataFrame): layer, label_set, index, p_value."""
        import pandas as pd

        rows = [
            {
                "layer": layer,
                "label_set": label_set,
                "index": self.index[i, j],
                "p_value": self.p_values[i, j],
            }
            for i, layer in enumerate(self.layers)
            for j, label_set in enumerate(self.label_sets)
        ]
        return pd.DataFrame(rows, columns=["layer", "label_set", "index", "p_value"])


def category_index_table(
    rdms: Any,
    label_sets: Mapping[str, Any],
    *,
    layer_names: Sequence[str] | None = None,
    n_permutations: int = 1000,
    random_state: Any = None,
    keep_null: bool = False,
) -> CategoryIndexTable:
    """Category index and permutation p-value for every layer and label set.

    Parameters
    ----------
    rdms : ndarray of shape (n_layers, n_pairs)
        Condensed layer RDMs (e.g. from :func:`dnnrsa.analysis.layer_rdms`).
    label_sets : mapping of str to array-like of shape (n_conditions,)
        Labellings of the conditions, e.g. ``{"emotion": [...], "identity": [...]}``.
    layer_names : sequence of str, optional
        Names of the rows of ``rdms``; default ``"layer0"``, ``"layer1"``, ...
    n_permutations : int, default=1000
        Permutations per test; 0 skips the test (p-values are NaN).
    random_state : None, int or numpy.random.Generator
        Seed; one generator drives all tests in order (layers outer, label sets inner).
    keep_null : bool, default=False
        Keep the null distributions in ``CategoryIndexTable.null`` keyed ``"layer/label_set"``.

    Returns
    -------
    CategoryIndexTable
    """
    rdms = np.asarray(rdms, dtype=np.float64)
    if rdms.ndim == 1:
        rdms = rdms[None, :]
    if rdms.ndim != 2:
        raise ValueError(f"rdms must have shape (n_layers, n_pairs); got {rdms.shape}")
    if layer_names is None:
        layer_names = [f"layer{i}" for i in range(rdms.shape[0])]
    layer_names = list(layer_names)
    if len(layer_names) != rdms.shape[0]:
        raise ValueError(
            f"layer_names has {len(layer_names)} entries; rdms has {rdms.shape[0]} rows"
        )
    if not isinstance(label_sets, Mapping) or not label_sets:
        raise ValueError("label_sets must be a non-empty mapping of name to labels")
    if int(n_permutations) < 0:
        raise ValueError(f"n_permutations must be >= 0; got {n_permutations!r}")
    rng = _check_random_state(random_state)
    names = list(label_sets)
    index = np.full((len(layer_names), len(names)), np.nan)
    p_values = np.full_like(index, np.nan)
    nulls: dict[str, np.ndarray] = {}
    for i, layer in enumerate(layer_names):
        for j, set_name in enumerate(names):
            if n_permutations:
                ci, p, null = category_index_test(
                    rdms[i], label_sets[set_name], n_permutations, rng
                )
                p_values[i, j] = p
                if keep_null:
                    nulls[f"{layer}/{set_name}"] = null
            else:
                ci = category_index(rdms[i], label_sets[set_name])
            index[i, j] = ci
    return CategoryIndexTable(layer_names, names, index, p_values, int(n_permutations), nulls)
