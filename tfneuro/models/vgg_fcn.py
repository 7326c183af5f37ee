"""VGG16 "3D-like" FCN with side outputs (paper 004, Xu, Geraud & Bloch, ICIP 2017).

Paper 004, section 3 "Deep FCN for brain MR image segmentation":

* base network = the 5 convolutional stages of VGG16 pre-trained on ImageNet, fully connected
  layers discarded: ``keras.applications.VGG16(include_top=False, weights=...)``;
* "we add specialized convolutional layers (with a 3x3 kernel size) with K (e.g. K = 16)
  feature maps after the convolutional layers at the end of each stage. We resize all the
  specialized layers to the original image size, and concatenate them together. A last
  convolutional layer with kernel size 1x1 [...] combines linearly the fine to coarse feature
  maps": :class:`~tfneuro.layers.SideOutput` after ``block1_conv2``, ``block2_conv2``,
  ``block3_conv3``, ``block4_conv3``, ``block5_conv3``, concatenated, 1x1 conv "classifier",
  softmax ("multinomial logistic loss [...] passing real-valued predictions through a
  softmax");
* "For the adult images having relatively small BGT regions, we discard the coarsest feature
  maps from the last stage": ``drop_coarsest=True`` (stage 5 is then not built at all);
* input: "slices n-1, n and n+1 as respectively the red, green and blue channels" of a
  histogram-equalised volume (``tfneuro.inference.slices`` builds them; the volume is equalised
  with ``tfneuro.io.normalize.histogram_equalize``), "subtract the mean value for each channel
  in the training images": the :class:`ChannelMeanSubtract` layer (name ``"channel_mean"``)
  stores that mean IN the model (a non-trainable weight, also in its config), set it with
  :func:`set_channel_mean` from :func:`compute_channel_mean` over the training inputs.

Scale: the equalised volume is in [0, 1]; paper 004 fed 8-bit images to Caffe's ImageNet VGG,
so the layer computes ``(x - mean) * 255`` (``input_scale``) to give the pretrained filters
inputs of the range they were trained on. The default mean, 0.5 per channel, is the mean of a
perfectly equalised image (uniform on [0, 1]); replace it with the training-set mean.

Weights (``weights``): ``"imagenet"`` (keras downloads them on first use; needs network),
``None`` (random init), or a path to a weights file of ``keras.applications.VGG16(
include_top=False)`` (``.weights.h5`` saved by Keras 3, or the legacy ``.h5`` notop file keras
downloads): the file is loaded into the VGG16 base only; the side outputs and classifier
start from random init.

Departures: sizes are padded to a multiple of 16 inside the model (four 2x2 poolings; zero =
background padding before the mean subtraction) and the output cropped back, so every slice
size works with the side outputs aligned exactly; the paper's Caffe model crops instead.
The side outputs are resized bilinearly (paper: "resize", FCN-style deconvolution in [27]).

Layer names: ``image``, ``pad``, ``channel_mean``, VGG16's own (``block1_conv1`` ...),
``side_1`` .. ``side_5``, ``side_concat``, ``crop``, ``classifier``, ``softmax``.
"""

from __future__ import annotations

import os

import keras
import numpy as np
from keras import ops

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

#: The last convolution of each VGG16 stage (paper 004: side outputs go "at the end of each stage").
STAGE_ENDS = ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3", "block5_conv3")


