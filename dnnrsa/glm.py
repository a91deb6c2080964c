"""Per-stimulus response patterns from fMRI runs with nilearn's first-level GLM.

Each run is fitted separately (runs are kept apart so that cross-validated
distances such as crossnobis can use them):

- ``method="lsa"`` (least squares all): one regressor per condition, all in one
  model per run.
- ``method="lss"`` (least squares separate, Mumford et al. 2012): for every trial, a
  model with one regressor for that trial and one for all other trials; the
  trial's estimate is kept. Trials of the same condition within a run are then
  averaged, so both methods give one pattern per condition per run.

The data are masked once per run with a :class:`nilearn.maskers.NiftiMasker`,
scaled like :class:`nilearn.glm.first_level.FirstLevelModel` does
(``signal_scaling``), and fitted with :func:`nilearn.glm.first_level.run_glm`;
design matrices come from :func:`nilearn.glm.first_level.make_first_level_design_matrix`.
With the same options the LSA patterns equal what ``FirstLevelModel.fit`` followed
by ``compute_contrast`` gives for each condition.

Noise normalisation uses the ordinary least-squares residuals of each run's LSA
model:

- ``"univariate"``: each voxel is divided by its residual standard deviation;
- ``"multivariate"`` (or ``True``): the voxel-by-voxel residual covariance is
  estimated with shrinkage towards its diagonal (Schäfer & Strimmer 2005; the
  ``shrinkage_diag`` estimator of rsatoolbox) and the run's patterns are multiplied
  by its inverse symmetric square root, ``patterns @ cov^(-1/2)``.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_MASK_LOSS",
    "METHODS",
    "BrainMask",
    "NOISE_NORMALISATIONS",
    "OUTPUTS",
    "PatternResult",
    "brain_mask",
    "estimate_patterns",
    "img_to_patterns",
    "patterns_to_img",
    "save_brain_mask",
    "shrinkage_covariance",
]

METHODS = ("lsa", "lss")
OUTPUTS = ("effect", "t")
NOISE_NORMALISATIONS = (False, "univariate", "multivariate")
#: Largest mask (in voxels) for multivariate noise normalisation (a dense covariance).
MAX_MULTIVARIATE_VOXELS = 20000
#: Fraction of the candidate brain voxels a mask may lose before a warning.
MAX_MASK_LOSS = 0.2


@dataclass
class PatternResult:
    """Per-condition, per-run response patterns.

    Attributes
    ----------
    patterns : ndarray of shape (n_runs * n_conditions, n_voxels)
        One row per run and condition, run-major: all conditions of the first run
        (in ``condition_order``), then the second run, ...
    conditions : ndarray of shape (n_runs * n_conditions,)
        Condition label of each row.
    runs : ndarray of shape (n_runs * n_conditions,)
        Run index (0-based, in input order) of each row.
    condition_order : list of str
        The conditions in sorted order (that of :func:`numpy.unique`).
    mask_img : nibabel.Nifti1Image
        The mask defining the voxel columns.
    method, output : str
        How the patterns were estimated.
    noise_normalisation : False or str
        ``False``, ``"univariate"`` or ``"multivariate"``.
    design_matrices : list of pandas.DataFrame
        The LSA design matrix of each run (column names are the condition labels).
    residuals : list of ndarray of shape (n_scans, n_voxels), or None
        OLS residuals of each run's LSA model, when asked for.
    noise_precisions : list of ndarray of shape (n_voxels, n_voxels), or None
        Inverse of the shrinkage residual covariance of each run, when asked for.
    mask_info : BrainMask or None
        How the mask was made: voxels excluded for non-finite samples, voxels lost.
    """

    patterns: np.ndarray
    conditions: np.ndarray
    runs: np.ndarray
    condition_order: list[str]
    mask_img: Any
    method: str = "lsa"
    output: str = "effect"
    noise_normalisation: bool | str = False
    design_matrices: list = field(default_factory=list, repr=False)
    residuals: list[np.ndarray] | None = field(default=None, repr=False)
    noise_precisions: list[np.ndarray] | None = field(default=None, repr=False)
    mask_info: BrainMask | None = field(default=None, repr=False)

    @property
    def n_runs(self) -> int:
        """Number of runs."""
        return int(np.unique(self.runs).size)

    def to_img(self):
        """Patterns as a 4D image, one volume per row of ``patterns``."""
        return patterns_to_img(self.patterns, self.mask_img)


# ---------------------------------------------------------------------------
# image helpers
# ---------------------------------------------------------------------------


def _masker(mask_img, smoothing_fwhm=None):
    from nilearn.maskers import NiftiMasker  # noqa: PLC0415

    return NiftiMasker(
        mask_img=mask_img, smoothing_fwhm=smoothing_fwhm, standardize=_no_standardize()
    ).fit()


def _no_standardize():
    """The value that switches standardisation off (None from nilearn 0.14, else False)."""
    import nilearn  # noqa: PLC0415

    major, minor = (int(part) for part in nilearn.__version__.split(".")[:2])
    return None if (major, minor) >= (0, 14) else False


def _load_mask(mask_img):
    from nilearn.image import load_img  # noqa: PLC0415

    try:
        img = load_img(mask_img)
    except Exception as exc:
        raise ValueError(f"mask_img could not be loaded: {mask_img!r} ({exc})") from exc
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"mask_img must be a 3D image; got shape {data.shape} from {mask_img!r}")
    if not np.any(data != 0):
        raise ValueError(f"mask_img is empty (no non-zero voxel): {mask_img!r}")
    return img


def patterns_to_img(patterns: Any, mask_img: Any):
    """Put masked patterns back into image space.

    Parameters
    ----------
    patterns : ndarray of shape (n_voxels,) or (n_patterns, n_voxels)
        Values of the in-mask voxels (in the mask's voxel order, as
        :func:`img_to_patterns` and nilearn's maskers return them).
    mask_img : Niimg-like
        3D mask.

    Returns
    -------
    img : nibabel.Nifti1Image
        3D image for a 1-D input, 4D image with ``n_patterns`` volumes otherwise.
    """
    patterns = np.asarray(patterns)
    masker = _masker(_load_mask(mask_img))
    n_voxels = int(np.count_nonzero(np.asanyarray(masker.mask_img_.dataobj)))
    if patterns.shape[-1] != n_voxels or patterns.ndim not in (1, 2):
        raise ValueError(
            f"patterns must have shape (n_patterns, {n_voxels}) for this mask; got {patterns.shape}"
        )
    return masker.inverse_transform(patterns)


def img_to_patterns(img: Any, mask_img: Any) -> np.ndarray:
    """Extract the in-mask voxels of an image.

    Parameters
    ----------
    img : Niimg-like
        3D or 4D image (resampled to the mask when its grid differs).
    mask_img : Niimg-like
        3D mask.

    Returns
    -------
    patterns : ndarray of shape (n_volumes, n_voxels)
        One row per volume (a single row for a 3D image).
    """
    from nilearn.image import load_img  # noqa: PLC0415

    masker = _masker(_load_mask(mask_img))
    data = masker.transform(load_img(img))
    return np.atleast_2d(np.asarray(data))


# ---------------------------------------------------------------------------
# noise covariance
# ---------------------------------------------------------------------------


def shrinkage_covariance(residuals: Any, dof: int | None = None) -> np.ndarray:
    """Covariance of residuals shrunk towards its diagonal.

    The Schäfer & Strimmer (2005) estimator ("target D"): the off-diagonal sample
    covariances are multiplied by ``1 - lambda``, with the shrinkage intensity
    ``lambda`` (clipped to [0, 1]) estimated from the variance of the sample
    correlations. It gives the same matrix as rsatoolbox's
    ``cov_from_residuals(residuals, dof, method="shrinkage_diag")``.

    Parameters
    ----------
    residuals : ndarray of shape (n_observations, n_channels)
        Residuals (they are centred per channel here).
    dof : int, optional
        Degrees of freedom of the sample covariance; default ``n_observations - 1``.
        For GLM residuals use ``n_scans - rank(design)``.

    Returns
    -------
    covariance : ndarray of shape (n_channels, n_channels)
    """
    res = np.asarray(residuals, dtype=np.float64)
    if res.ndim != 2 or res.shape[0] < 2:
        raise ValueError(
            f"residuals must have shape (n_observations >= 2, n_channels); got {res.shape}"
        )
    n = res.shape[0]
    if dof is None:
        dof = n - 1
    if dof < 1:
        raise ValueError(f"dof must be >= 1; got {dof!r}")
    res = res - res.mean(axis=0)
    cross = res.T @ res
    sample_cov = cross / dof
    var = np.diag(sample_cov).copy()
    if np.any(var <= 0):
        bad = int(np.count_nonzero(var <= 0))
        raise ValueError(f"residuals have {bad} constant channel(s); their variance is zero")
    std = np.sqrt(var)
    corr = cross / np.outer(std, std) / (n - 1)
    squares = res**2
    corr_sq_mean = (squares.T @ squares) / np.outer(var, var) / (n - 1)
    var_corr = n / dof**2 * (corr_sq_mean - corr**2)
    off = ~np.eye(res.shape[1], dtype=bool)
    denom = float(np.sum(corr[off] ** 2))
    lam = float(np.sum(var_corr[off]) / denom) if denom > 0 else 1.0
    lam = min(max(lam, 0.0), 1.0)
    logger.debug("shrinkage intensity %.4f", lam)
    shrunk = sample_cov * (1.0 - lam)
    np.fill_diagonal(shrunk, var)
    return shrunk


def _inverse_sqrt(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric inverse square root and inverse of a covariance matrix."""
    evals, evecs = np.linalg.eigh(cov)
    floor = evals.max() * 1e-12
    evals = np.clip(evals, floor, None)
    inv_sqrt = (evecs / np.sqrt(evals)) @ evecs.T
    precision = (evecs / evals) @ evecs.T
    return inv_sqrt, precision


# ---------------------------------------------------------------------------
# input validation
# ---------------------------------------------------------------------------


def _as_list(value, name):
    if isinstance(value, str | os.PathLike) or not isinstance(value, Sequence):
        return [value]
    if len(value) == 0:
        raise ValueError(f"{name} must not be empty")
    return list(value)


def _load_runs(run_imgs):
    from nilearn.image import load_img  # noqa: PLC0415

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
    import nibabel as nib  # noqa: PLC0415

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
    from scipy import ndimage  # noqa: PLC0415

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
    import nibabel as nib  # noqa: PLC0415
    from nilearn.image import resample_to_img  # noqa: PLC0415

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
    import nibabel as nib  # noqa: PLC0415

    runs = _as_list(run_imgs, "run_imgs")
    if names is None:
        names = [_run_name(run, i) for i, run in enumerate(runs)]
    names = [str(n) for n in names]
    imgs = _load_runs(runs)
    bad_runs = [_nonfinite_voxels(img) for img in imgs]
    bad = np.logical_or.reduce(bad_runs)
    if mask_img is not None:
        given = _load_mask(mask_img)
        data = np.asanyarray(given.dataobj)
        candidates = (data[..., 0] if data.ndim == 4 else data) != 0
        bad_here = _on_grid(bad, imgs[0], given) if bad.any() else np.zeros_like(candidates)
        kept = candidates & ~bad_here
        affine, source = given.affine, "given"
    else:
        from nilearn.masking import compute_multi_epi_mask  # noqa: PLC0415

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
    from ._io import atomic_save_nifti  # noqa: PLC0415
    from .bidsnames import sidecar_path, write_json  # noqa: PLC0415

    out = atomic_save_nifti(info.img, path)
    sidecar = info.sidecar()
    if sources:
        sidecar["Sources"] = [str(s) for s in sources]
        # the grid of the runs (BIDS requires a reference for non-template spaces)
        sidecar["SpatialReference"] = str(sources[0])
    write_json(sidecar_path(out), sidecar)
    return out


def _load_events(events_list, n_runs, condition_column):
    import pandas as pd  # noqa: PLC0415

    items = (
        [events_list]
        if isinstance(events_list, pd.DataFrame | str | os.PathLike)
        else list(events_list)
    )
    if len(items) != n_runs:
        raise ValueError(f"events_list must have one table per run ({n_runs}); got {len(items)}")
    tables = []
    for i, ev in enumerate(items):
        if isinstance(ev, str | os.PathLike):
            if not os.path.isfile(ev):
                raise ValueError(f"events_list[{i}] file not found: {os.fspath(ev)!r}")
            ev = pd.read_csv(ev, sep="\t")
        elif not isinstance(ev, pd.DataFrame):
            raise ValueError(
                f"events_list[{i}] must be a DataFrame or a TSV path; got {type(ev).__name__}"
            )
        missing = [c for c in ("onset", "duration", condition_column) if c not in ev.columns]
        if missing:
            raise ValueError(
                f"events_list[{i}] lacks column(s) {missing}; condition_column={condition_column!r}; "
                f"columns present: {list(ev.columns)}"
            )
        if len(ev) == 0:
            raise ValueError(f"events_list[{i}] has no events")
        if ev[condition_column].isna().any():
            raise ValueError(
                f"events_list[{i}] has empty values in condition_column {condition_column!r}"
            )
        table = pd.DataFrame(
            {
                "onset": ev["onset"].astype(float).to_numpy(),
                "duration": ev["duration"].astype(float).to_numpy(),
                "condition": ev[condition_column].astype(str).to_numpy(),
            }
        )
        if "modulation" in ev.columns:
            table["modulation"] = ev["modulation"].astype(float).to_numpy()
        tables.append(table)
    return tables


def _check_conditions(tables):
    reference = sorted(set(tables[0]["condition"]))
    problems = []
    for i, table in enumerate(tables[1:], start=1):
        present = set(table["condition"])
        missing = sorted(set(reference) - present)
        extra = sorted(present - set(reference))
        if missing or extra:
            problems.append(f"run {i}: missing {missing}, extra {extra}")
    if problems:
        raise ValueError(
            "conditions differ between runs (compared with run 0): " + "; ".join(problems)
        )
    return reference


def _load_confounds(confounds, n_runs, n_scans):
    import pandas as pd  # noqa: PLC0415

    if confounds is None:
        return [None] * n_runs
    items = (
        [confounds]
        if isinstance(confounds, pd.DataFrame | np.ndarray | str | os.PathLike)
        else list(confounds)
    )
    if len(items) != n_runs:
        raise ValueError(f"confounds must have one entry per run ({n_runs}); got {len(items)}")
    out = []
    for i, conf in enumerate(items):
        if conf is None:
            out.append(None)
            continue
        if isinstance(conf, str | os.PathLike):
            conf = pd.read_csv(conf, sep="\t")
        if isinstance(conf, pd.DataFrame):
            names = [f"confound_{c}" for c in conf.columns]
            values = conf.to_numpy(dtype=float)
        else:
            values = np.asarray(conf, dtype=float)
            if values.ndim == 1:
                values = values[:, None]
            names = [f"confound_{j}" for j in range(values.shape[1])]
        if values.shape[0] != n_scans[i]:
            raise ValueError(
                f"confounds[{i}] has {values.shape[0]} rows; run {i} has {n_scans[i]} scans"
            )
        if not np.all(np.isfinite(values)):
            raise ValueError(f"confounds[{i}] contains NaN or infinite values")
        out.append((values, names))
    return out


# ---------------------------------------------------------------------------
# estimation
# ---------------------------------------------------------------------------


def _design(frame_times, events, confound, glm_kwargs):
    """nilearn's design matrix. Its warning about events of duration 0 is left out: it
    names the internal regressor names; :func:`_warn_zero_durations` names the
    conditions instead."""
    from nilearn.glm.first_level import make_first_level_design_matrix  # noqa: PLC0415

    add_regs, add_reg_names = (None, None) if confound is None else confound
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_NILEARN_NULL_DURATION)
        return make_first_level_design_matrix(
            frame_times,
            events,
            hrf_model=glm_kwargs["hrf_model"],
            drift_model=glm_kwargs["drift_model"],
            high_pass=glm_kwargs["high_pass"],
            add_regs=add_regs,
            add_reg_names=add_reg_names,
        )


