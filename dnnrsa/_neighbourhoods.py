"""Searchlight neighbourhoods: which in-mask voxels lie within a sphere around each centre.

A neighbourhood set is stored as one padded integer array (one row per centre, one
column per member slot) rather than as Python lists, so that the searchlight engine
can gather the patterns of thousands of spheres with a single fancy-indexing call.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

# Distances are compared with a tolerance of this many millimetres, so that a voxel
# whose centre lies exactly on the sphere (radius 2 voxels of 3 mm = 6 mm) is kept
# despite rounding in the affine.
_DISTANCE_TOLERANCE_MM = 1e-6


@dataclass(frozen=True)
class Neighbourhoods:
    """Members of every searchlight sphere, as a padded index array.

    Attributes
    ----------
    indices : ndarray of shape (n_centres, max_size), int32
        Row ``c`` lists the voxels (indices into the masked voxel axis) of sphere
        ``c``; the centre comes first when the sphere was built from a mask, and
        unused slots hold ``n_voxels`` (one past the last voxel).
    sizes : ndarray of shape (n_centres,), int32
        Number of real members of each sphere.
    centres : ndarray of shape (n_centres,), int64
        Index (into the masked voxel axis) of the voxel each sphere belongs to.
    n_voxels : int
        Number of voxels on the masked voxel axis.
    """

    indices: np.ndarray
    sizes: np.ndarray
    centres: np.ndarray
    n_voxels: int

    @property
    def n_centres(self) -> int:
        """Number of spheres."""
        return int(self.indices.shape[0])

    @property
    def max_size(self) -> int:
        """Width of the padded index array (the largest sphere)."""
        return int(self.indices.shape[1])

    @property
    def padding(self) -> int:
        """The value that marks unused slots in :attr:`indices`."""
        return int(self.n_voxels)

    def members(self, centre: int) -> np.ndarray:
        """Voxel indices of one sphere, shape (sizes[centre],)."""
        row = self.indices[centre]
        return row[row != self.n_voxels].astype(np.int64)

    @classmethod
    def from_lists(
        cls,
        members: Sequence[Sequence[int]],
        n_voxels: int,
        centres: Sequence[int] | None = None,
    ) -> Neighbourhoods:
        """Build from one sequence of voxel indices per sphere.

        Parameters
        ----------
        members : sequence of sequences of int, length n_centres
            Voxel indices (into the masked voxel axis) of each sphere.
        n_voxels : int
            Number of voxels on the masked voxel axis.
        centres : sequence of int of length n_centres, optional
            Voxel each sphere belongs to; default ``0 .. n_centres - 1``.
        """
        n_voxels = int(n_voxels)
        rows = [np.unique(np.asarray(m, dtype=np.int64).ravel()) for m in members]
        n_centres = len(rows)
        sizes = np.array([r.size for r in rows], dtype=np.int32)
        width = int(sizes.max()) if n_centres else 0
        indices = np.full((n_centres, max(width, 1)), n_voxels, dtype=np.int32)
        for c, r in enumerate(rows):  # construction only; the engine never loops over spheres
            if r.size and (r[0] < 0 or r[-1] >= n_voxels):
                raise ValueError(
                    f"members[{c}] must index voxels 0..{n_voxels - 1}; got values "
                    f"from {r[0]} to {r[-1]}"
                )
            indices[c, : r.size] = r
        if centres is None:
            centres_arr = np.arange(n_centres, dtype=np.int64)
        else:
            centres_arr = np.asarray(centres, dtype=np.int64).ravel()
            if centres_arr.shape != (n_centres,):
                raise ValueError(
                    f"centres must have one entry per sphere ({n_centres}); "
                    f"got shape {centres_arr.shape}"
                )
        return cls(indices=indices, sizes=sizes, centres=centres_arr, n_voxels=n_voxels)


def sphere_offsets(affine: np.ndarray, radius_mm: float) -> np.ndarray:
    """Voxel-index offsets of all voxel centres within ``radius_mm`` of a voxel centre.

    The distance between voxel centres ``i`` and ``i + d`` is ``|A d|`` in world
    coordinates, with ``A`` the 3x3 linear part of the affine, whatever the voxel
    position; so one set of offsets serves every centre, for anisotropic and
    oblique grids alike.

    Parameters
    ----------
    affine : ndarray of shape (4, 4)
        Voxel-to-world affine (millimetres).
    radius_mm : float
        Sphere radius; voxels at distance ``<= radius_mm`` are included.

    Returns
    -------
    offsets : ndarray of shape (n_offsets, 3), int64
        Sorted by distance, so that the first row is ``(0, 0, 0)``.
    """
    radius_mm = float(radius_mm)
    if not np.isfinite(radius_mm) or radius_mm < 0:
        raise ValueError(f"radius_mm must be a finite number >= 0; got {radius_mm!r}")
    linear = np.asarray(affine, dtype=np.float64)[:3, :3]
    if not np.all(np.isfinite(linear)) or abs(np.linalg.det(linear)) < 1e-12:
        raise ValueError(f"affine must have an invertible 3x3 part; got {linear.tolist()!r}")
    # Largest |d_k| on the ellipsoid |A d| <= r is r * |row k of A^-1|.
    inv = np.linalg.inv(linear)
    extent = np.ceil(radius_mm * np.linalg.norm(inv, axis=1) + 1e-9).astype(np.int64)
    axes = [np.arange(-e, e + 1) for e in extent]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    dist = np.linalg.norm(grid @ linear.T, axis=1)
    keep = dist <= radius_mm + _DISTANCE_TOLERANCE_MM
    grid, dist = grid[keep], dist[keep]
    # Stable order: by distance, then lexicographically, so that results are reproducible.
    order = np.lexsort((grid[:, 2], grid[:, 1], grid[:, 0], np.round(dist, 9)))
    return grid[order]


def sphere_size(affine: np.ndarray, radius_mm: float, shape=None) -> int:
    """Voxel centres within ``radius_mm`` of a centre: a sphere's size before masking.

    The rule of :func:`sphere_offsets` (distance ``<= radius_mm``, the same tolerance),
    counted plane by plane, and within the grid's extent when ``shape`` is given, so a
    huge radius is measured without enumerating its offsets at once.
    """
    linear = np.asarray(affine, dtype=np.float64)[:3, :3]
    extent = np.ceil(radius_mm * np.linalg.norm(np.linalg.inv(linear), axis=1) + 1e-9)
    if shape is not None:
        extent = np.minimum(extent, np.asarray(shape[:3]) - 1)
    extent = extent.astype(np.int64)
    dj, dk = np.meshgrid(
        np.arange(-extent[1], extent[1] + 1), np.arange(-extent[2], extent[2] + 1), indexing="ij"
    )
    plane = np.stack([np.zeros_like(dj), dj, dk], axis=-1).reshape(-1, 3).astype(np.float64)
    limit = float(radius_mm) + _DISTANCE_TOLERANCE_MM
    size = 0
    for di in range(-extent[0], extent[0] + 1):
        plane[:, 0] = di
        size += int(np.count_nonzero(np.linalg.norm(plane @ linear.T, axis=1) <= limit))
    return size


def mask_neighbourhoods(mask: np.ndarray, affine: np.ndarray, radius_mm: float) -> Neighbourhoods:
    """Spheres around every voxel of a boolean mask, restricted to in-mask voxels.

    Parameters
    ----------
    mask : ndarray of shape (nx, ny, nz), bool
        Voxels that are both centres and candidate members. The masked voxel axis
        is the C-order of ``mask.nonzero()`` (the order of ``data[mask]`` and of
        nilearn's maskers).
    affine : ndarray of shape (4, 4)
        Voxel-to-world affine of the mask.
    radius_mm : float
        Sphere radius in millimetres (distance ``<= radius_mm`` between voxel centres).

    Returns
    -------
    Neighbourhoods
        One sphere per in-mask voxel, the centre first.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3:
        raise ValueError(f"mask must be 3-D; got shape {mask.shape}")
    offsets = sphere_offsets(affine, radius_mm)
    ijk = np.argwhere(mask)  # (n_voxels, 3), C order
    n_voxels = ijk.shape[0]
    if n_voxels == 0:
        raise ValueError("mask contains no voxels")
    if n_voxels >= np.iinfo(np.int32).max:
        raise ValueError(f"mask has too many voxels for int32 indices: {n_voxels}")
    # Lookup volume padded by the sphere extent on every side, so that every
    # centre + offset is a valid flat index and no bounds check is needed.
    pad = np.abs(offsets).max(axis=0)
    padded_shape = tuple(int(n + 2 * p) for n, p in zip(mask.shape, pad, strict=True))
    lookup = np.full(padded_shape, -1, dtype=np.int32)
    inner = tuple(slice(int(p), int(p + n)) for n, p in zip(mask.shape, pad, strict=True))
    lookup_inner = np.full(mask.shape, -1, dtype=np.int32)
    lookup_inner[mask] = np.arange(n_voxels, dtype=np.int32)
    lookup[inner] = lookup_inner
    lookup = lookup.ravel()
    strides = np.array([padded_shape[1] * padded_shape[2], padded_shape[2], 1], dtype=np.int64)
    centre_flat = (ijk + pad) @ strides
    offset_flat = offsets @ strides

    members = np.empty((n_voxels, offsets.shape[0]), dtype=np.int32)
    step = 16384
    for start in range(0, n_voxels, step):  # chunks bound the int64 temporaries
        stop = min(start + step, n_voxels)
        members[start:stop] = lookup[centre_flat[start:stop, None] + offset_flat[None, :]]

    valid = members >= 0
    sizes = valid.sum(axis=1).astype(np.int32)
    if not np.all(valid):
        # Move the real members to the front of each row, keeping their order
        # (distance order, centre first): a stable sort on "is padding".
        # Only the (boundary) rows with padding need it.
        partial = np.flatnonzero(sizes < offsets.shape[0])
        sub = members[partial]
        order = np.argsort(~valid[partial], axis=1, kind="stable")
        sub = np.take_along_axis(sub, order, axis=1)
        sub[np.arange(sub.shape[1])[None, :] >= sizes[partial, None]] = n_voxels
        members[partial] = sub
        width = int(sizes.max())
        members = np.ascontiguousarray(members[:, :width])
    logger.debug(
        "%d spheres of radius %.3g mm: %d offsets, sizes %d..%d",
        n_voxels,
        radius_mm,
        offsets.shape[0],
        int(sizes.min()),
        int(sizes.max()),
    )
    return Neighbourhoods(
        indices=members,
        sizes=sizes,
        centres=np.arange(n_voxels, dtype=np.int64),
        n_voxels=n_voxels,
    )
