"""The GLM on surface runs (pairs of GIFTI files) and per-vertex maps written as GIFTI.

The surface path masks each run's two hemispheres and then fits exactly as the volume
path does: the same time series laid out once as GIFTI pairs and once as a NIfTI of
shape (n, 1, 1, T) give the same patterns, bit for bit. The end-to-end test plants
an effect on a patch of fsaverage5 and finds it with the searchlight on geodesic
discs."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nibabel.gifti import GiftiDataArray, GiftiImage

from dnnrsa import surface
from dnnrsa._surfaceio import gifti_image
from dnnrsa.glm import estimate_patterns
from dnnrsa.searchlight import searchlight_rsa_array

N_LEFT, N_RIGHT, N_SCANS = 40, 30, 60


def _events(n_conditions=3, n_trials=6):
    return pd.DataFrame(
        {
            "onset": np.arange(n_trials) * 8.0 + 2.0,
            "duration": 1.0,
            "stim_file": [f"s{k % n_conditions}.mp4" for k in range(n_trials)],
        }
    )


def _save_run(data, path, *, one_array=False):
    """A hemisphere's run as GIFTI: one data array per volume (fMRIPrep), or one 2-D array."""
    if one_array:
        img = GiftiImage(darrays=[GiftiDataArray(np.asarray(data, dtype=np.float32))])
    else:
        img = gifti_image(data)
    nib.save(img, path)
    return path


@pytest.fixture(scope="module")
def same_data(tmp_path_factory):
    """Two runs written as GIFTI pairs (the second as one 2-D array per hemisphere) and as
    NIfTI of shape (n, 1, 1, T), with one vertex NaN in the second run, and the masks."""
    folder = tmp_path_factory.mktemp("same")
    rng = np.random.default_rng(0)
    pairs, volumes = [], []
    for run in range(2):
        data = (100 + 2 * rng.standard_normal((N_LEFT + N_RIGHT, N_SCANS))).astype(np.float32)
        if run == 1:
            data[N_LEFT + 3, 7] = np.nan  # a vertex of the right hemisphere
        left = _save_run(data[:N_LEFT], folder / f"r{run}_hemi-L_bold.func.gii", one_array=run)
        right = _save_run(data[N_LEFT:], folder / f"r{run}_hemi-R_bold.func.gii")
        pairs.append((left, right))
        vol = folder / f"r{run}_bold.nii.gz"
        nib.save(nib.Nifti1Image(data[:, None, None, :], np.eye(4)), vol)
        volumes.append(vol)
    keep = np.ones(N_LEFT + N_RIGHT, dtype=bool)
    keep[[0, 5, N_LEFT + 1]] = False  # a given mask that leaves three vertices out
    mask_img = nib.Nifti1Image(keep[:, None, None].astype(np.uint8), np.eye(4))
    mask = surface.SurfaceMask(keep[:N_LEFT], keep[N_LEFT:], space=None)
    confounds = [rng.standard_normal((N_SCANS, 2)) for _ in range(2)]
    return pairs, volumes, mask, mask_img, confounds


