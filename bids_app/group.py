"""The group level: inference on the participants' searchlight maps, and reports."""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..interfaces.bids import WriteDerivative
from ..interfaces.stats import GroupSignFlipTest, LayerWinner
from .config import RunConfig
from .errors import NothingSelected

logger = logging.getLogger("dnnrsa.group")

_MAP = re.compile(
    r"sub-(?P<sub>[A-Za-z0-9]+)_task-(?P<task>[A-Za-z0-9]+)_space-(?P<space>[A-Za-z0-9]+)_"
    r"model-(?P<model>[A-Za-z0-9]+)(?:_layer-(?P<layer>[A-Za-z0-9]+))?_stat-(?P<stat>[A-Za-z0-9]+)"
    r"_statmap\.nii\.gz$"
)


@dataclass(frozen=True)
class MapGroup:
    """The subject maps of one model (layer) for one task and space."""

    task: str
    space: str
    model: str
    layer: str | None
    stat: str
    files: tuple[Path, ...]
    subjects: tuple[str, ...]
    part: str
    layer_index: int
    layer_name: str

    @property
    def stem(self) -> str:
        layer = f"_layer-{self.layer}" if self.layer else ""
        return f"task-{self.task}_space-{self.space}_model-{self.model}{layer}"


def find_subject_maps(config: RunConfig) -> list[MapGroup]:
    """The participant-level maps in ``output_dir``, grouped by task, space, model and layer."""
    found: dict[tuple, list[tuple[str, Path, dict]]] = defaultdict(list)
    wanted = set(config.participant_label)
    for path in sorted(config.output_dir.glob("sub-*/func/*_statmap.nii.gz")):
        m = _MAP.search(path.name)
        if not m or "_desc-" in path.name:
            continue
        if wanted and m["sub"] not in wanted:
            continue
        if config.task and m["task"] != config.task:
            continue
        if config.space and m["space"] != config.space:
            continue
        side = path.with_name(path.name.replace(".nii.gz", ".json"))
        meta = json.loads(side.read_text()) if side.is_file() else {}
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
            )
        )
    return groups


