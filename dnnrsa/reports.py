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
"""

from __future__ import annotations

import base64
import html
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

import numpy as np

from ._io import atomic_write
from ._version import __version__

logger = logging.getLogger(__name__)

__all__ = ["build_group_report", "build_subject_report", "condition_order"]

_LABEL_RE = re.compile(r"^[a-zA-Z0-9]+$")
_ORDER_PREFERENCE = ("emotion", "identity")
_PART_ORDER = ("visual", "auditory", "crossmodal")
_NON_LABEL_COLUMNS = {"stim_file", "onset", "duration"}
_MAX_TABLE_ROWS = 25
_ALPHA = 0.05


# --------------------------------------------------------------------------- public helpers
def condition_order(labels, by: str | Sequence[str]) -> np.ndarray:
    """Order conditions by one or more label sets (stable, categories in order of appearance).

    Conditions are sorted by the first label set, ties by the second and so on;
    categories keep the order in which they first appear in ``labels`` and
    conditions that tie on every key keep their original order.

    Parameters
    ----------
    labels : pandas.DataFrame or mapping of str to sequence of length n_conditions
        Label sets of the conditions, one column each, rows in RDM condition order.
    by : str or sequence of str
        Names of the label sets to sort by.

    Returns
    -------
    order : ndarray of shape (n_conditions,)
        Condition indices in display order: ``rdm_square[np.ix_(order, order)]``.
    """
    keys = [by] if isinstance(by, str) else list(by)
    if not keys:
        raise ValueError("by must name at least one label set; got an empty sequence")
    columns = {}
    for key in keys:
        if key not in labels:
            raise ValueError(f"by names {key!r}, which is not a label set; have {list(labels)}")
        columns[key] = [str(v) for v in labels[key]]
    n = len(columns[keys[0]])
    codes = []
    for key in keys:
        seen: dict[str, int] = {}
        codes.append(np.array([seen.setdefault(v, len(seen)) for v in columns[key]]))
        if len(codes[-1]) != n:
            raise ValueError(f"label set {key!r} has {len(codes[-1])} entries; expected {n}")
    # np.lexsort sorts by the last key first and is stable.
    return np.lexsort(tuple(reversed(codes))).astype(np.intp)


# --------------------------------------------------------------------------- file discovery
def _entities(name: str) -> tuple[dict[str, str], str]:
    """BIDS-like entities and suffix of a file name."""
    stem = name.split(".", 1)[0]
    parts = stem.split("_")
    entities = {}
    for part in parts[:-1]:
        key, sep, value = part.partition("-")
        if sep:
            entities[key] = value
    return entities, parts[-1]


def _check_label(value: str | None, name: str, *, prefix: str = "") -> str | None:
    if value is None:
        return None
    value = str(value)
    if prefix and value.startswith(prefix):
        value = value[len(prefix) :]
    if not _LABEL_RE.match(value):
        raise ValueError(f"{name} must be an alphanumeric BIDS label; got {value!r}")
    return value


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        logger.warning("cannot read %s (%s); ignoring it", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def _sidecar(path: Path) -> dict:
    name = path.name
    for ext in (".nii.gz", ".nii", ".tsv"):
        if name.endswith(ext):
            return _read_json(path.with_name(name[: -len(ext)] + ".json"))
    return {}


def _read_tsv(path: Path):
    import pandas as pd

    try:
        return pd.read_csv(path, sep="\t", na_values=["n/a"])
    except Exception as exc:  # pandas raises several parser errors
        logger.warning("cannot read %s (%s); its section is skipped", path, exc)
        return None


@dataclass
class _Layer:
    label: str
    name: str
    part: str
    index: int
    rdm_path: Path | None = None


@dataclass
class _Model:
    label: str
    layers: list[_Layer] = field(default_factory=list)

    @property
    def is_dnn(self) -> bool:
        return any(layer.part != "model" for layer in self.layers)

    def lookup(self, key: str) -> _Layer | None:
        for layer in self.layers:
            if key in (layer.label, layer.name):
                return layer
        return None


class _FigureStore:
    """Saves each figure under figures/ and returns it as an HTML <figure> with a data URI."""

    def __init__(self, output_dir: Path, reuse: bool):
        self.folder = output_dir / "figures"
        self.reuse = reuse
        self.saved: list[Path] = []

    def html(
        self,
        name: str,
        make: Callable[[], object],
        caption: str,
        *,
        inputs: Sequence[Path] = (),
    ) -> str:
        from ._report_figures import figure_to_png

        path = self.folder / f"{name}_figure.png"
        png = None
        if self.reuse and inputs and path.is_file():
            newest = max((p.stat().st_mtime for p in inputs if p.exists()), default=np.inf)
            if path.stat().st_mtime >= newest:
                png = path.read_bytes()
        if png is None:
            png = figure_to_png(make())
            with atomic_write(path, "wb") as fh:
                fh.write(png)
        self.saved.append(path)
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        alt = html.escape(re.sub(r"<[^>]+>", "", caption).split(". ")[0].split(": ")[0], quote=True)
        return (
            f'<figure><img src="{uri}" alt="{alt}" data-file="figures/{html.escape(path.name)}">'
            f"<figcaption>{caption}</figcaption></figure>"
        )


@dataclass
class _Context:
    output_dir: Path
    task: str
    space: str
    models: list[_Model]
    stimuli: object  # pandas.DataFrame or None
    figures: _FigureStore
    layers_requested: tuple[str, ...] = ()
    _rdms: dict[str, tuple[np.ndarray, list[str]]] = field(default_factory=dict)

    def dataset_file(self, *entities: str, suffix: str) -> Path:
        return self.output_dir / "_".join([f"task-{self.task}", *entities, suffix])

    def rdms(self, model: _Model) -> tuple[np.ndarray, list[str]]:
        """Layer RDM vectors (n_layers_with_rdm, n_pairs) and condition labels."""
        from .rdm import read_rdm_tsv

        if model.label not in self._rdms:
            vectors, conditions = [], None
            for layer in model.layers:
                vec, labels = read_rdm_tsv(layer.rdm_path)
                if conditions is None:
                    conditions = labels
                elif labels != conditions:
                    raise ValueError(
                        f"{layer.rdm_path.name}: conditions differ from the model's other RDMs"
                    )
                vectors.append(vec)
            self._rdms[model.label] = (np.vstack(vectors), conditions or [])
        return self._rdms[model.label]


def _discover_models(output_dir: Path, task: str, space: str, model: str | None) -> list[_Model]:
    """Models and their layers, from RDM sidecars (or map sidecars when RDMs are absent)."""
    found: dict[str, dict[str, _Layer]] = {}

    def add(path: Path, entities: dict[str, str], meta: dict, fallback_index: int) -> None:
        if "desc" in entities:
            return
        m = entities.get("model")
        label = entities.get("layer", m)  # a model without layers is its own layer
        if m is None or (model is not None and m != model):
            return
        layers = found.setdefault(m, {})
        if label in layers:
            if path.name.endswith("_rdm.tsv"):
                layers[label].rdm_path = path
            return
        try:
            index = int(meta.get("LayerIndex", fallback_index))
        except (TypeError, ValueError):
            index = fallback_index
        layers[label] = _Layer(
            label=label,
            name=str(meta.get("LayerName", label)),
            part=str(meta.get("Part", "model" if m == label else "layer")),
            index=index,
            rdm_path=path if path.name.endswith("_rdm.tsv") else None,
        )

    candidates = sorted(output_dir.glob(f"task-{task}_model-*_rdm.tsv"))
    candidates += sorted(output_dir.glob(f"task-{task}_space-{space}_model-*_statmap.nii*"))
    candidates += sorted(
        output_dir.glob(f"sub-*/func/sub-*_task-{task}_space-{space}_model-*_statmap.nii*")
    )
    for k, path in enumerate(candidates):
        entities, _ = _entities(path.name)
        add(path, entities, _sidecar(path), 10_000 + k)
    # Models with analysis tables only (no layer files) still get their sections.
    for path in output_dir.glob(f"task-{task}_model-*_desc-*"):
        m = _entities(path.name)[0].get("model")
        if m and (model is None or m == model):
            found.setdefault(m, {})
    models = []
    for label in sorted(found):
        layers = sorted(found[label].values(), key=lambda la: (la.index, la.label))
        models.append(_Model(label, layers))
    return models


def _read_stimuli(output_dir: Path, task: str):
    path = output_dir / f"task-{task}_stimuli.tsv"
    if not path.is_file():
        return None
    import pandas as pd

    try:
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except Exception as exc:  # pandas raises several parser errors
        logger.warning("cannot read %s (%s)", path, exc)
        return None
    if "stim_file" not in table:
        logger.warning("%s has no stim_file column; stimulus labels are not used", path)
        return None
    return table


def _label_columns(stimuli) -> list[str]:
    """Columns that group the stimuli (some value repeats); not stim_file, onset, duration."""
    return [
        c
        for c in stimuli.columns
        if c not in _NON_LABEL_COLUMNS and stimuli[c].nunique() < len(stimuli)
    ]


def _aligned_labels(stimuli, conditions: Sequence[str]):
    """Stimulus label table reordered to the RDM's conditions (None if they do not match)."""
    if stimuli is None:
        return None
    files = [str(f) for f in stimuli["stim_file"]]
    lookup = {f: i for i, f in enumerate(files)}
    lookup.update({Path(f).stem: i for i, f in enumerate(files)})
    lookup.update({Path(f).name: i for i, f in enumerate(files)})
    rows = [lookup.get(c, lookup.get(Path(c).stem)) for c in conditions]
    if any(r is None for r in rows):
        if len(files) == len(conditions):
            logger.warning(
                "RDM condition labels do not name the stimuli in stim_file; "
                "assuming they follow the stimuli table's order"
            )
            rows = list(range(len(files)))
        else:
            logger.warning("RDM conditions do not match the stimuli table; labels unused")
            return None
    return stimuli.iloc[rows].reset_index(drop=True)


