"""A small, seeded BIDS data set with a planted representational geometry, for app tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class SmallBids:
    root: Path
    model_rdm: Path
    region_mask: np.ndarray  # boolean (x, y, z): where the category geometry is planted
    brain_mask: np.ndarray
    affine: np.ndarray
    stim_files: list[str]
    categories: np.ndarray


def make_small_bids(
    root: Path,
    *,
    n_subjects: int = 2,
    n_runs: int = 2,
    n_categories: int = 3,
    per_category: int = 3,
    shape=(9, 9, 9),
    voxel_mm: float = 4.0,
    seed: int = 0,
    write_stimuli: bool = True,
) -> SmallBids:
    """Write a BIDS data set whose central sphere encodes stimulus category."""
    import nibabel as nib
    import pandas as pd
    from nilearn.glm.first_level import make_first_level_design_matrix
    from scipy.io import wavfile

    from dnnrsa.rdm import write_rdm_tsv

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(
        json.dumps(
            {
                "Name": "dnnrsa test",
                "BIDSVersion": "1.10.0",
                "DatasetType": "raw",
                "License": "CC0",
                "Authors": ["dnnrsa"],
            },
            indent=2,
        )
    )
    (root / "README").write_text("Synthetic data set for the dnnrsa test suite.\n")
    (root / "task-cat_bold.json").write_text(json.dumps({"TaskName": "cat", "RepetitionTime": 2.0}))
    n_stim = n_categories * per_category
    stim_files = [f"stim{i:02d}.wav" for i in range(n_stim)]
    categories = np.repeat(np.arange(n_categories), per_category)
    if write_stimuli:
        (root / "stimuli").mkdir(exist_ok=True)
        for i, name in enumerate(stim_files):
            t = np.arange(8000) / 16000
            wavfile.write(
                root / "stimuli" / name,
                16000,
                (0.1 * np.sin(2 * np.pi * (200 + 50 * i) * t)).astype(np.float32),
            )
    participants = pd.DataFrame(
        {"participant_id": [f"sub-{s:02d}" for s in range(1, n_subjects + 1)]}
    )
    participants.to_csv(root / "participants.tsv", sep="\t", index=False)
    affine = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    affine[:3, 3] = -voxel_mm * (np.array(shape) - 1) / 2
    ijk = np.indices(shape).reshape(3, -1).T
    centre = (np.array(shape) - 1) / 2
    dist_mm = np.linalg.norm((ijk - centre) * voxel_mm, axis=1).reshape(shape)
    brain = dist_mm <= voxel_mm * (min(shape) - 1) / 2
    region = dist_mm <= 1.6 * voxel_mm
    t_r = 2.0
    n_scans = 70
    frame_times = np.arange(n_scans) * t_r
    # category code: each category a random pattern over region voxels
    n_region = int(region.sum())
    for s in range(1, n_subjects + 1):
        func = root / f"sub-{s:02d}" / "func"
        func.mkdir(parents=True, exist_ok=True)
        codes = rng.normal(size=(n_categories, n_region))
        for r in range(1, n_runs + 1):
            order = rng.permutation(n_stim)
            onsets = 4.0 + 14.0 * np.arange(n_stim)
            events = pd.DataFrame(
                {
                    "onset": onsets,
                    "duration": 2.0,
                    "trial_type": [f"cat{categories[i]}" for i in order],
                    "stim_file": [stim_files[i] for i in order],
                }
            )
            events.to_csv(func / f"sub-{s:02d}_task-cat_run-{r}_events.tsv", sep="\t", index=False)
            design = make_first_level_design_matrix(
                frame_times,
                events.rename(columns={"stim_file": "trial_type", "trial_type": "category"})[
                    ["onset", "duration", "trial_type"]
                ],
                hrf_model="glover",
                drift_model=None,
            )
            x = design[stim_files].to_numpy()  # (n_scans, n_stim)
            betas = np.zeros((n_stim, *shape))
            betas[:, region] = 2.0 * codes[categories] + 0.3 * rng.normal(size=(n_stim, n_region))
            signal = np.tensordot(x, betas, axes=(1, 0))  # (n_scans, x, y, z)
            noise = rng.normal(size=(n_scans, *shape))
            data = 100.0 + signal + noise
            data[:, ~brain] = 0.0
            img = nib.Nifti1Image(np.moveaxis(data, 0, -1).astype(np.float32), affine)
            img.header.set_xyzt_units("mm", "sec")
            img.header["pixdim"][4] = t_r
            img.to_filename(func / f"sub-{s:02d}_task-cat_run-{r}_bold.nii.gz")
    labels = stim_files
    iu, ju = np.triu_indices(n_stim, 1)
    model = (categories[iu] != categories[ju]).astype(float)
    model_path = root.parent / "category_model.tsv"
    write_rdm_tsv(model_path, model, labels)
    return SmallBids(root, model_path, region, brain, affine, stim_files, categories)
