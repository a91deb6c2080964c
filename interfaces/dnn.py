"""Nipype interfaces for the DNN side: features, layer RDMs, model banks, DNN analyses."""

from __future__ import annotations

import json
import os

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from dnnrsa._io import atomic_save_npz


class _ExtractFeaturesInputSpec(BaseInterfaceInputSpec):
    stim_files = InputMultiObject(
        File(exists=True), mandatory=True, desc="stimulus files, in order"
    )
    model = traits.Str("crosschannel", usedefault=True, desc="registered model name")
    checkpoint = File(exists=True, desc="trained checkpoint (seeded random weights without one)")
    weights = traits.Str(
        desc="a standard network's weights: a state dict file or 'random' (the seeded "
        "untrained network) (default: the library's own file in $TORCH_HOME)"
    )
    layers = traits.List(traits.Str, desc="layers to keep (default: all)")
    cache_dir = traits.Directory(desc="activation cache shared between runs")
    device = traits.Enum("auto", "cpu", "cuda", usedefault=True)
    seed = traits.Int(0, usedefault=True)
    crop_file = File(
        exists=True, desc="crop table (TSV: stim_file, x0, y0, x1, y1) (default: centre)"
    )
    use_gpu = traits.Bool(
        False, usedefault=True, desc="runs on a GPU (nipype schedules it on a GPU slot)"
    )
    missing = traits.Enum(
        "error",
        "blank",
        desc="a video without the audio the network needs: 'error' (default) or 'blank' (silence)",
    )
    n_jobs = traits.Int(
        -1,
        usedefault=True,
        nohash=True,
        desc="CPU threads of the decoding and of torch (-1: the CPUs the process may use); "
        "the activations do not depend on it",
    )
    decoded_clips = File(
        exists=True,
        nohash=True,
        desc="the stimuli decoded once for every network (JSON of DecodeStimuli); the "
        "activations do not depend on it",
    )


class _ExtractFeaturesOutputSpec(TraitedSpec):
    features_file = File(exists=True, desc="npz: one array per layer, plus names and parts")


class ExtractFeatures(SimpleInterface):
    """Activations of every named layer of a DNN for a list of stimuli.

    Calls :func:`dnnrsa.features.extract_features`.
    """

    input_spec = _ExtractFeaturesInputSpec
    output_spec = _ExtractFeaturesOutputSpec

    def _run_interface(self, runtime):
        from dnnrsa.features import extract_features

        fs = extract_features(
            list(self.inputs.stim_files),
            self.inputs.model,
            checkpoint=self.inputs.checkpoint if isdefined(self.inputs.checkpoint) else None,
            weights=self.inputs.weights if isdefined(self.inputs.weights) else None,
            layers=self.inputs.layers or None,
            cache_dir=self.inputs.cache_dir if isdefined(self.inputs.cache_dir) else None,
            device=self.inputs.device,
            seed=self.inputs.seed,
            crop_boxes=self.inputs.crop_file if isdefined(self.inputs.crop_file) else None,
            missing=self.inputs.missing if isdefined(self.inputs.missing) else "error",
            n_jobs=self.inputs.n_jobs,
            decoded_clips=(
                self.inputs.decoded_clips if isdefined(self.inputs.decoded_clips) else None
            ),
        )
        names = fs.layer_names
        arrays = {f"layer{i:03d}": fs.activations[n] for i, n in enumerate(names)}
        out = os.path.join(runtime.cwd, "features.npz")
        atomic_save_npz(
            out,
            layer_names=np.array(names),
            parts=np.array([fs.parts[n] for n in names]),
            stimuli=np.array([os.path.basename(s) for s in fs.stimuli]),
            model=np.array(fs.model),
            labels=np.array(fs.labels, dtype=str),
            weights=np.array(json.dumps(getattr(fs, "weights", None) or {}, default=str)),
            **arrays,
        )
        self._results["features_file"] = out
        return runtime


