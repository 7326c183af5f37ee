"""The Keras contract every tfneuro layer and model test checks: :func:`check_keras_contract`.

After keras-hub's ``TestCase.run_layer_test`` / ``run_serialization_test`` /
``run_model_saving_test`` (``keras_hub/src/tests/test_case.py``; ideas only, no code taken).
DESIGN.md "Conventions": every layer and model has ``get_config`` and survives a ``.keras``
save/load with equal outputs. One call checks, for a layer or a model and concrete inputs:

1. config round trip: ``type(obj).from_config(obj.get_config())`` has the same config (compared
   as sorted JSON, as a ``.keras`` file stores it), the same layers inside, and the same plain
   public attributes on the object and on every non-Keras layer inside it (so an argument that
   ``get_config`` forgets shows even when the outputs do not depend on it; Keras' run-time
   state such as ``compiled`` is left out), and, given the same weights, the same outputs;
2. ``.keras`` save/load (``tfneuro.training.saving.save_keras_model`` /
   ``load_keras_model``, so tfneuro's serializables are registered; a layer is saved inside a
   functional model around it): the same class, config and attributes come back, with the same
   outputs;
3. symbolic shapes: ``compute_output_spec`` on ``keras.KerasTensor`` inputs, and a symbolic call
   of a fresh copy (what a functional model does), give the eager outputs' shapes and dtypes.

Inputs and outputs may be one array, a list/tuple, or a dict (multi-input models, layers such as
``MaxUnpooling2D`` that take a list, ``age_unet3d``'s dict output). A failed check raises an
``AssertionError`` that names the check and the object. ``tests/test_helpers.py`` shows each
check failing on a deliberately broken layer.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile

import keras
import numpy as np

from tfneuro.training.saving import load_keras_model, save_keras_model

__all__ = ["check_keras_contract"]

_PLAIN = (bool, int, float, str, type(None))
#: Keras' run-time state, not construction arguments (set by compile/fit/predict).
_RUNTIME = ("compiled", "stop_training", "stop_predicting", "stop_evaluating")


def check_keras_contract(layer_or_factory, inputs, *, atol=1e-6, rtol=1e-6, call_kwargs=None):
    """Check the config round trip, the ``.keras`` round trip and the symbolic shapes.

    Args:
        layer_or_factory: a ``keras.layers.Layer`` or ``keras.Model`` (built or not), or a
            function of no arguments that returns one.
        inputs: numpy array, list/tuple of arrays, or dict of arrays (with the batch axis);
            passed to the object as its one positional argument.
        atol, rtol: tolerance for "equal outputs" (the same weights and the same graph).
        call_kwargs: extra keyword arguments for every call (e.g. ``{"training": False}``).

    Returns:
        The eager outputs of the object on ``inputs`` (numpy, same structure), for further
        assertions.

    Raises:
        AssertionError: naming the check that failed.
    """
    obj = layer_or_factory if isinstance(layer_or_factory, keras.layers.Layer) \
        else layer_or_factory()
    what = f"{type(obj).__name__} {obj.name!r}"
    kw = dict(call_kwargs or {})
    with _check("eager call", what):
        outputs = _numpy(obj(inputs, **kw))
    clone = _check_config_round_trip(obj, inputs, outputs, kw, what, atol, rtol)
    _check_symbolic(obj, clone, inputs, outputs, kw, what)
    _check_keras_file(obj, inputs, outputs, kw, what, atol, rtol)
    return outputs


# --------------------------------------------------------------------------------- the checks
def _check_config_round_trip(obj, inputs, outputs, kw, what, atol, rtol):
    with _check("config round trip (get_config -> from_config)", what):
        config = obj.get_config()
        clone = type(obj).from_config(config)
    if not isinstance(obj, keras.Model):  # a functional clone is built; a layer is not
        with _check("config round trip (symbolic build of the clone)", what):
            clone(_symbolic(inputs), **kw)
    _assert_same_config(obj, clone, f"{what}: config round trip")
    with _check("config round trip (set_weights from the original)", what):
        clone.set_weights(obj.get_weights())
    with _check("config round trip (call of the clone)", what):
        again = _numpy(clone(inputs, **kw))
    _assert_close(again, outputs, atol, rtol, f"{what}: config round trip, same weights")
    return clone


def _check_symbolic(obj, clone, inputs, outputs, kw, what):
    sym = _symbolic(inputs)
    with _check("symbolic shapes (compute_output_spec)", what):
        spec = obj.compute_output_spec(sym, **kw)
    _assert_specs(spec, outputs, f"{what}: compute_output_spec")
    if not isinstance(obj, keras.Model):
        with _check("symbolic shapes (call on KerasTensors)", what):
            called = clone(sym, **kw)
        _assert_specs(called, outputs, f"{what}: symbolic call")


def _check_keras_file(obj, inputs, outputs, kw, what, atol, rtol):
    if isinstance(obj, keras.Model):
        model = obj
    else:  # a layer is saved inside a functional model around it
        sym = keras.tree.map_structure(lambda x: keras.Input(shape=np.shape(x)[1:],
                                                             dtype=str(np.asarray(x).dtype)),
                                       inputs)
        model = keras.Model(sym, obj(sym, **kw), name="contract_wrapper")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "contract.keras")
        with _check(".keras save", what):
            save_keras_model(model, path)
        with _check(".keras load (tfneuro.training.saving.load_keras_model)", what):
            loaded = load_keras_model(path)
    got = loaded if isinstance(obj, keras.Model) else loaded.get_layer(obj.name)
    if type(got) is not type(obj):
        raise AssertionError(f"{what}: .keras load gave a {type(got).__name__}")
    _assert_same_config(obj, got, f"{what}: .keras load")
    with _check(".keras load (call of the loaded object)", what):
        again = _numpy(got(inputs, **kw))
    _assert_close(again, outputs, atol, rtol, f"{what}: .keras save/load")


# --------------------------------------------------------------------------------- comparisons
@contextlib.contextmanager
def _check(step, what):
    """Turn an error inside ``step`` into an AssertionError naming the step."""
    try:
        yield
    except AssertionError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure of the step fails the contract
        raise AssertionError(f"{what}: {step} failed: {type(e).__name__}: {e}") from e


def _canonical(config):
    """A config as a ``.keras`` file stores it: JSON, keys sorted, tuples as lists."""
    return json.dumps(config, sort_keys=True, default=_json_default)


def _json_default(value):
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    return keras.saving.serialize_keras_object(value)


def _plain_attributes(obj, skip=()):
    """Public attributes holding plain values (numbers, strings, None, tuples of them)."""
    out = {}
    for name, value in vars(obj).items():
        if name.startswith("_") or name in skip:
            continue
        if isinstance(value, (list, tuple)) and all(isinstance(v, _PLAIN) for v in value):
            value = tuple(value)
        elif not isinstance(value, _PLAIN):
            continue
        out[name] = value
    return out


def _assert_same_config(obj, other, where):
    """Same config, and the same plain attributes on the object and on every non-Keras layer
    inside it (paired in ``_flatten_layers`` order). Inner layers may differ in their
    auto-generated names and in ``built`` (a weightless inner layer is built when first
    called); Keras' own classes keep private state in public attributes (quantization flags),
    and their arguments are in the config of the layer or model around them."""
    want, got = _canonical(obj.get_config()), _canonical(other.get_config())
    if want != got:
        raise AssertionError(f"{where}: config differs\n  original: {want}\n  restored: {got}")
    ours, theirs = list(obj._flatten_layers()), list(other._flatten_layers())
    if [type(a) for a in ours] != [type(b) for b in theirs]:
        names = [[type(x).__name__ for x in layers] for layers in (ours, theirs)]
        raise AssertionError(f"{where}: the layers inside differ: {names[0]} vs {names[1]}")
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if i and type(a).__module__.startswith("keras."):
            continue
        skip = _RUNTIME + (("name", "built") if i else ())
        want, got = (_plain_attributes(x, skip) for x in (a, b))
        diff = {k: (want.get(k), got.get(k)) for k in set(want) | set(got)
                if want.get(k) != got.get(k)}
        if diff:
            inner = f" (inner layer {a.name!r})" if i else ""
            raise AssertionError(f"{where}: attributes differ{inner} (original, restored): {diff}")


def _flat(structure, name="output"):
    """``[(name, leaf)]`` of nested outputs; names carry dict keys and list positions, so two
    structures are compared key by key and position by position."""
    if isinstance(structure, dict):
        return [item for key in sorted(structure)
                for item in _flat(structure[key], f"{name}[{key!r}]")]
    if isinstance(structure, (list, tuple)):
        return [item for i, s in enumerate(structure) for item in _flat(s, f"{name}[{i}]")]
    return [(name, structure)]


def _pairs(got, want, where):
    a, b = _flat(got), _flat(want)
    if [n for n, _ in a] != [n for n, _ in b]:
        raise AssertionError(f"{where}: output structure differs: {[n for n, _ in a]} vs "
                             f"{[n for n, _ in b]}")
    return [(name, x, y) for (name, x), (_, y) in zip(a, b)]


def _assert_close(got, want, atol, rtol, where):
    for name, x, y in _pairs(got, want, where):
        np.testing.assert_allclose(x, y, atol=atol, rtol=rtol, err_msg=f"{where}: {name}")


def _assert_specs(specs, outputs, where):
    for name, spec, value in _pairs(specs, outputs, where):
        shape, dtype = tuple(spec.shape), keras.backend.standardize_dtype(spec.dtype)
        if shape != value.shape or dtype != keras.backend.standardize_dtype(value.dtype):
            raise AssertionError(f"{where}: {name} is symbolically {shape} {dtype} but eagerly "
                                 f"{value.shape} {value.dtype}")


def _symbolic(inputs):
    return keras.tree.map_structure(
        lambda x: keras.KerasTensor(np.shape(x), dtype=str(np.asarray(x).dtype)), inputs)


def _numpy(outputs):
    return keras.tree.map_structure(keras.ops.convert_to_numpy, outputs)
