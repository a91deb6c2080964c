"""The findings of the study behind dnnrsa, each as a checked statement.

The study trained one two-armed network per classification regime (emotion,
identity, gender, sentence) on audio-visual clips and reported five findings
(:data:`FINDINGS`). This module decides each of them on any data set that has the
same ingredients: tables in, a findings table out.

- :func:`part_category_index_test`: the category index of a set of layers (the largest
  over the layers, or their mean) with a permutation test that shuffles the labels of
  the stimuli alike for every layer (finding 1).
- :func:`arm_relevance_table`: how much each arm of a network matters, with
  bootstrap confidence intervals over stimuli: the accuracy drop when an arm is
  lesioned and the unique variance of each arm in the last hidden cross-modal layer
  (findings 2 and 3).
- :func:`arm_coupling_test`: how strongly the layers of each arm correlate with the
  layers of the cross-modal part, with a permutation test over stimuli (finding 4).
- :func:`region_sign_flip_test`: a region's mean searchlight score of the cross-modal
  layers against the rest of the brain, tested across subjects (finding 5).
- :func:`study_findings`: the findings table, one row per finding with its
  statistic, value, interval or p value and verdict (holds, does not hold,
  undecided), Holm-corrected over the findings that are decided.

Multiple comparisons: a finding made of several parts (two networks, four regimes,
two arms) holds only when every part holds; its p value is the largest of the parts'
p values (an intersection-union test, which needs no correction within the
finding). Across findings, Holm's step-down procedure controls the family-wise error
at ``alpha`` over the findings that are decided.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .analysis import _check_random_state

__all__ = [
    "FINDINGS",
    "STS_TPJ_LABELS",
    "STUDY_REGIMES",
    "NetworkResults",
    "arm_coupling_test",
    "arm_relevance_table",
    "bootstrap_p",
    "part_category_index_test",
    "region_sign_flip_test",
    "study_findings",
    "sts_tpj_region",
]

from .train import REGIMES as STUDY_REGIMES  # the study's four regimes, in its order

#: The study's findings, by number.
FINDINGS = {
    1: "in the upper (cross-modal) layers, stimuli of the same emotion are represented more "
    "alike than stimuli of different emotions, for the networks trained on emotion and on "
    "identity",
    2: "overall (averaged over the regimes), the visual arm is more decisive for the "
    "classification than the auditory arm",
    3: "for classifying emotion, identity and gender the visual arm is more relevant than the "
    "auditory arm; for classifying sentences the auditory arm is more relevant",
    4: "in the network trained on emotion, the layers of both the visual and the auditory arm "
    "correlate with the layers of the cross-modal part",
    5: "in searchlight RSA, the cross-modal layers of the networks trained on emotion and on "
    "identity relate to the posterior superior temporal sulcus and temporo-parietal junction",
}

#: Harvard-Oxford labels (both hemispheres) that make up the posterior STS / TPJ region
#: of finding 5 (each at the atlas's maximum-probability threshold of dnnrsa.roi).
STS_TPJ_LABELS = (
    "Superior_Temporal_Gyrus_posterior_division",
    "Middle_Temporal_Gyrus_posterior_division",
    "Middle_Temporal_Gyrus_temporooccipital_part",
    "Supramarginal_Gyrus_posterior_division",
    "Angular_Gyrus",
)

_EXPECTED_ARM = {
    "emotion": "visual",
    "identity": "visual",
    "gender": "visual",
    "sentence": "auditory",
}


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
    from .analysis import _category_index_from_masks, category_index
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
    from scipy.stats import binomtest

    from .analysis import arm_layers, variance_partitioning

    if not 0 < ci_level < 1:
        raise ValueError(f"ci_level must be in (0, 1); got {ci_level!r}")
    rng = _check_random_state(seed)
    q = [(1 - ci_level) / 2, 1 - (1 - ci_level) / 2]
    rows = []

    def add(measure, arm, value, boot=None, p=None, chance=np.nan, n=0, layer="n/a"):
        lo, hi = (np.nan, np.nan)
        if boot is not None:
            lo, hi = np.nanquantile(boot, q)
            if p is None:
                p = bootstrap_p(boot - 0.0)
        rows.append(
            {
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
        )

    if outcomes is not None and len(outcomes):
        n = len(outcomes)
        correct = {
            c[len("correct_") :]: outcomes[c].to_numpy(dtype=np.float64)
            for c in outcomes.columns
            if c.startswith("correct_")
        }
        n_classes = int(outcomes.attrs.get("n_classes", 0)) or int(outcomes["target"].nunique())
        chance = 1.0 / n_classes
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=int(n_boot)).astype(np.float64)
        boot = {arm: counts @ c / n for arm, c in correct.items()}
        k = int(correct["none"].sum())
        p_chance = binomtest(k, n, chance, alternative="greater").pvalue
        add("accuracy", "none", correct["none"].mean(), boot["none"], p_chance, chance, n)
        arms = [a for a in correct if a != "none"]
        for arm in arms:
            add("accuracy", arm, correct[arm].mean(), boot[arm], None, chance, n)
            rows[-1]["p_value"] = np.nan
        for arm in arms:
            drop = correct["none"] - correct[arm]
            add("lesion_drop", arm, drop.mean(), boot["none"] - boot[arm], n=n)
        if {"visual", "auditory"} <= set(arms):
            diff = correct["auditory"] - correct["visual"]  # drop_visual - drop_auditory
            add(
                "lesion_drop",
                "visual_minus_auditory",
                diff.mean(),
                boot["auditory"] - boot["visual"],
                n=n,
            )
    if rdms is not None and parts is not None:
        rdms = np.atleast_2d(np.asarray(rdms, dtype=np.float64))
        arms = arm_layers(list(parts))
        if arms is not None:
            from .rdm import n_conditions_from_pairs

            vis, aud, cross = arms
            target = cross[-2] if len(cross) >= 2 else cross[-1]
            n = n_conditions_from_pairs(rdms.shape[1])
            res = variance_partitioning(rdms[target], rdms[vis], rdms[aud])
            counts = rng.multinomial(n, np.full(n, 1.0 / n), size=int(n_boot)).astype(np.float64)
            samples = _bootstrap_unique_variance(counts, rdms[target], rdms[vis], rdms[aud])
            layer = str(layers[target]) if layers is not None else str(target)
            add("unique_variance", "visual", res["unique_visual"], samples[:, 0], n=n, layer=layer)
            add(
                "unique_variance",
                "auditory",
                res["unique_auditory"],
                samples[:, 1],
                n=n,
                layer=layer,
            )
            add(
                "unique_variance",
                "visual_minus_auditory",
                res["unique_visual"] - res["unique_auditory"],
                samples[:, 0] - samples[:, 1],
                n=n,
                layer=layer,
            )
    columns = [
        "measure", "arm", "layer", "value", "ci_low", "ci_high", "p_value", "chance",
        "n_stimuli", "n_boot", "ci_level",
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


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


# ---------------------------------------------------------------------------
# finding 5: searchlight maps in the posterior STS / TPJ
# ---------------------------------------------------------------------------


def sts_tpj_region(target_img, labels: Sequence[str] = STS_TPJ_LABELS) -> np.ndarray:
    """The posterior STS / TPJ region of finding 5 on the grid of ``target_img``.

    The union, over both hemispheres, of the Harvard-Oxford ``labels``
    (:func:`dnnrsa.roi.atlas_region`), taken to the target grid by nearest neighbour.
    """
    import nibabel as nib

    from .roi import atlas_region, resample_mask

    masks = []
    for label in labels:
        for hemi in ("Left", "Right"):
            masks.append(resample_mask(atlas_region(f"{hemi}_{label}"), target_img))
    if not masks:
        raise ValueError("no atlas labels given for the region")
    shape = (
        nib.load(str(target_img)).shape[:3]
        if not hasattr(target_img, "shape")
        else target_img.shape[:3]
    )
    region = np.zeros(shape, bool)
    for m in masks:
        region |= m
    return region


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


# ---------------------------------------------------------------------------
# the findings table
# ---------------------------------------------------------------------------


@dataclass
class NetworkResults:
    """What the findings need of one network (one training regime).

    Attributes
    ----------
    rdms : ndarray of shape (n_layers, n_pairs)
        Layer RDMs, in layer order, over ``conditions``.
    parts : list of str
        Part of every layer.
    layers : list of str
        Layer labels.
    conditions : list of str
    labels : dict of str to ndarray
        Label sets of the conditions (``emotion`` ...), in the order of ``conditions``.
    arm_relevance : pandas.DataFrame or None
        :func:`arm_relevance_table` of the network.
    outcomes : pandas.DataFrame or None
        Per-stimulus lesion outcomes (:func:`dnnrsa.train.arm_lesion_outcomes`).
    layer_similarity : pandas.DataFrame or None
        Layer-by-layer similarity (indexed and labelled by layer).
    """

    rdms: np.ndarray
    parts: list[str]
    layers: list[str]
    conditions: list[str]
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    arm_relevance: Any = None
    outcomes: Any = None
    layer_similarity: Any = None


def _above_chance(net: NetworkResults | None, alpha: float) -> tuple[bool | None, str]:
    """Whether the network beats chance on the held-out stimuli (None: cannot tell)."""
    if net is None or net.arm_relevance is None:
        return None, "no lesion outcomes (its regime is not a label of the stimuli)"
    row = net.arm_relevance.query("measure == 'accuracy' and arm == 'none'")
    if row.empty:
        return None, "no lesion outcomes (its regime is not a label of the stimuli)"
    acc, chance, p = (float(row.iloc[0][c]) for c in ("value", "chance", "p_value"))
    text = f"accuracy {acc:.3f} (chance {chance:.3f}, binomial p = {p:.3g})"
    return bool(p < alpha), text


def _row(number, statistic, value=np.nan, p=np.nan, ci=(np.nan, np.nan), detail="", state=None):
    return {
        "finding": number,
        "statement": FINDINGS[number],
        "statistic": statistic,
        "value": value,
        "ci_low": ci[0],
        "ci_high": ci[1],
        "p_value": p,
        "_state": state,
        "detail": detail,
    }


def _needs(networks, regimes, alpha) -> tuple[str | None, list[str]]:
    """Why a finding is undecided (missing or chance-level networks), and notes."""
    notes = []
    for regime in regimes:
        net = networks.get(regime)
        if net is None:
            return f"no network trained on {regime}", notes
        ok, text = _above_chance(net, alpha)
        if ok is None:
            return f"{regime} network: {text}", notes
        if not ok:
            return (
                f"the {regime} network does not beat chance on the held-out stimuli: {text}",
                notes,
            )
        notes.append(f"{regime}: {text}")
    return None, notes


def _one_sided(row, expected_sign: int) -> float:
    """One-sided bootstrap p in the expected direction from a two-sided one."""
    p2, value = float(row["p_value"]), float(row["value"])
    if not np.isfinite(p2):
        return float("nan")
    return p2 / 2 if np.sign(value) == expected_sign else 1 - p2 / 2


def study_findings(
    networks: Mapping[str, NetworkResults],
    *,
    searchlight: Mapping[str, Any] | None = None,
    alpha: float = 0.05,
    n_permutations: int = 1000,
    n_boot: int = 1000,
    seed=0,
    emotion_label: str = "emotion",
):
    """The study's findings on one data set.

    Parameters
    ----------
    networks : mapping of regime to :class:`NetworkResults`
        One network per training regime; the regimes of the study are
        :data:`STUDY_REGIMES`.
    searchlight : mapping of regime to (scores, region), optional
        For finding 5, per network: ``scores`` of shape (n_subjects, n_voxels), each
        subject's Fisher-z searchlight score averaged over the network's cross-modal
        layers, and ``region`` (bool, n_voxels) the posterior STS / TPJ
        (:func:`sts_tpj_region`).
    alpha : float
        Family-wise error rate over the decided findings (Holm) and the level at which a
        network must beat chance.
    n_permutations, n_boot : int
        Permutations (findings 1 and 4) and bootstrap samples (finding 2).
    seed : None or int
    emotion_label : str
        Label set of finding 1.

    Returns
    -------
    pandas.DataFrame
        One row per finding: ``finding``, ``statement``, ``statistic``, ``value``,
        ``ci_low``, ``ci_high`` (95 % bootstrap intervals where the test is a bootstrap),
        ``p_value`` (the finding's own test), ``p_holm`` (Holm-adjusted over the decided
        findings), ``verdict`` (``holds``, ``does not hold`` or ``undecided``) and
        ``detail`` (the value of every part, or why the finding is undecided).
    """
    import pandas as pd

    from .inference import adjust_pvalues

    rng = np.random.default_rng(seed)
    rows = []

    # 1: category index of the emotions in the cross-modal layers
    why, notes = _needs(networks, ("emotion", "identity"), alpha)
    if why is None and any(
        emotion_label not in networks[r].labels for r in ("emotion", "identity")
    ):
        why = f"the stimuli have no {emotion_label!r} labels"
    if why:
        rows.append(
            _row(
                1, "largest category index of the emotions over the cross-modal layers", detail=why
            )
        )
    else:
        parts_results, best = {}, {}
        for regime in ("emotion", "identity"):
            net = networks[regime]
            cross = [i for i, p in enumerate(net.parts) if p == "crossmodal"]
            parts_results[regime] = part_category_index_test(
                net.rdms[cross], net.labels[emotion_label], n_permutations, rng
            )
            best[regime] = net.layers[cross[parts_results[regime]["layer"]]]
        value = min(r["index"] for r in parts_results.values())
        p = max(r["p_value"] for r in parts_results.values())
        detail = "; ".join(
            f"{k}: largest index {r['index']:.4f} ({best[k]}), mean over the layers "
            f"{np.mean(r['per_layer']):.4f}, permutation p = {r['p_value']:.4g}"
            for k, r in parts_results.items()
        )
        rows.append(
            _row(
                1,
                "largest category index of the emotions over the cross-modal layers "
                "(max-statistic permutation test over those layers; smaller of the emotion "
                "and identity networks)",
                value,
                p,
                detail=detail + "; " + "; ".join(notes),
                state=value > 0,
            )
        )

    # 2: visual minus auditory lesion drop, averaged over the regimes
    with_outcomes = {
        r: n for r, n in networks.items() if n.outcomes is not None and len(n.outcomes)
    }
    why = None if with_outcomes else "no network has lesion outcomes"
    chance_notes = []
    for regime in with_outcomes:
        ok, text = _above_chance(networks[regime], alpha)
        if not ok:
            why = f"the {regime} network does not beat chance on the held-out stimuli: {text}"
            break
        chance_notes.append(f"{regime}: {text}")
    if why:
        rows.append(_row(2, "visual minus auditory lesion drop, mean over the regimes", detail=why))
    else:
        stims = sorted(set().union(*(set(n.outcomes["stim_file"]) for n in with_outcomes.values())))
        pos = {s: i for i, s in enumerate(stims)}
        counts = rng.multinomial(len(stims), np.full(len(stims), 1 / len(stims)), size=n_boot)
        observed, boots, per = [], [], []
        for regime, net in with_outcomes.items():
            cols = np.array([pos[s] for s in net.outcomes["stim_file"]])
            diff = (net.outcomes["correct_auditory"] - net.outcomes["correct_visual"]).to_numpy(
                float
            )
            c = counts[:, cols].astype(float)
            with np.errstate(invalid="ignore", divide="ignore"):
                boots.append((c @ diff) / c.sum(axis=1))
            observed.append(diff.mean())
            per.append(f"{regime} {diff.mean():+.3f}")
        value = float(np.mean(observed))
        boot = np.nanmean(np.vstack(boots), axis=0)
        ci = tuple(np.nanquantile(boot, [0.025, 0.975]))
        rows.append(
            _row(
                2,
                "visual minus auditory lesion drop (accuracy), mean over the regimes; "
                "bootstrap over stimuli",
                value,
                bootstrap_p(boot, alternative="greater"),
                ci,
                detail="per regime: " + ", ".join(per) + "; " + "; ".join(chance_notes),
                state=value > 0,
            )
        )

    # 3: per regime, the arm that matters more
    why, notes = _needs(networks, STUDY_REGIMES, alpha)
    if why:
        rows.append(_row(3, "visual minus auditory lesion drop per regime", detail=why))
    else:
        parts_p, signed, per = [], [], []
        ci_of_min = (np.nan, np.nan)
        for regime in STUDY_REGIMES:
            table = networks[regime].arm_relevance
            row = table.query("measure == 'lesion_drop' and arm == 'visual_minus_auditory'").iloc[0]
            sign = 1 if _EXPECTED_ARM[regime] == "visual" else -1
            parts_p.append(_one_sided(row, sign))
            signed.append(sign * float(row["value"]))
            if signed[-1] == min(signed):
                ci_of_min = (float(row["ci_low"]), float(row["ci_high"]))
            per.append(
                f"{regime} {float(row['value']):+.3f} [{float(row['ci_low']):+.3f}, "
                f"{float(row['ci_high']):+.3f}] (expected {_EXPECTED_ARM[regime]})"
            )
        rows.append(
            _row(
                3,
                "visual minus auditory lesion drop per regime, signed so that the expected arm "
                "is positive (sentence reversed); smallest over the regimes",
                min(signed),
                max(parts_p),
                ci_of_min,
                detail="per regime: " + "; ".join(per),
                state=min(signed) > 0,
            )
        )

    # 4: arm layers against cross-modal layers in the emotion network
    why, notes = _needs(networks, ("emotion",), alpha)
    if why:
        rows.append(_row(4, "mean similarity of arm layers with cross-modal layers", detail=why))
    else:
        net = networks["emotion"]
        coupling = arm_coupling_test(net.rdms, net.parts, n_permutations, rng)
        if set(coupling) != {"visual", "auditory"}:
            rows.append(
                _row(
                    4,
                    "mean similarity of arm layers with cross-modal layers",
                    detail="the emotion network lacks a visual arm, an auditory arm or a cross-modal part",
                )
            )
        else:
            value = min(c["similarity"] for c in coupling.values())
            p = max(c["p_value"] for c in coupling.values())
            rows.append(
                _row(
                    4,
                    "mean Spearman similarity of the arm's layers with the cross-modal layers "
                    "(smaller of the two arms), emotion network",
                    value,
                    p,
                    detail="; ".join(
                        f"{arm}: {c['similarity']:.4f}, permutation p = {c['p_value']:.4g}"
                        for arm, c in coupling.items()
                    ),
                    state=value > 0,
                )
            )

    # 5: searchlight of the cross-modal layers in the posterior STS / TPJ
    why, notes = _needs(networks, ("emotion", "identity"), alpha)
    searchlight = searchlight or {}
    if why is None:
        missing = [r for r in ("emotion", "identity") if r not in searchlight]
        if missing:
            why = f"no searchlight maps of the cross-modal layers of the {missing[0]} network"
        else:
            n_sub = min(np.atleast_2d(searchlight[r][0]).shape[0] for r in ("emotion", "identity"))
            if 0.5**n_sub >= alpha:
                why = (
                    f"{n_sub} participants: the sign-flip test cannot give p below "
                    f"{0.5**n_sub:.3g}, not below alpha {alpha:g}"
                )
    if why:
        rows.append(_row(5, "STS/TPJ minus rest of brain, cross-modal searchlight", detail=why))
    else:
        tests = {
            r: region_sign_flip_test(searchlight[r][0], searchlight[r][1], random_state=rng)
            for r in ("emotion", "identity")
        }
        value = min(t["value"] for t in tests.values())
        p = max(t["p_value"] for t in tests.values())
        rows.append(
            _row(
                5,
                "mean searchlight score (Fisher z) of the cross-modal layers in the posterior "
                "STS/TPJ minus the rest of the brain, sign-flip test across subjects "
                "(smaller of the emotion and identity networks)",
                value,
                p,
                detail="; ".join(
                    f"{r}: {t['value']:.4f} (t = {t['t']:.2f}, {t['contrast'].size} subjects, "
                    f"p = {t['p_value']:.4g})"
                    for r, t in tests.items()
                ),
                state=value > 0,
            )
        )

    table = pd.DataFrame(rows)
    decided = table["_state"].notna()
    p_holm = adjust_pvalues(np.where(decided, table["p_value"].astype(float), np.nan), "holm")
    table.insert(table.columns.get_loc("p_value") + 1, "p_holm", p_holm)
    verdict = []
    for state, ph in zip(table["_state"], p_holm, strict=True):
        if state is None or (isinstance(state, float) and np.isnan(state)):
            verdict.append("undecided")
        else:
            verdict.append("holds" if (bool(state) and ph < alpha) else "does not hold")
    table["verdict"] = verdict
    table = table.drop(columns="_state")
    cols = [
        "finding",
        "statement",
        "statistic",
        "value",
        "ci_low",
        "ci_high",
        "p_value",
        "p_holm",
        "verdict",
        "detail",
    ]
    return table[cols]
