"""Tests for tfneuro.inference.slices: slice-wise prediction and view aggregation.

Reference results are computed here independently: one slice at a time with ``np.take``,
calling the model eagerly, and stacking the slices back with ``np.stack(..., axis)``.
"""

import keras
import numpy as np
import pytest

from tfneuro.errors import InputError
from tfneuro.inference import memory
from tfneuro.inference.slices import (VIEW_AXES, nonzero_slice_range, predict_slices,
                                      predict_volume_views, rgb_slice_stack)
from tfneuro.models.quicknat import quicknat

SHAPE = (12, 14, 10)


@pytest.fixture(scope="module")
def volume():
    rng = np.random.default_rng(0)
    vol = np.zeros(SHAPE + (1,), dtype=np.float32)
    vol[3:9, 2:12, 2:8, 0] = rng.random((6, 10, 6), dtype=np.float32) + 0.5
    return vol


@pytest.fixture(scope="module")
def models():
    keras.utils.set_random_seed(1)
    return {view: quicknat(3, filters=4, kernel_size=3, depth=2, name=f"q_{view}")
            for view in VIEW_AXES}


def _reference(model, vol, axis, skip=None):
    """Independent: all slices via ``np.take`` in one eager call; ``skip`` = (start, stop) ->
    background one-hot outside."""
    slices = np.stack([np.take(vol, n, axis) for n in range(vol.shape[axis])])
    probs = keras.ops.convert_to_numpy(model(slices, training=False))
    if skip is not None:
        outside = np.ones(len(probs), bool)
        outside[skip[0]:skip[1]] = False
        probs[outside] = 0.0
        probs[outside, ..., 0] = 1.0
    return np.stack(list(probs), axis=axis)


def test_nonzero_slice_range(volume):
    assert nonzero_slice_range(volume, 0) == (3, 9)
    assert nonzero_slice_range(volume, 1) == (2, 12)
    assert nonzero_slice_range(volume, 2) == (2, 8)
    assert nonzero_slice_range(np.zeros((3, 3, 3)), 1) == (0, 0)


def test_nonzero_slice_range_after_normalisation(volume):
    """z-scoring maps the zero background to -mean/sd, not 0: the range must stay the raw
    volume's, in numpy and in the export graph. Seen failing before the background was taken as
    0 or the channel's minimum: every slice counted, (0, 12) along axis 0."""
    import tensorflow as tf

    from tfneuro.export.graph import nonzero_range

    z = (volume - volume.mean()) / volume.std()
    for axis, want in enumerate([(3, 9), (2, 12), (2, 8)]):
        assert nonzero_slice_range(z, axis) == want
        got = nonzero_range(tf.constant(np.moveaxis(z, axis, 0)), 0)
        assert tuple(int(v) for v in got) == want
    assert nonzero_slice_range(np.full((3, 3, 3), 2.0), 0) == (0, 0)   # constant: no signal


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_predict_slices_matches_slice_loop(models, volume, axis):
    model = models["axial"]
    got = predict_slices(model, volume, axis, batch_size=4, skip_empty=False)
    want = _reference(model, volume, axis)
    assert got.shape == SHAPE + (3,)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_auto_slice_batch_by_hand():
    # 2**17 = 131072 pixels per call, clipped to 1..16
    assert memory.auto_slice_batch(192, 160) == 4  # 131072 // 30720
    assert memory.auto_slice_batch(256, 256) == 2
    assert memory.auto_slice_batch(128, 128) == 8
    assert memory.auto_slice_batch(64, 64) == 16  # 32, capped
    assert memory.auto_slice_batch(512, 512) == 1  # 0, raised to 1


def test_default_batch_is_automatic(models, volume, monkeypatch):
    """batch_size=None feeds AUTO_BATCH_PIXELS // (H*W) slices per call; same probabilities."""
    monkeypatch.setattr(memory, "AUTO_BATCH_PIXELS", 5 * SHAPE[1] * SHAPE[2])  # 5 sagittal slices
    model = models["sagittal"]
    sizes, orig = [], model.predict_on_batch
    monkeypatch.setattr(model, "predict_on_batch", lambda x: (sizes.append(len(x)), orig(x))[1])
    got = predict_slices(model, volume, 0, skip_empty=False)
    assert sizes == [5, 5, 2]  # 12 slices
    np.testing.assert_allclose(got, _reference(model, volume, 0), atol=1e-5)
    sizes.clear()
    predict_volume_views({"sagittal": model}, volume, skip_empty=False, return_uncertainty=True)
    assert sizes == [5, 5, 2]


def test_skip_empty_gives_background_outside_bbox_and_same_inside(models, volume):
    model = models["coronal"]
    got = predict_slices(model, volume, "coronal", batch_size=3, skip_empty=True)
    want = _reference(model, volume, 1, skip=(2, 12))
    np.testing.assert_allclose(got, want, atol=1e-5)
    # a random model does NOT predict pure background on empty slices: skipping is visible
    full = predict_slices(model, volume, 1, skip_empty=False)
    assert not np.allclose(full[:, 0, :, 0], 1.0)


