"""The encoding sections of the reports. The group report: the group maps of each band's
unique variance (``--encoding`` at the participant level, tested by the group level), and
the per-region bars of the variance partition (the participants' ``desc-encodingroi``
tables, written with ``--roi``). A participant's report: per network, the same bars from
the participant's own table, and the list of the encoding maps written.

Listed by :mod:`.build` only where the group level wrote encoding maps, or the
participants wrote per-region tables or encoding maps, so a report of a run without
them has the same sections as before.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..bidsnames import build_name, build_stem, parse_name
from . import brain_figures as bf
from . import figures as rf
from .discovery import Context, read_tsv, sidecar
from .render import code, escape, note, table_html

_UNCORRECTED_Z = 3.09  # one-sided p = 0.001, as the searchlight group maps
_UNIQUE = "encodinguniquer2"


def _unique_maps(ctx: Context) -> dict[str, list[tuple[str, Path]]]:
    """Per model, each band's group z map of its unique variance, in file order."""
    found: dict[str, list[tuple[str, Path]]] = {}
    pattern = (
        f"task-{ctx.task}_space-{ctx.space}_model-*_band-*_desc-{_UNIQUE}_stat-z_statmap.nii.gz"
    )
    for path in sorted(ctx.output_dir.glob(pattern)):
        e = parse_name(path).entities
        if list(e) != ["task", "space", "model", "band", "desc", "stat"]:
            continue
        found.setdefault(e["model"], []).append((e["band"], path))
    return found


def encoding_sections(ctx: Context) -> list:
    """The encoding sections (id, heading, builder): the group maps of unique variance
    where the group level wrote them, the per-region bars where the participants wrote
    per-region tables; none without either."""
    out = []
    if _unique_maps(ctx):
        out.append(("encoding", "Encoding models: unique variance", lambda: encoding_section(ctx)))
    if roi_tables(ctx):
        out.append(("encodingroi", "Encoding models: regions", lambda: encoding_roi_section(ctx)))
    return out


def encoding_section(ctx: Context) -> str:
    """Each band's group map of unique variance, restricted to FWE p < alpha (uncorrected
    z > 3.09 where no voxel reaches it)."""
    import nibabel as nib

    out = [
        note(
            "Unique variance of each band (cross-validated R² of the joint model minus "
            "that of the model without the band), tested across participants by the "
            "one-sided sign-flip test (max-T family-wise error); the other encoding maps "
            "(joint R², split shares, shared variance, ceiling) are in the output folder."
        )
    ]
    for model, bands in sorted(_unique_maps(ctx).items()):
        out.append(f"<h3>model {escape(model)}</h3>")
        for band, z_path in bands:
            ents = parse_name(z_path).entities
            p_path = z_path.with_name(build_name({**ents, "stat": "p"}, "statmap", ".nii.gz"))
            img = nib.load(z_path)
            z = np.asarray(img.dataobj, dtype=np.float64)
            significant = None
            if p_path.is_file():
                p = np.asarray(nib.load(p_path).dataobj, dtype=np.float64)
                significant = np.isfinite(z) & (z != 0) & np.isfinite(p) & (p < ctx.alpha)
            if significant is not None and significant.any():
                shown, threshold = np.where(significant, z, 0.0), 1e-6
                how = f"{int(significant.sum())} voxels with FWE-corrected p &lt; {ctx.alpha:g}"
            else:
                shown, threshold = z, _UNCORRECTED_Z
                how = (
                    f"no voxel reaches FWE p &lt; {ctx.alpha:g}; shown at uncorrected z &gt; 3.09"
                    if significant is not None
                    else "z &gt; 3.09 (uncorrected; no p map found)"
                )
            shown_img = nib.Nifti1Image(shown.astype(np.float32), img.affine)
            finite = z[np.isfinite(z)]
            vmax = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
            layers = sidecar(z_path).get("Bands", {}).get(band, [])
            out.append(
                ctx.figures.html(
                    build_stem({**ents, "desc": f"{_UNIQUE}groupmap"}),
                    lambda shown_img=shown_img, band=band, threshold=threshold, vmax=vmax: (
                        bf.brain_map_figure(
                            shown_img,
                            title=f"unique variance of band {band}",
                            threshold=threshold,
                            colorbar_label="z",
                            vmax=vmax,
                            template_space=ctx.space.upper().startswith("MNI"),
                        )
                    ),
                    f"Group z map of the unique variance of band {escape(band)}"
                    + (f" (layers {escape(', '.join(layers))})" if layers else "")
                    + f": {how}; orthogonal slices through the peak (left) and glass brain "
                    "(right).",
                    inputs=[z_path] + ([p_path] if p_path.is_file() else []),
                )
            )
    return "".join(out)


