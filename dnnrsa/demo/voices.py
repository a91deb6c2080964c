"""Source-filter voice synthesis for the demo data set.

A glottal pulse train (Rosenberg pulses at the speaker's pitch, with jitter,
shimmer and aspiration noise) is filtered by a cascade of formant resonators
per vowel; consonants are stop closures, bursts and fricative noise. A voice is
a :class:`VoiceParams` (pitch, vocal-tract length as a formant scale,
breathiness, open quotient); an emotion is a set of prosodic settings
(:data:`PROSODY`: pitch level, range and contour, speaking rate, loudness,
breathiness, jitter, spectral tilt, tremor); a sentence is a sequence of
syllables (:data:`SENTENCES`) with its own rhythm and vowels.

Every actor of the demo speaks with one shared voice (:data:`SHARED_VOICE`),
varied a little per rendition by :func:`rendition_voice` independently of the
actor, so that the voice carries emotion and sentence but neither identity nor
gender (the face carries those).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

#: First three formants (Hz) of the vowels for an adult male vocal tract.
VOWELS: dict[str, tuple[float, float, float]] = {
    "i": (270.0, 2290.0, 3010.0),
    "e": (530.0, 1840.0, 2480.0),
    "ae": (660.0, 1720.0, 2410.0),
    "a": (730.0, 1090.0, 2440.0),
    "o": (570.0, 840.0, 2410.0),
    "u": (300.0, 870.0, 2240.0),
    "er": (490.0, 1350.0, 1690.0),
}
_BANDWIDTHS = (80.0, 100.0, 140.0)

#: Syllables of each sentence: (onset consonant, vowel, relative duration, stressed).
SENTENCES: dict[str, tuple[tuple[str, str, float, bool], ...]] = {
    "sentence1": (
        ("stop", "i", 1.0, True),
        ("none", "a", 0.6, False),
        ("stop", "o", 1.2, True),
        ("stop", "i", 0.6, False),
        ("stop", "a", 1.0, True),
        ("none", "e", 0.5, False),
        ("stop", "o", 1.5, True),
    ),
    "sentence2": (
        ("s", "u", 0.8, False),
        ("nasal", "ae", 1.4, True),
        ("sh", "er", 0.7, False),
        ("nasal", "u", 0.7, False),
        ("s", "i", 1.3, True),
        ("none", "er", 1.2, True),
    ),
}

#: Prosody of each emotion. ``f0_st``: pitch level (semitones re the voice's);
#: ``range_st``: height of accents; ``contour``: "fall", "rise", "risefall" or
#: "flat" over the utterance; ``rate``: syllables relative to neutral; ``gain_db``:
#: loudness; ``breath``: aspiration; ``jitter``: cycle-to-cycle pitch perturbation;
#: ``tilt``: low-pass smoothing of the source (0 bright .. 1 dull); ``tremor_st``:
#: 6-Hz pitch tremor depth.
PROSODY: dict[str, dict[str, float | str]] = {
    "angry": dict(
        f0_st=3.0, range_st=4.0, contour="fall", rate=1.15, gain_db=7.0, breath=0.02,
        jitter=0.012, tilt=0.1, tremor_st=0.0,
    ),
    "disgusted": dict(
        f0_st=-2.5, range_st=2.0, contour="fall", rate=0.8, gain_db=-1.0, breath=0.1,
        jitter=0.02, tilt=0.6, tremor_st=0.0,
    ),
    "fearful": dict(
        f0_st=5.0, range_st=2.5, contour="flat", rate=1.25, gain_db=0.0, breath=0.2,
        jitter=0.02, tilt=0.5, tremor_st=0.8,
    ),
    "happy": dict(
        f0_st=3.5, range_st=6.0, contour="risefall", rate=1.1, gain_db=3.0, breath=0.05,
        jitter=0.006, tilt=0.3, tremor_st=0.0,
    ),
    "sad": dict(
        f0_st=-2.0, range_st=0.8, contour="fall", rate=0.72, gain_db=-6.0, breath=0.3,
        jitter=0.01, tilt=0.85, tremor_st=0.0,
    ),
    "surprised": dict(
        f0_st=4.0, range_st=5.0, contour="rise", rate=1.0, gain_db=3.0, breath=0.08,
        jitter=0.006, tilt=0.3, tremor_st=0.0,
    ),
}  # fmt: skip

#: Prosody without emotion: what a rendition's prosody moves towards as its vocal
#: intensity falls (:func:`rendition_prosody`).
NEUTRAL_PROSODY: dict[str, float] = dict(
    f0_st=0.0, range_st=3.0, rate=1.0, gain_db=0.0, breath=0.08, jitter=0.01, tilt=0.4,
    tremor_st=0.0,
)  # fmt: skip
#: Range of the vocal intensity of a rendition: 1 is the full prosody of
#: :data:`PROSODY`, 0 neutral. Together with :data:`PROSODY_SPREAD` it makes the voice
#: a less reliable cue of emotion than the face, as in the study.
VOCAL_INTENSITY = (0.3, 0.75)
#: Rendition-to-rendition spread of prosody whatever the emotion: pitch level
#: (sd, semitones), accent range (relative, +-), speaking rate (relative, +-),
#: loudness (sd, dB).
PROSODY_SPREAD = dict(f0_sd_st=1.5, range_rel=0.4, rate_rel=0.12, gain_sd_db=2.5)


def rendition_prosody(emotion: str, intensity: float) -> dict[str, float | str]:
    """The prosody of one rendition: :data:`PROSODY` of ``emotion`` moved towards
    :data:`NEUTRAL_PROSODY` as ``intensity`` (0..1) falls; ``contour_scale`` scales
    the emotion's pitch contour."""
    pros = dict(PROSODY[emotion])
    for key, neutral in NEUTRAL_PROSODY.items():
        pros[key] = neutral + intensity * (float(pros[key]) - neutral)
    pros["contour_scale"] = float(intensity)
    return pros


