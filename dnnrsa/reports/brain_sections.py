"""The sections of the brain side of the reports: searchlight, group and winner maps.

One function per section, as in :mod:`.sections`. Every layer is summarised in a
bar chart; brain maps are drawn for the best layer of each network part and for
the layers asked for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._registries import group_map_statistic
from ..bidsnames import build_name, build_stem, parse_name, subject_dir
from . import brain_figures as bf
from . import figures as rf
from .discovery import Context, Layer, MapSet, Model, map_sets, read_tsv, sidecar
from .render import code, escape, missing, note, table_html
from .sections import add_requested, best_per_part, layer_meta, layer_position

_UNCORRECTED_Z = 3.09  # one-sided p = 0.001


def _is_template(space: str) -> bool:
    """Whether maps in this space can be drawn on the MNI template and a glass brain."""
    return space.upper().startswith("MNI")


def _layer_entity(model: Model, layer: Layer) -> str | None:
    """The layer entity of figure names; None for a model without layers."""
    return None if layer.label == model.label else layer.label


def _load(path: Path) -> np.ndarray:
    import nibabel as nib

    return np.asarray(nib.load(path).dataobj, dtype=np.float64)


def _map_scores(path: Path) -> tuple[float, float]:
    """Maximum and 99th percentile of a map's finite non-zero voxels."""
    data = _load(path)
    values = data[np.isfinite(data) & (data != 0)]
    if not values.size:
        return np.nan, np.nan
    return float(values.max()), float(np.percentile(values, 99))


def _chosen_note(ctx: Context, sets: list[MapSet], rule: str) -> list[str]:
    if not any(len(ms.layers) > 1 for ms in sets):
        return []
    return [
        note(
            "Every layer is summarised in the bar charts; brain maps are drawn for the "
            + rule
            + (" and the layers asked for" if ctx.layers_requested else "")
            + "."
        )
    ]


# --------------------------------------------------------------------------- participant maps
def subject_maps_section(ctx: Context, subject: str) -> str:
    """A participant's searchlight maps: per-layer scores, and maps of the chosen layers."""
    folder = subject_dir(ctx.output_dir, subject)
    sets = map_sets(ctx, folder, f"sub-{subject}_", None)
    sets = [s for s in sets if s.stat not in ("effect",)]
    if not sets:
        return missing(
            f"sub-{subject}/func/sub-{subject}_task-{ctx.task}_space-{ctx.space}"
            "_model-*[_layer-*]_stat-*_statmap.nii.gz",
            "searchlight maps",
        )
    out = _chosen_note(ctx, sets, "best layer of each network part (highest 99th-percentile score)")
    for ms in sets:
        scores = {la.label: _map_scores(ms.paths[la.label]) for la in ms.layers}
        peak = np.array([scores[la.label][0] for la in ms.layers])
        p99 = np.array([scores[la.label][1] for la in ms.layers])
        chosen = best_per_part(ms.layers, {k: v[1] for k, v in scores.items()})
        chosen = add_requested(ctx, ms.model, chosen, ms.layers)
        ents = {"sub": subject, "task": ctx.task, "space": ctx.space, "model": ms.model.label}
        out.append(f"<h3>model {escape(ms.model.title)}, {escape(ms.stat)}</h3>")
        if len(ms.layers) > 1:
            out.append(
                ctx.figures.html(
                    build_stem({**ents, "stat": ms.stat, "desc": "layersummary"}),
                    lambda ms=ms, a=peak, b=p99, c=chosen: rf.layer_summary_figure(
                        [la.name for la in ms.layers],
                        [la.part for la in ms.layers],
                        [(f"{ms.stat} score", {"maximum": a, "99th percentile": b})],
                        highlight=[ms.layers.index(la) for la in c],
                    ),
                    f"Searchlight {escape(ms.stat)} scores of every layer of model "
                    f"{escape(ms.model.label)}: maximum and 99th percentile over the brain. "
                    "Layers drawn below in bold.",
                    inputs=list(ms.paths.values()),
                )
            )
        out += [_subject_map(ctx, ents, ms, layer) for layer in chosen]
    return "".join(out)


