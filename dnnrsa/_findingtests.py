"""The statistical tests behind the study's findings, on tables and RDMs.

Each test works on any network or data set; :mod:`dnnrsa.findings` applies them to
the study's networks and re-exports them.

- :func:`part_category_index_test`: the category index of a set of layers, with one
  label permutation for all layers (max or mean statistic; finding 1).
- :func:`stimulus_bootstrap_counts`, :func:`bootstrap_means`, :func:`bootstrap_p`: the
  bootstrap over stimuli (findings 2 and 3).
- :func:`arm_relevance_table`: lesion drops and unique variances of each arm of a
  network, with bootstrap intervals over stimuli (findings 2 and 3).
- :func:`arm_coupling_test`: the arms' layers against the cross-modal layers, with a
  permutation of the conditions (finding 4).
- :func:`region_sign_flip_test`: a region's mean score against the rest of the brain,
  tested across subjects (finding 5).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._analysisinputs import _check_random_state

__all__ = [
    "arm_coupling_test",
    "arm_relevance_table",
    "bootstrap_means",
    "bootstrap_p",
    "part_category_index_test",
    "region_sign_flip_test",
    "stimulus_bootstrap_counts",
]


def bootstrap_p(samples: np.ndarray, *, alternative: str = "two-sided") -> float:
    """Bootstrap p value of a statistic against zero from its bootstrap distribution.

    ``greater`` (the statistic is above zero): ``(1 + #{sample <= 0}) / (1 + B)``;
    ``less`` the mirror; ``two-sided`` twice the smaller of the two, at most 1.
    """
    s = np.asarray(samples, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return float("nan")
    greater = (1.0 + np.count_nonzero(s <= 0)) / (1.0 + s.size)
    less = (1.0 + np.count_nonzero(s >= 0)) / (1.0 + s.size)
    if alternative == "greater":
        return float(greater)
    if alternative == "less":
        return float(less)
    if alternative != "two-sided":
        raise ValueError(f"alternative must be two-sided, greater or less; got {alternative!r}")
    return float(min(1.0, 2.0 * min(greater, less)))


# ---------------------------------------------------------------------------
# finding 1: category index of a set of layers
# ---------------------------------------------------------------------------


def part_category_index_test(
    rdms, labels, n_permutations: int = 1000, random_state=0, *, statistic: str = "max"
):
    """Category index of a set of layers, with one label permutation for all layers.

    Parameters
    ----------
    rdms : ndarray of shape (n_layers, n_pairs)
        Condensed RDMs of the layers (e.g. the cross-modal part of a network).
    labels : array-like of shape (n_conditions,)
        Category of each condition (e.g. its emotion).
    n_permutations : int
    random_state : None, int or numpy.random.Generator
    statistic : {"max", "mean"}
        ``max``: the largest index over the layers, tested against the permutation
        distribution of that maximum (some layer of the set groups the conditions, with
        the family-wise error over the layers controlled); ``mean``: the mean index.

    Returns
    -------
    dict
        ``index`` (the statistic over the layers' :func:`dnnrsa.analysis.category_index`),
        ``per_layer`` (ndarray), ``layer`` (position of the largest index),
        ``p_value`` (one-sided, ``(1 + #{null >= index}) / (1 + n_permutations)``, each
        permutation shuffling the labels of the conditions once for every layer),
        ``null`` (ndarray).
    """
    from ._categoryindex import _category_index_from_masks, category_index
    from .rdm import n_conditions_from_pairs

    if statistic not in ("max", "mean"):
        raise ValueError(f"statistic must be 'max' or 'mean'; got {statistic!r}")
    reduce = np.max if statistic == "max" else np.mean
    rdms = np.atleast_2d(np.asarray(rdms, dtype=np.float64))
    n = n_conditions_from_pairs(rdms.shape[1])
    codes = np.unique(np.asarray(labels).astype(str), return_inverse=True)[1].ravel()
    if codes.shape != (n,):
        raise ValueError(f"labels must have one entry per condition ({n}); got {codes.shape}")
    per_layer = np.array([category_index(r, codes) for r in rdms])
    observed = float(reduce(per_layer))
    rng = _check_random_state(random_state)
    iu, ju = np.triu_indices(n, 1)
    null = np.zeros(int(n_permutations))
    chunk = 500
    prepared = []
    for r in rdms:
        finite = np.isfinite(r)
        spread = float(np.max(r[finite]) - np.min(r[finite])) if finite.any() else 0.0
        prepared.append((np.where(finite, r, 0.0), finite, spread))
    for start in range(0, int(n_permutations), chunk):
        stop = min(start + chunk, int(n_permutations))
        perm = rng.permuted(np.broadcast_to(codes, (stop - start, n)), axis=1)
        same = perm[:, iu] == perm[:, ju]
        layers = np.stack(
            [_category_index_from_masks(c, same, f, sp) for c, f, sp in prepared], axis=1
        )
        null[start:stop] = reduce(layers, axis=1)
    p = (1.0 + np.count_nonzero(null >= observed - 1e-12)) / (1.0 + null.size)
    return {
        "index": observed,
        "per_layer": per_layer,
        "layer": int(np.argmax(per_layer)),
        "p_value": float(p),
        "null": null,
    }


# ---------------------------------------------------------------------------
# findings 2 and 3: arm relevance with a bootstrap over stimuli
# ---------------------------------------------------------------------------


def stimulus_bootstrap_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """How often each stimulus is drawn in every bootstrap sample of the stimuli.

    Parameters
    ----------
    n : int
        Number of stimuli; each sample draws ``n`` of them with replacement.
    n_boot : int
        Number of bootstrap samples.
    rng : numpy.random.Generator
        One multinomial draw of shape ``(n_boot, n)`` is taken from it.

    Returns
    -------
    ndarray of float64, shape (n_boot, n)
    """
    return rng.multinomial(n, np.full(n, 1.0 / n), size=int(n_boot)).astype(np.float64)


def bootstrap_means(counts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Mean of per-stimulus ``values`` in every bootstrap sample.

    Parameters
    ----------
    counts : ndarray of shape (n_boot, n_values)
        Draws of each stimulus per sample (:func:`stimulus_bootstrap_counts`, or its
        columns of the stimuli that have values).
    values : ndarray of shape (n_values,)

    Returns
    -------
    ndarray of shape (n_boot,)
        The counts-weighted means (NaN for a sample that draws none of the stimuli).
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        return (counts @ values) / counts.sum(axis=1)


def _resampled_pairs(idx: np.ndarray, n: int) -> np.ndarray:
    """Pair indices of the RDM of conditions ``idx`` (resampled with replacement):
    pairs of two copies of the same condition are left out."""
    iu, ju = np.triu_indices(idx.size, 1)
    a, b = idx[iu], idx[ju]
    keep = a != b
    a, b = np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])
    # condensed index of (a, b), a < b, in an n-condition RDM
    return a * n - a * (a + 1) // 2 + (b - a - 1)


def _bootstrap_unique_variance(counts, y, v, a) -> np.ndarray:
    """Unique variance of ``v`` and ``a`` in ``y`` for every bootstrap sample of conditions.

    A sample that takes condition ``i`` ``counts[i]`` times holds each pair ``(i, j)``
    ``counts[i] * counts[j]`` times (pairs of two copies of one condition are left out),
    so its regressions are least squares weighted by those products, computed for all
    samples at once from weighted moments. Equal to :func:`dnnrsa.analysis.
    variance_partitioning` of the resampled RDMs (:func:`_resampled_pairs`).

    Returns
    -------
    ndarray of shape (n_boot, 2)
        ``unique_visual``, ``unique_auditory`` (NaN where a sample has too few pairs).
    """
    from .rdm import n_conditions_from_pairs

    n = n_conditions_from_pairs(y.shape[0])
    iu, ju = np.triu_indices(n, 1)
    ok = np.isfinite(y) & np.isfinite(v) & np.isfinite(a)
    w = counts[:, iu[ok]] * counts[:, ju[ok]]
    y, v, a = y[ok], v[ok], a[ok]
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = {k: (w @ x) / total for k, x in (("y", y), ("v", v), ("a", a))}

        def cov(p, q, xp, xq):
            return (w @ (xp * xq)) / total - mean[p] * mean[q]

        syy, svv, saa = cov("y", "y", y, y), cov("v", "v", v, v), cov("a", "a", a, a)
        syv, sya, sva = cov("y", "v", y, v), cov("y", "a", y, a), cov("v", "a", v, a)
        r2_v = syv**2 / (syy * svv)
        r2_a = sya**2 / (syy * saa)
        det = svv * saa - sva**2
        r2_full = (saa * syv**2 - 2 * sva * syv * sya + svv * sya**2) / (det * syy)
    out = np.column_stack([r2_full - r2_a, r2_full - r2_v])
    out[np.count_nonzero(w, axis=1) < 4] = np.nan
    return out


def arm_relevance_table(
    outcomes=None,
    rdms=None,
    parts: Sequence[str] | None = None,
    *,
    layers: Sequence[str] | None = None,
    n_boot: int = 1000,
    ci_level: float = 0.95,
    seed=0,
):
    """How much each arm of a network matters, with bootstrap intervals over stimuli.

    Parameters
    ----------
    outcomes : pandas.DataFrame, optional
        Per-stimulus lesion outcomes (:func:`dnnrsa.train.arm_lesion_outcomes`:
        ``correct_none``, ``correct_visual``, ``correct_auditory``; ``attrs`` give
        ``n_classes``).
    rdms : ndarray of shape (n_layers, n_pairs), optional
        The network's layer RDMs, with ``parts`` the part of each layer; the unique
        variance of each arm is measured in the last hidden layer of the cross-modal
        part (the one before the output layer) explained by the last layer of each arm
        (:func:`dnnrsa.analysis.variance_partitioning`).
    layers : sequence of str, optional
        Layer labels, for the ``layer`` column (default: layer indices).
    n_boot : int
        Bootstrap samples (stimuli resampled with replacement; for RDMs, pairs of two
        copies of one stimulus are left out).
    ci_level : float
        Level of the percentile intervals.
    seed : None, int or numpy.random.Generator

    Returns
    -------
    pandas.DataFrame
        Columns ``measure``, ``arm``, ``value``, ``ci_low``, ``ci_high``, ``p_value``,
        ``chance``, ``n_stimuli``, ``n_boot``, ``ci_level``. Rows:

        - ``accuracy``: ``none`` (intact; ``p_value`` is the one-sided binomial test
          against ``chance`` = 1 / number of classes), ``visual``, ``auditory``
          (lesioned);
        - ``lesion_drop``: ``visual``, ``auditory`` and ``visual_minus_auditory``
          (intact minus lesioned accuracy; ``p_value`` two-sided bootstrap against 0);
        - ``unique_variance``: the same three arms, for the layer named in ``layer``
          (``p_value`` two-sided bootstrap against 0).
    """
    import pandas as pd

    if not 0 < ci_level < 1:
        raise ValueError(f"ci_level must be in (0, 1); got {ci_level!r}")
    rng = _check_random_state(seed)
    rows = []
    if outcomes is not None and len(outcomes):
        rows += _lesion_rows(outcomes, rng=rng, n_boot=n_boot, ci_level=ci_level)
    if rdms is not None and parts is not None:
        rows += _unique_variance_rows(
            rdms, parts, layers, rng=rng, n_boot=n_boot, ci_level=ci_level
        )
    columns = [
        "measure", "arm", "layer", "value", "ci_low", "ci_high", "p_value", "chance",
        "n_stimuli", "n_boot", "ci_level",
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def _relevance_row(
    measure, arm, value, boot=None, p=None, chance=np.nan, n=0, layer="n/a", *, n_boot, ci_level
) -> dict:
    """One row of :func:`arm_relevance_table`.

    With bootstrap samples ``boot``, the row gets their percentile interval at
    ``ci_level`` and, unless ``p`` is given, their two-sided :func:`bootstrap_p`.
    """
    q = [(1 - ci_level) / 2, 1 - (1 - ci_level) / 2]
    lo, hi = (np.nan, np.nan)
    if boot is not None:
        lo, hi = np.nanquantile(boot, q)
        if p is None:
            p = bootstrap_p(boot - 0.0)
    return {
        "measure": measure,
        "arm": arm,
        "layer": layer,
        "value": float(value),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "p_value": np.nan if p is None else float(p),
        "chance": chance,
        "n_stimuli": int(n),
        "n_boot": int(n_boot) if boot is not None else 0,
        "ci_level": float(ci_level),
    }


def _lesion_rows(outcomes, *, rng, n_boot, ci_level) -> list[dict]:
    """The ``accuracy`` and ``lesion_drop`` rows of :func:`arm_relevance_table`.

    One bootstrap draw of the stimuli (:func:`stimulus_bootstrap_counts`) serves every
    arm, so that the drops and their difference are paired.
    """
    from scipy.stats import binomtest

    def row(*args, **kwargs):
        return _relevance_row(*args, **kwargs, n_boot=n_boot, ci_level=ci_level)

    rows = []
    n = len(outcomes)
    correct = {
        c[len("correct_") :]: outcomes[c].to_numpy(dtype=np.float64)
        for c in outcomes.columns
        if c.startswith("correct_")
    }
    n_classes = int(outcomes.attrs.get("n_classes", 0)) or int(outcomes["target"].nunique())
    chance = 1.0 / n_classes
    counts = stimulus_bootstrap_counts(n, n_boot, rng)
    boot = {arm: bootstrap_means(counts, c) for arm, c in correct.items()}
    k = int(correct["none"].sum())
    p_chance = binomtest(k, n, chance, alternative="greater").pvalue
    rows.append(row("accuracy", "none", correct["none"].mean(), boot["none"], p_chance, chance, n))
    arms = [a for a in correct if a != "none"]
    for arm in arms:
        rows.append(row("accuracy", arm, correct[arm].mean(), boot[arm], None, chance, n))
        rows[-1]["p_value"] = np.nan
    for arm in arms:
        drop = correct["none"] - correct[arm]
        rows.append(row("lesion_drop", arm, drop.mean(), boot["none"] - boot[arm], n=n))
    if {"visual", "auditory"} <= set(arms):
        diff = correct["auditory"] - correct["visual"]  # drop_visual - drop_auditory
        rows.append(
            row(
                "lesion_drop",
                "visual_minus_auditory",
                diff.mean(),
                boot["auditory"] - boot["visual"],
                n=n,
            )
        )
    return rows


def _unique_variance_rows(rdms, parts, layers, *, rng, n_boot, ci_level) -> list[dict]:
    """The ``unique_variance`` rows of :func:`arm_relevance_table` (none when the
    network has no two arms and a cross-modal part)."""
    from ._varpart import arm_layers, variance_partitioning
    from .rdm import n_conditions_from_pairs

    rdms = np.atleast_2d(np.asarray(rdms, dtype=np.float64))
    arms = arm_layers(list(parts))
    if arms is None:
        return []
    vis, aud, cross = arms
    target = cross[-2] if len(cross) >= 2 else cross[-1]
    n = n_conditions_from_pairs(rdms.shape[1])
    res = variance_partitioning(rdms[target], rdms[vis], rdms[aud])
    counts = stimulus_bootstrap_counts(n, n_boot, rng)
    samples = _bootstrap_unique_variance(counts, rdms[target], rdms[vis], rdms[aud])
    layer = str(layers[target]) if layers is not None else str(target)
    values = {
        "visual": (res["unique_visual"], samples[:, 0]),
        "auditory": (res["unique_auditory"], samples[:, 1]),
        "visual_minus_auditory": (
            res["unique_visual"] - res["unique_auditory"],
            samples[:, 0] - samples[:, 1],
        ),
    }
    return [
        _relevance_row(
            "unique_variance", arm, value, boot, n=n, layer=layer, n_boot=n_boot, ci_level=ci_level
        )
        for arm, (value, boot) in values.items()
    ]


# ---------------------------------------------------------------------------
# finding 4: arm layers against cross-modal layers
# ---------------------------------------------------------------------------


def _standard_ranks(rdms: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    r = rankdata(rdms, axis=1)
    r -= r.mean(axis=1, keepdims=True)
    r /= np.sqrt(np.einsum("ij,ij->i", r, r))[:, None]
    return r


def arm_coupling_test(rdms, parts: Sequence[str], n_permutations: int = 1000, random_state=0):
    """Mean Spearman correlation of each arm's layers with the cross-modal layers.

    The null permutes the conditions of the cross-modal layers' RDMs (one permutation
    for all of them) against the arm's layers, so that it keeps every RDM's own
    structure and breaks only their correspondence over stimuli.

    Parameters
    ----------
    rdms : ndarray of shape (n_layers, n_pairs)
        A network's layer RDMs (no NaN).
    parts : sequence of str
        Part of every layer (``visual``, ``auditory``, ``crossmodal``).
    n_permutations : int
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    dict
        For ``visual`` and ``auditory``: ``{arm: {"similarity": mean over the block
        of arm layers x cross-modal layers, "p_value": one-sided permutation p}}``.
    """
    from .rdm import n_conditions_from_pairs

    rdms = np.atleast_2d(np.asarray(rdms, dtype=np.float64))
    if not np.isfinite(rdms).all():
        raise ValueError("arm_coupling_test needs RDMs without NaN")
    parts = list(parts)
    cross = [i for i, p in enumerate(parts) if p == "crossmodal"]
    n = n_conditions_from_pairs(rdms.shape[1])
    z = _standard_ranks(rdms)
    zc = z[cross]
    square = np.zeros((n, n), dtype=np.int64)
    iu, ju = np.triu_indices(n, 1)
    square[iu, ju] = np.arange(iu.size)
    square[ju, iu] = np.arange(iu.size)
    rng = _check_random_state(random_state)
    perms = np.stack([rng.permutation(n) for _ in range(int(n_permutations))])
    out = {}
    arms = {arm: [i for i, p in enumerate(parts) if p == arm] for arm in ("visual", "auditory")}
    observed = {arm: float((z[idx] @ zc.T).mean()) for arm, idx in arms.items() if idx and cross}
    null = {arm: np.empty(len(perms)) for arm in observed}
    for k, perm in enumerate(perms):
        moved = zc[:, square[perm[iu], perm[ju]]]
        for arm in observed:
            null[arm][k] = (z[arms[arm]] @ moved.T).mean()
    for arm, value in observed.items():
        p = (1.0 + np.count_nonzero(null[arm] >= value - 1e-12)) / (1.0 + len(perms))
        out[arm] = {"similarity": value, "p_value": float(p)}
    return out


def region_sign_flip_test(
    scores, region: np.ndarray, *, max_exact: int = 16, n_permutations: int = 10000, random_state=0
):
    """A region's mean score against the rest of the brain, tested across subjects.

    Parameters
    ----------
    scores : ndarray of shape (n_subjects, n_voxels)
        Each subject's searchlight score (e.g. Fisher z, averaged over the cross-modal
        layers) in every voxel scored in all subjects.
    region : bool ndarray of shape (n_voxels,)
        The region's voxels.
    max_exact : int
        Up to this many subjects every sign flip is enumerated; above, random flips.

    Returns
    -------
    dict
        ``contrast`` (per subject: region mean minus the mean of the other voxels),
        ``value`` (its mean over subjects), ``t`` (one-sample t) and ``p_value``
        (one-sided sign-flip p: the fraction of flips, the identity included, whose
        mean is at least the observed one).
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    region = np.asarray(region, bool)
    if region.shape != scores.shape[1:]:
        raise ValueError(f"region has shape {region.shape}; scores have voxels {scores.shape[1:]}")
    if not region.any() or region.all():
        raise ValueError("the region must hold some, but not all, of the voxels")
    contrast = scores[:, region].mean(axis=1) - scores[:, ~region].mean(axis=1)
    n = contrast.size
    if n < 2:
        raise ValueError("the sign-flip test needs at least 2 subjects")
    if n <= max_exact:
        grid = np.array(np.meshgrid(*[[1.0, -1.0]] * n, indexing="ij")).reshape(n, -1).T
    else:
        rng = _check_random_state(random_state)
        grid = np.vstack([np.ones(n), rng.choice([-1.0, 1.0], size=(int(n_permutations), n))])
    flipped = grid @ contrast / n
    observed = float(contrast.mean())
    p = np.count_nonzero(flipped >= observed - 1e-12) / flipped.size
    sd = contrast.std(ddof=1)
    t = observed / (sd / np.sqrt(n)) if sd > 0 else np.inf * np.sign(observed)
    return {"contrast": contrast, "value": observed, "t": float(t), "p_value": float(p)}
