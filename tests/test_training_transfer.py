"""tfneuro.training.transfer: replace_classifier, freezing strategies, two-stage fine-tuning."""

import numpy as np
import pytest

import keras

from tfneuro.errors import InputError
from tfneuro.training import loop, transfer

WEIGHTED = ["encoder_1", "encoder_2", "encoder_3", "encoder_4", "bottleneck", "decoder_4",
            "decoder_3", "decoder_2", "decoder_1", "aux_conv", "classifier"]


def tiny_unet(num_classes=3, levels=4):
    """A 4-level U-Net with the block naming convention, plus one layer in no block."""
    inp = keras.Input((2 ** levels, 2 ** levels, 1))
    h, skips = inp, []
    for i in range(1, levels + 1):
        h = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name=f"encoder_{i}")(h)
        skips.append(h)
        h = keras.layers.MaxPooling2D(name=f"encoder_{i}_pool")(h)
    h = keras.layers.Conv2D(2, 1, activation="relu", name="bottleneck")(h)
    for i in range(levels, 0, -1):
        h = keras.layers.UpSampling2D(name=f"decoder_{i}_up")(h)
        h = keras.layers.Concatenate(name=f"decoder_{i}_cat")([h, skips[i - 1]])
        h = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name=f"decoder_{i}")(h)
    h = keras.layers.Conv2D(2, 1, name="aux_conv")(h)  # in no block
    out = keras.layers.Conv2D(num_classes, 1, activation="softmax", name="classifier")(h)
    return keras.Model(inp, out, name="tiny_unet")


def _trainable(model):
    return {layer.name for layer in model.layers if layer.trainable_weights}


# expected sets written out by hand from the definitions in the transfer docstring
EXPECTED = {
    "none": set(),
    "shallow": {"bottleneck", "encoder_4", "decoder_4"},
    "medium": {"bottleneck", "encoder_4", "decoder_4", "encoder_3", "decoder_3"},
    "deep": {"bottleneck", "encoder_4", "decoder_4", "encoder_3", "decoder_3", "encoder_2",
             "decoder_2", "encoder_1", "decoder_1"},
    "full": set(WEIGHTED),
}


@pytest.mark.parametrize("strategy", sorted(EXPECTED))
def test_strategy_freezes_exactly_the_named_layers(strategy):
    model = tiny_unet()
    out = transfer.apply_strategy(model, strategy)
    assert out is model
    assert _trainable(model) == EXPECTED[strategy]


def test_deeper_model_deep_leaves_shallow_levels_frozen():
    model = tiny_unet(levels=6)
    transfer.apply_strategy(model, "deep")
    assert _trainable(model) == {"bottleneck"} | {f"{k}_{i}" for k in ("encoder", "decoder")
                                                  for i in (6, 5, 4, 3)}
    transfer.apply_strategy(model, "shallow", train_classifier=True)
    assert _trainable(model) == {"bottleneck", "encoder_6", "decoder_6", "classifier"}


def test_two_stage_stages():
    model = tiny_unet()
    transfer.apply_strategy(model, "two_stage", stage=1)
    assert _trainable(model) == {"classifier"}
    transfer.apply_strategy(model, "two_stage", stage=2)
    assert _trainable(model) == set(WEIGHTED)
    with pytest.raises(InputError, match="stage"):
        transfer.apply_strategy(model, "two_stage")


def test_frozen_layers_do_not_change_in_training():
    keras.utils.set_random_seed(0)
    model = tiny_unet()
    transfer.apply_strategy(model, "shallow")
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers}
    x = np.random.default_rng(0).normal(size=(4, 16, 16, 1)).astype("float32")
    y = (x[..., 0] > 0).astype("int32")
    model.fit(x, y, epochs=2, batch_size=2, verbose=0)
    changed = {name for name, ws in before.items()
               if any(not np.array_equal(a, b)
                      for a, b in zip(ws, model.get_layer(name).get_weights()))}
    assert changed == EXPECTED["shallow"]


def test_scratch_reinitialises_everything():
    model = tiny_unet()
    for layer in model.layers:  # make the "pre-trained" weights recognisable
        layer.set_weights([w + 1.0 for w in layer.get_weights()])
    new = transfer.apply_strategy(model, "scratch")
    assert new is not model and _trainable(new) == set(WEIGHTED)
    for name in WEIGHTED:
        kernel, bias = new.get_layer(name).get_weights()
        assert not np.array_equal(kernel, model.get_layer(name).get_weights()[0])
        np.testing.assert_array_equal(bias, 0.0)  # Conv2D bias initializer: zeros


