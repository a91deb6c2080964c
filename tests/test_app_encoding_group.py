"""``dnnrsa group`` after ``participant --encoding``: each kind of encoding map tested
across participants as the RSA maps are (sign flips, max-T, clusters with atlas labels)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from dnnrsa.bids_app.run import main

PEAK_MM = np.array([-46.0, -22.0, 8.0])  # left Heschl's gyrus / planum temporale
SPACE = "MNI152NLin2009cAsym"
STEM = f"task-emo_space-{SPACE}_model-emotion"
N_SUB = 8
BANDS = {"visual": ["visual_conv1_1"], "auditory": ["auditory_conv1"]}
#: participant map (entities after the model, desc, stat) -> planted value in the blob
ENCODING = {
    ("", "encoding", "r2"): 0.12,
    ("", "encoding", "r"): 0.30,
    ("band-visual_", "encodingunique", "r2"): 0.15,
    ("band-auditory_", "encodingunique", "r2"): 0.0,  # the null band
    ("", "encodingshared", "r2"): 0.0,
}
GROUP = ["--n-permutations", "200", "--seed", "3", "--nprocs", "1", "--no-reports"]


def _write(path, data, affine, meta):
    nib.Nifti1Image(data.astype(np.float32), affine).to_filename(path)
    path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps(meta))


#: the rows of the participants' per-region tables of the planted folder
REGION_ROWS = [
    ("encoding", "r2", None),
    ("encoding", "r", None),  # not drawn
    ("encodingunique", "r2", "visual"),
    ("encodingunique", "r2", "auditory"),
    ("encodingshared", "r2", None),
    ("encodingceiling", "r2", None),
]


def _region_table(path, rng):
    """A per-region table as the participant level writes it, random means."""
    import pandas as pd

    rows = [
        {"roi": roi, "quantity": q, "stat": s, "band": b, "layer": None}
        for roi in ("heschl", "calcarine")
        for q, s, b in REGION_ROWS
    ]
    table = pd.DataFrame(rows)
    table["mean"] = rng.uniform(-0.02, 0.2, size=len(table))
    table["n_voxels"] = 30
    table.to_csv(path, sep="\t", index=False, na_rep="n/a")
    path.with_suffix("").with_suffix(".json").write_text(json.dumps({"Bands": BANDS}))


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """8 participants' RSA maps of two layers (noise) and encoding maps on an 8 mm MNI
    grid, a positive effect planted in a 12 mm sphere of the joint R², the joint r and
    the visual band's unique variance; the auditory band and the shared variance are
    noise about zero. Group level run on them, and on a copy without encoding maps."""
    from nilearn.datasets import load_mni152_brain_mask
    from nilearn.image import resample_img

    base = tmp_path_factory.mktemp("enc_group")
    out, plain = base / "out", base / "plain"
    bids = base / "bids"
    bids.mkdir()
    (bids / "dataset_description.json").write_text(
        json.dumps({"Name": "x", "BIDSVersion": "1.10.0"})
    )
    mask = resample_img(
        load_mni152_brain_mask(resolution=2),
        target_affine=np.diag([8.0, 8.0, 8.0]),
        interpolation="nearest",
        force_resample=True,
        copy_header=True,
    )
    inside = np.asarray(mask.dataobj) > 0
    ijk = np.argwhere(np.ones(inside.shape, bool))
    xyz = nib.affines.apply_affine(mask.affine, ijk).reshape(*inside.shape, 3)
    blob = np.linalg.norm(xyz - PEAK_MM, axis=-1) <= 12.0
    rng = np.random.default_rng(11)
    for s in range(1, N_SUB + 1):
        sub = f"sub-{s:02d}"
        for folder in (out, plain):
            (folder / sub / "func").mkdir(parents=True)
        for idx, layer in enumerate(("conv1", "fc1")):
            data = np.tanh(0.08 * rng.normal(size=inside.shape) + (0.2 if idx else 0.0) * blob)
            data[~inside] = np.nan
            name = f"{sub}_{STEM}_layer-{layer}_stat-spearman_statmap.nii.gz"
            meta = {"LayerName": f"net.{layer}", "Part": "crossmodal", "LayerIndex": idx}
            for folder in (out, plain):
                _write(folder / sub / "func" / name, data, mask.affine, meta)
        for (extra, desc, stat), effect in ENCODING.items():
            data = 0.02 * rng.normal(size=inside.shape) + effect * blob
            data[~inside] = np.nan
            name = f"{sub}_{STEM}_{extra}desc-{desc}_stat-{stat}_statmap.nii.gz"
            meta = {
                "Description": f"the {desc} {stat}",
                "Bands": BANDS,
                "AlphasChosen": {"visual": {"Median": float(s)}},  # the subject's own
                "NComponents": 10,
                "Checkpoint": "net.pt",
            }
            if "unique" in desc or "shared" in desc:
                meta["NegativeEstimates"] = "never clipped"
            _write(out / sub / "func" / name, data, mask.affine, meta)
        _region_table(out / sub / "func" / f"{sub}_{STEM}_desc-encodingroi_stats.tsv", rng)
    common = ["group", *GROUP]
    assert main([str(bids), str(out), *common, "-w", str(base / "w")]) == 0
    assert main([str(bids), str(plain), *common, "-w", str(base / "wplain")]) == 0
    return out, plain, inside, blob


def _group(out, extra, desc, stat, group_stat):
    path = out / f"{STEM}_{extra}desc-{desc}{stat}_stat-{group_stat}_statmap.nii.gz"
    return np.asarray(nib.load(path).dataobj), path


def test_each_kind_of_encoding_map_gets_its_group_maps_and_sidecars(planted):
    out, *_ = planted
    for (extra, desc, stat), _effect in ENCODING.items():
        for group_stat in ("t", "z", "p"):
            _, path = _group(out, extra, desc, stat, group_stat)
            side = json.loads(path.with_name(path.name.replace(".nii.gz", ".json")).read_text())
            assert side["EncodingQuantity"] == desc and side["Measure"] == stat
            assert side["Bands"] == BANDS and side["NComponents"] == 10
            assert side["FisherZ"] is (stat == "r")
            assert "never clipped" in side["NegativeEstimates"]
            assert "> 0" in side["Test"] and side["NumberOfPermutations"] == 200
            assert len(side["Subjects"]) == N_SUB == len(side["Sources"])
            assert "AlphasChosen" not in side  # one participant's penalties
            if extra:
                assert side["Band"] == extra[len("band-") : -1]
        assert (out / f"{STEM}_{extra}desc-{desc}{stat}_clusters.tsv").is_file()
        # no TFCE without --tfce, as for the RSA maps
        assert not list(out.glob(f"{STEM}_{extra}desc-{desc}{stat}tfce_*"))


@pytest.mark.parametrize(
    "extra, desc, stat", [("band-visual_", "encodingunique", "r2"), ("", "encoding", "r")]
)
def test_the_group_maps_equal_the_sign_flip_test_of_the_participant_maps(
    planted, extra, desc, stat
):
    """Known answer: the participants' maps stacked, the voxels finite in all of them,
    (Fisher z for r only) and dnnrsa.stats.sign_flip_test with the same permutations."""
    from dnnrsa.stats import fisher_z, sign_flip_test

    out, *_ = planted
    files = sorted(out.glob(f"sub-*/func/*_{extra}desc-{desc}_stat-{stat}_statmap.nii.gz"))
    assert len(files) == N_SUB
    data = np.stack([np.asarray(nib.load(f).dataobj, dtype=np.float64) for f in files])
    valid = np.isfinite(data).all(axis=0)
    x = data[:, valid]
    x = fisher_z(x) if stat == "r" else x
    ref = nib.load(files[0])
    mask_img = nib.Nifti1Image(valid.astype(np.uint8), ref.affine)
    res = sign_flip_test(
        x,
        mask=mask_img,
        n_permutations=200,
        cluster_forming_threshold=0.001,
        threshold_type="p",
        random_state=3,
    )
    t, _ = _group(out, extra, desc, stat, "t")
    p, _ = _group(out, extra, desc, stat, "p")
    np.testing.assert_array_equal(t[valid], res.t.astype(np.float32))
    np.testing.assert_array_equal(p[valid], res.p_fwe.astype(np.float32))
    assert (p[~valid] == 1).all()


def test_the_planted_band_is_significant_and_the_null_band_is_not(planted):
    out, _, inside, blob = planted
    p_visual, _ = _group(out, "band-visual_", "encodingunique", "r2", "p")
    p_auditory, _ = _group(out, "band-auditory_", "encodingunique", "r2", "p")
    p_shared, _ = _group(out, "", "encodingshared", "r2", "p")
    assert (p_visual[blob & inside] < 0.05).mean() > 0.8  # survives the max-T FWE
    assert (p_visual[~blob & inside] < 0.05).mean() < 0.01
    for null in (p_auditory, p_shared):
        assert (null[inside] < 0.05).mean() < 0.01
        assert np.median(p_visual[blob & inside]) < np.median(null[blob & inside])
    import pandas as pd

    table = pd.read_csv(out / f"{STEM}_band-visual_desc-encodinguniquer2_clusters.tsv", sep="\t")
    assert len(table) >= 1
    peak = table.iloc[0][["peak_x", "peak_y", "peak_z"]].to_numpy(float)
    assert np.linalg.norm(peak - PEAK_MM) <= 16.0
    assert table.iloc[0]["p_min"] < 0.05
    assert any(c.startswith("peak_label_") for c in table.columns)


def test_the_rsa_group_maps_do_not_change_beside_the_encoding_maps(planted):
    out, plain, *_ = planted
    rsa = sorted(p.name for p in plain.glob(f"{STEM}_*"))
    assert rsa and not [n for n in rsa if "encoding" in n]
    for name in rsa:
        if name.endswith(".nii.gz"):
            a, b = (np.asarray(nib.load(f / name).dataobj) for f in (out, plain))
            np.testing.assert_array_equal(a, b)
        elif name.endswith(".tsv"):
            assert (out / name).read_text() == (plain / name).read_text()


def _config(out, tmp_path):
    from dnnrsa.bids_app.outputs import group_config
    from dnnrsa.bids_app.parser import build_parser
    from dnnrsa.bids_app.run import config_from_options

    argv = [str(out.parent / "bids"), str(out), "group", *GROUP, "-w", str(tmp_path)]
    return group_config(config_from_options(build_parser().parse_args(argv)))


def _graph(wf):
    nodes = {n: wf.get_node(n).inputs.get_hashval()[1] for n in wf.list_node_names()}
    edges = sorted((u.name, v.name) for u, v in wf._graph.edges())
    return nodes, edges


def test_without_encoding_maps_the_group_workflow_is_the_same(planted, tmp_path):
    """The graph of the group workflow of the folder without encoding maps equals the
    one built without the encoding step; with them, two nodes are added."""
    from dnnrsa.bids_app.group import find_subject_maps, usable_encoding_maps
    from dnnrsa.bids_app.workflows import init_group_wf

    out, plain, *_ = planted
    config = _config(plain, tmp_path)
    groups = find_subject_maps(config)
    assert usable_encoding_maps(config) == []
    before = init_group_wf(config, groups)
    after = init_group_wf(config, groups, encoding_groups=usable_encoding_maps(config))
    assert _graph(after) == _graph(before)
    tag = f"emo{SPACE}emotion"
    assert sorted(before.list_node_names()) == sorted(
        [
            f"test_{tag}",
            f"write_test_{tag}",
            f"winner_{tag}",
            f"write_winner_{tag}",
        ]
    )
    config = _config(out, tmp_path)
    encoding = usable_encoding_maps(config)
    assert len(encoding) == len(ENCODING)
    wf = init_group_wf(config, find_subject_maps(config), encoding_groups=encoding)
    added = set(wf.list_node_names()) - set(before.list_node_names())
    assert added == {f"test_encoding_{tag}", f"write_test_encoding_{tag}"}


# --------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def encoding_runs(tmp_path_factory, crosschannel_checkpoint):
    """Two participants of 3 runs, participant level with ``--encoding`` (3 groups of
    stimuli, no per-layer maps) fitted within two regions (``--roi``, ``--encoding-mask
    rois``), then the group level. Returns the output folder; the work folder is its
    sibling ``w``, the regions' masks ``masks``."""
    from .bids_fixtures import make_small_bids
    from .test_app_encoding import region_masks

    top = tmp_path_factory.mktemp("enc_e2e")
    data = make_small_bids(top / "bids", n_subjects=2, n_runs=3)
    rois, masks = region_masks(data, top)
    np.savez(top / "masks.npz", **masks)
    out = top / "out"
    argv = [str(data.root), str(out), "participant", "--checkpoint", str(crosschannel_checkpoint)]
    argv += ["--layers", "visual_conv1_1", "auditory_conv1", "crossmodal_dense"]
    argv += ["--encoding", "--encoding-stimulus-folds", "3", "--radius-mm", "6"]
    argv += [*rois, "--encoding-mask", "rois"]
    argv += ["--min-voxels", "5", "--nprocs", "2", "--skip-bids-validation", "--no-reports"]
    assert main([*argv, "-w", str(top / "w")]) == 0
    group = [str(data.root), str(out), "group", "--n-permutations", "100", "--seed", "3"]
    assert main([*group, "--nprocs", "2", "--no-reports", "-w", str(top / "wg")]) == 0
    return out


