"""Group statistics: one-sample sign-flip permutation tests on subject maps.

The engine works on a matrix of subject maps, ``(n_subjects, n_voxels)``, in mask
order. Every permutation is a row of a sign matrix ``S`` of shape
``(n_permutations, n_subjects)``; the permuted sums are one matrix product
``S @ data`` per batch (the sum of squares does not change under sign flips), so
the permuted t maps of a whole batch come out of a few array operations, on numpy
or CuPy. From them the test collects

- the uncorrected t map, its z (same tail probability under the t distribution
  with ``n_subjects - 1`` degrees of freedom) and parametric p;
- voxel-level family-wise error (FWE) p from the distribution of the maximum t;
- threshold-free cluster enhancement (TFCE) and its FWE p;
- cluster-size and cluster-mass FWE p for a cluster-forming threshold.

Conventions follow nilearn's ``permuted_ols`` so that results agree with
``nilearn.glm.second_level.non_parametric_inference``: p-values are
``(1 + #{null >= observed}) / (1 + n_permutations)`` for random sign flips, and
``#{null >= observed} / 2**n_subjects`` when all sign patterns are enumerated
(the identity is then one of them).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
from typing import Any

import numpy as np

from . import _tfce
from .backend import get_namespace, to_numpy

logger = logging.getLogger(__name__)

THRESHOLD_TYPES = ("p", "t")

__all__ = [
    "GroupTestResult",
    "LayerComparisonResult",
    "SignFlipResult",
    "compare_best_layers",
    "fisher_z",
    "group_test_imgs",
    "group_test_maps",
    "layer_winner_imgs",
    "sign_flip_matrix",
    "sign_flip_test",
    "sign_flip_test_imgs",
    "t_to_z",
    "winner_take_all",
]


def fisher_z(r, *, clip: float = 1.0 - 1e-7, xp=None):
    """Fisher z transform of correlation-type scores, ``arctanh(r)``.

    Parameters
    ----------
    r : array-like of any shape
        Correlations (Pearson, Spearman, Kendall, cosine). NaN stays NaN.
    clip : float
        Values are clipped to ``[-clip, clip]`` first, so that ``|r| = 1`` gives a
        large finite z instead of infinity.
    xp : module or None
        numpy or cupy; inferred from ``r`` when None.

    Returns
    -------
    array of the same shape as ``r``
    """
    if not 0 < clip < 1:
        raise ValueError(f"clip must lie in (0, 1); got {clip!r}")
    xp = xp or get_namespace(r)
    r = xp.asarray(r, dtype=xp.float64)
    return xp.arctanh(xp.clip(r, -clip, clip))


def t_to_z(t, df: float) -> np.ndarray:
    """Convert t values to z values with the same tail probability.

    Uses log tail probabilities, so that large t give finite, accurate z.

    Parameters
    ----------
    t : array-like
    df : float
        Degrees of freedom.

    Returns
    -------
    ndarray of the same shape as ``t`` (sign kept; NaN stays NaN)
    """
    from scipy import special, stats  # noqa: PLC0415

    t = np.asarray(t, dtype=np.float64)
    log_sf = stats.t.logsf(np.abs(t), df)
    return np.sign(t) * -special.ndtri_exp(log_sf)


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
        from nilearn.masking import unmask  # noqa: PLC0415

        mask_img = _load_mask_img(mask_img)
        return {
            name: unmask(np.asarray(getattr(self, name), dtype=np.float32), mask_img)
            for name in self.MAP_FIELDS
            if getattr(self, name) is not None
        }


def _load_mask_img(mask):
    import nibabel as nib  # noqa: PLC0415

    if isinstance(mask, str | os.PathLike):
        mask = nib.load(mask)
    data = np.asanyarray(mask.dataobj) != 0
    return nib.Nifti1Image(data.astype(np.uint8), mask.affine)


def _mask_array(mask) -> np.ndarray | None:
    if mask is None:
        return None
    if isinstance(mask, np.ndarray):
        return mask.astype(bool)
    return np.asanyarray(_load_mask_img(mask).dataobj).astype(bool)


def _p_from_counts(counts, n_null: int, exhaustive: bool):
    return counts / n_null if exhaustive else (counts + 1.0) / (n_null + 1.0)


def _p_from_null(null: np.ndarray, ref: np.ndarray, exhaustive: bool) -> np.ndarray:
    """p of each reference value against a null distribution of maxima."""
    n_ge = null.size - np.searchsorted(np.sort(null), ref, side="left")
    return _p_from_counts(n_ge.astype(np.float64), null.size, exhaustive)


def _with_tolerance(ref, xp):
    """Lower a reference statistic by a relative tolerance.

    A permuted statistic that equals the observed one in exact arithmetic (the
    identity pattern, or its mirror image in a two-sided test) may come out a few
    units in the last place below it; it must still count as "at least as large".
    """
    return ref - _REL_TOL * xp.maximum(xp.abs(ref), 1.0)


_REL_TOL = 1e-9

# CPU max-T kernel: voxels per block and permutations per batch, so that a batch of
# permuted values (8 MiB) stays in the processor's cache between its passes
_CPU_BLOCK_VOXELS = 16384
_CPU_BATCH = 64


def _batch_size(n_columns: int, budget_mb: float, bytes_per_cell: int, n_rows: int) -> int:
    per_row = max(1, n_columns * bytes_per_cell)
    return int(max(1, min(n_rows, (budget_mb * 2**20) // per_row)))


def _observed_t(block: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Valid voxels, one-sample t and zero-filled float64 data of ``(n_subjects, n)``.

    Every statistic is a reduction over subjects (axis 0), so a block of columns gives
    the same values, bit for bit, as the whole matrix.
    """
    host = np.asarray(block, dtype=np.float64)
    n_subjects = host.shape[0]
    finite = np.isfinite(host).all(axis=0)
    clean = np.where(finite, host, 0.0)
    sd = clean.std(axis=0, ddof=1)
    valid = finite & (sd > 0)
    t_obs = np.full(host.shape[1], np.nan)
    t_obs[valid] = clean[:, valid].mean(axis=0) / (sd[valid] / math.sqrt(n_subjects))
    return valid, t_obs, clean