def test_replace_classifier_keeps_every_other_weight():
    model = tiny_unet(num_classes=3)
    new = transfer.replace_classifier(model, 5)
    assert new.outputs[0].shape[-1] == 5
    assert new.get_layer("classifier").get_weights()[0].shape == (1, 1, 2, 5)
    for layer in model.layers:
        if layer.name == "classifier" or not layer.weights:
            continue
        for a, b in zip(layer.get_weights(), new.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(a, b)
    # independent copies: changing the new model leaves the old one alone
    w = new.get_layer("encoder_1").get_weights()
    new.get_layer("encoder_1").set_weights([v + 1 for v in w])
    assert not np.array_equal(model.get_layer("encoder_1").get_weights()[0],
                              new.get_layer("encoder_1").get_weights()[0])
    x = np.zeros((1, 16, 16, 1), "float32")
    assert new.predict(x, verbose=0).shape == (1, 16, 16, 5)
    with pytest.raises(InputError, match="no top-level layer"):
        transfer.replace_classifier(model, 5, layer_name="head")
    with pytest.raises(InputError, match="--num_classes"):
        transfer.replace_classifier(model, 0)


def test_nested_model_is_searched():
    inner = tiny_unet()
    inp = keras.Input((16, 16, 1))
    outer = keras.Model(inp, inner(inp), name="wrapper")
    transfer.apply_strategy(outer, "medium")
    assert _trainable(inner) == EXPECTED["medium"]
    assert len(outer.trainable_weights) == 2 * len(EXPECTED["medium"])


def test_missing_blocks_and_unknown_strategy():
    inp = keras.Input((4,))
    plain = keras.Model(inp, keras.layers.Dense(2, name="dense")(inp))
    with pytest.raises(InputError, match="bottleneck"):
        transfer.apply_strategy(plain, "shallow")
    with pytest.raises(InputError, match="unknown transfer strategy"):
        transfer.apply_strategy(plain, "partial")
    with pytest.raises(InputError, match="classifier"):
        transfer.apply_strategy(plain, "two_stage", stage=1)


def test_block_of():
    assert transfer.block_of("encoder_1_pool") == "encoder_1"
    assert transfer.block_of("encoder_12") == "encoder_12"
    assert transfer.block_of("enc0") == "encoder_1"
    assert transfer.block_of("dec3") == "decoder_4"
    assert transfer.block_of("pool_1") is None


def test_fit_two_stage_trains_classifier_first_then_all(tmp_path):
    keras.utils.set_random_seed(1)
    model = tiny_unet()
    x = np.random.default_rng(1).normal(size=(8, 16, 16, 1)).astype("float32")
    y = (x[..., 0] > 0).astype("int32")
    import tensorflow as tf
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    initial = [np.asarray(v) for v in model.variables]
    compiled = []

    def compile_fn(m, stage):
        compiled.append(stage)
        m.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")

    hist = transfer.fit_two_stage(model, compile_fn, ds, out_dir=tmp_path, stage1_epochs=2,
                                  stage2_epochs=1, seed=3, progress_bar=False)
    assert compiled == [1, 2] and list(hist["stage"]) == [1, 1, 2]
    stage1 = np.load(f"{loop.latest_checkpoint(tmp_path / 'stage1')}/variables.npz")
    names = [v.path for v in model.variables]
    for i, name in enumerate(names):
        same = np.array_equal(stage1[f"v{i}"], initial[i])
        assert same == (not name.startswith("classifier")), name
    final = [np.asarray(v) for v in model.variables]
    assert not np.array_equal(final[0], stage1["v0"])  # encoder_1 moved in stage 2
    # resuming a finished run does not train again
    compiled.clear()
    again = transfer.fit_two_stage(model, compile_fn, ds, out_dir=tmp_path, stage1_epochs=2,
                                   stage2_epochs=1, seed=3, resume=True, progress_bar=False)
    assert compiled == [2] and list(again["stage"]) == [2]
    for a, b in zip(final, model.variables):
        np.testing.assert_array_equal(a, np.asarray(b))


def test_quicknat_follows_the_convention():
    models = pytest.importorskip("tfneuro.models")
    q = models.get("quicknat", num_classes=4, input_shape=(32, 32, 1))
    transfer.apply_strategy(q, "medium")
    assert _trainable(q) == {"bottleneck", "encoder_4", "decoder_4", "encoder_3", "decoder_3"}
    transfer.apply_strategy(q, "two_stage", stage=1)
    assert _trainable(q) == {"classifier"}
    new = transfer.replace_classifier(q, 9)
    assert new.predict(np.zeros((1, 32, 32, 1), "float32"), verbose=0).shape == (1, 32, 32, 9)
    for a, b in zip(q.get_layer("encoder_2").get_weights(),
                    new.get_layer("encoder_2").get_weights()):
        np.testing.assert_array_equal(a, b)
