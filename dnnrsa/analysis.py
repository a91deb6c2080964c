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
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dnnrsa.rdm import (
    COMPARATORS,
    _check_choice,
    compare_rdms,
    compute_rdm,
    n_conditions_from_pairs,
)

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
# helpers
# ---------------------------------------------------------------------------


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
# category index
# ---------------------------------------------------------------------------


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
        Condensed layer RDMs (e.g. from :func:`layer_rdms`).
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


# ---------------------------------------------------------------------------
# layer similarity
# ---------------------------------------------------------------------------


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
# variance partitioning
# ---------------------------------------------------------------------------


def _r_squared(y: np.ndarray, predictors: np.ndarray) -> np.ndarray:
    """R^2 of ordinary least squares with an intercept, for each column of ``y``.

    y : (n, n_targets); predictors : (n, p).
    """
    design = np.column_stack([np.ones(y.shape[0]), predictors])
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ beta
    centred = y - y.mean(axis=0)
    ss_tot = np.einsum("ij,ij->j", centred, centred)
    ss_res = np.einsum("ij,ij->j", resid, resid)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - ss_res / ss_tot


def variance_partitioning(target_rdm: Any, rdm_visual: Any, rdm_auditory: Any) -> dict[str, Any]:
    """Split the variance of a target RDM into unique and shared parts.

    Three ordinary least-squares regressions with an intercept are fitted across
    the dissimilarities: the target on both predictors (``R2_full``), on the visual
    RDM alone (``R2_visual``) and on the auditory RDM alone (``R2_auditory``). Then

    - ``unique_visual = R2_full - R2_auditory``
    - ``unique_auditory = R2_full - R2_visual``
    - ``shared = R2_full - unique_visual - unique_auditory``
      (``= R2_visual + R2_auditory - R2_full``)
    - ``total = R2_full``

    Pairs where any of the three RDMs is NaN are dropped.

    Parameters
    ----------
    target_rdm : ndarray of shape (n_pairs,) or (n_targets, n_pairs)
        RDM(s) to explain, e.g. the cross-modal layers of the network.
    rdm_visual : ndarray of shape (n_pairs,)
        First predictor, e.g. the RDM of the visual arm's top layer.
    rdm_auditory : ndarray of shape (n_pairs,)
        Second predictor, e.g. the RDM of the auditory arm's top layer.

    Returns
    -------
    dict
        Keys ``unique_visual``, ``unique_auditory``, ``shared``, ``total``,
        ``r2_visual``, ``r2_auditory``: floats for a 1-D target, arrays of shape
        (n_targets,) for a 2-D one.
    """
    target = np.asarray(target_rdm, dtype=np.float64)
    single = target.ndim == 1
    target = np.atleast_2d(target)
    vis = np.asarray(rdm_visual, dtype=np.float64)
    aud = np.asarray(rdm_auditory, dtype=np.float64)
    if target.ndim != 2:
        raise ValueError(
            f"target_rdm must have shape (n_pairs,) or (n_targets, n_pairs); got {target.shape}"
        )
    for name, arr in (("rdm_visual", vis), ("rdm_auditory", aud)):
        if arr.shape != (target.shape[1],):
            raise ValueError(
                f"{name} must have shape ({target.shape[1]},) like target_rdm; got {arr.shape}"
            )
    out = {key: np.full(target.shape[0], np.nan) for key in ("r2_full", "r2_visual", "r2_auditory")}
    ok_pred = np.isfinite(vis) & np.isfinite(aud)
    finite_t = np.isfinite(target)
    # Targets sharing a NaN pattern are fitted together.
    patterns, group = np.unique(finite_t & ok_pred, axis=0, return_inverse=True)
    group = group.ravel()
    for g, keep in enumerate(patterns):
        rows = np.flatnonzero(group == g)
        if keep.sum() < 4:
            logger.warning("variance_partitioning: fewer than 4 usable pairs; result is NaN")
            continue
        y = target[rows][:, keep].T
        out["r2_full"][rows] = _r_squared(y, np.column_stack([vis[keep], aud[keep]]))
        out["r2_visual"][rows] = _r_squared(y, vis[keep][:, None])
        out["r2_auditory"][rows] = _r_squared(y, aud[keep][:, None])
    unique_v = out["r2_full"] - out["r2_auditory"]
    unique_a = out["r2_full"] - out["r2_visual"]
    result = {
        "unique_visual": unique_v,
        "unique_auditory": unique_a,
        "shared": out["r2_full"] - unique_v - unique_a,
        "total": out["r2_full"],
        "r2_visual": out["r2_visual"],
        "r2_auditory": out["r2_auditory"],
    }
    if single:
        return {key: float(value[0]) for key, value in result.items()}
    return result


# ---------------------------------------------------------------------------
# multidimensional scaling
# ---------------------------------------------------------------------------