class _DecodeStimuliInputSpec(BaseInterfaceInputSpec):
    stim_files = InputMultiObject(
        File(exists=True), mandatory=True, desc="stimulus files, in order"
    )
    store_dir = traits.Str(mandatory=True, desc="folder of the decoded stimuli (created)")
    frame_counts = traits.List(
        traits.Int,
        desc="the frame counts of the networks' recipes: the frames each takes are kept "
        "(default: every frame)",
    )
    n_jobs = traits.Int(
        -1,
        usedefault=True,
        nohash=True,
        desc="stimuli decoded at a time (-1: the CPUs the process may use)",
    )


class _DecodeStimuliOutputSpec(TraitedSpec):
    decoded_clips = File(exists=True, desc="JSON describing the store, for ExtractFeatures")


class DecodeStimuli(SimpleInterface):
    """Decode every stimulus once into a store on disk that the feature extraction of
    every network reads (:class:`dnnrsa._decodedclips.DecodedClips`); stimuli already
    in it are not decoded again.
    """

    input_spec = _DecodeStimuliInputSpec
    output_spec = _DecodeStimuliOutputSpec

    def _run_interface(self, runtime):
        from dnnrsa._decodedclips import DecodedClips

        counts = self.inputs.frame_counts if isdefined(self.inputs.frame_counts) else None
        store = DecodedClips(self.inputs.store_dir, counts)
        store.fill(list(self.inputs.stim_files), n_jobs=self.inputs.n_jobs)
        self._results["decoded_clips"] = str(
            store.save(os.path.join(runtime.cwd, "decoded_clips.json"))
        )
        return runtime


class _LayerRDMsInputSpec(BaseInterfaceInputSpec):
    features_file = File(exists=True, mandatory=True)
    stim_labels = traits.List(traits.Str, mandatory=True, desc="stimulus names, rows of features")
    conditions = traits.List(
        traits.Str,
        mandatory=True,
        desc="condition of each stimulus (rows with one condition are averaged)",
    )
    model_label = traits.Str(mandatory=True, desc="label of this network in file names")
    metric = traits.Str("correlation", usedefault=True)
    feature_budget = traits.Int(
        0,
        usedefault=True,
        desc="a layer with more features per stimulus is reduced to this many by a seeded "
        "sparse random projection (dnnrsa.featurebudget) before its RDM (0: never)",
    )
    seed = traits.Int(0, usedefault=True, desc="seed of the projections (with the layer name)")


class _LayerRDMsOutputSpec(TraitedSpec):
    bank_file = File(exists=True, desc="npz model bank: one RDM per layer")
    reductions = traits.Dict(
        desc="layer name -> sidecar field of its reduction (only the layers reduced)"
    )


class LayerRDMs(SimpleInterface):
    """One RDM per layer from extracted activations (:func:`dnnrsa.analysis.layer_rdms`).

    A layer with more features per stimulus than ``feature_budget`` is first reduced
    to that many by :func:`dnnrsa.featurebudget.reduce_features` (the layers are read
    and reduced one at a time); ``reductions`` says which, from how many features to how many.
    """

    input_spec = _LayerRDMsInputSpec
    output_spec = _LayerRDMsOutputSpec

    def _run_interface(self, runtime):
        from dnnrsa.modelbank import budgeted_layer_bank

        if len(self.inputs.conditions) != len(self.inputs.stim_labels):
            raise ValueError("conditions must have one entry per stimulus")
        with np.load(self.inputs.features_file) as data:
            names = [str(n) for n in data["layer_names"]]
            bank, reductions = budgeted_layer_bank(
                ((n, data[f"layer{i:03d}"]) for i, n in enumerate(names)),
                parts=[str(p) for p in data["parts"]],
                model_label=self.inputs.model_label,
                conditions=list(self.inputs.conditions),
                metric=self.inputs.metric,
                feature_budget=int(self.inputs.feature_budget),
                seed=int(self.inputs.seed),
            )
        out = os.path.join(runtime.cwd, "layer_rdms.npz")
        bank.save(out)
        self._results["bank_file"] = out
        self._results["reductions"] = reductions
        return runtime


