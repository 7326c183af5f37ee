"""In-graph (TensorFlow-only) versions of tfneuro's whole-volume inference steps.

These are the ops that go inside an exported SavedModel, so that a TensorFlow program without
tfneuro gets the same labels as :mod:`tfneuro.inference` running the Keras model on a volume
normalised by :mod:`tfneuro.io.normalize`. They are written with ``tf`` ops only (this module is
TensorFlow-only by design: SavedModel export has no Keras-3-backend-neutral equivalent) and
keep no state between calls, so concurrent calls of a loaded signature are independent.

Numerical definitions follow the numpy / scikit-image code they mirror:

* percentiles: ``numpy.percentile`` with the default ``"linear"`` method;
* histogram equalisation: ``skimage.exposure.equalize_hist`` (256-bin histogram over the
  value range, normalised CDF interpolated at the bin centres; paper 004, "Pre-processing");
* Gaussian blending of overlapping 3D windows: importance map ``exp(-d^2 / (2 sigma^2))`` with
  ``sigma = sigma_scale * window`` per axis (nnU-Net / MONAI convention), probabilities
  averaged with those weights.
"""

from __future__ import annotations

import types

import numpy as np
import tensorflow as tf

from tfneuro.inference import memory
from tfneuro.inference.sliding_window import importance_map, window_starts

#: The TensorFlow ops :func:`tfneuro.inference.sliding_window.window_starts` needs in a graph.
_TF_OPS = types.SimpleNamespace(arange=tf.range, minimum=tf.minimum, maximum=tf.maximum)

__all__ = [
    "percentile",
    "normalize_channel",
    "histogram_equalize",
    "pad_to",
    "predict_slices_in_graph",
    "sliding_window",
]


# --------------------------------------------------------------------------- normalisation
def percentile(values: tf.Tensor, q) -> tf.Tensor:
    """``numpy.percentile(values, q)`` (linear interpolation) of a 1D float tensor.

    Args:
        values: 1D float32 tensor (at least one element).
        q: python sequence of percentiles in [0, 100].

    Returns:
        float32 tensor ``[len(q)]``.
    """
    v = tf.sort(tf.reshape(values, [-1]))
    n = tf.cast(tf.size(v), tf.float64)
    pos = tf.constant(np.asarray(q, np.float64) / 100.0) * (n - 1.0)
    lo = tf.floor(pos)
    frac = tf.cast(pos - lo, tf.float32)
    lo_i = tf.cast(lo, tf.int32)
    hi_i = tf.minimum(lo_i + 1, tf.size(v) - 1)
    a = tf.gather(v, lo_i)
    b = tf.gather(v, hi_i)
    return a + frac * (b - a)


def histogram_equalize(x: tf.Tensor, mask: tf.Tensor | None = None, nbins: int = 256) -> tf.Tensor:
    """``skimage.exposure.equalize_hist(x, nbins, mask)`` in TensorFlow.

    The histogram (``nbins`` equal bins over [min, max] of the masked values) gives a CDF
    normalised to 1, which is linearly interpolated at the bin centres (``numpy.interp``,
    clamped at both ends) for every voxel.

    Args:
        x: float32 tensor of any shape (one channel).
        mask: optional boolean tensor of x's shape; the histogram uses these voxels only.
        nbins: number of histogram bins.
    """
    vals = tf.reshape(x, [-1]) if mask is None else tf.boolean_mask(x, mask)
    lo = tf.reduce_min(vals)
    hi = tf.reduce_max(vals)
    width = tf.maximum(hi - lo, 1e-12)
    # numpy.histogram: bin = floor((v - lo) / width * nbins), the last edge inclusive.
    idx = tf.cast(tf.floor((vals - lo) / width * nbins), tf.int32)
    idx = tf.clip_by_value(idx, 0, nbins - 1)
    hist = tf.math.bincount(idx, minlength=nbins, maxlength=nbins, dtype=tf.float32)
    cdf = tf.cumsum(hist)
    cdf = cdf / cdf[-1]
    step = width / nbins
    # position of x relative to the bin centres lo + (i + 0.5) * step
    t = (x - lo) / step - 0.5
    t = tf.clip_by_value(t, 0.0, float(nbins - 1))
    i0 = tf.cast(tf.floor(t), tf.int32)
    i0 = tf.minimum(i0, nbins - 2)
    frac = t - tf.cast(i0, tf.float32)
    c0 = tf.gather(cdf, i0)
    c1 = tf.gather(cdf, i0 + 1)
    return c0 + frac * (c1 - c0)


