"""Memory the participant level's GLM and searchlight nodes declare to nipype."""

from __future__ import annotations

import numpy as np
import pytest

from dnnrsa.bids_app.resources import BASE_GB, glm_memory_gb, searchlight_memory_gb

from .bids_fixtures import make_small_bids

RUN = (75, 92, 80, 245)  # the MNI 2 mm box of benchmarks/study.py, one run


def test_glm_memory_grows_with_the_data():
    one = glm_memory_gb([RUN], n_cond=72, mask_voxels=235_375)
    assert BASE_GB < one
    longer = glm_memory_gb([(*RUN[:3], 490)], n_cond=72, mask_voxels=235_375)
    more_runs = glm_memory_gb([RUN] * 6, n_cond=72, mask_voxels=235_375)
    bigger_grid = glm_memory_gb([(97, 115, 97, 245)], n_cond=72, mask_voxels=235_375)
    no_mask = glm_memory_gb([RUN], n_cond=72)
    assert one < longer and one < more_runs and one < bigger_grid and one < no_mask
    ols = glm_memory_gb([RUN], n_cond=72, mask_voxels=235_375, noise_model="ols")
    assert ols < one
    jobs = glm_memory_gb([RUN] * 6, n_cond=72, mask_voxels=235_375, n_jobs=2)
    assert more_runs < jobs
    # traced by benchmarks/memory.py (an ellipsoid mask of 171,228 voxels): one run
    # 1.64 GiB with AR(1), 1.01 with OLS; two runs 1.67 and 1.35 GiB. The estimates
    # cover each, by at most half as much again
    for runs, model, traced in (
        (1, "ar1", 1.64),
        (1, "ols", 1.01),
        (2, "ar1", 1.67),
        (2, "ols", 1.35),
    ):
        declared = glm_memory_gb([RUN] * runs, n_cond=24, mask_voxels=171_228, noise_model=model)
        assert traced + 0.2 < declared < traced * 1.5 + BASE_GB, (runs, model, declared)


def test_searchlight_memory_grows_with_the_data():
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    kw = {"affine": affine, "radius_mm": 6.0, "budget_mb": 1024}
    base = searchlight_memory_gb((75, 92, 80), 235_375, n_runs=6, n_cond=72, n_models=116, **kw)
    assert base > BASE_GB + 1.0  # at least the block budget
    more_runs = searchlight_memory_gb(
        (75, 92, 80), 235_375, n_runs=8, n_cond=72, n_models=116, **kw
    )
    more_models = searchlight_memory_gb(
        (75, 92, 80), 235_375, n_runs=6, n_cond=72, n_models=500, **kw
    )
    bigger = searchlight_memory_gb((97, 115, 97), 400_000, n_runs=6, n_cond=72, n_models=116, **kw)
    assert base < more_runs and base < more_models and base < bigger
    kw["budget_mb"] = 4096
    assert base < searchlight_memory_gb(
        (75, 92, 80), 235_375, n_runs=6, n_cond=72, n_models=116, **kw
    )


@pytest.fixture(scope="module")
def datasets(tmp_path_factory, bids_one_subject):
    root = tmp_path_factory.mktemp("resources")
    return {
        "small": bids_one_subject,
        "runs": make_small_bids(root / "runs", n_subjects=1, n_runs=4),
        "grid": make_small_bids(root / "grid", n_subjects=1, n_runs=2, shape=(16, 16, 16)),
    }


def _nodes(data, tmp_path, *extra):
    from dnnrsa.bids_app.collect import collect_inputs
    from dnnrsa.bids_app.parser import build_parser
    from dnnrsa.bids_app.run import config_from_options
    from dnnrsa.bids_app.workflows import init_participant_wf

    argv = [str(data.root), str(tmp_path / "o"), "participant", "-w", str(tmp_path / "w")]
    argv += ["--model-rdm", f"category={data.model_rdm}", "--skip-bids-validation", *extra]
    config = config_from_options(build_parser().parse_args(argv))
    wf = init_participant_wf(config, collect_inputs(config)["01"])
    return wf.get_node("estimate_patterns").mem_gb, wf.get_node("searchlight").mem_gb


def test_declared_memory_grows_with_the_data(datasets, tmp_path):
    """The GLM and searchlight nodes declare more memory for more runs, a larger grid
    and a larger block budget; AR(1) more than OLS."""
    glm, sl = _nodes(datasets["small"], tmp_path)
    glm_runs, sl_runs = _nodes(datasets["runs"], tmp_path)
    glm_grid, sl_grid = _nodes(datasets["grid"], tmp_path)
    assert glm < glm_runs and glm < glm_grid
    assert sl < sl_runs and sl < sl_grid
    glm_ols, _ = _nodes(datasets["grid"], tmp_path, "--noise-model", "ols")
    assert glm_ols < glm_grid
    _, sl_budget = _nodes(datasets["small"], tmp_path, "--searchlight-memory-mb", "4096")
    assert sl_budget > sl + 2.9
