"""Decoded stimuli on disk, decoded once and read by every network's input recipe.

Each input recipe decodes the stimulus files itself (:mod:`dnnrsa._decode`), so several
networks decode every clip once each. A :class:`DecodedClips` store keeps, for each
stimulus, what the decoder gives: the RGB frames its recipes take (the frames shown at
``n`` evenly spaced times of the clip for every ``n`` of ``frame_counts``, by the
stream's timestamps: :func:`dnnrsa._decode._frame_indices`; or every frame), the
timeline of all its frames and the mono mix of its audio track at the file's own rate;
a still image, its pixels. :meth:`DecodedClips.fill` decodes each stimulus once, with
the same decoder in the same way; a recipe given the store (``store=``) takes its
frames and samples from the stored ones, so its inputs equal, byte for byte, those it
decodes itself.

An entry is one uncompressed ``.npz`` per stimulus, named by the file's contents and
the store's settings (:func:`dnnrsa._io.content_cache_name`: the SHA-256 of the file,
the frame counts, the store's version and PyAV's), written under a temporary name and
renamed (:func:`dnnrsa._io.atomic_write`), and never changed afterwards: any number of
processes may read it while another writes other entries, and a reader loads one
stimulus at a time. A stimulus the store does not hold (not filled, not decodable, or
without the frames a recipe asks for) is decoded by the recipe itself, as without a
store, with the same errors.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from . import _decode
from ._io import atomic_write, content_cache_name

logger = logging.getLogger(__name__)

#: Version of the entries' layout (part of their names).
STORE_VERSION = 1


@dataclass(frozen=True)
class DecodedClips:
    """A folder of decoded stimuli.

    Parameters
    ----------
    root : path-like
        The folder (created when the first entry is written).
    frame_counts : sequence of int, optional
        The frame counts of the recipes that read the store: each entry keeps the frames
        shown at ``n`` evenly spaced times for every ``n`` (an empty sequence: no frames,
        and the video stream is not decoded). None (default): every frame.
    """

    root: Path
    frame_counts: tuple[int, ...] | None = None

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))
        if self.frame_counts is not None:
            counts = tuple(sorted({int(n) for n in self.frame_counts}))
            if any(n < 1 for n in counts):
                raise ValueError(f"frame_counts must be positive; got {self.frame_counts!r}")
            object.__setattr__(self, "frame_counts", counts)

    # ------------------------------------------------------------------ description
    def to_dict(self) -> dict:
        counts = None if self.frame_counts is None else list(self.frame_counts)
        return {"root": str(self.root), "frame_counts": counts, "version": STORE_VERSION}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the store's description (JSON) to ``path``; :meth:`load` reads it."""
        path = Path(path)
        with atomic_write(path) as fh:
            json.dump(self.to_dict(), fh, indent=2)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> DecodedClips:
        data = json.loads(Path(path).read_text())
        return cls(data["root"], data["frame_counts"])

    @classmethod
    def of(cls, store) -> DecodedClips | None:
        """``store`` itself, the store a description file names, or None."""
        if store is None or isinstance(store, cls):
            return store
        return cls.load(store)

    def entry(self, path: str | os.PathLike) -> Path:
        """The entry of a stimulus file (named by its contents and the settings)."""
        import av

        params = {**self.to_dict(), "av": av.__version__}
        del params["root"]
        return self.root / content_cache_name(path, params, ".npz")

    # ------------------------------------------------------------------ writing
    def _select(self, timeline) -> list[int]:
        """The frames kept: those of every frame count, in order."""
        if self.frame_counts is None:
            return list(range(timeline.n))
        chosen = set()
        for n in self.frame_counts:
            chosen.update(int(i) for i in _decode._frame_indices(timeline, n))
        return sorted(chosen)

    def fill(self, paths: Sequence[str | os.PathLike], n_jobs: int = 1) -> int:
        """Decode every stimulus the store does not hold yet and write its entry.

        A stimulus that cannot be decoded is left out with a warning (the recipes then
        decode it themselves and raise their own errors). ``n_jobs`` stimuli are decoded
        at a time (threads; -1: one per CPU the process may use).

        Returns
        -------
        int
            The number of stimuli decoded.
        """
        from ._cpus import resolve_n_jobs

        paths = [Path(p) for p in paths]
        n_jobs = resolve_n_jobs(n_jobs)
        if n_jobs == 1 or len(paths) < 2:
            return sum(map(self._fill_one, paths))
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=n_jobs) as pool:
            return sum(pool.map(self._fill_one, paths))

    def _fill_one(self, path: Path) -> bool:
        if not path.is_file():
            return False
        entry = self.entry(path)
        if entry.is_file():
            return False
        try:
            arrays = self._decoded(path)
        except _decode.StimulusError as exc:
            logger.warning("%s not stored decoded (each network decodes it): %s", path, exc)
            return False
        with atomic_write(entry, "wb") as fh:
            np.savez(fh, **arrays)
        return True

    def _decoded(self, path: Path) -> dict[str, np.ndarray]:
        """The arrays of one entry: ``meta`` (JSON), ``pts``, ``indices``, ``frames`` and
        ``audio``."""
        kind = _decode.stimulus_kind(path)
        meta = {"kind": kind, "video": False, "audio": False, "frames": False}
        empty = np.zeros(0, np.int64)
        arrays = {"pts": empty, "indices": empty, "frames": np.zeros(0, np.uint8)}
        arrays["audio"] = np.zeros(0, np.float32)
        if kind == "image":
            arrays["frames"] = _decode._read_image(path)[None]
            meta.update(video=True, frames=True)
        else:
            video = kind == "video" and self.frame_counts != ()
            frames, timeline, fps, audio, rate = _decode._decode_file(
                path, video=video, audio=True, select=self._select if video else None
            )
            meta.update(video=video, audio=True, fps=fps, rate=rate)
            if frames is not None:
                arrays["frames"] = frames
                arrays["indices"] = np.asarray(self._select(timeline), np.int64)
                arrays["pts"] = np.asarray(timeline.pts, np.int64)
                base = timeline.time_base
                meta.update(
                    frames=True, end=timeline.end, time_base=[base.numerator, base.denominator]
                )
            if audio is not None:
                arrays["audio"] = audio
        arrays["meta"] = np.array(json.dumps(meta))
        return arrays

    # ------------------------------------------------------------------ reading
    def _open_entry(self, path: str | os.PathLike):
        path = Path(path)
        if not path.is_file():
            return None
        entry = self.entry(path)
        try:
            data = np.load(entry)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            logger.warning("ignoring unreadable decoded stimulus %s: %s", entry, exc)
            return None
        return data

    def read(self, path, *, video: bool = True, audio: bool = True, select=None):
        """What :func:`dnnrsa._decode._decode_streams` gives for a video or audio file
        (``(frames, timeline, fps, audio, rate)``), from its entry; None when the store
        does not hold it, or not the streams or frames asked for."""
        data = self._open_entry(path)
        if data is None:
            return None
        with data:
            meta = json.loads(str(data["meta"]))
            if meta["kind"] == "image" or (video and not meta["video"]):
                return None
            if audio and not meta["audio"]:
                return None
            frames = timeline = fps = None
            if video and meta["frames"]:
                timeline = _decode.Timeline(
                    tuple(int(p) for p in data["pts"]),
                    int(meta["end"]),
                    Fraction(*meta["time_base"]),
                )
                wanted = range(timeline.n) if select is None else select(timeline)
                stored = {int(i): k for k, i in enumerate(data["indices"])}
                if any(int(i) not in stored for i in wanted):
                    return None
                frames = data["frames"][[stored[int(i)] for i in wanted]]
                fps = meta["fps"]
            samples = rate = None
            if audio and meta["rate"] is not None:
                samples, rate = data["audio"], int(meta["rate"])
        return frames, timeline, fps, samples, rate

    def image(self, path) -> np.ndarray | None:
        """The pixels of a still image (uint8, ``(height, width, 3)``), from its entry;
        None when the store does not hold it."""
        data = self._open_entry(path)
        if data is None:
            return None
        with data:
            if json.loads(str(data["meta"]))["kind"] != "image":
                return None
            return data["frames"][0]
