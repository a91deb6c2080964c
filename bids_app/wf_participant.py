"""The participant workflows: each participant's patterns (GLM), brain mask, searchlight
maps and ROI RDMs, and the participant level that feeds them the DNN workflow's model bank.

Re-exported by :mod:`.workflows`.
"""

from __future__ import annotations

import numpy as np
from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from dnnrsa._cpus import blas_threads
from dnnrsa.bidsnames import build_name, subject_dir

from ..interfaces.bids import CopyDerivatives, WriteDerivative, WriteSubjectMaps
from ..interfaces.encoding import EncodingModel
from ..interfaces.glm import EstimatePatterns
from ..interfaces.roi import RoiRDMs
from ..interfaces.searchlight import SearchlightRSA
from .collect import SubjectInputs
from .errors import DatasetInvalid
from .outputs import run_work_dir
from .parser import CONFOUND_STRATEGIES
from .resources import (
    encoding_memory_gb,
    glm_memory_gb,
    glm_runs_at_once,
    searchlight_memory_gb,
)
from .wf_dnn import _checkpoint_labels, _use_gpu, encoding_labels, init_dnn_wf, resolve_networks


def confound_columns(config) -> list[str]:
    """Columns of the fMRIPrep confounds file selected by ``--confounds``."""
    columns: list[str] = []
    for item in config.confounds:
        columns.extend(CONFOUND_STRATEGIES.get(item, (item,)))
    return list(dict.fromkeys(columns))


def _write_brain_mask(bold_files, mask_file, name):
    """The brain mask the patterns use (dnnrsa.glm.brain_mask), with its counts as sidecar,
    written as ``name`` into the node's folder (the working directory of the node): the
    paths of the mask and of its sidecar."""
    import os

    from dnnrsa.bidsnames import sidecar_path
    from dnnrsa.glm import brain_mask, save_brain_mask

    info = brain_mask(bold_files, mask_file)
    mask = save_brain_mask(info, os.path.abspath(name), sources=list(bold_files))
    return [str(mask), str(sidecar_path(mask))]


def _n_models(config) -> int:
    """Model RDMs of the bank: every chosen layer of every checkpoint, every layer of
    every standard network, and the user's."""
    n_layers = 0
    if config.checkpoints:
        from dnnrsa.models import get_model

        try:
            n_layers = len(get_model(config.model).select_layers(config.layers or None))
        except (KeyError, ValueError):  # reported when the features are extracted
            n_layers = len(config.layers) or 1
    n_models = len(config.checkpoints) * n_layers + len(config.model_rdms)
    return max(1, n_models + _network_layers(config))


def _network_layers(config) -> int:
    """Layers of every standard network of ``--network`` (each a model RDM)."""
    from dnnrsa.models import get_model

    n = 0
    for text in config.networks:
        try:
            n += len(get_model(text.partition("=")[0]).layer_names)
        except (KeyError, ValueError, ImportError):  # refused by the preflight
            n += 1
    return n


def _regions_voxels(rois: dict, affine: np.ndarray) -> int:
    """An upper bound of the voxels of the BOLD grid (``affine``) in the union of the
    regions: each mask's voxels counted on its own grid, scaled by the ratio of the voxel
    volumes, summed (headers and masks only)."""
    import nibabel as nib

    bold_volume = abs(float(np.linalg.det(affine[:3, :3])))
    total = 0.0
    for path in rois.values():
        img = nib.load(str(path))
        volume = abs(float(np.linalg.det(img.affine[:3, :3])))
        total += np.count_nonzero(np.asanyarray(img.dataobj)) * volume / bold_volume
    return int(np.ceil(total))


