"""The sign-flip permutation test: sign patterns, the test and its result.

:func:`sign_flip_test` (re-exported by :mod:`dnnrsa.stats`) runs in steps, each a
function of this module: check the data (:func:`_check_data`), draw or check the sign
patterns (:func:`_sign_patterns`), convert the cluster-forming threshold
(:func:`_cluster_threshold_t`); then either the blocked max-T kernel
(:mod:`dnnrsa._maxt`, no t map is formed) or, with TFCE or clusters, the observed maps
(:func:`_observed_maps`), the permuted t maps batch by batch (:func:`_permutation_nulls`)
and the p maps (:func:`_permuted_map_result`). The sign patterns are drawn once, by
:func:`sign_flip_matrix`, before any other step.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from typing import Any

import numpy as np

from . import _tfce
from ._cpus import resolve_n_jobs
from ._masks import load_mask
from ._maxt import _max_t_null, _observed_t, _with_tolerance
from ._scores import t_to_z
from .backend import get_namespace, to_numpy

logger = logging.getLogger(__name__)

THRESHOLD_TYPES = ("p", "t")

__all__ = ["THRESHOLD_TYPES", "SignFlipResult", "sign_flip_matrix", "sign_flip_test"]


def sign_flip_matrix(
    n_subjects: int, n_permutations: int, *, random_state=None
) -> tuple[np.ndarray, bool]:
    """Sign patterns for a one-sample permutation test.

    Parameters
    ----------
    n_subjects : int
    n_permutations : int
        Number of random sign patterns wanted. When ``2**n_subjects`` is not
        larger, every pattern is enumerated instead (the first row is all +1).
    random_state : int, numpy.random.Generator or None

    Returns
    -------
    signs : ndarray of float64, shape (n_patterns, n_subjects)
        Entries are +1 or -1.
    exhaustive : bool
        Whether ``signs`` holds all ``2**n_subjects`` patterns.
    """
    if n_subjects < 2:
        raise ValueError(f"n_subjects must be at least 2; got {n_subjects!r}")
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be positive; got {n_permutations!r}")
    if n_subjects < 63 and 2**n_subjects <= n_permutations:
        codes = np.arange(2**n_subjects, dtype=np.int64)[:, None]
        bits = (codes >> np.arange(n_subjects, dtype=np.int64)) & 1
        return 1.0 - 2.0 * bits, True
    rng = np.random.default_rng(random_state)
    return 1.0 - 2.0 * rng.integers(0, 2, size=(n_permutations, n_subjects)), False


@dataclasses.dataclass
class SignFlipResult:
    """Outcome of :func:`sign_flip_test`; every map has shape ``(n_voxels,)``.

    Attributes
    ----------
    t, z, p : ndarray
        Uncorrected t, its z, and parametric p (one- or two-sided).
    p_perm : ndarray
        Uncorrected permutation p of every voxel.
    p_fwe : ndarray
        Voxel-level FWE p from the maximum statistic (max |t| when two-sided).
    h0_max_t : ndarray of shape (n_permutations,)
        Null distribution of the maximum statistic.
    tfce, p_tfce_fwe, h0_max_tfce : ndarray or None
        TFCE scores of the observed map (signed when two-sided), their FWE p, and
        the null distribution of the maximum |TFCE|.
    cluster_threshold_t : float or None
        Cluster-forming threshold on the t scale.
    cluster_size, cluster_mass : ndarray or None
        Size (voxels) and mass of the cluster each voxel belongs to (0 outside).
    p_cluster_size_fwe, p_cluster_mass_fwe : ndarray or None
        Cluster-level FWE p for every voxel of a cluster (1 outside clusters).
    h0_max_size, h0_max_mass : ndarray or None
        Null distributions of the largest cluster size and mass.
    n_permutations : int
        Number of sign patterns used.
    exhaustive : bool
        Whether all ``2**n_subjects`` patterns were enumerated.
    two_sided : bool
    df : int
        Degrees of freedom, ``n_subjects - 1``.
    """

    t: np.ndarray
    z: np.ndarray
    p: np.ndarray
    p_perm: np.ndarray
    p_fwe: np.ndarray
    h0_max_t: np.ndarray
    n_permutations: int
    exhaustive: bool
    two_sided: bool
    df: int
    tfce: np.ndarray | None = None
    p_tfce_fwe: np.ndarray | None = None
    h0_max_tfce: np.ndarray | None = None
    cluster_threshold_t: float | None = None
    cluster_size: np.ndarray | None = None
    cluster_mass: np.ndarray | None = None
    p_cluster_size_fwe: np.ndarray | None = None
    p_cluster_mass_fwe: np.ndarray | None = None
    h0_max_size: np.ndarray | None = None
    h0_max_mass: np.ndarray | None = None

    MAP_FIELDS = (
        "t",
        "z",
        "p",
        "p_perm",
        "p_fwe",
        "tfce",
        "p_tfce_fwe",
        "cluster_size",
        "cluster_mass",
        "p_cluster_size_fwe",
        "p_cluster_mass_fwe",
    )

    def to_images(self, mask_img) -> dict[str, Any]:
        """Every available voxel map as a 3-D NIfTI image on ``mask_img``'s grid.

        Parameters
        ----------
        mask_img : nibabel image or path
            The mask whose voxels (in C order) the maps describe.

        Returns
        -------
        dict of str to nibabel.Nifti1Image
            Keys are the names in :attr:`MAP_FIELDS` that are not None; voxels
            outside the mask are 0.
        """
        from nilearn.masking import unmask

        mask_img = _load_mask_img(mask_img)
        return {
            name: unmask(np.asarray(getattr(self, name), dtype=np.float32), mask_img)
            for name in self.MAP_FIELDS
            if getattr(self, name) is not None
        }


def _load_mask_img(mask):
    """A mask image or path as a uint8 NIfTI image (1 inside)."""
    import nibabel as nib

    img, inside = load_mask(mask, name="mask")
    return nib.Nifti1Image(inside.astype(np.uint8), img.affine)


def _mask_array(mask) -> np.ndarray | None:
    """A mask (array, image or path) as a boolean array, or None."""
    if mask is None:
        return None
    if isinstance(mask, np.ndarray):
        return mask.astype(bool)
    return load_mask(mask, name="mask").inside


def _p_from_counts(counts, n_null: int, exhaustive: bool):
    """Permutation p from exceedance counts (the identity counted when not exhaustive)."""
    return counts / n_null if exhaustive else (counts + 1.0) / (n_null + 1.0)


def _p_from_null(null: np.ndarray, ref: np.ndarray, exhaustive: bool) -> np.ndarray:
    """p of each reference value against a null distribution of maxima."""
    n_ge = null.size - np.searchsorted(np.sort(null), ref, side="left")
    return _p_from_counts(n_ge.astype(np.float64), null.size, exhaustive)


def _batch_size(n_columns: int, budget_mb: float, bytes_per_cell: int, n_rows: int) -> int:
    """Rows per batch so that a batch of ``n_columns`` cells each fits ``budget_mb``."""
    per_row = max(1, n_columns * bytes_per_cell)
    return int(max(1, min(n_rows, (budget_mb * 2**20) // per_row)))


def _max_t_result(valid, t_obs, h0_t, counts, *, n_perm, exhaustive, two_sided, df):
    """The :class:`SignFlipResult` of the blocked max-T test (no TFCE, no clusters)."""
    t_ref = t_obs[valid]
    t_ref = _with_tolerance(np.abs(t_ref) if two_sided else t_ref, np)
    return SignFlipResult(
        t=t_obs,
        z=t_to_z(t_obs, df),
        p=np.where(valid, _parametric_p(t_obs, df, two_sided), 1.0),
        p_perm=np.where(valid, _p_from_counts(counts.astype(np.float64), n_perm, exhaustive), 1.0),
        p_fwe=_fill(valid, _p_from_null(h0_t, t_ref, exhaustive), 1.0),
        h0_max_t=h0_t,
        n_permutations=n_perm,
        exhaustive=exhaustive,
        two_sided=two_sided,
        df=df,
    )


def _parametric_p(t_obs, df, two_sided):
    """Parametric p of t values under the t distribution (one- or two-sided)."""
    from scipy import stats

    return 2 * stats.t.sf(np.abs(t_obs), df) if two_sided else stats.t.sf(t_obs, df)


def _fill(valid, values, fill):
    """A map of every voxel: ``values`` at the valid voxels, ``fill`` elsewhere."""
    out = np.full(valid.shape, fill, dtype=np.float64)
    out[valid] = values
    return out


def sign_flip_test(
    data,
    *,
    mask=None,
    n_permutations: int = 5000,
    two_sided: bool = False,
    tfce: bool = False,
    cluster_forming_threshold: float | None = None,
    threshold_type: str = "p",
    connectivity: int = 6,
    tfce_e: float = 0.5,
    tfce_h: float = 2.0,
    tfce_n_steps: int = 100,
    random_state=None,
    sign_flips=None,
    device: str | None = None,
    max_memory_mb: float = 512.0,
    n_jobs: int | None = None,
) -> SignFlipResult:
    """One-sample test across subjects by sign-flip permutation.

    Parameters
    ----------
    data : array of shape (n_subjects, n_voxels)
        One map per subject (for example Fisher z of searchlight correlations), in
        the C order of ``mask``'s voxels. Voxels with a non-finite value in any
        subject, or no variance, get NaN statistics and p = 1 and take no part in
        the maxima.
    mask : nibabel image, path, ndarray of bool of shape (nx, ny, nz), or None
        Needed for TFCE and clusters, which are formed on this grid.
    n_permutations : int
        Random sign patterns to draw; all ``2**n_subjects`` patterns are used
        instead when there are no more than this.
    two_sided : bool
        Test both signs (maxima of |t|, negative clusters too).
    tfce : bool
        Compute TFCE and its FWE p (requires ``mask``).
    cluster_forming_threshold : float or None
        Compute cluster-size and cluster-mass FWE p for clusters formed above this
        threshold (requires ``mask``).
    threshold_type : {"p", "t"}
        Whether ``cluster_forming_threshold`` is an uncorrected p (converted with
        the t distribution, halved when two-sided, as nilearn does) or a t value.
    connectivity : {6, 18, 26}
        Voxel neighbourhood for clusters and TFCE (6, faces, as in nilearn).
    tfce_e, tfce_h, tfce_n_steps : float, float, int
        TFCE extent and height exponents and number of thresholds.
    random_state : int, numpy.random.Generator or None
        Seed of the sign patterns.
    sign_flips : array of shape (n_permutations, n_subjects) or None
        Explicit random sign patterns (entries +1 or -1), used instead of drawing
        them; useful to reproduce another tool's permutations exactly.
    device : {"auto", "cpu", "cuda"} or None
        Where to compute; None follows ``data`` (cupy array -> GPU).
    max_memory_mb : float
        Memory budget of the permutation work: one batch of permuted maps with TFCE
        or clusters; otherwise all blocks of voxels in flight together (the data
        themselves are never copied whole).
    n_jobs : int or None
        Threads on the CPU: for the voxel-level (max-T) test without TFCE or
        clusters, and for TFCE on large masks (one permuted map per thread); None
        uses every core available to the process.

    Returns
    -------
    SignFlipResult
        Maps of shape (n_voxels,) as numpy arrays.

    Notes
    -----
    Without TFCE or clusters, no permuted t map is formed: under a sign pattern the
    t of a voxel is a monotone function of its signed sum divided by the root of its
    (unchanged) sum of squares, so the null maximum of t and every voxel's
    exceedance count follow from those normalised sums, computed in blocks of voxels
    (see :func:`_max_t_null`). The results equal those of the permuted t maps up to
    rounding (the observed values are lowered by a relative tolerance of 1e-9
    before counting, far above it).
    """
    xp, host, mask_arr = _check_data(
        data,
        mask,
        threshold_type=threshold_type,
        needs_mask=tfce or cluster_forming_threshold is not None,
        device=device,
    )
    n_subjects = host.shape[0]
    df = n_subjects - 1
    signs, exhaustive = _sign_patterns(
        n_subjects, n_permutations, sign_flips=sign_flips, random_state=random_state
    )
    cluster_t = _cluster_threshold_t(
        cluster_forming_threshold, threshold_type, two_sided=two_sided, df=df
    )
    n_jobs = resolve_n_jobs(n_jobs, below_one="one")
    if not tfce and cluster_t is None:
        valid, t_obs, h0_t, counts = _max_t_null(
            host, signs, two_sided=two_sided, xp=xp, max_memory_mb=max_memory_mb, n_jobs=n_jobs
        )
        return _max_t_result(
            valid, t_obs, h0_t, counts,
            n_perm=signs.shape[0], exhaustive=exhaustive, two_sided=two_sided, df=df,
        )  # fmt: skip
    tfce_options = {"e": tfce_e, "h": tfce_h, "n_steps": tfce_n_steps} if tfce else None
    return _permuted_map_test(
        host,
        signs,
        mask_arr,
        exhaustive=exhaustive,
        two_sided=two_sided,
        tfce_options=tfce_options,
        cluster_t=cluster_t,
        connectivity=connectivity,
        xp=xp,
        max_memory_mb=max_memory_mb,
        n_jobs=n_jobs,
    )


# -- the steps of sign_flip_test --------------------------------------------------


def _check_data(data, mask, *, threshold_type: str, needs_mask: bool, device):
    """Check the data and the mask of :func:`sign_flip_test`.

    Parameters
    ----------
    data : array of shape (n_subjects, n_voxels)
    mask : nibabel image, path, ndarray of bool or None
    threshold_type : str
    needs_mask : bool
        Whether TFCE or clusters were asked for (they need ``mask``).
    device : {"auto", "cpu", "cuda"} or None

    Returns
    -------
    xp : module
        numpy or cupy, where the test runs.
    host : ndarray of shape (n_subjects, n_voxels)
        ``data`` on the host.
    mask_arr : ndarray of bool or None
    """
    if threshold_type not in THRESHOLD_TYPES:
        raise ValueError(
            f"threshold_type must be one of {list(THRESHOLD_TYPES)}; got {threshold_type!r}"
        )
    xp = get_namespace(data, device=device)
    host = to_numpy(data)
    if host.ndim != 2:
        raise ValueError(f"data must have shape (n_subjects, n_voxels); got {host.shape}")
    n_subjects, n_voxels = host.shape
    if n_subjects < 2:
        raise ValueError(f"data needs at least 2 subjects; got {n_subjects}")
    mask_arr = _mask_array(mask)
    if needs_mask and mask_arr is None:
        raise ValueError("mask is required when tfce=True or cluster_forming_threshold is set")
    if mask_arr is not None and int(mask_arr.sum()) != n_voxels:
        raise ValueError(f"mask has {int(mask_arr.sum())} voxels but data has {n_voxels} columns")
    return xp, host, mask_arr


def _sign_patterns(n_subjects: int, n_permutations: int, *, sign_flips, random_state):
    """The sign patterns of a test: ``sign_flips`` checked, or :func:`sign_flip_matrix`.

    Returns
    -------
    signs : ndarray of float64, shape (n_patterns, n_subjects)
    exhaustive : bool
        Whether ``signs`` holds all ``2**n_subjects`` patterns (never for ``sign_flips``).
    """
    if sign_flips is None:
        return sign_flip_matrix(n_subjects, n_permutations, random_state=random_state)
    signs = np.asarray(sign_flips, dtype=np.float64)
    if signs.ndim != 2 or signs.shape[1] != n_subjects or not np.all(np.abs(signs) == 1):
        raise ValueError(
            f"sign_flips must be an array of +1/-1 of shape (n_permutations, {n_subjects})"
        )
    return signs, False


def _cluster_threshold_t(threshold, threshold_type: str, *, two_sided: bool, df: int):
    """The cluster-forming threshold on the t scale (None when ``threshold`` is None).

    A p threshold is converted with the t distribution of ``df`` degrees of freedom,
    halved when two-sided (as nilearn does).
    """
    from scipy import stats

    if threshold is None:
        return None
    if threshold_type != "p":
        return float(threshold)
    if not 0 < threshold < 1:
        raise ValueError(
            "cluster_forming_threshold must lie in (0, 1) when threshold_type='p'; "
            f"got {threshold!r}"
        )
    tail = threshold / 2 if two_sided else threshold
    return float(stats.t.isf(tail, df))


@dataclasses.dataclass
class _ObservedMaps:
    """The observed statistics of the permuted-map test.

    Attributes
    ----------
    valid : ndarray of bool, shape (n_voxels,)
        Voxels finite in every subject and with variance.
    t, z, p : ndarray of shape (n_voxels,)
        Observed t (NaN at invalid voxels), its z and its parametric p.
    x : array of shape (n_subjects, n_valid)
        The data of the valid voxels, on the device.
    sumsq : array of shape (n_valid,)
        Their sums of squares (unchanged by sign flips).
    t_valid, t_ref : array of shape (n_valid,)
        Observed t of the valid voxels, and the same (absolute when two-sided) lowered by
        the tolerance, the reference of the exceedance counts.
    layout : dnnrsa._tfce.VolumeLayout
        The valid voxels on the mask's grid.
    tfce, tfce_ref : array of shape (n_valid,) or None
        Observed TFCE and its absolute value lowered by the tolerance.
    size, mass : array of shape (n_valid,) or None
        Size and mass of the observed cluster of every voxel.
    """

    valid: np.ndarray
    t: np.ndarray
    z: np.ndarray
    p: np.ndarray
    x: Any
    sumsq: Any
    t_valid: Any
    t_ref: Any
    layout: Any = None
    tfce: Any = None
    tfce_ref: Any = None
    size: Any = None
    mass: Any = None


def _observed_maps(host, mask_arr, *, two_sided, connectivity, xp) -> _ObservedMaps:
    """Observed t, z and p of every voxel, and the valid voxels' data and layout."""
    df = host.shape[0] - 1
    valid, t_obs, clean = _observed_t(host)
    z_obs = t_to_z(t_obs, df)
    p_par = _parametric_p(t_obs, df, two_sided)
    x = xp.asarray(clean[:, valid])
    del clean
    t_valid = xp.asarray(t_obs[valid])
    valid_mask = np.zeros(mask_arr.shape, dtype=bool)
    valid_mask[tuple(c[valid] for c in np.nonzero(mask_arr))] = True
    return _ObservedMaps(
        valid=valid,
        t=t_obs,
        z=z_obs,
        p=p_par,
        x=x,
        sumsq=xp.sum(x * x, axis=0),
        t_valid=t_valid,
        t_ref=_with_tolerance(xp.abs(t_valid) if two_sided else t_valid, xp),
        layout=_tfce.VolumeLayout(valid_mask, connectivity=connectivity, xp=xp),
    )


