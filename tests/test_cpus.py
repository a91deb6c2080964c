"""The CPUs of the process and the ``n_jobs`` conventions (dnnrsa._cpus)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from dnnrsa import _cpus


@pytest.fixture
def eight_cpus(monkeypatch):
    """A process allowed on 8 CPUs of a 64-CPU machine."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(8)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)


def test_available_cpus_reads_the_affinity_mask(eight_cpus, monkeypatch):
    assert _cpus.available_cpus() == 8
    monkeypatch.delattr(os, "sched_getaffinity")  # not on Linux: the machine's count
    assert _cpus.available_cpus() == 64
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert _cpus.available_cpus() == 1


@pytest.mark.parametrize(
    ("n_jobs", "refuse", "count_back", "one"),
    [
        (None, 8, 8, 8),
        (3, 3, 3, 3),
        (20, 20, 20, 20),
        (2.7, 2, 2, 2),
        (-1, 8, 8, 1),
        (-3, "a positive integer, -1 or None; got -3", 6, 1),
        (-20, "a positive integer, -1 or None; got -20", 1, 1),
        (0, "a positive integer, -1 or None; got 0", "positive number or negative", 1),
    ],
)
def test_resolve_n_jobs_conventions(eight_cpus, n_jobs, refuse, count_back, one):
    for below_one, expected in (("refuse", refuse), ("count_back", count_back), ("one", one)):
        if isinstance(expected, str):
            with pytest.raises(ValueError, match=f"n_jobs must be .*{expected}"):
                _cpus.resolve_n_jobs(n_jobs, below_one=below_one)
        else:
            assert _cpus.resolve_n_jobs(n_jobs, below_one=below_one) == expected


def test_resolve_n_jobs_names_a_bad_convention():
    with pytest.raises(ValueError, match="below_one must be one of"):
        _cpus.resolve_n_jobs(2, below_one="all")


def test_callers_share_one_resolution(eight_cpus):
    from dnnrsa import features, searchlight

    assert features.available_cpus is _cpus.available_cpus
    assert searchlight._resolve_n_jobs(None, np) == 8
    assert searchlight._resolve_n_jobs(-2, np) == 7
    assert searchlight._resolve_n_jobs(None, object()) == 1  # one thread off numpy


def test_single_threaded_blas_only_limits_numpy():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with _cpus.single_threaded_blas(np):
        blas = [p for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
        assert all(p["num_threads"] == 1 for p in blas)
    with _cpus.single_threaded_blas(object()) as inside:
        assert inside is None
