"""The two tables that every consumer reads: RDM comparators and group map statistics.

Comparators
    :data:`COMPARATOR_REGISTRY` maps a comparator's name to a :class:`Comparator`:
    the kernel that computes it, whether its scores are correlation-like (Fisher z at
    the group level), whether the searchlight engine and the ROI inference support it,
    and an optional fast path of the searchlight engine. :func:`dnnrsa.rdm.compare_rdms`,
    the searchlight engine (:mod:`dnnrsa.searchlight`), the inference
    (:mod:`dnnrsa.inference`), the nipype interfaces' choices, the command line's
    ``--comparator`` choices, the workflows' Fisher z decision and the table of
    ``docs/conventions.md`` all read it. Adding a comparator is one entry here (and its
    kernel); a comparator with ``inference=True`` also needs the pair-weighted kernels
    of :mod:`dnnrsa.inference`.

Group map statistics
    :data:`GROUP_MAP_STATISTICS` lists the maps a group test of one layer produces:
    the image's key in the test's result, the entities its derivative file adds, what
    its sidecar calls it and the output of :class:`dnnrsa.interfaces.stats.GroupSignFlipTest`
    that holds it. The group interfaces, the group workflow's expected outputs and the
    group report read it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from ._rdmkernels import (
    _compare_whitened,
    _is_constant,
    _kendall_tau_a_block,
    _standardise_rows,
    rankdata,
)


# --------------------------------------------------------------------------- comparators
@dataclass(frozen=True)
class SearchlightKernel:
    """A fast path of the searchlight engine for one comparator.

    Attributes
    ----------
    prepare : callable
        ``prepare(models, xp) -> state``: done once for the model RDMs, an array of
        shape (n_models, n_pairs) without NaN.
    score : callable
        ``score(rdms, state, xp) -> scores``: the scores of a block of NaN-free neural
        RDMs (n_rows, n_pairs) against every model, shape (n_rows, n_models).
    """

    prepare: Callable
    score: Callable


@dataclass(frozen=True)
class Comparator:
    """One way of comparing two RDMs.

    Attributes
    ----------
    name : str
        The name used everywhere (``compare_rdms(method=...)``, ``--comparator``,
        the ``stat`` entity of searchlight maps).
    kernel : callable
        ``kernel(a, b, xp) -> scores`` of shape (n_a, n_b) for RDM rows ``a`` (n_a,
        n_pairs) and ``b`` (n_b, n_pairs) without NaN. With ``masked``,
        ``kernel(a, b, xp, keep=keep)`` instead gets every entry and the boolean mask
        ``keep`` (n_pairs,) of the usable ones.
    description : str
        The definition, as the documentation states it.
    fisher_z : bool
        The scores are correlation-like (in [-1, 1]): the group level averages and
        tests them as Fisher z.
    searchlight : bool
        The searchlight engine accepts it.
    inference : bool
        The ROI inference (noise ceilings, bootstrap evaluation, weighted models) accepts
        it; :mod:`dnnrsa.inference` holds its pair-weighted kernels.
    masked : bool
        The kernel needs the RDM's pair structure (every entry in place, unusable ones
        masked) rather than the usable entries only.
    constant_is_nan : bool
        A constant RDM has no score with anything (NaN).
    searchlight_kernel : SearchlightKernel or None
        A faster searchlight path; without one the engine calls the kernel through
        :func:`dnnrsa.rdm.compare_rdms` block by block.
    rsatoolbox_name : str or None
        The same comparator's name in rsatoolbox (``rsatoolbox.rdm.compare``).
    """

    name: str
    kernel: Callable
    description: str
    fisher_z: bool
    searchlight: bool
    inference: bool
    masked: bool = False
    constant_is_nan: bool = False
    searchlight_kernel: SearchlightKernel | None = field(default=None, repr=False)
    rsatoolbox_name: str | None = None


def _spearman(a, b, xp):
    a, b = rankdata(a, xp=xp), rankdata(b, xp=xp)
    return _standardise_rows(a, xp) @ _standardise_rows(b, xp).T


def _pearson(a, b, xp):
    return _standardise_rows(a, xp) @ _standardise_rows(b, xp).T


def _cosine(a, b, xp):
    return _standardise_rows(a, xp, centre=False) @ _standardise_rows(b, xp, centre=False).T


def _kendall_tau_a(a, b, xp):
    return _kendall_tau_a_block(a, b, xp)


def _corr_cov(a, b, xp, keep):
    return _compare_whitened(a, b, "corr_cov", keep, xp)


def _cosine_cov(a, b, xp, keep):
    return _compare_whitened(a, b, "cosine_cov", keep, xp)


# Searchlight fast paths: the model rows are standardised once (ranked first for
# Spearman), so each block needs one matrix product.
def _unit_models(models, xp, *, ranks=False, centre=True):
    base = rankdata(models, xp=xp) if ranks else models
    return xp.ascontiguousarray(_standardise_rows(base, xp, centre=centre).T)


def _fast_ranks(values, xp):
    """Tie-averaged ranks of each row of a NaN-free block, shape (n_rows, n_cols).

    One sort of packed keys instead of an argsort: each float64 is mapped to an
    order-preserving 64-bit integer whose lowest bits are replaced by the column
    index. Rows in which two neighbouring sorted keys may share their high bits
    (true ties, or values that differ only in the dropped bits) are ranked again
    exactly with :func:`dnnrsa.rdm.rankdata`, so the result is exact.

    Returns
    -------
    ranks : array of shape (n_rows, n_cols), float64
    tied_rows : array of int
        Rows that went through the exact tie-aware path.
    """
    n_rows, n_cols = values.shape
    n_bits = max(1, int(n_cols - 1).bit_length())
    low = (1 << n_bits) - 1
    keys = xp.ascontiguousarray(values + 0.0, dtype=xp.float64).view(xp.int64)  # -0.0 -> +0.0
    # Negative floats: flip the magnitude bits, so that signed integer order is float order.
    flip = keys >> 63
    flip &= np.int64(0x7FFFFFFFFFFFFFFF)
    keys ^= flip
    del flip
    keys &= np.int64(~low)
    keys |= xp.arange(n_cols, dtype=xp.int64)[None, :]
    keys.sort(axis=1)
    step = keys[:, 1:].view(xp.uint64) - keys[:, :-1].view(xp.uint64)
    tied = xp.any(step <= np.uint64(low), axis=1)
    del step
    keys &= np.int64(low)  # now the column order
    keys += (xp.arange(n_rows, dtype=xp.int64) * n_cols)[:, None]
    ranks = xp.empty((n_rows, n_cols), dtype=xp.float64)
    ranks.reshape(-1)[keys.reshape(-1)] = xp.tile(
        xp.arange(1, n_cols + 1, dtype=xp.float64), n_rows
    )
    tied_rows = xp.flatnonzero(tied)
    if tied_rows.size:
        ranks[tied_rows] = rankdata(values[tied_rows], xp=xp)
    return ranks, tied_rows


def _spearman_block(rdms, unit_t, xp):
    n_pairs = rdms.shape[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        ranks, tied_rows = _fast_ranks(rdms, xp)
        # Model rows are centred, so uncentred ranks give the same products.
        norms = xp.full(rdms.shape[0], np.sqrt(n_pairs * (n_pairs**2 - 1) / 12.0))
        if tied_rows.size:
            centred = ranks[tied_rows] - (n_pairs + 1) / 2.0
            norms[tied_rows] = xp.sqrt(xp.sum(centred * centred, axis=1))
        scores = (ranks @ unit_t) / norms[:, None]
        return xp.where(norms[:, None] > 0, scores, xp.nan)


def _pearson_block(rdms, unit_t, xp):
    with np.errstate(invalid="ignore", divide="ignore"):
        centred = rdms - rdms.mean(axis=1, keepdims=True)
        norms = xp.sqrt(xp.sum(centred * centred, axis=1))
        constant = _is_constant(rdms, xp)
        scores = (centred @ unit_t) / norms[:, None]
        return xp.where(constant[:, None], xp.nan, scores)


def _cosine_block(rdms, unit_t, xp):
    with np.errstate(invalid="ignore", divide="ignore"):
        norms = xp.sqrt(xp.sum(rdms * rdms, axis=1))
        return xp.where(norms[:, None] > 0, (rdms @ unit_t) / norms[:, None], 0.0)


_SPEARMAN_SEARCHLIGHT = SearchlightKernel(
    prepare=lambda models, xp: _unit_models(models, xp, ranks=True), score=_spearman_block
)
_PEARSON_SEARCHLIGHT = SearchlightKernel(
    prepare=lambda models, xp: _unit_models(models, xp), score=_pearson_block
)
_COSINE_SEARCHLIGHT = SearchlightKernel(
    prepare=lambda models, xp: _unit_models(models, xp, centre=False), score=_cosine_block
)

_BUILT_IN = (
    Comparator(
        "spearman",
        _spearman,
        'Pearson r of the ranks, ties averaged (`scipy.stats.rankdata(method="average")`)',
        fisher_z=True,
        searchlight=True,
        inference=True,
        constant_is_nan=True,
        searchlight_kernel=_SPEARMAN_SEARCHLIGHT,
        rsatoolbox_name="spearman",
    ),
    Comparator(
        "pearson",
        _pearson,
        "Pearson r",
        fisher_z=True,
        searchlight=True,
        inference=True,
        constant_is_nan=True,
        searchlight_kernel=_PEARSON_SEARCHLIGHT,
        rsatoolbox_name="corr",
    ),
    Comparator(
        "kendall_tau_a",
        _kendall_tau_a,
        "(concordant - discordant) / (n (n - 1) / 2) over pairs of RDM entries, without "
        "tie correction",
        fisher_z=True,
        searchlight=True,
        inference=False,
        rsatoolbox_name="kendall_tau_a",
    ),
    Comparator(
        "cosine",
        _cosine,
        "uncentred cosine similarity; a zero-norm RDM gives 0",
        fisher_z=True,
        searchlight=True,
        inference=True,
        searchlight_kernel=_COSINE_SEARCHLIGHT,
        rsatoolbox_name="cosine",
    ),
    Comparator(
        "corr_cov",
        _corr_cov,
        "Pearson r after whitening with the covariance of RDM entries under the null "
        "(Diedrichsen et al. 2021); a zero-norm RDM gives 0",
        fisher_z=True,
        searchlight=False,
        inference=True,
        masked=True,
        rsatoolbox_name="corr_cov",
    ),
    Comparator(
        "cosine_cov",
        _cosine_cov,
        "cosine similarity after the same whitening; a zero-norm RDM gives 0",
        fisher_z=True,
        searchlight=False,
        inference=True,
        masked=True,
        rsatoolbox_name="cosine_cov",
    ),
)

#: Every comparator by name, in the order choices are listed (the first is the default).
COMPARATOR_REGISTRY: dict[str, Comparator] = {c.name: c for c in _BUILT_IN}


def comparator_names(
    *,
    searchlight: bool | None = None,
    inference: bool | None = None,
    fisher_z: bool | None = None,
    masked: bool | None = None,
) -> tuple[str, ...]:
    """Names of the registered comparators, in registry order, filtered by their flags.

    Parameters
    ----------
    searchlight, inference, fisher_z, masked : bool, optional
        Keep only the comparators whose flag has this value (``None``: either).

    Returns
    -------
    names : tuple of str
    """
    wanted = {
        "searchlight": searchlight,
        "inference": inference,
        "fisher_z": fisher_z,
        "masked": masked,
    }
    return tuple(
        name
        for name, entry in COMPARATOR_REGISTRY.items()
        if all(value is None or getattr(entry, key) is value for key, value in wanted.items())
    )


def get_comparator(
    name: str,
    *,
    parameter: str = "comparator",
    searchlight: bool | None = None,
    inference: bool | None = None,
) -> Comparator:
    """The registry entry of ``name``, refused unless it has the requested support.

    Parameters
    ----------
    name : str
    parameter : str
        The parameter named in the error.
    searchlight, inference : bool, optional
        Require this support (as in :func:`comparator_names`).

    Raises
    ------
    ValueError
        If ``name`` is not registered, or lacks the requested support.
    """
    allowed = comparator_names(searchlight=searchlight, inference=inference)
    if name not in allowed:
        raise ValueError(f"{parameter} must be one of {sorted(allowed)}; got {name!r}")
    return COMPARATOR_REGISTRY[name]


# --------------------------------------------------------------------------- group maps
@dataclass(frozen=True)
class GroupMapStatistic:
    """One map of a layer's group test.

    Attributes
    ----------
    key : str
        The image's key in the test's result (``result.images``).
    entities : mapping
        Entities added to the layer map's own in its derivative file name
        (``stat``, and ``desc`` where two maps share a ``stat``).
    description : str
        What the map is, as its sidecar's ``Statistic`` says.
    output : str
        The output of :class:`dnnrsa.interfaces.stats.GroupSignFlipTest` holding it.
    derivative : bool
        Written into the derivatives by the group level.
    tfce : bool
        Exists only where TFCE was asked for.
    """

    key: str
    entities: Mapping[str, str]
    description: str
    output: str
    derivative: bool = True
    tfce: bool = False


#: The maps of a layer's group test, in the order they are written.
GROUP_MAP_STATISTICS: tuple[GroupMapStatistic, ...] = (
    GroupMapStatistic("t", MappingProxyType({"stat": "t"}), "t", "t_file"),
    GroupMapStatistic("z", MappingProxyType({"stat": "z"}), "z of the uncorrected t", "z_file"),
    GroupMapStatistic(
        "p_fwe", MappingProxyType({"stat": "p"}), "voxel-level FWE p (max-T)", "p_file"
    ),
    GroupMapStatistic(
        "p_tfce_fwe",
        MappingProxyType({"desc": "tfce", "stat": "p"}),
        "TFCE FWE p",
        "p_tfce_file",
        tfce=True,
    ),
    GroupMapStatistic(
        "p_cluster_size_fwe",
        MappingProxyType({"desc": "clustersize", "stat": "p"}),
        "cluster-size FWE p",
        "p_cluster_file",
        derivative=False,
    ),
)


def group_map_statistic(key: str) -> GroupMapStatistic:
    """The entry of :data:`GROUP_MAP_STATISTICS` whose result key is ``key``.

    Raises
    ------
    ValueError
        If no entry has this key.
    """
    for entry in GROUP_MAP_STATISTICS:
        if entry.key == key:
            return entry
    keys = sorted(entry.key for entry in GROUP_MAP_STATISTICS)
    raise ValueError(f"key must be one of {keys}; got {key!r}")


__all__ = [
    "COMPARATOR_REGISTRY",
    "GROUP_MAP_STATISTICS",
    "Comparator",
    "GroupMapStatistic",
    "SearchlightKernel",
    "comparator_names",
    "get_comparator",
    "group_map_statistic",
]
