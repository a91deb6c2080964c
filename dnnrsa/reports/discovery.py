"""Finding what a dnnrsa derivatives folder holds, for the reports.

Parses BIDS-like file names, reads sidecars and tables, lists the models and
their layers (from the RDM sidecars, or the map sidecars when RDMs are absent),
the stimulus table and its label sets, and the statistical maps of a subject or
of the group. Nothing here draws or writes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..bidsnames import (
    build_name,
    check_label,
    is_label,
    parse_name,
    read_json,
    sidecar_path,
    split_extension,
)

logger = logging.getLogger(__name__)

_ORDER_PREFERENCE = ("emotion", "identity")
_NON_LABEL_COLUMNS = {"stim_file", "onset", "duration"}


# --------------------------------------------------------------------------- condition order
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
def sidecar(path: Path) -> dict:
    """The JSON sidecar of a data file, {} when it is absent or unreadable (a warning)."""
    return read_json(sidecar_path(path), on_error="warn", logger=logger)


def read_tsv(path: Path):
    import pandas as pd

    try:
        return pd.read_csv(path, sep="\t", na_values=["n/a"])
    except Exception as exc:  # pandas raises several parser errors
        logger.warning("cannot read %s (%s); its section is skipped", path, exc)
        return None


@dataclass
class Layer:
    """A layer as the derivatives name it (a model without layers is its own layer)."""

    label: str
    name: str
    part: str
    index: int
    rdm_path: Path | None = None


@dataclass
class Model:
    """A model (a trained network or a user model RDM) and its layers in network order."""

    label: str
    layers: list[Layer] = field(default_factory=list)
    network: str = ""  # a standard network's registry name (sidecar Network)
    untrained: bool = False  # its seeded untrained weights (sidecar Untrained)

    @property
    def title(self) -> str:
        """The model as the reports' headings name it: its label, then for a standard
        network its registry name, and ``untrained control`` for untrained weights."""
        if not self.network:
            return self.label
        what = f"{self.network}, untrained control" if self.untrained else self.network
        return f"{self.label} ({what})"

    @property
    def is_dnn(self) -> bool:
        return any(layer.part != "model" for layer in self.layers)

    def lookup(self, key: str) -> Layer | None:
        for layer in self.layers:
            if key in (layer.label, layer.name):
                return layer
        return None


@dataclass
class Context:
    """What a report is built from: the folder, its models and stimuli, the figure store."""

    output_dir: Path
    task: str
    space: str
    models: list[Model]
    stimuli: object  # pandas.DataFrame or None
    figures: object  # a render.FigureStore
    layers_requested: tuple[str, ...] = ()
    alpha: float = 0.05
    _rdms: dict[str, tuple[np.ndarray, list[str]]] = field(default_factory=dict)

    def dataset_file(self, *, suffix: str, **entities: str) -> Path:
        """A dataset-level file, ``task-<t>_<entities>_<suffix>``, in the output folder.

        Entities come as keywords in file order (``model="emotion", desc="varpart"``);
        ``suffix`` may end in the extension (``suffix="stats.tsv"``).
        """
        stem, extension = split_extension(suffix)
        return self.output_dir / build_name({"task": self.task, **entities}, stem, extension)

    def rdms(self, model: Model) -> tuple[np.ndarray, list[str]]:
        """Layer RDM vectors (n_layers_with_rdm, n_pairs) and condition labels."""
        from ..rdm import read_rdm_tsv

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


def discover_models(output_dir: Path, task: str, space: str, model: str | None) -> list[Model]:
    """Models and their layers, from RDM sidecars (or map sidecars when RDMs are absent)."""
    found: dict[str, dict[str, Layer]] = {}
    networks: dict[str, tuple[str, bool]] = {}

    def add(path: Path, meta: dict, fallback_index: int) -> None:
        name = parse_name(path)
        if "desc" in name.entities:
            return
        m = name.get("model")
        label = name.get("layer", m)  # a model without layers is its own layer
        if m is None or (model is not None and m != model):
            return
        if not (is_label(m) and is_label(label)):
            return
        is_rdm = (name.suffix, name.extension) == ("rdm", ".tsv")
        if meta.get("Network") and m not in networks:
            networks[m] = (str(meta["Network"]), meta.get("Untrained") is True)
        layers = found.setdefault(m, {})
        if label in layers:
            if is_rdm:
                layers[label].rdm_path = path
            return
        try:
            index = int(meta.get("LayerIndex", fallback_index))
        except (TypeError, ValueError):
            index = fallback_index
        layers[label] = Layer(
            label=label,
            name=str(meta.get("LayerName", label)),
            part=str(meta.get("Part", "model" if m == label else "layer")),
            index=index,
            rdm_path=path if is_rdm else None,
        )

    candidates = sorted(output_dir.glob(f"task-{task}_model-*_rdm.tsv"))
    candidates += sorted(output_dir.glob(f"task-{task}_space-{space}_model-*_statmap.nii*"))
    candidates += sorted(
        output_dir.glob(f"sub-*/func/sub-*_task-{task}_space-{space}_model-*_statmap.nii*")
    )
    for k, path in enumerate(candidates):
        add(path, sidecar(path), 10_000 + k)
    # Models with analysis tables only (no layer files) still get their sections.
    for path in output_dir.glob(f"task-{task}_model-*_desc-*"):
        m = parse_name(path).get("model")
        if m and is_label(m) and (model is None or m == model):
            found.setdefault(m, {})
    models = []
    for label in sorted(found):
        layers = sorted(found[label].values(), key=lambda la: (la.index, la.label))
        network, untrained = networks.get(label, ("", False))
        models.append(Model(label, layers, network=network, untrained=untrained))
    return models


def read_stimuli(output_dir: Path, task: str):
    path = output_dir / build_name({"task": task}, "stimuli", ".tsv")
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


def label_columns(stimuli) -> list[str]:
    """Columns that group the stimuli (some value repeats); not stim_file, onset, duration."""
    return [
        c
        for c in stimuli.columns
        if c not in _NON_LABEL_COLUMNS and stimuli[c].nunique() < len(stimuli)
    ]


def aligned_labels(stimuli, conditions: Sequence[str]):
    """Stimulus label table with one row per RDM condition, in the RDM's order.

    A condition is matched to the ``condition`` column of the stimuli table when it has one
    (conditions taken from ``trial_type`` or another column: the first stimulus of each
    condition gives its labels), else to ``stim_file`` (with or without its extension).
    The RDM's order is never assumed to be the table's: None when a condition is unknown.
    """
    if stimuli is None:
        return None
    conditions = [str(c) for c in conditions]
    if "condition" in stimuli.columns:
        by_condition = stimuli.drop_duplicates("condition").set_index("condition", drop=False)
        if set(conditions) <= set(by_condition.index.astype(str)):
            return by_condition.loc[conditions].reset_index(drop=True)
    files = [str(f) for f in stimuli["stim_file"]]
    lookup = {f: i for i, f in enumerate(files)}
    lookup.update({Path(f).stem: i for i, f in enumerate(files)})
    rows = [lookup.get(c, lookup.get(Path(c).stem)) for c in conditions]
    if any(r is None for r in rows):
        unknown = [c for c, r in zip(conditions, rows, strict=True) if r is None]
        logger.warning(
            "RDM conditions %s name no condition or stim_file of the stimuli table; "
            "stimulus labels are not used",
            unknown[:5],
        )
        return None
    return stimuli.iloc[rows].reset_index(drop=True)


def ordering_sets(labels) -> list[str]:
    columns = label_columns(labels)
    preferred = [c for c in _ORDER_PREFERENCE if c in columns]
    return preferred or columns[:2]


def category_table(ctx: Context, model: Model):
    path = ctx.dataset_file(model=model.label, desc="categoryindex", suffix="stats.tsv")
    if not path.is_file():
        return None, path
    table = read_tsv(path)
    if table is None or not {"layer", "label_set", "index"} <= set(table.columns):
        logger.warning("%s lacks the columns layer, label_set, index; skipped", path)
        return None, path
    return table, path


@dataclass
class MapSet:
    """The maps of one model and one statistic, by layer label."""

    model: Model
    stat: str
    layers: list[Layer]
    paths: dict[str, Path]


def map_sets(ctx: Context, folder: Path, prefix: str, stats: Sequence[str] | None) -> list:
    sets = []
    for model in ctx.models:
        by_stat: dict[str, dict[str, Path]] = {}
        pattern = f"{prefix}task-{ctx.task}_space-{ctx.space}_model-{model.label}_*stat-*"
        for path in sorted(folder.glob(pattern + "_statmap.nii*")):
            entities = parse_name(path).entities
            if "desc" in entities or not is_label(entities.get("stat", "")):
                continue
            if stats is not None and entities["stat"] not in stats:
                continue
            layer = entities.get("layer", model.label)
            by_stat.setdefault(entities["stat"], {})[layer] = path
        for stat, paths in sorted(by_stat.items()):
            layers = [la for la in model.layers if la.label in paths]
            sets.append(MapSet(model, stat, layers, paths))
    return sets


def open_context(
    output_dir, task, space, model, layers, figures, *, alpha: float = 0.05
) -> Context:
    """Check the labels and collect the models and stimuli of ``output_dir``."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise FileNotFoundError(f"output_dir does not exist or is not a folder: {output_dir}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie strictly between 0 and 1; got {alpha!r}")
    task = check_label(task, "task", prefix="task-")
    space = check_label(space, "space", prefix="space-")
    model = check_label(model, "model", prefix="model-")
    models = discover_models(output_dir, task, space, model)
    if model is not None and not models:
        logger.warning("no files for model %r in %s", model, output_dir)
    requested = tuple(str(x) for x in (layers or ()))
    return Context(
        output_dir,
        task,
        space,
        models,
        read_stimuli(output_dir, task),
        figures,
        requested,
        float(alpha),
    )
