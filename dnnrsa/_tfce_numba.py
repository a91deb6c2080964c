"""TFCE of whole-brain maps, compiled with numba: one pass over the voxels per map.

Imported by ``dnnrsa._tfce.tfce`` on its first use only: importing numba and loading
the compiled functions takes a fraction of a second, and ``import dnnrsa`` stays
light. The functions are compiled once per installation (``cache=True``: the
machine code is written beside this file, or in numba's cache folder when this one
is not writable, and later processes load it); where no cache folder can be written
at all they are compiled once per process instead.

TFCE needs, at every threshold, the size of the cluster of every voxel above it.
Those clusters form a tree over the thresholds (a cluster at one threshold lies in
one cluster at the threshold below: the component tree, or merge tree, of the map).
For one map (``_tfce_map``):

1. every voxel gets its level, the number of thresholds at or below its value
   (``|value|`` when two-sided; ``searchsorted(threshs, value, "right")``, exact);
   voxels at or below 0 (background in nilearn's labelling) and below the first
   threshold get none. The levels are scattered into the mask's bounding box padded
   by one voxel, so that a neighbour is an index offset and needs no table;
2. the tree is built by flooding (the linear-time algorithm of Nistér and Stewénius
   for maximally stable extremal regions, with one bucket of waiting voxels per
   level): from a voxel not yet reached, the flood always moves to the highest
   waiting voxel next, going up into any higher neighbour at once, and keeps a stack
   of the open clusters of the levels below. When the flood moves down to a lower
   level, the clusters of the levels in between close: each becomes a node of the
   tree with its size, its level and its parent. Positive and negative voxels are
   flooded in the same pass and never joined. Every voxel is reached once, and the
   flood keeps to a neighbourhood of the volume at a time (cache friendly);
3. going back up the tree, from the roots (the lowest thresholds) to the leaves,
   each node's score is its parent's plus ``size ** e * thresh ** h`` at each
   threshold of its span, added one threshold after the other in increasing order:
   the order, and so the rounding, of labelling the map at every threshold and
   summing as nilearn does, so that the scores equal nilearn's bit for bit. A
   voxel's score is that of the node it joined.

``tfce_maps`` runs a batch, one map per thread (the compiled function releases the
GIL).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np


def _jit(func):
    """``numba.njit`` without the GIL, cached on disk where a cache folder can be written."""
    try:
        return numba.njit(cache=True, nogil=True)(func)
    except RuntimeError:  # pragma: no cover - no writable cache folder
        return numba.njit(nogil=True)(func)


@_jit
def _level(magnitude, threshs, scale):
    """Number of thresholds at or below ``magnitude`` (``searchsorted(..., "right")``).

    A first guess from the (nearly equal) step, corrected by comparing with the
    thresholds themselves, so the count is exact.
    """
    n_steps = threshs.size
    guess = magnitude * scale
    level = n_steps if not guess < n_steps else int(guess)  # also for an infinite scale
    while level < n_steps and threshs[level] <= magnitude:
        level += 1
    while level > 0 and threshs[level - 1] > magnitude:
        level -= 1
    return level


@_jit
def _tfce_map(values, threshs, weights, extent, flat, box_size, offsets, two_sided, out):
    """TFCE of one map, its positive clusters and (when two-sided) its negative ones.

    Parameters
    ----------
    values : ndarray of float64, shape (n_voxels,)
        The map in mask order.
    threshs : ndarray of float64, shape (n_steps,)
        Ascending thresholds, the last one the map's maximum (of ``|values|`` when
        two-sided), above 0.
    weights : ndarray of float64, shape (n_steps,)
        ``thresh ** h`` of each threshold.
    extent : ndarray of float64, shape (n_voxels + 1,)
        ``size ** e`` of each cluster size.
    flat : ndarray of int64, shape (n_voxels,)
        Index of each mask voxel in the mask's bounding box padded by one voxel.
    box_size : int
        Number of voxels of the padded box.
    offsets : ndarray of int64, shape (n_offsets,)
        Index offset of each neighbour in the padded box.
    two_sided : bool
    out : ndarray of float64, shape (n_voxels,)
        Receives the scores, negative at negative voxels.
    """
    n_voxels = values.size
    n_steps = threshs.size
    n_offsets = offsets.size
    scale = n_steps / threshs[n_steps - 1]
    # 1. signed level of each voxel: +k for positive voxels, -k for negative ones, 0
    # for voxels below the first threshold, at 0 (background in nilearn's
    # labelling), of the sign left out, or outside the mask
    level = np.zeros(n_voxels, dtype=np.int32)
    box = np.zeros(box_size, dtype=np.int32)  # the levels in the box; 0 once reached
    n_alive = 0
    for i in range(n_voxels):
        magnitude = values[i]
        negative = magnitude < 0.0
        if negative and two_sided:
            magnitude = -magnitude
        if magnitude > 0.0:
            k = _level(magnitude, threshs, scale)
            if k > 0:
                level[i] = -k if negative else k
                box[flat[i]] = level[i]
                n_alive += 1
    if n_alive == 0:
        return

    # 2. flooding, one cluster (at the lowest threshold) after the other
    bucket = np.full(n_steps + 1, -1, dtype=np.int64)  # voxels waiting, by key
    link = np.empty(box_size, dtype=np.int32)  # next voxel of the same bucket
    resume = np.zeros(box_size, dtype=np.uint8)  # next neighbour to look at
    voxel_node = np.empty(box_size, dtype=np.int32)
    # the open clusters below the one being flooded: key, size, node (row 0: none)
    stack = np.empty((n_steps + 2, 3), dtype=np.int64)
    stack[0, 0] = n_steps
    stack[0, 1] = 0
    stack[0, 2] = -1
    capacity = 2 * n_alive + 1
    node_size = np.empty(capacity, dtype=np.int64)
    node_level = np.empty(capacity, dtype=np.int32)
    node_parent = np.empty(capacity, dtype=np.int32)
    closed = np.empty(capacity, dtype=np.int32)  # nodes in the order they close
    n_nodes = 0
    n_closed = 0
    for i in range(n_voxels):
        current = flat[i]
        if box[current] == 0:
            continue
        side = 1 if box[current] > 0 else -1
        key = n_steps - side * box[current]  # the flood reaches low keys first
        box[current] = 0
        depth = 1
        size = 0  # of the cluster being flooded
        node = n_nodes
        n_nodes += 1
        lowest = n_steps  # lowest key with voxels waiting (n_steps: none)
        while True:
            j = resume[current]
            while j < n_offsets:
                u = current + offsets[j]
                j += 1
                lu = side * box[u]
                if lu <= 0:  # reached already, or not of this sign
                    continue
                box[u] = 0
                ku = n_steps - lu
                if ku >= key:  # to flood later
                    link[u] = bucket[ku]
                    bucket[ku] = u
                    if ku < lowest:
                        lowest = ku
                else:  # higher: flood it first, come back to this voxel later
                    resume[current] = j
                    link[current] = bucket[key]
                    bucket[key] = current
                    if key < lowest:
                        lowest = key
                    stack[depth, 0] = key
                    stack[depth, 1] = size
                    stack[depth, 2] = node
                    depth += 1
                    current = u
                    key = ku
                    size = 0
                    node = n_nodes
                    n_nodes += 1
                    j = 0
            # every neighbour of the current voxel looked at: it joins the cluster
            size += 1
            voxel_node[current] = node
            while lowest < n_steps and bucket[lowest] < 0:
                lowest += 1
            # close the clusters of the keys below the next one (all, at the end)
            while lowest > key:
                node_size[node] = size
                node_level[node] = n_steps - key
                closed[n_closed] = node
                n_closed += 1
                if lowest < stack[depth - 1, 0]:  # a cluster at the next key holds it
                    node_parent[node] = n_nodes
                    node = n_nodes
                    n_nodes += 1
                    key = lowest
                else:  # it joins the cluster below
                    depth -= 1
                    node_parent[node] = stack[depth, 2]
                    key = stack[depth, 0]
                    size += stack[depth, 1]
                    node = stack[depth, 2]
            if lowest == n_steps:  # the cluster at the lowest threshold is complete
                break
            current = bucket[lowest]
            bucket[lowest] = link[current]

    # 3. up the tree, every node after its parent
    score = np.empty(n_nodes)
    for c in range(n_closed - 1, -1, -1):
        node = closed[c]
        above = node_parent[node]
        if above < 0:
            total = 0.0
            low = 0
        else:
            total = score[above]
            low = node_level[above]
        factor = extent[node_size[node]]
        for j in range(low, node_level[node]):
            total += factor * weights[j]
        score[node] = total
    for i in range(n_voxels):
        if level[i] > 0:
            out[i] = score[voxel_node[flat[i]]]
        elif level[i] < 0:
            out[i] = -score[voxel_node[flat[i]]]


def tfce_maps(maps, threshs, weights, extent, grid, two_sided, n_jobs=1):
    """TFCE of each map of a batch, ``n_jobs`` maps at a time.

    Parameters
    ----------
    maps : ndarray, shape (n_maps, n_voxels)
        Finite maps in mask order.
    threshs, weights : ndarray of float64, shape (n_maps, n_steps)
        Each map's ascending thresholds and ``thresh ** h``; maps whose last
        threshold is not above 0 score 0.
    extent : ndarray of float64, shape (n_voxels + 1,)
        ``size ** e`` of each cluster size.
    grid : tuple
        ``VolumeLayout.padded_grid``: the index of each voxel in the padded bounding
        box, the size of that box and the index offsets of the neighbours.
    two_sided : bool
    n_jobs : int
        Threads, each computing whole maps (the compiled function releases the GIL).

    Returns
    -------
    ndarray of float64, shape (n_maps, n_voxels)
    """
    maps = np.ascontiguousarray(maps, dtype=np.float64)
    threshs = np.ascontiguousarray(threshs, dtype=np.float64)
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    flat, box_size, offsets = grid
    out = np.zeros(maps.shape)
    todo = [i for i in range(maps.shape[0]) if threshs[i, -1] > 0]

    def one(i):
        _tfce_map(
            maps[i],
            threshs[i],
            weights[i],
            extent,
            flat,
            box_size,
            offsets,
            bool(two_sided),
            out[i],
        )

    n_jobs = max(1, min(int(n_jobs), len(todo)))
    if n_jobs == 1:
        for i in todo:
            one(i)
    else:
        with ThreadPoolExecutor(n_jobs) as pool:
            list(pool.map(one, todo))
    return out
