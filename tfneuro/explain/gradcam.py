"""Grad-CAM for 2D and 3D Keras models (paper 000 section 2.3.2, eq. 2; Selvaraju et al.).

``L = ReLU(Σ_k w_k A^k)``, ``w_k`` = the gradient of the class score with respect to the
feature map ``A^k`` of the named layer, averaged over all spatial axes (any number: 2D or 3D).
Paper 000 applies it to "the last convolutional layer of the last Res-block" of ResNet-3D,
named ``"last_conv"`` in :mod:`tfneuro.models.resnet3d`.

TensorFlow-only (uses ``tf.GradientTape``): explain sits at the end of the data flow and is
allowed to be TF-specific.

Agreement with tf-explain (``tf_explain.core.grad_cam.GradCAM``, 2D only): tf-explain's
``get_gradients_and_filters`` takes the gradient of ``predictions[:, class_index]`` (the model
output, i.e. the softmax probability if the model ends in softmax — we use the same score) and,
by default (``use_guided_grads=True``), keeps only gradients where both the gradient and the
feature map are positive; ``ponderate_output`` averages them over the spatial axes and sums the
weighted feature maps, WITHOUT a ReLU. Its ``explain`` then resizes with cv2 and min-max
normalises for display. So ``grad_cam(..., guided=g, upsample=False)`` equals
``ReLU(tf-explain ponderated output with use_guided_grads=g)``; :func:`grad_cam_tf_explain`
returns that pre-upsampling map from tf-explain's own functions.
"""

from __future__ import annotations

import numpy as np

from tfneuro.errors import InputError


def _score_model(model, layer_name, output_key):
    import keras

    try:
        layer = model.get_layer(layer_name)
    except ValueError:
        raise InputError("layer_name", f"model {model.name!r} has no layer {layer_name!r}") from None
    out = model.output
    if isinstance(out, dict):
        out = out[output_key]
    elif isinstance(out, (list, tuple)):
        out = out[0]
    return keras.Model(model.inputs, [layer.output, out])


def grad_cam(model, inputs, class_index, layer_name, upsample=True, guided=False,
             output_key="classification"):
    """Grad-CAM heatmaps for a batch (2D or 3D, channels-last).

    Args:
        model: a functional Keras model (classifier ``[B, K]``; for a segmentation model the
            class score is the sum of the class's output over all voxels).
        inputs: array ``[B, *spatial, C]``.
        class_index: class whose score is explained (int, or one int per sample).
        layer_name: the feature layer (e.g. ``"last_conv"`` for :mod:`resnet3d`).
        upsample: resize each map to the input's spatial shape (bilinear / trilinear, see
            :func:`resize_maps`).
        guided: keep only positive gradients at positive activations (tf-explain's
            ``use_guided_grads``); the paper's Grad-CAM is unguided (False).
        output_key: output to use for dict outputs.

    Returns:
        float32 array ``[B, *spatial]`` (input's spatial shape if ``upsample``, else the
        layer's), non-negative.
    """
    import tensorflow as tf

    x = np.asarray(inputs, dtype=np.float32)
    if x.ndim not in (4, 5):
        raise InputError("inputs", f"expected [B, *spatial(2 or 3), C], got shape {x.shape}")
    grad_model = _score_model(model, layer_name, output_key)
    b = x.shape[0]
    idx = np.broadcast_to(np.asarray(class_index, dtype=np.int64), (b,))
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        feats, preds = grad_model(x, training=False)
        preds = tf.reshape(preds, (b, -1, preds.shape[-1]))  # [B, voxels or 1, K]
        score = tf.reduce_sum(tf.gather(preds, idx, axis=-1, batch_dims=1), axis=1)
    grads = tape.gradient(score, feats)
    if guided:
        grads = tf.cast(feats > 0, grads.dtype) * tf.cast(grads > 0, grads.dtype) * grads
    spatial_axes = tuple(range(1, len(feats.shape) - 1))
    weights = tf.reduce_mean(grads, axis=spatial_axes, keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * feats, axis=-1)).numpy().astype(np.float32)
    if upsample:
        cam = resize_maps(cam, x.shape[1:-1])
    return cam


def resize_maps(maps, size):
    """Linearly resize ``[B, *spatial]`` maps (2D or 3D) to ``size`` (align-corners off)."""
    import tensorflow as tf

    maps = np.asarray(maps, dtype=np.float32)
    size = tuple(int(s) for s in size)
    if maps.shape[1:] == size:
        return maps
    if len(size) == 2:
        return tf.image.resize(maps[..., None], size, method="bilinear").numpy()[..., 0]
    # 3D: resize (X, Y) planes, then (X', Z) planes  -> trilinear
    b, x, y, z = maps.shape
    t = tf.image.resize(np.moveaxis(maps, 3, 1).reshape(b * z, x, y, 1), size[:2]).numpy()
    t = np.moveaxis(t.reshape(b, z, size[0], size[1]), 1, 3)  # [B, X', Y', Z]
    t = np.moveaxis(t, 2, 1).reshape(b * size[1], size[0], z, 1)
    t = tf.image.resize(t, (size[0], size[2])).numpy().reshape(b, size[1], size[0], size[2])
    return np.moveaxis(t, 1, 2).astype(np.float32)


def grad_cam_tf_explain(model, images, class_index, layer_name, use_guided_grads=True):
    """tf-explain's Grad-CAM maps (2D models), before its cv2 resize / display normalisation.

    Runs ``tf_explain.core.grad_cam.GradCAM.get_gradients_and_filters`` and
    ``generate_ponderated_output`` and applies the ReLU of Grad-CAM's definition (tf-explain
    omits it; its display min-max normalisation hides the difference).

    Args:
        model: 2D Keras model with a single output ``[B, K]``.
        images: ``[B, H, W, C]``.
        class_index: int class.
        layer_name: feature layer name.
        use_guided_grads: tf-explain's guided-gradient option (its default True).

    Returns:
        float32 array ``[B, h, w]`` at the layer's resolution.
    """
    import warnings

    from tf_explain.core.grad_cam import GradCAM

    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise InputError("images", f"tf-explain Grad-CAM is 2D: expected [B, H, W, C], got {images.shape}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras 3 warns about tf-explain's nested inputs list
        outputs, grads = GradCAM.get_gradients_and_filters(model, images, layer_name,
                                                           int(class_index), use_guided_grads)
    cams = GradCAM.generate_ponderated_output(outputs, grads)
    return np.maximum(np.stack([c.numpy() for c in cams]), 0).astype(np.float32)


def grad_cam_tf_explain_grid(model, images, class_index, layer_name, use_guided_grads=True):
    """tf-explain's own ``GradCAM().explain`` picture (RGB grid of overlays, uint8)."""
    import warnings

    from tf_explain.core.grad_cam import GradCAM

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GradCAM().explain((np.asarray(images, np.float32), None), model, int(class_index),
                                 layer_name=layer_name, use_guided_grads=use_guided_grads)
