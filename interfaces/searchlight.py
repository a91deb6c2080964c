"""Nipype interface for searchlight RSA."""

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


class _SearchlightInputSpec(BaseInterfaceInputSpec):
    patterns_file = File(exists=True, mandatory=True, desc="4D patterns, one volume per row")
    conditions_file = File(
        exists=True, mandatory=True, desc="TSV with run and condition per volume"
    )
    mask_file = File(exists=True, mandatory=True)
    bank_file = File(exists=True, mandatory=True, desc="model bank (npz)")
    radius_mm = traits.Float(6.0, usedefault=True)
    metric = traits.Enum("correlation", "euclidean", "crossnobis", usedefault=True)
    comparator = traits.Enum(
        *comparator_names(searchlight=True),
        usedefault=True,
        desc="comparator of the sphere and model RDMs (the registry's searchlight ones)",
    )
    min_voxels = traits.Int(10, usedefault=True)
    device = traits.Enum("auto", "cpu", "cuda", usedefault=True)
    memory_mb = traits.Int(1024, usedefault=True)
    n_jobs = traits.Int(
        -1,
        usedefault=True,
        nohash=True,
        desc="CPU threads (-1: every core available); the maps equal those of one thread to 1e-12",
    )
    use_gpu = traits.Bool(
        False, usedefault=True, desc="runs on a GPU (nipype schedules it on a GPU slot)"
    )


class _SearchlightOutputSpec(TraitedSpec):
    maps_file = File(exists=True, desc="4D image: one volume per model of the bank")


class SearchlightRSA(SimpleInterface):
    """Compare every searchlight sphere's RDM with every model RDM
    (:func:`dnnrsa.searchlight.searchlight_rsa`)."""

    input_spec = _SearchlightInputSpec
    output_spec = _SearchlightOutputSpec

    def _run_interface(self, runtime):
        import pandas as pd

        from dnnrsa._io import atomic_save_nifti
        from dnnrsa.modelbank import ModelBank
        from dnnrsa.searchlight import searchlight_rsa

        bank = ModelBank.load(self.inputs.bank_file)
        table = pd.read_csv(self.inputs.conditions_file, sep="\t", dtype={"condition": str})
        bank.check_conditions(table["condition"])
        img = searchlight_rsa(
            self.inputs.patterns_file,
            self.inputs.mask_file,
            bank.rdms,
            radius_mm=self.inputs.radius_mm,
            metric=self.inputs.metric,
            comparator=self.inputs.comparator,
            conditions=table["condition"].to_numpy(),
            runs=table["run"].to_numpy(),
            min_voxels=self.inputs.min_voxels,
            device=self.inputs.device,
            memory_budget_mb=self.inputs.memory_mb,
            n_jobs=self.inputs.n_jobs,
            progress=False,
        )
        out = os.path.join(runtime.cwd, "searchlight_maps.nii.gz")
        atomic_save_nifti(img, out)
        self._results["maps_file"] = out
        return runtime
