"""Reading the findings' inputs from a run's files (dnnrsa._findingfiles)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from dnnrsa._findingfiles import read_network_results, read_searchlight_scores
from dnnrsa.rdm import write_rdm_tsv
from dnnrsa.stats import fisher_z


def test_network_results_from_the_layer_tables_and_their_sidecars(tmp_path):
    rng = np.random.default_rng(0)
    conditions = ["c0", "c1", "c2", "c3"]
    files = []
    for i, part in enumerate(("visual", "auditory", "crossmodal")):
        path = tmp_path / f"layer{i}_rdm.tsv"
        write_rdm_tsv(path, rng.random(6), conditions)
        path.with_suffix(".json").write_text(json.dumps({"Part": part, "LayerName": f"net.l{i}"}))
        files.append(path)
    stim = pd.DataFrame(
        {
            "stim_file": ["s3", "s1", "s0", "s2", "s0b"],
            "condition": ["c3", "c1", "c0", "c2", "c0"],
            "emotion": ["b", "a", "a", "b", "z"],  # the first row of a condition labels it
            "partial": [None, "x", "y", "x", "y"],  # not every condition labelled: no set
        }
    )
    relevance = tmp_path / "relevance.tsv"
    pd.DataFrame({"measure": ["accuracy"], "arm": ["none"], "value": [0.5]}).to_csv(
        relevance, sep="\t", index=False
    )
    net = read_network_results(files, stim, relevance_file=relevance, outcomes_file="")
    assert net.parts == ["visual", "auditory", "crossmodal"]
    assert net.layers == ["net.l0", "net.l1", "net.l2"] and net.conditions == conditions
    np.testing.assert_array_equal(net.labels["emotion"], ["a", "a", "b", "b"])
    assert set(net.labels) == {"stim_file", "emotion"}
    assert net.arm_relevance["value"].tolist() == [0.5] and net.outcomes is None
    assert net.rdms.shape == (3, 6)
    write_rdm_tsv(files[2], rng.random(6), ["c0", "c1", "c3", "c2"])
    with pytest.raises(ValueError, match="conditions differ"):
        read_network_results(files, stim)


def test_searchlight_scores_are_the_mean_fisher_z_over_layers(tmp_path):
    rng = np.random.default_rng(1)
    affine = np.array([[8.0, 0, 0, -90], [0, 8, 0, -126], [0, 0, 8, -72], [0, 0, 0, 1]])
    shape = (23, 27, 23)
    subjects = []
    for s in range(3):
        layers = []
        for k in range(2):
            data = np.tanh(0.3 * rng.normal(size=shape)).astype(np.float32)
            data[0, 0, 0] = np.nan if s == 1 else data[0, 0, 0]
            path = tmp_path / f"s{s}_l{k}.nii.gz"
            nib.Nifti1Image(data, affine).to_filename(path)
            layers.append(str(path))
        subjects.append(layers)
    regions: dict = {}
    scores, region = read_searchlight_scores(subjects, regions=regions)
    maps = np.stack(
        [
            np.mean([fisher_z(np.asarray(nib.load(f).dataobj, np.float64)) for f in s], 0)
            for s in subjects
        ]
    )
    scored = np.isfinite(maps).all(axis=0)
    assert not scored[0, 0, 0] and scored.sum() == scored.size - 1
    np.testing.assert_array_equal(scores, maps[:, scored])
    (cached,) = regions.values()  # the region of the grid, kept for the next network
    np.testing.assert_array_equal(region, cached[scored])
    raw, _ = read_searchlight_scores(subjects, fisher_z=False, regions=regions)
    assert not np.allclose(raw, scores)