def participant_memory_gb(
    config, inputs: SubjectInputs, rois: dict | None = None
) -> dict[str, float]:
    """Memory (GB) the GLM and the searchlight nodes (and with ``--encoding`` the
    encoding models) of one participant declare to nipype, from the shapes of the BOLD
    runs (headers only), the brain mask when one is given (else the grid) and the number of model RDMs
    (:mod:`dnnrsa.bids_app.resources`); ``glm_runs_at_once``: the runs the GLM node fits
    at once (within ``--nprocs``, the BLAS threads each run's products use, and
    ``--mem``); ``glm_procs``: the processors they occupy. With ``--encoding-mask rois``
    the encoding models are fitted on the voxels of ``rois`` (region name -> mask file)
    only (:func:`_regions_voxels`)."""
    import nibabel as nib

    imgs = [nib.load(str(r.bold)) for r in inputs.runs]
    shapes = [tuple(img.shape[:3]) + (img.shape[3] if len(img.shape) > 3 else 1,) for img in imgs]
    mask_voxels = None
    if inputs.mask is not None:
        mask_voxels = int(np.count_nonzero(np.asanyarray(nib.load(str(inputs.mask)).dataobj)))
    n_cond = len(inputs.conditions)
    glm_kwargs = {
        "n_cond": n_cond,
        "mask_voxels": mask_voxels,
        "noise_model": config.noise_model,
        "multivariate": config.noise_normalisation == "multivariate",
        "method": config.glm_method,
    }
    blas = blas_threads() or 1
    glm_at_once = glm_runs_at_once(
        shapes, n_jobs=config.nprocs, mem_gb=config.mem_gb, blas_threads=blas, **glm_kwargs
    )
    glm = glm_memory_gb(shapes, n_jobs=glm_at_once, **glm_kwargs)
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
    memory = {
        "glm": glm,
        "glm_runs_at_once": glm_at_once,
        # the processors the node occupies: each run's products on the BLAS threads
        "glm_procs": max(1, min(config.nprocs, glm_at_once * blas)),
        "searchlight": searchlight,
    }
    if config.encoding:
        fitted = mask_voxels if mask_voxels is not None else int(np.prod(grid))
        if config.encoding_mask == "rois" and rois:
            fitted = min(fitted, _regions_voxels(rois, imgs[0].affine))
        memory["encoding"] = encoding_memory_gb(
            int(np.prod(grid)),
            fitted,
            n_runs=len(shapes),
            n_cond=n_cond,
            n_jobs=config.nprocs,
            layer_maps=config.encoding_layer_maps,
        )
    return memory


def init_participant_wf(
    config,
    inputs: SubjectInputs,
    *,
    name: str | None = None,
    rois: dict | None = None,
    stim_conditions: list[str] | None = None,
):
    """Per-participant workflow: patterns by GLM, searchlight RSA, derivatives.

    The patterns and their writer (:func:`_add_glm`), the brain mask written as a
    derivative (:func:`_add_brain_mask`), the searchlight and its maps' writer
    (:func:`_add_searchlight`), one RDM per region of ``rois``
    (:func:`_add_roi_rdms`) and, with ``--encoding``, the encoding models of each
    checkpoint and each standard network (:func:`_add_encoding`; ``stim_conditions``:
    the condition of each stimulus, the rows of the features).

    Inputs
    ------
    bank_file
        Model bank (npz) of the model RDMs to compare.
    features_<label>
        With ``--encoding``: the features (npz) of each checkpoint and each standard
        network (:func:`~.wf_dnn.encoding_labels`).

    Outputs
    -------
    map_files
        The per-model statistic maps written to the derivatives.
    patterns_file
        The patterns written to the derivatives.
    """
    s = inputs.subject
    wf = pe.Workflow(name=name or f"sub_{s}_wf")
    fields = ["bank_file"]
    if config.encoding:
        fields += [f"features_{label}" for label in encoding_labels(config)]
    inputnode = pe.Node(niu.IdentityInterface(fields=fields), name="inputnode")
    outputnode = pe.Node(
        niu.IdentityInterface(fields=["map_files", "patterns_file"]), name="outputnode"
    )
    t_rs = {r.t_r for r in inputs.runs}
    if len(t_rs) != 1:
        raise DatasetInvalid(f"sub-{s}: runs have different repetition times {sorted(t_rs)}")
    memory = participant_memory_gb(config, inputs, rois)
    patterns = _add_glm(
        wf,
        config,
        inputs,
        t_r=t_rs.pop(),
        mem_gb=memory["glm"],
        at_once=int(memory["glm_runs_at_once"]),
        procs=int(memory["glm_procs"]),
    )
    wf.connect(patterns["write"], "out_file", outputnode, "patterns_file")
    _add_brain_mask(wf, config, inputs)
    _add_searchlight(
        wf, config, inputs, patterns["node"], inputnode, outputnode, mem_gb=memory["searchlight"]
    )
    _add_roi_rdms(wf, config, inputs, patterns["node"], rois or {})
    if config.encoding:
        _add_encoding(
            wf,
            config,
            inputs,
            patterns["node"],
            inputnode,
            stim_conditions or [],
            mem_gb=memory["encoding"],
            rois=rois or {},
        )
    return wf


