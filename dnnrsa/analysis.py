"""DNN-side analyses on layer activations and layer RDMs.

Everything here works on numpy arrays and returns figure-ready results: arrays with
the labels needed to draw them (layer names, label-set names, condition order).

- :func:`layer_rdms`: one RDM per layer from a mapping of layer activations.
- :func:`category_index` and :func:`category_index_test`: how strongly a layer's
  RDM groups the stimuli by a label (emotion, identity ...), with a label-permutation
  p-value; :func:`category_index_table` for every layer and label set at once.
- :func:`layer_similarity`: the layer-by-layer matrix of RDM correlations, within
  one network or between two; :func:`cross_regime_similarity` stacks the layers of
  several networks (one per training regime) and gives the block of every pair.
- :func:`variance_partitioning`: unique and shared variance of a target RDM
  explained by two predictor RDMs (the visual and the auditory arm).
- :func:`mds`: a low-dimensional embedding of an RDM for plotting.
- :func:`dnn_analysis_tables`: the category index, layer similarity and variance
  partitioning tables of one network's model bank, with the label sets
  (:func:`condition_label_sets`) and arm layers (:func:`arm_layers`) it uses.

The module holds the layer RDMs and the tables of one network, and re-exports the rooms
of the analyses, one job each: :mod:`dnnrsa._categoryindex`,
:mod:`dnnrsa._layersimilarity` (within and across networks), :mod:`dnnrsa._varpart`
(with :func:`arm_layers`) and :mod:`dnnrsa._mds`, over the input checks of
:mod:`dnnrsa._analysisinputs`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# Every name the module held before it was split stays importable from it: the public
# ones (__all__) and the rooms' private ones (marked F401).
from ._analysisinputs import (
    _as_rdm_vector,  # noqa: F401
    _check_labels,  # noqa: F401
    _check_random_state,  # noqa: F401
)
from ._categoryindex import (
    CategoryIndexTable,
    _category_index_from_masks,  # noqa: F401
    category_index,
    category_index_table,
    category_index_test,
)
from ._layersimilarity import CrossRegimeSimilarity, cross_regime_similarity, layer_similarity
from ._mds import (
    MDSResult,
    _pairwise_distances,  # noqa: F401
    mds,
)
from ._varpart import (
    _r_squared,  # noqa: F401
    arm_layers,
    variance_partitioning,
)
from .rdm import compute_rdm

logger = logging.getLogger(__name__)

__all__ = [
    "CategoryIndexTable",
    "CrossRegimeSimilarity",
    "MDSResult",
    "arm_layers",
    "category_index",
    "category_index_table",
    "category_index_test",
    "condition_label_sets",
    "cross_regime_similarity",
    "dnn_analysis_tables",
    "layer_rdms",
    "layer_similarity",
    "mds",
    "variance_partitioning",
]


# ---------------------------------------------------------------------------
# layer RDMs
# ---------------------------------------------------------------------------


def layer_rdms(
    activations: Mapping[str, Any],
    metric: str = "correlation",
    *,
    layers: Sequence[str] | None = None,
    **rdm_kwargs: Any,
) -> tuple[list[str], np.ndarray]:
    """Compute one RDM per layer.

    Parameters
    ----------
    activations : mapping of str to ndarray of shape (n_stimuli, ...)
        Activations of each layer, one row per stimulus (in the same order for all
        layers). Feature dimensions after the first are flattened.
    metric : str, default="correlation"
        Dissimilarity, one of :data:`dnnrsa.rdm.METRICS`.
    layers : sequence of str, optional
        Subset and order of the layers to use; default all, in mapping order.
    **rdm_kwargs
        Passed to :func:`dnnrsa.rdm.compute_rdm` (``conditions``, ``runs``, ``noise``).

    Returns
    -------
    names : list of str
        Layer names, in the order of the rows of ``rdms``.
    rdms : ndarray of shape (n_layers, n_pairs)
        Condensed RDMs (upper triangle, row-major).
    """
    if not isinstance(activations, Mapping) or len(activations) == 0:
        raise ValueError("activations must be a non-empty mapping of layer name to array")
    names = list(activations) if layers is None else list(layers)
    unknown = [name for name in names if name not in activations]
    if unknown:
        raise ValueError(f"layers {unknown!r} not in activations; valid: {list(activations)!r}")
    n_stimuli = None
    rdms = []
    for name in names:
        arr = np.asarray(activations[name])
        if arr.ndim < 2:
            raise ValueError(
                f"activations[{name!r}] must have shape (n_stimuli, ...); got {arr.shape}"
            )
        if n_stimuli is None:
            n_stimuli = arr.shape[0]
        elif arr.shape[0] != n_stimuli:
            raise ValueError(
                f"activations[{name!r}] has {arr.shape[0]} stimuli; the first layer has {n_stimuli}"
            )
        patterns = arr.reshape(arr.shape[0], -1).astype(np.float64, copy=False)
        rdms.append(np.asarray(compute_rdm(patterns, metric, **rdm_kwargs), dtype=np.float64))
        logger.debug("layer %s: %d features", name, patterns.shape[1])
    return names, np.stack(rdms)


# ---------------------------------------------------------------------------
# the DNN analysis tables of one network
# ---------------------------------------------------------------------------

_NOT_LABELS = ("stim_file", "trial_type")


def condition_label_sets(
    stimulus_table: Any, conditions: Sequence[str], label_columns: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """The labellings of the conditions that a category index can test.

    Parameters
    ----------
    stimulus_table : pandas.DataFrame
        One row per stimulus with a ``condition`` column and label columns; the first
        row of each condition gives its labels.
    conditions : sequence of str
        Condition order of the RDMs.
    label_columns : sequence of str, optional
        Columns to use; default every column except ``stim_file``, ``trial_type``
        and ``condition``.

    Returns
    -------
    dict of str to ndarray of shape (n_conditions,)
        The chosen columns, in the order of ``conditions``, that group the
        conditions: with at least two values and fewer values than conditions.
    """
    conditions = [str(c) for c in conditions]
    by_cond = stimulus_table.drop_duplicates("condition").set_index("condition")
    missing = [c for c in conditions if c not in by_cond.index]
    if missing:
        raise ValueError(f"the stimulus table has no labels for conditions {missing[:5]}")
    by_cond = by_cond.loc[conditions]
    columns = list(label_columns or [c for c in by_cond.columns if c not in _NOT_LABELS])
    unknown = [c for c in columns if c not in by_cond.columns]
    if unknown:
        raise ValueError(f"label columns {unknown} not in the stimulus table")
    return {c: by_cond[c].to_numpy() for c in columns if 1 < by_cond[c].nunique() < len(conditions)}


def dnn_analysis_tables(
    bank: Any,
    stimulus_table: Any,
    *,
    label_columns: Sequence[str] | None = None,
    n_permutations: int = 1000,
    random_state: Any = 0,
) -> dict[str, Any]:
    """Category index, layer similarity and variance partitioning of one network.

    Parameters
    ----------
    bank : dnnrsa.modelbank.ModelBank
        Layer RDMs of one network (with layer names, labels and parts).
    stimulus_table : pandas.DataFrame
        A ``condition`` column and label columns (:func:`condition_label_sets`).
    label_columns : sequence of str, optional
        Label sets to test (default: every label column that groups the conditions).
    n_permutations : int
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    dict of str to pandas.DataFrame
        ``category_index`` (absent when no label column groups the conditions; columns ``layer`` (label), ``part``, ``label_set``,
        ``index``, ``p_value``; :func:`category_index_table`), ``layer_similarity``
        (layer by layer, indexed by layer label; :func:`layer_similarity`) and, for a
        network with visual, auditory and cross-modal parts, ``varpart`` (one row per
        cross-modal layer explained by the last layers of the two arms;
        :func:`variance_partitioning`).
    """
    import pandas as pd

    names, labels, parts = list(bank.layer_names), list(bank.layer_labels), list(bank.parts)
    tables = {
        "layer_similarity": pd.DataFrame(
            layer_similarity(bank.rdms), index=labels, columns=labels
        ).rename_axis("layer"),
    }
    label_sets = condition_label_sets(stimulus_table, bank.conditions, label_columns)
    if label_sets:
        ci = category_index_table(
            bank.rdms,
            label_sets,
            layer_names=names,
            n_permutations=n_permutations,
            random_state=random_state,
        ).to_frame()
        ci.insert(1, "part", ci["layer"].map(dict(zip(names, parts, strict=True))))
        ci["layer"] = ci["layer"].map(dict(zip(names, labels, strict=True)))
        tables["category_index"] = ci
    else:
        # a category design (one stimulus per trial, conditions from trial_type) has no
        # coarser labelling of its conditions: there is nothing for a category index to test
        logger.info(
            "no label column groups the %d conditions: the category index is skipped",
            len(bank.conditions),
        )
    arms = arm_layers(parts)
    if arms is not None:
        vis, aud, cross = arms
        rows = []
        for i in cross:
            res = variance_partitioning(bank.rdms[i], bank.rdms[vis], bank.rdms[aud])
            rows.append(
                {
                    "layer": labels[i],
                    **{k: res[k] for k in ("unique_visual", "unique_auditory", "shared", "total")},
                }
            )
        tables["varpart"] = pd.DataFrame(rows)
    return tables
