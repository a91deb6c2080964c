"""Nipype interfaces for group statistics (sign-flip permutations, clusters, layer winners)."""

from __future__ import annotations

import os

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

from dnnrsa._registries import GROUP_MAP_STATISTICS


class _GroupTestInputSpec(BaseInterfaceInputSpec):
    in_files = InputMultiObject(File(exists=True), mandatory=True, desc="one map per subject")
    n_permutations = traits.Int(1000, usedefault=True)
    tfce = traits.Bool(False, usedefault=True)
    cluster_threshold = traits.Float(0.001, usedefault=True, desc="cluster-forming p")
    seed = traits.Int(0, usedefault=True)
    device = traits.Enum("auto", "cpu", "cuda", usedefault=True)
    atlas = traits.Str("harvard-oxford", usedefault=True)


class _GroupTestOutputSpec(TraitedSpec):
    clusters_file = File(exists=True, desc="cluster table (TSV)")
    mask_file = File(exists=True)
    n_permutations = traits.Int()


# One output per group map statistic (t_file, z_file, p_file, p_tfce_file, p_cluster_file).
for _statistic in GROUP_MAP_STATISTICS:
    _GroupTestOutputSpec.add_class_trait(
        _statistic.output, File(exists=True, desc=_statistic.description)
    )
del _statistic


class GroupSignFlipTest(SimpleInterface):
    """One-sample sign-flip permutation test of subject maps, with a cluster table
    (:func:`dnnrsa.stats.group_test_imgs`). The maps are Fisher z transformed first,
    whatever their comparator (every comparator's scores are correlation-like)."""

    input_spec = _GroupTestInputSpec
    output_spec = _GroupTestOutputSpec

    def _run_interface(self, runtime):
        from dnnrsa._io import atomic_save_nifti
        from dnnrsa.atlas import write_cluster_tsv
        from dnnrsa.stats import group_test_imgs

        res = group_test_imgs(
            list(self.inputs.in_files),
            n_permutations=self.inputs.n_permutations,
            tfce=self.inputs.tfce,
            cluster_forming_threshold=self.inputs.cluster_threshold,
            atlas=self.inputs.atlas,
            random_state=self.inputs.seed,
            device=self.inputs.device,
        )
        for statistic in GROUP_MAP_STATISTICS:
            if statistic.key in res.images:
                path = os.path.join(runtime.cwd, f"{statistic.key}.nii.gz")
                self._results[statistic.output] = path
                atomic_save_nifti(res.images[statistic.key], path)
        self._results["mask_file"] = os.path.join(runtime.cwd, "mask.nii.gz")
        atomic_save_nifti(res.mask_img, self._results["mask_file"])
        self._results["clusters_file"] = os.path.join(runtime.cwd, "clusters.tsv")
        write_cluster_tsv(res.clusters, self._results["clusters_file"])
        self._results["n_permutations"] = int(res.test.n_permutations)
        return runtime


#: The group-level outputs of a map written into the derivatives: result image,
#: entities added to the map's own, and what the sidecar says the statistic is (the
#: cluster table has no sidecar); read from
#: :data:`dnnrsa._registries.GROUP_MAP_STATISTICS`.
GROUP_MAP_OUTPUTS = tuple(
    (statistic.key, dict(statistic.entities), statistic.description)
    for statistic in GROUP_MAP_STATISTICS
    if statistic.derivative
)


class _GroupModelTestInputSpec(BaseInterfaceInputSpec):
    in_files = traits.List(
        traits.List(File(exists=True)),
        mandatory=True,
        desc="per map (a layer of the network): one map per subject",
    )
    entities = traits.List(
        traits.Dict,
        mandatory=True,
        desc="per map: the entities of its outputs (task, space, model, layer)",
    )
    sidecars = traits.List(traits.Dict, desc="per map: the sidecar of its statistic maps")
    tfce = traits.List(traits.Bool, desc="per map: add the TFCE FWE p map (default: none)")
    fisher_z = traits.List(
        traits.Bool,
        desc="per map: Fisher z transform the subject maps first (default: every map)",
    )
    n_permutations = traits.Int(1000, usedefault=True)
    cluster_threshold = traits.Float(0.001, usedefault=True, desc="cluster-forming p")
    seed = traits.Int(0, usedefault=True)
    device = traits.Enum("auto", "cpu", "cuda", usedefault=True)
    atlas = traits.Str("harvard-oxford", usedefault=True)
    n_jobs = traits.Int(
        -1,
        usedefault=True,
        nohash=True,
        desc="threads of the max-T and TFCE (-1: every core; the results do not depend on it)",
    )


class _GroupModelTestOutputSpec(TraitedSpec):
    out_files = OutputMultiObject(
        File(exists=True),
        desc="every file written into the node's folder, named as its derivative: each "
        "statistic map followed by its JSON sidecar, then the map's cluster table",
    )