@pytest.mark.parametrize(
    ("method", "noise_model", "noise_normalisation", "signal_scaling"),
    [
        ("lsa", "ar1", "none", 0),
        ("lsa", "ols", "univariate", 0),
        ("lss", "ar1", "none", False),
        ("lss", "ols", "multivariate", 0),
    ],
)
def test_surface_runs_give_the_volume_patterns(
    same_data, method, noise_model, noise_normalisation, signal_scaling
):
    pairs, volumes, mask, mask_img, confounds = same_data
    options = dict(
        t_r=1.0,
        method=method,
        noise_model=noise_model,
        noise_normalisation=noise_normalisation,
        signal_scaling=signal_scaling,
        confounds=confounds,
        return_residuals=True,
    )
    events = [_events(), _events()]
    on_surface = estimate_patterns(pairs, events, mask_img=mask, **options)
    in_volume = estimate_patterns(volumes, events, mask_img=mask_img, **options)
    assert np.array_equal(on_surface.patterns, in_volume.patterns)
    for a, b in zip(on_surface.residuals, in_volume.residuals, strict=True):
        assert np.array_equal(a, b)
    assert list(on_surface.conditions) == list(in_volume.conditions)
    # the NaN vertex is left out as the NaN voxel is
    kept = on_surface.mask_img
    assert isinstance(kept, surface.SurfaceMask)
    assert kept.n_vertices == in_volume.mask_info.n_voxels == N_LEFT + N_RIGHT - 4
    assert not kept.right[3] and kept.n_nonfinite == in_volume.mask_info.n_nonfinite == 1
    assert list(kept.nonfinite_per_run) == [0, 1]
    left, right = on_surface.to_img()
    assert len(left.darrays) == on_surface.patterns.shape[0]
    assert np.isnan(right.darrays[0].data[3]) and np.isnan(left.darrays[0].data[0])


def test_surface_runs_refuse_bad_inputs(same_data, tmp_path):
    pairs, volumes, mask, _, _ = same_data
    events = [_events(), _events()]
    (l0, r0), (l1, r1) = pairs

    def fit(runs, n_events=2, **kwargs):
        return estimate_patterns(runs, events[:n_events], t_r=1.0, **kwargs)

    with pytest.raises(ValueError, match=r"\(left, right\) pair"):
        fit([l0, l1])  # GIFTI files not in pairs
    with pytest.raises(ValueError, match=r"run_imgs\[0\] must be a \(left, right\) pair"):
        fit([(l0,), (l1, r1)])  # a hemisphere missing
    missing = tmp_path / "r9_hemi-R_bold.func.gii"
    with pytest.raises(ValueError, match=f"no such file '{missing}'"):
        fit([(l0, missing), (l1, r1)])
    with pytest.raises(ValueError, match=rf"'{volumes[0]}' is not a GIFTI file"):
        fit([(volumes[0], r0), (l1, r1)])
    fake = tmp_path / "fake_hemi-L_bold.func.gii"
    fake.write_text("not xml")
    with pytest.raises(ValueError, match=rf"'{fake}' could not be read as GIFTI"):
        fit([(fake, r0), (l1, r1)])
    with pytest.raises(ValueError, match="mixes surface runs"):
        fit([(l0, r0), volumes[1]])
    short = _save_run(np.ones((N_LEFT - 1, N_SCANS)), tmp_path / "short_hemi-L.func.gii")
    with pytest.raises(ValueError, match=rf"run_imgs\[1\] \(left\): '{short}' has 39 vertices"):
        fit([(l0, r0), (short, r1)])
    with pytest.raises(ValueError, match=rf"'{l0}' has 40 vertices; the mask's mesh"):
        fit([(l0, r0), (l1, r1)], mask_img=surface.fsaverage_space("fsaverage5").mask)
    few = _save_run(np.ones((N_RIGHT, N_SCANS - 1)), tmp_path / "few_hemi-R.func.gii")
    with pytest.raises(ValueError, match=r"has 60 volume\(s\), the right .* 59"):
        fit([(l0, few), (l1, r1)])
    with pytest.raises(ValueError, match="smoothing_fwhm applies to volume runs"):
        fit(pairs, smoothing_fwhm=4.0)


