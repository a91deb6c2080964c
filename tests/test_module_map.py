"""The module map in dnnrsa's docstring lists every module of the package, and only those."""

from __future__ import annotations

import pkgutil
import re

import dnnrsa


def _modules() -> set[str]:
    found = set()
    for info in pkgutil.walk_packages(dnnrsa.__path__, prefix="dnnrsa."):
        found.add(info.name.removeprefix("dnnrsa."))
    # dnnrsa.data holds the report template, no code: a package of the distribution
    return found | {"data"}


def _listed() -> list[str]:
    return re.findall(r"^``([\w.]+)``  ", dnnrsa.__doc__, flags=re.MULTILINE)


def test_the_module_map_lists_every_module_once():
    listed = _listed()
    assert len(listed) == len(set(listed)), sorted(n for n in listed if listed.count(n) > 1)
    modules = _modules()
    assert modules - set(listed) == set(), "modules missing from dnnrsa/__init__.py's map"
    assert set(listed) - modules == set(), "modules in dnnrsa/__init__.py's map that do not exist"
