"""Baselines (tfneuro.evaluation.baselines) on hand-made cases whose answers are worked out here.

Every test says in its docstring how it was seen to fail once with the code deliberately
broken (then restored).
"""

import math
import subprocess
import sys

import numpy as np
import pytest

from tfneuro.errors import InputError
from tfneuro.evaluation import baselines as B


def _column(values):
    """A [n, 1, 1] volume holding ``values`` (one voxel each)."""
    return np.asarray(values, np.float32).reshape(-1, 1, 1)


def _fit_1d(c0, c1, **kw):
    x = _column(list(c0) + list(c1))
    y = _column([0] * len(c0) + [1] * len(c1)).astype(np.int32)
    return B.fit_intensity_baseline([x], [y], normalize=None, opening=0,
                                    largest_component=False, reg=0.0, **kw)


@pytest.mark.parametrize("model", ["qda", "gnb"])
def test_equal_variance_boundary_is_the_midpoint(model):
    """Class 0 = {-1, +1} (mean 0, var 1), class 1 = {3, 5} (mean 4, var 1), equal priors:
    by symmetry the decision boundary is x = 2.

    Seen failing: with ``means`` computed as ``total / (count + 1)`` the fitted class-1 mean
    was 3.96. (With the log prior dropped it still passed -- equal priors -- hence the
    unequal-prior test below.)
    """
    m = _fit_1d([-1, 1] * 50, [3, 5] * 50, model=model)
    np.testing.assert_allclose(m.means.ravel(), [0.0, 4.0])
    np.testing.assert_allclose(m.covariances.ravel(), [1.0, 1.0])
    pred = m.predict(_column([-3.0, 1.9, 2.1, 7.0]), postprocess=False).ravel()
    assert pred.tolist() == [0, 0, 1, 1]


def test_unequal_variance_quadratic_boundaries_by_hand():
    """Class 0 = {-1, 1} (N(0, 1)), class 1 = {2, 6} (N(4, 4)), equal priors. Equal
    densities: x^2 - (x - 4)^2 / 4 - ln 4 = 0, i.e. 3x^2 + 8x - 16 - 4 ln 4 = 0, with roots
    (-8 +- sqrt(64 + 12 (16 + 4 ln 4))) / 6 = 1.6599 and -4.3266: class 0 between them, the
    wider class 1 in both tails.

    Seen failing: with the log-determinant term removed from ``log_posterior`` the
    boundaries moved (x = lo + 0.02 and x = hi - 0.02 were classed 1).
    """
    m = _fit_1d([-1, 1] * 40, [2, 6] * 40)
    disc = math.sqrt(64 + 12 * (16 + 4 * math.log(4)))
    hi, lo = (-8 + disc) / 6, (-8 - disc) / 6
    assert hi == pytest.approx(1.6599, abs=1e-4) and lo == pytest.approx(-4.3266, abs=1e-4)
    x = [lo - 0.02, lo + 0.02, 0.0, hi - 0.02, hi + 0.02]
    assert m.predict(_column(x), postprocess=False).ravel().tolist() == [1, 0, 0, 0, 1]
    # posteriors sum to one and are 1/2 at the boundary
    p = m.predict_proba(_column([hi]))
    np.testing.assert_allclose(p.reshape(-1), [0.5, 0.5], atol=1e-6)


def test_unequal_priors_shift_the_boundary_by_hand():
    """Class 0: 300 voxels at {-1, 1}; class 1: 100 voxels at {3, 5}: priors 3/4 and 1/4,
    equal variances 1. Boundary: x^2 / 2 - ln(3/4) = (x - 4)^2 / 2 - ln(1/4), i.e.
    x = 2 + ln(3) / 4 = 2.2747.

    Seen failing: with ``np.log(self.priors[k])`` removed, 2.25 was classed 1.
    """
    m = _fit_1d([-1, 1] * 150, [3, 5] * 50)
    b = 2 + math.log(3) / 4
    pred = m.predict(_column([b - 0.02, b + 0.02]), postprocess=False).ravel()
    assert pred.tolist() == [0, 1]


