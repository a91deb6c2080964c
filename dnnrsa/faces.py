"""Face detection and the face crop of each stimulus.

The visual arm expects a face. :func:`resolve_crops` chooses, for every stimulus,
the pixel box ``(x0, y0, x1, y1)`` (``x1``, ``y1`` exclusive) that is cut out of the
frames before they are shrunk to the model's ``image_size x image_size`` input, in
one of three modes:

* ``"auto"``: faces are detected with OpenCV's Haar cascades (the Viola-Jones
  detector; the cascade files ship inside the ``opencv-python-headless`` wheel, so
  nothing is downloaded). Detection runs on ``SEARCH_FRAMES`` (9, at least 5) evenly
  spaced frames of each clip plus every frame that feeds the model. In each frame
  the **largest** face is kept (by box area; between faces of equal area, the one
  nearest the frame centre). The per-frame boxes are combined into one square per
  clip: the median centre and the median side over the frames with a face (so a
  frame where the face is missed, or a stray detection, does not move it), enlarged
  by ``MARGIN`` (20%) of the side on every edge, and shifted (or shrunk) to lie
  inside the frame. ``haarcascade_frontalface_default.xml`` is tried first;
  ``haarcascade_frontalface_alt2.xml`` only when the first finds no face in any
  searched frame. When neither finds a face, the clip gets the centred square and
  a warning naming it.
* ``"centre"``: the centred largest square (the behaviour before face detection).
* a crop table (TSV): one row per stimulus with a stimulus column (``stim_file``
  in the BIDS App, ``file`` for training) and ``x0``, ``y0``, ``x1``, ``y1`` in
  pixels. Its boxes replace detection; stimuli without a row are detected as in
  ``"auto"``. A row naming an unknown file, or whose box does not lie inside the
  frame, raises :class:`CropTableError` naming the row.

Boxes are found on frames shrunk so that their shorter side is at most
``DETECT_SIDE`` pixels (faster, and the cascade's results hardly change), with
faces at least 1/8 of the shorter side.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ._cpus import resolve_n_jobs
from ._croptables import (
    TABLE_COLUMNS,
    CropTableError,
    _match,
    _table_boxes,
    read_crop_table,
    write_crop_table,
)
from ._decode import (
    Timeline,
    _decode_streams,
    _face_image,
    _frame_indices,
    _open,
    _read_image,
    stimulus_kind,
)
from ._io import atomic_write, content_cache_name

logger = logging.getLogger(__name__)

CASCADES = ("haarcascade_frontalface_default.xml", "haarcascade_frontalface_alt2.xml")
SEARCH_FRAMES = 9
MARGIN = 0.2
DETECT_SIDE = 240
MIN_FACE_FRACTION = 1 / 8
SCALE_FACTOR = 1.1
MIN_NEIGHBORS = 4
CROP_MODES = ("auto", "centre")
#: Part of the cache key of detected crops: version 2 never reuses boxes cached by
#: version 1, whose threads shared one classifier (boxes changed from run to run).
_DETECTOR_VERSION = 2

__all__ = [
    "CASCADES",
    "CROP_MODES",
    "MARGIN",
    "SEARCH_FRAMES",
    "TABLE_COLUMNS",
    "CropTableError",
    "FaceCrop",
    "centre_box",
    "choose_face",
    "combine_boxes",
    "crop_mode",
    "crop_preview",
    "detect_faces",
    "detect_face_crop",
    "frame_size",
    "read_crop_table",
    "resolve_crops",
    "search_frames",
    "table_mode",
    "warn_if_mode_differs",
    "write_crop_table",
]


@dataclass(frozen=True)
class FaceCrop:
    """The crop of one stimulus.

    Attributes
    ----------
    box : (x0, y0, x1, y1) or None
        Pixel box (x1, y1 exclusive); None for a stimulus without frames.
    source : str
        ``"detected"``, ``"fallback"`` (no face found: centred square), ``"centre"``,
        ``"table"`` (given by the user) or ``"none"`` (no frames).
    width, height : int
        Frame size in pixels (0 without frames).
    frames : tuple of int
        Frame indices searched for a face.
    detections : tuple
        Per searched frame, the chosen face ``(x0, y0, x1, y1)`` or None.
    cascade : str
        The cascade that found the faces ("" when none did or none was run).
    """

    box: tuple[int, int, int, int] | None
    source: str
    width: int = 0
    height: int = 0
    frames: tuple[int, ...] = ()
    detections: tuple = ()
    cascade: str = ""

    @property
    def n_detected(self) -> int:
        """Number of searched frames in which a face was found."""
        return sum(d is not None for d in self.detections)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["detections"] = [None if d is None else list(d) for d in self.detections]
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> FaceCrop:
        def box(b):
            return None if b is None else tuple(int(v) for v in b)

        return cls(
            box=box(data["box"]),
            source=str(data["source"]),
            width=int(data["width"]),
            height=int(data["height"]),
            frames=tuple(int(i) for i in data["frames"]),
            detections=tuple(box(d) for d in data["detections"]),
            cascade=str(data.get("cascade", "")),
        )


# --------------------------------------------------------------------------- boxes
def centre_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The centred largest square of a ``width x height`` frame."""
    side = min(width, height)
    x0, y0 = (width - side) // 2, (height - side) // 2
    return (x0, y0, x0 + side, y0 + side)


