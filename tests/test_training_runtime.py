"""tfneuro.training.runtime / flags: config validation, shared absl flags, XLA default,
mixed precision with checkpoints."""

import json

import numpy as np
import pytest
from absl import flags

import keras

from tfneuro.errors import InputError
from tfneuro.apps import flags as tflags
from tfneuro.training import loop, recipes
from tfneuro.training.runtime import TrainingConfig, is_chief, resolve_xla, setup_runtime


def test_config_validation(monkeypatch):
    TrainingConfig().validate()
    with pytest.raises(InputError, match="--strategy"):
        TrainingConfig(strategy="tpu").validate()
    with pytest.raises(InputError, match="--deterministic"):
        TrainingConfig(deterministic=True).validate()
    with pytest.raises(InputError, match="--epochs"):
        TrainingConfig(epochs=0).validate()
    with pytest.raises(InputError, match="--learning_rate"):
        TrainingConfig(learning_rate=0.0).validate()
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(InputError, match="TF_CONFIG"):
        TrainingConfig(strategy="multi_worker").validate()
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(InputError, match="TF_CONFIG: not valid JSON"):
        TrainingConfig(strategy="multi_worker").validate()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1"]},
                                                "task": {"type": "worker", "index": 3}}))
    with pytest.raises(InputError, match="not in the cluster"):
        TrainingConfig(strategy="multi_worker").validate()


def test_xla_default_off_on_cpu():
    # tests/conftest.py hides GPUs: the automatic default must be off
    assert resolve_xla(None) is False
    assert resolve_xla(True) is True and resolve_xla(False) is False
    assert TrainingConfig(xla=None).compile_kwargs() == {"jit_compile": False}
    assert TrainingConfig(xla=True).jit_compile is True


def test_flags_define_parse_and_config():
    fv = flags.FlagValues()
    tflags.define_training_flags(epochs=20, batch_size=8, learning_rate=1e-2, flag_values=fv)
    tflags.define_training_flags(flag_values=fv)  # second call: no-op, no DuplicateFlagError
    fv(["prog"])
    config = tflags.config_from_flags(fv)
    assert config == TrainingConfig(epochs=20, batch_size=8, learning_rate=1e-2)
    assert config.xla is None and config.strategy == "default"

    fv = flags.FlagValues()
    tflags.define_training_flags(flag_values=fv)
    fv(["prog", "--seed=3", "--deterministic", "--strategy=mirrored", "--noxla",
        "--mixed_precision", "--resume", "--epochs=5", "--notensorboard"])
    config = tflags.config_from_flags(fv)
    assert (config.seed, config.deterministic, config.strategy, config.xla,
            config.mixed_precision, config.resume, config.epochs, config.tensorboard) == \
        (3, True, "mirrored", False, "float16", True, 5, False)  # --mixed_precision: float16

    fv = flags.FlagValues()
    tflags.define_training_flags(flag_values=fv)
    with pytest.raises(flags.IllegalFlagValueError):
        fv(["prog", "--strategy=tpu"])
    fv = flags.FlagValues()
    tflags.define_training_flags(flag_values=fv)
    fv(["prog", "--deterministic"])
    with pytest.raises(InputError, match="--deterministic"):
        tflags.config_from_flags(fv)


def test_is_chief_single_process():
    import tensorflow as tf
    assert is_chief(None) and is_chief(tf.distribute.get_strategy())


def test_mixed_precision_training_and_checkpoint(tmp_path):
    try:
        strategy = setup_runtime(TrainingConfig(mixed_precision=True, seed=0))
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
        with strategy.scope():
            inp = keras.Input((4,))
            h = keras.layers.Dense(8, activation="relu")(inp)
            logits = keras.layers.Dense(3)(h)
            out = keras.layers.Activation("softmax", dtype="float32", name="softmax")(logits)
            model = keras.Model(inp, out)
            model.compile(optimizer=recipes.make_optimizer("paper003", steps_per_epoch=2),
                          loss="sparse_categorical_crossentropy")
        assert model.layers[1].compute_dtype == "float16"
        assert model.outputs[0].dtype == "float32"
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
        y = np.arange(8) % 3
        import tensorflow as tf
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
        loop.fit(model, ds, epochs=1, out_dir=tmp_path, seed=0, progress_bar=False)
        with strategy.scope():
            other = keras.models.clone_model(model)
            other.compile(optimizer=recipes.make_optimizer("paper003", steps_per_epoch=2),
                          loss="sparse_categorical_crossentropy")
        loop.restore_checkpoint(other, loop.latest_checkpoint(tmp_path))
        for a, b in zip(model.optimizer.variables, other.optimizer.variables):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(model.variables, other.variables):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    finally:
        keras.mixed_precision.set_global_policy("float32")
