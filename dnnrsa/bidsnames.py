"""BIDS derivative names in one place: labels, building and parsing file names, sidecars.

Every writer and reader of dnnrsa's derivatives goes through these functions, so a name is
built one way and read back the same way::

    >>> build_name({"sub": "01", "task": "av", "model": "emotion", "layer": "conv1"},
    ...            "statmap", ".nii.gz")
    'sub-01_task-av_model-emotion_layer-conv1_statmap.nii.gz'
    >>> parse_name("sub-01_task-av_model-emotion_layer-conv1_statmap.nii.gz")
    BidsName(entities={'sub': '01', 'task': 'av', 'model': 'emotion', 'layer': 'conv1'}, suffix='statmap', extension='.nii.gz')
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ._io import atomic_write

_logger = logging.getLogger(__name__)

LABEL_RE = re.compile(r"[A-Za-z0-9]+")
_EXTENSIONS = (
    ".nii.gz",
    ".tsv.gz",
    ".nii",
    ".tsv",
    ".json",
    ".html",
    ".png",
    ".svg",
    ".npz",
    ".txt",
)


@dataclass(frozen=True)
class BidsName:
    """The parts of a BIDS file name: ordered entities, suffix and extension."""

    entities: dict[str, str]
    suffix: str
    extension: str

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.entities.get(key, default)


def is_label(value: str) -> bool:
    """Whether ``value`` is a valid BIDS label (letters and digits only)."""
    return bool(LABEL_RE.fullmatch(str(value)))


def to_label(text: str, *, fallback: str | None = None) -> str:
    """A BIDS label made of the letters and digits of ``text`` (``'conv 1/a'`` -> ``'conv1a'``).

    Raises ValueError when nothing is left, unless a ``fallback`` label is given.
    """
    label = "".join(ch for ch in str(text) if ch.isascii() and ch.isalnum())
    if label:
        return label
    if fallback is not None:
        return fallback
    raise ValueError(f"cannot make a BIDS label from {text!r}: it has no letters or digits")


def check_label(value: str | None, name: str, *, prefix: str = "") -> str | None:
    """``value`` without ``prefix`` (for example ``sub-``), checked to be a BIDS label.

    None passes through. Raises ValueError naming ``name`` otherwise.
    """
    if value is None:
        return None
    value = str(value)
    if prefix and value.startswith(prefix):
        value = value[len(prefix) :]
    if not is_label(value):
        raise ValueError(f"{name} must be an alphanumeric BIDS label; got {value!r}")
    return value


def split_extension(name: str) -> tuple[str, str]:
    """``('sub-01_bold', '.nii.gz')``: the stem and the (possibly double) extension."""
    for ext in _EXTENSIONS:
        if name.endswith(ext):
            return name[: -len(ext)], ext
    stem, dot, ext = name.partition(".")
    return stem, dot + ext


def parse_name(name: str | os.PathLike) -> BidsName:
    """Entities (in file order), suffix and extension of a file name (a path is reduced to it).

    Parts without ``-`` other than the last (the suffix) are ignored.
    """
    stem, extension = split_extension(Path(name).name)
    parts = stem.split("_")
    entities = {}
    for part in parts[:-1]:
        key, sep, value = part.partition("-")
        if sep:
            entities[key] = value
    return BidsName(entities, parts[-1], extension)


def build_stem(entities: dict[str, str | None]) -> str:
    """``key-value_...`` from ordered entities, without a suffix; None values are left out.

    Every value must already be a BIDS label (use :func:`to_label` to make one).
    """
    parts = []
    for key, value in entities.items():
        if value is None or value == "":
            continue
        parts.append(f"{key}-{check_label(value, f'BIDS entity {key!r}')}")
    return "_".join(parts)


def build_name(entities: dict[str, str | None], suffix: str, extension: str = "") -> str:
    """``key-value_..._suffix.ext`` from ordered entities; None values are left out.

    Every value must already be a BIDS label (use :func:`to_label` to make one).
    """
    if not is_label(suffix):
        raise ValueError(f"BIDS suffix must be alphanumeric; got {suffix!r}")
    stem = build_stem(entities)
    return (f"{stem}_{suffix}" if stem else suffix) + extension


def model_stem(model: str, layer: str | None = None) -> str:
    """``model-<m>_layer-<l>`` (or ``model-<m>`` for a model without layers)."""
    return build_stem({"model": model, "layer": layer})


def subject_dir(root: str | os.PathLike, subject: str, datatype: str = "func") -> Path:
    """``<root>/sub-<subject>/<datatype>``, the folder of a participant's files."""
    return Path(root) / build_stem({"sub": subject}) / datatype


def sidecar_path(path: str | os.PathLike) -> Path:
    """The JSON sidecar of a data file (``x_statmap.nii.gz`` -> ``x_statmap.json``)."""
    path = Path(path)
    stem, _ = split_extension(path.name)
    return path.with_name(stem + ".json")


def read_json(
    path: str | os.PathLike,
    *,
    on_error: str = "raise",
    logger: logging.Logger | None = None,
) -> dict:
    """A JSON object from ``path``; an empty dict when the file is absent.

    Parameters
    ----------
    path : str or path-like
        The JSON file (a sidecar, ``dataset_description.json``).
    on_error : {"raise", "warn"}
        What a file that cannot be read or parsed, or that holds another JSON value
        than an object, gives. ``"raise"`` (the default, for the pipeline): the error
        (``OSError``; ``ValueError``, which covers ``json.JSONDecodeError`` and
        ``UnicodeDecodeError``; a ``ValueError`` naming the type of a non-object).
        ``"warn"`` (for the reports, which show what they can): an empty dict, after
        the warning ``cannot read PATH (REASON); ignoring it`` for an unreadable
        file; a non-object gives an empty dict without a warning.
    logger : logging.Logger, optional
        The logger of that warning (default: this module's).

    Returns
    -------
    dict
    """
    if on_error not in ("raise", "warn"):
        raise ValueError(f"on_error must be one of ['raise', 'warn']; got {on_error!r}")
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        if on_error == "raise":
            raise
        (logger or _logger).warning("cannot read %s (%s); ignoring it", path, exc)
        return {}
    if not isinstance(data, dict):
        if on_error == "warn":
            return {}
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def write_json(path: str | os.PathLike, payload: dict) -> Path:
    """Write a JSON object (a sidecar, dataset_description.json) atomically, indented."""
    with atomic_write(path) as fh:
        json.dump(payload, fh, indent=2, sort_keys=False, default=str)
        fh.write("\n")
    return Path(path)


__all__ = [
    "BidsName",
    "LABEL_RE",
    "build_name",
    "build_stem",
    "check_label",
    "is_label",
    "model_stem",
    "parse_name",
    "read_json",
    "sidecar_path",
    "split_extension",
    "subject_dir",
    "to_label",
    "write_json",
]
