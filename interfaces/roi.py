"""Nipype interfaces of the regions of interest: a region's RDM, and the evaluation of
model RDMs against the participants' RDMs of a region."""

from __future__ import annotations

import os

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from dnnrsa._registries import comparator_names


class _PatternsInputSpec(BaseInterfaceInputSpec):
    """The inputs of a participant's region RDMs besides the regions."""

    patterns_file = File(exists=True, mandatory=True, desc="4D patterns, one volume per row")
    conditions_file = File(
        exists=True, mandatory=True, desc="TSV with run and condition per volume"
    )
    mask_file = File(exists=True, mandatory=True, desc="brain mask of the patterns")
    metric = traits.Enum("correlation", "euclidean", "crossnobis", usedefault=True)
    sidecar = traits.Dict(usedefault=True, desc="extra sidecar fields")


class _RoiRDMInputSpec(_PatternsInputSpec):
    roi_file = File(exists=True, mandatory=True, desc="mask of the region (any grid)")
    roi_name = traits.Str(mandatory=True)


class _TableOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="the table (TSV), in the node's folder")
    out_sidecar = traits.Dict(desc="its sidecar's fields (its sink adds the software versions)")


def _region_rdm(name, roi_file, patterns, brain, table, metric, sidecar):
    """The RDM (vector), its labels and its sidecar's fields of one region."""
    from dnnrsa.roi import check_roi, roi_rdm

    region = check_roi(name, roi_file, patterns, brain)
    rdm, labels, n_voxels = roi_rdm(
        patterns,
        region.mask,
        conditions=table["condition"].to_numpy(),
        runs=table["run"].to_numpy() if metric == "crossnobis" else None,
        metric=metric,
    )
    fields = {
        "ROI": name,
        "ROIMask": roi_file,
        "Metric": metric,
        "NumberOfVoxels": n_voxels,
        "VoxelsOnGrid": region.n_grid,
        "Resampling": "nearest neighbour to the BOLD grid, then within the brain mask",
        "Conditions": labels,
        **dict(sidecar),
    }
    return rdm, labels, fields


def _patterns_brain_table(inputs):
    import nibabel as nib
    import numpy as np
    import pandas as pd

    patterns = nib.load(inputs.patterns_file)
    brain = np.asarray(nib.load(inputs.mask_file).dataobj) > 0
    table = pd.read_csv(inputs.conditions_file, sep="\t", dtype={"condition": str})
    return patterns, brain, table


class RoiRDM(SimpleInterface):
    """The RDM of one region from the patterns of its voxels (:func:`dnnrsa.roi.roi_rdm`),
    written into the node's folder as ``rdm.tsv``, with its sidecar's fields."""

    input_spec = _RoiRDMInputSpec
    output_spec = _TableOutputSpec

    def _run_interface(self, runtime):
        from dnnrsa.rdm import write_rdm_tsv

        patterns, brain, table = _patterns_brain_table(self.inputs)
        rdm, labels, fields = _region_rdm(
            self.inputs.roi_name,
            self.inputs.roi_file,
            patterns,
            brain,
            table,
            self.inputs.metric,
            self.inputs.sidecar,
        )
        out = os.path.join(runtime.cwd, "rdm.tsv")
        write_rdm_tsv(out, rdm, labels)
        self._results["out_file"] = out
        self._results["out_sidecar"] = fields
        return runtime


class _RoiRDMsInputSpec(_PatternsInputSpec):
    roi_files = traits.List(File(exists=True), mandatory=True, desc="masks of the regions")
    roi_names = traits.List(traits.Str, mandatory=True, desc="their names (the roi entity)")
    entities = traits.Dict(
        mandatory=True, desc="the BIDS entities of the RDMs' names besides roi (sub, task, space)"
    )


class _RoiRDMsOutputSpec(TraitedSpec):
    out_files = traits.List(
        File(exists=True),
        desc="each region's ``..._roi-<name>_rdm.tsv`` and its JSON sidecar, named as derivatives",
    )


