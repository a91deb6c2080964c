"""Time whole-brain TFCE: flooding, merge tree, relabelling and nilearn, side by side.

Maps: sign-flipped one-sample t maps of smooth random subject maps (20 subjects) in
the MNI 2 mm brain mask (235,375 voxels), as the permutations of
``dnnrsa.stats.sign_flip_test`` produce them, plus one rounded map with ties. Each
map goes through

1. ``dnnrsa._tfce.tfce``: the merge tree built by flooding, compiled with numba
   (``dnnrsa._tfce_numba``), all maps in one batched call, on ``--n-jobs`` threads
   (1 by default: time per map);
2. the merge tree of numpy and scipy that dnnrsa used before (kept below): one
   ``connected_components`` call per threshold on the clusters of the threshold
   above and the voxels of this one;
3. the algorithm before that (kept below): connected components of the graph of
   supra-threshold neighbours, relabelled at each of the 100 thresholds;
4. ``nilearn.mass_univariate._utils.calculate_tfce``, the TFCE of ``permuted_ols``
   (``scipy.ndimage.label`` on the volume at each threshold).

It prints the time of the flooding's first call in this process (numba compiling
its functions, or loading them from its cache: the script says which;
``--no-cache`` compiles into a fresh cache folder), then the time per map of warm
calls (wall clock and CPU time of this process; the best of ``--rounds`` interleaved
runs of each, after one untimed warm-up run of each), the ratios, and the largest
difference from nilearn.

``--noise`` uses unsmoothed Gaussian noise instead (many small clusters at every
threshold), ``--connectivity 26`` the neighbourhood of FSL's ``randomise``.
``--permutations N`` also times ``dnnrsa.stats.sign_flip_test(tfce=True)`` with N
sign flips of the 20 subject maps (the group level's TFCE of one map).

Run: ``python benchmarks/tfce.py`` (``--help`` for the settings).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

import numpy as np

# -- the merge tree of numpy and scipy (dnnrsa before the flooding), for comparison ----


def _levels(values: np.ndarray, threshs: np.ndarray) -> np.ndarray:
    """Number of thresholds at or below each value: ``searchsorted(threshs, v, "right")``.

    The thresholds are (nearly) equally spaced, so a first guess from the step is
    corrected to the exact count by comparing with the thresholds themselves.
    """
    n_steps = threshs.size
    scale = n_steps / threshs[-1]
    if not np.isfinite(scale):
        return np.searchsorted(threshs, values, side="right")
    bounds = np.concatenate([[-np.inf], threshs, [np.inf]])  # bounds[k] = k-th threshold
    level = (values * scale).astype(np.int64)
    np.clip(level, 0, n_steps, out=level)
    while True:
        up = np.take(bounds, level + 1) <= values
        level += up
        down = np.take(bounds, level) > values
        level -= down
        if not (up.any() or down.any()):
            return level


try:  # C routines of scipy.sparse (COO to CSR, CSR to CSC, connected components)
    from scipy.sparse._sparsetools import coo_tocsr as _coo_tocsr
    from scipy.sparse._sparsetools import csr_tocsc as _csr_tocsc
    from scipy.sparse.csgraph._traversal import (
        _connected_components_undirected as _cc_undirected,
    )
except ImportError:
    _cc_undirected = None


def _rows(n_rows: int, rows: np.ndarray, columns: np.ndarray):
    """CSR rows (row starts, column indices) of the entries ``(rows, columns)``."""
    if _cc_undirected is not None:
        n_entries = rows.size
        starts = np.empty(n_rows + 1, dtype=np.int32)
        grouped = np.empty(n_entries, dtype=np.int32)
        _coo_tocsr(
            n_rows,
            n_rows,
            n_entries,
            rows,
            columns,
            np.zeros(n_entries, dtype=np.int8),
            starts,
            grouped,
            np.empty(n_entries, dtype=np.int8),
        )
        return starts, grouped
    order = np.argsort(rows, kind="stable")
    starts = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=starts[1:])
    return starts, columns[order]


def _connected(n_nodes: int, indices: np.ndarray, indptr: np.ndarray, work=None):
    """Connected components of a small graph given as CSR (int32) rows.

    Calls the routines of ``scipy.sparse.csgraph.connected_components`` directly,
    which saves its input checks and conversions (a large share of the cost for
    graphs of a few thousand nodes); falls back to the public function. ``work``:
    optional int32 buffers ``(n_entries_max,) * 2`` and ``(n_nodes_max + 1,)``, and
    an int8 one ``(n_entries_max,)``, reused from call to call.
    """
    if _cc_undirected is not None:
        n_entries = indices.size
        if work is None:
            work = _work(n_nodes, n_entries)
        t_indices, t_indptr, data = work[0][:n_entries], work[1][: n_nodes + 1], work[2]
        _csr_tocsc(
            n_nodes,
            n_nodes,
            indptr,
            indices,
            data[:n_entries],
            t_indptr,
            t_indices,
            data[n_entries : 2 * n_entries],
        )
        labels = np.full(n_nodes, -1, dtype=np.int32)
        n_components = _cc_undirected(indices, indptr, t_indices, t_indptr, labels)
        return int(n_components), labels
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    graph = csr_matrix(
        (np.ones(indices.size, dtype=np.int8), indices, indptr), shape=(n_nodes, n_nodes)
    )
    n_components, labels = connected_components(graph, directed=False)
    return int(n_components), labels.astype(np.int32)


def _work(n_nodes_max: int, n_entries_max: int):
    """Buffers for ``_connected``."""
    return (
        np.empty(n_entries_max, dtype=np.int32),
        np.empty(n_nodes_max + 1, dtype=np.int32),
        np.zeros(2 * n_entries_max, dtype=np.int8),
    )


def _check_fast_path() -> None:
    """Use scipy's private routines only if they still behave as expected."""
    global _cc_undirected  # noqa: PLW0603
    if _cc_undirected is None:
        return
    try:
        starts, columns = _rows(4, np.array([1, 3], np.int32), np.array([0, 2], np.int32))
        n_components, labels = _connected(4, columns, starts)
        ok = n_components == 2 and labels.tolist() == [0, 0, 1, 1]
    except (TypeError, ValueError):
        ok = False
    if not ok:
        _cc_undirected = None


