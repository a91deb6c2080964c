"""Workflow factories: nipype workflows built from the dnnrsa interfaces.

Each factory takes the frozen :class:`~dnnrsa.bids_app.config.RunConfig` explicitly.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from dnnrsa._registries import GROUP_MAP_STATISTICS, comparator_names
from dnnrsa.bidsnames import build_name, subject_dir, to_label

from ..interfaces.bids import WriteDerivative, WriteLayerRDMs, WriteSubjectMaps
from ..interfaces.dnn import (
    ArmLesion,
    ArmRelevance,
    CrossRegimeSimilarity,
    DNNAnalyses,
    ExtractFeatures,
    LayerRDMs,
    MergeBanks,
    StudyFindings,
    UserModelRDMs,
)
from ..interfaces.glm import EstimatePatterns
from ..interfaces.roi import RoiEvaluation, RoiRDM, RoiWeightedModels
from ..interfaces.searchlight import SearchlightRSA
from ..interfaces.stats import GroupModelTest, LayerWinner
from ._groups import MapGroup, roi_comparator
from .collect import SubjectInputs
from .errors import DatasetInvalid, UsageError
from .outputs import run_work_dir
from .parser import CONFOUND_STRATEGIES
from .resources import glm_memory_gb, searchlight_memory_gb


def checkpoint_label(path: Path) -> str:
    """Model label of a checkpoint in file names: its regime if recorded, else its file name."""
    from dnnrsa.models import load_checkpoint

    try:
        regime = load_checkpoint(path).get("regime")
    except Exception:  # an unreadable checkpoint is reported by the extraction step
        regime = None
    return to_label(regime or Path(path).name.split(".")[0], fallback="dnn")


def init_dnn_wf(
    config,
    *,
    stim_paths: list[str],
    stim_labels: list[str],
    stim_conditions: list[str],
    conditions: list[str],
    stimulus_table: str,
    task: str,
    crop_file: str | None = None,
    name: str = "dnn_wf",
):
    """Dataset-level models: layer RDMs of each checkpoint and the user's model RDMs.

    Inputs
    ------
    (none: stimuli come from ``config`` and the arguments)

    Outputs
    -------
    bank_file
        The model bank (npz) compared in every participant's searchlight.
    """
    wf = pe.Workflow(name=name)
    outputnode = pe.Node(niu.IdentityInterface(fields=["bank_file"]), name="outputnode")
    n_banks = len(config.checkpoints) + (1 if config.model_rdms else 0)
    merge_list = pe.Node(niu.Merge(n_banks), name="merge_list")
    merge = pe.Node(MergeBanks(), name="merge_banks")
    wf.connect(merge_list, "out", merge, "bank_files")
    wf.connect(merge, "bank_file", outputnode, "bank_file")
    gpu = _use_gpu(config)
    out_dir = str(config.output_dir)
    labels = [checkpoint_label(ckpt) for ckpt in config.checkpoints]
    shared = sorted({lab for lab in labels if labels.count(lab) > 1})
    if shared:
        raise UsageError(
            f"--checkpoint: several checkpoints have the model label {shared} (the regime "
            "recorded in each, else its file name); every network needs its own label"
        )
    cross_list = None
    if len(config.checkpoints) >= 2:
        cross_list = pe.Node(niu.Merge(len(config.checkpoints)), name="merge_regimes")
        _add_cross_regime(wf, config, cross_list, labels, task)
    for k, (ckpt, label) in enumerate(zip(config.checkpoints, labels, strict=True)):
        extract = pe.Node(
            ExtractFeatures(
                stim_files=stim_paths,
                model=config.model,
                checkpoint=str(ckpt),
                cache_dir=str(config.work_dir / "feature_cache"),
                device=config.device,
                seed=config.seed,
                use_gpu=gpu,
                n_jobs=config.nprocs,
            ),
            name=f"extract_{label}",
            n_procs=config.nprocs,  # torch and the decoding use as many threads
        )
        if config.layers:
            extract.inputs.layers = list(config.layers)
        if crop_file:
            extract.inputs.crop_file = crop_file
        if config.allow_silent_video:
            extract.inputs.missing = "blank"
        rdms = pe.Node(
            LayerRDMs(
                stim_labels=stim_labels,
                conditions=stim_conditions,
                model_label=label,
                metric=config.dnn_metric,
            ),
            name=f"layer_rdms_{label}",
        )
        write = pe.Node(
            WriteLayerRDMs(
                output_dir=out_dir,
                task=task,
                extra={"Checkpoint": str(ckpt), "Model": config.model},
            ),
            name=f"write_rdms_{label}",
        )
        write.overwrite = True
        analyses = pe.Node(
            DNNAnalyses(
                stimulus_table=stimulus_table,
                n_permutations=min(config.n_permutations, 1000),
                seed=config.seed,
            ),
            name=f"dnn_analyses_{label}",
        )
        wf.connect(
            [
                (extract, rdms, [("features_file", "features_file")]),
                (rdms, write, [("bank_file", "bank_file")]),
                (rdms, analyses, [("bank_file", "bank_file")]),
                (rdms, merge_list, [("bank_file", f"in{k + 1}")]),
            ]
        )
        if cross_list is not None:
            wf.connect(rdms, "bank_file", cross_list, f"in{k + 1}")
        entities = {"task": task, "model": label}
        relevance = pe.Node(
            ArmRelevance(checkpoint=str(ckpt), n_boot=1000, seed=config.seed),
            name=f"arm_relevance_{label}",
        )
        write_relevance = _table_sink(
            config,
            {**entities, "desc": "armrelevance"},
            f"write_arm_relevance_{label}",
            "lesion accuracy drop and unique variance of each arm, with percentile bootstrap "
            "intervals over stimuli (dnnrsa.findings.arm_relevance_table)",
            Checkpoint=str(ckpt),
        )
        wf.connect(
            [
                (rdms, relevance, [("bank_file", "bank_file")]),
                (relevance, write_relevance, [("relevance_file", "in_file")]),
            ]
        )
        if _lesion_possible(ckpt, stimulus_table):
            lesion = pe.Node(
                ArmLesion(
                    stim_files=stim_paths,
                    stim_labels=stim_labels,
                    checkpoint=str(ckpt),
                    stimulus_table=stimulus_table,
                    device=config.device,
                ),
                name=f"arm_lesion_{label}",
            )
            if crop_file:
                lesion.inputs.crop_file = crop_file
            write_lesion = _table_sink(
                config,
                {**entities, "desc": "armlesion"},
                f"write_arm_lesion_{label}",
                "accuracy on the stimuli intact (arm none) and with each arm's input to the "
                "cross-modal part replaced by its mean",
                Checkpoint=str(ckpt),
            )
            wf.connect(lesion, "lesion_file", write_lesion, "in_file")
            write_outcomes = _table_sink(
                config,
                {**entities, "desc": "lesionoutcomes"},
                f"write_lesion_outcomes_{label}",
                "each stimulus scored by the network intact and with each arm's input to the "
                "cross-modal part replaced by its mean",
                Checkpoint=str(ckpt),
            )
            wf.connect(lesion, "outcomes_file", write_outcomes, "in_file")
            wf.connect(lesion, "outcomes_file", relevance, "outcomes_file")
        n_perm = min(config.n_permutations, 1000)
        described = {
            "category_index": (
                "categoryindex",
                "stats",
                "category index of every layer for every label set of the stimuli, with a "
                f"one-sided label-permutation p value ({n_perm} permutations)",
            ),
            "layer_similarity": (
                "layersimilarity",
                "matrix",
                "Spearman correlation of every pair of the network's layer RDMs",
            ),
            "varpart": (
                "varpart",
                "stats",
                "variance of each cross-modal layer's RDM explained uniquely by the last "
                "visual layer, uniquely by the last auditory layer, and shared",
            ),
        }
        for field, (desc, suffix, text) in described.items():
            sink = _table_sink(
                config,
                {**entities, "desc": desc},
                f"write_{field}_{label}",
                text,
                suffix=suffix,
                Checkpoint=str(ckpt),
                Seed=config.seed,
                **({"Comparator": "spearman"} if field == "layer_similarity" else {}),
            )
            wf.connect(analyses, field, sink, "in_file")
    if config.model_rdms:
        user = pe.Node(
            UserModelRDMs(
                names=[n for n, _ in config.model_rdms],
                rdm_files=[str(p) for _, p in config.model_rdms],
                conditions=conditions,
            ),
            name="user_model_rdms",
        )
        write_user = pe.Node(WriteLayerRDMs(output_dir=out_dir, task=task), name="write_user_rdms")
        write_user.overwrite = True
        wf.connect(
            [
                (user, merge_list, [("bank_file", f"in{n_banks}")]),
                (user, write_user, [("bank_file", "bank_file")]),
            ]
        )
    return wf


def _table_sink(config, entities: dict, name: str, description: str, *, suffix="stats", **meta):
    """A node writing one data-set-level table ``<entities>_<suffix>.tsv`` into the output
    folder, with a sidecar of its description and ``meta``; it always rewrites."""
    sink = pe.Node(
        WriteDerivative(
            out_path=str(config.output_dir / build_name(entities, suffix, ".tsv")),
            sidecar={"Description": description, **meta},
        ),
        name=name,
    )
    sink.overwrite = True
    return sink


def _add_cross_regime(wf, config, bank_list, labels: list[str], task: str) -> None:
    """Layer-by-layer similarity of every checkpoint with every other, written at dataset
    level as ``task-<t>_desc-crossregime_matrix.tsv`` (every layer of every network) and
    ``task-<t>_desc-crossregime_stats.tsv`` (one row per layer pair of two networks)."""
    cross = pe.Node(
        CrossRegimeSimilarity(
            regimes=labels,
            extra={
                "Checkpoints": dict(zip(labels, map(str, config.checkpoints), strict=True)),
                "Model": config.model,
            },
        ),
        name="cross_regime_similarity",
    )
    wf.connect(bank_list, "out", cross, "bank_files")
    for field, suffix in (("matrix", "matrix"), ("pairs", "stats")):
        fname = build_name({"task": task, "desc": "crossregime"}, suffix, ".tsv")
        sink = pe.Node(
            WriteDerivative(out_path=str(config.output_dir / fname)),
            name=f"write_crossregime_{field}",
        )
        sink.overwrite = True
        wf.connect([(cross, sink, [(f"{field}_file", "in_file"), (f"{field}_sidecar", "sidecar")])])


def _lesion_possible(ckpt: Path, stimulus_table: str) -> bool:
    """Whether the arm lesion can be scored: the checkpoint's regime labels the stimuli.

    Needs a column named as the checkpoint's regime whose values are the checkpoint's
    labels for at least two stimuli; otherwise the lesion is skipped with a note.
    """
    import logging

    import pandas as pd

    from dnnrsa.models import get_model, load_checkpoint

    try:
        info = load_checkpoint(ckpt)
        table = pd.read_csv(stimulus_table, sep="\t", dtype=str)
    except (OSError, ValueError):
        return False
    regime = info.get("regime")
    if not (bool(regime) and bool(get_model(info["model"]).arms)):
        return False
    if regime not in table.columns:
        # the checkpoint's training labels belong to its training clips, which the
        # stimuli of the events cannot be matched to without the column
        logging.getLogger("dnnrsa.workflows").warning(
            "arm lesion of %s skipped: the events have no %r column giving each stimulus "
            "its %s label (variance partitioning, which needs no labels, is not affected)",
            ckpt.name,
            regime,
            regime,
        )
        return False
    labels = [str(c) for c in info.get("labels", [])]
    matching = int(table[regime].isin(labels).sum())
    if matching < 2:
        values = sorted(table[regime].dropna().unique())[:10]
        logging.getLogger("dnnrsa.workflows").warning(
            "arm lesion of %s skipped: its labels %s are not the values of the events' "
            "column %r (%s) for two or more stimuli",
            ckpt.name,
            labels[:10],
            regime,
            ", ".join(values),
        )
        return False
    return True


def _use_gpu(config) -> bool:
    from dnnrsa.backend import resolve_device

    return resolve_device(config.device) == "cuda"


def confound_columns(config) -> list[str]:
    """Columns of the fMRIPrep confounds file selected by ``--confounds``."""
    columns: list[str] = []
    for item in config.confounds:
        columns.extend(CONFOUND_STRATEGIES.get(item, (item,)))
    return list(dict.fromkeys(columns))


def _write_brain_mask(bold_files, mask_file, out_path):
    """The brain mask the patterns use (dnnrsa.glm.brain_mask), with its counts as sidecar."""
    from dnnrsa.glm import brain_mask, save_brain_mask

    info = brain_mask(bold_files, mask_file)
    return str(save_brain_mask(info, out_path, sources=list(bold_files)))


def _n_models(config) -> int:
    """Model RDMs of the bank: every chosen layer of every checkpoint, and the user's."""
    n_layers = 0
    if config.checkpoints:
        from dnnrsa.models import get_model

        try:
            n_layers = len(get_model(config.model).select_layers(config.layers or None))
        except (KeyError, ValueError):  # reported when the features are extracted
            n_layers = len(config.layers) or 1
    return max(1, len(config.checkpoints) * n_layers + len(config.model_rdms))