@keras.saving.register_keras_serializable(package="tfneuro")
class ChannelMeanSubtract(keras.layers.Layer):
    """``(x - mean) * input_scale`` with the training-set channel mean stored in the model.

    Paper 004 section 3: "subtract the mean value for each channel in the training images"
    (and at test time: "we subtract the mean values for each channel"). The mean is a
    non-trainable weight (saved with the weights) and also in ``get_config`` (kept in sync by
    :meth:`set_mean`), so a ``.keras`` file carries it.

    Args:
        mean: per-channel mean in input units (sequence of C floats).
        input_scale: multiplier applied after subtracting (255 maps [0, 1] inputs to the 8-bit
            range ImageNet VGG16 was trained on).
        **kwargs: base ``keras.layers.Layer`` arguments.
    """

    def __init__(self, mean=(0.5, 0.5, 0.5), input_scale=255.0, **kwargs):
        super().__init__(**kwargs)
        self.mean = [float(m) for m in np.ravel(mean)]
        self.input_scale = float(input_scale)

    def build(self, input_shape):
        if input_shape[-1] != len(self.mean):
            raise InputError(f"{self.name}(mean)",
                             f"has {len(self.mean)} values for {input_shape[-1]} channels")
        self.mean_weight = self.add_weight(
            name="mean", shape=(len(self.mean),), trainable=False,
            initializer=keras.initializers.Constant(self.mean))
        self.built = True

    def set_mean(self, mean):
        """Replace the stored mean (weight and config)."""
        mean = np.asarray(mean, dtype="float32").ravel()
        if mean.shape != (len(self.mean),) or not np.all(np.isfinite(mean)):
            raise InputError("mean", f"must be {len(self.mean)} finite values, got {mean.tolist()}")
        self.mean = [float(m) for m in mean]
        self.mean_weight.assign(mean)

    def call(self, x):
        return (x - ops.cast(self.mean_weight, x.dtype)) * ops.cast(self.input_scale, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        # the weight is the truth (set_mean keeps both equal)
        mean = self.mean
        if self.built:
            mean = [float(m) for m in keras.ops.convert_to_numpy(self.mean_weight)]
        config.update(mean=mean, input_scale=self.input_scale)
        return config


def set_channel_mean(model: keras.Model, mean) -> None:
    """Store the training-set channel mean in a :func:`vgg16_fcn` model (layer ``channel_mean``).

    Args:
        model: a model with a :class:`ChannelMeanSubtract` layer named ``"channel_mean"``.
        mean: per-channel mean in input units (e.g. from :func:`compute_channel_mean`).
    """
    try:
        layer = model.get_layer("channel_mean")
    except ValueError:
        raise InputError("model", f"{model.name!r} has no 'channel_mean' layer") from None
    layer.set_mean(mean)


def compute_channel_mean(data, channels: int = 3) -> np.ndarray:
    """Per-channel mean of training inputs (paper 004: "the mean value for each channel in the
    training images").

    Args:
        data: a numpy array ``[..., C]``, an iterable of arrays, or an iterable (e.g. a
            ``tf.data.Dataset``) of ``x`` or ``(x, y[, w])`` batches with ``x`` ``[..., C]``.
        channels: C.

    Returns:
        float64 array of C means (accumulated in float64 over all voxels of all batches).
    """
    if isinstance(data, np.ndarray):
        data = [data]
    total = np.zeros(channels, dtype=np.float64)
    count = 0
    for batch in data:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        x = np.asarray(x)
        if x.shape[-1] != channels:
            raise InputError("data", f"expected {channels} channels last, got shape {x.shape}")
        total += x.reshape(-1, channels).sum(axis=0, dtype=np.float64)
        count += x.size // channels
    if count == 0:
        raise InputError("data", "is empty: no images to compute the channel mean from")
    return total / count


def _vgg16_base(weights, input_shape):
    if weights not in ("imagenet", None):
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise InputError(path, "VGG16 weights file not found (weights= takes 'imagenet', "
                                   "None, or a path to a VGG16(include_top=False) weights file)")
        weights = path
    try:
        return keras.applications.VGG16(include_top=False, weights=weights,
                                        input_shape=input_shape)
    except (ValueError, OSError, KeyError) as err:
        if weights in ("imagenet", None):
            raise
        raise InputError(weights, f"cannot load as VGG16(include_top=False) weights: {err}") from err


def vgg16_fcn(num_classes: int, input_shape=(None, None, 3), weights="imagenet",
              side_filters: int = 16, drop_coarsest: bool = False,
              channel_mean=(0.5, 0.5, 0.5), input_scale: float = 255.0,
              name: str = "vgg16_fcn") -> keras.Model:
    """Build the paper-004 VGG16 FCN with side outputs.

    Args:
        num_classes: output classes.
        input_shape: ``(H, W, 3)``: slices n-1, n, n+1 as channels; H, W may be None.
        weights: ``"imagenet"``, ``None`` or a path to VGG16 (no top) weights (module docstring).
        side_filters: K, maps of each side output (paper: 16).
        drop_coarsest: drop the stage-5 side output (paper: for adult images).
        channel_mean: initial per-channel training mean (input units); see
            :func:`set_channel_mean`.
        input_scale: scale after mean subtraction (255: [0, 1] inputs -> 8-bit range).
        name: model name (the registry name).

    Returns:
        A ``keras.Model`` ``[B, H, W, 3]`` -> softmax ``[B, H, W, num_classes]``.
    """
    from tfneuro.layers.heads import SideOutput

    num_classes = check_num_classes(num_classes, name)
    input_shape = check_input_shape(input_shape, 2, name, channels=3)
    check_positive(side_filters, "side_filters", name)
    base = _vgg16_base(weights, input_shape)

    inputs = keras.Input(shape=input_shape, name="image")
    x = pad_to_multiple(inputs, 16, name="pad")
    x = ChannelMeanSubtract(channel_mean, input_scale, name="channel_mean")(x)
    reference = x
    stages = STAGE_ENDS[:4] if drop_coarsest else STAGE_ENDS
    sides = []
    for layer in base.layers[1:]:  # reuse the (loaded) VGG16 layers on our graph
        x = layer(x)
        if layer.name in stages:
            k = len(sides) + 1
            sides.append(SideOutput(side_filters, 3, name=f"side_{k}")([x, reference]))
            if len(sides) == len(stages):
                break
    x = keras.layers.Concatenate(axis=-1, name="side_concat")(sides)
    x = crop_like(x, inputs, name="crop")
    outputs = classifier_head(x, num_classes)
    return registered_model(inputs, outputs, name=name, registry_name="vgg16_fcn")
