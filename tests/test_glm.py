"""Tests for dnnrsa.glm: per-stimulus patterns with nilearn's first-level GLM."""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from dnnrsa.glm import (
    estimate_patterns,
    img_to_patterns,
    patterns_to_img,
    shrinkage_covariance,
)
from dnnrsa.rdm import compute_rdm, vector_to_squareform

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
HAXBY = DATA / "haxby2001" / "sub001"

T_R = 2.0
N_SCANS = 150
SHAPE = (4, 4, 3)  # 48 voxels


def _events(rng, conditions, n_repeats=1, isi_s=16.0, start_s=6.0):
    """Well separated trials in random order."""
    labels = np.repeat(np.asarray(conditions), n_repeats)
    labels = labels[rng.permutation(labels.size)]
    onsets = start_s + isi_s * np.arange(labels.size)
    return pd.DataFrame(
        {
            "onset": onsets,
            "duration": np.full(labels.size, 2.0),
            "stim_file": labels,
            "trial_type": labels,
        }
    )


def _simulate(seed=0, n_runs=2, n_conditions=6, n_repeats=1, noise_sd=0.5, n_scans=N_SCANS):
    """BOLD = design @ betas + noise, with nilearn's own design matrix."""
    from nilearn.glm.first_level import make_first_level_design_matrix

    rng = np.random.default_rng(seed)
    conditions = [f"stim{k:02d}.mp4" for k in range(n_conditions)]
    n_vox = int(np.prod(SHAPE))
    betas = rng.normal(0.0, 2.0, size=(n_conditions, n_vox))
    frame_times = np.linspace(0.0, (n_scans - 1) * T_R, n_scans)
    imgs, events = [], []
    for _ in range(n_runs):
        ev = _events(rng, conditions, n_repeats)
        design = make_first_level_design_matrix(
            frame_times, ev[["onset", "duration", "trial_type"]], hrf_model="glover"
        )
        signal = design[conditions].to_numpy() @ betas
        bold = 100.0 + signal + rng.normal(0.0, noise_sd, size=signal.shape)
        data = bold.T.reshape(*SHAPE, n_scans)
        imgs.append(nib.Nifti1Image(data.astype(np.float64), np.diag([3.0, 3.0, 3.0, 1.0])))
        events.append(ev)
    mask = nib.Nifti1Image(np.ones(SHAPE, dtype=np.uint8), np.diag([3.0, 3.0, 3.0, 1.0]))
    return imgs, events, mask, conditions, betas


def test_lsa_recovers_planted_patterns():
    imgs, events, mask, conditions, betas = _simulate(seed=1)
    res = estimate_patterns(imgs, events, t_r=T_R, mask_img=mask, signal_scaling=False)
    assert res.patterns.shape == (2 * len(conditions), int(np.prod(SHAPE)))
    assert res.condition_order == sorted(conditions)
    np.testing.assert_array_equal(res.runs, np.repeat([0, 1], len(conditions)))
    np.testing.assert_array_equal(res.conditions, np.tile(sorted(conditions), 2))
    for run in range(2):
        est = res.patterns[res.runs == run]
        r = np.corrcoef(est.ravel(), betas.ravel())[0, 1]
        assert r > 0.9, r
        # the slope is close to 1: effects are in the units of the planted betas
        slope = np.polyfit(betas.ravel(), est.ravel(), 1)[0]
        assert 0.9 < slope < 1.1


def test_lss_close_to_lsa_for_separated_trials():
    imgs, events, mask, conditions, betas = _simulate(
        seed=2, n_conditions=4, n_repeats=2, n_scans=80
    )
    lsa = estimate_patterns(imgs, events, t_r=T_R, mask_img=mask, noise_model="ols")
    lss = estimate_patterns(imgs, events, t_r=T_R, mask_img=mask, noise_model="ols", method="lss")
    assert lss.patterns.shape == lsa.patterns.shape
    r = np.corrcoef(lss.patterns.ravel(), lsa.patterns.ravel())[0, 1]
    assert r > 0.95, r
    # percent signal change of a baseline 100: betas / 100 * 100
    r_true = np.corrcoef(lss.patterns[:4].ravel(), betas.ravel())[0, 1]
    assert r_true > 0.9


