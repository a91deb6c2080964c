"""Layers too large for memory, reduced before their RDM within a feature budget.

The first blocks of video networks give millions of values per clip; their RDMs are
computed from a seeded sparse random projection of the activations
(:func:`reduce_features`), whose effect on the RDM is measured in
``docs/comparing_networks.md``.
"""

from __future__ import annotations

import zlib

import numpy as np

#: How :func:`reduce_features` reduces a layer, in words (recorded in the sidecars).
REDUCTION_METHOD = (
    "seeded sparse random projection (count sketch: every feature, centred on the "
    "stimulus' mean over features for the correlation distance, added with a random sign "
    "to one of the reduced features), which keeps inner products and distances in "
    "expectation"
)


def projection_seed(seed: int, layer: str) -> list[int]:
    """The seed of a layer's projection: the run's seed and the CRC-32 of its name."""
    return [int(seed), zlib.crc32(str(layer).encode())]


def reduce_features(
    x: np.ndarray, n_features: int, *, seed: int = 0, layer: str = "", centre: bool = True
) -> np.ndarray:
    """``x`` (n_stimuli, ...) reduced to (n_stimuli, n_features) by a seeded sparse
    random projection.

    Every feature ``j`` is added, multiplied by a random sign ``s_j``, to the reduced
    feature ``h_j`` drawn uniformly (the count sketch, a sparse Johnson-Lindenstrauss
    projection with one non-zero per input feature): inner products, and so Euclidean
    and cosine distances, are kept in expectation, with a relative error of the order
    of ``1 / sqrt(n_features)``. With ``centre`` every row is first centred on its mean
    over the features, so the correlation distance of the reduced rows estimates that
    of the rows. The signs and buckets follow from ``seed`` and ``layer``
    (:func:`projection_seed`): the same for every stimulus, every run and every machine.
    Computed one stimulus at a time, in float64; returned as float32.
    """
    x = np.asarray(x)
    flat = x.reshape(x.shape[0], -1)
    d = flat.shape[1]
    if d <= n_features:
        return flat
    rng = np.random.default_rng(projection_seed(seed, layer))
    bucket = rng.integers(0, n_features, size=d, dtype=np.int64)
    sign = rng.integers(0, 2, size=d, dtype=np.int8).astype(np.float64) * 2 - 1
    out = np.empty((flat.shape[0], n_features), dtype=np.float32)
    for i, row in enumerate(flat):
        row = np.asarray(row, dtype=np.float64)
        if centre:
            row = row - row.mean()
        out[i] = np.bincount(bucket, weights=sign * row, minlength=n_features)
    return out


def reduce_layer(
    activations: np.ndarray, feature_budget: int, *, seed: int, layer: str, metric: str
) -> tuple[np.ndarray, dict | None]:
    """A layer's activations within ``feature_budget`` features per stimulus.

    Returns the activations (reduced by :func:`reduce_features` when the layer has
    more features than a positive budget, centred per stimulus for the correlation
    distance) and the record of the reduction for its sidecars (``Features``,
    ``ReducedTo``, ``Method``, ``Seed``), or None when the layer is kept whole.
    """
    n_features = int(np.prod(np.shape(activations)[1:], dtype=np.int64))
    if feature_budget <= 0 or n_features <= feature_budget:
        return activations, None
    reduced = reduce_features(
        activations, feature_budget, seed=seed, layer=layer, centre=metric == "correlation"
    )
    record = {
        "Features": n_features,
        "ReducedTo": int(feature_budget),
        "Method": REDUCTION_METHOD,
        "Seed": projection_seed(seed, layer),
    }
    return reduced, record