def test_second_channel_is_used_and_full_covariance_differs_from_naive_bayes():
    """Two channels. Class 0 points (1, 1), (-1, -1) (correlation +1), class 1 points
    (1, -1), (-1, 1) (correlation -1): same means (0, 0) and same per-channel variances, so
    a diagonal model cannot tell them apart, while QDA (full covariance) can: a test point
    (0.9, 0.9) lies on class 0's axis.

    Seen failing: with ``covs`` replaced by their diagonals for "qda" too, (0.9, 0.9) and
    (0.9, -0.9) got the same class.
    """
    pts0, pts1 = [(1, 1), (-1, -1)] * 30, [(1, -1), (-1, 1)] * 30
    x = np.asarray(pts0 + pts1, np.float32).reshape(-1, 1, 1, 2)
    y = np.asarray([0] * 60 + [1] * 60, np.int32).reshape(-1, 1, 1)
    kw = dict(normalize=None, opening=0, largest_component=False, reg=1e-3)
    qda = B.fit_intensity_baseline([x], [y], model="qda", **kw)
    gnb = B.fit_intensity_baseline([x], [y], model="gnb", **kw)
    test = np.asarray([(0.9, 0.9), (0.9, -0.9)], np.float32).reshape(-1, 1, 1, 2)
    assert qda.predict(test, postprocess=False).ravel().tolist() == [0, 1]
    g = gnb.predict_proba(test).reshape(2, 2)
    np.testing.assert_allclose(g, 0.5, atol=1e-6)     # indistinguishable for naive Bayes


def test_zscore_makes_the_fit_invariant_to_each_subjects_gain():
    """Training subjects at gains 1 and 10, test subject at gain 100: after the per-subject
    z-score the same voxels get the same class.

    Seen failing: with the z-score skipped in ``predict`` the whole class-1 half of the
    gain-100 test subject got class 0.
    """
    rng = np.random.default_rng(0)
    base = np.where(np.arange(1000) < 500, 0.0, 1.0) + rng.normal(0, 0.05, 1000)
    lab = (np.arange(1000) >= 500).astype(np.int32).reshape(10, 10, 10)
    vol = base.reshape(10, 10, 10).astype(np.float32) + 1.0
    m = B.fit_intensity_baseline([vol, 10 * vol], [lab, lab], opening=0,
                                 largest_component=False)
    np.testing.assert_array_equal(m.predict(100 * vol), lab)


def test_opening_and_largest_component_by_hand():
    """Classes by intensity: 0 dark, 1 bright. Test image: a bright 8^3 cube, a separate
    bright 3^3 cube and a lone bright voxel. Opening with the radius-1 diamond turns the 8^3
    cube into its 6^3 core plus the six face layers = 8^3 - 12 edges x 6 - 8 corners = 432
    voxels and the 3^3 cube into a 7-voxel diamond; the lone voxel vanishes; the largest
    component keeps the 432.

    Seen failing: with the ``largest_component_per_label`` call skipped, 439 voxels remained.
    """
    tr = np.zeros((6, 6, 6), np.float32)
    tr[:3] = 10.0
    lab = (tr > 0).astype(np.int32)
    m = B.fit_intensity_baseline([tr], [lab], normalize=None)
    img = np.zeros((30, 30, 30), np.float32)
    img[2:10, 2:10, 2:10] = 10.0
    img[20:23, 20:23, 20:23] = 10.0
    img[15, 27, 3] = 10.0
    raw = m.predict(img, postprocess=False)
    assert raw.sum() == 512 + 27 + 1
    out = m.predict(img)
    assert out.sum() == 432
    assert out[2:10, 2:10, 2:10].sum() == 432


def _box_subject(shape, lo, size):
    """Image: 100 inside the box, 0 outside; labels: box quadrants 1..4 split at the middle
    of x (+1) and z (+2)."""
    img = np.zeros(shape, np.float32)
    lab = np.zeros(shape, np.int32)
    sl = tuple(slice(a, a + s) for a, s in zip(lo, size))
    img[sl] = 100.0
    x = np.arange(size[0])[:, None, None] >= size[0] // 2
    z = np.arange(size[2])[None, None, :] >= size[2] // 2
    lab[sl] = 1 + x.astype(np.int32) + 2 * z.astype(np.int32) + np.zeros(size, np.int32)
    return img, lab


def test_atlas_lands_exactly_on_a_shifted_scaled_box():
    """Atlases: a 10x12x8 box at (5, 6, 7) in 40^3 and a 10x12x8 box at (20, 3, 1) in 32^3.
    Test: a 20x12x16 box at (4, 20, 10) in 48x40x30 (x and z scaled by 2, y shifted).
    The bounding-box alignment maps test voxel j of an axis to source coordinate
    lo_s - 1/2 + (j + 1/2) / 2 = lo_s + (j - 1/2) / 2 (never a .5 tie), so each quadrant of
    the atlas lands on the matching quadrant of the test box: the vote equals the test's
    own quadrant labels exactly.

    Seen failing: with the bounding box taken as voxel centres (``hi - lo`` instead of
    ``hi - lo + 1``) 864 voxels were wrong.
    """
    a1 = _box_subject((40, 40, 40), (5, 6, 7), (10, 12, 8))
    a2 = _box_subject((32, 32, 32), (20, 3, 1), (10, 12, 8))
    img, want = _box_subject((48, 40, 30), (4, 20, 10), (20, 12, 16))
    got = B.atlas_baseline([a1[0], a2[0]], [a1[1], a2[1]], img)
    np.testing.assert_array_equal(got, want)


