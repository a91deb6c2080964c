"""Nipype interfaces for group statistics (sign-flip permutations, clusters, layer winners)."""

from __future__ import annotations

import os

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)

CORRELATION_TYPE = ("spearman", "pearson", "kendall_tau_a", "cosine")


def _load_stack(files):
    """Subject maps as (n_subjects, n_voxels) over voxels finite in every subject, and the mask."""
    import nibabel as nib

    imgs = [nib.load(f) for f in files]
    ref = imgs[0]
    for f, img in zip(files, imgs, strict=True):
        if img.shape[:3] != ref.shape[:3] or not np.allclose(img.affine, ref.affine, atol=1e-4):
            raise ValueError(f"{f} is not on the grid of {files[0]}")
    data = np.stack(
        [np.asarray(img.dataobj, dtype=np.float64).reshape(ref.shape[:3]) for img in imgs]
    )
    mask = np.all(np.isfinite(data), axis=0)
    if not mask.any():
        raise ValueError(f"no voxel is finite in all {len(files)} subject maps")
    mask_img = nib.Nifti1Image(mask.astype(np.uint8), ref.affine)
    return data[:, mask], mask_img


class _GroupTestInputSpec(BaseInterfaceInputSpec):
    in_files = InputMultiObject(File(exists=True), mandatory=True, desc="one map per subject")
    comparator = traits.Str("spearman", usedefault=True, desc="Fisher z for correlation types")
    n_permutations = traits.Int(1000, usedefault=True)
    tfce = traits.Bool(False, usedefault=True)
    cluster_threshold = traits.Float(0.001, usedefault=True, desc="cluster-forming p")
    seed = traits.Int(0, usedefault=True)
    device = traits.Enum("auto", "cpu", "cuda", usedefault=True)
    atlas = traits.Str("harvard_oxford", usedefault=True)


class _GroupTestOutputSpec(TraitedSpec):
    t_file = File(exists=True)
    z_file = File(exists=True)
    p_file = File(exists=True, desc="voxel-level FWE p (max-T)")
    p_tfce_file = File(desc="TFCE FWE p")
    p_cluster_file = File(desc="cluster-size FWE p")
    clusters_file = File(exists=True, desc="cluster table (TSV)")
    mask_file = File(exists=True)
    n_permutations = traits.Int()


class GroupSignFlipTest(SimpleInterface):
    """One-sample sign-flip permutation test of subject maps
    (:func:`dnnrsa.stats.sign_flip_test`), with a cluster table."""

    input_spec = _GroupTestInputSpec
    output_spec = _GroupTestOutputSpec

    def _run_interface(self, runtime):
        from scipy import stats as sps

        from dnnrsa._io import atomic_save_nifti
        from dnnrsa.atlas import cluster_table, write_cluster_tsv
        from dnnrsa.stats import fisher_z, sign_flip_test

        files = list(self.inputs.in_files)
        if len(files) < 2:
            raise ValueError(f"a group test needs at least 2 subject maps; got {len(files)}")
        data, mask_img = _load_stack(files)
        if self.inputs.comparator in CORRELATION_TYPE:
            data = fisher_z(data)
        res = sign_flip_test(
            data,
            mask=mask_img,
            n_permutations=self.inputs.n_permutations,
            tfce=self.inputs.tfce,
            cluster_forming_threshold=self.inputs.cluster_threshold,
            threshold_type="p",
            random_state=self.inputs.seed,
            device=self.inputs.device,
        )
        images = res.to_images(mask_img)
        out = {}
        for key, name in (
            ("t_file", "t"),
            ("z_file", "z"),
            ("p_file", "p_fwe"),
            ("p_tfce_file", "p_tfce_fwe"),
            ("p_cluster_file", "p_cluster_size_fwe"),
        ):
            if name in images:
                img = images[name]
                if name.startswith("p"):
                    # p = 1 outside the tested voxels, not 0
                    vals = np.asarray(img.dataobj, dtype=np.float32)
                    inside = np.asarray(mask_img.dataobj) > 0
                    vals[~inside] = 1.0
                    img = img.__class__(vals, img.affine)
                path = os.path.join(runtime.cwd, f"{name}.nii.gz")
                atomic_save_nifti(img, path)
                out[key] = path
        atomic_save_nifti(mask_img, os.path.join(runtime.cwd, "mask.nii.gz"))
        z_threshold = float(sps.norm.isf(self.inputs.cluster_threshold))
        table = cluster_table(
            images["z"],
            z_threshold,
            two_sided=False,
            p_img=out["p_file"],
            atlas=self.inputs.atlas,
        )
        clusters = os.path.join(runtime.cwd, "clusters.tsv")
        write_cluster_tsv(table, clusters)
        out.update(clusters_file=clusters, mask_file=os.path.join(runtime.cwd, "mask.nii.gz"))
        self._results.update(out)
        self._results["n_permutations"] = int(res.n_permutations)
        return runtime


