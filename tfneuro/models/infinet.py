"""InfiNet: two encoder arms (T1, T2), a joint decoder with index unpooling (paper 003).

Paper 003 (Kumar et al., ISBI 2018), section 2.1 "Model Architecture", block by block:

* **Encoder block** (each arm, 3 of them): "a 3x3 convolutional layer with 64 output feature
  maps, followed by a ReLU [...] and a batch normalization layer", same padding, then max
  pooling that halves the size and whose indices go to the matching decoder block.
* **Bottleneck block**: "akin to the Decoder Blocks with the only difference that it performs
  early fusion of high-level representations from the individual encoder arms by unpooling
  them separately using the corresponding indices": each arm's pooled output of encoder 3 is
  unpooled with that arm's own level-3 indices.
* **Multi-modal decoder block** (2 of them, levels 2 and 1): "two unpooling layers" -- the
  joint feature map is unpooled once with the T1 arm's indices and once with the T2 arm's;
  "the unpooled feature maps are concatenated into a batch normalization layer, followed by a
  1x1 convolutional layer to reduce the number of feature maps to 64 [...] a ReLU activation
  layer and a batch normalization layer"; "concatenated with encoder feature maps with similar
  spatial dimension, from both the arms via long range skip connections"; "a 3x3
  convolutional layer, a ReLU activation layer and another batch normalization layer".
* **Classification layer**: 1x1 conv from 64 maps to the classes, softmax.

"Both encoder arms consist of 3 encoder blocks followed by a max-pool layer, 2 decoder blocks
separated by the bottleneck layer": three poolings per arm, undone by the bottleneck (level 3)
and the two decoder blocks (levels 2, 1), so the output has the input's size.

Skips: the encoder feature maps "with similar spatial dimension" are the encoder blocks'
outputs before pooling (level ``i`` skip = encoder ``i`` output, the size of the level-``i``
unpooling result).

Layer names follow the block convention of ``tfneuro.training.transfer`` (a layer is in block
``B`` when its name starts with ``B_``): ``encoder_{i}_t1_conv``/``encoder_{i}_t1_bn`` (and
``_t2_``; both arms of level ``i`` form block ``encoder_i``), ``pool_{i}_t1``,
``bottleneck_*`` (level ``depth``), ``decoder_{i}_*`` for ``i = depth-1 .. 1``,
``classifier``, ``softmax``.

Parameter count: paper 003 (section 4) reports 0.74 M trainable parameters. This build at the
paper's settings (64 maps, 1-channel T1 and T2, 4 classes) has 508,292 trainable parameters
(510,596 with the BN moving statistics): each encoder arm 74,880, the bottleneck and each of
the two decoder blocks 119,424, the classifier 260. The paper has no per-layer table, and the
blocks as its text describes them cannot reach 0.74 M; the gap (~0.23 M) is close to what a
second 3x3 conv per encoder block would add (2 arms x 3 blocks x 37,056 = 222,336 -> 0.73 M),
so the published model probably had more encoder convolutions than the text says. We follow
the text.

Odd sizes: pooling uses SAME windows and unpooling restores the skip's exact size, so any
slice size works without padding.

Departures: none in the architecture text. Loss (GDL) and optimiser live in
``tfneuro.losses``/``tfneuro.training``.
"""

from __future__ import annotations

import keras

from tfneuro.layers.pooling import MaxPoolingWithArgmax2D, MaxUnpooling2D
from tfneuro.models._common import (
    check_input_shape,
    check_num_classes,
    check_positive,
    classifier_head,
    registered_model,
)

ARMS = ("t1", "t2")


def _conv_relu_bn(x, filters, kernel_size, prefix):
    """Paper 003 order: conv -> ReLU -> BN."""
    x = keras.layers.Conv2D(filters, kernel_size, padding="same", activation="relu",
                            name=f"{prefix}_conv")(x)
    return keras.layers.BatchNormalization(name=f"{prefix}_bn")(x)


def _fuse(unpooled, skips, filters, kernel_size, prefix):
    """Decoder/bottleneck body after unpooling (paper 003 sec. 2.1, "Multi-Modal Decoder")."""
    x = keras.layers.Concatenate(axis=-1, name=f"{prefix}_unpool_concat")(unpooled)
    x = keras.layers.BatchNormalization(name=f"{prefix}_bn_in")(x)
    x = _conv_relu_bn(x, filters, 1, f"{prefix}_reduce")  # 1x1 to 64 maps, ReLU, BN
    x = keras.layers.Concatenate(axis=-1, name=f"{prefix}_skip_concat")([x] + list(skips))
    return _conv_relu_bn(x, filters, kernel_size, f"{prefix}_out")  # 3x3, ReLU, BN


def infinet(num_classes: int = 4, input_shape=(None, None, 1), filters: int = 64,
            kernel_size: int = 3, depth: int = 3, pool_impl: str = "auto",
            name: str = "infinet") -> keras.Model:
    """Build InfiNet (paper 003, section 2.1).

    Args:
        num_classes: output classes (paper: background, CSF, GM, WM = 4).
        input_shape: shape of EACH arm's input ``(H, W, C)``; H, W may be None.
        filters: feature maps of every conv (paper: 64).
        kernel_size: encoder / decoder conv kernel (paper: 3).
        depth: encoder blocks per arm (paper: 3); the decoder has ``depth - 1`` blocks plus the
            bottleneck.
        pool_impl: ``"auto"``, ``"tf"`` or ``"xla"`` for the pooling layers.
        name: model name (the registry name).

    Returns:
        A ``keras.Model`` with inputs ``[t1, t2]`` (each ``[B, H, W, C]``) and output softmax
        probabilities ``[B, H, W, num_classes]``.
    """
    num_classes = check_num_classes(num_classes, name)
    input_shape = check_input_shape(input_shape, 2, name)
    for arg, val in (("filters", filters), ("kernel_size", kernel_size), ("depth", depth)):
        check_positive(val, arg, name)

    inputs = [keras.Input(shape=input_shape, name=arm) for arm in ARMS]
    skips = {arm: [] for arm in ARMS}  # per level: (encoder output, indices)
    pooled = {}
    for arm, x in zip(ARMS, inputs):
        for i in range(1, depth + 1):
            x = _conv_relu_bn(x, filters, kernel_size, f"encoder_{i}_{arm}")
            skip = x
            x, idx = MaxPoolingWithArgmax2D(2, impl=pool_impl, name=f"pool_{i}_{arm}")(x)
            skips[arm].append((skip, idx))
        pooled[arm] = x

    # Bottleneck: unpool each arm with its own deepest indices, then the decoder body.
    level = depth
    unpooled = [MaxUnpooling2D(2, name=f"bottleneck_unpool_{arm}")(
        [pooled[arm], skips[arm][level - 1][1], skips[arm][level - 1][0]]) for arm in ARMS]
    x = _fuse(unpooled, [skips[arm][level - 1][0] for arm in ARMS], filters, kernel_size,
              "bottleneck")
    # Decoder blocks: the joint map unpooled with each arm's indices ("two unpooling layers").
    for level in range(depth - 1, 0, -1):
        unpooled = [MaxUnpooling2D(2, name=f"decoder_{level}_unpool_{arm}")(
            [x, skips[arm][level - 1][1], skips[arm][level - 1][0]]) for arm in ARMS]
        x = _fuse(unpooled, [skips[arm][level - 1][0] for arm in ARMS], filters, kernel_size,
                  f"decoder_{level}")
    outputs = classifier_head(x, num_classes)
    return registered_model(inputs, outputs, name=name, registry_name="infinet")
