"""Tests for tfneuro.layers.dense: QuickNAT DenseBlock and FastSurfer CompetitiveDenseBlock."""

import numpy as np
import pytest
import keras

from helpers import check_keras_contract
from tfneuro.errors import InputError
from tfneuro.layers.dense import CompetitiveDenseBlock, DenseBlock


def _bn(x, layer):
    g, b, mean, var = (w.numpy() for w in layer.weights)
    return (x - mean) / np.sqrt(var + layer.epsilon) * g + b


def _conv(x, layer):
    """'same' 2D convolution (cross-correlation) in numpy, brute force."""
    k, bias = layer.kernel.numpy(), layer.bias.numpy()
    kh, kw = k.shape[:2]
    pad = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    out = np.zeros(x.shape[:3] + (k.shape[3],), np.float64)
    for dy in range(kh):
        for dx in range(kw):
            out += np.einsum("bhwc,cf->bhwf", pad[:, dy:dy + x.shape[1], dx:dx + x.shape[2]], k[dy, dx])
    return out + bias


def _randomise_bn(layer, rng):
    for bn in [w for w in layer._flatten_layers() if isinstance(w, keras.layers.BatchNormalization)]:
        for w in bn.weights:
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype(np.float32) if "variance" in w.path
                     else rng.normal(size=w.shape).astype(np.float32))


def test_dense_block_matches_definition():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 7, 3)).astype(np.float32)
    block = DenseBlock(filters=4, kernel_size=5, num_convs=3)
    block(x)
    _randomise_bn(block, rng)
    relu = lambda t: np.maximum(t, 0)  # noqa: E731
    o1 = _conv(relu(_bn(x, block.norms[0])), block.convs[0])
    c1 = np.concatenate([x, o1], -1)
    o2 = _conv(relu(_bn(c1, block.norms[1])), block.convs[1])
    c2 = np.concatenate([x, o1, o2], -1)
    out = _conv(relu(_bn(c2, block.norms[2])), block.convs[2])
    np.testing.assert_allclose(block(x, training=False).numpy(), out, rtol=1e-4, atol=1e-4)
    assert block.convs[2].kernel.shape == (1, 1, 3 + 4 + 4, 4)


def test_dense_block_parameter_count_quicknat_defaults():
    block = DenseBlock()  # 64 filters, 5x5, 3 convs
    block.build((None, 32, 32, 1))
    convs = (5 * 5 * 1 * 64 + 64) + (5 * 5 * 65 * 64 + 64) + (1 * 1 * 129 * 64 + 64)
    bns = 2 * (1 + 65 + 129)  # trainable gamma, beta
    assert sum(int(np.prod(w.shape)) for w in block.trainable_weights) == convs + bns


@pytest.mark.parametrize("is_input", [False, True])
def test_competitive_block_matches_definition(is_input):
    rng = np.random.default_rng(1)
    cin = 2 if is_input else 4
    x = rng.normal(size=(2, 5, 6, cin)).astype(np.float32)
    block = CompetitiveDenseBlock(filters=4, kernel_size=3, num_convs=3, activation="relu")
    block(x)
    _randomise_bn(block, rng)
    relu = lambda t: np.maximum(t, 0)  # noqa: E731
    if is_input:
        m = _bn(_conv(_bn(x, block.input_norm), block.convs[0]), block.norms[0])
    else:
        m = np.maximum(x, _bn(_conv(relu(x), block.convs[0]), block.norms[0]))
    m = np.maximum(m, _bn(_conv(relu(m), block.convs[1]), block.norms[1]))
    out = _bn(_conv(relu(m), block.convs[2]), block.norms[2])
    np.testing.assert_allclose(block(x, training=False).numpy(), out, rtol=1e-4, atol=1e-4)
    # maxout keeps the parameter count independent of depth: no conv sees concatenations
    assert block.convs[1].kernel.shape == (3, 3, 4, 4)


@pytest.mark.parametrize("make,channels", [
    (lambda: DenseBlock(8, 3, 3, activation="prelu", dropout=0.2), 3),
    (lambda: CompetitiveDenseBlock(8, 3, 3, activation="relu"), 8),
    (lambda: CompetitiveDenseBlock(4, 5, 2, activation="prelu", is_input=True), 2),
], ids=["dense_prelu_dropout", "competitive", "competitive_input"])
def test_keras_contract(make, channels):
    """Config, ``.keras`` and symbolic-shape contract (``tests/helpers.py``).

    Seen failing with ``dropout`` dropped from ``DenseBlock.get_config``: "config round trip:
    the layers inside differ: [..., 'Conv2D', 'Dropout'] vs [..., 'Conv2D']" (the clone has
    no Dropout layer)."""
    x = np.random.default_rng(2).normal(size=(2, 8, 9, channels)).astype(np.float32)
    assert check_keras_contract(make, x).shape[:3] == (2, 8, 9)


def test_bad_arguments():
    with pytest.raises(InputError, match="num_convs"):
        DenseBlock(num_convs=1)
    with pytest.raises(InputError, match="is_input"):
        CompetitiveDenseBlock(filters=4, is_input=False)(np.zeros((1, 4, 4, 3), np.float32))
