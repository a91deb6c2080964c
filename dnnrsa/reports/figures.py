"""Figures of the HTML reports: RDMs, MDS, DNN analyses and per-layer summaries.

Every function takes arrays or tables and returns a :class:`matplotlib.figure.Figure`
built without pyplot (so no global backend is touched; figures render with Agg when
saved). The section modules decide what to draw; :mod:`.render` saves the figures.
Brain maps are drawn in :mod:`.brain_figures`.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping, Sequence

import numpy as np

logger = logging.getLogger(__name__)

PART_COLOURS = {
    "visual": "#3b6fb6",
    "auditory": "#3a9a5b",
    "crossmodal": "#c0392b",
    "model": "#7d5ba6",
}
_OTHER_COLOUR = "#7f7f7f"
_MARKERS = ("o", "^", "s", "D", "v", "P", "X", "*")
_DPI = 100


def part_colour(part: str) -> str:
    """Colour used for a network part (visual, auditory, crossmodal, model)."""
    return PART_COLOURS.get(str(part), _OTHER_COLOUR)


def new_figure(width_in: float, height_in: float, *, constrained: bool = True):
    """A pyplot-free figure with constrained layout."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), layout="constrained" if constrained else None)


def figure_to_png(fig, *, dpi: int = _DPI, palette: bool = True) -> bytes:
    """Render a figure to PNG bytes (Agg) and release it.

    With ``palette`` the image is reduced to 256 colours (an indexed PNG, usually a
    third of the size; the figures use far fewer distinct colours).
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    fig.clear()
    if not palette:
        return buffer.getvalue()
    from PIL import Image

    buffer.seek(0)
    with Image.open(buffer) as image:
        indexed = image.convert("RGB").quantize(
            colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
        )
    out = io.BytesIO()
    indexed.save(out, format="PNG", optimize=True)
    return out.getvalue()


def runs(values: Sequence) -> list[tuple[object, int, int]]:
    """Runs of equal consecutive values as (value, start, stop) with stop exclusive."""
    runs = []
    start = 0
    for i in range(1, len(values) + 1):
        if i == len(values) or values[i] != values[start]:
            runs.append((values[start], start, i))
            start = i
    return runs


def tick_fontsize(n: int) -> float:
    if n <= 12:
        return 8.0
    if n <= 32:
        return 7.0
    return 5.5


def _shade_parts(ax, parts: Sequence[str], *, label: bool = True) -> None:
    """Tint the x range of each network part and name it at the top of the axes."""
    from matplotlib.transforms import blended_transform_factory

    trans = blended_transform_factory(ax.transData, ax.transAxes)
    for part, start, stop in runs(list(parts)):
        ax.axvspan(start - 0.5, stop - 0.5, color=part_colour(part), alpha=0.08, lw=0)
        if label:
            ax.text(
                (start + stop - 1) / 2,
                0.98,
                str(part),
                transform=trans,
                ha="center",
                va="top",
                fontsize=8,
                color=part_colour(part),
                fontweight="bold",
            )


def _layer_axis(ax, names: Sequence[str], parts: Sequence[str], axis: str = "x") -> None:
    """All layer names as ticks, rotated on x, coloured by part."""
    n = len(names)
    size = tick_fontsize(n)
    if axis == "x":
        ax.set_xticks(np.arange(n))
        ax.set_xticklabels(names, rotation=90, fontsize=size)
        labels = ax.get_xticklabels()
        ax.set_xlim(-0.5, n - 0.5)
    else:
        ax.set_yticks(np.arange(n))
        ax.set_yticklabels(names, fontsize=size)
        labels = ax.get_yticklabels()
    for text, part in zip(labels, parts, strict=True):
        text.set_color(part_colour(part))


def _display_ranks(vec: np.ndarray) -> np.ndarray:
    """Dissimilarities as percentiles in [0, 1] (NaN kept)."""
    from scipy.stats import rankdata

    out = np.full(vec.shape, np.nan)
    finite = np.isfinite(vec)
    if finite.sum() > 1:
        ranks = rankdata(vec[finite])
        out[finite] = (ranks - 1) / (finite.sum() - 1)
    return out


def rdm_grid(
    rdms: np.ndarray,
    titles: Sequence[str],
    title_colours: Sequence[str],
    order: np.ndarray,
    block_labels: Sequence[str],
    *,
    ordered_by: str,
    ncols: int = 8,
):
    """Small multiples of RDMs, conditions reordered, blocks of one label marked.

    Parameters
    ----------
    rdms : ndarray of shape (n_rdms, n_pairs)
    titles, title_colours : sequences of length n_rdms
    order : ndarray of shape (n_conditions,)
        Condition indices in display order.
    block_labels : sequence of length n_conditions
        Label of every condition (in the RDM's original order) whose blocks are marked.
    ordered_by : str
        Name of the label set (axis label).
    """
    from matplotlib import colormaps
    from matplotlib.collections import LineCollection

    # One mosaic image in one axes: much faster to draw than one axes per RDM.
    n_rdms = rdms.shape[0]
    ncols = max(1, min(ncols, n_rdms))
    nrows = int(np.ceil(n_rdms / ncols))
    blocks = runs([str(block_labels[i]) for i in order])
    panel = 1.45 if n_rdms > 4 else 2.4
    fig = new_figure(panel * ncols + 1.3, panel * 1.05 * nrows + 0.5)
    ax = fig.add_subplot()
    mosaic, segments, tops = _rdm_mosaic(ax, rdms, titles, title_colours, order, blocks, ncols)
    cmap = colormaps["viridis"].with_extremes(bad="white")
    image = ax.imshow(mosaic, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.add_collection(LineCollection(segments, colors="white", linewidths=0.4))
    ax.set_xticks([])
    ticks = [top + (a + b - 1) / 2 for top in tops for _, a, b in blocks]
    if len(blocks) <= 16:
        ax.set_yticks(ticks)
        ax.set_yticklabels([lab for _ in tops for lab, _, _ in blocks], fontsize=5.5)
        ax.tick_params(axis="y", length=0, pad=1)
    else:
        ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    cbar = fig.colorbar(image, ax=ax, shrink=0.5, aspect=30, pad=0.01)
    cbar.set_label("dissimilarity (percentile)", fontsize=8)
    cbar.ax.tick_params(labelsize=7)
    fig.suptitle(f"conditions ordered by {ordered_by}", fontsize=9)
    return fig


def _rdm_mosaic(ax, rdms, titles, title_colours, order, blocks, ncols):
    """Place the reordered RDMs in one image and write their titles on ``ax``.

    Returns the mosaic (NaN between panels and on diagonals), the line segments of
    the block boundaries and panel frames, and the top row of each row of panels.
    """
    from scipy.spatial.distance import squareform

    n_rdms, n = rdms.shape[0], len(order)
    nrows = int(np.ceil(n_rdms / ncols))
    gap_x, gap_y = max(2, n // 8), max(4, n // 4)
    step_x, step_y = n + gap_x, n + gap_y
    mosaic = np.full((nrows * step_y - gap_x, ncols * step_x - gap_x), np.nan)
    segments = []
    for k in range(n_rdms):
        row, col = divmod(k, ncols)
        top, left = row * step_y + (gap_y - gap_x), col * step_x
        square = squareform(np.nan_to_num(_display_ranks(rdms[k]), nan=0.0), checks=False)
        square[np.diag_indices_from(square)] = np.nan
        mosaic[top : top + n, left : left + n] = square[np.ix_(order, order)]
        ax.text(
            left + n / 2,
            top - 1.5,
            titles[k],
            ha="center",
            va="bottom",
            fontsize=7,
            color=title_colours[k],
        )
        for _, start, _stop in blocks[1:]:
            edge = start - 0.5
            segments.append([(left - 0.5, top + edge), (left + n - 0.5, top + edge)])
            segments.append([(left + edge, top - 0.5), (left + edge, top + n - 0.5)])
        x0, x1, y0, y1 = left - 0.5, left + n - 0.5, top - 0.5, top + n - 0.5
        segments.append([(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)])
    tops = [row * step_y + (gap_y - gap_x) for row in range(nrows)]
    return mosaic, segments, tops


def mds_figure(
    embeddings: Sequence[tuple[str, np.ndarray]],
    colour_labels: Sequence[str] | None,
    marker_labels: Sequence[str] | None,
    *,
    colour_name: str = "",
    marker_name: str = "",
):
    """Two-dimensional MDS plots, one panel per layer.

    Parameters
    ----------
    embeddings : sequence of (title, ndarray of shape (n_conditions, 2))
    colour_labels, marker_labels : sequences of length n_conditions, optional
    """
    from matplotlib.lines import Line2D

    n = len(embeddings)
    fig = new_figure(3.3 * n + 0.3, 3.9)
    axes = np.atleast_1d(fig.subplots(1, n, squeeze=False)).ravel()
    n_cond = embeddings[0][1].shape[0]
    colours_for = _categories(colour_labels, n_cond)
    markers_for = _categories(marker_labels, n_cond)
    palette = _palette(len(colours_for[0]))
    for ax, (title, coords) in zip(axes, embeddings, strict=True):
        for ci, _cat in enumerate(colours_for[0]):
            for mi, _mcat in enumerate(markers_for[0]):
                sel = (colours_for[1] == ci) & (markers_for[1] == mi)
                if sel.any():
                    ax.scatter(
                        coords[sel, 0],
                        coords[sel, 1],
                        color=palette[ci],
                        marker=_MARKERS[mi % len(_MARKERS)],
                        s=26,
                        edgecolor="black",
                        linewidth=0.3,
                    )
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("dimension 1", fontsize=8)
        ax.set_ylabel("dimension 2", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_aspect("equal", adjustable="datalim")
    handles = []
    if colour_labels is not None:
        handles += [
            Line2D([], [], ls="", marker="o", color=palette[i], label=str(c))
            for i, c in enumerate(colours_for[0])
        ]
    if marker_labels is not None:
        handles += [
            Line2D([], [], ls="", marker=_MARKERS[i % len(_MARKERS)], color="0.3", label=str(c))
            for i, c in enumerate(markers_for[0])
        ]
    if handles:
        title = " / ".join(
            x
            for x in (
                f"colour: {colour_name}" if colour_labels is not None else "",
                f"marker: {marker_name}" if marker_labels is not None else "",
            )
            if x
        )
        fig.legend(
            handles=handles,
            loc="outside lower center",
            ncol=min(len(handles), 10),
            fontsize=7,
            title=title,
            title_fontsize=8,
            frameon=False,
        )
    return fig


def _categories(labels: Sequence[str] | None, n: int) -> tuple[list[str], np.ndarray]:
    """Categories in order of first appearance and each condition's code."""
    if labels is None:
        return [""], np.zeros(n, dtype=int)
    cats: list[str] = []
    codes = np.empty(n, dtype=int)
    for i, lab in enumerate(labels):
        lab = str(lab)
        if lab not in cats:
            cats.append(lab)
        codes[i] = cats.index(lab)
    return cats, codes


def _palette(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def category_index_figure(
    layer_names: Sequence[str],
    parts: Sequence[str],
    values: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    alpha: float = 0.05,
):
    """Category index per layer, one line per label set; filled markers where p < alpha.

    Parameters
    ----------
    layer_names, parts : sequences of length n_layers
    values : mapping of label set to (index, p_value), arrays of shape (n_layers,)
    """
    from matplotlib.lines import Line2D

    n = len(layer_names)
    fig = new_figure(max(6.0, 0.28 * n + 2.5), 4.4)
    ax = fig.add_subplot()
    _shade_parts(ax, parts)
    palette = _palette(len(values))
    x = np.arange(n)
    handles = []
    for colour, (label_set, (index, p_values)) in zip(palette, values.items(), strict=True):
        ax.plot(x, index, color=colour, lw=1.4)
        significant = np.isfinite(p_values) & (p_values < alpha)
        ax.scatter(x[significant], index[significant], color=colour, s=22, zorder=3)
        ax.scatter(
            x[~significant],
            index[~significant],
            facecolor="white",
            edgecolor=colour,
            s=22,
            zorder=3,
        )
        handles.append(Line2D([], [], color=colour, marker="o", label=label_set))
    handles.append(Line2D([], [], ls="", marker="o", color="0.3", label=f"p < {alpha:g}"))
    handles.append(
        Line2D(
            [],
            [],
            ls="",
            marker="o",
            markerfacecolor="white",
            markeredgecolor="0.3",
            label=f"p \u2265 {alpha:g}",
        )
    )
    ax.axhline(0, color="0.4", lw=0.6)
    ax.set_ylabel("category index", fontsize=9)
    _layer_axis(ax, layer_names, parts)
    ax.tick_params(axis="y", labelsize=8)
    low, high = ax.get_ylim()
    ax.set_ylim(low, high + 0.12 * (high - low))  # room for the part names
    ax.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False
    )
    return fig


def similarity_figure(
    matrix: np.ndarray,
    names: Sequence[str],
    parts: Sequence[str],
    *,
    title: str,
    colour_label: str = "RDM similarity",
):
    """Layer-by-layer heat map with part boundaries."""
    n = len(names)
    size = max(5.0, 0.2 * n + 2.8)
    fig = new_figure(size + 1.0, size)
    ax = fig.add_subplot()
    finite = matrix[np.isfinite(matrix)]
    low = float(min(0.0, finite.min())) if finite.size else 0.0
    image = ax.imshow(matrix, cmap="viridis", vmin=low, vmax=1.0, interpolation="nearest")
    for _, start, _stop in runs(list(parts))[1:]:
        ax.axhline(start - 0.5, color="white", lw=1.5)
        ax.axvline(start - 0.5, color="white", lw=1.5)
    _layer_axis(ax, names, parts, "x")
    _layer_axis(ax, names, parts, "y")
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_title(title, fontsize=10)
    cbar = fig.colorbar(image, ax=ax, shrink=0.7)
    cbar.set_label(colour_label, fontsize=8)
    cbar.ax.tick_params(labelsize=7)
    return fig


def arm_relevance_figure(lesion, varpart, parts_of: Mapping[str, str] | None = None):
    """Arm lesion accuracies and variance partitioning of layer RDMs.

    Parameters
    ----------
    lesion : pandas.DataFrame or None
        Columns ``arm``, ``accuracy`` and optionally ``accuracy_drop``.
    varpart : pandas.DataFrame or None
        Columns ``layer``, ``unique_visual``, ``unique_auditory``, ``shared``.
    parts_of : mapping of layer to part, optional (tick colours)
    """
    panels = [p for p in (lesion, varpart) if p is not None]
    n_var = 0 if varpart is None else len(varpart)
    widths = ([1.0] if lesion is not None else []) + (
        [max(1.5, 0.22 * n_var)] if varpart is not None else []
    )
    fig = new_figure(max(5.0, 2.6 * sum(widths) + 1.5), 4.2)
    axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False, width_ratios=widths)).ravel()
    k = 0
    if lesion is not None:
        ax = axes[k]
        k += 1
        arms = [str(a) for a in lesion["arm"]]
        acc = lesion["accuracy"].to_numpy(dtype=float)
        colours = [part_colour(a) if a in PART_COLOURS else "0.55" for a in arms]
        bars = ax.bar(np.arange(len(arms)), acc, color=colours)
        if "accuracy_drop" in lesion:
            drops = lesion["accuracy_drop"].to_numpy(dtype=float)
            for bar, drop, arm in zip(bars, drops, arms, strict=True):
                if arm != "none" and np.isfinite(drop):
                    ax.annotate(
                        f"drop {drop:.2f}",
                        (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        xytext=(0, 2),
                        textcoords="offset points",
                        ha="center",
                        fontsize=8,
                    )
        ax.set_xticks(np.arange(len(arms)))
        ax.set_xticklabels(
            ["intact" if a == "none" else f"{a} lesioned" for a in arms],
            rotation=20,
            ha="right",
            fontsize=8,
        )
        ax.set_ylabel("accuracy", fontsize=9)
        ax.set_ylim(0, max(1.0, float(np.nanmax(acc)) * 1.1 if acc.size else 1.0))
        ax.set_title("arm lesions", fontsize=10)
        ax.tick_params(axis="y", labelsize=8)
    if varpart is not None:
        ax = axes[k]
        layers = [str(x) for x in varpart["layer"]]
        x = np.arange(len(layers))
        bottom = np.zeros(len(layers))
        for column, colour, label in (
            ("unique_visual", PART_COLOURS["visual"], "unique visual"),
            ("unique_auditory", PART_COLOURS["auditory"], "unique auditory"),
            ("shared", "#c9a227", "shared"),
        ):
            if column not in varpart:
                continue
            heights = varpart[column].to_numpy(dtype=float)
            ax.bar(x, heights, bottom=bottom, color=colour, label=label, width=0.75)
            bottom = bottom + np.where(np.isfinite(heights), heights, 0.0)
        parts = [(parts_of or {}).get(layer, "") for layer in layers]
        _layer_axis(ax, layers, parts)
        ax.set_ylabel("variance explained (R\u00b2)", fontsize=9)
        ax.set_title("variance partitioning of layer RDMs", fontsize=10)
        ax.tick_params(axis="y", labelsize=8)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.005, 1.0), frameon=False)
    return fig


