"""dnnrsa._fastglm and estimate_patterns on a GPU (CuPy) against the CPU: LSA and LSS,
OLS and AR(1), effects and t. Skipped without a usable CUDA device (tests/conftest.py)."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from dnnrsa._fastglm import fit_lsa, fit_lss, lss_pieces
from tests.test_fastglm import T_R, _ar1_noise, _simulated

pytestmark = pytest.mark.gpu

#: the largest difference from the CPU's numbers, relative to each map's largest value
RTOL = 1e-10


def _assert_close(got, ref, what):
    assert isinstance(got, np.ndarray), what
    assert got.shape == ref.shape, what
    scale = np.abs(ref).max(axis=-1, keepdims=True)
    diff = float(np.max(np.abs(got - ref) / scale))
    assert diff <= RTOL, f"{what}: {diff:.2e} of the map's largest value"


@pytest.mark.parametrize("raw_units", [False, True])
@pytest.mark.parametrize("noise_model", ["ols", "ar1"])
@pytest.mark.parametrize("output", ["effect", "t"])
def test_lsa_on_the_gpu_equals_the_cpu(raw_units, noise_model, output):
    y, _, lsa, _ = _simulated(raw_units=raw_units)
    cols = [c for c in lsa.columns if str(c).startswith("stim")]
    ref = fit_lsa(y, lsa, cols, output=output, noise_model=noise_model)
    got = fit_lsa(y, lsa, cols, output=output, noise_model=noise_model, device="cuda")
    _assert_close(got, ref, f"LSA {noise_model} {output} raw={raw_units}")


@pytest.mark.parametrize("raw_units", [False, True])
@pytest.mark.parametrize("noise_model", ["ols", "ar1"])
@pytest.mark.parametrize("output", ["effect", "t"])
def test_lss_on_the_gpu_equals_the_cpu(raw_units, noise_model, output):
    y, _, _, designs = _simulated(raw_units=raw_units)
    own, shared, target = lss_pieces(designs, "lsstarget")
    ref = fit_lss(y, own, shared, target, output=output, noise_model=noise_model)
    for chunk_size in (16384, 97):  # one block, and several
        got = fit_lss(
            y,
            own,
            shared,
            target,
            output=output,
            noise_model=noise_model,
            chunk_size=chunk_size,
            device="cuda",
        )
        _assert_close(got, ref, f"LSS {noise_model} {output} raw={raw_units} {chunk_size}")


@pytest.mark.parametrize("noise_model", ["ols", "ar1"])
def test_lss_with_unshared_totals_on_the_gpu(noise_model):
    """Own columns that do not share a total (all of them in the product), and a
    trial fitted by its full design (collinear with the shared columns)."""
    y, _, _, designs = _simulated()
    own, shared, target = lss_pieces(designs, "lsstarget")
    extra = own[:, :, :1] * 0.5 + np.roll(own[:, :, 1:], 3, axis=1)
    own3 = np.concatenate([own, extra], axis=2)
    own3[0, :, 2] = shared[:, 0]
    for output in ("effect", "t"):
        ref = fit_lss(y, own3, shared, target, output=output, noise_model=noise_model)
        got = fit_lss(
            y, own3, shared, target, output=output, noise_model=noise_model, device="cuda"
        )
        _assert_close(got, ref, f"LSS 3 own columns {noise_model} {output}")


@pytest.mark.parametrize("method", ["lsa", "lss"])
@pytest.mark.parametrize("noise_model", ["ols", "ar1"])
@pytest.mark.parametrize("output", ["effect", "t"])
def test_estimate_patterns_on_the_gpu_equals_the_cpu(method, noise_model, output):
    from dnnrsa.glm import estimate_patterns

    rng = np.random.default_rng(11)
    shape, n_scans = (5, 5, 4), 120
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    conditions = [f"s{k}.mp4" for k in range(6)]
    n_vox = int(np.prod(shape))
    imgs, tables, confs = [], [], []
    for _ in range(2):
        labels = np.repeat(conditions, 2)[rng.permutation(12)]
        events = pd.DataFrame(
            {"onset": 6.0 + 18.0 * np.arange(12) + rng.uniform(0, 4, 12), "duration": 2.0}
        )
        events["stim_file"] = labels
        y = _ar1_noise(rng, rng.uniform(0.3, 0.8, n_vox), n_scans) + 100.0
        imgs.append(nib.Nifti1Image(y.T.reshape(*shape, n_scans), affine))
        tables.append(events)
        confs.append(pd.DataFrame(rng.normal(size=(n_scans, 2)), columns=["a", "b"]))
    mask = nib.Nifti1Image(np.ones(shape, dtype=np.uint8), affine)
    kwargs = dict(
        t_r=T_R,
        mask_img=mask,
        method=method,
        noise_model=noise_model,
        output=output,
        confounds=confs,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = estimate_patterns(imgs, tables, device="cpu", **kwargs)
        got = estimate_patterns(imgs, tables, device="cuda", **kwargs)
    _assert_close(got.patterns, ref.patterns, f"estimate_patterns {method} {noise_model} {output}")
    np.testing.assert_array_equal(got.conditions, ref.conditions)
    np.testing.assert_array_equal(got.runs, ref.runs)
