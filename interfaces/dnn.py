"""Nipype interfaces for the DNN side: features, layer RDMs, model banks, DNN analyses."""

from __future__ import annotations

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
            layers=self.inputs.layers or None,
            cache_dir=self.inputs.cache_dir if isdefined(self.inputs.cache_dir) else None,
            device=self.inputs.device,
            seed=self.inputs.seed,
            crop_boxes=self.inputs.crop_file if isdefined(self.inputs.crop_file) else None,
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
            **arrays,
        )
        self._results["features_file"] = out
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


class _LayerRDMsOutputSpec(TraitedSpec):
    bank_file = File(exists=True, desc="npz model bank: one RDM per layer")


class LayerRDMs(SimpleInterface):
    """One RDM per layer from extracted activations (:func:`dnnrsa.analysis.layer_rdms`)."""

    input_spec = _LayerRDMsInputSpec
    output_spec = _LayerRDMsOutputSpec

    def _run_interface(self, runtime):
        from dnnrsa.modelbank import layer_bank

        with np.load(self.inputs.features_file) as data:
            names = [str(n) for n in data["layer_names"]]
            parts = [str(p) for p in data["parts"]]
            acts = {n: data[f"layer{i:03d}"] for i, n in enumerate(names)}
        if len(self.inputs.conditions) != len(self.inputs.stim_labels):
            raise ValueError("conditions must have one entry per stimulus")
        bank = layer_bank(
            acts,
            parts=parts,
            model_label=self.inputs.model_label,
            conditions=list(self.inputs.conditions),
            metric=self.inputs.metric,
        )
        out = os.path.join(runtime.cwd, "layer_rdms.npz")
        bank.save(out)
        self._results["bank_file"] = out
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

        from dnnrsa.train import arm_lesion_table

        table = pd.read_csv(self.inputs.stimulus_table, sep="\t", dtype=str).set_index("stim_file")
        lesions = arm_lesion_table(
            self.inputs.checkpoint,
            list(self.inputs.stim_files),
            list(self.inputs.stim_labels),
            table,
            device=self.inputs.device,
            crop_boxes=self.inputs.crop_file if isdefined(self.inputs.crop_file) else None,
        )
        if lesions is None:
            return runtime
        out = os.path.join(runtime.cwd, "armlesion.tsv")
        lesions.to_csv(out, sep="\t", index=False, float_format="%.6f")
        self._results["lesion_file"] = out
        return runtime
