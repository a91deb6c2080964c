"""Runs of estimate_patterns fitted at once: the same numbers, within a memory budget."""

from __future__ import annotations

import tracemalloc
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from dnnrsa.glm import estimate_patterns, run_fit_memory_gb

T_R = 2.0


def _subject(folder, shape=(8, 9, 7), n_scans=(70, 76, 64), n_conditions=4, seed=0):
    """Runs of different lengths (so that a run out of order would show) with AR(1)
    noise, written as NIfTI files; events with two trials per condition; confounds."""
    rng = np.random.default_rng(seed)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    files, events, confounds = [], [], []
    for run, n in enumerate(n_scans):
        noise = rng.standard_normal(shape + (n,))
        for t in range(1, n):
            noise[..., t] += 0.6 * noise[..., t - 1]
        data = 100.0 + 3.0 * rng.standard_normal(shape)[..., None] + noise
        path = folder / f"run{run}.nii"
        nib.save(nib.Nifti1Image(data.astype(np.float32), affine), path)
        files.append(str(path))
        labels = np.repeat([f"c{k}" for k in range(n_conditions)], 2)
        onsets = 4.0 + np.arange(len(labels)) * (n - 10) * T_R / len(labels)
        events.append(
            pd.DataFrame({"onset": onsets, "duration": 2.0, "trial_type": rng.permutation(labels)})
        )
        confounds.append(pd.DataFrame(rng.standard_normal((n, 2)), columns=["a", "b"]))
    mask = np.zeros(shape, dtype=np.uint8)
    mask[1:-1, 1:-1, 1:-1] = 1
    nib.save(nib.Nifti1Image(mask, affine), folder / "mask.nii")
    return files, events, confounds, str(folder / "mask.nii")


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    return _subject(tmp_path_factory.mktemp("glm_parallel"))


