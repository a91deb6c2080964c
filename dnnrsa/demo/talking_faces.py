"""Procedural talking faces for the demo data set, and an mp4 clip writer.

Faces are drawn with numpy on a pixel grid, all frames of a clip at once. An
actor's identity is a set of :class:`FaceParams` (face shape, jaw width, skin,
hair colour and length, brow thickness, eye spacing); an emotion is a set of
facial actions (:data:`EXPRESSIONS`: brow raise and tilt, eye opening, mouth
curvature, opening and width, teeth, nose wrinkle) that builds up over the first
half second and then varies a little over time. Nothing here depends on the
sentence, so the sentence cannot be read from the face.

Clips are encoded with :func:`dnnrsa.stimuli.write_clip` (see :mod:`dnnrsa.demo.clips`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

#: Facial actions of each emotion at full intensity. ``brow_tilt`` > 0 raises the
#: inner ends of the brows; ``mouth_curve`` > 0 lifts the mouth corners.
EXPRESSIONS: dict[str, dict[str, float]] = {
    "angry": dict(
        brow_raise=-0.7, brow_tilt=-1.0, eye_open=1.05, mouth_curve=-0.35,
        mouth_open=0.15, mouth_width=0.8, teeth=0.4, wrinkle=0.3,
    ),
    "disgusted": dict(
        brow_raise=-0.35, brow_tilt=-0.3, eye_open=0.55, mouth_curve=-0.6,
        mouth_open=0.25, mouth_width=0.95, teeth=0.6, wrinkle=1.0,
    ),
    "fearful": dict(
        brow_raise=0.75, brow_tilt=0.9, eye_open=1.5, mouth_curve=-0.25,
        mouth_open=0.5, mouth_width=1.15, teeth=0.5, wrinkle=0.0,
    ),
    "happy": dict(
        brow_raise=0.15, brow_tilt=0.0, eye_open=0.7, mouth_curve=1.0,
        mouth_open=0.35, mouth_width=1.25, teeth=1.0, wrinkle=0.0,
    ),
    "sad": dict(
        brow_raise=0.0, brow_tilt=1.0, eye_open=0.65, mouth_curve=-1.0,
        mouth_open=0.05, mouth_width=0.9, teeth=0.0, wrinkle=0.0,
    ),
    "surprised": dict(
        brow_raise=1.0, brow_tilt=0.2, eye_open=1.65, mouth_curve=0.0,
        mouth_open=1.0, mouth_width=0.7, teeth=0.2, wrinkle=0.0,
    ),
}  # fmt: skip

#: How far every rendition's facial actions (expression, drifts, speech, blinks) move
#: from the relaxed face, relative to :data:`EXPRESSIONS`: the face is the stronger
#: emotion cue of the demo (the voice's emotional intensity is lower, see
#: ``dnnrsa.demo.voices.VOCAL_INTENSITY``).
EXPRESSION_GAIN = 1.5

#: Range of a rendition's expression intensity (uniform), the share of its emotion's
#: facial actions it reaches at its apex: every face shows its emotion clearly.
FACE_INTENSITY = (0.75, 1.1)

#: Facial actions of a relaxed face (the start of every clip).
_RELAXED = dict(
    brow_raise=0.0, brow_tilt=0.0, eye_open=1.0, mouth_curve=0.0,
    mouth_open=0.0, mouth_width=1.0, teeth=0.0, wrinkle=0.0,
)  # fmt: skip

_SKIN_TONES = np.array(
    [
        [0.96, 0.80, 0.69],
        [0.87, 0.67, 0.53],
        [0.76, 0.57, 0.42],
        [0.62, 0.44, 0.31],
        [0.47, 0.32, 0.22],
        [0.92, 0.74, 0.62],
    ]
)
_HAIR_COLOURS = np.array(
    [
        [0.10, 0.07, 0.05],
        [0.35, 0.22, 0.12],
        [0.70, 0.55, 0.30],
        [0.55, 0.25, 0.10],
        [0.22, 0.16, 0.12],
        [0.45, 0.42, 0.40],
    ]
)


@dataclass(frozen=True)
class FaceParams:
    """Identity of a drawn face (all lengths as fractions of the image size).

    Attributes
    ----------
    face_half_width, face_half_height : float
        Semi-axes of the face ellipse.
    jaw : float
        Width of the jaw relative to the cheeks (narrow ~0.65, wide ~0.95).
    skin, hair, iris : tuple of float
        RGB colours in [0, 1].
    hair_length : float
        How far long hair falls below the face centre, in face half-heights
        (0 = short hair).
    hairline : float
        Height of the hairline above the face centre, in face half-heights.
    brow_thickness : float
        Half-thickness of the brows.
    eye_spacing : float
        Horizontal offset of each eye from the midline, in face half-widths.
    lip_colour : tuple of float
    stubble : float
        Darkening of the lower face (0 = none).
    """

    face_half_width: float
    face_half_height: float
    jaw: float
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    iris: tuple[float, float, float]
    hair_length: float
    hairline: float
    brow_thickness: float
    eye_spacing: float
    lip_colour: tuple[float, float, float]
    stubble: float


def make_face_params(gender: str, rng: np.random.Generator, *, skin_index: int, hair_index: int):
    """Draw the facial identity of one actor with gender-typical cues.

    Parameters
    ----------
    gender : {"female", "male"}
    rng : numpy.random.Generator
    skin_index, hair_index : int
        Indices into the skin-tone and hair-colour palettes (so that actors differ).

    Returns
    -------
    FaceParams
    """
    if gender not in ("female", "male"):
        raise ValueError(f"gender must be 'female' or 'male'; got {gender!r}")
    female = gender == "female"
    skin = _SKIN_TONES[skin_index % len(_SKIN_TONES)] * rng.uniform(0.97, 1.03)
    hair = _HAIR_COLOURS[hair_index % len(_HAIR_COLOURS)] * rng.uniform(0.9, 1.1)
    iris = rng.choice([[0.25, 0.15, 0.08], [0.20, 0.35, 0.55], [0.25, 0.35, 0.20]])
    lip = skin * np.array([0.85, 0.55, 0.55]) if female else skin * np.array([0.8, 0.62, 0.6])
    return FaceParams(
        face_half_width=rng.uniform(0.235, 0.26) if female else rng.uniform(0.265, 0.295),
        face_half_height=rng.uniform(0.32, 0.35) if female else rng.uniform(0.335, 0.37),
        jaw=rng.uniform(0.55, 0.68) if female else rng.uniform(0.82, 0.95),
        skin=tuple(np.clip(skin, 0, 1)),
        hair=tuple(np.clip(hair, 0, 1)),
        iris=tuple(float(v) for v in iris),
        hair_length=rng.uniform(0.9, 1.5) if female else 0.0,
        hairline=rng.uniform(0.5, 0.62) if female else rng.uniform(0.55, 0.72),
        brow_thickness=rng.uniform(0.011, 0.015) if female else rng.uniform(0.019, 0.025),
        eye_spacing=rng.uniform(0.36, 0.44),
        lip_colour=tuple(np.clip(lip, 0, 1)),
        stubble=0.0 if female else rng.uniform(0.05, 0.2),
    )


def expression_tracks(
    emotion: str, n_frames: int, fps: float, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Time courses of the facial actions for one rendition of an emotion.

    The expression rises from a relaxed face to its apex (onset 0.2-0.7 s), with a
    rendition-specific intensity (:data:`FACE_INTENSITY`), slow drifts, a speech-like jaw flutter that is
    unrelated to the sentence, and blinks; every action's distance from the relaxed
    face is then scaled by :data:`EXPRESSION_GAIN`.

    Returns
    -------
    tracks : dict of str to ndarray of shape (n_frames,)
    """
    if emotion not in EXPRESSIONS:
        raise ValueError(f"emotion must be one of {sorted(EXPRESSIONS)}; got {emotion!r}")
    t = np.arange(n_frames) / fps
    onset = rng.uniform(0.05, 0.35)
    rise = rng.uniform(0.25, 0.5)
    intensity = rng.uniform(*FACE_INTENSITY)
    ramp = np.clip((t - onset) / rise, 0.0, 1.0)
    ramp = ramp * ramp * (3 - 2 * ramp)  # smoothstep
    tracks = {}
    for name, apex in EXPRESSIONS[emotion].items():
        relaxed = _RELAXED[name]
        value = relaxed + (apex - relaxed) * intensity * ramp
        drift = 0.06 * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t + rng.uniform(0, 2 * np.pi))
        tracks[name] = value + drift * (1 + abs(apex - relaxed))
    speaking = (t > onset + 0.1) & (t < rng.uniform(2.3, 2.9))
    flutter = np.abs(np.sin(2 * np.pi * rng.uniform(2.5, 4.5) * t + rng.uniform(0, np.pi)))
    tracks["mouth_open"] = np.clip(tracks["mouth_open"] + 0.25 * flutter * speaking, 0.0, None)
    blink = np.ones(n_frames)
    for when in rng.uniform(0.2, 2.8, size=rng.integers(0, 3)):
        blink *= 1 - 0.95 * np.exp(-0.5 * ((t - when) / 0.05) ** 2)
    tracks["eye_open"] = np.clip(tracks["eye_open"], 0.05, None) * blink
    for name, value in tracks.items():
        relaxed = _RELAXED[name]
        tracks[name] = relaxed + EXPRESSION_GAIN * (value - relaxed)
    return tracks


