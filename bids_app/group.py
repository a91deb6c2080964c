"""The group level: inference on the participants' searchlight maps, and reports."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from dnnrsa.bidsnames import (
    build_name,
    is_label,
    parse_name,
    read_json,
    sidecar_path,
)

from ._groups import EncodingMapGroup, MapGroup
from .config import RunConfig
from .errors import NothingSelected
from .execution import run_workflow
from .outputs import check_map_groups, group_config, write_group_config
from .workflows import init_findings_wf, init_group_wf

logger = logging.getLogger("dnnrsa.group")

# the entities of a participant-level searchlight map, in file order
_MAP_ENTITIES = (
    ["sub", "task", "space", "model", "stat"],
    ["sub", "task", "space", "model", "layer", "stat"],
)


def _subject_map(path: Path) -> dict[str, str | None] | None:
    """The entities of a participant-level map file name, or None for any other file."""
    name = parse_name(path)
    if name.suffix != "statmap" or name.extension != ".nii.gz":
        return None
    if list(name.entities) not in _MAP_ENTITIES or not all(map(is_label, name.entities.values())):
        return None
    return {"layer": None, **name.entities}


def find_subject_maps(config: RunConfig) -> list[MapGroup]:
    """The participant-level maps in ``output_dir``, grouped by task, space, model and layer."""
    found: dict[tuple, list[tuple[str, Path, dict]]] = defaultdict(list)
    wanted = set(config.participant_label)
    for path in sorted(config.output_dir.glob("sub-*/func/*_statmap.nii.gz")):
        m = _subject_map(path)
        if m is None:
            continue
        if wanted and m["sub"] not in wanted:
            continue
        if config.task and m["task"] != config.task:
            continue
        if config.space and m["space"] != config.space:
            continue
        meta = read_json(sidecar_path(path))
        key = (m["task"], m["space"], m["model"], m["layer"], m["stat"])
        found[key].append((m["sub"], path, meta))
    if not found:
        raise NothingSelected(
            f"no participant-level maps found in {config.output_dir} for the selected "
            "participants, task and space: run the participant level first"
        )
    groups = []
    for (task, space, model, layer, stat), items in sorted(
        found.items(), key=lambda kv: str(kv[0])
    ):
        meta = items[0][2]
        groups.append(
            MapGroup(
                task=task,
                space=space,
                model=model,
                layer=layer,
                stat=stat,
                files=tuple(p for _, p, _ in items),
                subjects=tuple(s for s, _, _ in items),
                part=meta.get("Part", "model"),
                layer_index=int(meta.get("LayerIndex", 0)),
                layer_name=meta.get("LayerName", layer or model),
                network={k: meta[k] for k in ("Network", "Weights", "Untrained") if k in meta},
            )
        )
    return groups


# the entities of a participant-level encoding map (dnnrsa.encodingmaps), in file order
_ENCODING_ENTITIES = (
    ["sub", "task", "space", "model", "desc", "stat"],
    ["sub", "task", "space", "model", "band", "desc", "stat"],
    ["sub", "task", "space", "model", "layer", "desc", "stat"],
)


def find_encoding_maps(config: RunConfig) -> list[EncodingMapGroup]:
    """The participants' encoding maps (``--encoding``) in ``output_dir``, grouped by
    task, space, model, band or layer, quantity (``desc-encoding*``) and ``stat``; empty
    when the participants wrote none."""
    found: dict[tuple, list[tuple[str, Path]]] = defaultdict(list)
    wanted = set(config.participant_label)
    for path in sorted(config.output_dir.glob("sub-*/func/*_desc-encoding*_statmap.nii.gz")):
        name = parse_name(path)
        e = name.entities
        if list(e) not in _ENCODING_ENTITIES or not all(map(is_label, e.values())):
            continue
        if not e["desc"].startswith("encoding") or name.suffix != "statmap":
            continue
        if (wanted and e["sub"] not in wanted) or (config.task and e["task"] != config.task):
            continue
        if config.space and e["space"] != config.space:
            continue
        key = (
            e["task"],
            e["space"],
            e["model"],
            e.get("band"),
            e.get("layer"),
            e["desc"],
            e["stat"],
        )
        found[key].append((e["sub"], path))
    groups = []
    for (task, space, model, band, layer, desc, stat), items in sorted(
        found.items(), key=lambda kv: str(kv[0])
    ):
        groups.append(
            EncodingMapGroup(
                task=task,
                space=space,
                model=model,
                band=band,
                layer=layer,
                desc=desc,
                stat=stat,
                files=tuple(p for _, p in items),
                subjects=tuple(s for s, _ in items),
                meta=read_json(sidecar_path(items[0][1])),
            )
        )
    return groups


def usable_encoding_maps(config: RunConfig) -> list[EncodingMapGroup]:
    """:func:`find_encoding_maps` with at least 2 participants and a voxel finite in
    every participant's map (the others are left out with a warning)."""
    groups = find_encoding_maps(config)
    check_map_groups(groups)
    usable = []
    for g in groups:
        if len(g.files) < 2:
            logger.warning(
                "%s: %d participant map(s); left out of the group level", g.stem, len(g.files)
            )
        elif _has_common_voxels(g):
            usable.append(g)
    return usable


