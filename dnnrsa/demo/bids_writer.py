"""Files of the demo data set: the raw BIDS data set and the fMRIPrep-style derivatives.

Every file is written atomically (:mod:`dnnrsa._io`); JSON and TSV are formatted
the same way every time, so the same arguments give byte-identical files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._version import __version__
from ..bidsnames import build_name, sidecar_path, subject_dir, write_json
from .bold import SPACE
from .design import EMOTIONS, IDENTITIES, SENTENCES, TASK

SPATIAL_REFERENCE = "https://templateflow.s3.amazonaws.com/tpl-MNI152NLin2009cAsym/"

_README = """\
# dnnrsa demo data set (simulated)

Written by `dnnrsa.demo.make_demo_dataset` ({setting} setting, seed {seed}).
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

_FMRIPREP_README = (
    "# fMRIPrep-style derivatives of the dnnrsa demo data set\n\n"
    "The BOLD series were simulated in template space, so `desc-preproc` holds the "
    "same values as the raw series; masks are the brain mask of the grid; the "
    "confounds were computed from the simulated series and motion.\n"
)

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


# --------------------------------------------------------------------------- primitives
def write_tsv(path: Path, columns: dict[str, list]) -> None:
    """Write columns (name -> values) as TSV, atomically; floats rounded, NaN as n/a."""
    from .._io import atomic_write

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


def write_text(path: Path, text: str) -> None:
    """Write a small text file (README, .bidsignore)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def save_nifti(data: np.ndarray, affine: np.ndarray, path: Path, *, tr_s: float | None = None):
    """Save an image in MNI space (sform and qform code 4), atomically."""
    import nibabel as nib

    from .._io import atomic_save_nifti

    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_sform(affine, code=4)  # MNI152 space
    img.set_qform(affine, code=4)
    if tr_s is not None:
        img.header.set_zooms((*img.header.get_zooms()[:3], float(tr_s)))
    atomic_save_nifti(img, path)


def description(name: str, dataset_type: str, **extra) -> dict:
    """``dataset_description.json`` of a demo data set (raw or derivative)."""
    desc = {"Name": name, "BIDSVersion": "1.10.0", "DatasetType": dataset_type}
    desc["License"] = "CC0"
    desc["Authors"] = ["dnnrsa developers"]
    desc["GeneratedBy"] = [
        {
            "Name": "dnnrsa",
            "Version": __version__,
            "Description": "dnnrsa.demo.make_demo_dataset (simulated data)",
            "CodeURL": "https://pypi.org/project/dnnrsa/",
        }
    ]
    desc.update(extra)
    return desc


# --------------------------------------------------------------------------- data sets
def write_raw_top_level(
    bids: Path, *, setting: str, seed: int, voxel_size_mm: float, participants: dict
) -> None:
    """dataset_description.json, README, participants.tsv/.json and the events sidecar.

    ``participants`` holds the columns of participants.tsv.
    """
    bids.mkdir(parents=True, exist_ok=True)
    write_json(
        bids / "dataset_description.json",
        description("dnnrsa demo: audio-visual emotion (simulated)", "raw"),
    )
    write_text(
        bids / "README.md", _README.format(setting=setting, seed=seed, task=TASK, vs=voxel_size_mm)
    )
    write_tsv(bids / "participants.tsv", participants)
    write_json(
        bids / "participants.json",
        {
            "age": {"Description": "Age of the participant", "Units": "year"},
            "sex": {
                "Description": "Sex of the participant",
                "Levels": {"F": "female", "M": "male"},
            },
        },
    )
    write_json(bids / build_name({"task": TASK}, "events", ".json"), _EVENTS_SIDECAR)


def write_fmriprep_top_level(fmriprep: Path) -> None:
    """README, .bidsignore and dataset_description.json of the fMRIPrep-style derivatives."""
    fmriprep.mkdir(parents=True, exist_ok=True)
    write_text(fmriprep / "README.md", _FMRIPREP_README)
    write_text(
        fmriprep / ".bidsignore",
        "*_desc-confounds_timeseries.tsv\n*_desc-confounds_timeseries.json\n",
    )
    write_json(
        fmriprep / "dataset_description.json",
        description(
            "dnnrsa demo: fMRIPrep-style derivatives (simulated in template space)",
            "derivative",
            SourceDatasets=[{"URL": "../../"}],
        ),
    )


def write_raw_run(
    func: Path,
    entities: dict[str, str],
    volume: np.ndarray,
    affine: np.ndarray,
    *,
    tr_s: float,
    events: dict,
) -> None:
    """The raw BOLD series of one run (``entities``: sub, task, run), sidecar and events.tsv."""
    bold = func / build_name(entities, "bold", ".nii.gz")
    save_nifti(volume, affine, bold, tr_s=tr_s)
    bold_meta = {
        "TaskName": TASK,
        "TaskDescription": "Watch and listen to 3-s clips of actors speaking a "
        "sentence with an emotional face and voice",
        "RepetitionTime": tr_s,
        "SliceTiming": [
            round(float(v), 4) for v in np.linspace(0, tr_s, volume.shape[2], endpoint=False)
        ],
        "SkullStripped": False,
    }
    write_json(sidecar_path(bold), bold_meta)
    write_tsv(func / build_name(entities, "events", ".tsv"), events)


def write_fmriprep_run(
    dfunc: Path,
    entities: dict[str, str],
    volume: np.ndarray,
    mask: np.ndarray,
    affine: np.ndarray,
    *,
    tr_s: float,
    confounds: dict,
) -> None:
    """Preprocessed BOLD (the same values as the raw series), brain mask and confounds.

    ``entities`` name the raw run (sub, task, run).
    """
    raw = subject_dir("", entities["sub"]) / build_name(entities, "bold", ".nii.gz")
    source = [f"bids:raw:{raw.as_posix()}"]
    prep = {**entities, "space": SPACE}
    bold = dfunc / build_name({**prep, "desc": "preproc"}, "bold", ".nii.gz")
    save_nifti(volume, affine, bold, tr_s=tr_s)
    write_json(
        sidecar_path(bold),
        {
            "Description": "Simulated BOLD in template space (same values as the raw series)",
            "RepetitionTime": tr_s,
            "TaskName": TASK,
            "SkullStripped": False,
            "SpatialReference": SPATIAL_REFERENCE,
            "Sources": source,
        },
    )
    mask_path = dfunc / build_name({**prep, "desc": "brain"}, "mask", ".nii.gz")
    save_nifti(mask.astype(np.uint8), affine, mask_path)
    write_json(
        sidecar_path(mask_path),
        {
            "Type": "Brain",
            "Description": "nilearn's MNI152 brain mask resampled to the BOLD grid",
            "SpatialReference": SPATIAL_REFERENCE,
            "Sources": source,
        },
    )
    confounds_path = dfunc / build_name({**entities, "desc": "confounds"}, "timeseries", ".tsv")
    write_tsv(confounds_path, confounds)
    conf_meta = {
        name: {"Description": _CONFOUND_DESCRIPTIONS.get(name, "Discrete cosine drift")}
        for name in confounds
    }
    write_json(sidecar_path(confounds_path), conf_meta)