class _UserModelRDMsInputSpec(BaseInterfaceInputSpec):
    names = traits.List(traits.Str, mandatory=True)
    rdm_files = InputMultiObject(File(exists=True), mandatory=True)
    conditions = traits.List(traits.Str, mandatory=True, desc="condition order of the analysis")


class _UserModelRDMsOutputSpec(TraitedSpec):
    bank_file = File(exists=True)


class UserModelRDMs(SimpleInterface):
    """Read square, labelled model RDMs and reorder them to the analysis' conditions
    (:func:`dnnrsa.modelbank.user_model_bank`)."""

    input_spec = _UserModelRDMsInputSpec
    output_spec = _UserModelRDMsOutputSpec

    def _run_interface(self, runtime):
        from dnnrsa.modelbank import user_model_bank
        from dnnrsa.rdm import read_rdm_tsv

        paths = list(self.inputs.rdm_files)
        rdms, labels = zip(*(read_rdm_tsv(p) for p in paths), strict=True)
        bank = user_model_bank(
            list(self.inputs.names), rdms, labels, list(self.inputs.conditions), sources=paths
        )
        out = os.path.join(runtime.cwd, "user_rdms.npz")
        bank.save(out)
        self._results["bank_file"] = out
        return runtime


class _MergeBanksInputSpec(BaseInterfaceInputSpec):
    bank_files = InputMultiObject(File(exists=True), mandatory=True)


class MergeBanks(SimpleInterface):
    """Concatenate model banks that share one condition order
    (:func:`dnnrsa.modelbank.merge_banks`)."""

    input_spec = _MergeBanksInputSpec
    output_spec = _UserModelRDMsOutputSpec

    def _run_interface(self, runtime):
        from dnnrsa.modelbank import ModelBank, merge_banks

        files = list(self.inputs.bank_files)
        bank = merge_banks([ModelBank.load(f) for f in files], sources=files)
        out = os.path.join(runtime.cwd, "model_bank.npz")
        bank.save(out)
        self._results["bank_file"] = out
        return runtime


class _DNNAnalysesInputSpec(BaseInterfaceInputSpec):
    bank_file = File(exists=True, mandatory=True, desc="layer RDMs of one network")
    stimulus_table = File(exists=True, mandatory=True, desc="TSV: stim_file and label columns")
    label_columns = traits.List(traits.Str, desc="label sets (default: all label columns)")
    n_permutations = traits.Int(1000, usedefault=True)
    seed = traits.Int(0, usedefault=True)


class _DNNAnalysesOutputSpec(TraitedSpec):
    category_index = File(exists=True)
    layer_similarity = File(exists=True)
    varpart = File(desc="variance partitioning (only for networks with visual and auditory arms)")


class DNNAnalyses(SimpleInterface):
    """Category index per layer, layer-by-layer similarity and variance partitioning
    (:func:`dnnrsa.analysis.dnn_analysis_tables`)."""

    input_spec = _DNNAnalysesInputSpec
    output_spec = _DNNAnalysesOutputSpec

    def _run_interface(self, runtime):
        import pandas as pd

        from dnnrsa.analysis import dnn_analysis_tables
        from dnnrsa.modelbank import ModelBank

        tables = dnn_analysis_tables(
            ModelBank.load(self.inputs.bank_file),
            pd.read_csv(self.inputs.stimulus_table, sep="\t", dtype=str),
            label_columns=self.inputs.label_columns or None,
            n_permutations=self.inputs.n_permutations,
            random_state=self.inputs.seed,
        )
        for key, name, kwargs in (
            ("category_index", "categoryindex", {"index": False, "na_rep": "n/a"}),
            ("layer_similarity", "layersimilarity", {"float_format": "%.6f"}),
            ("varpart", "varpart", {"index": False, "float_format": "%.6f"}),
        ):
            if key in tables:
                path = os.path.join(runtime.cwd, f"{name}.tsv")
                tables[key].to_csv(path, sep="\t", **kwargs)
                self._results[key] = path
        return runtime


