"""Sphinx configuration of the dnnrsa documentation.

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
Pages are Markdown (MyST); the API reference is generated from the numpydoc docstrings.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # documentation of a checkout that is not installed
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")

import re  # noqa: E402

from dnnrsa import __version__  # noqa: E402

project = "dnnrsa"
author = "The dnnrsa developers"
copyright = "The dnnrsa developers"  # noqa: A001
version = release = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "slurm", "examples"]

# MyST: ```{directive} fences, $...$ maths, heading anchors for links to sections
myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 3

# numpydoc-style docstrings through napoleon
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_preprocess_types = False
autodoc_default_options = {"members": True, "show-inheritance": False}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_inherit_docstrings = False
# optional or heavy imports that are not needed to read the docstrings
autodoc_mock_imports = ["cupy"]

nitpicky = False
# autodoc documents dataclass fields of the same name in several modules (for example
# ``n_permutations``); a field's type or docstring naming it is then ambiguous, which is
# harmless (the link goes to one of them)
suppress_warnings = ["ref.python"]

# Docstrings are written for reading in a terminal as much as on the web: ``|t|`` (an
# absolute value) and ``(n, *shape)`` (an unpacked shape) are plain text there, but
# reStructuredText reads them as a substitution and as the start of emphasis. Escape
# them outside inline literals before the docstrings are parsed.
_ABS = re.compile(r"(?<![\\|`])\|([A-Za-z_][\w ]*)\|(?![|_`])")
_STAR = re.compile(r"(?<=[(\[,] )\*(?=[A-Za-z_])|(?<=[(\[])\*(?=[A-Za-z_])")


def _escape_plain_text(line: str) -> str:
    parts = line.split("``")
    for i in range(0, len(parts), 2):  # even parts lie outside ``inline literals``
        parts[i] = _STAR.sub(r"\\*", _ABS.sub(r"\\|\1\\|", parts[i]))
    return "``".join(parts)


def _escape_docstring(app, what, name, obj, options, lines):
    lines[:] = [_escape_plain_text(line) for line in lines]


def setup(app):
    app.connect("autodoc-process-docstring", _escape_docstring)


html_theme = "alabaster"
html_title = f"dnnrsa {__version__}"
html_static_path: list[str] = []
html_theme_options = {"description": "DNN layers vs. human fMRI by searchlight RSA"}