def test_atlas_moments_exact_for_a_pure_shift_and_majority_vote():
    """``method="moments"``: a same-size box shifted by (3, -2, 5) has the same covariance,
    so the map is the pure shift and the labels land exactly. Majority vote: two atlases
    say quadrant layout A, one says all 4: the vote is A.

    Seen failing: with ``mu_s - mat @ mu_t`` replaced by ``mu_t - mat @ mu_s`` 1,920 voxels
    were wrong.
    """
    a1 = _box_subject((30, 30, 30), (5, 8, 6), (12, 10, 8))
    img, want = _box_subject((30, 30, 30), (8, 6, 11), (12, 10, 8))
    odd = (a1[0], np.where(a1[1] > 0, 4, 0).astype(np.int32))
    got = B.atlas_baseline([a1[0], odd[0], a1[0]], [a1[1], odd[1], a1[1]], img,
                           method="moments")
    np.testing.assert_array_equal(got, want)


def test_nearest_slice_by_hand():
    """10 axial slices whose labels equal their index + 1; slices 1, 4, 8 labelled.
    Nearest labelled slice for 0..9, ties (slice 6: 4 and 8 both 2 away) to the lower:
    1,1,1,4,4,4,4,8,8,8 -> labels 2,2,2,5,5,5,5,9,9,9.

    Seen failing: with ``<=`` changed to ``<`` in the tie rule slice 6 got label 9.
    """
    labels = np.broadcast_to(np.arange(1, 11), (3, 4, 10)).copy()
    flags = np.zeros(10, bool)
    flags[[1, 4, 8]] = True
    out = B.nearest_slice_baseline(labels, flags, axis=2)
    np.testing.assert_array_equal(out[0, 0], [2, 2, 2, 5, 5, 5, 5, 9, 9, 9])
    assert out.shape == labels.shape
    # the same from a full-shape budget-style weight mask, along axis 0
    lab0 = np.moveaxis(labels, 2, 0)
    w = np.zeros(lab0.shape, np.float32)
    w[[1, 4, 8]] = 1.0
    np.testing.assert_array_equal(B.nearest_slice_baseline(lab0, w, axis=0)[:, 0, 0],
                                  [2, 2, 2, 5, 5, 5, 5, 9, 9, 9])


def test_nearest_slice_with_a_real_label_budget():
    """The weights of ``tfneuro.data.budget.budget_weights`` are whole slices; every filled
    slice must equal the labelled slice nearest to it (checked by brute force here).

    Seen failing: with ``known[right]`` and ``known[left]`` swapped in the final choice,
    the brute-force comparison failed.
    """
    from tfneuro.data.budget import budget_weights

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, size=(9, 11, 13)).astype(np.int32)
    w = budget_weights(labels, "coronal", 1 / 3, seed=1)
    out = B.nearest_slice_baseline(labels, w, axis=1)
    known = [j for j in range(11) if w[:, j].all()]
    assert 0 < len(known) < 11
    for i in range(11):
        j = min(known, key=lambda k: (abs(k - i), k))
        np.testing.assert_array_equal(out[:, i], labels[:, j])


def test_bad_input_raises_input_error():
    """Each check names the argument. Seen failing: with the class-count check removed a
    one-class fit raised nothing."""
    img, lab = np.zeros((4, 4, 4), np.float32), np.zeros((4, 4, 4), np.int32)
    with pytest.raises(InputError, match="training labels"):
        B.fit_intensity_baseline([img + np.arange(4)], [lab])          # one class only
    with pytest.raises(InputError, match="training labels"):
        B.fit_intensity_baseline([img, img], [lab])                     # 2 images, 1 label map
    with pytest.raises(InputError, match="training labels 0"):
        B.fit_intensity_baseline([img], [lab[:3]])                      # shape mismatch
    with pytest.raises(InputError, match="model"):
        B.fit_intensity_baseline([img], [lab], model="svm")
    with pytest.raises(InputError, match="training image 1"):
        B.fit_intensity_baseline([img, np.zeros((4, 4, 4, 2))], [lab, lab])
    with pytest.raises(InputError, match="labelled_mask"):
        B.nearest_slice_baseline(lab, np.zeros(4, bool), axis=2)        # nothing labelled
    with pytest.raises(InputError, match="labelled_mask"):
        partial = np.zeros((4, 4, 4))
        partial[0, 0, 1] = 1
        B.nearest_slice_baseline(lab, partial, axis=2)
    with pytest.raises(InputError, match="axis"):
        B.nearest_slice_baseline(lab, np.ones(4, bool), axis=3)
    with pytest.raises(InputError, match="method"):
        B.atlas_baseline([img], [lab], img, method="affine")
    with pytest.raises(InputError, match="image"):
        B.foreground_mask(img)                                          # constant image