class _ArmLesionInputSpec(BaseInterfaceInputSpec):
    stim_files = InputMultiObject(File(exists=True), mandatory=True, desc="stimulus files")
    stim_labels = traits.List(traits.Str, mandatory=True, desc="stim_file of each, as in the table")
    checkpoint = File(
        exists=True, mandatory=True, desc="trained checkpoint (its regime names the labels)"
    )
    stimulus_table = File(exists=True, mandatory=True, desc="TSV: stim_file and label columns")
    device = traits.Enum("auto", "cpu", "cuda", usedefault=True)
    crop_file = File(
        exists=True, desc="crop table (TSV: stim_file, x0, y0, x1, y1) (default: centre)"
    )


class _ArmLesionOutputSpec(TraitedSpec):
    lesion_file = File(desc="TSV: arm (none, or the lesioned arm), accuracy, accuracy_drop")
    outcomes_file = File(
        desc="TSV: per stimulus, its class and the class predicted intact and with each arm "
        "lesioned (dnnrsa.train.arm_lesion_outcomes)"
    )


class ArmLesion(SimpleInterface):
    """Accuracy of a trained network with each arm's input to the shared part replaced by
    its mean over the stimuli (:func:`dnnrsa.train.evaluate_lesions`).

    Needs the checkpoint's regime (e.g. ``emotion``) as a column of the stimulus table;
    without it nothing is written.
    """

    input_spec = _ArmLesionInputSpec
    output_spec = _ArmLesionOutputSpec

    def _run_interface(self, runtime):
        import pandas as pd

        from dnnrsa.train import arm_lesion_outcomes, lesion_summary

        table = pd.read_csv(self.inputs.stimulus_table, sep="\t", dtype=str).set_index("stim_file")
        outcomes = arm_lesion_outcomes(
            self.inputs.checkpoint,
            list(self.inputs.stim_files),
            list(self.inputs.stim_labels),
            table,
            device=self.inputs.device,
            crop_boxes=self.inputs.crop_file if isdefined(self.inputs.crop_file) else None,
        )
        if outcomes is None:
            return runtime
        out = os.path.join(runtime.cwd, "armlesion.tsv")
        lesion_summary(outcomes).to_csv(out, sep="\t", index=False, float_format="%.6f")
        self._results["lesion_file"] = out
        per_stimulus = os.path.join(runtime.cwd, "lesionoutcomes.tsv")
        outcomes.to_csv(per_stimulus, sep="\t", index=False)
        self._results["outcomes_file"] = per_stimulus
        return runtime


class _ArmRelevanceInputSpec(BaseInterfaceInputSpec):
    bank_file = File(exists=True, mandatory=True, desc="layer RDMs of one network")
    outcomes_file = File(exists=True, desc="per-stimulus lesion outcomes (ArmLesion)")
    checkpoint = File(exists=True, desc="the network's checkpoint (its number of classes)")
    n_boot = traits.Int(1000, usedefault=True, desc="bootstrap samples over stimuli")
    ci_level = traits.Float(0.95, usedefault=True)
    seed = traits.Int(0, usedefault=True)


class _ArmRelevanceOutputSpec(TraitedSpec):
    relevance_file = File(desc="TSV: dnnrsa.findings.arm_relevance_table")


