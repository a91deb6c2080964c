"""The demo clips: actors, rendering and encoding in parallel, and the features they carry.

Every clip is drawn from random streams keyed by seed, actor, emotion, sentence and
take, so that clips do not depend on which other clips are made. While a fMRI
stimulus is written, small summaries of it are kept (its mean frame in coarse
pixels, its log-mel spectrogram) from which :func:`region_features` builds the
feature spaces planted in the simulated brain.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .design import (
    CLIP_DURATION_S,
    EMOTIONS,
    GENDERS,
    IDENTITIES,
    SAMPLE_RATE,
    SENTENCES,
    STREAM_ACTOR,
    STREAM_CLIP,
    stimulus_table,
)

#: Video encoder threads per clip (see :func:`dnnrsa.stimuli.write_clip`): fixed, so
#: that the clips, and the networks trained on them, do not depend on the machine's
#: CPUs (FFmpeg's automatic choice gave x264 one thread on a one-CPU machine and
#: another stream than on two or more CPUs; 2 gives the stream those machines wrote).
ENCODER_THREADS = 2

#: x264 settings of clips smaller than :data:`REPRODUCIBLE_SIDE` pixels (the fast
#: setting's 96): without the macroblock tree, the same frames always give the same
#: stream (with it, 4 streams in 12 encodings in one process). Larger clips (the full
#: setting's 128) gave one stream in 12 encodings and keep x264's defaults, so the
#: full demo's data set is unchanged.
SMALL_CLIP_X264 = "mbtree=0"
REPRODUCIBLE_SIDE = 128


def _actors(seed: int) -> dict:
    """Face and voice of every actor: identity -> (FaceParams, VoiceParams).

    Faces differ by actor and gender; the voice is :data:`~dnnrsa.demo.voices.SHARED_VOICE`
    for everyone (each rendition varies it by :func:`~dnnrsa.demo.voices.rendition_voice`),
    so identity and gender are visible but not audible.
    """
    from .talking_faces import make_face_params
    from .voices import SHARED_VOICE

    actors = {}
    # skin tones and hair colours are spread over the actors, in a seeded order
    order = np.random.default_rng([seed, STREAM_ACTOR, 99]).permutation(len(IDENTITIES))
    for a, (identity, gender) in enumerate(zip(IDENTITIES, GENDERS, strict=True)):
        rng = np.random.default_rng([seed, STREAM_ACTOR, a])
        face = make_face_params(gender, rng, skin_index=int(order[a]), hair_index=(a * 5) % 6)
        actors[identity] = (face, SHARED_VOICE)
    return actors


def _log_mel(wave: np.ndarray, sr: int, n_mels: int = 32) -> np.ndarray:
    """Log-mel spectrogram (n_mels, n_frames): 32-ms windows, 16-ms hop."""
    from scipy.signal import stft

    n_fft = int(0.032 * sr)
    _, _, spec = stft(wave, fs=sr, nperseg=n_fft, noverlap=n_fft // 2, boundary=None)
    power = np.abs(spec) ** 2
    freqs = np.linspace(0, sr / 2, power.shape[0])

    def mel(f):
        return 2595.0 * np.log10(1 + f / 700.0)

    edges = 700.0 * (10 ** (np.linspace(mel(60.0), mel(sr / 2), n_mels + 2) / 2595.0) - 1)
    bank = np.zeros((n_mels, len(freqs)))
    for m in range(n_mels):
        lo, mid, hi = edges[m : m + 3]
        bank[m] = np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 0, None)
    return np.log(bank @ power + 1e-10)


def _summarise(frames: np.ndarray, audio: np.ndarray) -> dict:
    """Coarse pixels of the mean frame (24 x 24) and acoustic summaries of the log-mel."""
    grey = frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    mean_frame = grey.mean(axis=0) / 255.0
    block = mean_frame.shape[0] // 24
    pixels = mean_frame[: 24 * block, : 24 * block].reshape(24, block, 24, block).mean((1, 3))
    logmel = _log_mel(audio.astype(np.float64), SAMPLE_RATE)
    n_bins = 6
    edges = np.linspace(0, logmel.shape[1], n_bins + 1).astype(int)
    coarse = logmel.reshape(16, 2, -1).mean(1)
    profile = np.stack([coarse[:, a:b].mean(1) for a, b in zip(edges[:-1], edges[1:], strict=True)])
    acoustic = np.concatenate([logmel.mean(1), logmel.std(1), profile.ravel()])
    return dict(pixels=pixels.ravel(), acoustic=acoustic)


def render_clip(
    seed: int,
    key: tuple[int, ...],
    actor: tuple,
    emotion: str,
    sentence: str,
    *,
    fps: int,
    image_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Frames and waveform of one clip, before encoding.

    Parameters
    ----------
    seed : int
    key : tuple of int
        (actor, emotion, sentence, take) indices: the clip's random streams are
        ``default_rng([seed, STREAM_CLIP, *key, i])`` with i = 0 (face), 1 (voice) and
        2 (the rendition's voice parameters).
    actor : tuple
        (FaceParams, VoiceParams) of :func:`_actors`.
    emotion, sentence : str
    fps, image_size : int

    Returns
    -------
    frames : ndarray of uint8, shape (n_frames, image_size, image_size, 3)
    audio : ndarray of float32, shape (CLIP_DURATION_S * SAMPLE_RATE,)
    """
    from .talking_faces import expression_tracks, render_face_clip
    from .voices import rendition_voice, synthesize_voice

    face, voice = actor
    n_frames = int(round(CLIP_DURATION_S * fps))
    rng_face = np.random.default_rng([seed, STREAM_CLIP, *key, 0])
    rng_voice = np.random.default_rng([seed, STREAM_CLIP, *key, 1])
    # the rendition's voice: the shared voice varied independently of the actor
    voice = rendition_voice(np.random.default_rng([seed, STREAM_CLIP, *key, 2]), voice)
    tracks = expression_tracks(emotion, n_frames, fps, rng_face)
    frames = render_face_clip(face, tracks, size=image_size, rng=rng_face)
    audio = synthesize_voice(
        voice,
        emotion,
        sentence,
        duration_s=CLIP_DURATION_S,
        sample_rate=SAMPLE_RATE,
        rng=rng_voice,
    )
    return frames, audio


