"""Masks read in one way: the image, and which of its voxels are inside.

Every function of dnnrsa that takes a mask (the searchlight, the GLM's brain mask,
the group tests, the regions of interest) reads it with :func:`load_mask`: a path or
a nibabel image, 3-D or 4-D with one volume, whose finite non-zero voxels are inside.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import numpy as np


class LoadedMask(NamedTuple):
    """A mask as read: ``img`` the 3-D image (the volume of a 4-D image of one volume)
    and ``inside`` the boolean array of its voxels inside."""

    img: Any
    inside: np.ndarray


def load_mask(mask_img: Any, *, name: str = "mask_img", require_voxels: bool = False) -> LoadedMask:
    """Read a mask: a path or nibabel image, 3-D or 4-D with a single volume.

    Parameters
    ----------
    mask_img : path-like or nibabel image
    name : str
        How error messages name the mask (the caller's parameter).
    require_voxels : bool
        Refuse a mask without any voxel inside.

    Returns
    -------
    LoadedMask
        ``(img, inside)``: the loaded 3-D image and its finite, non-zero voxels.

    Raises
    ------
    ValueError
        The file cannot be read as an image, the image is not 3-D (or 4-D with one
        volume), or (with ``require_voxels``) no voxel is inside; the message names
        ``name`` and the mask given.
    """
    from nilearn.image import load_img

    try:
        img = load_img(mask_img)
    except Exception as exc:
        raise ValueError(f"{name} could not be loaded: {_shown(mask_img)} ({exc})") from exc
    if len(img.shape) == 4 and img.shape[3] == 1:
        from nilearn.image import index_img

        img = index_img(img, 0)
    data = np.asanyarray(img.dataobj)
    if data.ndim != 3:
        raise ValueError(
            f"{name} must be a 3-D image (or 4-D with one volume); got shape "
            f"{tuple(img.shape)} from {_shown(mask_img)}"
        )
    inside = data != 0
    if np.issubdtype(data.dtype, np.floating):
        inside &= np.isfinite(data)
    if require_voxels and not inside.any():
        raise ValueError(f"{name} is empty (no finite non-zero voxel): {_shown(mask_img)}")
    return LoadedMask(img, inside)


def _shown(mask_img: Any) -> str:
    if isinstance(mask_img, str | os.PathLike):
        return repr(str(mask_img))
    return f"a {type(mask_img).__name__} of shape {tuple(getattr(mask_img, 'shape', ()))}"
