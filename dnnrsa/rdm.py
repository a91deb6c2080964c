"""Representational dissimilarity matrices: computation, comparison, conversion, files.

Conventions (identical to rsatoolbox, so results can be compared directly):

* An RDM is stored as its upper triangle, row-major: the order of
  ``numpy.triu_indices(n, 1)`` and of :func:`scipy.spatial.distance.squareform`.
* ``correlation``: 1 - Pearson r between condition patterns, each centred across
  its channels.
* ``euclidean``: squared Euclidean distance divided by the number of channels.
* ``cosine``: 1 - cosine similarity (uncentred), as :func:`scipy.spatial.distance.cosine`.
* ``mahalanobis``: ``d P d^T / n_channels`` with ``P`` the noise precision matrix.
* ``crossnobis``: for each run, the difference vectors of that run's condition
  means are multiplied (through ``P``) with those of the mean of all other runs'
  observations; the result is averaged over runs and divided by the number of
  channels. Unbiased: its expectation is zero for conditions that do not differ.

Every function works on numpy or CuPy arrays; the module is chosen from the inputs
or passed as ``xp``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np

from ._rdmkernels import (  # noqa: F401 (re-exported: rankdata, pair_indices and
    # n_conditions_from_pairs are public)
    _compare_whitened,
    _is_constant,
    _kendall_tau_a_block,
    _standardise_rows,
    _whitening_terms,
    n_conditions_from_pairs,
    pair_indices,
    rankdata,
)
from .backend import get_namespace, to_numpy

logger = logging.getLogger(__name__)

METRICS = ("correlation", "euclidean", "cosine", "mahalanobis", "crossnobis")


def __getattr__(name: str):
    """``COMPARATORS`` and ``WHITENED_COMPARATORS``, read from the comparator registry.

    ``COMPARATORS``: the comparators the searchlight accepts (all of them are accepted
    by :func:`compare_rdms`). ``WHITENED_COMPARATORS``: those computed on the whitened
    RDM (covariance under the null, Diedrichsen et al. 2021), accepted by
    :func:`compare_rdms` and :mod:`dnnrsa.inference`, not by the searchlight. Both
    are views of :data:`dnnrsa._registries.COMPARATOR_REGISTRY`, computed when read.
    """
    if name in ("COMPARATORS", "WHITENED_COMPARATORS"):
        from ._registries import comparator_names

        if name == "COMPARATORS":
            return comparator_names(searchlight=True)
        return comparator_names(masked=True)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------- helpers
def vector_to_squareform(vec, *, xp=None):
    """Square symmetric matrix (zero diagonal) from an RDM vector.

    Parameters
    ----------
    vec : array of shape (n_pairs,) or (n_rdms, n_pairs)

    Returns
    -------
    array of shape (n, n) or (n_rdms, n, n)
    """
    xp = xp or get_namespace(vec)
    vec = xp.asarray(vec)
    n = n_conditions_from_pairs(vec.shape[-1])
    iu, ju = pair_indices(n)
    out = xp.zeros(vec.shape[:-1] + (n, n), dtype=vec.dtype)
    out[..., iu, ju] = vec
    out[..., ju, iu] = vec
    return out


def squareform_to_vector(square, *, xp=None, check_symmetric: bool = True):
    """RDM vector (upper triangle, row-major) from a square matrix.

    Parameters
    ----------
    square : array of shape (n, n) or (n_rdms, n, n)
    check_symmetric : bool
        Raise if the matrix is not symmetric (NaN-aware, relative tolerance 1e-8).
    """
    xp = xp or get_namespace(square)
    square = xp.asarray(square)
    if square.ndim < 2 or square.shape[-1] != square.shape[-2]:
        raise ValueError(f"square RDM must have shape (n, n); got {tuple(square.shape)}")
    n = square.shape[-1]
    if check_symmetric:
        sq = to_numpy(square)
        if not np.allclose(sq, np.swapaxes(sq, -1, -2), rtol=1e-8, atol=1e-10, equal_nan=True):
            raise ValueError("square RDM is not symmetric")
    iu, ju = pair_indices(n)
    return square[..., iu, ju]


# --------------------------------------------------------------------------- checks
# The input checks and condition averaging below are shared with dnnrsa.searchlight,
# so that both give the same errors and the same condition order.
def _check_choice(name: str, value: str, allowed: Sequence[str]) -> None:
    """Raise if ``value`` is not one of ``allowed``, naming the parameter."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {sorted(allowed)}; got {value!r}")