def test_imports_no_tensorflow():
    """The baselines are numpy/scipy/scikit-image only. Seen failing: with ``import keras``
    added to baselines.py, tensorflow appeared in sys.modules."""
    code = ("import sys, tfneuro.evaluation.baselines as b; "
            "b.fit_intensity_baseline; sys.exit('tensorflow' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_nearest_slice_fill_over_masks_along_two_axes_by_brute_force():
    """Two budget masks of one volume, along axes 2 and 0 (a "random" allocation's repeats):
    every voxel takes the label of the labelled slice nearest to it over both masks (distance
    along each mask's own axis; ties to the earlier mask), checked voxel by voxel here.

    Seen failing: with ``closer = d <= dist`` (ties to the later mask) a tied voxel took the
    second mask's label (``assert 3 == 4``).
    """
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 5, size=(6, 4, 7)).astype(np.int32)
    m1 = np.zeros(labels.shape, bool)
    m1[:, :, [1, 5]] = True          # axial slices 1 and 5
    m2 = np.zeros(labels.shape, bool)
    m2[[0, 4], :, :] = True          # sagittal slices 0 and 4
    filled, dist = B.nearest_slice_fill(labels, [m1.astype(np.float32), m2])
    for i, j, k in np.ndindex(labels.shape):
        d1, s1 = min((abs(k - s), s) for s in (1, 5))
        d2, s2 = min((abs(i - s), s) for s in (0, 4))
        want = labels[i, j, s1] if d1 <= d2 else labels[s2, j, k]
        assert filled[i, j, k] == want, (i, j, k)
        assert dist[i, j, k] == min(d1, d2)
    assert (dist[m1 | m2] == 0).all() and (filled[m1 | m2] == labels[m1 | m2]).all()
    # one mask: the same as nearest_slice_baseline along its axis
    np.testing.assert_array_equal(B.nearest_slice_fill(labels, [m1])[0],
                                  B.nearest_slice_baseline(labels, m1, axis=2))
    with pytest.raises(InputError, match="labelled_masks 0"):
        B.nearest_slice_fill(labels, [rng.random(labels.shape) > 0.5])   # not whole slices
    with pytest.raises(InputError, match="labelled_masks"):
        B.nearest_slice_fill(labels, [])


def test_tuned_threshold_rescues_a_rare_class_by_hand():
    """Background N(0, 1) (95 %) and a rare foreground N(1, 0.3) (5 %): the foreground's
    posterior never reaches 0.5 (at most ~0.23, worked out below), so the maximum-posterior
    rule predicts no foreground (Dice 0); tuning picks the threshold of the grid with the best
    training Dice, recomputed here from the Gaussian formula. Seen failing: with the
    threshold compared the wrong way round (posterior < t) tuning chose 0.3, not 0.15."""
    rng = np.random.default_rng(0)
    n = 40000
    y = (rng.random(n) < 0.05).astype(np.int32)
    x = np.where(y == 1, rng.normal(1.0, 0.3, n), rng.normal(0.0, 1.0, n))
    img, lab = _column(x), y.reshape(-1, 1, 1)
    fitted = B.fit_intensity_baseline([img], [lab], normalize=None, opening=0,
                                      largest_component=False, reg=0.0)
    assert not (fitted.predict(img) == 1).any()

    def gauss(v, m, s):
        return np.exp(-0.5 * ((v - m) / s) ** 2) / s

    m0, s0, m1, s1 = x[y == 0].mean(), x[y == 0].std(), x[y == 1].mean(), x[y == 1].std()
    p0, p1 = (y == 0).mean() * gauss(x, m0, s0), (y == 1).mean() * gauss(x, m1, s1)
    post = p1 / (p0 + p1)
    assert 0.15 < post.max() < 0.3

    def dice(pred):
        return 2.0 * np.sum(pred & (y == 1)) / (pred.sum() + (y == 1).sum())

    scores = {t: dice(post > t) for t in B.THRESHOLDS}
    best = max(B.THRESHOLDS, key=lambda t: (scores[t], -t))
    tuned = B.tune_intensity_baseline(fitted, [img], [lab], openings=(0,),
                                      largest_component=(False,))
    assert tuned.threshold == best and scores[best] > 0.3
    got = tuned.predict(img).ravel() == 1
    assert dice(got) == pytest.approx(scores[best], abs=1e-9)
    # more than two classes: no threshold, the maximum posterior stays
    lab3 = np.where(x > 2.5, 2, lab.ravel()).reshape(-1, 1, 1).astype(np.int32)
    fit3 = B.fit_intensity_baseline([img], [lab3], normalize=None, opening=0,
                                    largest_component=False)
    assert B.tune_intensity_baseline(fit3, [img], [lab3], openings=(0,),
                                     largest_component=(False,)).threshold is None
