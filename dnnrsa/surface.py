"""The cortical surface: meshes, searchlight discs and TFCE on a mesh.

The volume searchlight's engine works on any padded index array of neighbourhoods
(:class:`dnnrsa._neighbourhoods.Neighbourhoods`), so it runs unchanged on the vertices
of a mesh once the discs are built here:

* :func:`load_mesh` reads a surface (GIFTI, ``.gii.gz`` or FreeSurfer geometry) into a
  :class:`Mesh` (vertex coordinates in millimetres and triangles);
  :func:`fsaverage_mesh` gives nilearn's fsaverage5 (shipped with nilearn, no
  download); :func:`fsaverage_medial_wall` and :func:`label_mask` give the vertices to
  leave out.
* :func:`surface_neighbourhoods` builds one disc per vertex of a mask: the vertices
  within ``radius_mm`` along the mesh (geodesic, approximated by the shortest path
  along the triangles' edges) or in 3-D (``metric="euclidean"``), the centre first.
* :func:`stack_neighbourhoods` puts the discs of the two hemispheres on one vertex axis.
* :func:`mesh_adjacency` and :func:`tfce_mesh` label clusters and compute TFCE on
  the mesh, with the volume TFCE's conventions (:mod:`dnnrsa._tfce`).
* :func:`icosphere` makes a mesh whose geodesics are known, for tests and benchmarks.
* :func:`fsaverage_space` gives both hemispheres of an fsaverage space (meshes and the
  :class:`SurfaceMask` of the vertices kept); :func:`load_surface_data` reads a pair of
  GIFTI files onto the stacked kept vertices and :func:`save_surface_maps` writes
  values on them back as one ``.func.gii`` per hemisphere with a JSON sidecar.
  :func:`dnnrsa.glm.estimate_patterns` fits surface runs given as (left, right) pairs.

The vertex axis of the discs is that of the mask's vertices in increasing order
(``data[..., mask]``); vertices outside the mask (the medial wall) are neither
centres nor members, and paths between vertices do not pass through them.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._io import atomic_save_npz
from ._neighbourhoods import Neighbourhoods
from ._tfce import height_weights, tfce_thresholds

logger = logging.getLogger(__name__)

METRICS = ("geodesic", "euclidean")
FSAVERAGE_SURFACES = ("midthickness", "pial", "white_matter", "inflated", "sphere")
HEMISPHERES = ("left", "right")

# Distances are compared with this tolerance (millimetres), as in the volume spheres.
_DISTANCE_TOLERANCE_MM = 1e-6
# Sources per call of the limited Dijkstra, each call on the subgraph around them.
_DIJKSTRA_BATCH = 128
_CACHE_VERSION = 1


@dataclass(frozen=True)
class Mesh:
    """A triangle mesh.

    Attributes
    ----------
    coords : ndarray of shape (n_vertices, 3), float64
        Vertex coordinates in millimetres.
    faces : ndarray of shape (n_faces, 3), int64
        Vertex indices of each triangle.
    """

    coords: np.ndarray
    faces: np.ndarray

    @property
    def n_vertices(self) -> int:
        """Number of vertices."""
        return int(self.coords.shape[0])


def _check_mesh(coords, faces) -> tuple[np.ndarray, np.ndarray]:
    coords = np.asarray(coords, dtype=np.float64)
    faces = np.asarray(faces)
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise ValueError(f"coords must have shape (n_vertices, 3); got {coords.shape}")
    if not np.all(np.isfinite(coords)):
        raise ValueError("coords must be finite")
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
        raise ValueError(f"faces must be integers of shape (n_faces, 3); got {faces.shape}")
    faces = faces.astype(np.int64)
    if faces.size and (faces.min() < 0 or faces.max() >= coords.shape[0]):
        raise ValueError(
            f"faces must index vertices 0..{coords.shape[0] - 1}; got values from "
            f"{faces.min()} to {faces.max()}"
        )
    return coords, faces


def load_mesh(path: str | os.PathLike) -> Mesh:
    """Read a surface mesh from a file.

    Parameters
    ----------
    path : str or path-like
        A GIFTI surface (``.surf.gii``, also gzipped), with one point set and one
        triangle array, or a FreeSurfer geometry file (``lh.pial``, ``lh.white``...),
        as nilearn's ``load_surf_mesh`` reads them. fsaverage6 and fsaverage (the
        meshes of fMRIPrep's ``--output-spaces fsaverage6``) are not shipped offline:
        give their files here, for example ``$SUBJECTS_DIR/fsaverage6/surf/lh.pial``
        or TemplateFlow's ``tpl-fsaverage_hemi-L_den-41k_pial.surf.gii``.

    Returns
    -------
    Mesh
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no mesh file at {str(path)!r}")
    from nilearn.surface import load_surf_mesh

    mesh = load_surf_mesh(str(path))
    coords, faces = _check_mesh(mesh.coordinates, mesh.faces)
    return Mesh(coords=coords, faces=faces)


def _check_hemi(hemi: str) -> str:
    if hemi not in HEMISPHERES:
        raise ValueError(f"hemi must be one of {list(HEMISPHERES)}; got {hemi!r}")
    return hemi