#: Planes (along the last axis) read from each map by the cheap pass of
#: :func:`_has_common_voxels`, from the first plane with a finite voxel.
COMMON_VOXEL_PLANES = 4


def _open_map(path):
    import gzip

    return gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")  # noqa: SIM115


def _stored_header(fh):
    """The NIfTI-1 header at the start of the open map ``fh``, as stored (scaling
    included), parsed by nibabel, and its layout: what fixes where and how the voxel
    data lie (byte order, header size, dim, datatype, bitpix, vox_offset, scl_slope,
    scl_inter). None when the file is too short to hold a header."""
    import nibabel as nib

    raw = fh.read(nib.Nifti1Header.template_dtype.itemsize)
    if len(raw) < nib.Nifti1Header.template_dtype.itemsize:
        return None
    hdr = nib.Nifti1Header(raw, check=False)
    # scaling as text, so that two unset (NaN) scalings compare equal
    scaling = tuple(repr(float(hdr[k])) for k in ("scl_slope", "scl_inter"))
    layout = (
        hdr.endianness,
        int(hdr["sizeof_hdr"]),
        tuple(int(d) for d in hdr["dim"]),
        int(hdr["datatype"]),
        int(hdr["bitpix"]),
        float(hdr["vox_offset"]),
        *scaling,
    )
    return hdr, layout


def _finite_planes(path, start: int, stop: int, fast=None):
    """Finiteness of planes ``start:stop`` of a 3-D map, reading the file only that far.

    ``fast``, (layout, dtype, shape, data offset) of a NIfTI-1 map: a file whose
    header (parsed by nibabel) has the same layout is read raw up to the end of plane
    ``stop``; any other through nibabel's slicing.
    """
    import nibabel as nib
    import numpy as np

    if fast is not None:
        layout, dtype, shape, offset = fast
        plane = shape[0] * shape[1]
        with _open_map(path) as fh:
            stored = _stored_header(fh)
            if stored is not None and stored[1] == layout:
                fh.seek(offset)
                n = plane * stop
                raw = fh.read(n * dtype.itemsize)
                if len(raw) == n * dtype.itemsize:
                    data = np.frombuffer(raw, dtype).reshape((shape[0], shape[1], stop), order="F")
                    return np.isfinite(data[..., start:stop])
    return np.isfinite(np.asarray(nib.load(path).dataobj[..., start:stop]))


def _has_common_voxels(group: MapGroup) -> bool:
    """Whether some voxel is finite in every subject's map of the group.

    A cheap pass first: the first map is read whole, and of every other map only the
    few planes (along the last axis, stored last) from the first plane where the
    first map has a finite voxel: a compressed map is decompressed only that far,
    and a map whose header lays the data out as the first's is read without
    nibabel's image machinery. When a voxel of those planes is finite in every map
    the answer is yes; otherwise every map is read whole, as before.
    """
    import nibabel as nib
    import numpy as np

    files = list(group.files)
    if files:
        img = nib.load(files[0])
        first = np.isfinite(np.asarray(img.dataobj))
        if first.ndim == 3 and first.any():
            planes = np.flatnonzero(first.any(axis=(0, 1)))
            start = int(planes[0])
            stop = min(start + COMMON_VOXEL_PLANES, first.shape[2])
            common = first[..., start:stop]
            fast = None
            if type(img.header) is nib.Nifti1Header:  # the header as stored, not as loaded
                with _open_map(files[0]) as fh:
                    hdr, layout = _stored_header(fh)
                scaling = np.array([hdr["scl_slope"], hdr["scl_inter"]], dtype=np.float64)
                dtype = hdr.get_data_dtype()
                if dtype.kind == "f" and not np.isinf(scaling).any():
                    fast = (layout, dtype, first.shape, int(hdr["vox_offset"]))
            for f in files[1:]:
                ok = _finite_planes(f, start, stop, fast)
                if ok.shape != common.shape:
                    break
                common = common & ok
                if not common.any():
                    break
            else:
                return True
    finite = None
    for f in files:
        ok = np.isfinite(np.asarray(nib.load(f).dataobj))
        finite = ok if finite is None else finite & ok
    if finite is None or not finite.any():
        logger.warning(
            "%s: no voxel is finite in every subject's map; left out of the group level", group.stem
        )
        return False
    return True