def _check_patterns(patterns, xp, column: str = "channel"):
    """A 2-D floating array of shape (n_observations, n_<column>s)."""
    patterns = xp.asarray(patterns)
    if patterns.ndim != 2:
        raise ValueError(
            f"patterns must be a 2-D array of shape (n_observations, n_{column}s); "
            f"got shape {tuple(patterns.shape)}"
        )
    if patterns.shape[1] < 1:
        raise ValueError(f"patterns must have at least one {column}; got 0")
    if not xp.issubdtype(patterns.dtype, xp.floating):
        patterns = patterns.astype(xp.float64)
    return patterns


def _check_labels(values, n_obs: int, name: str) -> np.ndarray:
    """One label per row of patterns, as a numpy array."""
    arr = np.asarray(to_numpy(values))
    if arr.shape != (n_obs,):
        raise ValueError(
            f"{name} must have one label per row of patterns ({n_obs}); got shape {arr.shape}"
        )
    return arr


def _check_conditions(conditions, n_obs: int) -> tuple[np.ndarray, np.ndarray]:
    """Condition labels in numpy.unique order and the index of each row's condition.

    Default: every row is its own condition. At least 3 conditions are needed.
    """
    if conditions is None:
        conditions = np.arange(n_obs)
    labels, inverse = np.unique(_check_labels(conditions, n_obs, "conditions"), return_inverse=True)
    if labels.size < 3:
        raise ValueError(
            f"an RDM needs at least 3 conditions; got {labels.size} ({labels.tolist()!r})"
        )
    return labels, inverse.ravel()


def _check_crossnobis_runs(runs, labels, inverse) -> tuple[np.ndarray, np.ndarray]:
    """Run labels for crossnobis and the index of each row's run.

    At least 2 runs are needed, and every condition must occur in every run.
    """
    if runs is None:
        raise ValueError("metric 'crossnobis' needs runs (one run label per row); got None")
    run_labels, run_inverse = np.unique(
        _check_labels(runs, inverse.size, "runs"), return_inverse=True
    )
    run_inverse = run_inverse.ravel()
    if run_labels.size < 2:
        raise ValueError(
            f"metric 'crossnobis' needs at least 2 runs; got {run_labels.size} "
            f"({run_labels.tolist()!r})"
        )
    for r, run in enumerate(run_labels):
        missing = np.setdiff1d(np.arange(labels.size), inverse[run_inverse == r])
        if missing.size:
            raise ValueError(
                f"every condition must occur in every run for crossnobis; run {run.item()!r} "
                f"lacks condition(s) {labels[missing].tolist()!r}"
            )
    return run_labels, run_inverse


def _check_noise(noise, n_channels, xp, name="noise"):
    if noise is None:
        return None
    noise = xp.asarray(noise, dtype=xp.float64)
    if noise.shape != (n_channels, n_channels):
        raise ValueError(
            f"{name} must be a precision matrix of shape ({n_channels}, {n_channels}); "
            f"got shape {tuple(noise.shape)}"
        )
    return noise