def _subject_map(ctx: Context, ents: dict[str, str], ms: MapSet, layer: Layer) -> str:
    """Slices and glass brain (axial slices outside a template space) of one layer's map."""
    import nibabel as nib

    path = ms.paths[layer.label]
    img = nib.load(path)
    data = np.asarray(img.dataobj, dtype=np.float64)
    positive = data[np.isfinite(data) & (data > 0)]
    template = _is_template(ctx.space)
    threshold = None
    # Native-space maps are drawn whole (on no template); template maps from
    # their 95th percentile, kept below the maximum so tied maxima stay visible.
    if positive.size and template:
        threshold = float(min(np.percentile(positive, 95), 0.999 * positive.max()))
    radius = sidecar(path).get("RadiusMm")
    views = (
        "orthogonal slices through the peak (left) and glass brain (right)"
        if template
        else "orthogonal slices through the peak (left) and axial slices (right)"
    )
    shown = (
        f"voxels above the map's 95th percentile of positive scores ({threshold:.3g})."
        if threshold is not None
        else "all voxels."
    )
    return ctx.figures.html(
        build_stem(
            {
                **ents,
                "layer": _layer_entity(ms.model, layer),
                "stat": ms.stat,
                "desc": "searchlight",
            }
        ),
        lambda: bf.brain_map_figure(
            img,
            title=f"{layer.name} ({layer.part})",
            threshold=threshold,
            colorbar_label=f"{ms.stat} score",
            template_space=template,
        ),
        f"Searchlight RSA map of layer {escape(layer.name)} ({escape(layer.part)}): "
        f"{escape(ms.stat)} correlation between neural and layer RDMs"
        + (f" in {escape(radius)} mm spheres" if radius is not None else "")
        + f"; {views}; {shown}",
        inputs=[path],
    )


# --------------------------------------------------------------------------- group maps
def group_maps_section(ctx: Context) -> str:
    """Group z (or t) maps: per-layer peak and FWE-significant voxels, maps of chosen layers."""
    z_stat, t_stat, p_stat = (
        group_map_statistic(key).entities["stat"] for key in ("z", "t", "p_fwe")
    )
    z_sets = map_sets(ctx, ctx.output_dir, "", (z_stat,)) or map_sets(
        ctx, ctx.output_dir, "", (t_stat,)
    )
    if not z_sets:
        return missing(
            f"task-{ctx.task}_space-{ctx.space}_model-*[_layer-*]_stat-{z_stat}_statmap.nii.gz",
            "group maps",
        )
    p_sets = {s.model.label: s for s in map_sets(ctx, ctx.output_dir, "", (p_stat,))}
    out = _chosen_note(
        ctx, z_sets, f"layer with the highest peak {z_sets[0].stat} of each network part"
    )
    for ms in z_sets:
        p_set = p_sets.get(ms.model.label)
        peaks, masked = _group_scores(ms, p_set, ctx.alpha)
        chosen = best_per_part(ms.layers, peaks)
        chosen = add_requested(ctx, ms.model, chosen, ms.layers)
        ents = {"task": ctx.task, "space": ctx.space, "model": ms.model.label}
        out.append(f"<h3>model {escape(ms.model.title)}</h3>")
        if len(ms.layers) > 1:
            out.append(_group_summary(ctx, ents, ms, peaks, masked, chosen))
        for layer in chosen:
            p_path = p_set.paths[layer.label] if layer.label in masked else None
            out.append(_group_map(ctx, ents, ms, layer, masked.get(layer.label), p_path))
    return "".join(out)


