"""Voxelwise encoding models with banded ridge regression (himalaya).

RSA asks whether a layer's geometry matches a region's; an encoding model asks how
much of each voxel's response to the stimuli a feature space predicts. With one band
of features per part of a network (for the cross-channel CNN: the visual arm, the
auditory arm and the cross-modal part), banded ridge regression gives every band its
own penalty, chosen by cross-validation, and the joint prediction can be split between
the bands.

Arrays in, arrays and dataclasses out:

* :func:`fit_encoding` fits the joint banded model, the models without each band
  (variance partitioning) and one model per layer, cross-validated over runs, and
  returns an :class:`EncodingResult` of per-voxel maps;
* :func:`make_bands` groups layers into bands (default: one per part);
* :func:`layer_features` turns a layer's activations into features (a PCA fitted on
  the training stimuli, each component z-scored);
* :func:`encoding_folds` lists the cross-validation folds;
* :func:`noise_ceiling` and :func:`spearman_brown` give each voxel's split-half
  reliability and the R² a perfect model could reach on one run;
* :func:`variance_partition` turns joint and leave-one-band-out R² into unique and
  shared variance;
* :func:`patterns_by_run` reshapes a :class:`dnnrsa.glm.PatternResult` into
  ``(n_runs, n_stimuli, n_voxels)``;
* :func:`encoding_maps` fits from rows of patterns labelled by run and condition and
  from per-stimulus activations (the stimuli of a condition averaged), as the BIDS App
  has them.

The fold scheme, the features, the solver and the ceiling are described in
``docs/encoding.md`` and in :func:`fit_encoding`.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from . import _encoding_solve as _solve
from ._cpus import resolve_n_jobs, single_threaded_blas

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_ALPHAS",
    "DEFAULT_N_COMPONENTS",
    "DEFAULT_N_ITER",
    "MIN_RELIABILITY",
    "EncodingFold",
    "EncodingResult",
    "NoiseCeiling",
    "encoding_folds",
    "fit_encoding",
    "layer_features",
    "make_bands",
    "noise_ceiling",
    "patterns_by_run",
    "spearman_brown",
    "variance_partition",
]

#: Penalties tried: those of the ridge fitted on the mean of the training runs, whose
#: features have unit variance over the training stimuli.
DEFAULT_ALPHAS = np.logspace(-2, 7, 19)
#: Principal components kept per layer (at most the layer's rank on the training stimuli).
DEFAULT_N_COMPONENTS = 10
#: Band weightings tried by himalaya's random search (the first one is uniform).
DEFAULT_N_ITER = 20
#: Split-half reliability (Spearman-Brown corrected) a voxel needs for its R² to be
#: reported as a fraction of the noise ceiling.
MIN_RELIABILITY = 0.3
#: Groups of stimuli held out with each run by default (stimulus ``i`` in group
#: ``i % 6``): a model must predict stimuli it has not seen, without which variance
#: partitioning credits any band with many features (docs/encoding.md).
DEFAULT_STIMULUS_FOLDS = 6
#: Splits of the runs into halves beyond which the noise ceiling uses odd against even runs.
MAX_HALF_SPLITS = 256

EncodingFold = _solve.Fold


# --------------------------------------------------------------------------- inputs
def _check_patterns(patterns) -> np.ndarray:
    arr = np.asarray(patterns)
    if arr.ndim != 3:
        raise ValueError(
            "patterns must be an array of shape (n_runs, n_stimuli, n_voxels); "
            f"got shape {arr.shape}"
        )
    if arr.shape[0] < 2:
        raise ValueError(
            "patterns must hold at least 2 runs (axis 0): one run is held out and the "
            f"model trained on the others; got {arr.shape[0]}"
        )
    if arr.shape[1] < 3 or arr.shape[2] < 1:
        raise ValueError(
            f"patterns must hold at least 3 stimuli (axis 1) and 1 voxel (axis 2); got shape {arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"patterns must hold real numbers; got dtype {arr.dtype}")
    return arr


def _check_activations(activations, n_stimuli: int | None) -> dict[str, np.ndarray]:
    if not isinstance(activations, Mapping) or not activations:
        raise ValueError(
            "activations must be a non-empty mapping of layer name to an array of shape "
            f"(n_stimuli, n_units); got {type(activations).__name__}"
        )
    out = {}
    for name, values in activations.items():
        arr = np.asarray(values)
        if arr.ndim < 2 or arr.shape[0] < 1:
            raise ValueError(
                f"activations[{name!r}] must have shape (n_stimuli, n_units, ...); got shape {arr.shape}"
            )
        if n_stimuli is not None and arr.shape[0] != n_stimuli:
            raise ValueError(
                f"activations[{name!r}] has {arr.shape[0]} stimuli (rows); patterns has "
                f"{n_stimuli} (axis 1)"
            )
        arr = arr.reshape(arr.shape[0], -1)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"activations[{name!r}] holds non-finite values")
        out[str(name)] = arr
    return out


def _check_n_components(n_components):
    if n_components is None:
        return None
    if isinstance(n_components, bool):
        raise ValueError(
            f"n_components must be a positive int, a float in (0, 1] or None; got {n_components!r}"
        )
    if isinstance(n_components, (int, np.integer)):
        if n_components < 1:
            raise ValueError(
                f"n_components must be a positive int, a float in (0, 1] or None; got {n_components!r}"
            )
        return int(n_components)
    if isinstance(n_components, (float, np.floating)) and 0 < n_components <= 1:
        return float(n_components)
    raise ValueError(
        f"n_components must be a positive int, a float in (0, 1] or None; got {n_components!r}"
    )


def _check_alphas(alphas) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(DEFAULT_ALPHAS if alphas is None else alphas, dtype=np.float64))
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"alphas must be a 1-D array of positive finite numbers; got {alphas!r}")
    return np.unique(arr)


def _stimulus_groups(stimulus_folds, n_stimuli: int) -> np.ndarray | None:
    if stimulus_folds is None:
        return None
    if isinstance(stimulus_folds, (int, np.integer)) and not isinstance(stimulus_folds, bool):
        if not 3 <= stimulus_folds <= n_stimuli:
            raise ValueError(
                f"stimulus_folds must be None, an int in [3, n_stimuli={n_stimuli}] or one group "
                f"label per stimulus; got {stimulus_folds!r}"
            )
        return np.arange(n_stimuli) % int(stimulus_folds)
    labels = np.asarray(stimulus_folds)
    if labels.shape != (n_stimuli,):
        raise ValueError(
            f"stimulus_folds, as group labels, must have shape (n_stimuli,) = ({n_stimuli},); "
            f"got shape {labels.shape}"
        )
    _, groups = np.unique(labels, return_inverse=True)
    if groups.max() + 1 < 3:
        raise ValueError(
            "stimulus_folds must define at least 3 groups of stimuli (the inner folds hold out "
            f"one of the training groups); got {groups.max() + 1}"
        )
    return groups


# --------------------------------------------------------------------------- bands and features
def make_bands(
    parts: Mapping[str, str],
    layers: Sequence[str] | None = None,
    bands: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, list[str]]:
    """Group layers into bands of features.

    Parameters
    ----------
    parts : mapping of str to str
        Layer name -> part of the network (``FeatureSet.parts``; for the cross-channel
        CNN ``"visual"``, ``"auditory"`` or ``"crossmodal"``).
    layers : sequence of str, optional
        The layers available (default: those of ``parts``, in its order).
    bands : mapping of str to sequence of str, optional
        Band name -> its layers. Default: one band per part, named after it, holding
        the part's layers in order, the bands in the order their parts first appear.

    Returns
    -------
    dict of str to list of str
        Band name -> layers. Every layer is in at most one band.
    """
    layers = list(parts) if layers is None else list(layers)
    if bands is None:
        missing = [name for name in layers if name not in parts]
        if missing:
            raise ValueError(f"parts lacks layers {missing}; it names {sorted(parts)}")
        out: dict[str, list[str]] = {}
        for name in layers:
            out.setdefault(str(parts[name]), []).append(name)
        return out
    if not isinstance(bands, Mapping) or not bands:
        raise ValueError(f"bands must be a non-empty mapping of band name to layers; got {bands!r}")
    out = {}
    seen: dict[str, str] = {}
    for band, members in bands.items():
        members = [members] if isinstance(members, str) else list(members)
        if not members:
            raise ValueError(f"bands[{band!r}] lists no layer")
        unknown = [name for name in members if name not in layers]
        if unknown:
            raise ValueError(f"bands[{band!r}] names layers {unknown} that are not in activations")
        for name in members:
            if name in seen:
                raise ValueError(
                    f"layer {name!r} is in bands {seen[name]!r} and {band!r}; a layer may be in one band"
                )
            seen[name] = str(band)
        out[str(band)] = members
    return out


def layer_features(
    activations,
    train_stimuli: Sequence[int] | np.ndarray,
    n_components: int | float | None = DEFAULT_N_COMPONENTS,
) -> np.ndarray:
    """A layer's features for every stimulus, fitted on the training stimuli only.

    Parameters
    ----------
    activations : ndarray of shape (n_stimuli, n_units) or (n_stimuli, ...)
        The layer's activations (flattened after the first axis).
    train_stimuli : sequence of int
        Rows the PCA and the z-scoring are fitted on.
    n_components : int, float or None
        An int keeps that many leading principal components (at most the layer's rank
        on the training stimuli); a float in (0, 1] keeps the fewest components whose
        share of the training variance reaches it; None keeps every unit, z-scored,
        without PCA (units constant on the training stimuli are left out).

    Returns
    -------
    ndarray of shape (n_stimuli, n_features)
        Each feature has mean 0 and variance 1 (ddof 0) over the training stimuli;
        every other row is centred, projected and scaled with the training stimuli's
        numbers.

    Notes
    -----
    The PCA is that of the training rows centred on their mean (computed from the
    Gram matrix of the rows, so a layer with many units costs one pass over them).
    """
    x = _check_activations({"layer": activations}, None)["layer"]
    train = _check_train(train_stimuli, len(x))
    n_components = _check_n_components(n_components)
    if n_components is None:
        return _solve.zscored_units(x, train)
    return _solve.pca_features(_solve.gram(x), train, n_components)


def _check_train(train_stimuli, n: int) -> np.ndarray:
    train = np.asarray(train_stimuli)
    if train.dtype == bool:
        train = np.flatnonzero(train)
    if train.ndim != 1 or train.size < 2 or not np.issubdtype(train.dtype, np.integer):
        raise ValueError(f"train_stimuli must list at least 2 row indices; got {train_stimuli!r}")
    if train.min() < -n or train.max() >= n or np.unique(train % n).size != train.size:
        raise ValueError(
            f"train_stimuli must be distinct row indices below {n}; got {train_stimuli!r}"
        )
    return train % n


def encoding_folds(n_runs: int, n_stimuli: int, stimulus_folds=None) -> list[EncodingFold]:
    """The outer folds of :func:`fit_encoding`.

    Parameters
    ----------
    n_runs, n_stimuli : int
        At least 2 runs; 2 runs need ``stimulus_folds`` (the penalties are then chosen
        on the groups of training stimuli, left out of the training run and scored in
        the held-out run).
    stimulus_folds : None, int or array-like of shape (n_stimuli,)
        None: leave one run out, every stimulus in training and test (at least 3
        runs). An int ``G``
        (at least 3): stimulus ``i`` is in group ``i % G``; array-like: one group label
        per stimulus (at least 3 groups). Each held-out run is then predicted group by
        group, from models trained on the other runs and the other groups.

    Returns
    -------
    list of EncodingFold
        Run-major: all folds of run 0, then run 1, ... Within a run, groups in sorted
        label order.
    """
    runs = list(range(int(n_runs)))
    groups = _stimulus_groups(stimulus_folds, int(n_stimuli))
    if len(runs) < 3 and groups is None:
        raise ValueError(
            f"{len(runs)} runs need stimulus_folds: with runs held out only, the penalties "
            "are chosen by leaving out each of at least 2 training runs in turn (3 runs in "
            "all); with 2 runs, the groups of stimuli of the training run are left out instead"
        )
    folds = []
    for test_run in runs:
        train_runs = tuple(r for r in runs if r != test_run)
        if groups is None:
            everything = np.arange(n_stimuli)
            folds.append(_solve.Fold(test_run, train_runs, everything, everything))
            continue
        for g in np.unique(groups):
            train = np.flatnonzero(groups != g)
            folds.append(
                _solve.Fold(test_run, train_runs, train, np.flatnonzero(groups == g), groups[train])
            )
    return folds


# --------------------------------------------------------------------------- noise ceiling
def spearman_brown(r, factor):
    """Spearman-Brown prophecy: the reliability of ``factor`` times as much data.

    ``factor * r / (1 + (factor - 1) * r)``; ``factor=2`` turns a split-half correlation
    into the reliability of the whole; a factor below 1 goes the other way.
    Negative correlations are passed through the formula as they are.
    """
    r = np.asarray(r, dtype=np.float64)
    factor = float(factor)
    if not factor > 0:
        raise ValueError(f"factor must be positive; got {factor!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        return factor * r / (1.0 + (factor - 1.0) * r)


@dataclass
class NoiseCeiling:
    """Split-half reliability of each voxel's stimulus response.

    Attributes
    ----------
    split_half : ndarray of shape (n_voxels,)
        Pearson correlation over stimuli between the mean of one half of the runs and
        the mean of the other, averaged over the splits.
    reliability : ndarray of shape (n_voxels,)
        ``split_half`` Spearman-Brown corrected to all runs (factor 2).
    ceiling : ndarray of shape (n_voxels,)
        ``split_half`` Spearman-Brown corrected to one run (factor ``2 / n_runs``): the
        R² on one held-out run that the noise leaves to a perfect model.
    n_splits : int
        How many splits of the runs were averaged.
    halves : str
        ``"all"`` or ``"odd-even"``.
    min_reliability : float
        :meth:`fraction` reports R² where ``reliability`` exceeds it.
    """

    split_half: np.ndarray
    reliability: np.ndarray
    ceiling: np.ndarray
    n_splits: int
    halves: str
    min_reliability: float = MIN_RELIABILITY

    def fraction(self, r2) -> np.ndarray:
        """``r2 / ceiling`` where ``reliability > min_reliability``, NaN elsewhere."""
        r2 = np.asarray(r2, dtype=np.float64)
        if r2.shape != self.ceiling.shape:
            raise ValueError(f"r2 must have shape {self.ceiling.shape}; got {r2.shape}")
        out = np.full(r2.shape, np.nan)
        ok = np.isfinite(self.reliability) & (self.reliability > self.min_reliability)
        ok &= self.ceiling > 0
        out[ok] = r2[ok] / self.ceiling[ok]
        return out


def _half_splits(n_runs: int, halves: str) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    runs = tuple(range(n_runs))
    odd_even = [(runs[0::2], runs[1::2])]
    if halves == "odd-even":
        return odd_even
    size = n_runs // 2
    n_splits = math.comb(n_runs, size) // (2 if n_runs % 2 == 0 else 1)
    if n_splits > MAX_HALF_SPLITS:
        logger.info(
            "noise ceiling: %d splits of %d runs exceed %d; using odd against even runs",
            n_splits,
            n_runs,
            MAX_HALF_SPLITS,
        )
        return odd_even
    out = []
    for first in itertools.combinations(runs, size):
        if n_runs % 2 == 0 and 0 not in first:
            continue  # each split once: the half holding run 0 comes first
        out.append((first, tuple(r for r in runs if r not in first)))
    return out


def _pearson_over_stimuli(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (a * b).sum(axis=0) / np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))


def noise_ceiling(
    patterns, *, halves: str = "all", min_reliability: float = MIN_RELIABILITY
) -> NoiseCeiling:
    """Each voxel's split-half reliability across runs and the R² ceiling of one run.

    Parameters
    ----------
    patterns : ndarray of shape (n_runs, n_stimuli, n_voxels)
        At least 2 runs.
    halves : {"all", "odd-even"}
        ``"all"``: every split of the runs into two halves (for an odd number of runs,
        halves of ``n_runs // 2`` and ``n_runs // 2 + 1`` runs), each split once,
        the correlations averaged; beyond :data:`MAX_HALF_SPLITS` splits, odd against
        even runs. ``"odd-even"``: the mean of runs 0, 2, 4... against runs 1, 3, 5...
    min_reliability : float
        Threshold on ``reliability`` used by :meth:`NoiseCeiling.fraction`.

    Returns
    -------
    NoiseCeiling

    Notes
    -----
    With ``r`` the averaged split-half correlation and ``n`` runs, the Spearman-Brown
    formula gives the reliability of the mean of all runs, ``2r / (1 + r)``, and that of
    a single run, the formula with factor ``2 / n``. The second is the ceiling for the
    R² that :func:`fit_encoding` measures on one held-out run: if ``y = s + e`` with
    independent noise, a prediction equal to ``s`` has an expected R² of
    ``var(s) / var(y)``, the correlation between two runs. For an odd number of runs
    the halves differ by one run and the formulas use ``n / 2`` runs per half, an
    approximation. Voxels constant within a half get NaN.
    """
    arr = np.asarray(patterns, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[0] < 2 or arr.shape[1] < 3:
        raise ValueError(
            "patterns must be an array of shape (n_runs, n_stimuli, n_voxels) with at least "
            f"2 runs and 3 stimuli; got shape {np.shape(patterns)}"
        )
    if halves not in ("all", "odd-even"):
        raise ValueError(f"halves must be one of ['all', 'odd-even']; got {halves!r}")
    if not np.isfinite(min_reliability):
        raise ValueError(f"min_reliability must be a finite number; got {min_reliability!r}")
    splits = _half_splits(arr.shape[0], halves)
    total = np.zeros(arr.shape[2])
    for first, second in splits:
        total += _pearson_over_stimuli(arr[list(first)].mean(0), arr[list(second)].mean(0))
    split_half = total / len(splits)
    return NoiseCeiling(
        split_half=split_half,
        reliability=spearman_brown(split_half, 2.0),
        ceiling=spearman_brown(split_half, 2.0 / arr.shape[0]),
        n_splits=len(splits),
        halves=halves,
        min_reliability=float(min_reliability),
    )


# --------------------------------------------------------------------------- partitioning
def variance_partition(r2_joint, r2_without) -> tuple[np.ndarray, np.ndarray]:
    """Unique and shared variance from a joint model and its leave-one-band-out models.

    Parameters
    ----------
    r2_joint : ndarray of shape (n_voxels,)
        Cross-validated R² of the model with every band.
    r2_without : ndarray of shape (n_bands, n_voxels)
        Cross-validated R² of the model without each band (for a single band: the
        empty model, R² 0).

    Returns
    -------
    unique : ndarray of shape (n_bands, n_voxels)
        ``r2_joint - r2_without[b]``: what band ``b`` adds to all the others.
    shared : ndarray of shape (n_voxels,)
        ``r2_joint - unique.sum(0)``: the part of the joint R² that two or more bands
        can each explain.

    Negative estimates (noise, or a band whose features hurt the prediction out of
    sample) are returned as they are.
    """
    r2_joint = np.asarray(r2_joint, dtype=np.float64)
    r2_without = np.asarray(r2_without, dtype=np.float64)
    if r2_without.ndim != 2 or r2_without.shape[1:] != r2_joint.shape or r2_joint.ndim != 1:
        raise ValueError(
            "r2_without must have shape (n_bands, n_voxels) with n_voxels = r2_joint's "
            f"{r2_joint.shape}; got {r2_without.shape}"
        )
    unique = r2_joint[None] - r2_without
    return unique, r2_joint - unique.sum(axis=0)


# --------------------------------------------------------------------------- patterns
def patterns_by_run(result) -> np.ndarray:
    """The patterns of a :class:`dnnrsa.glm.PatternResult` as (n_runs, n_stimuli, n_voxels).

    Conditions follow ``result.condition_order``; every run must hold every condition
    once.
    """
    patterns = np.asarray(result.patterns)
    runs = np.asarray(result.runs)
    conditions = np.asarray(result.conditions)
    order = list(result.condition_order)
    run_ids = np.unique(runs)
    out = np.empty((run_ids.size, len(order), patterns.shape[1]), dtype=patterns.dtype)
    for i, run in enumerate(run_ids):
        rows = np.flatnonzero(runs == run)
        labels = list(conditions[rows])
        if sorted(labels) != sorted(order) or len(set(labels)) != len(labels):
            raise ValueError(
                f"result.conditions of run {run} must hold each condition of condition_order once"
            )
        out[i] = patterns[rows[[labels.index(c) for c in order]]]
    return out


# --------------------------------------------------------------------------- the fit
@dataclass
class EncodingResult:
    """Per-voxel maps of a cross-validated encoding analysis (:func:`fit_encoding`).

    Every map is over the voxels of ``patterns``; voxels left out (``~valid``) are NaN.
    R² and correlations are averaged over the held-out runs (arithmetic means of the
    per-run values).

    Attributes
    ----------
    bands : dict of str to list of str
        Band name -> layers, in band order.
    layers : list of str
        Layers of ``layer_r2`` and ``layer_r``, in the order of ``activations``.
    r2, r : ndarray of shape (n_voxels,)
        Joint model: R² and Pearson r between prediction and held-out run.
    r2_split : ndarray of shape (n_bands, n_voxels)
        Each band's share of the joint R² (himalaya's ``r2_score_split``, product
        measure); the shares sum to ``r2``.
    r2_without : ndarray of shape (n_bands, n_voxels)
        R² of the model refitted without each band.
    unique : ndarray of shape (n_bands, n_voxels)
        ``r2 - r2_without``; negative estimates kept.
    shared : ndarray of shape (n_voxels,)
        ``r2 - unique.sum(0)``.
    layer_r2, layer_r : ndarray of shape (n_layers, n_voxels)
        One ridge model per layer, on that layer's features alone.
    fold_r2 : ndarray of shape (n_runs, n_voxels)
        Joint R² on each held-out run.
    alphas : ndarray of shape (n_folds, n_bands, n_voxels)
        The penalty of each band's features in each fold's joint fit (the ridge fitted
        on the mean of the training runs).
    folds : list of EncodingFold
    n_features : dict of str to ndarray of shape (n_folds,)
        Features each band had in each fold.
    ceiling : NoiseCeiling
    r2_fraction : ndarray of shape (n_voxels,)
        ``ceiling.fraction(r2)``.
    valid : ndarray of bool, shape (n_voxels,)
        Voxels fitted: finite in every run and not constant over stimuli in any run.
    backend : str
        himalaya's backend used (``"numpy"`` or ``"torch_cuda"``).
    predictions : ndarray of shape (n_runs, n_stimuli, n_voxels) or None
        With ``return_predictions``: the joint model's cross-validated prediction of
        each run, centred like the targets (each run minus its mean over stimuli).
    """

    bands: dict[str, list[str]]
    layers: list[str]
    r2: np.ndarray
    r: np.ndarray
    r2_split: np.ndarray
    r2_without: np.ndarray
    unique: np.ndarray
    shared: np.ndarray
    layer_r2: np.ndarray
    layer_r: np.ndarray
    fold_r2: np.ndarray
    alphas: np.ndarray
    folds: list
    n_features: dict[str, np.ndarray]
    ceiling: NoiseCeiling
    r2_fraction: np.ndarray
    valid: np.ndarray
    backend: str
    predictions: np.ndarray | None = field(default=None, repr=False)

    @property
    def band_names(self) -> list[str]:
        return list(self.bands)


def _valid_voxels(patterns: np.ndarray) -> np.ndarray:
    finite = np.all(np.isfinite(patterns), axis=(0, 1))
    with np.errstate(invalid="ignore"):
        varies = np.all(np.ptp(np.where(np.isfinite(patterns), patterns, 0.0), axis=1) > 0, axis=0)
    return finite & varies


def _fold_kernels(acts, grams, fold, n_components) -> dict[str, tuple[np.ndarray, int]]:
    """Each layer's linear kernel over all stimuli, features fitted on the fold's
    training stimuli, and its number of features."""
    out = {}
    for name, x in acts.items():
        if n_components is None:
            z = _solve.zscored_units(x, fold.train_stimuli)
        else:
            z = _solve.pca_features(grams[name], fold.train_stimuli, n_components)
        out[name] = (z @ z.T, z.shape[1])
    return out


def _blas_limit(backend_name: str):
    """One BLAS thread on the CPU: the products are small and many (see
    :func:`dnnrsa._cpus.single_threaded_blas`); parallelism comes from ``n_jobs``."""
    import contextlib

    return single_threaded_blas(np) if backend_name == "numpy" else contextlib.nullcontext()


def _scores(y: np.ndarray, split: np.ndarray):
    """R², r and split R² (himalaya's scoring, numpy backend) of one held-out run."""
    from himalaya.scoring import correlation_score, r2_score, r2_score_split

    with _solve.himalaya_backend("numpy"), np.errstate(divide="ignore", invalid="ignore"):
        joint = split.sum(axis=0)
        r2 = np.asarray(r2_score(y, joint))
        r = np.asarray(correlation_score(y, joint))
        parts = np.asarray(r2_score_split(y, split)) if len(split) > 1 else r2[None]
    return r2, r, parts


def _check_data(activations, parts, patterns, bands):
    """``patterns``, ``activations`` and the bands, checked: the patterns array, each
    layer's activations as (n_stimuli, n_units) and band name -> layers."""
    arr = _check_patterns(patterns)
    acts = _check_activations(activations, arr.shape[1])
    return arr, acts, make_bands(parts, list(acts), bands)


def _check_settings(n_iter, voxel_batch, halves, min_reliability) -> None:
    """``n_iter``, ``voxel_batch``, ``halves`` and ``min_reliability``, checked in that order."""
    if isinstance(n_iter, bool) or not isinstance(n_iter, (int, np.integer)) or n_iter < 1:
        raise ValueError(f"n_iter must be a positive int; got {n_iter!r}")
    if voxel_batch is not None and (isinstance(voxel_batch, bool) or int(voxel_batch) < 1):
        raise ValueError(f"voxel_batch must be a positive int or None; got {voxel_batch!r}")
    if halves not in ("all", "odd-even"):
        raise ValueError(f"halves must be one of ['all', 'odd-even']; got {halves!r}")
    if not np.isfinite(min_reliability):
        raise ValueError(f"min_reliability must be a finite number; got {min_reliability!r}")


def _fitted_voxels(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The voxels fitted (:func:`_valid_voxels`; an error when there are none) and their
    responses in float64, shape (n_runs, n_stimuli, n_valid)."""
    valid = _valid_voxels(arr)
    if not valid.any():
        raise ValueError(
            "patterns has no voxel that is finite in every run and varies over stimuli"
        )
    return valid, np.asarray(arr[:, :, valid], dtype=np.float64)


def _fold_features(acts, band_layers, map_layers, folds, n_components):
    """Every fold's layer kernels (:func:`_fold_kernels`) for the layers of the bands and
    of the per-layer maps, and the features each band had in each fold."""
    layers = [name for members in band_layers.values() for name in members]
    used = {name: acts[name] for name in dict.fromkeys(layers + map_layers)}
    with _blas_limit("numpy"):
        grams = None if n_components is None else {n: _solve.gram(x) for n, x in used.items()}
        fold_kernels = [_fold_kernels(used, grams, fold, n_components) for fold in folds]
    n_features = {
        band: np.array([sum(fk[name][1] for name in members) for fk in fold_kernels])
        for band, members in band_layers.items()
    }
    return fold_kernels, n_features


def _models(band_layers, partition: bool, map_layers) -> list[tuple[str, list[list[str]]]]:
    """The models and the layers of each of their bands: the joint one, one without each
    band (with ``partition`` and several bands), one per layer of ``map_layers``."""
    band_names = list(band_layers)
    models: list[tuple[str, list[list[str]]]] = [("joint", [band_layers[b] for b in band_names])]
    if partition and len(band_names) > 1:
        for b in band_names:
            models.append((f"without:{b}", [band_layers[o] for o in band_names if o != b]))
    models += [(f"layer:{name}", [[name]]) for name in map_layers]
    return models


class _ModelFit:
    """The cross-validated fits of every model, block of voxels by block."""

    def __init__(self, folds, fold_kernels, alphas, n_iter, random_state, n_runs, n_stimuli):
        self.folds = folds
        self.fold_kernels = fold_kernels
        self.alphas = alphas
        self.n_iter = n_iter
        self.random_state = random_state
        self.n_runs = n_runs
        self.n_stimuli = n_stimuli

    def fold(self, y, model_bands, i, backend):
        """One fold of one model: each band's prediction of the test stimuli and the
        penalty of each band."""
        fold = self.folds[i]
        kernels = np.stack(
            [sum(self.fold_kernels[i][name][0] for name in members) for members in model_bands]
        )
        deltas, mean = _solve.select_deltas(
            kernels,
            fold,
            y,
            alphas=self.alphas,
            n_iter=self.n_iter,
            random_state=self.random_state,
            backend=backend,
        )
        return _solve.refit_predict(kernels, fold, mean, deltas), np.exp(-deltas)

    def voxels(self, y, models, backend, mapper) -> dict[str, np.ndarray]:
        """Scores of every model (R² and r averaged over held-out runs) and the joint
        model's per-run R², split R², penalties and predictions, for the voxels of ``y``."""
        nv = y.shape[2]
        targets = y - y.mean(axis=1, keepdims=True)
        n_folds = len(self.folds)
        out: dict[str, np.ndarray] = {}
        for model_name, model_bands in models:
            fitted = mapper(
                lambda i, bands=model_bands: self.fold(y, bands, i, backend), range(n_folds)
            )
            split = np.zeros((self.n_runs, len(model_bands), self.n_stimuli, nv))
            alphas = np.zeros((n_folds, len(model_bands), nv))
            for i, (pred, best) in enumerate(fitted):
                split[self.folds[i].test_run][:, self.folds[i].test_stimuli] = pred
                alphas[i] = best
            r2 = np.zeros((self.n_runs, nv))
            r = np.zeros((self.n_runs, nv))
            parts = np.zeros((self.n_runs, len(model_bands), nv))
            for run in range(self.n_runs):
                r2[run], r[run], parts[run] = _scores(targets[run], split[run])
            out[f"r2:{model_name}"] = r2.mean(axis=0)
            out[f"r:{model_name}"] = r.mean(axis=0)
            if model_name == "joint":
                out["fold_r2"] = r2
                out["split"] = parts.mean(axis=0)
                out["alphas"] = alphas
                out["predictions"] = split.sum(axis=1)
        return out

    def blocks(
        self, y, models, backend_name, n_jobs, voxel_batch, return_predictions
    ) -> dict[str, np.ndarray]:
        """:meth:`voxels` on blocks of ``voxel_batch`` voxels of ``y`` (folds fitted by
        ``n_jobs`` threads on the CPU), the blocks' maps joined along the voxel axis; the
        joint model's predictions only with ``return_predictions``."""
        nv = y.shape[2]
        n_jobs = 1 if backend_name != "numpy" else min(resolve_n_jobs(n_jobs), len(self.folds))
        batch = nv if voxel_batch is None else int(voxel_batch)
        logger.info(
            "encoding: %d voxels, %d runs, %d stimuli, %d models x %d folds on himalaya's %s "
            "backend, %d thread(s)",
            nv,
            self.n_runs,
            self.n_stimuli,
            len(models),
            len(self.folds),
            backend_name,
            n_jobs,
        )
        chunks = []
        with _solve.himalaya_backend(backend_name) as backend, _blas_limit(backend_name):
            with ThreadPoolExecutor(max_workers=n_jobs) as pool:
                mapper = pool.map if n_jobs > 1 else map
                for start in range(0, nv, batch):
                    chunks.append(
                        self.voxels(y[:, :, start : start + batch], models, backend, mapper)
                    )
        keys = [key for key in chunks[0] if return_predictions or key != "predictions"]
        return {key: np.concatenate([c.pop(key) for c in chunks], axis=-1) for key in keys}


def _assemble(
    maps, band_layers, map_layers, partition, ceiling, valid, folds, n_features, backend
) -> EncodingResult:
    """The :class:`EncodingResult`: the maps of :meth:`_ModelFit.blocks`, unique and shared
    variance, the noise ceiling, every map spread over all voxels (NaN where not valid)."""
    band_names = list(band_layers)
    nv = int(valid.sum())
    r2 = maps["r2:joint"]
    if len(band_names) == 1:
        without = np.zeros((1, nv))
    elif partition:
        without = np.stack([maps[f"r2:without:{b}"] for b in band_names])
    else:
        without = np.full((len(band_names), nv), np.nan)
    unique, shared = variance_partition(r2, without)

    def full(values: np.ndarray) -> np.ndarray:
        out = np.full(values.shape[:-1] + valid.shape, np.nan)
        out[..., valid] = values
        return out

    ceiling_full = NoiseCeiling(
        split_half=full(ceiling.split_half),
        reliability=full(ceiling.reliability),
        ceiling=full(ceiling.ceiling),
        n_splits=ceiling.n_splits,
        halves=ceiling.halves,
        min_reliability=ceiling.min_reliability,
    )
    empty = np.zeros((0, nv))
    predictions = maps.get("predictions")
    return EncodingResult(
        bands=band_layers,
        layers=map_layers,
        r2=full(r2),
        r=full(maps["r:joint"]),
        r2_split=full(maps["split"]),
        r2_without=full(without),
        unique=full(unique),
        shared=full(shared),
        layer_r2=full(
            np.stack([maps[f"r2:layer:{n}"] for n in map_layers]) if map_layers else empty
        ),
        layer_r=full(np.stack([maps[f"r:layer:{n}"] for n in map_layers]) if map_layers else empty),
        fold_r2=full(maps["fold_r2"]),
        alphas=full(maps["alphas"]),
        folds=folds,
        n_features=n_features,
        ceiling=ceiling_full,
        r2_fraction=ceiling_full.fraction(full(r2)),
        valid=valid,
        backend=backend,
        predictions=None if predictions is None else full(predictions),
    )


def fit_encoding(
    activations: Mapping[str, np.ndarray],
    parts: Mapping[str, str],
    patterns,
    *,
    bands: Mapping[str, Sequence[str]] | None = None,
    n_components: int | float | None = DEFAULT_N_COMPONENTS,
    alphas=None,
    n_iter: int = DEFAULT_N_ITER,
    stimulus_folds=DEFAULT_STIMULUS_FOLDS,
    partition: bool = True,
    layer_maps: bool = True,
    halves: str = "all",
    min_reliability: float = MIN_RELIABILITY,
    device: str = "auto",
    random_state: int = 0,
    n_jobs: int | None = None,
    voxel_batch: int | None = 20000,
    return_predictions: bool = False,
) -> EncodingResult:
    """Cross-validated banded ridge encoding of voxel responses from layer features.

    Parameters
    ----------
    activations : mapping of str to ndarray of shape (n_stimuli, n_units)
        Layer name -> activations (``FeatureSet.activations``; extra axes are flattened).
        Rows follow the stimuli of ``patterns``.
    parts : mapping of str to str
        Layer name -> part (``FeatureSet.parts``); the default bands are the parts.
    patterns : ndarray of shape (n_runs, n_stimuli, n_voxels)
        Each run's response to every stimulus (see :func:`patterns_by_run`).
    bands : mapping of str to sequence of str, optional
        Band name -> layers (see :func:`make_bands`). Layers in no band are used only
        for their own per-layer map.
    n_components : int, float or None
        Features per layer (see :func:`layer_features`); default
        :data:`DEFAULT_N_COMPONENTS` principal components.
    alphas : array-like, optional
        Penalties tried (default :data:`DEFAULT_ALPHAS`), on the scale of a ridge
        fitted on the mean of the training runs.
    n_iter : int
        Band weightings tried by the random search (default :data:`DEFAULT_N_ITER`).
    stimulus_folds : None, int or array-like
        Hold stimuli out as well as runs (see :func:`encoding_folds`). Default
        :data:`DEFAULT_STIMULUS_FOLDS` groups, taken in turn: each run is predicted for
        stimuli its model never saw. None: every stimulus is in training and test, only
        runs are held out (the joint R² is then about the same, but unique and shared
        variance are biased towards shared: docs/encoding.md).
    partition : bool
        Fit the leave-one-band-out models (``r2_without``, ``unique``, ``shared``).
    layer_maps : bool
        Fit one model per layer (``layer_r2``, ``layer_r``).
    halves, min_reliability
        The noise ceiling (see :func:`noise_ceiling`).
    device : {"auto", "cpu", "cuda"}
        ``"cpu"``: himalaya's numpy backend. ``"cuda"``: its ``torch_cuda`` backend
        (an error without a CUDA device visible to torch). ``"auto"``: ``torch_cuda``
        when torch sees a CUDA device, numpy otherwise. Computations are in float64.
    random_state : int
        Seed of the random search over band weightings.
    n_jobs : int, optional
        Threads fitting folds at once on the CPU (BLAS kept to one thread each);
        None or -1: the CPUs this process may use. The results do not depend on it.
    voxel_batch : int or None
        Voxels fitted together (bounds memory: every fold's predictions of a block are
        held at once; None: all). The choices do not depend on it, the numbers only
        up to rounding.
    return_predictions : bool
        Keep the joint model's cross-validated predictions.

    Returns
    -------
    EncodingResult

    Notes
    -----
    *Folds.* Leave one run out: each run in turn is the test set, the other runs the
    training set. The **training target is the mean over the training runs' patterns**
    (each training run centred per voxel over the training stimuli); the test target
    is the held-out run, centred per voxel over its stimuli. Features are built
    inside each fold from the training stimuli only (:func:`layer_features`): per layer
    a PCA, each kept component z-scored, the layers of a band concatenated.

    *Penalties.* Chosen per voxel and per fold by an inner leave-one-run-out over the
    training runs: for each training run in turn, a ridge is fitted on the mean of the
    other training runs and scored (mean squared error) on that run. With 2 runs (one
    training run), the ridge is fitted on the training run's stimuli outside one group
    of training stimuli and scored on that group in the held-out run, each group in
    turn (the fold's test stimuli never reach the fit). With several
    bands, himalaya's random search over band weightings and penalties (the solver of
    :class:`~himalaya.kernel_ridge.MultipleKernelRidgeCV`) runs on one linear kernel
    per band: a fold has far fewer samples (stimuli) than features, so the dual
    problem is the small one whatever the number of features. With one band (per-layer
    maps, leave-one-band-out models keeping one band) the same solver runs with the
    single weighting 1, as himalaya's own ``RidgeCV`` does. The refit on the mean of
    all training runs uses the chosen penalties in closed form (himalaya's estimators
    would refit on every row of the inner cross-validation instead). ``alphas`` holds
    each band's penalty in that refit: band ``b``'s features get
    ``alphas[fold, b, voxel]``; with one band the refit is exactly
    ``sklearn.linear_model.Ridge(alpha)`` on the features and the mean target.

    *Scores.* Per held-out run: R², Pearson r and himalaya's ``r2_score_split`` of the
    joint prediction; maps are the means over runs. ``unique`` and ``shared`` come
    from :func:`variance_partition` on those means.
    """
    arr, acts, band_layers = _check_data(activations, parts, patterns, bands)
    n_components, alpha_grid = _check_n_components(n_components), _check_alphas(alphas)
    _check_settings(n_iter, voxel_batch, halves, min_reliability)
    folds = encoding_folds(arr.shape[0], arr.shape[1], stimulus_folds)
    backend_name = _solve.himalaya_backend_name(device)
    valid, y = _fitted_voxels(arr)
    map_layers = list(acts) if layer_maps else []
    fold_kernels, n_features = _fold_features(acts, band_layers, map_layers, folds, n_components)
    models = _models(band_layers, partition, map_layers)
    fit = _ModelFit(folds, fold_kernels, alpha_grid, int(n_iter), random_state, *y.shape[:2])
    maps = fit.blocks(y, models, backend_name, n_jobs, voxel_batch, return_predictions)
    ceiling = noise_ceiling(y, halves=halves, min_reliability=min_reliability)
    return _assemble(
        maps, band_layers, map_layers, partition, ceiling, valid, folds, n_features, backend_name
    )
