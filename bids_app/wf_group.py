"""The group workflows: each network's group tests of its layer maps, the winning layer,
the ROI evaluation of every model RDM, and the study's findings table.

Re-exported by :mod:`.workflows`.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from dnnrsa._registries import GROUP_MAP_STATISTICS, comparator_names
from dnnrsa.bidsnames import build_name, to_label

from ..interfaces.bids import CopyDerivatives, WriteDerivative, WriteDerivatives
from ..interfaces.dnn import StudyFindings
from ..interfaces.roi import RoiEvaluation, RoiWeightedModels
from ..interfaces.stats import GroupModelTest, LayerWinner, statistic_entities
from ._groups import EncodingMapGroup, MapGroup, roi_comparator
from .errors import UsageError


def tfce_wanted(config, group: MapGroup) -> bool:
    """Whether a map gets TFCE: ``--tfce`` (every map) or its layer in ``--tfce-layers``
    (by label or original layer name; a model without layers by its model label)."""
    if config.tfce:
        return True
    names = {group.layer, group.layer_name} if group.layer else {group.model, group.layer_name}
    return bool(names & set(config.tfce_layers))


def _check_tfce_layers(config, groups: list[MapGroup]) -> None:
    """Every ``--tfce-layers`` value names a map of the group level (else exit code 64)."""
    known = set()
    for g in groups:
        known |= {g.layer, g.layer_name} if g.layer else {g.model, g.layer_name}
    unknown = [name for name in config.tfce_layers if name not in known]
    if unknown:
        labels = sorted({g.layer or g.model for g in groups})
        raise UsageError(
            f"--tfce-layers {unknown} name no layer of the participant maps; layers: {labels}"
        )


def _group_mem_gb(groups: list[MapGroup]) -> float:
    """Memory of one network's group test: the Fisher z of all its maps (float64, at
    most the whole grid per subject), and one map's images being read."""
    import nibabel as nib

    n_grid = int(np.prod(nib.load(groups[0].files[0]).shape[:3]))
    n_values = sum(len(g.files) for g in groups) * n_grid
    return round(8 * (n_values + 2 * max(len(g.files) for g in groups) * n_grid) / 1e9 + 0.5, 1)


def add_group_tests(wf, config, groups: list[MapGroup]) -> None:
    """Add one :class:`GroupModelTest` node per network (task, space, model) to ``wf``."""
    _check_tfce_layers(config, groups)
    out = config.output_dir
    by_model: dict[tuple, list[MapGroup]] = defaultdict(list)
    for g in groups:
        by_model[(g.task, g.space, g.model)].append(g)
    for (task, space, model), members in by_model.items():
        members = sorted(members, key=lambda g: (g.layer_index, g.layer or ""))
        entities, sidecars, tfce, expected = [], [], [], []
        for g in members:
            ents = {"task": g.task, "space": g.space, "model": g.model, "layer": g.layer}
            entities.append(ents)
            sidecars.append(
                {
                    "LayerName": g.layer_name,
                    "Part": g.part,
                    "LayerIndex": g.layer_index,
                    **g.network,
                    "Comparator": config.comparator,
                    "FisherZ": config.comparator in comparator_names(fisher_z=True),
                    "Test": "one-sample sign-flip permutation test across subjects "
                    "(one-sided, > 0)",
                    "NumberOfPermutations": config.n_permutations,
                    "Subjects": list(g.subjects),
                    "Sources": [str(f) for f in g.files],
                }
            )
            tfce.append(tfce_wanted(config, g))
            expected += [
                out / build_name({**ents, **statistic.entities}, "statmap", ".nii.gz")
                for statistic in GROUP_MAP_STATISTICS
                if statistic.derivative and (tfce[-1] or not statistic.tfce)
            ]
            expected.append(out / build_name(ents, "clusters", ".tsv"))
        label = to_label(f"{task}{space}{model}", fallback="")
        _add_group_test(
            wf, config, members, f"test_{label}", expected, out,
            entities=entities, sidecars=sidecars, tfce=tfce,
        )  # fmt: skip