def choose_face(boxes, width: int, height: int) -> int | None:
    """Index of the face to use among ``boxes`` (n, 4): the largest, then the most central."""
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    if not len(boxes):
        return None
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    dist = np.hypot(cx - width / 2, cy - height / 2)
    return int(np.lexsort((dist, -area))[0])


def combine_boxes(
    boxes, width: int, height: int, margin: float = MARGIN
) -> tuple[int, int, int, int]:
    """One square from per-frame face boxes: median centre and side, plus ``margin``.

    Parameters
    ----------
    boxes : array-like of shape (n, 4)
        Face boxes ``(x0, y0, x1, y1)`` of the frames with a face (n >= 1).
    width, height : int
        Frame size.
    margin : float
        Fraction of the side added on every edge.

    Returns
    -------
    (x0, y0, x1, y1)
        A square inside the frame (shrunk to the frame's shorter side if larger).
    """
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    if not len(boxes):
        raise ValueError("combine_boxes needs at least one box")
    cx = float(np.median((boxes[:, 0] + boxes[:, 2]) / 2))
    cy = float(np.median((boxes[:, 1] + boxes[:, 3]) / 2))
    side = float(np.median(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])))
    side = int(round(min(side * (1 + 2 * margin), width, height)))
    x0 = int(np.clip(round(cx - side / 2), 0, width - side))
    y0 = int(np.clip(round(cy - side / 2), 0, height - side))
    return (x0, y0, x0 + side, y0 + side)


# --------------------------------------------------------------------------- detection
#: One set of cascade classifiers per thread: ``cv2.CascadeClassifier`` keeps working
#: buffers in the object, so two threads detecting with one classifier change each
#: other's results (boxes then differ from run to run).
_CLASSIFIERS = threading.local()


def _cv2():
    """OpenCV, with the folder of its cascades (``cv2.data``). Called once before any
    detection thread starts: cv2's first import swaps its own module object in
    ``sys.modules``, and a second thread importing it at the same moment could get
    the module before ``cv2.data`` is attached (an AttributeError seen once)."""
    import cv2
    import cv2.data  # noqa: F401

    return cv2


def _classifier(name: str):
    cv2 = _cv2()
    loaded = getattr(_CLASSIFIERS, "by_name", None)
    if loaded is None:
        loaded = _CLASSIFIERS.by_name = {}
    if name not in loaded:
        path = os.path.join(cv2.data.haarcascades, name)
        classifier = cv2.CascadeClassifier(path)
        if classifier.empty():
            raise RuntimeError(f"cannot load the OpenCV cascade {path}")
        loaded[name] = classifier
    return loaded[name]


def detect_faces(frame, cascade: str = CASCADES[0]) -> np.ndarray:
    """Faces in one RGB (or gray) frame.

    Returns
    -------
    ndarray of shape (n_faces, 4), int
        Boxes ``(x0, y0, x1, y1)`` in the frame's pixels.
    """
    import cv2

    frame = np.asarray(frame)
    gray = (
        frame if frame.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    )
    scale = min(1.0, DETECT_SIDE / min(gray.shape))
    if scale < 1.0:
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    smallest = max(12, int(min(gray.shape) * MIN_FACE_FRACTION))
    found = _classifier(cascade).detectMultiScale(
        gray, scaleFactor=SCALE_FACTOR, minNeighbors=MIN_NEIGHBORS, minSize=(smallest, smallest)
    )
    found = np.asarray(found, dtype=float).reshape(-1, 4)
    boxes = np.column_stack([found[:, :2], found[:, :2] + found[:, 2:]]) / scale
    return np.round(boxes).astype(int)