# --------------------------------------------------------------------------- computation
def _condition_means(patterns, inverse: np.ndarray, n_conditions: int, xp, select=None):
    """Mean pattern of each condition, shape (n_conditions, n_channels).

    ``inverse`` holds each row's condition index; with ``select`` (a boolean mask
    of rows) only those rows are averaged. A condition without rows gets zeros.
    """
    weights = np.zeros((n_conditions, inverse.size))
    rows = np.arange(inverse.size) if select is None else np.flatnonzero(select)
    weights[inverse[rows], rows] = 1.0
    counts = weights.sum(axis=1, keepdims=True)
    weights /= np.where(counts > 0, counts, 1.0)
    return xp.asarray(weights, dtype=patterns.dtype) @ patterns


def _pairwise_from_kernel(kernel, xp):
    """d_ij = k_ii + k_jj - k_ij - k_ji, upper triangle as a vector."""
    diag = xp.diagonal(kernel, axis1=-2, axis2=-1)
    full = diag[..., :, None] + diag[..., None, :] - kernel - xp.swapaxes(kernel, -1, -2)
    iu, ju = pair_indices(kernel.shape[-1])
    return full[..., iu, ju]


def compute_rdm(
    patterns,
    metric: str = "correlation",
    *,
    conditions: Sequence | None = None,
    runs: Sequence | None = None,
    noise=None,
    xp=None,
):
    """Compute one RDM from activity patterns.

    Parameters
    ----------
    patterns : array of shape (n_observations, n_channels)
        One row per observation (a condition in a run, a stimulus...), one column
        per channel (voxel, unit).
    metric : {"correlation", "euclidean", "cosine", "mahalanobis", "crossnobis"}
        Dissimilarity measure (see the module docstring for exact definitions).
    conditions : sequence of shape (n_observations,), optional
        Condition label of each row. Rows with the same label are averaged
        (crossnobis: within each run), and conditions are ordered like
        :func:`numpy.unique`. Default: every row is its own condition.
    runs : sequence of shape (n_observations,), optional
        Run (fold) label of each row; required for ``crossnobis``.
    noise : array of shape (n_channels, n_channels), optional
        Noise precision matrix for ``mahalanobis`` (required) and ``crossnobis``
        (optional; identity when omitted).
    xp : module, optional
        numpy or cupy; inferred from ``patterns`` by default.

    Returns
    -------
    rdm : array of shape (n_pairs,)
        Upper triangle, row-major, ``n_pairs = n_conditions * (n_conditions - 1) / 2``.
    """
    _check_choice("metric", metric, METRICS)
    xp = xp or get_namespace(patterns)
    patterns = _check_patterns(patterns, xp)
    n_channels = patterns.shape[1]
    labels, inverse = _check_conditions(conditions, patterns.shape[0])

    if metric == "crossnobis":
        return _crossnobis(patterns, labels, inverse, runs, noise, xp)
    if runs is not None:
        logger.debug("runs are ignored for metric %r", metric)

    means = _condition_means(patterns, inverse, labels.size, xp)
    if metric in ("correlation", "cosine"):
        # 1 - cosine of the patterns; correlation centres each pattern first
        if metric == "correlation":
            means = means - means.mean(axis=1, keepdims=True)
        norms = xp.sqrt(xp.einsum("ij,ij->i", means, means))
        with np.errstate(invalid="ignore", divide="ignore"):
            unit = means / norms[:, None]
        iu, ju = pair_indices(means.shape[0])
        return 1.0 - (unit @ unit.T)[iu, ju]
    if metric == "euclidean":
        kernel = means @ means.T
        return _pairwise_from_kernel(kernel, xp) / n_channels
    # mahalanobis
    if noise is None:
        raise ValueError("metric 'mahalanobis' needs noise, a precision matrix; got None")
    precision = _check_noise(noise, n_channels, xp)
    kernel = means @ precision @ means.T
    return _pairwise_from_kernel(kernel, xp) / n_channels