#: What the sidecar of a group encoding map says of the negative subject estimates.
ENCODING_NEGATIVE_ESTIMATES = (
    "the subjects' estimates enter the test as they are, negative ones included (never "
    "clipped or set to zero); the test is one-sided (> 0), so a negative group mean gives a "
    "negative t and a p near 1"
)

#: Fields of a participant's encoding sidecar that describe that participant's fit only
#: (its penalties, folds, runs, voxels); the group sidecar leaves them out.
_SUBJECT_ENCODING_FIELDS = frozenset(
    {
        "SoftwareVersions",
        "AlphasChosen",
        "FeaturesPerBand",
        "VoxelsFitted",
        "Backend",
        "Folds",
        "Runs",
        "Conditions",
        "NegativeEstimates",
    }
)


def add_encoding_tests(wf, config, groups: list[EncodingMapGroup]) -> None:
    """Add one :class:`GroupModelTest` node per network (task, space, model) testing each
    kind of its participants' encoding maps (``--encoding``) as the RSA maps are tested:
    one-sample sign-flip test (> 0), max-T FWE, TFCE with ``--tfce``, a cluster table
    with atlas labels. R² maps are tested as they are, r maps on the Fisher z scale. The
    outputs keep the participant's entities, its ``stat`` joined to its ``desc``
    (``task-<t>_space-<sp>_model-<m>[_band-<b>|_layer-<l>]_desc-<d><r2|r>_stat-<t|z|p>``)."""
    out = config.output_dir
    by_model: dict[tuple, list[EncodingMapGroup]] = defaultdict(list)
    for g in groups:
        by_model[(g.task, g.space, g.model)].append(g)
    for (task, space, model), members in by_model.items():
        entities, sidecars, fisher, expected = [], [], [], []
        for g in members:
            ents = g.entities
            entities.append(ents)
            kept = {k: v for k, v in g.meta.items() if k not in _SUBJECT_ENCODING_FIELDS}
            fisher.append(g.stat == "r")
            sidecars.append(
                {
                    **kept,
                    "EncodingQuantity": g.desc,
                    "Measure": g.stat,
                    **({"Band": g.band} if g.band else {}),
                    "NegativeEstimates": ENCODING_NEGATIVE_ESTIMATES,
                    "FisherZ": fisher[-1],
                    "Test": "one-sample sign-flip permutation test across subjects "
                    "(one-sided, > 0)",
                    "NumberOfPermutations": config.n_permutations,
                    "Subjects": list(g.subjects),
                    "Sources": [str(f) for f in g.files],
                }
            )
            expected += [
                out / build_name(statistic_entities(ents, statistic), "statmap", ".nii.gz")
                for statistic in GROUP_MAP_STATISTICS
                if statistic.derivative and (config.tfce or not statistic.tfce)
            ]
            expected.append(out / build_name(ents, "clusters", ".tsv"))
        label = to_label(f"{task}{space}{model}", fallback="")
        _add_group_test(
            wf, config, members, f"test_encoding_{label}", expected, out,
            entities=entities, sidecars=sidecars, tfce=[bool(config.tfce)] * len(members),
            fisher_z=fisher,
        )  # fmt: skip


def _add_group_test(wf, config, members, name, expected, out, **inputs) -> None:
    """Add one GroupModelTest node (the maps of ``members``; ``inputs``: its entities,
    sidecars, tfce and optional fisher_z) and the sink that copies its outputs to
    ``out``. A rerun with the same work directory resumes: the test reruns only when its
    inputs changed or one of its ``expected`` outputs is missing from the derivatives."""
    test = pe.Node(
        GroupModelTest(
            in_files=[[str(f) for f in g.files] for g in members],
            **inputs,
            n_permutations=config.n_permutations,
            cluster_threshold=config.cluster_threshold,
            seed=config.seed,
            device=config.device,
            n_jobs=config.nprocs,
        ),
        name=name,
        n_procs=config.nprocs,
        mem_gb=_group_mem_gb(members),
    )
    test.overwrite = not all(p.is_file() for p in expected)
    sink = pe.Node(CopyDerivatives(output_dir=str(out)), name=f"write_{test.name}")
    sink.overwrite = True
    wf.connect(test, "out_files", sink, "in_files")


