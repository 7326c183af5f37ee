"""Augmentation stages keep image, label and weights aligned; seeded reproducibility."""

import numpy as np
import pytest

from tfneuro.data import augment as A
from tfneuro.errors import InputError


def _sample(shape=(24, 20, 16), seed=0):
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.int32)
    lab[4:18, 3:15, 2:12] = 2
    lab[8:14, 6:12, 5:9] = 3
    lab[10:12, 8:10, 6:8] = 1
    img = np.stack([lab.astype(np.float32), rng.normal(size=shape).astype(np.float32)], -1)
    w = (lab > 0).astype(np.float32) * 2.0
    return img, lab, w


def test_flip_twice_is_identity_and_aligned():
    img, lab, w = _sample()
    flip = A.RandomFlip(axes=(0, 1, 2), prob=1.0)
    i1, l1, w1 = flip(img, lab, w, np.random.default_rng(0))
    np.testing.assert_array_equal(l1, lab[::-1, ::-1, ::-1])
    np.testing.assert_array_equal(i1[..., 0], l1.astype(np.float32))
    np.testing.assert_array_equal(w1, (l1 > 0) * 2.0)
    i2, l2, w2 = flip(i1, l1, w1, np.random.default_rng(1))
    np.testing.assert_array_equal(i2, img)
    np.testing.assert_array_equal(l2, lab)
    np.testing.assert_array_equal(w2, w)


def test_random_crop_aligned_and_pads():
    img, lab, w = _sample()
    i, l, ww = A.RandomCrop((10, 10, 10))(img, lab, w, np.random.default_rng(3))
    assert i.shape == (10, 10, 10, 2) and l.shape == (10, 10, 10)
    np.testing.assert_array_equal(i[..., 0], l.astype(np.float32))
    np.testing.assert_array_equal(ww, (l > 0) * 2.0)
    i, l, ww = A.RandomCrop(32)(img, lab, w, np.random.default_rng(3))
    assert l.shape == (32, 32, 32) and l.sum() == lab.sum()


@pytest.mark.parametrize("stage", [A.ElasticDeform(magnitude=3.0, control_spacing=6, prob=1),
                                   A.RotateScale(max_degrees=20, scale=(0.8, 1.2), prob=1)])
def test_spatial_warps_keep_valid_labels_and_alignment(stage):
    img, lab, w = _sample()
    i, l, ww = stage(img, lab, w, np.random.default_rng(4))
    assert l.shape == lab.shape and l.dtype == lab.dtype
    assert set(np.unique(l)) <= set(np.unique(lab))
    assert not np.array_equal(l, lab)                   # it did move something
    # The image channel that equals the label map moves with it (linear vs nearest: agree
    # away from the edges of regions).
    agree = np.mean(np.rint(i[..., 0]).astype(int) == l)
    assert agree > 0.9, agree
    np.testing.assert_allclose(ww[l == 0].mean(), 0.0, atol=0.35)


def test_elastic_2d_and_identity_at_zero_magnitude():
    img, lab, w = _sample()
    i, l, ww = A.ElasticDeform(magnitude=0.0, prob=1)(img, lab, w, np.random.default_rng(0))
    np.testing.assert_array_equal(l, lab)
    np.testing.assert_allclose(i, img, atol=1e-5)
    i2, l2, _ = A.ElasticDeform(magnitude=2.0, control_spacing=5, prob=1)(
        img[:, :, 5], lab[:, :, 5], None, np.random.default_rng(0))
    assert l2.shape == lab[:, :, 5].shape and set(np.unique(l2)) <= {0, 1, 2, 3}


def test_intensity_stages_leave_labels_untouched():
    img, lab, w = _sample()
    comp = A.Compose([A.GaussianNoise(std=(0.1, 0.2), prob=1), A.GaussianSmooth(prob=1),
                      A.IntensityScaleShift(scale=(2, 2), shift=(1, 1), prob=1)])
    i, l, ww = comp(img, lab, w, seed=0)
    assert l is lab and ww is w and i.dtype == np.float32
    assert not np.allclose(i, img)
    i, _, _ = A.IntensityScaleShift(scale=(2, 2), shift=(1, 1), prob=1)(img, lab, w)
    np.testing.assert_allclose(i, img * 2 + 1, rtol=1e-6)


def test_probability_zero_never_fires_and_seed_reproducible():
    img, lab, w = _sample()
    i, l, _ = A.RotateScale(prob=0.0)(img, lab, w, np.random.default_rng(0))
    assert i is img and l is lab
    aug = A.default_augmentation()
    a = aug(img, lab, w, seed=11)
    b = aug(img, lab, w, seed=11)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    outs = [aug(img, lab, w, seed=s)[0] for s in range(5)]
    assert any(not np.array_equal(outs[0], o) for o in outs[1:])


def test_bad_parameters():
    with pytest.raises(InputError, match="prob"):
        A.GaussianNoise(prob=1.5)
    with pytest.raises(InputError, match="scale"):
        A.RotateScale(scale=(1.2, 0.8))
