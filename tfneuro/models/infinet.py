"""InfiNet: two encoder arms (T1, T2), a joint decoder with index unpooling (paper 003).

Paper 003 (Kumar et al., ISBI 2018), section 2.1 "Model Architecture", block by block:

* **Encoder block** (each arm, 3 of them): "a 3x3 convolutional layer with 64 output feature
  maps, followed by a ReLU [...] and a batch normalization layer", same padding, then max
  pooling that halves the size and whose indices go to the matching decoder block. By default
  the conv -> ReLU -> BN unit runs twice per block (``encoder_convs=2``, see "Parameter count").
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

Parameter count and the one departure from the text (``encoder_convs``): paper 003 (section 4)
reports "just 0.74 million trainable parameters". Section 2.1 word for word ("Each encoder block
consists of a 3x3 convolutional layer with 64 output feature maps") gives 508,292 trainable
parameters at 64 maps, 1-channel T1 and T2 and 4 classes (each arm 74,880; the bottleneck and each
decoder block 119,424; the classifier 260) -- 0.51 M, not 0.74 M. No reading of the text with one
or two changes reaches 735,000-744,999 (every reading, with its arithmetic: ``docs/infinet.md``).
The closest is two 3x3 conv + ReLU + BN units per encoder block: each arm 186,048 (+111,168), so
730,628 trainable (733,700 with the BN moving statistics) = 0.73 M, 1.3 % short of the paper's
figure. That is the default (``encoder_convs=2``); ``encoder_convs=1`` builds the text as written.
The second unit repeats the text's conv -> ReLU -> BN order, and the skip is the block's output
(after its last unit).

Odd sizes: pooling uses SAME windows and unpooling restores the skip's exact size, so any
slice size works without padding.

Departures: ``encoder_convs=2`` (above). Loss (GDL) and optimiser live in
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


def _conv_relu_bn(x, filters, kernel_size, prefix, suffix=""):
    """Paper 003 order: conv -> ReLU -> BN (layers ``{prefix}_conv{suffix}``, ``_bn{suffix}``)."""
    x = keras.layers.Conv2D(filters, kernel_size, padding="same", activation="relu",
                            name=f"{prefix}_conv{suffix}")(x)
    return keras.layers.BatchNormalization(name=f"{prefix}_bn{suffix}")(x)


def _fuse(unpooled, skips, filters, kernel_size, prefix):
    """Decoder/bottleneck body after unpooling (paper 003 sec. 2.1, "Multi-Modal Decoder")."""
    x = keras.layers.Concatenate(axis=-1, name=f"{prefix}_unpool_concat")(unpooled)
    x = keras.layers.BatchNormalization(name=f"{prefix}_bn_in")(x)
    x = _conv_relu_bn(x, filters, 1, f"{prefix}_reduce")  # 1x1 to 64 maps, ReLU, BN
    x = keras.layers.Concatenate(axis=-1, name=f"{prefix}_skip_concat")([x] + list(skips))
    return _conv_relu_bn(x, filters, kernel_size, f"{prefix}_out")  # 3x3, ReLU, BN


def infinet(num_classes: int = 4, input_shape=(None, None, 1), filters: int = 64,
            kernel_size: int = 3, depth: int = 3, encoder_convs: int = 2,
            pool_impl: str = "auto", name: str = "infinet") -> keras.Model:
    """Build InfiNet (paper 003, section 2.1).

    Args:
        num_classes: output classes (paper: background, CSF, GM, WM = 4).
        input_shape: shape of EACH arm's input ``(H, W, C)``; H, W may be None.
        filters: feature maps of every conv (paper: 64).
        kernel_size: encoder / decoder conv kernel (paper: 3).
        depth: encoder blocks per arm (paper: 3); the decoder has ``depth - 1`` blocks plus the
            bottleneck.
        encoder_convs: conv -> ReLU -> BN units per encoder block. Default 2: the reading
            closest to the paper's 0.74 M parameters (730,628 at the defaults); 1 is section
            2.1's text as written (508,292). Layers ``encoder_{i}_{arm}_conv``/``_bn``, then
            ``_conv2``/``_bn2``, ...
        pool_impl: ``"auto"``, ``"tf"`` or ``"xla"`` for the pooling layers.
        name: model name (the registry name).

    Returns:
        A ``keras.Model`` with inputs ``[t1, t2]`` (each ``[B, H, W, C]``) and output softmax
        probabilities ``[B, H, W, num_classes]``.
    """
    num_classes = check_num_classes(num_classes, name)
    input_shape = check_input_shape(input_shape, 2, name)
    for arg, val in (("filters", filters), ("kernel_size", kernel_size), ("depth", depth),
                     ("encoder_convs", encoder_convs)):
        check_positive(val, arg, name)

    inputs = [keras.Input(shape=input_shape, name=arm) for arm in ARMS]
    skips = {arm: [] for arm in ARMS}  # per level: (encoder output, indices)
    pooled = {}
    for arm, x in zip(ARMS, inputs):
        for i in range(1, depth + 1):
            for j in range(1, encoder_convs + 1):
                x = _conv_relu_bn(x, filters, kernel_size, f"encoder_{i}_{arm}",
                                  "" if j == 1 else str(j))
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
