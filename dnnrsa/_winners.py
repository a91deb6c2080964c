"""Layers compared with each other: which layer wins at every voxel, and a valid test of
the best layer against the second best.

Re-exported by :mod:`dnnrsa.stats`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ._groupimgs import _stack_imgs
from ._scores import fisher_z
from ._signflip import SignFlipResult, sign_flip_test
from .backend import get_namespace, to_numpy

__all__ = ["LayerComparisonResult", "compare_best_layers", "layer_winner_imgs", "winner_take_all"]


def winner_take_all(maps, *, xp=None):
    """Which layer has the highest group-mean score at every voxel.

    Parameters
    ----------
    maps : array of shape (n_subjects, n_layers, n_voxels)
        Subject maps per layer (e.g. Fisher z of searchlight correlations).
    xp : module or None

    Returns
    -------
    winner : ndarray of int64, shape (n_voxels,)
        Index of the best layer (-1 where every layer's mean is NaN).
    margin : ndarray of float64, shape (n_voxels,)
        Group mean of the best layer minus that of the second best.
    """
    xp = xp or get_namespace(maps)
    maps = xp.asarray(maps, dtype=xp.float64)
    if maps.ndim != 3 or maps.shape[1] < 2:
        raise ValueError(
            f"maps must have shape (n_subjects, n_layers >= 2, n_voxels); got {maps.shape}"
        )
    mean = xp.nanmean(maps, axis=0) if xp is np else xp.mean(maps, axis=0)
    filled = xp.where(xp.isnan(mean), -xp.inf, mean)
    order = xp.argsort(-filled, axis=0)
    best, second = order[0], order[1]
    cols = xp.arange(mean.shape[1])
    margin = filled[best, cols] - filled[second, cols]
    winner = xp.where(xp.isfinite(filled[best, cols]), best, -1)
    return to_numpy(winner).astype(np.int64), to_numpy(margin).astype(np.float64)


@dataclasses.dataclass
class LayerComparisonResult:
    """Outcome of :func:`compare_best_layers`; maps have shape ``(n_voxels,)``.

    Attributes
    ----------
    winner, runner_up : ndarray of int64
        Best and second-best layer by the mean of all subjects.
    margin : ndarray
        Group-mean difference between them.
    selection_subjects, test_subjects : ndarray of int64
        Indices of the subjects that chose the two layers tested at each voxel, and
        of the (other) subjects whose differences were tested.
    selected_best, selected_second : ndarray of int64
        The two layers chosen by the selection subjects.
    differences : ndarray of shape (n_test_subjects, n_voxels)
        Best-minus-second difference of every test subject.
    test : SignFlipResult
        One-sided sign-flip test of ``differences``.
    """

    winner: np.ndarray
    runner_up: np.ndarray
    margin: np.ndarray
    selection_subjects: np.ndarray
    test_subjects: np.ndarray
    selected_best: np.ndarray
    selected_second: np.ndarray
    differences: np.ndarray
    test: SignFlipResult


def compare_best_layers(
    maps, *, selection_fraction: float = 0.5, random_state=None, **kwargs
) -> LayerComparisonResult:
    """Winner-take-all map of layers with a test of best against second best.

    Choosing the two layers and testing their difference on the same subjects
    favours the winner (the difference is positive by construction), and so does
    choosing them without each subject in turn (the differences are then no longer
    independent). Here a random subset of subjects chooses, at every voxel, the
    best and second-best layer, and the remaining subjects test the difference by
    a one-sided sign-flip test: valid, because the two sets of subjects are
    independent. The winner-take-all map itself uses all subjects.

    Parameters
    ----------
    maps : array of shape (n_subjects, n_layers, n_voxels)
        Subject maps per layer (for example Fisher z of searchlight correlations).
    selection_fraction : float
        Fraction of subjects used to choose the layers (at least one subject each
        way).
    random_state : int, numpy.random.Generator or None
        Seeds the split of subjects and the sign patterns.
    **kwargs
        Passed to :func:`sign_flip_test` (``two_sided`` is False).

    Returns
    -------
    LayerComparisonResult
    """
    host = to_numpy(maps).astype(np.float64, copy=False)
    if host.ndim != 3 or host.shape[0] < 4 or host.shape[1] < 2:
        raise ValueError(
            f"maps must have shape (n_subjects >= 4, n_layers >= 2, n_voxels); got {host.shape}"
        )
    if not 0 < selection_fraction < 1:
        raise ValueError(f"selection_fraction must lie in (0, 1); got {selection_fraction!r}")
    n_subjects, _, n_voxels = host.shape
    rng = np.random.default_rng(random_state)
    n_select = min(max(1, round(selection_fraction * n_subjects)), n_subjects - 2)
    order = rng.permutation(n_subjects)
    select, test_subj = np.sort(order[:n_select]), np.sort(order[n_select:])

    def top_two(block):
        mean = block.mean(axis=0)
        ranking = np.argsort(-np.where(np.isnan(mean), -np.inf, mean), axis=0)
        return ranking[0], ranking[1]

    winner, margin = winner_take_all(host, xp=np)
    _, runner_up = top_two(host)
    best, second = top_two(host[select])
    cols = np.arange(n_voxels)
    diffs = host[test_subj][:, best, cols] - host[test_subj][:, second, cols]
    kwargs["two_sided"] = False
    test = sign_flip_test(diffs, random_state=rng, **kwargs)
    return LayerComparisonResult(
        winner=winner,
        runner_up=runner_up.astype(np.int64),
        margin=margin,
        selection_subjects=select.astype(np.int64),
        test_subjects=test_subj.astype(np.int64),
        selected_best=best.astype(np.int64),
        selected_second=second.astype(np.int64),
        differences=diffs,
        test=test,
    )


def layer_winner_imgs(
    imgs, *, n_permutations: int = 1000, random_state=None, min_test_subjects: int = 4, **kwargs
) -> dict[str, Any]:
    """Winner-take-all map of layers from subject images, with a test where possible.

    The maps are Fisher z transformed (:func:`fisher_z`); at every voxel finite in all
    maps the best layer and its margin over the second come from all subjects, and,
    with at least ``min_test_subjects`` subjects, :func:`compare_best_layers` tests
    best against second best on subjects independent of those that chose them.

    Parameters
    ----------
    imgs : sequence (layers) of sequences (subjects) of images or paths
        ``imgs[l][s]``: the map of subject ``s`` for layer ``l``, all on one grid.
    n_permutations : int
    random_state : int, numpy.random.Generator or None
    min_test_subjects : int
        Fewest subjects for the test (the split needs at least 4).
    **kwargs
        Passed to :func:`compare_best_layers`.

    Returns
    -------
    dict of str to nibabel.Nifti1Image
        ``winner`` (int16, index of the best layer, -1 outside), ``margin`` (float32,
        0 outside) and, when tested, ``p`` (float32 FWE p, 1 outside).
    """
    import nibabel as nib

    per_layer = [list(files) for files in imgs]
    if len(per_layer) < 2:
        raise ValueError(f"a winner map needs at least 2 layers; got {len(per_layer)}")
    n_sub = len(per_layer[0])
    if any(len(files) != n_sub for files in per_layer):
        raise ValueError("every layer needs the same subjects")
    data, ref = _stack_imgs([f for files in per_layer for f in files])
    shape = ref.shape[:3]
    # (n_subjects, n_layers, n_voxels)
    maps = fisher_z(data.reshape(len(per_layer), n_sub, -1).transpose(1, 0, 2))
    inside = np.all(np.isfinite(maps), axis=(0, 1))
    comparison = None
    if n_sub >= max(4, min_test_subjects):
        comparison = compare_best_layers(
            maps[:, :, inside],
            random_state=random_state,
            n_permutations=n_permutations,
            **kwargs,
        )
        w, m = comparison.winner, comparison.margin
    else:
        w, m = winner_take_all(maps[:, :, inside])
    winner = np.full(inside.size, -1, dtype=np.int16)
    margin = np.zeros(inside.size, dtype=np.float32)
    winner[inside], margin[inside] = w, m
    out = {
        "winner": nib.Nifti1Image(winner.reshape(shape), ref.affine),
        "margin": nib.Nifti1Image(margin.reshape(shape), ref.affine),
    }
    if comparison is not None:
        p = np.ones(inside.size, dtype=np.float32)
        p[inside] = comparison.test.p_fwe
        out["p"] = nib.Nifti1Image(p.reshape(shape), ref.affine)
    return out