def _ordering_sets(labels) -> list[str]:
    columns = _label_columns(labels)
    preferred = [c for c in _ORDER_PREFERENCE if c in columns]
    return preferred or columns[:2]


# --------------------------------------------------------------------------- HTML helpers
def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _note(text: str) -> str:
    return f'<p class="note">{text}</p>'


def _code(text: str) -> str:
    return f"<code>{_e(text)}</code>"


def _format_cell(value: object) -> tuple[str, bool]:
    if isinstance(value, float | np.floating):
        if not np.isfinite(value):
            return "n/a", False
        if float(value).is_integer() and abs(value) < 1e6:
            return str(int(value)), False
        return f"{value:.3g}", False
    if isinstance(value, int | np.integer):
        return str(value), False
    return str(value), True


def _table_html(table, *, max_rows: int = _MAX_TABLE_ROWS) -> str:
    head = "".join(
        f'<th class="{"text" if table[c].dtype == object else ""}">{_e(c)}</th>'
        for c in table.columns
    )
    body = []
    for row in table.head(max_rows).itertuples(index=False):
        cells = []
        for value in row:
            text, is_text = _format_cell(value)
            cells.append(f'<td class="text">{_e(text)}</td>' if is_text else f"<td>{_e(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = ""
    if len(table) > max_rows:
        more = _note(f"First {max_rows} of {len(table)} rows; the full table is in the TSV file.")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


def _missing(pattern: str, what: str) -> str:
    return _note(f"No {what} found ({_code(pattern)}); this section is omitted.")


# --------------------------------------------------------------------------- sections: model side
def _section_stimuli(ctx: _Context) -> str:
    if ctx.stimuli is None:
        return _missing(f"task-{ctx.task}_stimuli.tsv", "stimulus table")
    rows = []
    for column in _label_columns(ctx.stimuli):
        counts = ctx.stimuli[column].value_counts(sort=False)
        cats = ", ".join(f"{_e(k)} ({v})" for k, v in counts.items())
        rows.append(
            f"<tr><td class='text'>{_e(column)}</td><td>{len(counts)}</td>"
            f"<td class='text'>{cats}</td></tr>"
        )
    return (
        f"<p>{len(ctx.stimuli)} stimuli; their order in {_code(f'task-{ctx.task}_stimuli.tsv')} "
        "is the condition order of every RDM. Label sets:</p>"
        "<table><thead><tr><th class='text'>label set</th><th>categories</th>"
        "<th class='text'>stimuli per category</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _section_rdms(ctx: _Context) -> str:
    from . import _report_figures as rf

    out = []
    user_models = []
    for model in ctx.models:
        layers = [la for la in model.layers if la.rdm_path is not None]
        if not layers:
            continue
        if not model.is_dnn:
            user_models.append(model)
            continue
        rdms, conditions = ctx.rdms(model)
        labels = _aligned_labels(ctx.stimuli, conditions)
        out.append(f"<h3>model {_e(model.label)}</h3>")
        if labels is None:
            out.append(
                _note("No stimulus labels match these RDMs; conditions are shown in file order.")
            )
            sets = [None]
        else:
            sets = _ordering_sets(labels)
        for primary in sets:
            if primary is None:
                order = np.arange(len(conditions))
                blocks = [""] * len(conditions)
                desc, by_text = "rdms", "file order"
            else:
                keys = [primary] + [s for s in _ordering_sets(labels) if s != primary]
                order = condition_order(labels, keys)
                blocks = list(labels[primary])
                desc, by_text = f"rdmsby{re.sub('[^a-zA-Z0-9]', '', primary)}", primary
            out.append(
                ctx.figures.html(
                    f"task-{ctx.task}_model-{model.label}_desc-{desc}",
                    lambda rdms=rdms, order=order, blocks=blocks, by=by_text, layers=layers: (
                        rf.rdm_grid(
                            rdms,
                            [la.name for la in layers],
                            [rf.part_colour(la.part) for la in layers],
                            order,
                            blocks,
                            ordered_by=by,
                        )
                    ),
                    f"Layer RDMs of model {_e(model.label)} ({len(layers)} layers, titles coloured "
                    f"by network part), conditions ordered by {_e(by_text)}; white lines separate "
                    "its categories. Colours are percentiles of each RDM's dissimilarities.",
                    inputs=[la.rdm_path for la in layers],
                )
            )
    if user_models:
        vectors, titles, colours, condition_sets = [], [], [], set()
        for model in user_models:
            rdms, conditions = ctx.rdms(model)
            vectors.append(rdms)
            titles += [
                f"{model.label}" if len(model.layers) == 1 else f"{model.label}/{la.name}"
                for la in model.layers
            ]
            colours += [rf.part_colour("model")] * len(model.layers)
            condition_sets.add(tuple(conditions))
        out.append("<h3>model RDMs</h3>")
        if len(condition_sets) == 1:
            conditions = list(condition_sets.pop())
            labels = _aligned_labels(ctx.stimuli, conditions)
            sets = _ordering_sets(labels) if labels is not None else []
            order = condition_order(labels, sets) if sets else np.arange(len(conditions))
            blocks = list(labels[sets[0]]) if sets else [""] * len(conditions)
            out.append(
                ctx.figures.html(
                    f"task-{ctx.task}_desc-modelrdms",
                    lambda: rf.rdm_grid(
                        np.vstack(vectors),
                        titles,
                        colours,
                        order,
                        blocks,
                        ordered_by=sets[0] if sets else "file order",
                    ),
                    "Model RDMs given by the user, conditions ordered by "
                    f"{_e(sets[0] if sets else 'file order')}.",
                    inputs=[la.rdm_path for m in user_models for la in m.layers],
                )
            )
        else:
            out.append(_note("Model RDMs use different conditions; not drawn together."))
    if not out:
        return _missing(f"task-{ctx.task}_model-*[_layer-*]_rdm.tsv", "layer RDMs")
    return "".join(out)


def _category_table(ctx: _Context, model: _Model):
    path = ctx.dataset_file(f"model-{model.label}", "desc-categoryindex", suffix="stats.tsv")
    if not path.is_file():
        return None, path
    table = _read_tsv(path)
    if table is None or not {"layer", "label_set", "index"} <= set(table.columns):
        logger.warning("%s lacks the columns layer, label_set, index; skipped", path)
        return None, path
    return table, path


def _mds_coordinates(vector: np.ndarray) -> np.ndarray:
    """Two-dimensional classical MDS (dnnrsa.analysis.mds when available)."""
    try:
        from .analysis import mds
    except ImportError:
        mds = None
    if mds is not None:
        return np.asarray(mds(vector, n_components=2).coordinates)[:, :2]
    from scipy.spatial.distance import squareform

    dist = squareform(vector, checks=False)
    n = dist.shape[0]
    centring = np.eye(n) - 1.0 / n
    gram = -0.5 * centring @ (dist**2) @ centring
    values, vectors = np.linalg.eigh(gram)
    top = np.argsort(values)[::-1][:2]
    return vectors[:, top] * np.sqrt(np.clip(values[top], 0, None))


def _best_per_part(layers: Sequence[_Layer], scores: Mapping[str, float]) -> list[_Layer]:
    chosen = []
    parts = [p for p in _PART_ORDER if any(la.part == p for la in layers)]
    parts += sorted({la.part for la in layers} - set(parts))
    for part in parts:
        candidates = [
            la for la in layers if la.part == part and np.isfinite(scores.get(la.label, np.nan))
        ]
        if candidates:
            chosen.append(max(candidates, key=lambda la: scores[la.label]))
    return chosen


def _section_mds(ctx: _Context) -> str:
    from . import _report_figures as rf

    out = []
    for model in ctx.models:
        layers = [la for la in model.layers if la.rdm_path is not None]
        if not layers or not model.is_dnn:
            continue
        rdms, conditions = ctx.rdms(model)
        labels = _aligned_labels(ctx.stimuli, conditions)
        columns = _label_columns(labels) if labels is not None else []
        colour_by = next((c for c in ("emotion", *columns) if c in columns), None)
        marker_by = "gender" if "gender" in columns else None
        table, _ = _category_table(ctx, model)
        chosen, how = [], ""
        if table is not None and colour_by is not None:
            rows = table[table["label_set"] == colour_by]
            scores = {}
            for key, value in zip(rows["layer"], rows["index"], strict=True):
                layer = model.lookup(str(key))
                if layer is not None:
                    scores[layer.label] = float(value)
            chosen = _best_per_part(layers, scores)
            how = f"the layer of each part with the highest {_e(colour_by)} category index"
        if not chosen:
            parts = [p for p in dict.fromkeys(la.part for la in layers)]
            chosen = [[la for la in layers if la.part == p][-1] for p in parts]
            how = "the last layer of each part"
        chosen = _add_requested(ctx, model, chosen, layers)
        index = {la.label: i for i, la in enumerate(layers)}
        embeddings = [(la.name, _mds_coordinates(rdms[index[la.label]])) for la in chosen]
        colour_labels = list(labels[colour_by]) if colour_by else None
        marker_labels = list(labels[marker_by]) if marker_by else None
        out.append(f"<h3>model {_e(model.label)}</h3>")
        out.append(
            ctx.figures.html(
                f"task-{ctx.task}_model-{model.label}_desc-mds",
                lambda e=embeddings, c=colour_labels, m=marker_labels, cb=colour_by, mb=marker_by: (
                    rf.mds_figure(e, c, m, colour_name=cb or "", marker_name=mb or "")
                ),
                f"Classical multidimensional scaling of the stimuli for {how} "
                f"({', '.join(_e(la.name) for la in chosen)})"
                + (f"; colour: {_e(colour_by)}" if colour_by else "")
                + (f", marker: {_e(marker_by)}" if marker_by else "")
                + ".",
                inputs=[la.rdm_path for la in chosen],
            )
        )
    if not out:
        return _missing(
            f"task-{ctx.task}_model-*_layer-*_rdm.tsv", "network layer RDMs (MDS is drawn for them)"
        )
    return "".join(out)


def _add_requested(
    ctx: _Context, model: _Model, chosen: list[_Layer], available: Sequence[_Layer]
) -> list[_Layer]:
    extra = []
    for key in ctx.layers_requested:
        layer = model.lookup(key)
        if layer is not None and layer in available and layer not in chosen:
            extra.append(layer)
    return chosen + extra


def _layer_meta(model: _Model, keys: Sequence[str], parts_column=None) -> tuple[list, list]:
    names, parts = [], []
    for i, key in enumerate(keys):
        layer = model.lookup(str(key))
        names.append(layer.name if layer else str(key))
        if layer is not None:
            parts.append(layer.part)
        elif parts_column is not None:
            parts.append(str(parts_column[i]))
        else:
            parts.append("")
    return names, parts


def _layer_position(model: _Model, key: str, fallback: int) -> float:
    layer = model.lookup(str(key))
    return float(layer.index) if layer is not None else 1e9 + fallback


def _section_category_index(ctx: _Context) -> str:
    from . import _report_figures as rf

    out = []
    for model in ctx.models:
        table, path = _category_table(ctx, model)
        if table is None:
            continue
        first = list(dict.fromkeys(str(k) for k in table["layer"]))
        keys = sorted(first, key=lambda k: _layer_position(model, k, first.index(k)))
        part_of = (
            dict(zip(table["layer"].astype(str), table.get("part", table["layer"]), strict=True))
            if "part" in table
            else {}
        )
        names, parts = _layer_meta(model, keys, [part_of.get(k, "") for k in keys])
        values = {}
        for label_set, rows in table.groupby("label_set", sort=False):
            by_layer = {
                str(k): (float(i), float(p) if "p_value" in rows else np.nan)
                for k, i, p in zip(
                    rows["layer"],
                    rows["index"],
                    rows["p_value"] if "p_value" in rows else [np.nan] * len(rows),
                    strict=True,
                )
            }
            index = np.array([by_layer.get(k, (np.nan, np.nan))[0] for k in keys])
            p_values = np.array([by_layer.get(k, (np.nan, np.nan))[1] for k in keys])
            values[str(label_set)] = (index, p_values)
        out.append(f"<h3>model {_e(model.label)}</h3>")
        out.append(
            ctx.figures.html(
                f"task-{ctx.task}_model-{model.label}_desc-categoryindex",
                lambda n=names, p=parts, v=values: rf.category_index_figure(n, p, v, alpha=_ALPHA),
                f"Category index per layer and label set for model {_e(model.label)}: mean "
                "between-category minus mean within-category dissimilarity, relative to the RDM's "
                f"range. Filled markers: label-permutation p &lt; {_ALPHA:g}.",
                inputs=[path],
            )
        )
    if not out:
        return _missing(
            f"task-{ctx.task}_model-*_desc-categoryindex_stats.tsv", "category index tables"
        )
    return "".join(out)


def _section_layer_similarity(ctx: _Context) -> str:
    from . import _report_figures as rf

    out = []
    for model in ctx.models:
        path = ctx.dataset_file(f"model-{model.label}", "desc-layersimilarity", suffix="matrix.tsv")
        if not path.is_file():
            continue
        import pandas as pd

        try:
            table = pd.read_csv(path, sep="\t", index_col=0, na_values=["n/a"])
        except Exception as exc:  # pandas raises several parser errors
            logger.warning("cannot read %s (%s)", path, exc)
            continue
        keys = [str(k) for k in table.index]
        matrix = table.to_numpy(dtype=np.float64)
        if matrix.shape != (len(keys), len(keys)):
            logger.warning("%s is not square; skipped", path)
            continue
        names, parts = _layer_meta(model, keys)
        meta = _sidecar(path)
        method = meta.get("Comparator", meta.get("Method"))
        out.append(
            ctx.figures.html(
                f"task-{ctx.task}_model-{model.label}_desc-layersimilarity",
                lambda m=matrix, n=names, p=parts, t=f"model {model.label}", c=str(method or "RDM similarity"): (
                    rf.similarity_figure(m, n, p, title=t, colour_label=c)
                ),
                "Similarity"
                + (f" ({_e(method)})" if method else "")
                + " of every pair of layer RDMs, model "
                f"{_e(model.label)}; white lines separate the network parts.",
                inputs=[path],
            )
        )
    if not out:
        return _missing(
            f"task-{ctx.task}_model-*_desc-layersimilarity_matrix.tsv",
            "layer-by-layer similarity matrices",
        )
    return "".join(out)


def _section_arm_relevance(ctx: _Context) -> str:
    from . import _report_figures as rf

    out = []
    for model in ctx.models:
        lesion_path = ctx.dataset_file(f"model-{model.label}", "desc-armlesion", suffix="stats.tsv")
        var_path = ctx.dataset_file(f"model-{model.label}", "desc-varpart", suffix="stats.tsv")
        lesion = _read_tsv(lesion_path) if lesion_path.is_file() else None
        if lesion is not None and not {"arm", "accuracy"} <= set(lesion.columns):
            logger.warning("%s lacks the columns arm, accuracy; skipped", lesion_path)
            lesion = None
        varpart = _read_tsv(var_path) if var_path.is_file() else None
        if varpart is not None and "layer" not in varpart:
            logger.warning("%s lacks the column layer; skipped", var_path)
            varpart = None
        if lesion is None and varpart is None:
            continue
        parts_of = {}
        if varpart is not None:
            varpart = varpart.copy()
            keys = [str(k) for k in varpart["layer"]]
            names, parts = _layer_meta(model, keys)
            varpart["layer"] = names
            parts_of = dict(zip(names, parts, strict=True))
        captions = []
        if lesion is not None:
            captions.append(
                "left: accuracy of the trained network intact and with one arm's "
                "output silenced (the drop is written above each bar)"
            )
        if varpart is not None:
            captions.append(
                ("right" if lesion is not None else "bars") + ": variance of each "
                "layer's RDM explained uniquely by the visual arm, uniquely by the "
                "auditory arm, and shared (R\u00b2 of RDM regressions)"
            )
        out.append(f"<h3>model {_e(model.label)}</h3>")
        out.append(
            ctx.figures.html(
                f"task-{ctx.task}_model-{model.label}_desc-armrelevance",
                lambda le=lesion, vp=varpart, po=parts_of: rf.arm_relevance_figure(le, vp, po),
                f"Arm relevance, model {_e(model.label)}: " + "; ".join(captions) + ".",
                inputs=[p for p in (lesion_path, var_path) if p.is_file()],
            )
        )
    if not out:
        return _missing(
            f"task-{ctx.task}_model-*_desc-armlesion_stats.tsv / _desc-varpart_stats.tsv",
            "arm lesion or variance partitioning tables",
        )
    return "".join(out)


def _section_config(ctx: _Context) -> str:
    path = ctx.output_dir / "dnnrsa_config.toml"
    if not path.is_file():
        return _missing("dnnrsa_config.toml", "run configuration")
    text = path.read_text(encoding="utf-8", errors="replace")
    return f"<p>{_code(path.name)}:</p><pre>{_e(text)}</pre>"


def _overview(ctx: _Context, facts: Sequence[tuple[str, str]]) -> str:
    description = _read_json(ctx.output_dir / "dataset_description.json")
    generated = description.get("GeneratedBy") or []
    if isinstance(generated, dict):
        generated = [generated]
    tools = ", ".join(
        f"{g.get('Name', '?')} {g.get('Version', '')}".strip()
        for g in generated
        if isinstance(g, dict)
    )
    rows = [
        ("data set", description.get("Name", ctx.output_dir.name)),
        ("generated by", tools or "n/a"),
        ("task", ctx.task),
        ("space", ctx.space),
        ("models", ", ".join(m.label for m in ctx.models) or "none found"),
        *facts,
    ]
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows)
    return f'<dl class="facts">{items}</dl>'


# --------------------------------------------------------------------------- sections: brain side
@dataclass
class _MapSet:
    model: _Model
    stat: str
    layers: list[_Layer]
    paths: dict[str, Path]


def _map_sets(ctx: _Context, folder: Path, prefix: str, stats: Sequence[str] | None) -> list:
    sets = []
    for model in ctx.models:
        by_stat: dict[str, dict[str, Path]] = {}
        pattern = f"{prefix}task-{ctx.task}_space-{ctx.space}_model-{model.label}_*stat-*"
        for path in sorted(folder.glob(pattern + "_statmap.nii*")):
            entities, _ = _entities(path.name)
            if "desc" in entities or "stat" not in entities:
                continue
            if stats is not None and entities["stat"] not in stats:
                continue
            layer = entities.get("layer", model.label)
            by_stat.setdefault(entities["stat"], {})[layer] = path
        for stat, paths in sorted(by_stat.items()):
            layers = [la for la in model.layers if la.label in paths]
            sets.append(_MapSet(model, stat, layers, paths))
    return sets


def _is_template(space: str) -> bool:
    """Whether maps in this space can be drawn on the MNI template and a glass brain."""
    return space.upper().startswith("MNI")


def _layer_entity(model: _Model, layer: _Layer) -> str:
    """``_layer-<l>`` for figure names; empty for a model without layers."""
    return "" if layer.label == model.label else f"_layer-{layer.label}"


def _map_scores(path: Path) -> tuple[float, float]:
    import nibabel as nib

    data = np.asarray(nib.load(path).dataobj, dtype=np.float64)
    values = data[np.isfinite(data) & (data != 0)]
    if not values.size:
        return np.nan, np.nan
    return float(values.max()), float(np.percentile(values, 99))


def _subject_brain_section(ctx: _Context, subject: str) -> str:
    import nibabel as nib

    from . import _report_figures as rf

    folder = ctx.output_dir / f"sub-{subject}" / "func"
    sets = _map_sets(ctx, folder, f"sub-{subject}_", None)
    sets = [s for s in sets if s.stat not in ("effect",)]
    if not sets:
        return _missing(
            f"sub-{subject}/func/sub-{subject}_task-{ctx.task}_space-{ctx.space}"
            "_model-*[_layer-*]_stat-*_statmap.nii.gz",
            "searchlight maps",
        )
    out = []
    if any(len(ms.layers) > 1 for ms in sets):
        out.append(
            _note(
                "Every layer is summarised in the bar charts; brain maps are drawn for the "
                "best layer of each network part (highest 99th-percentile score)"
                + (" and the layers asked for" if ctx.layers_requested else "")
                + "."
            )
        )
    for ms in sets:
        scores = {la.label: _map_scores(ms.paths[la.label]) for la in ms.layers}
        names = [la.name for la in ms.layers]
        parts = [la.part for la in ms.layers]
        peak = np.array([scores[la.label][0] for la in ms.layers])
        p99 = np.array([scores[la.label][1] for la in ms.layers])
        chosen = _best_per_part(ms.layers, {k: v[1] for k, v in scores.items()})
        chosen = _add_requested(ctx, ms.model, chosen, ms.layers)
        stem = f"sub-{subject}_task-{ctx.task}_space-{ctx.space}_model-{ms.model.label}"
        out.append(f"<h3>model {_e(ms.model.label)}, {_e(ms.stat)}</h3>")
        if len(ms.layers) > 1:
            highlight = [ms.layers.index(la) for la in chosen]
            out.append(
                ctx.figures.html(
                    f"{stem}_stat-{ms.stat}_desc-layersummary",
                    lambda n=names, p=parts, a=peak, b=p99, h=highlight, st=ms.stat: (
                        rf.layer_summary_figure(
                            n,
                            p,
                            [(f"{st} score", {"maximum": a, "99th percentile": b})],
                            highlight=h,
                        )
                    ),
                    f"Searchlight {_e(ms.stat)} scores of every layer of model "
                    f"{_e(ms.model.label)}: maximum and 99th percentile over the brain. Layers "
                    "drawn below in bold.",
                    inputs=list(ms.paths.values()),
                )
            )
        for layer in chosen:
            path = ms.paths[layer.label]
            meta = _sidecar(path)
            img = nib.load(path)
            data = np.asarray(img.dataobj, dtype=np.float64)
            positive = data[np.isfinite(data) & (data > 0)]
            threshold = None
            # Native-space maps are drawn whole (on no template); template maps from
            # their 95th percentile, kept below the maximum so tied maxima stay visible.
            if positive.size and _is_template(ctx.space):
                threshold = float(min(np.percentile(positive, 95), 0.999 * positive.max()))
            radius = meta.get("RadiusMm")
            out.append(
                ctx.figures.html(
                    f"{stem}{_layer_entity(ms.model, layer)}_stat-{ms.stat}_desc-searchlight",
                    lambda img=img, t=threshold, la=layer, st=ms.stat: rf.brain_map_figure(
                        img,
                        title=f"{la.name} ({la.part})",
                        threshold=t,
                        colorbar_label=f"{st} score",
                        template_space=_is_template(ctx.space),
                    ),
                    f"Searchlight RSA map of layer {_e(layer.name)} ({_e(layer.part)}): "
                    f"{_e(ms.stat)} correlation between neural and layer RDMs"
                    + (f" in {_e(radius)} mm spheres" if radius is not None else "")
                    + (
                        "; orthogonal slices through the peak (left) and glass brain (right); "
                        if _is_template(ctx.space)
                        else "; orthogonal slices through the peak (left) and axial slices "
                        "(right); "
                    )
                    + (
                        f"voxels above the map's 95th percentile of positive scores ({threshold:.3g})."
                        if threshold is not None
                        else "all voxels."
                    ),
                    inputs=[path],
                )
            )
    return "".join(out)


def _group_brain_section(ctx: _Context) -> str:
    import nibabel as nib

    from . import _report_figures as rf

    z_sets = _map_sets(ctx, ctx.output_dir, "", ("z",)) or _map_sets(
        ctx, ctx.output_dir, "", ("t",)
    )
    if not z_sets:
        return _missing(
            f"task-{ctx.task}_space-{ctx.space}_model-*[_layer-*]_stat-z_statmap.nii.gz",
            "group maps",
        )
    p_sets = {s.model.label: s for s in _map_sets(ctx, ctx.output_dir, "", ("p",))}
    out = []
    if any(len(ms.layers) > 1 for ms in z_sets):
        out.append(
            _note(
                "Every layer is summarised in the bar charts; brain maps are drawn for the "
                f"layer with the highest peak {z_sets[0].stat} of each network part"
                + (" and the layers asked for" if ctx.layers_requested else "")
                + "."
            )
        )
    for ms in z_sets:
        p_set = p_sets.get(ms.model.label)
        peaks, n_sig, masked = {}, {}, {}
        for layer in ms.layers:
            img = nib.load(ms.paths[layer.label])
            z = np.asarray(img.dataobj, dtype=np.float64)
            inside = np.isfinite(z) & (z != 0)
            peaks[layer.label] = float(z[inside].max()) if inside.any() else np.nan
            if p_set is not None and layer.label in p_set.paths:
                p = np.asarray(nib.load(p_set.paths[layer.label]).dataobj, dtype=np.float64)
                significant = inside & np.isfinite(p) & (p < _ALPHA)
                n_sig[layer.label] = int(significant.sum())
                masked[layer.label] = significant
        names = [la.name for la in ms.layers]
        parts = [la.part for la in ms.layers]
        chosen = _best_per_part(ms.layers, peaks)
        chosen = _add_requested(ctx, ms.model, chosen, ms.layers)
        stem = f"task-{ctx.task}_space-{ctx.space}_model-{ms.model.label}"
        out.append(f"<h3>model {_e(ms.model.label)}</h3>")
        if len(ms.layers) > 1:
            panels = [
                (
                    f"peak {ms.stat}",
                    {f"peak {ms.stat}": np.array([peaks[la.label] for la in ms.layers])},
                )
            ]
            if n_sig:
                panels.append(
                    (
                        f"voxels, FWE p < {_ALPHA:g}",
                        {
                            "voxels": np.array(
                                [n_sig.get(la.label, np.nan) for la in ms.layers], dtype=float
                            )
                        },
                    )
                )
            highlight = [ms.layers.index(la) for la in chosen]
            out.append(
                ctx.figures.html(
                    f"{stem}_desc-layersummary",
                    lambda n=names, p=parts, pn=panels, h=highlight: rf.layer_summary_figure(
                        n, p, pn, highlight=h
                    ),
                    f"Group results of every layer of model {_e(ms.model.label)}: peak "
                    f"{_e(ms.stat)}"
                    + (
                        f" and number of voxels with family-wise error corrected p &lt; {_ALPHA:g}"
                        if n_sig
                        else ""
                    )
                    + ". Layers drawn below in bold.",
                    inputs=list(ms.paths.values()),
                )
            )
        for layer in chosen:
            path = ms.paths[layer.label]
            img = nib.load(path)
            z = np.asarray(img.dataobj, dtype=np.float64)
            if layer.label in masked and masked[layer.label].any():
                shown = np.where(masked[layer.label], z, 0.0)
                threshold = 1e-6
                how = f"voxels with FWE-corrected p &lt; {_ALPHA:g}"
            elif layer.label in masked:
                shown, threshold = z, 3.09
                how = (
                    f"no voxel reaches FWE p &lt; {_ALPHA:g}; shown at uncorrected "
                    f"{_e(ms.stat)} &gt; 3.09"
                )
            else:
                shown, threshold = z, 3.09
                how = f"{_e(ms.stat)} &gt; 3.09 (uncorrected; no p map found)"
            shown_img = nib.Nifti1Image(shown.astype(np.float32), img.affine)
            vmax = float(np.nanmax(np.abs(z)))
            out.append(
                ctx.figures.html(
                    f"{stem}{_layer_entity(ms.model, layer)}_stat-{ms.stat}_desc-groupmap",
                    lambda im=shown_img, t=threshold, la=layer, vm=vmax, st=ms.stat: (
                        rf.brain_map_figure(
                            im,
                            title=f"{la.name} ({la.part})",
                            threshold=t,
                            colorbar_label=st,
                            vmax=vm,
                            template_space=_is_template(ctx.space),
                        )
                    ),
                    f"Group {_e(ms.stat)} map of layer {_e(layer.name)} ({_e(layer.part)}): {how}; "
                    "orthogonal slices through the peak (left) and glass brain (right).",
                    inputs=[path] + ([p_set.paths[layer.label]] if layer.label in masked else []),
                )
            )
    return "".join(out)


def _group_cluster_section(ctx: _Context) -> str:
    out = []
    for model in ctx.models:
        stem = f"task-{ctx.task}_space-{ctx.space}_model-{model.label}"
        found = sorted(ctx.output_dir.glob(f"{stem}_clusters.tsv"))
        found += sorted(ctx.output_dir.glob(f"{stem}_layer-*_clusters.tsv"))
        paths = {_entities(p.name)[0].get("layer", model.label): p for p in found}
        if not paths:
            continue
        out.append(f"<h3>model {_e(model.label)}</h3>")
        empty = []
        order = sorted(paths, key=lambda k: _layer_position(model, k, 0))
        for key in order:
            table = _read_tsv(paths[key])
            layer = model.lookup(key)
            name = layer.name if layer else key
            if table is None or table.empty:
                empty.append(name)
                continue
            out.append(
                f"<details open><summary>{_e(name)} ({len(table)} clusters)</summary>"
                f"{_table_html(table)}</details>"
            )
        if empty:
            out.append(_note("No clusters for: " + ", ".join(_e(n) for n in empty) + "."))
    if not out:
        return _missing(
            f"task-{ctx.task}_space-{ctx.space}_model-*[_layer-*]_clusters.tsv", "cluster tables"
        )
    return "".join(out)


def _group_winner_section(ctx: _Context) -> str:
    import nibabel as nib

    from . import _report_figures as rf

    out = []
    for model in ctx.models:
        path = ctx.output_dir / (
            f"task-{ctx.task}_space-{ctx.space}_model-{model.label}_desc-winner_statmap.nii.gz"
        )
        if not path.is_file():
            continue
        meta = _sidecar(path)
        keys = meta.get("Layers")
        if not isinstance(keys, list) or not keys:
            keys = [la.label for la in model.layers]
        keys = [str(k) for k in keys]
        names, parts = _layer_meta(model, keys)
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
        p_path = path.with_name(path.name.replace("_desc-winner_", "_desc-winner_stat-p_"))
        if p_path.is_file():
            p_values = np.asarray(nib.load(p_path).dataobj, dtype=np.float64)
            keep = np.isfinite(p_values) & (p_values < _ALPHA)
            if keep.any():
                data = np.where(keep, data, 0.0)
                how = f"voxels where the winning layer beats the others at p &lt; {_ALPHA:g}"
            else:
                how = f"no voxel's winner reaches p &lt; {_ALPHA:g}; every winner shown"
            inputs.append(p_path)
        img = nib.Nifti1Image(np.nan_to_num(data).astype(np.float32), img.affine)
        out.append(f"<h3>model {_e(model.label)}</h3>")
        out.append(
            ctx.figures.html(
                f"task-{ctx.task}_space-{ctx.space}_model-{model.label}_desc-winner",
                lambda im=img, n=names, p=parts: rf.winner_figure(im, n, p),
                f"Winner-take-all map of model {_e(model.label)} ({how}): the layer with the "
                "highest group score in each voxel (colours: shades of the network part, lighter "
                "for earlier layers), and the number of voxels each layer wins.",
                inputs=inputs,
            )
        )
    if not out:
        return _missing(
            f"task-{ctx.task}_space-{ctx.space}_model-*_desc-winner_statmap.nii.gz",
            "winner-take-all maps",
        )
    return "".join(out)


# --------------------------------------------------------------------------- assembly
_MODEL_SECTIONS = (
    ("stimuli", "Stimuli", _section_stimuli),
    ("rdms", "Layer RDMs", _section_rdms),
    ("mds", "MDS of stimuli", _section_mds),
    ("categoryindex", "Category index", _section_category_index),
    ("layersimilarity", "Layer-by-layer similarity", _section_layer_similarity),
    ("armrelevance", "Arm relevance", _section_arm_relevance),
)


def _render(
    ctx: _Context,
    path: Path,
    title: str,
    subtitle: str,
    sections: Sequence[tuple[str, str, Callable[[], str]]],
) -> Path:
    import matplotlib

    rendered = []
    with matplotlib.rc_context({"font.size": 9, "axes.titlesize": 9, "figure.dpi": 100}):
        for section_id, heading, make in sections:
            start = time.perf_counter()
            body = make()
            logger.debug("section %s built in %.2f s", section_id, time.perf_counter() - start)
            rendered.append((section_id, heading, body))
    toc = "".join(f'<li><a href="#{sid}">{_e(h)}</a></li>' for sid, h, _ in rendered)
    body = "\n".join(
        f'<section id="{sid}"><h2>{_e(h)}</h2>\n{b}\n</section>' for sid, h, b in rendered
    )
    from importlib import resources

    template = Template(
        resources.files("dnnrsa").joinpath("data/report_template.html").read_text("utf-8")
    )
    page = template.substitute(
        title=_e(title),
        subtitle=subtitle,
        toc=toc,
        sections=body,
        version=_e(__version__),
        footer=f"Generated by dnnrsa {_e(__version__)} on {time.strftime('%Y-%m-%d %H:%M')} "
        f"from {_e(ctx.output_dir.name)}.",
    )
    with atomic_write(path) as fh:
        fh.write(page)
    logger.info("wrote %s (%d figures)", path, len(ctx.figures.saved))
    return path


def _context(output_dir, task, space, model, layers, reuse_figures) -> _Context:
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise FileNotFoundError(f"output_dir does not exist or is not a folder: {output_dir}")
    task = _check_label(task, "task", prefix="task-")
    space = _check_label(space, "space", prefix="space-")
    model = _check_label(model, "model", prefix="model-")
    models = _discover_models(output_dir, task, space, model)
    if model is not None and not models:
        logger.warning("no files for model %r in %s", model, output_dir)
    requested = tuple(str(x) for x in (layers or ()))
    return _Context(
        output_dir,
        task,
        space,
        models,
        _read_stimuli(output_dir, task),
        _FigureStore(output_dir, reuse_figures),
        requested,
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
) -> Path:
    """Write the HTML report of one participant, ``<output_dir>/sub-<subject>.html``.

    Sections: overview, searchlight maps (a per-layer summary chart and, for the
    best layer of each network part, orthogonal slices and a glass brain), the
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

    Returns
    -------
    Path
        The written HTML file. Figures are saved under ``<output_dir>/figures/``.
    """
    subject = _check_label(subject, "subject", prefix="sub-")
    ctx = _context(output_dir, task, space, model, layers, reuse_figures)
    if not (ctx.output_dir / f"sub-{subject}").is_dir():
        raise FileNotFoundError(
            f"subject {subject!r} has no folder sub-{subject} in {ctx.output_dir}"
        )
    start = time.perf_counter()
    sections = [
        ("overview", "Overview", lambda: _overview(ctx, [("participant", f"sub-{subject}")])),
        ("searchlight", "Searchlight maps", lambda: _subject_brain_section(ctx, subject)),
        *((sid, h, lambda f=f: f(ctx)) for sid, h, f in _MODEL_SECTIONS),
        ("config", "Run configuration", lambda: _section_config(ctx)),
    ]
    path = _render(
        ctx,
        ctx.output_dir / f"sub-{subject}.html",
        f"dnnrsa report: sub-{subject}",
        f"task {_e(ctx.task)} &middot; space {_e(ctx.space)}",
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
) -> Path:
    """Write the group HTML report, ``<output_dir>/group.html``.

    Sections: overview, group maps (per-layer peak statistic and number of
    family-wise significant voxels; slices and glass brain of the best layer of each
    network part), cluster tables, the winner-take-all layer map, the stimuli,
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

    Returns
    -------
    Path
        The written HTML file.
    """
    ctx = _context(output_dir, task, space, model, layers, reuse_figures)
    subjects = sorted(p.name for p in ctx.output_dir.glob("sub-*") if p.is_dir())
    start = time.perf_counter()
    sections = [
        (
            "overview",
            "Overview",
            lambda: _overview(ctx, [("participants", f"{len(subjects)}: " + ", ".join(subjects))]),
        ),
        ("groupmaps", "Group maps", lambda: _group_brain_section(ctx)),
        ("clusters", "Cluster tables", lambda: _group_cluster_section(ctx)),
        ("winner", "Winning layer", lambda: _group_winner_section(ctx)),
        *((sid, h, lambda f=f: f(ctx)) for sid, h, f in _MODEL_SECTIONS),
        ("config", "Run configuration", lambda: _section_config(ctx)),
    ]
    path = _render(
        ctx,
        ctx.output_dir / "group.html",
        "dnnrsa report: group",
        f"task {_e(ctx.task)} &middot; space {_e(ctx.space)} &middot; {len(subjects)} participants",
        sections,
    )
    logger.info("group report built in %.1f s", time.perf_counter() - start)
    return path