_check_fast_path()


def _tfce_tree(values, threshs, weights, forward_neighbours, e, two_sided):
    """TFCE of one map by a single descending sweep over the thresholds.

    Parameters
    ----------
    values : ndarray, shape (n_voxels,)
        Finite statistic map in mask order.
    threshs : ndarray, shape (n_steps,)
        Ascending thresholds, the last one being the map's maximum (> 0).
    weights : ndarray, shape (n_steps,)
        ``thresh ** h`` for each threshold (0 where the threshold is not > 0).
    forward_neighbours : ndarray of int32, shape (n_offsets, n_voxels)
        ``VolumeLayout.forward_neighbours``.
    e : float
    two_sided : bool

    Returns
    -------
    ndarray, shape (n_voxels,)

    Notes
    -----
    A voxel's level is the number of thresholds at or below its value (``|value|``
    when two-sided; positive and negative voxels are never linked). The clusters at
    threshold ``k`` are the connected components of the voxels of level ``k`` or
    more. Going down from the highest threshold, the clusters at ``k`` are found by
    one ``connected_components`` call on a small graph: one node per cluster at
    ``k + 1`` plus one per voxel of level exactly ``k``, joined by the neighbour
    pairs whose lower end has level ``k``. Every voxel and every neighbour pair
    enters this sweep once. This gives the merge tree of the clusters over the
    thresholds (which cluster at ``k + 1`` lies in which cluster at ``k``, and each
    cluster's size). Going up the tree, each cluster then adds ``size ** e * weight``
    to what its parent cluster holds, so that every voxel's score is summed over the
    thresholds in increasing order, the order in which labelling the map at every
    threshold sums it.
    """
    n_voxels = values.size
    n_steps = threshs.size
    out = np.zeros(n_voxels)
    magnitude = np.abs(values) if two_sided else np.maximum(values, 0.0)
    level = _levels(magnitude, threshs)
    if not threshs[0] > 0:  # thresholds of 0 (a map of subnormal numbers) leave out 0
        level[magnitude <= 0] = 0
    # sweep order (rank): by decreasing level, positive before negative voxels at a
    # level; voxels below the first threshold (or 0) are left out
    n_signs = 2 if two_sided else 1
    key = (n_steps - level) * n_signs
    negative = values < 0
    if two_sided:
        key += negative
    dead = n_steps * n_signs + n_signs
    key[level == 0] = dead
    key = key.astype(_smallest_int(dead))
    counts = np.bincount(key, minlength=dead + 1)
    n_alive = n_voxels - int(counts[dead])
    if n_alive == 0:
        return out
    order = np.argsort(key, kind="stable")[:n_alive]
    first_of_key = np.concatenate([[0], np.cumsum(counts)]).tolist()
    first = first_of_key[::n_signs]  # first rank of each level, from the top
    rank = np.full(n_voxels + 1, np.iinfo(np.int32).max, dtype=np.int32)
    rank[order] = np.arange(n_alive, dtype=np.int32)

    # each pair of neighbours of the same sign, both swept: an entry of the row of the
    # one swept later, pointing to the earlier one; rows gathered in rank order (CSR)
    own = rank[:n_voxels]
    if two_sided:
        side = np.append(negative, False)
    later = np.empty(forward_neighbours.size, dtype=np.int32)
    earlier = np.empty(forward_neighbours.size, dtype=np.int32)
    n_pairs = 0
    for column in forward_neighbours:
        other = np.take(rank, column)
        high = np.maximum(own, other)
        keep = high < n_alive
        if two_sided:
            keep &= np.take(side, column) == negative
        n_kept = int(np.count_nonzero(keep))
        np.compress(keep, high, out=later[n_pairs : n_pairs + n_kept])
        np.compress(keep, np.minimum(own, other), out=earlier[n_pairs : n_pairs + n_kept])
        n_pairs += n_kept
    row_start, earlier = _rows(n_alive, later[:n_pairs], earlier[:n_pairs])
    del later, own

    # down: clusters at each threshold, as labels of the clusters at the one above
    node_ids = np.arange(n_alive + 1, dtype=np.int32)
    work = _work(n_alive, earlier.size)
    indptr_all = np.empty(n_alive + 1, dtype=np.int32)
    component = np.empty(n_alive, dtype=np.int32)  # cluster of each swept voxel
    n_old = 0
    sizes_old = np.zeros(0)
    # per threshold k: the cluster at k of each cluster at k + 1 (None: the same ones),
    # the sizes of the clusters at k, the cluster at k of each voxel of level k
    tree = [None] * (n_steps + 1)
    for k in range(n_steps, 0, -1):
        start, stop = first[n_steps - k], first[n_steps - k + 1]
        n_new = stop - start
        if n_new == 0:
            if n_old:
                tree[k] = (None, sizes_old, None)
            continue
        # graph nodes: the clusters at k + 1, then the voxels of level k
        n_nodes = n_old + n_new
        component[start:stop] = node_ids[n_old:n_nodes]
        begin = int(row_start[start])
        indices = np.take(component, earlier[begin : int(row_start[stop])])
        indptr = indptr_all[: n_nodes + 1]
        indptr[: n_old + 1] = 0
        np.subtract(
            row_start[start + 1 : stop + 1], begin, out=indptr[n_old + 1 :], casting="unsafe"
        )
        n_comp, labels = _connected(n_nodes, indices, indptr, work)
        parent = labels[:n_old]
        sizes = np.bincount(labels[n_old:], minlength=n_comp).astype(np.float64)
        if n_old:
            sizes += np.bincount(parent, weights=sizes_old, minlength=n_comp)
        if start:
            component[:start] = np.take(parent, component[:start])
        joined = labels[n_old:]
        component[start:stop] = joined
        tree[k] = (parent, sizes, joined)
        n_old, sizes_old = n_comp, sizes

    # up: each cluster's score is its parent's plus size ** e * weight
    scores = np.empty(n_alive)
    score = parent_below = None
    for k in range(1, n_steps + 1):
        if tree[k] is None:
            continue
        parent, sizes, joined = tree[k]
        step = sizes**e * weights[k - 1]  # ``**`` as nilearn: sqrt when e = 0.5
        if score is None:
            score = 0.0 + step
        elif parent_below is None:
            score = score + step
        else:
            score = np.take(score, parent_below) + step
        parent_below = parent
        if joined is not None:
            start = first[n_steps - k]
            scores[start : start + joined.size] = np.take(score, joined)
            if two_sided:  # the negative voxels of the level come after the positive ones
                split = first_of_key[2 * (n_steps - k) + 1]
                np.negative(
                    scores[split : start + joined.size], out=scores[split : start + joined.size]
                )
    out[order] = scores
    return out