@pytest.mark.parametrize("method", ["lsa", "lss"])
@pytest.mark.parametrize("noise_model", ["ar1", "ols"])
def test_runs_at_once_give_the_same_patterns(subject, method, noise_model):
    files, events, confounds, mask = subject
    kwargs = {
        "t_r": T_R,
        "mask_img": mask,
        "confounds": confounds,
        "method": method,
        "noise_model": noise_model,
        "condition_column": "trial_type",
    }
    for output in ("effect", "t"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            one = estimate_patterns(files, events, output=output, n_jobs=1, **kwargs)
            two = estimate_patterns(files, events, output=output, n_jobs=2, **kwargs)
            every = estimate_patterns(files, events, output=output, n_jobs=None, **kwargs)
        assert np.array_equal(one.patterns, two.patterns), output
        assert np.array_equal(one.patterns, every.patterns), output
        assert np.array_equal(one.runs, two.runs)
        assert [len(d) for d in two.design_matrices] == [70, 76, 64]
        for a, b in zip(one.design_matrices, two.design_matrices, strict=True):
            assert a.equals(b)


def test_runs_at_once_keep_residuals_and_noise_normalisation(subject):
    files, events, confounds, mask = subject
    kwargs = {
        "t_r": T_R,
        "mask_img": mask,
        "confounds": confounds,
        "condition_column": "trial_type",
        "noise_normalisation": "univariate",
        "return_residuals": True,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = estimate_patterns(files, events, n_jobs=1, **kwargs)
        two = estimate_patterns(files, events, n_jobs=3, **kwargs)
    assert np.array_equal(one.patterns, two.patterns)
    for a, b in zip(one.residuals, two.residuals, strict=True):
        assert np.array_equal(a, b)


def test_the_budget_bounds_the_runs_at_once(subject, monkeypatch):
    """No more runs at once than run_fit_memory_gb fits in max_memory_gb (one at least)."""
    from dnnrsa import glm

    files, events, _, mask = subject
    seen = []
    real = glm._map_runs

    def spy(tasks, at_once):
        seen.append(at_once)
        return real(tasks, at_once)

    monkeypatch.setattr(glm, "_map_runs", spy)
    one_run = run_fit_memory_gb(76, 6 * 7 * 5, n_grid=8 * 9 * 7, n_trials=8)
    kwargs = {"t_r": T_R, "mask_img": mask, "condition_column": "trial_type", "n_jobs": 3}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for budget, expected in ((None, 3), (2.5 * one_run, 2), (0.5 * one_run, 1)):
            estimate_patterns(files, events, max_memory_gb=budget, **kwargs)
            assert seen[-1] == expected, budget
        estimate_patterns(files, events, **dict(kwargs, n_jobs=8))
        assert seen[-1] == 3  # never more than the runs


# the estimate beside tracemalloc's peak of one run's fit (n_jobs=1): at least the peak,
# at most this many times it (small runs: the fixed allowance weighs more)
ESTIMATE_FACTOR = 3.0


@pytest.mark.parametrize("method", ["lsa", "lss"])
@pytest.mark.parametrize("noise_model", ["ar1", "ols"])
def test_run_memory_estimate_covers_the_traced_peak(tmp_path, method, noise_model):
    shape, n_scans, n_trials = (27, 33, 29), 150, 24
    rng = np.random.default_rng(1)
    ijk = np.indices(shape).reshape(3, -1).T
    inside = (((ijk - np.array(shape) / 2) / (np.array(shape) / 2.2)) ** 2).sum(axis=1) < 1
    mask = inside.reshape(shape)
    data = np.zeros(shape + (n_scans,), dtype=np.float32)
    data[mask] = 100.0 + rng.standard_normal((int(mask.sum()), n_scans))
    affine = np.diag([6.0, 6.0, 6.0, 1.0])
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "run.nii")
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), tmp_path / "mask.nii")
    del data
    events = pd.DataFrame(
        {
            "onset": 6.0 + np.arange(n_trials) * 11.0,
            "duration": 3.0,
            "trial_type": [f"s{k:02d}" for k in range(n_trials)],
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tracemalloc.start()
        try:
            estimate_patterns(
                [str(tmp_path / "run.nii")],
                [events],
                t_r=T_R,
                mask_img=str(tmp_path / "mask.nii"),
                method=method,
                noise_model=noise_model,
                condition_column="trial_type",
            )
            peak = tracemalloc.get_traced_memory()[1] / 2**30
        finally:
            tracemalloc.stop()
    estimate = run_fit_memory_gb(
        n_scans,
        int(mask.sum()),
        n_grid=mask.size,
        n_trials=n_trials,
        method=method,
        noise_model=noise_model,
    )
    assert peak <= estimate <= ESTIMATE_FACTOR * peak, (peak, estimate)


def test_runs_at_once_leave_each_run_its_blas_threads():
    """glm_runs_at_once: no more runs than --nprocs divided by the BLAS threads each
    run's products use, than the runs, or than fit in --mem; one at least."""
    from dnnrsa.bids_app.resources import glm_memory_gb, glm_runs_at_once

    shapes = [(20, 20, 20, 100)] * 6
    kw = {"n_cond": 9, "noise_model": "ar1", "multivariate": False, "method": "lsa"}
    cases = [  # (n_jobs, blas threads, runs at once)
        (2, 2, 1),
        (4, 2, 2),
        (16, 2, 6),
        (16, 1, 6),
        (3, 1, 3),
        (1, 4, 1),
        (2, None, 2),
    ]
    for n_jobs, blas, expected in cases:
        assert glm_runs_at_once(shapes, n_jobs=n_jobs, blas_threads=blas, **kw) == expected
    two = glm_memory_gb(shapes, n_jobs=2, **kw)
    assert glm_runs_at_once(shapes, n_jobs=4, blas_threads=1, mem_gb=two, **kw) == 2
    assert glm_runs_at_once(shapes, n_jobs=4, blas_threads=1, mem_gb=two * 0.99, **kw) == 1


def test_the_node_declares_the_runs_at_once_and_their_memory(bids_two_subjects, tmp_path):
    """The estimate_patterns node fits as many runs at once as --nprocs, the BLAS threads
    and --mem allow, declares the processors they occupy to nipype (n_procs: the runs
    times the BLAS threads, at most --nprocs) with glm_memory_gb of that many runs
    (mem_gb), and passes that memory on as the fits' budget."""
    from dnnrsa._cpus import blas_threads
    from dnnrsa.bids_app.collect import collect_inputs
    from dnnrsa.bids_app.parser import build_parser
    from dnnrsa.bids_app.resources import glm_memory_gb, glm_runs_at_once
    from dnnrsa.bids_app.run import config_from_options
    from dnnrsa.bids_app.workflows import init_participant_wf

    small = bids_two_subjects
    argv = [str(small.root), str(tmp_path / "o"), "participant", "-w", str(tmp_path / "w")]
    argv += ["--model-rdm", f"category={small.model_rdm}", "--skip-bids-validation"]

    def node(*extra):
        config = config_from_options(build_parser().parse_args([*argv, *extra]))
        inputs = collect_inputs(config)["01"]
        shapes = [nib.load(str(r.bold)).shape for r in inputs.runs]
        return config, shapes, init_participant_wf(config, inputs).get_node("estimate_patterns")

    kw = {"n_cond": 9, "noise_model": "ar1", "multivariate": False, "method": "lsa"}
    blas = blas_threads() or 1
    nprocs = 2 * blas  # room for the fixture's two runs at once
    for n in (nprocs, 1):
        config, shapes, glm = node("--nprocs", str(n))
        at_once = glm_runs_at_once(shapes, n_jobs=n, blas_threads=blas, **kw)
        assert at_once == (2 if n == nprocs else 1)
        assert glm.inputs.n_jobs == at_once
        assert glm.n_procs == min(n, at_once * blas)
        assert glm.mem_gb == pytest.approx(glm_memory_gb(shapes, n_jobs=at_once, **kw))
        assert glm.inputs.max_memory_gb == pytest.approx(glm.mem_gb)
    two = glm_memory_gb(shapes, n_jobs=2, **kw)
    assert glm_memory_gb(shapes, n_jobs=1, **kw) < two
    # --mem below what two runs at once declare: one at a time
    _, _, glm = node("--nprocs", str(nprocs), "--mem", f"{two * 0.99:.4f}GB")
    assert glm.inputs.n_jobs == 1
    assert glm.n_procs == min(nprocs, blas)
    assert glm.mem_gb == pytest.approx(glm_memory_gb(shapes, n_jobs=1, **kw))