def test_the_group_level_tests_the_encoding_maps_the_participants_wrote(encoding_runs):
    from dnnrsa.stats import sign_flip_test

    out = encoding_runs
    stem = "task-cat_space-native_model-net"
    for kind in (
        "desc-encodingr2",
        "desc-encodingr",
        "desc-encodingsharedr2",
        *(f"band-{b}_desc-encodinguniquer2" for b in ("visual", "auditory", "crossmodal")),
        *(f"band-{b}_desc-encodingsplitr2" for b in ("visual", "auditory", "crossmodal")),
    ):
        for stat in ("t", "z", "p"):
            assert (out / f"{stem}_{kind}_stat-{stat}_statmap.nii.gz").is_file(), kind
        assert (out / f"{stem}_{kind}_clusters.tsv").is_file()
    side = json.loads(
        (out / f"{stem}_band-visual_desc-encodinguniquer2_stat-p_statmap.json").read_text()
    )
    assert side["Band"] == "visual" and side["EncodingQuantity"] == "encodingunique"
    assert side["Bands"]["visual"] == ["visual_conv1_1"] and side["Subjects"] == ["01", "02"]
    assert side["Checkpoint"].endswith("net.pt") and side["StimulusFolds"] == 3
    # known answer: the 2 participants' joint R² maps through sign_flip_test
    files = sorted(out.glob("sub-*/func/*_model-net_desc-encoding_stat-r2_statmap.nii.gz"))
    assert len(files) == 2
    data = np.stack([np.asarray(nib.load(f).dataobj, dtype=np.float64) for f in files])
    valid = np.isfinite(data).all(axis=0)
    mask_img = nib.Nifti1Image(valid.astype(np.uint8), nib.load(files[0]).affine)
    res = sign_flip_test(
        data[:, valid],
        mask=mask_img,
        n_permutations=100,
        cluster_forming_threshold=0.001,
        threshold_type="p",
        random_state=3,
    )
    t = np.asarray(nib.load(out / f"{stem}_desc-encodingr2_stat-t_statmap.nii.gz").dataobj)
    p = np.asarray(nib.load(out / f"{stem}_desc-encodingr2_stat-p_statmap.nii.gz").dataobj)
    np.testing.assert_array_equal(t[valid], res.t.astype(np.float32))
    np.testing.assert_array_equal(p[valid], res.p_fwe.astype(np.float32))
    # the RSA group maps are there as without --encoding
    assert list(out.glob(f"{stem}_layer-*_stat-t_statmap.nii.gz"))


