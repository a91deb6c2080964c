"""The output folder's contract: one analysis per folder, safe for concurrent runs.

An output folder holds the results of one analysis: every participant in it was run
with the same options that fix what a map or table means (the *analysis options*,
:data:`ANALYSIS_OPTIONS`, plus the contents of the checkpoints, model RDMs, ROI
masks and crop table, and the dnnrsa version). The first participant run records
them in ``dnnrsa_config.toml`` (table ``[analysis]``); every later participant run
compares its own with the record before it computes or writes anything, and a run
that differs is refused (exit 64) with the differences and how to proceed. So a
folder never mixes maps made with different options, and a rerun never leaves a
map of other options beside the new ones.

Several participant runs may write into one folder at once (a SLURM array): the
check and every write of the data-set-level files happen under a lock on
``<output_dir>/.dnnrsa.lock``, the participants recorded are the union of the runs'
participants, and each run computes in its own folder of the work directory
(:func:`run_work_dir`), locked while it runs.

The group level checks the maps it combines (their sidecars must agree on the
comparator, metric, radius, model RDM metric and conditions), takes the analysis
options from the record, and writes its own configuration, ``dnnrsa_group_config.toml``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
import tomllib
from pathlib import Path

from .. import __version__
from .._io import atomic_write, file_sha256
from .collect import NATIVE_SPACE
from .config import RunConfig
from .errors import DatasetInvalid, UsageError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

logger = logging.getLogger("dnnrsa.outputs")

#: The participant run's configuration (with the ``[analysis]`` record).
CONFIG_FILE = "dnnrsa_config.toml"
#: The group run's configuration.
GROUP_CONFIG_FILE = "dnnrsa_group_config.toml"
#: Lock file of the output folder (data-set-level files are written under it).
LOCK_FILE = ".dnnrsa.lock"

#: Options (RunConfig field -> command-line flag) that change what a participant-level
#: output means. Selection (participants, task, space, filters), execution (processes,
#: memory, device, plugin) and group-level options are not among them.
ANALYSIS_OPTIONS = {
    "model": "--model",
    "layers": "--layers",
    "dnn_metric": "--dnn-metric",
    "condition_column": "--conditions-from",
    "glm_method": "--glm",
    "glm_output": "--glm-output",
    "noise_model": "--noise-model",
    "noise_normalisation": "--noise-normalisation",
    "confounds": "--confounds",
    "smoothing_fwhm": "--smoothing-fwhm",
    "metric": "--metric",
    "comparator": "--comparator",
    "radius_mm": "--radius-mm",
    "min_voxels": "--min-voxels",
    "roi_atlas": "--roi-atlas",
    "roi_labels": "--roi-labels",
    "seed": "--seed",
    "allow_silent_video": "--allow-silent-video",
}

#: Analysis options the group level sets for itself: its random draws (permutations,
#: bootstrap) follow the group run's ``--seed``.
GROUP_OWN_OPTIONS = ("seed",)

#: Fields of a participant map's sidecar that must agree across the subjects of a map.
MAP_SIDECAR_FIELDS = (
    "Comparator",
    "Metric",
    "RadiusMm",
    "ModelMetric",
    "Conditions",
    "Network",
    "Weights",
)


# --------------------------------------------------------------------------- locks
@contextlib.contextmanager
def _flock(path: Path, *, blocking: bool, what: str, record_pid: bool = False):
    """Hold an exclusive lock on ``path`` (created if needed) for the block; with
    ``record_pid`` the file names the holding process (an empty lock file otherwise, so
    two runs leave identical folders)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not blocking:
                    raise
                logger.info("waiting for another dnnrsa run to finish writing %s", what)
                start = time.monotonic()
                fcntl.flock(fd, fcntl.LOCK_EX)
                logger.info("lock on %s acquired after %.1f s", what, time.monotonic() - start)
        if record_pid:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def folder_lock(output_dir: Path):
    """Exclusive lock of the output folder, for reading and writing its data-set-level
    files; waits while another run holds it (the other run holds it for seconds)."""
    return _flock(Path(output_dir) / LOCK_FILE, blocking=True, what=f"the folder {output_dir}")


def run_work_dir(config: RunConfig) -> Path:
    """The work folder of one participant run: one per selection of participants, so
    concurrent runs of different participants never share nipype's node folders, and
    a rerun of the same participants resumes where the last one stopped."""
    labels = sorted(config.participant_label)
    if not labels:
        name = "participant_all"
    elif len(labels) <= 4:
        name = "participant_" + "_".join(labels)
    else:
        digest = hashlib.sha1(" ".join(labels).encode()).hexdigest()[:10]
        name = f"participant_{labels[0]}_and_{len(labels) - 1}_more_{digest}"
    return config.work_dir / name


@contextlib.contextmanager
def hold_work_dir(path: Path):
    """Hold the work folder of a run; refuse (exit 64) when another run holds it."""
    try:
        with _flock(path / LOCK_FILE, blocking=False, what=str(path), record_pid=True):
            yield path
    except BlockingIOError:
        owner = (path / LOCK_FILE).read_text().strip() or "?"
        raise UsageError(
            f"another dnnrsa run (process {owner}) is using the work folder {path} for the "
            "same participants: wait for it to finish, or give this run its own --work-dir"
        ) from None


