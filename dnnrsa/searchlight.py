"""Searchlight representational similarity analysis.

For every voxel of a mask, the patterns of the voxels within a sphere around it
give a neural RDM, which is compared with every model RDM (for example one per DNN
layer) at once. The result is one map per model.

The engine never loops over spheres in Python. Spheres are processed in blocks
whose size follows a memory budget: the block's patterns are gathered into one
dense array with a single fancy-indexing call, the Gram (or cross-validated) inner
products of the conditions come from one batched matrix product, the RDM entries
follow from the Gram matrices in closed form, Spearman ranks come from one sort of
the whole block, and the comparison with all models is one more matrix product.
The same code runs on numpy and on CuPy: the array module ``xp`` is chosen once at
the public entry point and passed down.

Layers of the API:

* :func:`searchlight_rsa` takes images and returns a 4-D image, one volume per model;
* :class:`SearchlightRSA` is a thin estimator around it;
* :func:`searchlight_rsa_array` and :func:`searchlight_rdms` work on a masked data
  matrix and precomputed :class:`Neighbourhoods`;
* :func:`volume_neighbourhoods` builds the spheres from a mask image.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ._cpus import resolve_n_jobs, single_threaded_blas
from ._masks import load_mask
from ._neighbourhoods import Neighbourhoods, mask_neighbourhoods, sphere_offsets
from ._registries import (
    _fast_ranks,  # noqa: F401 (the Spearman fast path's ranks)
    get_comparator,
)
from .backend import get_namespace, resolve_device, to_numpy
from .rdm import (
    _as_rdm_matrix,
    _check_choice,
    _check_conditions,
    _check_crossnobis_runs,
    _check_labels,
    _check_patterns,
    _condition_means,
    _is_constant,
    compare_rdms,
    n_conditions_from_pairs,
    pair_indices,
)

logger = logging.getLogger(__name__)

#: Dissimilarity measures the searchlight engine supports.
SEARCHLIGHT_METRICS = ("correlation", "euclidean", "crossnobis")

# Default working-memory budgets for one block of spheres.
_DEFAULT_BUDGET_CPU_MB = 256
_DEFAULT_BUDGET_GPU_MB = 2048

# A condition pattern whose energy after centring across the sphere's voxels is
# below this fraction of its raw energy is treated as constant (correlation: NaN).
_CONSTANT_PATTERN_RTOL = 1e-12


# --------------------------------------------------------------------------- neighbourhoods
def volume_neighbourhoods(mask_img: Any, radius_mm: float = 6.0) -> Neighbourhoods:
    """Searchlight spheres around every voxel of a mask image.

    A sphere holds every in-mask voxel whose centre lies within ``radius_mm`` of
    the centre voxel's centre, measured in world coordinates (so anisotropic and
    oblique voxels are handled), distance ``<= radius_mm`` as in nilearn and
    BrainIAK. The centre is always a member.

    Parameters
    ----------
    mask_img : Niimg-like
        3-D mask; non-zero voxels are in the mask.
    radius_mm : float
        Sphere radius in millimetres.

    Returns
    -------
    Neighbourhoods
        One sphere per in-mask voxel, in the C order of the mask's voxels (the
        order of ``data[mask]`` and of nilearn's maskers).
    """
    mask_img, mask = load_mask(mask_img)
    return mask_neighbourhoods(mask, mask_img.affine, radius_mm)


# --------------------------------------------------------------------------- validation
def _as_neighbourhoods(neighbourhoods: Any, n_voxels: int) -> Neighbourhoods:
    if isinstance(neighbourhoods, Neighbourhoods):
        if neighbourhoods.n_voxels != n_voxels:
            raise ValueError(
                f"neighbourhoods were built for {neighbourhoods.n_voxels} voxels but patterns "
                f"have {n_voxels} columns"
            )
        return neighbourhoods
    if isinstance(neighbourhoods, Sequence):
        return Neighbourhoods.from_lists(neighbourhoods, n_voxels)
    raise TypeError(
        "neighbourhoods must be a Neighbourhoods object or a sequence of index arrays; "
        f"got {type(neighbourhoods).__name__}"
    )


def _choose_namespace(patterns: Any, xp: Any, device: str | None):
    if xp is not None:
        return xp
    if device is not None:
        return get_namespace(device=resolve_device(device))
    return get_namespace(patterns)


# --------------------------------------------------------------------------- voxel data
def _usable_voxels(patterns, xp):
    """Voxels that are finite in every observation and not constant across them."""
    finite = xp.all(xp.isfinite(patterns), axis=0)
    safe = xp.where(finite[None, :], patterns, 0.0)
    varying = xp.max(safe, axis=0) > xp.min(safe, axis=0)
    return finite & varying


def _prepare_voxel_data(patterns, metric, labels, inverse, runs, usable, xp):
    """Per-voxel data that the engine gathers sphere by sphere.

    Returns ``left`` and ``right`` of shape (n_voxels + 1, n_folds, n_conditions)
    (the same array unless crossnobis), with zero rows for unusable voxels and
    one extra zero row that padding slots point to, and the number of folds.
    """
    n_voxels = patterns.shape[1]
    n_cond = labels.size
    clean = xp.where(usable[None, :], patterns, 0.0)

    if metric != "crossnobis":
        means = _condition_means(clean, inverse, n_cond, xp)  # (n_cond, n_voxels)
        if metric == "euclidean":
            # Distances do not change when a voxel's mean over conditions is removed;
            # removing it keeps the Gram-matrix form free of cancellation.
            means = means - means.mean(axis=0, keepdims=True)
        else:
            # Correlation distance does not change when a condition's pattern is
            # shifted by a constant; removing its mean over the usable voxels
            # keeps the centred Gram matrix accurate.
            n_usable = max(int(usable.sum()), 1)
            means = means - means.sum(axis=1, keepdims=True) / n_usable
        means = xp.where(usable[None, :], means, 0.0)
        data = xp.zeros((n_voxels + 1, 1, n_cond), dtype=xp.float64)
        data[:n_voxels, 0, :] = means.T
        return data, data, 1

    run_labels, run_inverse = _check_crossnobis_runs(runs, labels, inverse)
    n_runs = run_labels.size
    test = xp.zeros((n_voxels + 1, n_runs, n_cond), dtype=xp.float64)
    train = xp.zeros((n_voxels + 1, n_runs, n_cond), dtype=xp.float64)
    for r in range(n_runs):  # a loop over folds, never over spheres or pairs
        in_run = run_inverse == r
        a = _condition_means(clean, inverse, n_cond, xp, select=in_run)
        b = _condition_means(clean, inverse, n_cond, xp, select=~in_run)
        # The cross-validated distance is unchanged when a voxel's mean over
        # conditions is removed within each fold.
        test[:n_voxels, r, :] = (a - a.mean(axis=0, keepdims=True)).T
        train[:n_voxels, r, :] = (b - b.mean(axis=0, keepdims=True)).T
    test[:n_voxels] *= usable[:, None, None]
    train[:n_voxels] *= usable[:, None, None]
    return train, test, n_runs


# --------------------------------------------------------------------------- blocks
class _PairIndex:
    """Flat indices into (n_cond * n_cond) Gram matrices for the RDM entries."""

    def __init__(self, n_cond: int, keep: np.ndarray | None, xp):
        iu, ju = pair_indices(n_cond)
        if keep is not None:
            iu, ju = iu[keep], ju[keep]
        self.n_pairs = iu.size
        self.iu = xp.asarray(iu)
        self.ju = xp.asarray(ju)
        self.upper = xp.asarray(iu * n_cond + ju)
        self.lower = xp.asarray(ju * n_cond + iu)
        self.diag = xp.asarray(np.arange(n_cond) * (n_cond + 1))


def _block_size(n_centres, width, n_folds, n_cond, n_pairs, n_models, distinct, budget_bytes):
    per_sphere = 8 * (
        width * n_folds * n_cond * (2 if distinct else 1)
        + 2 * n_cond * n_cond
        + 12 * n_pairs
        + 2 * n_models
    )
    return int(min(max(1, budget_bytes // per_sphere), max(n_centres, 1)))


def _block_rdms(left, right, idx, counts, metric, n_folds, pairs: _PairIndex, xp):
    """Neural RDMs of one block of spheres, shape (n_spheres, n_pairs)."""
    n_block, width = idx.shape
    n_cond = left.shape[2]
    x_left = left[idx].reshape(n_block, width * n_folds, n_cond)
    x_right = x_left if right is left else right[idx].reshape(n_block, width * n_folds, n_cond)
    gram = xp.matmul(xp.swapaxes(x_left, 1, 2), x_right).reshape(n_block, n_cond * n_cond)
    n = counts.astype(xp.float64)[:, None]
    g_ij = xp.take(gram, pairs.upper, axis=1)
    g_ii = xp.take(gram, pairs.diag, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric == "correlation":
            sums = x_left.sum(axis=1)  # (n_block, n_cond)
            centred_ii = g_ii - sums * sums / n
            centred_ii = xp.where(centred_ii > _CONSTANT_PATTERN_RTOL * g_ii, centred_ii, xp.nan)
            centred_ij = (
                g_ij - xp.take(sums, pairs.iu, axis=1) * xp.take(sums, pairs.ju, axis=1) / n
            )
            denom = xp.sqrt(
                xp.take(centred_ii, pairs.iu, axis=1) * xp.take(centred_ii, pairs.ju, axis=1)
            )
            return 1.0 - centred_ij / denom
        g_sum = xp.take(g_ii, pairs.iu, axis=1) + xp.take(g_ii, pairs.ju, axis=1)
        if metric == "euclidean":
            return (g_sum - 2.0 * g_ij) / n
        g_ji = xp.take(gram, pairs.lower, axis=1)
        return (g_sum - g_ij - g_ji) / (n * n_folds)


class _Models:
    """Model RDMs prepared once for a comparator (its registry entry's searchlight
    fast path, where it has one)."""

    def __init__(self, models, comparator, xp):
        self.comparator = comparator
        self.entry = get_comparator(comparator, searchlight=True)
        self.raw = models
        self.n_models, self.n_pairs = models.shape
        kernel = self.entry.searchlight_kernel
        self.state = None if kernel is None else kernel.prepare(models, xp)
        # A constant model has no correlation with anything (cosine: zero vector -> 0).
        self.undefined = _is_constant(models, xp) if self.entry.constant_is_nan else None


def _compare_block(rdms, models: _Models, xp):
    """Scores of one block of NaN-free neural RDMs, shape (n_rows, n_models)."""
    kernel = models.entry.searchlight_kernel
    if kernel is None:  # no fast path (kendall_tau_a): the comparator's own kernel
        return compare_rdms(rdms, models.raw, models.comparator, xp=xp)
    scores = kernel.score(rdms, models.state, xp)
    if models.undefined is not None:
        scores = xp.where(models.undefined[None, :], xp.nan, scores)
    return scores


def _prepare_models(model_rdms, n_cond, xp):
    models = _as_rdm_matrix(model_rdms, xp, "model_rdms")
    n_model_cond = n_conditions_from_pairs(models.shape[1])
    if n_model_cond != n_cond:
        raise ValueError(
            f"model_rdms have {models.shape[1]} entries ({n_model_cond} conditions) but the "
            f"patterns have {n_cond} conditions ({n_cond * (n_cond - 1) // 2} entries)"
        )
    nan = to_numpy(xp.isnan(models))
    return models, nan


class _SphereEngine:
    """Per-voxel data and index arrays shared by all blocks of one searchlight run."""

    def __init__(self, patterns, nb, *, metric, labels, inverse, runs, min_voxels, xp, keep_pairs):
        n_voxels = patterns.shape[1]
        usable = _usable_voxels(patterns, xp)
        n_unusable = n_voxels - int(usable.sum())
        if n_unusable:
            logger.info(
                "%d of %d voxels are constant or non-finite and excluded", n_unusable, n_voxels
            )
        self.left, self.right, self.n_folds = _prepare_voxel_data(
            patterns, metric, labels, inverse, runs, usable, xp
        )
        self.n_cond = self.left.shape[2]
        self.pairs = _PairIndex(self.n_cond, keep_pairs, xp)
        self.usable_ext = xp.concatenate([usable, xp.zeros(1, dtype=bool)])
        self.indices = xp.asarray(nb.indices)
        self.n_centres, self.width = nb.indices.shape
        self.metric = metric
        self.min_voxels = int(min_voxels)
        self.xp = xp

    def block_size(self, n_models, budget_bytes):
        return _block_size(
            self.n_centres,
            self.width,
            self.n_folds,
            self.n_cond,
            self.pairs.n_pairs,
            n_models,
            self.right is not self.left,
            budget_bytes,
        )

    def rdms(self, start, stop):
        """Neural RDMs of spheres ``start:stop`` and which spheres have enough voxels."""
        xp = self.xp
        idx = self.indices[start:stop]
        counts = xp.sum(self.usable_ext[idx], axis=1)
        rdms = _block_rdms(
            self.left, self.right, idx, counts, self.metric, self.n_folds, self.pairs, xp
        )
        return rdms, counts >= self.min_voxels


def _resolve_n_jobs(n_jobs: int | None, xp) -> int:
    if xp is not np:
        return 1
    return resolve_n_jobs(n_jobs, below_one="count_back")


def _run_blocks(engine: _SphereEngine, n_models, work, *, budget_bytes, n_jobs, progress, desc):
    """Call ``work(start, stop)`` on every block of spheres, in threads when asked."""
    from tqdm.auto import tqdm

    xp = engine.xp
    n_jobs = _resolve_n_jobs(n_jobs, xp)
    block = engine.block_size(n_models, budget_bytes // n_jobs)
    starts = list(range(0, engine.n_centres, block))
    logger.debug(
        "searchlight: %d spheres in %d blocks of %d, %d thread(s)",
        engine.n_centres,
        len(starts),
        block,
        n_jobs,
    )

    def task(start):
        stop = min(start + block, engine.n_centres)
        work(start, stop)
        return stop - start

    with (
        tqdm(
            total=engine.n_centres, desc=desc, unit="sphere", disable=not progress, leave=False
        ) as bar,
        single_threaded_blas(xp),
    ):
        if n_jobs == 1:
            for start in starts:  # loop over blocks of spheres
                bar.update(task(start))
        else:
            with ThreadPoolExecutor(max_workers=n_jobs) as pool:
                for done in pool.map(task, starts):
                    bar.update(done)


def _check_common(patterns, neighbourhoods, metric, conditions, runs, min_voxels, xp):
    """Checked inputs, with the condition labels and each row's index into them."""
    _check_choice("metric", metric, SEARCHLIGHT_METRICS)
    patterns = _check_patterns(patterns, xp, "voxel").astype(xp.float64, copy=False)
    n_obs, n_voxels = patterns.shape
    nb = _as_neighbourhoods(neighbourhoods, n_voxels)
    labels, inverse = _check_conditions(conditions, n_obs)
    if runs is not None:
        runs = _check_labels(runs, n_obs, "runs")
    if int(min_voxels) < 1:
        raise ValueError(f"min_voxels must be >= 1; got {min_voxels!r}")
    return patterns, nb, labels, inverse, runs


