"""load_volume / save_volume / check_same_grid: every bad input raises one InputError naming the
file and the problem; good inputs (NIfTI, .nii.gz, Analyze pairs, 4D with one volume) load."""

import gzip
import os
import re

import nibabel as nib
import numpy as np
import pytest

from tfneuro.errors import InputError
from tfneuro.io import check_same_grid, load_volume, save_volume

AFF = np.array([[-1.0, 0, 0, 30], [0, 1.0, 0, -20], [0, 0, 2.0, 5], [0, 0, 0, 1]])


def write(path, data, affine=AFF):
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return str(path)


def vol(shape=(16, 16, 12), seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32) + 0.1


def raises(path, problem):
    """pytest.raises matching '<path>: ...<problem>...' (one line)."""
    return pytest.raises(InputError, match=re.escape(str(path)) + r": .*" + problem)


def test_load_nifti_and_gz(tmp_path):
    data = vol()
    for name in ("a.nii", "a.nii.gz"):
        img = load_volume(write(tmp_path / name, data))
        assert isinstance(img, nib.Nifti1Image)
        assert img.shape == data.shape
        np.testing.assert_array_equal(np.asarray(img.dataobj), data)
        assert np.array_equal(img.affine, AFF)
        assert np.asarray(img.dataobj).dtype == np.float32


def test_load_squeezes_4d_with_one_volume(tmp_path):
    data = vol()
    img = load_volume(write(tmp_path / "four.nii.gz", data[..., None]))
    assert img.shape == data.shape
    np.testing.assert_array_equal(np.asarray(img.dataobj), data)


def test_load_analyze_pair(tmp_path):
    data = (vol() * 100).astype(np.int16)
    nib.save(nib.AnalyzeImage(data, np.diag([1.0, 1.0, 1.0, 1.0])), str(tmp_path / "subject-1-T1.hdr"))
    assert os.path.exists(tmp_path / "subject-1-T1.img")
    for name in ("subject-1-T1.hdr", "subject-1-T1.img"):
        img = load_volume(tmp_path / name)
        np.testing.assert_array_equal(np.asarray(img.dataobj), data.astype(np.float32))
        assert img.header.get_zooms()[:3] == (1.0, 1.0, 1.0)
    os.unlink(tmp_path / "subject-1-T1.img")
    with raises(tmp_path / "subject-1-T1.hdr", "subject-1-T1.img not found"):
        load_volume(tmp_path / "subject-1-T1.hdr")


def test_missing_file(tmp_path):
    with raises(tmp_path / "nope.nii.gz", "file not found"):
        load_volume(tmp_path / "nope.nii.gz")


