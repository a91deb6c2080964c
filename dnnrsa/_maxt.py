"""The blocked max-T kernel of the sign-flip test: voxel-level FWE without t maps.

Under a sign pattern the one-sample t of a voxel is a monotone function of its signed
sum divided by the root of its (unchanged) sum of squares, ``u``. The kernel computes
only ``u`` per pattern and voxel, in blocks of voxels: on the GPU as matrix products of
the patterns with the normalised data, on the CPU by adding rows of tables of all
signed sums of groups of subjects. From ``u`` follow the null maximum of t and every
voxel's exceedance count (:func:`_max_t_null`, :func:`_max_t_null_maps`), which
:func:`dnnrsa.stats.sign_flip_test` and :func:`dnnrsa.stats.group_test_maps` turn
into p maps.
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .backend import to_numpy

logger = logging.getLogger(__name__)


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


def _collect(start, part, valid, t_obs, counts, max_u):
    """Copy one block's result ``part`` of :func:`_max_t_null_maps` into its map's arrays."""
    v, t, m, c = part
    sl = slice(start, start + v.size)
    valid[sl] = v
    t_obs[sl] = t
    counts[sl][v] = c
    np.maximum(max_u, m, out=max_u)