def _budget(memory_budget_mb, xp):
    if memory_budget_mb is None:
        memory_budget_mb = _DEFAULT_BUDGET_CPU_MB if xp is np else _DEFAULT_BUDGET_GPU_MB
    if not memory_budget_mb > 0:
        raise ValueError(f"memory_budget_mb must be positive; got {memory_budget_mb!r}")
    return int(memory_budget_mb * 2**20)


# --------------------------------------------------------------------------- array API
def searchlight_rdms(
    patterns,
    neighbourhoods: Neighbourhoods | Sequence[Sequence[int]],
    *,
    metric: str = "correlation",
    conditions: Sequence | None = None,
    runs: Sequence | None = None,
    min_voxels: int = 10,
    xp=None,
    device: str | None = None,
    memory_budget_mb: float | None = None,
    n_jobs: int | None = None,
    progress: bool = False,
):
    """Neural RDM of every searchlight sphere.

    The output holds ``n_centres * n_pairs`` numbers: meant for small volumes and
    for checks. :func:`searchlight_rsa_array` compares the RDMs with models without
    ever holding them all.

    Parameters
    ----------
    patterns : array of shape (n_observations, n_voxels)
        Masked data, one row per observation.
    neighbourhoods : Neighbourhoods or sequence of index arrays
        Members of each sphere (indices into the voxel axis of ``patterns``).
    metric : {"correlation", "euclidean", "crossnobis"}
        Dissimilarity, with the conventions of :func:`dnnrsa.rdm.compute_rdm`.
    conditions : sequence of shape (n_observations,), optional
        Condition label of each row; rows with the same label are averaged
        (crossnobis: within each run). Conditions are ordered like numpy.unique.
        Default: every row is its own condition.
    runs : sequence of shape (n_observations,), optional
        Run label of each row; required for crossnobis.
    min_voxels : int
        Spheres with fewer usable voxels get NaN.
    xp : module, optional
        numpy or cupy; wins over ``device``.
    device : {"auto", "cpu", "cuda"}, optional
        Default: inferred from ``patterns``.
    memory_budget_mb : float, optional
        Working memory for the blocks of spheres in flight (default 256 MB on CPU,
        2 GB on GPU); peak memory stays bounded by it whatever the brain size.
    n_jobs : int, optional
        Threads working on blocks of spheres on the CPU (default None or -1: all
        cores available to the process); ignored on the GPU.
    progress : bool
        Show a progress bar.

    Returns
    -------
    rdms : array of shape (n_centres, n_pairs)
        Upper triangles, row-major; NaN rows for spheres below ``min_voxels``.
    """
    xp = _choose_namespace(patterns, xp, device)
    patterns, nb, labels, inverse, runs = _check_common(
        patterns, neighbourhoods, metric, conditions, runs, min_voxels, xp
    )
    engine = _SphereEngine(
        patterns,
        nb,
        metric=metric,
        labels=labels,
        inverse=inverse,
        runs=runs,
        min_voxels=min_voxels,
        xp=xp,
        keep_pairs=None,
    )
    out = xp.full((nb.n_centres, engine.pairs.n_pairs), xp.nan)

    def work(start, stop):
        rdms, ok = engine.rdms(start, stop)
        out[start:stop] = xp.where(ok[:, None], rdms, xp.nan)

    _run_blocks(
        engine,
        0,
        work,
        budget_bytes=_budget(memory_budget_mb, xp),
        n_jobs=n_jobs,
        progress=progress,
        desc="Searchlight RDMs",
    )
    return out