def _clip_job(job: dict) -> dict:
    """Render, synthesise and encode one clip; return small summaries for the RDMs."""
    from ..stimuli import write_clip

    frames, audio = render_clip(
        job["seed"],
        job["key"],
        job["actor"],
        job["emotion"],
        job["sentence"],
        fps=job["fps"],
        image_size=job["image_size"],
    )
    small = job["image_size"] < REPRODUCIBLE_SIDE
    write_clip(
        job["path"], frames, job["fps"], audio, SAMPLE_RATE, threads=ENCODER_THREADS,
        x264_params=SMALL_CLIP_X264 if small else None,
    )  # fmt: skip
    if not job["summarise"]:
        return {}
    return _summarise(frames, audio)


def clip_jobs(
    seed: int, params: dict, stimuli_dir: Path, training_dir: Path
) -> tuple[list[dict], list[dict]]:
    """The jobs of :func:`run_clip_jobs`: the 72 fMRI stimuli first, then the training takes.

    Returns
    -------
    jobs : list of dict
    training_rows : list of dict
        One row per training clip (the stimulus table's columns and ``take``).
    """
    actors = _actors(seed)
    table = stimulus_table()
    keys = {
        row["file"]: (
            IDENTITIES.index(row["identity"]),
            EMOTIONS.index(row["emotion"]),
            SENTENCES.index(row["sentence"]),
        )
        for row in table
    }
    common = dict(seed=seed, fps=int(params["fps"]), image_size=int(params["image_size"]))

    def job(row, key, path, summarise):
        return dict(
            common,
            key=key,
            actor=actors[row["identity"]],
            emotion=row["emotion"],
            sentence=row["sentence"],
            path=str(path),
            summarise=summarise,
        )

    jobs = [job(row, (*keys[row["file"]], 0), stimuli_dir / row["file"], True) for row in table]
    training_rows = []
    for take in range(1, int(params["n_training_takes"]) + 1):
        for row, fmri_row in zip(stimulus_table(take), table, strict=True):
            training_rows.append(dict(row, take=take))
            jobs.append(
                job(row, (*keys[fmri_row["file"]], take), training_dir / row["file"], False)
            )
    return jobs, training_rows


def run_clip_jobs(jobs: list[dict], n_jobs: int, progress: bool, desc: str) -> list[dict]:
    """Run :func:`_clip_job` on every job (in ``n_jobs`` processes); results in job order."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc=desc, unit="clip", disable=not progress, leave=False)
    try:
        if n_jobs <= 1:
            results = []
            for job in jobs:
                results.append(_clip_job(job))
                bar.update()
            return results
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=n_jobs) as pool:
            results = []
            for res in pool.map(_clip_job, jobs, chunksize=4):
                results.append(res)
                bar.update()
            return results
    finally:
        bar.close()


def _unit_rows(features: np.ndarray, n_components: float = 0.95) -> np.ndarray:
    """Centre across stimuli, keep principal components explaining a share of the
    variance, and scale every stimulus to unit length."""
    x = features - features.mean(axis=0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    share = np.cumsum(s**2) / max(float(np.sum(s**2)), 1e-12)
    k = int(np.searchsorted(share, n_components) + 1)
    x = u[:, :k] * s[:k]
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def region_features(summaries: list[dict], table: list[dict]) -> dict[str, np.ndarray]:
    """Feature space of every planted region, one unit-length row per stimulus.

    Parameters
    ----------
    summaries : list of dict
        What :func:`_clip_job` returned for the fMRI stimuli, in the order of ``table``.
    table : list of dict
        :func:`dnnrsa.demo.stimulus_table`.

    Returns
    -------
    dict of region -> ndarray of shape (n_stimuli, n_features)
        visual: pixels; auditory: acoustic summaries; crossmodal: the emotion;
        person: the actor (identity).
    """
    pixels = np.stack([s["pixels"] for s in summaries])
    acoustic = np.stack([s["acoustic"] for s in summaries])
    acoustic = (acoustic - acoustic.mean(0)) / np.maximum(acoustic.std(0), 1e-9)
    emotion = np.array([[row["emotion"] == e for e in EMOTIONS] for row in table], dtype=float)
    actor = np.array([[row["identity"] == a for a in IDENTITIES] for row in table], dtype=float)
    return {
        "visual": _unit_rows(pixels),
        "auditory": _unit_rows(acoustic),
        "crossmodal": _unit_rows(emotion, n_components=1.0),
        "person": _unit_rows(actor, n_components=1.0),
    }
