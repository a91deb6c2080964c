"""Every nipype interface, run alone in a node, writes what its core function returns."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

pe = pytest.importorskip("nipype.pipeline.engine")

from dnnrsa.modelbank import ModelBank, layer_bank, merge_banks, user_model_bank  # noqa: E402
from dnnrsa.rdm import read_rdm_tsv, write_rdm_tsv  # noqa: E402


def _run(interface, tmp_path, name="node"):
    return pe.Node(interface, name=name, base_dir=str(tmp_path / "work")).run().outputs


def _data(path):
    return np.asarray(nib.load(path).dataobj)


def _same_image(path, img):
    loaded = nib.load(path)
    np.testing.assert_array_equal(np.asarray(loaded.dataobj), np.asarray(img.dataobj))
    np.testing.assert_allclose(loaded.affine, img.affine, rtol=0, atol=1e-12)


def _bank(tmp_path, n_cond=6, parts=("visual", "auditory", "crossmodal"), seed=0):
    rng = np.random.default_rng(seed)
    n = len(parts)
    bank = ModelBank(
        rdms=rng.random((n, n_cond * (n_cond - 1) // 2)),
        model_labels=["net"] * n,
        layer_labels=[f"layer{i}" for i in range(n)],
        layer_names=[f"net.layer{i}" for i in range(n)],
        parts=list(parts),
        conditions=[f"c{i}" for i in range(n_cond)],
        metrics=["correlation"] * n,
    )
    path = tmp_path / f"bank{seed}.npz"
    bank.save(path)
    return bank, path


def _subject_imgs(tmp_path, n_sub, prefix, effect=0.3, seed=0, shape=(5, 5, 4)):
    rng = np.random.default_rng(seed)
    paths = []
    for s in range(n_sub):
        data = np.tanh(effect + 0.2 * rng.normal(size=shape)).astype(np.float32)
        data[0, 0, 0] = np.nan
        path = tmp_path / f"{prefix}{s}.nii.gz"
        nib.Nifti1Image(data, np.diag([4.0, 4.0, 4.0, 1.0])).to_filename(path)
        paths.append(str(path))
    return paths


# -- bids.py --------------------------------------------------------------------------


def test_write_derivative(tmp_path):
    from dnnrsa.interfaces.bids import WriteDerivative

    src = tmp_path / "in.tsv"
    src.write_text("a\tb\n1\t2\n")
    dst = tmp_path / "out" / "sub-01_desc-x_stats.tsv"
    out = _run(WriteDerivative(in_file=str(src), out_path=str(dst), sidecar={"K": 1}), tmp_path)
    assert out.out_file == str(dst) and dst.read_bytes() == src.read_bytes()
    side = json.loads(dst.with_name("sub-01_desc-x_stats.json").read_text())
    assert side["K"] == 1 and "numpy" in side["SoftwareVersions"]


def test_write_derivative_gzips_an_uncompressed_nifti_as_nibabel_would(tmp_path):
    """The patterns leave the GLM node uncompressed; their derivative (.nii.gz) has the
    bytes of the same image saved as .nii.gz (atomic_save_nifti, nibabel's to_filename)."""
    from dnnrsa._io import atomic_save_nifti
    from dnnrsa.interfaces.bids import WriteDerivative

    data = np.random.default_rng(2).normal(size=(7, 6, 5, 9))
    data[0, 0, 0, 0] = np.nan
    img = nib.Nifti1Image(data, np.diag([3.0, 3.0, 3.0, 1.0]))
    src = atomic_save_nifti(img, tmp_path / "patterns.nii")
    expected = atomic_save_nifti(img, tmp_path / "expected.nii.gz")
    img.to_filename(tmp_path / "nibabel.nii.gz")
    dst = tmp_path / "out" / "sub-01_desc-lsa_stat-effect_statmap.nii.gz"
    out = _run(WriteDerivative(in_file=str(src), out_path=str(dst)), tmp_path)
    assert out.out_file == str(dst)
    assert dst.read_bytes() == expected.read_bytes()
    assert dst.read_bytes() == (tmp_path / "nibabel.nii.gz").read_bytes()
    np.testing.assert_array_equal(_data(dst), data)
    # an uncompressed destination, or a gzipped source, is copied as it is
    plain = tmp_path / "out" / "copy.nii"
    _run(WriteDerivative(in_file=str(src), out_path=str(plain)), tmp_path)
    assert plain.read_bytes() == src.read_bytes()
    again = tmp_path / "out" / "again.nii.gz"
    _run(WriteDerivative(in_file=str(expected), out_path=str(again)), tmp_path)
    assert again.read_bytes() == expected.read_bytes()


def test_write_derivatives_writes_each_file_as_write_derivative_does(tmp_path):
    """The one sink of a step's several files (the group level's ROI tables and winner
    maps): each destination gets the bytes, and the sidecar, that WriteDerivative
    writes for that file alone (an uncompressed NIfTI gzipped, a table copied); a
    list of files that does not match the destinations is refused, naming them."""
    from dnnrsa._io import atomic_save_nifti
    from dnnrsa.interfaces.bids import WriteDerivative, WriteDerivatives

    table = tmp_path / "table.tsv"
    table.write_text("a\tb\n1\t2\n")
    image = atomic_save_nifti(
        nib.Nifti1Image(np.arange(24.0).reshape(2, 3, 4), np.eye(4)), tmp_path / "map.nii"
    )
    names = ["task-x_desc-a_stats.tsv", "task-x_desc-b_statmap.nii.gz"]
    out = _run(
        WriteDerivatives(
            in_files=[str(table), str(image)],
            out_paths=[str(tmp_path / "many" / n) for n in names],
            sidecar={"K": 1},
        ),
        tmp_path,
    )
    assert out.out_files == [str(tmp_path / "many" / n) for n in names]
    for src, name in zip([table, image], names, strict=True):
        _run(
            WriteDerivative(
                in_file=str(src), out_path=str(tmp_path / "one" / name), sidecar={"K": 1}
            ),
            tmp_path,
        )
        for f in (name, name.replace(".tsv", ".json").replace(".nii.gz", ".json")):
            assert (tmp_path / "many" / f).read_bytes() == (tmp_path / "one" / f).read_bytes(), f
    with pytest.raises(Exception, match=r"1 file\(s\) for 2 destination\(s\): task-x_desc-a"):
        _run(
            WriteDerivatives(
                in_files=[str(table)], out_paths=[str(tmp_path / "bad" / n) for n in names]
            ),
            tmp_path,
        )
    assert not (tmp_path / "bad").exists()


def test_write_layer_rdms(tmp_path):
    from dnnrsa.interfaces.bids import WriteLayerRDMs

    bank, path = _bank(tmp_path)
    out = _run(
        WriteLayerRDMs(bank_file=str(path), output_dir=str(tmp_path / "out"), task="emo"),
        tmp_path,
    )
    assert len(out.out_files) == bank.n_models
    for i, f in enumerate(out.out_files):
        assert f.endswith(f"task-emo_{bank.entity_stem(i)}_rdm.tsv")
        expected = tmp_path / f"expected{i}.tsv"
        write_rdm_tsv(expected, bank.rdms[i], bank.conditions)
        assert open(f).read() == expected.read_text()
        vec, labels = read_rdm_tsv(f)
        np.testing.assert_allclose(vec, bank.rdms[i], rtol=0, atol=1e-12)
        side = json.loads(open(f.replace("_rdm.tsv", "_rdm.json")).read())
        assert side["LayerName"] == bank.layer_names[i] and side["Part"] == bank.parts[i]


def test_write_subject_maps(tmp_path):
    from dnnrsa.interfaces.bids import WriteSubjectMaps

    bank, path = _bank(tmp_path)
    maps = np.random.default_rng(1).normal(size=(4, 4, 3, bank.n_models)).astype(np.float32)
    maps_file = tmp_path / "maps.nii.gz"
    nib.Nifti1Image(maps, np.eye(4)).to_filename(maps_file)
    out = _run(
        WriteSubjectMaps(
            maps_file=str(maps_file),
            bank_file=str(path),
            output_dir=str(tmp_path / "out"),
            subject="01",
            task="emo",
            space="MNI",
            comparator="kendall_tau_a",
            metric="correlation",
            radius_mm=6.0,
        ),
        tmp_path,
    )
    for i, f in enumerate(out.out_files):
        assert f.endswith(
            f"sub-01_task-emo_space-MNI_{bank.entity_stem(i)}_stat-kendalltaua_statmap.nii.gz"
        )
        np.testing.assert_array_equal(_data(f), maps[..., i])


# -- glm.py ---------------------------------------------------------------------------


@pytest.mark.parametrize("noise_model", ["ar1", "ols"])
def test_estimate_patterns(tmp_path, noise_model):
    from dnnrsa.glm import estimate_patterns
    from dnnrsa.interfaces.glm import EstimatePatterns

    from .bids_fixtures import make_small_bids

    ds = make_small_bids(
        tmp_path / "bids", n_subjects=1, shape=(5, 5, 5), write_stimuli=False, per_category=2
    )
    func = ds.root / "sub-01" / "func"
    bold = sorted(str(p) for p in func.glob("*_bold.nii.gz"))
    events = sorted(str(p) for p in func.glob("*_events.tsv"))
    node = EstimatePatterns(bold_files=bold, events_files=events, t_r=2.0)
    if noise_model != "ar1":  # ar1 is the default
        node.inputs.noise_model = noise_model
    out = _run(node, tmp_path)
    direct = estimate_patterns(
        bold, events, t_r=2.0, method="lsa", noise_model=noise_model, random_state=0
    )
    # uncompressed, for the nodes that read it (write_patterns gzips the derivative)
    assert out.patterns_file.endswith("patterns.nii")
    _same_image(out.patterns_file, direct.to_img())
    _same_image(out.mask_file, direct.mask_img)
    table = pd.read_csv(out.conditions_file, sep="\t", dtype={"condition": str})
    assert table["condition"].tolist() == [str(c) for c in direct.conditions]
    assert table["run"].tolist() == list(np.asarray(direct.runs))


# -- dnn.py ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from dnnrsa.stimuli import write_clip

    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(11)
    sr = 22050
    t = np.arange(int(1.2 * sr)) / sr
    paths = []
    for k in range(4):
        base = rng.integers(40, 200, size=(1, 12, 16, 3))
        frames = np.repeat(np.kron(base, np.ones((1, 6, 6, 1))), 10, axis=0).astype(np.uint8)
        audio = 0.3 * np.sin(2 * np.pi * (200 + 150 * k) * t)
        paths.append(str(write_clip(folder / f"clip{k}.mp4", frames, 25, audio, sr)))
    return paths


def test_extract_features(clips, tmp_path):
    from dnnrsa.features import extract_features
    from dnnrsa.interfaces.dnn import ExtractFeatures

    layers = ["visual_pool1", "auditory_pool1", "crossmodal_output"]
    out = _run(ExtractFeatures(stim_files=clips, layers=layers, device="cpu"), tmp_path)
    direct = extract_features(clips, "crosschannel", layers=layers, device="cpu", seed=0)
    with np.load(out.features_file) as data:
        assert [str(n) for n in data["layer_names"]] == direct.layer_names
        assert [str(p) for p in data["parts"]] == [direct.parts[n] for n in direct.layer_names]
        for i, name in enumerate(direct.layer_names):
            np.testing.assert_array_equal(data[f"layer{i:03d}"], direct.activations[name])


def test_layer_rdms(tmp_path):
    from dnnrsa._io import atomic_save_npz
    from dnnrsa.interfaces.dnn import LayerRDMs

    rng = np.random.default_rng(2)
    acts = {"net.a": rng.normal(size=(6, 7)), "net.b": rng.normal(size=(6, 3, 2))}
    features = tmp_path / "features.npz"
    atomic_save_npz(
        features,
        layer_names=np.array(list(acts)),
        parts=np.array(["visual", "crossmodal"]),
        layer000=acts["net.a"],
        layer001=acts["net.b"],
    )
    stim = [f"s{i}" for i in range(6)]
    conditions = ["b", "a", "c", "b", "a", "c"]
    out = _run(
        LayerRDMs(
            features_file=str(features),
            stim_labels=stim,
            conditions=conditions,
            model_label="emo",
            metric="euclidean",
        ),
        tmp_path,
    )
    node_bank = ModelBank.load(out.bank_file)
    direct = layer_bank(
        acts,
        parts=["visual", "crossmodal"],
        model_label="emo",
        conditions=conditions,
        metric="euclidean",
    )
    _assert_same_bank(node_bank, direct)


def _assert_same_bank(a, b):
    np.testing.assert_array_equal(a.rdms, b.rdms)
    for name in ("model_labels", "layer_labels", "layer_names", "parts", "conditions", "metrics"):
        assert getattr(a, name) == getattr(b, name), name


def test_user_model_rdms(tmp_path):
    from dnnrsa.interfaces.dnn import UserModelRDMs

    rng = np.random.default_rng(3)
    labels = ["w", "x", "y", "z"]
    files, vecs = [], []
    for k in range(2):
        vecs.append(rng.random(6))
        files.append(str(tmp_path / f"m{k}.tsv"))
        write_rdm_tsv(files[-1], vecs[-1], labels)
    conditions = ["z", "x", "y", "w"]
    out = _run(
        UserModelRDMs(names=["my model", "other"], rdm_files=files, conditions=conditions),
        tmp_path,
    )
    read = [read_rdm_tsv(f) for f in files]
    direct = user_model_bank(
        ["my model", "other"], [r[0] for r in read], [r[1] for r in read], conditions
    )
    _assert_same_bank(ModelBank.load(out.bank_file), direct)


def test_merge_banks(tmp_path):
    from dnnrsa.interfaces.dnn import MergeBanks

    (a, pa), (b, pb) = _bank(tmp_path, seed=1), _bank(tmp_path, parts=("model",), seed=2)
    out = _run(MergeBanks(bank_files=[str(pa), str(pb)]), tmp_path)
    _assert_same_bank(ModelBank.load(out.bank_file), merge_banks([a, b]))


def test_dnn_analyses(tmp_path):
    from dnnrsa.analysis import dnn_analysis_tables
    from dnnrsa.interfaces.dnn import DNNAnalyses

    bank, path = _bank(tmp_path, parts=("visual", "auditory", "crossmodal", "crossmodal"))
    table = pd.DataFrame(
        {
            "stim_file": [f"s{i}.mp4" for i in range(6)],
            "condition": bank.conditions,
            "emotion": ["happy", "sad"] * 3,
            "actor": ["a", "a", "b", "b", "c", "c"],
        }
    )
    table_path = tmp_path / "stimuli.tsv"
    table.to_csv(table_path, sep="\t", index=False)
    out = _run(
        DNNAnalyses(bank_file=str(path), stimulus_table=str(table_path), n_permutations=40, seed=5),
        tmp_path,
    )
    direct = dnn_analysis_tables(
        bank, pd.read_csv(table_path, sep="\t", dtype=str), n_permutations=40, random_state=5
    )
    ci = pd.read_csv(out.category_index, sep="\t")
    assert ci["layer"].tolist() == direct["category_index"]["layer"].tolist()
    assert ci["label_set"].tolist() == direct["category_index"]["label_set"].tolist()
    for col in ("index", "p_value"):
        np.testing.assert_allclose(ci[col], direct["category_index"][col], rtol=0, atol=1e-12)
    # the 6-decimal tables are the core's frames written as they are
    expected_sim = direct["layer_similarity"].to_csv(sep="\t", float_format="%.6f")
    assert open(out.layer_similarity).read() == expected_sim
    expected_vp = direct["varpart"].to_csv(sep="\t", index=False, float_format="%.6f")
    assert open(out.varpart).read() == expected_vp


def test_cross_regime_similarity(tmp_path):
    from dnnrsa.analysis import cross_regime_similarity
    from dnnrsa.interfaces.dnn import CrossRegimeSimilarity

    parts = ("visual", "auditory", "crossmodal")
    (a, pa), (b, pb) = _bank(tmp_path, parts=parts, seed=1), _bank(tmp_path, parts=parts, seed=2)
    out = _run(
        CrossRegimeSimilarity(
            bank_files=[str(pa), str(pb)], regimes=["emotion", "identity"], extra={"Model": "x"}
        ),
        tmp_path,
    )
    direct = cross_regime_similarity({"emotion": a, "identity": b})
    labels = [f"{r}.{n}" for r, n in zip(direct.row_regimes, direct.row_layers, strict=True)]
    expected = pd.DataFrame(direct.matrix, index=labels, columns=labels).rename_axis("layer")
    assert open(out.matrix_file).read() == expected.to_csv(
        sep="\t", float_format="%.6f", na_rep="n/a"
    )
    assert open(out.pairs_file).read() == direct.pairs_frame().to_csv(
        sep="\t", index=False, float_format="%.6f", na_rep="n/a"
    )
    matrix = pd.read_csv(out.matrix_file, sep="\t", index_col=0)
    assert matrix.index.tolist() == ["emotion.layer0", "emotion.layer1", "emotion.layer2"] + [
        "identity.layer0",
        "identity.layer1",
        "identity.layer2",
    ]
    np.testing.assert_allclose(matrix.to_numpy(), direct.matrix, rtol=0, atol=5e-7)
    assert len(pd.read_csv(out.pairs_file, sep="\t")) == 9
    for side in (out.matrix_sidecar, out.pairs_sidecar):
        assert side["Regimes"] == ["emotion", "identity"]
        assert side["LayerCounts"] == {"emotion": 3, "identity": 3}
        assert side["Comparator"] == "spearman" and side["Conditions"] == a.conditions
        assert side["Model"] == "x"
    # the regimes default to the banks' model labels, which must differ
    with pytest.raises(Exception, match="own non-empty label"):
        _run(CrossRegimeSimilarity(bank_files=[str(pa), str(pb)]), tmp_path, name="same")


def test_arm_lesion(clips, tmp_path):
    import torch

    from dnnrsa.interfaces.dnn import ArmLesion
    from dnnrsa.models import build_model, get_model, load_model, save_checkpoint
    from dnnrsa.stimuli import prepare_inputs
    from dnnrsa.train import arm_lesion_table, evaluate_lesions

    torch.manual_seed(0)
    spec = get_model("crosschannel")
    ckpt = save_checkpoint(
        tmp_path / "emo.pt",
        build_model(spec, 2, seed=4),
        spec,
        labels=["happy", "sad"],
        regime="emotion",
    )
    names = [f"clip{k}.mp4" for k in range(len(clips))]
    table = pd.DataFrame({"stim_file": names, "emotion": ["happy", "sad", "happy", "other"]})
    table_path = tmp_path / "stimuli.tsv"
    table.to_csv(table_path, sep="\t", index=False)
    out = _run(
        ArmLesion(
            stim_files=clips,
            stim_labels=names,
            checkpoint=str(ckpt),
            stimulus_table=str(table_path),
            device="cpu",
        ),
        tmp_path,
    )
    net, spec, info = load_model(None, str(ckpt))
    inputs = prepare_inputs(clips[:3], info["recipe"])
    direct = evaluate_lesions(net, inputs, np.array([0, 1, 0]), spec, device="cpu")
    got = pd.read_csv(out.lesion_file, sep="\t").set_index("arm")
    assert got.loc["none", "accuracy"] == pytest.approx(direct["accuracy"], abs=1e-6)
    for arm, acc in direct["lesioned"].items():
        assert got.loc[arm, "accuracy"] == pytest.approx(acc, abs=1e-6)
        assert got.loc[arm, "accuracy_drop"] == pytest.approx(direct["drop"][arm], abs=1e-6)
    # the node writes exactly the core's table (the stimulus labelled "other" is not scored)
    core = arm_lesion_table(ckpt, clips, names, table.set_index("stim_file").astype(str))
    expected = core.to_csv(sep="\t", index=False, float_format="%.6f")
    assert open(out.lesion_file).read() == expected


# -- searchlight.py -------------------------------------------------------------------


def test_searchlight_rsa(tmp_path):
    from dnnrsa.interfaces.searchlight import SearchlightRSA
    from dnnrsa.searchlight import searchlight_rsa

    rng = np.random.default_rng(4)
    shape, n_cond, n_runs = (5, 5, 4), 5, 2
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    patterns = rng.normal(size=(*shape, n_cond * n_runs)).astype(np.float32)
    pat_file, mask_file = tmp_path / "patterns.nii.gz", tmp_path / "mask.nii.gz"
    nib.Nifti1Image(patterns, affine).to_filename(pat_file)
    nib.Nifti1Image(np.ones(shape, np.uint8), affine).to_filename(mask_file)
    conditions = [f"c{i}" for i in range(n_cond)] * n_runs
    runs = np.repeat(np.arange(1, n_runs + 1), n_cond)
    cond_file = tmp_path / "conditions.tsv"
    pd.DataFrame({"run": runs, "condition": conditions}).to_csv(cond_file, sep="\t", index=False)
    bank, bank_file = _bank(tmp_path, n_cond=n_cond)
    out = _run(
        SearchlightRSA(
            patterns_file=str(pat_file),
            conditions_file=str(cond_file),
            mask_file=str(mask_file),
            bank_file=str(bank_file),
            radius_mm=4.0,
            min_voxels=3,
            device="cpu",
        ),
        tmp_path,
    )
    direct = searchlight_rsa(
        str(pat_file),
        str(mask_file),
        bank.rdms,
        radius_mm=4.0,
        conditions=np.asarray(conditions),
        runs=runs,
        min_voxels=3,
        device="cpu",
        progress=False,
    )
    _same_image(out.maps_file, direct)


# -- stats.py -------------------------------------------------------------------------


def test_group_sign_flip_test(tmp_path):
    from dnnrsa.atlas import write_cluster_tsv
    from dnnrsa.interfaces.stats import GroupSignFlipTest
    from dnnrsa.stats import group_test_imgs

    files = _subject_imgs(tmp_path, 5, "sub", effect=0.5)
    out = _run(GroupSignFlipTest(in_files=files, n_permutations=32, seed=1, tfce=True), tmp_path)
    direct = group_test_imgs(files, n_permutations=32, random_state=1, tfce=True, device="auto")
    assert out.n_permutations == direct.test.n_permutations
    for key, name in (
        ("t_file", "t"),
        ("z_file", "z"),
        ("p_file", "p_fwe"),
        ("p_tfce_file", "p_tfce_fwe"),
        ("p_cluster_file", "p_cluster_size_fwe"),
    ):
        _same_image(getattr(out, key), direct.images[name])
    _same_image(out.mask_file, direct.mask_img)
    assert _data(out.p_file)[0, 0, 0] == 1.0  # outside the tested voxels
    expected = tmp_path / "clusters.tsv"
    write_cluster_tsv(direct.clusters, expected)
    assert open(out.clusters_file).read() == expected.read_text()


def test_group_model_test(tmp_path):
    """The node writes every map's outputs into its own folder under their derivatives'
    names; its sink (CopyDerivatives) copies them and their sidecars, byte for byte."""
    from dnnrsa.atlas import write_cluster_tsv
    from dnnrsa.bidsnames import sidecar_path
    from dnnrsa.interfaces.bids import CopyDerivatives
    from dnnrsa.interfaces.stats import GroupModelTest
    from dnnrsa.stats import group_test_imgs

    layers = [
        _subject_imgs(tmp_path, 5, f"l{k}_", effect=e, seed=k)
        for k, e in enumerate((0.5, 0.3, 0.1))
    ]
    out_dir = tmp_path / "derivatives"
    out_dir.mkdir()
    entities = [{"task": "a", "space": "b", "model": "net", "layer": f"l{k}"} for k in range(3)]
    sidecars = [{"LayerIndex": k} for k in range(3)]
    tfce = [False, True, False]
    node = GroupModelTest(
        in_files=layers,
        entities=entities,
        sidecars=sidecars,
        tfce=tfce,
        n_permutations=32,
        seed=1,
    )
    test_out = _run(node, tmp_path)
    node_dir = tmp_path / "work" / "node"
    assert {Path(f).parent for f in test_out.out_files} == {node_dir}
    assert not list(out_dir.iterdir())  # the node writes nothing into the derivatives
    out = _run(
        CopyDerivatives(in_files=test_out.out_files, output_dir=str(out_dir)), tmp_path, "sink"
    )
    for f in test_out.out_files:
        assert (out_dir / Path(f).name).read_bytes() == Path(f).read_bytes()
        if f.endswith("_statmap.nii.gz"):  # every map is followed by its sidecar
            assert str(sidecar_path(f)) in test_out.out_files
    written = set()
    for k in range(3):
        direct = group_test_imgs(layers[k], n_permutations=32, random_state=1, tfce=tfce[k])
        stem = f"task-a_space-b_model-net_layer-l{k}"
        names = [("t", "stat-t"), ("z", "stat-z"), ("p_fwe", "stat-p")]
        names += [("p_tfce_fwe", "desc-tfce_stat-p")] if tfce[k] else []
        for key, tail in names:
            path = out_dir / f"{stem}_{tail}_statmap.nii.gz"
            _same_image(path, direct.images[key])
            side = json.loads(path.with_name(f"{stem}_{tail}_statmap.json").read_text())
            assert side["LayerIndex"] == k and "dnnrsa" in side["SoftwareVersions"]
            assert side["Statistic"]
            written |= {str(path), str(sidecar_path(path))}
        assert not tfce[k] or side["Statistic"] == "TFCE FWE p"
        expected = tmp_path / f"clusters{k}.tsv"
        write_cluster_tsv(direct.clusters, expected)
        clusters = out_dir / f"{stem}_clusters.tsv"
        assert clusters.read_text() == expected.read_text()
        written.add(str(clusters))
    assert not (
        out_dir / "task-a_space-b_model-net_layer-l0_desc-tfce_stat-p_statmap.nii.gz"
    ).exists()
    assert set(out.out_files) == written
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".")]  # no temporaries


@pytest.mark.parametrize("n_sub", [3, 5])
def test_layer_winner(tmp_path, n_sub):
    from dnnrsa.interfaces.stats import LayerWinner
    from dnnrsa.stats import layer_winner_imgs

    layers = [
        _subject_imgs(tmp_path, n_sub, f"l{k}_", effect=e, seed=k)
        for k, e in enumerate((0.1, 0.5, 0.3))
    ]
    out = _run(LayerWinner(in_files=layers, n_permutations=40, seed=2), tmp_path)
    direct = layer_winner_imgs(layers, n_permutations=40, random_state=2)
    _same_image(out.winner_file, direct["winner"])
    _same_image(out.margin_file, direct["margin"])
    if n_sub >= 4:
        _same_image(out.p_file, direct["p"])
    else:
        assert "p" not in direct and not out.p_file