def searchlight_rsa_array(
    patterns,
    neighbourhoods: Neighbourhoods | Sequence[Sequence[int]],
    model_rdms,
    *,
    metric: str = "correlation",
    comparator: str = "spearman",
    conditions: Sequence | None = None,
    runs: Sequence | None = None,
    min_voxels: int = 10,
    xp=None,
    device: str | None = None,
    memory_budget_mb: float | None = None,
    n_jobs: int | None = None,
    progress: bool = False,
):
    """Compare the neural RDM of every sphere with every model RDM.

    Parameters
    ----------
    patterns : array of shape (n_observations, n_voxels)
        Masked data, one row per observation.
    neighbourhoods : Neighbourhoods or sequence of index arrays
        Members of each sphere (indices into the voxel axis of ``patterns``);
        see :func:`volume_neighbourhoods`.
    model_rdms : array of shape (n_models, n_pairs) or (n_pairs,)
        Model RDMs (upper triangles, row-major) over the conditions in
        numpy.unique order.
    metric : {"correlation", "euclidean", "crossnobis"}
        Dissimilarity, with the conventions of :func:`dnnrsa.rdm.compute_rdm`.
    comparator : str
        A comparator whose registry entry sets ``searchlight``
        (:data:`dnnrsa._registries.COMPARATOR_REGISTRY`; built in: "spearman",
        "pearson", "kendall_tau_a", "cosine"), with the conventions of
        :func:`dnnrsa.rdm.compare_rdms`
        (entries that are NaN in a model are dropped). ``kendall_tau_a`` costs
        ``O(n_pairs**2)`` per sphere and is much slower than the others.
    conditions, runs, min_voxels, xp, device, memory_budget_mb, n_jobs, progress
        As in :func:`searchlight_rdms`.

    Returns
    -------
    scores : array of shape (n_centres, n_models)
        NaN for spheres with fewer than ``min_voxels`` usable voxels. A numpy
        array, or a cupy array when computed on the GPU.

    Notes
    -----
    Voxels that are non-finite in any observation or constant across all of them
    are dropped from every sphere (and not counted towards ``min_voxels``). With
    ``correlation``, a condition whose pattern is constant within a sphere gives
    NaN entries, which are dropped from that sphere's comparison.
    """
    get_comparator(comparator, searchlight=True)
    xp = _choose_namespace(patterns, xp, device)
    patterns, nb, labels, inverse, runs = _check_common(
        patterns, neighbourhoods, metric, conditions, runs, min_voxels, xp
    )
    models, model_nan = _prepare_models(model_rdms, labels.size, xp)
    keep_pairs = None
    per_block_fallback = False
    if model_nan.any():
        if np.all(model_nan == model_nan[0]):
            # Every model lacks the same entries: drop them from the neural RDMs too.
            keep_pairs = np.flatnonzero(~model_nan[0])
            models = models[:, xp.asarray(keep_pairs)]
        else:
            per_block_fallback = True
            logger.info("model RDMs have different missing entries: slower comparison path")
    prepared = None if per_block_fallback else _Models(models, comparator, xp)

    engine = _SphereEngine(
        patterns,
        nb,
        metric=metric,
        labels=labels,
        inverse=inverse,
        runs=runs,
        min_voxels=min_voxels,
        xp=xp,
        keep_pairs=keep_pairs,
    )
    scores = xp.full((nb.n_centres, models.shape[0]), xp.nan)

    def work(start, stop):
        rdms, ok = engine.rdms(start, stop)
        if per_block_fallback:
            block = compare_rdms(rdms, models, comparator, xp=xp)
        else:
            clean = ok & ~xp.any(xp.isnan(rdms), axis=1)
            if bool(xp.all(clean)):
                block = _compare_block(rdms, prepared, xp)
            else:
                block = xp.full((rdms.shape[0], models.shape[0]), xp.nan)
                rows = xp.flatnonzero(clean)
                if rows.size:
                    block[rows] = _compare_block(rdms[rows], prepared, xp)
                # Spheres whose RDM has undefined entries: NaN-aware comparison.
                partial = xp.flatnonzero(ok & ~clean)
                if partial.size:
                    block[partial] = compare_rdms(rdms[partial], models, comparator, xp=xp)
        scores[start:stop] = xp.where(ok[:, None], block, xp.nan)

    _run_blocks(
        engine,
        models.shape[0],
        work,
        budget_bytes=_budget(memory_budget_mb, xp),
        n_jobs=n_jobs,
        progress=progress,
        desc="Searchlight RSA",
    )
    return scores


