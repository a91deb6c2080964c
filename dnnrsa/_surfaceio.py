"""Reading and writing per-vertex data as GIFTI (``.func.gii``, ``.gii.gz``).

fMRIPrep writes a run on fsaverage as one GIFTI file per hemisphere with one data
array per volume, each of shape ``(n_vertices,)``; other tools write one 2-D array of
shape ``(n_vertices, n_volumes)``. :func:`read_gifti_data` reads both into an array
of shape ``(n_vertices, n_columns)``; :func:`atomic_save_gifti` writes a GIFTI image
atomically (a temporary name, then a rename).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ._io import atomic_write

GIFTI_EXTENSIONS = (".gii", ".gii.gz")


def describe(source) -> str:
    """How a GIFTI source is named in messages: its path, or ``"<what> (in memory)"``."""
    if isinstance(source, str | os.PathLike):
        return repr(os.fspath(source))
    return f"a {type(source).__name__} in memory"


def is_gifti_source(source) -> bool:
    """Whether ``source`` names a GIFTI file (by its extension) or is a GIFTI image."""
    from nibabel.gifti import GiftiImage

    if isinstance(source, GiftiImage):
        return True
    if isinstance(source, str | os.PathLike):
        return os.fspath(source).lower().endswith(GIFTI_EXTENSIONS)
    return False


def load_gifti(source, what: str):
    """A :class:`nibabel.gifti.GiftiImage` from a path or an image.

    ``what`` names the input in messages (``"run_imgs[0] (left)"``).
    """
    from nibabel.gifti import GiftiImage

    if isinstance(source, GiftiImage):
        return source
    if not isinstance(source, str | os.PathLike):
        raise ValueError(
            f"{what} must be a GIFTI file (.func.gii) or a nibabel GiftiImage; "
            f"got {type(source).__name__}"
        )
    path = Path(source)
    if not path.is_file():
        raise ValueError(f"{what}: no such file {os.fspath(path)!r}")
    if not path.name.lower().endswith(GIFTI_EXTENSIONS):
        raise ValueError(
            f"{what}: {os.fspath(path)!r} is not a GIFTI file (expected .func.gii or .gii.gz)"
        )
    import nibabel as nib

    try:
        img = nib.load(os.fspath(path))
    except Exception as exc:
        raise ValueError(f"{what}: {os.fspath(path)!r} could not be read as GIFTI ({exc})") from exc
    if not isinstance(img, GiftiImage):
        raise ValueError(
            f"{what}: {os.fspath(path)!r} is not a GIFTI file (nibabel read a {type(img).__name__})"
        )
    return img


def read_gifti_data(source, what: str) -> np.ndarray:
    """The data of a GIFTI file as an array of shape ``(n_vertices, n_columns)``.

    One data array per column (fMRIPrep: one per volume, each ``(n_vertices,)`` or
    ``(n_vertices, 1)``), or a single 2-D array ``(n_vertices, n_columns)``. The
    stored dtype is kept.
    """
    img = load_gifti(source, what)
    arrays = [np.asarray(d.data) for d in img.darrays]
    name = describe(source)
    if not arrays:
        raise ValueError(f"{what}: {name} holds no data array")
    if len(arrays) == 1:
        data = arrays[0]
        if data.ndim == 1:
            data = data[:, None]
        if data.ndim != 2:
            raise ValueError(
                f"{what}: {name} holds an array of shape {data.shape}; expected "
                "(n_vertices,) or (n_vertices, n_volumes)"
            )
        return data
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(
            f"{what}: {name} holds data arrays of different shapes {sorted(shapes)}; "
            "expected one (n_vertices,) array per volume"
        )
    shape = shapes.pop()
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise ValueError(
            f"{what}: {name} holds {len(arrays)} data arrays of shape {shape}; expected one "
            "(n_vertices,) array per volume"
        )
    return np.stack([a.reshape(-1) for a in arrays], axis=1)


def gifti_image(columns: np.ndarray, meta: dict | None = None):
    """A GIFTI image with one data array per column of ``columns`` (n_vertices, n_columns),
    float32, as fMRIPrep writes them; ``meta`` goes into the file's metadata."""
    from nibabel.gifti import GiftiDataArray, GiftiImage, GiftiMetaData

    columns = np.asarray(columns, dtype=np.float32)
    if columns.ndim == 1:
        columns = columns[:, None]
    darrays = [
        GiftiDataArray(np.ascontiguousarray(columns[:, k]), intent="NIFTI_INTENT_NONE")
        for k in range(columns.shape[1])
    ]
    return GiftiImage(
        darrays=darrays, meta=GiftiMetaData({k: str(v) for k, v in (meta or {}).items()})
    )


def atomic_save_gifti(img, path: str | os.PathLike) -> Path:
    """Save a GIFTI image atomically (``.gii``, ``.func.gii``)."""
    path = Path(path)
    if not path.name.endswith(".gii"):
        raise ValueError(f"a GIFTI file name ends in .gii; got {path.name}")
    with atomic_write(path, "wb") as fh:
        fh.write(img.to_bytes())
    return path