def test_bbox_skipping_same_labels_as_full_prediction(volume):
    # a real (tiny) segmentation model whose background is "intensity ~ 0": a 3x3 conv with
    # fixed weights -> 2 classes (0 where the neighbourhood is dark, 1 where bright)
    inp = keras.Input((None, None, 1))
    conv = keras.layers.Conv2D(2, 3, padding="same", activation="softmax", name="classifier")
    model = keras.Model(inp, conv(inp), name="threshold_net")
    kernel = np.zeros((3, 3, 1, 2), np.float32)
    kernel[..., 0, 1] = 2.0
    conv.set_weights([kernel, np.array([1.0, -1.0], np.float32)])
    for axis in range(3):
        full = predict_slices(model, volume, axis, skip_empty=False)
        skipped = predict_slices(model, volume, axis, skip_empty=True)
        np.testing.assert_array_equal(full.argmax(-1), skipped.argmax(-1))
        assert (full.argmax(-1) == 1).sum() > 100  # the model does segment something


def test_view_aggregation_is_mean_of_single_views(models, volume):
    probs = predict_volume_views(models, volume, skip_empty=False, batch_size=5)
    views = [_reference(m, volume, VIEW_AXES[v]) for v, m in models.items()]
    np.testing.assert_allclose(probs, np.mean(views, axis=0), atol=1e-5)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


def test_labels_out_is_the_views_own_argmax(models, volume):
    model = models["coronal"]
    lab = np.zeros(SHAPE, np.uint8)
    probs = predict_slices(model, volume, 1, labels_out=lab)
    want = _reference(model, volume, 1, skip=nonzero_slice_range(volume, 1))
    np.testing.assert_array_equal(lab, want.argmax(-1))
    np.testing.assert_allclose(probs, want, atol=1e-5)
    with pytest.raises(InputError, match="labels_out"):
        predict_slices(model, volume, 1, labels_out=np.zeros((3, 3, 3), np.uint8))


def test_view_aggregation_weights_and_uncertainty(models, volume):
    w = {"axial": 0.4, "coronal": 0.4, "sagittal": 0.2}
    probs, unc = predict_volume_views(models, volume, weights=w, return_uncertainty=True)
    bbox = {v: nonzero_slice_range(volume, VIEW_AXES[v]) for v in models}
    views = {v: _reference(m, volume, VIEW_AXES[v], skip=bbox[v]) for v, m in models.items()}
    want = sum(w[v] * views[v] for v in models)
    np.testing.assert_allclose(probs, want, atol=1e-5)
    agg = want.argmax(-1)
    want_unc = sum(w[v] * (views[v].argmax(-1) != agg) for v in models)
    np.testing.assert_allclose(unc, want_unc, atol=1e-6)
    assert unc.max() > 0  # random views disagree somewhere


def test_rgb_slice_stack_by_hand():
    vol = np.arange(4 * 2 * 3, dtype=np.float32).reshape(4, 2, 3)
    got = rgb_slice_stack(vol, 0, 4)
    for n in range(4):
        for c, m in enumerate((n - 1, n, n + 1)):
            want = vol[m] if 0 <= m < 4 else np.zeros((2, 3), np.float32)
            np.testing.assert_array_equal(got[n, ..., c], want)
    np.testing.assert_array_equal(rgb_slice_stack(vol, 1, 3), got[1:3])


def test_rgb_slices_input_kind_from_the_models_spec(volume):
    """A model carrying vgg16_fcn's spec is fed 3-slice stacks; its name plays no part (a
    plain model with the same name is fed the slice itself)."""
    from tfneuro.models import RegisteredModel

    inp = keras.Input((None, None, 3))
    out = keras.layers.Conv2D(2, 1, activation="softmax")(inp)
    model = RegisteredModel(inp, out, name="anything", registry_name="vgg16_fcn")
    named = keras.Model(inp, out, name="vgg16_fcn")
    with pytest.raises(InputError):
        predict_slices(named, volume, 2)  # "channels": 3 channels expected, volume has 1
    got = predict_slices(model, volume, 2, skip_empty=False)
    vol = volume[..., 0]
    want = []
    for n in range(vol.shape[2]):
        chans = [vol[:, :, m] if 0 <= m < vol.shape[2] else np.zeros(vol.shape[:2], np.float32)
                 for m in (n - 1, n, n + 1)]
        want.append(keras.ops.convert_to_numpy(model(np.stack(chans, -1)[None]))[0])
    np.testing.assert_allclose(got, np.stack(want, axis=2), atol=1e-6)


def test_two_arm_model(volume):
    from tfneuro.models.infinet import infinet

    keras.utils.set_random_seed(2)
    model = infinet(3, filters=4, depth=2)
    vol2 = np.concatenate([volume, volume[::-1] * 0.5], axis=-1)
    got = predict_slices(model, vol2, 0, skip_empty=False)
    want = np.stack([keras.ops.convert_to_numpy(model([vol2[n, ..., :1][None], vol2[n, ..., 1:][None]]))[0]
                     for n in range(vol2.shape[0])], axis=0)
    np.testing.assert_allclose(got, want, atol=1e-5)
    with pytest.raises(InputError):
        predict_slices(model, volume, 0)  # one channel for a two-arm model


def test_bad_input(models, volume):
    with pytest.raises(InputError):
        predict_slices(models["axial"], volume, 3)
    with pytest.raises(InputError):
        predict_slices(models["axial"], volume[0, :, :, 0], 0)
    with pytest.raises(InputError):
        predict_volume_views({"top": models["axial"]}, volume)
    with pytest.raises(InputError):
        predict_volume_views(models, volume, weights={"axial": 1.0})
    with pytest.raises(InputError):
        predict_slices(models["axial"], volume, 0, batch_size=0)
