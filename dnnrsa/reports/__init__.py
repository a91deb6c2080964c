"""Self-contained HTML reports built from a dnnrsa derivatives folder.

:func:`build_subject_report` writes ``<output_dir>/sub-<label>.html`` and
:func:`build_group_report` writes ``<output_dir>/group.html``. Both read only the
derivatives (file names as in the project's design: layer RDMs, DNN analysis
tables, per-subject searchlight maps, group maps and cluster tables), save every
figure as a PNG under ``<output_dir>/figures/`` and embed the same PNG in the page
as a ``data:`` URI, so the page opens offline and can be mailed as one file. The
page loads no script, style sheet or font from anywhere.

A section whose input files are absent is replaced by a short note. To keep the
reports quick to build for a 29-layer network, brain maps are drawn for a chosen
subset of layers (the best layer of each network part, plus any layers asked for),
while every layer appears in a per-layer summary chart.

The package has one module per role: :mod:`~dnnrsa.reports.discovery` finds the
files of a subject or group output, :mod:`~dnnrsa.reports.sections` and
:mod:`~dnnrsa.reports.brain_sections` choose what each section shows,
:mod:`~dnnrsa.reports.render` writes the HTML (the page template is
``dnnrsa/data/report_template.html``), :mod:`~dnnrsa.reports.figures` and
:mod:`~dnnrsa.reports.brain_figures` draw, and :mod:`~dnnrsa.reports.build` lists
the sections of each page.
"""

from .build import build_group_report, build_subject_report
from .discovery import condition_order

__all__ = ["build_group_report", "build_subject_report", "condition_order"]