@dataclass(frozen=True)
class VoiceParams:
    """A synthetic voice.

    Attributes
    ----------
    f0_hz : float
        Mean speaking pitch.
    formant_scale : float
        Multiplies all formant frequencies (shorter vocal tract -> larger).
    breathiness : float
        Actor-specific aspiration noise added to the emotion's.
    open_quotient : float
        Fraction of the glottal cycle during which the glottis is open.
    """

    f0_hz: float
    formant_scale: float
    breathiness: float
    open_quotient: float


#: The one voice every actor of the demo speaks with: a pitch between the typical
#: female and male ranges and a vocal-tract length between theirs, so that neither
#: identity nor gender can be heard.
SHARED_VOICE = VoiceParams(f0_hz=155.0, formant_scale=1.07, breathiness=0.06, open_quotient=0.57)


def rendition_voice(rng: np.random.Generator, base: VoiceParams = SHARED_VOICE) -> VoiceParams:
    """The voice of one rendition: ``base`` varied a little, whoever the actor is.

    The variation (pitch sd 0.5 semitone, formant scale +-1.5 %, breathiness and
    open quotient +-0.02) is drawn from ``rng`` alone, so its distribution is the
    same for every actor and gender.

    Parameters
    ----------
    rng : numpy.random.Generator
        The rendition's own stream.
    base : VoiceParams

    Returns
    -------
    VoiceParams
    """
    return VoiceParams(
        f0_hz=base.f0_hz * 2.0 ** (rng.normal(0.0, 0.5) / 12.0),
        formant_scale=base.formant_scale * rng.uniform(0.985, 1.015),
        breathiness=max(base.breathiness + rng.uniform(-0.02, 0.02), 0.0),
        open_quotient=base.open_quotient + rng.uniform(-0.02, 0.02),
    )


def _resonator(signal: np.ndarray, freq_hz: float, bandwidth_hz: float, sr: int) -> np.ndarray:
    """Second-order resonator with unit gain at 0 Hz."""
    from scipy.signal import lfilter

    r = np.exp(-np.pi * bandwidth_hz / sr)
    theta = 2 * np.pi * min(freq_hz, 0.45 * sr) / sr
    a = [1.0, -2 * r * np.cos(theta), r * r]
    return lfilter([sum(a)], a, signal)


@functools.lru_cache(maxsize=32)
def _bandpass(low_hz: float, high_hz: float, sr: int) -> np.ndarray:
    from scipy.signal import butter

    return butter(4, [low_hz, min(high_hz, 0.45 * sr)], btype="band", fs=sr, output="sos")


@functools.lru_cache(maxsize=4)
def _highpass(sr: int) -> np.ndarray:
    from scipy.signal import butter

    return butter(2, 60.0, btype="high", fs=sr, output="sos")


