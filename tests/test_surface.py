"""The cortical surface: discs on a mesh, the searchlight on vertices, TFCE on a mesh.

Known answers on an icosphere of known radius (edge-path distances from an independent
Dijkstra, great-circle distances), the searchlight's scores against a plain per-vertex
computation with scipy, mesh TFCE against a direct computation with a union-find and
against the volume TFCE on a chain of voxels, and fsaverage5 read offline.
"""

from __future__ import annotations

import heapq

import numpy as np
import pytest
from scipy.spatial.distance import pdist
from scipy.stats import spearmanr

from dnnrsa import _tfce, surface
from dnnrsa._neighbourhoods import Neighbourhoods
from dnnrsa.searchlight import searchlight_rsa_array

RADIUS = 50.0  # mm, the icosphere's


def icosphere(n_subdivisions: int, radius: float = RADIUS):
    """An icosahedron subdivided ``n_subdivisions`` times, projected on a sphere."""
    t = (1 + 5**0.5) / 2
    base = [
        [-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t],
        [0, -1, -t], [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1],
    ]  # fmt: skip
    faces = [
        [0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4],
        [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8],
        [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1],
    ]  # fmt: skip
    verts = [np.array(v, dtype=float) / np.linalg.norm(v) for v in base]
    for _ in range(n_subdivisions):
        middle: dict[tuple[int, int], int] = {}

        def mid(a, b, middle=middle):
            key = (min(a, b), max(a, b))
            if key not in middle:
                m = verts[a] + verts[b]
                verts.append(m / np.linalg.norm(m))
                middle[key] = len(verts) - 1
            return middle[key]

        new = []
        for a, b, c in faces:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new += [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]
        faces = new
    return np.array(verts) * radius, np.array(faces, dtype=np.int64)


def _neighbours(faces, n, keep=None):
    """Adjacency lists, built from the triangles one by one."""
    keep = np.ones(n, dtype=bool) if keep is None else keep
    nbrs = [set() for _ in range(n)]
    for tri in faces.tolist():
        for i in range(3):
            a, b = tri[i], tri[(i + 1) % 3]
            if keep[a] and keep[b]:
                nbrs[a].add(b)
                nbrs[b].add(a)
    return nbrs


def _heap_dijkstra(coords, nbrs, source, limit=np.inf):
    """Edge-path distances from one vertex, a plain heap implementation (exact up to
    ``limit``; farther vertices may be missing)."""
    dist = {source: 0.0}
    heap = [(0.0, source)]
    done = set()
    while heap:
        d, a = heapq.heappop(heap)
        if d > limit:
            break
        if a in done:
            continue
        done.add(a)
        for b in nbrs[a]:
            nd = d + float(np.linalg.norm(coords[a] - coords[b]))
            if nd < dist.get(b, np.inf):
                dist[b] = nd
                heapq.heappush(heap, (nd, b))
    return dist


def _great_circle(coords, a):
    unit = coords / np.linalg.norm(coords, axis=1, keepdims=True)
    return RADIUS * np.arccos(np.clip(unit @ unit[a], -1.0, 1.0))


@pytest.fixture(scope="module")
def ico4():
    return icosphere(4)  # 2,562 vertices, edges of 3.5 to 4.1 mm


@pytest.mark.parametrize("order", [0, 1, 3])
def test_the_library_icosphere_is_the_tests(order):
    mesh = surface.icosphere(order, RADIUS)
    coords, faces = icosphere(order)
    assert mesh.n_vertices == 10 * 4**order + 2 and mesh.faces.shape == (20 * 4**order, 3)
    np.testing.assert_allclose(np.linalg.norm(mesh.coords, axis=1), RADIUS)
    a = mesh.coords[np.lexsort(mesh.coords.T)]
    b = coords[np.lexsort(coords.T)]
    np.testing.assert_allclose(a, b, atol=1e-9)
    # the same triangles, as sets of vertex positions
    key = lambda c, f: sorted(tuple(sorted(map(tuple, np.round(c[t], 6)))) for t in f)  # noqa: E731
    assert key(mesh.coords, mesh.faces) == key(coords, faces)


