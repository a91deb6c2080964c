"""The BIDS App at group level, on participant maps with a planted effect in MNI space."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from dnnrsa.bids_app.run import main

PEAK_MM = np.array([-46.0, -22.0, 8.0])  # left Heschl's gyrus / planum temporale


@pytest.fixture(scope="module")
def derivatives(tmp_path_factory):
    from nilearn.datasets import load_mni152_brain_mask
    from nilearn.image import resample_img

    base = tmp_path_factory.mktemp("group")
    out = base / "out"
    bids = base / "bids"
    bids.mkdir()
    (bids / "dataset_description.json").write_text(
        json.dumps({"Name": "x", "BIDSVersion": "1.10.0"})
    )
    mask = load_mni152_brain_mask(resolution=2)
    mask = resample_img(
        mask,
        target_affine=np.diag([8.0, 8.0, 8.0]),
        interpolation="nearest",
        force_resample=True,
        copy_header=True,
    )
    inside = np.asarray(mask.dataobj) > 0
    ijk = np.argwhere(np.ones(inside.shape, bool))
    xyz = nib.affines.apply_affine(mask.affine, ijk).reshape(*inside.shape, 3)
    blob = np.linalg.norm(xyz - PEAK_MM, axis=-1) <= 12.0
    rng = np.random.default_rng(7)
    n_sub = 8
    for s in range(1, n_sub + 1):
        func = out / f"sub-{s:02d}" / "func"
        func.mkdir(parents=True)
        for layer, strength, idx in (("conv1", 0.15, 0), ("fc1", 0.45, 1)):
            data = 0.08 * rng.normal(size=inside.shape)
            data[blob] += strength
            data[~inside] = np.nan
            stem = f"sub-{s:02d}_task-emo_space-MNI152NLin2009cAsym_model-emotion_layer-{layer}_stat-spearman_statmap"
            nib.Nifti1Image(np.tanh(data).astype(np.float32), mask.affine).to_filename(
                func / f"{stem}.nii.gz"
            )
            (func / f"{stem}.json").write_text(
                json.dumps(
                    {
                        "LayerName": f"net.{layer}",
                        "Part": "crossmodal",
                        "LayerIndex": idx,
                        "Comparator": "spearman",
                    }
                )
            )
    rc = main(
        [
            str(bids),
            str(out),
            "group",
            "--n-permutations",
            "200",
            "-w",
            str(base / "work"),
            "--nprocs",
            "2",
            "--seed",
            "3",
        ]
    )
    return rc, out, inside, blob, mask


def test_group_outputs_and_inference(derivatives):
    rc, out, inside, blob, _mask = derivatives
    assert rc == 0
    stem = "task-emo_space-MNI152NLin2009cAsym_model-emotion_layer-fc1"
    t_img = nib.load(out / f"{stem}_stat-t_statmap.nii.gz")
    p = np.asarray(nib.load(out / f"{stem}_stat-p_statmap.nii.gz").dataobj)
    assert (p[blob & inside] < 0.05).mean() > 0.8  # the planted effect survives FWE correction
    assert (p[~blob & inside] < 0.05).mean() < 0.01  # and little else does
    side = json.loads((out / f"{stem}_stat-p_statmap.json").read_text())
    assert side["NumberOfPermutations"] == 200 and len(side["Subjects"]) == 8
    # the t map is the one-sample t of Fisher z across subjects
    subj = np.stack(
        [
            np.arctanh(np.asarray(nib.load(f).dataobj, dtype=np.float64))
            for f in sorted(out.glob("sub-*/func/*layer-fc1_stat-spearman_statmap.nii.gz"))
        ]
    )
    expected = stats.ttest_1samp(subj[:, inside], 0.0).statistic
    np.testing.assert_allclose(np.asarray(t_img.dataobj)[inside], expected, rtol=1e-4, atol=1e-4)


def test_cluster_table_names_the_region(derivatives):
    _rc, out, *_ = derivatives
    table = pd.read_csv(
        out / "task-emo_space-MNI152NLin2009cAsym_model-emotion_layer-fc1_clusters.tsv", sep="\t"
    )
    assert len(table) >= 1
    top = table.iloc[0]
    text = " ".join(str(v) for v in top.values).lower()
    assert "heschl" in text or "planum" in text or "temporal" in text
    peak = np.array(
        [top[c] for c in table.columns if c.startswith("peak_") and c[-1] in "xyz"][:3], float
    )
    assert np.linalg.norm(peak - PEAK_MM) <= 16.0


def test_winner_take_all_prefers_the_stronger_layer(derivatives):
    _rc, out, inside, blob, _ = derivatives
    stem = "task-emo_space-MNI152NLin2009cAsym_model-emotion"
    winner = np.asarray(nib.load(out / f"{stem}_desc-winner_statmap.nii.gz").dataobj)
    side = json.loads((out / f"{stem}_desc-winner_statmap.json").read_text())
    assert side["Layers"] == ["conv1", "fc1"]
    assert (winner[blob & inside] == 1).mean() > 0.9
    assert (winner[~inside] == -1).all()


def test_group_without_participant_maps_exits_18(tmp_path):
    bids = tmp_path / "bids"
    bids.mkdir()
    (bids / "dataset_description.json").write_text(
        json.dumps({"Name": "x", "BIDSVersion": "1.10.0"})
    )
    assert main([str(bids), str(tmp_path / "out"), "group"]) == 18


def _layer_files(out, layer):
    return sorted(out.glob(f"sub-*/func/*_layer-{layer}_stat-spearman_statmap.nii.gz"))


def test_one_node_per_network_equals_the_core_test_per_map(derivatives):
    """The network's one test node writes, for every layer, what group_test_imgs of
    that layer's maps alone gives (the test of the group level before it was one node
    per network), bit for bit."""
    from dnnrsa.atlas import write_cluster_tsv
    from dnnrsa.stats import group_test_imgs

    rc, out, *_ = derivatives
    assert rc == 0
    work = out.parent / "work" / "dnnrsa_group_wf"
    assert [p.name for p in work.glob("test_*")] == ["test_emoMNI152NLin2009cAsymemotion"]
    from nipype.utils.filemanip import loadpkl

    node = loadpkl(work / "test_emoMNI152NLin2009cAsymemotion" / "_node.pklz")
    assert node.n_procs == 2 and node.inputs.n_jobs == 2  # --nprocs 2 reaches the max-T
    for layer in ("conv1", "fc1"):
        direct = group_test_imgs(_layer_files(out, layer), n_permutations=200, random_state=3)
        stem = f"task-emo_space-MNI152NLin2009cAsym_model-emotion_layer-{layer}"
        for key, stat in (("t", "t"), ("z", "z"), ("p_fwe", "p")):
            got = nib.load(out / f"{stem}_stat-{stat}_statmap.nii.gz")
            np.testing.assert_array_equal(
                np.asarray(got.dataobj), np.asarray(direct.images[key].dataobj)
            )
            np.testing.assert_array_equal(got.affine, direct.images[key].affine)
        expected = out.parent / f"{layer}_clusters.tsv"
        write_cluster_tsv(direct.clusters, expected)
        assert (out / f"{stem}_clusters.tsv").read_text() == expected.read_text()
        assert not (out / f"{stem}_desc-tfce_stat-p_statmap.nii.gz").exists()


def test_tfce_for_chosen_layers_only(derivatives, tmp_path):
    import shutil

    from dnnrsa.stats import group_test_imgs

    _rc, out, *_ = derivatives
    bids = out.parent / "bids"
    mine = tmp_path / "out"
    for sub in out.glob("sub-*/"):
        shutil.copytree(sub, mine / sub.name)
    base = [str(bids), str(mine), "group", "-w", str(tmp_path / "w"), "--no-reports"]
    base += ["--n-permutations", "50", "--nprocs", "1", "--seed", "3"]
    assert main([*base, "--tfce-layers", "fc1"]) == 0
    stem = "task-emo_space-MNI152NLin2009cAsym_model-emotion_layer-"
    assert not (mine / f"{stem}conv1_desc-tfce_stat-p_statmap.nii.gz").exists()
    tfce = mine / f"{stem}fc1_desc-tfce_stat-p_statmap.nii.gz"
    direct = group_test_imgs(_layer_files(out, "fc1"), n_permutations=50, random_state=3, tfce=True)
    got = np.asarray(nib.load(tfce).dataobj)
    np.testing.assert_array_equal(got, np.asarray(direct.images["p_tfce_fwe"].dataobj))
    side = json.loads(tfce.with_name(tfce.name.replace(".nii.gz", ".json")).read_text())
    assert side["Statistic"] == "TFCE FWE p" and side["LayerName"] == "net.fc1"
    # the layer's max-T p is that of the TFCE run, which forms the permuted t maps
    p = np.asarray(nib.load(mine / f"{stem}fc1_stat-p_statmap.nii.gz").dataobj)
    np.testing.assert_array_equal(p, np.asarray(direct.images["p_fwe"].dataobj))


def test_tfce_layers_usage_errors_exit_64(derivatives, tmp_path, capsys):
    _rc, out, *_ = derivatives
    base = [str(out.parent / "bids"), str(out), "group", "-w", str(tmp_path / "w")]
    assert main([*base, "--tfce-layers", "fc9"]) == 64
    err = capsys.readouterr().err
    assert "fc9" in err and "fc1" in err
    assert main([*base, "--tfce", "--tfce-layers", "fc1"]) == 64
    assert "--tfce-layers" in capsys.readouterr().err


def test_common_voxel_check_reads_little_and_answers_as_a_full_read(tmp_path, caplog):
    """_has_common_voxels: the cheap pass (a few planes, headers compared) gives the
    answer of reading every map whole, for overlapping maps, maps that overlap only
    above the planes read, disjoint maps, and maps stored in other layouts."""
    from dnnrsa.bids_app.group import MapGroup, _has_common_voxels

    shape = (6, 7, 12)

    def group(datas, suffixes=None):
        files = []
        for i, data in enumerate(datas):
            suffix = (suffixes or {}).get(i, ".nii.gz")
            path = tmp_path / f"g{len(list(tmp_path.iterdir()))}_{i}{suffix}"
            nib.Nifti1Image(data, np.eye(4)).to_filename(path)
            files.append(path)
        subjects = tuple(f"{i:02d}" for i in range(len(files)))
        return MapGroup("t", "MNI", "m", None, "spearman", tuple(files), subjects, "", 0, "m")

    def full(g):
        masks = [np.isfinite(np.asarray(nib.load(f).dataobj)) for f in g.files]
        return bool(np.logical_and.reduce(masks).any())

    def slab(lo, hi, dtype=np.float32):
        data = np.full(shape, np.nan, dtype)
        data[..., lo:hi] = 0.5
        return data

    cases = {
        "overlap": [slab(2, 12), slab(2, 12), slab(3, 9)],
        "overlap above the planes read": [slab(2, 12), slab(8, 12), slab(9, 11)],
        "disjoint": [slab(2, 5), slab(5, 9), slab(2, 12)],
        "float64 and uncompressed": [slab(2, 12), slab(2, 12, np.float64), slab(4, 6)],
    }
    suffixes = {"float64 and uncompressed": {2: ".nii"}}
    for name, datas in cases.items():
        g = group(datas, suffixes.get(name))
        caplog.clear()
        assert _has_common_voxels(g) == full(g), name
        warned = "no voxel is finite in every subject's map" in caplog.text
        assert warned == (not full(g)), name
    assert not _has_common_voxels(group([slab(2, 5), slab(5, 9)]))