def _crossnobis(patterns, labels, inverse, runs, noise, xp):
    n_channels = patterns.shape[1]
    run_labels, run_inverse = _check_crossnobis_runs(runs, labels, inverse)
    precision = _check_noise(noise, n_channels, xp)
    acc = None
    for r in range(run_labels.size):  # a loop over runs (folds), never over condition pairs
        in_run = run_inverse == r
        test = _condition_means(patterns, inverse, labels.size, xp, select=in_run)
        train = _condition_means(patterns, inverse, labels.size, xp, select=~in_run)
        kernel = train @ (precision @ test.T if precision is not None else test.T)
        fold = _pairwise_from_kernel(kernel, xp)
        acc = fold if acc is None else acc + fold
    return acc / (run_labels.size * n_channels)


def compute_rdms(
    patterns_list,
    metric: str = "correlation",
    *,
    conditions: Sequence | None = None,
    runs: Sequence | None = None,
    noise=None,
    xp=None,
):
    """Compute one RDM per pattern set (for example one per DNN layer).

    Parameters
    ----------
    patterns_list : sequence of arrays of shape (n_observations, n_channels_k), or
        array of shape (n_sets, n_observations, n_channels)

    Returns
    -------
    rdms : array of shape (n_sets, n_pairs)
    """
    xp = xp or get_namespace(
        *(patterns_list if isinstance(patterns_list, list) else [patterns_list])
    )
    rows = [
        compute_rdm(p, metric, conditions=conditions, runs=runs, noise=noise, xp=xp)
        for p in patterns_list
    ]
    return xp.stack(rows)


# --------------------------------------------------------------------------- comparison
def _as_rdm_matrix(rdms, xp, name):
    rdms = xp.asarray(rdms, dtype=xp.float64)
    if rdms.ndim == 1:
        rdms = rdms[None, :]
    if rdms.ndim != 2:
        raise ValueError(
            f"{name} must have shape (n_pairs,) or (n_rdms, n_pairs); got {tuple(rdms.shape)}"
        )
    return rdms


def compare_rdms(rdms_a, rdms_b, method: str = "spearman", *, xp=None):
    """Compare every RDM in ``rdms_a`` with every RDM in ``rdms_b``.

    Parameters
    ----------
    rdms_a : array of shape (n_a, n_pairs) or (n_pairs,)
    rdms_b : array of shape (n_b, n_pairs) or (n_pairs,)
    method : str
        A comparator of :data:`dnnrsa._registries.COMPARATOR_REGISTRY`; the built-in
        ones are {"spearman", "pearson", "kendall_tau_a", "cosine", "corr_cov",
        "cosine_cov"}. ``spearman``: Pearson r of tie-averaged ranks. ``pearson``: Pearson r.
        ``kendall_tau_a``: (concordant - discordant) / (n(n-1)/2), ties count as
        neither. ``cosine``: uncentred cosine similarity (0 for a zero vector).
        ``cosine_cov`` and ``corr_cov``: cosine and Pearson r after whitening with
        the covariance of RDM entries under the null (i.i.d. pattern noise), as
        rsatoolbox's ``compare_cosine_cov_weighted`` and
        ``compare_correlation_cov_weighted`` with ``sigma_k=None`` (Diedrichsen et
        al. 2021); 0 for a zero vector, like rsatoolbox.
    xp : module, optional

    Returns
    -------
    similarity : array of shape (n_a, n_b)

    Notes
    -----
    An entry that is NaN in either RDM of a pair is dropped from both before the
    comparison (ranks are computed on the remaining entries). A constant RDM has
    no correlation with anything: the result is NaN for spearman and pearson (the
    comparators whose registry entry sets ``constant_is_nan``).
    """
    from ._registries import get_comparator

    entry = get_comparator(method, parameter="method")
    xp = xp or get_namespace(rdms_a, rdms_b)
    a = _as_rdm_matrix(rdms_a, xp, "rdms_a")
    b = _as_rdm_matrix(rdms_b, xp, "rdms_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"rdms_a and rdms_b must have the same number of pairs; got {a.shape[1]} and {b.shape[1]}"
        )
    nan_a = xp.isnan(a)
    nan_b = xp.isnan(b)
    any_nan = bool(nan_a.any()) or bool(nan_b.any())
    if entry.masked:
        n_conditions_from_pairs(a.shape[1])
        out = xp.full((a.shape[0], b.shape[0]), xp.nan)
        for rows_a, mask_a in _group_by_mask(to_numpy(nan_a)):
            for rows_b, mask_b in _group_by_mask(to_numpy(nan_b)):
                keep = ~(mask_a | mask_b)
                if keep.sum() < 2:
                    continue
                sub = entry.kernel(a[xp.asarray(rows_a)], b[xp.asarray(rows_b)], xp, keep=keep)
                out[np.ix_(rows_a, rows_b)] = sub
        return out
    if not any_nan:
        out = entry.kernel(a, b, xp)
    else:
        out = xp.full((a.shape[0], b.shape[0]), xp.nan)
        # Group RDMs by their NaN pattern, so that identical patterns stay vectorised.
        keys_a = _group_by_mask(to_numpy(nan_a))
        keys_b = _group_by_mask(to_numpy(nan_b))
        for rows_a, mask_a in keys_a:
            for rows_b, mask_b in keys_b:
                keep = np.flatnonzero(~(mask_a | mask_b))
                if keep.size < 2:
                    continue
                keep_x = xp.asarray(keep)
                sub = entry.kernel(
                    a[xp.asarray(rows_a)][:, keep_x], b[xp.asarray(rows_b)][:, keep_x], xp
                )
                out[np.ix_(rows_a, rows_b)] = sub
    if entry.constant_is_nan:
        # a constant vector has zero norm after centring: undefined correlation
        const_a = _is_constant(a, xp)
        const_b = _is_constant(b, xp)
        out = xp.where(const_a[:, None] | const_b[None, :], xp.nan, out)
    return out


