"""The encoding section of the group report: the group maps of each band's unique
variance (``--encoding`` at the participant level, tested by the group level).

Listed by :mod:`.build` only where the group level wrote encoding maps, so a report
of a run without them has the same sections as before.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..bidsnames import build_name, build_stem, parse_name
from . import brain_figures as bf
from .discovery import Context, sidecar
from .render import escape, note

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
    """The encoding section (id, heading, builder), or none without group encoding maps."""
    if not _unique_maps(ctx):
        return []
    return [("encoding", "Encoding models: unique variance", lambda: encoding_section(ctx))]


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