def _t_from_u(u, n_subjects: int, xp=np):
    """t of a sign-flipped sum ``u = sum(s * x) / sqrt(sum(x**2))`` (monotone in u)."""
    u = xp.asarray(u, dtype=xp.float64)
    denom = xp.sqrt(xp.maximum(1.0 - u * u / n_subjects, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = u * math.sqrt((n_subjects - 1) / n_subjects) / denom
    return xp.where(xp.isneginf(u), -xp.inf, t)


def _u_from_t(t, n_subjects: int, xp=np):
    """Inverse of :func:`_t_from_u`: the normalised sum whose t equals ``t``."""
    t = xp.asarray(t, dtype=xp.float64)
    return t * xp.sqrt(n_subjects / (n_subjects - 1 + t * t))


def _subject_groups(n_subjects: int, n_perm: int) -> list[tuple[int, int]]:
    """Split subjects into groups whose partial sums are tabulated (CPU kernel).

    A group of ``k`` subjects has a table of all ``2**k`` signed sums; a permuted sum
    is then one row of each table added together. The sizes minimise the rows to
    build plus the rows to add.
    """
    best = None
    for size in range(1, min(n_subjects, 12) + 1):
        k = -(-n_subjects // size)
        cost = k * 2 ** -(-n_subjects // k) + n_perm * max(k - 1, 1)
        if best is None or cost < best[0]:
            best = (cost, k)
    k = best[1]
    edges = [round(i * n_subjects / k) for i in range(k + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def _max_t_block(xn, signs, u_ref, *, two_sided, batch, groups, codes, xp):
    """Null maxima and exceedance counts of one block of voxels.

    Parameters
    ----------
    xn : array (n_subjects, n_block)
        Data of valid voxels divided by the root of their sum of squares.
    signs : array (n_perm, n_subjects)
        Sign patterns (on the device of ``xn``).
    u_ref : array (n_block,)
        Observed statistics, on the scale of ``u``, lowered by the tolerance.
    batch : int
        Permutations per product.
    groups, codes : list or None
        Subject groups and, per group, each pattern's row index in the group's table
        of signed sums (the table kernel); None uses matrix products.

    Returns
    -------
    max_u : ndarray (n_perm,)
        Largest ``u`` (``|u|`` when two-sided) of each pattern over the block.
    counts : array (n_block,)
        Patterns whose statistic reaches ``u_ref``, per voxel.
    """
    n_perm = signs.shape[0]
    n_block = xn.shape[1]
    max_u = np.empty(n_perm)
    counts = xp.zeros(n_block, dtype=xp.int64)
    tables = None
    if groups is not None:
        tables = []
        for lo, hi in groups:
            table = np.empty((2 ** (hi - lo), n_block))
            table[0] = xn[lo:hi].sum(axis=0)
            for j in range(hi - lo):
                step = 1 << j
                np.subtract(table[:step], 2.0 * xn[lo + j], out=table[step : 2 * step])
            tables.append(table)
    out = xp.empty((min(batch, n_perm), n_block))
    hit = xp.empty(out.shape, dtype=bool)
    for start in range(0, n_perm, batch):
        stop = min(start + batch, n_perm)
        u = out[: stop - start]
        if tables is None:
            xp.matmul(signs[start:stop], xn, out=u)
        elif len(tables) == 1:
            np.take(tables[0], codes[0][start:stop], axis=0, out=u)
        else:
            rows = [c[start:stop].tolist() for c in codes]
            first, second, rest = tables[0], tables[1], tables[2:]
            for i, (a, b) in enumerate(zip(rows[0], rows[1], strict=True)):
                np.add(first[a], second[b], out=u[i])
            for table, idx in zip(rest, rows[2:], strict=True):
                for i, c in enumerate(idx):
                    np.add(u[i], table[c], out=u[i])
        if two_sided:
            xp.abs(u, out=u)
        max_u[start:stop] = to_numpy(xp.max(u, axis=1))
        h = hit[: stop - start]
        xp.greater_equal(u, u_ref[None, :], out=h)
        if xp is np and h.shape[0] < 256:  # no overflow of uint8 sums
            counts += np.add.reduce(h.view(np.uint8), axis=0, dtype=np.uint8)
        else:
            counts += xp.sum(h, axis=0, dtype=xp.int64)
    return max_u, counts


def _max_t_null(data, signs, *, two_sided, xp, max_memory_mb, n_jobs):
    """Observed t and the max-T null of a sign-flip test, in blocks of voxels.

    Under a sign pattern ``s`` the t of voxel ``v`` is a monotone function of
    ``u = s @ x_v / sqrt(sum(x_v**2))`` (the sum of squares does not change), so the
    maximum t is that function of the maximum ``u`` and a voxel's permuted t reaches
    its observed one exactly when ``u`` reaches the observed ``u``. Only ``u`` is
    computed per pattern and voxel: on the GPU as matrix products of the patterns
    with the normalised data, on the CPU by adding rows of tables of all signed sums
    of groups of subjects (one addition per value instead of one per subject). Blocks
    of voxels are sized to ``max_memory_mb`` and run on ``n_jobs`` threads.

    Returns
    -------
    valid : ndarray of bool (n_voxels,)
    t_obs : ndarray (n_voxels,)
    h0_t : ndarray (n_perm,)
    counts : ndarray (n_voxels,)
        Exceedance counts (0 at invalid voxels).
    """
    return _max_t_null_maps(
        [data], signs, two_sided=two_sided, xp=xp, max_memory_mb=max_memory_mb, n_jobs=n_jobs
    )[0]


def _max_t_null_maps(maps, signs, *, two_sided, xp, max_memory_mb, n_jobs):
    """:func:`_max_t_null` of several maps at once, each with its own maximum.

    ``maps`` is a list of ``(n_subjects, n_voxels_k)`` arrays with the same number of
    subjects (the rows need not be the same subjects: every voxel is tested on its
    own column). Blocks of voxels never straddle two maps and all blocks of all maps
    share one pool of ``n_jobs`` threads; each map's null maximum is the maximum over
    its own blocks only, so every map's result equals that of :func:`_max_t_null` on
    the map alone, bit for bit (a maximum and a count do not depend on the blocking).

    Returns
    -------
    list of (valid, t_obs, h0_t, counts), one per map (see :func:`_max_t_null`).
    """
    n_subjects = maps[0].shape[0]
    if any(m.shape[0] != n_subjects for m in maps):
        raise ValueError(
            f"every map needs the same number of subjects; got {[m.shape[0] for m in maps]}"
        )
    n_perm = signs.shape[0]
    on_gpu = xp is not np
    groups = codes = None
    row_bytes = 8 * n_subjects * 4  # the block's copies of the data
    batch = min(n_perm, _CPU_BATCH)
    if on_gpu:
        signs_dev = xp.asarray(signs)
        n_jobs = 1
        batch = min(n_perm, 1024)
    else:
        signs_dev = signs
        groups = _subject_groups(n_subjects, n_perm)
        flipped = signs < 0
        codes = [
            (flipped[:, lo:hi] << np.arange(hi - lo)).sum(axis=1).astype(np.intp)
            for lo, hi in groups
        ]
        row_bytes += 8 * sum(2 ** (hi - lo) for lo, hi in groups)
    row_bytes += 9 * batch  # the block of permuted values and its comparisons
    n_jobs = max(1, n_jobs)
    n_total = sum(m.shape[1] for m in maps)
    block = int(max(64, (max_memory_mb * 2**20 / n_jobs) // row_bytes))
    if not on_gpu:
        block = min(block, _CPU_BLOCK_VOXELS)  # permuted values stay in the cache
    block = min(block, max(1, -(-n_total // n_jobs)))
    tasks = [(k, start) for k, m in enumerate(maps) for start in range(0, m.shape[1], block)]
    logger.info(
        "sign-flip max-T: %d map(s), %d subjects, %d voxels, %d permutations, %s, blocks of "
        "%d voxels x %d permutations on %d thread(s)",
        len(maps),
        n_subjects,
        n_total,
        n_perm,
        "matrix products" if groups is None else f"tables of {len(groups)} subject groups",
        block,
        batch,
        n_jobs,
    )

    def run(task):
        k, start = task
        valid, t_obs, clean = _observed_t(maps[k][:, start : start + block])
        x = clean[:, valid]
        if not x.shape[1]:
            return valid, t_obs, np.full(n_perm, -np.inf), np.zeros(0, dtype=np.int64)
        xn = x / np.sqrt(np.sum(x * x, axis=0))
        t_ref = t_obs[valid]
        t_ref = _with_tolerance(np.abs(t_ref) if two_sided else t_ref, np)
        u_ref = _u_from_t(t_ref, n_subjects)
        max_u, counts = _max_t_block(
            xp.asarray(xn),
            signs_dev,
            xp.asarray(u_ref),
            two_sided=two_sided,
            batch=batch,
            groups=groups,
            codes=codes,
            xp=xp,
        )
        return valid, t_obs, max_u, to_numpy(counts)

    out = [
        (
            np.zeros(m.shape[1], dtype=bool),
            np.empty(m.shape[1]),
            np.zeros(m.shape[1], dtype=np.int64),
            np.full(n_perm, -np.inf),
        )
        for m in maps
    ]
    if n_jobs > 1 and len(tasks) > 1:
        from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

        with ThreadPoolExecutor(n_jobs) as pool:
            for (k, start), part in zip(tasks, pool.map(run, tasks), strict=True):
                _collect(start, part, *out[k])
    else:
        for k, start in tasks:
            _collect(start, run((k, start)), *out[k])
    return [
        (valid, t_obs, to_numpy(_t_from_u(max_u, n_subjects)), counts)
        for valid, t_obs, counts, max_u in out
    ]


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
    from scipy import stats  # noqa: PLC0415

    return 2 * stats.t.sf(np.abs(t_obs), df) if two_sided else stats.t.sf(t_obs, df)


def _fill(valid, values, fill):
    out = np.full(valid.shape, fill, dtype=np.float64)
    out[valid] = values
    return out


def _collect(start, part, valid, t_obs, counts, max_u):
    v, t, m, c = part
    sl = slice(start, start + v.size)
    valid[sl] = v
    t_obs[sl] = t
    counts[sl][v] = c
    np.maximum(max_u, m, out=max_u)


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
    from scipy import stats  # noqa: PLC0415

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
    if (tfce or cluster_forming_threshold is not None) and mask_arr is None:
        raise ValueError("mask is required when tfce=True or cluster_forming_threshold is set")
    if mask_arr is not None and int(mask_arr.sum()) != n_voxels:
        raise ValueError(f"mask has {int(mask_arr.sum())} voxels but data has {n_voxels} columns")
    df = n_subjects - 1

    # -- sign patterns -------------------------------------------------------------
    if sign_flips is not None:
        signs = np.asarray(sign_flips, dtype=np.float64)
        if signs.ndim != 2 or signs.shape[1] != n_subjects or not np.all(np.abs(signs) == 1):
            raise ValueError(
                f"sign_flips must be an array of +1/-1 of shape (n_permutations, {n_subjects})"
            )
        exhaustive = False
    else:
        signs, exhaustive = sign_flip_matrix(n_subjects, n_permutations, random_state=random_state)
    n_perm = signs.shape[0]

    cluster_t = None
    if cluster_forming_threshold is not None:
        if threshold_type == "p":
            if not 0 < cluster_forming_threshold < 1:
                raise ValueError(
                    "cluster_forming_threshold must lie in (0, 1) when threshold_type='p'; "
                    f"got {cluster_forming_threshold!r}"
                )
            tail = cluster_forming_threshold / 2 if two_sided else cluster_forming_threshold
            cluster_t = float(stats.t.isf(tail, df))
        else:
            cluster_t = float(cluster_forming_threshold)

    if n_jobs is None:
        n_jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if not tfce and cluster_t is None:
        valid, t_obs, h0_t, counts = _max_t_null(
            host,
            signs,
            two_sided=two_sided,
            xp=xp,
            max_memory_mb=max_memory_mb,
            n_jobs=int(n_jobs),
        )
        return _max_t_result(
            valid,
            t_obs,
            h0_t,
            counts,
            n_perm=n_perm,
            exhaustive=exhaustive,
            two_sided=two_sided,
            df=df,
        )

    # -- permuted t maps, for TFCE and clusters --------------------------------------
    valid, t_obs, clean = _observed_t(host)
    z_obs = t_to_z(t_obs, df)
    p_par = _parametric_p(t_obs, df, two_sided)
    n_valid = int(valid.sum())
    x = xp.asarray(clean[:, valid])
    del clean
    sumsq = xp.sum(x * x, axis=0)
    s_dev = xp.asarray(signs)
    t_valid = xp.asarray(t_obs[valid])
    t_ref = _with_tolerance(xp.abs(t_valid) if two_sided else t_valid, xp)

    layout = None
    if tfce or cluster_t is not None:
        valid_mask = np.zeros(mask_arr.shape, dtype=bool)
        valid_mask[tuple(c[valid] for c in np.nonzero(mask_arr))] = True
        layout = _tfce.VolumeLayout(valid_mask, connectivity=connectivity, xp=xp)

    tfce_obs = tfce_ref = None
    if tfce:
        tfce_maps = functools.partial(
            _tfce.tfce,
            layout=layout,
            two_sided=two_sided,
            e=tfce_e,
            h=tfce_h,
            n_steps=tfce_n_steps,
            n_jobs=int(n_jobs),
        )
        tfce_obs = tfce_maps(t_valid[None, :])[0]
        tfce_ref = _with_tolerance(xp.abs(tfce_obs), xp)
    size_obs = mass_obs = None
    if cluster_t is not None:
        size_obs, mass_obs, _, _ = _tfce.cluster_measures(
            t_valid[None, :], layout, cluster_t, two_sided=two_sided
        )
        size_obs, mass_obs = size_obs[0], mass_obs[0]

    h0_t = np.empty(n_perm)
    h0_tfce = np.empty(n_perm) if tfce else None
    h0_size = np.empty(n_perm) if cluster_t is not None else None
    h0_mass = np.empty(n_perm) if cluster_t is not None else None
    count_vox = xp.zeros(n_valid)

    bytes_per_cell = 40
    if layout is not None:
        bytes_per_cell = max(bytes_per_cell, 16 * layout.box_size // max(n_valid, 1) + 40)
    batch = _batch_size(n_valid, max_memory_mb, bytes_per_cell, n_perm)
    logger.info(
        "sign-flip test: %d subjects, %d voxels, %d permutations (%s), batches of %d",
        n_subjects,
        n_voxels,
        n_perm,
        "exhaustive" if exhaustive else "random",
        batch,
    )
    factor = math.sqrt(df / n_subjects)
    for start in range(0, n_perm, batch):
        stop = min(start + batch, n_perm)
        # t = s * sqrt(df / n) / sqrt(sum(x**2) - s**2 / n), with s the signed sum;
        # in place, to keep the number of passes over the batch small
        total = s_dev[start:stop] @ x
        t_perm = total * total
        t_perm *= -1.0 / n_subjects
        t_perm += sumsq[None, :]
        xp.maximum(t_perm, 0.0, out=t_perm)
        xp.sqrt(t_perm, out=t_perm)
        with np.errstate(divide="ignore", invalid="ignore"):
            xp.divide(total, t_perm, out=t_perm)
        t_perm *= factor
        del total
        stat = xp.abs(t_perm) if two_sided else t_perm
        h0_t[start:stop] = to_numpy(xp.max(stat, axis=1) if n_valid else -np.inf)
        count_vox += xp.count_nonzero(stat >= t_ref[None, :], axis=0)
        del stat
        if tfce:
            scores = xp.abs(tfce_maps(t_perm))
            h0_tfce[start:stop] = to_numpy(xp.max(scores, axis=1))
            del scores
        if cluster_t is not None:
            _, _, max_size, max_mass = _tfce.cluster_measures(
                t_perm, layout, cluster_t, two_sided=two_sided
            )
            h0_size[start:stop] = to_numpy(max_size)
            h0_mass[start:stop] = to_numpy(max_mass)
        del t_perm

    def full(values, fill):
        out = np.full(n_voxels, fill, dtype=np.float64)
        out[valid] = to_numpy(values)
        return out

    result = SignFlipResult(
        t=t_obs,
        z=z_obs,
        p=np.where(valid, p_par, 1.0),
        p_perm=full(_p_from_counts(count_vox, n_perm, exhaustive), 1.0),
        p_fwe=full(_p_from_null(h0_t, to_numpy(t_ref), exhaustive), 1.0),
        h0_max_t=h0_t,
        n_permutations=n_perm,
        exhaustive=exhaustive,
        two_sided=two_sided,
        df=df,
    )
    if tfce:
        result.tfce = full(tfce_obs, 0.0)
        result.p_tfce_fwe = full(_p_from_null(h0_tfce, to_numpy(tfce_ref), exhaustive), 1.0)
        result.h0_max_tfce = h0_tfce
    if cluster_t is not None:
        size_h = to_numpy(size_obs)
        mass_h = to_numpy(mass_obs)
        sorted_size = np.sort(h0_size)
        sorted_mass = np.sort(h0_mass)
        n_ge_size = n_perm - np.searchsorted(sorted_size, size_h - 0.5, side="left")
        n_ge_mass = n_perm - np.searchsorted(sorted_mass, _with_tolerance(mass_h, np), side="left")
        in_cluster = size_h > 0
        p_size = np.where(in_cluster, _p_from_counts(n_ge_size, n_perm, exhaustive), 1.0)
        p_mass = np.where(in_cluster, _p_from_counts(n_ge_mass, n_perm, exhaustive), 1.0)
        result.cluster_threshold_t = cluster_t
        result.cluster_size = full(size_h, 0.0)
        result.cluster_mass = full(mass_h, 0.0)
        result.p_cluster_size_fwe = full(p_size, 1.0)
        result.p_cluster_mass_fwe = full(p_mass, 1.0)
        result.h0_max_size = h0_size
        result.h0_max_mass = h0_mass
    return result


def sign_flip_test_imgs(imgs, mask_img, **kwargs) -> tuple[SignFlipResult, dict[str, Any]]:
    """:func:`sign_flip_test` on a list of 3-D images.

    Parameters
    ----------
    imgs : list of nibabel images or paths, length n_subjects
        Subject maps on the grid of ``mask_img``.
    mask_img : nibabel image or path
    **kwargs
        Passed to :func:`sign_flip_test` (``mask`` is set from ``mask_img``).

    Returns
    -------
    result : SignFlipResult
    images : dict of str to nibabel.Nifti1Image
        :meth:`SignFlipResult.to_images` of the result.
    """
    import nibabel as nib  # noqa: PLC0415

    mask_img = _load_mask_img(mask_img)
    mask = np.asanyarray(mask_img.dataobj).astype(bool)
    rows = []
    for img in imgs:
        img = nib.load(img) if isinstance(img, str | os.PathLike) else img
        if img.shape[:3] != mask.shape or not np.allclose(img.affine, mask_img.affine):
            raise ValueError(
                f"every image must be on the mask's grid {mask.shape}; got {img.shape}"
            )
        rows.append(np.asarray(img.get_fdata(dtype=np.float64)).reshape(mask.shape)[mask])
    result = sign_flip_test(np.stack(rows), mask=mask, **kwargs)
    return result, result.to_images(mask_img)


# -- layers compared with each other ---------------------------------------------


def winner_take_all(maps, *, xp=None):
    """Which layer has the highest group-mean score at every voxel.

    Parameters
    ----------
    maps : array of shape (n_subjects, n_layers, n_voxels)
        Subject maps per layer (e.g. Fisher z of searchlight correlations).
    xp : module or None

    Returns
    -------
    winner : ndarray of int64, shape (n_voxels,)
        Index of the best layer (-1 where every layer's mean is NaN).
    margin : ndarray of float64, shape (n_voxels,)
        Group mean of the best layer minus that of the second best.
    """
    xp = xp or get_namespace(maps)
    maps = xp.asarray(maps, dtype=xp.float64)
    if maps.ndim != 3 or maps.shape[1] < 2:
        raise ValueError(
            f"maps must have shape (n_subjects, n_layers >= 2, n_voxels); got {maps.shape}"
        )
    mean = xp.nanmean(maps, axis=0) if xp is np else xp.mean(maps, axis=0)
    filled = xp.where(xp.isnan(mean), -xp.inf, mean)
    order = xp.argsort(-filled, axis=0)
    best, second = order[0], order[1]
    cols = xp.arange(mean.shape[1])
    margin = filled[best, cols] - filled[second, cols]
    winner = xp.where(xp.isfinite(filled[best, cols]), best, -1)
    return to_numpy(winner).astype(np.int64), to_numpy(margin).astype(np.float64)


@dataclasses.dataclass
class LayerComparisonResult:
    """Outcome of :func:`compare_best_layers`; maps have shape ``(n_voxels,)``.

    Attributes
    ----------
    winner, runner_up : ndarray of int64
        Best and second-best layer by the mean of all subjects.
    margin : ndarray
        Group-mean difference between them.
    selection_subjects, test_subjects : ndarray of int64
        Indices of the subjects that chose the two layers tested at each voxel, and
        of the (other) subjects whose differences were tested.
    selected_best, selected_second : ndarray of int64
        The two layers chosen by the selection subjects.
    differences : ndarray of shape (n_test_subjects, n_voxels)
        Best-minus-second difference of every test subject.
    test : SignFlipResult
        One-sided sign-flip test of ``differences``.
    """

    winner: np.ndarray
    runner_up: np.ndarray
    margin: np.ndarray
    selection_subjects: np.ndarray
    test_subjects: np.ndarray
    selected_best: np.ndarray
    selected_second: np.ndarray
    differences: np.ndarray
    test: SignFlipResult


def compare_best_layers(
    maps, *, selection_fraction: float = 0.5, random_state=None, **kwargs
) -> LayerComparisonResult:
    """Winner-take-all map of layers with a test of best against second best.

    Choosing the two layers and testing their difference on the same subjects
    favours the winner (the difference is positive by construction), and so does
    choosing them without each subject in turn (the differences are then no longer
    independent). Here a random subset of subjects chooses, at every voxel, the
    best and second-best layer, and the remaining subjects test the difference by
    a one-sided sign-flip test: valid, because the two sets of subjects are
    independent. The winner-take-all map itself uses all subjects.

    Parameters
    ----------
    maps : array of shape (n_subjects, n_layers, n_voxels)
        Subject maps per layer (for example Fisher z of searchlight correlations).
    selection_fraction : float
        Fraction of subjects used to choose the layers (at least one subject each
        way).
    random_state : int, numpy.random.Generator or None
        Seeds the split of subjects and the sign patterns.
    **kwargs
        Passed to :func:`sign_flip_test` (``two_sided`` is False).

    Returns
    -------
    LayerComparisonResult
    """
    host = to_numpy(maps).astype(np.float64, copy=False)
    if host.ndim != 3 or host.shape[0] < 4 or host.shape[1] < 2:
        raise ValueError(
            f"maps must have shape (n_subjects >= 4, n_layers >= 2, n_voxels); got {host.shape}"
        )
    if not 0 < selection_fraction < 1:
        raise ValueError(f"selection_fraction must lie in (0, 1); got {selection_fraction!r}")
    n_subjects, _, n_voxels = host.shape
    rng = np.random.default_rng(random_state)
    n_select = min(max(1, round(selection_fraction * n_subjects)), n_subjects - 2)
    order = rng.permutation(n_subjects)
    select, test_subj = np.sort(order[:n_select]), np.sort(order[n_select:])

    def top_two(block):
        mean = block.mean(axis=0)
        ranking = np.argsort(-np.where(np.isnan(mean), -np.inf, mean), axis=0)
        return ranking[0], ranking[1]

    winner, margin = winner_take_all(host, xp=np)
    _, runner_up = top_two(host)
    best, second = top_two(host[select])
    cols = np.arange(n_voxels)
    diffs = host[test_subj][:, best, cols] - host[test_subj][:, second, cols]
    kwargs["two_sided"] = False
    test = sign_flip_test(diffs, random_state=rng, **kwargs)
    return LayerComparisonResult(
        winner=winner,
        runner_up=runner_up.astype(np.int64),
        margin=margin,
        selection_subjects=select.astype(np.int64),
        test_subjects=test_subj.astype(np.int64),
        selected_best=best.astype(np.int64),
        selected_second=second.astype(np.int64),
        differences=diffs,
        test=test,
    )


# -- group tests on images ----------------------------------------------------------


def _stack_imgs(imgs, *, atol: float = 1e-4):
    """Subject images as a (n_subjects, nx, ny, nz) float64 array, and the first image."""
    import nibabel as nib  # noqa: PLC0415

    imgs = [nib.load(i) if isinstance(i, str | os.PathLike) else i for i in imgs]
    if not imgs:
        raise ValueError("no images given")
    ref = imgs[0]
    shape = ref.shape[:3]
    for k, img in enumerate(imgs):
        if img.shape[:3] != shape or not np.allclose(img.affine, ref.affine, atol=atol):
            raise ValueError(
                f"image {k} (shape {img.shape}) is not on the grid of the first image {shape}"
            )
    data = np.stack([np.asarray(img.dataobj, dtype=np.float64).reshape(shape) for img in imgs])
    return data, ref


@dataclasses.dataclass
class GroupTestResult:
    """Outcome of :func:`group_test_imgs`.

    Attributes
    ----------
    test : SignFlipResult
        The test on the voxels of ``mask_img``.
    images : dict of str to nibabel.Nifti1Image
        :meth:`SignFlipResult.to_images`, with every p map set to 1 outside the mask.
    mask_img : nibabel.Nifti1Image
        The voxels finite in every subject map (uint8).
    clusters : pandas.DataFrame or None
        Clusters of the z map above the cluster-forming threshold (as a z), with the
        smallest voxel-level FWE p of each (:func:`dnnrsa.atlas.cluster_table`).
    """

    test: SignFlipResult
    images: dict[str, Any]
    mask_img: Any
    clusters: Any = None


def group_test_imgs(
    imgs,
    *,
    n_permutations: int = 5000,
    tfce: bool = False,
    cluster_forming_threshold: float = 0.001,
    atlas: str | tuple[str, ...] | None = "harvard_oxford",
    random_state=None,
    device: str | None = None,
    **kwargs,
) -> GroupTestResult:
    """One-sample group test of subject score maps, from images to images.

    The maps (correlation-type scores, one image per subject) are Fisher z
    transformed (:func:`fisher_z`) and tested on the voxels finite in every subject by
    :func:`sign_flip_test` (one-sided, voxel-level max-T FWE, cluster-size FWE for an
    uncorrected cluster-forming p, TFCE on request). Outside those voxels every p map
    is 1 (never 0, which would read as significant) and the other maps 0.

    Parameters
    ----------
    imgs : list of nibabel images or paths, length n_subjects >= 2
        Subject maps on one grid (affines equal to 1e-4).
    n_permutations : int
    tfce : bool
    cluster_forming_threshold : float
        Uncorrected p that forms clusters (for the cluster-size FWE p and the cluster
        table).
    atlas : str, tuple of str or None
        Atlas(es) naming the clusters; None skips the cluster table.
    random_state : int, numpy.random.Generator or None
    device : {"auto", "cpu", "cuda"} or None
    **kwargs
        Passed to :func:`sign_flip_test`.

    Returns
    -------
    GroupTestResult
    """
    x, mask, mask_img = _group_data(imgs)
    result = sign_flip_test(
        x,
        mask=mask_img,
        n_permutations=n_permutations,
        tfce=tfce,
        cluster_forming_threshold=cluster_forming_threshold,
        threshold_type="p",
        random_state=random_state,
        device=device,
        **kwargs,
    )
    return _group_result(result, mask, mask_img, atlas, cluster_forming_threshold)


def _group_data(imgs):
    """Fisher z of the voxels finite in every subject map, that mask and its image."""
    import nibabel as nib  # noqa: PLC0415

    imgs = list(imgs)
    if len(imgs) < 2:
        raise ValueError(f"a group test needs at least 2 subject maps; got {len(imgs)}")
    data, ref = _stack_imgs(imgs)
    mask = np.all(np.isfinite(data), axis=0)
    if not mask.any():
        raise ValueError(f"no voxel is finite in all {len(imgs)} subject maps")
    mask_img = nib.Nifti1Image(mask.astype(np.uint8), ref.affine)
    return fisher_z(data[:, mask]), mask, mask_img


def _group_result(result, mask, mask_img, atlas, cluster_forming_threshold) -> GroupTestResult:
    """Images (p = 1 outside the mask) and the cluster table of a group test."""
    import nibabel as nib  # noqa: PLC0415
    from scipy import stats  # noqa: PLC0415

    images = result.to_images(mask_img)
    for name, img in images.items():
        if name.startswith("p"):
            vals = np.asarray(img.dataobj, dtype=np.float32)
            vals[~mask] = 1.0
            images[name] = nib.Nifti1Image(vals, img.affine)
    clusters = None
    if atlas is not None:
        from .atlas import cluster_table  # noqa: PLC0415

        clusters = cluster_table(
            images["z"],
            float(stats.norm.isf(cluster_forming_threshold)),
            two_sided=False,
            p_img=images["p_fwe"],
            atlas=atlas,
        )
    return GroupTestResult(test=result, images=images, mask_img=mask_img, clusters=clusters)


def group_test_maps(
    maps,
    *,
    n_permutations: int = 5000,
    tfce: bool | list[bool] = False,
    cluster_forming_threshold: float = 0.001,
    atlas: str | tuple[str, ...] | None = "harvard_oxford",
    random_state: int | None = None,
    device: str | None = None,
    max_memory_mb: float = 512.0,
    n_jobs: int | None = None,
) -> list[GroupTestResult]:
    """:func:`group_test_imgs` of several maps (the layers of a network) in one call.

    Every map is tested on its own: its own mask (the voxels finite in all its
    subject maps), its own max-T (voxel-level FWE over that map's voxels only), its
    own cluster table. The maps without TFCE are tested together by the blocked
    max-T (:func:`sign_flip_test` without TFCE or clusters), with all their blocks of
    voxels on one pool of ``n_jobs`` threads; maps with TFCE by
    :func:`sign_flip_test` with ``tfce=True``, one after the other. Maps with the same
    number of subjects use the same sign patterns, those a separate call with the
    same integer ``random_state`` draws, so each result equals, bit for bit,
    ``group_test_imgs(maps[k], tfce=tfce[k], ...)`` with the same arguments, except
    that the cluster-size and cluster-mass FWE p maps (``p_cluster_size_fwe``,
    ``p_cluster_mass_fwe``) are not computed: ``cluster_forming_threshold`` only sets
    the threshold of the cluster table, whose clusters carry their smallest
    voxel-level FWE p.

    Parameters
    ----------
    maps : list of lists of nibabel images or paths
        Per map, one subject map per subject (at least 2), on one grid per map.
    n_permutations : int
    tfce : bool or list of bool
        TFCE for every map, or one flag per map.
    cluster_forming_threshold : float
        Uncorrected p whose z forms the clusters of each map's table.
    atlas : str, tuple of str or None
        Atlas(es) naming the clusters; None skips the cluster tables.
    random_state : int or None
        Seed of the sign patterns (an int, for results that equal separate calls).
    device : {"auto", "cpu", "cuda"} or None
    max_memory_mb : float
        Memory budget of the permutation work (see :func:`sign_flip_test`); the
        Fisher z of the maps without TFCE are held together (8 bytes per subject and
        in-mask voxel).
    n_jobs : int or None
        Threads of the blocked max-T, and of TFCE, on the CPU; None uses every core
        available.

    Returns
    -------
    list of GroupTestResult
        One per map, in the order of ``maps``.
    """
    maps = [list(m) for m in maps]
    flags = [bool(tfce)] * len(maps) if isinstance(tfce, bool) else [bool(f) for f in tfce]
    if len(flags) != len(maps):
        raise ValueError(f"tfce must be a bool or one flag per map ({len(maps)}); got {tfce!r}")
    if n_jobs is None:
        n_jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    results: list[GroupTestResult | None] = [None] * len(maps)
    plain = [k for k, flag in enumerate(flags) if not flag]
    loaded = {k: _group_data(maps[k]) for k in plain}
    by_subjects: dict[int, list[int]] = {}
    for k in plain:
        by_subjects.setdefault(loaded[k][0].shape[0], []).append(k)
    for n_subjects, ks in by_subjects.items():
        signs, exhaustive = sign_flip_matrix(n_subjects, n_permutations, random_state=random_state)
        xp = get_namespace(loaded[ks[0]][0], device=device)
        nulls = _max_t_null_maps(
            [loaded[k][0] for k in ks],
            signs,
            two_sided=False,
            xp=xp,
            max_memory_mb=max_memory_mb,
            n_jobs=int(n_jobs),
        )
        for k, (valid, t_obs, h0_t, counts) in zip(ks, nulls, strict=True):
            result = _max_t_result(
                valid,
                t_obs,
                h0_t,
                counts,
                n_perm=signs.shape[0],
                exhaustive=exhaustive,
                two_sided=False,
                df=n_subjects - 1,
            )
            _, mask, mask_img = loaded.pop(k)
            results[k] = _group_result(result, mask, mask_img, atlas, cluster_forming_threshold)
    for k, flag in enumerate(flags):
        if not flag:
            continue
        x, mask, mask_img = _group_data(maps[k])
        result = sign_flip_test(
            x,
            mask=mask_img,
            n_permutations=n_permutations,
            tfce=True,
            random_state=random_state,
            device=device,
            max_memory_mb=max_memory_mb,
            n_jobs=n_jobs,
        )
        results[k] = _group_result(result, mask, mask_img, atlas, cluster_forming_threshold)
    return results


def layer_winner_imgs(
    imgs, *, n_permutations: int = 1000, random_state=None, min_test_subjects: int = 4, **kwargs
) -> dict[str, Any]:
    """Winner-take-all map of layers from subject images, with a test where possible.

    The maps are Fisher z transformed (:func:`fisher_z`); at every voxel finite in all
    maps the best layer and its margin over the second come from all subjects, and,
    with at least ``min_test_subjects`` subjects, :func:`compare_best_layers` tests
    best against second best on subjects independent of those that chose them.

    Parameters
    ----------
    imgs : sequence (layers) of sequences (subjects) of images or paths
        ``imgs[l][s]``: the map of subject ``s`` for layer ``l``, all on one grid.
    n_permutations : int
    random_state : int, numpy.random.Generator or None
    min_test_subjects : int
        Fewest subjects for the test (the split needs at least 4).
    **kwargs
        Passed to :func:`compare_best_layers`.

    Returns
    -------
    dict of str to nibabel.Nifti1Image
        ``winner`` (int16, index of the best layer, -1 outside), ``margin`` (float32,
        0 outside) and, when tested, ``p`` (float32 FWE p, 1 outside).
    """
    import nibabel as nib  # noqa: PLC0415

    per_layer = [list(files) for files in imgs]
    if len(per_layer) < 2:
        raise ValueError(f"a winner map needs at least 2 layers; got {len(per_layer)}")
    n_sub = len(per_layer[0])
    if any(len(files) != n_sub for files in per_layer):
        raise ValueError("every layer needs the same subjects")
    data, ref = _stack_imgs([f for files in per_layer for f in files])
    shape = ref.shape[:3]
    # (n_subjects, n_layers, n_voxels)
    maps = fisher_z(data.reshape(len(per_layer), n_sub, -1).transpose(1, 0, 2))
    inside = np.all(np.isfinite(maps), axis=(0, 1))
    comparison = None
    if n_sub >= max(4, min_test_subjects):
        comparison = compare_best_layers(
            maps[:, :, inside],
            random_state=random_state,
            n_permutations=n_permutations,
            **kwargs,
        )
        w, m = comparison.winner, comparison.margin
    else:
        w, m = winner_take_all(maps[:, :, inside])
    winner = np.full(inside.size, -1, dtype=np.int16)
    margin = np.zeros(inside.size, dtype=np.float32)
    winner[inside], margin[inside] = w, m
    out = {
        "winner": nib.Nifti1Image(winner.reshape(shape), ref.affine),
        "margin": nib.Nifti1Image(margin.reshape(shape), ref.affine),
    }
    if comparison is not None:
        p = np.ones(inside.size, dtype=np.float32)
        p[inside] = comparison.test.p_fwe
        out["p"] = nib.Nifti1Image(p.reshape(shape), ref.affine)
    return out