def _group_by_mask(mask: np.ndarray):
    groups: dict[bytes, list[int]] = {}
    for i, row in enumerate(mask):
        groups.setdefault(np.packbits(row).tobytes(), []).append(i)
    return [(np.asarray(idx), mask[idx[0]]) for idx in groups.values()]


# --------------------------------------------------------------------------- files
def write_rdm_tsv(path: str | os.PathLike, vector, labels: Sequence) -> None:
    """Write an RDM as a square, labelled, tab-separated table.

    The first row holds ``condition`` followed by the labels; each following row
    a label and that condition's dissimilarities. The file is written atomically.

    Parameters
    ----------
    path : path-like
    vector : array of shape (n_pairs,)
    labels : sequence of str of length n_conditions
    """
    from ._io import atomic_write

    vec = to_numpy(vector).astype(np.float64)
    square = vector_to_squareform(vec, xp=np)
    labels = [str(lab) for lab in labels]
    if len(labels) != square.shape[0]:
        raise ValueError(
            f"labels must have one entry per condition ({square.shape[0]}); got {len(labels)}"
        )
    for lab in labels:
        if "\t" in lab or "\n" in lab:
            raise ValueError(f"labels must not contain tabs or newlines; got {lab!r}")
    lines = ["\t".join(["condition", *labels])]
    for lab, row in zip(labels, square, strict=True):
        lines.append("\t".join([lab, *(repr(float(v)) if np.isfinite(v) else "n/a" for v in row)]))
    with atomic_write(path) as fh:
        fh.write("\n".join(lines) + "\n")


def _read_square_table(path: str, what: str = "RDM"):
    """The cells (text) and labels of a square TSV whose header row repeats the row labels."""
    import pandas as pd

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        table = pd.read_csv(path, sep="\t", index_col=0, dtype=str, keep_default_na=False)
    except Exception as exc:  # pandas raises several parser errors
        raise ValueError(f"{path}: cannot be read as a tab-separated table ({exc})") from exc
    rows = [str(r) for r in table.index]
    cols = [str(c) for c in table.columns]
    if len(rows) != len(cols):
        raise ValueError(
            f"{path}: a square RDM needs as many rows as columns; got {len(rows)} rows "
            f"and {len(cols)} columns"
        )
    if rows != cols:
        raise ValueError(f"{path}: row labels {rows} differ from column labels {cols}")
    return table, rows