# --------------------------------------------------------------------------- image API
def _load_inputs(patterns_img, mask_img):
    import nibabel as nib
    from nilearn.image import load_img

    imgs = load_img(patterns_img)
    if len(imgs.shape) == 3:
        imgs = nib.Nifti1Image(np.asanyarray(imgs.dataobj)[..., None], imgs.affine, imgs.header)
    if len(imgs.shape) != 4:
        raise ValueError(f"patterns_img must be a 4-D image; got shape {imgs.shape}")
    mask, mask_data = load_mask(mask_img)
    if tuple(mask.shape) != tuple(imgs.shape[:3]) or not np.allclose(
        mask.affine, imgs.affine, atol=1e-4
    ):
        raise ValueError(
            "mask_img and patterns_img must be on the same grid; got shapes "
            f"{tuple(mask.shape)} and {tuple(imgs.shape[:3])} and affines "
            f"{np.round(mask.affine, 4).tolist()} and {np.round(imgs.affine, 4).tolist()} "
            "(resample one onto the other first, e.g. with nilearn.image.resample_to_img)"
        )
    return imgs, mask, mask_data


def _run_images(
    patterns_img,
    mask_img,
    model_rdms,
    *,
    radius_mm,
    metric,
    comparator,
    conditions,
    runs,
    min_voxels,
    device,
    memory_budget_mb,
    n_jobs,
    progress,
):
    import nibabel as nib

    _check_choice("metric", metric, SEARCHLIGHT_METRICS)
    get_comparator(comparator, searchlight=True)
    imgs, mask_img, mask = _load_inputs(patterns_img, mask_img)
    nb = mask_neighbourhoods(mask, mask_img.affine, radius_mm)
    data = np.asanyarray(imgs.dataobj)[mask].T.astype(np.float64)  # (n_obs, n_voxels)
    xp = get_namespace(device=resolve_device(device))
    scores = searchlight_rsa_array(
        xp.asarray(data),
        nb,
        model_rdms,
        metric=metric,
        comparator=comparator,
        conditions=conditions,
        runs=runs,
        min_voxels=min_voxels,
        xp=xp,
        memory_budget_mb=memory_budget_mb,
        n_jobs=n_jobs,
        progress=progress,
    )
    scores = to_numpy(scores)
    volume = np.full(mask.shape + (scores.shape[1],), np.nan, dtype=np.float32)
    volume[mask] = scores
    header = nib.Nifti1Header()
    header.set_xyzt_units("mm")
    img = nib.Nifti1Image(volume, mask_img.affine, header)
    return img, scores, nb