class RoiRDMs(SimpleInterface):
    """The RDMs of several regions of one participant, each as :class:`RoiRDM` computes
    it, from one opening of the patterns, brain mask and condition table; written into
    the node's folder under their derivative names (``..._roi-<name>_rdm.tsv`` and the
    JSON sidecar, with the software versions), for
    :class:`~dnnrsa.interfaces.bids.CopyDerivatives`. One node per participant instead
    of one per region: the participant level of the demo (8 participants, 5 regions)
    runs 64 steps fewer."""

    input_spec = _RoiRDMsInputSpec
    output_spec = _RoiRDMsOutputSpec

    def _run_interface(self, runtime):
        from dnnrsa.bidsnames import build_name, write_json
        from dnnrsa.rdm import write_rdm_tsv

        from .bids import software_versions

        if len(self.inputs.roi_files) != len(self.inputs.roi_names):
            raise ValueError(
                f"roi_files ({len(self.inputs.roi_files)}) and roi_names "
                f"({len(self.inputs.roi_names)}) must have the same length"
            )
        patterns, brain, table = _patterns_brain_table(self.inputs)
        versions = software_versions()
        files = []
        for name, roi_file in zip(self.inputs.roi_names, self.inputs.roi_files, strict=True):
            rdm, labels, fields = _region_rdm(
                name, roi_file, patterns, brain, table, self.inputs.metric, self.inputs.sidecar
            )
            ents = {**dict(self.inputs.entities), "roi": name}
            out = os.path.join(runtime.cwd, build_name(ents, "rdm", ".tsv"))
            write_rdm_tsv(out, rdm, labels)
            side = os.path.join(runtime.cwd, build_name(ents, "rdm", ".json"))
            write_json(side, {**fields, "SoftwareVersions": versions})
            files += [out, side]
        self._results["out_files"] = files
        return runtime


class _RoiEvaluationInputSpec(BaseInterfaceInputSpec):
    subject_files = traits.List(File(exists=True), mandatory=True, desc="subjects' ROI RDMs")
    model_files = traits.List(File(exists=True), mandatory=True, desc="model RDMs")
    model_names = traits.List(traits.Str, mandatory=True)
    comparator = traits.Enum(
        *comparator_names(inference=True), desc="comparator (the registry's inference ones)"
    )
    mode = traits.Enum("subjects", "stimuli", "both", usedefault=True)
    n_boot = traits.Int(1000, usedefault=True)
    seed = traits.Int(0, usedefault=True)
    device = traits.Enum("auto", "cpu", "cuda", usedefault=True)
    sidecar = traits.Dict(usedefault=True, desc="sidecar fields shared by the three tables")


class _RoiEvaluationOutputSpec(TraitedSpec):
    evaluation_file = File(exists=True, desc="one row per model (TSV)")
    noiseceiling_file = File(exists=True, desc="the noise ceiling's bounds (TSV)")
    pairwise_file = File(exists=True, desc="one row per pair of models (TSV)")
    out_files = traits.List(File(exists=True), desc="the three tables, in that order")
    out_sidecar = traits.Dict(
        desc="the sidecar fields of the three tables (their sinks add the software versions)"
    )


def _save_table(table, path) -> str:
    table.to_csv(path, sep="\t", index=False, na_rep="n/a")
    return str(path)


