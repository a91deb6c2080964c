"""dnnrsa._masks.load_mask: the one way every function reads a mask."""

import nibabel as nib
import numpy as np
import pytest

from dnnrsa._masks import load_mask


def _img(data):
    return nib.Nifti1Image(np.asarray(data), np.diag([2.0, 2.0, 2.0, 1.0]))


def test_inside_is_finite_and_non_zero(tmp_path):
    data = np.zeros((3, 4, 5), dtype=np.float32)
    data[0, 0, 0] = 1.0
    data[1, 2, 3] = -0.5
    data[2, 3, 4] = np.nan
    data[2, 0, 1] = np.inf
    path = tmp_path / "mask.nii.gz"
    nib.save(_img(data), path)
    for given in (path, str(path), _img(data)):
        img, inside = load_mask(given)
        assert inside.dtype == bool and inside.shape == (3, 4, 5)
        assert np.argwhere(inside).tolist() == [[0, 0, 0], [1, 2, 3]]
        np.testing.assert_array_equal(img.affine, np.diag([2.0, 2.0, 2.0, 1.0]))


def test_a_4d_image_of_one_volume_is_its_volume():
    data = np.zeros((3, 4, 5, 1), dtype=np.uint8)
    data[1, 1, 1, 0] = 1
    img, inside = load_mask(_img(data))
    assert img.shape == (3, 4, 5)
    assert inside.sum() == 1 and inside[1, 1, 1]


def test_refusals_name_the_parameter_and_the_file(tmp_path):
    path = tmp_path / "two_volumes.nii.gz"
    nib.save(_img(np.ones((3, 4, 5, 2), dtype=np.uint8)), path)
    with pytest.raises(ValueError, match=r"roi_mask must be a 3-D image .*\(3, 4, 5, 2\).*two_volumes"):
        load_mask(path, name="roi_mask")
    empty = tmp_path / "empty.nii.gz"
    nib.save(_img(np.zeros((3, 4, 5), dtype=np.uint8)), empty)
    assert not load_mask(empty).inside.any()
    with pytest.raises(ValueError, match=r"mask_img is empty .*empty\.nii\.gz"):
        load_mask(empty, require_voxels=True)
    with pytest.raises(ValueError, match=r"mask_img could not be loaded: .*missing\.nii\.gz"):
        load_mask(tmp_path / "missing.nii.gz")