def _soft(inside: np.ndarray, px: float) -> np.ndarray:
    """Anti-aliased coverage from a signed distance (positive inside, in image units)."""
    return np.clip(inside / px + 0.5, 0.0, 1.0)


def _ellipse(x, y, cx, cy, ax, ay):
    """Approximate signed distance to an ellipse (positive inside)."""
    r = np.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2)
    return (1 - r) * np.minimum(ax, ay)


def _capsule(x, y, x0, y0, x1, y1, half_thickness):
    """Signed distance to a thick line segment (positive inside)."""
    dx, dy = x1 - x0, y1 - y0
    h = np.clip(((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy + 1e-12), 0.0, 1.0)
    return half_thickness - np.hypot(x - x0 - h * dx, y - y0 - h * dy)


class _Canvas:
    """RGB frames (T, H, W, 3) in [0, 1] with painting restricted to a bounding box.

    Coordinates run from -0.5 to 0.5 across the image (x to the right, y down).
    """

    def __init__(self, n_frames: int, size: int):
        self.size = size
        self.px = 1.0 / size
        self.coords = ((np.arange(size) + 0.5) / size - 0.5).astype(np.float32)
        # channels first: every blend works on contiguous (T, h, w) rows
        self.rgb = np.zeros((3, n_frames, size, size), dtype=np.float32)

    def _index(self, lo, hi) -> slice:
        lo = int(np.floor((float(np.min(lo)) + 0.5) * self.size)) - 2
        hi = int(np.ceil((float(np.max(hi)) + 0.5) * self.size)) + 2
        return slice(max(lo, 0), max(min(hi, self.size), 0))

    def paint(self, signed_distance, colour, box, opacity=1.0) -> np.ndarray | None:
        """Blend ``colour`` where ``signed_distance(x, y)`` > 0 inside ``box``.

        ``box`` is (x_min, x_max, y_min, y_max) in image units (arrays allowed:
        their extremes are used); ``opacity`` is a scalar or an array that
        broadcasts to (T, 1, 1). Returns the coverage array (T, h, w) or None
        when the box is empty.
        """
        sx, sy = self._index(box[0], box[1]), self._index(box[2], box[3])
        if sx.stop <= sx.start or sy.stop <= sy.start:
            return None
        x = self.coords[None, None, sx]
        y = self.coords[None, sy, None]
        alpha = _soft(signed_distance(x, y), self.px)
        if not np.isscalar(opacity) or opacity != 1.0:
            alpha = alpha * opacity
        alpha = np.broadcast_to(alpha, (self.rgb.shape[1], *alpha.shape[1:]))
        colour = np.asarray(colour, dtype=np.float32).reshape(-1, 3)
        for c in range(3):
            target = self.rgb[c, :, sy, sx]  # a view: blended in place
            value = colour[:, c].reshape(-1, 1, 1)
            target += alpha * (value - target)
        return alpha


@dataclass(frozen=True)
class _Head:
    """Where and how one rendition of a face is drawn (per-frame values are (T, 1, 1))."""

    face: FaceParams
    tracks: dict
    scale: float
    cx: np.ndarray
    cy: np.ndarray
    fw: float
    fh: float
    light: float
    skin: np.ndarray
    hair: np.ndarray

    def track(self, name: str) -> np.ndarray:
        return _col(self.tracks[name])


def _col(v) -> np.ndarray:
    return np.asarray(v, dtype=np.float32).reshape(-1, 1, 1)


def _place_head(cv: _Canvas, face: FaceParams, tracks: dict, rng: np.random.Generator) -> _Head:
    """Draw the rendition's head position, size, motion, lighting and background."""
    n = cv.rgb.shape[1]
    t = np.arange(n) / n
    scale = rng.uniform(0.92, 1.06)
    cx = _col(rng.uniform(-0.03, 0.03) + 0.012 * np.sin(2 * np.pi * (t * rng.uniform(0.5, 1.5))))
    cy = _col(
        rng.uniform(-0.01, 0.04) + 0.008 * np.sin(2 * np.pi * (t * rng.uniform(0.5, 1.5) + 0.3))
    )
    light = rng.uniform(0.88, 1.08)
    bg = rng.uniform(0.3, 0.65) * np.array([1.0, rng.uniform(0.95, 1.05), rng.uniform(0.9, 1.1)])
    gradient = 1.0 - 0.25 * (cv.coords + 0.5)
    cv.rgb[:] = (bg[:, None, None, None] * gradient[None, None, :, None]).astype(np.float32)
    return _Head(
        face=face,
        tracks=tracks,
        scale=scale,
        cx=cx,
        cy=cy,
        fw=face.face_half_width * scale,
        fh=face.face_half_height * scale,
        light=light,
        skin=np.asarray(face.skin, dtype=np.float32),
        hair=np.asarray(face.hair, dtype=np.float32),
    )


def _paint_body(cv: _Canvas, h: _Head) -> None:
    """Long hair behind the head, neck, shoulders and (short hair only) ears."""
    face, cx, cy, fw, fh = h.face, h.cx, h.cy, h.fw, h.fh
    if face.hair_length > 0:
        top = cy - fh * 1.08
        bottom = cy + fh * face.hair_length
        cv.paint(
            lambda x, y: np.minimum(
                _ellipse(x, y, cx, (top + bottom) / 2, fw * 1.28, (bottom - top) / 2),
                _ellipse(x, y, cx, cy, fw * 1.3, fh * 2.0),
            ),
            h.hair,
            (cx - fw * 1.3, cx + fw * 1.3, top, bottom),
        )
    cv.paint(
        lambda x, y: _capsule(x, y, cx, cy + fh * 0.6, cx, cy + fh * 1.6, fw * 0.42),
        h.skin * 0.85,
        (cx - fw * 0.45, cx + fw * 0.45, cy + fh * 0.1, 0.5),
    )
    cv.paint(
        lambda x, y: _ellipse(x, y, cx, cy + fh * 2.05, fw * 2.4, fh * 0.7),
        np.array([0.2, 0.25, 0.35]) * h.light,
        (-0.5, 0.5, cy + fh * 1.3, 0.5),
    )
    if face.hair_length == 0:
        for side in (-1, 1):
            ex = cx + side * fw * 0.98
            cv.paint(
                lambda x, y, ex=ex: _ellipse(x, y, ex, cy - fh * 0.05, fw * 0.13, fh * 0.2),
                h.skin * 0.92,
                (ex - fw * 0.14, ex + fw * 0.14, cy - fh * 0.3, cy + fh * 0.2),
            )


def _paint_face(cv: _Canvas, h: _Head) -> None:
    """The face (an ellipse narrowing towards the jaw, shaded sides), stubble, hair on top."""
    face, cx, cy, fw, fh = h.face, h.cx, h.cy, h.fw, h.fh

    def face_sd(x, y):
        below = np.clip((y - cy) / fh, 0.0, 1.0)
        half_w = fw * (1 - (1 - face.jaw) * below**1.6)
        return (1 - np.sqrt(((x - cx) / half_w) ** 2 + ((y - cy) / fh) ** 2)) * fw

    face_box = (cx - fw, cx + fw, cy - fh, cy + fh)
    cv.paint(face_sd, h.skin * h.light, face_box)
    cv.paint(
        lambda x, y: face_sd(x, y) - 0.55 * fw * (1 - np.abs(x - cx) / fw),
        h.skin * h.light * 0.82,
        face_box,
        opacity=0.4,
    )
    if face.stubble > 0:
        cv.paint(
            lambda x, y: np.minimum(face_sd(x, y), y - cy - fh * 0.3),
            h.skin * 0.45,
            (cx - fw, cx + fw, cy + fh * 0.2, cy + fh),
            opacity=face.stubble,
        )
    cv.paint(
        lambda x, y: np.minimum(
            _ellipse(x, y, cx, cy - fh * 0.08, fw * 1.07, fh * 1.02),
            (cy - fh * face.hairline) - y + 0.04 * np.abs(x - cx) / fw * fh,
        ),
        h.hair * h.light,
        (cx - fw * 1.1, cx + fw * 1.1, cy - fh * 1.12, cy),
    )


def _eye_y(h: _Head) -> np.ndarray:
    return h.cy - h.fh * 0.12


def _paint_eyes(cv: _Canvas, h: _Head) -> None:
    """Eyes (white, iris, pupil; a lid line when closed) and brows."""
    cx, fw, fh, px = h.cx, h.fw, h.fh, cv.px
    eye_y = _eye_y(h)
    eye_w = fw * 0.2
    eye_h = fh * 0.075 * h.track("eye_open")
    open_eye = (eye_h > fh * 0.012).astype(np.float32)
    brow_gap = fh * (0.13 + 0.07 * h.track("brow_raise"))
    for side in (-1, 1):
        ex = cx + side * fw * h.face.eye_spacing
        box = (ex - eye_w, ex + eye_w, eye_y - fh * 0.2, eye_y + fh * 0.2)
        cv.paint(
            lambda x, y, ex=ex: _ellipse(x, y, ex, eye_y, eye_w, np.maximum(eye_h, 1e-3)),
            [0.95, 0.95, 0.93],
            box,
            opacity=open_eye,
        )

        def in_eye(sd, ex=ex):
            return lambda x, y: np.minimum(
                sd(x, y), _ellipse(x, y, ex, eye_y, eye_w, np.maximum(eye_h, 1e-3))
            )

        iris = in_eye(lambda x, y, ex=ex: _ellipse(x, y, ex, eye_y, fw * 0.085, fw * 0.085))
        cv.paint(iris, h.face.iris, box, opacity=open_eye)
        pupil = in_eye(lambda x, y, ex=ex: _ellipse(x, y, ex, eye_y, fw * 0.035, fw * 0.035))
        cv.paint(pupil, [0.03, 0.03, 0.03], box, opacity=open_eye)
        cv.paint(
            lambda x, y, ex=ex: _capsule(x, y, ex - eye_w, eye_y, ex + eye_w, eye_y, px * 0.6),
            h.skin * 0.5,
            box,
            opacity=1.0 - open_eye,
        )
        _paint_brow(cv, h, ex, side, eye_w, brow_gap)


def _paint_brow(cv: _Canvas, h: _Head, ex, side: int, eye_w, brow_gap) -> None:
    """One brow: the inner end moves with the tilt, the whole brow with the raise."""
    fh, eye_y = h.fh, _eye_y(h)
    inner_x, outer_x = ex - side * eye_w * 1.05, ex + side * eye_w * 1.25
    inner_y = eye_y - brow_gap - fh * 0.06 * h.track("brow_tilt")
    outer_y = eye_y - brow_gap + fh * 0.01
    thick = h.face.brow_thickness * h.scale
    cv.paint(
        lambda x, y, a=inner_x, b=inner_y, c=outer_x, d=outer_y, w=thick: _capsule(
            x, y, a, b, c, d, w
        ),
        h.hair * 0.7,
        (
            np.minimum(inner_x, outer_x) - thick,
            np.maximum(inner_x, outer_x) + thick,
            np.minimum(inner_y, outer_y) - thick,
            np.maximum(inner_y, outer_y) + thick,
        ),
    )


def _paint_nose(cv: _Canvas, h: _Head) -> np.ndarray:
    """Nose, nostrils and wrinkles at its root; returns the wrinkle track (T, 1, 1)."""
    cx, cy, fw, fh, px = h.cx, h.cy, h.fw, h.fh, cv.px
    eye_y = _eye_y(h)
    nose_box = (cx - fw * 0.15, cx + fw * 0.15, eye_y, cy + fh * 0.3)
    cv.paint(
        lambda x, y: _capsule(
            x, y, cx, eye_y + fh * 0.05, cx + fw * 0.03, cy + fh * 0.25, px * 0.7
        ),
        h.skin * 0.6,
        nose_box,
        opacity=0.6,
    )
    cv.paint(
        lambda x, y: np.maximum(
            _ellipse(x, y, cx - fw * 0.08, cy + fh * 0.27, fw * 0.05, fh * 0.02),
            _ellipse(x, y, cx + fw * 0.08, cy + fh * 0.27, fw * 0.05, fh * 0.02),
        ),
        h.skin * 0.45,
        nose_box,
        opacity=0.7,
    )
    wrinkle = np.clip(h.track("wrinkle"), 0, 1)
    if float(wrinkle.max()) > 0.01:
        for k in (-1, 1):
            wy = eye_y + k * fh * 0.03
            cv.paint(
                lambda x, y, wy=wy: _capsule(
                    x, y, cx - fw * 0.12, wy, cx + fw * 0.12, wy, px * 0.6
                ),
                h.skin * 0.55,
                (cx - fw * 0.15, cx + fw * 0.15, wy - fh * 0.03, wy + fh * 0.03),
                opacity=wrinkle,
            )
    return wrinkle


def _paint_mouth(cv: _Canvas, h: _Head, wrinkle: np.ndarray) -> None:
    """Lips around an opening whose centre line bends with the curvature, and teeth."""
    cx, cy, fw, fh, px = h.cx, h.cy, h.fw, h.fh, cv.px
    mouth_y = cy + fh * 0.5 - fh * 0.05 * wrinkle
    mw = fw * 0.36 * h.track("mouth_width")
    curve = h.track("mouth_curve")
    half_open_max = fh * 0.11 * h.track("mouth_open")

    def centre_and_open(x):
        u = np.clip((x - cx) / mw, -1.5, 1.5)
        lens = np.clip(1 - u**2, 0, 1)
        return mouth_y - curve * fh * 0.09 * u**2, half_open_max * lens + px * 0.4, lens

    def lips(x, y):
        centre, half_open, lens = centre_and_open(x)
        lip = half_open + fh * 0.035 * lens + px * 0.5 - np.abs(y - centre)
        return np.minimum(lip, mw - np.abs(x - cx))

    def opening(x, y):
        centre, half_open, _ = centre_and_open(x)
        return np.minimum(half_open - np.abs(y - centre), mw - np.abs(x - cx))

    def teeth(x, y):
        centre, half_open, _ = centre_and_open(x)
        return np.minimum(opening(x, y), (centre - half_open * 0.2) - y)

    reach = fh * 0.09 * np.abs(curve) + half_open_max + fh * 0.05
    mouth_box = (cx - mw, cx + mw, mouth_y - reach, mouth_y + reach)
    cv.paint(lips, h.face.lip_colour, mouth_box)
    cv.paint(opening, [0.25, 0.05, 0.06], mouth_box)
    cv.paint(teeth, [0.93, 0.92, 0.88], mouth_box, opacity=np.clip(h.track("teeth"), 0, 1))


def render_face_clip(
    face: FaceParams,
    tracks: dict[str, np.ndarray],
    *,
    size: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draw every frame of one clip.

    Parameters
    ----------
    face : FaceParams
    tracks : dict of str to ndarray of shape (n_frames,)
        Facial actions over time (see :func:`expression_tracks`).
    size : int
        Width and height in pixels (even).
    rng : numpy.random.Generator
        Rendition-specific variation: head position and size, slow head motion,
        lighting, background, sensor noise.

    Returns
    -------
    frames : ndarray of shape (n_frames, size, size, 3), dtype uint8
    """
    cv = _Canvas(len(tracks["eye_open"]), size)
    head = _place_head(cv, face, tracks, rng)
    _paint_body(cv, head)
    _paint_face(cv, head)
    _paint_eyes(cv, head)
    wrinkle = _paint_nose(cv, head)
    _paint_mouth(cv, head, wrinkle)
    frames = cv.rgb
    frames += rng.standard_normal(size=frames.shape, dtype=np.float32) * np.float32(0.008)
    np.clip(frames, 0.0, 1.0, out=frames)
    frames *= 255.0
    frames += 0.5
    return np.ascontiguousarray(np.moveaxis(frames.astype(np.uint8), 0, -1))
