"""QuickNAT dense blocks and the FastSurfer competitive (maxout) dense block.

QuickNAT (paper 001 builds on it: "QuickNAT introduces dense connections in both encoder and
decoder blocks to aid gradient flow ... and to promote feature re-usability"; design from
Roy et al., NeuroImage 2019, sec. 2.2): a dense block is a sequence of BN -> ReLU -> k x k conv
units, each fed the CONCATENATION of the block input and all previous unit outputs, closed by a
BN -> ReLU -> 1 x 1 "bottleneck" conv (the transition layer keeping the width at ``filters``).
Roy et al. use k = 5 and 64 filters, three convolutions (two 5 x 5 + one 1 x 1).

FastSurferCNN (Henschel et al. 2020) replaces the concatenations by an element-wise maximum
("maxout", competitive dense block, CDB): fewer parameters, the same receptive field. Ideas
taken from Deep-MI/FastSurfer ``FastSurferCNN/models/sub_module.py`` (not its code): each unit
is activation -> conv -> BN and its output competes (``maximum``) with the previous unit's
result; the last unit (1 x 1) is not maxed. The input block variant normalises the raw input
with BN first and cannot max against it (channel counts differ).

Both are channels-last 2D layers built from ``keras.layers`` sub-layers that are created in
``__init__`` and built in ``build`` (so weights are tracked and ``.keras`` files round-trip).
"""

from __future__ import annotations

import keras
from keras import ops

from tfneuro.errors import InputError


def _activation(name, label):
    if name == "prelu":
        return keras.layers.PReLU(shared_axes=[1, 2], name=label)
    return keras.layers.Activation(name, name=label)


def _check(filters, kernel_size, num_convs, layer):
    if int(filters) < 1:
        raise InputError(f"{layer}(filters)", f"must be >= 1, got {filters}")
    if int(kernel_size) < 1:
        raise InputError(f"{layer}(kernel_size)", f"must be >= 1, got {kernel_size}")
    if int(num_convs) < 2:
        raise InputError(f"{layer}(num_convs)",
                         f"must be >= 2 (k x k convs plus the 1 x 1 bottleneck), got {num_convs}")


@keras.saving.register_keras_serializable(package="tfneuro")
class DenseBlock(keras.layers.Layer):
    """QuickNAT dense block (Roy et al. 2019, sec. 2.2; paper 001).

    ``num_convs - 1`` units BN -> activation -> ``kernel_size`` conv with ``filters`` maps, unit
    ``i`` reading ``concat(input, out_1, ..., out_{i-1})``; then BN -> activation -> 1 x 1 conv
    on ``concat(input, out_1, ..., out_{num_convs-1})`` (the bottleneck). Output: ``filters``
    channels, same spatial size ("same" padding).

    Args:
        filters: maps per convolution (QuickNAT: 64).
        kernel_size: k of the k x k convolutions (QuickNAT: 5).
        num_convs: total convolutions including the final 1 x 1 (QuickNAT: 3).
        activation: "relu" (Roy et al. paper text) or "prelu" (their released code) or any
            Keras activation name.
        dropout: dropout rate after the bottleneck (0 disables; QuickNAT's code uses 0.2,
            the paper does not mention it, so the default is off).
        bn_momentum: momentum of the BatchNormalization moving statistics. Default 0.9, the
            value of QuickNAT's released code (PyTorch ``nn.BatchNorm2d`` default momentum
            0.1 = Keras 0.9); Keras' own default 0.99 lags 10x longer, so after a short
            training the inference-mode statistics are still near their initial values.
        **kwargs: base ``keras.layers.Layer`` arguments.
    """

    def __init__(self, filters=64, kernel_size=5, num_convs=3, activation="relu", dropout=0.0,
                 bn_momentum=0.9, **kwargs):
        super().__init__(**kwargs)
        _check(filters, kernel_size, num_convs, type(self).__name__)
        self.filters, self.kernel_size, self.num_convs = int(filters), int(kernel_size), int(num_convs)
        self.activation, self.dropout = activation, float(dropout)
        self.bn_momentum = float(bn_momentum)
        self.norms = [keras.layers.BatchNormalization(momentum=self.bn_momentum, name=f"bn{i}")
                      for i in range(self.num_convs)]
        self.acts = [_activation(activation, f"act{i}") for i in range(self.num_convs)]
        self.convs = [
            keras.layers.Conv2D(self.filters, self.kernel_size if i < self.num_convs - 1 else 1,
                                padding="same", name=f"conv{i}")
            for i in range(self.num_convs)
        ]
        self.drop = keras.layers.Dropout(self.dropout, name="dropout") if self.dropout else None

    def build(self, input_shape):
        channels = input_shape[-1]
        spatial = tuple(input_shape[:-1])
        for i in range(self.num_convs):
            shape = spatial + (channels,)
            self.norms[i].build(shape)
            self.acts[i].build(shape)
            self.convs[i].build(shape)
            channels += self.filters
        self.built = True

    def call(self, x, training=None):
        features = [x]
        out = None
        for i in range(self.num_convs):
            h = features[0] if len(features) == 1 else ops.concatenate(features, axis=-1)
            h = self.convs[i](self.acts[i](self.norms[i](h, training=training)))
            features.append(h)
            out = h
        if self.drop is not None:
            out = self.drop(out, training=training)
        return out

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size,
                      num_convs=self.num_convs, activation=self.activation, dropout=self.dropout,
                      bn_momentum=self.bn_momentum)
        return config


