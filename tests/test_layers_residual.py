"""Tests for tfneuro.layers.residual (3D residual block, U-Net encoder/decoder blocks)."""

import numpy as np
import keras
import pytest

from tfneuro.errors import InputError
from tfneuro.layers import ResidualBlock3D, UNetDecoderBlock3D, UNetEncoderBlock3D


def _roundtrip(model, x, tmp_path):
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_residual_block_identity_shortcut_by_hand():
    # with the second conv zeroed, y = LeakyReLU(0 + x): the identity shortcut, computed by hand
    block = ResidualBlock3D(3, norm=None, activation="leaky_relu", negative_slope=0.1)
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 4, 3)).astype("float32")
    block(x)
    block.conv2.kernel.assign(np.zeros(block.conv2.kernel.shape))
    block.conv2.bias.assign(np.zeros(block.conv2.bias.shape))
    assert block.proj is None
    np.testing.assert_allclose(block(x).numpy(), np.where(x > 0, x, 0.1 * x), atol=1e-6)


def test_residual_block_projection_and_stride(tmp_path):
    inp = keras.Input((None, None, None, 2))
    out = ResidualBlock3D(5, strides=2, norm="instance")(inp)
    model = keras.Model(inp, out)
    x = np.random.default_rng(1).normal(size=(1, 8, 6, 4, 2)).astype("float32")
    assert model.predict(x, verbose=0).shape == (1, 4, 3, 2, 5)
    assert model.layers[1].proj is not None
    _roundtrip(model, x, tmp_path)


def test_encoder_decoder_blocks_shapes_and_roundtrip(tmp_path):
    inp = keras.Input((None, None, None, 1))
    e0 = UNetEncoderBlock3D((4, 8), downsample=None)(inp)
    e1 = UNetEncoderBlock3D((8, 16), downsample="max_pool")(e0)
    e2 = UNetEncoderBlock3D(6, downsample="stride", residual=True, norm="instance",
                            activation="leaky_relu")(e1)
    d1 = UNetDecoderBlock3D(8, residual=True, norm="instance")([e2, e1])
    d0 = UNetDecoderBlock3D(4, up_filters=None)([d1, e0])
    model = keras.Model(inp, [e1, e2, d1, d0])
    x = np.random.default_rng(2).normal(size=(2, 8, 8, 8, 1)).astype("float32")
    shapes = [o.shape for o in model.predict(x, verbose=0)]
    assert shapes == [(2, 4, 4, 4, 16), (2, 2, 2, 2, 6), (2, 4, 4, 4, 8), (2, 8, 8, 8, 4)]
    # Çiçek: the up-conv keeps the input's channels when up_filters is None
    dec = model.layers[-1]
    assert dec.up.filters == 8
    path = tmp_path / "b.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    for a, b in zip(loaded.predict(x, verbose=0), model.predict(x, verbose=0)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_config_roundtrip_and_bad_args():
    blk = UNetEncoderBlock3D((4, 8), downsample="max_pool", norm=None)
    clone = UNetEncoderBlock3D.from_config(blk.get_config())
    assert clone.get_config() == blk.get_config()
    with pytest.raises(InputError):
        ResidualBlock3D(4, norm="layer")
    with pytest.raises(InputError):
        UNetEncoderBlock3D(4, downsample="avg")