# --------------------------------------------------------------------------- the record
def _digest(path) -> str:
    return f"{Path(path).name} sha256:{file_sha256(path)[:16]}"


def analysis_record(config: RunConfig) -> dict:
    """What fixes the meaning of a participant run's outputs (see the module's doc)."""
    record: dict = {"dnnrsa_version": __version__}
    for field in ANALYSIS_OPTIONS:
        value = getattr(config, field)
        record[field] = list(value) if isinstance(value, tuple) else value
    if not config.checkpoints:
        record.pop("model")  # no network: the model option is not used
        record.pop("layers")
    record["checkpoints"] = [_digest(c) for c in config.checkpoints]
    if config.networks:  # absent without: folders of earlier versions keep their record
        from .preflight import resolve_networks

        record["networks"] = {n.label: n.record() for n in resolve_networks(config)}
    if config.checkpoints or config.networks:
        from .config import DEFAULT_FEATURE_BUDGET

        # with checkpoints alone, only when not the default (as earlier versions recorded)
        if config.networks or config.feature_budget != DEFAULT_FEATURE_BUDGET:
            record["feature_budget"] = config.feature_budget
    if config.encoding:  # absent without: the record of a run without it is unchanged
        record["encoding"] = {
            "components": config.encoding_components,
            "stimulus_folds": config.encoding_stimulus_folds,
            "layer_maps": config.encoding_layer_maps,
        }
        if config.encoding_mask != "brain":  # absent at the default, as in earlier records
            record["encoding"]["mask"] = config.encoding_mask
        if config.encoding_networks:  # absent at the default (every network)
            record["encoding"]["networks"] = sorted(config.encoding_networks)
    record["model_rdms"] = {name: _digest(path) for name, path in config.model_rdms}
    record["rois"] = {name: _digest(path) for name, path in config.rois}
    crop = config.face_crop
    record["face_crop"] = _digest(crop) if Path(crop).is_file() else crop
    return {k: v for k, v in record.items() if v is not None}


def _flag(key: str) -> str:
    special = {
        "checkpoints": "--checkpoint",
        "networks": "--network",
        "feature_budget": "--feature-budget",
        "encoding": "--encoding",
        "model_rdms": "--model-rdm",
        "rois": "--roi",
        "face_crop": "--face-crop",
        "dnnrsa_version": "dnnrsa version",
    }
    return ANALYSIS_OPTIONS.get(key) or special.get(key, key)


def differences(recorded: dict, current: dict) -> list[str]:
    """The analysis options that differ, as ``"--flag: A in the folder, B in this run"``."""
    out = []
    for key in sorted(set(recorded) | set(current)):
        a, b = recorded.get(key), current.get(key)
        if a != b:
            out.append(f"{_flag(key)}: {_show(a)} in the folder, {_show(b)} in this run")
    return out


def _show(value) -> str:
    if value is None or value == [] or value == {}:
        return "not given"
    if isinstance(value, list):
        return " ".join(map(str, value))
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def read_config(path: Path) -> dict | None:
    """A configuration file of ours as a dict; None when absent; exit 16 when unreadable."""
    if not path.is_file():
        return None
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DatasetInvalid(f"{path} cannot be read as TOML ({exc}): remove it or fix it") from exc


def _has_results(output_dir: Path) -> bool:
    return any(output_dir.glob("sub-*/func/*_statmap.nii.gz")) or any(
        output_dir.glob("task-*_rdm.tsv")
    )


def claim_output_folder(config: RunConfig, subjects) -> dict:
    """Check this participant run against the folder's analysis and record it.

    Call under :func:`folder_lock`, before anything is computed or written. Refuses
    (exit 64) a run whose analysis differs from the one recorded, or a folder that
    holds results without a record (an older dnnrsa, or files copied in by hand).
    Returns the record.
    """
    current = analysis_record(config)
    path = config.output_dir / CONFIG_FILE
    existing = read_config(path)
    recorded = (existing or {}).get("analysis")
    how = (
        f"results made with different options are never mixed in one folder: rerun with "
        f"the folder's options (see {path}), write into another output_dir, or delete "
        f"{config.output_dir} to start the analysis again"
    )
    if recorded is None and _has_results(config.output_dir):
        raise UsageError(
            f"{config.output_dir} holds results but no record of the options they were "
            f"made with ({CONFIG_FILE} without an [analysis] table: an older dnnrsa or files "
            f"copied in): {how}"
        )
    grids = space_grids(subjects)
    if recorded is not None:
        recorded = dict(recorded)
        recorded_grids = recorded.pop("grids", {}) or {}
        diff = differences(recorded, current)
        diff += [
            f"the grid of space {space}: {recorded_grids[space]} in the folder, {grid} in this "
            f"run (another resolution? choose one with --space {space}:res-N)"
            for space, grid in grids.items()
            if space in recorded_grids and recorded_grids[space] != grid
        ]
        if diff:
            done = ", ".join(f"sub-{s}" for s in (existing or {}).get("participants", []))
            raise UsageError(
                f"{config.output_dir} holds the analysis of {done or 'other participants'} "
                f"made with other options; this run differs in " + "; ".join(diff) + f". {how}"
            )
        grids = {**recorded_grids, **grids}
    if grids:
        current["grids"] = grids
    return current