# --------------------------------------------------------------------------- discs
@pytest.mark.parametrize("radius_mm", [4.0, 10.0])
def test_geodesic_discs_hold_the_vertices_within_the_edge_path_radius(ico4, radius_mm):
    coords, faces = ico4
    nb = surface.surface_neighbourhoods(coords, faces, radius_mm)
    assert nb.n_voxels == nb.n_centres == coords.shape[0]
    nbrs = _neighbours(faces, coords.shape[0])
    for c in np.random.default_rng(0).choice(coords.shape[0], 25, replace=False):
        dist = _heap_dijkstra(coords, nbrs, int(c))
        expected = sorted(v for v, d in dist.items() if d <= radius_mm)
        members = nb.members(int(c))
        assert members[0] == c  # the centre first
        assert sorted(members.tolist()) == expected
        # then by distance
        assert np.all(np.diff([dist[int(m)] for m in members]) >= -1e-12)
        assert nb.sizes[c] == len(expected)
        assert np.all(nb.indices[c, nb.sizes[c] :] == nb.n_voxels)


def test_geodesic_discs_against_the_great_circle(ico4):
    """Members lie within the radius on the sphere (up to the chords' shortfall), and
    every vertex within radius / 1.24 of great-circle distance is a member: the edge
    path overestimates the geodesic by at most 24 % on an icosphere, 9 % on average."""
    coords, faces = ico4
    r = 10.0
    nb = surface.surface_neighbourhoods(coords, faces, r)
    # a chord of angle theta is shorter than its arc by a factor 1 - theta**2 / 24 at most
    theta = 4.2 / RADIUS
    shortfall = 1 - theta**2 / 24
    left_out = 0
    for c in range(0, coords.shape[0], 7):
        gc = _great_circle(coords, c)
        members = nb.members(c)
        assert np.all(gc[members] <= r / shortfall)
        inside = np.flatnonzero(gc <= r / 1.24)
        assert set(inside.tolist()) <= set(members.tolist())
        left_out += np.count_nonzero(gc <= r) - members.size
    assert left_out > 0  # the overestimate is real: discs miss vertices on the sphere
    # the overestimate itself, from the independent Dijkstra
    nbrs = _neighbours(faces, coords.shape[0])
    ratios = []
    for c in range(0, coords.shape[0], 61):
        dist = _heap_dijkstra(coords, nbrs, c)
        gc = _great_circle(coords, c)
        ratios += [d / gc[v] for v, d in dist.items() if 5.0 < gc[v] <= 20.0]
    assert 1.15 < max(ratios) < 1.24
    assert 1.05 < np.mean(ratios) < 1.12


def test_euclidean_discs_are_the_vertices_within_the_3d_radius(ico4):
    coords, faces = ico4
    r = 9.0
    nb = surface.surface_neighbourhoods(coords, faces, r, metric="euclidean")
    for c in range(0, coords.shape[0], 97):
        d = np.linalg.norm(coords - coords[c], axis=1)
        members = nb.members(c)
        assert members[0] == c
        assert sorted(members.tolist()) == np.flatnonzero(d <= r).tolist()
    geo = surface.surface_neighbourhoods(coords, faces, r)
    assert np.all(nb.sizes >= geo.sizes)  # a chord is never longer than an edge path


def test_a_mask_leaves_vertices_out_as_centres_and_members(ico4):
    coords, faces = ico4
    n = coords.shape[0]
    wall = coords[:, 0] > 30.0  # a cap: the "medial wall"
    keep = ~wall
    r = 12.0
    nb = surface.surface_neighbourhoods(coords, faces, r, mask=keep)
    kept = np.flatnonzero(keep)
    assert nb.n_centres == nb.n_voxels == kept.size
    assert np.all(nb.centres == np.arange(kept.size))
    nbrs = _neighbours(faces, n, keep)
    for c in range(0, kept.size, 53):
        members = kept[nb.members(c)]  # back to mesh vertices
        assert not wall[members].any()
        assert members[0] == kept[c]
        dist = _heap_dijkstra(coords, nbrs, int(kept[c]))  # paths avoid the wall
        assert sorted(members.tolist()) == sorted(v for v, d in dist.items() if d <= r)
    # a vertex next to the wall has a smaller disc than without the mask
    full = surface.surface_neighbourhoods(coords, faces, r)
    border = np.flatnonzero(keep & (coords[:, 0] > 25.0))
    rank = np.cumsum(keep) - 1
    assert np.all(nb.sizes[rank[border]] < full.sizes[border])
    with pytest.raises(TypeError, match="mask"):
        surface.surface_neighbourhoods(coords, faces, r, mask=keep.astype(int))
    with pytest.raises(ValueError, match="mask"):
        surface.surface_neighbourhoods(coords, faces, r, mask=keep[:-1])