def participant_memory_gb(config, inputs: SubjectInputs) -> dict[str, float]:
    """Memory (GB) the GLM and the searchlight nodes of one participant declare to
    nipype, from the shapes of the BOLD runs (headers only), the brain mask when one
    is given (else the grid) and the number of model RDMs
    (:mod:`dnnrsa.bids_app.resources`)."""
    import nibabel as nib

    imgs = [nib.load(str(r.bold)) for r in inputs.runs]
    shapes = [tuple(img.shape[:3]) + (img.shape[3] if len(img.shape) > 3 else 1,) for img in imgs]
    mask_voxels = None
    if inputs.mask is not None:
        mask_voxels = int(np.count_nonzero(np.asanyarray(nib.load(str(inputs.mask)).dataobj)))
    n_cond = len(inputs.conditions)
    glm = glm_memory_gb(
        shapes,
        n_cond=n_cond,
        mask_voxels=mask_voxels,
        noise_model=config.noise_model,
        n_jobs=config.nprocs,
        multivariate=config.noise_normalisation == "multivariate",
    )
    grid = max(shapes, key=lambda sh: sh[0] * sh[1] * sh[2])[:3]
    searchlight = searchlight_memory_gb(
        grid,
        mask_voxels if mask_voxels is not None else int(np.prod(grid)),
        n_runs=len(shapes),
        n_cond=n_cond,
        n_models=_n_models(config),
        affine=imgs[0].affine,
        radius_mm=config.radius_mm,
        # on the GPU the working memory of a block is the device's, not the host's
        budget_mb=0 if _use_gpu(config) else config.searchlight_memory_mb,
    )
    return {"glm": glm, "searchlight": searchlight}


