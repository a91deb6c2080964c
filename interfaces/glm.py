"""Nipype interface for per-condition fMRI patterns (nilearn first-level GLM per run)."""

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


class _EstimatePatternsInputSpec(BaseInterfaceInputSpec):
    bold_files = InputMultiObject(File(exists=True), mandatory=True, desc="4D BOLD, one per run")
    events_files = InputMultiObject(File(exists=True), mandatory=True, desc="events.tsv per run")
    confounds_files = InputMultiObject(File(exists=True), desc="confounds TSV per run")
    confound_columns = traits.List(traits.Str, desc="columns of the confounds files to use")
    mask_file = File(exists=True, desc="brain mask (computed from the runs when absent)")
    t_r = traits.Float(mandatory=True, desc="repetition time (s)")
    method = traits.Enum("lsa", "lss", usedefault=True)
    output = traits.Enum("effect", "t", usedefault=True)
    condition_column = traits.Str("stim_file", usedefault=True)
    noise_model = traits.Enum(
        "ar1", "ols", usedefault=True, desc="noise model of nilearn's run_glm (ar1: its default)"
    )
    noise_normalisation = traits.Enum("none", "univariate", "multivariate", usedefault=True)
    smoothing_fwhm = traits.Float(desc="spatial smoothing (mm)")
    seed = traits.Int(0, usedefault=True)
    n_jobs = traits.Int(
        1,
        usedefault=True,
        nohash=True,
        desc="runs fitted at once, in worker processes (the results do not depend on it)",
    )
    max_memory_gb = traits.Float(
        nohash=True,
        desc="memory budget of the fits (GB): no more runs at once than fit in it",
    )
    device = traits.Enum(
        "cpu",
        "auto",
        "cuda",
        usedefault=True,
        nohash=True,
        desc="where the ar1/ols fits run (the patterns agree with the CPU's to rounding)",
    )
    use_gpu = traits.Bool(
        False,
        usedefault=True,
        nohash=True,
        desc="runs on a GPU (nipype schedules it on a GPU slot)",
    )


class _EstimatePatternsOutputSpec(TraitedSpec):
    patterns_file = File(exists=True, desc="4D image: one volume per run and condition")
    conditions_file = File(exists=True, desc="TSV: run and condition of each volume")
    mask_file = File(exists=True, desc="the mask used")


def _confound_table(path, columns):
    import pandas as pd

    table = pd.read_csv(path, sep="\t")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: confound column(s) {missing} not found")
    return table[list(columns)].fillna(0.0)


class EstimatePatterns(SimpleInterface):
    """Per-condition, per-run response patterns (:func:`dnnrsa.glm.estimate_patterns`)."""

    input_spec = _EstimatePatternsInputSpec
    output_spec = _EstimatePatternsOutputSpec

    def _run_interface(self, runtime):
        import pandas as pd

        from dnnrsa._io import atomic_save_nifti
        from dnnrsa.glm import estimate_patterns

        confounds = None
        if isdefined(self.inputs.confounds_files) and self.inputs.confound_columns:
            confounds = [
                _confound_table(f, self.inputs.confound_columns)
                for f in self.inputs.confounds_files
            ]
        result = estimate_patterns(
            list(self.inputs.bold_files),
            list(self.inputs.events_files),
            t_r=self.inputs.t_r,
            mask_img=self.inputs.mask_file if isdefined(self.inputs.mask_file) else None,
            confounds=confounds,
            method=self.inputs.method,
            condition_column=self.inputs.condition_column,
            output=self.inputs.output,
            noise_normalisation=self.inputs.noise_normalisation,
            smoothing_fwhm=self.inputs.smoothing_fwhm
            if isdefined(self.inputs.smoothing_fwhm)
            else None,
            noise_model=self.inputs.noise_model,
            random_state=self.inputs.seed,
            n_jobs=self.inputs.n_jobs,
            max_memory_gb=self.inputs.max_memory_gb
            if isdefined(self.inputs.max_memory_gb)
            else None,
            device=self.inputs.device,
        )
        # uncompressed: the searchlight, the ROI RDMs and the encoding models read it (a
        # region's voxels without decompressing the whole file); write_patterns gzips it
        patterns = os.path.join(runtime.cwd, "patterns.nii")
        atomic_save_nifti(result.to_img(), patterns)
        mask = os.path.join(runtime.cwd, "mask.nii.gz")
        atomic_save_nifti(result.mask_img, mask)
        table = os.path.join(runtime.cwd, "conditions.tsv")
        pd.DataFrame(
            {"run": np.asarray(result.runs), "condition": np.asarray(result.conditions, dtype=str)}
        ).to_csv(table, sep="\t", index=False)
        self._results.update(patterns_file=patterns, conditions_file=table, mask_file=mask)
        return runtime