def test_with_encoding_mask_rois_the_maps_are_the_core_on_the_regions_voxels(encoding_runs):
    """Known answer: the patterns written, restricted to the union of the regions within
    the brain mask written, and the network's features given to fit_encoding directly;
    NaN outside the union."""
    import tomllib

    from dnnrsa.encoding import fit_encoding

    out = encoding_runs
    with np.load(out.parent / "masks.npz") as m:
        union = m["centre"] | m["side"]
    (features,) = (out.parent / "w").glob("**/extract_net/features.npz")
    with np.load(features) as f:
        names = [str(n) for n in f["layer_names"]]
        acts = {n: f[f"layer{i:03d}"] for i, n in enumerate(names)}
        parts = {n: str(p) for n, p in zip(names, f["parts"], strict=True)}
        stimuli = [str(s) for s in f["stimuli"]]
    for sub in ("01", "02"):
        func = out / f"sub-{sub}" / "func"
        (patterns,) = func.glob("*_desc-lsa_stat-effect_statmap.nii.gz")
        side = json.loads(
            patterns.with_name(patterns.name[: -len(".nii.gz")] + ".json").read_text()
        )
        (mask_file,) = func.glob("*_desc-brain_mask.nii.gz")
        fitted = union & np.asarray(nib.load(mask_file).dataobj).astype(bool)
        data = np.asarray(nib.load(patterns).dataobj)[fitted].T
        conditions, n_runs = side["Conditions"], len(side["Runs"])
        by_name = {c.rsplit("/", 1)[-1]: i for i, c in enumerate(conditions)}
        pats = data.reshape(n_runs, len(conditions), -1)[:, [by_name[s] for s in stimuli]]
        res = fit_encoding(
            acts, parts, pats, n_components=10, stimulus_folds=3, layer_maps=False, device="cpu"
        )
        stem = f"sub-{sub}_task-cat_space-native_model-net"
        for name, values in (
            (f"{stem}_desc-encoding_stat-r2_statmap.nii.gz", res.r2),
            (f"{stem}_desc-encodingshared_stat-r2_statmap.nii.gz", res.shared),
        ):
            written = np.asarray(nib.load(func / name).dataobj)
            assert np.isnan(written[~fitted]).all()
            assert np.isfinite(written[fitted]).all()
            np.testing.assert_allclose(
                written[fitted], values.astype(np.float32), atol=1e-6, equal_nan=True
            )
            meta = json.loads((func / name.replace(".nii.gz", ".json")).read_text())
            assert meta["EncodingMask"]["Kind"] == "rois"
            assert meta["EncodingMask"]["Regions"] == ["centre", "side"]
            assert meta["VoxelsFitted"] == int(fitted.sum())
        table = (func / f"{stem}_desc-encodingroi_stats.tsv").read_text()
        assert table.startswith("roi\tquantity\tstat\tband\tlayer\tmean\tn_voxels\n")
    record = tomllib.loads((out / "dnnrsa_config.toml").read_text())["analysis"]
    assert record["encoding"]["mask"] == "rois"


