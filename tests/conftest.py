"""Shared pytest fixtures and markers."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """Path under ../shared/data, skipping the calling test when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real test data not found at {path} (../shared/data is absent)")
    return path


def pytest_collection_modifyitems(config, items):
    from dnnrsa.backend import gpu_available

    if gpu_available():
        return
    skip_gpu = pytest.mark.skip(
        reason="no usable CUDA device / CuPy (GPU tests run on a GPU machine)"
    )
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(20261126)


@pytest.fixture(scope="session")
def fast_demo(tmp_path_factory):
    """The one-command demo in its fast setting, run once for every test that reads it."""
    from dnnrsa.bids_app.demo import run_demo

    return run_demo(
        tmp_path_factory.mktemp("demo") / "demo", setting="fast", nprocs=2, device="cpu"
    )