def test_surface_map_names_and_sidecars(tmp_path):
    entities = {
        "sub": "01",
        "task": "emo",
        "space": "fsaverage5",
        "model": "crosschannel",
        "layer": "fc1",
        "stat": "spearman",
    }
    left, right = surface.surface_map_names(entities)
    assert left == (
        "sub-01_task-emo_hemi-L_space-fsaverage5_model-crosschannel_layer-fc1_"
        "stat-spearman_statmap.func.gii"
    )
    assert right == left.replace("hemi-L", "hemi-R")
    mask = surface.SurfaceMask(
        np.array([True, False, True]), np.array([False, True]), space="fsaverage5"
    )
    values = np.array([[1.0, 2.0, 3.0], [4.0, np.nan, 6.0]])
    paths = surface.save_surface_maps(
        values, mask, tmp_path, entities, sidecar={"Comparator": "spearman"}
    )
    assert [p.name for p in paths] == [left, right]
    back = surface.load_surface_data(*paths, mask)
    assert np.array_equal(back, values.astype(np.float32), equal_nan=True)
    full = surface.load_surface_data(*paths)
    assert np.array_equal(full[0], [1.0, np.nan, 2.0, np.nan, 3.0], equal_nan=True)
    side = json.loads(paths[0].with_name(left.replace(".func.gii", ".json")).read_text())
    assert side["Hemisphere"] == "L" and side["Comparator"] == "spearman"
    assert side["NumberOfVertices"] == 3 and side["VerticesInMask"] == 2
    with pytest.raises(ValueError, match="'hemi'"):
        surface.surface_map_names({"hemi": "L"})


def test_fsaverage_space():
    space = surface.fsaverage_space("fsaverage5")
    assert space.left.n_vertices == space.right.n_vertices == 10242
    assert np.array_equal(space.mask.left, ~surface.fsaverage_medial_wall("left"))
    assert np.array_equal(space.mask.right, ~surface.fsaverage_medial_wall("right"))
    assert space.mask.n_vertices == 20484 - 263 - 304
    with pytest.raises(ValueError, match="not shipped offline: give mesh_files"):
        surface.fsaverage_space("fsaverage6")
    with pytest.raises(ValueError, match="space must be one of"):
        surface.fsaverage_space("fsLR")