class GroupModelTest(SimpleInterface):
    """Group tests of all the maps of one network (its layers) in one call
    (:func:`dnnrsa.stats.group_test_maps`), written into the node's folder under the
    names of their derivatives (:class:`~dnnrsa.interfaces.bids.CopyDerivatives` puts
    them into the derivatives).

    Per map: ``<entities>_stat-t_statmap.nii.gz``, ``_stat-z_``, ``_stat-p_`` (max-T
    FWE p over that map), ``_desc-tfce_stat-p_`` where its TFCE flag is set, each with
    its JSON sidecar, and ``<entities>_clusters.tsv``. A map whose entities hold a
    ``desc`` (the encoding maps) keeps it, with the statistic's own appended
    (``desc-<d>tfce``). The maps are Fisher z transformed first unless its
    ``fisher_z`` flag is False.
    """

    input_spec = _GroupModelTestInputSpec
    output_spec = _GroupModelTestOutputSpec

    def _run_interface(self, runtime):
        from pathlib import Path

        from dnnrsa._io import atomic_save_nifti
        from dnnrsa.atlas import write_cluster_tsv
        from dnnrsa.bidsnames import build_name, sidecar_path, write_json
        from dnnrsa.stats import group_test_maps

        from .bids import software_versions

        n_maps = len(self.inputs.in_files)
        tfce = list(self.inputs.tfce) if isdefined(self.inputs.tfce) else [False] * n_maps
        sidecars = list(self.inputs.sidecars) if isdefined(self.inputs.sidecars) else []
        sidecars = sidecars or [{}] * n_maps
        if not len(self.inputs.entities) == len(sidecars) == len(tfce) == n_maps:
            raise ValueError(
                f"entities, sidecars and tfce need one entry per map ({n_maps}); got "
                f"{len(self.inputs.entities)}, {len(sidecars)} and {len(tfce)}"
            )
        fisher = list(self.inputs.fisher_z) if isdefined(self.inputs.fisher_z) else True
        if not isinstance(fisher, bool) and len(fisher) != n_maps:
            raise ValueError(f"fisher_z needs one entry per map ({n_maps}); got {len(fisher)}")
        results = group_test_maps(
            [list(files) for files in self.inputs.in_files],
            fisher_z=fisher,
            n_permutations=self.inputs.n_permutations,
            tfce=tfce,
            cluster_forming_threshold=self.inputs.cluster_threshold,
            atlas=self.inputs.atlas,
            random_state=self.inputs.seed,
            device=self.inputs.device,
            n_jobs=None if self.inputs.n_jobs < 1 else self.inputs.n_jobs,
        )
        out_dir = Path(runtime.cwd)
        versions = software_versions()
        written = []
        for res, ents, sidecar in zip(results, self.inputs.entities, sidecars, strict=True):
            for statistic in GROUP_MAP_STATISTICS:
                if not statistic.derivative or statistic.key not in res.images:
                    continue
                path = out_dir / build_name(
                    statistic_entities(ents, statistic), "statmap", ".nii.gz"
                )
                atomic_save_nifti(res.images[statistic.key], path)
                side = {
                    **sidecar,
                    "Statistic": statistic.description,
                    "SoftwareVersions": versions,
                }
                write_json(sidecar_path(path), side)
                written += [str(path), str(sidecar_path(path))]
            if res.clusters is not None:
                path = out_dir / build_name(dict(ents), "clusters", ".tsv")
                write_cluster_tsv(res.clusters, path)
                written.append(str(path))
        self._results["out_files"] = written
        return runtime


def statistic_entities(ents: dict, statistic) -> dict:
    """The entities of a map's statistic: the map's, then the statistic's; a ``desc`` of
    both is joined (``desc-<map's><statistic's>``)."""
    out = {**ents, **statistic.entities}
    if ents.get("desc") and statistic.entities.get("desc"):
        out["desc"] = ents["desc"] + statistic.entities["desc"]
    return out


class _WinnerInputSpec(BaseInterfaceInputSpec):
    in_files = traits.List(
        traits.List(File(exists=True)), mandatory=True, desc="per layer: one map per subject"
    )
    n_permutations = traits.Int(1000, usedefault=True)
    seed = traits.Int(0, usedefault=True)


class _WinnerOutputSpec(TraitedSpec):
    winner_file = File(exists=True, desc="index of the best layer (-1 outside)")
    margin_file = File(exists=True, desc="group-mean margin of the best over the second layer")
    p_file = File(desc="FWE p of best > second-best (independent subjects chose the layers)")
    out_files = traits.List(File(exists=True), desc="the maps written, in the order above")


class LayerWinner(SimpleInterface):
    """Winner-take-all map across layers, with a test of best against second best
    where there are enough subjects (:func:`dnnrsa.stats.layer_winner_imgs`); the maps
    are Fisher z transformed first, as in :class:`GroupSignFlipTest`."""

    input_spec = _WinnerInputSpec
    output_spec = _WinnerOutputSpec

    def _run_interface(self, runtime):
        from dnnrsa._io import atomic_save_nifti
        from dnnrsa.stats import layer_winner_imgs

        images = layer_winner_imgs(
            [list(files) for files in self.inputs.in_files],
            n_permutations=self.inputs.n_permutations,
            random_state=self.inputs.seed,
        )
        for key, name, fname in (
            ("winner_file", "winner", "winner"),
            ("margin_file", "margin", "margin"),
            ("p_file", "p", "winner_p"),
        ):
            if name in images:
                self._results[key] = os.path.join(runtime.cwd, f"{fname}.nii.gz")
                atomic_save_nifti(images[name], self._results[key])
                self._results.setdefault("out_files", []).append(self._results[key])
        return runtime