class ArmRelevance(SimpleInterface):
    """Lesion accuracy drop and unique variance of each arm, with bootstrap intervals over
    stimuli (:func:`dnnrsa.findings.arm_relevance_table`)."""

    input_spec = _ArmRelevanceInputSpec
    output_spec = _ArmRelevanceOutputSpec

    def _run_interface(self, runtime):
        from dnnrsa.findings import arm_relevance_table
        from dnnrsa.lesions import read_lesion_outcomes
        from dnnrsa.modelbank import ModelBank

        bank = ModelBank.load(self.inputs.bank_file)
        outcomes = None
        if isdefined(self.inputs.outcomes_file):
            checkpoint = self.inputs.checkpoint if isdefined(self.inputs.checkpoint) else None
            outcomes = read_lesion_outcomes(self.inputs.outcomes_file, checkpoint=checkpoint)
        table = arm_relevance_table(
            outcomes,
            bank.rdms,
            list(bank.parts),
            layers=list(bank.layer_labels),
            n_boot=self.inputs.n_boot,
            ci_level=self.inputs.ci_level,
            seed=self.inputs.seed,
        )
        if table.empty:
            return runtime
        out = os.path.join(runtime.cwd, "armrelevance.tsv")
        table.to_csv(out, sep="\t", index=False, na_rep="n/a", float_format="%.6g")
        self._results["relevance_file"] = out
        return runtime


class _CrossRegimeSimilarityInputSpec(BaseInterfaceInputSpec):
    bank_files = InputMultiObject(
        File(exists=True), mandatory=True, desc="layer RDMs of each network, one bank per network"
    )
    regimes = traits.List(
        traits.Str, desc="label of each network, in order (default: each bank's model label)"
    )
    method = traits.Str("spearman", usedefault=True, desc="comparator of two layer RDMs")
    extra = traits.Dict(usedefault=True, desc="more sidecar fields (checkpoints ...)")


class _CrossRegimeSimilarityOutputSpec(TraitedSpec):
    matrix_file = File(
        exists=True,
        desc="TSV: every layer of every network against every other, "
        "rows and columns labelled <regime>.<layer>",
    )
    pairs_file = File(exists=True, desc="TSV: one row per layer pair of two different networks")
    matrix_sidecar = traits.Dict(desc="sidecar fields of the matrix")
    pairs_sidecar = traits.Dict(desc="sidecar fields of the pairs table")


class CrossRegimeSimilarity(SimpleInterface):
    """Layer-by-layer similarity of several networks, stacked network after network
    (:func:`dnnrsa.analysis.cross_regime_similarity`).

    Every bank must hold the layer RDMs of one network in the same condition order.
    """

    input_spec = _CrossRegimeSimilarityInputSpec
    output_spec = _CrossRegimeSimilarityOutputSpec

    def _run_interface(self, runtime):
        import pandas as pd

        from dnnrsa.analysis import cross_regime_similarity
        from dnnrsa.modelbank import ModelBank

        banks = [ModelBank.load(f) for f in self.inputs.bank_files]
        given = self.inputs.regimes if isdefined(self.inputs.regimes) else []
        regimes = list(given) or [b.model_labels[0] if b.model_labels else "" for b in banks]
        if len(regimes) != len(banks):
            raise ValueError(f"{len(banks)} model banks but {len(regimes)} regimes")
        if len(set(regimes)) != len(regimes) or not all(regimes):
            raise ValueError(f"every network needs its own non-empty label; got {regimes}")
        result = cross_regime_similarity(
            dict(zip(regimes, banks, strict=True)), method=self.inputs.method
        )
        labels = [
            f"{r}.{layer}" for r, layer in zip(result.row_regimes, result.row_layers, strict=True)
        ]
        matrix = pd.DataFrame(result.matrix, index=labels, columns=labels).rename_axis("layer")
        matrix_file = os.path.join(runtime.cwd, "crossregime_matrix.tsv")
        matrix.to_csv(matrix_file, sep="\t", float_format="%.6f", na_rep="n/a")
        pairs_file = os.path.join(runtime.cwd, "crossregime_stats.tsv")
        result.pairs_frame().to_csv(
            pairs_file, sep="\t", index=False, float_format="%.6f", na_rep="n/a"
        )
        self._results["matrix_file"] = matrix_file
        self._results["pairs_file"] = pairs_file
        common = {
            "Regimes": list(result.regimes),
            "LayerCounts": {r: len(result.layers[r]) for r in result.regimes},
            "Layers": {r: list(result.layers[r]) for r in result.regimes},
            "LayerNames": {r: list(b.layer_names) for r, b in zip(regimes, banks, strict=True)},
            "Comparator": result.method,
            "LayerRDMMetric": sorted({m for b in banks for m in b.metrics}),
            "Conditions": list(banks[0].conditions),
            **dict(self.inputs.extra),
        }
        self._results["matrix_sidecar"] = {
            "Description": "similarity of the layer RDMs of every network with those of "
            "every network; rows and columns are <regime>.<layer>",
            "RowOrder": "every layer of the first regime, then every layer of the next",
            **common,
        }
        self._results["pairs_sidecar"] = {
            "Description": "similarity of the layer RDMs, one row per layer pair of two "
            "different networks (the off-diagonal blocks of the matrix)",
            "Columns": {
                "regime_a": "the first network (earlier in Regimes)",
                "layer_a": "its layer (label)",
                "regime_b": "the second network",
                "layer_b": "its layer (label)",
                "similarity": "comparator of the two layer RDMs",
            },
            **common,
        }
        return runtime