def _smallest_int(largest: int):
    for dtype in (np.uint8, np.int16, np.int32):
        if largest <= np.iinfo(dtype).max:
            return dtype
    return np.int64


def forward_neighbours(mask, connectivity):
    """Neighbour of each mask voxel at each "forward" offset, shape (n_offsets, n_voxels).

    Forward offsets are half of the neighbourhood (those after (0, 0, 0) in
    lexicographic order), so that each pair of neighbours appears once. Indices in
    mask order, int32; ``n_voxels`` stands for a neighbour outside the mask.
    """
    from scipy.ndimage import generate_binary_structure

    n_voxels = int(mask.sum())
    index = np.full(mask.shape, n_voxels, dtype=np.int32)
    index[mask] = np.arange(n_voxels, dtype=np.int32)
    index = np.pad(index, 1, constant_values=n_voxels)
    coords = [c + 1 for c in np.nonzero(mask)]
    struct = generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[connectivity])
    return np.stack(
        [
            index[tuple(c + o for c, o in zip(coords, offset, strict=True))]
            for offset in np.argwhere(struct) - 1
            if tuple(offset) > (0, 0, 0)
        ]
    )


def merge_tree_tfce(maps, forward_neighbours, two_sided=True, e=0.5, h=2.0, n_steps=100):
    """TFCE as dnnrsa computed it for large masks before the compiled flooding."""
    from dnnrsa._tfce import height_weights, tfce_thresholds

    maps = np.nan_to_num(maps, nan=0.0)
    threshs = tfce_thresholds(maps, two_sided, n_steps)
    weights = height_weights(threshs, h)
    out = np.zeros_like(maps)
    for i in range(maps.shape[0]):
        if threshs[i, -1] > 0:
            out[i] = _tfce_tree(maps[i], threshs[i], weights[i], forward_neighbours, e, two_sided)
    return out


