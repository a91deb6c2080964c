"""Brain figures of the HTML reports: statistical maps and the winner-take-all map.

Like :mod:`.figures`, every function returns a pyplot-free
:class:`matplotlib.figure.Figure`; nilearn draws the slices and glass brains.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .figures import new_figure, part_colour, runs, tick_fontsize


def brain_map_figure(img, **kwargs):
    """Orthogonal slices at the peak (left) and a glass brain (right) of one map
    (arguments of :func:`_brain_map_figure`).

    A map with no voxel beyond the threshold (an encoding model explaining nothing, a
    band without unique variance) is a result: it is drawn as an empty brain, without
    nilearn's "empty mask" warning for the overlay it has nothing to put in.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="empty mask", category=UserWarning)
        return _brain_map_figure(img, **kwargs)


def _brain_map_figure(
    img,
    *,
    title: str,
    threshold: float | None,
    cmap: str = "cold_hot",
    colorbar_label: str = "",
    vmax: float | None = None,
    template_space: bool = True,
):
    """Outside a template space (``template_space=False``) the MNI background and the
    glass brain would mislead: the map is drawn on its own, ortho slices and axial
    slices.
    """
    from nilearn import plotting

    data = np.asarray(img.dataobj, dtype=np.float64)
    finite = np.isfinite(data) & (data != 0)
    # cut at the peak; an empty map at the centre of its grid, in five axial planes
    centre = (np.asarray(data.shape[:3]) - 1) / 2.0
    peak = centre
    if finite.any():
        peak = np.unravel_index(np.argmax(np.where(finite, np.abs(data), -np.inf)), data.shape)
    cut = tuple(float(c) for c in (img.affine @ np.r_[peak, 1.0])[:3])
    planes = np.linspace(0, data.shape[2] - 1, 7)[1:-1]
    z_cuts = [float((img.affine @ np.r_[centre[:2], k, 1.0])[2]) for k in planes]
    if vmax is None:
        vmax = float(np.abs(data[finite]).max()) if finite.any() else 1.0
    fig = new_figure(12.0, 2.9, constrained=False)
    left = fig.add_axes((0.0, 0.0, 0.5, 0.88))
    right = fig.add_axes((0.5, 0.0, 0.5, 0.88))
    clean = _nan_to_zero(img)
    background = {} if template_space else {"bg_img": None, "black_bg": False}
    plotting.plot_stat_map(
        clean,
        cut_coords=cut,
        display_mode="ortho",
        axes=left,
        figure=fig,
        **background,
        threshold=threshold,
        cmap=cmap,
        vmax=vmax,
        annotate=True,
        draw_cross=False,
        colorbar=True,
    )
    if not template_space:
        plotting.plot_stat_map(
            clean,
            display_mode="z",
            cut_coords=5 if finite.any() else z_cuts,
            axes=right,
            figure=fig,
            bg_img=None,
            black_bg=False,
            threshold=threshold,
            cmap=cmap,
            vmax=vmax,
            colorbar=True,
        )
        fig.suptitle(
            title + (f"  ({colorbar_label})" if colorbar_label else ""), fontsize=10, y=0.99
        )
        return fig
    plotting.plot_glass_brain(
        clean,
        axes=right,
        figure=fig,
        threshold=threshold,
        cmap=cmap,
        vmax=vmax,
        colorbar=True,
        plot_abs=False,
        symmetric_cbar=True,
    )
    fig.suptitle(title + (f"  ({colorbar_label})" if colorbar_label else ""), fontsize=10, y=0.99)
    return fig


def _nan_to_zero(img):
    import nibabel as nib

    data = np.nan_to_num(np.asarray(img.dataobj, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    return nib.Nifti1Image(data, img.affine)


def winner_figure(img, layer_names: Sequence[str], parts: Sequence[str]):
    """Winner-take-all layer map: slices in layer colours and a bar chart of voxel counts.

    ``img`` holds 1-based indices into ``layer_names`` (0 or NaN: no winner).
    """
    import nibabel as nib
    from matplotlib.colors import ListedColormap
    from nilearn import plotting

    data = np.nan_to_num(np.asarray(img.dataobj, dtype=np.float64), nan=0.0)
    codes = np.rint(data).astype(int)
    n = len(layer_names)
    codes[(codes < 1) | (codes > n)] = 0
    colours = _layer_colours(parts)
    counts = np.bincount(codes.ravel(), minlength=n + 1)[1:]
    fig = new_figure(12.0, 3.4, constrained=False)
    brain_ax = fig.add_axes((0.0, 0.05, 0.62, 0.85))
    bar_ax = fig.add_axes((0.68, 0.42, 0.3, 0.48))
    roi = nib.Nifti1Image(codes.astype(np.float32), img.affine)
    cmap = ListedColormap(colours)
    if counts.sum():
        plotting.plot_roi(
            roi,
            axes=brain_ax,
            figure=fig,
            cmap=cmap,
            vmin=0.5,
            vmax=n + 0.5,
            colorbar=False,
            draw_cross=False,
            threshold=0.5,
            alpha=0.9,
            cut_coords=_centre_of_mass(codes > 0, img.affine),
        )
    else:
        brain_ax.set_axis_off()
        brain_ax.text(0.5, 0.5, "no voxel has a winning layer", ha="center", va="center")
    shown = np.flatnonzero(counts)
    bar_ax.bar(np.arange(len(shown)), counts[shown], color=[colours[i] for i in shown])
    bar_ax.set_xticks(np.arange(len(shown)))
    bar_ax.set_xticklabels(
        [layer_names[i] for i in shown], rotation=90, fontsize=tick_fontsize(len(shown))
    )
    bar_ax.set_xlim(-0.5, max(len(shown), 1) - 0.5)
    bar_ax.set_ylabel("voxels won", fontsize=8)
    bar_ax.tick_params(axis="y", labelsize=7)
    fig.suptitle("winning layer per voxel", fontsize=10, y=0.99)
    return fig


def _centre_of_mass(mask: np.ndarray, affine: np.ndarray) -> tuple[float, float, float]:
    idx = np.argwhere(mask).mean(axis=0)
    return tuple(float(c) for c in (affine @ np.r_[idx, 1.0])[:3])


def _layer_colours(parts: Sequence[str]) -> list:
    """A distinct colour per layer, shades of its part's colour by depth."""
    from matplotlib.colors import to_rgb

    colours: list = [None] * len(parts)
    for part, start, stop in runs(list(parts)):
        base = np.array(to_rgb(part_colour(part)))
        k = stop - start
        for j in range(k):
            mix = 0.55 * (1 - j / max(1, k - 1))  # early layers lighter
            colours[start + j] = tuple(base * (1 - mix) + mix)
    return colours
