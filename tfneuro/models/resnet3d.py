"""3D bottleneck ResNets for NEC-NET's skull-age classifier (paper 000 section 2.3.2).

Paper 000: "we used ResNet [He et al.] as the backbone and three different channels as input:
the raw 3D image data, forecasted skull mask results, and results from multiplying the image by
the skull mask elementwise ... classification ... between six categories (12, 18, 24, 36, 48,
60) months of age". Table 3 compares ResNet50-3D, ResNet101-3D and ResNet152-3D (bottleneck
blocks per stage [3, 4, 6, 3], [3, 4, 23, 3], [3, 8, 36, 3]).

Layout (He et al. 2016 bottleneck ResNet made 3D, as MONAI's ``ResNet`` which NEC-NET's
comparison models come from): stem 7x7x7 conv (64, stride 2) + BN + ReLU + 3x3x3 max-pool
(stride 2); four stages of bottleneck blocks (1x1x1 -> 3x3x3 -> 1x1x1 with 4x expansion; the
stride sits on the 3x3x3 conv, "ResNet v1.5", and the projection shortcut is a strided 1x1x1
conv + BN); global average pooling; Dense softmax over the age classes. BatchNorm uses
PyTorch's (MONAI's) momentum 0.1 and epsilon 1e-5 (Keras ``momentum=0.9``); stem stride 2 as
He et al. (MONAI's default ``conv1_t_stride`` is 1).

Grad-CAM layer (paper 000 section 2.3.2: "The last convolutional layer of the last Res-block was
made transparent"): our reading is the feature maps the last Res-block outputs -- after its
residual add and ReLU, the layer named ``"last_conv"`` -- which is where Grad-CAM is applied
to ResNets (Selvaraju et al., paper 000 ref. 17, weight "the feature maps A^k of a
convolutional layer"; for ResNets the last block's output). The block's last convolution in
the narrow sense, ``stage4_block3_conv3``, comes before its BatchNorm and the residual add,
so its maps miss the shortcut's contribution; ``gradcam_age.py --layer stage4_block3_conv3``
gives that literal reading (docs/necnet.md compares the two).
Use ``tfneuro.explain.grad_cam(model, x, class_index, "last_conv")``.
"""

from __future__ import annotations

import keras
import numpy as np

from tfneuro.models._common import (
    check_input_shape,
    check_num_classes,
    registered_model,
)

#: Age classes of paper 000 (months), the class index order of the classifier.
AGE_GROUPS_MONTHS = (12, 18, 24, 36, 48, 60)

_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def make_classifier_input(image, mask):
    """Stack NEC-NET's three classifier channels: ``[image, mask, image * mask]``.

    Args:
        image: array ``[X, Y, Z]`` (or ``[X, Y, Z, 1]``), the (normalised) T1 image.
        mask: array of the same spatial shape, the predicted skull mask (0/1 or probability).

    Returns:
        float32 array ``[X, Y, Z, 3]``.
    """
    from tfneuro.errors import InputError

    image = np.asarray(image, dtype=np.float32)
    mask = np.asarray(mask, dtype=np.float32)
    if image.ndim == 4 and image.shape[-1] == 1:
        image = image[..., 0]
    if mask.ndim == 4 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if image.shape != mask.shape or image.ndim != 3:
        raise InputError("mask", f"image {image.shape} and mask {mask.shape} must be the same 3D shape")
    return np.stack([image, mask, image * mask], axis=-1)


def _bn(name):
    """BatchNorm with PyTorch's defaults (momentum 0.1 = Keras 0.9, epsilon 1e-5), as the
    MONAI/torchvision ResNets. Keras' 0.99 keeps 0.99^80 = 45 % of the initial running
    statistics after 80 steps: the age classifier's learning floor then scored 6/12."""
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)


