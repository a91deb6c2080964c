"""Scoring searchlight maps against the planted ground truth of the demo data set.

The group-mean map of a part of the network (visual, auditory, crossmodal) is
the mean over participants and over that part's layers of the Fisher z of the
participants' searchlight scores; it should single out the region planted with
that part's kind of features. How well it does is the area under the ROC curve
(scikit-learn's :func:`~sklearn.metrics.roc_auc_score`) of the map's values for
the voxels inside a region against all other scored voxels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..bidsnames import read_json, sidecar_path

#: Parts of the network, as named in the ``Part`` field of the map sidecars.
PARTS = ("visual", "auditory", "crossmodal")


def region_auc(scores: np.ndarray, in_region: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for the voxels ``in_region``.

    Parameters
    ----------
    scores : ndarray of shape (n_voxels,)
    in_region : ndarray of bool, shape (n_voxels,)

    Returns
    -------
    float
        NaN when every voxel lies inside the region or none does.
    """
    from sklearn.metrics import roc_auc_score

    in_region = np.asarray(in_region, dtype=bool)
    if in_region.all() or not in_region.any():
        return float("nan")
    return float(roc_auc_score(in_region, np.asarray(scores, dtype=float)))


def groundtruth_auc(part_maps: dict[str, np.ndarray], region_masks: dict[str, np.ndarray]):
    """AUC of every part's map against every planted region.

    Parameters
    ----------
    part_maps : dict of part -> ndarray
        Group-mean map of each part (any shape; NaN where not scored).
    region_masks : dict of region -> ndarray of bool
        Planted region masks of the same shape as the maps.

    Returns
    -------
    pandas.DataFrame
        Rows: the parts (index named ``layers``); columns: the regions; values:
        AUC of the voxels in the region against all other voxels that have a score.
    """
    import pandas as pd

    rows = {}
    for part, mean in part_maps.items():
        scored = np.isfinite(mean)
        rows[part] = {
            region: region_auc(mean[scored], np.asarray(mask, dtype=bool)[scored])
            for region, mask in region_masks.items()
        }
    return pd.DataFrame(rows).T.rename_axis("layers")


def part_mean_maps(derivatives: Path, *, task: str, space: str):
    """Mean Fisher z map of each part's layers over the participants' searchlight maps.

    Parameters
    ----------
    derivatives : Path
        Output folder of the BIDS App (participant level).
    task, space : str

    Returns
    -------
    maps : dict of part -> ndarray (X, Y, Z)
        Only the parts that have maps, in the order of :data:`PARTS`.
    affine : ndarray of shape (4, 4) or None
    """
    import nibabel as nib

    from ..stats import fisher_z

    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    affine = None
    pattern = f"sub-*/func/sub-*_task-{task}_space-{space}_model-*_layer-*_statmap.nii.gz"
    for path in sorted(Path(derivatives).glob(pattern)):
        side = read_json(sidecar_path(path))
        part = side.get("Part")
        if part not in PARTS:
            continue
        img = nib.load(path)
        affine = img.affine
        z = fisher_z(np.asarray(img.dataobj, dtype=np.float64))
        sums[part] = sums.get(part, 0.0) + z
        counts[part] = counts.get(part, 0) + 1
    maps = {part: sums[part] / counts[part] for part in PARTS if part in sums}
    return maps, affine


def _mask_on_grid(mask_path: Path, shape, affine) -> np.ndarray:
    """A region mask as booleans on the maps' grid (resampled, nearest, when needed)."""
    import nibabel as nib

    mask_img = nib.load(mask_path)
    if mask_img.shape[:3] != tuple(shape) or not np.allclose(mask_img.affine, affine, atol=1e-3):
        from nilearn.image import resample_to_img

        mask_img = resample_to_img(
            mask_img,
            nib.Nifti1Image(np.zeros(shape, dtype=np.float32), affine),
            interpolation="nearest",
            force_resample=True,
            copy_header=True,
        )
    return np.asarray(mask_img.dataobj) > 0


def evaluate_groundtruth(derivatives: Path, groundtruth: dict[str, Path], *, task: str, space: str):
    """AUC of each part's group-mean map against every planted region mask.

    The group-mean map of a part is the mean over subjects and over that part's
    layers of the Fisher z of the participants' searchlight scores.

    Parameters
    ----------
    derivatives : Path
        Output folder of the BIDS App.
    groundtruth : dict of region -> path of the planted region mask
    task, space : str

    Returns
    -------
    pandas.DataFrame
        Rows: layer groups (visual, auditory, crossmodal); columns: the planted
        regions; values: AUC (voxels in the region against all other voxels that
        have a score).
    """
    maps, affine = part_mean_maps(derivatives, task=task, space=space)
    if not maps:
        return groundtruth_auc({}, {})
    shape = next(iter(maps.values())).shape
    masks = {region: _mask_on_grid(path, shape, affine) for region, path in groundtruth.items()}
    return groundtruth_auc(maps, masks)
