"""3D convolution blocks: the residual block of paper 002 and 3D U-Net encoder/decoder blocks.

- :class:`ResidualBlock3D` — paper 002 ("Pipeline Design", modification *ii*: "Residual
  connections were used within the convolution blocks"). Its published code builds on MONAI's
  ``DynUNet(res_block=True)``, whose ``UnetResBlock`` is: conv(k, stride) -> norm -> LeakyReLU
  -> conv(k) -> norm, plus a shortcut (1x1x1 conv + norm when the channels or the stride
  change), add, LeakyReLU(0.01). Instance normalisation is the nnU-Net/DynUNet default.
- :class:`UNetEncoderBlock3D` — one analysis-path level: optional downsampling (2x2x2 max-pool
  as in Çiçek et al. and paper 000 Fig. 2, or a stride-2 first convolution as in nnU-Net /
  DynUNet) followed by two 3x3x3 convolutions (plain or residual).
- :class:`UNetDecoderBlock3D` — one synthesis-path level: 2x2x2 up-convolution (transposed,
  stride 2), concatenation with the skip connection, two 3x3x3 convolutions (plain or residual).

All layers are written with ``keras.ops``/Keras layers only (backend-agnostic) and are
serialisable (``get_config``). Spatial sizes may be ``None``; the decoder expects the skip to
have exactly twice the spatial size of its input (the models require inputs divisible by
``2 ** (levels - 1)``).
"""

from __future__ import annotations

import keras

_NORMS = ("batch", "instance", "instance_noaffine", None)


def _check(name, value, allowed):
    if value not in allowed:
        from tfneuro.errors import InputError

        raise InputError(name, f"must be one of {allowed}, got {value!r}")


def _make_norm(norm, name):
    """Normalisation layer: "batch" (BatchNormalization), "instance" (GroupNormalization with
    groups=-1, i.e. one group per channel = instance norm, affine as in nnU-Net),
    "instance_noaffine" (the same without scale and offset: MONAI's ``norm_name="instance"``,
    ``torch.nn.InstanceNorm3d(affine=False)``, as in MONAI's UNETR blocks) or None."""
    if norm == "batch":
        return keras.layers.BatchNormalization(name=name)
    if norm in ("instance", "instance_noaffine"):
        affine = norm == "instance"
        return keras.layers.GroupNormalization(groups=-1, epsilon=1e-5, center=affine,
                                               scale=affine, name=name)
    return None


def _make_act(activation, negative_slope, name):
    if activation == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=negative_slope, name=name)
    return keras.layers.Activation(activation, name=name)