def init_participant_wf(
    config, inputs: SubjectInputs, *, name: str | None = None, rois: dict | None = None
):
    """Per-participant workflow: patterns by GLM, searchlight RSA, derivatives.

    Inputs
    ------
    bank_file
        Model bank (npz) of the model RDMs to compare.

    Outputs
    -------
    map_files
        The per-model statistic maps written to the derivatives.
    """
    s = inputs.subject
    wf = pe.Workflow(name=name or f"sub_{s}_wf")
    inputnode = pe.Node(niu.IdentityInterface(fields=["bank_file"]), name="inputnode")
    outputnode = pe.Node(
        niu.IdentityInterface(fields=["map_files", "patterns_file"]), name="outputnode"
    )
    t_rs = {r.t_r for r in inputs.runs}
    if len(t_rs) != 1:
        raise DatasetInvalid(f"sub-{s}: runs have different repetition times {sorted(t_rs)}")
    memory = participant_memory_gb(config, inputs)
    patterns = pe.Node(
        EstimatePatterns(
            bold_files=[str(r.bold) for r in inputs.runs],
            events_files=[str(r.events) for r in inputs.runs],
            t_r=t_rs.pop(),
            method=config.glm_method,
            output=config.glm_output,
            condition_column=config.condition_column,
            noise_model=config.noise_model,
            noise_normalisation=config.noise_normalisation,
            seed=config.seed,
            n_jobs=config.nprocs,
        ),
        name="estimate_patterns",
        mem_gb=memory["glm"],
        n_procs=config.nprocs,  # MultiProc schedules the node on as many processors
    )
    if inputs.mask is not None:
        patterns.inputs.mask_file = str(inputs.mask)
    confounds = [r.confounds for r in inputs.runs]
    columns = confound_columns(config)
    if columns and all(c is not None for c in confounds):
        patterns.inputs.confounds_files = [str(c) for c in confounds]
        patterns.inputs.confound_columns = columns
    if config.smoothing_fwhm:
        patterns.inputs.smoothing_fwhm = config.smoothing_fwhm
    gpu = _use_gpu(config)
    searchlight = pe.Node(
        SearchlightRSA(
            radius_mm=config.radius_mm,
            metric=config.metric,
            comparator=config.comparator,
            min_voxels=config.min_voxels,
            device=config.device,
            memory_mb=config.searchlight_memory_mb,
            n_jobs=config.nprocs,
            use_gpu=gpu,
        ),
        name="searchlight",
        mem_gb=memory["searchlight"],
        n_procs=1 if gpu else config.nprocs,  # on the GPU one CPU thread feeds it
    )
    entities = {"sub": s, "task": inputs.task, "space": inputs.space}
    entities |= {"desc": config.glm_method, "stat": config.glm_output}
    write_patterns = pe.Node(
        WriteDerivative(
            out_path=str(
                subject_dir(config.output_dir, s) / build_name(entities, "statmap", ".nii.gz")
            ),
            sidecar={
                "Method": config.glm_method,
                "Output": config.glm_output,
                "NoiseModel": config.noise_model,
                "NoiseNormalisation": config.noise_normalisation,
                "ConditionColumn": config.condition_column,
                "Conditions": list(inputs.conditions),
                "Runs": [r.run for r in inputs.runs],
                "VolumeOrder": "run-major: every condition of the first run, then the next run",
                "Sources": [str(r.bold) for r in inputs.runs],
            },
        ),
        name="write_patterns",
    )
    write_patterns.overwrite = True
    mask_name = build_name(
        {"sub": s, "task": inputs.task, "space": inputs.space, "desc": "brain"}, "mask", ".nii.gz"
    )
    write_mask = pe.Node(
        niu.Function(
            function=_write_brain_mask,
            input_names=["bold_files", "mask_file", "out_path"],
            output_names=["out_file"],
        ),
        name="write_mask",
    )
    write_mask.inputs.bold_files = [str(r.bold) for r in inputs.runs]
    write_mask.inputs.mask_file = str(inputs.mask) if inputs.mask is not None else None
    write_mask.inputs.out_path = str(subject_dir(config.output_dir, s) / mask_name)
    write_mask.overwrite = True
    wf.add_nodes([write_mask])
    write_maps = pe.Node(
        WriteSubjectMaps(
            output_dir=str(config.output_dir),
            subject=s,
            task=inputs.task,
            space=inputs.space,
            comparator=config.comparator,
            metric=config.metric,
            radius_mm=config.radius_mm,
            sources=[str(r.bold) for r in inputs.runs],
        ),
        name="write_maps",
    )
    write_maps.overwrite = True
    wf.connect(
        [
            (inputnode, searchlight, [("bank_file", "bank_file")]),
            (inputnode, write_maps, [("bank_file", "bank_file")]),
            (
                patterns,
                searchlight,
                [
                    ("patterns_file", "patterns_file"),
                    ("conditions_file", "conditions_file"),
                    ("mask_file", "mask_file"),
                ],
            ),
            (patterns, write_patterns, [("patterns_file", "in_file")]),
            (searchlight, write_maps, [("maps_file", "maps_file")]),
            (write_maps, outputnode, [("out_files", "map_files")]),
            (write_patterns, outputnode, [("out_file", "patterns_file")]),
        ]
    )
    for roi_name, roi_file in (rois or {}).items():
        roi_ents = {"sub": s, "task": inputs.task, "space": inputs.space, "roi": roi_name}
        roi = pe.Node(
            RoiRDM(
                roi_file=str(roi_file),
                roi_name=roi_name,
                metric=config.metric,
                out_path=str(
                    subject_dir(config.output_dir, s) / build_name(roi_ents, "rdm", ".tsv")
                ),
                sidecar={"Sources": [str(r.bold) for r in inputs.runs]},
            ),
            name=f"roi_rdm_{roi_name}",
        )
        roi.overwrite = True
        fields = ("patterns_file", "conditions_file", "mask_file")
        wf.connect([(patterns, roi, [(f, f) for f in fields])])
    return wf