# --------------------------------------------------------------------------- per region
_SHARED_COLOUR = "#9e9e9e"
#: A band that is no part of a network (a standard network's one band, ``network``),
#: away from the grey of the shared variance.
_OTHER_BAND_COLOUR = "#d98c1f"


def _band_colour(band: str) -> str:
    """The bar colour of a band: its part's colour, else :data:`_OTHER_BAND_COLOUR`."""
    return rf.PART_COLOURS.get(band, _OTHER_BAND_COLOUR)


def roi_tables(ctx: Context, subjects=None) -> dict[str, list[tuple[str, Path]]]:
    """Per model, each participant's per-region table (``sub-<s>_task-<t>_space-<sp>_
    model-<m>_desc-encodingroi_stats.tsv``), participants in order; ``subjects``
    restricts them."""
    found: dict[str, list[tuple[str, Path]]] = {}
    pattern = (
        f"sub-*/func/sub-*_task-{ctx.task}_space-{ctx.space}_model-*_desc-encodingroi_stats.tsv"
    )
    for path in sorted(ctx.output_dir.glob(pattern)):
        e = parse_name(path).entities
        if list(e) != ["sub", "task", "space", "model", "desc"]:
            continue
        if subjects is not None and e["sub"] not in subjects:
            continue
        found.setdefault(e["model"], []).append((e["sub"], path))
    return found


def _row_key(row) -> str:
    """The bar (or mark) a table row feeds: ``unique:<band>``, ``shared``, ``joint`` or
    ``ceiling``; None for the other maps."""
    band = row["band"]
    if row["stat"] != "r2" or isinstance(row["layer"], str):
        return None
    if row["quantity"] == "encodingunique" and isinstance(band, str):
        return f"unique:{band}"
    return {"encodingshared": "shared", "encoding": "joint", "encodingceiling": "ceiling"}.get(
        row["quantity"]
    )


def encoding_roi_summary(files):
    """Mean over participants, standard error (SD over participants, ddof 1, over the
    square root of their number; NaN with one) and number of participants of each
    region's unique variance per band, shared variance, joint R² and ceiling, from the
    participants' per-region tables (``files``). One row per region and quantity
    (``roi``, ``quantity``: ``unique:<band>``, ``shared``, ``joint``, ``ceiling``,
    ``mean``, ``se``, ``n``), regions and quantities in the order of the first table."""
    import pandas as pd

    values: dict[tuple[str, str], list[float]] = {}
    for path in files:
        table = read_tsv(path)
        if table is None:
            continue
        for _, row in table.iterrows():
            key = _row_key(row)
            if key is not None and np.isfinite(row["mean"]):
                values.setdefault((str(row["roi"]), key), []).append(float(row["mean"]))
    rows = []
    for (roi, key), v in values.items():
        x = np.asarray(v)
        se = float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else np.nan
        rows.append({"roi": roi, "quantity": key, "mean": float(x.mean()), "se": se, "n": x.size})
    return pd.DataFrame(rows, columns=["roi", "quantity", "mean", "se", "n"])