def _auc(positive, negative):
    """The area under the ROC curve: P(a planted score > a score elsewhere)."""
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([positive, negative]))
    n_pos, n_neg = positive.size, negative.size
    return (ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def test_planted_patch_on_fsaverage5_end_to_end(tmp_path):
    """GIFTI runs -> GLM -> searchlight on geodesic discs -> GIFTI maps, on fsaverage5."""
    from nilearn.glm.first_level import make_first_level_design_matrix

    rng = np.random.default_rng(3)
    space = surface.fsaverage_space("fsaverage5")
    n_cond, t_r, n_scans = 8, 2.0, 40
    category = np.arange(n_cond) // 4  # two categories of four stimuli
    model = (category[:, None] != category[None, :]).astype(float)[np.triu_indices(n_cond, 1)]
    # the patch: left vertices within 15 mm (3-D) of one vertex, off the medial wall
    coords = space.left.coords
    centre = int(np.flatnonzero(space.mask.left)[2000])
    patch = (np.linalg.norm(coords - coords[centre], axis=1) <= 15.0) & space.mask.left
    n_full = 2 * 10242
    in_patch = np.concatenate([patch, np.zeros(10242, dtype=bool)])
    profiles = rng.standard_normal((2, n_full))
    runs, events = [], []
    for run in range(2):
        onsets = rng.permutation(n_cond) * 8.0 + 4.0
        table = pd.DataFrame(
            {"onset": onsets, "duration": 1.0, "stim_file": [f"c{k}" for k in range(n_cond)]}
        )
        design = make_first_level_design_matrix(
            np.arange(n_scans) * t_r,
            table.rename(columns={"stim_file": "trial_type"}),
            hrf_model="glover",
            drift_model=None,
        )
        x = design[[f"c{k}" for k in range(n_cond)]].to_numpy()
        betas = 0.5 * rng.standard_normal((n_cond, n_full))
        betas[:, in_patch] += 2.0 * profiles[category][:, in_patch]
        bold = 100.0 + x @ betas + rng.standard_normal((n_scans, n_full))
        pair = []
        for k, hemi in enumerate("LR"):
            path = (
                tmp_path / f"sub-01_task-t_run-{run + 1}_hemi-{hemi}_space-fsaverage5_bold.func.gii"
            )
            pair.append(_save_run(bold[:, k * 10242 : (k + 1) * 10242].T, path))
        runs.append(tuple(pair))
        events.append(table)

    result = estimate_patterns(runs, events, t_r=t_r, drift_model=None)  # mask: the medial wall
    mask = result.mask_img
    assert np.array_equal(mask.left, space.mask.left)
    assert np.array_equal(mask.right, space.mask.right)
    assert result.patterns.shape == (2 * n_cond, mask.n_vertices)

    discs = space.neighbourhoods(7.0, mask=mask, cache_dir=tmp_path / "discs")
    again = space.neighbourhoods(7.0, mask=mask, cache_dir=tmp_path / "discs")  # from the cache
    assert np.array_equal(again.indices, discs.indices)
    scores = searchlight_rsa_array(
        result.patterns,
        discs,
        model,
        conditions=result.conditions,
        min_voxels=5,
        n_jobs=1,
    )[:, 0]
    planted = mask.stack(patch, np.zeros(10242, dtype=bool))
    finite = np.isfinite(scores)
    assert finite.mean() > 0.99
    auc = _auc(scores[planted & finite], scores[~planted & finite])
    assert auc >= 0.9, auc
    assert np.argmax(np.where(finite, scores, -np.inf)) in np.flatnonzero(planted)

    entities = {"sub": "01", "task": "t", "space": "fsaverage5", "model": "m", "layer": "l1"}
    entities["stat"] = "spearman"
    left, right = surface.save_surface_maps(scores, mask, tmp_path / "out", entities)
    assert left.name == (
        "sub-01_task-t_hemi-L_space-fsaverage5_model-m_layer-l1_stat-spearman_statmap.func.gii"
    )
    back = surface.load_surface_data(left, right, mask)[0]
    assert np.array_equal(back, scores.astype(np.float32), equal_nan=True)
    full_left = surface.load_surface_data(left, right)[0][:10242]
    assert np.all(np.isnan(full_left[~mask.left]))


# ------------------------------------------------ the BIDS App finds fMRIPrep's surface runs
def _surface_derivatives(small, deriv, space="fsaverage5", n_vertices=10242, skip=()):
    """fMRIPrep-style surface outputs of every raw run: ``*_hemi-{L,R}_space-<space>_bold
    .func.gii`` (the raw run's volumes, random vertices) and the run's confounds."""
    deriv.mkdir(parents=True, exist_ok=True)
    (deriv / "dataset_description.json").write_text(
        json.dumps(
            {
                "Name": "fmriprep",
                "BIDSVersion": "1.10.0",
                "DatasetType": "derivative",
                "GeneratedBy": [{"Name": "fMRIPrep"}],
            }
        )
    )
    rng = np.random.default_rng(0)
    for bold in sorted(small.root.rglob("*_bold.nii.gz")):
        func = deriv / bold.relative_to(small.root).parent
        func.mkdir(parents=True, exist_ok=True)
        stem = bold.name[: -len("_bold.nii.gz")]
        n_scans = nib.load(bold).shape[-1]
        for hemi in "LR":
            name = f"{stem}_hemi-{hemi}_space-{space}_bold.func.gii"
            if name in skip:
                continue
            data = 100 + rng.standard_normal((n_vertices, n_scans))
            _save_run(data, func / name)
        confounds = pd.DataFrame(rng.standard_normal((n_scans, 2)), columns=["trans_x", "rot_x"])
        confounds.to_csv(func / f"{stem}_desc-confounds_timeseries.tsv", sep="\t", index=False)
    return deriv


@pytest.fixture(scope="module")
def small_bids(tmp_path_factory):
    from .bids_fixtures import make_small_bids

    return make_small_bids(
        tmp_path_factory.mktemp("surfbids") / "bids", n_subjects=1, n_runs=2, shape=(5, 5, 5)
    )


def _config(small, tmp_path, **kwargs):
    from pathlib import Path

    from dnnrsa.bids_app.config import RunConfig

    derivatives = kwargs.pop("derivatives", ())
    return RunConfig(
        bids_dir=small.root.resolve(),
        output_dir=tmp_path / "out",
        analysis_level="participant",
        work_dir=tmp_path / "work",
        derivatives=tuple(Path(d).resolve() for d in derivatives),
        model_rdms=(("category", small.model_rdm),),
        **kwargs,
    )


def test_collect_finds_the_surface_runs_and_the_glm_fits_them(small_bids, tmp_path):
    from dnnrsa.bids_app.collect import collect_inputs
    from dnnrsa.bids_app.errors import UsageError

    deriv = _surface_derivatives(small_bids, tmp_path / "prep")
    config = _config(small_bids, tmp_path, space="fsaverage5", derivatives=[deriv])
    inputs = collect_inputs(config, surface=True)["01"]
    assert inputs.space == "fsaverage5" and inputs.mask is None
    assert len(inputs.runs) == 2
    for k, run in enumerate(inputs.runs, start=1):
        assert run.bold.name == f"sub-01_task-cat_run-{k}_hemi-L_space-fsaverage5_bold.func.gii"
        assert run.bold_right == run.bold.with_name(run.bold.name.replace("hemi-L", "hemi-R"))
        assert run.t_r == 2.0  # the raw run's sidecar
        assert run.confounds.name == f"sub-01_task-cat_run-{k}_desc-confounds_timeseries.tsv"
        assert run.mask is None
    result = estimate_patterns(
        [(r.bold, r.bold_right) for r in inputs.runs],
        [r.events for r in inputs.runs],
        t_r=inputs.runs[0].t_r,
        confounds=[r.confounds for r in inputs.runs],
    )
    assert result.mask_img.n_vertices == 20484 - 263 - 304
    assert result.patterns.shape == (2 * len(inputs.conditions), result.mask_img.n_vertices)
    # without surface=True: found, checked, then refused (the participant level cannot yet)
    with pytest.raises(UsageError, match="does not analyse surface runs yet") as info:
        collect_inputs(config)
    assert info.value.exit_code == 64


def test_the_app_refuses_surface_runs_before_any_computation(small_bids, tmp_path, capsys):
    from dnnrsa.bids_app.run import main

    deriv = _surface_derivatives(small_bids, tmp_path / "prep")
    argv = [str(small_bids.root), str(tmp_path / "out"), "participant", "--skip-bids-validation"]
    argv += ["--model-rdm", f"category={small_bids.model_rdm}", "-w", str(tmp_path / "work")]
    assert main([*argv, "--space", "fsaverage5", "-d", str(deriv)]) == 64
    assert "2 surface run(s) found" in capsys.readouterr().err
    assert not list((tmp_path / "work").rglob("dnnrsa_participant_wf"))


def test_collect_refuses_broken_surface_runs(small_bids, tmp_path):
    from dnnrsa.bids_app.collect import collect_inputs
    from dnnrsa.bids_app.errors import DatasetInvalid, InputMissing, NothingSelected, UsageError

    missing = "sub-01_task-cat_run-2_hemi-R_space-fsaverage5_bold.func.gii"
    deriv = _surface_derivatives(small_bids, tmp_path / "a", skip=(missing,))
    with pytest.raises(InputMissing, match=f"its right hemisphere {missing} is missing"):
        collect_inputs(_config(small_bids, tmp_path, space="fsaverage5", derivatives=[deriv]))
    deriv = _surface_derivatives(small_bids, tmp_path / "b", n_vertices=642)
    with pytest.raises(DatasetInvalid, match="642 vertices; fsaverage5 has 10242"):
        collect_inputs(_config(small_bids, tmp_path, space="fsaverage5", derivatives=[deriv]))
    with pytest.raises(NothingSelected, match="spaces found .*: fsaverage5"):
        collect_inputs(_config(small_bids, tmp_path, space="fsaverage6", derivatives=[deriv]))
    with pytest.raises(UsageError, match="give their folder with -d"):
        collect_inputs(_config(small_bids, tmp_path, space="fsaverage5"))