def _norm_shape(input_shape, filters, strides):
    spatial = []
    for d in input_shape[1:-1]:
        spatial.append(None if d is None else -(-d // strides))
    return (input_shape[0], *spatial, filters)


@keras.saving.register_keras_serializable(package="tfneuro")
class ConvNormAct3D(keras.layers.Layer):
    """Two (or ``num_convs``) 3D convolutions, each followed by an optional norm and activation.

    The plain (non-residual) U-Net conv block of Çiçek et al. / paper 000 Fig. 2 ("two 3x3x3
    convolutions each followed by a ReLU"; Çiçek adds batch norm before each ReLU).

    Args:
        filters: int (all convs) or a list with one entry per conv (Çiçek's analysis path uses
            e.g. ``(32, 64)``: "channels doubled before max pooling").
        kernel_size: convolution kernel size.
        strides: stride of the first convolution (1, or 2 for strided downsampling).
        num_convs: number of convolutions when ``filters`` is an int.
        norm: "batch", "instance", "instance_noaffine" or None (see ``_make_norm``).
        activation: a Keras activation name or "leaky_relu".
        negative_slope: LeakyReLU slope (used only with "leaky_relu").
    """

    def __init__(self, filters=32, kernel_size=3, strides=1, num_convs=2, norm="batch",
                 activation="relu", negative_slope=0.01, **kwargs):
        super().__init__(**kwargs)
        _check("norm", norm, _NORMS)
        if isinstance(filters, int):
            filters = [filters] * int(num_convs)
        self.filters = [int(f) for f in filters]
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.norm = norm
        self.activation = activation
        self.negative_slope = float(negative_slope)
        self.convs, self.norms, self.acts = [], [], []
        for i, f in enumerate(self.filters):
            self.convs.append(keras.layers.Conv3D(
                f, self.kernel_size, strides=self.strides if i == 0 else 1, padding="same",
                use_bias=norm is None, kernel_initializer="he_normal", name=f"conv{i + 1}"))
            self.norms.append(_make_norm(norm, f"norm{i + 1}"))
            self.acts.append(_make_act(activation, self.negative_slope, f"act{i + 1}"))

    def build(self, input_shape):
        shape = tuple(input_shape)
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            conv.build(shape)
            shape = _norm_shape(shape, self.filters[i], conv.strides[0])
            if norm is not None:
                norm.build(shape)
        self.built = True

    def call(self, x, training=None):
        for conv, norm, act in zip(self.convs, self.norms, self.acts):
            x = conv(x)
            if norm is not None:
                x = norm(x, training=training)
            x = act(x)
        return x

    def compute_output_shape(self, input_shape):
        return _norm_shape(tuple(input_shape), self.filters[-1], self.strides)

    def get_config(self):
        config = super().get_config()
        config.update(filters=list(self.filters), kernel_size=self.kernel_size,
                      strides=self.strides, num_convs=len(self.filters), norm=self.norm,
                      activation=self.activation, negative_slope=self.negative_slope)
        return config


@keras.saving.register_keras_serializable(package="tfneuro")
class ResidualBlock3D(keras.layers.Layer):
    """3D residual conv block (paper 002, modification *ii*; MONAI ``UnetResBlock``).

    ``y = act(norm(conv(act(norm(conv_s(x))))) + shortcut(x))`` where ``conv_s`` has stride
    ``strides`` and ``shortcut`` is the identity, or a 1x1x1 conv (stride ``strides``) + norm
    when the number of channels or the stride changes.

    Args:
        filters: output channels.
        kernel_size: convolution kernel size (3, as in paper 002's 3D U-Net).
        strides: stride of the first convolution and of the shortcut (2 downsamples, as the
            DynUNet encoder does).
        norm: "instance" (DynUNet/nnU-Net default), "instance_noaffine", "batch" or None.
        activation: Keras activation name or "leaky_relu" (default, slope 0.01 as in DynUNet).
        negative_slope: LeakyReLU slope.
    """

    def __init__(self, filters=32, kernel_size=3, strides=1, norm="instance",
                 activation="leaky_relu", negative_slope=0.01, **kwargs):
        super().__init__(**kwargs)
        _check("norm", norm, _NORMS)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.norm = norm
        self.activation = activation
        self.negative_slope = float(negative_slope)
        bias = norm is None
        self.conv1 = keras.layers.Conv3D(self.filters, self.kernel_size, strides=self.strides,
                                         padding="same", use_bias=bias,
                                         kernel_initializer="he_normal", name="conv1")
        self.norm1 = _make_norm(norm, "norm1")
        self.act1 = _make_act(activation, self.negative_slope, "act1")
        self.conv2 = keras.layers.Conv3D(self.filters, self.kernel_size, padding="same",
                                         use_bias=bias, kernel_initializer="he_normal",
                                         name="conv2")
        self.norm2 = _make_norm(norm, "norm2")
        self.act_out = _make_act(activation, self.negative_slope, "act_out")
        self.proj = None
        self.proj_norm = None

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self.conv1.build(input_shape)
        mid = _norm_shape(input_shape, self.filters, self.strides)
        for layer in (self.norm1, self.norm2):
            if layer is not None:
                layer.build(mid)
        self.conv2.build(mid)
        if input_shape[-1] != self.filters or self.strides != 1:
            self.proj = keras.layers.Conv3D(self.filters, 1, strides=self.strides,
                                            padding="same", use_bias=self.norm is None,
                                            kernel_initializer="he_normal", name="shortcut")
            self.proj.build(input_shape)
            self.proj_norm = _make_norm(self.norm, "shortcut_norm")
            if self.proj_norm is not None:
                self.proj_norm.build(mid)
        self.built = True

    def call(self, x, training=None):
        y = self.conv1(x)
        if self.norm1 is not None:
            y = self.norm1(y, training=training)
        y = self.act1(y)
        y = self.conv2(y)
        if self.norm2 is not None:
            y = self.norm2(y, training=training)
        shortcut = x
        if self.proj is not None:
            shortcut = self.proj(x)
            if self.proj_norm is not None:
                shortcut = self.proj_norm(shortcut, training=training)
        return self.act_out(keras.ops.add(y, shortcut))

    def compute_output_shape(self, input_shape):
        return _norm_shape(tuple(input_shape), self.filters, self.strides)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides,
                      norm=self.norm, activation=self.activation,
                      negative_slope=self.negative_slope)
        return config


def _conv_stack(filters, kernel_size, strides, residual, norm, activation, negative_slope):
    if residual:
        f = filters if isinstance(filters, int) else filters[-1]
        return ResidualBlock3D(f, kernel_size, strides, norm, activation, negative_slope,
                               name="res_block")
    return ConvNormAct3D(filters, kernel_size, strides, 2, norm, activation, negative_slope,
                         name="convs")


@keras.saving.register_keras_serializable(package="tfneuro")
class UNetEncoderBlock3D(keras.layers.Layer):
    """One analysis-path level of a 3D U-Net: downsample, then two 3x3x3 convolutions.

    Written as "downsample then convolve" so that each level is one block whose output is
    both the skip connection and the input of the next level; stacking them reproduces
    Çiçek et al. / paper 000 Fig. 2 (convs -> 2x2x2 max-pool -> convs -> ...).

    Args:
        filters: int, or ``(f1, f2)`` for the two convs (Çiçek doubles the channels before
            pooling: ``(32, 64)``, ``(64, 128)``, ...). Residual blocks use the last value.
        downsample: None (first level), "max_pool" (2x2x2 max-pool, stride 2; Çiçek, paper 000)
            or "stride" (the first convolution has stride 2; nnU-Net / DynUNet, paper 002).
        residual: use :class:`ResidualBlock3D` instead of two plain convolutions.
        kernel_size: convolution kernel size.
        norm: "batch", "instance" or None.
        activation: Keras activation name or "leaky_relu".
        negative_slope: LeakyReLU slope.
    """

    def __init__(self, filters=32, downsample=None, residual=False, kernel_size=3, norm="batch",
                 activation="relu", negative_slope=0.01, **kwargs):
        super().__init__(**kwargs)
        _check("downsample", downsample, (None, "max_pool", "stride"))
        self.filters = filters if isinstance(filters, int) else [int(f) for f in filters]
        self.downsample = downsample
        self.residual = bool(residual)
        self.kernel_size = int(kernel_size)
        self.norm = norm
        self.activation = activation
        self.negative_slope = float(negative_slope)
        self.pool = (keras.layers.MaxPooling3D(2, strides=2, name="pool")
                     if downsample == "max_pool" else None)
        strides = 2 if downsample == "stride" else 1
        self.block = _conv_stack(self.filters, self.kernel_size, strides, self.residual, norm,
                                 activation, self.negative_slope)

    def build(self, input_shape):
        shape = tuple(input_shape)
        if self.pool is not None:
            shape = _norm_shape(shape, shape[-1], 2)
        self.block.build(shape)
        self.built = True

    def call(self, x, training=None):
        if self.pool is not None:
            x = self.pool(x)
        return self.block(x, training=training)

    def compute_output_shape(self, input_shape):
        f = self.filters if isinstance(self.filters, int) else self.filters[-1]
        return _norm_shape(tuple(input_shape), f, 1 if self.downsample is None else 2)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, downsample=self.downsample, residual=self.residual,
                      kernel_size=self.kernel_size, norm=self.norm, activation=self.activation,
                      negative_slope=self.negative_slope)
        return config


