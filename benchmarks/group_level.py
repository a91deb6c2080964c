"""The BIDS App's group level, before and after one test node per network.

Before, ``init_group_wf`` made one ``GroupSignFlipTest`` node per layer map (which also
formed the permuted t maps for the cluster-size FWE p that nothing wrote) and four
``WriteDerivative`` nodes per map: with 4 networks x 29 layers, 580 nipype nodes. Now
each network has one ``GroupModelTest`` node (``dnnrsa.stats.group_test_maps``) that
tests all its layers by the blocked max-T, FWE per map, and names every file as its
derivative, and one sink (``CopyDerivatives``) writes them into the output folder.

The script writes a group of subject maps as the participant level does (MNI grid of
``--voxel-size`` mm from the demo generator, ``--networks`` x ``--layers`` maps per
subject, float32 compressed NIfTI with sidecars), finds them as ``dnnrsa ... group``
does, then runs with the configured MultiProc plugin (``--nprocs``):

- ``before``: the workflow of per-map nodes (the code of ``init_group_wf`` before the
  change, kept here), into one output folder;
- ``after``: ``add_group_tests`` of ``init_group_wf`` (one node per network), into
  another;

and checks that both folders hold the same files, byte for byte (maps, cluster tables
and sidecars). The layer-winner and ROI nodes, the same in both, are left out. It
prints the wall time of each, the number of nodes, the time per map and the ratio.

Run::

    python benchmarks/group_level.py                               # 4 mm, 4 x 29 maps, 20 subjects
    python benchmarks/group_level.py --voxel-size 2 --skip-before  # the study's grid, after only
    python benchmarks/group_level.py --networks 1 --layers 4 --subjects 6   # a smoke run
    python benchmarks/group_level.py --collect-only                # the common-voxel check
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxel-size", type=float, default=4.0, help="grid in mm")
    parser.add_argument("--networks", type=int, default=4)
    parser.add_argument("--layers", type=int, default=29, help="layers per network")
    parser.add_argument("--subjects", type=int, default=20)
    parser.add_argument("--n-perm", type=int, default=1000, help="permutations (app default)")
    parser.add_argument("--nprocs", type=int, default=None, help="default: all cores")
    parser.add_argument("--skip-before", action="store_true", help="time the new workflow only")
    parser.add_argument(
        "--collect-only",
        action="store_true",
        help="time finding the maps only: the common-voxel check before and after",
    )
    parser.add_argument("--out", default=None, help="keep everything in this folder")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def write_subject_maps(out: Path, args) -> int:
    """Subject maps as the participant level writes them; returns the brain voxels."""
    import nibabel as nib
    from scipy import ndimage

    from dnnrsa.demo.bold import make_grid

    grid = make_grid(args.voxel_size)
    mask = grid.mask
    rng = np.random.default_rng(args.seed)
    sigma = 4.0 / args.voxel_size  # about 4 mm of smoothness, like a searchlight map
    for s in range(1, args.subjects + 1):
        func = out / f"sub-{s:02d}" / "func"
        func.mkdir(parents=True)
        base = ndimage.gaussian_filter(rng.standard_normal(mask.shape), sigma)
        base /= base[mask].std()
        for n in range(args.networks):
            for k in range(args.layers):
                data = 0.1 * (
                    np.roll(base, 3 * k + 7 * n, axis=0) + rng.standard_normal(mask.shape)
                )
                data[mask & (np.indices(mask.shape)[2] < mask.shape[2] // 3)] += 0.05
                data = np.tanh(data).astype(np.float32)
                data[~mask] = np.nan
                stem = (
                    f"sub-{s:02d}_task-emo_space-MNI152NLin2009cAsym_model-net{n}_layer-l{k}"
                    "_stat-spearman_statmap"
                )
                nib.Nifti1Image(data, grid.affine).to_filename(func / f"{stem}.nii.gz")
                side = {"LayerName": f"l{k}", "Part": "crossmodal", "LayerIndex": k}
                (func / f"{stem}.json").write_text(json.dumps({**side, "Comparator": "spearman"}))
    return int(mask.sum())


def add_per_map_tests(wf, config, groups) -> None:
    """The group tests as ``init_group_wf`` built them before one node per network:
    a GroupSignFlipTest node and four WriteDerivative nodes per map."""
    from nipype.pipeline import engine as pe

    from dnnrsa.bidsnames import build_name, to_label
    from dnnrsa.interfaces.bids import WriteDerivative
    from dnnrsa.interfaces.stats import GroupSignFlipTest

    out = config.output_dir
    for g in groups:
        tag = to_label(f"{g.task}{g.space}{g.model}{g.layer or ''}", fallback="")
        test = pe.Node(
            GroupSignFlipTest(
                in_files=[str(f) for f in g.files],
                n_permutations=config.n_permutations,
                tfce=config.tfce,
                cluster_threshold=config.cluster_threshold,
                seed=config.seed,
                device=config.device,
            ),
            name=f"test_{tag}",
        )
        sidecar = {
            "LayerName": g.layer_name,
            "Part": g.part,
            "LayerIndex": g.layer_index,
            "Comparator": config.comparator,
            "FisherZ": config.comparator in ("spearman", "pearson", "kendall_tau_a", "cosine"),
            "Test": "one-sample sign-flip permutation test across subjects (one-sided, > 0)",
            "NumberOfPermutations": config.n_permutations,
            "Subjects": list(g.subjects),
            "Sources": [str(f) for f in g.files],
        }
        ents = {"task": g.task, "space": g.space, "model": g.model, "layer": g.layer}
        outputs = [
            ("t_file", build_name({**ents, "stat": "t"}, "statmap", ".nii.gz"), {"Statistic": "t"}),
            (
                "z_file",
                build_name({**ents, "stat": "z"}, "statmap", ".nii.gz"),
                {"Statistic": "z of the uncorrected t"},
            ),
            (
                "p_file",
                build_name({**ents, "stat": "p"}, "statmap", ".nii.gz"),
                {"Statistic": "voxel-level FWE p (max-T)"},
            ),
            ("clusters_file", build_name(ents, "clusters", ".tsv"), None),
        ]
        for field, fname, extra in outputs:
            sink = pe.Node(
                WriteDerivative(
                    out_path=str(out / fname), sidecar={**sidecar, **extra} if extra else {}
                ),
                name=f"write_{field}_{tag}",
            )
            sink.overwrite = True
            wf.connect(test, field, sink, "in_file")


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes()
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix in (".gz", ".json", ".tsv")
    }


def _common_voxels_before(group) -> bool:
    """The common-voxel check of the group level before the cheap pass: every map read."""
    import nibabel as nib

    finite = None
    for f in group.files:
        ok = np.isfinite(np.asarray(nib.load(f).dataobj))
        finite = ok if finite is None else finite & ok
    return finite is not None and bool(finite.any())


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import logging

    from nipype.pipeline import engine as pe

    from dnnrsa.bids_app.execution import run_workflow
    from dnnrsa.bids_app.group import _has_common_voxels, find_subject_maps
    from dnnrsa.bids_app.parser import build_parser as app_parser
    from dnnrsa.bids_app.run import config_from_options
    from dnnrsa.bids_app.workflows import add_group_tests

    base = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="dnnrsa-group-"))
    base.mkdir(parents=True, exist_ok=True)
    bids = base / "bids"
    bids.mkdir(exist_ok=True)
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.10.0"}')
    maps_dir = base / "maps"
    n_maps = args.networks * args.layers
    try:
        t0 = time.perf_counter()
        n_vox = write_subject_maps(maps_dir, args)
        print(
            f"{args.subjects} subjects x {n_maps} maps ({args.networks} networks x "
            f"{args.layers} layers) on the {args.voxel_size:g} mm grid ({n_vox} brain voxels) "
            f"written in {time.perf_counter() - t0:.1f} s; {args.n_perm} permutations"
        )

        def config(name):
            argv = [str(bids), str(maps_dir), "group", "-w", str(base / f"work_{name}")]
            argv += ["--n-permutations", str(args.n_perm), "--seed", str(args.seed)]
            argv += ["--nprocs", str(args.nprocs)] if args.nprocs else []
            conf = config_from_options(app_parser().parse_args(argv))
            if name == "collect":  # the maps are read from the participant outputs
                return conf
            return dataclasses.replace(conf, output_dir=base / f"out_{name}")

        conf = config("collect")
        logging.getLogger("nipype.workflow").setLevel(logging.WARNING)
        if args.collect_only:
            found = find_subject_maps(conf)
            times = {}
            for name, check in (("before", _common_voxels_before), ("after", _has_common_voxels)):
                best = float("inf")
                for _ in range(2):
                    t0 = time.perf_counter()
                    kept = [g.stem for g in found if check(g)]
                    best = min(best, time.perf_counter() - t0)
                times[name] = (best, kept)
            assert times["before"][1] == times["after"][1]
            print(
                f"common-voxel check of {len(found)} maps x {args.subjects} subjects "
                f"(best of 2): before (every map read whole) {times['before'][0]:.2f} s, "
                f"after {times['after'][0]:.2f} s ({times['before'][0] / times['after'][0]:.1f}x); "
                f"the same {len(times['after'][1])} maps kept"
            )
            return 0
        t0 = time.perf_counter()
        groups = [g for g in find_subject_maps(conf) if _has_common_voxels(g)]
        collect_s = time.perf_counter() - t0
        print(f"finding the maps (dnnrsa.bids_app.group): {collect_s:.1f} s")

        rows = []
        for name, add in (("before", add_per_map_tests), ("after", add_group_tests)):
            if name == "before" and args.skip_before:
                continue
            conf = config(name)
            conf.output_dir.mkdir(parents=True, exist_ok=True)
            wf = pe.Workflow(name=f"group_{name}", base_dir=str(conf.work_dir))
            add(wf, conf, groups)
            n_nodes = len(wf.list_node_names())
            t0 = time.perf_counter()
            run_workflow(wf, conf)
            seconds = time.perf_counter() - t0
            rows.append((name, n_nodes, seconds))
            print(f"{name}: {n_nodes} nodes, {seconds:.1f} s ({seconds / n_maps:.2f} s a map)")

        print(f"\n{'workflow':<10}{'nodes':>7}{'wall s':>10}{'s a map':>9}{'speed-up':>10}")
        for name, n_nodes, seconds in rows:
            ratio = rows[0][2] / seconds
            print(f"{name:<10}{n_nodes:>7}{seconds:>10.1f}{seconds / n_maps:>9.2f}{ratio:>9.1f}x")
        print(
            f"({n_maps} maps x {args.subjects} subjects, {n_vox} voxels, {args.n_perm} "
            f"permutations, {conf.nprocs} processes; finding the maps: {collect_s:.1f} s more)"
        )
        if not args.skip_before:
            before, after = files_of(base / "out_before"), files_of(base / "out_after")
            same = sorted(before) == sorted(after) and all(before[k] == after[k] for k in before)
            print(f"outputs identical byte for byte: {same} ({len(after)} files)")
            if not same:
                return 1
    finally:
        if not args.out:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
