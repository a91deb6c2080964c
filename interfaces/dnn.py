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

from ._bank import load_bank, save_bank


def _label(text: str) -> str:
    """A BIDS entity label: the alphanumeric characters of ``text``."""
    out = "".join(ch for ch in str(text) if ch.isalnum())
    if not out:
        raise ValueError(f"cannot make a BIDS label from {text!r}")
    return out


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
        from dnnrsa.analysis import layer_rdms

        with np.load(self.inputs.features_file) as data:
            names = [str(n) for n in data["layer_names"]]
            parts = [str(p) for p in data["parts"]]
            acts = {n: data[f"layer{i:03d}"] for i, n in enumerate(names)}
        conditions = np.asarray(self.inputs.conditions)
        if len(conditions) != len(self.inputs.stim_labels):
            raise ValueError("conditions must have one entry per stimulus")
        names, rdms = layer_rdms(acts, self.inputs.metric, conditions=conditions)
        out = os.path.join(runtime.cwd, "layer_rdms.npz")
        save_bank(
            out,
            rdms=rdms,
            model_labels=[_label(self.inputs.model_label)] * len(names),
            layer_labels=[_label(n) for n in names],
            layer_names=names,
            parts=parts,
            conditions=list(np.unique(conditions)),
            metric=self.inputs.metric,
        )
        self._results["bank_file"] = out
        return runtime


class _UserModelRDMsInputSpec(BaseInterfaceInputSpec):
    names = traits.List(traits.Str, mandatory=True)
    rdm_files = InputMultiObject(File(exists=True), mandatory=True)
    conditions = traits.List(traits.Str, mandatory=True, desc="condition order of the analysis")


class _UserModelRDMsOutputSpec(TraitedSpec):
    bank_file = File(exists=True)


class UserModelRDMs(SimpleInterface):
    """Read square, labelled model RDMs and reorder them to the analysis' conditions."""

    input_spec = _UserModelRDMsInputSpec
    output_spec = _UserModelRDMsOutputSpec

    def _run_interface(self, runtime):
        from dnnrsa.rdm import read_rdm_tsv, squareform_to_vector, vector_to_squareform

        conditions = list(self.inputs.conditions)
        rows = []
        for name, path in zip(self.inputs.names, self.inputs.rdm_files, strict=True):
            vec, labels = read_rdm_tsv(path)
            missing = [c for c in conditions if c not in labels]
            if missing:
                raise ValueError(
                    f"model RDM {name!r} ({path}) lacks condition(s) {missing[:10]}; "
                    f"its labels are {labels[:10]}..."
                )
            order = [labels.index(c) for c in conditions]
            square = vector_to_squareform(vec)[np.ix_(order, order)]
            rows.append(squareform_to_vector(square, check_symmetric=False))
        out = os.path.join(runtime.cwd, "user_rdms.npz")
        save_bank(
            out,
            rdms=np.stack(rows),
            model_labels=[_label(n) for n in self.inputs.names],
            layer_labels=[""] * len(rows),
            layer_names=list(self.inputs.names),
            parts=["model"] * len(rows),
            conditions=conditions,
            metric="user",
        )
        self._results["bank_file"] = out
        return runtime


class _MergeBanksInputSpec(BaseInterfaceInputSpec):
    bank_files = InputMultiObject(File(exists=True), mandatory=True)


