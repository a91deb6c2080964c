"""The import rules of docs/architecture.md.

The rules between the rooms and the layers inside them are import-linter contracts
(``.importlinter``), checked by ``lint-imports`` on a graph that holds every import
statement, function-level and ``TYPE_CHECKING`` imports included: the core never imports
nipype, pybids, argparse, the interfaces or the app; the interfaces never import the
app; lower layers never import higher ones; no two sibling modules or subpackages import
each other. The cycle check below, read from the source with ast, also covers a
package and its own modules: no module of the three packages imports, directly or
through others, a module that imports it back."""

from __future__ import annotations

import ast
import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONTRACTS = REPO / ".importlinter"


def _lint_imports(root: Path, *contracts: str) -> subprocess.CompletedProcess:
    """``lint-imports`` with the contracts of ``root/.importlinter`` (only ``contracts``
    when given) on the package ``dnnrsa`` found in ``root``."""
    command = [
        sys.executable,
        "-c",
        "import sys; from importlinter.cli import lint_imports_command; "
        "sys.exit(lint_imports_command())",
        "--no-cache",
        "--no-logo",
        str(root / ".importlinter"),
        *(arg for c in contracts for arg in ("--contract", c)),
    ]
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)


def _contract_ids() -> list[str]:
    parser = configparser.ConfigParser()
    parser.read(CONTRACTS)
    prefix = "importlinter:contract:"
    return [s.removeprefix(prefix) for s in parser.sections() if s.startswith(prefix)]


def test_import_contracts_are_kept():
    """Every contract of .importlinter holds for the source tree."""
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(_contract_ids())} kept, 0 broken." in result.stdout


