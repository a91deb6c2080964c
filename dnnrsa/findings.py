"""The findings of the study behind dnnrsa, each as a checked statement.

The study trained one two-armed network per classification regime (emotion,
identity, gender, sentence) on audio-visual clips and reported five findings
(:data:`FINDINGS`). This module decides each of them on any data set that has the
same ingredients: tables in, a findings table out. The statistical tests live in
:mod:`dnnrsa._findingtests` and are re-exported here.

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

from ._findingtests import (
    _bootstrap_unique_variance,  # noqa: F401  (tested through this module)
    _resampled_pairs,  # noqa: F401
    arm_coupling_test,
    arm_relevance_table,
    bootstrap_means,
    bootstrap_p,
    part_category_index_test,
    region_sign_flip_test,
    stimulus_bootstrap_counts,
)

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

# The regimes by name, taken from STUDY_REGIMES (its order: emotion, identity, gender,
# sentence); every finding names its networks with these.
_EMOTION, _IDENTITY, _GENDER, _SENTENCE = STUDY_REGIMES

#: The networks of findings 1 and 5: those trained on emotion and on identity.
_EMOTION_AND_IDENTITY = (_EMOTION, _IDENTITY)

#: The arm expected to matter more for each regime (finding 3).
_EXPECTED_ARM = {
    _EMOTION: "visual",
    _IDENTITY: "visual",
    _GENDER: "visual",
    _SENTENCE: "auditory",
}


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
    rng = np.random.default_rng(seed)
    rows = [
        _category_index_finding(
            networks, alpha=alpha, n_permutations=n_permutations, rng=rng, label=emotion_label
        ),
        _overall_arm_finding(networks, alpha=alpha, n_boot=n_boot, rng=rng),
        _per_regime_arm_finding(networks, alpha=alpha),
        _coupling_finding(networks, alpha=alpha, n_permutations=n_permutations, rng=rng),
        _searchlight_finding(networks, searchlight or {}, alpha=alpha, rng=rng),
    ]
    return _findings_table(rows, alpha)


# ---------------------------------------------------------------------------
# one function per finding: each returns the finding's row of the table (``_state``:
# whether its value lies in the stated direction, None when undecided) and draws from
# ``rng`` only when the finding is decided, in the order of the findings
# ---------------------------------------------------------------------------


def _category_index_finding(networks, *, alpha, n_permutations, rng, label) -> dict:
    """Finding 1: the category index of ``label`` in the cross-modal layers of the
    emotion and identity networks (:func:`part_category_index_test`, max statistic)."""
    regimes = _EMOTION_AND_IDENTITY
    statistic = "largest category index of the emotions over the cross-modal layers"
    why, notes = _needs(networks, regimes, alpha)
    if why is None and any(label not in networks[r].labels for r in regimes):
        why = f"the stimuli have no {label!r} labels"
    if why:
        return _row(1, statistic, detail=why)
    parts_results, best = {}, {}
    for regime in regimes:
        net = networks[regime]
        cross = [i for i, p in enumerate(net.parts) if p == "crossmodal"]
        parts_results[regime] = part_category_index_test(
            net.rdms[cross], net.labels[label], n_permutations, rng
        )
        best[regime] = net.layers[cross[parts_results[regime]["layer"]]]
    value = min(r["index"] for r in parts_results.values())
    p = max(r["p_value"] for r in parts_results.values())
    detail = "; ".join(
        f"{k}: largest index {r['index']:.4f} ({best[k]}), mean over the layers "
        f"{np.mean(r['per_layer']):.4f}, permutation p = {r['p_value']:.4g}"
        for k, r in parts_results.items()
    )
    return _row(
        1,
        statistic + " (max-statistic permutation test over those layers; smaller of the "
        "emotion and identity networks)",
        value,
        p,
        detail=detail + "; " + "; ".join(notes),
        state=value > 0,
    )


def _overall_arm_finding(networks, *, alpha, n_boot, rng) -> dict:
    """Finding 2: the visual minus auditory lesion drop, averaged over every network with
    lesion outcomes, with one bootstrap over the union of their stimuli
    (:func:`stimulus_bootstrap_counts`, :func:`bootstrap_means`)."""
    statistic = "visual minus auditory lesion drop, mean over the regimes"
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
        return _row(2, statistic, detail=why)
    stims = sorted(set().union(*(set(n.outcomes["stim_file"]) for n in with_outcomes.values())))
    pos = {s: i for i, s in enumerate(stims)}
    counts = stimulus_bootstrap_counts(len(stims), n_boot, rng)
    observed, boots, per = [], [], []
    for regime, net in with_outcomes.items():
        cols = np.array([pos[s] for s in net.outcomes["stim_file"]])
        diff = (net.outcomes["correct_auditory"] - net.outcomes["correct_visual"]).to_numpy(float)
        boots.append(bootstrap_means(counts[:, cols], diff))
        observed.append(diff.mean())
        per.append(f"{regime} {diff.mean():+.3f}")
    value = float(np.mean(observed))
    boot = np.nanmean(np.vstack(boots), axis=0)
    return _row(
        2,
        "visual minus auditory lesion drop (accuracy), mean over the regimes; "
        "bootstrap over stimuli",
        value,
        bootstrap_p(boot, alternative="greater"),
        tuple(np.nanquantile(boot, [0.025, 0.975])),
        detail="per regime: " + ", ".join(per) + "; " + "; ".join(chance_notes),
        state=value > 0,
    )


def _per_regime_arm_finding(networks, *, alpha) -> dict:
    """Finding 3: per regime of :data:`STUDY_REGIMES`, the expected arm's lesion drop
    minus the other's, from each network's :func:`arm_relevance_table` (smallest over
    the regimes; intersection-union test)."""
    why, _ = _needs(networks, STUDY_REGIMES, alpha)
    if why:
        return _row(3, "visual minus auditory lesion drop per regime", detail=why)
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
    return _row(
        3,
        "visual minus auditory lesion drop per regime, signed so that the expected arm "
        "is positive (sentence reversed); smallest over the regimes",
        min(signed),
        max(parts_p),
        ci_of_min,
        detail="per regime: " + "; ".join(per),
        state=min(signed) > 0,
    )


def _coupling_finding(networks, *, alpha, n_permutations, rng) -> dict:
    """Finding 4: the layers of each arm against the cross-modal layers in the emotion
    network (:func:`arm_coupling_test`; smaller of the two arms)."""
    statistic = "mean similarity of arm layers with cross-modal layers"
    why, _ = _needs(networks, (_EMOTION,), alpha)
    if why:
        return _row(4, statistic, detail=why)
    net = networks[_EMOTION]
    coupling = arm_coupling_test(net.rdms, net.parts, n_permutations, rng)
    if set(coupling) != {"visual", "auditory"}:
        return _row(
            4,
            statistic,
            detail="the emotion network lacks a visual arm, an auditory arm or a cross-modal part",
        )
    value = min(c["similarity"] for c in coupling.values())
    p = max(c["p_value"] for c in coupling.values())
    return _row(
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


def _searchlight_finding(networks, searchlight, *, alpha, rng) -> dict:
    """Finding 5: the posterior STS / TPJ against the rest of the brain in the
    searchlight maps of the emotion and identity networks' cross-modal layers
    (:func:`region_sign_flip_test`; smaller of the two networks)."""
    regimes = _EMOTION_AND_IDENTITY
    why, _ = _needs(networks, regimes, alpha)
    if why is None:
        missing = [r for r in regimes if r not in searchlight]
        if missing:
            why = f"no searchlight maps of the cross-modal layers of the {missing[0]} network"
        else:
            n_sub = min(np.atleast_2d(searchlight[r][0]).shape[0] for r in regimes)
            if 0.5**n_sub >= alpha:
                why = (
                    f"{n_sub} participants: the sign-flip test cannot give p below "
                    f"{0.5**n_sub:.3g}, not below alpha {alpha:g}"
                )
    if why:
        return _row(5, "STS/TPJ minus rest of brain, cross-modal searchlight", detail=why)
    tests = {
        r: region_sign_flip_test(searchlight[r][0], searchlight[r][1], random_state=rng)
        for r in regimes
    }
    value = min(t["value"] for t in tests.values())
    p = max(t["p_value"] for t in tests.values())
    return _row(
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


def _findings_table(rows: list[dict], alpha: float):
    """The findings table from the findings' rows: Holm over the decided findings and
    the verdicts (see :func:`study_findings`)."""
    import pandas as pd

    from ._pvalues import adjust_pvalues

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
