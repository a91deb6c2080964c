"""Writing the whole demo data set: :func:`make_demo_dataset` and its steps."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .design import (
    CLIP_DURATION_S,
    LEAD_S,
    REGIONS,
    STREAM_RUN,
    STREAM_SUBJECT,
    TAIL_S,
    TASK,
    resolve_setting,
    stimulus_table,
)

#: Revision of the generator: a data set written by another revision is not reused.
#: 2: one shared voice for every actor (identity and gender only in the face);
#: 3: the voice's emotional intensity 0.35-0.85 with a wider prosodic spread;
#: 4: a fourth planted region, ``person`` (dorsal TPJ), holding one code per actor; facial
#: actions 1.5 times as large and the voice's emotional intensity 0.3-0.75;
#: 5: clips smaller than 128 pixels (the fast setting) encoded without x264's macroblock
#: tree, so they are the same in every run.
GENERATOR_REVISION = 5

logger = logging.getLogger(__name__)


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
    control_mask : Path or None
        Mask of the negative-control region, without planted geometry
        (``desc-control_mask.nii.gz`` in ``groundtruth_dir``).
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
    control_mask: Path | None = None


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
    from .bids_writer import write_fmriprep_top_level
    from .bold import control_region, make_grid, planted_regions
    from .clips import region_features
    from .groundtruth import write_control_mask, write_groundtruth

    params = resolve_setting(
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
    paths = _prepare_output(Path(out_dir).resolve(), int(params["n_subjects"]), overwrite)
    logger.info("writing the demo data set (%s) to %s", setting, paths.root)
    table = stimulus_table()
    summaries = _write_clips(paths, seed, params, n_jobs=int(n_jobs), progress=progress)
    _write_raw_top_level(paths, seed, setting, params)
    vs = float(params["voxel_size_mm"])
    grid = make_grid(vs)
    regions, ventricles = planted_regions(vs)
    features = region_features(summaries, table)
    masks, rdms = write_groundtruth(paths.groundtruth_dir, grid, regions, features, table)
    control = write_control_mask(paths.groundtruth_dir, grid, control_region(vs))
    write_fmriprep_top_level(paths.fmriprep_dir)
    simulation = dict(
        grid=grid,
        regions=regions,
        ventricles=ventricles,
        features=features,
        signal_sd=float(snr) * float(noise_sd_pct),
        noise_sd_pct=float(noise_sd_pct),
    )
    _write_subjects(paths, seed, params, simulation, table, progress=progress)
    logger.info(
        "demo data set written: %d subjects, %d runs",
        len(paths.subjects),
        len(paths.subjects) * int(params["n_runs"]),
    )
    return dataclasses.replace(paths, region_masks=masks, region_rdms=rdms, control_mask=control)


def _prepare_output(root: Path, n_subjects: int, overwrite: bool) -> DemoPaths:
    """Check (or clear, with ``overwrite``) ``bids/`` and ``training/``; name every folder."""
    bids = root / "bids"
    training = root / "training"
    for folder in (bids, training):
        if folder.exists() and any(folder.iterdir()):
            if not overwrite:
                raise FileExistsError(
                    f"{folder} exists and is not empty; pass overwrite=True to replace it"
                )
            shutil.rmtree(folder)
    return DemoPaths(
        root=root,
        bids_dir=bids,
        stimuli_dir=bids / "stimuli",
        training_dir=training,
        training_labels=training / "labels.tsv",
        fmriprep_dir=bids / "derivatives" / "fmriprep",
        groundtruth_dir=bids / "derivatives" / "groundtruth",
        subjects=tuple(f"{s + 1:02d}" for s in range(n_subjects)),
    )


def _write_clips(paths: DemoPaths, seed: int, params: dict, *, n_jobs: int, progress: bool):
    """The fMRI stimuli and the training clips with labels.tsv; summaries of the stimuli."""
    from .bids_writer import write_tsv
    from .clips import clip_jobs, run_clip_jobs

    jobs, training_rows = clip_jobs(seed, params, paths.stimuli_dir, paths.training_dir)
    results = run_clip_jobs(jobs, n_jobs, progress, "demo clips")
    paths.training_dir.mkdir(parents=True, exist_ok=True)
    columns = ("file", "emotion", "identity", "gender", "sentence", "take")
    write_tsv(paths.training_labels, {c: [r[c] for r in training_rows] for c in columns})
    return results[: len(stimulus_table())]


def _write_raw_top_level(paths: DemoPaths, seed: int, setting: str, params: dict) -> None:
    from ..bidsnames import build_stem
    from .bids_writer import write_raw_top_level

    n = len(paths.subjects)
    part_rng = np.random.default_rng([seed, STREAM_SUBJECT, 999])
    write_raw_top_level(
        paths.bids_dir,
        setting=setting,
        seed=seed,
        voxel_size_mm=params["voxel_size_mm"],
        participants={
            "participant_id": [build_stem({"sub": s}) for s in paths.subjects],
            "age": [int(a) for a in part_rng.integers(19, 36, size=n)],
            "sex": ["F" if i % 2 == 0 else "M" for i in range(n)],
        },
    )


def _write_subjects(
    paths: DemoPaths, seed: int, params: dict, simulation: dict, table, *, progress: bool
) -> None:
    """Every participant: planted responses, then every run (raw and fMRIPrep-style)."""
    from tqdm.auto import tqdm

    from .groundtruth import write_planted_responses

    labels = [row["file"] for row in table]
    n_runs = int(params["n_runs"])
    bar = tqdm(
        total=len(paths.subjects) * n_runs,
        desc="demo fMRI",
        unit="run",
        disable=not progress,
        leave=False,
    )
    for s_index, sub in enumerate(paths.subjects):
        rng = np.random.default_rng([seed, STREAM_SUBJECT, s_index])
        betas = _subject_betas(simulation, len(table), rng)
        write_planted_responses(paths.groundtruth_dir, sub, simulation["grid"], betas, labels)
        for run in range(1, n_runs + 1):
            run_rng = np.random.default_rng([seed, STREAM_RUN, s_index, run])
            _write_run(paths, sub, run, params, simulation, betas, table, run_rng)
            bar.update()
    bar.close()


def _subject_betas(simulation: dict, n_stim: int, rng: np.random.Generator) -> np.ndarray:
    """Noiseless responses (n_stimuli, n_in_mask_voxels) of one participant, in percent.

    A stimulus-general response everywhere, stronger in the planted regions, plus
    each region's random read-out of its feature space.
    """
    from .bold import embed_features

    mask_flat = simulation["grid"].mask.ravel()
    regions = simulation["regions"]
    signal_sd = simulation["signal_sd"]
    planted = np.zeros(mask_flat.sum(), dtype=bool)
    for name in REGIONS:
        planted |= regions[name].ravel()[mask_flat]
    betas = np.zeros((n_stim, int(mask_flat.sum())))
    general = np.where(planted, 0.5, 0.15) * signal_sd
    betas += rng.normal(1.0, 0.3, size=betas.shape[1]) * general
    for name in REGIONS:
        sel = regions[name].ravel()[mask_flat]
        betas[:, sel] += embed_features(
            simulation["features"][name], int(sel.sum()), signal_sd * rng.uniform(0.9, 1.1), rng
        )
    return betas


def _write_run(paths, sub, run, params, simulation, betas, table, rng) -> None:
    """Simulate one run and write its raw and fMRIPrep-style files."""
    from ..bidsnames import subject_dir
    from .bids_writer import write_fmriprep_run, write_raw_run
    from .bold import make_run_events, simulate_run, trial_regressors

    grid = simulation["grid"]
    tr = float(params["tr_s"])
    n_stim = len(table)
    order, onsets, n_vol = make_run_events(
        n_stim,
        rng,
        clip_s=CLIP_DURATION_S,
        iti_range_s=tuple(params["iti_range_s"]),
        lead_s=LEAD_S,
        tail_s=TAIL_S,
        tr_s=tr,
    )
    regressors = trial_regressors(onsets, CLIP_DURATION_S, np.arange(n_vol) * tr)
    sim = simulate_run(
        grid,
        simulation["ventricles"],
        regressors,
        betas[order],
        tr_s=tr,
        noise_sd=simulation["noise_sd_pct"],
        rng=rng,
    )
    volume = np.zeros((*grid.mask.shape, n_vol), dtype=np.int16)
    volume[grid.mask] = np.clip(np.round(sim.bold.T), 0, 32767).astype(np.int16)
    entities = {"sub": sub, "task": TASK, "run": str(run)}
    rows = [table[i] for i in order]
    events = {
        "onset": [float(v) for v in onsets],
        "duration": [CLIP_DURATION_S] * n_stim,
        "trial_type": [r["file"][: -len(".mp4")] for r in rows],
        "stim_file": [r["file"] for r in rows],
        **{c: [r[c] for r in rows] for c in ("emotion", "identity", "gender", "sentence")},
    }
    func = subject_dir(paths.bids_dir, sub)
    write_raw_run(func, entities, volume, grid.affine, tr_s=tr, events=events)
    dfunc = subject_dir(paths.fmriprep_dir, sub)
    write_fmriprep_run(
        dfunc, entities, volume, grid.mask, grid.affine, tr_s=tr, confounds=sim.confounds
    )
