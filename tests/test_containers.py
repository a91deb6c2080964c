"""The container recipes: they parse, install dnnrsa the way the Makefile does, and self-test.

The recipes are checked statically (spython parses both the Apptainer definition and the
Dockerfile) against the Makefile, setup.cfg and the docs, and the
self-test script the images run is run on the installed package.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEF_FILE = REPO / "apptainer" / "dnnrsa.def"
DOCKERFILE = REPO / "Dockerfile"
SELFTEST = REPO / "scripts" / "container_selftest.sh"


def _recipe(parser_name: str, path: Path):
    parsers = pytest.importorskip("spython.main.parse.parsers")
    parser = getattr(parsers, parser_name)(str(path))
    recipes = parser.recipe
    assert list(recipes) == ["spython-base"], f"{path.name}: expected a single-stage recipe"
    return recipes["spython-base"]


@pytest.fixture(scope="module")
def apptainer():
    return _recipe("SingularityParser", DEF_FILE)


@pytest.fixture(scope="module")
def docker():
    return _recipe("DockerParser", DOCKERFILE)


def _commands(lines: list[str]) -> list[str]:
    """Shell commands of an install section: continuations joined, '&&' chains split."""
    text = "\n".join(ln for ln in lines if not ln.lstrip().startswith("#"))
    text = text.replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        for part in line.split("&&"):
            part = " ".join(part.split())
            if part:
                commands.append(part)
    return commands


def _pip_installs(commands: list[str]) -> list[str]:
    return [c for c in commands if re.search(r"-m (pip install|venv) ", c)]


def _make_variables(text: str) -> dict[str, str]:
    variables = {}
    for m in re.finditer(r"^([A-Z_]+)\s*\??=\s*(.*)$", text, re.M):
        variables.setdefault(m.group(1), m.group(2).strip())
    return variables


def _expand(command: str, variables: dict[str, str]) -> str:
    for _ in range(5):
        command = re.sub(
            r"\$\(([A-Z_]+)\)", lambda m: variables.get(m.group(1), m.group(0)), command
        )
    return command


def _makefile_install() -> tuple[str, list[str]]:
    """The Makefile's interpreter and its venv/pip commands (the README's `make` route)."""
    text = (REPO / "Makefile").read_text()
    python = re.search(r"^PYTHON \?= .*?command -v (python3\.\d+)", text, re.M).group(1)
    variables = _make_variables(text)
    recipe = text.split("$(STAMP):", 1)[1].split("\n\n", 1)[0]
    commands = [
        _expand(ln.strip().lstrip("@"), variables) for ln in recipe.splitlines()[1:] if ln.strip()
    ]
    return python, [c for c in commands if "pip install" in c or "-m venv" in c]


def _normalise_pip(command: str) -> tuple[str, ...]:
    """('requirements', file) or ('project',), ignoring quiet, cache and editable flags."""
    args = shlex.split(command)
    if "-r" in args:
        path = args[args.index("-r") + 1].removeprefix("/src/")
        return ("requirements", path)
    assert "--no-deps" in args, f"the project must be installed without dependencies: {command}"
    return ("project",)


def test_recipes_start_from_debian_12_with_what_the_gpu_needs(apptainer, docker):
    # the same Debian 12 image: Docker's default build argument and the Apptainer base
    assert docker.fromHeader == "docker.io/library/" + apptainer.fromHeader
    assert apptainer.fromHeader == "debian:12-slim"
    text = DOCKERFILE.read_text()
    assert "ARG BASE_IMAGE=docker.io/library/debian:12-slim" in text
    assert "FROM ${BASE_IMAGE}" in text
    for environ in (docker.environ, apptainer.environ):
        assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in environ
        assert "NVIDIA_VISIBLE_DEVICES=all" in environ
    # CUDA comes from the locked wheels: CuPy for the CUDA major version torch is built for
    lock = (REPO / "requirements" / "lock.txt").read_text()
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    (cupy,) = [r.strip() for r in cfg["options.extras_require"]["gpu"].split() if r.strip()]
    major = re.fullmatch(r"cupy-cuda(\d+)x", cupy).group(1)
    assert re.search(rf"^{cupy}==", lock, re.M)
    assert re.search(rf"^nvidia-cuda-runtime=={major}\.", lock, re.M), "torch's CUDA is not CuPy's"


def test_recipes_install_like_the_makefile(apptainer, docker):
    make_python, make_cmds = _makefile_install()
    app = _pip_installs(_commands(apptainer.install))
    dock = _pip_installs(_commands(docker.install))
    assert app == dock, "the Dockerfile and the Apptainer definition install differently"
    assert app[0] == f"{make_python} -m venv /opt/venv"
    make_pip = [_normalise_pip(c) for c in make_cmds if "pip install" in c]
    assert [_normalise_pip(c) for c in app[1:]] == make_pip
    # the lock file (the gpu and test extras are in it) is what all of them install
    assert make_pip == [
        ("requirements", "requirements/bootstrap.txt"),
        ("requirements", "requirements/lock.txt"),
        ("project",),
    ]
    for command in app + make_cmds:
        assert " -r " not in command or "--require-hashes" in command, command
    # the interpreter the venv is made from is installed first, from Debian
    for recipe in (apptainer, docker):
        apt = next(c for c in _commands(recipe.install) if make_python + "-venv" in c)
        assert f"{make_python} " in apt + " "


def _copied(recipe, *, docker_style: bool) -> dict[str, str]:
    pairs = {}
    for item in recipe.files:
        src, dst = item if docker_style else item.split()
        if dst.endswith("/"):
            dst += Path(src).name
        pairs[src] = dst
    return pairs


def test_recipes_copy_what_the_install_needs(apptainer, docker):
    app = _copied(apptainer, docker_style=False)
    dock = _copied(docker, docker_style=True)
    assert app == dock
    for src, dst in app.items():
        assert (REPO / src).exists(), src
        assert dst == f"/src/{src}"
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    # the top-level folders of the packages (dnnrsa.interfaces lives in interfaces/, ...)
    package_dirs = {
        p.removeprefix("dnnrsa.").split(".")[0]
        if p.startswith(("dnnrsa.interfaces", "dnnrsa.bids_app"))
        else p.split(".")[0]
        for p in cfg["options"]["packages"].split()
    }
    long_description = cfg["metadata"]["long_description"].removeprefix("file:").strip()
    needed = package_dirs | {
        "setup.cfg",
        "pyproject.toml",
        long_description,
        "scripts",
        "tests",
        "requirements",
    }
    assert needed <= set(app), f"missing from the recipes: {sorted(needed - set(app))}"
    # the Docker build context holds exactly these paths
    allowed = {
        ln[1:].strip()
        for ln in (REPO / ".dockerignore").read_text().splitlines()
        if ln.startswith("!")
    }
    assert allowed == set(dock)


def test_entry_point_is_dnnrsa(apptainer, docker):
    from importlib.metadata import entry_points

    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts.get("dnnrsa") == "dnnrsa.bids_app.run:cli"
    assert docker.entrypoint == ["dnnrsa"]
    assert apptainer.cmd.strip() == 'exec dnnrsa "$@"'
    assert "PATH=/opt/venv/bin:$PATH" in apptainer.environ
    assert "PATH=/opt/venv/bin:$PATH" in docker.environ
    # provenance: the derivatives record the container type (dataset_description.json)
    assert "DNNRSA_CONTAINER=apptainer" in apptainer.environ
    assert "DNNRSA_CONTAINER=docker" in docker.environ
    assert any("DNNRSA_CONTAINER" in f.read_text() for f in (REPO / "bids_app").glob("*.py"))


def test_recipes_run_the_same_self_test(apptainer, docker):
    rel = SELFTEST.relative_to(REPO)
    assert f"bash /src/{rel}" in _commands(docker.install)
    assert f"bash /src/{rel}" in (apptainer.test or "") + "".join(apptainer.install)
    body = SELFTEST.read_text()
    assert "dnnrsa --version" in body
    assert 'python -c "import dnnrsa.searchlight"' in body


def test_gpu_passthrough_is_documented():
    docs = (REPO / "docs" / "containers.md").read_text()
    dockerfile, definition = DOCKERFILE.read_text(), DEF_FILE.read_text()
    for text in (docs, dockerfile):
        assert "docker build -t dnnrsa ." in text
        assert "docker run --rm --gpus all" in text
    for text in (docs, definition):
        assert "apptainer build dnnrsa.sif apptainer/dnnrsa.def" in text
        assert "apptainer run --nv" in text
        assert "apptainer test --nv dnnrsa.sif" in text


def test_self_test_passes_on_the_installed_package():
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(
        ["bash", str(SELFTEST)], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    from dnnrsa import __version__

    assert f"dnnrsa {__version__}" in proc.stdout
    assert re.search(r"\d+ passed", proc.stdout)