@pytest.mark.parametrize(
    ("noise_model", "output"), [("ols", "effect"), ("ols", "t"), ("ar1", "effect")]
)
def test_lss_equals_direct_nilearn_lss_models(noise_model, output):
    """LSS pattern of each trial = nilearn's own model with that trial against the rest."""
    from nilearn.glm.first_level import FirstLevelModel
    from nilearn.masking import apply_mask

    imgs, events, mask, conditions, _ = _simulate(seed=3, n_runs=1, n_conditions=4, n_scans=80)
    res = estimate_patterns(
        imgs, events, t_r=T_R, mask_img=mask, method="lss", noise_model=noise_model, output=output
    )
    for k, target in enumerate(sorted(conditions)):
        ev = events[0].copy()
        ev["trial_type"] = np.where(ev["stim_file"] == target, "target", "others")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            flm = FirstLevelModel(t_r=T_R, mask_img=mask, noise_model=noise_model, random_state=0)
            flm.fit(imgs[0], ev[["onset", "duration", "trial_type"]])
            output_type = "effect_size" if output == "effect" else "stat"
            ref = apply_mask(flm.compute_contrast("target", output_type=output_type), mask)
        np.testing.assert_allclose(res.patterns[k], np.ravel(ref), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("output", ["effect", "t"])
def test_lsa_equals_nilearn_first_level_model(output):
    from nilearn.glm.first_level import FirstLevelModel
    from nilearn.masking import apply_mask

    imgs, events, mask, conditions, _ = _simulate(seed=4, n_conditions=5, n_scans=100)
    rng = np.random.default_rng(40)
    confounds = [pd.DataFrame(rng.normal(size=(100, 2)), columns=["a", "b"]) for _ in imgs]
    res = estimate_patterns(
        imgs,
        events,
        t_r=T_R,
        mask_img=mask,
        confounds=confounds,
        condition_column="trial_type",
        output=output,
        smoothing_fwhm=4.0,
    )
    output_type = "effect_size" if output == "effect" else "stat"
    for run, (img, ev) in enumerate(zip(imgs, events, strict=True)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            flm = FirstLevelModel(t_r=T_R, mask_img=mask, smoothing_fwhm=4.0, random_state=0).fit(
                img, ev[["onset", "duration", "trial_type"]], confounds=confounds[run]
            )
            for cond in sorted(conditions):
                vec = np.zeros(flm.design_matrices_[0].shape[1])
                vec[list(flm.design_matrices_[0].columns).index(cond)] = 1.0
                # apply_mask, not masker_.transform, which would smooth the map again
                ref = apply_mask(flm.compute_contrast(vec, output_type=output_type), mask)
                got = res.patterns[(res.runs == run) & (res.conditions == cond)][0]
                np.testing.assert_allclose(got, np.ravel(ref), rtol=1e-7, atol=1e-9)


def test_shrinkage_covariance_equals_rsatoolbox():
    noise = pytest.importorskip("rsatoolbox.data.noise")
    rng = np.random.default_rng(5)
    mixing = rng.normal(size=(12, 12))
    res = rng.normal(size=(40, 12)) @ mixing
    for dof in (None, 31):
        ours = shrinkage_covariance(res, dof=dof)
        ref = noise.cov_from_residuals(res, dof=dof, method="shrinkage_diag")
        np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)
    # many observations and independent channels: shrinkage pulls off-diagonals to ~0
    white = rng.normal(size=(2000, 6))
    cov = shrinkage_covariance(white)
    assert np.max(np.abs(cov - np.diag(np.diag(cov)))) < 0.02


def test_noise_normalisation_takes_the_command_line_names():
    """ "none" (the command line's name, the default) and False (the old one) are the same."""
    imgs, events, mask, _, _ = _simulate(seed=6, n_conditions=4, n_scans=80)
    kwargs = {"t_r": T_R, "mask_img": mask, "noise_model": "ols"}
    default = estimate_patterns(imgs, events, **kwargs)
    none = estimate_patterns(imgs, events, noise_normalisation="none", **kwargs)
    old = estimate_patterns(imgs, events, noise_normalisation=False, **kwargs)
    assert default.noise_normalisation == none.noise_normalisation == old.noise_normalisation
    assert none.noise_normalisation == "none"
    np.testing.assert_array_equal(none.patterns, default.patterns)
    np.testing.assert_array_equal(old.patterns, default.patterns)
    multi = estimate_patterns(imgs, events, noise_normalisation="multivariate", **kwargs)
    np.testing.assert_array_equal(
        multi.patterns, estimate_patterns(imgs, events, noise_normalisation=True, **kwargs).patterns
    )


def test_noise_normalisation_whitens_with_residual_covariance():
    from scipy.linalg import fractional_matrix_power

    imgs, events, mask, conditions, _ = _simulate(seed=6, n_conditions=4, n_scans=80)
    kwargs = {"t_r": T_R, "mask_img": mask, "noise_model": "ols"}
    raw = estimate_patterns(imgs, events, return_residuals=True, **kwargs)
    multi = estimate_patterns(
        imgs, events, noise_normalisation=True, return_noise_precision=True, **kwargs
    )
    uni = estimate_patterns(imgs, events, noise_normalisation="univariate", **kwargs)
    assert multi.noise_normalisation == "multivariate"
    n_vox = raw.patterns.shape[1]
    for run in range(2):
        resid = raw.residuals[run]
        x = raw.design_matrices[run].to_numpy()
        # residuals are orthogonal to the design
        np.testing.assert_allclose(x.T @ resid, 0.0, atol=1e-7)
        dof = resid.shape[0] - np.linalg.matrix_rank(x)
        cov = shrinkage_covariance(resid, dof=dof)
        rows = raw.runs == run
        expected = raw.patterns[rows] @ np.real(fractional_matrix_power(cov, -0.5))
        np.testing.assert_allclose(multi.patterns[rows], expected, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(multi.noise_precisions[run], np.linalg.inv(cov), rtol=1e-6)
        assert multi.noise_precisions[run].shape == (n_vox, n_vox)
        sd = np.sqrt(np.sum(resid**2, axis=0) / dof)
        np.testing.assert_allclose(uni.patterns[rows], raw.patterns[rows] / sd, rtol=1e-10)


def test_patterns_img_round_trip():
    rng = np.random.default_rng(7)
    mask_data = rng.random(SHAPE) > 0.4
    mask = nib.Nifti1Image(mask_data.astype(np.uint8), np.eye(4))
    patterns = rng.normal(size=(3, int(mask_data.sum())))
    img = patterns_to_img(patterns, mask)
    data = img.get_fdata()
    assert data.shape == (*SHAPE, 3)
    np.testing.assert_allclose(data[mask_data].T, patterns)  # C order, like nilearn
    assert np.all(data[~mask_data] == 0)
    np.testing.assert_allclose(img_to_patterns(img, mask), patterns)
    one = patterns_to_img(patterns[0], mask)
    assert one.shape == SHAPE
    with pytest.raises(ValueError, match="patterns must have shape"):
        patterns_to_img(patterns[:, :-1], mask)


def test_result_to_img():
    imgs, events, mask, conditions, _ = _simulate(seed=8, n_runs=1, n_conditions=3, n_scans=60)
    res = estimate_patterns(imgs, events, t_r=T_R, mask_img=mask, noise_model="ols")
    img = res.to_img()
    assert img.shape == (*SHAPE, 3)
    np.testing.assert_allclose(img_to_patterns(img, mask), res.patterns)
    assert res.n_runs == 1


def test_validation_errors(tmp_path):
    imgs, events, mask, conditions, _ = _simulate(seed=9, n_conditions=3, n_scans=60)
    ok = {"t_r": T_R, "mask_img": mask, "noise_model": "ols"}
    three_d = nib.Nifti1Image(imgs[0].get_fdata()[..., 0], imgs[0].affine)
    with pytest.raises(ValueError, match=r"run_imgs\[1\] must be a 4D image"):
        estimate_patterns([imgs[0], three_d], events, **ok)
    with pytest.raises(ValueError, match="t_r is required"):
        estimate_patterns(imgs, events, t_r=None, mask_img=mask)
    with pytest.raises(ValueError, match="t_r must be a positive"):
        estimate_patterns(imgs, events, t_r=-2.0, mask_img=mask)
    changed = events[1].copy()
    changed.loc[0, "stim_file"] = "other.mp4"
    with pytest.raises(ValueError, match=r"conditions differ between runs.*other\.mp4"):
        estimate_patterns(imgs, [events[0], changed], **ok)
    empty = nib.Nifti1Image(np.zeros(SHAPE, dtype=np.uint8), mask.affine)
    with pytest.raises(ValueError, match="mask_img is empty"):
        estimate_patterns(imgs, events, t_r=T_R, mask_img=empty)
    with pytest.raises(ValueError, match="method must be one of"):
        estimate_patterns(imgs, events, method="lsx", **ok)
    with pytest.raises(ValueError, match="output must be one of"):
        estimate_patterns(imgs, events, output="z", **ok)
    with pytest.raises(ValueError, match="noise_normalisation must be one of"):
        estimate_patterns(imgs, events, noise_normalisation="full", **ok)
    with pytest.raises(ValueError, match="one table per run"):
        estimate_patterns(imgs, events[:1], **ok)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['condition'\]"):
        estimate_patterns(imgs, events, condition_column="condition", **ok)
    with pytest.raises(ValueError, match="file not found"):
        estimate_patterns(imgs, [events[0], tmp_path / "missing.tsv"], **ok)
    with pytest.raises(ValueError, match=r"confounds\[0\] has 10 rows"):
        estimate_patterns(imgs, events, confounds=[np.zeros((10, 1))] * 2, **ok)


def test_events_and_images_from_files(tmp_path):
    imgs, events, mask, conditions, _ = _simulate(seed=10, n_conditions=3, n_scans=60)
    paths, tsvs = [], []
    for run, (img, ev) in enumerate(zip(imgs, events, strict=True)):
        paths.append(tmp_path / f"run{run}_bold.nii.gz")
        nib.save(img, paths[-1])
        tsvs.append(tmp_path / f"run{run}_events.tsv")
        ev.to_csv(tsvs[-1], sep="\t", index=False)
    nib.save(mask, tmp_path / "mask.nii.gz")
    from_files = estimate_patterns(
        [str(p) for p in paths], tsvs, t_r=T_R, mask_img=tmp_path / "mask.nii.gz"
    )
    in_memory = estimate_patterns(imgs, events, t_r=T_R, mask_img=mask)
    np.testing.assert_allclose(from_files.patterns, in_memory.patterns, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------------------
# real data: Haxby et al. (2001), subject 1, 25 mm
# ---------------------------------------------------------------------------


def _haxby():
    if not HAXBY.is_dir():
        pytest.skip(f"real data not found at {HAXBY} (../shared/data/haxby2001)")
    runs = sorted(HAXBY.glob("BOLD/task001_run*/bold_25mm.nii.gz"))
    events = [run.parent / "bold_events.tsv" for run in runs]
    return runs, events


@pytest.mark.parametrize(
    ("mask", "noise_normalisation"), [("vt", False), ("brain", "multivariate")]
)
def test_haxby_face_house_crossnobis(mask, noise_normalisation):
    runs, events = _haxby()
    res = estimate_patterns(
        runs,
        events,
        t_r=2.5,
        mask_img=HAXBY / "masks" / "25mm" / f"{mask}.nii.gz",
        condition_column="trial_type",
        noise_normalisation=noise_normalisation,
    )
    assert len(runs) == 12
    assert res.condition_order == [
        "bottle",
        "cat",
        "chair",
        "face",
        "house",
        "scissors",
        "scrambledpix",
        "shoe",
    ]
    assert res.patterns.shape[0] == 12 * 8
    for run in range(12):
        assert list(res.conditions[res.runs == run]) == res.condition_order
    rdm = compute_rdm(res.patterns, "crossnobis", conditions=res.conditions, runs=res.runs)
    square = vector_to_squareform(rdm)
    order = res.condition_order
    face_house = square[order.index("face"), order.index("house")]
    assert face_house > 0
    if mask == "brain":
        # whitened whole-brain patterns: faces and houses are the most distinct pair
        assert face_house >= np.max(rdm) - 1e-12
