"""Output heads and size plumbing: paper 004 side outputs, resize/pad/crop to a reference.

* :class:`SideOutput` -- paper 004 sec. 2 ("Deep FCN for brain MR image segmentation"): "we add
  specialized convolutional layers (with a 3x3 kernel size) with K (e.g. K = 16) feature maps
  after the convolutional layers at the end of each stage. We resize all the specialized layers
  to the original image size". A linear 3 x 3 conv (no activation is mentioned; the 1 x 1 fusion
  conv that follows is linear as well) then a bilinear resize to the reference's size.
* :class:`ResizeLike` -- resize a 2D (``[B, H, W, C]``) or 3D (``[B, D, H, W, C]``) tensor to the
  spatial size of a reference tensor; bilinear/trilinear (separable) or nearest.
* :class:`PadToMultiple` / :class:`CropLike` -- models that halve the size ``n`` times pad their
  input up to a multiple of ``2**n`` and crop the output back, so any slice/volume size works.

Spatial sizes may be unknown (``None``). With static sizes everything is ``keras.ops``; when a
size is only known at run time under TensorFlow (``None`` dims in a functional model),
``ResizeLike`` calls ``tf.image.resize`` (TensorFlow only: ``keras.ops.image.resize`` needs
Python ints). Under JAX sizes are always static.
"""

from __future__ import annotations

import keras
from keras import ops

from tfneuro.errors import InputError

_METHODS = ("bilinear", "nearest")


def _is_static(*values):
    return all(isinstance(v, int) for v in values)


def _resize2d(x, h, w, method):
    if _is_static(h, w):
        return ops.image.resize(x, (h, w), interpolation=method, data_format="channels_last")
    import tensorflow as tf  # TF-only: dynamic output size

    return tf.cast(tf.image.resize(x, tf.stack([h, w]), method=method), x.dtype)


def resize_to(x, size, method="bilinear"):
    """Resize the spatial dims of ``x`` (2D or 3D, channels-last) to ``size``.

    3D uses separable interpolation: (H, W) per depth slice, then D (half-pixel centres, as
    ``tf.image.resize``), which equals trilinear interpolation.

    Args:
        x: ``[B, H, W, C]`` or ``[B, D, H, W, C]`` tensor.
        size: target spatial size (ints or scalar tensors).
        method: "bilinear" or "nearest".

    Returns:
        the resized tensor.
    """
    shape = ops.shape(x)
    if len(size) == 2:
        return _resize2d(x, size[0], size[1], method)
    b, d, h, w, c = shape
    y = _resize2d(ops.reshape(x, (b * d, h, w, c)), size[1], size[2], method)
    y = ops.reshape(y, (b, d, size[1] * size[2], c))
    y = _resize2d(y, size[0], size[1] * size[2], method)
    return ops.reshape(y, (b, size[0], size[1], size[2], c))


def _spatial(shape_tensor, rank):
    return tuple(shape_tensor[1:1 + rank])


@keras.saving.register_keras_serializable(package="tfneuro")
class ResizeLike(keras.layers.Layer):
    """``ResizeLike()([x, reference])``: resize ``x`` to ``reference``'s spatial size.

    Args:
        interpolation: "bilinear" (trilinear for 3D) or "nearest".
        **kwargs: base ``keras.layers.Layer`` arguments.
    """

    def __init__(self, interpolation="bilinear", **kwargs):
        super().__init__(**kwargs)
        if interpolation not in _METHODS:
            raise InputError(f"{type(self).__name__}(interpolation)",
                             f"must be one of {_METHODS}, got {interpolation!r}")
        self.interpolation = interpolation

    def call(self, inputs):
        x, ref = inputs
        rank = len(x.shape) - 2
        if rank not in (2, 3) or len(ref.shape) != len(x.shape):
            raise InputError(type(self).__name__,
                             f"expects two 4D or two 5D tensors, got {x.shape} and {ref.shape}")
        return resize_to(x, _spatial(ops.shape(ref), rank), self.interpolation)

    def compute_output_shape(self, input_shapes):
        x, ref = input_shapes
        return (x[0],) + tuple(ref[1:-1]) + (x[-1],)

    def get_config(self):
        config = super().get_config()
        config.update(interpolation=self.interpolation)
        return config


