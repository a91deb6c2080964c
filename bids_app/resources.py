"""Memory the participant level's heavy nodes declare to nipype (``mem_gb``).

MultiProc starts a node only when its declared memory fits in what is free, so a
node that declares too little can run beside others and exhaust the machine. The
estimates below follow the data: they were fitted to the peak memory traced by
Python (``tracemalloc``) in ``benchmarks/memory.py``, which runs each step in a
fresh process on synthetic runs, and err on the high side. A node never waits
forever for a declaration above ``--mem``: nipype caps it at the total, so such a
node runs alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._neighbourhoods import sphere_size

#: Resident memory of a node's process before it touches any data (Python, numpy,
#: nilearn, nibabel; about 0.2-0.3 GB measured) plus what tracemalloc does not see.
BASE_GB = 0.5

#: Peak working copies of one run's masked data (float64) in the fits of
#: :func:`dnnrsa.glm.estimate_patterns`. Measured when the fits were nilearn's
#: ``run_glm`` (3.6-3.8 with AR(1), 1.6 with OLS, rounded up) and kept as an upper
#: bound: the fits of :mod:`dnnrsa._fastglm` hold fewer (docs/performance.md).
GLM_COPIES = {"ar1": 4.0, "ols": 2.0}


def _gb(n_bytes: float) -> float:
    return float(n_bytes) / 2**30


def glm_memory_gb(
    run_shapes: Sequence[Sequence[int]],
    *,
    n_cond: int,
    mask_voxels: int | None = None,
    noise_model: str = "ar1",
    n_jobs: int = 1,
    multivariate: bool = False,
    method: str = "lsa",
    n_trials: int | None = None,
) -> float:
    """Memory (GB) of ``EstimatePatterns`` for runs of the given 4-D shapes.

    One run at a time (``n_jobs`` 1): the peak is that of the largest run, the run
    loaded on its grid (float32, ``x * y * z * volumes * 4`` bytes) and
    ``GLM_COPIES`` float64 copies of its masked data (``mask_voxels * volumes * 8``),
    or the brain mask's pass over every run (8 bytes per value of the largest run,
    3 per value of the others: measured 2.6 with OLS), whichever is larger; the patterns of all runs are
    kept (float64), and written as a float32 image of the grid. Runs fitted at once
    (``n_jobs`` > 1, at most the runs): each run beyond the first adds a worker
    process, ``BASE_GB`` and the peak of one run's fit
    (:func:`dnnrsa.glm.run_fit_memory_gb`, from the same shapes).

    Parameters
    ----------
    run_shapes : sequence of (x, y, z, volumes)
    n_cond : int
        Conditions per run (patterns per run).
    mask_voxels : int, optional
        Voxels of the brain mask; without one, the whole grid (an upper bound).
    noise_model : {"ar1", "ols"}
    n_jobs : int
        Runs fitted at once (:func:`glm_runs_at_once`).
    multivariate : bool
        Multivariate noise normalisation: a dense covariance of the mask's voxels.
    method : {"lsa", "lss"}
    n_trials : int, optional
        Trials per run (LSS; default ``n_cond``).
    """
    from ..glm import run_fit_memory_gb

    shapes = [tuple(int(v) for v in s) for s in run_shapes]
    if not shapes:
        return BASE_GB
    grid = max(x * y * z for x, y, z, _ in shapes)
    volumes = max(s[3] for s in shapes)
    total = sum(x * y * z * v for x, y, z, v in shapes)
    mask = grid if mask_voxels is None else min(int(mask_voxels), grid)
    copies = GLM_COPIES.get(noise_model, GLM_COPIES["ar1"])
    one_run = 4.0 * grid * volumes + copies * 8.0 * mask * volumes
    at_once = max(1, min(int(n_jobs), len(shapes)))
    if at_once > 1:
        worker = run_fit_memory_gb(
            volumes,
            mask,
            n_grid=grid,
            n_trials=n_cond if n_trials is None else int(n_trials),
            method=method,
            noise_model=noise_model,
            residuals=multivariate,
        )
        one_run += (at_once - 1) * (worker + BASE_GB) * 2**30
    # the brain mask reads every run (float32, a float64 mean) and keeps a little of each
    mask_pass = 8.0 * grid * volumes + 3.0 * (total - grid * volumes)
    peak = max(one_run, mask_pass)
    patterns = len(shapes) * n_cond * (8.0 * mask + 4.0 * grid)
    extra = 0.0
    if multivariate:
        extra += 3 * 8.0 * mask * mask
    return BASE_GB + _gb(peak + patterns + extra)


def glm_runs_at_once(
    run_shapes: Sequence[Sequence[int]],
    *,
    n_jobs: int,
    mem_gb: float | None = None,
    blas_threads: int | None = None,
    **kwargs,
) -> int:
    """The runs ``EstimatePatterns`` fits at once: no more than the runs, no more than
    ``n_jobs // blas_threads`` (each run's large products use the BLAS threads of the
    caller, ``blas_threads``; None: not counted), and no more than keep
    :func:`glm_memory_gb` (given ``kwargs``) within ``mem_gb`` (``--mem``; None: no
    bound); one at least.

    With BLAS on every core a second run at once only competes for the cores: on an
    idle 2-core machine (BLAS on 2 threads) six 2 mm runs with AR(1) took 30.4 s one
    after another and 36.1 s two at a time (``benchmarks/glm.py --parallel-runs``)."""
    per_run = max(1, int(blas_threads or 1))
    at_once = max(1, min(int(n_jobs) // per_run, len(run_shapes)))
    if mem_gb is not None:
        while at_once > 1 and glm_memory_gb(run_shapes, n_jobs=at_once, **kwargs) > mem_gb:
            at_once -= 1
    return at_once


def searchlight_memory_gb(
    grid_shape: Sequence[int],
    mask_voxels: int,
    *,
    n_runs: int,
    n_cond: int,
    n_models: int,
    affine,
    radius_mm: float,
    budget_mb: float,
) -> float:
    """Memory (GB) of ``SearchlightRSA``: the largest of its three phases.

    Reading: the patterns on their grid (float32) beside their masked float64 copy.
    Computing: the masked patterns, the members of every sphere (8-byte indices),
    the working memory of one block (``budget_mb``, ``--searchlight-memory-mb``) and
    the scores (float64). Writing: the scores and the float32 maps on the grid.
    """
    x, y, z = (int(v) for v in grid_shape[:3])
    grid = x * y * z
    mask = min(int(mask_voxels), grid)
    n_obs = int(n_runs) * int(n_cond)
    sphere = min(sphere_size(affine, radius_mm, (x, y, z)), mask)
    data = 8.0 * mask * n_obs
    scores = 8.0 * mask * n_models
    reading = 4.0 * grid * n_obs + 12.0 * mask * n_obs
    computing = data + 8.0 * mask * sphere + budget_mb * 2**20 + scores
    writing = data + scores + 2 * 4.0 * grid * n_models
    return BASE_GB + _gb(max(reading, computing, writing))


#: Penalties the encoding models try (:data:`dnnrsa.encoding.DEFAULT_ALPHAS`): the inner
#: cross-validation holds a prediction per penalty.
ENCODING_ALPHAS = 19
#: Voxels the encoding models fit together (``voxel_batch`` of :func:`dnnrsa.encoding.fit_encoding`).
ENCODING_VOXEL_BATCH = 20000
#: An allowance for one network's activations of every stimulus, loaded at once (the
#: features file's size is known only when the features exist).
ENCODING_FEATURES_GB = 2.0


def encoding_memory_gb(
    grid_voxels: int,
    mask_voxels: int,
    *,
    n_runs: int,
    n_cond: int,
    n_jobs: int = 1,
    n_bands: int = 3,
    layer_maps: bool = False,
) -> float:
    """Memory (GB) of ``EncodingModel`` (an estimate, not measured).

    The patterns read on their grid (float64) and their masked copies (three), the
    network's activations (:data:`ENCODING_FEATURES_GB`), and for one block of
    :data:`ENCODING_VOXEL_BATCH` voxels: each band's prediction of every run, and in each
    of ``n_jobs`` threads the inner cross-validation's predictions for every penalty;
    then the maps written on the grid (float32; two per layer more with ``layer_maps``).
    """
    mask = min(int(mask_voxels), int(grid_voxels))
    n_obs = int(n_runs) * int(n_cond)
    block = min(mask, ENCODING_VOXEL_BATCH)
    reading = 8.0 * grid_voxels * n_obs + 3 * 8.0 * mask * n_obs
    fitting = 8.0 * n_runs * n_bands * n_cond * block
    fitting += max(1, int(n_jobs)) * 2 * 8.0 * ENCODING_ALPHAS * n_cond * n_runs * block
    maps = 8.0 * mask * (n_runs + 3 * n_bands + 8) + 4.0 * grid_voxels
    extra = 2 * 8.0 * mask * 30 if layer_maps else 0.0  # two maps of up to 30 layers
    return BASE_GB + ENCODING_FEATURES_GB + _gb(reading + fitting + maps + extra)