def search_frames(timeline: Timeline | int, model_frames: Sequence[int] = (1,)) -> list[int]:
    """Frames searched for a face: ``SEARCH_FRAMES`` at evenly spaced times, plus the model's
    frames (``timeline``: the clip's frame times, or a frame count for evenly spaced frames)."""
    n_total = timeline.n if isinstance(timeline, Timeline) else int(timeline)
    picked = set(_frame_indices(timeline, min(SEARCH_FRAMES, n_total)).tolist())
    for n in model_frames:
        picked.update(_frame_indices(timeline, int(n)).tolist())
    return sorted(picked)


def detect_face_crop(
    frames, indices: Sequence[int] | None = None, *, name: str = "", warn: bool = True
) -> FaceCrop:
    """The face crop of one clip from its frames (see the module docstring).

    Parameters
    ----------
    frames : ndarray of shape (n, height, width, 3), uint8
        The frames to search (already selected).
    indices : sequence of int, optional
        Their frame numbers in the clip (recorded in the result).
    name : str
        The clip's name in the warning given when no face is found.
    """
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    height, width = frames.shape[1:3]
    indices = tuple(range(len(frames))) if indices is None else tuple(int(i) for i in indices)
    detections: list = [None] * len(frames)
    used = ""
    for cascade in CASCADES:
        for k, frame in enumerate(frames):
            boxes = detect_faces(frame, cascade)
            pick = choose_face(boxes, width, height)
            detections[k] = None if pick is None else tuple(int(v) for v in boxes[pick])
        if any(d is not None for d in detections):
            used = cascade
            break
    found = [d for d in detections if d is not None]
    if found:
        box, source = combine_boxes(found, width, height), "detected"
    else:
        box, source = centre_box(width, height), "fallback"
        if warn:
            logger.warning(
                "no face found in %s (%d frames searched): using the centred square",
                name or "a clip",
                len(frames),
            )
    return FaceCrop(box, source, int(width), int(height), indices, tuple(detections), used)


def _detect_file(path: Path, model_frames: Sequence[int]) -> FaceCrop:
    kind = stimulus_kind(path)
    if kind == "audio":
        return FaceCrop(None, "none")
    if kind == "image":
        return detect_face_crop(_read_image(path)[None], [0], name=str(path), warn=False)
    chosen: list[int] = []

    def select(timeline):
        chosen.extend(search_frames(timeline, model_frames))
        return chosen

    with _open(path) as container:
        frames, *_ = _decode_streams(container, path, audio=False, select=select)
    if frames is None:
        return FaceCrop(None, "none")
    return detect_face_crop(frames, chosen, name=str(path), warn=False)


def _detector_params(model_frames: Sequence[int]) -> dict:
    return {
        "v": _DETECTOR_VERSION,
        "cascades": CASCADES,
        "search": SEARCH_FRAMES,
        "margin": MARGIN,
        "side": DETECT_SIDE,
        "min": MIN_FACE_FRACTION,
        "scale": SCALE_FACTOR,
        "neighbors": MIN_NEIGHBORS,
        "model_frames": sorted({int(n) for n in model_frames}),
    }


