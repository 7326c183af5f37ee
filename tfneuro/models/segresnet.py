"""SegResNet, one of the comparison models of NEC-NET's Table 2 (paper 000 section 3.1).

Paper 000 section 3.1 compares NEC-NET with "Vnet, SegResNet, UnetR" (Table 2: SegResNet Dice
0.8307 vs NEC-NET 0.8434). Its reference 22 is a different paper (Chen et al. 2016); the
comparison models come from MONAI, whose ``SegResNet`` implements the encoder-decoder of
Myronenko, "3D MRI brain tumor segmentation using autoencoder regularization", BrainLes 2018,
without the VAE branch. This is MONAI 1.6.1's ``monai.networks.nets.SegResNet`` layer for layer
(``spatial_dims=3``): ``SegResNet(in_channels=C, out_channels=K)`` and
``segresnet(num_classes=K, input_shape=(..., C))`` have the same parameters (1,176,186 for C=1,
K=2).

(Myronenko's paper is not in ``shared/papers``; its section 2 is paraphrased, the layer details
are read from MONAI's source.)

- Initial 3x3x3 convolution to ``init_filters`` channels without bias (MONAI default 8;
  Myronenko sec. 2 uses 32), optional channel dropout after it.
- Encoder (Myronenko sec. 2, encoder part: ResNet blocks of two convolutions with group
  normalisation and ReLU plus an identity skip; downsizing by 2 with strided convolutions while
  the features double; 1, 2, 2, 4 blocks per level): level ``i`` has ``init_filters * 2**i``
  channels; levels after the first start with a 3x3x3 stride-2 conv (padding 1, no bias). Each
  ResBlock is pre-activation: GroupNorm -> ReLU -> 3x3x3 conv -> GroupNorm -> ReLU -> 3x3x3
  conv, plus the input (convolutions without bias; GroupNorm with 8 groups, affine, epsilon
  1e-5).
- Decoder (Myronenko sec. 2, decoder part: each level halves the features with a 1x1x1
  convolution, doubles the size by trilinear upsampling, adds the encoder output of the same
  level, then one ResBlock): 1x1x1 conv without bias, upsampling, add, ``blocks_up[i]``
  ResBlocks.
- End: GroupNorm -> ReLU -> 1x1x1 convolution with bias to K channels.

Departures:
- Output: the final 1x1x1 convolution is tfneuro's ``classifier`` layer followed by a float32
  softmax (MONAI returns logits; Myronenko uses a sigmoid per tumour region).
- Only group normalisation (``num_groups``) and the "nontrainable" (trilinear,
  ``align_corners=False``; :class:`tfneuro.layers.ResizeLike`) or "deconv" (2x2x2 stride-2
  transposed conv with bias) upsampling of MONAI are offered; ``use_conv_final=False`` is not
  (tfneuro models end in the classifier). Initialisers are Keras' defaults, not PyTorch's.
- Spatial size: known spatial dims must be multiples of ``2 ** (len(blocks_down) - 1)`` (8 by
  default); the model does not pad.
"""

from __future__ import annotations

import keras

from tfneuro.errors import InputError
from tfneuro.layers.heads import ResizeLike
from tfneuro.models._common import (check_choice, check_input_shape, check_num_classes,
                                    check_positive, classifier_head, registered_model)
from tfneuro.models.unet3d import check_spatial_multiple

_ACTS = ("relu", "leaky_relu", "elu")
_UPSAMPLE = ("nontrainable", "deconv")


def _act(act, name):
    if act == "leaky_relu":  # torch.nn.LeakyReLU default slope
        return keras.layers.LeakyReLU(negative_slope=0.01, name=name)
    return keras.layers.Activation(act, name=name)


def _norm(groups, name):
    return keras.layers.GroupNormalization(groups=groups, epsilon=1e-5, name=name)


def _conv(x, filters, kernel_size, name, strides=1, bias=False):
    if strides > 1:  # PyTorch padding=(k-1)//2 on both sides (Keras "same" pads after only)
        x = keras.layers.ZeroPadding3D((kernel_size - 1) // 2, name=f"{name}_pad")(x)
    padding = "valid" if strides > 1 else "same"
    return keras.layers.Conv3D(filters, kernel_size, strides=strides, padding=padding,
                               use_bias=bias, name=name)(x)


def _res_block(x, groups, act, name):
    """MONAI ``segresnet_block.ResBlock``: pre-activation residual block, identity shortcut."""
    c = int(x.shape[-1])
    y = _act(act, f"{name}_act1")(_norm(groups, f"{name}_norm1")(x))
    y = _conv(y, c, 3, f"{name}_conv1")
    y = _act(act, f"{name}_act2")(_norm(groups, f"{name}_norm2")(y))
    y = _conv(y, c, 3, f"{name}_conv2")
    return keras.layers.Add(name=f"{name}_add")([y, x])


def _block_counts(value, flag, name):
    try:
        counts = tuple(value)
    except TypeError:
        counts = ()
    if not counts or any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in counts):
        raise InputError(f"{name}({flag})", f"must be a non-empty list of ints >= 0, got {value!r}")
    return counts