def _check_fsaverage(mesh: str) -> None:
    if mesh != "fsaverage5":
        raise ValueError(
            "mesh: only 'fsaverage5' ships with nilearn and loads offline; got "
            f"{mesh!r}. Read fsaverage6 or fsaverage from your own files with load_mesh "
            "(FreeSurfer's $SUBJECTS_DIR/<mesh>/surf or TemplateFlow's tpl-fsaverage)."
        )


def fsaverage_mesh(
    hemi: str = "left", surface: str = "midthickness", *, mesh: str = "fsaverage5"
) -> Mesh:
    """One hemisphere of nilearn's fsaverage5 (10,242 vertices), read offline.

    Parameters
    ----------
    hemi : {"left", "right"}
    surface : {"midthickness", "pial", "white_matter", "inflated", "sphere"}
        ``"midthickness"`` is the mean of the pial and white matter coordinates
        (the two share their triangles), the surface on which distances within
        the grey matter are usually measured.
    mesh : {"fsaverage5"}
        Other densities are not shipped with nilearn: use :func:`load_mesh`.

    Returns
    -------
    Mesh
    """
    _check_hemi(hemi)
    _check_fsaverage(mesh)
    if surface not in FSAVERAGE_SURFACES:
        raise ValueError(f"surface must be one of {list(FSAVERAGE_SURFACES)}; got {surface!r}")
    from nilearn.datasets import load_fsaverage

    meshes = load_fsaverage(mesh)  # nilearn's own files, no download for fsaverage5
    names = ("pial", "white_matter") if surface == "midthickness" else (surface,)
    parts = [meshes[name].parts[hemi] for name in names]
    coords = np.mean([np.asarray(p.coordinates, dtype=np.float64) for p in parts], axis=0)
    coords, faces = _check_mesh(coords, parts[0].faces)
    return Mesh(coords=coords, faces=faces)


def fsaverage_medial_wall(hemi: str = "left", *, mesh: str = "fsaverage5") -> np.ndarray:
    """The medial wall of fsaverage5 as shipped offline: vertices of zero thickness.

    nilearn ships fsaverage5's mean cortical thickness; it is exactly 0 on the
    vertices that FreeSurfer labelled outside the cortex in every subject of the
    template (263 on the left, 304 on the right). That is the core of the medial
    wall, smaller than the usual cortex masks (FreeSurfer's ``?h.cortex.label``,
    the Destrieux atlas's ``Medial_wall``, about 800 to 900 vertices per
    hemisphere on fsaverage5), which need a download: read one with
    :func:`label_mask` when you have it.

    Returns
    -------
    ndarray of bool, shape (10242,)
        True on the medial wall (the vertices to leave out).
    """
    _check_hemi(hemi)
    _check_fsaverage(mesh)
    from nilearn.datasets import load_fsaverage_data

    thickness = load_fsaverage_data(mesh, mesh_type="pial", data_type="thickness")
    return np.asarray(thickness.data.parts[hemi]).ravel() == 0


