"""The fits behind :mod:`dnnrsa.encoding`: layer features, folds, and himalaya's solvers.

Private: :mod:`dnnrsa.encoding` holds the public functions and documents the choices.
Everything here works on numpy arrays; himalaya's backend is switched only inside
:func:`himalaya_backend` and restored afterwards.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass

import numpy as np

#: Relative size below which an eigenvalue of a layer's centred Gram matrix counts as
#: zero (the layer's rank on the training stimuli).
RANK_TOLERANCE = 1e-10
#: Units of a layer multiplied at once when its Gram matrix is built (bounds memory).
GRAM_CHUNK_UNITS = 65536


# --------------------------------------------------------------------------- backend
def himalaya_backend_name(device: str) -> str:
    """The himalaya backend for a dnnrsa device: ``"numpy"`` on the CPU, ``"torch_cuda"``
    when torch sees a CUDA device (``device="auto"`` or ``"cuda"``)."""
    from .backend import DEVICES

    if device not in DEVICES:
        raise ValueError(f"device must be one of {list(DEVICES)}; got {device!r}")
    if device == "cpu":
        return "numpy"
    from .features import torch_device

    return "torch_cuda" if torch_device(device) == "cuda" else "numpy"


@contextlib.contextmanager
def himalaya_backend(name: str):
    """Use himalaya's backend ``name`` inside the block, then restore the previous one.

    himalaya keeps its backend in a module-level variable: two threads fitting at once
    with different backends would see each other's choice.
    """
    from himalaya.backend import get_backend, set_backend

    before = get_backend().name
    module = set_backend(name, on_error="raise")
    try:
        yield module
    finally:
        set_backend(before, on_error="raise")


def to_numpy(backend, x) -> np.ndarray:
    return np.asarray(backend.to_numpy(x), dtype=np.float64)


# --------------------------------------------------------------------------- layer features
def gram(x: np.ndarray) -> np.ndarray:
    """``x @ x.T`` in float64, multiplying at most :data:`GRAM_CHUNK_UNITS` units at once."""
    n, n_units = x.shape
    out = np.zeros((n, n), dtype=np.float64)
    for start in range(0, n_units, GRAM_CHUNK_UNITS):
        block = np.asarray(x[:, start : start + GRAM_CHUNK_UNITS], dtype=np.float64)
        out += block @ block.T
    return out


def centred_gram(g: np.ndarray, train: np.ndarray) -> np.ndarray:
    """The Gram matrix of the rows after subtracting the mean of the training rows.

    With ``mu`` the mean of the rows ``train`` of ``x`` and ``g = x @ x.T``, returns
    ``(x - mu) @ (x - mu).T`` from ``g`` alone.
    """
    a = g[:, train].mean(axis=1)
    d = g[np.ix_(train, train)].mean()
    return g - a[:, None] - a[None, :] + d


def n_kept(eigenvalues: np.ndarray, n_components) -> int:
    """How many leading components to keep (eigenvalues in descending order): at most
    the rank (eigenvalues above :data:`RANK_TOLERANCE` times the largest); an int caps
    the number, a float is the share of the variance to reach."""
    if eigenvalues.size == 0 or not eigenvalues[0] > 0:
        return 0
    rank = int(np.count_nonzero(eigenvalues > eigenvalues[0] * RANK_TOLERANCE))
    if isinstance(n_components, float):
        share = np.cumsum(eigenvalues[:rank]) / eigenvalues[:rank].sum()
        return int(min(rank, np.searchsorted(share, n_components - 1e-12) + 1))
    return int(min(rank, n_components))


def pca_features(g: np.ndarray, train: np.ndarray, n_components) -> np.ndarray:
    """Whitened PCA scores of every row, the PCA fitted on the training rows only.

    ``g`` is the raw Gram matrix of the layer (all stimuli). The components are those
    of the training rows centred on their mean; every row is centred with the training
    mean and projected on them; each score is divided by its standard deviation over
    the training rows (ddof 0), so every kept component has mean 0 and variance 1 on
    the training stimuli.
    """
    gc = centred_gram(g, train)
    lam, u = np.linalg.eigh(gc[np.ix_(train, train)])
    order = np.argsort(lam)[::-1]
    lam, u = lam[order], u[:, order]
    k = n_kept(lam, n_components)
    m = len(train)
    # scores = gc[:, train] @ u / sqrt(lam); their training std is sqrt(lam / m)
    return gc[:, train] @ u[:, :k] * (np.sqrt(m) / lam[:k])


def zscored_units(x: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Every unit centred and scaled by its training mean and std (ddof 0); units
    constant on the training stimuli are left out."""
    x = np.asarray(x, dtype=np.float64)
    mu = x[train].mean(axis=0)
    sd = x[train].std(axis=0)
    keep = sd > 0
    return (x[:, keep] - mu[keep]) / sd[keep]