def layer_summary_figure(
    names: Sequence[str],
    parts: Sequence[str],
    panels: Sequence[tuple[str, Mapping[str, np.ndarray]]],
    *,
    highlight: Sequence[int] = (),
):
    """Grouped bars per layer, one row per panel, layers shaded by part.

    Parameters
    ----------
    names, parts : sequences of length n_layers
    panels : sequence of (y label, mapping of series name to ndarray of shape (n_layers,))
    highlight : indices of layers whose tick labels are drawn bold (the layers mapped below)
    """
    n = len(names)
    fig = new_figure(max(6.0, 0.3 * n + 2.5), 2.3 * len(panels) + 1.6)
    axes = np.atleast_1d(fig.subplots(len(panels), 1, squeeze=False, sharex=True)).ravel()
    x = np.arange(n)
    for row, (ax, (ylabel, series)) in enumerate(zip(axes, panels, strict=True)):
        _shade_parts(ax, parts, label=row == 0)
        width = 0.8 / max(1, len(series))
        palette = ["#34495e", "#e67e22", "#16a085", "#8e44ad"]
        for i, (label, values) in enumerate(series.items()):
            ax.bar(
                x - 0.4 + width * (i + 0.5),
                values,
                width=width,
                label=label,
                color=palette[i % len(palette)],
            )
        ax.set_ylabel(ylabel, fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
        if len(series) > 1:
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.005, 1.0), frameon=False)
        if row == 0:
            low, high = ax.get_ylim()
            ax.set_ylim(low, high + 0.15 * (high - low))
    _layer_axis(axes[-1], names, parts)
    for i in highlight:
        axes[-1].get_xticklabels()[i].set_fontweight("bold")
    return fig