def _add_glm(
    wf,
    config,
    inputs: SubjectInputs,
    *,
    t_r: float,
    mem_gb: float,
    at_once: int = 1,
    procs: int | None = None,
) -> dict:
    """Add the participant's patterns (``estimate_patterns``, an :class:`EstimatePatterns`
    node with the confounds of ``--confounds`` when every run has them) and their writer
    (``write_patterns``, ``desc-<method>_stat-<output>_statmap.nii.gz``) to ``wf``. The
    node hands the patterns on uncompressed (``patterns.nii``: the searchlight, the ROI
    RDMs and the encoding models read them without decompressing the whole file, a
    region only its voxels); ``write_patterns`` gzips the derivative, whose bytes are
    those of the image saved as ``.nii.gz``.

    The node fits ``at_once`` runs at once (:func:`~dnnrsa.bids_app.resources.glm_runs_at_once`)
    and declares to nipype the processors they occupy (``n_procs``: ``procs``, each run's
    products on the BLAS threads; default ``at_once``) and the memory of that many runs
    (``mem_gb``, :func:`~dnnrsa.bids_app.resources.glm_memory_gb`), which it passes on as
    the fits' budget. Its fits run on ``--device`` (on the GPU one run after another,
    one CPU declared); the device is left out of the node's hash, as ``--nprocs`` is.

    Returns
    -------
    dict
        ``node``: the patterns node; ``write``: its writer.
    """
    s = inputs.subject
    gpu = _use_gpu(config)
    patterns = pe.Node(
        EstimatePatterns(
            bold_files=[str(r.bold) for r in inputs.runs],
            events_files=[str(r.events) for r in inputs.runs],
            t_r=t_r,
            method=config.glm_method,
            output=config.glm_output,
            condition_column=config.condition_column,
            noise_model=config.noise_model,
            noise_normalisation=config.noise_normalisation,
            seed=config.seed,
            n_jobs=1 if gpu else at_once,
            max_memory_gb=mem_gb,
            device=config.device,
            use_gpu=gpu,
        ),
        name="estimate_patterns",
        mem_gb=mem_gb,
        # MultiProc schedules the node on the processors its runs' BLAS threads use
        n_procs=1 if gpu else (procs or at_once),
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
    wf.connect(patterns, "patterns_file", write_patterns, "in_file")
    return {"node": patterns, "write": write_patterns}


def _add_brain_mask(wf, config, inputs: SubjectInputs) -> None:
    """Add the brain mask derivative (``brain_mask``, ``desc-brain_mask.nii.gz`` and its
    sidecar of counts, in the node's folder) and its sink (``write_mask``) to ``wf``.

    The mask is computed from the runs (and the given mask) as the patterns compute it;
    the searchlight and the ROI RDMs read the mask of :class:`EstimatePatterns`, which
    holds the same voxels, but its file (header) and outputs (no counts) are not those
    of the derivative, so this node makes the derivative itself.
    """
    s = inputs.subject
    mask_name = build_name(
        {"sub": s, "task": inputs.task, "space": inputs.space, "desc": "brain"}, "mask", ".nii.gz"
    )
    mask = pe.Node(
        niu.Function(
            function=_write_brain_mask,
            input_names=["bold_files", "mask_file", "name"],
            output_names=["out_files"],
        ),
        name="brain_mask",
    )
    mask.inputs.bold_files = [str(r.bold) for r in inputs.runs]
    mask.inputs.mask_file = str(inputs.mask) if inputs.mask is not None else None
    mask.inputs.name = mask_name
    mask.overwrite = True
    write_mask = pe.Node(
        CopyDerivatives(output_dir=str(subject_dir(config.output_dir, s))), name="write_mask"
    )
    write_mask.overwrite = True
    wf.connect(mask, "out_files", write_mask, "in_files")


def _add_searchlight(
    wf, config, inputs: SubjectInputs, patterns, inputnode, outputnode, *, mem_gb: float
) -> None:
    """Add the searchlight (``searchlight``, :class:`SearchlightRSA` of the patterns in
    their mask against the bank of ``inputnode``) and the writer of its maps
    (``write_maps``, one statistic map per model RDM, into ``outputnode.map_files``)."""
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
        mem_gb=mem_gb,
        n_procs=1 if gpu else config.nprocs,  # on the GPU one CPU thread feeds it
    )
    write_maps = pe.Node(
        WriteSubjectMaps(
            output_dir=str(config.output_dir),
            subject=inputs.subject,
            task=inputs.task,
            space=inputs.space,
            comparator=config.comparator,
            metric=config.metric,
            radius_mm=config.radius_mm,
            sources=[str(r.bold) for r in inputs.runs],
            model_sidecars={n.label: n.sidecar() for n in resolve_networks(config)},
        ),
        name="write_maps",
    )
    write_maps.overwrite = True
    fields = ("patterns_file", "conditions_file", "mask_file")
    wf.connect(
        [
            (inputnode, searchlight, [("bank_file", "bank_file")]),
            (inputnode, write_maps, [("bank_file", "bank_file")]),
            (patterns, searchlight, [(f, f) for f in fields]),
            (searchlight, write_maps, [("maps_file", "maps_file")]),
            (write_maps, outputnode, [("out_files", "map_files")]),
        ]
    )