def normalize_channel(x: tf.Tensor, method: str, percentiles=(0.5, 99.5),
                      mask: str | None = None) -> tf.Tensor:
    """Normalise one channel (a float32 volume) like :mod:`tfneuro.io.normalize`.

    Args:
        x: float32 volume ``[X, Y, Z]``.
        method: ``"zscore"`` (clip to the percentiles, then subtract the mean and divide by
            the standard deviation of the clipped values), ``"minmax"`` (clip to the
            percentiles and rescale to [0, 1]) or ``"none"``.
        percentiles: the clipping percentiles (``None``: no clipping).
        mask: ``None`` (statistics over all voxels) or ``"nonzero"`` (over voxels != 0).
    """
    if method == "none":
        return x
    sel = None if mask is None else tf.not_equal(x, 0.0)
    vals = tf.reshape(x, [-1]) if sel is None else tf.boolean_mask(x, sel)
    if percentiles is not None:
        p = percentile(vals, percentiles)
        lo, hi = p[0], p[1]
        x = tf.clip_by_value(x, lo, hi)
        vals = tf.clip_by_value(vals, lo, hi)
    if method == "zscore":
        mean = tf.reduce_mean(vals)
        std = tf.math.reduce_std(vals)
        return (x - mean) / tf.maximum(std, 1e-8)
    if method == "minmax":
        lo = tf.reduce_min(vals)
        hi = tf.reduce_max(vals)
        return (x - lo) / tf.maximum(hi - lo, 1e-8)
    raise ValueError(f"unknown normalization method {method!r}")


# --------------------------------------------------------------------------- padding
def pad_to(x: tf.Tensor, target, axes) -> tuple[tf.Tensor, list]:
    """Zero-pad ``x`` symmetrically (the extra voxel after) so ``x.shape[a] >= target[i]``.

    Args:
        x: tensor.
        target: int32 scalars (tensors or ints), one per axis in ``axes``.
        axes: axes of ``x`` to pad.

    Returns:
        The padded tensor and the list of ``(before, size)`` per padded axis for cropping back.
    """
    shape = tf.shape(x)
    paddings = [[0, 0] for _ in range(x.shape.rank)]
    crops = []
    for t, a in zip(target, axes):
        diff = tf.maximum(t - shape[a], 0)
        before = diff // 2
        paddings[a] = [before, diff - before]
        crops.append((before, shape[a]))
    return tf.pad(x, tf.stack([tf.stack(p) for p in paddings])), crops


def round_up(n, multiple: int):
    """Smallest multiple of ``multiple`` that is >= ``n`` (int32 tensor)."""
    if multiple <= 1:
        return n
    return (n + multiple - 1) // multiple * multiple


# --------------------------------------------------------------------------- 2D slices
def _as_list(outputs):
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def nonzero_range(volume: tf.Tensor, axis: int):
    """``[start, stop)`` of the slices along ``axis`` holding signal in any channel (neither 0
    nor the channel's minimum, as :func:`tfneuro.data.patches.nonempty_mask`).

    Mirrors :func:`tfneuro.inference.slices.nonzero_slice_range`; ``(0, 0)`` without signal.
    """
    lo = tf.reduce_min(volume, axis=[0, 1, 2], keepdims=True)
    signal = tf.logical_and(tf.not_equal(volume, 0.0), tf.not_equal(volume, lo))
    other = [a for a in range(4) if a != axis]
    hit = tf.reshape(tf.where(tf.reduce_any(signal, axis=other)), [-1])
    hit = tf.cast(hit, tf.int32)
    return tf.cond(tf.size(hit) > 0, lambda: (hit[0], hit[-1] + 1), lambda: (0, 0))