def label_mask(path: str | os.PathLike, n_vertices: int) -> np.ndarray:
    """The vertices of a FreeSurfer label file (``lh.cortex.label``) as a boolean mask.

    Parameters
    ----------
    path : str or path-like
        A FreeSurfer ``.label`` file.
    n_vertices : int
        Number of vertices of the mesh the label belongs to.

    Returns
    -------
    ndarray of bool, shape (n_vertices,)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no label file at {str(path)!r}")
    from nibabel.freesurfer import read_label

    vertices = np.asarray(read_label(str(path)), dtype=np.int64)
    if vertices.size and (vertices.min() < 0 or vertices.max() >= n_vertices):
        raise ValueError(
            f"{str(path)!r} names vertices up to {vertices.max()}, but n_vertices is {n_vertices}"
        )
    mask = np.zeros(int(n_vertices), dtype=bool)
    mask[vertices] = True
    return mask


def icosphere(n_subdivisions: int, radius_mm: float = 100.0) -> Mesh:
    """An icosahedron subdivided ``n_subdivisions`` times, on a sphere of ``radius_mm``.

    Order 5 has as many vertices as fsaverage5 (10,242), order 6 as fsaverage6
    (40,962) and order 7 as fsaverage (163,842): FreeSurfer built those meshes by
    subdividing an icosahedron. A mesh with known geodesics (great circles), for tests
    and benchmarks.
    """
    n_subdivisions = int(n_subdivisions)
    if n_subdivisions < 0:
        raise ValueError(f"n_subdivisions must be >= 0; got {n_subdivisions!r}")
    t = (1 + 5**0.5) / 2
    verts = np.array(
        [
            [-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t],
            [0, -1, -t], [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1],
        ]
    )  # fmt: skip
    faces = np.array(
        [
            [0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4],
            [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8],
            [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1],
        ],
        dtype=np.int64,
    )  # fmt: skip
    verts /= np.linalg.norm(verts, axis=1, keepdims=True)
    for _ in range(n_subdivisions):
        edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), 1)
        unique, inverse = np.unique(edges, axis=0, return_inverse=True)
        middle = verts[unique[:, 0]] + verts[unique[:, 1]]
        middle /= np.linalg.norm(middle, axis=1, keepdims=True)
        mid = verts.shape[0] + inverse.reshape(3, -1).T  # midpoints of (ab, bc, ca)
        verts = np.concatenate([verts, middle])
        a, b, c = faces.T
        ab, bc, ca = mid.T
        faces = np.concatenate(
            [np.stack(f, axis=1) for f in ((a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca))]
        )
    return Mesh(coords=verts * float(radius_mm), faces=faces)


def _check_mask(mask, n_vertices: int) -> np.ndarray:
    if mask is None:
        return np.ones(n_vertices, dtype=bool)
    mask = np.asarray(mask)
    if mask.dtype != bool:
        raise TypeError(f"mask must be an array of bool (True = kept); got dtype {mask.dtype}")
    if mask.shape != (n_vertices,):
        raise ValueError(f"mask must have shape ({n_vertices},); got {mask.shape}")
    if not mask.any():
        raise ValueError("mask keeps no vertex")
    return mask


def _edges(faces: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each edge of the triangles between two kept vertices once, in masked indices."""
    pairs = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    pairs = np.sort(pairs, axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    pairs = np.unique(pairs, axis=0)
    pairs = pairs[mask[pairs[:, 0]] & mask[pairs[:, 1]]]
    rank = np.cumsum(mask) - 1
    return rank[pairs[:, 0]], rank[pairs[:, 1]]


def mesh_adjacency(faces, n_vertices: int, mask=None):
    """The vertex adjacency of a mesh: two vertices are neighbours when they share an edge.

    Parameters
    ----------
    faces : array of int, shape (n_faces, 3)
    n_vertices : int
    mask : array of bool, shape (n_vertices,), optional
        Vertices kept; the adjacency is then over the kept vertices, in increasing
        order (the axis of ``data[..., mask]``), and edges to other vertices are
        dropped.

    Returns
    -------
    scipy.sparse.csr_matrix of bool, shape (n_kept, n_kept)
        Symmetric, with an empty diagonal.
    """
    from scipy.sparse import coo_matrix

    faces = np.asarray(faces)
    _, faces = _check_mesh(np.zeros((int(n_vertices), 3)), faces)
    mask = _check_mask(mask, int(n_vertices))
    u, v = _edges(faces, mask)
    n = int(mask.sum())
    ones = np.ones(2 * u.size, dtype=bool)
    return coo_matrix(
        (ones, (np.concatenate([u, v]), np.concatenate([v, u]))), shape=(n, n)
    ).tocsr()


def _edge_graph(coords: np.ndarray, faces: np.ndarray, mask: np.ndarray):
    """The kept vertices' graph weighted by edge lengths (mm), symmetric CSR."""
    from scipy.sparse import coo_matrix

    u, v = _edges(faces, mask)
    kept = coords[mask]
    length = np.linalg.norm(kept[u] - kept[v], axis=1)
    # A zero-length edge (duplicate vertices) would vanish from the sparse graph.
    length = np.maximum(length, np.finfo(np.float64).tiny)
    n = kept.shape[0]
    return coo_matrix(
        (np.concatenate([length, length]), (np.concatenate([u, v]), np.concatenate([v, u]))),
        shape=(n, n),
    ).tocsr()


def _disc_batches(coords, faces, mask, radius_mm, metric):
    """Batches of neighbouring sources: ``(sources, rows, cols, dists)``, where
    ``rows`` index ``sources`` and ``cols`` the kept vertices, for every pair within
    the radius."""
    from scipy.spatial import cKDTree

    limit = radius_mm + _DISTANCE_TOLERANCE_MM
    kept = coords[mask]
    tree = cKDTree(kept)
    graph = _edge_graph(coords, faces, mask) if metric == "geodesic" else None
    # Sources in the tree's leaf order, so that a batch is a compact piece of the mesh.
    # A path no longer than the radius stays inside the 3-D ball of that radius around
    # its source, so each batch runs on the subgraph of the vertices within the radius
    # of the batch's ball: the distances are those of the whole graph.
    order = np.asarray(tree.indices, dtype=np.int64)
    for start in range(0, order.size, _DIJKSTRA_BATCH):
        sources = order[start : start + _DIJKSTRA_BATCH]
        centre = kept[sources].mean(axis=0)
        reach = np.sqrt(np.max(np.sum((kept[sources] - centre) ** 2, axis=1)))
        near = np.sort(
            np.asarray(tree.query_ball_point(centre, limit + reach + 1e-6), dtype=np.int64)
        )
        if graph is None:
            from scipy.spatial.distance import cdist

            dist = cdist(kept[sources], kept[near])
        else:
            from scipy.sparse.csgraph import dijkstra

            dist = dijkstra(
                graph[near][:, near],
                directed=False,
                indices=np.searchsorted(near, sources),
                limit=limit,
            )
        r, c = np.nonzero(dist <= limit)
        yield sources, r, near[c], dist[r, c]


def _discs(coords, faces, mask, radius_mm, metric) -> Neighbourhoods:
    """Padded index rows, each the centre first, then by distance and index."""
    n = int(mask.sum())
    blocks = []
    sizes = np.zeros(n, dtype=np.int32)
    for sources, rows, cols, dists in _disc_batches(coords, faces, mask, radius_mm, metric):
        key = np.where(sources[rows] == cols, -1.0, dists)
        order = np.lexsort((cols, key, rows))
        rows, cols = rows[order], cols[order]
        counts = np.bincount(rows, minlength=sources.size)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        block = np.full((sources.size, int(counts.max())), n, dtype=np.int32)
        block[rows, np.arange(rows.size) - starts[rows]] = cols
        sizes[sources] = counts
        blocks.append((sources, block))
    indices = np.full((n, int(sizes.max())), n, dtype=np.int32)
    for sources, block in blocks:
        indices[sources, : block.shape[1]] = block
    return Neighbourhoods(
        indices=indices, sizes=sizes, centres=np.arange(n, dtype=np.int64), n_voxels=n
    )


def _cache_key(coords, faces, mask, radius_mm, metric) -> str:
    digest = hashlib.sha256()
    for arr in (coords, faces, mask):
        arr = np.ascontiguousarray(arr)
        digest.update(str((arr.dtype.str, arr.shape)).encode())
        digest.update(arr.tobytes())
    digest.update(repr((float(radius_mm), metric, _CACHE_VERSION)).encode())
    return digest.hexdigest()


def surface_neighbourhoods(
    coords,
    faces,
    radius_mm: float,
    *,
    mask=None,
    metric: str = "geodesic",
    cache_dir: str | os.PathLike | None = None,
) -> Neighbourhoods:
    """Searchlight discs around every kept vertex of a mesh.

    Parameters
    ----------
    coords : array of shape (n_vertices, 3)
        Vertex coordinates in millimetres.
    faces : array of int, shape (n_faces, 3)
        Triangles.
    radius_mm : float
        Disc radius; vertices at a distance ``<= radius_mm`` are members.
    mask : array of bool, shape (n_vertices,), optional
        Vertices kept (True), for example ``~fsaverage_medial_wall(hemi)``. The
        others are neither centres nor members, and geodesic paths do not cross
        them. Default: every vertex.
    metric : {"geodesic", "euclidean"}
        ``"geodesic"``: the length of the shortest path along the triangles' edges
        (Dijkstra), which approximates the geodesic distance from above: on an
        icosphere the edge path is up to 24 % (9 % on average) longer than the great-circle
        distance (docs/surface.md), so a disc reaches a little less far in some
        directions than in others. ``"euclidean"``: the straight 3-D distance,
        which may join banks of a sulcus that are far apart along the cortex.
    cache_dir : str or path-like, optional
        Folder of an on-disk cache: the discs are saved there under a hash of the
        mesh, the mask, the radius and the metric, and read back next time.

    Returns
    -------
    Neighbourhoods
        One disc per kept vertex, in increasing vertex order; indices are into the
        kept vertices (the axis of ``data[..., mask]``), the centre first, then by
        distance; unused slots hold the number of kept vertices. Give it to
        :func:`dnnrsa.searchlight.searchlight_rsa_array` with the patterns of the
        kept vertices.
    """
    coords, faces = _check_mesh(coords, faces)
    mask = _check_mask(mask, coords.shape[0])
    radius_mm = float(radius_mm)
    if not np.isfinite(radius_mm) or radius_mm < 0:
        raise ValueError(f"radius_mm must be a finite number >= 0; got {radius_mm!r}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {list(METRICS)}; got {metric!r}")
    cache_path = None
    if cache_dir is not None:
        key = _cache_key(coords, faces, mask, radius_mm, metric)
        cache_path = Path(cache_dir) / f"surface-discs-{key[:32]}.npz"
        if cache_path.is_file():
            with np.load(cache_path) as saved:
                logger.debug("discs read from %s", cache_path)
                return Neighbourhoods(
                    indices=saved["indices"],
                    sizes=saved["sizes"],
                    centres=saved["centres"],
                    n_voxels=int(saved["n_voxels"]),
                )
    nb = _discs(coords, faces, mask, radius_mm, metric)
    logger.debug(
        "%d %s discs of radius %.3g mm: sizes %d..%d",
        nb.n_centres,
        metric,
        radius_mm,
        int(nb.sizes.min()),
        int(nb.sizes.max()),
    )
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save_npz(
            cache_path,
            indices=nb.indices,
            sizes=nb.sizes,
            centres=nb.centres,
            n_voxels=np.int64(nb.n_voxels),
        )
    return nb


def stack_neighbourhoods(parts: Sequence[Neighbourhoods]) -> Neighbourhoods:
    """Put the discs of several meshes (the two hemispheres) on one vertex axis.

    The vertex axis is the parts' axes one after the other (left then right, as
    ``numpy.concatenate`` of their data); the padding becomes the total count.
    """
    if not parts:
        raise ValueError("parts must hold at least one Neighbourhoods")
    total = sum(int(p.n_voxels) for p in parts)
    width = max(p.max_size for p in parts)
    rows, centres = [], []
    offset = 0
    for p in parts:
        block = np.full((p.n_centres, width), total, dtype=np.int32)
        real = p.indices != p.n_voxels
        block[:, : p.max_size] = np.where(real, p.indices.astype(np.int64) + offset, total)
        rows.append(block)
        centres.append(p.centres + offset)
        offset += int(p.n_voxels)
    return Neighbourhoods(
        indices=np.concatenate(rows),
        sizes=np.concatenate([p.sizes for p in parts]).astype(np.int32),
        centres=np.concatenate(centres).astype(np.int64),
        n_voxels=total,
    )


def tfce_mesh(
    values,
    adjacency,
    *,
    e: float = 0.5,
    h: float = 2.0,
    n_steps: int = 100,
    dh: float | None = None,
    two_sided: bool = False,
):
    """Threshold-free cluster enhancement on a mesh.

    Parameters
    ----------
    values : array of shape (n_vertices,) or (n_maps, n_vertices)
        Statistic maps on the adjacency's vertices (NaN counts as 0).
    adjacency : sparse matrix of shape (n_vertices, n_vertices)
        Which vertices touch (:func:`mesh_adjacency`); only its pattern is used, and
        an edge given one way counts both ways.
    e, h : float
        Extent and height exponents (``E``, ``H``).
    n_steps : int
        With ``dh=None`` (the default, the volume TFCE's convention of
        :func:`dnnrsa._tfce.tfce`, nilearn's and fslmaths'): ``n_steps`` thresholds
        equally spaced from ``max / n_steps`` to the map's maximum (of ``|map|``
        when two-sided), the step height left out of the sum.
    dh : float, optional
        Thresholds ``dh, 2 dh, ...`` up to the map's maximum instead, each
        contribution multiplied by ``dh`` (the integral's convention).
    two_sided : bool
        Also enhance negative clusters, returned with a negative sign.

    Returns
    -------
    ndarray of float64, the shape of ``values``
        ``sum over thresholds t <= value of extent(t) ** e * t ** h`` (times ``dh``
        when given), where ``extent(t)`` is the number of vertices of the connected
        piece of ``{values >= t}`` (values not 0) that holds the vertex.

    Notes
    -----
    The pieces only grow and merge as the threshold goes down, so one union-find
    over the vertices, from the highest threshold to the lowest, gives every
    threshold's pieces (:mod:`dnnrsa._meshtfce`, compiled with numba): about 2 ms
    for a map of one fsaverage5 hemisphere. The scores equal those of labelling the
    graph at every threshold, up to rounding.
    """
    from scipy.sparse import csr_matrix

    maps = np.asarray(values, dtype=np.float64)
    one = maps.ndim == 1
    maps = np.atleast_2d(np.nan_to_num(maps, nan=0.0))
    if maps.ndim != 2:
        raise ValueError(f"values must be 1-D or 2-D; got shape {np.shape(values)}")
    n = maps.shape[1]
    if adjacency.shape != (n, n):
        raise ValueError(
            f"adjacency must have shape ({n}, {n}) to match values; got {adjacency.shape}"
        )
    if int(n_steps) < 1:
        raise ValueError(f"n_steps must be >= 1; got {n_steps!r}")
    if dh is not None and not (np.isfinite(dh) and dh > 0):
        raise ValueError(f"dh must be a positive number; got {dh!r}")
    from . import _meshtfce  # numba loads on first use only

    pattern = csr_matrix(adjacency, dtype=bool)
    pattern.eliminate_zeros()
    graph = (pattern + pattern.T).tocsr()  # both ways
    extent = np.arange(n + 1, dtype=np.int64) ** e
    if dh is None:
        threshs = tfce_thresholds(maps, two_sided, int(n_steps))
        weights = height_weights(threshs, h)
    out = np.zeros_like(maps)
    signs = (1.0, -1.0) if two_sided else (1.0,)
    for i in range(maps.shape[0]):
        if dh is not None:
            top = np.max(np.abs(maps[i])) if two_sided else max(np.max(maps[i]), 0.0)
            map_threshs = np.arange(1, int(np.floor(top / dh + 1e-9)) + 1) * dh
            map_weights = map_threshs**h * dh
        else:
            map_threshs, map_weights = threshs[i], weights[i]
        if map_threshs.size == 0 or map_threshs[-1] <= 0:
            continue  # nothing above 0
        for sign in signs:
            x = maps[i] * sign
            # number of thresholds at or below each value; none for values <= 0
            levels = np.where(x > 0, np.searchsorted(map_threshs, x, side="right"), 0)
            scores = _meshtfce.graph_tfce(levels, graph.indptr, graph.indices, extent, map_weights)
            out[i] += sign * scores
    return out[0] if one else out


# ---------------------------------------------------------------------------
# surface spaces, vertex masks and GIFTI maps
# ---------------------------------------------------------------------------

#: Vertices per hemisphere of FreeSurfer's fsaverage meshes (fMRIPrep's
#: ``--output-spaces``), and TemplateFlow's density label of each.
FSAVERAGE_VERTICES = {"fsaverage5": 10242, "fsaverage6": 40962, "fsaverage": 163842}
FSAVERAGE_DENSITIES = {"fsaverage5": "10k", "fsaverage6": "41k", "fsaverage": "164k"}
#: The BIDS ``hemi`` label of each hemisphere.
HEMI_LABELS = {"left": "L", "right": "R"}


@dataclass(frozen=True)
class SurfaceMask:
    """The vertices kept on both hemispheres (True = kept), and what was left out.

    The vertex axis of the patterns and of the stacked discs is the kept vertices
    of the left hemisphere in increasing order, then those of the right
    (:meth:`stack`); :meth:`split` puts values on that axis back onto each
    hemisphere's full vertex list, NaN elsewhere.

    Attributes
    ----------
    left, right : ndarray of bool, shape (n_vertices_hemi,)
    space : str or None
        ``"fsaverage5"``... when known.
    source : str
        Where the mask came from (``"fsaverage5 medial wall (zero thickness)"``,
        ``"given"``, ``"every vertex"``...).
    n_candidates : int
        Vertices of the mask before the vertices with non-finite samples were
        excluded (:func:`dnnrsa.glm.estimate_patterns`).
    n_nonfinite : int
        Candidate vertices excluded for a NaN or infinite sample in any run.
    nonfinite_per_run : list of int
        Vertices (both hemispheres, anywhere) with a non-finite sample, per run.
    runs : list of str
        The runs' names (the left hemisphere's file), when made from runs.
    """

    left: np.ndarray
    right: np.ndarray
    space: str | None = None
    source: str = "given"
    n_candidates: int = 0
    n_nonfinite: int = 0
    nonfinite_per_run: tuple = ()
    runs: tuple = ()

    def __post_init__(self):
        for name in HEMISPHERES:
            value = np.asarray(getattr(self, name))
            if value.dtype != bool or value.ndim != 1:
                raise TypeError(
                    f"SurfaceMask.{name} must be a 1-D array of bool (True = kept); got "
                    f"dtype {value.dtype}, shape {value.shape}"
                )
            object.__setattr__(self, name, value)
        if not (self.left.any() or self.right.any()):
            raise ValueError("the surface mask keeps no vertex")
        if not self.n_candidates:
            object.__setattr__(self, "n_candidates", self.n_vertices)

    def hemi(self, hemi: str) -> np.ndarray:
        """The mask of one hemisphere."""
        return getattr(self, _check_hemi(hemi))

    @property
    def n_vertices(self) -> int:
        """Kept vertices, both hemispheres."""
        return int(self.left.sum() + self.right.sum())

    @property
    def n_left(self) -> int:
        """Kept vertices of the left hemisphere (the first of the stacked axis)."""
        return int(self.left.sum())

    @property
    def shape(self) -> tuple[int, int]:
        """Vertices of each hemisphere's mesh (kept or not)."""
        return (int(self.left.size), int(self.right.size))

    def stack(self, left, right) -> np.ndarray:
        """The kept vertices of per-hemisphere data, left then right, on the last axis.

        ``left`` and ``right`` have the hemispheres' vertices on their last axis.
        """
        left, right = np.asarray(left), np.asarray(right)
        if left.shape[-1] != self.left.size or right.shape[-1] != self.right.size:
            raise ValueError(
                f"data of {left.shape[-1]} and {right.shape[-1]} vertices do not match the "
                f"mask's meshes of {self.left.size} and {self.right.size}"
            )
        return np.concatenate([left[..., self.left], right[..., self.right]], axis=-1)

    def split(self, values) -> tuple[np.ndarray, np.ndarray]:
        """Values on the kept vertices (last axis) back on each hemisphere, NaN elsewhere.

        Returns float64 arrays of shape ``values.shape[:-1] + (n_vertices_hemi,)``.
        """
        values = np.asarray(values, dtype=np.float64)
        if values.ndim == 0 or values.shape[-1] != self.n_vertices:
            raise ValueError(
                f"values must have the {self.n_vertices} kept vertices on their last axis; "
                f"got shape {values.shape}"
            )
        out = []
        for part, mask in (
            (values[..., : self.n_left], self.left),
            (values[..., self.n_left :], self.right),
        ):
            full = np.full(values.shape[:-1] + (mask.size,), np.nan)
            full[..., mask] = part
            out.append(full)
        return out[0], out[1]

    def sidecar(self) -> dict:
        """What the mask kept and left out, for a JSON sidecar."""
        return {
            "Space": self.space,
            "VertexMaskSource": self.source,
            "VerticesPerHemisphere": {"L": int(self.left.size), "R": int(self.right.size)},
            "VerticesKept": {"L": int(self.left.sum()), "R": int(self.right.sum())},
            "CandidateVertices": int(self.n_candidates),
            "NonFiniteVerticesExcluded": int(self.n_nonfinite),
            "NonFiniteVerticesPerRun": [int(n) for n in self.nonfinite_per_run],
            "Runs": list(self.runs),
        }


@dataclass(frozen=True)
class SurfaceSpace:
    """The meshes of both hemispheres of a surface space and the vertices to keep.

    Attributes
    ----------
    name : str
        ``"fsaverage5"``, ``"fsaverage6"`` or ``"fsaverage"``.
    left, right : Mesh
    mask : SurfaceMask
        The vertices kept (the medial wall left out).
    """

    name: str
    left: Mesh
    right: Mesh
    mask: SurfaceMask

    def mesh(self, hemi: str) -> Mesh:
        """The mesh of one hemisphere."""
        return getattr(self, _check_hemi(hemi))

    def neighbourhoods(
        self,
        radius_mm: float,
        *,
        mask: SurfaceMask | None = None,
        metric: str = "geodesic",
        cache_dir: str | os.PathLike | None = None,
    ) -> Neighbourhoods:
        """The discs of both hemispheres on the stacked kept vertices
        (:func:`surface_neighbourhoods` of each, then :func:`stack_neighbourhoods`).

        ``mask`` (default: the space's) is that of the patterns, for example
        :attr:`dnnrsa.glm.PatternResult.mask_img` of surface runs, which also leaves
        out vertices with non-finite samples.
        """
        mask = self.mask if mask is None else mask
        if mask.shape != (self.left.n_vertices, self.right.n_vertices):
            raise ValueError(
                f"mask of {mask.shape} vertices per hemisphere does not match {self.name}'s "
                f"meshes of {(self.left.n_vertices, self.right.n_vertices)}"
            )
        parts = [
            surface_neighbourhoods(
                self.mesh(hemi).coords,
                self.mesh(hemi).faces,
                radius_mm,
                mask=mask.hemi(hemi),
                metric=metric,
                cache_dir=cache_dir,
            )
            for hemi in HEMISPHERES
        ]
        return stack_neighbourhoods(parts)


def fsaverage_space(
    space: str = "fsaverage5",
    *,
    surface: str = "midthickness",
    mesh_files: Sequence[str | os.PathLike] | None = None,
    cortex_labels: Sequence[str | os.PathLike] | None = None,
) -> SurfaceSpace:
    """Both hemispheres of an fsaverage space: the meshes and the vertices to keep.

    Parameters
    ----------
    space : {"fsaverage5", "fsaverage6", "fsaverage"}
        fMRIPrep's ``--output-spaces`` name.
    surface : str
        For fsaverage5 read offline (:func:`fsaverage_mesh`): ``"midthickness"``
        (default), ``"pial"``, ``"white_matter"``, ``"inflated"``, ``"sphere"``.
    mesh_files : (left, right), optional
        The meshes' files (:func:`load_mesh`): required for fsaverage6 and fsaverage,
        which are not shipped offline; for fsaverage5 they replace nilearn's.
    cortex_labels : (left, right), optional
        FreeSurfer ``?h.cortex.label`` files: the vertices kept. Default for
        fsaverage5: every vertex but the medial wall of :func:`fsaverage_medial_wall`;
        for fsaverage6 and fsaverage (no offline medial wall): every vertex, with a
        warning.

    Returns
    -------
    SurfaceSpace
    """
    if space not in FSAVERAGE_VERTICES:
        raise ValueError(f"space must be one of {list(FSAVERAGE_VERTICES)}; got {space!r}")
    n = FSAVERAGE_VERTICES[space]
    if mesh_files is not None:
        if len(mesh_files) != 2:
            raise ValueError("mesh_files must be a pair (left, right)")
        meshes = [load_mesh(path) for path in mesh_files]
        for hemi, path, mesh in zip(HEMISPHERES, mesh_files, meshes, strict=True):
            if mesh.n_vertices != n:
                raise ValueError(
                    f"mesh_files ({hemi}): {os.fspath(path)!r} has {mesh.n_vertices} vertices; "
                    f"{space} has {n} per hemisphere"
                )
    elif space == "fsaverage5":
        meshes = [fsaverage_mesh(hemi, surface) for hemi in HEMISPHERES]
    else:
        raise ValueError(
            f"{space} is not shipped offline: give mesh_files=(left, right), for example "
            f"$SUBJECTS_DIR/{space}/surf/lh.pial and rh.pial, or TemplateFlow's "
            f"tpl-fsaverage_hemi-L_den-{FSAVERAGE_DENSITIES[space]}_midthickness.surf.gii"
        )
    if cortex_labels is not None:
        if len(cortex_labels) != 2:
            raise ValueError("cortex_labels must be a pair (left, right)")
        kept = [label_mask(path, n) for path in cortex_labels]
        source = "cortex labels " + ", ".join(os.fspath(p) for p in cortex_labels)
    elif space == "fsaverage5":
        kept = [~fsaverage_medial_wall(hemi) for hemi in HEMISPHERES]
        source = "fsaverage5 medial wall left out (vertices of zero mean thickness)"
    else:
        logger.warning(
            "%s: no medial wall offline; every vertex is kept (give cortex_labels to leave "
            "the medial wall out)",
            space,
        )
        kept = [np.ones(n, dtype=bool) for _ in HEMISPHERES]
        source = "every vertex"
    mask = SurfaceMask(kept[0], kept[1], space=space, source=source)
    return SurfaceSpace(name=space, left=meshes[0], right=meshes[1], mask=mask)


def load_surface_data(left, right, mask: SurfaceMask | None = None) -> np.ndarray:
    """The kept vertices of a pair of GIFTI files (left, right), stacked.

    Parameters
    ----------
    left, right : path or nibabel.gifti.GiftiImage
        One hemisphere each: a run (one data array per volume, or one 2-D array of
        shape (n_vertices, n_volumes)) or a map (one data array).
    mask : SurfaceMask, optional
        The vertices kept; default every vertex.

    Returns
    -------
    ndarray of shape (n_columns, n_kept)
        One row per volume or map, the kept vertices of the left hemisphere then
        those of the right, in the stored dtype.
    """
    from ._surfaceio import read_gifti_data

    data = [read_gifti_data(left, "left"), read_gifti_data(right, "right")]
    if data[0].shape[1] != data[1].shape[1]:
        raise ValueError(
            f"the hemispheres hold {data[0].shape[1]} and {data[1].shape[1]} columns "
            "(volumes or maps); they must match"
        )
    if mask is None:
        return np.concatenate([data[0].T, data[1].T], axis=1)
    return mask.stack(data[0].T, data[1].T)


def surface_map_names(entities: dict, suffix: str = "statmap") -> tuple[str, str]:
    """The file names of a per-vertex map, one per hemisphere (``.func.gii``).

    ``hemi-L`` / ``hemi-R`` goes before ``space`` (fMRIPrep's order:
    ``sub-01_task-x_hemi-L_space-fsaverage5_...``), or after the other entities
    when there is no ``space``.
    """
    from .bidsnames import build_name

    if "hemi" in entities:
        raise ValueError("entities must not hold 'hemi': it is added for each hemisphere")
    names = []
    for label in HEMI_LABELS.values():
        ordered: dict = {}
        for key, value in entities.items():
            if key == "space":
                ordered["hemi"] = label
            ordered[key] = value
        ordered.setdefault("hemi", label)
        names.append(build_name(ordered, suffix, ".func.gii"))
    return names[0], names[1]


def save_surface_maps(
    values,
    mask: SurfaceMask,
    out_dir: str | os.PathLike,
    entities: dict,
    *,
    suffix: str = "statmap",
    sidecar: dict | None = None,
) -> tuple[Path, Path]:
    """Write values on the stacked kept vertices as one GIFTI per hemisphere, with sidecars.

    Parameters
    ----------
    values : array of shape (n_kept,) or (n_maps, n_kept)
        On the axis of :class:`SurfaceMask` (left kept vertices, then right), for
        example a column of :func:`dnnrsa.searchlight.searchlight_rsa_array`'s scores.
        Several maps become several data arrays of each file.
    mask : SurfaceMask
    out_dir : path
        The folder of the files (created if needed).
    entities : dict
        Ordered BIDS entities without ``hemi`` (:func:`surface_map_names`), for
        example ``{"sub": "01", "task": "x", "space": "fsaverage5", "model": "m",
        "layer": "l", "stat": "spearman"}``.
    suffix : str
    sidecar : dict, optional
        Fields of each file's JSON sidecar, beside the hemisphere and the mask's
        counts (:meth:`SurfaceMask.sidecar`).

    Returns
    -------
    (Path, Path)
        The left and right files. Each holds every vertex of its mesh as float32,
        NaN outside the mask; each file and sidecar is written atomically.
    """
    from ._surfaceio import atomic_save_gifti, gifti_image
    from .bidsnames import sidecar_path, write_json

    values = np.asarray(values, dtype=np.float64)
    if values.ndim not in (1, 2):
        raise ValueError(
            f"values must have shape (n_kept,) or (n_maps, n_kept); got {values.shape}"
        )
    parts = mask.split(values)
    out_dir = Path(out_dir)
    paths = []
    for (hemi, label), name, full in zip(
        HEMI_LABELS.items(), surface_map_names(entities, suffix), parts, strict=True
    ):
        path = out_dir / name
        columns = full.T if full.ndim == 2 else full
        img = gifti_image(columns, meta={"AnatomicalStructurePrimary": _STRUCTURES[hemi]})
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_save_gifti(img, path)
        payload = dict(sidecar or {})
        payload.update(
            {
                "Hemisphere": label,
                "Space": mask.space,
                "NumberOfVertices": int(full.shape[-1]),
                "VerticesInMask": int(mask.hemi(hemi).sum()),
                "OutsideMask": "NaN",
                "VertexMaskSource": mask.source,
            }
        )
        write_json(sidecar_path(path), payload)
        paths.append(path)
    return paths[0], paths[1]


#: The GIFTI ``AnatomicalStructurePrimary`` of each hemisphere (as fMRIPrep writes it).
_STRUCTURES = {"left": "CortexLeft", "right": "CortexRight"}


__all__ = [
    "FSAVERAGE_SURFACES",
    "FSAVERAGE_VERTICES",
    "HEMI_LABELS",
    "METRICS",
    "Mesh",
    "SurfaceMask",
    "SurfaceSpace",
    "fsaverage_medial_wall",
    "fsaverage_mesh",
    "fsaverage_space",
    "icosphere",
    "label_mask",
    "load_mesh",
    "load_surface_data",
    "mesh_adjacency",
    "save_surface_maps",
    "stack_neighbourhoods",
    "surface_map_names",
    "surface_neighbourhoods",
    "tfce_mesh",
]
