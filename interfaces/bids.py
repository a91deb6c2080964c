"""Nipype interfaces that write BIDS derivatives (atomically) into the output folder: the
workflows' sinks, the only nodes that write there."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    OutputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from dnnrsa._io import atomic_save_nifti, atomic_write
from dnnrsa.bidsnames import build_name, sidecar_path, subject_dir, to_label, write_json


def software_versions() -> dict:
    """Versions of dnnrsa and the libraries whose numbers it reports."""
    from importlib import metadata

    out = {}
    for dist in ("dnnrsa", "numpy", "scipy", "nilearn", "nibabel", "nipype", "torch", "pybids"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def copy_atomic(src, dst) -> None:
    """Copy a file onto ``dst`` atomically."""
    dst = Path(dst)
    with atomic_write(dst, "wb") as out, open(src, "rb") as inp:
        shutil.copyfileobj(inp, out)


def gzip_nifti_atomic(src, dst) -> None:
    """Write an uncompressed NIfTI file ``src`` gzipped onto ``dst`` (``.nii.gz``),
    atomically: the bytes :func:`dnnrsa._io.atomic_save_nifti` (and nibabel) write for
    the same image as ``.nii.gz`` (deterministic gzip at nibabel's compression level,
    no name or time in the gzip header)."""
    from nibabel._compression import DeterministicGzipFile
    from nibabel.openers import Opener

    with atomic_write(Path(dst), "wb") as out, open(src, "rb") as inp:
        with DeterministicGzipFile(
            fileobj=out, mode="wb", compresslevel=Opener.default_compresslevel
        ) as gz:
            shutil.copyfileobj(inp, gz, 16 << 20)


class _WriteDerivativeInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, desc="the file to copy; undefined: nothing is written")
    out_path = traits.Str(mandatory=True, desc="destination path")
    sidecar = traits.Dict(usedefault=True, desc="JSON sidecar written next to the file")


class _WriteDerivativeOutputSpec(TraitedSpec):
    out_file = File(exists=True)


class WriteDerivative(SimpleInterface):
    """Copy one file into the derivatives (atomically), with an optional JSON sidecar.

    An uncompressed NIfTI file (``.nii``) written as ``.nii.gz`` is gzipped on the way
    (:func:`gzip_nifti_atomic`). Without ``in_file`` (an optional output the step before
    did not produce) nothing is written and ``out_file`` stays undefined.
    """

    input_spec = _WriteDerivativeInputSpec
    output_spec = _WriteDerivativeOutputSpec

    def _run_interface(self, runtime):
        out = Path(self.inputs.out_path)
        if not isdefined(self.inputs.in_file):  # the step before it had nothing to give
            logging.getLogger("nipype.interface").info(
                "nothing to write for %s: the step before produced no file", out.name
            )
            return runtime
        _write_derivative(self.inputs.in_file, out, self.inputs.sidecar)
        self._results["out_file"] = str(out)
        return runtime


def _write_derivative(src, out: Path, sidecar: dict) -> None:
    """Copy ``src`` onto ``out`` (gzipping an uncompressed NIfTI written as ``.nii.gz``),
    then its sidecar with the software versions, when ``sidecar`` has fields."""
    if out.name.endswith(".nii.gz") and str(src).endswith(".nii"):
        gzip_nifti_atomic(src, out)
    else:
        copy_atomic(src, out)
    if sidecar:
        write_json(sidecar_path(out), {**sidecar, "SoftwareVersions": software_versions()})


class _MultiOutputSpec(TraitedSpec):
    out_files = OutputMultiObject(File(exists=True))


class _WriteDerivativesInputSpec(BaseInterfaceInputSpec):
    in_files = traits.List(File(exists=True), mandatory=True, desc="the files to copy")
    out_paths = traits.List(traits.Str, mandatory=True, desc="their destinations, in order")
    sidecar = traits.Dict(usedefault=True, desc="JSON sidecar written next to each file")


class WriteDerivatives(SimpleInterface):
    """Copy several files of one step into the derivatives, each as
    :class:`WriteDerivative` writes one (atomically, an uncompressed NIfTI gzipped on
    the way), all with the same sidecar fields: one sink for a step's tables or maps
    instead of one per file."""

    input_spec = _WriteDerivativesInputSpec
    output_spec = _MultiOutputSpec

    def _run_interface(self, runtime):
        files, paths = list(self.inputs.in_files), list(self.inputs.out_paths)
        if len(files) != len(paths):
            raise ValueError(
                f"WriteDerivatives: {len(files)} file(s) for {len(paths)} destination(s): "
                + ", ".join(Path(p).name for p in paths)
            )
        for src, dst in zip(files, paths, strict=True):
            _write_derivative(src, Path(dst), self.inputs.sidecar)
        self._results["out_files"] = paths
        return runtime


def _model(bank, i: int) -> dict[str, str | None]:
    """The model and layer entities of model ``i`` of a bank (no layer for a user's model)."""
    return {"model": bank.model_labels[i], "layer": bank.layer_labels[i] or None}


def _reduction(reductions, layer: str) -> dict:
    """The sidecar field of a layer's feature reduction (none when not reduced)."""
    if not isdefined(reductions) or layer not in reductions:
        return {}
    return {"FeatureReduction": dict(reductions[layer])}


class _WriteLayerRDMsInputSpec(BaseInterfaceInputSpec):
    bank_file = File(exists=True, mandatory=True)
    output_dir = traits.Str(mandatory=True)
    task = traits.Str(mandatory=True)
    extra = traits.Dict(usedefault=True, desc="extra sidecar fields (checkpoint, regime...)")
    reductions = traits.Dict(
        desc="layer name -> how its features were reduced before its RDM (FeatureReduction)"
    )


class WriteLayerRDMs(SimpleInterface):
    """Write each RDM of a model bank as ``task-<t>_model-<m>[_layer-<l>]_rdm.tsv`` + JSON."""

    input_spec = _WriteLayerRDMsInputSpec
    output_spec = _MultiOutputSpec

    def _run_interface(self, runtime):
        from dnnrsa.modelbank import ModelBank
        from dnnrsa.rdm import write_rdm_tsv

        bank = ModelBank.load(self.inputs.bank_file)
        out_dir = Path(self.inputs.output_dir)
        files = []
        for i, rdm in enumerate(bank.rdms):
            path = out_dir / build_name(
                {"task": self.inputs.task, **_model(bank, i)}, "rdm", ".tsv"
            )
            write_rdm_tsv(path, rdm, bank.conditions)
            write_json(
                sidecar_path(path),
                {
                    "LayerName": bank.layer_names[i],
                    "Part": bank.parts[i],
                    "LayerIndex": i,
                    "Metric": bank.metrics[i],
                    "Conditions": bank.conditions,
                    **dict(self.inputs.extra),
                    **_reduction(self.inputs.reductions, bank.layer_names[i]),
                    "SoftwareVersions": software_versions(),
                },
            )
            files.append(str(path))
        self._results["out_files"] = files
        return runtime


class _WriteSubjectMapsInputSpec(BaseInterfaceInputSpec):
    maps_file = File(exists=True, mandatory=True, desc="4D searchlight maps, one volume per model")
    bank_file = File(exists=True, mandatory=True)
    output_dir = traits.Str(mandatory=True)
    subject = traits.Str(mandatory=True)
    task = traits.Str(mandatory=True)
    space = traits.Str(mandatory=True)
    comparator = traits.Str(mandatory=True)
    metric = traits.Str(mandatory=True)
    radius_mm = traits.Float(mandatory=True)
    sources = traits.List(traits.Str)
    model_sidecars = traits.Dict(
        desc="model label -> more sidecar fields of its maps (a standard network and its weights)"
    )


class WriteSubjectMaps(SimpleInterface):
    """Split searchlight maps into one statmap per model/layer, with sidecars."""

    input_spec = _WriteSubjectMapsInputSpec
    output_spec = _MultiOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib

        from dnnrsa.modelbank import ModelBank

        bank = ModelBank.load(self.inputs.bank_file)
        img = nib.load(self.inputs.maps_file)
        data = np.asarray(img.dataobj, dtype=np.float32)
        if data.ndim == 3:
            data = data[..., None]
        if data.shape[3] != bank.n_models:
            raise ValueError(
                f"{self.inputs.maps_file} has {data.shape[3]} volumes; the model bank has "
                f"{bank.n_models} models"
            )
        s = self.inputs.subject
        func = subject_dir(self.inputs.output_dir, s)
        files = []
        for i in range(data.shape[3]):
            entities = {"sub": s, "task": self.inputs.task, "space": self.inputs.space}
            entities |= {**_model(bank, i), "stat": to_label(self.inputs.comparator)}
            out = func / build_name(entities, "statmap", ".nii.gz")
            vol = nib.Nifti1Image(data[..., i], img.affine)
            vol.header.set_xyzt_units("mm")
            atomic_save_nifti(vol, out)
            write_json(
                sidecar_path(out),
                {
                    "LayerName": bank.layer_names[i],
                    "Part": bank.parts[i],
                    "LayerIndex": i,
                    "Comparator": self.inputs.comparator,
                    "Metric": self.inputs.metric,
                    "RadiusMm": self.inputs.radius_mm,
                    "ModelMetric": bank.metrics[i],
                    "Conditions": bank.conditions,
                    "Sources": list(self.inputs.sources) if isdefined(self.inputs.sources) else [],
                    **(
                        dict(self.inputs.model_sidecars.get(bank.model_labels[i], {}))
                        if isdefined(self.inputs.model_sidecars)
                        else {}
                    ),
                    "SoftwareVersions": software_versions(),
                },
            )
            files.append(str(out))
        self._results["out_files"] = files
        return runtime


class _CopyDerivativesInputSpec(BaseInterfaceInputSpec):
    in_files = InputMultiObject(
        File(exists=True),
        mandatory=True,
        desc="files already named as their derivatives (data files and JSON sidecars)",
    )
    output_dir = traits.Str(mandatory=True, desc="the folder of the derivatives written into")


class CopyDerivatives(SimpleInterface):
    """Copy files named as derivatives (data files and their JSON sidecars, as a node
    that names its outputs so lists them) into a folder of the derivatives, in order,
    under the same names, each atomically (a temporary name, then a rename)."""

    input_spec = _CopyDerivativesInputSpec
    output_spec = _MultiOutputSpec

    def _run_interface(self, runtime):
        out_dir = Path(self.inputs.output_dir)
        written = []
        for src in self.inputs.in_files:
            dst = out_dir / Path(src).name
            copy_atomic(src, dst)
            written.append(str(dst))
        self._results["out_files"] = written
        return runtime


__all__ = [
    "CopyDerivatives",
    "WriteDerivative",
    "WriteDerivatives",
    "WriteLayerRDMs",
    "WriteSubjectMaps",
    "copy_atomic",
    "gzip_nifti_atomic",
    "software_versions",
    "write_json",
]
