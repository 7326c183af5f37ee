"""QuickNAT: 2D dense-block encoder/decoder with index unpooling (paper 001).

Paper 001 (Wang et al.), section 2.2, uses QuickNAT unchanged ("a modified version of U-Net
with skip connections, enhanced by unpooling layers [...] dense connections in both encoder
and decoder blocks"; "a detailed explanation of QuickNAT can be found in [8]" = Roy et al.,
NeuroImage 2019). The architecture below follows Roy et al. sec. 2.2 as paper 001 summarises it:

* 4 encoder blocks: a :class:`~tfneuro.layers.DenseBlock` (BN -> ReLU -> 5x5 conv, twice,
  densely concatenated, then BN -> ReLU -> 1x1 conv; 64 maps), then 2x2 max pooling that keeps
  the argmax indices (:class:`~tfneuro.layers.MaxPoolingWithArgmax2D`);
* a bottleneck: 5x5 conv with 64 maps + BN (Roy et al. sec. 2.2);
* 4 decoder blocks: index unpooling with the matching encoder's indices
  (:class:`~tfneuro.layers.MaxUnpooling2D`), concatenation with that encoder block's output
  (skip connection), a dense block;
* a 1x1 convolution to ``num_classes`` ("classifier") and softmax.

Paper 001 trains on 2D T2 slices (one input channel); ``input_shape``'s channel count is free.

Layer names (stable; ``tfneuro.training.transfer`` freezes by them, paper 001 section 3.2's
two-stage fine-tuning replaces/trains ``"classifier"`` first):

    encoder_1, pool_1, encoder_2, pool_2, encoder_3, pool_3, encoder_4, pool_4,
    bottleneck,
    unpool_4, skip_4, decoder_4, unpool_3, skip_3, decoder_3, ...,
    unpool_1, skip_1, decoder_1,
    classifier, softmax

Every block with weights (``encoder_i``, ``bottleneck``, ``decoder_i``, ``classifier``) is ONE
layer (``bottleneck`` is a two-layer ``keras.Sequential``), so ``model.get_layer(name)
.trainable = False`` freezes the whole block. :data:`BLOCK_NAMES` lists them input to output.

Odd sizes: the pooling layer uses SAME windows (``ceil(H/2)``) and unpooling restores the
skip's exact size, so any slice size works without padding (``input_shape`` spatial dims may
be None).

Departures from Roy et al.: none in the architecture. Roy et al.'s released code uses PReLU
and dropout 0.2 inside the blocks; the paper text says ReLU and no dropout, which are the
defaults here (``activation="prelu"``, ``dropout=0.2`` reproduce the code). The papers do not
give the BatchNormalization momentum; the default ``bn_momentum=0.9`` is the released code's
(ai-med nn_common_modules ``DenseBlock``: ``nn.BatchNorm2d`` with PyTorch's default momentum
0.1, i.e. Keras 0.9). With Keras' own 0.99 a short training leaves the inference-mode
statistics near their initial values: a 3-epoch, 84-step QuickNAT (8 filters, 3 mm) scored mean
Dice 0.07 in inference mode and 0.46-0.71 with batch statistics (docs/quickstart.md).
"""

from __future__ import annotations

import keras

from tfneuro.layers.dense import DenseBlock
from tfneuro.layers.pooling import MaxPoolingWithArgmax2D, MaxUnpooling2D
from tfneuro.models._common import (
    check_input_shape,
    check_num_classes,
    check_positive,
    classifier_head,
    registered_model,
)

#: Layers holding weights, from input to output (transfer-learning freeze groups use these).
BLOCK_NAMES = ("encoder_1", "encoder_2", "encoder_3", "encoder_4", "bottleneck",
               "decoder_4", "decoder_3", "decoder_2", "decoder_1", "classifier")


def quicknat(num_classes: int, input_shape=(None, None, 1), filters: int = 64,
             kernel_size: int = 5, num_convs: int = 3, depth: int = 4,
             activation: str = "relu", dropout: float = 0.0, pool_impl: str = "auto",
             bn_momentum: float = 0.9, name: str = "quicknat") -> keras.Model:
    """Build QuickNAT (paper 001 / Roy et al. 2019).

    Args:
        num_classes: output classes (softmax channels), background included.
        input_shape: ``(H, W, C)``; H and W may be None (any slice size, odd included).
        filters: maps per convolution (Roy et al.: 64).
        kernel_size: dense-block kernel size (Roy et al.: 5).
        num_convs: convolutions per dense block including the 1x1 (Roy et al.: 3).
        depth: number of encoder/decoder blocks (Roy et al.: 4).
        activation: dense-block activation ("relu" paper text, "prelu" released code).
        dropout: dropout after each dense block (paper text: none).
        pool_impl: ``"auto"``, ``"tf"`` or ``"xla"`` for :class:`MaxPoolingWithArgmax2D`
            (``"auto"`` picks the XLA-compilable path under ``jit_compile=True``).
        bn_momentum: BatchNormalization momentum (Roy et al.'s released code: 0.9 in Keras
            terms; Keras' default 0.99).
        name: model name (the registry name).

    Returns:
        A ``keras.Model`` mapping ``[B, H, W, C]`` to softmax probabilities
        ``[B, H, W, num_classes]``.
    """
    num_classes = check_num_classes(num_classes, name)
    input_shape = check_input_shape(input_shape, 2, name)
    for arg, val in (("filters", filters), ("kernel_size", kernel_size), ("depth", depth)):
        check_positive(val, arg, name)

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    skips = []
    for i in range(1, depth + 1):
        x = DenseBlock(filters, kernel_size, num_convs, activation=activation, dropout=dropout,
                       bn_momentum=bn_momentum, name=f"encoder_{i}")(x)
        skips.append(x)
        x, idx = MaxPoolingWithArgmax2D(2, impl=pool_impl, name=f"pool_{i}")(x)
        skips[-1] = (skips[-1], idx)
    # Roy et al. sec. 2.2: bottleneck = 5x5 conv (64 maps) + batch normalisation.
    x = keras.Sequential([
        keras.layers.Conv2D(filters, kernel_size, padding="same", name="conv"),
        keras.layers.BatchNormalization(momentum=bn_momentum, name="bn"),
    ], name="bottleneck")(x)
    for i in range(depth, 0, -1):
        skip, idx = skips[i - 1]
        x = MaxUnpooling2D(2, name=f"unpool_{i}")([x, idx, skip])
        x = keras.layers.Concatenate(axis=-1, name=f"skip_{i}")([x, skip])
        x = DenseBlock(filters, kernel_size, num_convs, activation=activation, dropout=dropout,
                       bn_momentum=bn_momentum, name=f"decoder_{i}")(x)
    outputs = classifier_head(x, num_classes)
    return registered_model(inputs, outputs, name=name, registry_name="quicknat")