def _group_scores(
    ms: MapSet, p_set: MapSet | None, alpha: float
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Peak statistic of each layer, and its voxels with FWE p < alpha where a p map exists."""
    peaks, masked = {}, {}
    for layer in ms.layers:
        z = _load(ms.paths[layer.label])
        inside = np.isfinite(z) & (z != 0)
        peaks[layer.label] = float(z[inside].max()) if inside.any() else np.nan
        if p_set is not None and layer.label in p_set.paths:
            p = _load(p_set.paths[layer.label])
            masked[layer.label] = inside & np.isfinite(p) & (p < alpha)
    return peaks, masked


def _group_summary(
    ctx: Context,
    ents: dict[str, str],
    ms: MapSet,
    peaks: dict[str, float],
    masked: dict[str, np.ndarray],
    chosen: list[Layer],
) -> str:
    """Bars of every layer's peak statistic and number of FWE-significant voxels."""
    panels = [
        (f"peak {ms.stat}", {f"peak {ms.stat}": np.array([peaks[la.label] for la in ms.layers])})
    ]
    if masked:
        n_sig = [int(masked[la.label].sum()) if la.label in masked else np.nan for la in ms.layers]
        panels.append((f"voxels, FWE p < {ctx.alpha:g}", {"voxels": np.array(n_sig, dtype=float)}))
    return ctx.figures.html(
        build_stem({**ents, "desc": "layersummary"}),
        lambda: rf.layer_summary_figure(
            [la.name for la in ms.layers],
            [la.part for la in ms.layers],
            panels,
            highlight=[ms.layers.index(la) for la in chosen],
        ),
        f"Group results of every layer of model {escape(ms.model.label)}: peak "
        f"{escape(ms.stat)}"
        + (
            f" and number of voxels with family-wise error corrected p &lt; {ctx.alpha:g}"
            if masked
            else ""
        )
        + ". Layers drawn below in bold.",
        inputs=list(ms.paths.values()),
    )


def _group_map(
    ctx: Context,
    ents: dict[str, str],
    ms: MapSet,
    layer: Layer,
    significant: np.ndarray | None,
    p_path: Path | None,
) -> str:
    """One layer's group map, restricted to FWE p < alpha (uncorrected z > 3.09 if none)."""
    import nibabel as nib

    path = ms.paths[layer.label]
    img = nib.load(path)
    z = np.asarray(img.dataobj, dtype=np.float64)
    if significant is not None and significant.any():
        shown, threshold = np.where(significant, z, 0.0), 1e-6
        how = f"voxels with FWE-corrected p &lt; {ctx.alpha:g}"
    elif significant is not None:
        shown, threshold = z, _UNCORRECTED_Z
        how = (
            f"no voxel reaches FWE p &lt; {ctx.alpha:g}; shown at uncorrected "
            f"{escape(ms.stat)} &gt; 3.09"
        )
    else:
        shown, threshold = z, _UNCORRECTED_Z
        how = f"{escape(ms.stat)} &gt; 3.09 (uncorrected; no p map found)"
    shown_img = nib.Nifti1Image(shown.astype(np.float32), img.affine)
    vmax = float(np.nanmax(np.abs(z)))
    return ctx.figures.html(
        build_stem(
            {**ents, "layer": _layer_entity(ms.model, layer), "stat": ms.stat, "desc": "groupmap"}
        ),
        lambda: bf.brain_map_figure(
            shown_img,
            title=f"{layer.name} ({layer.part})",
            threshold=threshold,
            colorbar_label=ms.stat,
            vmax=vmax,
            template_space=_is_template(ctx.space),
        ),
        f"Group {escape(ms.stat)} map of layer {escape(layer.name)} ({escape(layer.part)}): "
        f"{how}; orthogonal slices through the peak (left) and glass brain (right).",
        inputs=[path] + ([p_path] if p_path is not None else []),
    )


# --------------------------------------------------------------------------- clusters and winner
def clusters_section(ctx: Context) -> str:
    """Every non-empty cluster table of every model, layers in network order."""
    out = []
    for model in ctx.models:
        stem = build_stem({"task": ctx.task, "space": ctx.space, "model": model.label})
        found = sorted(ctx.output_dir.glob(f"{stem}_clusters.tsv"))
        found += sorted(ctx.output_dir.glob(f"{stem}_layer-*_clusters.tsv"))
        # the tables of the encoding maps (with a desc) are not layers' tables
        found = [p for p in found if "desc" not in parse_name(p).entities]
        paths = {parse_name(p).get("layer", model.label): p for p in found}
        if not paths:
            continue
        out.append(f"<h3>model {escape(model.title)}</h3>")
        empty = []
        order = sorted(paths, key=lambda k: layer_position(model, k, 0))
        for key in order:
            table = read_tsv(paths[key])
            layer = model.lookup(key)
            name = layer.name if layer else key
            if table is None or table.empty:
                empty.append(name)
                continue
            out.append(
                f"<details open><summary>{escape(name)} ({len(table)} clusters)</summary>"
                f"{table_html(table)}</details>"
            )
        if empty:
            out.append(note("No clusters for: " + ", ".join(escape(n) for n in empty) + "."))
    if not out:
        return missing(
            f"task-{ctx.task}_space-{ctx.space}_model-*[_layer-*]_clusters.tsv", "cluster tables"
        )
    return "".join(out)


def winner_section(ctx: Context) -> str:
    """The winner-take-all layer map, restricted to p < ``ctx.alpha`` when a p map exists."""
    import nibabel as nib

    out = []
    for model in ctx.models:
        ents = {"task": ctx.task, "space": ctx.space, "model": model.label, "desc": "winner"}
        path = ctx.output_dir / build_name(ents, "statmap", ".nii.gz")
        if not path.is_file():
            continue
        meta = sidecar(path)
        keys = meta.get("Layers")
        if not isinstance(keys, list) or not keys:
            keys = [la.label for la in model.layers]
        keys = [str(k) for k in keys]
        names, parts = layer_meta(model, keys)
        for field_name, values in (("LayerNames", names), ("Parts", parts)):
            given = meta.get(field_name)
            if isinstance(given, list) and len(given) == len(keys):
                for i, value in enumerate(given):
                    if model.lookup(keys[i]) is None:
                        values[i] = str(value)
        # Voxel values index "Layers" from IndexBase (0 unless stated); others: no winner.
        base = int(meta.get("IndexBase", 0))
        img = nib.load(path)
        data = np.asarray(img.dataobj, dtype=np.float64) - base + 1
        inputs = [path]
        how = "every voxel with a winner"
        p_path = ctx.output_dir / build_name({**ents, "stat": "p"}, "statmap", ".nii.gz")
        if p_path.is_file():
            p_values = np.asarray(nib.load(p_path).dataobj, dtype=np.float64)
            keep = np.isfinite(p_values) & (p_values < ctx.alpha)
            if keep.any():
                data = np.where(keep, data, 0.0)
                how = f"voxels where the winning layer beats the others at p &lt; {ctx.alpha:g}"
            else:
                how = f"no voxel's winner reaches p &lt; {ctx.alpha:g}; every winner shown"
            inputs.append(p_path)
        img = nib.Nifti1Image(np.nan_to_num(data).astype(np.float32), img.affine)
        out.append(f"<h3>model {escape(model.title)}</h3>")
        out.append(
            ctx.figures.html(
                build_stem(ents),
                lambda im=img, n=names, p=parts: bf.winner_figure(im, n, p),
                f"Winner-take-all map of model {escape(model.label)} ({how}): the layer with the "
                "highest group score in each voxel (colours: shades of the network part, lighter "
                "for earlier layers), and the number of voxels each layer wins.",
                inputs=inputs,
            )
        )
    if not out:
        return missing(
            f"task-{ctx.task}_space-{ctx.space}_model-*_desc-winner_statmap.nii.gz",
            "winner-take-all maps",
        )
    return "".join(out)


def mask_path(ctx: Context, subject: str) -> Path:
    """The brain mask the participant level used (written beside the patterns)."""
    ents = {"sub": subject, "task": ctx.task, "space": ctx.space, "desc": "brain"}
    return subject_dir(ctx.output_dir, subject) / build_name(ents, "mask", ".nii.gz")


def brain_mask_section(ctx: Context, subject: str) -> str:
    """The brain mask used: voxel counts, what was excluded and why, and the mask drawn."""
    import nibabel as nib

    path = mask_path(ctx, subject)
    meta = sidecar(path)
    rows = [
        ("voxels in the mask", meta.get("MaskVoxels")),
        ("voxels passing the intensity threshold", meta.get("CandidateVoxels")),
        ("excluded: a NaN or infinite sample in some run", meta.get("NonFiniteVoxelsExcluded")),
        ("excluded: outside the largest connected piece", meta.get("PrunedVoxels")),
    ]
    import pandas as pd

    counts = pd.DataFrame(
        {"voxels": [k for k, _ in rows], "count": ["n/a" if v is None else str(v) for _, v in rows]}
    )
    text = table_html(counts)
    lost = meta.get("LostFraction")
    if lost is not None and float(lost) > 0.2:
        text += note(
            f"<strong>Warning:</strong> the mask lost {float(lost):.0%} of the voxels that pass "
            "its own intensity threshold; check the BOLD runs for zeroed or non-finite slices."
        )
    img = nib.load(path)
    stem = build_stem({"sub": subject, "task": ctx.task, "space": ctx.space, "desc": "brain"})
    return text + ctx.figures.html(
        stem + "_mask",
        lambda: bf.brain_map_figure(
            img,
            title=f"sub-{subject} brain mask",
            threshold=0.5,
            cmap="Greens",
            template_space=_is_template(ctx.space),
        ),
        f"The brain mask of sub-{escape(subject)} ({code(path.name)}): every searchlight sphere "
        "and pattern lies inside it.",
        inputs=[path],
    )
