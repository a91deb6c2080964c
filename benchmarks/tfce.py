"""Time whole-brain TFCE: merge tree, the previous algorithm and nilearn, side by side.

Maps: sign-flipped one-sample t maps of smooth random subject maps (20 subjects) in
the MNI 2 mm brain mask (235,375 voxels), as the permutations of
``dnnrsa.stats.sign_flip_test`` produce them, plus one rounded map with ties. Each
map goes through

1. ``dnnrsa._tfce.tfce`` (merge tree, all maps in one batched call);
2. the previous algorithm (kept below): connected components of the graph of
   supra-threshold neighbours, relabelled at each of the 100 thresholds;
3. ``nilearn.mass_univariate._utils.calculate_tfce``, the TFCE of ``permuted_ols``
   (``scipy.ndimage.label`` on the volume at each threshold).

It prints the time per map (wall clock and CPU time of this process; the best of
``--rounds`` interleaved runs of each), the ratios, and the largest difference from
nilearn.

``--noise`` uses unsmoothed Gaussian noise instead (many small clusters at every
threshold), ``--connectivity 26`` the neighbourhood of FSL's ``randomise``.

Run: ``python benchmarks/tfce.py`` (``--help`` for the settings).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

# -- the previous algorithm (dnnrsa before the merge tree), for comparison -----------


def _components(n_nodes, u, v):
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(u), dtype=np.int8), (u, v)), shape=(n_nodes, n_nodes)).tocsr()
    return connected_components(graph, directed=False)[1]


def _previous_one_sign(values, threshs, edges, e, h):
    out = np.zeros_like(values)
    lowest = threshs[0]
    if not lowest > 0:
        return out
    order = np.argsort(-values, kind="stable")
    n_live = int(np.count_nonzero(values >= lowest))
    order = order[:n_live]
    rank = np.full(values.shape, -1, dtype=np.int64)
    rank[order] = np.arange(n_live)
    sorted_values = values[order]
    u, v = edges
    birth = np.minimum(values[u], values[v])
    live = birth >= lowest
    u, v, birth = rank[u[live]], rank[v[live]], birth[live]
    edge_order = np.argsort(-birth, kind="stable")
    u, v, birth = u[edge_order], v[edge_order], birth[edge_order]
    for thr in threshs:
        n_nodes = int(np.searchsorted(-sorted_values, -thr, side="right"))
        if n_nodes == 0:
            break
        n_edges = int(np.searchsorted(-birth, -thr, side="right"))
        comp = _components(n_nodes, u[:n_edges], v[:n_edges])
        sizes = np.bincount(comp).astype(values.dtype)
        out[order[:n_nodes]] += sizes[comp] ** e * thr**h
    return out


def previous_tfce(maps, edges, two_sided=True, e=0.5, h=2.0, n_steps=100):
    """TFCE as dnnrsa computed it for large masks before the merge tree."""
    maps = np.nan_to_num(maps, nan=0.0)
    top = np.max(np.abs(maps), axis=1) if two_sided else np.max(maps, axis=1)
    top = np.maximum(top, 0.0)
    steps = np.arange(1, n_steps + 1, dtype=maps.dtype)
    threshs = steps[None, :] * (top[:, None] / n_steps)
    threshs[:, -1] = top
    out = np.zeros_like(maps)
    for i in range(maps.shape[0]):
        for sign in (1.0, -1.0) if two_sided else (1.0,):
            out[i] += sign * _previous_one_sign(maps[i] * sign, threshs[i], edges, e, h)
    return out


# -- data -----------------------------------------------------------------------------


def _maps(n_maps, n_subjects, seed):
    from nilearn.datasets import load_mni152_brain_mask
    from scipy import ndimage

    mask = np.asanyarray(load_mni152_brain_mask(resolution=2).dataobj) > 0
    rng = np.random.default_rng(seed)
    data = np.stack(
        [
            ndimage.gaussian_filter(rng.standard_normal(mask.shape), 1.0)[mask]
            for _ in range(n_subjects)
        ]
    )
    data /= data.std(axis=1, keepdims=True)
    data[:, :2000] += 0.8  # a planted effect
    signs = np.ones((n_maps, n_subjects))
    signs[1:] = rng.choice([-1.0, 1.0], size=(n_maps - 1, n_subjects))  # map 0: observed
    total = signs @ data
    sumsq = np.sum(data * data, axis=0)
    t = total / np.sqrt(np.maximum(sumsq - total**2 / n_subjects, 0.0))
    t *= np.sqrt((n_subjects - 1) / n_subjects)
    t[-1] = np.round(t[-1], 1)  # a map with many ties
    return t, mask


def _nilearn_tfce(maps, mask, connectivity, two_sided):
    from nilearn.mass_univariate._utils import calculate_tfce
    from scipy import ndimage

    structure = ndimage.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[connectivity])
    out = np.empty_like(maps)
    for i, map_ in enumerate(maps):
        vol = np.zeros((*mask.shape, 1))
        vol[mask, 0] = map_
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[i] = calculate_tfce(vol, structure, two_sided_test=two_sided)[..., 0][mask]
    return out


def _timed(func):
    wall, cpu = time.perf_counter(), time.process_time()
    result = func()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-maps", type=int, default=6)
    parser.add_argument("--n-subjects", type=int, default=20)
    parser.add_argument("--connectivity", type=int, default=6, choices=[6, 18, 26])
    parser.add_argument("--one-sided", action="store_true")
    parser.add_argument(
        "--noise",
        action="store_true",
        help="unsmoothed Gaussian noise maps instead of t maps (many small clusters)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="timed runs of each algorithm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-previous", action="store_true")
    parser.add_argument("--skip-nilearn", action="store_true")
    args = parser.parse_args(argv)
    two_sided = not args.one_sided

    from dnnrsa import _tfce

    maps, mask = _maps(max(args.n_maps, 2), args.n_subjects, args.seed)
    if args.noise:
        maps = np.random.default_rng(args.seed).standard_normal(maps.shape)
    n_maps = maps.shape[0]
    layout = _tfce.VolumeLayout(mask, connectivity=args.connectivity)
    layout.forward_neighbours, layout.edges  # noqa: B018 - built once per mask, not timed
    print(
        f"{n_maps} {'noise' if args.noise else 't'} maps x {maps.shape[1]} voxels "
        "(MNI 2 mm mask), "
        f"connectivity {args.connectivity}, {'two' if two_sided else 'one'}-sided, "
        "E=0.5, H=2, 100 steps"
    )

    algorithms = [("merge tree (dnnrsa now)", lambda m: _tfce.tfce(m, layout, two_sided=two_sided))]
    if not args.skip_previous:
        algorithms.append(
            (
                "previous: relabel at each threshold",
                lambda m: previous_tfce(m, layout.edges, two_sided),
            )
        )
    if not args.skip_nilearn:
        algorithms.append(
            (
                "nilearn calculate_tfce",
                lambda m: _nilearn_tfce(m, mask, args.connectivity, two_sided),
            )
        )
    for _, run in algorithms:  # warm-up (imports, first allocations), not timed
        run(maps[:1])
    # rounds interleave the algorithms; each keeps its fastest round (shared machine)
    best = {name: [np.inf, np.inf, None] for name, _ in algorithms}
    for _ in range(args.rounds):
        for name, run in algorithms:
            out, wall, cpu = _timed(lambda run=run: run(maps))
            best[name] = [min(best[name][0], wall), min(best[name][1], cpu), out]
    rows = [(name, *best[name]) for name, _ in algorithms]
    ours = rows[0][3]
    ref = rows[-1][3] if not args.skip_nilearn else None

    base_wall, base_cpu = rows[0][1], rows[0][2]
    print(
        f"{'algorithm':<38}{'wall s/map':>12}{'cpu s/map':>11}"
        f"{'wall ratio':>12}{'cpu ratio':>11}{'max |diff| vs nilearn':>24}"
    )
    for name, wall, cpu, out in rows:
        diff = "" if ref is None else f"{np.abs(out - ref).max():.3g}"
        print(
            f"{name:<38}{wall / n_maps:>12.4f}{cpu / n_maps:>11.4f}"
            f"{wall / base_wall:>11.1f}x{cpu / base_cpu:>10.1f}x{diff:>24}"
        )
    if ref is not None:
        rel = np.abs(ours - ref).max() / np.abs(ref).max()
        print(
            f"merge tree vs nilearn: max |diff| {np.abs(ours - ref).max():.3g} "
            f"(relative to the largest score {rel:.3g}); "
            f"identical bit for bit: {bool(np.array_equal(ours, ref))}; "
            f"largest |TFCE| {np.abs(ref).max():.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