def _copy(root: Path) -> Path:
    """A copy of the three packages as the package ``dnnrsa`` (the links followed), with
    the contracts."""
    shutil.copytree(REPO / "dnnrsa", root / "dnnrsa", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(CONTRACTS, root / ".importlinter")
    return root


def test_a_copy_of_the_tree_keeps_every_contract(tmp_path):
    """The copies the violations below are written into start clean."""
    result = _lint_imports(_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


#: A violation of each rule: (file in the copy, source appended, the contract it breaks,
#: the import the report names). The rules of the core and of the interfaces come first;
#: imports inside functions and under TYPE_CHECKING count.
VIOLATIONS = [
    (
        "_violation.py",
        "import nipype.pipeline.engine as pe\n",
        "core",
        "dnnrsa._violation -> nipype",
    ),
    (
        "_violation.py",
        "def f():\n    from bids import BIDSLayout\n",
        "core",
        "dnnrsa._violation -> bids",
    ),
    ("_violation.py", "import argparse\n", "core", "dnnrsa._violation -> argparse"),
    (
        "_violation.py",
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from nipype import Node\n",
        "core",
        "dnnrsa._violation -> nipype",
    ),
    (
        "_violation.py",
        "from .interfaces.dnn import LayerRDMs\n",
        "core",
        "dnnrsa._violation -> dnnrsa.interfaces.dnn",
    ),
    (
        "interfaces/_violation.py",
        "from ..bids_app import errors\n",
        "interfaces",
        "dnnrsa.interfaces._violation -> dnnrsa.bids_app.errors",
    ),
    (
        "rdm.py",
        "\ndef _f():\n    from .bids_app import run\n",
        "core",
        "dnnrsa.rdm -> dnnrsa.bids_app.run",
    ),
    (
        "bidsnames.py",
        "\ndef _f():\n    from . import models\n",
        "rooms",
        "dnnrsa.bidsnames -> dnnrsa.models",
    ),
    (
        "interfaces/glm.py",
        "\ndef _f():\n    from ..bids_app import config\n",
        "rooms",
        "dnnrsa.interfaces.glm -> dnnrsa.bids_app.config",
    ),
    (
        "_rdmkernels.py",
        "\ndef _f():\n    from . import rdm\n",
        "comparators",
        "dnnrsa._rdmkernels -> dnnrsa.rdm",
    ),
    (
        "bids_app/errors.py",
        "\ndef _f():\n    from . import run\n",
        "app",
        "dnnrsa.bids_app.errors -> dnnrsa.bids_app.run",
    ),
    (
        "bids_app/wf_group.py",
        "\ndef _f():\n    from . import wf_participant\n",
        "app",
        "dnnrsa.bids_app.wf_group -> dnnrsa.bids_app.wf_participant",
    ),
    (
        "interfaces/glm.py",
        "\ndef _f():\n    from . import stats\n",
        "interface-families",
        "dnnrsa.interfaces.glm -> dnnrsa.interfaces.stats",
    ),
    (
        "reports/figures.py",
        "\ndef _f():\n    from . import build\n",
        "acyclic",
        "No cycles are allowed in dnnrsa.reports.\nIt could be made acyclic by removing 1 dependency:\n\n- .figures -> .build",
    ),
]


def test_every_contract_has_a_violation_below():
    assert sorted({v[2] for v in VIOLATIONS}) == sorted(_contract_ids())


@pytest.mark.parametrize(("path", "source", "contract", "named"), VIOLATIONS)
def test_the_contracts_catch_violations(tmp_path, path, source, contract, named):
    tree = _copy(tmp_path)
    with open(tree / "dnnrsa" / path, "a") as fh:
        fh.write(source)
    result = _lint_imports(tree, contract)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "BROKEN" in result.stdout and named in result.stdout, result.stdout


def _modules(folder: Path, dotted: str):
    for path in sorted(folder.rglob("*.py")):
        rel = path.relative_to(folder)
        if rel.parts[0] in ("interfaces", "bids_app"):  # the links inside dnnrsa/
            continue
        parts = [dotted, *rel.with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
            package = ".".join(parts)
        else:
            package = ".".join(parts[:-1])
        yield path, package


# ----------------------------------------------------------------------- import cycles
#: The packages whose modules form the import graph, with their dotted names.
PACKAGES = (
    ("dnnrsa", "dnnrsa"),
    ("bids_app", "dnnrsa.bids_app"),
    ("interfaces", "dnnrsa.interfaces"),
)


def _module_table(root: Path, packages=PACKAGES) -> dict[str, tuple[Path, str]]:
    """Dotted module name -> (file, the package relative imports start from)."""
    table = {}
    for folder, dotted in packages:
        for path, package in _modules(root / folder, dotted):
            name = package if path.name == "__init__.py" else f"{package}.{path.stem}"
            table[name] = (path, package)
    return table


def _own(name: str, table) -> str | None:
    """The module of ours that importing ``name`` runs (its longest known prefix)."""
    while name and name not in table:
        name = name.rpartition(".")[0]
    return name or None


def _import_graph(table) -> dict[str, dict[str, int]]:
    """Module -> {module of ours it imports: line}, every import statement in its AST
    (module level, inside functions, under ``if TYPE_CHECKING``); other packages are
    left out. ``from package import name`` is an edge to the submodule ``name`` when
    there is one, to the package otherwise."""
    graph = {}
    for module, (path, package) in table.items():
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [_own(alias.name, table) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    name = ".".join([*base, node.module] if node.module else base)
                else:
                    name = node.module or ""
                for alias in node.names:
                    sub = f"{name}.{alias.name}"
                    targets.append(sub if sub in table else _own(name, table))
            for target in targets:
                if target is not None and target != module:
                    edges.setdefault(target, node.lineno)
        graph[module] = edges
    return graph


def _cycles(graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def _shortest_cycle(graph, component: list[str]) -> list[str]:
    """One shortest cycle through the first module of a component."""
    start = component[0]
    previous = {start: None}
    queue = [start]
    for v in queue:
        for w in sorted(graph[v]):
            if w == start:
                path = [v]
                while previous[path[-1]] is not None:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if w in component and w not in previous:
                previous[w] = v
                queue.append(w)
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover


def _describe(graph, table, root: Path, component: list[str]) -> str:
    cycle = _shortest_cycle(graph, component)
    steps = [
        f"    {a} -> {b}  ({table[a][0].relative_to(root)}:{graph[a][b]})"
        for a, b in zip(cycle, cycle[1:], strict=False)
    ]
    return "cycle among " + ", ".join(component) + ":\n" + "\n".join(steps)


def _cycle_report(root: Path, packages=PACKAGES, allowed=()) -> list[str]:
    table = _module_table(root, packages)
    graph = _import_graph(table)
    return [_describe(graph, table, root, c) for c in _cycles(graph) if frozenset(c) not in allowed]


def test_no_import_cycle():
    """No cycle among our modules, function-level and TYPE_CHECKING imports included."""
    cycles = _cycle_report(REPO)
    assert not cycles, "\n" + "\n".join(cycles)


def _write_package(root: Path, files: dict[str, str]) -> None:
    for rel, source in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)


@pytest.mark.parametrize(
    "files",
    [
        # a function-level import closes the loop
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from . import b\n",
            "pkg/b.py": "def f():\n    from .a import g\n",
        },
        # absolute imports, three modules
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "import pkg.b\n",
            "pkg/b.py": "from pkg.c import x\n",
            "pkg/c.py": "def f():\n    import pkg.a\n",
        },
        # two levels up from a subpackage
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from .sub.c import x\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/c.py": "def f():\n    from ..a import y\n",
        },
        # through the package's own __init__ (a module importing a name of its package)
        {
            "pkg/__init__.py": "from .a import f\nVALUE = 1\n",
            "pkg/a.py": "def f():\n    from pkg import VALUE\n",
        },
        # an import only for type checking still counts
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n",
            "pkg/b.py": "from .a import A\n",
        },
    ],
)
def test_the_cycle_checker_catches_cycles(tmp_path, files):
    _write_package(tmp_path, files)
    cycles = _cycle_report(tmp_path, (("pkg", "pkg"),))
    assert len(cycles) == 1 and "pkg.a -> " in cycles[0], cycles


def test_the_cycle_checker_ignores_other_packages_and_package_imports(tmp_path):
    _write_package(
        tmp_path,
        {
            # the package imports its submodules; they import siblings through it
            "pkg/__init__.py": "from .a import f\nfrom .b import g\n",
            "pkg/a.py": "from . import b\nimport numpy\n",
            "pkg/b.py": "def g():\n    import torch\n    from pkg import c\n",
            "pkg/c.py": "import os\n",
        },
    )
    assert _cycle_report(tmp_path, (("pkg", "pkg"),)) == []
