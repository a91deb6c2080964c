"""Checks of a participant run's inputs, before any computation.

Each check raises one of the app's errors (:mod:`dnnrsa.bids_app.errors`), whose exit
code the command line returns; the message names the file or option and what is wrong.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from .._neighbourhoods import sphere_size
from .config import RunConfig
from .errors import CannotWrite, DatasetInvalid, InputMissing, UsageError


def searchlight_memory(
    affine, n_centres: int, radius_mm: float, n_runs: int, n_cond: int, shape=None
) -> tuple[int, float]:
    """The largest sphere (voxels) and the memory (MB) a searchlight needs at least.

    The searchlight holds the members of every sphere at once (a padded index array,
    ``n_centres`` rows as wide as the largest sphere, built with 8-byte indices) and
    the data of at least one sphere (as :mod:`dnnrsa.searchlight` sizes its blocks).
    """
    size = min(sphere_size(affine, radius_mm, shape), int(n_centres))
    n_pairs = n_cond * (n_cond - 1) // 2
    one_sphere = 8 * (2 * size * n_runs * n_cond + 2 * n_cond * n_cond + 12 * n_pairs)
    return size, (8 * int(n_centres) * size + one_sphere) / 2**20


def _check_sphere_size(config: RunConfig, subjects) -> None:
    """Refuse a radius whose spheres hold fewer than ``min_voxels`` voxels, or whose
    searchlight would need more than ``--searchlight-memory-mb``."""
    import nibabel as nib
    import numpy as np

    for inputs in subjects.values():
        bold = inputs.runs[0].bold
        img = nib.load(str(bold))
        zooms = [round(float(z), 2) for z in img.header.get_zooms()[:3]]
        largest = sphere_size(img.affine, config.radius_mm, img.shape)
        if largest < config.min_voxels:
            raise UsageError(
                f"--radius-mm {config.radius_mm:g} holds at most {largest} voxels of {zooms} mm "
                f"on the grid of {bold.name}, fewer than --min-voxels {config.min_voxels}: every "
                "sphere would be empty; increase --radius-mm or lower --min-voxels"
            )
        if inputs.mask is not None:
            n_centres = int(np.count_nonzero(np.asanyarray(nib.load(str(inputs.mask)).dataobj)))
            where = f"the {n_centres} voxels of {inputs.mask.name}"
        else:  # the mask is computed later: bound it by the grid
            n_centres = int(np.prod(img.shape[:3]))
            where = f"up to {n_centres} voxels (the grid of {bold.name})"
        size, mb = searchlight_memory(
            img.affine,
            n_centres,
            config.radius_mm,
            len(inputs.runs),
            len(inputs.conditions),
            img.shape,
        )
        if mb > config.searchlight_memory_mb:
            raise UsageError(
                f"--radius-mm {config.radius_mm:g} makes spheres of up to {size} voxels of "
                f"{zooms} mm; a searchlight over {where} would need about {mb:,.0f} MB, more "
                f"than --searchlight-memory-mb {config.searchlight_memory_mb}: lower "
                "--radius-mm or raise --searchlight-memory-mb"
            )


def _nifti_complete(path) -> None:
    """Read a NIfTI file to its end; raise DatasetInvalid when it is truncated or corrupt."""
    import gzip
    import zlib

    import nibabel as nib
    import numpy as np

    try:
        img = nib.load(str(path))
        header = img.header
        expected = int(header.get_data_offset()) + int(
            np.prod(img.shape) * header.get_data_dtype().itemsize
        )
        if str(path).endswith(".gz"):
            size = 0
            with gzip.open(path, "rb") as fh:
                while chunk := fh.read(1 << 22):
                    size += len(chunk)
        else:
            size = path.stat().st_size
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise DatasetInvalid(f"{path}: cannot be read to its end ({exc})") from exc
    except Exception as exc:  # nibabel raises several error types for broken headers
        raise DatasetInvalid(f"{path}: cannot be read as NIfTI ({exc})") from exc
    if size < expected:
        raise DatasetInvalid(
            f"{path}: the file is truncated ({size} bytes of image data and header, "
            f"{expected} expected)"
        )


def _check_events_numeric(events, condition_column: str) -> None:
    """Every event with a condition has a numeric onset and duration."""
    import pandas as pd

    table = pd.read_csv(events, sep="\t", dtype=str, keep_default_na=False)
    if condition_column not in table.columns:
        return  # reported by collect
    used = table[~table[condition_column].str.strip().isin(("", "n/a"))]
    for column in ("onset", "duration"):
        if column not in used.columns:
            continue
        text = used[column].str.strip()
        numbers = pd.to_numeric(text, errors="coerce")
        bad = numbers.isna() | ~numbers.map(lambda v: bool(pd.notna(v) and abs(v) != float("inf")))
        if bad.any():
            row = int(bad.idxmax())
            raise DatasetInvalid(
                f"{events}: column {column!r} must hold numbers of seconds; row {row + 2} "
                f"(trial {used.loc[row, condition_column]!r}) has {text.loc[row]!r} "
                f"({int(bad.sum())} such row(s))"
            )


def _check_onsets_in_scan(run, condition_column: str) -> None:
    """No event with a condition starts at or after the last volume of its run.

    The design is sampled at the volumes' times, 0 to (n_volumes - 1) x TR, and the HRF
    starts at the onset: an event that starts at or after the last volume (in the
    scan's last TR, or after the scan) has a regressor of zeros, so its condition would
    get a pattern of zeros. An event that starts before the last volume and ends after
    the scan is fine (the part inside is modelled).
    """
    import nibabel as nib
    import pandas as pd

    table = pd.read_csv(run.events, sep="\t", dtype=str, keep_default_na=False)
    if condition_column not in table.columns or "onset" not in table.columns:
        return  # reported by collect
    used = table[~table[condition_column].str.strip().isin(("", "n/a"))]
    onsets = pd.to_numeric(used["onset"].str.strip(), errors="coerce")
    n_volumes = int(nib.load(str(run.bold)).shape[3])
    end = n_volumes * run.t_r
    last = (n_volumes - 1) * run.t_r
    late = onsets[onsets >= last]
    if late.empty:
        return
    rows = [
        f"row {int(i) + 2} ({used.loc[i, condition_column]!r}, onset {onsets[i]:g} s)"
        for i in late.index[:5]
    ]
    more = f" and {len(late) - 5} more" if len(late) > 5 else ""
    conditions = sorted(set(used.loc[late.index, condition_column]))
    raise DatasetInvalid(
        f"{run.events}: {len(late)} event(s) start at or after the last volume of "
        f"{run.bold.name} ({n_volumes} volumes x {run.t_r:g} s = {end:g} s; the last is "
        f"acquired at {last:g} s): "
        f"{'; '.join(rows)}{more}; their regressors would be zero at every volume, giving "
        f"condition(s) {conditions[:10]} patterns of zeros: correct the onsets (seconds from "
        "the start of the first volume) or pair the events file with its own run"
    )


def _check_repetition_times(subjects) -> None:
    """The runs of a participant share one repetition time (one GLM models them all)."""
    for s, inputs in subjects.items():
        first = inputs.runs[0]
        for run in inputs.runs[1:]:
            if run.t_r != first.t_r:
                raise DatasetInvalid(
                    f"sub-{s}: the runs have different repetition times: {first.bold.name} "
                    f"{first.t_r:g} s, {run.bold.name} {run.t_r:g} s; the patterns of a "
                    "participant are estimated with one repetition time: select the runs of "
                    "one TR (--bids-filter-file) or correct the RepetitionTime that is wrong"
                )


def _check_runs_for_metric(config: RunConfig, subjects) -> None:
    """Crossnobis distances are cross-validated over runs: every participant needs two."""
    if config.metric != "crossnobis":
        return
    for s, inputs in subjects.items():
        n_runs = len(inputs.runs)
        if n_runs < 2:
            names = ", ".join(r.bold.name for r in inputs.runs)
            raise UsageError(
                f"--metric crossnobis needs at least 2 runs per participant (its distances "
                f"are cross-validated over runs); sub-{s} has {n_runs} run ({names}): use "
                f"--metric correlation or euclidean, or leave sub-{s} out with "
                "--participant-label"
            )


def _check_encoding(config: RunConfig, subjects) -> None:
    """``--encoding`` fits the networks of ``--checkpoint`` (and, beside them, those of
    ``--network``), cross-validated over runs with an inner cross-validation over the
    training runs (two runs: over groups of training stimuli, scored in the other run): every
    participant needs two runs, three with ``--encoding-stimulus-folds 0``, and
    ``--encoding-stimulus-folds`` no more groups than conditions."""
    if not config.encoding:
        return
    if not (config.checkpoints or config.networks):
        raise UsageError(
            "--encoding fits the layers of the networks of --checkpoint and --network: "
            "give at least one --checkpoint or --network"
        )
    encoding_labels(config)  # every label of --encoding-networks is a network's (64)
    folds = config.encoding_stimulus_folds
    for s, inputs in subjects.items():
        n_runs = len(inputs.runs)
        if n_runs < 2:
            raise UsageError(
                f"--encoding needs at least 2 runs per participant (one run held out, the "
                f"model trained on the others); sub-{s} has {n_runs}: leave out --encoding, "
                f"or leave sub-{s} out with --participant-label"
            )
        if n_runs < 3 and not folds:
            raise UsageError(
                f"--encoding with --encoding-stimulus-folds 0 needs at least 3 runs per "
                f"participant (leave one run out, the penalties chosen on the other runs left "
                f"out in turn); sub-{s} has {n_runs}: give --encoding-stimulus-folds 3 or more "
                f"(with 2 runs, the penalties are chosen on groups of stimuli scored across the "
                f"runs), or leave sub-{s} "
                "out with --participant-label"
            )
        if folds and folds > len(inputs.conditions):
            raise UsageError(
                f"--encoding-stimulus-folds {folds} exceeds the {len(inputs.conditions)} "
                f"conditions of sub-{s}: give at most {len(inputs.conditions)}, or 0"
            )


def _check_stimulus_audio(config: RunConfig, subjects) -> None:
    """Every stimulus video has the audio track a network needs (66 naming the files),
    unless ``--allow-silent-video`` gives such videos silence; an unreadable stimulus
    gives 16."""
    if not (config.checkpoints or config.networks) or config.allow_silent_video:
        return
    from dnnrsa.models import get_model, load_checkpoint
    from dnnrsa.stimuli import StimulusError, has_audio_track, stimulus_kind

    from .collect import resolve_stim_file

    hearing = [
        f"--checkpoint {c.name}"
        for c in config.checkpoints
        if "auditory" in load_checkpoint(c)["recipe"].modalities
    ]
    hearing += [
        f"--network {text}"
        for text in config.networks
        if "auditory" in get_model(text.partition("=")[0]).recipe.modalities
    ]
    if not hearing:
        return
    silent: dict[Path, None] = {}
    for inputs in subjects.values():
        events = inputs.runs[0].events
        for value in inputs.stim_files:
            path = resolve_stim_file(config.bids_dir, value, events)
            if stimulus_kind(path) != "video" or path in silent:
                continue
            try:
                if not has_audio_track(path):
                    silent[path] = None
            except StimulusError as exc:
                raise DatasetInvalid(str(exc)) from None
    if silent:
        files = list(silent)
        more = (
            f" (and {len(files) - 1} more: {[p.name for p in files[1:6]]})"
            if len(files) > 1
            else ""
        )
        raise InputMissing(
            f"{files[0]}{more}: the stimulus video has no audio track, but "
            f"{hearing[0]} needs sound: add the sound track to the video, or pass "
            "--allow-silent-video to give videos without audio silence (the network's "
            "auditory layers then hear nothing for them)"
        )


def _check_output_folders(config: RunConfig, subjects) -> None:
    """Every folder the run writes in can be created and written to (exit 73 otherwise)."""
    import os

    from ..bidsnames import subject_dir

    out = config.output_dir
    folders = [out, out / "figures", *(subject_dir(out, s) for s in subjects)]
    existing = [Path(root) for root, _dirs, _files in os.walk(out)]
    for folder in dict.fromkeys([*folders, *existing]):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".dnnrsa-write-test-{os.getpid()}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            reason = (
                "a file is in the way"
                if isinstance(exc, FileExistsError | NotADirectoryError)
                else exc.strerror or str(exc)
            )
            raise CannotWrite(f"cannot write in the output folder {folder}: {reason}") from exc


def _check_model_rdms(config: RunConfig, subjects) -> None:
    """Refuse a model RDM that cannot be compared with the brain's (exit 64)."""
    from dnnrsa.rdm import validate_model_rdm

    conditions = list(next(iter(subjects.values())).conditions)
    for name, path in config.model_rdms:
        try:
            validate_model_rdm(path, conditions=conditions)
        except ValueError as exc:
            raise UsageError(f"--model-rdm {name}: {exc}") from None


def _check_rois(rois: dict[str, Path], subjects) -> None:
    """Every region keeps enough voxels inside each participant's brain on the BOLD grid
    (64 naming the region); a missing or unreadable mask gives 66 or 16."""
    import nibabel as nib
    import numpy as np

    from dnnrsa.roi import MIN_ROI_VOXELS, check_roi

    for name, path in rois.items():
        if not Path(path).is_file():
            raise InputMissing(f"--roi {name}: mask file not found: {path}")
        _nifti_complete(Path(path))
    for s, inputs in subjects.items():
        bold = nib.load(str(inputs.runs[0].bold))
        if inputs.mask is not None:
            brain = np.asarray(nib.load(str(inputs.mask)).dataobj) > 0
            what = inputs.mask.name
        else:
            first = np.asarray(bold.dataobj[..., 0] if bold.ndim == 4 else bold.dataobj)
            brain = np.isfinite(first) & (first != 0)
            what = f"the non-zero voxels of {inputs.runs[0].bold.name}"
        if brain.shape != bold.shape[:3]:
            brain = None
        for name, path in rois.items():
            try:
                check_roi(name, path, bold, brain, min_voxels=MIN_ROI_VOXELS)
            except ValueError as exc:
                raise UsageError(f"sub-{s}: {exc} (brain: {what})") from None


# --------------------------------------------------------------------------- networks
def encoding_labels(config) -> list[str]:
    """The model labels of the networks ``--encoding`` fits: every checkpoint's
    (:func:`checkpoint_label`), then every standard network's (:func:`network_label`);
    with ``--encoding-networks`` those it names (64 for a label no network has)."""
    labels = [checkpoint_label(c) for c in config.checkpoints]
    labels += [network_label(text) for text in config.networks]
    chosen = list(config.encoding_networks)
    unknown = [label for label in chosen if label not in labels]
    if unknown:
        raise UsageError(
            f"--encoding-networks {' '.join(unknown)}: no network of this run has "
            f"{'these labels' if len(unknown) > 1 else 'this label'}; the model labels are "
            f"{', '.join(labels) or 'none'}"
        )
    return [label for label in labels if not chosen or label in chosen]


def checkpoint_label(path: Path) -> str:
    """Model label of a checkpoint in file names: its regime if recorded, else its file name."""
    from dnnrsa.bidsnames import to_label
    from dnnrsa.models import load_checkpoint

    try:
        regime = load_checkpoint(path).get("regime")
    except Exception:  # an unreadable checkpoint is reported by the extraction step
        regime = None
    return to_label(regime or Path(path).name.split(".")[0], fallback="dnn")


def network_label(text: str) -> str:
    """Model label of a standard network (``--network``) in file names.

    The letters and digits of the architecture (the name after the family's ``/``),
    after ``timm`` for timm's networks; then ``random`` for the untrained network
    (``NAME=random``), nothing for the library's own weights (``NAME``, or a file with
    the library's own file name), else the letters and digits of the weight file's name
    before its first dot: ``torchvision/r3d_18`` -> ``r3d18``,
    ``torchvision/r3d_18=random`` -> ``r3d18random``, ``timm/resnet50`` ->
    ``timmresnet50``, ``torchaudio/hubert_base=/w/hubert_emotion.pth`` ->
    ``hubertbasehubertemotion``.
    """
    from dnnrsa.bidsnames import to_label
    from dnnrsa.models import get_model
    from dnnrsa.models.standard import RANDOM, parse_network

    name, source = parse_network(text)
    family, _, arch = name.partition("/")
    label = to_label(arch or name, fallback="network")
    if family == "timm":
        label = "timm" + label
    if source is None:
        return label
    if source == RANDOM:
        return label + "random"
    official = getattr(get_model(name), "weights", None)
    if official is not None and Path(source).name == official.file_name:
        return label
    return label + to_label(Path(source).name.split(".")[0], fallback="file")


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    from .._io import file_sha256

    return file_sha256(path)


@dataclass(frozen=True)
class Network:
    """A standard network of ``--network``, as the run uses it.

    ``text`` as given (``NAME``, ``NAME=FILE``, ``NAME=random``), ``name`` (registry
    name), ``source`` (the file or ``random``; None: the library's own file), ``label``
    (:func:`network_label`), ``parts`` (its layers' parts, in layer order), and
    ``weights``: where the weights come from, as recorded in every sidecar of its
    outputs (``Source``: ``random``, ``file`` or ``cache``; ``File`` and ``SHA256`` of
    the weight file, or ``Seed`` of the untrained network) and ``untrained``.
    """

    text: str
    name: str
    source: str | None
    label: str
    parts: tuple[str, ...]
    weights: dict
    untrained: bool

    def sidecar(self) -> dict:
        """The fields every sidecar of the network's outputs carries."""
        return {
            "Network": self.name,
            "Weights": dict(self.weights),
            "Untrained": self.untrained,
        }

    def record(self) -> str:
        """The network and its weights in the output folder's ``[analysis]`` record."""
        if self.untrained:
            return f"{self.name} random seed {self.weights['Seed']}"
        return f"{self.name} {Path(self.weights['File']).name} sha256:{self.weights['SHA256']}"


def resolve_network(text: str, seed: int = 0) -> Network:
    """The :class:`Network` of ``--network TEXT``: its registry entry and its weights
    (the file hashed, nothing built). Raises ValueError for an unknown name or a network
    that is not a standard one, :class:`~dnnrsa.models.standard.WeightsNotFound` when
    the weights are not where they are looked for."""
    from dnnrsa.models import get_model
    from dnnrsa.models.standard import RANDOM, locate_weights, parse_network

    name, source = parse_network(text)
    spec = get_model(name)
    if spec.weights is None:
        raise ValueError(
            f"{name!r} is not a standard network (it has no published weights); a network "
            "trained with dnnrsa-train is given with --model and --checkpoint"
        )
    parts = tuple(spec.parts[n] for n in spec.layer_names)
    if source == RANDOM:
        weights = {"Source": RANDOM, "Seed": int(seed)}
        return Network(text, name, source, network_label(text), parts, weights, True)
    path, kind = locate_weights(spec, source, option="--network ")
    stat = path.stat()
    digest = _sha256(str(path), stat.st_size, stat.st_mtime_ns)
    weights = {"Source": kind, "File": str(path), "SHA256": digest}
    return Network(text, name, source, network_label(text), parts, weights, False)


def resolve_networks(config: RunConfig) -> list[Network]:
    """Every network of ``--network``, in order (:func:`resolve_network`)."""
    return [resolve_network(text, config.seed) for text in config.networks]


def _check_networks(config: RunConfig) -> None:
    """Every ``--network`` is a registered standard network (64, pointing to
    ``dnnrsa --list-networks``), its weights are where they are looked for (66 naming
    the file expected and where to put it) and fit its architecture (64 naming the
    first tensor that does not), and every network and checkpoint has its own label
    (64)."""
    from dnnrsa.models.standard import RANDOM, WeightsError, WeightsNotFound, load_network

    labels: dict[str, str] = {}
    for ckpt in config.checkpoints:
        labels.setdefault(checkpoint_label(ckpt), f"--checkpoint {Path(ckpt).name}")
    for text in config.networks:
        name = text.partition("=")[0]
        try:
            network = resolve_network(text, config.seed)
        except WeightsNotFound as exc:
            raise InputMissing(f"--network {text}: {exc}") from None
        except ImportError as exc:
            raise UsageError(f"--network {name}: {exc}") from None
        except (ValueError, KeyError) as exc:
            known = "not a registered network" if "must be one of" in str(exc) else str(exc)
            raise UsageError(
                f"--network {name}: {known}; `dnnrsa --list-networks` lists the networks "
                "(torchvision/..., torchaudio/..., timm/<any timm architecture>)"
            ) from None
        if network.source != RANDOM:
            try:  # built and loaded once here, so a file of another network costs seconds
                load_network(network.name, network.weights["File"], seed=config.seed)
            except WeightsNotFound as exc:
                raise InputMissing(f"--network {text}: {exc}") from None
            except WeightsError as exc:
                raise UsageError(f"--network {text}: {exc}") from None
        if network.label in labels:
            raise UsageError(
                f"--network {text} has the model label {network.label!r} of "
                f"{labels[network.label]}; every network needs its own label: give the "
                "weight file another name"
            )
        labels[network.label] = f"--network {text}"


def preflight(config: RunConfig, subjects, rois: dict[str, Path] | None = None) -> None:
    """Check every selected input before any computation, so a mistake costs seconds.

    Every BOLD file and mask is read to its end (16 naming a truncated file), every
    events file has numeric onsets and durations, none after the end of its scan (16),
    every ``--network`` is known (64) with weights found (66) that fit it (64),
    the runs of a participant share one repetition time (16), ``--metric crossnobis``
    has two runs per participant (64), ``--encoding`` a network and two runs per
    participant, three without stimulus folds (64), every stimulus video has the audio track a
    checkpoint needs (66, unless ``--allow-silent-video``), every model RDM is usable
    (64), every output folder can be written (73), and the searchlight's spheres fit
    the grid and the memory budget (64).
    """
    _check_networks(config)
    _check_repetition_times(subjects)
    _check_runs_for_metric(config, subjects)
    _check_encoding(config, subjects)
    for inputs in subjects.values():
        for run in inputs.runs:
            _nifti_complete(run.bold)
            _check_events_numeric(run.events, config.condition_column)
            _check_onsets_in_scan(run, config.condition_column)
            if run.mask is not None:
                _nifti_complete(run.mask)
    _check_stimulus_audio(config, subjects)
    _check_model_rdms(config, subjects)
    _check_output_folders(config, subjects)
    _check_sphere_size(config, subjects)
    if rois:
        _check_rois(rois, subjects)