@dataclass(frozen=True)
class RoiSet:
    """The subjects' RDMs of one region for one task and space, and the model RDMs."""

    task: str
    space: str
    roi: str
    files: tuple[Path, ...]
    subjects: tuple[str, ...]
    model_files: tuple[Path, ...]
    model_names: tuple[str, ...]
    model_networks: tuple[str, ...] = ()
    model_parts: tuple[str, ...] = ()

    def name(self, desc: str) -> str:
        from dnnrsa.bidsnames import build_name

        ents = {"task": self.task, "space": self.space, "roi": self.roi, "desc": desc}
        return build_name(ents, "stats", ".tsv")


def find_model_rdms(output_dir: Path, task: str) -> list[tuple[str, Path, str, str]]:
    """The data set's model RDMs of a task (``task-<t>_model-<m>[_layer-<l>]_rdm.tsv``),
    each as (name ``model-<m>[_layer-<l>]``, path, network, part), in layer order."""
    from dnnrsa.bidsnames import model_stem

    found = []
    for path in sorted(output_dir.glob(f"task-{task}_model-*_rdm.tsv")):
        name = parse_name(path)
        if list(name.entities) not in (["task", "model"], ["task", "model", "layer"]):
            continue
        meta = read_json(sidecar_path(path))
        index = int(meta.get("LayerIndex", 0))
        model = name.entities["model"]
        stem = model_stem(model, name.entities.get("layer"))
        # the user's own RDMs are one set; each network's layers another
        network = model if name.entities.get("layer") else "own"
        found.append((model, index, stem, path, network, str(meta.get("Part", "model"))))
    found.sort(key=lambda item: (item[0], item[1]))
    return [(stem, path, network, part) for _, _, stem, path, network, part in found]


def min_roi_subjects(bootstrap: str) -> int:
    """Participants a region's evaluation needs: 2 when only the stimuli are resampled
    (each participant is compared with the other for the noise ceiling), 3 when the
    participants are (a bootstrap over fewer is degenerate)."""
    return 2 if bootstrap == "stimuli" else 3


def find_roi_sets(config: RunConfig) -> list[RoiSet]:
    """The participants' ROI RDMs (``sub-<s>_task-<t>_space-<sp>_roi-<NAME>_rdm.tsv``),
    grouped by task, space and region, with the data set's model RDMs of the task."""
    found: dict[tuple, list[tuple[str, Path]]] = defaultdict(list)
    wanted = set(config.participant_label)
    for path in sorted(config.output_dir.glob("sub-*/func/*_roi-*_rdm.tsv")):
        name = parse_name(path)
        if list(name.entities) != ["sub", "task", "space", "roi"]:
            continue
        e = name.entities
        if (wanted and e["sub"] not in wanted) or (config.task and e["task"] != config.task):
            continue
        if config.space and e["space"] != config.space:
            continue
        found[(e["task"], e["space"], e["roi"])].append((e["sub"], path))
    sets = []
    for (task, space, roi), items in sorted(found.items()):
        models = find_model_rdms(config.output_dir, task)
        needed = min_roi_subjects(config.roi_bootstrap)
        if len(items) < needed or not models:
            logger.warning(
                "ROI %s (task %s, space %s): %d participant RDM(s) and %d model RDM(s); the "
                "evaluation (bootstrap over %s) needs at least %d participants and 1 model: "
                "left out",
                roi,
                task,
                space,
                len(items),
                len(models),
                config.roi_bootstrap,
                needed,
            )
            continue
        sets.append(
            RoiSet(
                task=task,
                space=space,
                roi=roi,
                files=tuple(p for _, p in items),
                subjects=tuple(s for s, _ in items),
                model_files=tuple(m[1] for m in models),
                model_names=tuple(m[0] for m in models),
                model_networks=tuple(m[2] for m in models),
                model_parts=tuple(m[3] for m in models),
            )
        )
    return sets


@dataclass(frozen=True)
class StudySet:
    """What the findings table of one task and space is computed from."""

    task: str
    space: str
    networks: tuple[str, ...]
    rdm_files: tuple[tuple[Path, ...], ...]
    relevance_files: tuple[str, ...]
    outcome_files: tuple[str, ...]
    stimulus_table: Path
    searchlight_files: dict

    def name(self) -> str:
        return build_name({"task": self.task, "desc": "findings"}, "stats", ".tsv")