def predict_slices_in_graph(call, volume: tf.Tensor, axis: int, num_classes: int, *, input_kind: str,
                            multiple: int = 1, batch_size: int | None = None, skip_empty: bool = True):
    """Run a 2D model over all slices of ``volume`` along ``axis``; TensorFlow-only.

    The same computation as :func:`tfneuro.inference.slices.predict_slices`: slice ``n`` is
    ``np.take(volume, n, axis)`` (no transposition of the other axes); with ``skip_empty``
    only the slab of slices inside the nonzero bounding box is predicted, the others get
    background probability 1; ``rgb_slices`` inputs are slices n-1, n, n+1 of channel 0 with
    zeros outside the volume (paper 004, section 3). Slices are fed ``batch_size`` at a time
    inside a ``tf.while_loop`` that runs one iteration at a time, so only one batch of model
    inputs exists at once; per-batch probabilities are collected in a ``TensorArray``.

    Args:
        call: ``call(inputs) -> probabilities [b, H, W, K]`` (the model, inference mode).
        volume: normalised float32 ``[X, Y, Z, C]``.
        axis: 0, 1 or 2: the slice axis.
        num_classes: K.
        input_kind: ``"channels"`` (C channels), ``"two_arm"`` (two inputs ``[b,H,W,1]``)
            or ``"rgb_slices"``.
        multiple: zero-pad each slice (symmetrically) so H and W are multiples of this, and
            crop the output back (1 for models that pad internally).
        batch_size: slices per model call; None: from the padded slice size, as
            :func:`tfneuro.inference.memory.auto_slice_batch` (computed in the graph).
        skip_empty: predict only the slab of slices holding signal (:func:`nonzero_range`).

    Returns:
        float32 ``[X, Y, Z, K]`` probabilities.
    """
    perm = [axis] + [a for a in range(3) if a != axis] + [3]
    v = tf.transpose(volume, perm)  # [N, H, W, C]
    shape = tf.shape(v)
    n = shape[0]
    if skip_empty:
        start, stop = nonzero_range(v, 0)
    else:
        start, stop = 0, n
    v, crops = pad_to(v, [round_up(shape[1], multiple), round_up(shape[2], multiple)], [1, 2])
    (b1, h), (b2, w) = crops
    if batch_size is None:
        pixels = tf.shape(v)[1] * tf.shape(v)[2]
        batch_size = tf.clip_by_value(memory.AUTO_BATCH_PIXELS // tf.maximum(pixels, 1), 1,
                                      memory.AUTO_BATCH_MAX)
    m = stop - start
    nbatch = (m + batch_size - 1) // batch_size
    ch0 = v[..., 0]
    zero = tf.zeros_like(ch0[:1])
    padded_ch0 = tf.concat([zero, ch0, zero], 0) if input_kind == "rgb_slices" else None

    def body(i, ta):
        lo = start + i * batch_size
        hi = tf.minimum(lo + batch_size, stop)
        if input_kind == "rgb_slices":
            # slice n of the volume is slice n + 1 of padded_ch0
            inputs = tf.stack([padded_ch0[lo:hi], padded_ch0[lo + 1:hi + 1],
                               padded_ch0[lo + 2:hi + 2]], axis=-1)
        else:
            x = v[lo:hi]
            inputs = [x[..., 0:1], x[..., 1:2]] if input_kind == "two_arm" else x
        p = tf.cast(call(inputs), tf.float32)
        p = p[:, b1:b1 + h, b2:b2 + w, :]
        return i + 1, ta.write(i, p)

    ta = tf.TensorArray(tf.float32, size=nbatch, infer_shape=False,
                        element_shape=tf.TensorShape([None, None, None, num_classes]))
    _, ta = tf.while_loop(lambda i, _: i < nbatch, body, [0, ta], parallel_iterations=1)
    pred = tf.cond(m > 0, ta.concat, lambda: tf.zeros([0, h, w, num_classes], tf.float32))
    if skip_empty:
        bg = tf.one_hot(tf.zeros([1, h, w], tf.int32), num_classes, dtype=tf.float32)
        pred = tf.concat([tf.tile(bg, [start, 1, 1, 1]), pred,
                          tf.tile(bg, [n - stop, 1, 1, 1])], 0)
    inv = [perm.index(a) for a in range(4)]
    return tf.transpose(pred, inv)