def _permuted_map_test(
    host,
    signs,
    mask_arr,
    *,
    exhaustive,
    two_sided,
    tfce_options,
    cluster_t,
    connectivity,
    xp,
    max_memory_mb,
    n_jobs,
) -> SignFlipResult:
    """:func:`sign_flip_test` with TFCE or clusters, from permuted t maps.

    Parameters
    ----------
    host : ndarray of shape (n_subjects, n_voxels)
    signs : ndarray of shape (n_perm, n_subjects)
    mask_arr : ndarray of bool
        The mask whose voxels (in C order) are the columns of ``host``.
    exhaustive, two_sided : bool
    tfce_options : dict or None
        ``e``, ``h`` and ``n_steps`` of TFCE; None computes no TFCE.
    cluster_t : float or None
        Cluster-forming threshold on the t scale; None forms no clusters.
    connectivity : int
    xp : module
    max_memory_mb : float
        Budget of one batch of permuted maps.
    n_jobs : int
        Threads of TFCE on the CPU.

    Returns
    -------
    SignFlipResult
    """
    n_subjects, n_voxels = host.shape
    n_perm = signs.shape[0]
    obs = _observed_maps(host, mask_arr, two_sided=two_sided, connectivity=connectivity, xp=xp)
    tfce_maps = None
    if tfce_options is not None:
        tfce_maps = functools.partial(
            _tfce.tfce,
            layout=obs.layout,
            two_sided=two_sided,
            **tfce_options,
            n_jobs=n_jobs,
        )
        obs.tfce = tfce_maps(obs.t_valid[None, :])[0]
        obs.tfce_ref = _with_tolerance(xp.abs(obs.tfce), xp)
    if cluster_t is not None:
        size_obs, mass_obs, _, _ = _tfce.cluster_measures(
            obs.t_valid[None, :], obs.layout, cluster_t, two_sided=two_sided
        )
        obs.size, obs.mass = size_obs[0], mass_obs[0]
    n_valid = int(obs.valid.sum())
    bytes_per_cell = max(40, 16 * obs.layout.box_size // max(n_valid, 1) + 40)
    batch = _batch_size(n_valid, max_memory_mb, bytes_per_cell, n_perm)
    logger.info(
        "sign-flip test: %d subjects, %d voxels, %d permutations (%s), batches of %d",
        n_subjects,
        n_voxels,
        n_perm,
        "exhaustive" if exhaustive else "random",
        batch,
    )
    nulls = _permutation_nulls(
        signs,
        obs,
        batch=batch,
        two_sided=two_sided,
        tfce_maps=tfce_maps,
        cluster_t=cluster_t,
        xp=xp,
    )
    return _permuted_map_result(
        obs, nulls, exhaustive=exhaustive, two_sided=two_sided, cluster_t=cluster_t
    )


@dataclasses.dataclass
class _Nulls:
    """Null distributions of the maxima (each of shape (n_perm,), None when not asked
    for) and the exceedance count of every valid voxel's t."""

    t: np.ndarray
    count: Any
    tfce: np.ndarray | None
    size: np.ndarray | None
    mass: np.ndarray | None


def _permutation_nulls(signs, obs, *, batch, two_sided, tfce_maps, cluster_t, xp) -> _Nulls:
    """Permuted t maps, batch by batch, and what the test keeps of them.

    Parameters
    ----------
    signs : ndarray of shape (n_perm, n_subjects)
    obs : _ObservedMaps
    batch : int
        Permutations per batch.
    two_sided : bool
    tfce_maps : callable or None
        TFCE of a batch of maps of shape (n_batch, n_valid).
    cluster_t : float or None
    xp : module

    Returns
    -------
    _Nulls
    """
    n_perm = signs.shape[0]
    n_subjects, n_valid = obs.x.shape[0], int(obs.valid.sum())
    s_dev = xp.asarray(signs)
    nulls = _Nulls(
        t=np.empty(n_perm),
        count=xp.zeros(n_valid),
        tfce=np.empty(n_perm) if tfce_maps is not None else None,
        size=np.empty(n_perm) if cluster_t is not None else None,
        mass=np.empty(n_perm) if cluster_t is not None else None,
    )
    factor = math.sqrt((n_subjects - 1) / n_subjects)
    for start in range(0, n_perm, batch):
        stop = min(start + batch, n_perm)
        # t = s * sqrt(df / n) / sqrt(sum(x**2) - s**2 / n), with s the signed sum;
        # in place, to keep the number of passes over the batch small
        total = s_dev[start:stop] @ obs.x
        t_perm = total * total
        t_perm *= -1.0 / n_subjects
        t_perm += obs.sumsq[None, :]
        xp.maximum(t_perm, 0.0, out=t_perm)
        xp.sqrt(t_perm, out=t_perm)
        with np.errstate(divide="ignore", invalid="ignore"):
            xp.divide(total, t_perm, out=t_perm)
        t_perm *= factor
        del total
        stat = xp.abs(t_perm) if two_sided else t_perm
        nulls.t[start:stop] = to_numpy(xp.max(stat, axis=1) if n_valid else -np.inf)
        nulls.count += xp.count_nonzero(stat >= obs.t_ref[None, :], axis=0)
        del stat
        if tfce_maps is not None:
            scores = xp.abs(tfce_maps(t_perm))
            nulls.tfce[start:stop] = to_numpy(xp.max(scores, axis=1))
            del scores
        if cluster_t is not None:
            _, _, max_size, max_mass = _tfce.cluster_measures(
                t_perm, obs.layout, cluster_t, two_sided=two_sided
            )
            nulls.size[start:stop] = to_numpy(max_size)
            nulls.mass[start:stop] = to_numpy(max_mass)
        del t_perm
    return nulls


def _permuted_map_result(obs, nulls, *, exhaustive, two_sided, cluster_t) -> SignFlipResult:
    """The :class:`SignFlipResult` of the permuted-map test: p maps from the nulls.

    Maps cover every voxel; invalid voxels get p = 1 and TFCE and cluster measures 0.
    """
    valid = obs.valid
    n_perm = nulls.t.size
    result = SignFlipResult(
        t=obs.t,
        z=obs.z,
        p=np.where(valid, obs.p, 1.0),
        p_perm=_fill(valid, to_numpy(_p_from_counts(nulls.count, n_perm, exhaustive)), 1.0),
        p_fwe=_fill(valid, _p_from_null(nulls.t, to_numpy(obs.t_ref), exhaustive), 1.0),
        h0_max_t=nulls.t,
        n_permutations=n_perm,
        exhaustive=exhaustive,
        two_sided=two_sided,
        df=obs.x.shape[0] - 1,
    )
    if nulls.tfce is not None:
        result.tfce = _fill(valid, to_numpy(obs.tfce), 0.0)
        p_tfce = _p_from_null(nulls.tfce, to_numpy(obs.tfce_ref), exhaustive)
        result.p_tfce_fwe = _fill(valid, p_tfce, 1.0)
        result.h0_max_tfce = nulls.tfce
    if cluster_t is not None:
        size_h = to_numpy(obs.size)
        mass_h = to_numpy(obs.mass)
        n_ge_size = n_perm - np.searchsorted(np.sort(nulls.size), size_h - 0.5, side="left")
        n_ge_mass = n_perm - np.searchsorted(
            np.sort(nulls.mass), _with_tolerance(mass_h, np), side="left"
        )
        in_cluster = size_h > 0
        p_size = np.where(in_cluster, _p_from_counts(n_ge_size, n_perm, exhaustive), 1.0)
        p_mass = np.where(in_cluster, _p_from_counts(n_ge_mass, n_perm, exhaustive), 1.0)
        result.cluster_threshold_t = cluster_t
        result.cluster_size = _fill(valid, size_h, 0.0)
        result.cluster_mass = _fill(valid, mass_h, 0.0)
        result.p_cluster_size_fwe = _fill(valid, p_size, 1.0)
        result.p_cluster_mass_fwe = _fill(valid, p_mass, 1.0)
        result.h0_max_size = nulls.size
        result.h0_max_mass = nulls.mass
    return result