def _bottleneck(x, filters, strides, project, name):
    shortcut = x
    if project:
        shortcut = keras.layers.Conv3D(4 * filters, 1, strides=strides, use_bias=False,
                                       kernel_initializer="he_normal", name=f"{name}_proj")(x)
        shortcut = _bn(f"{name}_proj_bn")(shortcut)
    y = keras.layers.Conv3D(filters, 1, use_bias=False, kernel_initializer="he_normal",
                            name=f"{name}_conv1")(x)
    y = _bn(f"{name}_bn1")(y)
    y = keras.layers.ReLU(name=f"{name}_relu1")(y)
    y = keras.layers.Conv3D(filters, 3, strides=strides, padding="same", use_bias=False,
                            kernel_initializer="he_normal", name=f"{name}_conv2")(y)
    y = _bn(f"{name}_bn2")(y)
    y = keras.layers.ReLU(name=f"{name}_relu2")(y)
    y = keras.layers.Conv3D(4 * filters, 1, use_bias=False, kernel_initializer="he_normal",
                            name=f"{name}_conv3")(y)
    y = _bn(f"{name}_bn3")(y)
    return keras.layers.Add(name=f"{name}_add")([y, shortcut])


def resnet3d(layers_per_stage, num_classes=6, input_shape=(None, None, None, 3),
             base_filters=64, name="resnet3d", registry_name=None):
    """Generic 3D bottleneck ResNet.

    Args:
        layers_per_stage: bottleneck blocks in each of the 4 stages.
        num_classes: output classes (6 age groups, paper 000).
        input_shape: ``(X, Y, Z, C)``; C=3 for ``make_classifier_input``. Spatial dims may be
            None (global average pooling before the classifier).
        base_filters: bottleneck width of the first stage (64, He et al.).
        name: model name.
        registry_name: the registered name whose spec the model carries (None: a plain
            functional model).

    Returns:
        A functional ``keras.Model`` returning softmax class probabilities ``[B, num_classes]``.
    """
    num_classes = check_num_classes(num_classes, name)
    input_shape = check_input_shape(input_shape, 3, name)
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Conv3D(base_filters, 7, strides=2, padding="same", use_bias=False,
                            kernel_initializer="he_normal", name="stem_conv")(inputs)
    x = _bn("stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = keras.layers.MaxPooling3D(3, strides=2, padding="same", name="stem_pool")(x)
    n_stages = len(layers_per_stage)
    for s, n_blocks in enumerate(layers_per_stage):
        filters = base_filters * 2 ** s
        for b in range(n_blocks):
            strides = 2 if (b == 0 and s > 0) else 1
            x = _bottleneck(x, filters, strides, project=(b == 0), name=f"stage{s + 1}_block{b + 1}")
            last = s == n_stages - 1 and b == n_blocks - 1
            x = keras.layers.ReLU(name="last_conv" if last else f"stage{s + 1}_block{b + 1}_out")(x)
    x = keras.layers.GlobalAveragePooling3D(name="avg_pool")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32",
                                 name="classifier")(x)
    if registry_name is None:
        return keras.Model(inputs, outputs, name=name)
    return registered_model(inputs, outputs, name=name, registry_name=registry_name)


def resnet3d_50(num_classes=6, input_shape=(None, None, None, 3), base_filters=64,
                name="resnet3d_50"):
    """ResNet50-3D, blocks [3, 4, 6, 3] (paper 000 Table 3). Args as :func:`resnet3d`."""
    return resnet3d(_BLOCKS[50], num_classes, input_shape, base_filters, name,
                    registry_name="resnet3d_50")


def resnet3d_101(num_classes=6, input_shape=(None, None, None, 3), base_filters=64,
                 name="resnet3d_101"):
    """ResNet101-3D, blocks [3, 4, 23, 3] (paper 000 Table 3). Args as :func:`resnet3d`."""
    return resnet3d(_BLOCKS[101], num_classes, input_shape, base_filters, name,
                    registry_name="resnet3d_101")


def resnet3d_152(num_classes=6, input_shape=(None, None, None, 3), base_filters=64,
                 name="resnet3d_152"):
    """ResNet152-3D, blocks [3, 8, 36, 3] (paper 000 Table 3). Args as :func:`resnet3d`."""
    return resnet3d(_BLOCKS[152], num_classes, input_shape, base_filters, name,
                    registry_name="resnet3d_152")