# --------------------------------------------------------------------------- 3D windows
def sliding_window(call, volume: tf.Tensor, window, num_classes: int, *, overlap: float = 0.5,
                   sigma_scale: float = 0.125, batch_size: int = 1, input_kind: str = "channels",
                   blend: str = "gaussian"):
    """3D sliding-window prediction with Gaussian blending, in TensorFlow.

    The volume is zero-padded (symmetrically) to at least ``window``; windows start every
    ``int(window * (1 - overlap))`` voxels per axis (the last one flush with the end). Each
    window's probabilities are weighted by the importance map and added into an accumulator
    with ``tf.tensor_scatter_nd_add`` inside a ``tf.while_loop`` (one batch of windows in
    memory at a time); the sum is divided by the summed weights and cropped back.

    Args:
        call: ``call(inputs) -> probabilities [b, wx, wy, wz, K]``.
        volume: normalised float32 ``[X, Y, Z, C]``.
        window: python ints ``(wx, wy, wz)``.
        num_classes: K.
        overlap: fraction of a window shared with its neighbour, in [0, 1).
        sigma_scale: Gaussian sigma as a fraction of the window.
        batch_size: windows per model call.
        input_kind: ``"channels"`` or ``"two_arm"``.
        blend: ``"gaussian"`` or ``"constant"`` (plain average).

    Returns:
        float32 ``[X, Y, Z, K]`` probabilities.
    """
    window = [int(w) for w in window]
    v, crops = pad_to(volume, window, [0, 1, 2])
    shape = tf.shape(v)
    starts = [window_starts(shape[a], window[a], overlap, xp=_TF_OPS) for a in range(3)]
    grid = tf.stack(tf.meshgrid(*starts, indexing="ij"), axis=-1)
    grid = tf.reshape(grid, [-1, 3])  # [n_windows, 3]
    nwin = tf.shape(grid)[0]
    nbatch = (nwin + batch_size - 1) // batch_size
    imp = tf.constant(importance_map(window, blend, sigma_scale))[..., None]
    local = tf.stack(tf.meshgrid(*[tf.range(w) for w in window], indexing="ij"), axis=-1)
    acc0 = tf.zeros(tf.concat([shape[:3], [num_classes + 1]], 0), tf.float32)

    def crop(start):
        return tf.slice(v, tf.concat([start, [0]], 0), window + [-1])

    def body(i, acc):
        ids = tf.range(i * batch_size, tf.minimum((i + 1) * batch_size, nwin))
        st = tf.gather(grid, ids)  # [b, 3]
        x = tf.map_fn(crop, st, fn_output_signature=tf.TensorSpec(window + [None], tf.float32))
        inputs = [x[..., 0:1], x[..., 1:2]] if input_kind == "two_arm" else x
        p = tf.cast(call(inputs), tf.float32)
        upd = tf.concat([p * imp, tf.broadcast_to(imp, tf.concat([tf.shape(p)[:4], [1]], 0))], -1)
        idx = local[None] + st[:, None, None, None, :]
        return i + 1, tf.tensor_scatter_nd_add(acc, idx, upd)

    _, acc = tf.while_loop(lambda i, _: i < nbatch, body, [0, acc0], parallel_iterations=1)
    probs = acc[..., :num_classes] / tf.maximum(acc[..., num_classes:], 1e-12)
    (b0, s0), (b1, s1), (b2, s2) = crops
    return probs[b0:b0 + s0, b1:b1 + s1, b2:b2 + s2, :]