def init_group_wf(config: RunConfig, groups: list[MapGroup], *, name: str = "dnnrsa_group_wf"):
    """Group workflow: a sign-flip test per model/layer, and a layer winner map per network.

    Outputs are written into ``config.output_dir`` with the names of the data flow
    (``task-<t>_space-<sp>_model-<m>_layer-<l>_stat-<t|z|p>_statmap.nii.gz`` and
    ``_clusters.tsv``).
    """
    wf = pe.Workflow(name=name, base_dir=str(config.work_dir))
    out = config.output_dir
    for g in groups:
        tag = re.sub(r"[^A-Za-z0-9]", "", f"{g.task}{g.space}{g.model}{g.layer or ''}")
        test = pe.Node(
            GroupSignFlipTest(
                in_files=[str(f) for f in g.files],
                comparator=config.comparator,
                n_permutations=config.n_permutations,
                tfce=config.tfce,
                cluster_threshold=config.cluster_threshold,
                seed=config.seed,
                device=config.device,
            ),
            name=f"test_{tag}",
        )
        sidecar = {
            "LayerName": g.layer_name,
            "Part": g.part,
            "LayerIndex": g.layer_index,
            "Comparator": config.comparator,
            "FisherZ": config.comparator in ("spearman", "pearson", "kendall_tau_a", "cosine"),
            "Test": "one-sample sign-flip permutation test across subjects (one-sided, > 0)",
            "NumberOfPermutations": config.n_permutations,
            "Subjects": list(g.subjects),
            "Sources": [str(f) for f in g.files],
        }
        outputs = [
            ("t_file", f"{g.stem}_stat-t_statmap.nii.gz", {"Statistic": "t"}),
            ("z_file", f"{g.stem}_stat-z_statmap.nii.gz", {"Statistic": "z of the uncorrected t"}),
            (
                "p_file",
                f"{g.stem}_stat-p_statmap.nii.gz",
                {"Statistic": "voxel-level FWE p (max-T)"},
            ),
            ("clusters_file", f"{g.stem}_clusters.tsv", None),
        ]
        if config.tfce:
            outputs.append(
                (
                    "p_tfce_file",
                    f"{g.stem}_desc-tfce_stat-p_statmap.nii.gz",
                    {"Statistic": "TFCE FWE p"},
                )
            )
        for field, fname, extra in outputs:
            sink = pe.Node(
                WriteDerivative(
                    out_path=str(out / fname), sidecar={**sidecar, **extra} if extra else {}
                ),
                name=f"write_{field}_{tag}",
            )
            sink.overwrite = True
            wf.connect(test, field, sink, "in_file")
    # winner-take-all across the layers of each network
    networks: dict[tuple, list[MapGroup]] = defaultdict(list)
    for g in groups:
        if g.layer:
            networks[(g.task, g.space, g.model)].append(g)
    for (task, space, model), layers in networks.items():
        if len(layers) < 2:
            continue
        layers = sorted(layers, key=lambda g: g.layer_index)
        common = sorted(set.intersection(*(set(g.subjects) for g in layers)))
        if len(common) < 2:
            continue
        per_layer = [
            [str(f) for s, f in zip(g.subjects, g.files, strict=True) if s in common]
            for g in layers
        ]
        tag = re.sub(r"[^A-Za-z0-9]", "", f"{task}{space}{model}")
        winner = pe.Node(
            LayerWinner(
                in_files=per_layer,
                comparator=config.comparator,
                n_permutations=config.n_permutations,
                seed=config.seed,
            ),
            name=f"winner_{tag}",
        )
        side = {
            "Layers": [g.layer for g in layers],
            "LayerNames": [g.layer_name for g in layers],
            "Parts": [g.part for g in layers],
            "Subjects": common,
            "Description": "index into Layers of the layer with the highest group-mean (Fisher z) score; -1 outside",
        }
        stem = f"task-{task}_space-{space}_model-{model}"
        sinks = [
            ("winner_file", f"{stem}_desc-winner_statmap.nii.gz"),
            ("margin_file", f"{stem}_desc-winnermargin_statmap.nii.gz"),
        ]
        if len(common) >= 4:  # the best-vs-second test splits the subjects in two
            sinks.append(("p_file", f"{stem}_desc-winner_stat-p_statmap.nii.gz"))
        for field, fname in sinks:
            sink = pe.Node(
                WriteDerivative(out_path=str(out / fname), sidecar=side),
                name=f"write_{field}_{tag}",
            )
            sink.overwrite = True
            wf.connect(winner, field, sink, "in_file")
    if not wf._graph.nodes():
        wf.add_nodes([pe.Node(niu.IdentityInterface(fields=["x"]), name="empty")])
    return wf


def _has_common_voxels(group: MapGroup) -> bool:
    import nibabel as nib
    import numpy as np

    finite = None
    for f in group.files:
        ok = np.isfinite(np.asarray(nib.load(f).dataobj))
        finite = ok if finite is None else finite & ok
    if finite is None or not finite.any():
        logger.warning(
            "%s: no voxel is finite in every subject's map; left out of the group level", group.stem
        )
        return False
    return True


def run_group(config: RunConfig) -> None:
    """Find participant maps, run the group workflow, build the group report."""
    from .run import run_workflow

    groups = [g for g in find_subject_maps(config) if _has_common_voxels(g)]
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
    wf = init_group_wf(config, groups)
    run_workflow(wf, config)
    if config.reports:
        from dnnrsa.reports import build_group_report, build_subject_report

        tasks_spaces = sorted({(g.task, g.space) for g in groups})
        for task, space in tasks_spaces:
            for subject in sorted({s for g in groups for s in g.subjects}):
                build_subject_report(config.output_dir, subject, task=task, space=space)
            path = build_group_report(config.output_dir, task=task, space=space)
            logger.info("group report: %s", path)
