"""Tests for the 3D models: unet3d, res_unet3d, age_unet3d, resnet3d_50/101/152."""

import numpy as np
import keras
import pytest

from helpers import check_keras_contract
from tfneuro.errors import InputError
from tfneuro.models import get
from tfneuro.models.resnet3d import make_classifier_input


def test_unet3d_shapes_contract_and_prior_channel():
    """Shapes, and the contract (``tests/helpers.py``).

    Seen failing with ``multiple`` dropped from ``RegisteredModel.get_config``: "config round
    trip: attributes differ (original, restored): {'multiple': (8, 1)}"."""
    model = get("unet3d", base_filters=4, input_shape=(None, None, None, 2))
    x = np.random.default_rng(0).normal(size=(1, 16, 24, 8, 2)).astype("float32")
    y = check_keras_contract(model, x)
    assert y.shape == (1, 16, 24, 8, 2)
    np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-5)
    # Çiçek layout: level l has base*2**l then base*2**(l+1) channels; 3 poolings for depth 4
    assert model.get_layer("enc0").compute_output_shape((1, 32, 32, 32, 2))[-1] == 8
    assert model.get_layer("enc3").compute_output_shape((1, 8, 8, 8, 16))[-1] == 64


def test_unet3d_rejects_non_multiple_size():
    with pytest.raises(InputError):
        get("unet3d", input_shape=(36, 32, 32, 1))
    with pytest.raises(InputError):
        get("unet3d", num_classes=1)


def test_res_unet3d_training_list_and_inference_tensor():
    """Shapes by hand, and the contract (``tests/helpers.py``) in both modes (a list of heads
    in training, one tensor otherwise).

    Seen failing with ``training`` ignored in ``DeepSupervisionModel.compute_output_spec``
    (always ``False``): the training-mode contract failed with "compute_output_spec: output
    structure differs: ['output'] vs ['output[0]', 'output[1]']"."""
    model = get("res_unet3d", base_filters=2, depth=4)  # 3 decoder levels -> 1 low-res output
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 8, 2)).astype("float32")
    train_out = model(x, training=True)
    assert isinstance(train_out, list)
    assert [tuple(t.shape) for t in train_out] == [(2, 8, 8, 8, 10), (2, 4, 4, 4, 10)]
    assert tuple(model(x).shape) == (2, 8, 8, 8, 10)
    assert model.predict(x, verbose=0).shape == (2, 8, 8, 8, 10)
    deeper = get("res_unet3d", base_filters=2, depth=5)
    x16 = np.zeros((1, 16, 16, 16, 2), "float32")
    assert [tuple(t.shape)[1:4] for t in deeper(x16, training=True)] == [(16,) * 3, (8,) * 3, (4,) * 3]
    check_keras_contract(model, x)
    heads = check_keras_contract(model, x, call_kwargs={"training": True})
    assert [h.shape for h in heads] == [(2, 8, 8, 8, 10), (2, 4, 4, 4, 10)]
    inf = model.inference_model()
    np.testing.assert_allclose(inf.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_res_unet3d_fits_with_deep_supervision_loss():
    from tfneuro.losses import DeepSupervisionLoss, DiceCELoss

    model = get("res_unet3d", num_classes=3, base_filters=2, depth=4)
    model.compile(optimizer=keras.optimizers.SGD(1e-2), loss=DeepSupervisionLoss(DiceCELoss()))
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 8, 8, 8, 2)).astype("float32")
    y = rng.integers(0, 3, size=(2, 8, 8, 8)).astype("int32")
    hist = model.fit(x, y, epochs=2, batch_size=2, verbose=0)
    assert np.all(np.isfinite(hist.history["loss"]))
    # evaluation runs in inference mode (one output)
    assert np.isfinite(model.evaluate(x, y, verbose=0))


def test_res_unet3d_plain_loss_with_deep_supervision_is_an_input_error():
    model = get("res_unet3d", num_classes=3, base_filters=2, depth=4)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x = np.zeros((1, 16, 16, 16, 2), "float32")
    with pytest.raises(InputError):
        model.fit(x, np.zeros((1, 16, 16, 16), "int32"), verbose=0)


def test_age_unet3d_scalar_age_and_training():
    from tfneuro.losses import DeepSupervisionLoss, DiceCELoss
    from tfneuro.models.res_unet3d import AGE_LOSS_WEIGHT

    model = get("age_unet3d", num_classes=3, base_filters=2, depth=4, age_hidden=(4,))
    x = np.random.default_rng(3).normal(size=(2, 8, 8, 8, 2)).astype("float32")
    out = model.predict(x, verbose=0)
    assert set(out) == {"segmentation", "age"}
    assert out["age"].shape == (2, 1) and out["segmentation"].shape == (2, 8, 8, 8, 3)
    tr = model(x, training=True)
    assert isinstance(tr["segmentation"], list) and tuple(tr["age"].shape) == (2, 1)
    model.compile(optimizer=keras.optimizers.SGD(1e-3),
                  loss={"segmentation": DeepSupervisionLoss(DiceCELoss()), "age": "mse"},
                  loss_weights={"segmentation": 1.0, "age": AGE_LOSS_WEIGHT})
    y = {"segmentation": np.zeros((2, 8, 8, 8), "int32"), "age": np.array([[40.0], [30.0]])}
    hist = model.fit(x, y, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])
    # the contract (tests/helpers.py) of the trained, compiled model: dict output, and in
    # training a dict holding the list of segmentation heads
    check_keras_contract(model, x)
    out = check_keras_contract(model, x, call_kwargs={"training": True})
    assert [o.shape for o in out["segmentation"]] == [(2, 8, 8, 8, 3), (2, 4, 4, 4, 3)]


def _expected_resnet_params(blocks, c_in, f, k):
    """Parameter count of a 3D bottleneck ResNet from its definition (BN: 4 per channel)."""
    n = 7 ** 3 * c_in * f + 4 * f  # stem conv (no bias) + BN
    ch = f
    for s, nb in enumerate(blocks):
        w = f * 2 ** s
        for b in range(nb):
            n += ch * w + 4 * w + 27 * w * w + 4 * w + w * 4 * w + 4 * 4 * w
            if b == 0:
                n += ch * 4 * w + 4 * 4 * w  # projection shortcut
            ch = 4 * w
    return n + ch * k + k


def test_resnet3d_param_counts_rise_and_match_definition():
    counts = {}
    for depth, blocks in ((50, (3, 4, 6, 3)), (101, (3, 4, 23, 3)), (152, (3, 8, 36, 3))):
        model = get(f"resnet3d_{depth}", input_shape=(16, 16, 16, 3), base_filters=4)
        counts[depth] = model.count_params()
        assert counts[depth] == _expected_resnet_params(blocks, 3, 4, 6)
    assert counts[50] < counts[101] < counts[152]


def test_resnet3d_output_last_conv_and_contract():
    model = get("resnet3d_50", base_filters=4)
    img = np.random.default_rng(4).normal(size=(16, 16, 16)).astype("float32")
    mask = (img > 0.5).astype("float32")
    x = make_classifier_input(img, mask)
    assert x.shape == (16, 16, 16, 3)
    np.testing.assert_array_equal(x[..., 2], img * mask)
    probs = model.predict(x[None], verbose=0)
    assert probs.shape == (1, 6)
    assert model.get_layer("last_conv").output.shape[-1] == 4 * 4 * 8
    check_keras_contract(model, x[None])  # tests/helpers.py
    with pytest.raises(InputError):
        make_classifier_input(img, mask[:-1])
