"""Running a Keras model at a precision (float32, bfloat16, float16) without touching it.

``precision`` and what ``"auto"`` means: :mod:`tfneuro.utils.precision`. A model runs at
bfloat16 (float16) as a COPY whose layers carry the Keras ``mixed_bfloat16``
(``mixed_float16``) dtype policy: weights stay float32 and are cast when a layer runs,
convolutions and activations compute in the low precision. The caller's model, its layers
and the global Keras policy are never changed.

What stays float32 (:func:`float32_layers`):

* every ``Softmax`` layer and every layer that produces a model output (tfneuro's models end
  in a float32 softmax, ``tfneuro.models._common.classifier_head``), so probabilities are
  float32; view aggregation, window blending and argmax happen on those float32
  probabilities in :mod:`tfneuro.inference` and in the exported graph (issue 17);
* the INPUT BLOCK: the layers from the model's inputs up to and including the first layer
  that holds a kernel, on every path (QuickNAT's and InfiNet's first dense blocks, the 3D
  U-Net's first two convolutions, VGG's mean subtraction and first convolution). Measured on
  a trained 8-filter QuickNAT (``docs/precision.md``): with the input block in bfloat16,
  0.5-0.9 % of the brain voxels changed label against float32 (rounding the normalised
  input to bfloat16's 8-bit mantissa alone changed 0.3 %); with it in float32, 0.3-0.4 %;
  its cost was within the timing noise (the first block holds ~13 % of QuickNAT's MACs).

Batch normalisation upcasts to float32 internally (Keras).

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


def _graph(model):
    """``(inputs, outputs)`` symbolic tensors of a functional (or Sequential) model, else
    ``None`` (subclassed models have no graph)."""
    if not isinstance(model, keras.Model):
        return None
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        return None
    return (keras.tree.flatten(inputs), keras.tree.flatten(outputs)) if inputs and outputs else None


def _producer(tensor):
    history = getattr(tensor, "_keras_history", None)
    return None if history is None else history[0]


def _outermost_graphs(layer) -> list:
    """The functional models of the tree that no other functional model contains."""
    if _graph(layer) is not None:
        return [layer]
    return [g for child in layer._flatten_layers(include_self=False, recursive=False)
            for g in _outermost_graphs(child)]


def _has_kernel(layer) -> bool:
    return any(getattr(sub, "kernel", None) is not None
               for sub in layer._flatten_layers(include_self=True, recursive=True))


def _input_block(model) -> list:
    """Top-level layers of ``model``'s graph from its inputs up to and including the first
    layer holding a kernel on every path (see the module docstring). A layer joins when ALL
    its inputs come from the block (an input, or a member without a kernel): a layer that
    also reads deeper features (VGG's side outputs take the input only for its shape) does
    not."""
    block = {id(_producer(t)) for t in _graph(model)[0]}
    members = {id(layer) for layer in model.layers} | block
    found, changed = [], True
    while changed:
        changed = False
        for layer in model.layers:
            if id(layer) in block or isinstance(layer, keras.layers.InputLayer):
                continue
            # nodes of this graph only (a layer reused from another model has more)
            parents = [p for node in layer._inbound_nodes
                       for p in map(_producer, keras.tree.flatten(node.input_tensors))
                       if p is not None and id(p) in members]
            if parents and all(id(p) in block and (p not in found or not _has_kernel(p))
                               for p in parents):
                block.add(id(layer))
                found.append(layer)
                changed = True
    return found


def float32_layers(model) -> set:
    """``id`` of the layers that stay float32 at any precision (module docstring): softmax
    layers, the layers producing a model output, and the input block of the outermost
    functional model(s), with every layer nested in those."""
    keep = [m for m in [model] + _layers(model) if isinstance(m, keras.layers.Softmax)]
    for graph in _outermost_graphs(model):
        keep += [_producer(t) for t in _graph(graph)[1]] + _input_block(graph)
    return {id(sub) for layer in keep if layer is not None
            for sub in layer._flatten_layers(include_self=True, recursive=True)}


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