class _WinnerInputSpec(BaseInterfaceInputSpec):
    in_files = traits.List(
        traits.List(File(exists=True)), mandatory=True, desc="per layer: one map per subject"
    )
    comparator = traits.Str("spearman", usedefault=True)
    n_permutations = traits.Int(1000, usedefault=True)
    seed = traits.Int(0, usedefault=True)


class _WinnerOutputSpec(TraitedSpec):
    winner_file = File(exists=True, desc="index of the best layer (-1 outside)")
    margin_file = File(exists=True, desc="group-mean margin of the best over the second layer")
    p_file = File(desc="FWE p of best > second-best (independent subjects chose the layers)")


class LayerWinner(SimpleInterface):
    """Winner-take-all map across layers (:func:`dnnrsa.stats.compare_best_layers`)."""

    input_spec = _WinnerInputSpec
    output_spec = _WinnerOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib

        from dnnrsa._io import atomic_save_nifti
        from dnnrsa.stats import compare_best_layers, fisher_z, winner_take_all

        per_layer = [list(f) for f in self.inputs.in_files]
        n_sub = len(per_layer[0])
        if any(len(f) != n_sub for f in per_layer):
            raise ValueError("every layer needs the same subjects")
        ref = nib.load(per_layer[0][0])
        shape = ref.shape[:3]
        maps = np.stack(
            [
                np.stack(
                    [np.asarray(nib.load(f).dataobj, dtype=np.float64).reshape(-1) for f in files]
                )
                for files in per_layer
            ],
            axis=1,
        )  # (n_subjects, n_layers, n_voxels)
        if self.inputs.comparator in CORRELATION_TYPE:
            maps = fisher_z(maps)
        inside = np.all(np.isfinite(maps), axis=(0, 1))
        winner = np.full(inside.size, -1, dtype=np.int16)
        margin = np.zeros(inside.size, dtype=np.float32)
        w, m = winner_take_all(maps[:, :, inside])
        winner[inside], margin[inside] = w, m
        atomic_save_nifti(
            nib.Nifti1Image(winner.reshape(shape), ref.affine),
            os.path.join(runtime.cwd, "winner.nii.gz"),
        )
        atomic_save_nifti(
            nib.Nifti1Image(margin.reshape(shape), ref.affine),
            os.path.join(runtime.cwd, "margin.nii.gz"),
        )
        self._results["winner_file"] = os.path.join(runtime.cwd, "winner.nii.gz")
        self._results["margin_file"] = os.path.join(runtime.cwd, "margin.nii.gz")
        if n_sub >= 4:
            res = compare_best_layers(
                maps[:, :, inside],
                random_state=self.inputs.seed,
                n_permutations=self.inputs.n_permutations,
            )
            p = np.ones(inside.size, dtype=np.float32)
            p[inside] = res.test.p_fwe
            path = os.path.join(runtime.cwd, "winner_p.nii.gz")
            atomic_save_nifti(nib.Nifti1Image(p.reshape(shape), ref.affine), path)
            self._results["p_file"] = path
        return runtime