def _add_roi_rdms(wf, config, inputs: SubjectInputs, patterns, rois: dict) -> None:
    """Add the participant's region RDMs (``roi_rdms``, :class:`RoiRDMs` of every region,
    ROI name -> mask file, from one opening of the patterns) and their sink
    (``write_roi_rdms``), which writes each ``roi-<name>_rdm.tsv`` and its sidecar, to
    ``wf`` (nothing without regions)."""
    if not rois:
        return
    s = inputs.subject
    node = pe.Node(
        RoiRDMs(
            roi_files=[str(f) for f in rois.values()],
            roi_names=list(rois),
            entities={"sub": s, "task": inputs.task, "space": inputs.space},
            metric=config.metric,
            sidecar={"Sources": [str(r.bold) for r in inputs.runs]},
        ),
        name="roi_rdms",
    )
    node.overwrite = True
    write = pe.Node(
        CopyDerivatives(output_dir=str(subject_dir(config.output_dir, s))),
        name="write_roi_rdms",
    )
    write.overwrite = True
    fields = ("patterns_file", "conditions_file", "mask_file")
    wf.connect(
        [
            (patterns, node, [(f, f) for f in fields]),
            (node, write, [("out_files", "in_files")]),
        ]
    )


#: The band of a standard network's encoding model: every layer it records.
ENCODING_NETWORK_BAND = "network"