def test_discs_are_cached_on_disk_under_the_mesh_and_parameters(ico4, tmp_path):
    coords, faces = ico4
    first = surface.surface_neighbourhoods(coords, faces, 8.0, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1
    again = surface.surface_neighbourhoods(coords, faces, 8.0, cache_dir=tmp_path)
    assert np.array_equal(first.indices, again.indices)
    assert np.array_equal(first.sizes, again.sizes) and again.n_voxels == first.n_voxels
    # other parameters, other files
    surface.surface_neighbourhoods(coords, faces, 8.0, metric="euclidean", cache_dir=tmp_path)
    surface.surface_neighbourhoods(coords * 1.01, faces, 8.0, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 3


def test_bad_inputs_are_refused_with_the_parameter_named(ico4):
    coords, faces = ico4
    with pytest.raises(ValueError, match="metric"):
        surface.surface_neighbourhoods(coords, faces, 5.0, metric="chebyshev")
    with pytest.raises(ValueError, match="radius_mm"):
        surface.surface_neighbourhoods(coords, faces, -1.0)
    with pytest.raises(ValueError, match="faces"):
        surface.surface_neighbourhoods(coords, faces + coords.shape[0], 5.0)
    with pytest.raises(ValueError, match="coords"):
        surface.surface_neighbourhoods(coords[:, :2], faces, 5.0)


def test_stacked_hemispheres_share_one_vertex_axis(ico4):
    coords, faces = ico4
    left = surface.surface_neighbourhoods(coords, faces, 6.0)
    keep = coords[:, 2] > 0
    right = surface.surface_neighbourhoods(coords, faces, 9.0, mask=keep)
    both = surface.stack_neighbourhoods([left, right])
    assert both.n_voxels == left.n_voxels + right.n_voxels
    assert both.n_centres == left.n_centres + right.n_centres
    for c in (0, 100, 2000):
        assert np.array_equal(both.members(c), left.members(c))
    for c in (0, 77, right.n_centres - 1):
        assert np.array_equal(both.members(left.n_centres + c), right.members(c) + left.n_voxels)


# --------------------------------------------------------------------------- the searchlight
def test_the_searchlight_on_vertices_equals_a_plain_per_vertex_computation(ico4):
    coords, faces = ico4
    keep = coords[:, 1] < 35.0
    nb = surface.surface_neighbourhoods(coords, faces, 8.0, mask=keep)
    rng = np.random.default_rng(3)
    n_cond, n_models = 8, 3
    patterns = rng.standard_normal((n_cond, int(keep.sum())))
    models = rng.random((n_models, n_cond * (n_cond - 1) // 2))
    scores = searchlight_rsa_array(patterns, nb, models, min_voxels=3, n_jobs=1)
    assert scores.shape == (nb.n_centres, n_models)
    for c in rng.choice(nb.n_centres, 40, replace=False):
        rdm = pdist(patterns[:, nb.members(int(c))], "correlation")
        for m in range(n_models):
            expected = spearmanr(rdm, models[m]).statistic
            assert abs(scores[c, m] - expected) < 1e-10


# --------------------------------------------------------------------------- TFCE
def _union_find_tfce(values, edges, n_steps=100, e=0.5, h=2.0, two_sided=False, dh=None):
    """TFCE by labelling the graph at every threshold with a plain union-find."""
    n = values.size
    out = np.zeros(n)
    top = np.max(np.abs(values)) if two_sided else max(np.max(values), 0.0)
    if dh is None:
        threshs = [k * (top / n_steps) for k in range(1, n_steps + 1)]  # nilearn's rounding
        threshs[-1] = top
        step = 1.0
    else:
        threshs = [dh * k for k in range(1, int(np.floor(top / dh + 1e-9)) + 1)]
        step = dh
    for sign in (1.0, -1.0) if two_sided else (1.0,):
        x = values * sign
        for t in threshs:
            if t <= 0:
                continue
            parent = list(range(n))

            def find(a, parent=parent):
                while parent[a] != a:
                    parent[a] = parent[parent[a]]
                    a = parent[a]
                return a

            supra = (x >= t) & (x != 0)
            for a, b in edges:
                if supra[a] and supra[b]:
                    parent[find(a)] = find(b)
            roots = [find(a) for a in range(n)]
            size = {}
            for a in np.flatnonzero(supra):
                size[roots[a]] = size.get(roots[a], 0) + 1
            for a in np.flatnonzero(supra):
                out[a] += sign * size[roots[a]] ** e * t**h * step
    return out


def _edge_list(adjacency):
    coo = adjacency.tocoo()
    return [(int(a), int(b)) for a, b in zip(coo.row, coo.col, strict=True) if a < b]


@pytest.fixture(scope="module")
def ico2():
    return icosphere(2)  # 162 vertices


def _smooth(coords, rng, sigma=12.0):
    """A smooth random map on the mesh: sums of bumps, rounded so that values tie."""
    centres = coords[rng.choice(coords.shape[0], 6, replace=False)]
    d = np.linalg.norm(coords[:, None, :] - centres[None], axis=2)
    values = (np.exp(-(d**2) / (2 * sigma**2)) * rng.normal(0, 3, 6)).sum(axis=1)
    return np.round(values, 2)


@pytest.mark.parametrize("two_sided", [False, True])
def test_mesh_tfce_equals_a_union_find_at_every_threshold(ico2, two_sided):
    coords, faces = ico2
    keep = coords[:, 0] < 40.0
    adjacency = surface.mesh_adjacency(faces, coords.shape[0], mask=keep)
    edges = _edge_list(adjacency)
    rng = np.random.default_rng(7)
    maps = np.stack([_smooth(coords, rng)[keep] for _ in range(3)])
    maps[1, 5] = np.nan  # counts as 0
    got = surface.tfce_mesh(maps, adjacency, two_sided=two_sided)
    assert got.shape == maps.shape
    for i in range(maps.shape[0]):
        expected = _union_find_tfce(np.nan_to_num(maps[i]), edges, two_sided=two_sided)
        np.testing.assert_allclose(got[i], expected, rtol=1e-12, atol=1e-12)
    assert np.count_nonzero(got > 0) > 20
    assert (np.count_nonzero(got < 0) > 20) == two_sided
    one = surface.tfce_mesh(maps[0], adjacency, two_sided=two_sided)
    np.testing.assert_array_equal(one, got[0])
    dh = surface.tfce_mesh(maps[0], adjacency, dh=0.1, two_sided=two_sided)
    np.testing.assert_allclose(
        dh, _union_find_tfce(maps[0], edges, dh=0.1, two_sided=two_sided), rtol=1e-12, atol=1e-12
    )


def _scipy_tfce(values, adjacency, n_steps=100, e=0.5, h=2.0, two_sided=False):
    """TFCE by scipy's connected components of the graph at every threshold."""
    from scipy.sparse.csgraph import connected_components

    out = np.zeros(values.size)
    top = np.max(np.abs(values)) if two_sided else max(np.max(values), 0.0)
    for sign in (1.0, -1.0) if two_sided else (1.0,):
        x = values * sign
        for k in range(1, n_steps + 1):
            t = top if k == n_steps else k * (top / n_steps)
            supra = np.flatnonzero((x >= t) & (x != 0))
            if t <= 0 or supra.size == 0:
                break
            _, comp = connected_components(adjacency[supra][:, supra], directed=False)
            out[supra] += sign * np.bincount(comp)[comp] ** e * t**h
    return out


@pytest.mark.parametrize("two_sided", [False, True])
def test_mesh_tfce_on_rough_maps_equals_scipys_components(two_sided):
    """Many small pieces that merge at every step: unions, path compression."""
    mesh = surface.icosphere(3)
    adjacency = surface.mesh_adjacency(mesh.faces, mesh.n_vertices)
    rng = np.random.default_rng(5)
    maps = np.round(rng.standard_normal((4, mesh.n_vertices)), 1)
    maps[2] = np.abs(maps[2])
    maps[3] = 0.0  # no piece at all
    got = surface.tfce_mesh(maps, adjacency, two_sided=two_sided)
    for i in range(maps.shape[0]):
        expected = _scipy_tfce(maps[i], adjacency, two_sided=two_sided)
        np.testing.assert_allclose(got[i], expected, rtol=1e-12, atol=1e-12)
    assert not got[3].any()
    from scipy.sparse import triu

    one_way = surface.tfce_mesh(maps, triu(adjacency), two_sided=two_sided)
    np.testing.assert_array_equal(one_way, got)
    edges = _edge_list(adjacency)
    np.testing.assert_allclose(
        got[0], _union_find_tfce(maps[0], edges, two_sided=two_sided), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("two_sided", [False, True])
def test_mesh_tfce_on_a_chain_equals_the_volume_tfce_on_a_line_of_voxels(two_sided):
    n = 60
    # a strip of triangles whose bottom row is a chain; the chain's own adjacency
    # is the mesh adjacency restricted to the bottom row
    faces = np.array(
        [[i, i + 1, n + i] for i in range(n - 1)]
        + [[i + 1, n + i + 1, n + i] for i in range(n - 1)]
    )
    chain = np.arange(2 * n) < n
    adjacency = surface.mesh_adjacency(faces, 2 * n, mask=chain)
    assert adjacency.nnz == 2 * (n - 1)
    rng = np.random.default_rng(11)
    values = np.round(np.convolve(rng.standard_normal(n + 8), np.ones(5) / 2, "valid")[:n], 2)
    values = np.stack([values, -values, np.abs(values)])
    layout = _tfce.VolumeLayout(np.ones((1, 1, n), dtype=bool), connectivity=6)
    volume = _tfce.tfce(values, layout, two_sided=two_sided)
    mesh = surface.tfce_mesh(values, adjacency, two_sided=two_sided)
    np.testing.assert_allclose(mesh, volume, rtol=1e-12, atol=1e-12)
    assert np.count_nonzero(mesh) > n


def test_mesh_adjacency_is_the_triangles_edges(ico2):
    coords, faces = ico2
    n = coords.shape[0]
    adjacency = surface.mesh_adjacency(faces, n)
    assert adjacency.shape == (n, n)
    assert (adjacency != adjacency.T).nnz == 0 and adjacency.diagonal().sum() == 0
    nbrs = _neighbours(faces, n)
    for a in range(n):
        assert set(adjacency[a].indices.tolist()) == nbrs[a]
    assert adjacency.nnz == 2 * (n + faces.shape[0] - 2)  # Euler: E = V + F - 2
    with pytest.raises(ValueError, match="adjacency"):
        surface.tfce_mesh(np.zeros(n - 1), adjacency)


# --------------------------------------------------------------------------- files
def _nilearn_fsaverage5():
    try:
        from nilearn.datasets import load_fsaverage

        load_fsaverage("fsaverage5")
    except Exception as exc:  # pragma: no cover - depends on the nilearn installed
        pytest.skip(f"nilearn does not ship fsaverage5 offline here: {exc}")


@pytest.mark.parametrize("hemi", ["left", "right"])
def test_fsaverage5_loads_offline_with_its_medial_wall(hemi):
    _nilearn_fsaverage5()
    mesh = surface.fsaverage_mesh(hemi)
    assert mesh.coords.shape == (10242, 3) and mesh.faces.shape == (20480, 3)
    pial = surface.fsaverage_mesh(hemi, "pial")
    white = surface.fsaverage_mesh(hemi, "white_matter")
    np.testing.assert_allclose(mesh.coords, (pial.coords + white.coords) / 2)
    assert np.array_equal(mesh.faces, pial.faces)
    sphere = surface.fsaverage_mesh(hemi, "sphere")  # fsaverage5 is an icosphere of order 5
    ico_coords, _ = icosphere(5, 100.0)
    assert np.allclose(np.sort(np.linalg.norm(sphere.coords, axis=1)), 100.0, atol=0.5)
    assert sphere.n_vertices == ico_coords.shape[0]
    wall = surface.fsaverage_medial_wall(hemi)
    assert wall.shape == (10242,) and wall.dtype == bool
    assert wall.sum() == {"left": 263, "right": 304}[hemi]
    # on the medial side: x near the midline
    side = -1 if hemi == "left" else 1
    assert np.median(pial.coords[wall, 0]) * side < np.median(pial.coords[~wall, 0]) * side
    nb = surface.surface_neighbourhoods(mesh.coords, mesh.faces, 10.0, mask=~wall)
    assert nb.n_centres == 10242 - wall.sum()
    assert 20 < np.median(nb.sizes) < 80
    # on the folded cortex too, the discs are the edge-path discs of the kept vertices
    kept = np.flatnonzero(~wall)
    nbrs = _neighbours(mesh.faces, mesh.n_vertices, ~wall)
    for c in np.random.default_rng(1).choice(kept.size, 30, replace=False):
        dist = _heap_dijkstra(mesh.coords, nbrs, int(kept[c]), limit=10.0)
        expected = sorted(v for v, d in dist.items() if d <= 10.0)
        assert sorted(kept[nb.members(int(c))].tolist()) == expected
    # TFCE on the hemisphere, against scipy's components at every threshold
    adjacency = surface.mesh_adjacency(mesh.faces, mesh.n_vertices, mask=~wall)
    rng = np.random.default_rng(2)
    values = rng.standard_normal(kept.size)
    for _ in range(4):  # smooth along the mesh
        values = (adjacency @ values + values) / (1 + np.asarray(adjacency.sum(axis=1)).ravel())
    got = surface.tfce_mesh(values, adjacency, two_sided=True)
    expected = _scipy_tfce(values, adjacency, two_sided=True)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_fsaverage6_needs_a_file():
    with pytest.raises(ValueError, match="load_mesh"):
        surface.fsaverage_mesh("left", mesh="fsaverage6")
    with pytest.raises(ValueError, match="hemi"):
        surface.fsaverage_mesh("both")


def test_a_gifti_surface_and_a_freesurfer_label_are_read(ico2, tmp_path):
    import nibabel as nib

    coords, faces = ico2
    img = nib.gifti.GiftiImage(
        darrays=[
            nib.gifti.GiftiDataArray(coords.astype(np.float32), intent="NIFTI_INTENT_POINTSET"),
            nib.gifti.GiftiDataArray(faces.astype(np.int32), intent="NIFTI_INTENT_TRIANGLE"),
        ]
    )
    path = tmp_path / "hemi-L_midthickness.surf.gii"
    nib.save(img, path)
    mesh = surface.load_mesh(path)
    np.testing.assert_allclose(mesh.coords, coords.astype(np.float32))
    assert np.array_equal(mesh.faces, faces)
    with pytest.raises(FileNotFoundError, match="path"):
        surface.load_mesh(tmp_path / "missing.surf.gii")
    label = tmp_path / "lh.cortex.label"
    vertices = [3, 5, 8]
    lines = ["#!ascii label", str(len(vertices))]
    lines += [f"{v} {coords[v, 0]:.3f} {coords[v, 1]:.3f} {coords[v, 2]:.3f} 0.0" for v in vertices]
    label.write_text("\n".join(lines) + "\n")
    mask = surface.label_mask(label, coords.shape[0])
    assert mask.dtype == bool and np.flatnonzero(mask).tolist() == vertices
    with pytest.raises(ValueError, match="n_vertices"):
        surface.label_mask(label, 4)


def test_neighbourhoods_type_is_the_volumes():
    coords, faces = icosphere(1)
    nb = surface.surface_neighbourhoods(coords, faces, 30.0)
    assert isinstance(nb, Neighbourhoods)
    assert nb.indices.dtype == np.int32 and nb.centres.dtype == np.int64
