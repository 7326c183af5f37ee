"""Tests for tfneuro.metrics: hand cases, brute-force references, empty structures, MeanDice."""

import itertools

import numpy as np
import pytest
import keras

from tfneuro.errors import InputError
from tfneuro.metrics import (
    MeanDice,
    confusion_matrix,
    dice_score,
    hausdorff_distance,
    mean_surface_distance,
    precision_score,
)


def squares():
    a = np.zeros((10, 10), int)
    a[2:6, 2:6] = 1
    b = np.zeros_like(a)
    b[3:7, 2:6] = 1  # shifted one row down
    return a, b


def test_overlap_hand():
    a, b = squares()
    # |A| = |B| = 16, |A∩B| = 12
    assert dice_score(a, b) == {1: pytest.approx(24 / 32)}
    assert precision_score(a, b) == {1: pytest.approx(12 / 16)}
    a2 = np.array([0, 1, 1, 2, 2, 2])
    b2 = np.array([0, 1, 2, 2, 2, 0])
    assert dice_score(a2, b2) == {1: pytest.approx(2 / 3), 2: pytest.approx(4 / 6)}
    # precision |A∩B|/|B| with B the prediction: label 1 -> 1/1, label 2 -> 2/3
    assert precision_score(a2, b2) == {1: 1.0, 2: pytest.approx(2 / 3)}
    np.testing.assert_array_equal(confusion_matrix(a2, b2), [[1, 0, 0], [0, 1, 1], [1, 0, 2]])


def test_overlap_empty():
    z = np.zeros((4, 4), int)
    one = z.copy()
    one[1, 1] = 1
    assert dice_score(z, z, labels=[1]) == {1: 1.0}
    assert precision_score(z, z, labels=[1]) == {1: 1.0}
    assert dice_score(one, z) == {1: 0.0} and dice_score(z, one) == {1: 0.0}
    assert precision_score(one, z) == {1: 0.0} and precision_score(z, one) == {1: 0.0}
    assert dice_score(z, z) == {}


def test_overlap_random_against_confusion_loops():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 4, (8, 9, 5)), rng.integers(0, 4, (8, 9, 5))
    m = np.zeros((4, 4), int)
    for i, j in zip(a.ravel(), b.ravel()):
        m[i, j] += 1
    np.testing.assert_array_equal(confusion_matrix(a, b), m)
    for lab, d in dice_score(a, b).items():
        assert d == pytest.approx(2 * m[lab, lab] / (m[lab].sum() + m[:, lab].sum()))
    for lab, p in precision_score(a, b).items():
        assert p == pytest.approx(m[lab, lab] / m[:, lab].sum())


def test_surface_hand_isotropic_and_anisotropic():
    a, b = squares()
    # directed boundary distances (either way by symmetry): 6 voxels at 1, 6 at 0
    assert hausdorff_distance(a, b, 1.0, percentile=100) == {1: 1.0}
    assert hausdorff_distance(a, b, 1.0) == {1: 1.0}
    assert mean_surface_distance(a, b, 1.0) == {1: pytest.approx(0.5)}
    # rows 2 mm apart: the 4 top-row distances become 2, the two (5,3),(5,4) stay 1 (columns)
    assert hausdorff_distance(a, b, (2.0, 1.0), percentile=100) == {1: 2.0}
    assert mean_surface_distance(a, b, (2.0, 1.0)) == {1: pytest.approx((8 + 2) * 2 / 24)}
    assert mean_surface_distance(a, b, (2.0, 1.0), symmetric=False) == {1: pytest.approx(10 / 12)}
    # columns 3 mm apart: a shift along rows does not change
    assert hausdorff_distance(a, b, (1.0, 3.0), percentile=100) == {1: 1.0}


def test_surface_empty():
    a, _ = squares()
    z = np.zeros_like(a)
    assert hausdorff_distance(z, z, 1.0, labels=[1]) == {1: 0.0}
    assert mean_surface_distance(z, z, 1.0, labels=[1]) == {1: 0.0}
    assert hausdorff_distance(a, z, 1.0) == {1: float("inf")}
    assert mean_surface_distance(z, a, 1.0) == {1: float("inf")}