def encoding_roi_figure(summary, bands):
    """Per region, one bar per band's unique variance (the band's part colour; orange for
    a band that is no part, such as a standard network's ``network``) and one
    for the shared variance, error bars of one standard error, the joint R² (black) and
    the ceiling (grey, dashed) as lines across the region's bars."""
    regions = list(dict.fromkeys(summary["roi"]))
    keys = [f"unique:{b}" for b in bands] + ["shared"]
    n = len(keys)
    fig = rf.new_figure(min(2.0 + 0.25 * (n + 1) * len(regions), 9.0), 2.6)
    ax = fig.add_subplot(1, 1, 1)
    cell = summary.set_index(["roi", "quantity"])

    def get(roi, key, col):
        return float(cell.loc[(roi, key), col]) if (roi, key) in cell.index else np.nan

    width = 0.8 / n
    for j, key in enumerate(keys):
        x = np.arange(len(regions)) - 0.4 + width * (j + 0.5)
        mean = np.array([get(r, key, "mean") for r in regions])
        se = np.array([get(r, key, "se") for r in regions])
        colour = _band_colour(key.split(":", 1)[1]) if key != "shared" else _SHARED_COLOUR
        label = f"unique {key.split(':', 1)[1]}" if key != "shared" else "shared"
        ax.bar(x, np.nan_to_num(mean), width=width * 0.95, color=colour, label=label, zorder=2)
        ok = np.isfinite(mean) & np.isfinite(se)
        if ok.any():
            ax.errorbar(x[ok], mean[ok], yerr=se[ok], fmt="none", ecolor="black", lw=0.8, zorder=3)
    for k, roi in enumerate(regions):
        for key, style, label in (
            ("joint", dict(color="black", lw=1.4), "joint R²"),
            ("ceiling", dict(color="#707070", lw=1.2, ls="--"), "noise ceiling"),
        ):
            v = get(roi, key, "mean")
            if np.isfinite(v):
                ax.plot(
                    [k - 0.45, k + 0.45], [v, v], zorder=4, label=label if k == 0 else None, **style
                )
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xticks(np.arange(len(regions)), regions, fontsize=rf.tick_fontsize(len(regions)))
    ax.set_ylabel("R² (held-out run)")
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def encoding_roi_section(ctx: Context) -> str:
    """For each network, the bars of :func:`encoding_roi_figure` over the participants'
    per-region tables, and the table of the same numbers."""
    out = [
        note(
            "Per region (--roi): each band's unique variance and the shared variance as "
            "bars, the joint R² (black line) and the noise ceiling (dashed grey line, the "
            "R² of a perfect prediction on one held-out run) as marks; each value is the "
            "mean over the region's voxels, averaged over participants, error bars one "
            "standard error over participants."
        )
    ]
    for model, items in sorted(roi_tables(ctx).items()):
        files = [p for _, p in items]
        summary = encoding_roi_summary(files)
        out.append(f"<h3>model {escape(model)}</h3>")
        if summary.empty:
            out.append(note("No finite value in the per-region tables."))
            continue
        bands = list(sidecar(files[0]).get("Bands", {}))
        found = [q.split(":", 1)[1] for q in summary["quantity"] if q.startswith("unique:")]
        bands = [b for b in bands if b in found] + [
            b for b in dict.fromkeys(found) if b not in bands
        ]
        stem = build_stem(
            {"task": ctx.task, "space": ctx.space, "model": model, "desc": "encodingroibars"}
        )
        out.append(
            ctx.figures.html(
                stem,
                lambda summary=summary, bands=bands: encoding_roi_figure(summary, bands),
                f"Variance partition per region of model {escape(model)}, "
                f"{len(items)} participant(s): unique variance of each band and shared "
                "variance (bars), joint R² and noise ceiling (lines).",
                inputs=files,
            )
        )
        out.append(table_html(summary, max_rows=len(summary)))
    return "".join(out)


