"""conform / deconform / check_conform: geometry checked against shapes drawn in world (mm) space.

Each input grid is built here by hand (RAS, LPS, LIA, oblique, 0.35x0.35x2 mm). A sphere is
defined in world coordinates and rendered on the input grid; after conform it must sit where
the same world sphere rendered directly on the conformed grid sits, and after deconform back
on the input grid. A linear intensity ramp f(x) = g.x + b (world mm) checks linear resampling:
interpolation of a linear function is exact, so the conformed values must equal f evaluated at
the conformed voxel centres.
"""

import json

import nibabel as nib
import numpy as np
import pytest

from tfneuro.errors import InputError
from tfneuro.io import ConformRecord, check_conform, conform, deconform, load_volume, save_volume


def rotation(ax_deg, ay_deg, az_deg):
    ax, ay, az = np.radians([ax_deg, ay_deg, az_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def make_affine(direction, zooms, center_world, shape):
    """Affine with the given direction cosines (columns) and zooms, FOV centred at center_world."""
    a = np.eye(4)
    a[:3, :3] = np.asarray(direction, float) @ np.diag(zooms)
    a[:3, 3] = np.asarray(center_world) - a[:3, :3] @ ((np.asarray(shape) - 1) / 2)
    return a


def world_coords(shape, affine):
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).reshape(-1, 3)
    return (ijk @ affine[:3, :3].T + affine[:3, 3]).reshape(tuple(shape) + (3,))


def sphere(shape, affine, center, radius):
    x = world_coords(shape, affine)
    return (np.linalg.norm(x - np.asarray(center), axis=-1) <= radius).astype(np.uint8)


def dice(a, b):
    a, b = a.astype(bool), b.astype(bool)
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


CENTER = np.array([3.0, -7.0, 11.0])  # FOV centre in world mm
SPHERE_C = CENTER + np.array([4.0, -3.0, 2.0])  # sphere off-centre so flips would show
GRADIENT = np.array([0.7, -1.3, 2.1])

CASES = {
    # name: (direction cosines, zooms, shape, spacing)
    "RAS_1mm": (np.eye(3), (1.0, 1.0, 1.0), (40, 44, 36), 1.0),
    "LPS_1mm": (np.diag([-1.0, -1.0, 1.0]), (1.0, 1.0, 1.0), (40, 44, 36), 1.0),
    "LIA_1mm": (np.array([[-1.0, 0, 0], [0, 0, 1], [0, -1, 0]]), (1.0, 1.0, 1.0), (40, 36, 44), 1.0),
    "oblique_1.5mm": (rotation(12, -8, 25), (1.5, 1.5, 1.5), (30, 30, 28), 1.0),
    "aniso_0.35x0.35x2": (np.eye(3), (0.35, 0.35, 2.0), (112, 112, 18), 1.0),
    "LPS_aniso_oblique": (np.diag([-1.0, -1.0, 1.0]) @ rotation(0, 15, 0), (0.8, 0.8, 2.5), (48, 48, 16), 1.0),
}


@pytest.mark.parametrize("name", list(CASES))
def test_world_sphere_round_trip(name):
    direction, zooms, shape, spacing = CASES[name]
    a = make_affine(direction, zooms, CENTER, shape)
    lab = sphere(shape, a, SPHERE_C, 9.0)
    assert lab.sum() > 100
    img = nib.Nifti1Image(lab, a)

    conf, rec = conform(img, spacing=spacing, order=0)
    b = conf.affine
    # conformed grid: RAS, isotropic spacing, no rotation (checked by hand, not by the code)
    np.testing.assert_allclose(b[:3, :3], np.eye(3) * spacing, atol=1e-9)
    assert all(s % 16 == 0 for s in conf.shape)
    assert tuple(conf.shape) == tuple(rec.conformed_shape)
    # the conformed FOV contains every input FOV corner
    corners = np.array([[i, j, k] for i in (-0.5, shape[0] - 0.5) for j in (-0.5, shape[1] - 0.5)
                        for k in (-0.5, shape[2] - 0.5)])
    vox = nib.affines.apply_affine(np.linalg.inv(b), nib.affines.apply_affine(a, corners))
    assert (vox >= -0.5 - 1e-6).all() and (vox <= np.array(conf.shape) - 0.5 + 1e-6).all()

    # same anatomy in the conformed grid: compare with the world sphere rendered there
    ref_conf = sphere(conf.shape, b, SPHERE_C, 9.0)
    assert dice(np.asarray(conf.dataobj), ref_conf) > 0.9

    # deconform: exactly the original grid, same anatomy
    back = deconform(conf, rec, order=0)
    assert back.shape == tuple(shape)
    assert np.array_equal(back.affine, a)
    assert dice(np.asarray(back.dataobj), lab) > 0.9
    # a model's output made on the conformed grid (the world sphere) lands on the input sphere
    assert dice(np.asarray(deconform(ref_conf, rec).dataobj), lab) > 0.9

    # the record survives JSON and gives the same result
    rec2 = ConformRecord.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert np.array_equal(np.asarray(deconform(conf, rec2).dataobj), np.asarray(back.dataobj))
    assert np.array_equal(deconform(conf, rec2).affine, a)


@pytest.mark.parametrize("name", ["RAS_1mm", "LPS_1mm", "LIA_1mm"])
def test_label_round_trip_exact_on_aligned_grids(name):
    direction, zooms, shape, _ = CASES[name]
    a = make_affine(direction, zooms, CENTER, shape)
    lab = np.random.default_rng(1).integers(0, 9, shape).astype(np.int16)
    conf, rec = conform(nib.Nifti1Image(lab, a), order=0)
    back = deconform(conf, rec, order=0)
    assert np.array_equal(np.asarray(back.dataobj), lab)  # every voxel, not just the sphere
    assert np.asarray(back.dataobj).dtype == np.int16
    # padding is zeros and the label count is preserved
    assert np.bincount(np.asarray(conf.dataobj).ravel())[1:].sum() == np.count_nonzero(lab)


@pytest.mark.parametrize("name", ["RAS_1mm", "LIA_1mm", "oblique_1.5mm", "LPS_aniso_oblique"])
def test_linear_ramp_resampled_exactly(name):
    direction, zooms, shape, spacing = CASES[name]
    a = make_affine(direction, zooms, CENTER, shape)
    f = world_coords(shape, a) @ GRADIENT + 5.0
    conf, rec = conform(nib.Nifti1Image(f.astype(np.float32), a), spacing=spacing, order=1, antialias=False)
    expect = world_coords(conf.shape, conf.affine) @ GRADIENT + 5.0
    # conformed voxels whose world point is at least one input voxel inside the input grid
    vox = nib.affines.apply_affine(np.linalg.inv(a), world_coords(conf.shape, conf.affine).reshape(-1, 3))
    inner = ((vox >= 1) & (vox <= np.array(shape) - 2)).all(1).reshape(conf.shape)
    assert inner.sum() > 1000
    np.testing.assert_allclose(np.asarray(conf.dataobj)[inner], expect[inner], atol=1e-3)
    # outside the input field of view the conformed volume is zero
    outside = ((vox < -0.5 - 1e-3) | (vox > np.array(shape) - 0.5 + 1e-3)).any(1).reshape(conf.shape)
    assert outside.any() == (name != "RAS_1mm" or any(rec.pad_before) or any(rec.pad_after))
    assert np.all(np.asarray(conf.dataobj)[outside] == 0)


def test_deconform_probabilities_4d_linear():
    direction, zooms, shape, _ = CASES["oblique_1.5mm"]
    a = make_affine(direction, zooms, CENTER, shape)
    conf, rec = conform(nib.Nifti1Image(np.ones(shape, np.float32), a), order=1)
    # per-class "probabilities" on the conformed grid: smooth functions of world position
    xw = world_coords(conf.shape, conf.affine)
    p1 = 1 / (1 + np.exp(-(xw - CENTER) @ np.array([0.1, 0.05, -0.08])))
    probs = np.stack([1 - p1, p1], -1).astype(np.float32)
    back = deconform(probs, rec, order=1)
    assert back.shape == tuple(shape) + (2,)
    assert np.array_equal(back.affine, a)
    out = np.asarray(back.dataobj)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-5)  # linear interpolation keeps the sum
    expect = 1 / (1 + np.exp(-(world_coords(shape, a) - CENTER) @ np.array([0.1, 0.05, -0.08])))
    np.testing.assert_allclose(out[..., 1], expect, atol=5e-3)