def space_grids(subjects) -> dict[str, str]:
    """The voxel grid of each template space of this run's BOLD (``"91x109x91 at 2x2x2
    mm"``); maps of one space must share it (two resolutions of one space would give
    maps of the same name on different grids). Native spaces differ between
    participants and are left out. Runs of one participant on different grids are
    refused earlier, when the inputs are collected."""
    import nibabel as nib

    grids: dict[str, str] = {}
    first: dict[str, str] = {}
    for subject, inputs in subjects.items():
        if inputs.space == NATIVE_SPACE or not inputs.runs:
            continue
        header = nib.load(str(inputs.runs[0].bold)).header
        shape = "x".join(str(int(n)) for n in header.get_data_shape()[:3])
        zooms = "x".join(f"{float(z):g}" for z in header.get_zooms()[:3])
        grid = f"{shape} at {zooms} mm"
        if grids.setdefault(inputs.space, grid) != grid:
            raise UsageError(
                f"the BOLD of sub-{first[inputs.space]} and sub-{subject} in space "
                f"{inputs.space} lie on different grids ({grids[inputs.space]} and {grid}): "
                f"their maps could not be combined; choose one resolution with --space "
                f"{inputs.space}:res-N"
            )
        first.setdefault(inputs.space, subject)
    return grids


def write_participant_config(config: RunConfig, subjects, record: dict) -> Path:
    """``dnnrsa_config.toml``: this run's configuration, the analysis record, and every
    participant of the folder (this run's and earlier runs'). Call under the lock."""
    path = config.output_dir / CONFIG_FILE
    earlier = (read_config(path) or {}).get("participants", [])
    participants = sorted(set(earlier) | set(subjects))
    text = config.to_toml(
        extra={"participants": participants},
        tables={
            "analysis": {
                "#": "the options that fix what the outputs mean (checked by every run)",
                **record,
            }
        },
    )
    with atomic_write(path) as fh:
        fh.write(text)
    return path


# --------------------------------------------------------------------------- group level
def recorded_analysis(config: RunConfig) -> dict:
    """The folder's analysis record, for the group level (empty for an older folder)."""
    return (read_config(config.output_dir / CONFIG_FILE) or {}).get("analysis") or {}


def group_config(config: RunConfig) -> RunConfig:
    """The group run's configuration with the analysis options of the maps it combines.

    A group-level command-line value of an analysis option (for example
    ``--comparator``) that differs from the record is ignored with a warning: the
    maps were made with the recorded one.
    """
    import dataclasses

    record = recorded_analysis(config)
    defaults = RunConfig(
        bids_dir=config.bids_dir,
        output_dir=config.output_dir,
        analysis_level="group",
        work_dir=config.work_dir,
    )
    changes = {}
    for field, flag in ANALYSIS_OPTIONS.items():
        if field not in record or field in GROUP_OWN_OPTIONS:
            continue
        value = record[field]
        ours = getattr(config, field)
        value = tuple(value) if isinstance(ours, tuple) else value
        if value == ours:
            continue
        if ours != getattr(defaults, field):
            logger.warning(
                "%s %s is ignored at the group level: the maps of %s were made with %s %s",
                flag,
                _show(ours),
                config.output_dir,
                flag,
                _show(value),
            )
        changes[field] = value
    return dataclasses.replace(config, **changes) if changes else config


def check_map_groups(groups) -> None:
    """Refuse (exit 64) maps of one model whose sidecars disagree on what they mean."""
    from dnnrsa.bidsnames import read_json, sidecar_path

    for group in groups:
        seen: dict[str, tuple[object, str]] = {}
        for subject, path in zip(group.subjects, group.files, strict=True):
            meta = read_json(sidecar_path(path))
            for key in MAP_SIDECAR_FIELDS:
                if key not in meta:
                    continue
                if key not in seen:
                    seen[key] = (meta[key], subject)
                elif meta[key] != seen[key][0]:
                    first_value, first = seen[key]
                    shown = (
                        "different lists"
                        if isinstance(first_value, list)
                        else f"{first_value!r} and {meta[key]!r}"
                    )
                    raise UsageError(
                        f"the maps of {group.stem} were made with different options: {key} "
                        f"is {shown} for sub-{first} and sub-{subject} ({path}); the group "
                        "level never combines them: rerun the participants with the same "
                        "options into one output folder"
                    )


def write_group_config(config: RunConfig, groups) -> Path:
    """``dnnrsa_group_config.toml``: the group run's configuration and what it combined."""
    path = config.output_dir / GROUP_CONFIG_FILE
    subjects = sorted({s for g in groups for s in g.subjects})
    text = config.to_toml(
        extra={"participants": subjects, "n_maps": len(groups)},
        title="dnnrsa group run configuration",
    )
    with atomic_write(path) as fh:
        fh.write(text)
    return path
