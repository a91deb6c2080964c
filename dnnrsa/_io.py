"""Atomic file writing: a temporary name in the target folder, then a rename.

An interrupted run therefore never leaves a half-written output behind, and a
file that exists is always complete (which lets a rerun skip it).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Open a temporary file next to ``path``; rename it onto ``path`` on success.

    Parameters
    ----------
    path : path-like
        Final file name. Its folder is created if needed.
    mode : {"w", "wb"}
    encoding : str or None
        Text encoding (ignored in binary mode).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb'; got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        kwargs = {} if "b" in mode else {"encoding": encoding, "newline": ""}
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _tmp_name(path: Path, suffix: str) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def atomic_save_nifti(img, path: str | os.PathLike) -> Path:
    """Save a nibabel image atomically (``.nii`` or ``.nii.gz``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".nii.gz" if path.name.endswith(".nii.gz") else path.suffix
    tmp = _tmp_name(path, suffix)
    try:
        img.to_filename(str(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_save_npz(path: str | os.PathLike, **arrays) -> Path:
    """Save arrays to a compressed ``.npz`` atomically."""
    import numpy as np

    path = Path(path)
    with atomic_write(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path


__all__ = ["atomic_save_nifti", "atomic_save_npz", "atomic_write"]