class MergeBanks(SimpleInterface):
    """Concatenate model banks that share one condition order."""

    input_spec = _MergeBanksInputSpec
    output_spec = _UserModelRDMsOutputSpec

    def _run_interface(self, runtime):
        banks = [load_bank(f) for f in self.inputs.bank_files]
        conditions = banks[0]["conditions"]
        for f, bank in zip(self.inputs.bank_files, banks, strict=True):
            if bank["conditions"] != conditions:
                raise ValueError(f"{f}: condition order differs from {self.inputs.bank_files[0]}")
        merged = {
            key: [v for b in banks for v in b[key]]
            for key in ("model_labels", "layer_labels", "layer_names", "parts", "metrics")
        }
        out = os.path.join(runtime.cwd, "model_bank.npz")
        save_bank(
            out,
            rdms=np.concatenate([b["rdms"] for b in banks]),
            conditions=conditions,
            metric=merged.pop("metrics"),
            **merged,
        )
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
    """Category index per layer, layer-by-layer similarity and variance partitioning."""

    input_spec = _DNNAnalysesInputSpec
    output_spec = _DNNAnalysesOutputSpec

    def _run_interface(self, runtime):
        import pandas as pd

        from dnnrsa.analysis import category_index_table, layer_similarity, variance_partitioning

        bank = load_bank(self.inputs.bank_file)
        table = pd.read_csv(self.inputs.stimulus_table, sep="\t", dtype=str)
        conditions = bank["conditions"]
        by_cond = table.drop_duplicates("condition").set_index("condition")
        missing = [c for c in conditions if c not in by_cond.index]
        if missing:
            raise ValueError(
                f"{self.inputs.stimulus_table}: no labels for conditions {missing[:5]}"
            )
        by_cond = by_cond.loc[conditions]
        columns = self.inputs.label_columns or [
            c
            for c in by_cond.columns
            if c not in ("stim_file", "trial_type") and by_cond[c].nunique() > 1
        ]
        label_sets = {
            c: by_cond[c].to_numpy()
            for c in columns
            if by_cond[c].nunique() > 1 and by_cond[c].nunique() < len(conditions)
        }
        names = bank["layer_names"]
        parts = bank["parts"]
        ci = category_index_table(
            bank["rdms"],
            label_sets,
            layer_names=names,
            n_permutations=self.inputs.n_permutations,
            random_state=self.inputs.seed,
        ).to_frame()
        ci.insert(1, "part", ci["layer"].map(dict(zip(names, parts, strict=True))))
        ci["layer"] = ci["layer"].map(dict(zip(names, bank["layer_labels"], strict=True)))
        ci_path = os.path.join(runtime.cwd, "categoryindex.tsv")
        ci.to_csv(ci_path, sep="\t", index=False, na_rep="n/a")
        sim = layer_similarity(bank["rdms"])
        sim_path = os.path.join(runtime.cwd, "layersimilarity.tsv")
        pd.DataFrame(sim, index=bank["layer_labels"], columns=bank["layer_labels"]).rename_axis(
            "layer"
        ).to_csv(sim_path, sep="\t", float_format="%.6f")
        self._results["category_index"] = ci_path
        self._results["layer_similarity"] = sim_path
        vis = [i for i, p in enumerate(parts) if p == "visual"]
        aud = [i for i, p in enumerate(parts) if p == "auditory"]
        cross = [i for i, p in enumerate(parts) if p == "crossmodal"]
        if vis and aud and cross:
            rows = []
            for i in cross:
                res = variance_partitioning(
                    bank["rdms"][i], bank["rdms"][vis[-1]], bank["rdms"][aud[-1]]
                )
                rows.append(
                    {
                        "layer": bank["layer_labels"][i],
                        "unique_visual": res["unique_visual"],
                        "unique_auditory": res["unique_auditory"],
                        "shared": res["shared"],
                        "total": res["total"],
                    }
                )
            vp_path = os.path.join(runtime.cwd, "varpart.tsv")
            pd.DataFrame(rows).to_csv(vp_path, sep="\t", index=False, float_format="%.6f")
            self._results["varpart"] = vp_path
        return runtime


class _ArmLesionInputSpec(BaseInterfaceInputSpec):
    stim_files = InputMultiObject(File(exists=True), mandatory=True, desc="stimulus files")
    stim_labels = traits.List(traits.Str, mandatory=True, desc="stim_file of each, as in the table")
    checkpoint = File(
        exists=True, mandatory=True, desc="trained checkpoint (its regime names the labels)"
    )
    stimulus_table = File(exists=True, mandatory=True, desc="TSV: stim_file and label columns")
    device = traits.Enum("auto", "cpu", "cuda", usedefault=True)


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

        from dnnrsa.models import load_model
        from dnnrsa.stimuli import prepare_inputs
        from dnnrsa.train import evaluate_lesions

        net, spec, info = load_model(None, self.inputs.checkpoint)
        regime, classes = info.get("regime"), [str(c) for c in info.get("labels", [])]
        table = pd.read_csv(self.inputs.stimulus_table, sep="\t", dtype=str).set_index("stim_file")
        if not regime or regime not in table.columns or not spec.arms:
            return runtime
        values = table[regime].reindex(list(self.inputs.stim_labels))
        keep = [i for i, v in enumerate(values) if isinstance(v, str) and v in classes]
        if len(keep) < 2:
            return runtime
        inputs = prepare_inputs([self.inputs.stim_files[i] for i in keep], info["recipe"])
        targets = np.array([classes.index(values.iloc[i]) for i in keep])
        result = evaluate_lesions(net, inputs, targets, spec, device=self.inputs.device)
        rows = [{"arm": "none", "accuracy": result["accuracy"], "accuracy_drop": 0.0}]
        rows += [
            {"arm": arm, "accuracy": acc, "accuracy_drop": result["drop"][arm]}
            for arm, acc in result["lesioned"].items()
        ]
        out = os.path.join(runtime.cwd, "armlesion.tsv")
        pd.DataFrame(rows).to_csv(out, sep="\t", index=False, float_format="%.6f")
        self._results["lesion_file"] = out
        return runtime
