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


def participant_argv(root, tmp_path: Path, *extra: str) -> list[str]:
    """The command line of a quick participant run of the small data set at ``root``:
    output in ``tmp_path/o``, work folder ``tmp_path/w``, no validator, spheres of 6 mm
    with at least 5 voxels, one process; then ``extra``."""
    return [
        str(root),
        str(tmp_path / "o"),
        "participant",
        "--skip-bids-validation",
        "-w",
        str(tmp_path / "w"),
        "--radius-mm",
        "6",
        "--min-voxels",
        "5",
        "--nprocs",
        "1",
        *extra,
    ]


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


def _files(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (links included) with the SHA-256 of its bytes."""
    import hashlib

    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        if p.is_file()
        else f"link to {p.readlink()}"
        for p in sorted(folder.rglob("*"))
        if p.is_file() or p.is_symlink()
    }


def _read_only(value, folder: Path):
    """Yield ``value``; at the end of the run, fail if a file under ``folder`` changed.

    The session's shared inputs are read by many modules: a test that edits one copies
    it first (``shutil.copytree``), so that no test sees another's edits.
    """
    before = _files(folder)
    yield value
    after = _files(folder)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"tests changed the shared inputs in {folder}: {changed}"


@pytest.fixture(scope="session")
def bids_two_subjects(tmp_path_factory):
    """``make_small_bids`` with its defaults (2 participants of 2 runs, 9 stimuli in 3
    categories), made once for every module that reads it; never written to."""
    from .bids_fixtures import make_small_bids

    small = make_small_bids(tmp_path_factory.mktemp("bids_two") / "bids")
    yield from _read_only(small, small.root.parent)


@pytest.fixture(scope="session")
def bids_one_subject(tmp_path_factory):
    """``make_small_bids(n_subjects=1)`` (1 participant of 2 runs), made once for every
    module that reads it; never written to."""
    from .bids_fixtures import make_small_bids

    small = make_small_bids(tmp_path_factory.mktemp("bids_one") / "bids", n_subjects=1)
    yield from _read_only(small, small.root.parent)


@pytest.fixture(scope="session")
def crosschannel_checkpoint(tmp_path_factory):
    """``net.pt``: the untrained cross-channel network (seed 1) with 3 labels a, b, c, as
    dnnrsa-train writes a checkpoint; never written to."""
    from dnnrsa.models import build_model, get_model, save_checkpoint

    spec = get_model("crosschannel")
    folder = tmp_path_factory.mktemp("ckpt")
    path = save_checkpoint(
        folder / "net.pt", build_model(spec, 3, seed=1), spec, labels=["a", "b", "c"]
    )
    yield from _read_only(path, folder)


@pytest.fixture(scope="session")
def roi_group_run(tmp_path_factory):
    """A participant and a group run with a region of interest, made once for
    tests/test_roi.py and tests/test_roi_report.py: 6 participants of
    ``make_small_bids``, the category and a random noise model RDM, the region
    ``centre`` (the planted one), 20 permutations, 200 bootstrap samples, seed 4, the
    participant reports (no group report). Yields ``(data set, exit code, output
    folder)``; never written to (a test that builds a report copies the folder).
    """
    from dnnrsa.bids_app.run import main

    from .bids_fixtures import make_small_bids
    from .test_roi import SL, _mask_file, _noise_model

    base = tmp_path_factory.mktemp("roirun")
    small = make_small_bids(base / "bids", n_subjects=6)
    centre = _mask_file(small, small.region_mask, base / "centre.nii.gz")
    noise = _noise_model(small, base / "noise.tsv")
    out, work = base / "out", base / "work"
    common = ["-w", str(work), "--model-rdm", f"category={small.model_rdm}"]
    common += ["--model-rdm", f"noise={noise}", "--roi", f"centre={centre}", *SL]
    rc = main([str(small.root), str(out), "participant", *common])
    assert rc == 0
    group = ["--n-permutations", "20", "--roi-n-boot", "200", "--no-reports", "--seed", "4"]
    rc = main([str(small.root), str(out), "group", *common, *group])
    yield from _read_only((small, rc, out), base)


#: The fast demo's command line, as a user types it (``dnnrsa-demo OUT --setting fast``).
FAST_DEMO_ARGS = ["--setting", "fast", "--nprocs", "2", "--device", "cpu"]


def _demo_timings(stdout: str) -> dict[str, float]:
    """The demo's ``Timings: generate 70 s, train 95 s, ...`` line as ``{"generate_s": 70.0}``."""
    import re

    line = re.search(r"^Timings: (.*)$", stdout, re.MULTILINE)
    if line is None:
        return {}
    return {
        f"{m.group(1)}_s": float(m.group(2))
        for m in re.finditer(r"(\w+) ([0-9.]+) s", line.group(1))
    }


@pytest.fixture(scope="session")
def fast_demo(tmp_path_factory):
    """The one-command demo in its fast setting, run once for every test that reads it.

    It runs as a user runs it, in its own process (``python -m dnnrsa.bids_app.demo``),
    so that everything it prints reaches its console: its own lines, its workers' and
    any library's warnings (which pytest would otherwise collect). The dictionary
    :func:`dnnrsa.bids_app.demo.run_demo` returns is rebuilt from the files it wrote
    (the ground-truth AUCs and the region checks recomputed from the derivatives, as
    the demo computed them), with ``stdout`` and ``stderr``, the text it printed.
    """
    import subprocess
    import sys

    from dnnrsa.bids_app.collect import DEFAULT_DERIV_SPACE
    from dnnrsa.bids_app.demo import _findings, _load_paths
    from dnnrsa.demo import evaluate_groundtruth
    from dnnrsa.demo.scoring import roi_acceptance

    out = tmp_path_factory.mktemp("demo") / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "dnnrsa.bids_app.demo", str(out), *FAST_DEMO_ARGS],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"the fast demo exited with {proc.returncode}:\n{proc.stdout[-3000:]}\n"
            f"{proc.stderr[-5000:]}"
        )
    paths = _load_paths(out / "data", 0, "fast")
    deriv = out / "derivatives" / "dnnrsa"
    return {
        "report": deriv / "group.html",
        "auc": evaluate_groundtruth(
            deriv,
            {k: Path(v) for k, v in paths.region_masks.items()},
            task=paths.task,
            space=DEFAULT_DERIV_SPACE,
        ),
        "roi_acceptance": roi_acceptance(deriv, task=paths.task, space=DEFAULT_DERIV_SPACE),
        "findings": _findings(deriv, paths.task),
        "timings": _demo_timings(proc.stdout),
        "derivatives": deriv,
        "paths": paths,
        "stdout": proc.stdout,
        "stderr": proc.stderr,
    }