def test_truncated_gzip_fails_at_load(tmp_path):
    path = write(tmp_path / "cut.nii.gz", vol((48, 48, 48)))
    raw = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(raw[: len(raw) // 2])
    # the header still parses (nib.load succeeds); only reading the data fails
    nib.load(path)
    with raises(path, "unreadable or truncated"):
        load_volume(path)


def test_corrupt_gzip_stream(tmp_path):
    path = write(tmp_path / "corrupt.nii.gz", vol((32, 32, 32)))
    raw = bytearray(open(path, "rb").read())
    raw[len(raw) // 2: len(raw) // 2 + 200] = b"\x00" * 200
    open(path, "wb").write(bytes(raw))
    with pytest.raises(InputError, match=re.escape(path)):
        load_volume(path)


@pytest.mark.parametrize("name,content", [
    ("notes.nii", b"this is a text file, not an image\n" * 20),
    ("notes.nii.gz", gzip.compress(b"hello " * 100)),
    ("table.csv", b"a,b\n1,2\n"),
])
def test_not_an_image(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with raises(path, "not a readable NIfTI/Analyze image"):
        load_volume(path)


def test_directory_is_not_an_image(tmp_path):
    with raises(tmp_path, "is a directory"):
        load_volume(tmp_path)


@pytest.mark.parametrize("shape", [(16, 16), (16, 16, 1)])
def test_2d(tmp_path, shape):
    path = write(tmp_path / "flat.nii.gz", vol(shape))
    with raises(path, r"2D image \(shape"):
        load_volume(path)


def test_4d_with_several_volumes(tmp_path):
    path = write(tmp_path / "dwi.nii.gz", vol((8, 8, 8, 3)))
    with raises(path, "4D image with 3 volumes"):
        load_volume(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf(tmp_path, bad):
    data = vol()
    data[3, 4, 5] = bad
    data[7, 1, 2] = bad
    path = write(tmp_path / "nan.nii.gz", data)
    with raises(path, r"2 NaN/Inf voxel\(s\), first at voxel \(3, 4, 5\)"):
        load_volume(path)


def test_all_zero(tmp_path):
    path = write(tmp_path / "zero.nii.gz", np.zeros((8, 8, 8), np.float32))
    with raises(path, "all voxels are zero"):
        load_volume(path)


@pytest.mark.parametrize("value, dtype", [(7.0, np.float32), (-3, np.int16), (1, np.uint8)])
def test_constant_image_refused(tmp_path, value, dtype):
    """Issue 16: a constant non-zero image is refused like the all-zero one, in one line
    naming the file (seen failing -- loaded without error -- before the check existed)."""
    path = write(tmp_path / "const.nii.gz", np.full((8, 8, 8), value, dtype))
    with raises(path, f"all voxels have the same value {value:g} ") as e:
        load_volume(path)
    assert "\n" not in str(e.value)


def test_nearly_constant_image_and_constant_label_map_load(tmp_path):
    data = np.full((8, 8, 8), 7.0, np.float32)
    data[3, 4, 5] = 7.5  # one voxel differs: an image, however poor
    assert np.asarray(load_volume(write(tmp_path / "near.nii.gz", data)).dataobj).max() == 7.5
    ones = write(tmp_path / "mask.nii.gz", np.ones((8, 8, 8), np.uint8))
    assert np.asarray(load_volume(ones, kind="label").dataobj).min() == 1  # labels may be


def test_label_non_integer_float(tmp_path):
    data = np.zeros((8, 8, 8), np.float32)
    data[2:5, 2:5, 2:5] = 2
    data[1, 1, 1] = 0.5
    path = write(tmp_path / "prob.nii.gz", data)
    with raises(path, r"non-integer values \(1 voxels, e.g. 0.5 at voxel \(1, 1, 1\)\)"):
        load_volume(path, kind="label")
    data[1, 1, 1] = 1.0  # whole-number floats are fine and come back as int32
    lab = load_volume(write(path, data), kind="label", scheme="tissue4")
    assert np.asarray(lab.dataobj).dtype == np.int32
    assert set(np.unique(np.asarray(lab.dataobj))) == {0, 1, 2}


def test_label_outside_scheme(tmp_path):
    data = np.zeros((8, 8, 8), np.int16)
    data[1:4, 1:4, 1:4] = 3
    data[5, 5, 5] = 7
    data[6, 6, 6] = 12
    path = write(tmp_path / "seg.nii.gz", data)
    with raises(path, r"label values 7, 12 are not in scheme 'tissue4' \(allowed: 0, 1, 2, 3\)"):
        load_volume(path, kind="label", scheme="tissue4")
    # iSeg raw coding: 10/150/250 are valid there, 3 is not
    data2 = np.zeros((8, 8, 8), np.int16)
    data2[:2], data2[2:4], data2[4:6] = 10, 150, 250
    load_volume(write(tmp_path / "iseg.nii.gz", data2), kind="label", scheme="iseg2017")
    data2[0, 0, 0] = 3
    p2 = write(tmp_path / "iseg_bad.nii.gz", data2)
    with raises(p2, "label values 3 are not in scheme 'iseg2017'"):
        load_volume(p2, kind="label", scheme="iseg2017")


def test_bad_kind(tmp_path):
    with pytest.raises(InputError, match="kind"):
        load_volume(write(tmp_path / "a.nii.gz", vol()), kind="mask")


def test_save_volume_atomic_and_round_trip(tmp_path):
    data = np.random.default_rng(0).integers(0, 4, (10, 11, 12))  # int64
    out = save_volume(data, tmp_path / "sub" / "lab.nii.gz", affine=AFF)
    img = nib.load(out)
    assert img.get_data_dtype() == np.int32
    np.testing.assert_array_equal(np.asarray(img.dataobj), data)
    assert np.array_equal(img.affine, AFF)
    assert sorted(os.listdir(tmp_path / "sub")) == ["lab.nii.gz"]  # no temporary left behind

    # Analyze/NIfTI pair: both files appear, affine kept, no temporaries
    save_volume(nib.Nifti1Image(data.astype(np.int16), AFF), tmp_path / "pair" / "seg.hdr")
    assert sorted(os.listdir(tmp_path / "pair")) == ["seg.hdr", "seg.img"]
    back = load_volume(tmp_path / "pair" / "seg.hdr", kind="label")
    np.testing.assert_array_equal(np.asarray(back.dataobj), data)
    assert np.array_equal(back.affine, AFF)


def test_save_volume_failure_leaves_nothing(tmp_path):
    target = tmp_path / "x.nii.gz"
    target.write_bytes(b"previous")
    with pytest.raises(Exception):
        save_volume(np.zeros((4, 4, 4), dtype=object), target, affine=np.eye(4))
    assert target.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == ["x.nii.gz"]
    with pytest.raises(InputError, match="needs an affine"):
        save_volume(np.zeros((4, 4, 4)), tmp_path / "y.nii.gz")


def test_check_same_grid():
    a = nib.Nifti1Image(vol(), AFF)
    check_same_grid(a, nib.Nifti1Image(vol(), AFF + 1e-4), "t1.nii.gz", "t2.nii.gz")  # float noise: fine
    with pytest.raises(InputError, match=r"t1.nii.gz: shape \(16, 16, 12\) differs from t2.nii.gz shape \(16, 16, 11\)"):
        check_same_grid(a, nib.Nifti1Image(vol((16, 16, 11)), AFF), "t1.nii.gz", "t2.nii.gz")
    shifted = AFF.copy()
    shifted[0, 3] += 0.5
    with pytest.raises(InputError, match=r"t1.nii.gz: affine differs from t2.nii.gz \(field-of-view corners up to 0.5 mm"):
        check_same_grid(a, nib.Nifti1Image(vol(), shifted), "t1.nii.gz", "t2.nii.gz")
    # a 1 degree rotation about the FOV centre moves far corners by ~ r * 0.0175 mm
    th = np.radians(1.0)
    rot = np.eye(4)
    rot[:2, :2] = [[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]]
    with pytest.raises(InputError, match="affine differs"):
        check_same_grid(a, nib.Nifti1Image(vol(), rot @ AFF), "t1.nii.gz", "t2.nii.gz")