# --------------------------------------------------------------------------- folds
@dataclass(frozen=True)
class Fold:
    """One outer fit: trained on ``train_runs`` x ``train_stimuli``, tested on
    ``test_run`` x ``test_stimuli``."""

    test_run: int
    train_runs: tuple[int, ...]
    train_stimuli: np.ndarray
    test_stimuli: np.ndarray
    #: The group label of each training stimulus (None: stimuli are not held out).
    train_groups: np.ndarray | None = None


def inner_rows(y: np.ndarray, fold: Fold):
    """The rows himalaya's inner cross-validation runs on, for one outer fold.

    Each training run is centred per voxel over the fold's training stimuli. Inner
    split ``i`` trains on the mean of the other training runs and validates on
    training run ``i``; both are laid out as rows (one per training stimulus), so that
    himalaya's splitter can pick them: rows ``[i * m, (i + 1) * m)`` hold the mean of
    the runs other than ``i``, rows ``[(k + i) * m, (k + i + 1) * m)`` run ``i`` itself
    (``k`` training runs, ``m`` training stimuli). When stimuli are held out
    (``fold.train_groups``), split ``i`` also validates on one group of training
    stimuli only (the groups taken in turn) and trains on the other groups. With one
    training run (two runs in all) split ``i`` trains on the training run's stimuli
    outside group ``i`` and validates on group ``i`` of the held-out run: rows
    ``[0, m)`` hold the training run, rows ``[m, 2m)`` the held-out run's training
    stimuli (centred over them), never its test stimuli. Validating across runs as the
    outer fold tests keeps the noise that trials of one run share out of the choice.

    Returns
    -------
    row_stimuli : ndarray of shape (2 * k * m,) (``2 * m`` with one training run)
        Position, among the training stimuli, of each row's stimulus.
    rows : ndarray of shape (2 * k * m, n_voxels) (``(2 * m, n_voxels)``, one training run)
    splits : list of (train_rows, validation_rows)
    mean : ndarray of shape (m, n_voxels)
        The mean of the centred training runs: the target of the refit.
    """
    k, m = len(fold.train_runs), len(fold.train_stimuli)
    runs = y[np.ix_(list(fold.train_runs), fold.train_stimuli)]
    runs = runs - runs.mean(axis=1, keepdims=True)
    mean = runs.mean(axis=0)
    if k == 1:
        # one training run: split i trains on its stimuli outside group i and validates
        # on group i of the held-out run (its other stimuli than the fold's test group)
        labels = fold.train_groups
        if labels is None:
            raise ValueError("one training run needs groups of stimuli to hold out")
        other = y[fold.test_run, fold.train_stimuli]
        other = other - other.mean(axis=0, keepdims=True)
        rows = np.concatenate([mean, other])
        splits = [
            (np.flatnonzero(labels != g), m + np.flatnonzero(labels == g))
            for g in np.unique(labels)
        ]
        return np.tile(np.arange(m), 2), rows, splits, mean
    others = (k * mean[None] - runs) / (k - 1)
    rows = np.concatenate([others.reshape(k * m, -1), runs.reshape(k * m, -1)])
    row_stimuli = np.tile(np.arange(m), 2 * k)
    splits = []
    groups = None if fold.train_groups is None else np.unique(fold.train_groups)
    for i in range(k):
        train = np.arange(i * m, (i + 1) * m)
        val = np.arange((k + i) * m, (k + i + 1) * m)
        if groups is not None:
            held = fold.train_groups == groups[i % len(groups)]
            train, val = train[~held], val[held]
        splits.append((train, val))
    return row_stimuli, rows, splits, mean


