"""Regions of interest: masks on the BOLD grid, their voxels' patterns and their RDMs.

A region is given as a mask image (any grid, any data type) or as a label of the
Harvard-Oxford atlas (MNI space, read offline from the atlas files that
:mod:`dnnrsa.atlas` uses). A mask is taken to the grid of the BOLD data by nearest
neighbour and binarised (every finite, non-zero value is inside). A region needs at
least :data:`MIN_ROI_VOXELS` voxels inside the brain mask after resampling.

Arrays and images in, arrays out; reading and writing files belongs to the callers,
except :func:`read_roi_rdms`, which reads the RDM tables a region's evaluation compares
and decides which of them it can use (:func:`usable_subject_rdms`,
:func:`usable_model_rdms`, :func:`min_roi_subjects`). :func:`weighted_model_table`
evaluates the weighted models of a region (:func:`weighted_model_sets`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ._masks import load_mask

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
    "WEIGHTED_COLUMNS",
    "RoiCheck",
    "RoiRDMs",
    "atlas_labels",
    "atlas_region",
    "check_roi",
    "extract_patterns",
    "min_roi_subjects",
    "read_roi_rdms",
    "resample_mask",
    "roi_rdm",
    "usable_model_rdms",
    "usable_subject_rdms",
    "weighted_model_sets",
    "weighted_model_table",
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

    mask, inside = load_mask(mask_img, name="a region mask")
    target = _load(target_img)
    inside = inside.astype(np.uint8)
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
    are in the order of ``patterns[mask]`` (C order of the grid). Of an image (or its
    file) only the box around the mask's voxels is read, through its data proxy (an
    uncompressed file is not read beyond it); the values are those of the whole image
    read at once, in float64.
    """
    mask = np.asarray(mask, dtype=bool)
    if isinstance(patterns, np.ndarray):
        data, shape = patterns, patterns.shape
    else:
        data = _load(patterns).dataobj
        shape = tuple(int(n) for n in data.shape)
    if len(shape) == 3:
        shape = (*shape, 1)
    if shape[:3] != mask.shape:
        raise ValueError(f"patterns of grid {shape[:3]} and a mask of {mask.shape} differ")
    box = _bounding_box(mask)
    block = np.asanyarray(data[box])  # (x, y, z[, volume]) of the box only
    if block.ndim == 3:
        block = block[..., None]
    return np.asarray(block[mask[box]], dtype=np.float64).T


def _bounding_box(mask: np.ndarray) -> tuple[slice, slice, slice]:
    """The smallest box (three slices) holding every voxel of ``mask`` (empty: no voxel)."""
    box = []
    for axis in range(3):
        inside = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        box.append(slice(int(inside[0]), int(inside[-1]) + 1) if inside.size else slice(0, 0))
    return tuple(box)


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


def min_roi_subjects(bootstrap: str) -> int:
    """Participants a region's evaluation needs: 2 when only the stimuli are resampled
    (each participant is compared with the other for the noise ceiling), 3 when the
    participants are (a bootstrap over fewer is degenerate)."""
    return 2 if bootstrap == "stimuli" else 3


def usable_subject_rdms(
    data: np.ndarray, *, min_subjects: int = 3, names: Sequence[str] | None = None
) -> np.ndarray:
    """Which subject RDMs a region's evaluation uses: those with every entry finite.

    Parameters
    ----------
    data : ndarray of shape (n_subjects, n_pairs)
    min_subjects : int
        The fewest that must remain (:func:`min_roi_subjects`).
    names : sequence of str, optional
        The subjects' RDM files, named by the error.

    Returns
    -------
    ndarray of shape (n_subjects,), bool

    Raises
    ------
    ValueError
        When fewer than ``min_subjects`` remain.
    """
    finite = np.isfinite(np.asarray(data, dtype=np.float64)).all(axis=1)
    if finite.sum() < min_subjects:
        names = list(names) if names is not None else list(range(len(finite)))
        raise ValueError(f"fewer than {min_subjects} subject RDMs with finite entries: {names}")
    return finite


def usable_model_rdms(models: np.ndarray, *, names: Sequence[str] | None = None) -> np.ndarray:
    """Which model RDMs a region's evaluation uses: finite and not constant (a constant
    RDM correlates with nothing).

    Parameters
    ----------
    models : ndarray of shape (n_models, n_pairs)
    names : sequence of str, optional
        The models' RDM files, named by the error.

    Returns
    -------
    ndarray of shape (n_models,), bool

    Raises
    ------
    ValueError
        When no model RDM is usable.
    """
    models = np.asarray(models, dtype=np.float64)
    finite = np.isfinite(models).all(axis=1)
    varying = np.ptp(np.where(finite[:, None], models, 0.0), axis=1) > 0
    usable = finite & varying
    if not usable.any():
        names = list(names) if names is not None else list(range(len(usable)))
        raise ValueError(f"no model RDM with finite, varying entries: {names}")
    return usable