#: The start of nilearn's warning about events of duration 0.
_NILEARN_NULL_DURATION = "The following conditions contain events with null duration"


def _warn_zero_durations(tables, names) -> None:
    """One warning naming the conditions (as the user named them) with events of duration
    0, and the runs where they occur: each such event is modelled as an instant."""
    conditions: set[str] = set()
    runs = []
    for table, name in zip(tables, names, strict=True):
        zero = set(table.loc[table["duration"] == 0, "condition"])
        if zero:
            conditions |= zero
            runs.append(os.path.basename(name))
    if not conditions:
        return
    listed = sorted(conditions)
    shown = ", ".join(repr(c) for c in listed[:10])
    more = f" and {len(listed) - 10} more" if len(listed) > 10 else ""
    logger.warning(
        "events of duration 0 in %s, of %d condition(s): %s%s; each is modelled as an instant "
        "(an impulse convolved with the HRF): give the events' durations in seconds if the "
        "stimuli lasted longer",
        ", ".join(runs),
        len(listed),
        shown,
        more,
    )


def _fit_contrasts(y, design, columns, output, glm_kwargs):
    """Fit one GLM and return the effect (or t) of each column in ``columns``."""
    from nilearn.glm.contrasts import compute_contrast  # noqa: PLC0415
    from nilearn.glm.first_level import run_glm  # noqa: PLC0415

    labels, results = run_glm(
        y,
        design.to_numpy(),
        noise_model=glm_kwargs["noise_model"],
        n_jobs=glm_kwargs["n_jobs"],
        random_state=glm_kwargs["random_state"],
    )
    names = list(design.columns)
    out = np.empty((len(columns), y.shape[1]))
    for k, column in enumerate(columns):
        con = np.zeros(len(names))
        con[names.index(column)] = 1.0
        contrast = compute_contrast(labels, results, con, stat_type="t")
        out[k] = contrast.effect_size() if output == "effect" else contrast.stat()
    return out