def _detect_cached(path: Path, model_frames, cache_dir: Path | None) -> FaceCrop:
    """Detection on one file, read from (or saved to) ``cache_dir`` when given."""
    if cache_dir is None:
        return _detect_file(path, model_frames)
    cached = cache_dir / content_cache_name(path, _detector_params(model_frames), ".json")
    if cached.is_file():
        try:
            return FaceCrop.from_dict(json.loads(cached.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("ignoring unreadable face cache file %s: %s", cached, exc)
    crop = _detect_file(path, model_frames)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(cached) as fh:
        json.dump(crop.to_dict(), fh)
    return crop


def frame_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(width, height)`` of a video or image file without decoding it; None for audio."""
    path = Path(path)
    kind = stimulus_kind(path)
    if kind == "audio":
        return None
    if kind == "image":
        img = _read_image(path)
        return int(img.shape[1]), int(img.shape[0])
    with _open(path) as container:
        if not container.streams.video:
            return None
        ctx = container.streams.video[0].codec_context
        return int(ctx.width), int(ctx.height)


def crop_preview(path: str | os.PathLike, box, n_frames: int = 1, image_size: int = 64):
    """What the network sees of one stimulus: a frame and the model's visual input.

    Returns
    -------
    frame : ndarray of shape (height, width, 3), uint8, or None
        The middle frame (None without frames).
    visual : ndarray of shape (image_size, image_size), float32, or None
        The model's input for the crop ``box`` (gray level / 255 - 0.5).
    """
    for name, value in (("image_size", image_size), ("n_frames", n_frames)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    path = Path(path)
    kind = stimulus_kind(path)
    if kind == "audio":
        return None, None
    if kind == "image":
        frames = _read_image(path)[None]
        return frames[0], _face_image(frames, image_size, box)[0]
    state: dict = {}

    def select(timeline):
        state["model"] = _frame_indices(timeline, n_frames).tolist()
        state["middle"] = int(_frame_indices(timeline, 1)[0])
        state["picked"] = sorted({state["middle"], *state["model"]})
        return state["picked"]

    with _open(path) as container:
        frames, *_ = _decode_streams(container, path, audio=False, select=select)
    if frames is None:
        return None, None
    picked = state["picked"]
    model = frames[[picked.index(i) for i in state["model"]]]
    return frames[picked.index(state["middle"])], _face_image(model, image_size, box)[0]


# --------------------------------------------------------------------------- resolving
def crop_mode(face_crop) -> str:
    """``"auto"``, ``"centre"``, ``"table"`` (a TSV) or ``"boxes"`` (boxes given in Python)."""
    if face_crop is None or (isinstance(face_crop, str) and face_crop in ("centre", "center")):
        return "centre"
    if isinstance(face_crop, str) and face_crop == "auto":
        return "auto"
    if isinstance(face_crop, str | os.PathLike):
        return "table"
    return "boxes"


def resolve_crops(
    paths: Sequence[str | os.PathLike],
    face_crop="auto",
    *,
    names: Sequence[str] | None = None,
    column: str | None = None,
    model_frames: Sequence[int] = (1,),
    cache_dir: str | os.PathLike | None = None,
    n_jobs: int = 1,
) -> list[FaceCrop]:
    """The crop of every stimulus for a crop choice.

    Parameters
    ----------
    paths : sequence of path-like
        Stimulus files.
    face_crop : {"auto", "centre"}, path-like, mapping or sequence
        ``"auto"`` (detect), ``"centre"`` (or None: the centred square), a crop
        table (TSV), a mapping from stimulus name to box, or one box (or None) per
        stimulus.
    names : sequence of str, optional
        The names rows of a table (or keys of a mapping) refer to, one per stimulus
        (default: the paths); a row matches a name equal to it or ending with its
        path parts.
    column : str, optional
        Stimulus column of the table (default ``stim_file`` or ``file``).
    model_frames : sequence of int
        The ``n_frames`` of the recipes that will read the frames (their frames are
        searched too).
    cache_dir : path-like, optional
        Folder of cached detections (one JSON per file content and detector setting).
    n_jobs : int
        Threads for detection (-1 or None: every CPU this process may use); the boxes
        do not depend on it.

    Returns
    -------
    list of FaceCrop

    Raises
    ------
    CropTableError
        A table row naming no stimulus, or a box not inside its frame.
    """
    paths = [Path(p) for p in paths]
    names = [str(p) for p in paths] if names is None else [str(n) for n in names]
    if len(names) != len(paths):
        raise ValueError(f"names must have one entry per stimulus ({len(paths)}); got {len(names)}")
    mode = crop_mode(face_crop)
    out: list = [None] * len(paths)
    for i, (box, row, source) in _given_boxes(face_crop, mode, names, column).items():
        out[i] = _given_crop(paths[i], box, row, source)
    todo = [i for i, crop in enumerate(out) if crop is None]
    if mode == "centre":
        for i in todo:
            out[i] = _given_crop(paths[i], None, i + 1, "centre")
        return out
    cache = Path(cache_dir) if cache_dir is not None else None
    if todo:
        _cv2()  # imported here, before the threads
    work = [lambda i=i: _detect_cached(paths[i], model_frames, cache) for i in todo]
    n_jobs = resolve_n_jobs(n_jobs)
    if n_jobs == 1 or len(work) < 2:
        results = [w() for w in work]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=n_jobs) as pool:
            results = list(pool.map(lambda w: w(), work))
    for i, crop in zip(todo, results, strict=True):
        out[i] = crop
    _warn_fallbacks([(names[i], out[i]) for i in todo if out[i].source == "fallback"], len(paths))
    return out


def _warn_fallbacks(missed: list, n_clips: int, shown: int = 3) -> None:
    """One warning for the clips in which no face was found (``(name, crop)`` pairs):
    each named when there are few, else a count and the first ``shown``."""
    if not missed:
        return
    searched = sorted({len(crop.frames) for _, crop in missed})
    frames = "/".join(str(n) for n in searched)
    if len(missed) <= shown:
        for name, crop in missed:
            logger.warning(
                "no face found in %s (%d frames searched): using the centred square",
                name,
                len(crop.frames),
            )
        return
    names = ", ".join(name for name, _ in missed[:shown])
    logger.warning(
        "no face found in %d of %d clips (%s and %d more; %s frames searched in each): "
        "using the centred square",
        len(missed),
        n_clips,
        names,
        len(missed) - shown,
        frames,
    )


def _given_boxes(face_crop, mode: str, names: Sequence[str], column) -> dict[int, tuple]:
    """Stimulus index -> (box, row, mode) for the boxes given by a table, mapping or list."""
    if mode == "table":
        return _table_boxes(face_crop, names, column)
    if mode != "boxes":
        return {}
    if isinstance(face_crop, Mapping):
        given = {}
        for key, box in face_crop.items():
            hits = _match(str(key), names)
            if len(hits) != 1:
                raise CropTableError(f"crop box for {key!r}: it names {len(hits)} stimuli, not one")
            given[hits[0]] = (box, key, "table")
        return given
    boxes = list(face_crop)
    if len(boxes) != len(names):
        raise ValueError(
            f"crop boxes must have one entry per stimulus ({len(names)}); got {len(boxes)}"
        )
    return {i: (b, i + 1, "table") for i, b in enumerate(boxes)}


def _given_crop(path: Path, box, row, source: str) -> FaceCrop:
    size = frame_size(path)
    if box is None:
        return (
            FaceCrop(None, "none") if size is None else FaceCrop(centre_box(*size), "centre", *size)
        )
    box = tuple(int(v) for v in box)
    where = f"row {row} ({path.name})"
    if size is None:
        raise CropTableError(f"crop {where}: the stimulus has no frames to crop")
    width, height = size
    if len(box) != 4 or not (0 <= box[0] < box[2] <= width and 0 <= box[1] < box[3] <= height):
        raise CropTableError(
            f"crop {where}: the box {box} does not lie inside the {width}x{height} frame "
            f"(0 <= x0 < x1 <= {width}, 0 <= y0 < y1 <= {height})"
        )
    src = {"auto": "detected", "centre": "centre"}.get(source, "table")
    return FaceCrop(box, src, width, height)


def table_mode(crops: Sequence[FaceCrop]) -> str:
    """The crop mode a list of crops amounts to (``table`` if any box was given by hand)."""
    sources = {c.source for c in crops}
    if "table" in sources:
        return "table"
    if sources & {"detected", "fallback"}:
        return "auto"
    return "centre"


def warn_if_mode_differs(trained: str | None, used: str, what: str) -> bool:
    """Warn when a network sees crops of another kind than it was trained with.

    ``trained`` is the checkpoint's recorded mode (None for a checkpoint from before
    modes were recorded: such networks were trained on centred squares).
    """
    trained = trained or "centre"
    if trained == used:
        return False
    logger.warning(
        "%s was trained with face crop %r but its features are extracted with %r: the "
        "network sees faces framed differently than in training",
        what,
        trained,
        used,
    )
    return True
