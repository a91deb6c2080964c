"""Finding the inputs of each participant with pybids, and checking them.

All BIDS queries live here; the core library never sees a BIDS layout.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from ..bidsnames import build_stem, parse_name
from ..surface import FSAVERAGE_VERTICES
from .errors import DatasetInvalid, InputMissing, NothingSelected, UsageError

logger = logging.getLogger(__name__)

DEFAULT_DERIV_SPACE = "MNI152NLin2009cAsym"
NATIVE_SPACE = "native"

#: Entities that name one acquisition: files that share them belong to one run.
RUN_ENTITIES = (
    "subject",
    "session",
    "task",
    "acquisition",
    "ceagent",
    "reconstruction",
    "direction",
    "run",
    "echo",
    "part",
)
#: Entities by which fMRIPrep names the outputs of one run apart (one per output space).
VARIANT_ENTITIES = ("space", "res", "den")
#: Entities that ``--space`` may carry after the space, as in ``MNI152NLin2009cAsym:res-2``.
SPACE_MODIFIERS = ("res", "den")
#: The surface spaces of ``--space``: fMRIPrep's fsaverage outputs, one GIFTI run per
#: hemisphere (``*_hemi-L_space-fsaverage5_bold.func.gii`` and its ``hemi-R`` twin).
SURFACE_SPACES = tuple(FSAVERAGE_VERTICES)
#: Entities that name a file's kind rather than what it holds.
_KIND_ENTITIES = ("suffix", "extension", "datatype", "desc")


@dataclass(frozen=True)
class RunInputs:
    """The files of one BOLD run.

    In a surface space (:data:`SURFACE_SPACES`) ``bold`` is the left hemisphere's GIFTI
    run and ``bold_right`` the right's; ``mask`` is then None.
    """

    run: str
    bold: Path
    events: Path
    t_r: float
    confounds: Path | None = None
    mask: Path | None = None
    bold_right: Path | None = None


@dataclass(frozen=True)
class SubjectInputs:
    """All runs of one participant, with the conditions they present."""

    subject: str
    task: str
    space: str
    runs: tuple[RunInputs, ...]
    conditions: tuple[str, ...]
    stim_files: tuple[str, ...]
    mask: Path | None = None


def _layout(bids_dir: Path, derivatives, subjects, database_dir: Path | None):
    from bids import BIDSLayout, BIDSLayoutIndexer

    ignore = [
        "code",
        "stimuli",
        "sourcedata",
        "models",
        "derivatives",
        re.compile(r"^/\."),
        re.compile(r"sub-[a-zA-Z0-9]+(/ses-[a-zA-Z0-9]+)?/(anat|beh|dwi|eeg|ieeg|meg|perf|fmap)"),
    ]
    if subjects:
        alternatives = "|".join(map(re.escape, subjects))
        ignore.append(re.compile(rf"^/sub-(?!(?:{alternatives})(?:/|$))"))
    indexer = BIDSLayoutIndexer(validate=False, ignore=ignore)
    db = None
    if database_dir is not None:
        key = json.dumps([str(bids_dir), sorted(subjects), [str(d) for d in derivatives]])
        db = database_dir / hashlib.sha1(key.encode()).hexdigest()[:12]
    try:
        return BIDSLayout(
            str(bids_dir),
            validate=False,
            indexer=indexer,
            derivatives=[str(d) for d in derivatives] or False,
            database_path=str(db) if db else None,
        )
    except Exception as exc:  # pybids raises several error types for broken data sets
        raise DatasetInvalid(f"cannot index the BIDS data set {bids_dir}: {exc}") from exc


def validator_executable() -> str | None:
    """The ``bids-validator-deno`` next to this Python (a virtual environment), or on PATH."""
    import shutil
    import sys

    local = Path(sys.executable).parent / "bids-validator-deno"
    return str(local) if local.is_file() else shutil.which("bids-validator-deno")


def run_validator(bids_dir: Path) -> None:
    """Run ``bids-validator-deno`` on the data set; raise DatasetInvalid on errors."""
    import subprocess

    exe = validator_executable()
    if exe is None:
        raise DatasetInvalid(
            "the BIDS validator (bids-validator-deno) is not installed; install it or pass "
            "--skip-bids-validation"
        )
    proc = subprocess.run(
        [exe, str(bids_dir), "--ignoreWarnings", "--ignoreNiftiHeaders"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        raise DatasetInvalid(f"the BIDS validator found errors in {bids_dir}:\n{tail}")


#: Seconds per unit of a NIfTI header's time unit (pixdim[4] in these units is a TR).
_TIME_UNITS = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}


def _header_t_r(bold: Path) -> tuple[float | None, str]:
    """The NIfTI header's pixdim[4] (None when not positive) and its time unit; a GIFTI
    run has no such header (None, "unknown")."""
    import nibabel as nib

    if bold.name.endswith(".gii"):
        return None, "unknown"

    header = nib.load(str(bold)).header
    zooms = header.get_zooms()
    unit = header.get_xyzt_units()[1]
    value = float(zooms[3]) if len(zooms) > 3 and zooms[3] > 0 else None
    return value, unit


def _t_r(layout, bold: Path, entities: dict | None = None) -> float:
    """The repetition time of a BOLD run, in seconds.

    It is the sidecar's ``RepetitionTime`` (for preprocessed BOLD without one, the raw
    run's); without one, the header's pixdim[4]. When the header's time unit gives
    pixdim[4] a meaning (sec, msec, usec), the two must agree (within 0.1%).

    Raises
    ------
    DatasetInvalid
        When there is no repetition time, it is not a positive number, or the sidecar
        contradicts the header.
    """
    import math

    meta = layout.get_metadata(str(bold)) or {}
    t_r = meta.get("RepetitionTime")
    if t_r is None and entities:
        # preprocessed BOLD: fall back on the raw run's sidecar (inheritance applies there)
        raw = layout.get(scope="raw", suffix="bold", extension=[".nii", ".nii.gz"], **entities)
        if raw:
            t_r = (layout.get_metadata(raw[0].path) or {}).get("RepetitionTime")
    header_t_r, unit = _header_t_r(bold)
    if t_r is None:
        if header_t_r is not None and unit in (*_TIME_UNITS, "unknown"):
            t_r = header_t_r * _TIME_UNITS.get(unit, 1.0)
            logger.warning(
                "%s: RepetitionTime missing from the sidecar; using the header (%s s)",
                bold.name,
                t_r,
            )
        else:
            raise DatasetInvalid(
                f"{bold}: the repetition time is missing (no RepetitionTime in the JSON "
                "sidecar and none in the NIfTI header)"
            )
    try:
        t_r = float(t_r)
    except (TypeError, ValueError):
        t_r = float("nan")
    if not (math.isfinite(t_r) and t_r > 0):
        raise DatasetInvalid(
            f"{bold}: RepetitionTime must be a positive number of seconds; got "
            f"{meta.get('RepetitionTime', t_r)!r}"
        )
    if header_t_r is not None and unit in _TIME_UNITS:
        seconds = header_t_r * _TIME_UNITS[unit]
        if not math.isclose(seconds, t_r, rel_tol=1e-3):
            in_header = (
                f"{seconds:g} s" if unit == "sec" else f"{header_t_r:g} {unit} = {seconds:g} s"
            )
            raise DatasetInvalid(
                f"{bold}: the sidecar's RepetitionTime {t_r:g} s contradicts the NIfTI "
                f"header's pixdim[4] ({in_header}): one of them is wrong; correct the "
                "RepetitionTime of the JSON sidecar, or the header's pixdim[4] and time "
                "unit, so that both give the time between volumes"
            )
    return t_r


def _check_bold(bold: Path) -> None:
    import nibabel as nib

    try:
        img = nib.load(str(bold))
    except Exception as exc:
        raise DatasetInvalid(f"{bold}: cannot be read as NIfTI ({exc})") from exc
    if len(img.shape) != 4 or img.shape[3] < 2:
        raise DatasetInvalid(
            f"{bold}: BOLD must be a 4D image with more than one volume; got shape {img.shape}"
        )


def _check_mask(mask: Path) -> None:
    import nibabel as nib

    data = np.asarray(nib.load(str(mask)).dataobj)
    if not np.any(data > 0):
        raise DatasetInvalid(f"{mask}: the brain mask is empty (no voxel above 0)")


def _git_dir(folder: Path) -> Path | None:
    """The git directory of a repository at ``folder`` (``.git`` as a folder, a link, or
    a ``gitdir:`` file), resolved; None when ``folder`` holds no repository."""
    dot_git = folder / ".git"
    if dot_git.is_dir():
        return dot_git.resolve()
    if dot_git.is_file():
        try:
            text = dot_git.read_text(errors="replace").strip()
        except OSError:
            return None
        if text.startswith("gitdir:"):
            return (folder / text.split(":", 1)[1].strip()).resolve()
    return None


def _annex_stores(bids_dir: Path) -> list[Path]:
    """The git directories whose ``annex/objects`` (or ``modules/*/annex/objects``) may
    hold stimuli: that of the data set and those of the superdatasets enclosing it."""
    stores = []
    here = Path(os.path.abspath(bids_dir))
    for folder in dict.fromkeys(
        [here, *here.parents, bids_dir.resolve(), *bids_dir.resolve().parents]
    ):
        git_dir = _git_dir(folder)
        if git_dir is not None and git_dir not in stores:
            stores.append(git_dir)
    return stores


def _in_annex_store(path: Path, git_dirs: list[Path]) -> bool:
    """Whether ``path`` lies in ``<git dir>/annex/objects`` or ``<git dir>/modules/<name>
    [/modules/<name>...]/annex/objects`` of one of ``git_dirs``."""
    for git_dir in git_dirs:
        try:
            parts = path.relative_to(git_dir).parts
        except ValueError:
            continue
        starts = [i for i in range(len(parts) - 2) if parts[i : i + 2] == ("annex", "objects")]
        if starts and (starts[0] == 0 or (parts[0] == "modules" and starts[0] >= 2)):
            return True
    return False


def resolve_stim_file(bids_dir: Path, value: str, events: Path, *, must_exist: bool = True) -> Path:
    """Check an events ``stim_file`` against the stimulus-path rule; return its path.

    The rule (``docs/own-data.md``): the value is a relative path that, once
    normalised, has no ``..`` and names a file under ``<bids_dir>/stimuli``. A symbolic
    link on the way (the ``stimuli`` folder itself, a subfolder, the file) is followed
    only when it leads inside the data set, or into a git-annex object store of the
    data set or of a superdataset enclosing it (``.git/annex/objects``,
    ``.git/modules/*/annex/objects``), as DataLad data sets store their files.

    Parameters
    ----------
    bids_dir : Path
        The data set.
    value : str
        The ``stim_file`` value as written in the events file.
    events : Path
        The events file (named in the messages).
    must_exist : bool
        Whether the file must be present (a network reads it); without, only the
        path rule is checked: the stimuli are then only named, never read.

    Returns
    -------
    Path
        ``<bids_dir>/stimuli/<value>`` as written (absolute; its extension names the
        format even when the content is a git-annex object).

    Raises
    ------
    DatasetInvalid
        The value is absolute, leaves ``stimuli/``, or a link leads elsewhere.
    InputMissing
        With ``must_exist``: the file is not there, or is a git-annex file whose
        content is not present.
    """
    text = str(value).strip()
    normal = posixpath.normpath(text.replace("\\", "/")) if text else ""
    if (
        not text
        or PurePosixPath(normal).is_absolute()
        or Path(text).is_absolute()
        or normal in (".", "..")
        or normal.startswith("../")
    ):
        raise DatasetInvalid(
            f"{events}: stim_file {text!r} must be a path relative to the data set's "
            "stimuli/ folder without '..' leading out of it"
        )
    root = Path(os.path.abspath(bids_dir))
    real_root = root.resolve()
    written = root / "stimuli" / normal
    stores = None
    # every link on the way, from the stimuli folder down to the file, must stay allowed
    step = root
    for part in ("stimuli", *PurePosixPath(normal).parts):
        step = step / part
        if not step.is_symlink():
            continue
        target = step.resolve()
        if target == real_root or real_root in target.parents:
            continue
        if stores is None:
            stores = _annex_stores(root)
        if _in_annex_store(target, stores):
            continue
        raise DatasetInvalid(
            f"{events}: stim_file {text!r}: {step.relative_to(root)} is a link to {target}, "
            f"outside the data set {root} and its git-annex object store"
        )
    if must_exist and not written.is_file():
        target = written.resolve()
        parts = target.parts
        annexed = any(parts[i : i + 2] == ("annex", "objects") for i in range(len(parts) - 1))
        if written.is_symlink() and annexed:
            rel = written.relative_to(root).as_posix()
            raise InputMissing(
                f"{events}: stim_file {text!r} is a git-annex file whose content is not "
                f"present; fetch it with: datalad get -d {root} {rel}"
            )
        raise InputMissing(f"{events}: stim_file {text!r} not found (looked for {written})")
    return written


def split_space(value: str) -> tuple[str, dict[str, str]]:
    """Split a ``--space`` value into the space and its entities.

    Parameters
    ----------
    value : str
        ``SPACE`` or ``SPACE:res-N`` (fMRIPrep's output-space syntax), also with
        ``:den-N``; each entity at most once.

    Returns
    -------
    space : str
        The space label.
    entities : dict
        ``{"res": "2"}`` and the like (empty without modifiers).

    Raises
    ------
    UsageError
        A value that does not follow this syntax.
    """
    space, *modifiers = str(value).split(":")
    entities: dict[str, str] = {}
    for modifier in modifiers:
        key, sep, label = modifier.partition("-")
        if not sep or key not in SPACE_MODIFIERS or not label.isalnum() or key in entities:
            break
        entities[key] = label
    else:
        if space.isalnum():
            return space, entities
    raise UsageError(
        f"--space {value!r} must be SPACE or SPACE:res-N (also :den-N, each at most once), "
        f"with alphanumeric labels, e.g. {DEFAULT_DERIV_SPACE}:res-2"
    )


def _space_text(ents: dict) -> str:
    """``space[:res-N][:den-N]`` of a file's entities (the ``--space`` syntax)."""
    return ":".join(
        [str(ents.get("space", NATIVE_SPACE))]
        + [f"{k}-{ents[k]}" for k in SPACE_MODIFIERS if k in ents]
    )


def _spaces_found(layout, subject: str, task: str) -> list[str]:
    """The spaces (with resolution and density) of the preprocessed BOLD of one
    participant and task, in the ``--space`` syntax."""
    files = layout.get(
        scope="derivatives",
        subject=subject,
        task=task,
        desc="preproc",
        suffix="bold",
        extension=[".nii", ".nii.gz"],
    )
    surfaces = layout.get(
        scope="derivatives", subject=subject, task=task, suffix="bold", extension=".func.gii"
    )
    spaces = {_space_text(f.get_entities(metadata=False)) for f in files}
    spaces |= {
        f.get_entities(metadata=False)["space"]
        for f in surfaces
        if f.get_entities(metadata=False).get("space") in SURFACE_SPACES
    }
    return sorted(spaces)


def _bold_query(config, space_ents: dict, filters: dict) -> dict:
    """The entities every BOLD file must have: ``--space`` (with -d) merged with the
    BOLD filters, which must not contradict it."""
    if config.space is not None:
        for key, value in space_ents.items():
            wanted = filters.get(key, value)
            if [str(v) for v in (wanted if isinstance(wanted, list) else [wanted])] != [value]:
                raise UsageError(
                    f"--space {config.space} and --bids-filter-file "
                    f"{json.dumps({'bold': {key: wanted}})} ask for different {key} values; "
                    "give one of them"
                )
    return {**space_ents, **filters}


def _variant_text(ents: dict, keys) -> str:
    return "_".join(f"{k}-{ents[k]}" if k in ents else f"(no {k})" for k in keys)


def _refuse_variants(groups: dict, subject: str) -> None:
    """Refuse when several files of one run were selected (e.g. fMRIPrep's res-1 and
    res-2 outputs of one space), naming them and how to choose one."""
    mixed = [files for files in groups.values() if len(files) > 1]
    if not mixed:
        return
    files = mixed[0]
    name = parse_name(files[0].path).entities
    run = build_stem({k: v for k, v in name.items() if k not in ("space", "res", "den", "desc")})
    entities = [f.get_entities(metadata=False) for f in files]
    keys = sorted({k for e in entities for k in e} - {*RUN_ENTITIES, "suffix", "datatype"})
    differ = [k for k in keys if len({str(e.get(k)) for e in entities}) > 1]
    others = f" (and {len(mixed) - 1} more run(s) alike)" if len(mixed) > 1 else ""
    if not differ or differ == ["extension"]:
        listing = "; ".join(str(f.path) for f in files)
        raise UsageError(
            f"{run} is found {len(files)} times with the same entities: "
            f"{listing}{others}; keep one file per run (pass only one derivatives folder "
            "with -d)"
        )
    differ = [k for k in differ if k != "extension"]
    listing = ", ".join(
        f"{_variant_text(e, differ)} ({Path(f.path).name})"
        for e, f in zip(entities, files, strict=True)
    )
    key = differ[0]
    example = json.dumps({"bold": {key: entities[-1].get(key)}})
    how = f"--bids-filter-file holding {example}"
    if any(key not in e for e in entities):
        how += f" ({json.dumps({'bold': {key: None}})} selects the one without {key})"
    if set(differ) <= set(VARIANT_ENTITIES):
        how = f"--space {_space_text(entities[-1])}, or {how}"
    raise UsageError(
        f"{run} has {len(files)} preprocessed BOLD variants that differ in "
        f"{', '.join(differ)}: {listing}{others}. dnnrsa analyses one variant of each run and "
        f"never mixes them: choose one with {how}"
    )


def _refuse_mixed_variants(runs_ents: list[dict], subject: str) -> None:
    """Refuse runs of one participant that are in different spaces or resolutions."""
    texts = {_space_text(e) for e in runs_ents}
    if len(texts) > 1:
        raise UsageError(
            f"sub-{subject}: the selected runs are in different spaces or resolutions "
            f"({', '.join(sorted(texts))}); dnnrsa analyses the runs of a participant on one "
            "grid: choose one with --space or --bids-filter-file"
        )


def _one_match(files, what: str, bold: Path) -> Path | None:
    """The single file matching ``bold``; with several, the one in the BOLD's folder."""
    if not files:
        return None
    if len(files) > 1:
        near = [f for f in files if Path(f.path).parent == bold.parent]
        if len(near) != 1:
            listing = "; ".join(f.path for f in files)
            raise UsageError(
                f"{bold.name}: {len(files)} {what} files match it ({listing}); pass only "
                "the derivatives folder that holds its own with -d"
            )
        files = near
    return Path(files[0].path)


def collect_inputs(config, *, surface: bool = False) -> dict[str, SubjectInputs]:
    """Query the data set for each selected participant's runs.

    With ``-d``, each run's brain mask and confounds are those with the BOLD's own
    entities (space, res, den, session, acquisition, run...); a run never takes the
    mask of another resolution.

    With ``--space`` one of :data:`SURFACE_SPACES` (and ``-d``), the runs are
    fMRIPrep's GIFTI runs of that space: each run's ``hemi-L`` file (``bold``) and its
    ``hemi-R`` twin (``bold_right``), checked to hold the space's vertex count and the
    same number of volumes, with the run's confounds and no brain mask. Until the
    participant level analyses them, only ``surface=True`` returns them; otherwise they
    are refused (``UsageError``) after they were found and checked.

    Raises
    ------
    NothingSelected
        When the participant labels, task or filters select no BOLD run (with ``-d``,
        the message lists the spaces and resolutions found).
    UsageError
        When several variants of one run are selected (fMRIPrep's res-1 and res-2 of
        one space, say), the runs of a participant are in different spaces or
        resolutions, or ``--space`` and the BOLD filters disagree; a surface space
        without ``-d``, or without ``surface=True``.
    InputMissing
        When an events file or a stimulus file is missing, or a surface run's right
        hemisphere.
    DatasetInvalid
        On a 3D BOLD image, a missing repetition time, or conditions that differ
        between runs; a surface run that is not GIFTI or whose vertex counts are not
        the space's, or whose hemispheres differ in volumes.
    """
    bids_dir = config.bids_dir
    layout = _layout(
        bids_dir, config.derivatives, config.participant_label, config.work_dir / "bids_db"
    )
    subjects, task = _subjects_and_task(layout, config)
    filters = dict(config.bids_filters.get("bold", {}))
    use_derivs = bool(config.derivatives)
    space, space_ents = split_space(config.space or DEFAULT_DERIV_SPACE)
    if not use_derivs:
        if space_ents:
            raise UsageError(
                f"--space {config.space}: a resolution or density selects among preprocessed "
                "outputs; give their folder with -d (raw BOLD is analysed on its own grid)"
            )
        space = config.space or NATIVE_SPACE
    on_surface = space in SURFACE_SPACES
    if on_surface and not use_derivs:
        raise UsageError(
            f"--space {config.space}: surface runs are fMRIPrep's outputs "
            f"(*_hemi-L_space-{space}_bold.func.gii); give their folder with -d"
        )
    out: dict[str, SubjectInputs] = {}
    for subject in subjects:
        if on_surface:
            bolds = _subject_surface_bolds(layout, config, subject, task, space, filters)
        else:
            bolds = _subject_bolds(layout, config, subject, task, space, space_ents, filters)
        groups: dict[tuple, list] = {}
        for bold_file in sorted(bolds, key=lambda f: f.path):
            ents = bold_file.get_entities(metadata=False)
            groups.setdefault(tuple(ents.get(k) for k in RUN_ENTITIES), []).append(bold_file)
        _refuse_variants(groups, subject)
        chosen = [files[0] for files in groups.values()]
        if use_derivs:
            _refuse_mixed_variants([f.get_entities(metadata=False) for f in chosen], subject)
            space = chosen[0].get_entities(metadata=False).get("space", space)
        if on_surface:
            runs = [_surface_run_inputs(layout, bold_file, space) for bold_file in chosen]
        else:
            runs = [_run_inputs(layout, bold_file, use_derivs) for bold_file in chosen]
        conditions, stim_files = _check_events(
            bids_dir,
            runs,
            config.condition_column,
            need_stimuli=bool(config.checkpoints or config.networks),
        )
        mask = next((r.mask for r in runs if r.mask is not None), None)
        out[subject] = SubjectInputs(
            subject=subject,
            task=task,
            space=space,
            runs=tuple(runs),
            conditions=conditions,
            stim_files=stim_files,
            mask=mask,
        )
    # every participant must present the same conditions (one set of layer RDMs)
    first = next(iter(out.values()))
    for inputs in out.values():
        if inputs.conditions != first.conditions:
            diff = sorted(set(inputs.conditions) ^ set(first.conditions))
            raise DatasetInvalid(
                f"sub-{inputs.subject} presents different conditions from sub-{first.subject}: {diff[:10]}"
            )
    if on_surface and not surface:
        found = sum(len(inputs.runs) for inputs in out.values())
        raise UsageError(
            f"--space {space}: {found} surface run(s) found (pairs of hemi-L and hemi-R "
            "GIFTI files), but the participant level does not analyse surface runs yet; "
            "the library does (dnnrsa.glm.estimate_patterns with (left, right) pairs, "
            "docs/surface.md). Choose a volume space with --space"
        )
    return out


def _subjects_and_task(layout, config) -> tuple[list[str], str]:
    """The selected participants (all without ``--participant-label``) and the task
    (required when the data set has several)."""
    bids_dir = config.bids_dir
    all_subjects = layout.get_subjects()
    subjects = list(config.participant_label) or sorted(all_subjects)
    unknown = [s for s in subjects if s not in all_subjects]
    if unknown:
        on_disk = sorted(p.name[4:] for p in bids_dir.glob("sub-*") if p.is_dir())
        raise NothingSelected(
            f"participant label(s) {unknown} not found in {bids_dir}; available: {on_disk}"
        )
    if not subjects:
        raise NothingSelected(f"no participants found in {bids_dir}")
    tasks = layout.get_tasks()
    task = config.task
    if task is None:
        if len(tasks) != 1:
            raise UsageError(f"--task is required when the data set has several tasks: {tasks}")
        task = tasks[0]
    elif task not in tasks:
        raise NothingSelected(f"--task {task!r} not found in {bids_dir}; available: {tasks}")
    return subjects, task


def _subject_bolds(layout, config, subject, task, space, space_ents, filters) -> list:
    """The BOLD files of one participant (preprocessed in ``space`` with ``-d``, raw
    otherwise); none is refused (18) naming what exists."""
    query = {
        "subject": subject,
        "task": task,
        "suffix": "bold",
        "extension": [".nii", ".nii.gz"],
    }
    if config.derivatives:
        query.update(
            {"desc": "preproc", **_bold_query(config, {"space": space, **space_ents}, filters)}
        )
        bolds = layout.get(scope="derivatives", **query)
    else:
        query.update(filters)
        bolds = layout.get(scope="raw", **query)
    if bolds:
        return bolds
    if config.derivatives:
        found = _spaces_found(layout, subject, task)
        chosen = _space_text({"space": space, **space_ents})
        raise NothingSelected(
            f"no preprocessed BOLD runs (desc-preproc) for sub-{subject}, task {task!r} "
            f"in space {chosen}"
            + (f" with the BOLD filters {json.dumps(filters)}" if filters else "")
            + f" in the derivatives {[str(d) for d in config.derivatives]}; spaces "
            f"found for this participant and task: {', '.join(found) or 'none'} "
            f"(choose one with --space, e.g. --space {found[0] if found else space})"
        )
    raise NothingSelected(
        f"no BOLD runs for sub-{subject}, task {task!r} in {config.bids_dir}"
        + (f" with the BOLD filters {json.dumps(filters)}" if filters else "")
    )


def _subject_surface_bolds(layout, config, subject, task, space, filters) -> list:
    """The left hemisphere's GIFTI runs of one participant in a surface space; none is
    refused (18) naming the spaces that exist."""
    query = {
        "subject": subject,
        "task": task,
        "suffix": "bold",
        "extension": ".func.gii",
        "hemi": "L",
        **_bold_query(config, {"space": space}, filters),
    }
    bolds = layout.get(scope="derivatives", **query)
    if bolds:
        return bolds
    found = _spaces_found(layout, subject, task)
    raise NothingSelected(
        f"no surface BOLD runs (*_hemi-L_space-{space}_bold.func.gii) for sub-{subject}, "
        f"task {task!r}"
        + (f" with the BOLD filters {json.dumps(filters)}" if filters else "")
        + f" in the derivatives {[str(d) for d in config.derivatives]}; spaces found for "
        f"this participant and task: {', '.join(found) or 'none'} (fMRIPrep writes them "
        f"with --output-spaces {space})"
    )


def _check_surface_bold(left: Path, right: Path, space: str) -> None:
    """Both hemispheres of a surface run are GIFTI runs of the space's vertex count,
    with the same number (at least 2) of volumes."""
    from .._surfaceio import read_gifti_data

    n_vertices = FSAVERAGE_VERTICES[space]
    shapes = []
    for path in (left, right):
        try:
            shape = read_gifti_data(path, "surface BOLD").shape
        except ValueError as exc:
            raise DatasetInvalid(f"{path}: cannot be read as a GIFTI run ({exc})") from exc
        if shape[0] != n_vertices:
            raise DatasetInvalid(
                f"{path}: {shape[0]} vertices; {space} has {n_vertices} per hemisphere"
            )
        shapes.append(shape)
    if shapes[0][1] != shapes[1][1] or shapes[0][1] < 2:
        raise DatasetInvalid(
            f"{left}: {shapes[0][1]} volume(s), its right hemisphere {right.name} "
            f"{shapes[1][1]}: both must hold the same number, more than one"
        )


def _surface_run_inputs(layout, bold_file, space: str) -> RunInputs:
    """One surface run: its left and right GIFTI runs, events, repetition time (the
    sidecars', the raw run's) and confounds."""
    from bids.layout import Query

    ents = bold_file.get_entities(metadata=False)
    left = Path(bold_file.path)
    right = left.with_name(left.name.replace("_hemi-L_", "_hemi-R_"))
    if not right.is_file():
        raise InputMissing(f"{left}: its right hemisphere {right.name} is missing")
    _check_surface_bold(left, right, space)
    events, ev_query = _run_events(layout, ents, left)
    same_run = {k: ents.get(k, Query.NONE) for k in RUN_ENTITIES}
    conf = layout.get(
        scope="derivatives",
        desc="confounds",
        suffix="timeseries",
        extension=".tsv",
        **{**same_run, "echo": Query.NONE, "part": Query.NONE},
    )
    return RunInputs(
        run=_run_label(ents, left),
        bold=left,
        events=events,
        t_r=_t_r(layout, left, ev_query),
        confounds=_one_match(conf, "confounds", left),
        bold_right=right,
    )


def _run_events(layout, ents: dict, bold: Path) -> tuple[Path, dict]:
    """The raw events.tsv of the run with entities ``ents`` (``bold`` names it in the
    error), and the query that found it."""
    ev_query = {
        k: v for k, v in ents.items() if k in ("subject", "session", "task", "run", "acquisition")
    }
    events = layout.get(scope="raw", suffix="events", extension=".tsv", **ev_query)
    if not events:
        raise InputMissing(f"{bold}: no events.tsv found for this run ({ev_query})")
    return Path(events[0].path), ev_query


def _run_label(ents: dict, bold: Path) -> str:
    """The run's label: its session, run and acquisition entities, else its file's stem."""
    return "".join(
        f"{k}-{ents[k]}" for k in ("session", "run", "acquisition") if k in ents
    ) or build_stem(parse_name(bold).entities)


def _run_inputs(layout, bold_file, use_derivs: bool) -> RunInputs:
    """One run: its BOLD, events, repetition time and, with ``-d``, the confounds and
    brain mask with the BOLD's own entities."""
    ents = bold_file.get_entities(metadata=False)
    bold = Path(bold_file.path)
    _check_bold(bold)
    events, ev_query = _run_events(layout, ents, bold)
    confounds = mask = None
    if use_derivs:
        confounds, mask = _run_derivatives(layout, ents, bold)
    return RunInputs(
        run=_run_label(ents, bold),
        bold=bold,
        events=events,
        t_r=_t_r(layout, bold, ev_query if use_derivs else None),
        confounds=confounds,
        mask=mask,
    )


def _run_derivatives(layout, ents: dict, bold: Path):
    """The confounds table and brain mask of this run, and of no other variant: every
    entity of the BOLD (space, res, den included) or, where the BOLD has none, none."""
    from bids.layout import Query

    same_run = {k: ents.get(k, Query.NONE) for k in RUN_ENTITIES}
    conf = layout.get(
        scope="derivatives",
        desc="confounds",
        suffix="timeseries",
        extension=".tsv",
        **{**same_run, "echo": Query.NONE, "part": Query.NONE},
    )
    confounds = _one_match(conf, "confounds", bold)
    masks = layout.get(
        scope="derivatives",
        desc="brain",
        suffix="mask",
        extension=[".nii", ".nii.gz"],
        **same_run,
        **{k: ents.get(k, Query.NONE) for k in VARIANT_ENTITIES},
    )
    mask = _one_match(masks, "brain mask", bold)
    if mask is not None:
        _check_mask(mask)
    else:
        logger.warning(
            "%s: no brain mask (desc-brain_mask) with the same entities; the mask "
            "is computed from the BOLD runs",
            bold.name,
        )
    return confounds, mask


def _check_events(bids_dir: Path, runs, condition_column: str, *, need_stimuli: bool = True):
    """The conditions and stim_file values of the runs. Every stim_file follows the
    stimulus-path rule; the files must be present only when ``need_stimuli`` (a
    network reads them), and are checked after the rule holds for every value."""
    import pandas as pd

    sets = []
    stim_files: dict[str, Path] = {}  # value -> the events file naming it first
    for run in runs:
        if not run.events.is_file():
            raise InputMissing(f"events file not found: {run.events}")
        table = pd.read_csv(run.events, sep="\t", dtype={condition_column: str, "stim_file": str})
        for column in ("onset", "duration", condition_column):
            if column not in table.columns:
                raise DatasetInvalid(
                    f"{run.events}: column {column!r} missing (columns: {list(table.columns)})"
                )
        table = table[table[condition_column].notna() & (table[condition_column] != "n/a")]
        if "stim_file" in table.columns:
            for value in table["stim_file"].dropna().unique():
                if value == "n/a":
                    continue
                resolve_stim_file(bids_dir, value, run.events, must_exist=False)
                stim_files.setdefault(str(value), run.events)
        elif condition_column == "stim_file":
            raise DatasetInvalid(f"{run.events}: column 'stim_file' missing")
        sets.append((run, frozenset(table[condition_column].astype(str))))
    if need_stimuli:
        for value, events in stim_files.items():
            resolve_stim_file(bids_dir, value, events)
    reference_run, reference = sets[0]
    for run, conds in sets[1:]:
        if conds != reference:
            only_here = sorted(conds - reference)[:5]
            only_there = sorted(reference - conds)[:5]
            raise DatasetInvalid(
                f"the stimuli differ between runs: {run.events.name} has {only_here} not in "
                f"{reference_run.events.name}, which has {only_there} not in the former"
            )
    if len(reference) < 3:
        raise DatasetInvalid(
            f"{reference_run.events}: at least 3 conditions are needed in column "
            f"{condition_column!r}; got {sorted(reference)}"
        )
    return tuple(sorted(reference)), tuple(sorted(stim_files))


def stimulus_table(bids_dir: Path, subject_inputs: dict[str, SubjectInputs], condition_column: str):
    """One row per stimulus file: its condition and any label columns of the events."""
    import pandas as pd

    frames = []
    for inputs in subject_inputs.values():
        for run in inputs.runs:
            frames.append(pd.read_csv(run.events, sep="\t", dtype=str))
    table = pd.concat(frames, ignore_index=True)
    if "stim_file" not in table.columns:
        return None
    table = table[table["stim_file"].notna() & (table["stim_file"] != "n/a")]
    keep = [
        c
        for c in table.columns
        if c not in ("onset", "duration", "response_time", "sample", "value", "HED")
    ]
    table = table[keep].drop_duplicates("stim_file").sort_values("stim_file")
    cols = ["stim_file"] + [c for c in table.columns if c != "stim_file"]
    return table[cols].reset_index(drop=True)
