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
(``signal_scaling``), and fitted with the numbers of
:func:`nilearn.glm.first_level.run_glm` and
:func:`nilearn.glm.contrasts.compute_contrast`; design matrices come from
:func:`nilearn.glm.first_level.make_first_level_design_matrix`. With the same options
the LSA patterns equal what ``FirstLevelModel.fit`` followed by ``compute_contrast``
gives for each condition, and each LSS trial's estimate what nilearn's GLM of that
trial's design gives. For the ``"ar1"`` and ``"ols"`` noise models the fits are
:mod:`dnnrsa._fastglm`'s matrix products (all conditions of a run, all trials of a
run at once, no GLM per trial); other noise models (``"arN"``) go through nilearn.

The brain mask (:func:`brain_mask`, :func:`save_brain_mask`, :class:`BrainMask`)
lives in :mod:`dnnrsa.brainmask` and is re-exported here.

Noise normalisation (``"none"`` by default, the names of the command line's
``--noise-normalisation``) uses the ordinary least-squares residuals of each run's LSA
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
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._cpus import blas_threads, resolve_n_jobs
from ._fastglm import NOISE_MODELS, fit_lsa, fit_lss, lss_pieces
from ._masks import load_mask
from .backend import DEVICES, resolve_device
from .brainmask import (
    MAX_MASK_LOSS,
    BrainMask,
    _as_list,
    _load_runs,
    _run_name,
    brain_mask,
    save_brain_mask,
)

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
    "run_fit_memory_gb",
    "save_brain_mask",
    "shrinkage_covariance",
]