class RoiEvaluation(SimpleInterface):
    """Evaluate every model RDM against the subjects' RDMs of one region
    (:func:`dnnrsa.inference.evaluate_models`, on the RDMs of
    :func:`dnnrsa.roi.read_roi_rdms`): the evaluation, noise-ceiling and pairwise
    tables, written into the node's folder."""

    input_spec = _RoiEvaluationInputSpec
    output_spec = _RoiEvaluationOutputSpec

    def _run_interface(self, runtime):
        import pandas as pd

        from dnnrsa.inference import evaluate_models
        from dnnrsa.roi import min_roi_subjects, read_roi_rdms

        rdms = read_roi_rdms(
            self.inputs.subject_files,
            self.inputs.model_files,
            min_subjects=min_roi_subjects(self.inputs.mode),
        )
        names = [self.inputs.model_names[i] for i in rdms.kept_models]
        ev = evaluate_models(
            rdms.models,
            rdms.data,
            self.inputs.comparator,
            mode=self.inputs.mode,
            n_boot=self.inputs.n_boot,
            seed=self.inputs.seed,
            model_names=names,
            correction="fdr",
            device=self.inputs.device,
        )
        self._results["out_sidecar"] = {
            **dict(self.inputs.sidecar),
            "Comparator": ev.method,
            "Bootstrap": ev.mode,
            "NumberOfBootstrapSamples": ev.n_boot,
            "DegreesOfFreedom": ev.dof,
            "Correction": "fdr (Benjamini-Hochberg), across models or across pairs",
            "Alpha": ev.alpha,
            "ConfidenceLevel": ev.ci_level,
            "Conditions": rdms.conditions,
            "SubjectRDMs": list(self.inputs.subject_files),
            "ModelRDMs": [self.inputs.model_files[i] for i in rdms.kept_models],
            "ModelsLeftOut": [self.inputs.model_names[i] for i in rdms.left_out_models],
            "SubjectRDMsLeftOut": [
                str(self.inputs.subject_files[i]) for i in rdms.left_out_subjects
            ],
        }
        noise = pd.DataFrame(
            {
                "bound": ["lower", "upper"],
                "point": ev.noise_ceiling_point,
                "mean": ev.noise_ceiling,
            }
        )
        for key, table in (
            ("evaluation_file", ev.table()),
            ("noiseceiling_file", noise),
            ("pairwise_file", ev.pairwise_table()),
        ):
            name = key.removesuffix("_file") + ".tsv"
            self._results[key] = _save_table(table, os.path.join(runtime.cwd, name))
        self._results["out_files"] = [
            self._results[k] for k in ("evaluation_file", "noiseceiling_file", "pairwise_file")
        ]
        return runtime


class _RoiWeightedInputSpec(BaseInterfaceInputSpec):
    subject_files = traits.List(File(exists=True), mandatory=True, desc="subjects' ROI RDMs")
    model_files = traits.List(File(exists=True), mandatory=True, desc="model RDMs")
    model_names = traits.List(traits.Str, mandatory=True)
    networks = traits.List(traits.Str, mandatory=True, desc="network of each model RDM")
    parts = traits.List(traits.Str, mandatory=True, desc="part (arm) of each model RDM")
    comparator = traits.Enum(
        *comparator_names(inference=True), desc="comparator (the registry's inference ones)"
    )
    seed = traits.Int(0, usedefault=True)
    sidecar = traits.Dict(usedefault=True)


class RoiWeightedModels(SimpleInterface):
    """Cross-validated non-negative combinations of model RDMs in one region
    (:func:`dnnrsa.roi.weighted_model_table` on the RDMs of
    :func:`dnnrsa.roi.read_roi_rdms`), written into the node's folder as
    ``weighted.tsv``."""

    input_spec = _RoiWeightedInputSpec
    output_spec = _TableOutputSpec

    def _run_interface(self, runtime):
        from dnnrsa.roi import read_roi_rdms, weighted_model_table

        # two subjects suffice: the folds hold out one subject (and some conditions)
        rdms = read_roi_rdms(self.inputs.subject_files, self.inputs.model_files, min_subjects=2)
        kept = rdms.kept_models
        table = weighted_model_table(
            rdms.models,
            rdms.data,
            [self.inputs.model_names[i] for i in kept],
            [self.inputs.networks[i] for i in kept],
            [self.inputs.parts[i] for i in kept],
            self.inputs.comparator,
            seed=self.inputs.seed,
        )
        self._results["out_file"] = _save_table(table, os.path.join(runtime.cwd, "weighted.tsv"))
        self._results["out_sidecar"] = {
            **dict(self.inputs.sidecar),
            "Comparator": self.inputs.comparator,
            "Description": "non-negative weighted combinations of model RDMs, fitted on "
            "training subjects and conditions and evaluated on held-out ones (k-fold "
            "cross-validation); weights are the mean over folds of unit-norm weights",
            "Conditions": rdms.conditions,
            "SubjectRDMsLeftOut": [
                str(self.inputs.subject_files[i]) for i in rdms.left_out_subjects
            ],
        }
        return runtime
