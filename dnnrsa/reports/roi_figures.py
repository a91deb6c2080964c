"""Figures of the regions of interest: model performance with the noise ceiling.

Like :mod:`.figures`, every function takes arrays and returns a
:class:`matplotlib.figure.Figure` built without pyplot. The RDMs of a region are drawn
with :func:`.figures.rdm_grid`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .figures import new_figure, part_colour, runs, tick_fontsize

_GROUP_GAP = 0.8  # extra space between the bars of two network parts
_CEILING_COLOUR = "#b0b0b0"


def _part_name(part: str) -> str:
    return "user model" if part == "model" else str(part)


def bar_positions(parts: Sequence[str]) -> np.ndarray:
    """x position of each bar: consecutive bars of one part touch, parts are set apart."""
    positions, x = [], 0.0
    for k, part in enumerate(parts):
        if k and part != parts[k - 1]:
            x += _GROUP_GAP
        positions.append(x)
        x += 1.0
    return np.asarray(positions, dtype=float)


def beats_matrix(names: Sequence[str], model_a, model_b, difference, p_adjusted, alpha: float):
    """``beats[i, j]``: model ``i`` is significantly better than model ``j``.

    A pair counts when its adjusted p-value is below ``alpha``; the sign of its
    difference (``mean[a] - mean[b]``) says which model of the pair is better. Pairs
    naming a model outside ``names`` are ignored.
    """
    index = {str(n): k for k, n in enumerate(names)}
    beats = np.zeros((len(names), len(names)), dtype=bool)
    for a, b, d, p in zip(model_a, model_b, difference, p_adjusted, strict=True):
        i, j = index.get(str(a)), index.get(str(b))
        if i is None or j is None or not (np.isfinite(p) and p < alpha and np.isfinite(d)):
            continue
        if d > 0:
            beats[i, j] = True
        elif d < 0:
            beats[j, i] = True
    return beats


def _ceiling(ax, ceiling, x0: float, x1: float) -> None:
    lower, upper = ceiling
    if np.isfinite(lower) and np.isfinite(upper):
        ax.fill_between([x0, x1], lower, upper, color=_CEILING_COLOUR, alpha=0.45, lw=0, zorder=0)
        ax.plot([x0, x1], [lower, lower], color="#808080", lw=0.8, zorder=0.5)


def _bars(ax, x, mean, ci, parts, best: int | None) -> None:
    colours = [part_colour(p) for p in parts]
    heights = np.nan_to_num(mean, nan=0.0)
    edges = ["black" if k == best else "none" for k in range(len(x))]
    ax.bar(x, heights, width=0.8, color=colours, edgecolor=edges, linewidth=1.2, zorder=2)
    low, high = np.asarray(ci[0], float), np.asarray(ci[1], float)
    ok = np.isfinite(low) & np.isfinite(high) & np.isfinite(mean)
    if ok.any():
        err = np.vstack([mean[ok] - low[ok], high[ok] - mean[ok]])
        ax.errorbar(
            x[ok], mean[ok], yerr=np.maximum(err, 0), fmt="none", ecolor="black", lw=0.8, zorder=3
        )


def _zero_markers(ax, x, mean, ci, above_zero) -> None:
    top = np.where(np.isfinite(ci[1]), ci[1], mean)
    span = np.nanmax(np.abs(np.concatenate([top, mean, [1e-9]])))
    for k in np.flatnonzero(above_zero):
        if np.isfinite(top[k]):
            ax.text(x[k], top[k] + 0.02 * span, "*", ha="center", va="bottom", fontsize=9)


def _part_labels(ax, x, parts) -> None:
    from matplotlib.transforms import blended_transform_factory

    trans = blended_transform_factory(ax.transData, ax.transAxes)
    for part, start, stop in runs(list(parts)):
        ax.text(
            (x[start] + x[stop - 1]) / 2,
            1.01,
            _part_name(part),
            transform=trans,
            ha="center",
            va="bottom",
            fontsize=8,
            fontweight="bold",
            color=part_colour(part),
        )


def _beats_panel(ax, x, names, parts, beats) -> None:
    """Column of each model: a dot in the row of every model it significantly beats."""
    n = len(names)
    rows, cols = np.nonzero(beats.T)  # row: the beaten model; column: the winner
    ax.scatter(x[cols], rows, s=max(6.0, 60.0 / max(n, 1) ** 0.5), c="black", lw=0)
    for k in range(n):
        ax.axhline(k, color="#e4e4e4", lw=0.4, zorder=0)
        ax.axvline(x[k], color="#e4e4e4", lw=0.4, zorder=0)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_yticks(np.arange(n))
    ax.set_yticklabels(names, fontsize=tick_fontsize(n))
    for text, part in zip(ax.get_yticklabels(), parts, strict=True):
        text.set_color(part_colour(part))
    ax.set_ylabel("beaten by the model\nof the column", fontsize=8)
    ax.tick_params(axis="x", bottom=False, labelbottom=False)
    for spine in ax.spines.values():
        spine.set_visible(False)


def roi_bar_figure(
    names: Sequence[str],
    parts: Sequence[str],
    mean,
    ci,
    above_zero,
    beats,
    ceiling: tuple[float, float],
    *,
    comparator: str = "",
):
    """Model performance in one region: bars, CIs, noise ceiling and pairwise wins.

    Parameters
    ----------
    names, parts : sequences of length n_models
        Display name and network part of each model, in display order (parts grouped).
    mean : ndarray of shape (n_models,)
        Evaluation of each model (bar height).
    ci : ndarray of shape (2, n_models)
        Lower and upper confidence limits (error bars).
    above_zero : ndarray of bool, shape (n_models,)
        Models significantly above zero (an asterisk above the bar).
    beats : ndarray of bool, shape (n_models, n_models)
        ``beats[i, j]``: model ``i`` is significantly better than model ``j``
        (:func:`beats_matrix`); drawn below the bars when any is set.
    ceiling : (lower, upper)
        Noise ceiling drawn as a band behind the bars.
    """
    from matplotlib.patches import Patch

    n = len(names)
    mean = np.asarray(mean, dtype=float)
    ci = np.asarray(ci, dtype=float).reshape(2, n)
    x = bar_positions(parts)
    best = int(np.nanargmax(mean)) if np.isfinite(mean).any() else None
    beats = np.asarray(beats, dtype=bool)
    show_beats = n > 1 and beats.any()
    width = float(np.clip(0.22 * x[-1] + 3.5, 5.0, 16.0)) if n else 5.0
    matrix_h = float(np.clip(0.13 * n + 0.6, 1.2, 9.0)) if show_beats else 0.0
    fig = new_figure(width, 3.6 + matrix_h)
    grid = fig.add_gridspec(
        2 if show_beats else 1, 1, height_ratios=[3.6, matrix_h][: 1 + show_beats]
    )
    ax = fig.add_subplot(grid[0])
    x0, x1 = (x[0] - 0.7, x[-1] + 0.7) if n else (-0.5, 0.5)
    _ceiling(ax, ceiling, x0, x1)
    _bars(ax, x, mean, ci, parts, best)
    _zero_markers(ax, x, mean, ci, np.asarray(above_zero, dtype=bool))
    _part_labels(ax, x, parts)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xlim(x0, x1)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=90, fontsize=tick_fontsize(n))
    for text, part in zip(ax.get_xticklabels(), parts, strict=True):
        text.set_color(part_colour(part))
    ax.set_ylabel(f"RDM correlation ({comparator})" if comparator else "RDM correlation")
    handles = [Patch(color=part_colour(p), label=_part_name(p)) for p in dict.fromkeys(parts)]
    handles.append(Patch(color=_CEILING_COLOUR, alpha=0.45, label="noise ceiling"))
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if show_beats:
        _beats_panel(fig.add_subplot(grid[1], sharex=ax), x, names, parts, beats)
        ax.set_xlim(x0, x1)
    return fig