@keras.saving.register_keras_serializable(package="tfneuro")
class CompetitiveDenseBlock(keras.layers.Layer):
    """FastSurferCNN competitive dense block: maxout instead of concatenation.

    Non-input block (``x`` has ``filters`` channels): ``m = x``; for each k x k unit
    ``m = maximum(m, BN(conv(act(m))))``; output ``BN(conv1x1(act(m)))``.
    Input block (``is_input=True``, or automatically when ``x``'s channel count differs from
    ``filters``): ``m = BN0(conv(BN_in(x)))`` (raw input normalised, nothing to max against
    yet), then the remaining units as above.

    Args:
        filters: maps per convolution (FastSurferCNN: 64).
        kernel_size: k of the k x k convolutions (FastSurferCNN: 5).
        num_convs: total convolutions including the final 1 x 1 (FastSurferCNN: 3).
        activation: "prelu" (FastSurferCNN) or a Keras activation name.
        is_input: True for the first block of a network; None decides from the channel count.
        **kwargs: base ``keras.layers.Layer`` arguments.
    """

    def __init__(self, filters=64, kernel_size=5, num_convs=3, activation="prelu", is_input=None,
                 **kwargs):
        super().__init__(**kwargs)
        _check(filters, kernel_size, num_convs, type(self).__name__)
        self.filters, self.kernel_size, self.num_convs = int(filters), int(kernel_size), int(num_convs)
        self.activation, self.is_input = activation, is_input
        self.acts = [_activation(activation, f"act{i}") for i in range(self.num_convs)]
        self.convs = [
            keras.layers.Conv2D(self.filters, self.kernel_size if i < self.num_convs - 1 else 1,
                                padding="same", name=f"conv{i}")
            for i in range(self.num_convs)
        ]
        self.norms = [keras.layers.BatchNormalization(name=f"bn{i}") for i in range(self.num_convs)]
        self.input_norm = keras.layers.BatchNormalization(name="bn_input")
        self._input_block = None

    def _resolve_input(self, channels):
        if self.is_input is None:
            return channels != self.filters
        if not self.is_input and channels != self.filters:
            raise InputError(f"{type(self).__name__}(is_input)",
                             f"False needs {self.filters} input channels to max against, "
                             f"got {channels}")
        return bool(self.is_input)

    def build(self, input_shape):
        channels = input_shape[-1]
        spatial = tuple(input_shape[:-1])
        self._input_block = self._resolve_input(channels)
        if self._input_block:
            self.input_norm.build(input_shape)
        for i in range(self.num_convs):
            shape = spatial + ((channels if i == 0 else self.filters),)
            if i or not self._input_block:  # the input block has no activation before conv0
                self.acts[i].build(shape)
            self.convs[i].build(shape)
            self.norms[i].build(spatial + (self.filters,))
        self.built = True

    def call(self, x, training=None):
        if self._input_block:
            m = self.norms[0](self.convs[0](self.input_norm(x, training=training)),
                              training=training)
        else:
            h = self.norms[0](self.convs[0](self.acts[0](x)), training=training)
            m = ops.maximum(x, h)
        for i in range(1, self.num_convs - 1):
            h = self.norms[i](self.convs[i](self.acts[i](m)), training=training)
            m = ops.maximum(m, h)
        last = self.num_convs - 1
        return self.norms[last](self.convs[last](self.acts[last](m)), training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size,
                      num_convs=self.num_convs, activation=self.activation,
                      is_input=self.is_input)
        return config
