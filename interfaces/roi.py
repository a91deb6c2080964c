"""Nipype interface for the RDM of a region of interest."""

from __future__ import annotations

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from dnnrsa._registries import comparator_names


class _RoiRDMInputSpec(BaseInterfaceInputSpec):
    patterns_file = File(exists=True, mandatory=True, desc="4D patterns, one volume per row")
    conditions_file = File(
        exists=True, mandatory=True, desc="TSV with run and condition per volume"
    )
    mask_file = File(exists=True, mandatory=True, desc="brain mask of the patterns")
    roi_file = File(exists=True, mandatory=True, desc="mask of the region (any grid)")
    roi_name = traits.Str(mandatory=True)
    metric = traits.Enum("correlation", "euclidean", "crossnobis", usedefault=True)
    out_path = traits.Str(mandatory=True, desc="the RDM table written (with a JSON sidecar)")
    sidecar = traits.Dict(usedefault=True, desc="extra sidecar fields")


class _RoiRDMOutputSpec(TraitedSpec):
    out_file = File(exists=True)


class RoiRDM(SimpleInterface):
    """The RDM of one region from the patterns of its voxels (:func:`dnnrsa.roi.roi_rdm`)."""

    input_spec = _RoiRDMInputSpec
    output_spec = _RoiRDMOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib
        import numpy as np
        import pandas as pd

        from dnnrsa.bidsnames import sidecar_path, write_json
        from dnnrsa.rdm import write_rdm_tsv
        from dnnrsa.roi import check_roi, roi_rdm

        from .bids import software_versions

        patterns = nib.load(self.inputs.patterns_file)
        brain = np.asarray(nib.load(self.inputs.mask_file).dataobj) > 0
        region = check_roi(self.inputs.roi_name, self.inputs.roi_file, patterns, brain)
        table = pd.read_csv(self.inputs.conditions_file, sep="\t", dtype={"condition": str})
        metric = self.inputs.metric
        rdm, labels, n_voxels = roi_rdm(
            patterns,
            region.mask,
            conditions=table["condition"].to_numpy(),
            runs=table["run"].to_numpy() if metric == "crossnobis" else None,
            metric=metric,
        )
        out = self.inputs.out_path
        write_rdm_tsv(out, rdm, labels)
        write_json(
            sidecar_path(out),
            {
                "ROI": self.inputs.roi_name,
                "ROIMask": self.inputs.roi_file,
                "Metric": metric,
                "NumberOfVoxels": n_voxels,
                "VoxelsOnGrid": region.n_grid,
                "Resampling": "nearest neighbour to the BOLD grid, then within the brain mask",
                "Conditions": labels,
                **dict(self.inputs.sidecar),
                "SoftwareVersions": software_versions(),
            },
        )
        self._results["out_file"] = out
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
    evaluation_path = traits.Str(mandatory=True)
    noiseceiling_path = traits.Str(mandatory=True)
    pairwise_path = traits.Str(mandatory=True)
    sidecar = traits.Dict(usedefault=True, desc="sidecar fields shared by the three tables")


class _RoiEvaluationOutputSpec(TraitedSpec):
    out_files = traits.List(File(exists=True))


def _write_table(table, path, sidecar):
    from dnnrsa._io import atomic_write
    from dnnrsa.bidsnames import sidecar_path, write_json

    with atomic_write(path) as fh:
        table.to_csv(fh, sep="\t", index=False, na_rep="n/a")
    write_json(sidecar_path(path), sidecar)


def _load_rdms(subject_files, model_files, min_subjects: int = 3):
    """Subjects' and models' RDMs in the first subject's condition order; subjects and
    models with undefined entries (and constant models) are left out; at least
    ``min_subjects`` subjects must remain."""
    import numpy as np

    from dnnrsa.modelbank import reorder_rdm
    from dnnrsa.rdm import read_rdm_tsv

    subjects = [read_rdm_tsv(f) for f in subject_files]
    conditions = subjects[0][1]
    data = np.stack(
        [
            reorder_rdm(v, lab, conditions, name=f)
            for (v, lab), f in zip(subjects, subject_files, strict=True)
        ]
    )
    finite = np.isfinite(data).all(axis=1)
    if finite.sum() < min_subjects:
        raise ValueError(
            f"fewer than {min_subjects} subject RDMs with finite entries: {list(subject_files)}"
        )
    data = data[finite]
    models, kept, left_out = [], [], []
    for i, f in enumerate(model_files):
        rdm = reorder_rdm(*read_rdm_tsv(f), conditions, name=f)
        if np.isfinite(rdm).all() and np.ptp(rdm) > 0:
            models.append(rdm)
            kept.append(i)
        else:
            left_out.append(i)
    if not models:
        raise ValueError(f"no model RDM with finite, varying entries: {list(model_files)}")
    skipped = [str(f) for f, ok in zip(subject_files, finite, strict=True) if not ok]
    return conditions, data, np.stack(models), kept, left_out, skipped


