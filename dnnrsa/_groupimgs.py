"""Group tests from images to images: subject maps in, test maps and cluster tables out.

The image layer over :func:`dnnrsa.stats.sign_flip_test`: stack subject images on one
grid, keep the voxels finite in every subject, Fisher z transform them, test, and put
the maps back on the grid (p = 1 outside the voxels tested). Re-exported by
:mod:`dnnrsa.stats`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from ._cpus import resolve_n_jobs
from ._maxt import _max_t_null_maps
from ._scores import fisher_z as _fisher_z
from ._signflip import (
    SignFlipResult,
    _load_mask_img,
    _max_t_result,
    sign_flip_matrix,
    sign_flip_test,
)
from .backend import get_namespace

__all__ = ["GroupTestResult", "group_test_imgs", "group_test_maps", "sign_flip_test_imgs"]


def sign_flip_test_imgs(imgs, mask_img, **kwargs) -> tuple[SignFlipResult, dict[str, Any]]:
    """:func:`sign_flip_test` on a list of 3-D images.

    Parameters
    ----------
    imgs : list of nibabel images or paths, length n_subjects
        Subject maps on the grid of ``mask_img``.
    mask_img : nibabel image or path
    **kwargs
        Passed to :func:`sign_flip_test` (``mask`` is set from ``mask_img``).

    Returns
    -------
    result : SignFlipResult
    images : dict of str to nibabel.Nifti1Image
        :meth:`SignFlipResult.to_images` of the result.
    """
    import nibabel as nib

    mask_img = _load_mask_img(mask_img)
    mask = np.asanyarray(mask_img.dataobj).astype(bool)
    rows = []
    for img in imgs:
        img = nib.load(img) if isinstance(img, str | os.PathLike) else img
        if img.shape[:3] != mask.shape or not np.allclose(img.affine, mask_img.affine):
            raise ValueError(
                f"every image must be on the mask's grid {mask.shape}; got {img.shape}"
            )
        rows.append(np.asarray(img.get_fdata(dtype=np.float64)).reshape(mask.shape)[mask])
    result = sign_flip_test(np.stack(rows), mask=mask, **kwargs)
    return result, result.to_images(mask_img)


def _stack_imgs(imgs, *, atol: float = 1e-4):
    """Subject images as a (n_subjects, nx, ny, nz) float64 array, and the first image."""
    import nibabel as nib

    imgs = [nib.load(i) if isinstance(i, str | os.PathLike) else i for i in imgs]
    if not imgs:
        raise ValueError("no images given")
    ref = imgs[0]
    shape = ref.shape[:3]
    for k, img in enumerate(imgs):
        if img.shape[:3] != shape or not np.allclose(img.affine, ref.affine, atol=atol):
            raise ValueError(
                f"image {k} (shape {img.shape}) is not on the grid of the first image {shape}"
            )
    data = np.stack([np.asarray(img.dataobj, dtype=np.float64).reshape(shape) for img in imgs])
    return data, ref


@dataclasses.dataclass
class GroupTestResult:
    """Outcome of :func:`group_test_imgs`.

    Attributes
    ----------
    test : SignFlipResult
        The test on the voxels of ``mask_img``.
    images : dict of str to nibabel.Nifti1Image
        :meth:`SignFlipResult.to_images`, with every p map set to 1 outside the mask.
    mask_img : nibabel.Nifti1Image
        The voxels finite in every subject map (uint8).
    clusters : pandas.DataFrame or None
        Clusters of the z map above the cluster-forming threshold (as a z), with the
        smallest voxel-level FWE p of each (:func:`dnnrsa.atlas.cluster_table`).
    """

    test: SignFlipResult
    images: dict[str, Any]
    mask_img: Any
    clusters: Any = None


def group_test_imgs(
    imgs,
    *,
    n_permutations: int = 5000,
    tfce: bool = False,
    cluster_forming_threshold: float = 0.001,
    atlas: str | tuple[str, ...] | None = "harvard-oxford",
    random_state=None,
    device: str | None = None,
    fisher_z: bool = True,
    **kwargs,
) -> GroupTestResult:
    """One-sample group test of subject score maps, from images to images.

    The maps (correlation-type scores, one image per subject) are Fisher z
    transformed (:func:`fisher_z`; with ``fisher_z=False`` tested as they are, for
    scores that are not correlations, such as encoding R²) and tested on the voxels finite in every subject by
    :func:`sign_flip_test` (one-sided, voxel-level max-T FWE, cluster-size FWE for an
    uncorrected cluster-forming p, TFCE on request). Outside those voxels every p map
    is 1 (never 0, which would read as significant) and the other maps 0.

    Parameters
    ----------
    imgs : list of nibabel images or paths, length n_subjects >= 2
        Subject maps on one grid (affines equal to 1e-4).
    n_permutations : int
    tfce : bool
    cluster_forming_threshold : float
        Uncorrected p that forms clusters (for the cluster-size FWE p and the cluster
        table).
    atlas : str, tuple of str or None
        Atlas(es) naming the clusters; None skips the cluster table.
    random_state : int, numpy.random.Generator or None
    device : {"auto", "cpu", "cuda"} or None
    fisher_z : bool
        Fisher z transform the maps first (default); False tests the values as they are.
    **kwargs
        Passed to :func:`sign_flip_test`.

    Returns
    -------
    GroupTestResult
    """
    x, mask, mask_img = _group_data(imgs, fisher_z=fisher_z)
    result = sign_flip_test(
        x,
        mask=mask_img,
        n_permutations=n_permutations,
        tfce=tfce,
        cluster_forming_threshold=cluster_forming_threshold,
        threshold_type="p",
        random_state=random_state,
        device=device,
        **kwargs,
    )
    return _group_result(result, mask, mask_img, atlas, cluster_forming_threshold)


def _group_data(imgs, *, fisher_z: bool = True):
    """Fisher z (or, with ``fisher_z=False``, the values) of the voxels finite in every
    subject map, that mask and its image."""
    import nibabel as nib

    imgs = list(imgs)
    if len(imgs) < 2:
        raise ValueError(f"a group test needs at least 2 subject maps; got {len(imgs)}")
    data, ref = _stack_imgs(imgs)
    mask = np.all(np.isfinite(data), axis=0)
    if not mask.any():
        raise ValueError(f"no voxel is finite in all {len(imgs)} subject maps")
    mask_img = nib.Nifti1Image(mask.astype(np.uint8), ref.affine)
    values = data[:, mask]
    return (_fisher_z(values) if fisher_z else values), mask, mask_img


def _group_result(result, mask, mask_img, atlas, cluster_forming_threshold) -> GroupTestResult:
    """Images (p = 1 outside the mask) and the cluster table of a group test."""
    import nibabel as nib
    from scipy import stats

    images = result.to_images(mask_img)
    for name, img in images.items():
        if name.startswith("p"):
            vals = np.asarray(img.dataobj, dtype=np.float32)
            vals[~mask] = 1.0
            images[name] = nib.Nifti1Image(vals, img.affine)
    clusters = None
    if atlas is not None:
        from .atlas import cluster_table

        clusters = cluster_table(
            images["z"],
            float(stats.norm.isf(cluster_forming_threshold)),
            two_sided=False,
            p_img=images["p_fwe"],
            atlas=atlas,
        )
    return GroupTestResult(test=result, images=images, mask_img=mask_img, clusters=clusters)


def group_test_maps(
    maps,
    *,
    n_permutations: int = 5000,
    tfce: bool | list[bool] = False,
    cluster_forming_threshold: float = 0.001,
    atlas: str | tuple[str, ...] | None = "harvard-oxford",
    random_state: int | None = None,
    device: str | None = None,
    max_memory_mb: float = 512.0,
    n_jobs: int | None = None,
    fisher_z: bool | list[bool] = True,
) -> list[GroupTestResult]:
    """:func:`group_test_imgs` of several maps (the layers of a network) in one call.

    Every map is tested on its own: its own mask (the voxels finite in all its
    subject maps), its own max-T (voxel-level FWE over that map's voxels only), its
    own cluster table. The maps without TFCE are tested together by the blocked
    max-T (:func:`sign_flip_test` without TFCE or clusters), with all their blocks of
    voxels on one pool of ``n_jobs`` threads; maps with TFCE by
    :func:`sign_flip_test` with ``tfce=True``, one after the other. Maps with the same
    number of subjects use the same sign patterns, those a separate call with the
    same integer ``random_state`` draws, so each result equals, bit for bit,
    ``group_test_imgs(maps[k], tfce=tfce[k], ...)`` with the same arguments, except
    that the cluster-size and cluster-mass FWE p maps (``p_cluster_size_fwe``,
    ``p_cluster_mass_fwe``) are not computed: ``cluster_forming_threshold`` only sets
    the threshold of the cluster table, whose clusters carry their smallest
    voxel-level FWE p.

    Parameters
    ----------
    maps : list of lists of nibabel images or paths
        Per map, one subject map per subject (at least 2), on one grid per map.
    n_permutations : int
    tfce : bool or list of bool
        TFCE for every map, or one flag per map.
    cluster_forming_threshold : float
        Uncorrected p whose z forms the clusters of each map's table.
    atlas : str, tuple of str or None
        Atlas(es) naming the clusters; None skips the cluster tables.
    random_state : int or None
        Seed of the sign patterns (an int, for results that equal separate calls).
    device : {"auto", "cpu", "cuda"} or None
    max_memory_mb : float
        Memory budget of the permutation work (see :func:`sign_flip_test`); the
        Fisher z of the maps without TFCE are held together (8 bytes per subject and
        in-mask voxel).
    n_jobs : int or None
        Threads of the blocked max-T, and of TFCE, on the CPU; None uses every core
        available.
    fisher_z : bool or list of bool
        Fisher z transform the maps first (default), for every map or one flag per
        map; False tests a map's values as they are (as ``group_test_imgs(...,
        fisher_z=False)``).

    Returns
    -------
    list of GroupTestResult
        One per map, in the order of ``maps``.
    """
    maps = [list(m) for m in maps]
    flags = [bool(tfce)] * len(maps) if isinstance(tfce, bool) else [bool(f) for f in tfce]
    if len(flags) != len(maps):
        raise ValueError(f"tfce must be a bool or one flag per map ({len(maps)}); got {tfce!r}")
    fisher = [bool(fisher_z)] * len(maps) if isinstance(fisher_z, bool) else list(fisher_z)
    if len(fisher) != len(maps):
        raise ValueError(
            f"fisher_z must be a bool or one flag per map ({len(maps)}); got {fisher_z!r}"
        )
    n_jobs = resolve_n_jobs(n_jobs, below_one="one")
    results: list[GroupTestResult | None] = [None] * len(maps)
    plain = [k for k, flag in enumerate(flags) if not flag]
    loaded = {k: _group_data(maps[k], fisher_z=fisher[k]) for k in plain}
    by_subjects: dict[int, list[int]] = {}
    for k in plain:
        by_subjects.setdefault(loaded[k][0].shape[0], []).append(k)
    for n_subjects, ks in by_subjects.items():
        signs, exhaustive = sign_flip_matrix(n_subjects, n_permutations, random_state=random_state)
        xp = get_namespace(loaded[ks[0]][0], device=device)
        nulls = _max_t_null_maps(
            [loaded[k][0] for k in ks],
            signs,
            two_sided=False,
            xp=xp,
            max_memory_mb=max_memory_mb,
            n_jobs=n_jobs,
        )
        for k, (valid, t_obs, h0_t, counts) in zip(ks, nulls, strict=True):
            result = _max_t_result(
                valid,
                t_obs,
                h0_t,
                counts,
                n_perm=signs.shape[0],
                exhaustive=exhaustive,
                two_sided=False,
                df=n_subjects - 1,
            )
            _, mask, mask_img = loaded.pop(k)
            results[k] = _group_result(result, mask, mask_img, atlas, cluster_forming_threshold)
    for k, flag in enumerate(flags):
        if not flag:
            continue
        x, mask, mask_img = _group_data(maps[k], fisher_z=fisher[k])
        result = sign_flip_test(
            x,
            mask=mask_img,
            n_permutations=n_permutations,
            tfce=True,
            random_state=random_state,
            device=device,
            max_memory_mb=max_memory_mb,
            n_jobs=n_jobs,
        )
        results[k] = _group_result(result, mask, mask_img, atlas, cluster_forming_threshold)
    return results