def init_group_wf(
    config,
    groups: list[MapGroup],
    *,
    name: str = "dnnrsa_group_wf",
    roi_sets=(),
    encoding_groups: list[EncodingMapGroup] = (),
):
    """Group workflow: one test node per network for all its layers, and a layer winner
    map per network.

    Each network (task, space, model) gets one :class:`GroupModelTest` node, which tests
    every layer map (sign-flip permutations, max-T FWE per map, TFCE for the layers
    :func:`tfce_wanted` selects) and names its outputs as the derivatives
    (``task-<t>_space-<sp>_model-<m>_layer-<l>_stat-<t|z|p>_statmap.nii.gz`` and
    ``_clusters.tsv``), and a :class:`CopyDerivatives` sink that writes them into
    ``config.output_dir``. The layer winners (:func:`_add_layer_winners`) and the ROI
    evaluations of ``roi_sets`` (:func:`_add_roi_evaluations`) follow, and, where the
    participants wrote encoding maps (``encoding_groups``), their group tests
    (:func:`add_encoding_tests`); without them the workflow is the same.

    Inputs
    ------
    (none: the maps come from ``groups``, the regions' RDMs from ``roi_sets``)

    Outputs
    -------
    (none: every result is written into the output folder)
    """
    wf = pe.Workflow(name=name, base_dir=str(config.work_dir))
    add_group_tests(wf, config, groups)
    _add_layer_winners(wf, config, groups)
    _add_roi_evaluations(wf, config, roi_sets)
    if encoding_groups:
        add_encoding_tests(wf, config, list(encoding_groups))
    if not wf.list_node_names():  # nipype cannot run a workflow without nodes
        wf.add_nodes([pe.Node(niu.IdentityInterface(fields=["x"]), name="empty")])
    return wf


def _add_layer_winners(wf, config, groups: list[MapGroup]) -> None:
    """Add the winner-take-all across the layers of each network with two or more
    layers and two or more common subjects to ``wf``: a :class:`LayerWinner` node and
    the writers of its winner and margin maps (and, from four subjects, its p map)."""
    out = config.output_dir
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
        tag = to_label(f"{task}{space}{model}", fallback="")
        winner = pe.Node(
            LayerWinner(
                in_files=per_layer,
                n_permutations=config.n_permutations,
                seed=config.seed,
            ),
            name=f"winner_{tag}",
        )
        side = {
            "Layers": [g.layer for g in layers],
            "LayerNames": [g.layer_name for g in layers],
            "Parts": [g.part for g in layers],
            **layers[0].network,
            "Subjects": common,
            "Description": "index into Layers of the layer with the highest group-mean (Fisher z) score; -1 outside",
        }
        ents = {"task": task, "space": space, "model": model}
        sinks = [
            build_name({**ents, "desc": "winner"}, "statmap", ".nii.gz"),
            build_name({**ents, "desc": "winnermargin"}, "statmap", ".nii.gz"),
        ]
        if len(common) >= 4:  # the best-vs-second test splits the subjects in two
            sinks.append(build_name({**ents, "desc": "winner", "stat": "p"}, "statmap", ".nii.gz"))
        sink = pe.Node(
            WriteDerivatives(out_paths=[str(out / fname) for fname in sinks], sidecar=side),
            name=f"write_winner_{tag}",
        )
        sink.overwrite = True
        wf.connect(winner, "out_files", sink, "in_files")


