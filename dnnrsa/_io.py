"""Atomic file writing: a temporary name in the target folder, then a rename.

An interrupted run therefore never leaves a half-written output behind, and a
file that exists is always complete (which lets a rerun skip it).

Temporary files are named ``.<name>.<random>.tmp``: hidden, and never ending in the
output's extension, so no reader mistakes one for an output. While a file is being
written its writer holds a lock on it; :func:`sweep_stale_temporaries` removes the
ones no live writer holds (left by a killed run).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

#: Suffix of every temporary file written here.
TMP_SUFFIX = ".tmp"
#: Names of temporary files of ours: this module's (``.tmp``) and those of earlier
#: versions (``.part``, or the output's own extension after the random part).
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}(?P<suffix>\.tmp|\.part|\.nii\.gz|\.nii)$")
#: An unlocked temporary file younger than this (seconds) may still be starting.
_MIN_AGE_S = 5.0


def _lock(fd: int) -> None:
    if fcntl is not None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _mkstemp(path: Path) -> tuple[int, str]:
    """A locked, hidden temporary file next to ``path`` (``.<name>.<random>.tmp``)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    _lock(fd)
    return fd, tmp


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
    fd, tmp = _mkstemp(path)
    try:
        kwargs = {} if "b" in mode else {"encoding": encoding, "newline": ""}
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)  # while the lock is held
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _tmp_name(path: Path, suffix: str | None = None) -> Path:
    """A hidden temporary name next to ``path`` (``suffix`` is ignored: the name ends in .tmp).

    For writers that open the file by name; they must give the format explicitly.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def atomic_save_nifti(img, path: str | os.PathLike) -> Path:
    """Save a nibabel image atomically (``.nii`` or ``.nii.gz``).

    The bytes equal nibabel's own ``to_filename`` (deterministic gzip at nibabel's
    compression level, no file name in the gzip header).
    """
    from nibabel.fileholders import FileHolder
    from nibabel.openers import Opener

    path = Path(path)
    if not path.name.endswith((".nii", ".nii.gz")):
        raise ValueError(f"a NIfTI file name ends in .nii or .nii.gz; got {path.name}")
    with atomic_write(path, "wb") as fh:
        if path.name.endswith(".gz"):
            from nibabel._compression import DeterministicGzipFile

            stream = DeterministicGzipFile(
                fileobj=fh, mode="wb", compresslevel=Opener.default_compresslevel
            )
        else:
            stream = contextlib.nullcontext(fh)
        with stream as out:
            holder = FileHolder(fileobj=out)
            img.to_file_map({"image": holder, "header": holder})
    return path


def atomic_save_npz(path: str | os.PathLike, **arrays) -> Path:
    """Save arrays to a compressed ``.npz`` atomically."""
    import numpy as np

    path = Path(path)
    with atomic_write(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path


def is_temporary(path: str | os.PathLike) -> bool:
    """Whether ``path`` is named as a temporary file of these writers (any version)."""
    match = _TEMP_NAME.match(Path(path).name)
    if match is None:
        return False
    suffix = match["suffix"]
    return suffix in (TMP_SUFFIX, ".part") or match["name"].endswith(suffix)


def _held(path: Path) -> bool:
    """Whether a live writer holds ``path`` (or, without locks, whether it is fresh)."""
    try:
        if time.time() - path.stat().st_mtime < _MIN_AGE_S:
            return True
        if fcntl is None:
            return False
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def sweep_stale_temporaries(root: str | os.PathLike) -> list[Path]:
    """Remove the temporary files under ``root`` that no live writer holds.

    A run killed during a write leaves its temporary file behind; the next run
    calls this first. Files of a writer still running (locked) are kept.

    Returns
    -------
    list of Path
        The files removed.
    """
    root = Path(root)
    removed = []
    if not root.is_dir():
        return removed
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if not name.startswith(".") or not is_temporary(path) or path.is_symlink():
                continue
            if _held(path):
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


__all__ = [
    "atomic_save_nifti",
    "atomic_save_npz",
    "atomic_write",
    "is_temporary",
    "sweep_stale_temporaries",
]


def file_sha256(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 of a file's contents."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk_bytes), b""):
            h.update(block)
    return h.hexdigest()


def content_cache_name(path: str | os.PathLike, params: dict, suffix: str) -> str:
    """The name under which a result computed from a file is cached.

    ``<SHA-256 of the file>-<the first 16 hex digits of the SHA-256 of params as
    sorted JSON><suffix>``: a changed file or changed parameters give another name,
    so a cache never returns a result computed from other inputs. The face
    detections and the network activations are cached under such names.
    """
    text = json.dumps(params, sort_keys=True)
    return f"{file_sha256(path)}-{hashlib.sha256(text.encode()).hexdigest()[:16]}{suffix}"