def test_the_group_report_shows_each_bands_unique_variance(planted):
    from dnnrsa.reports import build_group_report

    out, plain, *_ = planted
    page = build_group_report(out, task="emo", space=SPACE).read_text()
    assert "Encoding models: unique variance" in page
    for band in ("visual", "auditory"):
        stem = f"{STEM}_band-{band}_desc-encodinguniquer2groupmap_stat-z_figure.png"
        assert (out / "figures" / stem).is_file()
        assert f"unique variance of band {band}" in page
    # the searchlight cluster tables are not mixed with the encoding ones
    assert "encodinguniquer2" not in page.split('id="clusters"')[1].split("</section>")[0]
    # the per-region bars: mean and standard error over the participants' tables
    import pandas as pd

    from dnnrsa.reports.encoding_sections import encoding_roi_summary

    assert "Encoding models: regions" in page
    bars = f"{STEM}_desc-encodingroibars_figure.png"
    assert (out / "figures" / bars).is_file()
    files = sorted(out.glob(f"sub-*/func/*_{STEM}_desc-encodingroi_stats.tsv"))
    assert len(files) == N_SUB
    tables = [pd.read_csv(f, sep="\t") for f in files]
    summary = encoding_roi_summary(files).set_index(["roi", "quantity"])
    assert len(summary) == 2 * 5  # the r row is not drawn
    for roi in ("heschl", "calcarine"):
        for (q, s, b), key in zip(
            REGION_ROWS,
            ["joint", None, "unique:visual", "unique:auditory", "shared", "ceiling"],
            strict=True,
        ):
            if key is None:
                continue
            x = np.array(
                [
                    t.loc[
                        (t.roi == roi)
                        & (t.quantity == q)
                        & (t.stat == s)
                        & ((t.band == b) if b else t.band.isna()),
                        "mean",
                    ].item()
                    for t in tables
                ]
            )
            got = summary.loc[(roi, key)]
            assert got["n"] == N_SUB
            np.testing.assert_allclose(got["mean"], x.mean(), rtol=1e-12)
            np.testing.assert_allclose(got["se"], x.std(ddof=1) / np.sqrt(N_SUB), rtol=1e-12)
    plain_page = build_group_report(plain, task="emo", space=SPACE).read_text()
    assert "Encoding models" not in plain_page


