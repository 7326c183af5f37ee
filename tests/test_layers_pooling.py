"""Tests for tfneuro.layers.pooling: argmax pooling / index unpooling, TF and keras.ops paths."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from helpers import check_keras_contract
from tfneuro.errors import InputError
from tfneuro.layers.pooling import (
    MaxPoolingWithArgmax2D,
    MaxUnpooling2D,
    max_pool_with_argmax_tf,
    max_pool_with_argmax_xla,
    max_unpool,
    resolve_impl,
)

SHAPES = [(2, 4, 6, 3), (2, 5, 7, 3), (1, 7, 5, 2), (1, 1, 3, 1)]
POOLS = [(2, 2), (3, 3), (2, 3)]


def reference(x, pool):
    """Brute force from the definition: TF SAME windows, first max in row-major order."""
    b, h, w, c = x.shape
    ph, pw = pool
    oh, ow = -(-h // ph), -(-w // pw)
    top, left = (oh * ph - h) // 2, (ow * pw - w) // 2
    pooled = np.zeros((b, oh, ow, c), x.dtype)
    idx = np.zeros((b, oh, ow, c), np.int32)
    unpooled = np.zeros_like(x)
    for n in range(b):
        for i in range(oh):
            for j in range(ow):
                for k in range(c):
                    best, pos = None, None
                    for dy in range(ph):
                        for dx in range(pw):
                            y, xx = i * ph + dy - top, j * pw + dx - left
                            if 0 <= y < h and 0 <= xx < w:
                                if best is None or x[n, y, xx, k] > best:
                                    best, pos = x[n, y, xx, k], (dy, dx, y, xx)
                    pooled[n, i, j, k] = best
                    idx[n, i, j, k] = pos[0] * pw + pos[1]
                    unpooled[n, pos[2], pos[3], k] = best
    return pooled, idx, unpooled


def _inputs(shape, seed, ties):
    rng = np.random.default_rng(seed)
    if ties:  # few distinct values: many tied maxima
        return rng.integers(0, 3, shape).astype(np.float32)
    return rng.normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("ties", [False, True])
def test_paths_match_definition(shape, pool, ties):
    x = _inputs(shape, 1, ties)
    ref_p, ref_i, ref_u = reference(x, pool)
    xla = tf.function(lambda t: max_pool_with_argmax_xla(t, pool), jit_compile=True)
    for name, (p, i) in {
        "tf": max_pool_with_argmax_tf(tf.constant(x), pool),
        "ops": max_pool_with_argmax_xla(tf.constant(x), pool),
        "ops-jit": xla(tf.constant(x)),
    }.items():
        np.testing.assert_array_equal(p.numpy(), ref_p, err_msg=name)
        np.testing.assert_array_equal(i.numpy(), ref_i, err_msg=name)
        u = max_unpool(p, i, x.shape, pool)
        np.testing.assert_array_equal(np.asarray(u), ref_u, err_msg=name)


def test_tf_tie_rule_is_first_in_row_major_order():
    # TF's own kernel on a 2x2 window [[0, 1], [1, 1]] picks the first 1 (index 1).
    x = tf.constant(np.array([[0, 1], [1, 1]], np.float32).reshape(1, 2, 2, 1))
    _, flat = tf.nn.max_pool_with_argmax(x, 2, 2, "SAME")
    assert int(flat.numpy().ravel()[0]) == 1
    assert int(max_pool_with_argmax_xla(x, (2, 2))[1].numpy().ravel()[0]) == 1


@pytest.mark.parametrize("shape", [(2, 4, 6, 3), (2, 5, 7, 3)])
@pytest.mark.parametrize("ties", [False, True])
def test_gradients_identical_and_only_at_maxima(shape, ties):
    x = tf.constant(_inputs(shape, 2, ties))
    r = tf.constant(np.random.default_rng(3).normal(size=shape).astype(np.float32))
    pool = (2, 2)
    _, _, ref_u = reference(x.numpy(), pool)

    def make(fn):
        def loss(t):
            with tf.GradientTape() as tape:
                tape.watch(t)
                p, i = fn(t, pool)
                out = tf.reduce_sum(max_unpool(p, i, tf.shape(t), pool) * r) + tf.reduce_sum(p)
            return tape.gradient(out, t)
        return loss

    grads = {
        "tf": make(max_pool_with_argmax_tf)(x),
        "ops": make(max_pool_with_argmax_xla)(x),
        "ops-jit": tf.function(make(max_pool_with_argmax_xla), jit_compile=True)(x),
    }
    # From the definition: d/dx = r + 1 at each window's selected maximum, 0 elsewhere.
    chosen = np.zeros(shape, bool)
    p, i, _ = reference(x.numpy(), pool)
    b, h, w, c = shape
    for n, oy, ox, k in np.ndindex(*p.shape):
        dy, dx = divmod(int(i[n, oy, ox, k]), pool[1])
        chosen[n, oy * 2 + dy, ox * 2 + dx, k] = True
    expected = np.where(chosen, r.numpy() + 1.0, 0.0)
    for name, g in grads.items():
        np.testing.assert_allclose(g.numpy(), expected, rtol=0, atol=1e-6, err_msg=name)
    np.testing.assert_array_equal(grads["tf"].numpy(), grads["ops-jit"].numpy())
    assert np.count_nonzero(chosen) == np.prod(p.shape)  # one position per window


def test_auto_resolves_by_context():
    assert resolve_impl("auto") == "tf"  # eager TensorFlow
    seen = {}

    @tf.function
    def graph():
        seen["graph"] = resolve_impl("auto")
        return 0

    @tf.function(jit_compile=True)
    def jit():
        seen["jit"] = resolve_impl("auto")
        return 0

    graph(), jit()
    assert seen == {"graph": "tf", "jit": "xla"}


def _tiny_model(impl, size=(None, None)):
    inp = keras.Input((*size, 1))
    x = keras.layers.Conv2D(4, 3, padding="same")(inp)
    p, i = MaxPoolingWithArgmax2D(2, impl=impl)(x)
    p = keras.layers.Conv2D(4, 3, padding="same")(p)
    u = MaxUnpooling2D(2)([p, i, x])
    out = keras.layers.Conv2D(3, 1, activation="softmax")(keras.layers.Concatenate()([u, x]))
    return keras.Model(inp, out)


@pytest.mark.parametrize("impl", ["auto", "xla"])
def test_model_trains_with_jit_compile(impl):
    keras.utils.set_random_seed(0)
    model = _tiny_model(impl)
    model.compile("adam", "sparse_categorical_crossentropy", jit_compile=True)
    x = np.random.default_rng(0).normal(size=(2, 9, 11, 1)).astype(np.float32)
    y = (x[..., 0] > 0).astype(np.int32)
    before = [w.numpy().copy() for w in model.trainable_weights]
    hist = model.fit(x, y, epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(hist.history["loss"][0])
    assert any(not np.allclose(a, w.numpy()) for a, w in zip(before, model.trainable_weights))
    assert model.predict(x, verbose=0).shape == (2, 9, 11, 3)


def test_model_tf_path_matches_xla_path_outputs():
    keras.utils.set_random_seed(0)
    a = _tiny_model("tf")
    b = _tiny_model("xla")
    b.set_weights(a.get_weights())
    x = np.random.default_rng(1).normal(size=(2, 7, 10, 1)).astype(np.float32)
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())


@pytest.mark.parametrize("pool,impl", [((2, 2), "auto"), ((3, 3), "xla"), ((2, 3), "tf")])
def test_keras_contract(pool, impl):
    """Config, ``.keras`` and symbolic-shape contract (``tests/helpers.py``) of the pooling
    layer (tuple output, int32 indices) and of the unpooling layer (list input) on odd sizes.

    Seen failing with ``impl`` dropped from ``MaxPoolingWithArgmax2D.get_config``: the xla and
    tf cases failed with "attributes differ (original, restored): {'impl': ('xla', 'auto')}"."""
    x = _inputs((2, 7, 5, 3), 4, ties=False)
    pooled, indices = check_keras_contract(lambda: MaxPoolingWithArgmax2D(pool, impl=impl), x)
    ref_p, ref_i, ref_u = reference(x, pool)
    np.testing.assert_array_equal(pooled, ref_p)
    np.testing.assert_array_equal(indices, ref_i)
    unpooled = check_keras_contract(lambda: MaxUnpooling2D(pool), [pooled, indices, x])
    np.testing.assert_array_equal(unpooled, ref_u)


def test_static_shapes():
    p, i = MaxPoolingWithArgmax2D(2)(keras.Input((5, 7, 3)))
    assert tuple(p.shape) == (None, 3, 4, 3) and i.dtype == "int32"
    u = MaxUnpooling2D(2)([p, i, keras.Input((5, 7, 8))])
    assert tuple(u.shape) == (None, 5, 7, 3)


def test_bad_arguments():
    with pytest.raises(InputError, match="strides"):
        MaxPoolingWithArgmax2D(2, strides=1)
    with pytest.raises(InputError, match="impl"):
        MaxPoolingWithArgmax2D(2, impl="cuda")
    with pytest.raises(InputError, match="pool_size"):
        MaxUnpooling2D(0)