def _add_encoding(
    wf,
    config,
    inputs: SubjectInputs,
    patterns,
    inputnode,
    stim_conditions,
    *,
    mem_gb: float,
    rois: dict | None = None,
) -> None:
    """Add the encoding models of each checkpoint (one band per part of the network) and
    of each standard network of ``--network`` (one band, ``network``, of all its
    layers) (``encoding_<label>``, :class:`EncodingModel` of the patterns in their mask
    from the features of ``inputnode.features_<label>``) and their sink
    (``write_encoding_<label>``, which copies the maps and sidecars into the
    participant's folder) to ``wf``. The voxels of the brain mask, or with
    ``--encoding-mask rois`` those of the union of ``rois`` (ROI name -> mask file); with
    ``rois``, each node also writes the table of its maps' means over each region. Without
    them the nodes' inputs (and hashes) are those of the brain mask alone."""
    s = inputs.subject
    labels = _checkpoint_labels(config)
    gpu = _use_gpu(config)
    regions = {}
    if rois:
        regions = {"roi_names": list(rois), "roi_files": [str(f) for f in rois.values()]}
        if config.encoding_mask == "rois":
            regions["fit_mask"] = "rois"
    runs = {"Runs": [r.run for r in inputs.runs], "Sources": [str(r.bold) for r in inputs.runs]}
    models = [
        (label, {"Checkpoint": str(ckpt), "Model": config.model, **runs}, {})
        for ckpt, label in zip(config.checkpoints, labels, strict=True)
    ]
    models += [
        (network.label, {**network.sidecar(), **runs}, {"band": ENCODING_NETWORK_BAND})
        for network in (resolve_networks(config) if config.networks else [])
    ]
    fitted = encoding_labels(config)
    for label, sidecar, band in [m for m in models if m[0] in fitted]:
        node = pe.Node(
            EncodingModel(
                **regions,
                **band,
                stim_conditions=list(stim_conditions),
                entities={"sub": s, "task": inputs.task, "space": inputs.space, "model": label},
                n_components=config.encoding_components,
                stimulus_folds=config.encoding_stimulus_folds,
                layer_maps=config.encoding_layer_maps,
                seed=config.seed,
                device=config.device,
                use_gpu=gpu,
                sidecar=sidecar,
                n_jobs=1 if gpu else config.nprocs,
            ),
            name=f"encoding_{label}",
            mem_gb=mem_gb,
            n_procs=1 if gpu else config.nprocs,
        )
        write = pe.Node(
            CopyDerivatives(output_dir=str(subject_dir(config.output_dir, s))),
            name=f"write_encoding_{label}",
        )
        write.overwrite = True
        fields = ("patterns_file", "conditions_file", "mask_file")
        wf.connect(
            [
                (patterns, node, [(f, f) for f in fields]),
                (inputnode, node, [(f"features_{label}", "features_file")]),
                (node, write, [("out_files", "in_files")]),
            ]
        )


def init_dnnrsa_participant_wf(
    config, subjects: dict[str, SubjectInputs], dnn_kwargs: dict, rois: dict | None = None
):
    """The participant level: dataset-level models plus one sub-workflow per participant
    (``rois``: ROI name -> mask file, whose RDMs each participant writes).

    Inputs
    ------
    (none: the data come from ``config``, ``subjects`` and ``dnn_kwargs``, the
    arguments of :func:`~.wf_dnn.init_dnn_wf`)

    Outputs
    -------
    (none: every result is written into the output folder)
    """
    wf = pe.Workflow(name="dnnrsa_participant_wf", base_dir=str(run_work_dir(config)))
    dnn = init_dnn_wf(config, **dnn_kwargs)
    for subject, inputs in subjects.items():
        sub_wf = init_participant_wf(
            config,
            inputs,
            name=f"sub_{subject}_wf",
            rois=rois,
            stim_conditions=dnn_kwargs.get("stim_conditions"),
        )
        wf.connect(dnn, "outputnode.bank_file", sub_wf, "inputnode.bank_file")
        if config.encoding:
            for label in encoding_labels(config):
                field = f"features_{label}"
                wf.connect(dnn, f"outputnode.{field}", sub_wf, f"inputnode.{field}")
    return wf
