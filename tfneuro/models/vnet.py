"""V-Net, one of the comparison models of NEC-NET's Table 2 (paper 000 section 3.1).

Paper 000 section 3.1: "We compare the final effect of several common models, like Vnet,
SegResNet, UnetR in Table.2" (VNet Dice 0.8171 vs NEC-NET 0.8434). Its reference 21 is a
road-extraction network; the comparison models come from MONAI, whose ``VNet`` implements
Milletari, Navab & Ahmadi, "V-Net: Fully convolutional neural networks for volumetric medical
image segmentation", 3DV 2016. This is MONAI 1.6.1's ``monai.networks.nets.VNet`` layer for layer
(``spatial_dims=3``), so ``VNet(in_channels=C, out_channels=K)`` and
``vnet(num_classes=K, input_shape=(..., C))`` have the same parameters (45,597,898 for C=1,
K=2; trainable weights here, ``parameters()`` there). Milletari et al.'s paper is not in
``shared/papers``; its section 2 is paraphrased, the layer details are read from MONAI's source.

- Input transition (Milletari sec. 2: every stage learns a residual function, its input added
  to the output of its convolutions): 5x5x5 conv to 16 channels + BN, plus the input tiled to
  16 channels, then the activation.
- Four down transitions (Milletari sec. 2: downsampling by a 2x2x2 convolution with stride 2
  instead of pooling, doubling the channels): 2x2x2 stride-2 conv + BN + act, then 1, 2, 3, 2
  x [5x5x5 conv + BN + act] (MONAI's counts), plus the residual, then act. Channel dropout
  (p = 0.5) on the two deepest.
- Four up transitions: 2x2x2 stride-2 transposed conv (with bias) to half the output channels
  + BN + act, concatenated with the (dropped-out, p = 0.5) skip, then 2, 2, 1, 1 x [5x5x5 conv
  + BN + act] plus the concatenation, then act. Dropout (p = 0.5) also on the input of the two
  deepest.
- Output transition: 5x5x5 conv to K channels + BN + act, then a 1x1x1 conv with bias.

MONAI details kept: convolutions have no bias (``bias=False``, MONAI's default; the up
transitions' convolutions never have one), the transposed and final 1x1x1 convolutions do;
BatchNorm (MONAI's) is affine with PyTorch's epsilon 1e-5 and momentum 0.1 (Keras
``momentum=0.9``); ELU (alpha 1) is MONAI's default activation (Milletari uses PReLU
non-linearities: ``act="prelu"``, one slope per channel initialised to 0.25 as
``torch.nn.PReLU``).

Departures:
- Output: the final 1x1x1 convolution is tfneuro's ``classifier`` layer followed by a float32
  softmax (MONAI returns logits), as every tfneuro segmentation model.
- ``base_filters`` (16 in Milletari and MONAI) scales every width; MONAI has no such argument.
- Dropout: ``dropout_dim`` 3 (MONAI's default, ``Dropout3d``: whole channels) or 1 (elementwise);
  MONAI's 2 is not offered. Initialisers are Keras' defaults, not PyTorch's.
- Spatial size: four stride-2 steps, so known spatial dims must be multiples of 16 (the model
  does not pad); the 96^3 sliding window of paper 000 satisfies this.
"""

from __future__ import annotations

import keras

from tfneuro.errors import InputError
from tfneuro.models._common import (check_choice, check_input_shape, check_num_classes,
                                    check_positive, classifier_head, registered_model)
from tfneuro.models.unet3d import check_spatial_multiple

#: MONAI's down transitions: (name, 5x5x5 convolutions, dropout); widths 2, 4, 8, 16 x base.
_DOWN = (("down_tr32", 1, False), ("down_tr64", 2, False), ("down_tr128", 3, True),
         ("down_tr256", 2, True))
#: MONAI's up transitions: (name, output width / base, 5x5x5 convolutions, input dropout).
_UP = (("up_tr256", 16, 2, True), ("up_tr128", 8, 2, True), ("up_tr64", 4, 1, False),
       ("up_tr32", 2, 1, False))
_ACTS = ("elu", "relu", "prelu")


def _act(act, name):
    if act == "prelu":  # torch.nn.PReLU(num_parameters=C): one slope per channel, init 0.25
        return keras.layers.PReLU(alpha_initializer=keras.initializers.Constant(0.25),
                                  shared_axes=[1, 2, 3], name=name)
    return keras.layers.Activation(act, name=name)


def _bn(name):
    # torch.nn.BatchNorm3d defaults: eps 1e-5, momentum 0.1 (= Keras momentum 0.9), affine
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)


def _dropout(rate, dim, name):
    if dim == 3:  # torch.nn.Dropout3d: zeroes whole channels
        return keras.layers.SpatialDropout3D(rate, name=name)
    return keras.layers.Dropout(rate, name=name)


def _lu_convs(x, channels, n, act, bias, name):
    """MONAI ``_make_nconv``: ``n`` x (5x5x5 conv + BN + act) at ``channels`` channels."""
    for i in range(n):
        x = keras.layers.Conv3D(channels, 5, padding="same", use_bias=bias,
                                name=f"{name}_ops{i}_conv")(x)
        x = _act(act, f"{name}_ops{i}_act")(_bn(f"{name}_ops{i}_bn")(x))
    return x


def _input_transition(x, channels, act, bias):
    out = keras.layers.Conv3D(channels, 5, padding="same", use_bias=bias, name="in_tr_conv")(x)
    out = _bn("in_tr_bn")(out)
    # MONAI: x.repeat(1, channels // in_channels, 1, 1, 1), i.e. the input tiled over channels
    repeats = channels // int(x.shape[-1])
    tiled = x if repeats == 1 else keras.layers.Concatenate(name="in_tr_tile")([x] * repeats)
    return _act(act, "in_tr_act")(keras.layers.Add(name="in_tr_add")([out, tiled]))


