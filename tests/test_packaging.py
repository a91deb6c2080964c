"""Packaging: every package is declared, the build is quiet, and a built wheel works alone.

The wheel is installed into a new virtual environment without the source tree; the
dependencies come from the running (locked) environment through a path entry, so the test
installs nothing from the network and checks exactly the wheel's own files.
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# where each top-level folder is installed
INSTALLED_AS = {
    "dnnrsa": "dnnrsa",
    "interfaces": "dnnrsa.interfaces",
    "bids_app": "dnnrsa.bids_app",
}
NOISE = ("Package would be ignored", "BuildBackendWarning", "Editable installation", "!!")


def _declared_packages() -> set[str]:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    return {p.strip() for p in cfg["options"]["packages"].split() if p.strip()}


def _source_packages() -> dict[str, Path]:
    """Dotted name -> folder of every folder holding Python modules or package data."""
    found = {}
    for top, dotted in INSTALLED_AS.items():
        for folder in [REPO / top, *sorted((REPO / top).rglob("*"))]:
            if not folder.is_dir() or folder.is_symlink() or folder.name == "__pycache__":
                continue
            if not any(f.is_file() and f.suffix in (".py", ".html") for f in folder.iterdir()):
                continue
            rel = folder.relative_to(REPO / top).parts
            found[".".join((dotted, *rel))] = folder
    return found


def test_every_package_is_declared():
    source = set(_source_packages())
    declared = _declared_packages()
    assert source - declared == set(), (
        f"folders missing from setup.cfg packages: {source - declared}"
    )
    assert declared - source == set(), (
        f"setup.cfg lists packages with no folder: {declared - source}"
    )


@pytest.mark.slow
def test_editable_build_is_quiet(tmp_path):
    """The editable wheel builds without setuptools warnings (the plain layout needs none)."""
    code = (
        "import warnings, sys\n"
        "from setuptools import build_meta\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        f"    build_meta.build_editable({str(tmp_path)!r})\n"
        "for w in caught:\n"
        "    print('WARNING', w.category.__name__, str(w.message).strip().splitlines()[0])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    output = proc.stdout + proc.stderr
    noisy = [
        ln for ln in output.splitlines() if ln.startswith("WARNING") or any(n in ln for n in NOISE)
    ]
    assert not noisy, "\n".join(noisy)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(out),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    noisy = [ln for ln in (proc.stdout + proc.stderr).splitlines() if any(n in ln for n in NOISE)]
    assert not noisy, "the wheel build warns:\n" + "\n".join(noisy)
    (path,) = out.glob("dnnrsa-*.whl")
    return path


@pytest.mark.slow
def test_wheel_holds_every_module_and_no_tests(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = set()
    for dotted, folder in _source_packages().items():
        prefix = dotted.replace(".", "/")
        expected |= {f"{prefix}/{f.name}" for f in folder.iterdir() if f.suffix in (".py", ".html")}
    assert expected - names == set(), f"missing from the wheel: {sorted(expected - names)}"
    assert not [n for n in names if n.startswith(("tests/", "interfaces/", "bids_app/"))]


@pytest.mark.slow
def test_wheel_works_without_the_source_tree(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # the dependencies of the running environment, as a plain path entry: its .pth files (among
    # them the editable link to this checkout) are not processed
    Path(site, "locked_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["MPLBACKEND"] = "Agg"

    def run(*args):
        proc = subprocess.run(
            list(args), cwd=workdir, env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, f"{args}: {proc.stdout[-1000:]}{proc.stderr[-2000:]}"
        return proc.stdout

    bin_dir = env_dir / "bin"
    from dnnrsa import __version__

    assert run(str(bin_dir / "dnnrsa"), "--version").strip() == f"dnnrsa {__version__}"
    assert "participant" in run(str(bin_dir / "dnnrsa"), "--help")
    where = run(
        str(python),
        "-c",
        "import dnnrsa, dnnrsa.interfaces, dnnrsa.bids_app, dnnrsa.searchlight\n"
        "from importlib import resources\n"
        "assert resources.files('dnnrsa.data').joinpath('report_template.html').is_file()\n"
        "print(dnnrsa.__file__); print(dnnrsa.interfaces.__file__); print(dnnrsa.bids_app.__file__)",
    )
    for line in where.split():
        assert Path(line).is_relative_to(env_dir), f"imported from outside the wheel: {line}"