@dataclass
class MDSResult:
    """Low-dimensional embedding of an RDM.

    Attributes
    ----------
    coordinates : ndarray of shape (n_conditions, n_components)
        One point per condition (rows in RDM order).
    eigenvalues : ndarray of shape (n_components,)
        Eigenvalues of the double-centred matrix for the kept components
        (classical MDS initialisation).
    stress : float
        Normalised stress, ``sqrt(sum((d - d_hat)^2) / sum(d^2))`` over pairs,
        between the input distances and the distances of the embedding.
    method : str
        ``"classical"`` or ``"smacof"``.
    """

    coordinates: np.ndarray
    eigenvalues: np.ndarray
    stress: float
    method: str


def _pairwise_distances(points: np.ndarray) -> np.ndarray:
    sq = np.einsum("ij,ij->i", points, points)
    d2 = sq[:, None] + sq[None, :] - 2.0 * points @ points.T
    return np.sqrt(np.clip(d2, 0.0, None))


def mds(
    rdm: Any,
    n_components: int = 2,
    random_state: Any = None,
    *,
    method: str = "classical",
    squared: bool = False,
    max_iter: int = 300,
    tol: float = 1e-9,
) -> MDSResult:
    """Embed the conditions of an RDM in ``n_components`` dimensions.

    ``method="classical"`` is Torgerson's classical scaling: the matrix of squared
    distances is double-centred, ``B = -1/2 J D^2 J``, and the coordinates are the
    top eigenvectors scaled by the square roots of their eigenvalues. For
    Euclidean distances it recovers the configuration exactly (up to rotation,
    reflection and translation). ``method="smacof"`` then refines the embedding
    by minimising the raw stress with :func:`sklearn.manifold.smacof` (Guttman
    transforms), starting from the classical solution, or from random points
    when ``random_state`` is given.

    Each axis is given a deterministic sign (its largest absolute coordinate is
    positive).

    Parameters
    ----------
    rdm : ndarray of shape (n_pairs,) or (n_conditions, n_conditions)
        Dissimilarities (condensed or square). NaN entries are not allowed.
    n_components : int, default=2
        Number of dimensions.
    random_state : None, int or numpy.random.Generator
        Only for ``method="smacof"``: seed of a random start (None starts from the
        classical solution).
    method : {"classical", "smacof"}, default="classical"
    squared : bool, default=False
        Whether the RDM already holds squared distances (as the ``euclidean`` and,
        up to a factor, the ``correlation`` metric do); then its square root is
        taken as the distances.
    max_iter : int, default=300
        SMACOF iterations.
    tol : float, default=1e-9
        SMACOF convergence tolerance (``eps`` of :func:`sklearn.manifold.smacof`).

    Returns
    -------
    MDSResult
    """
    _check_choice("method", method, ("classical", "smacof"))
    vec = _as_rdm_vector(rdm)
    if not np.all(np.isfinite(vec)):
        raise ValueError("rdm must not contain NaN or infinite values for mds")
    n = n_conditions_from_pairs(vec.shape[0])
    if not 1 <= int(n_components) < n:
        raise ValueError(f"n_components must be between 1 and {n - 1}; got {n_components!r}")
    k = int(n_components)
    if squared:
        if np.any(vec < 0):
            raise ValueError("rdm has negative entries; they cannot be squared distances")
        dist_vec = np.sqrt(vec)
    else:
        dist_vec = vec
    dist = np.zeros((n, n))
    iu = np.triu_indices(n, 1)
    dist[iu] = dist_vec
    dist = dist + dist.T

    centring = np.eye(n) - 1.0 / n
    b = -0.5 * centring @ (dist**2) @ centring
    evals, evecs = np.linalg.eigh(b)
    order = np.argsort(evals)[::-1][:k]
    evals = evals[order]
    coords = evecs[:, order] * np.sqrt(np.clip(evals, 0.0, None))

    if method == "smacof":
        from sklearn.manifold import smacof

        if random_state is not None:
            rng = _check_random_state(random_state)
            coords = rng.standard_normal((n, k)) * dist_vec.std()
        coords, _ = smacof(
            dist,
            metric=True,
            n_components=k,
            init=coords,
            n_init=1,
            max_iter=int(max_iter),
            eps=float(tol),
            normalized_stress=False,
        )
        coords = coords - coords.mean(axis=0)

    # Deterministic sign for every axis.
    flip = np.sign(coords[np.argmax(np.abs(coords), axis=0), np.arange(k)])
    flip[flip == 0] = 1.0
    coords = coords * flip

    fitted = _pairwise_distances(coords)[iu]
    denom = float(np.sum(dist_vec**2))
    stress = float(np.sqrt(np.sum((dist_vec - fitted) ** 2) / denom)) if denom > 0 else 0.0
    return MDSResult(coords, evals, stress, method)


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


def arm_layers(parts: Sequence[str]) -> tuple[int, int, list[int]] | None:
    """Which layers variance partitioning compares, from the part of every layer.

    Returns
    -------
    (visual, auditory, crossmodal) or None
        The last layer of the visual arm, the last of the auditory arm and every
        cross-modal layer (indices into ``parts``); None unless the network has all
        three parts.
    """
    vis = [i for i, p in enumerate(parts) if p == "visual"]
    aud = [i for i, p in enumerate(parts) if p == "auditory"]
    cross = [i for i, p in enumerate(parts) if p == "crossmodal"]
    if not (vis and aud and cross):
        return None
    return vis[-1], aud[-1], cross


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
