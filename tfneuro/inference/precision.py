"""Running a Keras model at a precision (float32, bfloat16, float16) without touching it.

``precision`` and what ``"auto"`` means: :mod:`tfneuro.utils.precision`. A model runs at
bfloat16 (float16) as a COPY whose layers carry the Keras ``mixed_bfloat16``
(``mixed_float16``) dtype policy: weights stay float32 and are cast when a layer runs,
convolutions and activations compute in the low precision. The caller's model, its layers
and the global Keras policy are never changed. What stays float32 (issue 17): every
``Softmax`` layer and every layer that produces an output of a functional model in the tree
(tfneuro's models end in a float32 softmax, ``tfneuro.models._common.classifier_head``), so
probabilities are float32; view aggregation, window blending and argmax happen on those
float32 probabilities in :mod:`tfneuro.inference` and in the exported graph. Batch
normalisation upcasts to float32 internally (Keras).

:func:`model_at_precision` keeps one copy per (model, precision) while the model lives
(``weakref``), so Keras traces the copy's predict function once; the copy's weights are
refreshed from the model on every call (a ``get_weights``/``set_weights``: milliseconds for
tfneuro's models), so a model trained further is never predicted with stale weights.
:func:`set_model_precision` changes a model IN PLACE: use it on a copy you own (the export
does, :mod:`tfneuro.export.savedmodel`). Works in a ``tf.function`` / SavedModel graph and
under ``KERAS_BACKEND=jax`` (dtype policies are backend-neutral).
"""

from __future__ import annotations

import threading
import warnings
import weakref

import keras

from tfneuro.errors import InputError
from tfneuro.training.saving import copy_model
from tfneuro.utils.precision import KERAS_POLICIES, resolve_precision

__all__ = ["model_at_precision", "model_precision", "set_model_precision",
           "float32_layers"]

_COPIES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _layers(model) -> list:
    """Every layer below ``model`` (nested layers and models included), without input layers."""
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if not isinstance(layer, keras.layers.InputLayer)]


def float32_layers(model) -> set:
    """``id`` of the layers that stay float32 at any precision: ``Softmax`` layers and the
    layers producing an output of ``model`` or of a functional model nested in it."""
    keep = set()
    for m in [model] + _layers(model):
        if isinstance(m, keras.layers.Softmax):
            keep.add(id(m))
        if not isinstance(m, keras.Model):
            continue
        try:
            outputs = m.outputs
        except (AttributeError, ValueError):  # subclassed models have no symbolic outputs
            continue
        for t in keras.tree.flatten(outputs or []):
            history = getattr(t, "_keras_history", None)
            if history is not None:
                keep.add(id(history[0]))
    return keep


def model_precision(model) -> str:
    """The precision ``model`` computes at: ``"float16"`` or ``"bfloat16"`` when a layer
    (other than the float32 ones, :func:`float32_layers`) computes in it, else ``"float32"``."""
    keep = float32_layers(model)
    dtypes = {layer.compute_dtype for layer in _layers(model) if id(layer) not in keep}
    for p in ("float16", "bfloat16"):
        if p in dtypes:
            return p
    return "float32"


def set_model_precision(model, precision: str):
    """Give every layer of ``model`` the dtype policy of ``precision`` (IN PLACE; returns
    ``model``). The layers of :func:`float32_layers` get ``float32``.

    Args:
        model: a Keras model you own (e.g. :func:`tfneuro.training.saving.copy_model`).
        precision: one of :data:`tfneuro.utils.precision.PRECISIONS` (``"auto"`` resolved).
    """
    policy = KERAS_POLICIES[resolve_precision(precision)]
    keep = float32_layers(model)
    for layer in _layers(model):
        layer.dtype_policy = "float32" if id(layer) in keep else policy
    if hasattr(model, "predict_function"):
        model.predict_function = None  # traced under the old policies
    return model


def model_at_precision(model, precision: str = "auto"):
    """``model`` when it already computes at ``precision``, else a copy that does.

    Args:
        model: a Keras model (not changed).
        precision: one of :data:`tfneuro.utils.precision.PRECISIONS`.

    Returns:
        ``model`` itself, or the cached copy at that precision with ``model``'s current
        weights (see the module docstring).

    Raises:
        InputError: an unknown ``precision``, or an explicit one for a model that cannot be
            copied (with ``"auto"`` such a model runs as it is, with a warning).
    """
    p = resolve_precision(precision)
    if model_precision(model) == p:
        return model
    with _LOCK:
        copies = _COPIES.setdefault(model, {})
        copy = copies.get(p)
        if copy is not None:
            copy.set_weights(model.get_weights())
            return copy
        try:
            copy = copy_model(model)
        except Exception as e:  # noqa: BLE001 - a model Keras cannot rebuild from its config
            why = f"model {model.name!r} cannot be copied from its config ({type(e).__name__})"
            if precision != "auto":
                raise InputError("precision", f"{why}, so it cannot run at {p}; give it "
                                              f"get_config/from_config or use float32") from e
            warnings.warn(f"{why}; it runs at its own precision", stacklevel=3)
            return model
        copies[p] = copy = set_model_precision(copy, p)
        if getattr(model, "_jit_compile", None) is not None:
            copy.jit_compile = model.jit_compile
    return copy