def test_target_orientation_lia():
    direction, zooms, shape, _ = CASES["RAS_1mm"]
    a = make_affine(direction, zooms, CENTER, shape)
    lab = sphere(shape, a, SPHERE_C, 9.0)
    conf, rec = conform(nib.Nifti1Image(lab, a), orientation="LIA", order=0)
    assert nib.aff2axcodes(conf.affine) == ("L", "I", "A")
    assert conf.shape == (48, 48, 48)  # (x, z, y) extents 40, 36, 44 padded to 16
    assert dice(np.asarray(conf.dataobj), sphere(conf.shape, conf.affine, SPHERE_C, 9.0)) == 1.0
    assert np.array_equal(np.asarray(deconform(conf, rec).dataobj), lab)


def test_already_conform_is_identity_and_check_conform_reports():
    a = make_affine(np.eye(3), (1, 1, 1), CENTER, (32, 48, 16))
    data = np.random.default_rng(0).random((32, 48, 16)).astype(np.float32)
    report = check_conform(nib.Nifti1Image(data, a))
    assert report["is_conform"] and report["changes"] == []
    conf, rec = conform(nib.Nifti1Image(data, a))
    assert rec.identity and np.array_equal(conf.affine, a)
    assert np.array_equal(np.asarray(conf.dataobj), data)

    lps = make_affine(np.diag([-1.0, -1, 1]), (0.5, 0.5, 3.0), CENTER, (40, 40, 10))
    rep = check_conform(nib.Nifti1Image(np.ones((40, 40, 10), np.float32), lps), spacing=1.0)
    assert not rep["is_conform"]
    assert rep["orientation"] == ("LPS", "RAS")
    text = " ".join(rep["changes"])
    assert "reorient LPS -> RAS" in text and "0.5x0.5x3" in text and "pad" in text
    assert rep["shape"] == ((40, 40, 10), (32, 32, 32))  # 20x20x30 mm -> padded to 16
    obl = make_affine(rotation(0, 0, 30), (1, 1, 1), CENTER, (20, 20, 20))
    rep = check_conform(nib.Nifti1Image(np.ones((20, 20, 20), np.float32), obl))
    assert rep["oblique"] and abs(rep["obliquity_deg"] - 30) < 1e-6