def searchlight_rsa(
    patterns_img: Any,
    mask_img: Any,
    model_rdms,
    *,
    radius_mm: float = 6.0,
    metric: str = "correlation",
    comparator: str = "spearman",
    conditions: Sequence | None = None,
    runs: Sequence | None = None,
    min_voxels: int = 10,
    device: str = "auto",
    memory_budget_mb: float | None = None,
    n_jobs: int | None = None,
    progress: bool = True,
):
    """Searchlight RSA on images: one map per model RDM.

    Parameters
    ----------
    patterns_img : Niimg-like
        4-D image with one volume per observation (for example per-stimulus GLM
        estimates), or a list of 3-D images.
    mask_img : Niimg-like
        3-D mask on the same grid; every non-zero voxel is a sphere centre and a
        candidate member.
    model_rdms : array of shape (n_models, n_pairs) or (n_pairs,)
        Model RDMs over the conditions in numpy.unique order of ``conditions``.
    radius_mm : float
        Sphere radius in millimetres (world-coordinate distance ``<= radius_mm``).
    metric : {"correlation", "euclidean", "crossnobis"}
    comparator : {"spearman", "pearson", "kendall_tau_a", "cosine"}
    conditions : sequence of shape (n_volumes,), optional
        Condition label of each volume (default: each volume its own condition).
    runs : sequence of shape (n_volumes,), optional
        Run label of each volume; required for crossnobis.
    min_voxels : int
        Spheres with fewer usable voxels get NaN.
    device : {"auto", "cpu", "cuda"}
    memory_budget_mb : float, optional
        Working memory for the blocks of spheres in flight.
    n_jobs : int, optional
        CPU threads (default None or -1: all cores available to the process);
        ignored on the GPU.
    progress : bool
        Show a progress bar.

    Returns
    -------
    scores_img : Nifti1Image of shape (nx, ny, nz, n_models)
        float32, NaN outside the mask and in spheres below ``min_voxels``.
    """
    img, _, _ = _run_images(
        patterns_img,
        mask_img,
        model_rdms,
        radius_mm=radius_mm,
        metric=metric,
        comparator=comparator,
        conditions=conditions,
        runs=runs,
        min_voxels=min_voxels,
        device=device,
        memory_budget_mb=memory_budget_mb,
        n_jobs=n_jobs,
        progress=progress,
    )
    return img


