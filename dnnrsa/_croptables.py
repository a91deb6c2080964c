"""Crop tables: the face crop of each stimulus as a TSV (read and written).

Used through :mod:`dnnrsa.faces`, which re-exports :func:`read_crop_table`,
:func:`write_crop_table` and :class:`CropTableError`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

TABLE_COLUMNS = ("x0", "y0", "x1", "y1")
_MODES = ("auto", "centre", "table")


class CropTableError(ValueError):
    """A crop table cannot be used: bad columns, an unknown file or a box outside the frame."""


def read_crop_table(path: str | os.PathLike, column: str | None = None):
    """Read a crop table: a stimulus column and ``x0``, ``y0``, ``x1``, ``y1``.

    Parameters
    ----------
    path : path-like
        Tab-separated file.
    column : str, optional
        The stimulus column (default: ``stim_file`` or ``file``, whichever is there).

    Returns
    -------
    pandas.DataFrame
        The stimulus column renamed to ``name``, integer box columns, and the
        ``face_crop`` column when the table has one (a table written by dnnrsa).

    Raises
    ------
    CropTableError
        Missing columns, or a row whose name is empty or whose box is not four
        integers with ``x0 < x1`` and ``y0 < y1`` (the message names the row).
    """
    import pandas as pd

    path = Path(path)
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    if column is None:
        column = next((c for c in ("stim_file", "file") if c in table.columns), "stim_file")
    missing = [c for c in (column, *TABLE_COLUMNS) if c not in table.columns]
    if missing:
        raise CropTableError(
            f"crop table {path} lacks the columns {missing}; it needs {column}, x0, y0, x1, y1 "
            f"(got {list(table.columns)})"
        )
    rows = []
    for k, row in enumerate(table.to_dict("records"), start=1):
        where = f"crop table {path}, row {k} ({column} {row[column]!r})"
        if not row[column].strip():
            raise CropTableError(f"{where}: the stimulus name is empty")
        if all(row[c].strip() in ("", "n/a") for c in TABLE_COLUMNS):
            rows.append({"name": row[column].strip(), "row": k, "box": None, **_mode(row)})
            continue  # a stimulus without frames (written by dnnrsa for audio files)
        try:
            box = [int(float(row[c])) for c in TABLE_COLUMNS]
        except ValueError:
            raise CropTableError(f"{where}: x0, y0, x1, y1 must be integer pixels") from None
        if not (0 <= box[0] < box[2] and 0 <= box[1] < box[3]):
            raise CropTableError(
                f"{where}: the box {tuple(box)} needs 0 <= x0 < x1 and 0 <= y0 < y1"
            )
        rows.append({"name": row[column].strip(), "row": k, "box": tuple(box), **_mode(row)})
    return pd.DataFrame(rows, columns=["name", "row", "box", "face_crop"])


def _mode(row: Mapping) -> dict:
    value = str(row.get("face_crop", "")).strip()
    return {"face_crop": value if value in _MODES else "table"}


def _match(name: str, stimuli: Sequence[str]) -> list[int]:
    """Stimuli whose name equals ``name`` or ends with its path parts."""
    parts = Path(os.path.normpath(name)).parts
    return [
        i
        for i, s in enumerate(stimuli)
        if s == name or Path(os.path.normpath(s)).parts[-len(parts) :] == parts
    ]


def write_crop_table(
    path: str | os.PathLike,
    names: Sequence[str],
    crops: Sequence,
    *,
    column: str = "stim_file",
    mode: str = "auto",
    input_frames: int = 1,
    input_size: int = 64,
) -> Path:
    """Write the crops used as a TSV (readable back by :func:`read_crop_table`).

    Columns: the stimulus column, ``x0``, ``y0``, ``x1``, ``y1`` (``n/a`` without
    frames), ``width``, ``height``, ``source``, ``frames_searched``,
    ``frames_with_face``, ``face_crop`` (the mode), ``input_frames`` and
    ``input_size`` (the frames averaged into the model's input and its side).
    """
    import pandas as pd

    from ._io import atomic_write

    rows = []
    for name, crop in zip(names, crops, strict=True):
        box = crop.box or (None,) * 4
        rows.append(
            {
                column: name,
                **dict(zip(TABLE_COLUMNS, box, strict=True)),
                "width": crop.width,
                "height": crop.height,
                "source": crop.source,
                "frames_searched": len(crop.frames),
                "frames_with_face": crop.n_detected,
                "face_crop": mode,
                "input_frames": int(input_frames),
                "input_size": int(input_size),
            }
        )
    path = Path(path)
    with atomic_write(path) as fh:
        pd.DataFrame(rows).to_csv(fh, sep="\t", index=False, na_rep="n/a")
    return path


def _table_boxes(table_path, stimuli: Sequence[str], column):
    table = read_crop_table(table_path, column)
    given: dict[int, tuple] = {}
    for row in table.itertuples():
        hits = _match(row.name, stimuli)
        where = f"crop table {table_path}, row {row.row} ({row.name!r})"
        if not hits:
            raise CropTableError(f"{where}: no such stimulus")
        if len(hits) > 1 or hits[0] in given:
            raise CropTableError(f"{where}: names more than one stimulus, or one named twice")
        given[hits[0]] = (row.box, row.row, row.face_crop)
    return given
