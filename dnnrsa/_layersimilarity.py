"""Layer-by-layer similarity of RDMs, within one network or between two, and stacked
over several networks (one per training regime) (re-exported by :mod:`dnnrsa.analysis`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .rdm import COMPARATORS, compare_rdms


def layer_similarity(
    rdms_a: Any, rdms_b: Any | None = None, method: str = "spearman"
) -> np.ndarray:
    """Similarity of every pair of layer RDMs.

    Parameters
    ----------
    rdms_a : ndarray of shape (n_a, n_pairs)
        Layer RDMs of one network (e.g. the 29 layers under one training regime).
    rdms_b : ndarray of shape (n_b, n_pairs), optional
        Layer RDMs of a second network on the same stimuli; default ``rdms_a``
        (layer-by-layer matrix within one network).
    method : str, default="spearman"
        Comparator, one of :data:`dnnrsa.rdm.COMPARATORS`.

    Returns
    -------
    similarity : ndarray of shape (n_a, n_b)
        ``similarity[i, j]`` compares layer ``i`` of ``rdms_a`` with layer ``j`` of
        ``rdms_b``.
    """
    if method not in COMPARATORS:
        raise ValueError(f"method must be one of {sorted(COMPARATORS)}; got {method!r}")
    a = np.atleast_2d(np.asarray(rdms_a, dtype=np.float64))
    b = a if rdms_b is None else np.atleast_2d(np.asarray(rdms_b, dtype=np.float64))
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"rdms_a and rdms_b must have the same number of pairs; got {a.shape[1]} and {b.shape[1]}"
        )
    return np.asarray(compare_rdms(a, b, method=method), dtype=np.float64)


# ---------------------------------------------------------------------------
# layer similarity across regimes
# ---------------------------------------------------------------------------


@dataclass
class CrossRegimeSimilarity:
    """Layer-by-layer similarity of several networks (e.g. one per training regime).

    The networks' layers are stacked in the order of ``regimes`` (every layer of the
    first network, then every layer of the second ...), and ``matrix`` compares every
    stacked layer RDM with every other: for four networks of 29 layers, a 116 x 116
    matrix made of 4 x 4 blocks of 29 x 29.

    Attributes
    ----------
    regimes : list of str
        The networks, in stacking order.
    layers : dict of str to list of str
        Layer names of every network.
    matrix : ndarray of shape (n_total, n_total)
        ``matrix[i, j]`` compares stacked layer ``i`` with stacked layer ``j``
        (:func:`layer_similarity`); symmetric.
    row_regimes, row_layers : list of str
        The network and the layer of every row (and column) of ``matrix``.
    method : str
        The comparator.
    """

    regimes: list[str]
    layers: dict[str, list[str]]
    matrix: np.ndarray
    row_regimes: list[str]
    row_layers: list[str]
    method: str = "spearman"

    def rows(self, regime: str) -> slice:
        """The rows (and columns) of ``matrix`` that hold the layers of ``regime``."""
        if regime not in self.layers:
            raise KeyError(f"no network {regime!r}; networks: {self.regimes}")
        start = 0
        for name in self.regimes:
            if name == regime:
                return slice(start, start + len(self.layers[name]))
            start += len(self.layers[name])
        raise KeyError(regime)  # pragma: no cover - regimes and layers agree

    def block(self, regime_a: str, regime_b: str) -> np.ndarray:
        """Layers of ``regime_a`` (rows) against layers of ``regime_b`` (columns).

        ``block(a, a)`` is the within-network matrix of ``a``; ``block(b, a)`` is the
        transpose of ``block(a, b)``.
        """
        return self.matrix[self.rows(regime_a), self.rows(regime_b)]

    @property
    def blocks(self) -> dict[tuple[str, str], np.ndarray]:
        """The block of every pair of networks ``(a, b)`` with ``a`` not after ``b`` in
        ``regimes``, the within-network blocks ``(a, a)`` included."""
        return {
            (a, b): self.block(a, b) for i, a in enumerate(self.regimes) for b in self.regimes[i:]
        }

    def to_frame(self):
        """The matrix as a square pandas DataFrame indexed by (regime, layer) on both axes."""
        import pandas as pd

        index = pd.MultiIndex.from_arrays(
            [self.row_regimes, self.row_layers], names=["regime", "layer"]
        )
        return pd.DataFrame(self.matrix, index=index, columns=index.copy())

    def pairs_frame(self, *, within: bool = False):
        """A long table of the blocks: ``regime_a``, ``layer_a``, ``regime_b``, ``layer_b``,
        ``similarity``, one row per layer pair of every pair of networks (``a`` before
        ``b`` in ``regimes``); ``within=True`` adds the within-network blocks."""
        import pandas as pd

        columns = ["regime_a", "layer_a", "regime_b", "layer_b", "similarity"]
        rows = []
        for (a, b), block in self.blocks.items():
            if a == b and not within:
                continue
            for i, layer_a in enumerate(self.layers[a]):
                for j, layer_b in enumerate(self.layers[b]):
                    rows.append((a, layer_a, b, layer_b, float(block[i, j])))
        return pd.DataFrame(rows, columns=columns)


def cross_regime_similarity(
    networks: Mapping[str, Any],
    *,
    layer_names: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    conditions: Mapping[str, Sequence[str]] | None = None,
    method: str = "spearman",
) -> CrossRegimeSimilarity:
    """Similarity of every layer of every network with every layer of every other.

    Parameters
    ----------
    networks : mapping of str to array of shape (n_layers, n_pairs)
        The layer RDMs of each network (e.g. ``{"emotion": ..., "identity": ...}``),
        condensed, every network's in the same condition order; a
        :class:`dnnrsa.modelbank.ModelBank` is taken too (its ``rdms``, with its
        ``layer_labels`` and ``conditions`` as defaults of the next two arguments).
    layer_names : sequence of str or mapping of str to sequence of str, optional
        Layer names, the same for every network or per network (default: the bank's
        layer labels, else ``layer01``, ``layer02`` ...).
    conditions : mapping of str to sequence of str, optional
        The condition order of each network's RDMs; when given (or taken from banks),
        every network must have the same order.
    method : str, default="spearman"
        Comparator, as for :func:`layer_similarity`.

    Returns
    -------
    CrossRegimeSimilarity
        The stacked matrix with the network and layer of every row, and its blocks.
    """
    if not networks:
        raise ValueError("give the layer RDMs of at least one network")
    regimes = [str(r) for r in networks]
    rdms, names, orders = {}, {}, {}
    for key, regime in zip(networks, regimes, strict=True):
        value = networks[key]
        if hasattr(value, "rdms"):
            if getattr(value, "layer_labels", None) and any(value.layer_labels):
                names[regime] = list(value.layer_labels)
            if getattr(value, "conditions", None):
                orders[regime] = [str(c) for c in value.conditions]
            value = value.rdms
        array = np.atleast_2d(np.asarray(value, dtype=np.float64))
        if array.ndim != 2 or array.shape[0] == 0:
            raise ValueError(
                f"network {regime!r}: layer RDMs must have shape (n_layers, n_pairs); "
                f"got {np.shape(value)}"
            )
        rdms[regime] = array
    n_pairs = {r: a.shape[1] for r, a in rdms.items()}
    if len(set(n_pairs.values())) > 1:
        raise ValueError(
            f"the networks' RDMs must compare the same conditions; pairs per network: {n_pairs}"
        )
    if conditions is not None:
        unknown = sorted(set(map(str, conditions)) - set(regimes))
        if unknown:
            raise ValueError(f"conditions names networks {unknown} not in {regimes}")
        orders.update({str(r): [str(c) for c in order] for r, order in conditions.items()})
    if orders:
        first = next(iter(orders))
        differ = [r for r, order in orders.items() if order != orders[first]]
        if differ:
            raise ValueError(
                f"networks {differ} order their conditions differently from {first!r}; "
                "the layer RDMs of every network must share one condition order"
            )
    for regime in regimes:
        n_layers = rdms[regime].shape[0]
        if isinstance(layer_names, Mapping):
            given = layer_names.get(regime)
        else:
            given = layer_names
        if given is not None:
            names[regime] = [str(n) for n in given]
        elif regime not in names:
            names[regime] = [f"layer{i + 1:02d}" for i in range(n_layers)]
        if len(names[regime]) != n_layers:
            raise ValueError(
                f"network {regime!r} has {n_layers} layer RDMs but {len(names[regime])} layer names"
            )
    stacked = np.concatenate([rdms[r] for r in regimes])
    matrix = layer_similarity(stacked, method=method)
    return CrossRegimeSimilarity(
        regimes=regimes,
        layers={r: names[r] for r in regimes},
        matrix=matrix,
        row_regimes=[r for r in regimes for _ in names[r]],
        row_layers=[n for r in regimes for n in names[r]],
        method=method,
    )