def brute_boundary(mask):
    """A voxel of the mask with a face neighbour outside the mask or outside the image."""
    out = []
    for idx in zip(*np.nonzero(mask)):
        for ax, step in itertools.product(range(mask.ndim), (-1, 1)):
            j = list(idx)
            j[ax] += step
            if not 0 <= j[ax] < mask.shape[ax] or not mask[tuple(j)]:
                out.append(idx)
                break
    return np.array(out, float)


def brute_distances(pa, pb, spacing):
    diff = (pa[:, None, :] - pb[None, :, :]) * np.asarray(spacing)
    return np.sqrt((diff ** 2).sum(-1)).min(1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_surface_random_against_all_pairs(seed):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    spacing = (1.0, 0.7, 2.5)
    a = (ndimage.gaussian_filter(rng.random((12, 11, 9)), 1.5) > 0.5).astype(int)
    b = (ndimage.gaussian_filter(rng.random((12, 11, 9)), 1.5) > 0.5).astype(int) * 2
    b[a == 1] = np.where(rng.random((a == 1).sum()) > 0.2, 2, 0)  # overlapping label 2 ...
    a = a * 2  # ... evaluate label 2
    assert (a == 2).any() and (b == 2).any()
    pa, pb = brute_boundary(a == 2), brute_boundary(b == 2)
    dab, dba = brute_distances(pa, pb, spacing), brute_distances(pb, pa, spacing)
    for q in (95, 100, 50):
        expected = max(np.percentile(dab, q), np.percentile(dba, q))
        assert hausdorff_distance(a, b, spacing, percentile=q)[2] == pytest.approx(expected)
    assert mean_surface_distance(a, b, spacing)[2] == pytest.approx(
        (dab.sum() + dba.sum()) / (len(dab) + len(dba)))
    assert mean_surface_distance(a, b, spacing, symmetric=False)[2] == pytest.approx(dab.mean())


def test_bad_inputs():
    a, b = squares()
    with pytest.raises(InputError, match="spacing"):
        hausdorff_distance(a, b, (1.0, 0.0))
    with pytest.raises(InputError, match="spacing"):
        mean_surface_distance(a, b, (1.0, 1.0, 1.0))
    with pytest.raises(InputError, match="shapes"):
        dice_score(a, b[:5])
    with pytest.raises(InputError, match="percentile"):
        hausdorff_distance(a, b, 1.0, percentile=0)


def test_mean_dice_streaming_against_numpy():
    rng = np.random.default_rng(3)
    metric = MeanDice(3, include_background=False)
    inter, total = np.zeros(3), np.zeros(3)
    for _ in range(2):
        y = rng.integers(0, 3, (2, 5, 6))
        p = rng.random((2, 5, 6, 3)).astype(np.float32)
        w = (rng.random((2, 5, 6)) > 0.3).astype(np.float32)
        metric.update_state(y, p, w)
        hard = p.argmax(-1)
        for c in range(3):
            inter[c] += ((y == c) & (hard == c) & (w > 0)).sum()
            total[c] += ((y == c) & (w > 0)).sum() + ((hard == c) & (w > 0)).sum()
    expected = np.mean(2 * inter[1:] / total[1:])
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0
    # perfect prediction with one-hot labels
    y = rng.integers(0, 3, (1, 4, 4))
    metric.update_state(np.eye(3)[y], np.eye(3)[y].astype(np.float32))
    assert float(metric.result()) == pytest.approx(1.0)


def test_mean_dice_in_fit_with_jit():
    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 6, 1))
    model = keras.Model(inp, keras.layers.Conv2D(3, 1, activation="softmax")(inp))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=[MeanDice(3)],
                  jit_compile=True)
    x = np.random.default_rng(4).normal(size=(4, 6, 6, 1)).astype(np.float32)
    y = np.digitize(x[..., 0], [-0.5, 0.5])
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    # under jit the metric equals the global Dice of the argmax, counted here by hand (seen
    # failing with the background counted in the mean)
    got = model.evaluate(x, y, batch_size=2, verbose=0, return_dict=True)["mean_dice"]
    pred = model.predict(x, verbose=0).argmax(-1)
    want = [2 * ((pred == c) & (y == c)).sum() / ((pred == c).sum() + (y == c).sum())
            for c in (1, 2) if (pred == c).any() or (y == c).any()]
    assert got == pytest.approx(np.mean(want), abs=1e-6)
    restored = MeanDice.from_config(MeanDice(3, True).get_config())
    assert restored.num_classes == 3 and restored.include_background
