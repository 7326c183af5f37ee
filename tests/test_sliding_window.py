"""Tests for tfneuro.inference.sliding_window (expected values computed independently)."""

import numpy as np
import keras
import pytest

from tfneuro.errors import InputError
from tfneuro.inference import sliding_window_predict


def _conv_model(k=3, c=1, seed=0):
    """A tiny position-sensitive model (3x3x3 'same' conv: borders differ) -> softmax."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((None, None, None, c))
    x = keras.layers.Conv3D(4, 3, padding="same", activation="tanh")(inp)
    out = keras.layers.Conv3D(k, 1, activation="softmax")(x)
    return keras.Model(inp, out)


class Counting(keras.Model):
    """Wraps a model and counts compiled predict calls (one per batch of windows)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.calls = 0

    def call(self, x):
        return self.inner(x)

    def predict_on_batch(self, x):
        self.calls += 1
        return super().predict_on_batch(x)


def test_window_covering_volume_equals_direct_prediction():
    model = _conv_model()
    vol = np.random.default_rng(0).normal(size=(16, 16, 16, 1)).astype("float32")
    got = sliding_window_predict(model, vol, window=(16, 16, 16), skip_empty=False)
    want = model.predict(vol[None], verbose=0)[0]
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_small_volume_is_padded_centrally():
    model = _conv_model()
    vol = np.random.default_rng(1).normal(size=(12, 16, 10, 1)).astype("float32")
    got = sliding_window_predict(model, vol, window=(16, 16, 16), skip_empty=False)
    assert got.shape == (12, 16, 10, 3)
    padded = np.zeros((16, 16, 16, 1), "float32")
    padded[2:14, :, 3:13] = vol  # (16-12)//2 = 2, (16-10)//2 = 3
    want = model.predict(padded[None], verbose=0)[0][2:14, :, 3:13]
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_gaussian_blend_matches_hand_computation():
    model = _conv_model(k=2, seed=3)
    vol = np.random.default_rng(2).normal(size=(24, 16, 16, 1)).astype("float32")
    got = sliding_window_predict(model, vol, window=(16, 16, 16), overlap=0.5, skip_empty=False)
    # windows along x start at 0 and 8 (step 16 * 0.5); Gaussian sigma = 16 / 8 = 2
    c = np.arange(16) - 7.5
    g1 = np.exp(-0.5 * (c / 2.0) ** 2)
    g = g1[:, None, None] * g1[None, :, None] * g1[None, None, :]
    g = g / g.max()
    p0 = model.predict(vol[None, 0:16], verbose=0)[0]
    p1 = model.predict(vol[None, 8:24], verbose=0)[0]
    num = np.zeros((24, 16, 16, 2))
    den = np.zeros((24, 16, 16))
    num[0:16] += p0 * g[..., None]
    den[0:16] += g
    num[8:24] += p1 * g[..., None]
    den[8:24] += g
    np.testing.assert_allclose(got, num / den[..., None], atol=1e-5)


def test_constant_model_has_no_seams():
    inp = keras.Input((None, None, None, 1))
    logits = keras.layers.Conv3D(3, 1, kernel_initializer="zeros",
                                 bias_initializer=keras.initializers.Constant([1.0, 2.0, 3.0]))(inp)
    model = keras.Model(inp, keras.layers.Softmax()(logits))
    vol = np.random.default_rng(3).uniform(1, 2, size=(40, 36, 20, 1)).astype("float32")
    got = sliding_window_predict(model, vol, window=(16, 16, 16), overlap=0.5, blend="gaussian",
                                 batch_size=3)
    e = np.exp([1.0, 2.0, 3.0])
    want = e / e.sum()
    assert got.shape == (40, 36, 20, 3)
    np.testing.assert_allclose(got.reshape(-1, 3), np.broadcast_to(want, (40 * 36 * 20, 3)),
                               rtol=0, atol=1e-6)  # float32 accumulation
    assert np.ptp(got.reshape(-1, 3).astype(np.float64), axis=0).max() < 1e-6


def test_windows_outside_bbox_are_skipped():
    inner = _conv_model(k=2)
    model = Counting(inner)
    vol = np.zeros((64, 16, 16, 1), "float32")
    vol[2:10, 4:8, 4:8] = 1.0  # only the first of the 4 x-windows (overlap 0) touches it
    got = sliding_window_predict(model, vol, window=(16, 16, 16), overlap=0.0, batch_size=1)
    assert model.calls == 1
    np.testing.assert_allclose(got[:16], inner.predict(vol[None, :16], verbose=0)[0], atol=1e-6)
    # voxels only under skipped windows: background probability 1
    assert np.all(got[16:, ..., 0] == 1.0) and np.all(got[16:, ..., 1] == 0.0)
    model.calls = 0
    sliding_window_predict(model, vol, window=(16, 16, 16), overlap=0.0, skip_empty=False)
    assert model.calls == 4


def test_all_empty_volume_needs_no_model_call():
    model = Counting(_conv_model(k=2))
    got = sliding_window_predict(model, np.zeros((16, 16, 16, 1)), window=(8, 8, 8), num_classes=2)
    assert model.calls == 0 and np.all(got[..., 0] == 1)


def test_bad_arguments_raise_input_error():
    model = _conv_model()
    vol = np.zeros((8, 8, 8, 1), "float32")
    for kwargs in ({"window": (8, 8)}, {"overlap": 1.0}, {"blend": "median"}, {"batch_size": 0}):
        with pytest.raises(InputError):
            sliding_window_predict(model, vol, **kwargs)
    with pytest.raises(InputError):
        sliding_window_predict(model, np.zeros((8, 8)))


@pytest.mark.parametrize("transform", ["zscore", "affine"])
def test_empty_windows_are_skipped_on_a_normalised_volume(transform):
    """After z-scoring (or any increasing map) the background is no longer 0 but the
    volume's minimum; the same windows are skipped as on the raw volume. Seen failing: with
    the old ``volume != 0`` test all 4 windows ran (calls == 4) on the z-scored volume."""
    from tfneuro.io.normalize import zscore

    inner = _conv_model(k=2)
    model = Counting(inner)
    raw = np.zeros((64, 16, 16), "float32")
    raw[2:10, 4:8, 4:8] = 1.0 + np.arange(8 * 4 * 4).reshape(8, 4, 4) / 128.0
    vol = (zscore(raw) if transform == "zscore" else 3.0 * raw - 5.0)[..., None]
    assert vol[20, 0, 0, 0] != 0  # the background is not 0 any more
    got = sliding_window_predict(model, vol, window=(16, 16, 16), overlap=0.0)
    assert model.calls == 1
    np.testing.assert_allclose(got[:16], inner.predict(vol[None, :16], verbose=0)[0], atol=1e-6)
    assert np.all(got[16:, ..., 0] == 1.0)
