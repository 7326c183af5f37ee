"""Tests of the contract helper ``tests/helpers.py:check_keras_contract`` itself.

Each broken layer below breaks one promise (a forgotten config argument, a lying symbolic
shape or dtype, a class Keras cannot load) and must make the helper fail; the well-behaved
objects (one layer, a two-input model with a dict output, a layer taking a list and returning
a tuple) must pass. Each failure test says how it was seen failing: the check it relies on was
switched off in ``helpers.py`` (one text replacement at a time, then restored) and the
test run.
"""

import keras
import numpy as np
import pytest

from helpers import check_keras_contract
from tfneuro.models._common import RegisteredModel

X = np.random.default_rng(0).normal(size=(2, 5, 4)).astype(np.float32)


@keras.saving.register_keras_serializable(package="test_helpers")
class Scale(keras.layers.Layer):
    """``factor * Dense(units)(x)``, with a complete ``get_config`` (the well-behaved layer)."""

    def __init__(self, units=3, factor=2.0, impl="fast", **kwargs):
        super().__init__(**kwargs)
        # units and factor private, impl public: see _plain_attributes in helpers.py
        self._units, self._factor, self.impl = units, float(factor), impl
        self.dense = keras.layers.Dense(units)

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, x):
        return self._factor * self.dense(x)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self._units)

    def get_config(self):
        return {**super().get_config(), "units": self._units, "factor": self._factor,
                "impl": self.impl}


def _without(config, key):
    return {k: v for k, v in config.items() if k != key}


def _forgetting(key):
    """A registered subclass of :class:`Scale` whose ``get_config`` leaves out ``key``."""
    name = "Forgets" + key.capitalize()

    def get_config(self):
        return _without(Scale.get_config(self), key)

    cls = type(name, (Scale,), {"get_config": get_config})
    return keras.saving.register_keras_serializable(package="test_helpers", name=name)(cls)


ForgetsFactor, ForgetsImpl, ForgetsUnits = (_forgetting(k) for k in ("factor", "impl", "units"))


@keras.saving.register_keras_serializable(package="test_helpers")
class LyingShape(Scale):
    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self._units + 1)


class Unregistered(Scale):
    """Not registered with Keras: a ``.keras`` file of it cannot be loaded."""


@keras.saving.register_keras_serializable(package="test_helpers")
class MaxAndArgmax(keras.layers.Layer):
    """``(max, argmax)`` over the last axis: a tuple output with an int32 member."""

    def call(self, x):
        return keras.ops.max(x, axis=-1), keras.ops.cast(keras.ops.argmax(x, axis=-1), "int32")

    def compute_output_spec(self, x):
        return (keras.KerasTensor(x.shape[:-1], x.dtype),
                keras.KerasTensor(x.shape[:-1], "int32"))


@keras.saving.register_keras_serializable(package="test_helpers")
class LyingDtype(MaxAndArgmax):
    def compute_output_spec(self, x):
        return (keras.KerasTensor(x.shape[:-1], x.dtype), keras.KerasTensor(x.shape[:-1], x.dtype))


@keras.saving.register_keras_serializable(package="test_helpers")
class LyingStructure(MaxAndArgmax):
    def compute_output_spec(self, x):
        return keras.KerasTensor(x.shape[:-1], x.dtype)


@keras.saving.register_keras_serializable(package="test_helpers")
class ForgetsMultiple(RegisteredModel):
    def get_config(self):
        return _without(super().get_config(), "multiple")


def test_well_behaved_layer_passes_and_returns_outputs():
    layer = Scale(units=3, factor=2.0)
    out = check_keras_contract(layer, X)
    # the returned outputs are the layer's own: factor * (x W + b), computed here in numpy
    kernel, bias = (w.numpy() for w in layer.dense.weights)
    np.testing.assert_allclose(out, 2.0 * (X @ kernel + bias), rtol=1e-5, atol=1e-6)


def test_factory_is_called():
    out = check_keras_contract(lambda: Scale(units=4), X)
    assert out.shape == (2, 5, 4)


