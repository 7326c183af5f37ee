"""Automatic auxiliary labels (tfneuro.evaluation.auxiliary): the atlas prior, EM with it, and
k-means, against values worked out by hand or by a second implementation here."""

import numpy as np
import pytest
from scipy.stats import norm

from tfneuro.errors import InputError
from tfneuro.evaluation import auxiliary as aux


def _box_mask(shape, lo, hi):
    m = np.zeros(shape, bool)
    m[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return m


def test_atlas_prior_one_atlas_same_box_is_floored_one_hot():
    """One atlas on the target's own box, no smoothing: prior_k = (onehot_k + f) / (1 + 3 f)
    inside, by hand. Seen failing when the floor was added after normalising (sum 1 + 3f)."""
    shape = (10, 12, 8)
    mask = _box_mask(shape, (2, 2, 2), (8, 10, 6))
    lab = np.zeros(shape, np.int32)
    lab[mask] = 1 + (np.indices(shape)[0][mask] % 3)     # classes 1, 2, 3 in x-stripes
    p = aux.atlas_prior([lab], [mask], mask, 4, sigma=0, floor=0.1)
    assert p.shape == (3,) + shape
    np.testing.assert_allclose(p.sum(axis=0), 1.0, atol=1e-6)
    for k in (1, 2, 3):
        want = np.where(lab == k, 1.1, 0.1) / 1.3
        np.testing.assert_allclose(p[k - 1][mask], want[mask], atol=1e-6)


def test_atlas_prior_follows_the_box():
    """An atlas whose brain box is twice as large and shifted: its upper half (class 2) lands
    on the target's upper half, by hand. Seen failing with the alignment's matrix inverted
    (the target box mapped onto the atlas's instead of the reverse)."""
    a_mask = _box_mask((30, 10, 10), (4, 1, 1), (24, 9, 9))    # 20 voxels along x
    a_lab = np.zeros(a_mask.shape, np.int32)
    a_lab[4:14][a_mask[4:14]] = 1
    a_lab[14:24][a_mask[14:24]] = 2
    t_mask = _box_mask((16, 10, 10), (3, 1, 1), (13, 9, 9))    # 10 voxels along x
    p = aux.atlas_prior([a_lab], [a_mask], t_mask, 3, sigma=0, floor=1e-3)
    win = p.argmax(axis=0) + 1
    assert (win[3:8][t_mask[3:8]] == 1).all() and (win[8:13][t_mask[8:13]] == 2).all()


def _two_class_image(seed, flip=False):
    """1-D structure in 3D: class 1 left, class 2 right; N(0, 1) vs N(4, 1) (or swapped)."""
    rng = np.random.default_rng(seed)
    shape = (40, 20, 20)
    truth = np.where(np.indices(shape)[0] < 20, 1, 2)
    mu = {1: 4.0, 2: 0.0} if flip else {1: 0.0, 2: 4.0}
    img = np.where(truth == 1, mu[1], mu[2]) + rng.standard_normal(shape)
    return img.astype(np.float32), truth, mu


def test_em_labels_match_the_bayes_rule_with_the_true_gaussians():
    """EM started from a 0.7/0.3 prior that is right everywhere recovers the Bayes rule with
    the true means and unit variances, worked out here: class 1 where
    log(p1/p2) + log N(x; mu1, 1) - log N(x; mu2, 1) > 0. Agreement >= 99 %, and the
    error rate is about norm.cdf(-(2 + ln(7/3) / 4)) = 1.34 %. Seen failing: with the prior
    left out of the E step the error rate was 2.24 % (the equal-prior rate norm.cdf(-2) =
    2.28 %); with classes numbered from 0 the agreement was 0.0."""
    img, truth, mu = _two_class_image(0)
    mask = np.ones(img.shape, bool)
    prior = np.stack([np.where(truth == 1, 0.7, 0.3), np.where(truth == 2, 0.7, 0.3)])
    lab = aux.em_labels(img, mask, prior)
    z = (img - img.mean()) / img.std()  # EM works on z-scores; the rule is scale-free
    z1, z2 = (np.array([mu[1], mu[2]]) - img.mean()) / img.std()
    s = 1.0 / img.std()
    bayes = np.where(np.log(prior[0] / prior[1]) + norm.logpdf(z, z1, s) - norm.logpdf(z, z2, s)
                     > 0, 1, 2)
    assert (lab == bayes).mean() >= 0.99
    err = (lab != truth).mean()
    assert err == pytest.approx(norm.cdf(-(2 + np.log(7 / 3) / 4)), abs=0.006)


def test_em_labels_follow_an_inverted_contrast():
    """The prior says nothing (0.5/0.5) in the middle half and is 0.7/0.3 right outside it;
    the intensities are swapped between the classes in the second image (the T1 contrast
    reversal before 6 months). EM fits the means per image from the prior's
    responsibilities, so both images come out >= 97 % right, the uninformative band too.
    Seen failing: (a) with the E step skipped (labels = the prior's argmax: 0.75, the band
    at chance); (b) with the class means sorted by intensity after each M step (a fixed
    "class 1 is darker" rule, as an intensity classifier fitted on older scans has): the
    swapped image came out 0.51 right."""
    for flip in (False, True):
        img, truth, _ = _two_class_image(1, flip)
        x = np.indices(img.shape)[0]
        band = (x >= 10) & (x < 30)
        p1 = np.where(band, 0.5, np.where(truth == 1, 0.7, 0.3))
        lab = aux.em_labels(img, np.ones(img.shape, bool), np.stack([p1, 1 - p1]))
        assert (lab == truth).mean() >= 0.97
        assert (lab[band] == truth[band]).mean() >= 0.97


def test_em_labels_zero_outside_the_mask_and_grid_errors():
    img, truth, _ = _two_class_image(2)
    mask = np.zeros(img.shape, bool)
    mask[5:35] = True
    prior = np.stack([np.where(truth == 1, 0.7, 0.3), np.where(truth == 2, 0.7, 0.3)])
    lab = aux.em_labels(img, mask, prior)
    assert not lab[~mask].any() and set(np.unique(lab[mask])) == {1, 2}
    with pytest.raises(InputError, match="grids differ"):
        aux.em_labels(img, mask, prior[:, :-1])
    with pytest.raises(InputError, match="atlas"):
        aux.atlas_prior([], [], mask, 3)


def test_kmeans_labels_ordered_by_intensity():
    """Three plateaus 0, 5, 10 (little noise) -> clusters 1, 2, 3 exactly, 0 outside the mask.
    Seen failing with the cluster ranks not applied (labels in k-means' own order)."""
    rng = np.random.default_rng(0)
    shape = (30, 10, 10)
    level = np.repeat([10.0, 0.0, 5.0], 10)[:, None, None] * np.ones(shape)
    img = level + 0.1 * rng.standard_normal(shape)
    mask = np.ones(shape, bool)
    mask[:, 0] = False
    lab = aux.kmeans_labels(img, mask, seed=0)
    want = np.select([level == 0, level == 5, level == 10], [1, 2, 3])
    np.testing.assert_array_equal(lab[mask], want[mask])
    assert not lab[~mask].any()


def test_aux_label_names():
    assert aux.aux_label_names("kmeans") == ["background", "aux_dark", "aux_mid", "aux_bright"]
    assert aux.aux_label_names("em_atlas", "tissue4") == ["background", "CSF", "GM", "WM"]
    with pytest.raises(InputError, match="--aux_labels"):
        aux.aux_label_names("freesurfer")