class RoiEvaluation(SimpleInterface):
    """Evaluate every model RDM against the subjects' RDMs of one region
    (:func:`dnnrsa.inference.evaluate_models`): the evaluation, noise-ceiling and
    pairwise tables."""

    input_spec = _RoiEvaluationInputSpec
    output_spec = _RoiEvaluationOutputSpec

    def _run_interface(self, runtime):
        import pandas as pd

        from dnnrsa.inference import evaluate_models

        from .bids import software_versions

        conditions, data, models, kept, left_out, skipped = _load_rdms(
            self.inputs.subject_files,
            self.inputs.model_files,
            min_subjects=2 if self.inputs.mode == "stimuli" else 3,
        )
        names = [self.inputs.model_names[i] for i in kept]
        files = [self.inputs.model_files[i] for i in kept]
        left_out = [self.inputs.model_names[i] for i in left_out]
        ev = evaluate_models(
            models,
            data,
            self.inputs.comparator,
            mode=self.inputs.mode,
            n_boot=self.inputs.n_boot,
            seed=self.inputs.seed,
            model_names=names,
            correction="fdr",
            device=self.inputs.device,
        )
        side = {
            **dict(self.inputs.sidecar),
            "Comparator": ev.method,
            "Bootstrap": ev.mode,
            "NumberOfBootstrapSamples": ev.n_boot,
            "DegreesOfFreedom": ev.dof,
            "Correction": "fdr (Benjamini-Hochberg), across models or across pairs",
            "Alpha": ev.alpha,
            "ConfidenceLevel": ev.ci_level,
            "Conditions": list(conditions),
            "SubjectRDMs": list(self.inputs.subject_files),
            "ModelRDMs": files,
            "ModelsLeftOut": left_out,
            "SubjectRDMsLeftOut": skipped,
            "SoftwareVersions": software_versions(),
        }
        noise = pd.DataFrame(
            {
                "bound": ["lower", "upper"],
                "point": ev.noise_ceiling_point,
                "mean": ev.noise_ceiling,
            }
        )
        outputs = (
            (ev.table(), self.inputs.evaluation_path),
            (noise, self.inputs.noiseceiling_path),
            (ev.pairwise_table(), self.inputs.pairwise_path),
        )
        for table, path in outputs:
            _write_table(table, path, side)
        self._results["out_files"] = [p for _, p in outputs]
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
    out_path = traits.Str(mandatory=True)
    sidecar = traits.Dict(usedefault=True)


class RoiWeightedModels(SimpleInterface):
    """Cross-validated non-negative combinations of model RDMs in one region
    (:func:`dnnrsa.inference.crossvalidate` on the sets of
    :func:`dnnrsa.roi.weighted_model_sets`)."""

    input_spec = _RoiWeightedInputSpec
    output_spec = _RoiRDMOutputSpec

    def _run_interface(self, runtime):
        import numpy as np
        import pandas as pd

        from dnnrsa.inference import crossvalidate
        from dnnrsa.roi import weighted_model_sets

        from .bids import software_versions

        # two subjects suffice: the folds hold out one subject (and some conditions)
        conditions, data, models, kept, _, skipped = _load_rdms(
            self.inputs.subject_files, self.inputs.model_files, min_subjects=2
        )
        names = [self.inputs.model_names[i] for i in kept]
        sets = weighted_model_sets(
            names, [self.inputs.networks[i] for i in kept], [self.inputs.parts[i] for i in kept]
        )
        rows = []
        if sets:
            cv = crossvalidate(
                [models[idx] for _, idx in sets],
                data,
                self.inputs.comparator,
                seed=self.inputs.seed,
                model_names=[n for n, _ in sets],
            )
            for m, (name, idx) in enumerate(sets):
                with np.errstate(all="ignore"):
                    weights = np.nanmean(cv.weights[m], axis=0)
                rows.append(
                    {
                        "model": name,
                        "n_components": len(idx),
                        "components": ";".join(names[i] for i in idx),
                        "cv_mean": cv.mean[m],
                        "cv_sd_folds": np.nanstd(cv.evaluations[m]),
                        "noise_ceiling_lower": cv.noise_ceiling[0],
                        "noise_ceiling_upper": cv.noise_ceiling[1],
                        "weights": ";".join(f"{w:.6g}" for w in weights),
                    }
                )
        columns = ["model", "n_components", "components", "cv_mean", "cv_sd_folds"]
        columns += ["noise_ceiling_lower", "noise_ceiling_upper", "weights"]
        side = {
            **dict(self.inputs.sidecar),
            "Comparator": self.inputs.comparator,
            "Description": "non-negative weighted combinations of model RDMs, fitted on "
            "training subjects and conditions and evaluated on held-out ones (k-fold "
            "cross-validation); weights are the mean over folds of unit-norm weights",
            "Conditions": list(conditions),
            "SubjectRDMsLeftOut": skipped,
            "SoftwareVersions": software_versions(),
        }
        _write_table(pd.DataFrame(rows, columns=columns), self.inputs.out_path, side)
        self._results["out_file"] = self.inputs.out_path
        return runtime
