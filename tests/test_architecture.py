"""The import rules of docs/architecture.md, read from the source with ast (function-level
imports included): the core never imports nipype, pybids, argparse, the interfaces or the
app; the interfaces never import the app."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CORE_FORBIDDEN = ("nipype", "bids", "argparse", "dnnrsa.bids_app", "dnnrsa.interfaces")
INTERFACES_FORBIDDEN = ("dnnrsa.bids_app",)


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


def _imports(path: Path, package: str) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            found += [(node.lineno, f"{name}.{alias.name}") for alias in node.names]
    return found


def _violations(folder: Path, dotted: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path, package in _modules(folder, dotted):
        for lineno, name in _imports(path, package):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(folder.parent)}:{lineno} imports {name}")
    return sorted(set(bad))


def test_core_imports_no_nipype_pybids_argparse_or_app():
    assert _violations(REPO / "dnnrsa", "dnnrsa", CORE_FORBIDDEN) == []


def test_interfaces_import_no_app():
    assert _violations(REPO / "interfaces", "dnnrsa.interfaces", INTERFACES_FORBIDDEN) == []


@pytest.mark.parametrize(
    "source, dotted, forbidden",
    [
        ("import nipype.pipeline.engine as pe\n", "dnnrsa", CORE_FORBIDDEN),
        ("def f():\n    from bids import BIDSLayout\n", "dnnrsa", CORE_FORBIDDEN),
        ("import argparse\n", "dnnrsa", CORE_FORBIDDEN),
        ("from .interfaces.dnn import LayerRDMs\n", "dnnrsa", CORE_FORBIDDEN),
        ("from ..bids_app import errors\n", "dnnrsa.interfaces", INTERFACES_FORBIDDEN),
    ],
)
def test_the_rule_checker_catches_violations(tmp_path, source, dotted, forbidden):
    (tmp_path / "mod.py").write_text(source)
    assert _violations(tmp_path, dotted, forbidden), source
