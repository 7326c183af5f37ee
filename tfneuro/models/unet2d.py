"""2D U-Net baselines of paper 003: single-arm (modalities stacked) and double-arm.

Paper 003 (Kumar et al.), section 3 "Comparative Methods and Baselines": InfiNet is compared
with "the state-of-the-art F-CNN model U-Net [9]" with "the bi-modal input data [stacked] as
2-channels to a single encoder" (``arms=1``), and with "U-Net with two encoder arms, with skip
connections to the decoder arm" (``arms=2``); Table 1 reports both ("Coronal U-net
(Single-Arm)/(Double-Arm)").

Paper 003 gives no U-Net configuration, so the blocks follow U-Net [9] (Ronneberger et al.
2015): per level two 3x3 convolutions with ReLU, 2x2 max pooling, 64 maps doubled per level
over 4 poolings (1024 at the bottom), 2x2 up-convolutions halving the maps, concatenation
with the encoder skip(s), two 3x3 convolutions, then a 1x1 classifier with softmax.

Double arm (``arms=2``): each arm (T1, T2) has its own encoder; the two deepest pooled maps
are concatenated before the bottom block; every decoder level concatenates the up-sampled map
with the skips of BOTH arms (paper 003: "with skip connections to the decoder arm").

Departures from Ronneberger et al.: "same" padding instead of valid convolutions (output =
input size, as every tfneuro segmentation model), optional batch normalisation
(``batch_norm``, off by default as in [9]). Inputs are padded internally to a multiple of
``2**depth`` (zero padding, :class:`~tfneuro.layers.PadToMultiple`) and the output cropped
back, so any size works. Paper 003 trained these baselines with median-frequency balanced
cross-entropy (``tfneuro.losses.WeightedCrossEntropy``).

Layer names follow the block convention of ``tfneuro.training.transfer`` (a layer is in block
``B`` when its name starts with ``B_``): ``encoder_{i}_conv{1,2}`` (two arms:
``encoder_{i}_t1_conv1`` ...), ``pool_{i}``, ``bottleneck_conv{1,2}``, ``decoder_{i}_up``,
``decoder_{i}_conv{1,2}``, ``classifier``, ``softmax``; ``i = 1`` is full resolution.
"""

from __future__ import annotations

import keras

from tfneuro.errors import InputError
from tfneuro.models._common import (
    check_input_shape,
    check_num_classes,
    check_positive,
    classifier_head,
    crop_like,
    pad_to_multiple,
    registered_model,
)


def _double_conv(x, filters, prefix, batch_norm):
    for j in (1, 2):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=not batch_norm,
                                name=f"{prefix}_conv{j}")(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"{prefix}_bn{j}")(x)
        x = keras.layers.Activation("relu", name=f"{prefix}_relu{j}")(x)
    return x


def unet2d(num_classes: int, input_shape=None, arms: int = 1, filters: int = 64,
           depth: int = 4, batch_norm: bool = False, name: str = "unet2d") -> keras.Model:
    """Build the paper-003 U-Net baseline.

    Args:
        num_classes: output classes.
        input_shape: ``(H, W, C)``; for ``arms=1`` the stacked modalities (default
            ``(None, None, 2)``: T1 and T2), for ``arms=2`` EACH arm's input (default
            ``(None, None, 1)``). H, W may be None.
        arms: 1 (channels stacked, one encoder) or 2 (T1 and T2 encoders, two model inputs).
        filters: maps at the first level (U-Net: 64), doubled per level.
        depth: number of poolings (U-Net: 4).
        batch_norm: batch normalisation after each conv (U-Net: no).
        name: model name (the registry name).

    Returns:
        A ``keras.Model``: input ``[B, H, W, C]`` (or ``[t1, t2]`` for two arms) to softmax
        probabilities ``[B, H, W, num_classes]``.
    """
    num_classes = check_num_classes(num_classes, name)
    if arms not in (1, 2):
        raise InputError(f"{name}(arms)", f"must be 1 or 2, got {arms!r}")
    if input_shape is None:
        input_shape = (None, None, 2) if arms == 1 else (None, None, 1)
    input_shape = check_input_shape(input_shape, 2, name)
    check_positive(filters, "filters", name)
    check_positive(depth, "depth", name)

    arm_names = ("image",) if arms == 1 else ("t1", "t2")
    inputs = [keras.Input(shape=input_shape, name=arm) for arm in arm_names]
    skips = {arm: [] for arm in arm_names}
    bottoms = []
    for arm, inp in zip(arm_names, inputs):
        suffix = "" if arms == 1 else f"_{arm}"
        x = pad_to_multiple(inp, 2 ** depth, name=f"pad{suffix}")
        for i in range(1, depth + 1):
            x = _double_conv(x, filters * 2 ** (i - 1), f"encoder_{i}{suffix}", batch_norm)
            skips[arm].append(x)
            x = keras.layers.MaxPooling2D(2, name=f"pool_{i}{suffix}")(x)
        bottoms.append(x)
    x = bottoms[0] if arms == 1 else keras.layers.Concatenate(name="bottleneck_concat")(bottoms)
    x = _double_conv(x, filters * 2 ** depth, "bottleneck", batch_norm)
    for i in range(depth, 0, -1):
        f = filters * 2 ** (i - 1)
        x = keras.layers.Conv2DTranspose(f, 2, strides=2, name=f"decoder_{i}_up")(x)
        x = keras.layers.Concatenate(name=f"decoder_{i}_concat")(
            [x] + [skips[a][i - 1] for a in arm_names])
        x = _double_conv(x, f, f"decoder_{i}", batch_norm)
    x = crop_like(x, inputs[0], name="crop")
    outputs = classifier_head(x, num_classes)
    return registered_model(inputs if arms == 2 else inputs[0], outputs, name=name,
                            registry_name="unet2d")