def test_bad_parameters():
    img = nib.Nifti1Image(np.ones((8, 8, 8), np.float32), np.eye(4))
    with pytest.raises(InputError, match="orientation.*'RAX'"):
        conform(img, orientation="RAX")
    with pytest.raises(InputError, match="spacing"):
        conform(img, spacing=0)
    conf, rec = conform(img)
    with pytest.raises(InputError, match="does not match the conformed shape"):
        deconform(np.zeros((5, 5, 5)), rec)


def test_icbm152_at_2x2x3mm_round_trip(tmp_path):
    """The issue's 'done when': a real scan with 2x2x3 mm voxels goes through conform and back
    with its shape and affine unchanged (ICBM152 2009 template shipped with nilearn)."""
    from nilearn.datasets import load_mni152_template
    from nibabel.processing import resample_to_output

    t1 = load_mni152_template(resolution=2)
    src = resample_to_output(nib.Nifti1Image(np.asarray(t1.dataobj, np.float32), t1.affine),
                             voxel_sizes=(2.0, 2.0, 3.0), order=1)
    path = tmp_path / "icbm_2x2x3.nii.gz"
    save_volume(src, path)
    img = load_volume(path)
    assert img.header.get_zooms()[:3] == pytest.approx((2.0, 2.0, 3.0))
    conf, rec = conform(img, spacing=1.0)
    assert all(s % 16 == 0 for s in conf.shape)
    back = deconform(conf, rec, order=1)
    assert back.shape == img.shape
    assert np.array_equal(back.affine, img.affine)
    out = tmp_path / "back.nii.gz"
    save_volume(back, out)
    reread = nib.load(out)
    assert reread.shape == nib.load(path).shape
    assert np.array_equal(reread.affine, nib.load(path).affine)
    # the anatomy survives: intensities correlate strongly with the original
    x, y = np.asarray(img.dataobj).ravel(), np.asarray(back.dataobj).ravel()
    assert np.corrcoef(x, y)[0, 1] > 0.97
    # a brain mask (label, nearest neighbour) comes back nearly unchanged
    mask = (np.asarray(img.dataobj) > 0.2 * np.asarray(img.dataobj).max()).astype(np.uint8)
    cm, rm = conform(nib.Nifti1Image(mask, img.affine), order=0)
    assert dice(np.asarray(deconform(cm, rm).dataobj), mask) > 0.98