# --------------------------------------------------------------------------- solvers
def select_deltas(
    kernels: np.ndarray,
    fold: Fold,
    y: np.ndarray,
    *,
    alphas: np.ndarray,
    n_iter: int,
    random_state,
    backend,
) -> tuple[np.ndarray, np.ndarray]:
    """Band weightings and penalty per voxel, by himalaya's random search.

    Parameters
    ----------
    kernels : ndarray of shape (n_bands, n_stimuli, n_stimuli)
        Linear kernels of the bands' features over all stimuli.
    y : ndarray of shape (n_runs, n_stimuli, n_voxels)

    Returns
    -------
    deltas : ndarray of shape (n_bands, n_voxels)
        himalaya's log kernel weights: band ``b`` is weighted by ``exp(deltas[b])``
        in a kernel ridge of penalty 1, i.e. its features get the penalty
        ``exp(-deltas[b])``.
    mean : ndarray of shape (m, n_voxels)
        The refit's target (:func:`inner_rows`).
    """
    from himalaya.kernel_ridge import solve_multiple_kernel_ridge_random_search

    row_stimuli, rows, splits, mean = inner_rows(y, fold)
    pos = fold.train_stimuli[row_stimuli]
    ks = kernels[:, pos[:, None], pos[None, :]]
    # one band: the single weighting 1, as himalaya's own RidgeCV does
    gammas = np.ones((1, 1)) if len(kernels) == 1 else int(n_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        deltas, _, _ = solve_multiple_kernel_ridge_random_search(
            ks,
            rows,
            n_iter=gammas,
            alphas=np.asarray(alphas, dtype=np.float64),
            cv=splits,
            return_weights=None,
            random_state=random_state,
            progress_bar=False,
        )
    return to_numpy(backend, deltas), mean


def refit_predict(
    kernels: np.ndarray, fold: Fold, mean: np.ndarray, deltas: np.ndarray
) -> np.ndarray:
    """Each band's prediction of the test stimuli from a kernel ridge refitted on ``mean``.

    For each voxel, with ``K = sum_b exp(deltas[b]) K_b`` on the training stimuli, the
    dual weights solve ``(K + I) w = mean`` and band ``b`` predicts
    ``exp(deltas[b]) K_b[test, train] @ w``: a ridge on the concatenated features
    with penalty ``exp(-deltas[b])`` on band ``b``'s. Voxels sharing their deltas are
    solved together.

    Returns
    -------
    ndarray of shape (n_bands, n_test_stimuli, n_voxels)
    """
    train, test = fold.train_stimuli, fold.test_stimuli
    k_train = kernels[:, train[:, None], train[None, :]]
    k_test = kernels[:, test[:, None], train[None, :]]
    out = np.empty((len(kernels), len(test), mean.shape[1]))
    combos, which = np.unique(deltas, axis=1, return_inverse=True)
    which = np.ravel(which)
    eye = np.eye(len(train))
    for j in range(combos.shape[1]):
        voxels = np.flatnonzero(which == j)
        scale = np.exp(combos[:, j])
        k = np.tensordot(scale, k_train, axes=1)
        w = np.linalg.solve(k + eye, mean[:, voxels])
        out[:, :, voxels] = np.einsum("b,bts,sv->btv", scale, k_test, w)
    return out
