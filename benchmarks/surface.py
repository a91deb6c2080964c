"""Surface searchlight throughput: vertices per second on fsaverage5, beside the volume.

Builds the discs of both hemispheres of nilearn's fsaverage5 (10,242 vertices each,
midthickness surface, the zero-thickness medial wall left out) at ``--radius-mm``,
synthetic condition patterns and random model RDMs, and runs the searchlight engine
(``dnnrsa.searchlight.searchlight_rsa_array``) on every vertex. Beside it, the same
engine on the same number of centres of nilearn's MNI152 2 mm brain mask (a slab of
consecutive centres in the middle of the mask, with their voxels), with spheres of 3 voxels radius (6 mm, 123 voxels) and of 2 voxels (4 mm,
33 voxels, about the size of a 10 mm disc on fsaverage5). Prints the time to build
the discs (geodesic and Euclidean) and the spheres, the searchlight times, and how
many maps of one hemisphere the mesh TFCE enhances per second. Then
the same on two icospheres of order 6 (fsaverage6's 40,962 vertices each) whose mean
edge is half fsaverage5's, as fsaverage6's is: a stand-in for fsaverage6's density.

fsaverage6 is not shipped with nilearn: give its two meshes with ``--fsaverage6 LEFT
RIGHT`` (FreeSurfer's ``lh.pial``/``rh.pial`` or GIFTI files), or it is skipped.

Usage::

    python benchmarks/surface.py
    python benchmarks/surface.py --radius-mm 6 --fsaverage6 lh.midthickness rh.midthickness

Timings vary with the load on the machine; the load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--radius-mm", type=float, default=10.0, help="disc radius on the mesh")
    parser.add_argument("--conditions", type=int, default=72)
    parser.add_argument("--models", type=int, default=29)
    parser.add_argument("--n-jobs", type=int, default=-1, help="CPU threads (-1: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fsaverage6", nargs=2, metavar=("LEFT", "RIGHT"), default=None, help="mesh files"
    )
    parser.add_argument(
        "--icosphere-orders",
        type=int,
        nargs="*",
        default=[6],
        help="also two icospheres of each order (6: fsaverage6's vertex count, 7: fsaverage's) "
        "with fsaverage5's mean edge halved at each order; from order 7 on, discs only",
    )
    return parser


def _searchlight(nb, args, rng) -> tuple[float, float]:
    """Seconds of the engine on ``nb``, and the fraction of finite scores."""
    from dnnrsa.searchlight import searchlight_rsa_array

    n_cond = args.conditions
    patterns = rng.standard_normal((n_cond, nb.n_voxels))
    patterns += rng.standard_normal((n_cond, 1))
    models = rng.random((args.models, n_cond * (n_cond - 1) // 2))
    t0 = time.perf_counter()
    scores = searchlight_rsa_array(patterns, nb, models, min_voxels=1, n_jobs=args.n_jobs)
    return time.perf_counter() - t0, float(np.isfinite(scores).mean())


def _surface(name, meshes, walls, args, rng, *, searchlight=True) -> int:
    from dnnrsa import surface

    parts = {}
    for metric in ("geodesic", "euclidean") if searchlight else ("geodesic",):
        t0 = time.perf_counter()
        parts[metric] = [
            surface.surface_neighbourhoods(
                m.coords, m.faces, args.radius_mm, mask=~w, metric=metric
            )
            for m, w in zip(meshes, walls, strict=True)
        ]
        t_nb = time.perf_counter() - t0
        sizes = np.concatenate([p.sizes for p in parts[metric]])
        print(
            f"{name:11s}: {metric} discs of {args.radius_mm:g} mm for {sizes.size} vertices "
            f"built in {t_nb:.2f} s; members median {np.median(sizes):.0f} "
            f"(min {sizes.min()}, max {sizes.max()})"
        )
    nb = surface.stack_neighbourhoods(parts["geodesic"])
    if not searchlight:
        return nb.n_centres
    t_engine, finite = _searchlight(nb, args, rng)
    print(
        f"{name:11s}: searchlight on {nb.n_centres} vertices (geodesic discs) in "
        f"{t_engine:.2f} s -> {nb.n_centres / t_engine:,.0f} vertices/s "
        f"(finite scores {finite:.3f})"
    )
    return nb.n_centres


def _mesh_tfce(mesh, wall, rng, n_maps=500) -> None:
    from dnnrsa import surface

    adjacency = surface.mesh_adjacency(mesh.faces, mesh.n_vertices, mask=~wall)
    maps = rng.standard_normal((n_maps, adjacency.shape[0]))
    for _ in range(4):  # smooth along the mesh, so that pieces grow and merge
        maps = (maps @ adjacency + maps) / 7.0
    surface.tfce_mesh(maps[:1], adjacency)  # numba compiles or loads its cache
    for two_sided in (False, True):
        t0 = time.perf_counter()
        surface.tfce_mesh(maps, adjacency, two_sided=two_sided)
        t = time.perf_counter() - t0
        print(
            f"fsaverage5 : mesh TFCE ({'two' if two_sided else 'one'}-sided) of {n_maps} maps of "
            f"the left hemisphere in {t:.2f} s -> {n_maps / t:,.0f} maps/s"
        )


def _mean_edge(mesh) -> float:
    return float(
        np.mean(
            np.linalg.norm(mesh.coords[mesh.faces[:, 0]] - mesh.coords[mesh.faces[:, 1]], axis=1)
        )
    )


def _volume(n_centres, radius_voxels, args, rng) -> None:
    from nilearn.datasets import load_mni152_brain_mask

    from dnnrsa._neighbourhoods import Neighbourhoods
    from dnnrsa.searchlight import volume_neighbourhoods

    mask_img = load_mni152_brain_mask(resolution=2)
    t0 = time.perf_counter()
    whole = volume_neighbourhoods(mask_img, radius_mm=2.0 * radius_voxels)
    t_nb = time.perf_counter() - t0
    # a slab of consecutive centres (C order) in the middle of the mask
    first = max(0, (whole.n_centres - n_centres) // 2)
    pick = np.arange(first, min(first + n_centres, whole.n_centres))
    # only the voxels of the chosen spheres, so that the engine prepares the data of
    # about as many voxels as there are centres (as on the mesh), not the whole brain's
    rows = whole.indices[pick]
    used = np.unique(rows[rows != whole.n_voxels])
    rows = np.where(rows != whole.n_voxels, np.searchsorted(used, rows), used.size)
    nb = Neighbourhoods(rows.astype(np.int32), whole.sizes[pick], whole.centres[pick], used.size)
    t_engine, finite = _searchlight(nb, args, rng)
    print(
        f"volume 2 mm: spheres of {radius_voxels} voxels ({2 * radius_voxels} mm, median "
        f"{np.median(nb.sizes):.0f} voxels), built for the whole mask ({whole.n_centres} "
        f"voxels) in {t_nb:.2f} s; searchlight on a slab of {nb.n_centres} centres "
        f"({nb.n_voxels} voxels) in "
        f"{t_engine:.2f} s -> {nb.n_centres / t_engine:,.0f} spheres/s (finite {finite:.3f})"
    )


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from dnnrsa import surface

    print(
        f"surface searchlight benchmark: radius {args.radius_mm:g} mm, {args.conditions} "
        f"conditions, {args.models} models, correlation / spearman, n_jobs={args.n_jobs}"
    )
    print(f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    rng = np.random.default_rng(args.seed)
    hemis = ("left", "right")
    meshes = [surface.fsaverage_mesh(h, "midthickness") for h in hemis]
    walls = [surface.fsaverage_medial_wall(h) for h in hemis]
    print(
        f"fsaverage5 : {sum(m.n_vertices for m in meshes)} vertices, medial wall "
        f"{sum(int(w.sum()) for w in walls)} left out (zero thickness)"
    )
    n_centres = _surface("fsaverage5", meshes, walls, args, rng)
    _mesh_tfce(meshes[0], walls[0], rng)
    for radius_voxels in (3, 2):
        _volume(n_centres, radius_voxels, args, rng)
    if args.fsaverage6 is None:
        print(
            "fsaverage6 : skipped (not shipped with nilearn, no mesh offline; "
            "give --fsaverage6 LEFT RIGHT)"
        )
    else:
        meshes6 = [surface.load_mesh(p) for p in args.fsaverage6]
        walls6 = [np.zeros(m.n_vertices, dtype=bool) for m in meshes6]
        print(f"fsaverage6 : {sum(m.n_vertices for m in meshes6)} vertices, no medial wall mask")
        _surface("fsaverage6", meshes6, walls6, args, rng)
    edge5 = np.mean([_mean_edge(m) for m in meshes])
    for order in args.icosphere_orders:
        radius = edge5 / 2 ** (order - 5) / _mean_edge(surface.icosphere(order, 1.0))
        ico = surface.icosphere(order, radius)
        print(
            f"icosphere {order}: {2 * ico.n_vertices} vertices (two of radius {radius:.1f} mm, "
            f"mean edge {_mean_edge(ico):.2f} mm = fsaverage5's {edge5:.2f} / {2 ** (order - 5)})"
        )
        _surface(
            f"icosphere {order}", [ico, ico], [np.zeros(ico.n_vertices, dtype=bool)] * 2, args,
            rng, searchlight=order < 7,
        )  # fmt: skip
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
