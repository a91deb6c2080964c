"""The data-set-level DNN workflow: each checkpoint's features, layer RDMs and analyses,
the user's model RDMs, and the model bank every participant's searchlight compares.

Re-exported by :mod:`.workflows`.
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from dnnrsa.bidsnames import build_name

from ..interfaces.bids import WriteDerivative, WriteLayerRDMs
from ..interfaces.dnn import (
    ArmLesion,
    ArmRelevance,
    CrossRegimeSimilarity,
    DecodeStimuli,
    DNNAnalyses,
    ExtractFeatures,
    LayerRDMs,
    MergeBanks,
    UserModelRDMs,
)
from .errors import UsageError
from .preflight import Network, checkpoint_label, resolve_networks  # noqa: F401


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
    """Dataset-level models: layer RDMs of each checkpoint, of each standard network and
    the user's model RDMs.

    Each checkpoint gets its feature extraction and layer RDMs
    (:func:`_add_checkpoint_rdms`), its analyses and their tables
    (:func:`_add_dnn_analyses`) and its arm relevance and lesion
    (:func:`_add_arm_relevance`); each standard network of ``--network`` its feature
    extraction and layer RDMs (:func:`_add_network_rdms`) and its analyses, but no arm
    relevance or lesion (the study's two-armed network only); two or more networks are
    compared layer by layer (:func:`_add_cross_regime`), checkpoints first; four or more
    that read frames read the stimuli decoded once for all of them
    (:func:`_decode_node`); the user's model RDMs
    join the bank (:func:`_add_user_models`).

    Inputs
    ------
    (none: stimuli come from ``config`` and the arguments)

    Outputs
    -------
    bank_file
        The model bank (npz) compared in every participant's searchlight.
    features_<label>
        With ``--encoding``: the features of each checkpoint and each standard network
        (npz of :class:`ExtractFeatures`, :func:`encoding_labels`), which every
        participant's encoding models read.
    """
    wf = pe.Workflow(name=name)
    fields = ["bank_file"]
    if config.encoding:  # without it the workflow is the one it always was
        fields += [f"features_{label}" for label in encoding_labels(config)]
    outputnode = pe.Node(niu.IdentityInterface(fields=fields), name="outputnode")
    networks = resolve_networks(config)
    n_nets = len(config.checkpoints) + len(networks)
    n_banks = n_nets + (1 if config.model_rdms else 0)
    merge_list = pe.Node(niu.Merge(n_banks), name="merge_list")
    merge = pe.Node(MergeBanks(), name="merge_banks")
    wf.connect(merge_list, "out", merge, "bank_files")
    wf.connect(merge, "bank_file", outputnode, "bank_file")
    labels = _checkpoint_labels(config)
    fitted = encoding_labels(config) if config.encoding else []
    cross_list = None
    if n_nets >= 2:
        cross_list = pe.Node(niu.Merge(n_nets), name="merge_regimes")
        _add_cross_regime(wf, config, cross_list, labels, task, networks=networks)
    stimuli = {
        "stim_paths": stim_paths,
        "stim_labels": stim_labels,
        "stim_conditions": stim_conditions,
        "crop_file": crop_file,
        "decode": _decode_node(config, networks, stim_paths),
    }
    for k, (ckpt, label) in enumerate(zip(config.checkpoints, labels, strict=True)):
        rdms = _add_checkpoint_rdms(wf, config, ckpt, label, task=task, **stimuli)
        if label in fitted:
            wf.connect(
                wf.get_node(f"extract_{label}"), "features_file", outputnode, f"features_{label}"
            )
        entities = {"task": task, "model": label}
        _add_network_analyses(
            wf,
            config,
            rdms,
            k,
            entities,
            (merge_list, cross_list),
            stimulus_table,
            Checkpoint=str(ckpt),
        )
        _add_arm_relevance(
            wf,
            config,
            rdms,
            ckpt,
            entities,
            stim_paths=stim_paths,
            stim_labels=stim_labels,
            stimulus_table=stimulus_table,
            crop_file=crop_file,
        )
    if networks:
        import logging

        logging.getLogger("dnnrsa.workflows").info(
            "standard networks %s: layer RDMs, searchlight maps and analyses as for a "
            "checkpoint; the arm relevance, arm lesions and the study's findings are the "
            "study's two-armed network's and are skipped for them",
            ", ".join(n.label for n in networks),
        )
    for k, network in enumerate(networks, start=len(config.checkpoints)):
        rdms = _add_network_rdms(wf, config, network, task=task, **stimuli)
        if network.label in fitted:
            wf.connect(
                wf.get_node(f"extract_{network.label}"),
                "features_file",
                outputnode,
                f"features_{network.label}",
            )
        entities = {"task": task, "model": network.label}
        _add_network_analyses(
            wf,
            config,
            rdms,
            k,
            entities,
            (merge_list, cross_list),
            stimulus_table,
            **network.sidecar(),
        )
    if config.model_rdms:
        _add_user_models(wf, config, merge_list, n_banks, conditions=conditions, task=task)
    return wf


def _add_network_analyses(
    wf, config, rdms, k: int, entities: dict, merges, stimulus_table: str, **sidecar
) -> None:
    """The analyses of the ``k``-th network's layer RDMs (node ``dnn_analyses_<model>``)
    and their tables (:func:`_add_dnn_analyses`); its bank joins the model bank's merge
    and, with two or more networks, the cross-network comparison's."""
    merge_list, cross_list = merges
    analyses = pe.Node(
        DNNAnalyses(
            stimulus_table=stimulus_table,
            n_permutations=min(config.n_permutations, 1000),
            seed=config.seed,
        ),
        name=f"dnn_analyses_{entities['model']}",
    )
    wf.connect(
        [
            (rdms, analyses, [("bank_file", "bank_file")]),
            (rdms, merge_list, [("bank_file", f"in{k + 1}")]),
        ]
    )
    if cross_list is not None:
        wf.connect(rdms, "bank_file", cross_list, f"in{k + 1}")
    _add_dnn_analyses(wf, config, analyses, entities, **sidecar)


def _checkpoint_labels(config) -> list[str]:
    """The model label of every checkpoint (:func:`checkpoint_label`); two checkpoints
    with one label are refused (exit code 64)."""
    labels = [checkpoint_label(ckpt) for ckpt in config.checkpoints]
    shared = sorted({lab for lab in labels if labels.count(lab) > 1})
    if shared:
        raise UsageError(
            f"--checkpoint: several checkpoints have the model label {shared} (the regime "
            "recorded in each, else its file name); every network needs its own label"
        )
    return labels


def encoding_labels(config) -> list[str]:
    """The model labels of the networks ``--encoding`` fits
    (:func:`~.preflight.encoding_labels`), two checkpoints of one label refused (64)."""
    from .preflight import encoding_labels as fitted

    _checkpoint_labels(config)
    return fitted(config)


def _add_checkpoint_rdms(
    wf,
    config,
    ckpt: Path,
    label: str,
    *,
    task: str,
    stim_paths: list[str],
    stim_labels: list[str],
    stim_conditions: list[str],
    crop_file: str | None,
    decode=None,
):
    """Add one checkpoint's feature extraction (``extract_<label>``, which reads the
    stimuli ``decode`` decoded, when given), its layer RDMs (``layer_rdms_<label>``) and
    their writer (``write_rdms_<label>``) to ``wf``.

    Returns
    -------
    nipype.pipeline.engine.Node
        The layer RDMs node, whose ``bank_file`` holds the network's RDMs.
    """
    extract = pe.Node(
        ExtractFeatures(
            stim_files=stim_paths,
            model=config.model,
            checkpoint=str(ckpt),
            cache_dir=str(config.work_dir / "feature_cache"),
            device=config.device,
            seed=config.seed,
            use_gpu=_use_gpu(config),
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
    if decode is not None:
        wf.connect(decode, "decoded_clips", extract, "decoded_clips")
    rdms = _layer_rdms_node(config, label, stim_labels, stim_conditions)
    _connect_layer_rdms(
        wf, config, extract, rdms, label, task, {"Checkpoint": str(ckpt), "Model": config.model}
    )
    return rdms


#: The networks that read frames (checkpoints and standard networks with a visual
#: recipe) from which on the stimuli are decoded once into a store for all of them; with
#: fewer each network decodes them itself. ``benchmarks/features.py --shared-decoding``
#: (36 clips of 10 s at 480 x 360, a shared 2-core machine): with 3 networks reading
#: frames the store made all inputs 0.83 times as fast (its writing and reading cost
#: more than the decoding it saved), with 4 1.23 times as fast.
SHARED_DECODING_MIN_FRAME_NETWORKS = 4


def _frame_networks(config, networks: list[Network]) -> int:
    """How many of the checkpoints and standard networks read frames (a checkpoint that
    cannot be read here counts as one: the cross-channel network sees the video)."""
    from dnnrsa.models import get_model, load_checkpoint

    count = 0
    for ckpt in config.checkpoints:
        try:
            modalities = load_checkpoint(ckpt)["recipe"].modalities
        except (OSError, ValueError, KeyError):
            modalities = ("visual",)
        count += "visual" in modalities
    return count + sum("visual" in get_model(n.name).recipe.modalities for n in networks)


def _decode_node(config, networks: list[Network], stim_paths: list[str]):
    """The node that decodes every stimulus once (``decode_stimuli``) into a store in the
    work folder (``<work>/decoded_clips``) that the feature extraction of every network
    reads, when at least :data:`SHARED_DECODING_MIN_FRAME_NETWORKS` networks read frames
    (None otherwise: each network decodes the stimuli itself). The store keeps the frames
    the networks' recipes take (:func:`_frame_counts`) and the audio at each file's own
    rate."""
    if _frame_networks(config, networks) < SHARED_DECODING_MIN_FRAME_NETWORKS:
        return None
    decode = pe.Node(
        DecodeStimuli(
            stim_files=stim_paths,
            store_dir=str(config.work_dir / "decoded_clips"),
            n_jobs=config.nprocs,
        ),
        name="decode_stimuli",
        n_procs=config.nprocs,  # the stimuli decoded at a time
    )
    counts = _frame_counts(config, networks)
    if counts is not None:
        decode.inputs.frame_counts = counts
    return decode


def _frame_counts(config, networks: list[Network]) -> list[int] | None:
    """The frame counts of the visual recipes of the checkpoints and the standard
    networks (an empty list when none sees frames); None (every frame) when a
    checkpoint cannot be read here or a visual recipe takes no fixed count."""
    from dnnrsa.models import get_model, load_checkpoint

    try:
        recipes = [load_checkpoint(ckpt)["recipe"] for ckpt in config.checkpoints]
    except (OSError, ValueError, KeyError):
        return None
    recipes += [get_model(network.name).recipe for network in networks]
    counts = set()
    for recipe in recipes:
        if "visual" not in recipe.modalities:
            continue
        if not isinstance(getattr(recipe, "n_frames", None), int):
            return None
        counts.add(recipe.n_frames)
    return sorted(counts)


def _layer_rdms_node(config, label: str, stim_labels, stim_conditions):
    """The :class:`LayerRDMs` node of one network (``layer_rdms_<label>``)."""
    return pe.Node(
        LayerRDMs(
            stim_labels=stim_labels,
            conditions=stim_conditions,
            model_label=label,
            metric=config.dnn_metric,
            feature_budget=config.feature_budget,
            seed=config.seed,
        ),
        name=f"layer_rdms_{label}",
    )


def _connect_layer_rdms(wf, config, extract, rdms, label: str, task: str, extra: dict) -> None:
    """Feed a network's features (``extract``) to its layer RDMs (``rdms``) and add their
    writer (``write_rdms_<label>``, every sidecar with ``extra``), which always rewrites."""
    write = pe.Node(
        WriteLayerRDMs(output_dir=str(config.output_dir), task=task, extra=extra),
        name=f"write_rdms_{label}",
    )
    write.overwrite = True
    wf.connect(
        [
            (extract, rdms, [("features_file", "features_file")]),
            (rdms, write, [("bank_file", "bank_file"), ("reductions", "reductions")]),
        ]
    )


def _add_network_rdms(
    wf,
    config,
    network: Network,
    *,
    task: str,
    stim_paths: list[str],
    stim_labels: list[str],
    stim_conditions: list[str],
    crop_file: str | None,
    decode=None,
):
    """Add one standard network's feature extraction (``extract_<label>``: every layer,
    the whole frame of each stimulus, as the library evaluates the network), its layer
    RDMs (``layer_rdms_<label>``) and their writer (``write_rdms_<label>``, every
    sidecar with the network, its weights and whether it is untrained) to ``wf``.

    The network's recipe makes its inputs from the stimuli ``decode`` decoded once for
    every network (:func:`_decode_node`), when given; else it decodes them itself.

    Returns
    -------
    nipype.pipeline.engine.Node
        The layer RDMs node, whose ``bank_file`` holds the network's RDMs.
    """
    label = network.label
    extract = pe.Node(
        ExtractFeatures(
            stim_files=stim_paths,
            model=network.name,
            cache_dir=str(config.work_dir / "feature_cache"),
            device=config.device,
            seed=config.seed,
            use_gpu=_use_gpu(config),
            n_jobs=config.nprocs,
        ),
        name=f"extract_{label}",
        n_procs=config.nprocs,
    )
    extract.inputs.weights = network.weights.get("File") or network.weights["Source"]
    if config.allow_silent_video:
        extract.inputs.missing = "blank"
    if decode is not None:
        wf.connect(decode, "decoded_clips", extract, "decoded_clips")
    rdms = _layer_rdms_node(config, label, stim_labels, stim_conditions)
    _connect_layer_rdms(wf, config, extract, rdms, label, task, {**network.sidecar()})
    return rdms


def _add_arm_relevance(
    wf,
    config,
    rdms,
    ckpt: Path,
    entities: dict,
    *,
    stim_paths: list[str],
    stim_labels: list[str],
    stimulus_table: str,
    crop_file: str | None,
) -> None:
    """Add a network's arm relevance (``desc-armrelevance``) and, when the stimuli carry
    its regime's labels (:func:`_lesion_possible`), its arm lesion (``desc-armlesion``,
    ``desc-lesionoutcomes``, whose outcomes the relevance reads) to ``wf``."""
    label = entities["model"]
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
    if not _lesion_possible(ckpt, stimulus_table):
        return
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


def _add_dnn_analyses(wf, config, analyses, entities: dict, **meta) -> None:
    """Add the writers of a network's analyses (``analyses``, a :class:`DNNAnalyses`
    node) to ``wf``: category index, layer similarity and variance partitioning, each
    sidecar with ``meta`` (the checkpoint, or the standard network and its weights)."""
    label = entities["model"]
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
            **meta,
            Seed=config.seed,
            **({"Comparator": "spearman"} if field == "layer_similarity" else {}),
        )
        wf.connect(analyses, field, sink, "in_file")


def _add_user_models(wf, config, merge_list, n_banks: int, *, conditions, task: str) -> None:
    """Add the user's model RDMs (``--model-rdm``) to ``wf``: read in the order of
    ``conditions``, written at data-set level and merged as the bank's last part."""
    user = pe.Node(
        UserModelRDMs(
            names=[n for n, _ in config.model_rdms],
            rdm_files=[str(p) for _, p in config.model_rdms],
            conditions=conditions,
        ),
        name="user_model_rdms",
    )
    write_user = pe.Node(
        WriteLayerRDMs(output_dir=str(config.output_dir), task=task), name="write_user_rdms"
    )
    write_user.overwrite = True
    wf.connect(
        [
            (user, merge_list, [("bank_file", f"in{n_banks}")]),
            (user, write_user, [("bank_file", "bank_file")]),
        ]
    )


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


def _add_cross_regime(
    wf, config, bank_list, labels: list[str], task: str, networks: list[Network] = ()
) -> None:
    """Layer-by-layer similarity of every checkpoint and standard network with every
    other (checkpoints first, then the networks of ``--network``), written at dataset
    level as ``task-<t>_desc-crossregime_matrix.tsv`` (every layer of every network) and
    ``task-<t>_desc-crossregime_stats.tsv`` (one row per layer pair of two networks)."""
    extra = {
        "Checkpoints": dict(zip(labels, map(str, config.checkpoints), strict=True)),
        "Model": config.model,
    }
    if networks:
        extra["Networks"] = {n.label: n.sidecar() for n in networks}
    cross = pe.Node(
        CrossRegimeSimilarity(
            regimes=[*labels, *(n.label for n in networks)],
            extra=extra,
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
    """Whether ``--device`` resolves to the GPU (CUDA)."""
    from dnnrsa.backend import resolve_device

    return resolve_device(config.device) == "cuda"