@keras.saving.register_keras_serializable(package="tfneuro")
class SideOutput(keras.layers.Layer):
    """Paper 004 "specialized layer": 3 x 3 conv with K maps, resized to the reference size.

    ``SideOutput(filters=16)([features, reference])`` -> ``[B, H_ref, W_ref, filters]``.

    Args:
        filters: K, the number of maps (paper 004: K = 16).
        kernel_size: conv kernel (paper 004: 3).
        interpolation: resize method ("bilinear"; the paper says "resize" without naming one,
            bilinear is what FCN-style side outputs use).
        activation: None (linear, as in paper 004) or a Keras activation name.
        **kwargs: base ``keras.layers.Layer`` arguments.
    """

    def __init__(self, filters=16, kernel_size=3, interpolation="bilinear", activation=None,
                 **kwargs):
        super().__init__(**kwargs)
        if int(filters) < 1:
            raise InputError(f"{type(self).__name__}(filters)", f"must be >= 1, got {filters}")
        self.filters, self.kernel_size = int(filters), int(kernel_size)
        self.interpolation, self.activation = interpolation, activation
        self.conv = keras.layers.Conv2D(self.filters, self.kernel_size, padding="same",
                                        activation=activation, name="conv")
        self.resize = ResizeLike(interpolation, name="resize")

    def build(self, input_shapes):
        self.conv.build(input_shapes[0])
        self.built = True

    def call(self, inputs):
        features, ref = inputs
        return self.resize([self.conv(features), ref])

    def compute_output_shape(self, input_shapes):
        features, ref = input_shapes
        return (features[0],) + tuple(ref[1:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size,
                      interpolation=self.interpolation, activation=self.activation)
        return config


def _pads(size, multiple, mode):
    total = (-size) % multiple
    before = total // 2 if mode == "symmetric" else 0
    return before, total - before


def _check_mode(mode, layer):
    if mode not in ("end", "symmetric"):
        raise InputError(f"{layer}(mode)", f"must be 'end' or 'symmetric', got {mode!r}")


@keras.saving.register_keras_serializable(package="tfneuro")
class PadToMultiple(keras.layers.Layer):
    """Zero-pad the spatial dims up to the next multiple of ``multiple``.

    Works for 2D and 3D channels-last tensors and for unknown (None) sizes. Undo with
    :class:`CropLike` using the same ``mode``.

    Args:
        multiple: int (or one int per spatial dim), e.g. 16 for four 2x poolings.
        mode: "end" (all padding after the data) or "symmetric" (``total // 2`` before, the
            rest after -- the same split :class:`CropLike` removes).
        **kwargs: base ``keras.layers.Layer`` arguments.
    """

    def __init__(self, multiple=16, mode="end", **kwargs):
        super().__init__(**kwargs)
        _check_mode(mode, type(self).__name__)
        multiples = (multiple,) if isinstance(multiple, int) else tuple(multiple)
        if not multiples or min(int(m) for m in multiples) < 1:
            raise InputError(f"{type(self).__name__}(multiple)", f"must be >= 1, got {multiple}")
        self.multiple = multiple if isinstance(multiple, int) else [int(m) for m in multiple]
        self.mode = mode

    def _multiples(self, rank):
        if isinstance(self.multiple, int):
            return (self.multiple,) * rank
        if len(self.multiple) != rank:
            raise InputError(f"{type(self).__name__}(multiple)",
                             f"has {len(self.multiple)} values for {rank} spatial dims")
        return tuple(self.multiple)

    def call(self, x):
        rank = len(x.shape) - 2
        shape = ops.shape(x)
        pads = [_pads(shape[1 + i], m, self.mode) for i, m in enumerate(self._multiples(rank))]
        return ops.pad(x, [[0, 0]] + [list(p) for p in pads] + [[0, 0]])

    def compute_output_shape(self, input_shape):
        rank = len(input_shape) - 2
        spatial = tuple(None if n is None else n + (-n) % m
                        for n, m in zip(input_shape[1:-1], self._multiples(rank)))
        return (input_shape[0],) + spatial + (input_shape[-1],)

    def get_config(self):
        config = super().get_config()
        config.update(multiple=self.multiple, mode=self.mode)
        return config


@keras.saving.register_keras_serializable(package="tfneuro")
class CropLike(keras.layers.Layer):
    """``CropLike(mode)([x, reference])``: crop ``x``'s spatial dims to ``reference``'s size.

    The inverse of :class:`PadToMultiple` with the same ``mode``: "end" keeps the first
    ``n`` positions, "symmetric" drops ``(size - n) // 2`` before.

    Args:
        mode: "end" or "symmetric".
        **kwargs: base ``keras.layers.Layer`` arguments.
    """

    def __init__(self, mode="end", **kwargs):
        super().__init__(**kwargs)
        _check_mode(mode, type(self).__name__)
        self.mode = mode

    def call(self, inputs):
        x, ref = inputs
        rank = len(x.shape) - 2
        xs, rs = ops.shape(x), ops.shape(ref)
        index = [slice(None)]
        for i in range(rank):
            start = (xs[1 + i] - rs[1 + i]) // 2 if self.mode == "symmetric" else 0
            index.append(slice(start, start + rs[1 + i]))
        index.append(slice(None))
        return x[tuple(index)]

    def compute_output_shape(self, input_shapes):
        x, ref = input_shapes
        return (x[0],) + tuple(ref[1:-1]) + (x[-1],)

    def get_config(self):
        config = super().get_config()
        config.update(mode=self.mode)
        return config
