"""Tests for tfneuro.layers.residual (3D residual block, U-Net encoder/decoder blocks)."""

import numpy as np
import keras
import pytest

from helpers import check_keras_contract
from tfneuro.errors import InputError
from tfneuro.layers import ResidualBlock3D, UNetDecoderBlock3D, UNetEncoderBlock3D
from tfneuro.layers.residual import ConvNormAct3D


def test_residual_block_identity_shortcut_by_hand():
    # with the second conv zeroed, y = LeakyReLU(0 + x): the identity shortcut, computed by hand
    block = ResidualBlock3D(3, norm=None, activation="leaky_relu", negative_slope=0.1)
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 4, 3)).astype("float32")
    block(x)
    block.conv2.kernel.assign(np.zeros(block.conv2.kernel.shape))
    block.conv2.bias.assign(np.zeros(block.conv2.bias.shape))
    assert block.proj is None
    np.testing.assert_allclose(block(x).numpy(), np.where(x > 0, x, 0.1 * x), atol=1e-6)


def test_residual_block_projection_and_stride():
    """Contract (``tests/helpers.py``) of a strided block with a projection shortcut.

    Seen failing with ``strides`` dropped from ``ResidualBlock3D.get_config``: "config round
    trip: attributes differ (original, restored): {'strides': (2, 1)}"."""
    block = ResidualBlock3D(5, strides=2, norm="instance")
    x = np.random.default_rng(1).normal(size=(1, 8, 6, 4, 2)).astype("float32")
    assert check_keras_contract(block, x).shape == (1, 4, 3, 2, 5)
    assert block.proj is not None


@pytest.mark.parametrize("make", [
    lambda: ConvNormAct3D((4, 8), norm=None),
    lambda: ConvNormAct3D(6, strides=2, num_convs=3, norm="instance_noaffine",
                          activation="leaky_relu", negative_slope=0.2),
    lambda: ResidualBlock3D(3, norm="batch", activation="leaky_relu", negative_slope=0.1),
], ids=["conv_norm_act_plain", "conv_norm_act_strided", "residual_identity"])
def test_keras_contract(make):
    """Contract (``tests/helpers.py``) of the conv blocks not covered below.

    Seen failing with ``negative_slope`` dropped from ``ConvNormAct3D.get_config``:
    conv_norm_act_strided failed with "attributes differ (original, restored):
    {'negative_slope': (0.2, 0.01)}"."""
    x = np.random.default_rng(5).normal(size=(1, 4, 6, 4, 3)).astype("float32")
    check_keras_contract(make, x)


def test_encoder_decoder_blocks_shapes_and_contract():
    """Shapes by hand, then the contract (``tests/helpers.py``) of a model of the blocks
    (dynamic spatial dims, four outputs).

    Seen failing with ``up_filters`` dropped from ``UNetDecoderBlock3D.get_config``:
    "Functional 'functional': config round trip: attributes differ (inner layer
    'u_net_decoder_block3d') (original, restored): {'up_filters': (8, None)}"."""
    inp = keras.Input((None, None, None, 1))
    e0 = UNetEncoderBlock3D((4, 8), downsample=None)(inp)
    e1 = UNetEncoderBlock3D((8, 16), downsample="max_pool")(e0)
    e2 = UNetEncoderBlock3D(6, downsample="stride", residual=True, norm="instance",
                            activation="leaky_relu")(e1)
    d1 = UNetDecoderBlock3D(8, up_filters=8, residual=True, norm="instance")([e2, e1])
    d0 = UNetDecoderBlock3D(4, up_filters=None, up_bias=False)([d1, e0])
    model = keras.Model(inp, [e1, e2, d1, d0])
    x = np.random.default_rng(2).normal(size=(2, 8, 8, 8, 1)).astype("float32")
    shapes = [o.shape for o in check_keras_contract(model, x)]
    assert shapes == [(2, 4, 4, 4, 16), (2, 2, 2, 2, 6), (2, 4, 4, 4, 8), (2, 8, 8, 8, 4)]
    # Çiçek: the up-conv keeps the input's channels when up_filters is None
    dec = model.layers[-1]
    assert dec.up.filters == 8


def test_bad_args():
    with pytest.raises(InputError):
        ResidualBlock3D(4, norm="layer")
    with pytest.raises(InputError):
        UNetEncoderBlock3D(4, downsample="avg")
