"""The study's findings from the files a BIDS App run wrote.

:func:`study_findings_from_files` reads what :func:`dnnrsa.findings.study_findings`
needs from the derivatives and calls it: each network's layer RDMs
(:func:`read_network_results`, with their sidecars' parts and layer names, the label
sets of the stimulus table, the arm relevance table and the lesion outcomes, whose
class count :func:`dnnrsa.lesions.read_lesion_outcomes` takes from the network's
checkpoint) and the participants' searchlight maps of the cross-modal layers
(:func:`read_searchlight_scores`, against the STS/TPJ region of their grid). The
findings interface of the BIDS App calls it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from .findings import NetworkResults, sts_tpj_region, study_findings

__all__ = ["read_network_results", "read_searchlight_scores", "study_findings_from_files"]


def read_network_results(
    rdm_files: Sequence, stimulus_table, *, relevance_file=None, outcomes_file=None
) -> NetworkResults:
    """One network's results from its files.

    Parameters
    ----------
    rdm_files : sequence of path-like
        The network's layer RDM tables, in layer order, each with a JSON sidecar
        (``Part``, ``LayerName``); every table over the same conditions.
    stimulus_table : pandas.DataFrame
        A ``condition`` column and label columns; every column with a label for every
        condition of the RDMs is a label set.
    relevance_file, outcomes_file : path-like, optional
        The network's arm relevance table and per-stimulus lesion outcomes (None or
        ``""``: none).

    Returns
    -------
    NetworkResults
    """
    import pandas as pd

    from .bidsnames import read_json, sidecar_path
    from .lesions import read_lesion_outcomes
    from .rdm import read_rdm_tsv

    vectors, conditions, parts, layers = [], None, [], []
    for f in rdm_files:
        vec, labels = read_rdm_tsv(f)
        if conditions is None:
            conditions = labels
        elif labels != conditions:
            raise ValueError(f"{f}: conditions differ from the network's other layers")
        meta = read_json(sidecar_path(f))
        vectors.append(vec)
        parts.append(str(meta.get("Part", "")))
        layers.append(str(meta.get("LayerName", os.path.basename(f))))
    by_cond = stimulus_table.drop_duplicates("condition").set_index("condition").reindex(conditions)
    label_sets = {c: by_cond[c].to_numpy() for c in by_cond.columns if by_cond[c].notna().all()}
    return NetworkResults(
        rdms=np.vstack(vectors),
        parts=parts,
        layers=layers,
        conditions=list(conditions),
        labels=label_sets,
        arm_relevance=pd.read_csv(relevance_file, sep="\t") if relevance_file else None,
        outcomes=read_lesion_outcomes(outcomes_file) if outcomes_file else None,
    )


def read_searchlight_scores(
    subjects: Sequence[Sequence], *, fisher_z: bool = True, regions: dict | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Each participant's mean searchlight score over a network's cross-modal layers,
    and the STS/TPJ region, at the voxels scored in every participant.

    Parameters
    ----------
    subjects : sequence of sequences of path-like
        Per participant, the maps of the layers (one grid for all).
    fisher_z : bool
        Fisher z transform the scores before the mean over the layers.
    regions : dict, optional
        A cache of :func:`dnnrsa.findings.sts_tpj_region` by grid (shape and affine),
        shared by the calls of one study.

    Returns
    -------
    scores : ndarray of shape (n_subjects, n_voxels)
    region : ndarray of shape (n_voxels,), bool
    """
    import nibabel as nib

    from ._scores import fisher_z as to_z

    stacks = []
    for layer_files in subjects:
        maps = [np.asarray(nib.load(f).dataobj, dtype=np.float64) for f in layer_files]
        data = np.stack(maps)
        if fisher_z:
            data = to_z(data)
        stacks.append(data.mean(axis=0))
    scores = np.stack(stacks)
    scored = np.isfinite(scores).all(axis=0)
    grid = nib.load(subjects[0][0])
    key = (grid.shape[:3], grid.affine.tobytes())
    regions = {} if regions is None else regions
    if key not in regions:  # the atlas region once per grid
        regions[key] = sts_tpj_region(grid)
    return scores[:, scored], regions[key][scored]


def study_findings_from_files(
    networks: Sequence[str],
    rdm_files: Sequence[Sequence],
    stimulus_table,
    *,
    relevance_files: Sequence | None = None,
    outcome_files: Sequence | None = None,
    searchlight_files: Mapping[str, Sequence[Sequence]] | None = None,
    fisher_z: bool = True,
    alpha: float = 0.05,
    n_permutations: int = 1000,
    n_boot: int = 1000,
    seed=0,
):
    """The findings table (:func:`dnnrsa.findings.study_findings`) from the files.

    Parameters
    ----------
    networks : sequence of str
        The regime (model label) of each network.
    rdm_files : sequence of sequences of path-like
        Each network's layer RDM tables (:func:`read_network_results`).
    stimulus_table : path-like
        The stimulus table (TSV: ``condition`` and label columns).
    relevance_files, outcome_files : sequences of path-like, optional
        Each network's arm relevance table and lesion outcomes, or ``""``.
    searchlight_files : mapping of str to sequences of sequences of path-like, optional
        Per network: per participant, the maps of its cross-modal layers
        (:func:`read_searchlight_scores`).
    fisher_z : bool
        Fisher z transform the searchlight scores first.
    alpha, n_permutations, n_boot, seed
        As for :func:`dnnrsa.findings.study_findings`.

    Returns
    -------
    pandas.DataFrame
    """
    import pandas as pd

    stim = pd.read_csv(stimulus_table, sep="\t", dtype=str)
    relevance = list(relevance_files or []) or [""] * len(networks)
    outcomes = list(outcome_files or []) or [""] * len(networks)
    results = {
        regime: read_network_results(files, stim, relevance_file=rel, outcomes_file=out)
        for regime, files, rel, out in zip(networks, rdm_files, relevance, outcomes, strict=True)
    }
    regions: dict = {}
    searchlight = {
        regime: read_searchlight_scores(subjects, fisher_z=fisher_z, regions=regions)
        for regime, subjects in (searchlight_files or {}).items()
    }
    return study_findings(
        results,
        searchlight=searchlight,
        alpha=alpha,
        n_permutations=n_permutations,
        n_boot=n_boot,
        seed=seed,
    )