class _StudyFindingsInputSpec(BaseInterfaceInputSpec):
    networks = traits.List(traits.Str, mandatory=True, desc="regime (model label) of each network")
    rdm_files = traits.List(
        traits.List(File(exists=True)), mandatory=True, desc="layer RDM tables of each network"
    )
    stimulus_table = File(exists=True, mandatory=True, desc="TSV: condition and label columns")
    relevance_files = traits.List(traits.Str, desc="arm relevance table of each network, or ''")
    outcome_files = traits.List(traits.Str, desc="lesion outcomes of each network, or ''")
    searchlight_files = traits.Dict(
        traits.Str,
        traits.List(traits.List(File(exists=True))),
        desc="per network: per subject, the maps of its cross-modal layers",
    )
    fisher_z = traits.Bool(True, usedefault=True, desc="Fisher z the searchlight scores first")
    alpha = traits.Float(0.05, usedefault=True)
    n_permutations = traits.Int(1000, usedefault=True)
    n_boot = traits.Int(1000, usedefault=True)
    seed = traits.Int(0, usedefault=True)
    sidecar = traits.Dict(usedefault=True, desc="extra sidecar fields")


class _StudyFindingsOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="the findings table (TSV)")
    out_sidecar = traits.Dict(desc="its sidecar's fields (its sink adds the software versions)")


class StudyFindings(SimpleInterface):
    """The study's findings table from the derivatives' files
    (:func:`dnnrsa._findingfiles.study_findings_from_files`), written into the node's
    folder as ``findings.tsv``, with its sidecar's fields as an output."""

    input_spec = _StudyFindingsInputSpec
    output_spec = _StudyFindingsOutputSpec

    def _run_interface(self, runtime):
        from dnnrsa._findingfiles import study_findings_from_files

        table = study_findings_from_files(
            list(self.inputs.networks),
            [list(files) for files in self.inputs.rdm_files],
            self.inputs.stimulus_table,
            relevance_files=list(self.inputs.relevance_files),
            outcome_files=list(self.inputs.outcome_files),
            searchlight_files={k: list(v) for k, v in self.inputs.searchlight_files.items()},
            fisher_z=self.inputs.fisher_z,
            alpha=self.inputs.alpha,
            n_permutations=self.inputs.n_permutations,
            n_boot=self.inputs.n_boot,
            seed=self.inputs.seed,
        )
        out = os.path.join(runtime.cwd, "findings.tsv")
        table.to_csv(out, sep="\t", index=False, na_rep="n/a", float_format="%.6g")
        self._results["out_file"] = out
        self._results["out_sidecar"] = {
            **self.inputs.sidecar,
            "Alpha": self.inputs.alpha,
            "MultipleComparisons": "Holm over the decided findings; within a finding, "
            "every part must hold (intersection-union: the largest p of its parts)",
            "NumberOfPermutations": self.inputs.n_permutations,
            "NumberOfBootstrapSamples": self.inputs.n_boot,
            "Networks": list(self.inputs.networks),
        }
        return runtime
