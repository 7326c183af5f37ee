"""Tests for tfneuro.export.fold: batch norm folded into the convolution before it (issue 17).

Expected values are computed here: the folded kernel and bias from the definition of batch
normalisation at inference, ``gamma * (x - mean) / sqrt(var + eps) + beta``; which batch norms
fold from the architectures (every BN of Cicek's U-Net follows a conv; QuickNAT's dense blocks
are BN -> ReLU -> conv, so only the bottleneck's conv -> BN folds).

How these were seen to fail: dropping ``+ beta`` from the folded bias made every test but
``test_what_does_not_fold`` red; folding without the
consumer check (a conv output that also feeds an Add) made ``test_what_does_not_fold`` red
(1 folded, outputs changed); folding on the caller's model instead of a copy made
``test_unet3d_folds_every_batch_norm`` red (its BN layers had become identities).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfneuro.export import build_module, export_model
from tfneuro.export.fold import FoldedBatchNormalization, fold_batch_norm, foldable_pairs
from tfneuro.training.saving import copy_model


def _randomize_norms(model, seed=0):
    """Non-trivial inference statistics (a fresh BN is nearly the identity)."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.5, n))
            layer.moving_variance.assign(rng.uniform(0.3, 3.0, n))
            if layer.scale:
                layer.gamma.assign(rng.uniform(0.5, 1.5, n))
            if layer.center:
                layer.beta.assign(rng.normal(0, 0.3, n))


def _norms(model, cls=keras.layers.BatchNormalization):
    return [layer for layer in model._flatten_layers() if type(layer) is cls]


def test_fold_by_hand():
    keras.utils.set_random_seed(0)
    i = keras.Input((None, None, 3))
    c = keras.layers.Conv2D(5, 3, padding="same", use_bias=False, name="c")(i)
    o = keras.layers.BatchNormalization(epsilon=1e-3, name="bn")(c)
    model = keras.Model(i, o)
    _randomize_norms(model)
    bn = model.get_layer("bn")
    w = np.asarray(model.get_layer("c").kernel, np.float64)
    s = np.asarray(bn.gamma) / np.sqrt(np.asarray(bn.moving_variance) + 1e-3)
    want_kernel = w * s  # each output channel's filter scaled
    want_bias = np.asarray(bn.beta) - np.asarray(bn.moving_mean) * s

    folded = copy_model(model)
    assert fold_batch_norm(folded) == 1
    conv = folded.get_layer("c")
    np.testing.assert_allclose(np.asarray(conv.kernel), want_kernel, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(conv.bias), want_bias, rtol=1e-5, atol=1e-7)
    assert type(folded.get_layer("bn")) is FoldedBatchNormalization
    x = np.random.default_rng(1).normal(size=(2, 9, 7, 3)).astype(np.float32)
    np.testing.assert_allclose(folded(x), model(x, training=False), rtol=1e-4, atol=1e-5)
    assert model.get_layer("c").bias is None  # the original is untouched


def test_what_does_not_fold():
    keras.utils.set_random_seed(1)
    i = keras.Input((None, None, 2))
    # 1. the conv output also feeds an Add: folding would change the Add's input
    c1 = keras.layers.Conv2D(2, 3, padding="same", name="c1")(i)
    a = keras.layers.Add()([keras.layers.BatchNormalization(name="b1")(c1), c1])
    # 2. a ReLU inside the conv sits between it and the BN
    c2 = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="c2")(a)
    b2 = keras.layers.BatchNormalization(name="b2")(c2)
    # 3. one conv used twice (shared weights), each use followed by a BN
    shared = keras.layers.Conv2D(2, 1, name="shared")
    b3 = keras.layers.BatchNormalization(name="b3")(shared(b2))
    b4 = keras.layers.BatchNormalization(name="b4")(shared(b3))
    model = keras.Model(i, b4)
    _randomize_norms(model)
    assert foldable_pairs(model) == []
    copy = copy_model(model)
    assert fold_batch_norm(copy) == 0
    x = np.random.default_rng(2).normal(size=(1, 6, 6, 2)).astype(np.float32)
    np.testing.assert_array_equal(copy(x), model(x, training=False))


def test_unet3d_folds_every_batch_norm(tmp_path):
    from tfneuro.models import get

    model = get("unet3d", num_classes=2, base_filters=4, input_shape=(None, None, None, 1))
    _randomize_norms(model)
    n_bn = len(_norms(model))
    assert n_bn == 14  # 7 conv blocks (4 encoder, 3 decoder levels) x 2 conv -> BN -> ReLU
    opts = dict(window=(16, 16, 16), label_scheme=["background", "skull"], precision="float32")
    plain = build_module(model, fold_batch_norm=False, **opts)
    meta = export_model(model, tmp_path / "sm", **opts)
    assert meta.batch_norm_folded == n_bn and plain.meta.batch_norm_folded == 0
    assert len(_norms(model)) == n_bn and not _norms(model, FoldedBatchNormalization)
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    vol = np.random.default_rng(3).gamma(2.0, 50.0, size=(20, 24, 18, 1)).astype(np.float32)
    want = plain.segment_volume(vol)["probabilities"].numpy()
    got = loaded.signatures["segment_volume"](volume=tf.constant(vol))["probabilities"].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    x = np.random.default_rng(4).normal(size=(2, 16, 16, 16, 1)).astype(np.float32)
    serve = loaded.signatures["serving_default"]
    out = next(iter(serve(tf.constant(x)).values())).numpy()
    np.testing.assert_allclose(out, model.predict_on_batch(x), rtol=1e-4, atol=1e-6)


def test_quicknat_folds_only_its_bottleneck():
    from tfneuro.models.quicknat import quicknat

    keras.utils.set_random_seed(5)
    model = quicknat(4, filters=4, kernel_size=3)
    _randomize_norms(model)
    pairs = foldable_pairs(model)
    assert [(c.name, b.name) for c, b in pairs] == [("conv", "bn")]
    assert pairs[0][1] is model.get_layer("bottleneck").layers[1]
    plain = build_module(model, fold_batch_norm=False, precision="float32")
    folded = build_module(model, precision="float32")
    assert folded.meta.batch_norm_folded == 1
    vol = np.random.default_rng(6).gamma(2.0, 50.0, size=(18, 20, 16, 1)).astype(np.float32)
    np.testing.assert_allclose(folded.segment_volume(vol)["probabilities"].numpy(),
                               plain.segment_volume(vol)["probabilities"].numpy(),
                               rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("transpose", [False, True])
def test_transposed_and_biased_convs(transpose):
    keras.utils.set_random_seed(7)
    i = keras.Input((None, None, None, 2))
    conv = (keras.layers.Conv3DTranspose(3, 2, strides=2) if transpose
            else keras.layers.Conv3D(3, 3, padding="same", use_bias=True))
    model = keras.Model(i, keras.layers.BatchNormalization()(conv(i)))
    _randomize_norms(model)
    copy = copy_model(model)
    assert fold_batch_norm(copy) == 1
    x = np.random.default_rng(8).normal(size=(1, 4, 4, 4, 2)).astype(np.float32)
    np.testing.assert_allclose(copy(x), model(x, training=False), rtol=1e-4, atol=1e-5)