@keras.saving.register_keras_serializable(package="tfneuro")
class UNetDecoderBlock3D(keras.layers.Layer):
    """One synthesis-path level of a 3D U-Net: ``[x, skip] -> up-conv(x) ++ skip -> convs``.

    Args:
        filters: channels of the convolutions after the concatenation.
        up_filters: channels of the 2x2x2 transposed convolution; None keeps the input's
            channels (Çiçek et al.); DynUNet uses ``filters``.
        up_bias: bias on the transposed convolution (MONAI's UNETR ``UnetrUpBlock`` has none).
        residual: use :class:`ResidualBlock3D` instead of two plain convolutions.
        kernel_size: convolution kernel size.
        norm: "batch", "instance" or None.
        activation: Keras activation name or "leaky_relu".
        negative_slope: LeakyReLU slope.
    """

    def __init__(self, filters=32, up_filters=None, residual=False, kernel_size=3, norm="batch",
                 activation="relu", negative_slope=0.01, up_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.up_filters = None if up_filters is None else int(up_filters)
        self.up_bias = bool(up_bias)
        self.residual = bool(residual)
        self.kernel_size = int(kernel_size)
        self.norm = norm
        self.activation = activation
        self.negative_slope = float(negative_slope)
        self.up = None  # built once the input channels are known
        self.block = _conv_stack(self.filters, self.kernel_size, 1, self.residual, norm,
                                 activation, self.negative_slope)

    def build(self, input_shape):
        x_shape, skip_shape = (tuple(s) for s in input_shape)
        up_f = self.up_filters or x_shape[-1]
        self.up = keras.layers.Conv3DTranspose(up_f, 2, strides=2, padding="same",
                                               use_bias=self.up_bias,
                                               kernel_initializer="he_normal", name="upconv")
        self.up.build(x_shape)
        self.block.build((*skip_shape[:-1], up_f + skip_shape[-1]))
        self.built = True

    def call(self, inputs, training=None):
        x, skip = inputs
        x = self.up(x)
        x = keras.ops.concatenate([x, skip], axis=-1)
        return self.block(x, training=training)

    def compute_output_shape(self, input_shape):
        return (*tuple(input_shape[1])[:-1], self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, up_filters=self.up_filters, residual=self.residual,
                      kernel_size=self.kernel_size, norm=self.norm, activation=self.activation,
                      negative_slope=self.negative_slope, up_bias=self.up_bias)
        return config
