"""The group level's common-voxel check reads each map's header with nibabel: maps in
other layouts give the answer of a full read, and broken maps raise what reading them
raises (the messages the command line reports, exit 1)."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from dnnrsa.bids_app._groups import MapGroup
from dnnrsa.bids_app.group import _has_common_voxels, _open_map, _stored_header

SHAPE = (6, 7, 12)


def _slab(lo, hi, dtype=np.float32):
    data = np.full(SHAPE, np.nan, dtype)
    data[..., lo:hi] = 0.5
    return data


def _group(*files):
    subjects = tuple(f"{i:02d}" for i in range(len(files)))
    return MapGroup("t", "MNI", "m", None, "spearman", tuple(files), subjects, "", 0, "m")


def _full_read(group):
    masks = [np.isfinite(np.asarray(nib.load(f).dataobj)) for f in group.files]
    return bool(np.logical_and.reduce(masks).any())


@pytest.fixture
def good(tmp_path):
    paths = []
    for name in ("a.nii.gz", "b.nii.gz"):
        nib.Nifti1Image(_slab(2, 12), np.eye(4)).to_filename(tmp_path / name)
        paths.append(tmp_path / name)
    return paths


def _variant(tmp_path, kind):
    path = tmp_path / f"{kind}.nii.gz"
    data = _slab(3, 12)
    if kind == "big-endian":
        img = nib.Nifti1Image(data, np.eye(4), header=nib.Nifti1Header(endianness=">"))
    elif kind == "nifti2":
        img = nib.Nifti2Image(data, np.eye(4))
    else:
        img = nib.Nifti1Image(data, np.eye(4))
    if kind == "scaled":
        img.header.set_slope_inter(2.0, 1.0)
    if kind == "extension":
        img.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"a comment"))
    img.to_filename(path)
    return path


@pytest.mark.parametrize("kind", ["big-endian", "nifti2", "scaled", "extension"])
def test_maps_in_other_layouts_answer_as_a_full_read(tmp_path, good, kind):
    other = _variant(tmp_path, kind)
    for files in ((*good, other), (other, *good)):
        group = _group(*files)
        assert _has_common_voxels(group) is True == _full_read(group)
    nib.Nifti1Image(_slab(0, 3), np.eye(4)).to_filename(tmp_path / "low.nii.gz")
    group = _group(*good, other, tmp_path / "low.nii.gz")
    assert _has_common_voxels(group) is False == _full_read(group)


def test_the_stored_header_and_its_layout(tmp_path, good):
    """nibabel parses the header as stored (its scaling, not the loaded image's NaN);
    layouts agree for maps stored alike and differ in byte order or scaling."""

    def stored(path):
        with _open_map(path) as fh:
            return _stored_header(fh)

    hdr, layout = stored(good[0])
    assert hdr["sizeof_hdr"] == 348 and hdr.get_data_dtype() == np.float32
    assert stored(good[1])[1] == layout
    scaled = stored(_variant(tmp_path, "scaled"))
    assert (float(scaled[0]["scl_slope"]), float(scaled[0]["scl_inter"])) == (2.0, 1.0)
    assert scaled[1] != layout
    big = stored(_variant(tmp_path, "big-endian"))
    assert big[0].endianness == ">" and big[1] != layout
    (tmp_path / "short.nii").write_bytes(b"x" * 100)
    assert stored(tmp_path / "short.nii") is None


def test_broken_maps_raise_what_reading_them_raises(tmp_path, good):
    raw = gzip.decompress(good[0].read_bytes())
    cases = {
        "notgz.nii.gz": (b"not a NIfTI file" * 30, gzip.BadGzipFile, "Not a gzipped file"),
        "empty.nii.gz": (b"", nib.filebasedimages.ImageFileError, "Empty file"),
        "short.nii.gz": (
            gzip.compress(raw[:100]),
            nib.filebasedimages.ImageFileError,
            "Cannot work out file type",
        ),
        "cut.nii.gz": (gzip.compress(raw)[:60], EOFError, "end-of-stream marker"),
        "truncated.nii.gz": (
            gzip.compress(raw[: 352 + 4 * 42 * 3]),
            ValueError,
            "not enough data in file",
        ),
    }
    for name, (content, error, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(error, match=message):
            _has_common_voxels(_group(*good, tmp_path / name))
    # the cheap pass reads only the first planes: a map cut after them passes it
    (tmp_path / "late.nii.gz").write_bytes(gzip.compress(raw[: 352 + 4 * 42 * 8]))
    assert _has_common_voxels(_group(*good, tmp_path / "late.nii.gz"))
