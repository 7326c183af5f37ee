"""NEC-NET's 3D U-Net for neurocranium segmentation (paper 000 section 2.3.1 and Fig. 2).

The network is Çiçek et al.'s 3D U-Net (paper 000 ref. 15), as paper 000 Fig. 2 describes:
"analysis and synthesis paths with four resolution steps each. Each layer in the analysis
route has two 3x3x3 convolutions, a rectified linear unit (ReLU), a 2x2x2 max pooling with
strides of two ... Each layer in the synthesis route consists of two 3x3x3 convolutions
followed by a ReLU, followed by an upconvolution of 2x2x2 by strides of two in each
dimension. The necessary high resolution features for the synthesis path are provided via
shortcut connections from layers of equal resolution ... A 1x1x1 convolution in the final
layer lowers the number of output channels to the number of labels, which in our instance is
2." We build each synthesis level as Çiçek et al. order it (up-convolution, concatenation,
then the two convolutions): the caption's order (convolutions, then up-convolution) describes
the same chain of layers cut at another place, and only this cut ends at full resolution
before the 1x1x1 convolution.

Choices and departures:
- Channels are doubled before pooling, as in Çiçek et al. (level l: ``base*2**l`` then
  ``base*2**(l+1)``; 32 -> 64 in the first level). Paper 000's caption says "tripling"; it
  otherwise repeats Çiçek's sentence verbatim, so we read it as a typo and follow Çiçek.
- Batch normalisation before each ReLU as in Çiçek et al. (``norm="batch"``); paper 000 does
  not mention it. ``norm=None`` gives the plain conv + ReLU variant.
- Input channels: NEC-NET is a cascade — "the inputs for the segmentation network are the
  original images and the predicted masks" — so a second run feeds ``[image, prior mask]``:
  build with ``input_shape=(None, None, None, 2)``. The default is one channel (image only).
- Spatial size: the model does NOT pad internally; each known spatial dimension must be a
  multiple of ``2 ** (depth - 1)`` (8 for depth 4). The paper's 96^3 sliding window
  (:func:`tfneuro.inference.sliding_window_predict`) and the conformed grid (multiple of 16)
  satisfy this. Known dimensions are checked when the model is built.
- Output: softmax probabilities, channels-last.
"""

from __future__ import annotations

import keras

from tfneuro.errors import InputError
from tfneuro.layers.residual import UNetDecoderBlock3D, UNetEncoderBlock3D
from tfneuro.models._common import (
    check_input_shape,
    check_num_classes,
    classifier_head,
    registered_model,
)


def check_spatial_multiple(input_shape, multiple, flag="input_shape"):
    """Raise InputError unless each known spatial dim of ``input_shape`` (channels last) is a
    positive multiple of ``multiple`` (the models do not pad internally)."""
    for d in input_shape[:-1]:
        if d is not None and (int(d) < multiple or int(d) % multiple):
            raise InputError(flag, f"spatial size {d} is not a multiple of {multiple} "
                                   f"(the network downsamples {multiple}x); pad or crop the input")


def unet3d(num_classes=2, input_shape=(None, None, None, 1), base_filters=32, depth=4,
           norm="batch", name="unet3d"):
    """Build NEC-NET's 3D U-Net (paper 000 section 2.3.1, Fig. 2; Çiçek et al. 2016).

    Args:
        num_classes: output classes (2: background / neurocranium, paper 000).
        input_shape: ``(X, Y, Z, C)``; spatial dims may be None but known ones must be
            multiples of ``2 ** (depth - 1)``. C=2 for the cascade's ``[image, prior mask]``.
        base_filters: channels of the first convolution (32 as in Çiçek et al.).
        depth: resolution steps (4 in paper 000; 3 max-pools).
        norm: "batch" (Çiçek), "instance" or None (plain conv + ReLU).
        name: model name.

    Returns:
        A functional ``keras.Model`` mapping ``[B, X, Y, Z, C]`` to softmax ``[B, X, Y, Z, K]``.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 2:
        raise InputError(f"{name}(depth)", f"must be an int >= 2, got {depth!r}")
    num_classes = check_num_classes(num_classes, name)
    input_shape = check_input_shape(input_shape, 3, name)
    check_spatial_multiple(input_shape, 2 ** (int(depth) - 1), flag=f"{name}(input_shape)")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    skips = []
    for level in range(depth):
        f = (base_filters * 2 ** level, base_filters * 2 ** (level + 1))
        x = UNetEncoderBlock3D(f, downsample=None if level == 0 else "max_pool", norm=norm,
                               activation="relu", name=f"enc{level}")(x)
        skips.append(x)
    for level in reversed(range(depth - 1)):
        # Çiçek: up-conv keeps the channels, then two convs with base*2**(level+1) channels.
        x = UNetDecoderBlock3D(base_filters * 2 ** (level + 1), up_filters=None, norm=norm,
                               activation="relu", name=f"dec{level}")([x, skips[level]])
    outputs = classifier_head(x, num_classes, ndim=3)  # 1x1x1 conv "classifier" + softmax
    return registered_model(inputs, outputs, name=name, registry_name="unet3d",
                            multiple=2 ** (int(depth) - 1))
