"""Cluster labelling, TFCE and cluster measures for batches of maps.

All functions take a batch of maps in mask order, ``(n_maps, n_voxels)``, scatter
them into the bounding box of the mask and label every map of the batch in one
call of ``ndimage.label`` (scipy, or cupyx on the GPU) on a 4-D array whose
structuring element does not connect neighbouring maps.

On the CPU, for masks of ``GRAPH_MIN_VOXELS`` voxels and more, clusters are labelled
as components of the graph of supra-threshold neighbours, and TFCE is computed map
by map from the merge tree of the clusters over the thresholds (``_tfce_tree``: one
sweep down the thresholds instead of a labelling at each of them).

Conventions follow nilearn's ``permuted_ols`` (and fslmaths for the TFCE step):
face connectivity (6 neighbours) by default, TFCE with ``E=0.5``, ``H=2`` and 100
equal steps from 0 to the map's maximum, with the step height left out of the
sum; clusters are formed by values strictly above the cluster-forming threshold
and their mass is the sum of ``|t| - threshold`` over the cluster.
"""

from __future__ import annotations

import math

import numpy as np

CONNECTIVITIES = {6: 1, 18: 2, 26: 3}
# From this many mask voxels on, the CPU labels clusters as components of the graph
# of supra-threshold neighbours, which costs in proportion to the voxels above the
# threshold rather than to the bounding box of the mask.
GRAPH_MIN_VOXELS = 20_000


def _ndimage(xp):
    if xp is np:
        from scipy import ndimage  # noqa: PLC0415
    else:  # pragma: no cover - needs a GPU
        from cupyx.scipy import ndimage  # noqa: PLC0415
    return ndimage


class VolumeLayout:
    """Where the voxels of a mask sit inside the mask's bounding box.

    Parameters
    ----------
    mask : ndarray of bool, shape (nx, ny, nz)
    connectivity : {6, 18, 26}
        Neighbourhood that joins voxels into clusters (faces, edges, corners).
    xp : module
        numpy or cupy.
    """

    def __init__(self, mask: np.ndarray, connectivity: int = 6, xp=np):
        if connectivity not in CONNECTIVITIES:
            raise ValueError(
                f"connectivity must be one of {sorted(CONNECTIVITIES)}; got {connectivity!r}"
            )
        mask = np.asarray(mask, dtype=bool)
        if mask.ndim != 3:
            raise ValueError(f"mask must be 3-D; got shape {mask.shape}")
        idx = np.nonzero(mask)
        if idx[0].size == 0:
            raise ValueError("mask has no voxel")
        lo = [int(i.min()) for i in idx]
        hi = [int(i.max()) + 1 for i in idx]
        self.box_shape = tuple(h - low for low, h in zip(lo, hi, strict=True))
        self.n_voxels = int(idx[0].size)
        # flat index of every mask voxel inside the bounding box
        local = tuple(i - low for i, low in zip(idx, lo, strict=True))
        self.flat_index = xp.asarray(np.ravel_multi_index(local, self.box_shape))
        self.box_size = int(np.prod(self.box_shape))
        from scipy.ndimage import generate_binary_structure  # noqa: PLC0415

        struct3 = generate_binary_structure(3, CONNECTIVITIES[connectivity])
        struct4 = np.zeros((3, 3, 3, 3), dtype=bool)
        struct4[1] = struct3  # no link between maps of a batch
        self.structure = xp.asarray(struct4)
        self.connectivity = connectivity
        self.xp = xp
        self._mask = mask
        self._edges = None
        self._neighbours = None

    @property
    def use_graph(self) -> bool:
        """Whether to label by graph components (large masks on the CPU)."""
        return self.xp is np and self.n_voxels >= GRAPH_MIN_VOXELS

    @property
    def edges(self) -> tuple[np.ndarray, np.ndarray]:
        """Pairs of neighbouring mask voxels (indices in mask order), each pair once."""
        if self._edges is None:
            from scipy.ndimage import generate_binary_structure  # noqa: PLC0415

            mask = self._mask
            index = np.full(mask.shape, -1, dtype=np.int64)
            index[mask] = np.arange(self.n_voxels)
            struct = generate_binary_structure(3, CONNECTIVITIES[self.connectivity])
            us, vs = [], []
            for offset in np.argwhere(struct) - 1:
                if tuple(offset) <= (0, 0, 0):
                    continue  # each undirected pair once, no self loop
                src = tuple(
                    slice(max(0, -o), mask.shape[d] - max(0, o)) for d, o in enumerate(offset)
                )
                dst = tuple(
                    slice(max(0, o), mask.shape[d] - max(0, -o)) for d, o in enumerate(offset)
                )
                a, b = index[src], index[dst]
                keep = (a >= 0) & (b >= 0)
                us.append(a[keep])
                vs.append(b[keep])
            self._edges = (np.concatenate(us), np.concatenate(vs))
        return self._edges

    @property
    def forward_neighbours(self) -> np.ndarray:
        """Neighbour of each mask voxel at each "forward" offset, shape (n_offsets, n_voxels).

        Forward offsets are half of the neighbourhood (those after (0, 0, 0) in
        lexicographic order), so that each pair of neighbours appears once. Indices
        in mask order, int32; ``n_voxels`` stands for a neighbour outside the mask.
        """
        if self._neighbours is None:
            from scipy.ndimage import generate_binary_structure  # noqa: PLC0415

            mask = self._mask
            index = np.full(mask.shape, self.n_voxels, dtype=np.int32)
            index[mask] = np.arange(self.n_voxels, dtype=np.int32)
            index = np.pad(index, 1, constant_values=self.n_voxels)
            coords = [c + 1 for c in np.nonzero(mask)]
            struct = generate_binary_structure(3, CONNECTIVITIES[self.connectivity])
            self._neighbours = np.stack(
                [
                    index[tuple(c + o for c, o in zip(coords, offset, strict=True))]
                    for offset in np.argwhere(struct) - 1
                    if tuple(offset) > (0, 0, 0)
                ]
            )
        return self._neighbours

    def label(self, supra):
        """Label clusters of every map of a batch.

        Parameters
        ----------
        supra : array of bool, shape (n_maps, n_voxels)

        Returns
        -------
        labels : array of int, shape (n_maps, n_voxels)
            0 for voxels outside any cluster; labels are unique across the batch.
        n_labels : int
        """
        xp = self.xp
        n_maps = supra.shape[0]
        vol = xp.zeros((n_maps, self.box_size), dtype=bool)
        vol[:, self.flat_index] = supra
        vol = vol.reshape((n_maps, *self.box_shape))
        labels, n_labels = _ndimage(xp).label(vol, structure=self.structure)
        labels = labels.reshape(n_maps, self.box_size)[:, self.flat_index]
        return labels, int(n_labels)


