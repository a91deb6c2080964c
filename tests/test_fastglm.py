"""dnnrsa._fastglm against nilearn's own GLM: run_glm + compute_contrast (LSA) and one
nilearn GLM per trial (LSS), OLS and AR(1), effects and t, on real and simulated runs."""

from __future__ import annotations

import functools
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import scipy.linalg

from dnnrsa import _fastglm
from dnnrsa._fastglm import ar1_coefficients, fit_lsa, fit_lss, lss_pieces
from tests.conftest import shared_data

RTOL = 1e-8


def _design(frame_times, events, drift_model, confounds):
    from nilearn.glm.first_level import make_first_level_design_matrix

    names = None if confounds is None else [f"conf{j}" for j in range(confounds.shape[1])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make_first_level_design_matrix(
            frame_times,
            events,
            hrf_model="glover",
            drift_model=drift_model,
            high_pass=0.01,
            drift_order=2,
            add_regs=confounds,
            add_reg_names=names,
        )


def _lss_designs(frame_times, events, drift_model, confounds):
    """nilearn's LSS design of every trial (as dnnrsa.glm builds them)."""
    designs = []
    for trial in range(len(events)):
        ev = events[["onset", "duration"]].copy()
        ev["trial_type"] = np.where(np.arange(len(events)) == trial, "lsstarget", "lssothers")
        designs.append(_design(frame_times, ev, drift_model, confounds))
    return designs


def _nilearn(y, x, columns, noise_model):
    """nilearn's run_glm, then compute_contrast of each column: (effects, t)."""
    from nilearn.glm.contrasts import compute_contrast
    from nilearn.glm.first_level import run_glm

    x = np.asarray(x, dtype=np.float64)
    labels, results = run_glm(y, x, noise_model=noise_model)
    effects, stats = [], []
    for column in columns:
        con = np.zeros(x.shape[1])
        con[column] = 1.0
        contrast = compute_contrast(labels, results, con, stat_type="t")
        effects.append(contrast.effect_size())
        stats.append(contrast.stat())
    return np.array(effects), np.array(stats)


def _nilearn_lss(y, designs, trials, noise_model):
    """One complete nilearn GLM per trial: the target's (effect, t) of each trial."""
    refs = [
        _nilearn(y, designs[k], [list(designs[k].columns).index("lsstarget")], noise_model)
        for k in trials
    ]
    return np.array([r[0][0] for r in refs]), np.array([r[1][0] for r in refs])


def _assert_equal(got, ref, what):
    """Equal to 1e-8 relative to the map's largest value, and to 1e-8 relative per value
    wherever the value is not tiny against the map."""
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape, what
    scale = np.abs(ref).max(axis=-1, keepdims=True)
    err = np.abs(got - ref)
    assert np.all(err <= RTOL * scale), f"{what}: {np.max(err / scale):.3g} of the map's scale"
    big = np.abs(ref) > 1e-3 * scale
    assert np.all(err[big] <= RTOL * np.abs(ref[big])), (
        f"{what}: {np.max(err[big] / np.abs(ref[big])):.3g} relative"
    )


# ---------------------------------------------------------------------------
# real data: Haxby et al. (2001), subject 1
# ---------------------------------------------------------------------------


@functools.cache
def _haxby():
    """Real BOLD time series (121 scans, TR 2.5 s) fitted with run 1's events and motion.

    The voxels: the 25 mm image of run 1 (600) and the in-brain voxels of the one-slice
    image of runs 1, 2 and 3 (530 each), 2,190 in all, scaled to percent signal change
    as dnnrsa.glm does (nilearn's mean_scaling).
    """
    from nilearn.glm.first_level import mean_scaling

    bold = shared_data("haxby2001", "sub001", "BOLD")
    series = []
    for run, image in [
        (1, "bold_25mm"),
        (1, "bold_1slice"),
        (2, "bold_1slice"),
        (3, "bold_1slice"),
    ]:
        data = nib.load(bold / f"task001_run{run:03d}" / f"{image}.nii.gz").get_fdata()
        data = data.reshape(-1, data.shape[-1]).T
        series.append(data[:, data.mean(axis=0) > 0])
    y = np.concatenate(series, axis=1)
    y, _ = mean_scaling(y, 0)
    events = pd.read_csv(bold / "task001_run001" / "bold_events.tsv", sep="\t")
    motion = np.loadtxt(bold / "task001_run001" / "bold_moest.txt")
    frame_times = 2.5 * np.arange(y.shape[0])
    return y, events, motion, frame_times


REAL_CASES = [
    ("cosine", False),
    ("cosine", True),
    ("polynomial", False),
    ("polynomial", True),
]


@functools.cache
def _haxby_lsa_case(drift_model, confounds, noise_model):
    y, events, motion, frame_times = _haxby()
    design = _design(frame_times, events, drift_model, motion if confounds else None)
    columns = sorted(events["trial_type"].unique())
    cols = [list(design.columns).index(c) for c in columns]
    return y, design, cols, _nilearn(y, design.to_numpy(), cols, noise_model)


@functools.cache
def _haxby_lss_case(drift_model, confounds, noise_model):
    y, events, motion, frame_times = _haxby()
    designs = _lss_designs(frame_times, events, drift_model, motion if confounds else None)
    return y, designs, _nilearn_lss(y, designs, range(len(designs)), noise_model)


def test_the_real_data():
    y, events, motion, _ = _haxby()
    assert y.shape == (121, 2190)
    assert len(events) == 8 and motion.shape == (121, 6)


@pytest.mark.parametrize("noise_model", ["ols", "ar1"])
@pytest.mark.parametrize(("drift_model", "confounds"), REAL_CASES)
def test_lsa_equals_nilearn_on_real_data(drift_model, confounds, noise_model):
    y, design, cols, (ref_effect, ref_t) = _haxby_lsa_case(drift_model, confounds, noise_model)
    for output, ref in [("effect", ref_effect), ("t", ref_t)]:
        got = fit_lsa(y, design, cols, output=output, noise_model=noise_model)
        _assert_equal(got, ref, f"LSA {noise_model} {output}")
    # names work as indices do
    names = [design.columns[c] for c in cols]
    np.testing.assert_array_equal(
        fit_lsa(y, design, names, "effect", noise_model),
        fit_lsa(y, design, cols, "effect", noise_model),
    )


@pytest.mark.parametrize("noise_model", ["ols", "ar1"])
@pytest.mark.parametrize(("drift_model", "confounds"), REAL_CASES)
def test_lss_equals_one_nilearn_glm_per_trial_on_real_data(drift_model, confounds, noise_model):
    y, designs, (ref_effect, ref_t) = _haxby_lss_case(drift_model, confounds, noise_model)
    own, shared, target = lss_pieces(designs, "lsstarget")
    assert own.shape == (8, 121, 2)
    for output, ref in [("effect", ref_effect), ("t", ref_t)]:
        got = fit_lss(
            y, own, shared, target, output=output, noise_model=noise_model, chunk_size=700
        )
        _assert_equal(got, ref, f"LSS {noise_model} {output}")


def test_ar1_coefficients_are_nilearns_bits_on_real_data():
    from nilearn.glm.first_level.first_level import _yule_walker
    from nilearn.glm.regression import OLSModel

    y, design, _, _ = _haxby_lsa_case("cosine", True, "ols")
    resid = OLSModel(design.to_numpy()).fit(y).residuals
    binned, rho = ar1_coefficients(resid)
    ref = _yule_walker(resid.T, 1)[:, 0]
    np.testing.assert_array_equal(rho, ref)
    ref_binned = np.array([(r * 100).astype(int) * 1.0 / 100 for r in ref])
    np.testing.assert_array_equal(binned, ref_binned)
    assert np.unique(binned).size > 20  # many bins: the refits per bin are exercised


def test_ar1_coefficients_in_blocks_are_nilearns_bits():
    """More voxels than one block of the centring: still nilearn's bits."""
    from nilearn.glm.first_level.first_level import _yule_walker

    rng = np.random.default_rng(3)
    resid = rng.normal(size=(120, 40000))
    resid[1:] += 0.6 * resid[:-1]
    binned, rho = ar1_coefficients(resid)
    ref = _yule_walker(resid.T, 1)[:, 0]
    np.testing.assert_array_equal(rho, ref)
    np.testing.assert_array_equal(binned, (ref * 100).astype(int) * 1.0 / 100)


# ---------------------------------------------------------------------------
# simulated runs with strong autocorrelation, and voxels at the bin edges
# ---------------------------------------------------------------------------

N_SCANS = 200
T_R = 2.0
N_TRIALS = 40
#: the trial of the LSS designs for which voxels are placed at the edges
EDGE_TRIAL = 17
#: (edge, signed distance) of the placed voxels: rho = edge + distance in nilearn's estimate
EDGES = [
    (edge, sign * dist)
    for edge in (0.55, 0.7, -0.05)
    for dist in (1e-6, 1e-10, 1e-13)
    for sign in (1, -1)
]


def _ar1_noise(rng, rho, n_scans):
    noise = np.empty((n_scans, rho.size))
    noise[0] = rng.normal(size=rho.size) / np.sqrt(1 - rho**2)
    for t in range(1, n_scans):
        noise[t] = rho * noise[t - 1] + rng.normal(size=rho.size)
    return noise


def _edge_voxels(x, rng, edges):
    """Series whose OLS residuals on ``x`` have the AR(1) coefficient ``edge + delta``
    (nilearn's estimate, with a residual mean of zero as a constant column gives).

    The residual is ``u + a v`` with ``u`` anticorrelated and ``v`` a slow sine, both orthogonal to the
    design; ``a`` solves ``T S1(a) = rho (T - 1) S0(a)``, a quadratic, exactly."""
    n_scans = x.shape[0]
    proj = np.eye(n_scans) - x @ scipy.linalg.pinv(x)
    out = []
    for edge, delta in edges:
        target = edge + delta
        u = proj @ _ar1_noise(rng, np.array([-0.6]), n_scans)[:, 0]
        phase = rng.uniform(0, 2 * np.pi)
        v = proj @ np.sin(2 * np.pi * np.arange(n_scans) / 24 + phase)

        def lag(p, q):
            return 0.5 * (p[:-1] @ q[1:] + q[:-1] @ p[1:])

        c2 = n_scans * lag(v, v) - target * (n_scans - 1) * (v @ v)
        c1 = 2 * n_scans * lag(u, v) - 2 * target * (n_scans - 1) * (u @ v)
        c0 = n_scans * lag(u, u) - target * (n_scans - 1) * (u @ u)
        roots = np.roots([c2, c1, c0])
        a = float(np.max(roots[np.isreal(roots)].real))
        out.append(x @ rng.normal(size=x.shape[1]) + u + a * v)
    return np.array(out).T


@functools.cache
def _simulated(drift_model="cosine", confounds=True, raw_units=False):
    """A run of 200 scans with 40 trials of 8 conditions, 300 voxels of AR(1) noise with
    rho from 0.5 to 0.8 plus the voxels placed at bin edges (for the LSA design and for
    trial EDGE_TRIAL's LSS design)."""
    rng = np.random.default_rng(7)
    frame_times = T_R * np.arange(N_SCANS)
    onsets = 8.0 + np.cumsum(rng.uniform(7.0, 10.0, N_TRIALS))
    events = pd.DataFrame(
        {
            "onset": onsets,
            "duration": 2.0,
            "trial_type": [f"stim{k % 8}" for k in range(N_TRIALS)],
        }
    )
    conf = None
    if confounds:
        conf = np.cumsum(rng.normal(size=(N_SCANS, 3)), axis=0) * 0.1
    lsa = _design(frame_times, events, drift_model, conf)
    designs = _lss_designs(frame_times, events, drift_model, conf)
    n_vox = 300
    rho = rng.uniform(0.5, 0.8, n_vox)
    y = lsa.to_numpy() @ rng.normal(0.0, 1.0, (lsa.shape[1], n_vox)) + _ar1_noise(rng, rho, N_SCANS)
    y = np.concatenate(
        [
            y,
            _edge_voxels(lsa.to_numpy(), rng, EDGES),
            _edge_voxels(designs[EDGE_TRIAL].to_numpy(), rng, EDGES),
        ],
        axis=1,
    )
    if raw_units:
        y = y + 1000.0 * rng.uniform(0.5, 2.0, y.shape[1])
    return y, events, lsa, designs


def _nilearn_rho(y, x):
    from nilearn.glm.first_level.first_level import _yule_walker
    from nilearn.glm.regression import OLSModel

    return _yule_walker(OLSModel(np.asarray(x)).fit(y).residuals.T, 1)[:, 0]


def test_the_placed_voxels_lie_at_the_bin_edges():
    """The test data do what they claim: nilearn's own estimate of each placed voxel is
    within twice its distance of the edge, on its side."""
    y, _, lsa, designs = _simulated()
    n_edges = len(EDGES)
    for x, block in [
        (lsa, slice(300, 300 + n_edges)),
        (designs[EDGE_TRIAL], slice(300 + n_edges, None)),
    ]:
        rho = _nilearn_rho(y, x)[block]
        for r, (edge, delta) in zip(rho, EDGES, strict=True):
            assert abs(r - (edge + delta)) < max(abs(delta), 1e-14), (r, edge, delta)
            assert np.sign(r - edge) == np.sign(delta)


SIM_CASES = [
    ("cosine", True, False),
    ("polynomial", False, False),
    ("cosine", True, True),
]


@pytest.mark.parametrize("noise_model", ["ols", "ar1"])
@pytest.mark.parametrize(("drift_model", "confounds", "raw_units"), SIM_CASES)
def test_lsa_equals_nilearn_on_autocorrelated_runs(drift_model, confounds, raw_units, noise_model):
    y, events, lsa, _ = _simulated(drift_model, confounds, raw_units)
    cols = [list(lsa.columns).index(c) for c in sorted(events["trial_type"].unique())]
    ref_effect, ref_t = _nilearn(y, lsa.to_numpy(), cols, noise_model)
    for output, ref in [("effect", ref_effect), ("t", ref_t)]:
        got = fit_lsa(y, lsa, cols, output=output, noise_model=noise_model)
        _assert_equal(got, ref, f"LSA {noise_model} {output}")


@pytest.mark.parametrize("noise_model", ["ols", "ar1"])
@pytest.mark.parametrize(("drift_model", "confounds", "raw_units"), SIM_CASES)
def test_lss_equals_one_nilearn_glm_per_trial_on_autocorrelated_runs(
    drift_model, confounds, raw_units, noise_model
):
    y, _, _, designs = _simulated(drift_model, confounds, raw_units)
    own, shared, target = lss_pieces(designs, "lsstarget")
    trials = [0, 1, EDGE_TRIAL, 30, N_TRIALS - 1]
    ref_effect, ref_t = _nilearn_lss(y, designs, trials, noise_model)
    for output, ref in [("effect", ref_effect), ("t", ref_t)]:
        got = fit_lss(
            y, own, shared, target, output=output, noise_model=noise_model, chunk_size=128
        )
        _assert_equal(got[trials], ref, f"LSS {noise_model} {output}")


def test_lss_bins_of_the_edge_voxels_are_nilearns():
    """Each placed voxel's whitened fit is that of nilearn's bin: its t differs from the
    t of the neighbouring bin by far more than the tolerance, so a voxel on the wrong
    side of an edge would fail the comparison."""
    y, _, _, designs = _simulated()
    own, shared, target = lss_pieces(designs, "lsstarget")
    block = slice(300 + len(EDGES), None)
    got = fit_lss(y[:, block], own, shared, target, output="t")[EDGE_TRIAL]
    _, ref = _nilearn_lss(y[:, block], designs, [EDGE_TRIAL], "ar1")
    _assert_equal(got, ref[0], "LSS ar1 t at the edges")
    # the same voxels fitted with the coefficient one bin away give other numbers
    x = designs[EDGE_TRIAL].to_numpy()
    col = list(designs[EDGE_TRIAL].columns).index("lsstarget")
    from nilearn.glm.regression import ARModel

    for v, (edge, delta) in enumerate(EDGES):
        other = np.trunc((edge - delta) * 100) / 100  # the bin on the other side
        assert other != np.trunc((edge + delta) * 100) / 100
        fit = ARModel(x, other).fit(y[:, block][:, v : v + 1])
        t_other = fit.Tcontrast(np.eye(x.shape[1])[col]).t
        assert abs(t_other - got[v]) > 1e-6 * abs(got[v])


def test_global_mean_without_a_constant_column():
    """Without a constant column the residuals' global mean matters (nilearn subtracts
    the mean of the whole residual array, not each voxel's): designs without one."""
    y, _, lsa, designs = _simulated("polynomial", False, False)
    y = y + np.linspace(1.0, 3.0, y.shape[1])  # residual means far from 0
    keep = [c for c in lsa.columns if c != "constant"]
    cols = [keep.index(f"stim{k}") for k in range(8)]
    for noise_model in ["ols", "ar1"]:
        ref_effect, ref_t = _nilearn(y, lsa[keep].to_numpy(), cols, noise_model)
        _assert_equal(
            fit_lsa(y, lsa[keep].to_numpy(), cols, "effect", noise_model), ref_effect, "effect"
        )
        _assert_equal(fit_lsa(y, lsa[keep].to_numpy(), cols, "t", noise_model), ref_t, "t")
    own, shared, target = lss_pieces([d.drop(columns="constant") for d in designs], "lsstarget")
    trials = [0, 20]
    for noise_model in ["ols", "ar1"]:
        refs = [
            _nilearn(y, np.concatenate([own[k], shared], axis=1), [target], noise_model)
            for k in trials
        ]
        got_t = fit_lss(y, own, shared, target, "t", noise_model)[trials]
        got_effect = fit_lss(y, own, shared, target, "effect", noise_model)[trials]
        _assert_equal(got_effect, np.array([r[0][0] for r in refs]), "LSS effect")
        _assert_equal(got_t, np.array([r[1][0] for r in refs]), "LSS t")


def test_lss_trial_outside_the_run_and_a_single_trial():
    """A trial whose regressor is empty (it starts after the run: rounding residue of
    1e-15) goes through the full-design route, where nilearn's pseudo-inverse truncates
    it; one trial alone has no 'others' column."""
    y, events, _, _ = _simulated()
    frame_times = T_R * np.arange(N_SCANS)
    late = pd.concat(
        [
            events,
            pd.DataFrame(
                {"onset": [N_SCANS * T_R + 60.0], "duration": [2.0], "trial_type": ["stim0"]}
            ),
        ],
        ignore_index=True,
    )
    designs = _lss_designs(frame_times, late, "cosine", None)
    own, shared, target = lss_pieces(designs, "lsstarget")
    assert np.abs(own[-1][:, target]).max() < 1e-12 * np.abs(own[0][:, target]).max()
    trials = [3, len(designs) - 1]
    for noise_model in ["ols", "ar1"]:
        ref_effect, ref_t = _nilearn_lss(y, designs, trials, noise_model)
        got_effect = fit_lss(y, own, shared, target, "effect", noise_model)[trials]
        got_t = fit_lss(y, own, shared, target, "t", noise_model)[trials]
        _assert_equal(got_effect[:1], ref_effect[:1], "effect")
        _assert_equal(got_t[:1], ref_t[:1], "t")
        # the empty trial: numerical noise in both (its regressor is rounding residue)
        scale = np.abs(ref_effect[0]).max()
        assert np.abs(ref_effect[1]).max() < 1e-10 * scale
        assert np.abs(got_effect[1]).max() < 1e-10 * scale
        assert np.all(np.isfinite(got_t[1]))
    single = _lss_designs(frame_times, events.iloc[:1], "cosine", None)
    own, shared, target = lss_pieces(single, "lsstarget")
    assert own.shape[2] == 1
    ref_effect, ref_t = _nilearn_lss(y, single, [0], "ar1")
    _assert_equal(fit_lss(y, own, shared, target, "t", "ar1"), ref_t, "single trial t")


def test_lss_pieces_and_errors():
    _, _, _, designs = _simulated()
    own, shared, target = lss_pieces(designs, "lsstarget")
    assert own.shape == (N_TRIALS, N_SCANS, 2) and target == 1
    np.testing.assert_array_equal(
        shared, designs[0].drop(columns=["lssothers", "lsstarget"]).to_numpy()
    )
    by_index, _, _ = lss_pieces([d.to_numpy() for d in designs], 1)
    np.testing.assert_array_equal(by_index, own)
    y = np.zeros((N_SCANS, 3))
    with pytest.raises(ValueError, match="noise_model"):
        fit_lss(y, own, shared, target, noise_model="ar2")
    with pytest.raises(ValueError, match="output"):
        fit_lsa(y, designs[0], [0], output="z")
    with pytest.raises(ValueError, match="not in the design"):
        fit_lsa(y, designs[0], ["missing"])
    with pytest.raises(ValueError, match="scans"):
        fit_lss(y[:-1], own, shared, target)
    assert _fastglm.TINY == 1e-50


def test_device_cpu_and_auto_give_the_same_bits_and_an_invalid_device_is_refused():
    """device="cpu" and device="auto" (the CPU on a machine without a usable GPU) give the
    default call's bits; another device is a ValueError naming the parameter (GPU
    against CPU: tests/test_fastglm_gpu.py)."""
    from dnnrsa.backend import resolve_device

    y, _, lsa, designs = _simulated()
    cols = [c for c in lsa.columns if str(c).startswith("stim")]
    own, shared, target = lss_pieces(designs, "lsstarget")
    devices = ["cpu"] + (["auto"] if resolve_device("auto") == "cpu" else [])
    for noise_model in ("ols", "ar1"):
        for output in ("effect", "t"):
            lsa_ref = fit_lsa(y, lsa, cols, output=output, noise_model=noise_model)
            lss_ref = fit_lss(y, own, shared, target, output=output, noise_model=noise_model)
            for device in devices:
                got = fit_lsa(y, lsa, cols, output=output, noise_model=noise_model, device=device)
                assert type(got) is np.ndarray
                np.testing.assert_array_equal(got, lsa_ref)
                got = fit_lss(
                    y, own, shared, target, output=output, noise_model=noise_model, device=device
                )
                assert type(got) is np.ndarray
                np.testing.assert_array_equal(got, lss_ref)
    with pytest.raises(ValueError, match="device"):
        fit_lsa(y, lsa, cols, device="gpu")
    with pytest.raises(ValueError, match="device"):
        fit_lss(y, own, shared, target, device="tpu")


def test_estimate_patterns_device_cpu_and_auto_and_an_invalid_device():
    from dnnrsa.backend import resolve_device
    from dnnrsa.glm import estimate_patterns

    rng = np.random.default_rng(5)
    shape, n_scans = (4, 4, 3), 100
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    events = pd.DataFrame({"onset": 6.0 + 15.0 * np.arange(6), "duration": 2.0})
    events["stim_file"] = [f"s{k % 3}" for k in range(6)]
    y = _ar1_noise(rng, rng.uniform(0.3, 0.8, 48), n_scans) + 100.0
    img = nib.Nifti1Image(y.T.reshape(*shape, n_scans), affine)
    mask = nib.Nifti1Image(np.ones(shape, dtype=np.uint8), affine)
    devices = ["cpu"] + (["auto"] if resolve_device("auto") == "cpu" else [])
    for method in ("lsa", "lss"):
        kwargs = dict(t_r=T_R, mask_img=mask, method=method, output="t")
        ref = estimate_patterns([img], [events], **kwargs).patterns
        for device in devices:
            got = estimate_patterns([img], [events], device=device, **kwargs).patterns
            np.testing.assert_array_equal(got, ref)
    with pytest.raises(ValueError, match="device"):
        estimate_patterns([img], [events], t_r=T_R, mask_img=mask, device="gpu")


# ---------------------------------------------------------------------------
# through dnnrsa.glm.estimate_patterns: nilearn's FirstLevelModel per trial
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hrf_model", "noise_model", "output", "confounds"),
    [
        ("glover", "ar1", "t", True),
        ("glover + derivative", "ar1", "effect", False),
        ("spm", "ols", "t", False),
    ],
)
def test_estimate_patterns_lss_equals_nilearn_per_trial(hrf_model, noise_model, output, confounds):
    """estimate_patterns' LSS: the pieces from one nilearn design (one regressor per
    trial) or, with HRF derivatives, from each trial's nilearn design; each condition's
    pattern is the mean of its trials' nilearn FirstLevelModel contrasts."""
    from nilearn.glm.first_level import FirstLevelModel
    from nilearn.masking import apply_mask

    from dnnrsa.glm import estimate_patterns

    rng = np.random.default_rng(11)
    shape, n_scans = (4, 4, 3), 120
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    conditions = [f"s{k}.mp4" for k in range(6)]
    labels = np.repeat(conditions, 2)[rng.permutation(12)]
    events = pd.DataFrame(
        {"onset": 6.0 + 18.0 * np.arange(12) + rng.uniform(0, 4, 12), "duration": 2.0}
    )
    events["stim_file"] = labels
    n_vox = int(np.prod(shape))
    y = _ar1_noise(rng, rng.uniform(0.5, 0.8, n_vox), n_scans) + 100.0
    img = nib.Nifti1Image(y.T.reshape(*shape, n_scans), affine)
    mask = nib.Nifti1Image(np.ones(shape, dtype=np.uint8), affine)
    conf = pd.DataFrame(rng.normal(size=(n_scans, 2)), columns=["a", "b"]) if confounds else None
    res = estimate_patterns(
        [img],
        [events],
        t_r=T_R,
        mask_img=mask,
        method="lss",
        noise_model=noise_model,
        output=output,
        hrf_model=hrf_model,
        confounds=None if conf is None else [conf],
    )
    trials = np.empty((12, n_vox))
    for trial in range(12):
        ev = events[["onset", "duration"]].copy()
        ev["trial_type"] = np.where(np.arange(12) == trial, "lsstarget", "lssothers")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            flm = FirstLevelModel(
                t_r=T_R, mask_img=mask, noise_model=noise_model, hrf_model=hrf_model
            ).fit(img, ev, confounds=conf)
            names = list(flm.design_matrices_[0].columns)
            con = np.eye(len(names))[names.index("lsstarget")]
            kind = "effect_size" if output == "effect" else "stat"
            trials[trial] = apply_mask(flm.compute_contrast(con, output_type=kind), mask)
    ref = np.stack([trials[labels == c].mean(axis=0) for c in sorted(conditions)])
    _assert_equal(res.patterns, ref, f"estimate_patterns LSS {hrf_model} {noise_model} {output}")