def estimate_patterns(
    run_imgs: Any,
    events_list: Any,
    *,
    t_r: float | None,
    mask_img: Any = None,
    confounds: Any = None,
    method: str = "lsa",
    condition_column: str = "stim_file",
    output: str = "effect",
    noise_normalisation: bool | str = False,
    hrf_model: str = "glover",
    drift_model: str | None = "cosine",
    high_pass: float = 0.01,
    smoothing_fwhm: float | None = None,
    noise_model: str = "ar1",
    signal_scaling: int | bool = 0,
    return_residuals: bool = False,
    return_noise_precision: bool = False,
    random_state: int | None = 0,
    n_jobs: int = 1,
) -> PatternResult:
    """Estimate one response pattern per condition and run.

    Parameters
    ----------
    run_imgs : Niimg-like or list of Niimg-like
        4D BOLD image of each run (paths or images), all on the same grid.
    events_list : DataFrame, path, or list of these
        One events table per run (BIDS ``events.tsv``) with ``onset``, ``duration``
        and ``condition_column`` (and optionally ``modulation``).
    t_r : float
        Repetition time in seconds.
    mask_img : Niimg-like, optional
        Brain mask; computed from the runs (nilearn's multi-run EPI mask) when None.
    confounds : DataFrame, ndarray, path, or list of these (one per run), optional
        Nuisance regressors with one row per scan (no NaN: fill or drop first rows).
    method : {"lsa", "lss"}, default="lsa"
        Least squares all (one regressor per condition) or least squares separate
        (one model per trial, that trial against all others).
    condition_column : str, default="stim_file"
        Events column naming the condition of each trial (``"trial_type"`` for a
        category design).
    output : {"effect", "t"}, default="effect"
        Effect size (beta, in the units of ``signal_scaling``) or t statistic.
    noise_normalisation : {False, True, "univariate", "multivariate"}, default=False
        Normalise each run's patterns by its residual noise (``True`` means
        ``"multivariate"``, limited to masks of at most
        :data:`MAX_MULTIVARIATE_VOXELS` voxels).
    hrf_model, drift_model, high_pass
        Passed to :func:`nilearn.glm.first_level.make_first_level_design_matrix`
        (``high_pass`` in Hz).
    smoothing_fwhm : float, optional
        Spatial smoothing in mm applied when masking.
    noise_model : str, default="ar1"
        Passed to :func:`nilearn.glm.first_level.run_glm` (``"ar1"`` or ``"ols"``).
    signal_scaling : {0, False}, default=0
        ``0`` scales each voxel's time series to percent signal change (nilearn's
        default); ``False`` leaves the data unscaled.
    return_residuals : bool, default=False
        Keep the OLS residuals of each run's LSA model in the result.
    return_noise_precision : bool, default=False
        Keep each run's inverse shrinkage covariance (n_voxels x n_voxels).
    random_state : int or None, default=0
        Seed of nilearn's AR(1) coefficient clustering.
    n_jobs : int, default=1
        Parallel jobs for :func:`nilearn.glm.first_level.run_glm`.

    Returns
    -------
    PatternResult
        ``patterns`` of shape (n_runs * n_conditions, n_voxels), with ``conditions``
        and ``runs`` labelling the rows.

    Raises
    ------
    ValueError
        On a 3D image, a missing or non-positive ``t_r``, conditions that differ
        between runs, an empty mask, or an invalid option.
    """
    from nilearn.glm.first_level import mean_scaling  # noqa: PLC0415

    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}; got {method!r}")
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {list(OUTPUTS)}; got {output!r}")
    if noise_normalisation is True:
        noise_normalisation = "multivariate"
    if noise_normalisation not in NOISE_NORMALISATIONS:
        raise ValueError(
            f"noise_normalisation must be one of [False, True, 'univariate', 'multivariate']; "
            f"got {noise_normalisation!r}"
        )
    if signal_scaling not in (0, False) or signal_scaling is True:
        raise ValueError(f"signal_scaling must be 0 or False; got {signal_scaling!r}")
    if t_r is None:
        raise ValueError("t_r is required (the repetition time in seconds); got None")
    try:
        t_r = float(t_r)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"t_r must be a positive number of seconds; got {t_r!r}") from exc
    if not np.isfinite(t_r) or t_r <= 0:
        raise ValueError(f"t_r must be a positive number of seconds; got {t_r!r}")

    imgs = _load_runs(run_imgs)
    n_runs = len(imgs)
    tables = _load_events(events_list, n_runs, condition_column)
    order = _check_conditions(tables)
    n_scans = [img.shape[3] for img in imgs]
    confs = _load_confounds(confounds, n_runs, n_scans)

    names = [_run_name(run, i) for i, run in enumerate(_as_list(run_imgs, "run_imgs"))]
    _warn_zero_durations(tables, names)
    mask_info = brain_mask(imgs, mask_img, names=names)
    if smoothing_fwhm and any(mask_info.nonfinite_per_run):
        logger.warning(
            "smoothing (%s mm) fills the NaN or infinite samples of %s with 0 before masking: "
            "voxels next to them mix in those zeros; fix the data or do not smooth",
            smoothing_fwhm,
            ", ".join(names),
        )
    masker = _masker(mask_info.img, smoothing_fwhm)
    mask_img = masker.mask_img_
    n_voxels = int(np.count_nonzero(np.asanyarray(mask_img.dataobj)))
    if noise_normalisation == "multivariate" and n_voxels > MAX_MULTIVARIATE_VOXELS:
        raise ValueError(
            f"noise_normalisation='multivariate' needs a dense {n_voxels}x{n_voxels} covariance; "
            f"use a mask of at most {MAX_MULTIVARIATE_VOXELS} voxels or 'univariate'"
        )

    glm_kwargs = {
        "hrf_model": hrf_model,
        "drift_model": drift_model,
        "high_pass": high_pass,
        "noise_model": noise_model,
        "n_jobs": n_jobs,
        "random_state": random_state,
    }
    codes = {label: f"cond{k:05d}" for k, label in enumerate(order)}
    want_noise = bool(noise_normalisation) or return_residuals or return_noise_precision

    patterns, designs, residuals, precisions = [], [], [], []
    for run, (img, table, conf) in enumerate(zip(imgs, tables, confs, strict=True)):
        y = np.asarray(masker.transform(img), dtype=np.float64)
        if signal_scaling is not False:
            y, _ = mean_scaling(y, signal_scaling)
        frame_times = np.linspace(0.0, (n_scans[run] - 1) * t_r, n_scans[run])
        events = table.rename(columns={"condition": "trial_type"})
        events["trial_type"] = events["trial_type"].map(codes)
        lsa_design = _design(frame_times, events, conf, glm_kwargs)
        if method == "lsa":
            run_patterns = _fit_contrasts(
                y, lsa_design, [codes[c] for c in order], output, glm_kwargs
            )
        else:
            run_patterns = _lss(y, frame_times, events, conf, order, codes, output, glm_kwargs)

        if want_noise:
            x = lsa_design.to_numpy()
            beta, _, rank, _ = np.linalg.lstsq(x, y, rcond=None)
            resid = y - x @ beta
            dof = n_scans[run] - int(rank)
            if dof < 2:
                raise ValueError(
                    f"run {run}: only {dof} residual degrees of freedom for noise normalisation"
                )
            if return_residuals:
                residuals.append(resid)
            if noise_normalisation == "univariate":
                sd = np.sqrt(np.sum(resid**2, axis=0) / dof)
                sd[sd == 0] = 1.0
                run_patterns = run_patterns / sd
            if noise_normalisation == "multivariate" or return_noise_precision:
                cov = shrinkage_covariance(resid, dof=dof)
                inv_sqrt, precision = _inverse_sqrt(cov)
                if noise_normalisation == "multivariate":
                    run_patterns = run_patterns @ inv_sqrt
                if return_noise_precision:
                    precisions.append(precision)
        patterns.append(run_patterns)
        designs.append(lsa_design.rename(columns={v: k for k, v in codes.items()}))
        logger.info("run %d/%d: %d conditions, %d voxels", run + 1, n_runs, len(order), n_voxels)

    n_cond = len(order)
    return PatternResult(
        patterns=np.concatenate(patterns, axis=0),
        conditions=np.tile(np.asarray(order, dtype=object), n_runs),
        runs=np.repeat(np.arange(n_runs), n_cond),
        condition_order=list(order),
        mask_img=mask_img,
        method=method,
        output=output,
        noise_normalisation=noise_normalisation,
        design_matrices=designs,
        residuals=residuals if return_residuals else None,
        noise_precisions=precisions if return_noise_precision else None,
        mask_info=mask_info,
    )