def test_two_input_model_with_dict_output_passes():
    a, b = keras.Input((5, 4), name="a"), keras.Input((5, 2), name="b")
    joint = keras.layers.Concatenate()([a, b])
    model = keras.Model([a, b], {"seg": keras.layers.Dense(3, activation="softmax")(joint),
                                 "age": keras.layers.Dense(1)(keras.layers.Flatten()(joint))})
    xb = np.ones((2, 5, 2), np.float32)
    out = check_keras_contract(model, [X, xb])
    assert set(out) == {"seg", "age"}
    assert out["seg"].shape == (2, 5, 3) and out["age"].shape == (2, 1)


def test_tuple_output_with_int_member_passes():
    values, indices = check_keras_contract(MaxAndArgmax(), X)
    np.testing.assert_array_equal(values, X.max(-1))
    np.testing.assert_array_equal(indices, X.argmax(-1))
    assert indices.dtype == np.int32


def test_forgotten_argument_that_changes_outputs_fails():
    """Seen failing with the outputs comparison of the config round trip switched off: the
    ``.keras`` check still caught the layer, so ``match`` failed ("Regex pattern did not
    match", actual message "... .keras save/load: output ...")."""
    with pytest.raises(AssertionError, match="config round trip, same weights"):
        check_keras_contract(ForgetsFactor(factor=3.0), X)


def test_forgotten_argument_that_leaves_outputs_alone_fails():
    """``impl`` changes no output; only the attribute comparison sees it forgotten.

    Seen failing with the attribute comparison in ``_assert_same_config`` switched off:
    "DID NOT RAISE"."""
    with pytest.raises(AssertionError, match=r"attributes differ.*impl"):
        check_keras_contract(ForgetsImpl(impl="slow"), X)


def test_forgotten_argument_that_changes_weight_shapes_fails():
    """Seen failing with the ``set_weights`` step not wrapped in ``_check``: a bare
    ValueError ("weight shape (4, 3) is not compatible with provided weight shape (4, 5)")
    came out instead of the AssertionError naming the step."""
    with pytest.raises(AssertionError, match="set_weights"):
        check_keras_contract(ForgetsUnits(units=5), X)


def test_lying_symbolic_shape_fails():
    """Seen failing with both symbolic comparisons (``_assert_specs``) switched off: "DID NOT
    RAISE"."""
    with pytest.raises(AssertionError, match=r"symbolically \(2, 5, 4\)"):
        check_keras_contract(LyingShape(units=3), X)


def test_lying_symbolic_dtype_fails():
    """Seen failing with the dtype comparison removed from ``_assert_specs``: "DID NOT
    RAISE"."""
    with pytest.raises(AssertionError, match=r"output\[1\] is symbolically .* float32"):
        check_keras_contract(LyingDtype(), X)


def test_lying_symbolic_structure_fails():
    """Seen failing with the structure comparison removed from ``_pairs`` (zip stopped at
    the shorter structure): "DID NOT RAISE"."""
    with pytest.raises(AssertionError, match="output structure differs"):
        check_keras_contract(LyingStructure(), X)


def test_class_keras_cannot_load_fails():
    """Seen failing with the ``.keras`` check (``_check_keras_file``) switched off: "DID NOT
    RAISE"."""
    with pytest.raises(AssertionError, match=r"\.keras load"):
        check_keras_contract(Unregistered(), X)


def test_model_whose_config_forgets_its_multiple_fails():
    """A model built with ``multiple=8`` comes back with 1 when ``get_config`` forgets it.

    Seen failing with the attribute comparison in ``_assert_same_config`` switched off:
    "DID NOT RAISE"."""
    inp = keras.Input((None, 4))
    model = ForgetsMultiple(inp, keras.layers.Dense(2)(inp), registry_name="unet3d", multiple=8)
    with pytest.raises(AssertionError, match=r"attributes differ.*multiple.*\(8, 1\)"):
        check_keras_contract(model, X)


def test_forgotten_argument_of_a_layer_inside_a_model_fails():
    """The model's own config and attributes round-trip; only the inner layer's attributes
    show that its ``get_config`` forgot ``impl``.

    Seen failing with the attribute comparison limited to the outer object (the loop over
    ``_flatten_layers`` cut to its first item): "DID NOT RAISE"."""
    inp = keras.Input((5, 4))
    model = keras.Model(inp, ForgetsImpl(impl="slow", name="inner")(inp))
    with pytest.raises(AssertionError, match=r"inner layer 'inner'.*impl"):
        check_keras_contract(model, X)
