"""Batch normalisation folded into the convolution before it, for inference graphs.

At inference a BatchNormalization layer is a per-channel affine map,
``y = gamma * (x - mean) / sqrt(var + eps) + beta``. When ``x`` is the output of a
convolution (no nonlinearity between them) with kernel ``W`` and bias ``b``, the pair equals one
convolution with

    W' = W * s        (s = gamma / sqrt(var + eps), per output channel)
    b' = (b - mean) * s + beta

so the exported graph runs one conv (+ bias) instead of a conv and two element-wise passes
over its output (four with the float32 up- and down-casts Keras' BatchNormalization does
under a bfloat16 policy). Computed in float64, stored in the kernel's dtype.

Which pairs fold: found by tracing the model once in a ``tf.function`` with the ``call`` of
every convolution and batch-norm layer watched. A batch norm folds into a convolution when
(1) its input IS that convolution's output (the tensor the conv's ``call`` returned), (2) no
op outside the batch norm consumes that output (e.g. a residual add or a dense-block
concatenation of the raw conv output blocks folding), (3) the conv has no activation, its
data format is channels-last and the norm's axis is the channel axis, (4) each layer is
called once (not shared). This finds the pairs inside tfneuro's custom blocks
(``ConvNormAct3D``, ``ResidualBlock3D``, the QuickNAT bottleneck, the FastSurfer block) as well
as in plain functional models. QuickNAT's dense blocks are BN -> ReLU -> conv (pre-activation)
and have nothing to fold except the bottleneck's conv -> BN; Çiçek's 3D U-Net is conv -> BN ->
ReLU throughout and folds every BN.

:func:`fold_batch_norm` works IN PLACE on a model you own (the export folds a copy,
:func:`serving_copy`): each folded convolution gets the new kernel (and a bias variable if it
had none) and each folded batch norm becomes a :class:`FoldedBatchNormalization`, the identity.
The result is for inference only: training it would train the identities. TensorFlow-only
(the trace is a ``tf.function`` graph).
"""

from __future__ import annotations

import collections

import keras
import numpy as np
import tensorflow as tf

from tfneuro.inference.precision import set_model_precision
from tfneuro.training.saving import copy_model

__all__ = ["FoldedBatchNormalization", "foldable_pairs", "fold_batch_norm", "serving_copy"]

_CONVS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_CONVS_T = (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose,
            keras.layers.Conv3DTranspose)


class FoldedBatchNormalization(keras.layers.BatchNormalization):
    """A BatchNormalization whose affine map was folded into the convolution before it
    (:func:`fold_batch_norm`): the identity. Its variables keep the original statistics."""

    def call(self, inputs, training=None, mask=None):
        return inputs


_Call = collections.namedtuple("_Call", "layer inputs output ops")


def _watch(layer, calls, graph_of):
    """Wrap ``layer.call`` (an instance attribute, removed after the trace) to record each
    call's first input, output and the names of the ops it created."""
    original = layer.call

    def call(*args, **kwargs):
        graph = graph_of()
        first = len(graph.get_operations())
        out = original(*args, **kwargs)
        created = {op.name for op in graph.get_operations()[first:]}
        x = args[0] if args else kwargs.get("inputs")
        calls.append(_Call(layer, x, out, created))
        return out

    layer.call = call


def _name(t):
    return getattr(t, "name", None) if tf.is_tensor(t) else None


def foldable_pairs(model) -> list:
    """``[(conv layer, batch-norm layer)]`` of ``model`` that fold (module docstring)."""
    layers = [l for l in model._flatten_layers(include_self=False, recursive=True)]
    convs = [l for l in layers if isinstance(l, _CONVS + _CONVS_T)]
    norms = [l for l in layers if type(l) is keras.layers.BatchNormalization]
    if not convs or not norms:
        return []
    conv_calls, norm_calls = [], []
    for layer in convs:
        _watch(layer, conv_calls, tf.compat.v1.get_default_graph)
    for layer in norms:
        _watch(layer, norm_calls, tf.compat.v1.get_default_graph)
    try:
        specs = [tf.TensorSpec(t.shape, t.dtype) for t in model.inputs]
        fn = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False),
                         autograph=False)
        fn.get_concrete_function(*specs)
    finally:
        for layer in convs + norms:
            del layer.call
    times = collections.Counter(id(c.layer) for c in conv_calls + norm_calls)
    by_output = {_name(c.output): c for c in conv_calls if _name(c.output)}
    pairs = []
    for n in norm_calls:
        c = by_output.get(_name(n.inputs))
        if c is None or times[id(c.layer)] != 1 or times[id(n.layer)] != 1:
            continue
        conv, bn = c.layer, n.layer
        rank = len(n.inputs.shape)
        if (conv.activation not in (None, keras.activations.linear)
                or conv.data_format != "channels_last" or bn.axis not in (-1, rank - 1)
                or getattr(conv, "lora_enabled", False) or conv.quantization_mode is not None):
            continue
        if all(op.name in n.ops for op in c.output.consumers()):
            pairs.append((conv, bn))
    return pairs


def _fold_pair(conv, bn):
    mean = np.asarray(bn.moving_mean, np.float64)
    scale = np.asarray(bn.gamma, np.float64) if bn.scale else np.ones_like(mean)
    scale = scale / np.sqrt(np.asarray(bn.moving_variance, np.float64) + bn.epsilon)
    shift = np.asarray(bn.beta, np.float64) if bn.center else np.zeros_like(mean)
    kernel = np.asarray(conv.kernel, np.float64)
    axis = -2 if isinstance(conv, _CONVS_T) else -1  # output channels of the kernel
    shape = [1] * kernel.ndim
    shape[axis] = -1
    conv.kernel.assign((kernel * scale.reshape(shape)).astype(conv.kernel.dtype))
    bias = np.asarray(conv.bias, np.float64) if conv.use_bias else np.zeros_like(mean)
    if not conv.use_bias:  # add the bias variable the folded conv needs (after build)
        conv._tracker.unlock()
        try:
            conv.bias = conv.add_weight(name="bias", shape=(conv.filters,), initializer="zeros",
                                        dtype=conv.variable_dtype)
        finally:
            conv._tracker.lock()
        conv.use_bias = True
    conv.bias.assign(((bias - mean) * scale + shift).astype(conv.bias.dtype))
    bn.__class__ = FoldedBatchNormalization


def fold_batch_norm(model) -> int:
    """Fold every foldable batch norm of ``model`` into its convolution, IN PLACE.

    Args:
        model: a built Keras model you own (a copy: the change cannot be undone).

    Returns:
        The number of batch norms folded.
    """
    pairs = foldable_pairs(model)
    for conv, bn in pairs:
        _fold_pair(conv, bn)
    if pairs and hasattr(model, "predict_function"):
        model.predict_function = None
    return len(pairs)


def serving_copy(model, precision: str, fold: bool = True) -> tuple:
    """``(copy, folded)``: a copy of ``model`` with its batch norms folded (when ``fold``) and
    its layers at ``precision`` (:func:`tfneuro.inference.precision.set_model_precision`)."""
    copy = copy_model(model)
    folded = fold_batch_norm(copy) if fold else 0
    return set_model_precision(copy, precision), folded
