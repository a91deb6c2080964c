"""The brain mask of a set of fMRI runs: which voxels are analysed, and what was left out.

:func:`brain_mask` computes nilearn's multi-run EPI mask from the runs (or takes a
given mask), excludes every voxel with a NaN or infinite sample in any run, keeps the
largest connected piece of a computed mask, and counts what each step removed
(:class:`BrainMask`); :func:`save_brain_mask` writes the mask with those counts as its
JSON sidecar. A mask that loses more than :data:`MAX_MASK_LOSS` of its candidate
voxels is logged as a warning naming the runs.

The loaders of runs and masks shared with :mod:`dnnrsa.glm` live here too, below it;
:mod:`dnnrsa.glm` re-exports the public names.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._io import atomic_save_nifti
from ._masks import load_mask
from .bidsnames import sidecar_path, write_json

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_MASK_LOSS",
    "BrainMask",
    "brain_mask",
    "save_brain_mask",
]

#: Fraction of the candidate brain voxels a mask may lose before a warning.
MAX_MASK_LOSS = 0.2


# ---------------------------------------------------------------------------
# loading runs and masks
# ---------------------------------------------------------------------------


def _as_list(value, name):
    if isinstance(value, str | os.PathLike) or not isinstance(value, Sequence):
        return [value]
    if len(value) == 0:
        raise ValueError(f"{name} must not be empty")
    return list(value)


def _load_runs(run_imgs):
    from nilearn.image import load_img

    runs = []
    for i, run in enumerate(_as_list(run_imgs, "run_imgs")):
        try:
            img = load_img(run)
        except Exception as exc:
            raise ValueError(f"run_imgs[{i}] could not be loaded: {run!r} ({exc})") from exc
        if len(img.shape) != 4:
            raise ValueError(
                f"run_imgs[{i}] must be a 4D image (x, y, z, time); got shape {img.shape}"
                + (f" from {run!r}" if isinstance(run, str | os.PathLike) else "")
            )
        if img.shape[3] < 2:
            raise ValueError(f"run_imgs[{i}] has {img.shape[3]} volume(s); need at least 2")
        runs.append(img)
    return runs


# ---------------------------------------------------------------------------
# the brain mask
# ---------------------------------------------------------------------------


@dataclass
class BrainMask:
    """The brain mask of a set of runs, and what it left out.

    Attributes
    ----------
    img : nibabel.Nifti1Image
        The mask (uint8, 1 inside) on the grid of the runs or of the given mask.
    source : {"computed", "given"}
        Computed from the runs (nilearn's multi-run EPI mask) or given by the user.
    n_voxels : int
        Voxels in the mask.
    n_candidates : int
        Voxels that pass the mask's own intensity threshold before any connectivity
        pruning (computed masks) or that lie in the given mask.
    n_nonfinite : int
        Candidate voxels excluded because one of their samples, in any run, is NaN
        or infinite.
    n_pruned : int
        Candidate voxels dropped because they lie outside the largest connected piece.
    nonfinite_per_run : list of int
        Voxels of each run with a non-finite sample (anywhere in the volume).
    runs : list of str
        The name of each run (its path when it was given as one).
    """

    img: Any
    source: str
    n_voxels: int
    n_candidates: int
    n_nonfinite: int
    n_pruned: int
    nonfinite_per_run: list[int] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)

    @property
    def lost_fraction(self) -> float:
        """Fraction of the candidate voxels that are not in the mask."""
        return 1.0 - self.n_voxels / self.n_candidates if self.n_candidates else 0.0

    def sidecar(self) -> dict:
        """The JSON sidecar of the mask derivative: its source and its counts."""
        return {
            "Type": "Brain",
            "MaskSource": (
                "computed from the runs (nilearn compute_multi_epi_mask)"
                if self.source == "computed"
                else "given (preprocessed derivatives)"
            ),
            "MaskVoxels": self.n_voxels,
            "CandidateVoxels": self.n_candidates,
            "NonFiniteVoxelsExcluded": self.n_nonfinite,
            "NonFiniteVoxelsPerRun": list(self.nonfinite_per_run),
            "PrunedVoxels": self.n_pruned,
            "LostFraction": round(self.lost_fraction, 6),
            "LossWarningThreshold": MAX_MASK_LOSS,
            "Runs": list(self.runs),
        }


def _run_name(run, i: int) -> str:
    return os.fspath(run) if isinstance(run, str | os.PathLike) else f"run {i + 1}"


def _nonfinite_voxels(img) -> np.ndarray:
    """Voxels of a 4D image with at least one NaN or infinite sample."""
    data = np.asanyarray(img.dataobj)
    if np.issubdtype(data.dtype, np.integer):
        return np.zeros(img.shape[:3], dtype=bool)
    return ~np.all(np.isfinite(data), axis=-1)


def _finite_img(img, bad: np.ndarray):
    """A copy of a 4D image whose voxels in ``bad`` hold the mean of their finite samples.

    Used only to find the intensity threshold of the mask: those voxels are excluded
    from the mask, so no pattern is ever computed from the filled values.
    """
    import nibabel as nib

    data = np.array(img.dataobj, dtype=np.float64)
    series = data[bad]
    finite = np.isfinite(series)
    counts = finite.sum(axis=1)
    sums = np.where(finite, series, 0.0).sum(axis=1)
    fill = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    data[bad] = fill[:, None]
    return nib.Nifti1Image(data, img.affine)


def _largest_piece(mask: np.ndarray) -> np.ndarray:
    """The largest face-connected piece of a boolean mask (as nilearn keeps it)."""
    from scipy import ndimage

    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask.copy()
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def _on_grid(bad: np.ndarray, img, target):
    """The voxels of ``bad`` (on the grid of ``img``) on the grid of ``target``."""
    if bad.shape == target.shape[:3] and np.allclose(img.affine, target.affine):
        return bad
    import nibabel as nib
    from nilearn.image import resample_to_img

    moved = resample_to_img(
        nib.Nifti1Image(bad.astype(np.float32), img.affine),
        target,
        interpolation="nearest",
        force_resample=True,
        copy_header=True,
    )
    return np.asanyarray(moved.dataobj) > 0


def brain_mask(
    run_imgs: Any,
    mask_img: Any = None,
    *,
    names: Sequence[str] | None = None,
    max_loss: float = MAX_MASK_LOSS,
) -> BrainMask:
    """The mask of the voxels analysed, with every non-finite voxel excluded and counted.

    Without ``mask_img`` the mask is nilearn's multi-run EPI mask
    (:func:`nilearn.masking.compute_multi_epi_mask`, the largest connected piece of
    the voxels whose mean intensity passes its threshold). With or without it, a
    voxel with a NaN or infinite sample in any run is excluded (and the largest
    connected piece of a computed mask is taken again). The exclusions are logged;
    a mask that loses more than ``max_loss`` of its candidate voxels (those passing
    the intensity threshold before connectivity pruning, or those of the given mask)
    is logged as a WARNING naming the runs.

    Parameters
    ----------
    run_imgs : Niimg-like or list of Niimg-like
        4D BOLD image of each run, all on the same grid.
    mask_img : Niimg-like, optional
        A given brain mask (e.g. from preprocessed derivatives).
    names : sequence of str, optional
        Names of the runs in messages (their paths by default).
    max_loss : float, default=0.2
        Largest fraction of candidate voxels lost without a warning.

    Returns
    -------
    BrainMask

    Raises
    ------
    ValueError
        When the runs cannot be loaded or no voxel is left.
    """
    import nibabel as nib

    runs = _as_list(run_imgs, "run_imgs")
    if names is None:
        names = [_run_name(run, i) for i, run in enumerate(runs)]
    names = [str(n) for n in names]
    imgs = _load_runs(runs)
    bad_runs = [_nonfinite_voxels(img) for img in imgs]
    bad = np.logical_or.reduce(bad_runs)
    if mask_img is not None:
        given, candidates = load_mask(mask_img, require_voxels=True)
        bad_here = _on_grid(bad, imgs[0], given) if bad.any() else np.zeros_like(candidates)
        kept = candidates & ~bad_here
        affine, source = given.affine, "given"
    else:
        from nilearn.masking import compute_multi_epi_mask

        clean = [
            _finite_img(img, b) if b.any() else img for img, b in zip(imgs, bad_runs, strict=True)
        ]
        candidates = np.asanyarray(compute_multi_epi_mask(clean, connected=False).dataobj) > 0
        kept = (np.asanyarray(compute_multi_epi_mask(clean).dataobj) > 0) & candidates
        if bad.any():
            kept = _largest_piece(kept & ~bad)
        bad_here = bad
        affine, source = imgs[0].affine, "computed"
    n_candidates = int(candidates.sum())
    n_nonfinite = int((candidates & bad_here).sum())
    n_voxels = int(kept.sum())
    info = BrainMask(
        img=nib.Nifti1Image(kept.astype(np.uint8), affine),
        source=source,
        n_voxels=n_voxels,
        n_candidates=n_candidates,
        n_nonfinite=n_nonfinite,
        n_pruned=n_candidates - n_nonfinite - n_voxels,
        nonfinite_per_run=[int(b.sum()) for b in bad_runs],
        runs=names,
    )
    where = ", ".join(names)
    if n_nonfinite:
        logger.warning(
            "brain mask of %s: excluded %d voxel(s) with NaN or infinite samples (per run: %s)",
            where,
            n_nonfinite,
            info.nonfinite_per_run,
        )
    if n_voxels == 0:
        raise ValueError(
            f"the brain mask of {where} is empty: {n_candidates} candidate voxels, "
            f"{n_nonfinite} of them with NaN or infinite samples"
        )
    logger.info(
        "brain mask (%s) of %d voxels: %d candidates, %d non-finite excluded, %d pruned",
        source,
        n_voxels,
        n_candidates,
        n_nonfinite,
        info.n_pruned,
    )
    if info.lost_fraction > max_loss:
        logger.warning(
            "brain mask of %s lost %.0f%% of its %d candidate voxels (more than %.0f%%): "
            "%d with NaN or infinite samples, %d outside the largest connected piece; "
            "check the data (zeroed or NaN slices) or give a brain mask",
            where,
            100 * info.lost_fraction,
            n_candidates,
            100 * max_loss,
            n_nonfinite,
            info.n_pruned,
        )
    return info


def save_brain_mask(
    info: BrainMask, path: str | os.PathLike, *, sources: Sequence[str] | None = None
):
    """Write a brain mask atomically with its JSON sidecar (source and counts).

    With ``sources`` (the runs), the sidecar lists them and names the first as the
    mask's ``SpatialReference``.

    Returns
    -------
    pathlib.Path
        The mask file.
    """
    out = atomic_save_nifti(info.img, path)
    sidecar = info.sidecar()
    if sources:
        sidecar["Sources"] = [str(s) for s in sources]
        # the grid of the runs (BIDS requires a reference for non-template spaces)
        sidecar["SpatialReference"] = str(sources[0])
    write_json(sidecar_path(out), sidecar)
    return out