def find_study_sets(config: RunConfig, groups: list[MapGroup]) -> list[StudySet]:
    """The inputs of the findings table (:mod:`dnnrsa.findings`) of every task: each
    network named after a regime of the study, its layer RDMs, arm relevance and lesion
    outcomes, and each participant's maps of its cross-modal layers."""
    from dnnrsa.findings import STUDY_REGIMES

    sets = []
    for task in sorted({g.task for g in groups}):
        stim = config.output_dir / build_name({"task": task}, "stimuli", ".tsv")
        per_network: dict[str, list[Path]] = defaultdict(list)
        for _, path, network, _ in find_model_rdms(config.output_dir, task):
            if network in STUDY_REGIMES:
                per_network[network].append(path)
        if not per_network or not stim.is_file():
            continue
        networks = [r for r in STUDY_REGIMES if r in per_network]

        def table(network, desc, task=task):
            path = config.output_dir / build_name(
                {"task": task, "model": network, "desc": desc}, "stats", ".tsv"
            )
            return str(path) if path.is_file() else ""

        for space in sorted({g.space for g in groups if g.task == task}):
            searchlight = {}
            for network in networks:
                layers = [
                    g
                    for g in groups
                    if (g.task, g.space, g.model) == (task, space, network)
                    and g.layer
                    and g.part == "crossmodal"
                ]
                if not layers:
                    continue
                common = sorted(set.intersection(*(set(g.subjects) for g in layers)))
                if len(common) < 2:
                    continue
                layers.sort(key=lambda g: g.layer_index)
                searchlight[network] = [
                    [str(dict(zip(g.subjects, g.files, strict=True))[s]) for g in layers]
                    for s in common
                ]
            sets.append(
                StudySet(
                    task=task,
                    space=space,
                    networks=tuple(networks),
                    rdm_files=tuple(tuple(per_network[n]) for n in networks),
                    relevance_files=tuple(table(n, "armrelevance") for n in networks),
                    outcome_files=tuple(table(n, "lesionoutcomes") for n in networks),
                    stimulus_table=stim,
                    searchlight_files=searchlight,
                )
            )
            break  # one findings table per task (the first space)
    return sets


def run_group(config: RunConfig) -> None:
    """Check and find the participant maps, run the group workflow, build the report.

    The analysis options come from the folder's record (:func:`.outputs.group_config`);
    maps whose sidecars disagree are refused before anything is computed, and the
    group run's configuration is written as ``dnnrsa_group_config.toml``.
    """
    config = group_config(config)
    found = find_subject_maps(config)
    check_map_groups(found)
    groups = [g for g in found if _has_common_voxels(g)]
    if not groups:
        raise NothingSelected(
            "no participant-level map has a voxel that is finite in every subject"
        )
    few = [g for g in groups if len(g.files) < 2]
    if few:
        raise NothingSelected(
            f"the group level needs at least 2 participants per map; {few[0].stem} has {len(few[0].files)}"
        )
    logger.info(
        "group level: %d maps of %d participants, %d permutations",
        len(groups),
        len({s for g in groups for s in g.subjects}),
        config.n_permutations,
    )
    roi_sets = find_roi_sets(config)
    if roi_sets:
        logger.info(
            "ROI evaluation: %d region(s), bootstrap over %s, %d samples",
            len(roi_sets),
            config.roi_bootstrap,
            config.roi_n_boot,
        )
    encoding = usable_encoding_maps(config)
    if encoding:
        logger.info("encoding models: %d maps of the participants tested", len(encoding))
    write_group_config(config, groups)
    wf = init_group_wf(config, groups, roi_sets=roi_sets, encoding_groups=encoding)
    run_workflow(wf, config, label="group level")
    study_sets = find_study_sets(config, groups)
    if study_sets:  # after the maps: the findings read the participants' maps and tables
        logger.info("findings of the study: %s", ", ".join(s.name() for s in study_sets))
        run_workflow(init_findings_wf(config, study_sets), config, label="group level, findings")
    if config.reports:
        from dnnrsa.reports import build_group_report, build_subject_report

        tasks_spaces = sorted({(g.task, g.space) for g in groups})
        for task, space in tasks_spaces:
            for subject in sorted({s for g in groups for s in g.subjects}):
                build_subject_report(
                    config.output_dir, subject, task=task, space=space, alpha=config.fwe_alpha
                )
            path = build_group_report(
                config.output_dir, task=task, space=space, alpha=config.fwe_alpha
            )
            logger.info("group report: %s", path)