def test_with_tfce_each_encoding_map_gets_its_tfce_p_map(planted, tmp_path):
    import shutil

    from dnnrsa.stats import group_test_imgs

    out, *_ = planted
    mine = tmp_path / "out"
    for sub in out.glob("sub-*/"):
        shutil.copytree(sub, mine / sub.name)
    argv = [str(out.parent / "bids"), str(mine), "group", "--n-permutations", "50"]
    argv += ["--seed", "3", "--nprocs", "1", "--no-reports", "--tfce", "-w", str(tmp_path / "w")]
    assert main(argv) == 0
    name = f"{STEM}_band-visual_desc-encodinguniquer2tfce_stat-p_statmap.nii.gz"
    files = sorted(mine.glob("sub-*/func/*_band-visual_desc-encodingunique_stat-r2_statmap.nii.gz"))
    direct = group_test_imgs(files, n_permutations=50, random_state=3, tfce=True, fisher_z=False)
    np.testing.assert_array_equal(
        np.asarray(nib.load(mine / name).dataobj),
        np.asarray(direct.images["p_tfce_fwe"].dataobj),
    )
    side = json.loads((mine / name.replace(".nii.gz", ".json")).read_text())
    assert side["Statistic"] == "TFCE FWE p" and side["Band"] == "visual"
    assert len(list(mine.glob(f"{STEM}_*desc-encoding*tfce_stat-p_statmap.nii.gz"))) == len(
        ENCODING
    )