METHODS = ("lsa", "lss")
OUTPUTS = ("effect", "t")
#: Noise normalisations of :func:`estimate_patterns`, the names of the command line's
#: ``--noise-normalisation`` (``False`` and ``True``, their old spellings of ``"none"``
#: and ``"multivariate"``, are still accepted).
NOISE_NORMALISATIONS = ("none", "univariate", "multivariate")
#: Largest mask (in voxels) for multivariate noise normalisation (a dense covariance).
MAX_MULTIVARIATE_VOXELS = 20000


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
    mask_img : nibabel.Nifti1Image or dnnrsa.surface.SurfaceMask
        The mask defining the voxel columns (for surface runs, the vertices kept on
        each hemisphere: the columns are the left ones, then the right ones).
    method, output : str
        How the patterns were estimated.
    noise_normalisation : str
        ``"none"``, ``"univariate"`` or ``"multivariate"``.
    design_matrices : list of pandas.DataFrame
        The LSA design matrix of each run (column names are the condition labels).
    residuals : list of ndarray of shape (n_scans, n_voxels), or None
        OLS residuals of each run's LSA model, when asked for.
    noise_precisions : list of ndarray of shape (n_voxels, n_voxels), or None
        Inverse of the shrinkage residual covariance of each run, when asked for.
    mask_info : BrainMask, dnnrsa.surface.SurfaceMask or None
        How the mask was made: voxels excluded for non-finite samples, voxels lost
        (for surface runs, the ``SurfaceMask`` with its counts).
    """

    patterns: np.ndarray
    conditions: np.ndarray
    runs: np.ndarray
    condition_order: list[str]
    mask_img: Any
    method: str = "lsa"
    output: str = "effect"
    noise_normalisation: str = "none"
    design_matrices: list = field(default_factory=list, repr=False)
    residuals: list[np.ndarray] | None = field(default=None, repr=False)
    noise_precisions: list[np.ndarray] | None = field(default=None, repr=False)
    mask_info: BrainMask | None = field(default=None, repr=False)

    @property
    def n_runs(self) -> int:
        """Number of runs."""
        return int(np.unique(self.runs).size)

    def to_img(self):
        """Patterns as a 4D image, one volume per row of ``patterns``; for surface
        runs, a pair (left, right) of GIFTI images with one data array per row and
        NaN outside the mask."""
        if hasattr(self.mask_img, "split"):  # a dnnrsa.surface.SurfaceMask
            from ._surfaceio import gifti_image

            return tuple(gifti_image(part.T) for part in self.mask_img.split(self.patterns))
        return patterns_to_img(self.patterns, self.mask_img)


# ---------------------------------------------------------------------------
# image helpers
# ---------------------------------------------------------------------------


def _masker(mask_img, smoothing_fwhm=None):
    from nilearn.maskers import NiftiMasker

    return NiftiMasker(
        mask_img=mask_img, smoothing_fwhm=smoothing_fwhm, standardize=_no_standardize()
    ).fit()


def _no_standardize():
    """The value that switches standardisation off (None from nilearn 0.14, else False)."""
    import nilearn

    major, minor = (int(part) for part in nilearn.__version__.split(".")[:2])
    return None if (major, minor) >= (0, 14) else False


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
    masker = _masker(load_mask(mask_img, require_voxels=True).img)
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
    from nilearn.image import load_img

    masker = _masker(load_mask(mask_img, require_voxels=True).img)
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


def _load_events(events_list, n_runs, condition_column):
    import pandas as pd

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
    import pandas as pd

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
    from nilearn.glm.first_level import make_first_level_design_matrix

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
    """Fit one GLM and return the effect (or t) of each column in ``columns``.

    With ``noise_model`` ``"ar1"`` or ``"ols"`` the numbers of nilearn's ``run_glm``
    and ``compute_contrast`` come from :func:`dnnrsa._fastglm.fit_lsa` (every column at
    once, on ``glm_kwargs["device"]``, "cpu" when absent); other noise models (``"arN"``)
    go through nilearn itself, on the CPU.
    """
    names = list(design.columns)
    noise_model = glm_kwargs["noise_model"]
    if noise_model in NOISE_MODELS:
        cols = [names.index(column) for column in columns]
        return fit_lsa(
            y,
            design.to_numpy(),
            cols,
            output=output,
            noise_model=noise_model,
            device=glm_kwargs.get("device", "cpu"),
        )

    from nilearn.glm.contrasts import compute_contrast
    from nilearn.glm.first_level import run_glm

    labels, results = run_glm(
        y,
        design.to_numpy(),
        noise_model=noise_model,
        n_jobs=glm_kwargs["n_jobs"],
        random_state=glm_kwargs["random_state"],
    )
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
    noise_normalisation: str | bool = "none",
    hrf_model: str = "glover",
    drift_model: str | None = "cosine",
    high_pass: float = 0.01,
    smoothing_fwhm: float | None = None,
    noise_model: str = "ar1",
    signal_scaling: int | bool = 0,
    return_residuals: bool = False,
    return_noise_precision: bool = False,
    random_state: int | None = 0,
    n_jobs: int | None = 1,
    max_memory_gb: float | None = None,
    device: str = "cpu",
) -> PatternResult:
    """Estimate one response pattern per condition and run.

    Parameters
    ----------
    run_imgs : Niimg-like, list of Niimg-like, or list of (left, right) pairs
        4D BOLD image of each run (paths or images), all on the same grid. Surface
        runs: one pair of GIFTI files (paths or :class:`nibabel.gifti.GiftiImage`) per
        run, the left hemisphere then the right (fMRIPrep's
        ``*_hemi-L_space-fsaverage5_bold.func.gii`` and ``*_hemi-R_...``), each with one
        data array per volume or one array of shape (n_vertices, n_volumes), every run
        on the same mesh. A run's data are then the kept vertices of the left
        hemisphere, in increasing order, followed by those of the right
        (:class:`dnnrsa.surface.SurfaceMask`), and the fits are those of volume runs.
    events_list : DataFrame, path, or list of these
        One events table per run (BIDS ``events.tsv``) with ``onset``, ``duration``
        and ``condition_column`` (and optionally ``modulation``).
    t_r : float
        Repetition time in seconds.
    mask_img : Niimg-like, optional
        Brain mask; computed from the runs (nilearn's multi-run EPI mask) when None.
        Surface runs: a :class:`dnnrsa.surface.SurfaceMask` (for example
        ``dnnrsa.surface.fsaverage_space("fsaverage5").mask``) or a pair (left, right)
        of boolean arrays, True on the vertices kept; when None, fsaverage5 runs
        (10,242 vertices per hemisphere) leave out its medial wall
        (:func:`dnnrsa.surface.fsaverage_medial_wall`) and other meshes keep every
        vertex (with a warning). Vertices with a NaN or infinite sample in any run
        are left out, as voxels are.
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
    noise_normalisation : {"none", "univariate", "multivariate"}, default="none"
        Normalise each run's patterns by its residual noise (``"multivariate"`` is
        limited to masks of at most :data:`MAX_MULTIVARIATE_VOXELS` voxels). The
        names of the command line; ``False`` (``"none"``) and ``True``
        (``"multivariate"``), the names of earlier versions, are still accepted.
    hrf_model, drift_model, high_pass
        Passed to :func:`nilearn.glm.first_level.make_first_level_design_matrix`
        (``high_pass`` in Hz).
    smoothing_fwhm : float, optional
        Spatial smoothing in mm applied when masking (volume runs only).
    noise_model : str, default="ar1"
        nilearn's noise model: ``"ar1"`` or ``"ols"`` (computed by
        :mod:`dnnrsa._fastglm`), or ``"arN"`` (nilearn's ``run_glm`` itself).
    signal_scaling : {0, False}, default=0
        ``0`` scales each voxel's time series to percent signal change (nilearn's
        default); ``False`` leaves the data unscaled.
    return_residuals : bool, default=False
        Keep the OLS residuals of each run's LSA model in the result.
    return_noise_precision : bool, default=False
        Keep each run's inverse shrinkage covariance (n_voxels x n_voxels).
    random_state : int or None, default=0
        Seed of nilearn's coefficient clustering for ``"arN"`` noise models (N > 1).
    n_jobs : int or None, default=1
        With ``"ar1"`` and ``"ols"``: runs fitted at once, in worker processes (forked,
        or spawned where this process runs other threads: a script then needs the
        ``if __name__ == "__main__":`` guard) that keep this process's BLAS threads
        (None or -1: the CPUs this process may use, :func:`dnnrsa._cpus.resolve_n_jobs`;
        never more than the runs, nor than fit in ``max_memory_gb``). With ``"arN"``:
        the parallel jobs of :func:`nilearn.glm.first_level.run_glm`, the runs one
        after another. The patterns do not depend on it (the same bits, in the same run
        order).
    max_memory_gb : float, optional
        Memory budget (GB) of the fits: at most as many runs are fitted at once as
        :func:`run_fit_memory_gb` (the peak of one run's fit, from its shapes) fits in
        it, one at least. None: no bound beyond ``n_jobs``.
    device : {"cpu", "auto", "cuda"}, default="cpu"
        Where the fits of ``"ar1"`` and ``"ols"`` run (:func:`dnnrsa.backend.resolve_device`;
        ``"auto"``: the GPU when CuPy can use one): their products over the voxels run on
        CuPy with each run's data in float64 on the GPU, the small factorisations of the
        designs on the CPU. On the GPU the runs are fitted one after another in this
        process (``n_jobs`` does not apply). The patterns agree with the CPU's to
        rounding. nilearn's ``"arN"`` models ignore it and run on the CPU.

    Returns
    -------
    PatternResult
        ``patterns`` of shape (n_runs * n_conditions, n_voxels), with ``conditions``
        and ``runs`` labelling the rows.

    Raises
    ------
    ValueError
        On a 3D image, a missing or non-positive ``t_r``, conditions that differ
        between runs, an empty mask, or an invalid option (``device`` included).
    RuntimeError
        If ``device="cuda"`` (with ``"ar1"`` or ``"ols"``) and CuPy cannot use a GPU.

    Notes
    -----
    The work runs in steps: ``_check_options``, ``_load_inputs``, ``_prepare_mask``
    (:func:`dnnrsa.brainmask.brain_mask`), ``_runs_at_once``, then ``_fit_runs``, which
    fits each run (``_run_patterns``), normalises its noise (``_normalise_noise``) and
    assembles the result (``_pattern_result``). Surface runs take
    ``_load_surface_inputs`` and ``_prepare_surface_mask`` instead of the second and
    third steps; their masker gives the same (n_scans, n_vertices) array as a volume's,
    and every later step is shared.
    """
    glm_kwargs = {
        "hrf_model": hrf_model,
        "drift_model": drift_model,
        "high_pass": high_pass,
        "noise_model": noise_model,
        "n_jobs": n_jobs,
        "random_state": random_state,
        "device": device,
    }
    opts = _check_options(method, output, noise_normalisation, signal_scaling, t_r, glm_kwargs)
    if _is_surface_runs(run_imgs):
        runs = _load_surface_inputs(run_imgs, events_list, confounds, condition_column)
        mask_info, masker, n_voxels = _prepare_surface_mask(
            runs, mask_img, smoothing_fwhm, opts.noise_normalisation
        )
    else:
        runs = _load_inputs(run_imgs, events_list, confounds, condition_column)
        mask_info, masker, n_voxels = _prepare_mask(
            runs, mask_img, smoothing_fwhm, opts.noise_normalisation
        )
    at_once = _runs_at_once(runs, n_voxels, opts, n_jobs, max_memory_gb, return_residuals)
    return _fit_runs(
        runs, masker, n_voxels, mask_info, opts, return_residuals, return_noise_precision, at_once
    )


@dataclass(frozen=True)
class _Options:
    """The checked options of :func:`estimate_patterns` that every run shares."""

    method: str
    output: str
    noise_normalisation: str
    signal_scaling: int | bool
    t_r: float
    glm_kwargs: dict = field(repr=False)


@dataclass
class _Runs:
    """The loaded and checked inputs of :func:`estimate_patterns`.

    Attributes
    ----------
    imgs : list of nibabel.Nifti1Image or of _SurfaceRun
        The 4D image of each run, or each surface run's pair of files.
    tables : list of pandas.DataFrame
        Each run's events (``onset``, ``duration``, ``condition``, maybe ``modulation``).
    order : list of str
        The conditions in sorted order, the same in every run.
    n_scans : list of int
        Volumes of each run.
    confs : list of (ndarray, list of str) or None
        Each run's confound regressors and their names.
    names : list of str
        The name of each run in messages.
    """

    imgs: list
    tables: list
    order: list[str]
    n_scans: list[int]
    confs: list
    names: list[str]


def _check_options(method, output, noise_normalisation, signal_scaling, t_r, glm_kwargs):
    """Check the options of :func:`estimate_patterns` (step 1).

    ``noise_normalisation`` False becomes ``"none"`` and True ``"multivariate"``; ``t_r``
    becomes a float, checked to be finite and positive.

    Returns
    -------
    _Options
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}; got {method!r}")
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {list(OUTPUTS)}; got {output!r}")
    if noise_normalisation is True:
        noise_normalisation = "multivariate"
    elif noise_normalisation in (False,):  # False (or 0), the old spelling of "none"
        noise_normalisation = "none"
    if noise_normalisation not in NOISE_NORMALISATIONS:
        raise ValueError(
            f"noise_normalisation must be one of {list(NOISE_NORMALISATIONS)} (or False, "
            f"True: 'none', 'multivariate'); got {noise_normalisation!r}"
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
    device = glm_kwargs.get("device", "cpu")
    if device not in DEVICES:
        raise ValueError(f"device must be one of {list(DEVICES)}; got {device!r}")
    # resolved once here ("cpu" or "cuda"); nilearn's "arN" models run on the CPU
    glm_kwargs["device"] = (
        resolve_device(device) if glm_kwargs["noise_model"] in NOISE_MODELS else "cpu"
    )
    return _Options(method, output, noise_normalisation, signal_scaling, t_r, glm_kwargs)


def _load_inputs(run_imgs, events_list, confounds, condition_column) -> _Runs:
    """Load and check the runs, events and confounds of :func:`estimate_patterns` (step 2),
    and warn once about events of duration 0."""
    imgs = _load_runs(run_imgs)
    n_runs = len(imgs)
    tables = _load_events(events_list, n_runs, condition_column)
    order = _check_conditions(tables)
    n_scans = [img.shape[3] for img in imgs]
    confs = _load_confounds(confounds, n_runs, n_scans)

    names = [_run_name(run, i) for i, run in enumerate(_as_list(run_imgs, "run_imgs"))]
    _warn_zero_durations(tables, names)
    return _Runs(imgs, tables, order, n_scans, confs, names)


def _prepare_mask(runs: _Runs, mask_img, smoothing_fwhm, noise_normalisation):
    """The brain mask of the runs and its fitted masker (step 3 of :func:`estimate_patterns`).

    Returns
    -------
    mask_info : BrainMask
    masker : nilearn.maskers.NiftiMasker
        Fitted on the mask, smoothing with ``smoothing_fwhm``.
    n_voxels : int
        Voxels in the mask.
    """
    names = runs.names
    mask_info = brain_mask(runs.imgs, mask_img, names=names)
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
    return mask_info, masker, n_voxels


def _fit_runs(
    runs: _Runs,
    masker,
    n_voxels,
    mask_info,
    opts: _Options,
    return_residuals,
    return_noise_precision,
    at_once: int = 1,
) -> PatternResult:
    """Fit every run, normalise its noise, and assemble the result (step 4).

    With ``at_once`` > 1 the runs are fitted in that many worker processes
    (:func:`_map_runs`), their results kept in run order.
    """
    order = runs.order
    n_runs = len(runs.imgs)
    codes = {label: f"cond{k:05d}" for k, label in enumerate(order)}
    want_noise = opts.noise_normalisation != "none" or return_residuals or return_noise_precision
    tasks = [
        (run, img, table, conf, masker, runs.n_scans[run], order, codes, opts)
        + (want_noise, return_residuals, return_noise_precision)
        for run, (img, table, conf) in enumerate(
            zip(runs.imgs, runs.tables, runs.confs, strict=True)
        )
    ]
    fitted = []
    for run, result in enumerate(_map_runs(tasks, at_once)):
        fitted.append(result)
        logger.info("run %d/%d: %d conditions, %d voxels", run + 1, n_runs, len(order), n_voxels)
    return _pattern_result(
        [f[0] for f in fitted],
        order,
        masker.mask_img_,
        opts,
        [f[1] for f in fitted],
        [f[2] for f in fitted] if return_residuals else None,
        [f[3] for f in fitted] if return_noise_precision else None,
        mask_info,
    )


def _fit_one_run(task):
    """One run's patterns, LSA design (conditions by label), residuals and noise precision."""
    run, img, table, conf, masker, n_scans, order, codes, opts = task[:9]
    want_noise, return_residuals, return_noise_precision = task[9:]
    y, lsa_design, run_patterns = _run_patterns(
        img, table, conf, masker, n_scans, order, codes, opts
    )
    resid = precision = None
    if want_noise:
        run_patterns, resid, precision = _normalise_noise(
            run, y, lsa_design, run_patterns, n_scans, opts, return_noise_precision
        )
    design = lsa_design.rename(columns={v: k for k, v in codes.items()})
    return run_patterns, design, resid if return_residuals else None, precision


_WORKER_LIMITS = []


def _init_worker(blas_threads, log_level) -> None:
    """A run worker: the BLAS threads of the parent (the products then give the same
    bits: OpenBLAS's can depend on its thread count) and its log level."""
    import warnings as _warnings

    if blas_threads is not None:
        from threadpoolctl import threadpool_limits

        _WORKER_LIMITS.append(threadpool_limits(limits=blas_threads, user_api="blas"))
    logger.setLevel(log_level)
    _warnings.simplefilter("ignore")


def _start_method() -> str:
    """How run workers start: forked where the platform can and this process runs no
    other thread (no imports to repeat), else spawned."""
    import multiprocessing
    import threading

    if "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1:
        return "fork"
    return "spawn"


def _map_runs(tasks: list, at_once: int) -> list:
    """:func:`_fit_one_run` of every task, in run order; ``at_once`` > 1 runs them in that
    many worker processes (:func:`_start_method`). Each worker has its own BLAS, held to
    the parent's thread count so that the numbers are the same bits as in one process
    (OpenBLAS's products can depend on its thread count, and the count is process-wide:
    threads of one process could not each keep their own)."""
    at_once = max(1, min(int(at_once), len(tasks)))
    if at_once == 1:
        return [_fit_one_run(task) for task in tasks]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(
        max_workers=at_once,
        mp_context=multiprocessing.get_context(_start_method()),
        initializer=_init_worker,
        initargs=(blas_threads(), logger.getEffectiveLevel()),
    ) as pool:
        return list(pool.map(_fit_one_run, tasks))


#: Float64 copies of a run's masked data (``n_scans * n_voxels * 8`` bytes) at the peak
#: of one run's fit (the masked data, its percent signal change, the fit's residuals and
#: products), per method and noise model: measured with ``tracemalloc`` on a run of the
#: MNI 2 mm grid (235,375 voxels, 245 volumes, 72 trials) and rounded up (LSA 2.8 with
#: AR(1), 2.0 with OLS; LSS 1.2 beside its voxel blocks).
RUN_FIT_COPIES = {
    ("lsa", "ar1"): 3.0,
    ("lsa", "ols"): 2.0,
    ("lss", "ar1"): 1.5,
    ("lss", "ols"): 1.5,
}
#: Memory of a run's fit beside its data (designs, nilearn's and the fit's small arrays).
RUN_FIT_BASE_GB = 0.03


def run_fit_memory_gb(
    n_scans: int,
    n_voxels: int,
    *,
    n_grid: int | None = None,
    n_trials: int = 0,
    method: str = "lsa",
    noise_model: str = "ar1",
    residuals: bool = False,
) -> float:
    """Peak memory (GB) of one run's fit in :func:`estimate_patterns`, from its shapes.

    The larger of two moments. Masking: the run's image on its grid (float32, ``n_grid *
    n_scans * 4`` bytes) beside its masked data (float64, ``n_scans * n_voxels * 8``).
    Fitting: :data:`RUN_FIT_COPIES` float64 copies of the masked data and, for LSS, the
    voxel blocks of :func:`dnnrsa._fastglm.fit_lss` (16,384 voxels of ``32 n_trials +
    n_scans`` values with AR(1), ``4 n_trials + n_scans`` with OLS) and the trials'
    estimates (``n_trials * n_voxels``); plus :data:`RUN_FIT_BASE_GB`. Residuals kept
    (noise normalisation, ``return_residuals``) add two copies (an allowance). Other
    noise models than AR(1) and OLS count as AR(1).

    Parameters
    ----------
    n_scans, n_voxels : int
        Volumes of the run and voxels of the mask.
    n_grid : int, optional
        Voxels of the image's grid (default ``n_voxels``).
    n_trials : int
        Trials of the run (LSS).
    method : {"lsa", "lss"}
    noise_model : str
    residuals : bool
        The run's residuals are kept.
    """
    n_scans, n_voxels = int(n_scans), int(n_voxels)
    n_grid = n_voxels if n_grid is None else int(n_grid)
    key = (method, noise_model if noise_model in NOISE_MODELS else "ar1")
    data = 8.0 * n_scans * n_voxels
    masking = 4.0 * n_grid * n_scans + data
    fitting = RUN_FIT_COPIES.get(key, 3.0) * data
    if method == "lss":
        per_trial = 32 if key[1] == "ar1" else 4
        fitting += 8.0 * min(n_voxels, 16384) * (per_trial * n_trials + n_scans)
        fitting += 8.0 * n_trials * n_voxels
    if residuals:
        fitting += 2 * data
    return RUN_FIT_BASE_GB + max(masking, fitting) / 2**30


def _runs_at_once(runs: _Runs, n_voxels, opts: _Options, n_jobs, max_memory_gb, residuals) -> int:
    """How many runs :func:`estimate_patterns` fits at once: ``n_jobs`` (resolved by
    :func:`dnnrsa._cpus.resolve_n_jobs`), at most the runs and as many as
    :func:`run_fit_memory_gb` of the largest run fits in ``max_memory_gb`` (one at
    least); one for nilearn's ``"arN"`` models (their ``n_jobs`` is ``run_glm``'s) and on
    the GPU (the runs one after another on the device)."""
    if opts.glm_kwargs["noise_model"] not in NOISE_MODELS:
        return 1
    if opts.glm_kwargs.get("device", "cpu") == "cuda":
        return 1
    at_once = min(resolve_n_jobs(n_jobs), len(runs.imgs))
    if max_memory_gb is not None and at_once > 1:
        n_grid = max(_grid_size(img) for img in runs.imgs)
        n_trials = max(len(t) for t in runs.tables)
        one = run_fit_memory_gb(
            max(runs.n_scans),
            n_voxels,
            n_grid=n_grid,
            n_trials=n_trials,
            method=opts.method,
            noise_model=opts.glm_kwargs["noise_model"],
            residuals=residuals or opts.noise_normalisation != "none",
        )
        at_once = max(1, min(at_once, int(float(max_memory_gb) // one)))
    return at_once


def _run_patterns(img, table, conf, masker, n_scans, order, codes, opts: _Options):
    """One run's patterns by LSA or LSS.

    Returns
    -------
    y : ndarray of shape (n_scans, n_voxels)
        The run's masked (and scaled) data.
    lsa_design : pandas.DataFrame
        The run's LSA design matrix, conditions named by their codes.
    run_patterns : ndarray of shape (n_conditions, n_voxels)
        One pattern per condition, in ``order``.
    """
    from nilearn.glm.first_level import mean_scaling

    output, glm_kwargs = opts.output, opts.glm_kwargs
    y = np.asarray(masker.transform(img), dtype=np.float64)
    if opts.signal_scaling is not False:
        y, _ = mean_scaling(y, opts.signal_scaling)
    frame_times = np.linspace(0.0, (n_scans - 1) * opts.t_r, n_scans)
    events = table.rename(columns={"condition": "trial_type"})
    events["trial_type"] = events["trial_type"].map(codes)
    lsa_design = _design(frame_times, events, conf, glm_kwargs)
    if opts.method == "lsa":
        run_patterns = _fit_contrasts(y, lsa_design, [codes[c] for c in order], output, glm_kwargs)
    else:
        run_patterns = _lss(y, frame_times, events, conf, order, codes, output, glm_kwargs)
    return y, lsa_design, run_patterns


def _normalise_noise(run, y, lsa_design, run_patterns, n_scans, opts, return_noise_precision):
    """Noise normalisation from the OLS residuals of a run's LSA model.

    Returns
    -------
    run_patterns : ndarray of shape (n_conditions, n_voxels)
        Divided by the residual standard deviation (``"univariate"``), multiplied by
        the inverse square root of the shrinkage covariance (``"multivariate"``), or
        as given.
    resid : ndarray of shape (n_scans, n_voxels)
        The OLS residuals.
    precision : ndarray of shape (n_voxels, n_voxels) or None
        The inverse shrinkage covariance, when multivariate normalisation or
        ``return_noise_precision`` asked for it.
    """
    noise_normalisation = opts.noise_normalisation
    x = lsa_design.to_numpy()
    beta, _, rank, _ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ beta
    dof = n_scans - int(rank)
    if dof < 2:
        raise ValueError(
            f"run {run}: only {dof} residual degrees of freedom for noise normalisation"
        )
    if noise_normalisation == "univariate":
        sd = np.sqrt(np.sum(resid**2, axis=0) / dof)
        sd[sd == 0] = 1.0
        run_patterns = run_patterns / sd
    precision = None
    if noise_normalisation == "multivariate" or return_noise_precision:
        cov = shrinkage_covariance(resid, dof=dof)
        inv_sqrt, precision = _inverse_sqrt(cov)
        if noise_normalisation == "multivariate":
            run_patterns = run_patterns @ inv_sqrt
    return run_patterns, resid, precision


def _pattern_result(
    patterns, order, mask_img, opts, designs, residuals, precisions, mask_info
) -> PatternResult:
    """The :class:`PatternResult` of the runs' patterns, run-major."""
    n_runs = len(patterns)
    return PatternResult(
        patterns=np.concatenate(patterns, axis=0),
        conditions=np.tile(np.asarray(order, dtype=object), n_runs),
        runs=np.repeat(np.arange(n_runs), len(order)),
        condition_order=list(order),
        mask_img=mask_img,
        method=opts.method,
        output=opts.output,
        noise_normalisation=opts.noise_normalisation,
        design_matrices=designs,
        residuals=residuals,
        noise_precisions=precisions,
        mask_info=mask_info,
    )


def _lss(y, frame_times, events, conf, order, codes, output, glm_kwargs):
    """Least squares separate: one model per trial, averaged per condition.

    With ``noise_model`` ``"ar1"`` or ``"ols"`` every trial's estimate comes from
    :func:`dnnrsa._fastglm.fit_lss` (the numbers of one nilearn GLM per trial, without
    fitting one); other noise models fit one nilearn GLM per trial.
    """
    noise_model = glm_kwargs["noise_model"]
    if noise_model in NOISE_MODELS:
        own, shared, target = _lss_pieces(frame_times, events, conf, glm_kwargs)
        trial_estimates = fit_lss(
            y,
            own,
            shared,
            target,
            output=output,
            noise_model=noise_model,
            device=glm_kwargs.get("device", "cpu"),
        )
    else:
        designs = [
            _lss_design(frame_times, events, trial, conf, glm_kwargs)
            for trial in range(len(events))
        ]
        trial_estimates = np.stack(
            [_fit_contrasts(y, d, ["lsstarget"], output, glm_kwargs)[0] for d in designs]
        )
    trial_codes = events["trial_type"].to_numpy()
    out = np.empty((len(order), y.shape[1]))
    for k, label in enumerate(order):
        out[k] = trial_estimates[trial_codes == codes[label]].mean(axis=0)
    return out


def _lss_design(frame_times, events, trial, conf, glm_kwargs):
    """nilearn's LSS design of one trial: ``lsstarget`` against ``lssothers``."""
    lss_events = events.copy()
    labels = np.full(len(events), "lssothers", dtype=object)
    labels[trial] = "lsstarget"
    lss_events["trial_type"] = labels
    return _design(frame_times, lss_events, conf, glm_kwargs)


def _lss_pieces(frame_times, events, conf, glm_kwargs):
    """Every trial's own columns and the shared columns of the LSS designs.

    When the HRF model gives one regressor per condition (``"glover"``, ``"spm"``,
    ``None``: a linear map of the events), one nilearn design with a regressor per
    trial holds them all: a trial's ``lsstarget`` is its own regressor (the same bits
    as in its nilearn LSS design) and ``lssothers`` the sum of the other trials'
    regressors (nilearn's, to rounding); drifts, confounds and the constant are the
    design's other columns. Otherwise (HRF derivatives, FIR: per-condition
    orthogonalisation) each trial's nilearn design is built and split by
    :func:`dnnrsa._fastglm.lss_pieces`.

    Returns
    -------
    own : ndarray of shape (n_trials, n_scans, n_own)
    shared : ndarray of shape (n_scans, n_shared)
    target : int
        Position of ``lsstarget`` within ``own``.
    """
    n_trials = len(events)
    names = [f"lsstrial{k:05d}" for k in range(n_trials)]
    trial_events = events.copy()
    trial_events["trial_type"] = names
    design = _design(frame_times, trial_events, conf, glm_kwargs)
    task = [c for c in design.columns if str(c).startswith("lsstrial")]
    if task == names:
        targets = design[names].to_numpy().T  # (n_trials, n_scans)
        shared = design.drop(columns=names).to_numpy()
        if n_trials == 1:
            return targets[:, :, None], shared, 0
        others = targets.sum(axis=0) - targets
        return np.stack([others, targets], axis=2), shared, 1
    designs = [
        _lss_design(frame_times, events, trial, conf, glm_kwargs) for trial in range(n_trials)
    ]
    return lss_pieces(designs, "lsstarget")


# ---------------------------------------------------------------------------
# surface runs: a pair of GIFTI files (left, right hemisphere) per run
# ---------------------------------------------------------------------------


def _is_surface_runs(run_imgs) -> bool:
    """Whether ``run_imgs`` holds surface runs: each run a (left, right) pair.

    A run given as a bare GIFTI file (not in a pair) is refused with a message that
    says how to give it; a mix of pairs and volumes too.
    """
    from ._surfaceio import is_gifti_source

    if isinstance(run_imgs, str | os.PathLike) or not isinstance(run_imgs, list | tuple):
        items = [run_imgs]
    else:
        items = list(run_imgs)
    pairs = [isinstance(item, list | tuple) for item in items]
    if any(pairs) and not all(pairs):
        raise ValueError(
            "run_imgs mixes surface runs ((left, right) pairs) with other inputs; give every "
            "run as a pair of GIFTI files, or every run as a 4D image"
        )
    if not any(pairs) and any(is_gifti_source(item) for item in items):
        raise ValueError(
            "run_imgs holds GIFTI files: give each surface run as a (left, right) pair of "
            "hemispheres, run_imgs=[(lh_run1, rh_run1), (lh_run2, rh_run2), ...]"
        )
    return any(pairs)


@dataclass
class _SurfaceRun:
    """One surface run: its two hemispheres' files (or images), and what loading found.

    Attributes
    ----------
    left, right : path or nibabel.gifti.GiftiImage
    n_left, n_right : int
        Vertices of each hemisphere.
    n_scans : int
        Volumes.
    nonfinite_left, nonfinite_right : ndarray of bool
        Vertices with a NaN or infinite sample.
    """

    left: Any
    right: Any
    n_left: int
    n_right: int
    n_scans: int
    nonfinite_left: np.ndarray = field(repr=False)
    nonfinite_right: np.ndarray = field(repr=False)

    @property
    def n_vertices(self) -> int:
        return self.n_left + self.n_right


def _nonfinite_rows(data: np.ndarray) -> np.ndarray:
    if np.issubdtype(data.dtype, np.integer):
        return np.zeros(data.shape[0], dtype=bool)
    return ~np.all(np.isfinite(data), axis=1)


def _load_surface_run(i: int, pair) -> _SurfaceRun:
    """Read and check run ``i``, a (left, right) pair of GIFTI files."""
    from ._surfaceio import describe, read_gifti_data

    if len(pair) != 2:
        raise ValueError(
            f"run_imgs[{i}] must be a (left, right) pair of GIFTI files; got {len(pair)} item(s)"
        )
    left, right = pair
    data = [
        read_gifti_data(source, f"run_imgs[{i}] ({hemi})")
        for source, hemi in ((left, "left"), (right, "right"))
    ]
    n_scans = [d.shape[1] for d in data]
    if n_scans[0] != n_scans[1]:
        raise ValueError(
            f"run_imgs[{i}]: the left hemisphere {describe(left)} has {n_scans[0]} volume(s), "
            f"the right {describe(right)} {n_scans[1]}"
        )
    if n_scans[0] < 2:
        raise ValueError(
            f"run_imgs[{i}]: {describe(left)} has {n_scans[0]} volume(s); need at least 2 "
            "(one data array per volume, or one array of shape (n_vertices, n_volumes))"
        )
    return _SurfaceRun(
        left=left,
        right=right,
        n_left=int(data[0].shape[0]),
        n_right=int(data[1].shape[0]),
        n_scans=int(n_scans[0]),
        nonfinite_left=_nonfinite_rows(data[0]),
        nonfinite_right=_nonfinite_rows(data[1]),
    )


def _load_surface_inputs(run_imgs, events_list, confounds, condition_column) -> _Runs:
    """:func:`_load_inputs` for surface runs: each run's pair read and checked (the same
    vertex counts in every run), the events and confounds as for volumes."""
    from ._surfaceio import describe

    runs = [_load_surface_run(i, pair) for i, pair in enumerate(run_imgs)]
    first = runs[0]
    for i, run in enumerate(runs[1:], start=1):
        for hemi, n, n0, source, source0 in (
            ("left", run.n_left, first.n_left, run.left, first.left),
            ("right", run.n_right, first.n_right, run.right, first.right),
        ):
            if n != n0:
                raise ValueError(
                    f"run_imgs[{i}] ({hemi}): {describe(source)} has {n} vertices; run_imgs[0] "
                    f"({describe(source0)}) has {n0}: every run must be on the same mesh"
                )
    tables = _load_events(events_list, len(runs), condition_column)
    order = _check_conditions(tables)
    n_scans = [run.n_scans for run in runs]
    confs = _load_confounds(confounds, len(runs), n_scans)
    names = [_run_name(run.left, i) for i, run in enumerate(runs)]
    _warn_zero_durations(tables, names)
    return _Runs(runs, tables, order, n_scans, confs, names)


def _base_surface_mask(runs: _Runs, mask_img):
    """The vertices to keep before the non-finite ones are left out: the given mask
    (checked against the runs' meshes), or the medial wall of fsaverage5 when the runs
    have its vertex counts, or every vertex."""
    from . import surface
    from ._surfaceio import describe

    first = runs.imgs[0]
    counts = (first.n_left, first.n_right)
    if mask_img is None:
        sizes = {n: name for name, n in surface.FSAVERAGE_VERTICES.items()}
        space = sizes.get(counts[0]) if counts[0] == counts[1] else None
        if space == "fsaverage5":
            walls = [surface.fsaverage_medial_wall(hemi) for hemi in surface.HEMISPHERES]
            return surface.SurfaceMask(
                ~walls[0],
                ~walls[1],
                space=space,
                source="fsaverage5 medial wall left out (vertices of zero mean thickness)",
            )
        logger.warning(
            "surface runs of %d and %d vertices%s: no medial wall known offline, every vertex "
            "is kept; give mask_img (dnnrsa.surface.fsaverage_space(..., cortex_labels=...).mask)",
            counts[0],
            counts[1],
            f" ({space})" if space else "",
        )
        return surface.SurfaceMask(
            np.ones(counts[0], dtype=bool),
            np.ones(counts[1], dtype=bool),
            space=space,
            source="every vertex",
        )
    if isinstance(mask_img, surface.SurfaceMask):
        mask = mask_img
    elif isinstance(mask_img, list | tuple) and len(mask_img) == 2:
        mask = surface.SurfaceMask(np.asarray(mask_img[0]), np.asarray(mask_img[1]))
    else:
        raise ValueError(
            "mask_img of surface runs must be a dnnrsa.surface.SurfaceMask or a pair (left, "
            f"right) of boolean arrays (True = kept); got {type(mask_img).__name__}"
        )
    for hemi, n, source, m in (
        ("left", first.n_left, first.left, mask.left.size),
        ("right", first.n_right, first.right, mask.right.size),
    ):
        if n != m:
            raise ValueError(
                f"run_imgs[0] ({hemi}): {describe(source)} has {n} vertices; the mask's mesh "
                f"({mask.space or 'given'}) has {m}"
            )
    return mask


def _prepare_surface_mask(runs: _Runs, mask_img, smoothing_fwhm, noise_normalisation):
    """:func:`_prepare_mask` for surface runs: the vertices kept (the base mask less
    every vertex with a NaN or infinite sample in any run) and their masker.

    Returns
    -------
    mask : dnnrsa.surface.SurfaceMask
        The vertices kept, with the counts of what was left out.
    masker : _SurfaceMasker
    n_vertices : int
        Vertices kept, both hemispheres.
    """
    from . import surface

    if smoothing_fwhm:
        raise ValueError(
            "smoothing_fwhm applies to volume runs; smooth surface runs on the mesh before "
            "(for example with FreeSurfer's mri_surf2surf --fwhm)"
        )
    base = _base_surface_mask(runs, mask_img)
    bad_left = np.logical_or.reduce([run.nonfinite_left for run in runs.imgs])
    bad_right = np.logical_or.reduce([run.nonfinite_right for run in runs.imgs])
    left, right = base.left & ~bad_left, base.right & ~bad_right
    n_candidates = base.n_vertices
    n_kept = int(left.sum() + right.sum())
    where = ", ".join(runs.names)
    if n_kept == 0:
        raise ValueError(
            f"no vertex left in the surface runs {where}: {n_candidates} in the mask, all "
            "with NaN or infinite samples"
        )
    mask = surface.SurfaceMask(
        left,
        right,
        space=base.space,
        source=base.source,
        n_candidates=n_candidates,
        n_nonfinite=n_candidates - n_kept,
        nonfinite_per_run=tuple(
            int(run.nonfinite_left.sum() + run.nonfinite_right.sum()) for run in runs.imgs
        ),
        runs=tuple(runs.names),
    )
    if mask.n_nonfinite:
        logger.warning(
            "surface mask of %s: excluded %d vertices with NaN or infinite samples (per run: %s)",
            where,
            mask.n_nonfinite,
            list(mask.nonfinite_per_run),
        )
    logger.info(
        "surface mask (%s) of %d vertices (%d left, %d right)",
        mask.source,
        n_kept,
        mask.n_left,
        n_kept - mask.n_left,
    )
    if noise_normalisation == "multivariate" and n_kept > MAX_MULTIVARIATE_VOXELS:
        raise ValueError(
            f"noise_normalisation='multivariate' needs a dense {n_kept}x{n_kept} covariance; "
            f"use a mask of at most {MAX_MULTIVARIATE_VOXELS} vertices or 'univariate'"
        )
    return mask, _SurfaceMasker(mask), n_kept


class _SurfaceMasker:
    """The masker of surface runs: a run's kept vertices, left then right, one row per
    volume (as :class:`nilearn.maskers.NiftiMasker` gives a volume run's voxels)."""

    def __init__(self, mask):
        self.mask_img_ = mask

    def transform(self, run: _SurfaceRun) -> np.ndarray:
        from ._surfaceio import read_gifti_data

        left = read_gifti_data(run.left, "left")
        right = read_gifti_data(run.right, "right")
        # C order, as the NiftiMasker gives a volume run (the products' rounding
        # depends on the layout)
        return np.ascontiguousarray(self.mask_img_.stack(left.T, right.T))


def _grid_size(img) -> int:
    """Values of one volume of a run: the voxels of its grid, or the vertices of both
    hemispheres."""
    if isinstance(img, _SurfaceRun):
        return img.n_vertices
    return int(np.prod(img.shape[:3]))