def _add_roi_evaluations(wf, config, roi_sets) -> None:
    """Add the evaluation of every model RDM in each region of ``roi_sets`` to ``wf``:
    a :class:`RoiEvaluation` node (evaluation, noise ceiling, pairwise tables) and a
    :class:`RoiWeightedModels` node (the weighted models) per region, and the sinks that
    write their tables into the output folder."""
    out = config.output_dir
    if roi_sets:  # the evaluation of every model RDM in each region
        comparator = roi_comparator(config)
    for rs in roi_sets:
        ev = pe.Node(
            RoiEvaluation(
                subject_files=[str(f) for f in rs.files],
                model_files=[str(f) for f in rs.model_files],
                model_names=list(rs.model_names),
                comparator=comparator,
                mode=config.roi_bootstrap,
                n_boot=config.roi_n_boot,
                seed=config.seed,
                device=config.device,
                sidecar={"ROI": rs.roi, "Subjects": list(rs.subjects)},
            ),
            name=f"roi_evaluation_{to_label(rs.task + rs.space + rs.roi)}",
        )
        ev.overwrite = True
        tables = pe.Node(
            WriteDerivatives(
                out_paths=[
                    str(out / rs.name(table))
                    for table in ("evaluation", "noiseceiling", "pairwise")
                ]
            ),
            name=f"write_{ev.name}",
        )
        tables.overwrite = True
        wf.connect([(ev, tables, [("out_files", "in_files"), ("out_sidecar", "sidecar")])])
        weighted = pe.Node(
            RoiWeightedModels(
                subject_files=[str(f) for f in rs.files],
                model_files=[str(f) for f in rs.model_files],
                model_names=list(rs.model_names),
                networks=list(rs.model_networks),
                parts=list(rs.model_parts),
                comparator=comparator,
                seed=config.seed,
                sidecar={"ROI": rs.roi, "Subjects": list(rs.subjects)},
            ),
            name=f"roi_weighted_{to_label(rs.task + rs.space + rs.roi)}",
        )
        weighted.overwrite = True
        _sink(wf, weighted, "out_file", out / rs.name("weighted"), name=f"write_{weighted.name}")


def _sink(wf, node, field: str, path, *, name: str) -> None:
    """Connect ``node``'s table ``field`` and its sidecar fields (``out_sidecar``) to a
    :class:`WriteDerivative` node writing them as ``path``; it always rewrites."""
    sink = pe.Node(WriteDerivative(out_path=str(path)), name=name)
    sink.overwrite = True
    wf.connect([(node, sink, [(field, "in_file"), ("out_sidecar", "sidecar")])])


def init_findings_wf(config, study_sets, *, name: str = "dnnrsa_findings_wf"):
    """The findings table of the study for each task
    (``task-<t>_desc-findings_stats.tsv``, :class:`~dnnrsa.interfaces.dnn.StudyFindings`).

    Inputs
    ------
    (none: the tables and maps come from ``study_sets``)

    Outputs
    -------
    (none: a sink writes each table into the output folder)
    """
    wf = pe.Workflow(name=name, base_dir=str(config.work_dir))
    for st in study_sets:
        node = pe.Node(
            StudyFindings(
                networks=list(st.networks),
                rdm_files=[[str(f) for f in files] for files in st.rdm_files],
                stimulus_table=str(st.stimulus_table),
                relevance_files=list(st.relevance_files),
                outcome_files=list(st.outcome_files),
                searchlight_files=dict(st.searchlight_files),
                fisher_z=config.comparator in comparator_names(fisher_z=True),
                alpha=config.fwe_alpha,
                n_permutations=min(config.n_permutations, 1000),
                seed=config.seed,
                sidecar={"Space": st.space},
            ),
            name=f"findings_{to_label(st.task)}",
        )
        node.overwrite = True
        _sink(wf, node, "out_file", config.output_dir / st.name(), name=f"write_{node.name}")
    return wf
