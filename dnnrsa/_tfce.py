"""Cluster labelling, TFCE and cluster measures for batches of maps.

All functions take a batch of maps in mask order, ``(n_maps, n_voxels)``, scatter
them into the bounding box of the mask and label every map of the batch in one
call of ``ndimage.label`` (scipy, or cupyx on the GPU) on a 4-D array whose
structuring element does not connect neighbouring maps.

On the CPU, for masks of ``GRAPH_MIN_VOXELS`` voxels and more, clusters are labelled
as components of the graph of supra-threshold neighbours, and TFCE is computed map
by map, compiled with numba (``dnnrsa._tfce_numba``, loaded on first use): one pass
over the voxels builds the merge tree of the clusters over the thresholds by
flooding, instead of a labelling at each threshold, and the maps of a batch run on
``n_jobs`` threads.

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
        from scipy import ndimage
    else:  # pragma: no cover - needs a GPU
        from cupyx.scipy import ndimage
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
        from scipy.ndimage import generate_binary_structure

        struct3 = generate_binary_structure(3, CONNECTIVITIES[connectivity])
        struct4 = np.zeros((3, 3, 3, 3), dtype=bool)
        struct4[1] = struct3  # no link between maps of a batch
        self.structure = xp.asarray(struct4)
        self.connectivity = connectivity
        self.xp = xp
        self._mask = mask
        self._edges = None
        self._padded = None
        self._extent = {}

    @property
    def use_graph(self) -> bool:
        """Whether to label by graph components (large masks on the CPU)."""
        return self.xp is np and self.n_voxels >= GRAPH_MIN_VOXELS

    @property
    def edges(self) -> tuple[np.ndarray, np.ndarray]:
        """Pairs of neighbouring mask voxels (indices in mask order), each pair once."""
        if self._edges is None:
            from scipy.ndimage import generate_binary_structure

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
    def padded_grid(self) -> tuple[np.ndarray, int, np.ndarray]:
        """The mask's bounding box padded by one voxel on every side, as flat indices.

        Returns
        -------
        flat : ndarray of int64, shape (n_voxels,)
            Index of each mask voxel (mask order) in the padded box, C order.
        size : int
            Number of voxels of the padded box.
        offsets : ndarray of int64, shape (n_offsets,)
            Index offset of each neighbour (6, 18 or 26), so that the neighbours of
            any mask voxel lie inside the padded box.
        """
        if self._padded is None:
            from scipy.ndimage import generate_binary_structure

            idx = np.nonzero(self._mask)
            low = [int(i.min()) - 1 for i in idx]
            shape = tuple(int(i.max()) + 2 - lo for i, lo in zip(idx, low, strict=True))
            flat = np.ravel_multi_index(
                tuple(i - lo for i, lo in zip(idx, low, strict=True)), shape
            ).astype(np.int64)
            struct = generate_binary_structure(3, CONNECTIVITIES[self.connectivity])
            centre = np.ravel_multi_index((1, 1, 1), shape)
            offsets = np.array(
                [
                    np.ravel_multi_index(tuple(o), shape) - centre
                    for o in np.argwhere(struct)
                    if tuple(o) != (1, 1, 1)
                ],
                dtype=np.int64,
            )
            self._padded = (flat, int(np.prod(shape)), offsets)
        return self._padded

    def extent_powers(self, e: float) -> np.ndarray:
        """``size ** e`` for every cluster size from 0 to ``n_voxels``, float64.

        Computed as nilearn computes it (an integer array of sizes to a float power),
        once per exponent.
        """
        if e not in self._extent:
            self._extent[e] = np.arange(self.n_voxels + 1, dtype=np.int64) ** e
        return self._extent[e]

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
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(u), dtype=np.int8), (u, v)), shape=(n_nodes, n_nodes)).tocsr()
    return connected_components(graph, directed=False)[1]


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


def tfce_thresholds(maps, two_sided: bool, n_steps: int, xp=np):
    """The TFCE thresholds of each map (NaN-free), shape ``(n_maps, n_steps)``: those of
    ``numpy.linspace(0, top, n_steps + 1)[1:]`` as nilearn computes them, with ``top``
    the map's maximum (of ``|map|`` when two-sided, and at least 0)."""
    top = xp.max(xp.abs(maps), axis=1) if two_sided else xp.max(maps, axis=1)
    top = xp.maximum(top, 0.0)
    steps = xp.arange(1, n_steps + 1, dtype=maps.dtype)
    threshs = steps[None, :] * (top[:, None] / n_steps)
    threshs[:, -1] = top
    return threshs


def height_weights(threshs, h: float) -> np.ndarray:
    """``thresh ** h`` as nilearn computes it, one scalar at a time (C pow, which may
    differ in the last bit from the vectorised power); 0 where the threshold is not
    positive."""
    return np.array(
        [[math.pow(t, h) if t > 0 else 0.0 for t in row] for row in np.asarray(threshs).tolist()]
    ).reshape(np.shape(threshs))


def tfce(
    maps,
    layout: VolumeLayout,
    *,
    two_sided: bool = False,
    e: float = 0.5,
    h: float = 2.0,
    n_steps: int = 100,
    n_jobs: int = 1,
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
    n_jobs : int
        Threads of the compiled TFCE (``layout.use_graph``), each computing whole maps.

    Returns
    -------
    array of shape (n_maps, n_voxels)
        TFCE scores, ``sum_h size(h)**e * h**h`` (not multiplied by the step);
        float64 with ``layout.use_graph``, the dtype of ``maps`` otherwise.

    Notes
    -----
    With ``layout.use_graph`` (large masks on the CPU) each map goes through the
    merge tree of its clusters over the thresholds, built by flooding in one pass
    over its voxels (``dnnrsa._tfce_numba``, compiled with numba); otherwise the
    whole batch is labelled at each threshold (``scipy.ndimage.label``, or cupyx on
    the GPU). Both give nilearn's numbers.
    """
    xp = layout.xp
    if layout.use_graph:
        maps = np.asarray(maps, dtype=np.float64)
    maps = xp.nan_to_num(maps, nan=0.0)
    threshs = tfce_thresholds(maps, two_sided, n_steps, xp)
    if layout.use_graph:
        from . import _tfce_numba  # numba loads on first use only

        return _tfce_numba.tfce_maps(
            maps,
            threshs,
            height_weights(threshs, h),
            layout.extent_powers(e),
            layout.padded_grid,
            two_sided,
            n_jobs=n_jobs,
        )
    out = xp.zeros_like(maps)
    signs = (1.0, -1.0) if two_sided else (1.0,)
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