def init_dnnrsa_participant_wf(
    config, subjects: dict[str, SubjectInputs], dnn_kwargs: dict, rois: dict | None = None
):
    """The participant level: dataset-level models plus one sub-workflow per participant
    (``rois``: ROI name -> mask file, whose RDMs each participant writes)."""
    wf = pe.Workflow(name="dnnrsa_participant_wf", base_dir=str(run_work_dir(config)))
    dnn = init_dnn_wf(config, **dnn_kwargs)
    for subject, inputs in subjects.items():
        sub_wf = init_participant_wf(config, inputs, name=f"sub_{subject}_wf", rois=rois)
        wf.connect(dnn, "outputnode.bank_file", sub_wf, "inputnode.bank_file")
    return wf


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
        test = pe.Node(
            GroupModelTest(
                in_files=[[str(f) for f in g.files] for g in members],
                entities=entities,
                sidecars=sidecars,
                tfce=tfce,
                output_dir=str(out),
                n_permutations=config.n_permutations,
                cluster_threshold=config.cluster_threshold,
                seed=config.seed,
                device=config.device,
                n_jobs=config.nprocs,
            ),
            name=f"test_{to_label(f'{task}{space}{model}', fallback='')}",
            n_procs=config.nprocs,
            mem_gb=_group_mem_gb(members),
        )
        # a rerun with the same work directory resumes: the test reruns only when its
        # inputs changed or one of its outputs is missing from the derivatives
        test.overwrite = not all(p.is_file() for p in expected)
        wf.add_nodes([test])


