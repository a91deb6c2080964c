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
    isdefined,
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
    # a standard network (--network): left undefined for a checkpoint, so its hash is as before
    band = traits.Str(
        desc="one band of this name holding every layer of the features (undefined: one band "
        "per part of the network)"
    )
    n_jobs = traits.Int(
        1, usedefault=True, nohash=True, desc="folds fitted at once (the maps do not depend on it)"
    )
    # regions (--roi): left undefined without them, so the node's hash is as before
    roi_names = traits.List(traits.Str, desc="the regions' names, in the order of roi_files")
    roi_files = traits.List(
        File(exists=True), desc="the regions' masks (any grid): one table of their means"
    )
    fit_mask = traits.Enum(
        "brain",
        "rois",
        desc="the voxels fitted: the brain mask (undefined: the same) or the union of the regions",
    )


class _EncodingModelOutputSpec(TraitedSpec):
    out_files = OutputMultiObject(
        File(exists=True), desc="the maps and their JSON sidecars, named as their derivatives"
    )


class EncodingModel(SimpleInterface):
    """Cross-validated banded ridge encoding of the patterns from one network's layers
    (:func:`dnnrsa.encodingmaps.encoding_maps`), one band per part of the network (with
    ``band``, one band of that name holding every layer: a standard network); its maps
    are saved with their sidecars under the names of their derivatives. With regions
    (``roi_files``), also the table of each map's mean over each region
    (:func:`dnnrsa.encodingmaps.encoding_roi_table`), and with ``fit_mask="rois"`` the
    fit covers only the voxels of their union (the maps NaN elsewhere)."""

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
        patterns_img = nib.load(self.inputs.patterns_file)
        regions = _regions(self.inputs, patterns_img, mask)
        fit_mask = self.inputs.fit_mask if isdefined(self.inputs.fit_mask) else "brain"
        extra = {}
        if fit_mask == "rois":
            if not regions:
                raise ValueError("fit_mask='rois' needs the regions (roi_files)")
            mask = np.logical_or.reduce([r.mask for r in regions])
            extra["EncodingMask"] = {
                "Kind": "rois",
                "Regions": [r.name for r in regions],
                "Masks": [str(f) for f in self.inputs.roi_files],
                "Description": "only the voxels of the union of the regions were fitted "
                "(each resampled to the BOLD grid by nearest neighbour, within the brain "
                "mask); NaN elsewhere",
            }
        data = np.asarray(patterns_img.dataobj, dtype=np.float64)
        if data.ndim == 3:
            data = data[..., None]
        table = pd.read_csv(self.inputs.conditions_file, sep="\t", dtype={"condition": str})
        with np.load(self.inputs.features_file) as feats:
            names = [str(n) for n in feats["layer_names"]]
            acts = {n: feats[f"layer{i:03d}"] for i, n in enumerate(names)}
            parts = dict(zip(names, (str(p) for p in feats["parts"]), strict=True))
        if isdefined(self.inputs.band):  # one band of every layer
            parts = dict.fromkeys(names, self.inputs.band)
            extra["BandsFrom"] = (
                f"one band ({self.inputs.band}) of every layer of the network's features, "
                "not one per part"
            )
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
                {
                    **meta,
                    **extra,
                    **dict(self.inputs.sidecar),
                    "SoftwareVersions": software_versions(),
                },
            )
            files += [path, side]
        if regions:
            files += self._roi_table(runtime, fitted, regions, mask, fit_mask, software_versions())
        self._results["out_files"] = files
        return runtime

    def _roi_table(self, runtime, fitted, regions, mask, fit_mask, versions) -> list[str]:
        """The table of each map's mean over each region, and its sidecar."""
        from dnnrsa._io import atomic_write
        from dnnrsa.bidsnames import build_name, write_json
        from dnnrsa.encodingmaps import encoding_roi_table

        table = encoding_roi_table(fitted.maps, {r.name: r.mask[mask] for r in regions})
        name = build_name({**dict(self.inputs.entities), "desc": "encodingroi"}, "stats", ".tsv")
        path = os.path.join(runtime.cwd, name)
        with atomic_write(path, "w") as fh:
            table.to_csv(fh, sep="\t", index=False, na_rep="n/a", float_format="%.9g")
        meta = fitted.maps[0][2]
        files = dict(zip(self.inputs.roi_names, self.inputs.roi_files, strict=True))
        side = {
            "Description": "the mean of each encoding map over each region of interest: "
            "the mean of the map's finite values over the region's voxels",
            "Columns": {
                "roi": "the region (--roi NAME)",
                "quantity": "the map's desc (encoding, encodingsplit, encodingunique, "
                "encodingshared, encodingceiling, encodingreliability, encodingfraction)",
                "stat": "the map's stat: r2 or r",
                "band": "the band of a band's map (n/a otherwise)",
                "layer": "the layer of a per-layer map (n/a otherwise)",
                "mean": "mean of the map's finite values over the region (n/a where none is)",
                "n_voxels": "the region's voxels with a finite value in the map",
            },
            "ROIs": {
                r.name: {
                    "Mask": str(files[r.name]),
                    "NumberOfVoxels": r.n_voxels,
                    "VoxelsOnGrid": r.n_grid,
                }
                for r in regions
            },
            "Resampling": "nearest neighbour to the BOLD grid, then within the brain mask",
            "EncodingMask": fit_mask,
            "Bands": meta["Bands"],
            "Conditions": meta["Conditions"],
            **dict(self.inputs.sidecar),
            "SoftwareVersions": versions,
        }
        side_path = os.path.join(runtime.cwd, name.replace(".tsv", ".json"))
        write_json(side_path, side)
        return [path, side_path]


def _regions(inputs, patterns_img, brain) -> list:
    """The regions of ``roi_files`` on the grid of the patterns, within the brain mask
    (:func:`dnnrsa.roi.check_roi`), in their order; none when not given."""
    if not isdefined(inputs.roi_files) or not inputs.roi_files:
        return []
    from dnnrsa.roi import check_roi

    names = list(inputs.roi_names) if isdefined(inputs.roi_names) else []
    if len(names) != len(inputs.roi_files):
        raise ValueError(
            f"roi_names ({len(names)}) must name each of the {len(inputs.roi_files)} roi_files"
        )
    return [
        check_roi(name, path, patterns_img, brain)
        for name, path in zip(names, inputs.roi_files, strict=True)
    ]
