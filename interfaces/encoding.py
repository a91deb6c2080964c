"""Nipype interface for voxelwise encoding models (banded ridge over a network's parts)."""

from __future__ import annotations

import os

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    OutputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)


class _EncodingModelInputSpec(BaseInterfaceInputSpec):
    patterns_file = File(exists=True, mandatory=True, desc="4D patterns, one volume per row")
    conditions_file = File(
        exists=True, mandatory=True, desc="TSV with run and condition per volume"
    )
    mask_file = File(exists=True, mandatory=True, desc="the voxels fitted")
    features_file = File(
        exists=True, mandatory=True, desc="npz of ExtractFeatures: one array per layer and parts"
    )
    stim_conditions = traits.List(
        traits.Str,
        mandatory=True,
        desc="condition of each stimulus (row of the features); a condition's rows are averaged",
    )
    entities = traits.Dict(
        mandatory=True, desc="sub, task, space and model of the derivatives' names"
    )
    n_components = traits.Int(10, usedefault=True, desc="principal components per layer")
    stimulus_folds = traits.Int(
        6, usedefault=True, desc="groups of stimuli held out (0: runs only)"
    )
    layer_maps = traits.Bool(False, usedefault=True, desc="one model per layer as well")
    seed = traits.Int(0, usedefault=True, desc="seed of the random search over band weightings")
    device = traits.Enum("auto", "cpu", "cuda", usedefault=True)
    use_gpu = traits.Bool(
        False, usedefault=True, desc="runs on a GPU (nipype schedules it on a GPU slot)"
    )
    sidecar = traits.Dict(usedefault=True, desc="more sidecar fields (the network, its weights)")
    n_jobs = traits.Int(
        1, usedefault=True, nohash=True, desc="folds fitted at once (the maps do not depend on it)"
    )


class _EncodingModelOutputSpec(TraitedSpec):
    out_files = OutputMultiObject(
        File(exists=True), desc="the maps and their JSON sidecars, named as their derivatives"
    )


class EncodingModel(SimpleInterface):
    """Cross-validated banded ridge encoding of the patterns from one network's layers
    (:func:`dnnrsa.encodingmaps.encoding_maps`), one band per part of the network; its maps
    are saved with their sidecars under the names of their derivatives."""

    input_spec = _EncodingModelInputSpec
    output_spec = _EncodingModelOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib
        import pandas as pd

        from dnnrsa._io import atomic_save_nifti
        from dnnrsa.bidsnames import write_json
        from dnnrsa.encodingmaps import encoding_maps

        from .bids import software_versions

        mask_img = nib.load(self.inputs.mask_file)
        mask = np.asarray(mask_img.dataobj).astype(bool)
        data = np.asarray(nib.load(self.inputs.patterns_file).dataobj, dtype=np.float64)
        if data.ndim == 3:
            data = data[..., None]
        table = pd.read_csv(self.inputs.conditions_file, sep="\t", dtype={"condition": str})
        with np.load(self.inputs.features_file) as feats:
            names = [str(n) for n in feats["layer_names"]]
            acts = {n: feats[f"layer{i:03d}"] for i, n in enumerate(names)}
            parts = dict(zip(names, (str(p) for p in feats["parts"]), strict=True))
        folds = int(self.inputs.stimulus_folds)
        fitted = encoding_maps(
            data[mask].T,
            table["run"].to_numpy(),
            table["condition"].to_numpy(),
            acts,
            parts,
            entities=dict(self.inputs.entities),
            stimulus_conditions=list(self.inputs.stim_conditions),
            n_components=int(self.inputs.n_components),
            stimulus_folds=folds or None,
            layer_maps=bool(self.inputs.layer_maps),
            device=self.inputs.device,
            random_state=int(self.inputs.seed),
            n_jobs=int(self.inputs.n_jobs),
        )
        files = []
        for name, values, meta in fitted.maps:
            vol = np.full(mask.shape, np.nan, dtype=np.float32)
            vol[mask] = values
            img = nib.Nifti1Image(vol, mask_img.affine)
            img.header.set_xyzt_units("mm")
            path = os.path.join(runtime.cwd, name)
            atomic_save_nifti(img, path)
            side = os.path.join(runtime.cwd, name.replace(".nii.gz", ".json"))
            write_json(
                side,
                {**meta, **dict(self.inputs.sidecar), "SoftwareVersions": software_versions()},
            )
            files += [path, side]
        self._results["out_files"] = files
        return runtime