def _down_transition(x, nconvs, dropout, act, bias, name):
    channels = 2 * int(x.shape[-1])
    down = keras.layers.Conv3D(channels, 2, strides=2, padding="valid", use_bias=bias,
                               name=f"{name}_down_conv")(x)
    down = _act(act, f"{name}_act1")(_bn(f"{name}_bn1")(down))
    out = down if dropout is None else dropout(down)
    out = _lu_convs(out, channels, nconvs, act, bias, name)
    return _act(act, f"{name}_act2")(keras.layers.Add(name=f"{name}_add")([out, down]))


def _up_transition(x, skip, channels, nconvs, dropout, dropout2, act, name):
    out = x if dropout is None else dropout(x)
    skip = dropout2(skip)
    out = keras.layers.Conv3DTranspose(channels // 2, 2, strides=2, padding="valid",
                                       name=f"{name}_up_conv")(out)
    out = _act(act, f"{name}_act1")(_bn(f"{name}_bn1")(out))
    xcat = keras.layers.Concatenate(name=f"{name}_concat")([out, skip])
    out = _lu_convs(xcat, channels, nconvs, act, False, name)  # MONAI: no bias here, ever
    return _act(act, f"{name}_act2")(keras.layers.Add(name=f"{name}_add")([out, xcat]))


def vnet(num_classes=2, input_shape=(None, None, None, 1), base_filters=16, act="elu",
         dropout_prob_down=0.5, dropout_prob_up=(0.5, 0.5), dropout_dim=3, bias=False,
         name="vnet"):
    """Build MONAI's V-Net (Milletari et al. 2016) for paper 000's Table 2.

    Args:
        num_classes: output classes K (2: background / neurocranium, paper 000).
        input_shape: ``(X, Y, Z, C)``; known spatial dims must be multiples of 16, and
            ``base_filters`` must be a multiple of C (the input is tiled to ``base_filters``).
        base_filters: channels of the input transition (16, Milletari / MONAI); stage ``s``
            has ``base_filters * 2**s``.
        act: "elu" (MONAI default), "prelu" (Milletari) or "relu".
        dropout_prob_down: dropout of the two deepest down transitions (None: off).
        dropout_prob_up: ``(input, skip)`` dropout of the two deepest up transitions; the other
            two up transitions use ``(None, 0.5)`` as in MONAI.
        dropout_dim: 3 (whole channels, MONAI default) or 1 (elementwise).
        bias: bias on the input/down/output transitions' convolutions (MONAI default False).
        name: model name (the registry name, which export uses to find the model's spec).

    Returns:
        A functional ``keras.Model`` mapping ``[B, X, Y, Z, C]`` to softmax ``[B, X, Y, Z, K]``.
    """
    num_classes = check_num_classes(num_classes, name)
    input_shape = check_input_shape(input_shape, 3, name)
    base_filters = check_positive(base_filters, "base_filters", name)
    if base_filters % input_shape[-1]:
        raise InputError(f"{name}(input_shape)", f"base_filters={base_filters} must be a multiple "
                                                 f"of the {input_shape[-1]} input channels")
    check_choice(act, _ACTS, "act", name)
    check_choice(dropout_dim, (1, 3), "dropout_dim", name)
    try:
        up_in, up_skip = dropout_prob_up
    except (TypeError, ValueError):
        raise InputError(f"{name}(dropout_prob_up)",
                         f"must be a pair (input, skip), got {dropout_prob_up!r}") from None
    for flag, p in (("dropout_prob_down", dropout_prob_down), ("dropout_prob_up", up_in),
                    ("dropout_prob_up", up_skip)):
        if p is not None and not 0.0 <= float(p) < 1.0:
            raise InputError(f"{name}({flag})", f"must be None or in [0, 1), got {p!r}")
    if up_skip is None:
        raise InputError(f"{name}(dropout_prob_up)", "the skip dropout must be a number (0: off)")
    check_spatial_multiple(input_shape, 16, flag=f"{name}(input_shape)")

    inputs = keras.Input(shape=input_shape, name="image")
    x = _input_transition(inputs, base_filters, act, bool(bias))
    skips = [x]
    for block, nconvs, drop in _DOWN:
        dropout = (_dropout(float(dropout_prob_down), dropout_dim, f"{block}_dropout")
                   if drop and dropout_prob_down is not None else None)
        x = _down_transition(x, nconvs, dropout, act, bool(bias), block)
        skips.append(x)
    for stage, (block, width, nconvs, deep) in enumerate(_UP):
        p_in, p_skip = (up_in, up_skip) if deep else (None, 0.5)
        dropout = None if p_in is None else _dropout(float(p_in), dropout_dim, f"{block}_dropout")
        dropout2 = _dropout(float(p_skip), dropout_dim, f"{block}_dropout2")
        x = _up_transition(x, skips[-2 - stage], width * base_filters, nconvs, dropout, dropout2,
                           act, block)
    x = keras.layers.Conv3D(num_classes, 5, padding="same", use_bias=bool(bias),
                            name="out_tr_conv")(x)
    x = _act(act, "out_tr_act")(_bn("out_tr_bn")(x))
    outputs = classifier_head(x, num_classes, ndim=3)  # MONAI out_tr.conv2 (1x1x1, bias)
    return registered_model(inputs, outputs, name=name, registry_name="vnet",
                            multiple=16)