_CROP_COLOURS = {"detected": "#2ca02c", "fallback": "#ff7f0e", "table": "#1f77b4"}


def contact_sheet_figure(items: Sequence[tuple], *, ncols: int = 6):
    """Stimuli with their face crop drawn on a frame, and the model's input beside each.

    Parameters
    ----------
    items : sequence of (title, frame, box, visual, source)
        ``frame`` (height, width, 3) uint8, ``box`` (x0, y0, x1, y1), ``visual``
        (size, size) in [-0.5, 0.5], ``source`` (detected, fallback, table, centre).
    ncols : int
        Stimuli per row.
    """
    from matplotlib.patches import Rectangle

    ncols = max(1, min(ncols, len(items)))
    nrows = -(-len(items) // ncols)
    fig = new_figure(2.2 * ncols, 1.25 * nrows + 0.3, constrained=False)
    grid = fig.add_gridspec(nrows, 2 * ncols, wspace=0.04, hspace=0.3)
    fig.subplots_adjust(left=0.01, right=0.99, top=1 - 0.25 / (1.25 * nrows + 0.3), bottom=0.01)
    for k, (title, frame, box, visual, source) in enumerate(items):
        r, c = divmod(k, ncols)
        ax_frame = fig.add_subplot(grid[r, 2 * c])
        ax_input = fig.add_subplot(grid[r, 2 * c + 1])
        colour = _CROP_COLOURS.get(str(source), _OTHER_COLOUR)
        if frame is not None:
            ax_frame.imshow(frame, interpolation="bilinear")
            x0, y0, x1, y1 = box
            ax_frame.add_patch(
                Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=1.2, edgecolor=colour)
            )
        if visual is not None:
            ax_input.imshow(visual, cmap="gray", vmin=-0.5, vmax=0.5, interpolation="nearest")
        for ax in (ax_frame, ax_input):
            ax.set_xticks([])
            ax.set_yticks([])
        ax_frame.set_title(str(title), fontsize=6, loc="left", color=colour)
    return fig
