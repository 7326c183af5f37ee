"""Tests for tfneuro.losses: hand-computed values, numpy re-implementations, voxel weights,
gradients, mixed precision, serialization, and routing of sample_weight through model.fit."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from tfneuro.errors import InputError
from tfneuro.losses import (
    DeepSupervisionLoss,
    DiceCELoss,
    DiceLoss,
    GeneralizedDiceLoss,
    WeightedCrossEntropy,
    class_frequencies,
    inverse_square_frequency_weights,
    median_frequency_weights,
)

# ---------------------------------------------------------------- numpy references (definitions)


def np_onehot(y, k):
    return np.eye(k)[y]


def np_dice_loss(y, p, w=None, include_background=True, batch=False, nr=1e-5, dr=1e-5):
    k = p.shape[-1]
    g = np_onehot(y, k)
    w = np.ones(y.shape) if w is None else w
    out = []
    groups = [slice(None)] if batch else [slice(i, i + 1) for i in range(y.shape[0])]
    for sl in groups:
        row = []
        for c in range(0 if include_background else 1, k):
            gi, pi, wi = g[sl][..., c], p[sl][..., c], w[sl]
            inter = (wi * pi * gi).sum()
            row.append(1 - (2 * inter + nr) / ((wi * pi).sum() + (wi * gi).sum() + dr))
        out.append(row)
    return float(np.mean(out))


def np_gdl(y, p, w=None, nr=1e-5, dr=1e-5, class_weights=None):
    k = p.shape[-1]
    g = np_onehot(y, k)
    w = np.ones(y.shape) if w is None else w
    gsum = np.array([(w * g[..., c]).sum() for c in range(k)])
    if class_weights is None:
        cw = np.array([1 / s ** 2 if s > 0 else 0.0 for s in gsum])
        cw = np.array([cw[c] if gsum[c] > 0 else cw.max() for c in range(k)])
        if cw.max() == 0:
            cw = np.ones(k)
    else:
        cw = np.asarray(class_weights, float)
    cw = cw / cw.sum()
    num = sum(cw[c] * (w * p[..., c] * g[..., c]).sum() for c in range(k))
    den = sum(cw[c] * ((w * p[..., c]).sum() + gsum[c]) for c in range(k))
    return 1 - (2 * num + nr) / (den + dr)


def np_boundary(lab):
    """Brute force: a voxel differing from any face neighbour."""
    out = np.zeros(lab.shape, bool)
    for idx in np.ndindex(*lab.shape):
        for ax in range(1, lab.ndim):
            for step in (-1, 1):
                j = list(idx)
                j[ax] += step
                if 0 <= j[ax] < lab.shape[ax] and lab[tuple(j)] != lab[idx]:
                    out[idx] = True
    return out


def np_wce(y, p, w=None, class_weights=None, w0=0.0):
    k = p.shape[-1]
    cw = np.ones(k) if class_weights is None else np.asarray(class_weights)
    omega = cw[y] + w0 * np_boundary(y)
    ce = -np.log(np.clip(np.take_along_axis(p, y[..., None], -1)[..., 0], 1e-7, 1))
    w = np.ones(y.shape) if w is None else w
    return float((w * omega * ce).sum() / w.sum())


def random_batch(shape=(2, 6, 7), k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, shape)
    logits = rng.normal(size=shape + (k,)).astype(np.float32)
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    w = (rng.random(shape) > 0.3) * rng.uniform(0.5, 2.0, shape)
    return y, logits, p.astype(np.float32), w.astype(np.float32)


# ---------------------------------------------------------------- hand-computed cases

Y1 = np.array([[0, 1, 1, 0]])
P1 = np.array([[0.2, 0.6, 0.8, 0.4]], np.float32)
PROBS1 = np.stack([1 - P1, P1], -1)


def test_dice_hand():
    # class 1: I = 1.4, sum p = 2.0, sum g = 2 -> Dice 0.7; class 0 the same by symmetry
    loss = DiceLoss(smooth_nr=0, smooth_dr=0)
    assert float(loss(Y1, PROBS1)) == pytest.approx(0.3, abs=1e-6)
    assert float(DiceLoss(include_background=False, smooth_nr=0, smooth_dr=0)(Y1, PROBS1)) == \
        pytest.approx(0.3, abs=1e-6)
    # one-hot and trailing-channel labels give the same value
    assert float(loss(np_onehot(Y1, 2), PROBS1)) == pytest.approx(0.3, abs=1e-6)
    assert float(loss(Y1[..., None], PROBS1)) == pytest.approx(0.3, abs=1e-6)


def test_gdl_hand():
    y = np.array([[0, 0, 0, 1]])
    p1 = np.array([[0.1, 0.2, 0.3, 0.6]], np.float32)
    probs = np.stack([1 - p1, p1], -1)
    # G0 = 3 -> w0 = 1/9, G1 = 1 -> w1 = 1; I0 = 2.4, P0 + G0 = 2.8 + 3; I1 = 0.6, P1 + G1 = 2.2
    expected = 1 - 2 * (2.4 / 9 + 0.6) / (5.8 / 9 + 2.2)
    got = float(GeneralizedDiceLoss(smooth_nr=0, smooth_dr=0)(y, probs))
    assert got == pytest.approx(expected, abs=1e-6)


def test_dice_ce_hand():
    ce = -np.mean(np.log([0.8, 0.6, 0.8, 0.6]))
    got = float(DiceCELoss(smooth_nr=0, smooth_dr=0)(Y1, PROBS1))
    assert got == pytest.approx(0.3 + ce, abs=1e-6)
    got = float(DiceCELoss(smooth_nr=0, smooth_dr=0, lambda_dice=0.5, lambda_ce=2.0)(Y1, PROBS1))
    assert got == pytest.approx(0.15 + 2 * ce, abs=1e-6)


def test_weighted_ce_hand():
    # labels [0,1,1,0] in 1D: boundary voxels 0|1 at positions 0-1 and 1|... : 0,1 and 2,3
    # -> every voxel is on a boundary. class weights (1, 3), w0 = 2
    ce = -np.log([0.8, 0.6, 0.8, 0.6])
    omega = np.array([1, 3, 3, 1]) + 2.0
    got = float(WeightedCrossEntropy([1, 3], boundary_weight=2.0)(Y1, PROBS1))
    assert got == pytest.approx(np.mean(omega * ce), abs=1e-5)


def test_median_frequency_weights_hand():
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)  # freq 0.6, 0.3, 0.1; median 0.3
    np.testing.assert_allclose(median_frequency_weights(labels, 4), [0.5, 1.0, 3.0, 0.0])
    np.testing.assert_allclose(class_frequencies([labels[:5], labels[5:]], 3), [0.6, 0.3, 0.1])
    np.testing.assert_allclose(inverse_square_frequency_weights([0.5, 0.25, 0.25, 0.0]),
                               np.array([4, 16, 16, 16]) / 52)
    assert WeightedCrossEntropy([0.5, 1.0, 3.0], boundary_weight="auto").boundary_weight == 6.0


def test_deep_supervision_hand():
    loss = DiceLoss(smooth_nr=0, smooth_dr=0)
    y = np.array([[0, 1, 1, 1]])
    coarse = np.array([[[0.5, 0.5], [0.0, 1.0]]], np.float32)  # sees labels y[1], y[3] = 1, 1
    full = np.stack([1 - P1, P1], -1)
    l_full = float(loss(y, full))
    l_coarse = float(loss(np.array([[1, 1]]), coarse))
    got = float(DeepSupervisionLoss(loss, weights=[1.0, 0.5])(y, [full, coarse]))
    assert got == pytest.approx(l_full + 0.5 * l_coarse, abs=1e-6)
    got = float(DeepSupervisionLoss(loss)(y, [full, coarse]))  # default 2^-i normalised
    assert got == pytest.approx((l_full + 0.5 * l_coarse) / 1.5, abs=1e-6)


# ---------------------------------------------------------------- random inputs vs references


@pytest.mark.parametrize("seed", [0, 1])
def test_random_against_numpy(seed):
    y, logits, p, w = random_batch(seed=seed)
    for kw in [dict(), dict(include_background=False), dict(batch=True)]:
        assert float(DiceLoss(**kw)(y, p, w)) == pytest.approx(np_dice_loss(y, p, w, **kw), abs=1e-5)
        assert float(DiceLoss(from_logits=True, **kw)(y, logits)) == \
            pytest.approx(np_dice_loss(y, p, None, **kw), abs=1e-5)
    assert float(GeneralizedDiceLoss()(y, p, w)) == pytest.approx(np_gdl(y, p, w), abs=1e-5)
    cw = [0.2, 0.5, 0.3]
    assert float(GeneralizedDiceLoss(class_weights=cw)(y, p, w)) == \
        pytest.approx(np_gdl(y, p, w, class_weights=cw), abs=1e-5)
    assert float(WeightedCrossEntropy([1, 2, 3], 4.0)(y, p, w)) == \
        pytest.approx(np_wce(y, p, w, [1, 2, 3], 4.0), rel=1e-5)
    assert float(WeightedCrossEntropy(from_logits=True)(y, logits)) == \
        pytest.approx(np_wce(y, p), rel=1e-5)
    assert float(DiceCELoss()(y, p, w)) == \
        pytest.approx(np_dice_loss(y, p, w) + np_wce(y, p, w), abs=1e-5)


def test_random_deep_supervision_against_numpy():
    y, _, p, w = random_batch(shape=(2, 8, 6), seed=3)
    _, _, p2, _ = random_batch(shape=(2, 4, 3), seed=4)
    _, _, p3, _ = random_batch(shape=(2, 3, 2), seed=5)  # non-integer factor 8->3, 6->2
    loss = DiceCELoss()

    def down(a, n0, n1):
        i0 = np.minimum(np.floor((np.arange(n0) + 0.5) * a.shape[1] / n0).astype(int), a.shape[1] - 1)
        i1 = np.minimum(np.floor((np.arange(n1) + 0.5) * a.shape[2] / n1).astype(int), a.shape[2] - 1)
        return a[:, i0][:, :, i1]

    expected = sum(
        wt * (np_dice_loss(down(y, *q.shape[1:3]), q, down(w, *q.shape[1:3]))
              + np_wce(down(y, *q.shape[1:3]), q, down(w, *q.shape[1:3])))
        for wt, q in zip([0.6, 0.3, 0.1], [p, p2, p3]))
    got = float(DeepSupervisionLoss(loss, [0.6, 0.3, 0.1])(y, [p, p2, p3], w))
    assert got == pytest.approx(expected, abs=1e-5)


# ---------------------------------------------------------------- voxel weights

ALL_LOSSES = [
    DiceLoss(), DiceLoss(include_background=False, batch=True), GeneralizedDiceLoss(),
    GeneralizedDiceLoss(batch=False, w_type="simple"), DiceCELoss(),
    WeightedCrossEntropy([1.0, 2.0, 0.5], "auto"), DeepSupervisionLoss(DiceCELoss(), [1.0]),
]


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=lambda x: x.name)
def test_zero_weight_voxels_contribute_nothing(loss):
    y, _, p, w = random_batch(seed=6)
    base = float(loss(y, p, w))
    rng = np.random.default_rng(7)
    off = w == 0
    y2 = np.where(off, rng.integers(0, 3, y.shape), y)
    p2 = np.where(off[..., None], rng.dirichlet(np.ones(3), y.shape).astype(np.float32), p)
    if isinstance(loss, WeightedCrossEntropy):  # boundary term depends on neighbours' labels
        loss = WeightedCrossEntropy([1.0, 2.0, 0.5])
        base = float(loss(y, p, w))
    assert float(loss(y2, p2, w)) == pytest.approx(base, abs=1e-6)
    assert not np.isclose(float(loss(y2, p2)), float(loss(y, p)))  # weights did matter


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=lambda x: x.name)
def test_finite_gradients_random_and_all_background(loss):
    y, logits, _, w = random_batch(seed=8)
    for labels, weights in [(y, None), (y, w), (np.zeros_like(y), None),
                            (np.zeros_like(y), np.zeros_like(w))]:
        z = tf.Variable(logits)
        with tf.GradientTape() as tape:
            value = loss(labels, tf.nn.softmax(z), weights)
        grad = tape.gradient(value, z)
        assert np.isfinite(float(value)) and np.all(np.isfinite(grad.numpy())), loss.name
    # GDL with every class but background absent: weights replaced, value finite
    assert np.isfinite(float(GeneralizedDiceLoss()(np.zeros_like(y), tf.nn.softmax(logits))))


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=lambda x: x.name)
def test_float16_predictions(loss):
    y, _, p, w = random_batch(seed=9)
    p16 = p.astype(np.float16)
    value = loss(y, tf.constant(p16), w)
    assert value.dtype == tf.float32
    assert float(value) == pytest.approx(float(loss(y, p16.astype(np.float32), w)), abs=1e-5)


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=lambda x: x.name)
def test_serialization(loss):
    y, _, p, w = random_batch(seed=10)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is type(loss)
    assert float(restored(y, p, w)) == pytest.approx(float(loss(y, p, w)), abs=1e-7)


def test_fit_routes_voxel_weights_from_dataset():
    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 7, 1))
    model = keras.Model(inp, keras.layers.Conv2D(3, 1, activation="softmax")(inp))
    loss = GeneralizedDiceLoss()
    model.compile("sgd", loss=loss)
    y, _, _, w = random_batch(seed=11)
    x = np.random.default_rng(12).normal(size=(2, 6, 7, 1)).astype(np.float32)
    ds_w = tf.data.Dataset.from_tensors((x, y.astype(np.int32), w))
    ds = tf.data.Dataset.from_tensors((x, y.astype(np.int32)))
    pred = model.predict(x, verbose=0)
    assert model.evaluate(ds_w, verbose=0) == pytest.approx(np_gdl(y, pred, w), abs=1e-5)
    assert model.evaluate(ds, verbose=0) == pytest.approx(np_gdl(y, pred), abs=1e-5)
    hist = model.fit(ds_w, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])


def test_bad_arguments():
    with pytest.raises(InputError, match="reduction"):
        DiceLoss(reduction="max")
    with pytest.raises(InputError, match="w_type"):
        GeneralizedDiceLoss(w_type="cube")
    with pytest.raises(InputError, match="class_weights"):
        GeneralizedDiceLoss(class_weights=[1, 2])(np.zeros((1, 4), int), np.full((1, 4, 3), 1 / 3))
    with pytest.raises(InputError, match="boundary_weight"):
        WeightedCrossEntropy(boundary_weight="auto")
    with pytest.raises(InputError, match="weights"):
        DeepSupervisionLoss(DiceLoss(), [1.0])(np.zeros((1, 4), int),
                                               [np.full((1, 4, 2), 0.5), np.full((1, 2, 2), 0.5)])