def init_group_wf(config, groups: list[MapGroup], *, name: str = "dnnrsa_group_wf", roi_sets=()):
    """Group workflow: one test node per network for all its layers, and a layer winner
    map per network.

    Each network (task, space, model) gets one :class:`GroupModelTest` node, which tests
    every layer map (sign-flip permutations, max-T FWE per map, TFCE for the layers
    :func:`tfce_wanted` selects) and writes into ``config.output_dir`` with the names of
    the data flow (``task-<t>_space-<sp>_model-<m>_layer-<l>_stat-<t|z|p>_statmap.nii.gz``
    and ``_clusters.tsv``).
    """
    wf = pe.Workflow(name=name, base_dir=str(config.work_dir))
    out = config.output_dir
    add_group_tests(wf, config, groups)
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
        tag = to_label(f"{task}{space}{model}", fallback="")
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
        ents = {"task": task, "space": space, "model": model}
        sinks = [
            ("winner_file", build_name({**ents, "desc": "winner"}, "statmap", ".nii.gz")),
            ("margin_file", build_name({**ents, "desc": "winnermargin"}, "statmap", ".nii.gz")),
        ]
        if len(common) >= 4:  # the best-vs-second test splits the subjects in two
            p_name = build_name({**ents, "desc": "winner", "stat": "p"}, "statmap", ".nii.gz")
            sinks.append(("p_file", p_name))
        for field, fname in sinks:
            sink = pe.Node(
                WriteDerivative(out_path=str(out / fname), sidecar=side),
                name=f"write_{field}_{tag}",
            )
            sink.overwrite = True
            wf.connect(winner, field, sink, "in_file")
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
                evaluation_path=str(out / rs.name("evaluation")),
                noiseceiling_path=str(out / rs.name("noiseceiling")),
                pairwise_path=str(out / rs.name("pairwise")),
                sidecar={"ROI": rs.roi, "Subjects": list(rs.subjects)},
            ),
            name=f"roi_evaluation_{to_label(rs.task + rs.space + rs.roi)}",
        )
        ev.overwrite = True
        weighted = pe.Node(
            RoiWeightedModels(
                subject_files=[str(f) for f in rs.files],
                model_files=[str(f) for f in rs.model_files],
                model_names=list(rs.model_names),
                networks=list(rs.model_networks),
                parts=list(rs.model_parts),
                comparator=comparator,
                seed=config.seed,
                out_path=str(out / rs.name("weighted")),
                sidecar={"ROI": rs.roi, "Subjects": list(rs.subjects)},
            ),
            name=f"roi_weighted_{to_label(rs.task + rs.space + rs.roi)}",
        )
        weighted.overwrite = True
        wf.add_nodes([ev, weighted])
    if not wf.list_node_names():  # nipype cannot run a workflow without nodes
        wf.add_nodes([pe.Node(niu.IdentityInterface(fields=["x"]), name="empty")])
    return wf


def init_findings_wf(config, study_sets, *, name: str = "dnnrsa_findings_wf"):
    """The findings table of the study for each task
    (``task-<t>_desc-findings_stats.tsv``, :class:`~dnnrsa.interfaces.dnn.StudyFindings`)."""
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
                out_path=str(config.output_dir / st.name()),
                sidecar={"Space": st.space},
            ),
            name=f"findings_{to_label(st.task)}",
        )
        node.overwrite = True
        wf.add_nodes([node])
    return wf
