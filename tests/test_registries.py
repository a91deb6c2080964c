"""The comparator registry and the table of group map statistics drive every consumer:
the command line's choices, the interfaces' enums, the derived constants, the docs tables,
and, for a comparator added only to the registry, ``compare_rdms`` and the searchlight."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from dnnrsa import _registries as reg
from dnnrsa._neighbourhoods import Neighbourhoods
from dnnrsa._registries import (
    COMPARATOR_REGISTRY,
    GROUP_MAP_STATISTICS,
    Comparator,
    comparator_names,
    get_comparator,
    group_map_statistic,
)

REPO = Path(__file__).resolve().parents[1]


def _enum_values(spec_class, name: str) -> tuple[str, ...]:
    return tuple(spec_class().trait(name).trait_type.values)


# --------------------------------------------------------------------------- comparators
def test_registry_entries_are_consistent():
    assert list(COMPARATOR_REGISTRY)[0] == "spearman"  # the default of every choice
    for name, entry in COMPARATOR_REGISTRY.items():
        assert entry.name == name
        # a fast path only where the searchlight accepts the comparator
        assert entry.searchlight or entry.searchlight_kernel is None
    assert comparator_names() == tuple(COMPARATOR_REGISTRY)
    assert comparator_names(searchlight=True) == ("spearman", "pearson", "kendall_tau_a", "cosine")
    assert comparator_names(inference=True) == (
        "spearman",
        "pearson",
        "cosine",
        "corr_cov",
        "cosine_cov",
    )
    assert comparator_names(masked=True) == ("corr_cov", "cosine_cov")


def test_get_comparator_names_the_parameter_and_the_value():
    assert get_comparator("pearson") is COMPARATOR_REGISTRY["pearson"]
    with pytest.raises(
        ValueError, match=r"comparator must be one of \[.*'spearman'.*\]; got 'tau'"
    ):
        get_comparator("tau")
    with pytest.raises(ValueError, match=r"method must be one of .*; got 'corr_cov'"):
        get_comparator("corr_cov", parameter="method", searchlight=True)


def test_core_constants_are_views_of_the_registry():
    from dnnrsa import inference, rdm

    assert rdm.COMPARATORS == comparator_names(searchlight=True)
    assert rdm.WHITENED_COMPARATORS == comparator_names(masked=True)
    assert inference.INFERENCE_COMPARATORS == comparator_names(inference=True)
    assert inference.RSATOOLBOX_NAMES == {
        name: COMPARATOR_REGISTRY[name].rsatoolbox_name for name in comparator_names(inference=True)
    }
    assert inference.RSATOOLBOX_NAMES["pearson"] == "corr"


def test_command_line_choices_are_the_registry_searchlight_comparators():
    from dnnrsa.bids_app.parser import build_parser

    (action,) = [a for a in build_parser()._actions if "--comparator" in a.option_strings]
    assert tuple(action.choices) == comparator_names(searchlight=True)
    assert action.default == "spearman"


def test_interface_enums_are_the_registry_names():
    pytest.importorskip("nipype")
    from dnnrsa.interfaces import roi, searchlight, stats

    assert _enum_values(searchlight._SearchlightInputSpec, "comparator") == comparator_names(
        searchlight=True
    )
    for spec in (roi._RoiEvaluationInputSpec, roi._RoiWeightedInputSpec):
        assert _enum_values(spec, "comparator") == comparator_names(inference=True)
    # the group tests and the layer winners Fisher z transform every map (they take no
    # comparator): every comparator whose maps they test must be correlation-like
    for spec in (stats._GroupTestInputSpec, stats._WinnerInputSpec, stats._GroupModelTestInputSpec):
        assert "comparator" not in spec().copyable_trait_names()
    assert set(comparator_names(searchlight=True)) <= set(comparator_names(fisher_z=True))
    assert searchlight._SearchlightInputSpec().comparator == "spearman"


def _docs_comparator_table() -> list[list[str]]:
    text = (REPO / "docs" / "conventions.md").read_text()
    section = text.split("## Comparators", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows]


def test_docs_table_is_the_registry():
    rows = _docs_comparator_table()
    assert [row[0].strip("`") for row in rows] == list(COMPARATOR_REGISTRY)
    yes_no = {True: "yes", False: "no"}
    for row in rows:
        entry = COMPARATOR_REGISTRY[row[0].strip("`")]
        assert row[1:] == [
            entry.description,
            f"`{entry.rsatoolbox_name}`",
            yes_no[entry.fisher_z],
            yes_no[entry.searchlight],
            yes_no[entry.inference],
        ]


def test_inference_refuses_what_the_registry_does_not_support():
    from dnnrsa import inference

    rng = np.random.default_rng(0)
    models, data = rng.random((2, 15)), rng.random((4, 15))
    with pytest.raises(ValueError, match="method must be one of.*kendall_tau_a has no batched"):
        inference.noise_ceiling(data, "kendall_tau_a")
    with pytest.raises(ValueError, match="method must be one of.*got 'tau'$"):
        inference.fit_weights(models, data, "tau")


# --------------------------------------------------------------------------- a toy comparator
def _neg_mean_sq(a, b, xp):
    """Minus the mean squared difference of the entries (not correlation-like)."""
    sq = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * (a @ b.T)
    return -sq / a.shape[1]


@pytest.fixture
def toy(monkeypatch):
    entry = Comparator(
        "negmsd",
        _neg_mean_sq,
        "minus the mean squared difference of the entries",
        fisher_z=False,
        searchlight=True,
        inference=False,
    )
    monkeypatch.setitem(COMPARATOR_REGISTRY, entry.name, entry)
    return entry


def _scipy_negmsd(a, b):
    """The toy comparator from scipy, NaN entries of a pair dropped from both."""
    out = np.full((a.shape[0], b.shape[0]), np.nan)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            keep = np.isfinite(x) & np.isfinite(y)
            if keep.sum() >= 2:
                out[i, j] = -cdist(x[None, keep], y[None, keep], "sqeuclidean")[0, 0] / keep.sum()
    return out


def test_a_registered_comparator_reaches_compare_rdms(toy):
    from dnnrsa.rdm import compare_rdms

    rng = np.random.default_rng(1)
    a, b = rng.random((5, 21)), rng.random((3, 21))
    np.testing.assert_allclose(compare_rdms(a, b, "negmsd"), _scipy_negmsd(a, b), atol=1e-12)
    a[1, [2, 7]] = np.nan
    b[2, 4] = np.nan
    np.testing.assert_allclose(compare_rdms(a, b, "negmsd"), _scipy_negmsd(a, b), atol=1e-12)
    assert "negmsd" in comparator_names(searchlight=True)
    assert "negmsd" not in comparator_names(fisher_z=True)


def test_a_registered_comparator_reaches_the_searchlight(toy):
    from dnnrsa.searchlight import searchlight_rdms, searchlight_rsa_array

    rng = np.random.default_rng(2)
    nb = Neighbourhoods.from_lists([[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7], [0, 7]], 8)
    patterns = rng.standard_normal((6, 8))
    models = rng.random((3, 15))
    scores = searchlight_rsa_array(
        patterns, nb, models, metric="euclidean", comparator="negmsd", min_voxels=1
    )
    rdms = searchlight_rdms(patterns, nb, metric="euclidean", min_voxels=1)
    np.testing.assert_allclose(scores, _scipy_negmsd(rdms, models), atol=1e-12)
    # models with different missing entries take the NaN-aware path of compare_rdms
    models[0, 3] = np.nan
    models[2, [1, 9]] = np.nan
    scores = searchlight_rsa_array(
        patterns, nb, models, metric="euclidean", comparator="negmsd", min_voxels=1
    )
    np.testing.assert_allclose(scores, _scipy_negmsd(rdms, models), atol=1e-12)


def test_a_registered_comparator_reaches_the_command_line(toy):
    from dnnrsa.bids_app.parser import build_parser

    (action,) = [a for a in build_parser()._actions if "--comparator" in a.option_strings]
    assert "negmsd" in action.choices


def test_a_fast_path_gives_the_numbers_of_the_kernel(monkeypatch, toy):
    """A searchlight fast path of the registry is used, and must equal the kernel."""
    from dnnrsa.searchlight import searchlight_rsa_array

    calls = []

    def score(rdms, state, xp):
        calls.append(rdms.shape[0])
        return _neg_mean_sq(rdms, state, xp)

    fast = Comparator(
        "negmsd_fast",
        _neg_mean_sq,
        toy.description,
        fisher_z=False,
        searchlight=True,
        inference=False,
        searchlight_kernel=reg.SearchlightKernel(prepare=lambda m, xp: m, score=score),
    )
    monkeypatch.setitem(COMPARATOR_REGISTRY, fast.name, fast)
    rng = np.random.default_rng(3)
    nb = Neighbourhoods.from_lists([[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7]], 8)
    patterns = rng.standard_normal((6, 8))
    models = rng.random((2, 15))
    kw = {"metric": "euclidean", "min_voxels": 1}
    slow = searchlight_rsa_array(patterns, nb, models, comparator="negmsd", **kw)
    quick = searchlight_rsa_array(patterns, nb, models, comparator="negmsd_fast", **kw)
    assert calls and sum(calls) == 3
    np.testing.assert_allclose(quick, slow, atol=1e-12)


# --------------------------------------------------------------------------- group maps
def test_group_map_outputs_are_the_table():
    pytest.importorskip("nipype")
    from dnnrsa.interfaces import stats

    assert stats.GROUP_MAP_OUTPUTS == tuple(
        (s.key, dict(s.entities), s.description) for s in GROUP_MAP_STATISTICS if s.derivative
    )
    outputs = set(stats.GroupSignFlipTest.output_spec().copyable_trait_names())
    assert {s.output for s in GROUP_MAP_STATISTICS} <= outputs
    assert len({s.key for s in GROUP_MAP_STATISTICS}) == len(GROUP_MAP_STATISTICS)
    names = [tuple(sorted(s.entities.items())) for s in GROUP_MAP_STATISTICS]
    assert len(set(names)) == len(names)  # no two maps share a file name
    assert group_map_statistic("p_fwe").entities == {"stat": "p"}
    with pytest.raises(ValueError, match=r"key must be one of .*; got 'q'"):
        group_map_statistic("q")


def test_documented_group_outputs_are_the_table():
    from dnnrsa.bidsnames import build_stem

    text = (REPO / "docs" / "outputs.md").read_text()
    for s in GROUP_MAP_STATISTICS:
        if s.derivative:
            suffix = build_stem(dict(s.entities))
            assert re.search(rf"_{re.escape(suffix)}_statmap\.nii\.gz", text), suffix