# --------------------------------------------------------------------------- one participant
def subject_encoding_maps(ctx: Context, subject: str) -> dict[str, list[Path]]:
    """Per model, the participant's encoding maps (``sub-<s>_task-<t>_space-<sp>_model-<m>
    [_band-<b>|_layer-<l>]_desc-encoding*_stat-<s>_statmap.nii.gz``), in file order."""
    found: dict[str, list[Path]] = {}
    pattern = (
        f"sub-{subject}/func/sub-{subject}_task-{ctx.task}_space-{ctx.space}_model-*"
        "_desc-encoding*_statmap.nii.gz"
    )
    for path in sorted(ctx.output_dir.glob(pattern)):
        e = parse_name(path).entities
        if list(e) not in (
            ["sub", "task", "space", "model", "desc", "stat"],
            ["sub", "task", "space", "model", "band", "desc", "stat"],
            ["sub", "task", "space", "model", "layer", "desc", "stat"],
        ):
            continue
        found.setdefault(e["model"], []).append(path)
    return found


def subject_encoding_sections(ctx: Context, subject: str) -> list:
    """The encoding section of a participant's report (id, heading, builder) where the
    participant has encoding maps; none otherwise."""
    if not subject_encoding_maps(ctx, subject):
        return []
    return [
        (
            "encoding",
            "Encoding models",
            lambda: subject_encoding_section(ctx, subject),
        )
    ]


def subject_encoding_section(ctx: Context, subject: str) -> str:
    """For each network, the bars of :func:`encoding_roi_figure` from the participant's
    per-region table (when it has one; one participant, no error bars) with their
    numbers, and the list of the encoding maps written with what each holds."""
    tables = {model: items[0][1] for model, items in roi_tables(ctx, [subject]).items()}
    out = [
        note(
            "Cross-validated encoding models of each network (--encoding): one band per "
            "part of a checkpoint's network, one band of all its layers for a standard "
            "network. Per region (--roi): each band's unique variance and the shared "
            "variance as bars, the joint R² (black line) and the noise ceiling (dashed grey "
            "line, the R² of a perfect prediction on one held-out run) as marks; each value "
            "is the mean of the map over the region's voxels."
        )
    ]
    for model, maps in sorted(subject_encoding_maps(ctx, subject).items()):
        out.append(f"<h3>model {escape(model)}</h3>")
        table = tables.get(model)
        if table is not None:
            out.append(_subject_roi_bars(ctx, subject, model, table))
        items = []
        for path in maps:
            text = sidecar(path).get("Description", "")
            items.append(f"<li>{code(path.name)}{': ' + escape(text) if text else ''}</li>")
        layers = sidecar(maps[0]).get("Bands", {})
        bands = "; ".join(f"{escape(b)}: {escape(', '.join(v))}" for b, v in layers.items())
        out.append(
            f"<p>{len(maps)} maps written in <code>sub-{escape(subject)}/func/</code>"
            + (f" (bands: {bands})" if bands else "")
            + f":</p><ul>{''.join(items)}</ul>"
        )
    return "".join(out)


def _subject_roi_bars(ctx: Context, subject: str, model: str, table: Path) -> str:
    """The bars of one participant's per-region table, and their numbers."""
    summary = encoding_roi_summary([table])
    if summary.empty:
        return note("No finite value in the per-region table.")
    bands = list(sidecar(table).get("Bands", {}))
    found = [q.split(":", 1)[1] for q in summary["quantity"] if q.startswith("unique:")]
    bands = [b for b in bands if b in found] + [b for b in dict.fromkeys(found) if b not in bands]
    stem = build_stem(
        {
            "sub": subject,
            "task": ctx.task,
            "space": ctx.space,
            "model": model,
            "desc": "encodingroibars",
        }
    )
    return ctx.figures.html(
        stem,
        lambda: encoding_roi_figure(summary, bands),
        f"Variance partition per region of model {escape(model)}, sub-{escape(subject)}: "
        "unique variance of each band and shared variance (bars), joint R² and noise "
        "ceiling (lines).",
        inputs=[table],
    ) + table_html(summary[["roi", "quantity", "mean"]], max_rows=len(summary))
