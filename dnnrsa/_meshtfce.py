"""TFCE on a graph (a mesh's vertices), compiled with numba: one pass per map.

Imported by ``dnnrsa.surface.tfce_mesh`` on its first use only, so that ``import
dnnrsa`` stays light; compiled once per installation where numba can write its cache.

TFCE needs, at every threshold, the size of the connected piece of the vertices at or
above it that holds each vertex. Going down the thresholds, those pieces only grow and
merge, so one union-find holds them all (``_graph_tfce``):

1. each vertex has its level, the number of thresholds at or below its value
   (computed by the caller with ``numpy.searchsorted``, exactly); vertices of level 0
   take no part;
2. from the highest level down, the vertices of the level join the union-find and are
   united with their neighbours already in it (union by size); then every piece gets
   ``extent[size] * weight[level]``, added to its root only;
3. the sums are kept lazily: a vertex's score is the sum of the values held along its
   path to the root. A root that goes under another subtracts the new root's value,
   so that its members' sums do not change, and path compression keeps the sums of
   the nodes it skips.

The scores equal those of labelling the graph at every threshold up to rounding (the
terms are added in another order).
"""

from __future__ import annotations

import numpy as np

from ._tfce_numba import _jit


@_jit
def _find(parent, acc, v, path):
    """Root of ``v``; compresses the path, keeping each node's sum to the root."""
    n = 0
    while parent[v] != v:
        path[n] = v
        n += 1
        v = parent[v]
    root = v
    # from the node nearest the root down: each node's value becomes the sum of the
    # values from it up to, but not including, the root
    below = 0.0
    for i in range(n - 1, -1, -1):
        node = path[i]
        below += acc[node]
        acc[node] = below
        parent[node] = root
    return root


@_jit
def _graph_tfce(levels, indptr, indices, extent, weights):
    """TFCE of one map on a graph; ``levels`` in 0..n_levels, ``weights[k - 1]`` for level k."""
    n = levels.shape[0]
    n_levels = weights.shape[0]
    parent = np.arange(n)
    size = np.ones(n, dtype=np.int64)
    acc = np.zeros(n)
    active = np.zeros(n, dtype=np.bool_)
    path = np.empty(n, dtype=np.int64)
    # vertices by level, highest first
    order = np.argsort(-levels, kind="mergesort")
    members = np.empty(n, dtype=np.int64)  # vertices in the union-find, in order of entry
    n_members = 0
    pos = 0
    for level in range(n_levels, 0, -1):
        while pos < n and levels[order[pos]] == level:
            v = order[pos]
            pos += 1
            active[v] = True
            members[n_members] = v
            n_members += 1
            for j in range(indptr[v], indptr[v + 1]):
                u = indices[j]
                if not active[u]:
                    continue
                ru = _find(parent, acc, u, path)
                rv = _find(parent, acc, v, path)
                if ru == rv:
                    continue
                if size[ru] < size[rv]:
                    ru, rv = rv, ru
                parent[rv] = ru
                acc[rv] -= acc[ru]
                size[ru] += size[rv]
        weight = weights[level - 1]
        for i in range(n_members):
            v = members[i]
            if parent[v] == v:
                acc[v] += extent[size[v]] * weight
    out = np.zeros(n)
    for i in range(n_members):
        v = members[i]
        root = _find(parent, acc, v, path)
        out[v] = acc[v] if v == root else acc[v] + acc[root]
    return out


def graph_tfce(levels, indptr, indices, extent, weights) -> np.ndarray:
    """TFCE of one map on a graph (CSR ``indptr``, ``indices``), float64.

    ``levels[v]`` is the number of thresholds at or below the vertex's value (0: below
    the first), ``weights[k - 1]`` what a piece of size ``s`` adds at threshold ``k``,
    times ``extent[s]``.
    """
    return _graph_tfce(
        np.ascontiguousarray(levels, dtype=np.int64),
        np.ascontiguousarray(indptr, dtype=np.int64),
        np.ascontiguousarray(indices, dtype=np.int64),
        np.ascontiguousarray(extent, dtype=np.float64),
        np.ascontiguousarray(weights, dtype=np.float64),
    )