def _components(n_nodes: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Connected component of each of ``n_nodes`` nodes given undirected edges."""
    from scipy.sparse import coo_matrix  # noqa: PLC0415
    from scipy.sparse.csgraph import connected_components  # noqa: PLC0415

    graph = coo_matrix((np.ones(len(u), dtype=np.int8), (u, v)), shape=(n_nodes, n_nodes)).tocsr()
    return connected_components(graph, directed=False)[1]


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
except ImportError:  # pragma: no cover - other scipy layouts
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
    from scipy.sparse import csr_matrix  # noqa: PLC0415
    from scipy.sparse.csgraph import connected_components  # noqa: PLC0415

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
    except (TypeError, ValueError):  # pragma: no cover - other scipy versions
        ok = False
    if not ok:  # pragma: no cover
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


def _label_graph(supra: np.ndarray, layout: VolumeLayout):
    """Label clusters of one map by graph components; 0 outside clusters."""
    labels = np.zeros(supra.shape, dtype=np.int64)
    nodes = np.flatnonzero(supra)
    if nodes.size == 0:
        return labels, 0
    rank = np.full(supra.shape, -1, dtype=np.int64)
    rank[nodes] = np.arange(nodes.size)
    u, v = layout.edges
    keep = supra[u] & supra[v]
    comp = _components(nodes.size, rank[u[keep]], rank[v[keep]])
    labels[nodes] = comp + 1
    return labels, int(comp.max()) + 1


def _cluster_sizes(labels, n_labels, xp):
    counts = xp.bincount(labels.ravel(), minlength=n_labels + 1)
    counts[0] = 0
    return counts


def tfce(
    maps,
    layout: VolumeLayout,
    *,
    two_sided: bool = False,
    e: float = 0.5,
    h: float = 2.0,
    n_steps: int = 100,
):
    """Threshold-free cluster enhancement of a batch of maps.

    Parameters
    ----------
    maps : array of shape (n_maps, n_voxels)
        Statistic maps in mask order (NaN counts as 0).
    layout : VolumeLayout
    two_sided : bool
        Also enhance negative clusters (returned with a negative sign).
    e, h : float
        Extent and height exponents.
    n_steps : int
        Number of thresholds, equally spaced from ``max / n_steps`` to the map's
        maximum (of ``|map|`` when two-sided), as fslmaths and nilearn do.

    Returns
    -------
    array of shape (n_maps, n_voxels)
        TFCE scores, ``sum_h size(h)**e * h**h`` (not multiplied by the step).

    Notes
    -----
    With ``layout.use_graph`` (large masks on the CPU) each map goes through the
    merge tree of its clusters (``_tfce_tree``), one sweep down the thresholds;
    otherwise the whole batch is labelled at each threshold. Both give nilearn's
    numbers.
    """
    xp = layout.xp
    maps = xp.nan_to_num(maps, nan=0.0)
    top = xp.max(xp.abs(maps), axis=1) if two_sided else xp.max(maps, axis=1)
    top = xp.maximum(top, 0.0)
    # the thresholds of numpy.linspace(0, top, n_steps + 1)[1:], computed the same way
    steps = xp.arange(1, n_steps + 1, dtype=maps.dtype)
    threshs = steps[None, :] * (top[:, None] / n_steps)
    threshs[:, -1] = top
    out = xp.zeros_like(maps)
    signs = (1.0, -1.0) if two_sided else (1.0,)
    if layout.use_graph:
        # thresh ** h as nilearn computes it, one scalar at a time (C pow, which may
        # differ in the last bit from the vectorised square)
        weights = np.array(
            [[math.pow(t, h) if t > 0 else 0.0 for t in row] for row in threshs.tolist()]
        )
        for i in range(maps.shape[0]):
            if threshs[i, -1] > 0:
                out[i] = _tfce_tree(
                    maps[i], threshs[i], weights[i], layout.forward_neighbours, e, two_sided
                )
        return out
    for sign in signs:
        values = maps * sign
        for k in range(n_steps):
            thr = threshs[:, k : k + 1]
            supra = (values >= thr) & (values != 0) & (thr > 0)
            if not bool(supra.any()):
                break
            labels, n_labels = layout.label(supra)
            sizes = _cluster_sizes(labels, n_labels, xp).astype(maps.dtype)
            out += sign * (sizes[labels] ** e) * (thr**h) * supra
    return out


def cluster_measures(maps, layout: VolumeLayout, threshold: float, *, two_sided: bool = False):
    """Clusters above a threshold: per-voxel size and mass, and each map's maxima.

    Parameters
    ----------
    maps : array of shape (n_maps, n_voxels)
    layout : VolumeLayout
    threshold : float
        Cluster-forming threshold on the statistic (voxels strictly above it; below
        ``-threshold`` for negative clusters when two-sided).
    two_sided : bool

    Returns
    -------
    size, mass : arrays of shape (n_maps, n_voxels)
        Size (voxels) and mass (sum of ``|t| - threshold``) of the cluster each voxel
        belongs to; 0 outside clusters.
    max_size, max_mass : arrays of shape (n_maps,)
    """
    xp = layout.xp
    maps = xp.nan_to_num(maps, nan=0.0)
    size = xp.zeros(maps.shape, dtype=maps.dtype)
    mass = xp.zeros(maps.shape, dtype=maps.dtype)
    signs = (1.0, -1.0) if two_sided else (1.0,)
    for sign in signs:
        values = maps * sign
        supra = values > threshold
        if not bool(supra.any()):
            continue
        if layout.use_graph:
            labels = np.zeros(supra.shape, dtype=np.int64)
            n_labels = 0
            for i in range(supra.shape[0]):
                lab, n = _label_graph(supra[i], layout)
                labels[i] = np.where(lab > 0, lab + n_labels, 0)
                n_labels += n
        else:
            labels, n_labels = layout.label(supra)
        flat = labels.ravel()
        counts = _cluster_sizes(labels, n_labels, xp).astype(maps.dtype)
        weights = xp.where(supra, values - threshold, 0.0).ravel()
        masses = xp.bincount(flat, weights=weights, minlength=n_labels + 1)
        masses[0] = 0
        size += counts[labels]
        mass += masses[labels]
    max_size = xp.max(size, axis=1) if size.shape[1] else xp.zeros(size.shape[0])
    max_mass = xp.max(mass, axis=1) if mass.shape[1] else xp.zeros(mass.shape[0])
    return size, mass, max_size, max_mass