@dataclass(frozen=True)
class RoiRDMs:
    """The RDMs of a region's evaluation, in one condition order, and those left out."""

    conditions: list[str]  #: the condition order: the first subject RDM's
    data: np.ndarray  #: (n_subjects kept, n_pairs) subject RDMs
    models: np.ndarray  #: (n_models kept, n_pairs) model RDMs
    kept_models: list[int]  #: indices of the model RDMs kept, in the given order
    left_out_models: list[int]  #: indices of the model RDMs left out
    left_out_subjects: list[int]  #: indices of the subject RDMs left out


def read_roi_rdms(subject_files: Sequence, model_files: Sequence, *, min_subjects: int = 3):
    """The subjects' and models' RDM tables of a region, read in the first subject's
    condition order (:func:`dnnrsa.modelbank.reorder_rdm`), with the subjects
    (:func:`usable_subject_rdms`) and models (:func:`usable_model_rdms`) an evaluation
    cannot use left out.

    Returns
    -------
    RoiRDMs
    """
    from .modelbank import reorder_rdm
    from .rdm import read_rdm_tsv

    subjects = [read_rdm_tsv(f) for f in subject_files]
    conditions = subjects[0][1]
    data = np.stack(
        [
            reorder_rdm(v, lab, conditions, name=f)
            for (v, lab), f in zip(subjects, subject_files, strict=True)
        ]
    )
    finite = usable_subject_rdms(data, min_subjects=min_subjects, names=list(subject_files))
    rows = [reorder_rdm(*read_rdm_tsv(f), conditions, name=f) for f in model_files]
    models = np.stack(rows) if rows else np.empty((0, data.shape[1]))
    usable = usable_model_rdms(models, names=list(model_files))
    return RoiRDMs(
        conditions=list(conditions),
        data=data[finite],
        models=models[usable],
        kept_models=np.flatnonzero(usable).tolist(),
        left_out_models=np.flatnonzero(~usable).tolist(),
        left_out_subjects=np.flatnonzero(~finite).tolist(),
    )


#: The columns of :func:`weighted_model_table`.
WEIGHTED_COLUMNS = (
    "model",
    "n_components",
    "components",
    "cv_mean",
    "cv_sd_folds",
    "noise_ceiling_lower",
    "noise_ceiling_upper",
    "weights",
)


def weighted_model_table(
    models: np.ndarray,
    data: np.ndarray,
    names: Sequence[str],
    networks: Sequence[str],
    parts: Sequence[str],
    comparator: str,
    *,
    seed=0,
):
    """Cross-validated non-negative combinations of a region's model RDMs.

    The sets of :func:`weighted_model_sets` are fitted and evaluated by
    :func:`dnnrsa.inference.crossvalidate` (k-fold over subjects and conditions).

    Parameters
    ----------
    models : ndarray of shape (n_models, n_pairs)
    data : ndarray of shape (n_subjects, n_pairs)
    names, networks, parts : sequences of str
        Name, network and part of every model RDM.
    comparator : str
        One of the inference's comparators.
    seed : int or numpy Generator

    Returns
    -------
    pandas.DataFrame
        One row per set (:data:`WEIGHTED_COLUMNS`): its name, components, mean and
        standard deviation over the folds of its evaluation, the noise ceiling, and its
        weights (the mean over folds of unit-norm weights, ``;``-separated); no rows
        when no set has two RDMs.
    """
    import pandas as pd

    from .inference import crossvalidate

    sets = weighted_model_sets(names, networks, parts)
    rows = []
    if sets:
        cv = crossvalidate(
            [models[idx] for _, idx in sets],
            data,
            comparator,
            seed=seed,
            model_names=[n for n, _ in sets],
        )
        for m, (name, idx) in enumerate(sets):
            with np.errstate(all="ignore"):
                weights = np.nanmean(cv.weights[m], axis=0)
            rows.append(
                {
                    "model": name,
                    "n_components": len(idx),
                    "components": ";".join(names[i] for i in idx),
                    "cv_mean": cv.mean[m],
                    "cv_sd_folds": np.nanstd(cv.evaluations[m]),
                    "noise_ceiling_lower": cv.noise_ceiling[0],
                    "noise_ceiling_upper": cv.noise_ceiling[1],
                    "weights": ";".join(f"{w:.6g}" for w in weights),
                }
            )
    return pd.DataFrame(rows, columns=list(WEIGHTED_COLUMNS))