def read_rdm_tsv(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """Read a square, labelled RDM table (as written by :func:`write_rdm_tsv`).

    The first column and the header row hold the condition labels (in the same
    order); the name of the first header cell is free. Missing values may be
    written ``n/a`` or ``NaN``.

    Returns
    -------
    vector : ndarray of shape (n_pairs,)
    labels : list of str
    """
    path = os.fspath(path)
    table, rows = _read_square_table(path)
    if len(rows) < 3:
        raise ValueError(f"{path}: an RDM needs at least 3 conditions; got {len(rows)}")
    cells = table.to_numpy(dtype=object)
    cells[(cells == "n/a") | (cells == "")] = "nan"
    try:
        values = cells.astype(np.float64)
    except ValueError as exc:
        raise ValueError(f"{path}: RDM entries must be numbers or n/a ({exc})") from exc
    if not np.allclose(values, values.T, rtol=1e-6, atol=1e-12, equal_nan=True):
        raise ValueError(f"{path}: the RDM is not symmetric")
    return squareform_to_vector(values, xp=np, check_symmetric=False), rows


__all__ = [  # noqa: F822 (COMPARATORS, WHITENED_COMPARATORS: module __getattr__)
    "COMPARATORS",
    "METRICS",
    "WHITENED_COMPARATORS",
    "compare_rdms",
    "compute_rdm",
    "compute_rdms",
    "n_conditions_from_pairs",
    "pair_indices",
    "rankdata",
    "read_rdm_tsv",
    "squareform_to_vector",
    "vector_to_squareform",
    "write_rdm_tsv",
]


def validate_model_rdm(
    path: str | os.PathLike, conditions: Sequence[str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """Read a model RDM table and refuse it when it cannot be compared with brain RDMs.

    Checked, each fault named with the file: the table's shape and
    labels (square, the same labels in the header and the first column, no
    duplicates, at least 3 conditions), every cell a number or ``n/a`` (text cells are
    named), no infinite entry, a zero (or ``n/a``) diagonal, symmetry, at least two
    distinct finite off-diagonal entries (an all-NaN or constant RDM has no ranks to
    compare), and, with ``conditions``, a label for every condition of the analysis
    (missing conditions and unknown labels are named). Labels beyond the conditions
    are left out when the RDM is reordered, with a logged warning, as are negative
    entries, which are accepted (cross-validated distances can be negative).

    Parameters
    ----------
    path : path-like
        A square, labelled RDM table (as written by :func:`write_rdm_tsv`).
    conditions : sequence of str, optional
        The analysis's condition labels, which the RDM's labels must match.

    Returns
    -------
    vector : ndarray of shape (n_pairs,)
    labels : list of str

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        On any fault above; the message names the file and the fault.
    """
    path = os.fspath(path)
    table, rows = _read_square_table(path, "model RDM")
    duplicates = sorted({r for r in rows if rows.count(r) > 1})
    if duplicates:
        raise ValueError(f"{path}: duplicate condition labels {duplicates}")
    if len(rows) < 3:
        raise ValueError(f"{path}: an RDM needs at least 3 conditions; got {len(rows)}")
    values = _rdm_cells(path, table, rows)
    _check_square(path, values, rows)
    if conditions is not None:
        _check_rdm_labels(path, rows, [str(c) for c in conditions])
    vector = squareform_to_vector(values, xp=np, check_symmetric=False)
    used = values
    if conditions is not None:  # judged on the conditions the analysis compares
        index = [rows.index(str(c)) for c in conditions]
        used = values[np.ix_(index, index)]
    _check_rdm_entries(path, squareform_to_vector(used, xp=np, check_symmetric=False))
    return vector, rows


def _rdm_cells(path, table, rows) -> np.ndarray:
    """The square table's cells as numbers (n/a and the like as NaN); a cell that is
    not a number is refused, naming its row and column."""
    n = len(rows)
    values = np.empty((n, n), dtype=np.float64)
    for i in range(n):
        for j in range(n):
            text = str(table.iat[i, j]).strip()
            if text in ("", "n/a", "N/A", "nan", "NaN", "NA"):
                values[i, j] = np.nan
                continue
            try:
                values[i, j] = float(text)
            except ValueError:
                raise ValueError(
                    f"{path}: the cell at row {rows[i]!r}, column {rows[j]!r} is {text!r}, "
                    "not a number (write numbers, or n/a for a missing value)"
                ) from None
    return values


def _check_square(path, values, rows) -> None:
    """No infinite entry, a zero diagonal and symmetry (to rounding)."""
    infinite = np.argwhere(np.isinf(values))
    if infinite.size:
        i, j = infinite[0]
        raise ValueError(
            f"{path}: {len(infinite)} infinite entr{'y' if len(infinite) == 1 else 'ies'} "
            f"(the first at row {rows[i]!r}, column {rows[j]!r}); dissimilarities must be "
            "finite numbers or n/a"
        )
    diagonal = np.diagonal(values)
    off = np.flatnonzero(np.isfinite(diagonal) & (np.abs(diagonal) > 1e-12))
    if off.size:
        k = int(off[0])
        raise ValueError(
            f"{path}: the diagonal must be 0 (a condition is not dissimilar to itself); "
            f"row {rows[k]!r} has {diagonal[k]:g}"
        )
    same = np.isclose(values, values.T, rtol=1e-6, atol=1e-12, equal_nan=True)
    if not same.all():
        i, j = np.argwhere(~same)[0]
        raise ValueError(
            f"{path}: the RDM is not symmetric: ({rows[i]!r}, {rows[j]!r}) is {values[i, j]:g} "
            f"but ({rows[j]!r}, {rows[i]!r}) is {values[j, i]:g}"
        )


def _check_rdm_labels(path, rows, wanted) -> None:
    """The labels cover the analysis's conditions; extra labels are left out with a
    warning."""
    unknown = [r for r in rows if r not in set(wanted)]
    missing = [c for c in wanted if c not in set(rows)]
    if missing:
        parts = [f"missing condition(s) {missing[:10]}"]
        if unknown:
            parts.append(f"unknown label(s) {unknown[:10]} (not conditions of the events)")
        raise ValueError(
            f"{path}: the RDM's labels must cover the analysis's conditions; "
            + "; ".join(parts)
        )
    if unknown:
        logger.warning(
            "%s: %d label(s) that are not conditions of the events are left out: %s",
            path,
            len(unknown),
            unknown[:10],
        )


def _check_rdm_entries(path, entries) -> None:
    """Something to compare: a finite entry and two distinct values; negative entries
    are accepted with a warning."""
    finite = entries[np.isfinite(entries)]
    if finite.size == 0:
        raise ValueError(
            f"{path}: every off-diagonal entry is NaN (n/a): the RDM has nothing to compare"
        )
    if np.unique(finite).size < 2:
        raise ValueError(
            f"{path}: all finite off-diagonal entries are equal ({finite[0]:g}): a constant RDM "
            "has no ranks or correlation to compare"
        )
    negative = int(np.sum(finite < 0))
    if negative:
        logger.warning(
            "%s: %d negative entr%s (smallest %g); accepted (cross-validated distances can "
            "be negative)",
            path,
            negative,
            "y" if negative == 1 else "ies",
            float(finite.min()),
        )


__all__.append("validate_model_rdm")
