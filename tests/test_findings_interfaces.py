"""The findings interfaces, run alone in a node, write what their core functions return."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

pe = pytest.importorskip("nipype.pipeline.engine")

from dnnrsa.findings import (  # noqa: E402
    NetworkResults,
    arm_relevance_table,
    sts_tpj_region,
    study_findings,
)
from dnnrsa.modelbank import ModelBank  # noqa: E402
from dnnrsa.rdm import compute_rdm, write_rdm_tsv  # noqa: E402
from dnnrsa.stats import fisher_z  # noqa: E402

PARTS = ["visual", "visual", "auditory", "auditory", "crossmodal", "crossmodal", "crossmodal"]
N_COND = 24
EMOTION = np.repeat([f"e{k}" for k in range(6)], 4)


def _run(interface, tmp_path, name="node"):
    return pe.Node(interface, name=name, base_dir=str(tmp_path / "work")).run().outputs


def _rdms(rng, emotional: bool):
    code = rng.normal(size=(6, 10))[np.repeat(np.arange(6), 4)] * (2.0 if emotional else 0.0)
    face, voice = rng.normal(size=(N_COND, 10)), rng.normal(size=(N_COND, 10))
    feats = [face, face + 0.3 * rng.normal(size=face.shape), voice, voice * 1.1]
    fused = np.hstack([face, voice])
    feats += [fused + np.hstack([code, code]) for _ in range(3)]
    return np.vstack([np.asarray(compute_rdm(f, metric="correlation")) for f in feats])


def _outcomes(rng, drops):
    n = N_COND
    correct = (rng.random(n) < 0.95).astype(int)
    return pd.DataFrame(
        {
            "stim_file": [f"s{i:02d}.mp4" for i in range(n)],
            "target": EMOTION,
            "predicted_none": EMOTION,
            "correct_none": correct,
            "predicted_visual": EMOTION,
            "correct_visual": correct * (rng.random(n) > drops[0]),
            "predicted_auditory": EMOTION,
            "correct_auditory": correct * (rng.random(n) > drops[1]),
        }
    )


def test_arm_relevance_node_equals_core(tmp_path):
    rng = np.random.default_rng(0)
    rdms = _rdms(rng, True)
    bank = ModelBank(
        rdms=rdms,
        model_labels=["net"] * len(PARTS),
        layer_labels=[f"layer{i}" for i in range(len(PARTS))],
        layer_names=[f"net.layer{i}" for i in range(len(PARTS))],
        parts=PARTS,
        conditions=[f"s{i:02d}.mp4" for i in range(N_COND)],
        metrics=["correlation"] * len(PARTS),
    )
    bank.save(tmp_path / "bank.npz")
    outcomes = _outcomes(rng, (0.6, 0.1))
    outcomes.to_csv(tmp_path / "outcomes.tsv", sep="\t", index=False)
    from dnnrsa.interfaces.dnn import ArmRelevance

    out = _run(
        ArmRelevance(
            bank_file=str(tmp_path / "bank.npz"),
            outcomes_file=str(tmp_path / "outcomes.tsv"),
            n_boot=200,
            seed=3,
        ),
        tmp_path,
    )
    got = pd.read_csv(out.relevance_file, sep="\t")
    outcomes.attrs["n_classes"] = 6
    core = arm_relevance_table(
        outcomes, rdms, PARTS, layers=list(bank.layer_labels), n_boot=200, seed=3
    )
    assert list(got["measure"]) == list(core["measure"])
    assert list(got["arm"]) == list(core["arm"])
    for col in ("value", "ci_low", "ci_high", "p_value", "chance"):
        np.testing.assert_allclose(got[col], core[col], rtol=1e-5, atol=1e-12, err_msg=col)
    assert got.loc[got["measure"] == "unique_variance", "layer"].unique().tolist() == ["layer5"]


def test_study_findings_node_equals_core(tmp_path):
    rng = np.random.default_rng(1)
    conditions = [f"s{i:02d}.mp4" for i in range(N_COND)]
    stim = pd.DataFrame({"stim_file": conditions, "condition": conditions, "emotion": EMOTION})
    stim.to_csv(tmp_path / "stimuli.tsv", sep="\t", index=False)
    # a coarse MNI grid, so that the atlas region of finding 5 has voxels on it
    affine = np.array([[8.0, 0, 0, -90], [0, 8, 0, -126], [0, 0, 8, -72], [0, 0, 0, 1]])
    shape = (23, 27, 23)
    region = sts_tpj_region(nib.Nifti1Image(np.zeros(shape, np.uint8), affine))
    assert region.sum() > 20
    networks, files, rel_files, out_files, maps = {}, [], [], [], {}
    drops = {
        "emotion": (0.6, 0.2),
        "identity": (0.7, 0.0),
        "gender": (0.5, 0.0),
        "sentence": (0.0, 0.5),
    }
    for regime in ("emotion", "identity", "gender", "sentence"):
        rdms = _rdms(rng, regime in ("emotion", "identity"))
        paths = []
        for i, (rdm, part) in enumerate(zip(rdms, PARTS, strict=True)):
            path = tmp_path / f"{regime}_layer{i}_rdm.tsv"
            write_rdm_tsv(path, rdm, conditions)
            path.with_suffix(".json").write_text(
                json.dumps({"Part": part, "LayerName": f"layer{i}"})
            )
            paths.append(str(path))
        files.append(paths)
        outcomes = _outcomes(rng, drops[regime])
        outcomes.to_csv(tmp_path / f"{regime}_outcomes.tsv", sep="\t", index=False)
        outcomes.attrs["n_classes"] = 6
        relevance = arm_relevance_table(outcomes, rdms, PARTS, n_boot=200, seed=0)
        relevance.to_csv(tmp_path / f"{regime}_relevance.tsv", sep="\t", index=False, na_rep="n/a")
        rel_files.append(str(tmp_path / f"{regime}_relevance.tsv"))
        out_files.append(str(tmp_path / f"{regime}_outcomes.tsv"))
        networks[regime] = NetworkResults(
            rdms=rdms,
            parts=PARTS,
            layers=[f"layer{i}" for i in range(len(PARTS))],
            conditions=conditions,
            labels={"emotion": EMOTION},
            arm_relevance=pd.read_csv(tmp_path / f"{regime}_relevance.tsv", sep="\t"),
            outcomes=outcomes,
        )
        if regime in ("emotion", "identity"):
            subjects = []
            for s in range(6):
                layer_maps = []
                for k in range(3):
                    data = 0.05 * rng.normal(size=shape) + 0.3 * region
                    path = tmp_path / f"{regime}_sub{s}_cross{k}.nii.gz"
                    nib.Nifti1Image(data.astype(np.float32), affine).to_filename(path)
                    layer_maps.append(str(path))
                subjects.append(layer_maps)
            maps[regime] = subjects
    from dnnrsa.interfaces.dnn import StudyFindings

    out = _run(
        StudyFindings(
            networks=list(networks),
            rdm_files=files,
            stimulus_table=str(tmp_path / "stimuli.tsv"),
            relevance_files=rel_files,
            outcome_files=out_files,
            searchlight_files=maps,
            n_permutations=200,
            n_boot=300,
            seed=5,
        ),
        tmp_path,
    )
    # the node writes into its own folder; its sink writes the derivative and sidecar
    assert Path(out.out_file).parent == tmp_path / "work" / "node"
    from dnnrsa.interfaces.bids import WriteDerivative

    _run(
        WriteDerivative(
            in_file=out.out_file, out_path=str(tmp_path / "findings.tsv"), sidecar=out.out_sidecar
        ),
        tmp_path,
        name="sink",
    )
    assert (tmp_path / "findings.tsv").read_bytes() == Path(out.out_file).read_bytes()
    got = pd.read_csv(tmp_path / "findings.tsv", sep="\t")
    searchlight = {}
    for regime, subjects in maps.items():
        scores = np.stack(
            [
                np.mean(
                    [fisher_z(np.asarray(nib.load(f).dataobj, np.float64)) for f in layer_maps], 0
                )
                for layer_maps in subjects
            ]
        )
        scored = np.isfinite(scores).all(axis=0)
        searchlight[regime] = (scores[:, scored], region[scored])
    core = study_findings(networks, searchlight=searchlight, n_permutations=200, n_boot=300, seed=5)
    assert list(got["verdict"]) == list(core["verdict"])
    for col in ("value", "ci_low", "ci_high", "p_value", "p_holm"):
        np.testing.assert_allclose(got[col], core[col], rtol=1e-5, err_msg=col)
    # the planted emotion code and STS/TPJ effect are found through the files
    assert got.set_index("finding").loc[[1, 5], "verdict"].tolist() == ["holds", "holds"]
    meta = json.loads((tmp_path / "findings.json").read_text())
    assert meta["Networks"] == list(networks) and "Holm" in meta["MultipleComparisons"]
    assert list(meta) == [*out.out_sidecar, "SoftwareVersions"]