# -- relabelling at each threshold (dnnrsa before the merge tree), for comparison ----


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
    from dnnrsa._tfce import tfce_thresholds

    maps = np.nan_to_num(maps, nan=0.0)
    threshs = tfce_thresholds(maps, two_sided, n_steps)
    out = np.zeros_like(maps)
    for i in range(maps.shape[0]):
        for sign in (1.0, -1.0) if two_sided else (1.0,):
            out[i] += sign * _previous_one_sign(maps[i] * sign, threshs[i], edges, e, h)
    return out


# -- data -----------------------------------------------------------------------------


def _maps(n_maps, n_subjects, seed):
    """Sign-flipped t maps (map 0 observed, the last rounded), the subject maps, the mask."""
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
    return t, data, mask


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
    parser.add_argument("--n-jobs", type=int, default=1, help="threads of the flooding")
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="compile the flooding into a fresh numba cache folder (time the compilation)",
    )
    parser.add_argument(
        "--permutations",
        type=int,
        default=0,
        help="also time sign_flip_test(tfce=True) with this many permutations",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-tree", action="store_true", help="skip the numpy merge tree")
    parser.add_argument("--skip-previous", action="store_true")
    parser.add_argument("--skip-nilearn", action="store_true")
    args = parser.parse_args(argv)
    two_sided = not args.one_sided
    if args.no_cache:  # numba reads NUMBA_CACHE_DIR when it is imported
        os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="dnnrsa-numba-")

    from dnnrsa import _tfce

    maps, data, mask = _maps(max(args.n_maps, 2), args.n_subjects, args.seed)
    if args.noise:
        maps = np.random.default_rng(args.seed).standard_normal(maps.shape)
    n_maps = maps.shape[0]
    layout = _tfce.VolumeLayout(mask, connectivity=args.connectivity)
    # built once per mask, not timed
    layout.padded_grid, layout.edges  # noqa: B018
    layout.extent_powers(0.5)
    forward = forward_neighbours(mask, args.connectivity)
    print(
        f"{n_maps} {'noise' if args.noise else 't'} maps x {maps.shape[1]} voxels "
        "(MNI 2 mm mask), "
        f"connectivity {args.connectivity}, {'two' if two_sided else 'one'}-sided, "
        "E=0.5, H=2, 100 steps"
    )

    def ours(m):
        return _tfce.tfce(m, layout, two_sided=two_sided, n_jobs=args.n_jobs)

    _, wall, _ = _timed(lambda: ours(maps[:1]))
    from dnnrsa import _tfce_numba

    stats = _tfce_numba._tfce_map.stats
    how = "loaded from the cache" if stats.cache_hits else "compiled"
    print(
        f"flooding, first call in this process: {wall:.2f} s "
        f"(numba imported and the functions {how}; cache: {stats.cache_path})"
    )

    algorithms = [(f"flooding (dnnrsa now, n_jobs {args.n_jobs})", ours)]
    if not args.skip_tree:
        algorithms.append(
            (
                "before: merge tree (numpy, scipy)",
                lambda m: merge_tree_tfce(m, forward, two_sided),
            )
        )
    if not args.skip_previous:
        algorithms.append(
            (
                "earlier: relabel at each threshold",
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
    ours_out = rows[0][3]
    ref = rows[-1][3] if not args.skip_nilearn else None

    base_wall, base_cpu = rows[0][1], rows[0][2]
    print("warm calls (after an untimed warm-up run of each algorithm):")
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
        rel = np.abs(ours_out - ref).max() / np.abs(ref).max()
        print(
            f"flooding vs nilearn: max |diff| {np.abs(ours_out - ref).max():.3g} "
            f"(relative to the largest score {rel:.3g}); "
            f"identical bit for bit: {bool(np.array_equal(ours_out, ref))}; "
            f"largest |TFCE| {np.abs(ref).max():.1f}"
        )

    if args.permutations:
        from dnnrsa.stats import sign_flip_test

        n_jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        result, wall, cpu = _timed(
            lambda: sign_flip_test(
                data,
                mask=mask,
                tfce=True,
                two_sided=two_sided,
                connectivity=args.connectivity,
                n_permutations=args.permutations,
                random_state=args.seed,
                n_jobs=n_jobs,
            )
        )
        print(
            f"sign_flip_test(tfce=True): {args.n_subjects} subjects, "
            f"{result.n_permutations} permutations, {n_jobs} threads: "
            f"{wall:.1f} s wall ({wall / 60:.2f} min), {cpu:.1f} s CPU, "
            f"{wall / (result.n_permutations + 1) * 1000:.1f} ms a map"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