def _bandpass_noise(rng, n, low_hz, high_hz, sr):
    from scipy.signal import sosfilt

    return sosfilt(_bandpass(float(low_hz), float(high_hz), int(sr)), rng.standard_normal(n))


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Triangular moving average over about ``width`` samples (two box filters)."""
    from scipy.ndimage import uniform_filter1d

    half = max(int(width) // 2, 1)
    if width < 2:
        return x
    return uniform_filter1d(uniform_filter1d(x, half, mode="nearest"), half, mode="nearest")


def _syllable_bounds(syllables, pros, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """Start of every syllable and end of the last (s): rate, durations and start vary."""
    spread = PROSODY_SPREAD["rate_rel"]
    rate = float(pros["rate"]) * rng.uniform(1.0 - spread, 1.0 + spread)
    base = 0.26 / rate
    durations = np.array([s[2] for s in syllables]) * base * rng.uniform(0.9, 1.1, len(syllables))
    start = rng.uniform(0.15, 0.35)
    total = durations.sum()
    limit = duration_s - start - 0.15
    if total > limit:
        durations *= limit / total
    return start + np.concatenate([[0.0], np.cumsum(durations)])


def _pitch(voice: VoiceParams, syllables, pros, bounds, t, sr: int, rng) -> np.ndarray:
    """F0 (Hz) of every sample: level, contour, accents on stressed syllables, tremor, jitter."""
    n = len(t)
    f0_st = float(pros["f0_st"]) + rng.normal(0.0, PROSODY_SPREAD["f0_sd_st"])
    progress = np.clip((t - bounds[0]) / (bounds[-1] - bounds[0]), 0.0, 1.0)
    contour = {
        "fall": -3.0 * progress,
        "rise": -1.0 * progress + 7.0 * np.clip((progress - 0.7) / 0.3, 0, 1) ** 2,
        "risefall": 3.0 * np.sin(np.pi * progress) - 1.5 * progress,
        "flat": -0.5 * progress,
    }[str(pros["contour"])] * float(pros.get("contour_scale", 1.0))
    accents = np.zeros(n)
    spread = PROSODY_SPREAD["range_rel"]
    range_st = float(pros["range_st"]) * rng.uniform(1.0 - spread, 1.0 + spread)
    for (_, _, _, stressed), t0, t1 in zip(syllables, bounds[:-1], bounds[1:], strict=True):
        if stressed:
            centre = t0 + 0.6 * (t1 - t0)
            accents += range_st * np.exp(-0.5 * ((t - centre) / (0.35 * (t1 - t0))) ** 2)
    tremor = float(pros["tremor_st"]) * np.sin(2 * np.pi * rng.uniform(5.0, 7.0) * t)
    jitter = (
        _smooth(rng.standard_normal(n), max(int(sr / voice.f0_hz), 2)) * 12 * float(pros["jitter"])
    )
    semitones = f0_st + contour + accents + tremor + jitter
    return voice.f0_hz * 2.0 ** (semitones / 12.0)


def _glottal_source(voice: VoiceParams, pros, f0: np.ndarray, sr: int, rng) -> np.ndarray:
    """Rosenberg pulses, differentiated (lip radiation), with shimmer, aspiration and tilt."""
    from scipy.signal import lfilter

    n = len(f0)
    phase = np.cumsum(f0 / sr) + rng.uniform()
    frac = phase - np.floor(phase)
    oq = voice.open_quotient + 0.1 * float(pros["breath"])
    tp, tn = 0.65 * oq, 0.35 * oq
    pulse = np.where(
        frac < tp,
        0.5 * (1 - np.cos(np.pi * frac / tp)),
        np.where(frac < tp + tn, np.cos(0.5 * np.pi * (frac - tp) / tn), 0.0),
    )
    source = np.diff(pulse, prepend=0.0) * (f0 / 120.0) ** -0.5
    shimmer = 1 + 0.3 * float(pros["jitter"]) * 10 * _smooth(rng.standard_normal(n), 80)
    source *= shimmer
    breath = voice.breathiness + float(pros["breath"])
    aspiration = rng.standard_normal(n) * (0.3 + 0.7 * pulse) * breath * 0.04
    source = source + aspiration
    # spectral tilt: a one-pole low-pass mixed with the bright source
    tilt = float(pros["tilt"])
    return (1 - tilt) * source + tilt * lfilter([0.35], [1.0, -0.65], source)


def _envelopes(syllables, bounds, n: int, sr: int, rng):
    """Amplitude envelopes of voicing, consonant noise and nasal murmur, and vowel weights."""
    voicing = np.zeros(n)
    noise = np.zeros(n)
    vowel_weight = {v: np.zeros(n) for v in sorted({s[1] for s in syllables})}
    nasal = np.zeros(n)
    for (onset, vowel, _, stressed), t0, t1 in zip(syllables, bounds[:-1], bounds[1:], strict=True):
        dur = t1 - t0
        cons = {"stop": 0.25, "s": 0.3, "sh": 0.3, "nasal": 0.25, "none": 0.05}[onset] * dur
        i0, ic, i1 = (int(round(v * sr)) for v in (t0, t0 + cons, t1))
        seg = np.arange(i1 - ic)
        attack = np.clip(seg / (0.02 * sr), 0, 1)
        release = np.clip((i1 - ic - seg) / (0.03 * sr), 0, 1)
        voicing[ic:i1] = attack * release * (1.0 if stressed else 0.7)
        vowel_weight[vowel][i0:i1] = 1.0
        if onset == "stop":
            burst = int(0.015 * sr)
            noise[ic - burst : ic] += _bandpass_noise(rng, burst, 1500, 6000, sr) * 0.6
        elif onset in ("s", "sh"):
            low, high = (4000, 7500) if onset == "s" else (2000, 4000)
            m = ic - i0
            env = np.sin(np.pi * np.arange(m) / max(m, 1)) ** 0.5
            noise[i0:ic] += _bandpass_noise(rng, m, low, high, sr) * env * 0.35
        elif onset == "nasal":
            m = ic - i0
            nasal[i0:ic] = np.sin(np.pi * np.arange(m) / max(m, 1)) ** 0.5 * 0.6
    return voicing, noise, nasal, vowel_weight


def _vocal_tract(voice: VoiceParams, source, voicing, noise, nasal, vowel_weight, sr, rng):
    """A formant cascade per vowel, cross-faded over time (co-articulation), plus murmur."""
    smooth = int(0.03 * sr)
    weights = {v: _smooth(w, smooth) for v, w in vowel_weight.items()}
    norm = np.maximum(sum(weights.values()), 1e-6)
    voiced = source * _smooth(voicing, int(0.01 * sr))
    scale = voice.formant_scale * rng.uniform(0.985, 1.015)
    speech = np.zeros(len(source))
    for vowel, w in weights.items():
        y = voiced
        for f, b in zip(VOWELS[vowel], _BANDWIDTHS, strict=True):
            y = _resonator(y, f * scale, b, sr)
        speech += y * (w / norm)
    murmur = _resonator(_resonator(source * nasal, 250 * scale, 100, sr), 2200 * scale, 300, sr)
    speech += 0.5 * murmur + noise * 0.05
    return speech


def synthesize_voice(
    voice: VoiceParams,
    emotion: str,
    sentence: str,
    *,
    duration_s: float,
    sample_rate: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Synthesise one rendition of a sentence spoken with an emotion.

    Parameters
    ----------
    voice : VoiceParams
    emotion : str
        A key of :data:`PROSODY`.
    sentence : str
        A key of :data:`SENTENCES`.
    duration_s : float
        Length of the waveform; the utterance starts 0.15-0.35 s in.
    sample_rate : int
    rng : numpy.random.Generator
        Rendition-specific variation (timing, pitch, loudness, noise).

    Returns
    -------
    waveform : ndarray of shape (round(duration_s * sample_rate),), float32 in [-1, 1]
    """
    from scipy.signal import sosfilt

    if emotion not in PROSODY:
        raise ValueError(f"emotion must be one of {sorted(PROSODY)}; got {emotion!r}")
    if sentence not in SENTENCES:
        raise ValueError(f"sentence must be one of {sorted(SENTENCES)}; got {sentence!r}")
    sr = int(sample_rate)
    n = int(round(duration_s * sr))
    pros = rendition_prosody(emotion, rng.uniform(*VOCAL_INTENSITY))
    syllables = SENTENCES[sentence]
    bounds = _syllable_bounds(syllables, pros, duration_s, rng)
    f0 = _pitch(voice, syllables, pros, bounds, np.arange(n) / sr, sr, rng)
    source = _glottal_source(voice, pros, f0, sr, rng)
    voicing, noise, nasal, vowel_weight = _envelopes(syllables, bounds, n, sr, rng)
    speech = _vocal_tract(voice, source, voicing, noise, nasal, vowel_weight, sr, rng)
    # loudness, room noise, and a gentle high-pass against DC
    speech = sosfilt(_highpass(sr), speech)
    rms = np.sqrt(np.mean(speech[voicing > 0.5] ** 2)) if np.any(voicing > 0.5) else 1.0
    gain_db = float(pros["gain_db"]) + rng.normal(0.0, PROSODY_SPREAD["gain_sd_db"])
    speech *= 0.07 * 10 ** (gain_db / 20.0) / max(rms, 1e-9)
    speech += rng.standard_normal(n) * 3e-4
    return np.clip(speech, -0.99, 0.99).astype(np.float32)
