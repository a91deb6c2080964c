"""Regions of interest: masks on the BOLD grid, their voxels' patterns and their RDMs.

A region is given as a mask image (any grid, any data type) or as a label of the
Harvard-Oxford atlas (MNI space, read offline from the atlas files that
:mod:`dnnrsa.atlas` uses). A mask is taken to the grid of the BOLD data by nearest
neighbour and binarised (every finite, non-zero value is inside). A region needs at
least :data:`MIN_ROI_VOXELS` voxels inside the brain mask after resampling.

Arrays and images in, arrays out; reading and writing files belongs to the callers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: The fewest voxels a region may keep on the BOLD grid, inside the brain mask.
MIN_ROI_VOXELS = 10
#: Atlases from which regions can be taken by label (``--roi-atlas``).
ROI_ATLASES = ("harvard-oxford",)
#: A voxel of a probabilistic atlas belongs to its most probable label when that
#: probability reaches this many percent (the common "maxprob-thr25" regions).
ATLAS_PROB_THRESHOLD = 25.0

__all__ = [
    "ATLAS_PROB_THRESHOLD",
    "MIN_ROI_VOXELS",
    "ROI_ATLASES",
    "RoiCheck",
    "atlas_labels",
    "atlas_region",
    "check_roi",
    "extract_patterns",
    "resample_mask",
    "roi_rdm",
    "weighted_model_sets",
]


def _load(img):
    import nibabel as nib

    return nib.load(str(img)) if not hasattr(img, "affine") else img


def resample_mask(mask_img, target_img) -> np.ndarray:
    """A mask taken to the grid of ``target_img`` (nearest neighbour) and binarised.

    Parameters
    ----------
    mask_img : path or nibabel image (3D, or 4D with one volume)
    target_img : path or nibabel image whose first three dimensions and affine give the grid

    Returns
    -------
    boolean array of the target's first three dimensions: finite, non-zero values.
    """
    import nibabel as nib
    from nilearn.image import resample_img

    mask, target = _load(mask_img), _load(target_img)
    data = np.asanyarray(mask.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"a region mask must be a 3D image; got shape {data.shape}")
    inside = (np.isfinite(data) & (data != 0)).astype(np.uint8)
    shape = tuple(int(n) for n in target.shape[:3])
    if shape == inside.shape and np.allclose(mask.affine, target.affine, atol=1e-5):
        return inside.astype(bool)
    src = nib.Nifti1Image(inside, mask.affine)
    out = resample_img(
        src,
        target_affine=target.affine,
        target_shape=shape,
        interpolation="nearest",
        force_resample=True,
        copy_header=True,
    )
    return np.asarray(out.dataobj) > 0


def extract_patterns(patterns, mask: np.ndarray) -> np.ndarray:
    """The patterns of the voxels in ``mask``: an array (n_volumes, n_voxels).

    ``patterns`` is a 4D array or image (x, y, z, volume) on the mask's grid; voxels
    are in the order of ``patterns[mask]`` (C order of the grid).
    """
    data = (
        np.asanyarray(_load(patterns).dataobj) if not isinstance(patterns, np.ndarray) else patterns
    )
    mask = np.asarray(mask, dtype=bool)
    if data.ndim == 3:
        data = data[..., None]
    if data.shape[:3] != mask.shape:
        raise ValueError(f"patterns of grid {data.shape[:3]} and a mask of {mask.shape} differ")
    return np.asarray(data[mask], dtype=np.float64).T


@dataclass(frozen=True)
class RoiCheck:
    """A region on a BOLD grid: its voxels and how many lie in the brain."""

    name: str
    mask: np.ndarray  #: boolean, on the BOLD grid, inside the brain
    n_grid: int  #: voxels of the mask on the BOLD grid (before the brain mask)
    n_voxels: int  #: voxels on the grid and inside the brain


def check_roi(
    name: str, mask_img, target_img, brain=None, *, min_voxels: int = MIN_ROI_VOXELS
) -> RoiCheck:
    """Resample a region to the BOLD grid and refuse it when it cannot be used.

    Raises ValueError, naming the region, when no voxel of it lies in the brain mask
    (the mask is probably in another space) or when fewer than ``min_voxels`` do.
    ``brain`` is a boolean array on the target grid (default: the whole grid).
    """
    mask = resample_mask(mask_img, target_img)
    n_grid = int(mask.sum())
    if brain is not None:
        brain = np.asarray(brain, dtype=bool)
        mask = mask & brain
    n = int(mask.sum())
    if n == 0:
        where = "the BOLD grid" if n_grid == 0 else "the brain mask"
        raise ValueError(
            f"ROI {name}: no voxel of the region lies in {where} ({n_grid} on the grid); "
            "is the mask in the space of the BOLD data?"
        )
    if n < min_voxels:
        raise ValueError(
            f"ROI {name}: {n} voxel(s) inside the brain on the BOLD grid after nearest-"
            f"neighbour resampling, fewer than the minimum of {min_voxels}"
        )
    return RoiCheck(name=name, mask=mask, n_grid=n_grid, n_voxels=n)


def roi_rdm(
    patterns,
    roi_mask: np.ndarray,
    *,
    conditions: Sequence,
    runs: Sequence | None = None,
    metric: str = "correlation",
) -> tuple[np.ndarray, list[str], int]:
    """The RDM of a region from the patterns of its voxels.

    Voxels with a non-finite value in any volume are left out. Conditions are
    ordered as :func:`dnnrsa.rdm.compute_rdm` orders them (sorted labels).

    Returns
    -------
    (rdm, labels, n_voxels)
    """
    from .rdm import compute_rdm

    x = extract_patterns(patterns, roi_mask)
    x = x[:, np.isfinite(x).all(axis=0)]
    if x.shape[1] == 0:
        raise ValueError("no voxel of the region has finite patterns")
    conditions = np.asarray(conditions).astype(str)
    rdm = compute_rdm(
        x,
        metric,
        conditions=conditions,
        runs=None if runs is None else np.asarray(runs),
    )
    return np.asarray(rdm, dtype=np.float64), sorted(set(conditions.tolist())), int(x.shape[1])


def atlas_labels(atlas: str = "harvard-oxford") -> list[str]:
    """The region labels of an atlas (``--roi-labels`` accepts these)."""
    from .atlas import _load_atlas

    _, _, _, names = _load_atlas(_atlas_key(atlas))
    return [names[i] for i in sorted(names)]


def _atlas_key(atlas: str) -> str:
    from .atlas import atlas_id

    if atlas not in ROI_ATLASES:
        raise ValueError(f"atlas must be one of {list(ROI_ATLASES)}; got {atlas!r}")
    return atlas_id(atlas)


def atlas_region(label: str, atlas: str = "harvard-oxford", *, prob_threshold=ATLAS_PROB_THRESHOLD):
    """A region of an atlas as a mask image in the atlas's (MNI) space.

    For a probabilistic atlas, a voxel is in the region when the label is its most
    probable one with a probability of at least ``prob_threshold`` percent. Raises
    ValueError naming an unknown label.
    """
    import nibabel as nib

    from .atlas import _load_atlas

    index, prob, affine, names = _load_atlas(_atlas_key(atlas))
    by_name = {v: k for k, v in names.items()}
    if label not in by_name:
        close = [n for n in by_name if label.lower().replace(" ", "_") in n.lower()][:5]
        hint = f"; did you mean {close}?" if close else ""
        raise ValueError(f"ROI {label}: not a label of the {atlas} atlas{hint}")
    inside = index == by_name[label]
    if prob is not None:
        inside &= prob >= prob_threshold
    return nib.Nifti1Image(inside.astype(np.uint8), affine)


def weighted_model_sets(
    names: Sequence[str], networks: Sequence[str], parts: Sequence[str]
) -> list[tuple[str, list[int]]]:
    """The weighted models evaluated in a region, as (name, indices of the model RDMs).

    For each network (``model-<m>``): all its RDMs together, and the RDMs of each of
    its parts (``model-<m>_part-<p>``, e.g. one arm); across networks, every RDM
    together (``all``). Only sets of at least two RDMs are kept, each set once (under
    its first name), so that a combination can be compared with each part alone.
    """
    from .bidsnames import build_stem, to_label

    if not len(names) == len(networks) == len(parts):
        raise ValueError("names, networks and parts need one entry per model RDM")
    candidates: list[tuple[str, list[int]]] = []
    for net in dict.fromkeys(networks):
        members = [i for i, n in enumerate(networks) if n == net]
        candidates.append((build_stem({"model": net}), members))
        for part in dict.fromkeys(parts[i] for i in members):
            label = to_label(part, fallback="part")
            chosen = [i for i in members if parts[i] == part]
            candidates.append((build_stem({"model": net, "part": label}), chosen))
    candidates.append(("all", list(range(len(names)))))
    out, seen = [], set()
    for name, members in candidates:
        key = tuple(members)
        if len(members) >= 2 and key not in seen:
            seen.add(key)
            out.append((name, members))
    return out