def _lss(y, frame_times, events, conf, order, codes, output, glm_kwargs):
    """Least squares separate: one model per trial, averaged per condition."""
    n_trials = len(events)
    designs = []
    for trial in range(n_trials):
        lss_events = events.copy()
        labels = np.full(n_trials, "lssothers", dtype=object)
        labels[trial] = "lsstarget"
        lss_events["trial_type"] = labels
        designs.append(_design(frame_times, lss_events, conf, glm_kwargs))
    if glm_kwargs["noise_model"] == "ols":
        trial_estimates = _lss_ols(y, designs, output)
    else:
        trial_estimates = np.empty((n_trials, y.shape[1]))
        for trial, design in enumerate(designs):
            trial_estimates[trial] = _fit_contrasts(y, design, ["lsstarget"], output, glm_kwargs)[0]
    trial_codes = events["trial_type"].to_numpy()
    out = np.empty((len(order), y.shape[1]))
    for k, label in enumerate(order):
        out[k] = trial_estimates[trial_codes == codes[label]].mean(axis=0)
    return out


def _lss_ols(y, designs, output):
    """LSS trial estimates for an OLS noise model, without one GLM fit per trial.

    With ordinary least squares the target trial's effect is one row of the
    design's pseudo-inverse applied to the data, so the effects of all trials are
    a single matrix product. The t statistic divides by the standard error
    ``sqrt(rss / dof * (X'X)^+_tt)``, with the residual sum of squares obtained by
    projecting the data on the design's column space. These are the quantities
    nilearn's OLS model and ``compute_contrast`` produce.
    """
    n_scans = y.shape[0]
    rows = np.empty((len(designs), n_scans))
    var_factor = np.empty(len(designs))
    bases, dofs = [], []
    for trial, design in enumerate(designs):
        x = design.to_numpy()
        col = list(design.columns).index("lsstarget")
        pinv = np.linalg.pinv(x)
        rows[trial] = pinv[col]
        var_factor[trial] = pinv[col] @ pinv[col]
        if output == "t":
            u, sv, _ = np.linalg.svd(x, full_matrices=False)
            rank = int(np.sum(sv > sv.max() * max(x.shape) * np.finfo(float).eps))
            bases.append(u[:, :rank])
            dofs.append(n_scans - rank)
    effects = rows @ y
    if output == "effect":
        return effects
    total_ss = np.einsum("ij,ij->j", y, y)
    stats = np.empty_like(effects)
    for trial, basis in enumerate(bases):
        proj = basis.T @ y
        rss = np.clip(total_ss - np.einsum("ij,ij->j", proj, proj), 0.0, None)
        variance = rss / dofs[trial] * var_factor[trial]
        # nilearn floors the variance at a tiny value in the same way
        stats[trial] = effects[trial] / np.sqrt(np.maximum(variance, 1e-50))
    return stats
