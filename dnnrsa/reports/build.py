"""The two reports: which sections each page has, in which order.

Each builder opens the derivatives folder (:mod:`.discovery`), lists its
sections (:mod:`.sections`, :mod:`.brain_sections`) and writes the page
(:mod:`.render`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from ..bidsnames import build_stem, check_label
from .brain_sections import (
    brain_mask_section,
    clusters_section,
    group_maps_section,
    mask_path,
    subject_maps_section,
    winner_section,
)
from .discovery import open_context
from .encoding_sections import encoding_sections, subject_encoding_sections
from .render import FigureStore, escape, render_page
from .roi_sections import roi_sections
from .sections import (
    arm_relevance_section,
    category_index_section,
    config_section,
    face_crops_section,
    layer_similarity_section,
    mds_section,
    overview_section,
    rdms_section,
    stimuli_section,
)
from .study_sections import study_sections

logger = logging.getLogger(__name__)


def _face_crop_sections(ctx) -> list:
    """The face-crop contact sheet, when the participant level wrote the crops used."""
    if not ctx.dataset_file(desc="facecrops", suffix="stimuli.tsv").is_file():
        return []
    return [("facecrops", "Face crops: what the network saw", lambda: face_crops_section(ctx))]


def _mask_sections(ctx, subject: str) -> list:
    """The brain mask used, when the participant level wrote it."""
    if not mask_path(ctx, subject).is_file():
        return []
    return [("brainmask", "Brain mask", lambda: brain_mask_section(ctx, subject))]


_MODEL_SECTIONS = (
    ("stimuli", "Stimuli", stimuli_section),
    ("rdms", "Layer RDMs", rdms_section),
    ("mds", "MDS of stimuli", mds_section),
    ("categoryindex", "Category index", category_index_section),
    ("layersimilarity", "Layer-by-layer similarity", layer_similarity_section),
    ("armrelevance", "Arm relevance", arm_relevance_section),
)


def build_subject_report(
    output_dir: str | os.PathLike,
    subject: str,
    *,
    task: str,
    space: str,
    model: str | None = None,
    layers: Sequence[str] | None = None,
    reuse_figures: bool = True,
    alpha: float = 0.05,
) -> Path:
    """Write the HTML report of one participant, ``<output_dir>/sub-<subject>.html``.

    Sections: overview, searchlight maps (a per-layer summary chart and, for the
    best layer of each network part, orthogonal slices and a glass brain), the brain
    mask, the encoding models (where the participant has encoding maps: per network,
    the bars of the variance partition per region and the list of its maps), the
    stimuli, layer RDMs ordered by emotion and by identity, MDS of the stimuli,
    category index per layer, layer-by-layer similarity, arm relevance, and the
    run configuration. A section whose inputs are absent says so.

    Parameters
    ----------
    output_dir : path-like
        The derivatives folder written by the participant level.
    subject : str
        Participant label, with or without ``sub-``.
    task : str
        Task label of the files to show.
    space : str
        Template space label of the maps (e.g. ``MNI152NLin2009cAsym``).
    model : str, optional
        Show only this model label; default every model found.
    layers : sequence of str, optional
        Layers (labels or original names) whose maps and MDS are drawn in addition
        to the best layer of each part.
    reuse_figures : bool, default=True
        Reuse a PNG under ``figures/`` that is newer than all its inputs instead of
        drawing it again (the dataset-level figures are shared by all reports).
    alpha : float, default=0.05
        Significance level of the p-values shown (filled category index markers).
        A figure reused from ``figures/`` keeps the level it was drawn with: pass
        ``reuse_figures=False`` after changing it.

    Returns
    -------
    Path
        The written HTML file. Figures are saved under ``<output_dir>/figures/``.
    """
    subject = check_label(subject, "subject", prefix="sub-")
    figures = FigureStore(Path(output_dir), reuse_figures)
    ctx = open_context(output_dir, task, space, model, layers, figures, alpha=alpha)
    if not (ctx.output_dir / build_stem({"sub": subject})).is_dir():
        raise FileNotFoundError(
            f"subject {subject!r} has no folder sub-{subject} in {ctx.output_dir}"
        )
    start = time.perf_counter()
    sections = [
        (
            "overview",
            "Overview",
            lambda: overview_section(ctx, [("participant", build_stem({"sub": subject}))]),
        ),
        ("searchlight", "Searchlight maps", lambda: subject_maps_section(ctx, subject)),
        *_mask_sections(ctx, subject),
        *subject_encoding_sections(ctx, subject),
        *((sid, h, lambda f=f: f(ctx)) for sid, h, f in _MODEL_SECTIONS),
        *_face_crop_sections(ctx),
        ("config", "Run configuration", lambda: config_section(ctx)),
    ]
    path = render_page(
        ctx,
        ctx.output_dir / (build_stem({"sub": subject}) + ".html"),
        f"dnnrsa report: sub-{subject}",
        f"task {escape(ctx.task)} &middot; space {escape(ctx.space)}",
        sections,
    )
    logger.info("subject report built in %.1f s", time.perf_counter() - start)
    return path


def build_group_report(
    output_dir: str | os.PathLike,
    *,
    task: str,
    space: str,
    model: str | None = None,
    layers: Sequence[str] | None = None,
    reuse_figures: bool = True,
    alpha: float = 0.05,
) -> Path:
    """Write the group HTML report, ``<output_dir>/group.html``.

    Sections: overview, the study's findings and the networks across regimes (when
    those tables exist), group maps (per-layer peak statistic and number of
    family-wise significant voxels; slices and glass brain of the best layer of each
    network part), cluster tables, the winner-take-all layer map, the regions of
    interest (when the group level evaluated any), the stimuli,
    layer RDMs, MDS, category index, layer-by-layer similarity, arm relevance and
    the run configuration. A section whose inputs are absent says so.

    Parameters
    ----------
    output_dir : path-like
        The derivatives folder written by the group level.
    task, space : str
        Labels of the files to show.
    model : str, optional
        Show only this model label; default every model found.
    layers : sequence of str, optional
        Layers (labels or original names) drawn in addition to the best of each part.
    reuse_figures : bool, default=True
        Reuse a PNG under ``figures/`` that is newer than all its inputs.
    alpha : float, default=0.05
        Family-wise error level of the group maps and the winner map, and level of
        the category index p-values (the run configuration's ``fwe_alpha``). A
        figure reused from ``figures/`` keeps the level it was drawn with: pass
        ``reuse_figures=False`` after changing it.

    Returns
    -------
    Path
        The written HTML file.
    """
    figures = FigureStore(Path(output_dir), reuse_figures)
    ctx = open_context(output_dir, task, space, model, layers, figures, alpha=alpha)
    subjects = sorted(p.name for p in ctx.output_dir.glob("sub-*") if p.is_dir())
    start = time.perf_counter()
    sections = [
        (
            "overview",
            "Overview",
            lambda: overview_section(
                ctx, [("participants", f"{len(subjects)}: " + ", ".join(subjects))]
            ),
        ),
        *study_sections(ctx),
        ("groupmaps", "Group maps", lambda: group_maps_section(ctx)),
        ("clusters", "Cluster tables", lambda: clusters_section(ctx)),
        ("winner", "Winning layer", lambda: winner_section(ctx)),
        *encoding_sections(ctx),
        *roi_sections(ctx),
        *((sid, h, lambda f=f: f(ctx)) for sid, h, f in _MODEL_SECTIONS),
        *_face_crop_sections(ctx),
        ("config", "Run configuration", lambda: config_section(ctx, group=True)),
    ]
    path = render_page(
        ctx,
        ctx.output_dir / "group.html",
        "dnnrsa report: group",
        f"task {escape(ctx.task)} &middot; space {escape(ctx.space)} &middot; {len(subjects)} participants",
        sections,
    )
    logger.info("group report built in %.1f s", time.perf_counter() - start)
    return path