def segresnet(num_classes=2, input_shape=(None, None, None, 1), init_filters=8,
              dropout_prob=None, act="relu", num_groups=8, blocks_down=(1, 2, 2, 4),
              blocks_up=(1, 1, 1), upsample_mode="nontrainable", name="segresnet"):
    """Build MONAI's SegResNet (Myronenko 2018, no VAE) for paper 000's Table 2.

    Args:
        num_classes: output classes K (2: background / neurocranium, paper 000).
        input_shape: ``(X, Y, Z, C)``; known spatial dims must be multiples of
            ``2 ** (len(blocks_down) - 1)``.
        init_filters: channels of the first level (8); level ``i`` has ``init_filters * 2**i``.
        dropout_prob: channel dropout after the initial convolution (None: off, MONAI default).
        act: "relu" (default), "leaky_relu" (slope 0.01) or "elu".
        num_groups: GroupNorm groups (8); must divide ``init_filters``.
        blocks_down: ResBlocks per encoder level (1, 2, 2, 4).
        blocks_up: ResBlocks per decoder level (1, 1, 1); one entry per upsampling step,
            ``len(blocks_down) - 1`` of them.
        upsample_mode: "nontrainable" (trilinear, default) or "deconv".
        name: model name (the registry name, which export uses to find the model's spec).

    Returns:
        A functional ``keras.Model`` mapping ``[B, X, Y, Z, C]`` to softmax ``[B, X, Y, Z, K]``.
    """
    num_classes = check_num_classes(num_classes, name)
    input_shape = check_input_shape(input_shape, 3, name)
    init_filters = check_positive(init_filters, "init_filters", name)
    num_groups = check_positive(num_groups, "num_groups", name)
    if init_filters % num_groups:
        raise InputError(f"{name}(num_groups)",
                         f"must divide init_filters={init_filters}, got {num_groups}")
    check_choice(act, _ACTS, "act", name)
    check_choice(upsample_mode, _UPSAMPLE, "upsample_mode", name)
    if dropout_prob is not None and not 0.0 <= float(dropout_prob) < 1.0:
        raise InputError(f"{name}(dropout_prob)",
                         f"must be None or in [0, 1), got {dropout_prob!r}")
    blocks_down = _block_counts(blocks_down, "blocks_down", name)
    blocks_up = _block_counts(blocks_up, "blocks_up", name)
    if len(blocks_up) != len(blocks_down) - 1:
        raise InputError(f"{name}(blocks_up)", f"needs len(blocks_down) - 1 = "
                                               f"{len(blocks_down) - 1} entries, got {blocks_up!r}")
    check_spatial_multiple(input_shape, 2 ** (len(blocks_down) - 1), flag=f"{name}(input_shape)")

    inputs = keras.Input(shape=input_shape, name="image")
    x = _conv(inputs, init_filters, 3, "conv_init")
    if dropout_prob is not None:
        x = keras.layers.SpatialDropout3D(float(dropout_prob), name="dropout")(x)
    skips = []
    for level, n_blocks in enumerate(blocks_down):
        if level > 0:
            x = _conv(x, init_filters * 2 ** level, 3, f"down{level}_conv", strides=2)
        for j in range(n_blocks):
            x = _res_block(x, num_groups, act, f"down{level}_block{j}")
        skips.append(x)
    for i, n_blocks in enumerate(blocks_up):
        skip = skips[-2 - i]
        x = _conv(x, int(skip.shape[-1]), 1, f"up{i}_conv")
        if upsample_mode == "deconv":
            x = keras.layers.Conv3DTranspose(int(skip.shape[-1]), 2, strides=2, padding="valid",
                                             name=f"up{i}_upsample")(x)
        else:  # MONAI: nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False)
            x = ResizeLike("bilinear", name=f"up{i}_upsample")([x, skip])
        x = keras.layers.Add(name=f"up{i}_add")([x, skip])
        for j in range(n_blocks):
            x = _res_block(x, num_groups, act, f"up{i}_block{j}")
    x = _act(act, "final_act")(_norm(num_groups, "final_norm")(x))
    outputs = classifier_head(x, num_classes, ndim=3)  # MONAI conv_final[2] (1x1x1, bias)
    return registered_model(inputs, outputs, name=name, registry_name="segresnet",
                            multiple=2 ** (len(blocks_down) - 1))