class SearchlightRSA:
    """Searchlight RSA as an estimator: parameters in ``__init__``, work in ``fit``.

    Parameters
    ----------
    mask_img : Niimg-like
        3-D mask of sphere centres and members.
    radius_mm, metric, comparator, min_voxels, device, memory_budget_mb, n_jobs, progress
        As in :func:`searchlight_rsa`.

    Attributes
    ----------
    scores_img_ : Nifti1Image of shape (nx, ny, nz, n_models)
    scores_ : ndarray of shape (n_centres, n_models)
        Scores on the masked voxel axis.
    neighbourhoods_ : Neighbourhoods
    """

    def __init__(
        self,
        mask_img: Any,
        *,
        radius_mm: float = 6.0,
        metric: str = "correlation",
        comparator: str = "spearman",
        min_voxels: int = 10,
        device: str = "auto",
        memory_budget_mb: float | None = None,
        n_jobs: int | None = None,
        progress: bool = True,
    ):
        self.mask_img = mask_img
        self.radius_mm = radius_mm
        self.metric = metric
        self.comparator = comparator
        self.min_voxels = min_voxels
        self.device = device
        self.memory_budget_mb = memory_budget_mb
        self.n_jobs = n_jobs
        self.progress = progress

    def fit(
        self,
        patterns_img: Any,
        model_rdms,
        *,
        conditions: Sequence | None = None,
        runs: Sequence | None = None,
    ) -> SearchlightRSA:
        """Compute the maps.

        Parameters
        ----------
        patterns_img : Niimg-like, 4-D
        model_rdms : array of shape (n_models, n_pairs) or (n_pairs,)
        conditions, runs : sequences of shape (n_volumes,), optional
        """
        self.scores_img_, self.scores_, self.neighbourhoods_ = _run_images(
            patterns_img,
            self.mask_img,
            model_rdms,
            radius_mm=self.radius_mm,
            metric=self.metric,
            comparator=self.comparator,
            conditions=conditions,
            runs=runs,
            min_voxels=self.min_voxels,
            device=self.device,
            memory_budget_mb=self.memory_budget_mb,
            n_jobs=self.n_jobs,
            progress=self.progress,
        )
        return self


__all__ = [
    "SEARCHLIGHT_METRICS",
    "Neighbourhoods",
    "SearchlightRSA",
    "searchlight_rdms",
    "searchlight_rsa",
    "searchlight_rsa_array",
    "sphere_offsets",
    "volume_neighbourhoods",
]
