"""Voxel-weighted cross-entropy with QuickNAT median-frequency and boundary weights.

QuickNAT (Roy et al., NeuroImage 2019, sec. 2.3; the model of paper 001) and the U-Net
baselines of paper 003 ("Median-frequency balanced cross-entropy") train with a weighted
multi-class cross-entropy

    L = - mean_x  omega(x) * sum_l g_l(x) log p_l(x),
    omega(x) = sum_l f_l * I(label(x) = l) + omega_0 * I(|grad label(x)| > 0),

where ``f_l = median(freq) / freq_l`` are median-frequency class weights (``freq_l`` = share of
voxels with label ``l`` in the training set) and the second term up-weights voxels on a label
boundary. ``omega_0 = 2 * median(freq) / min(freq)`` (twice the largest class weight), our
reading of Roy et al. -- paper 001 does not restate it, so it is an argument
(``boundary_weight``: a number, ``"auto"`` for that rule, or 0 to switch it off).

A boundary voxel is one whose label differs from a face neighbour (6-/4-neighbourhood, both
sides of each edge), computed from ``y_true`` inside the loss with ``keras.ops``.

Voxel weights (``sample_weight``, label budgeting) multiply ``omega``; the mean is over the
voxel weight sum (weight-0 voxels count for nothing; an all-zero map gives loss 0).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from tfneuro.errors import InputError
from tfneuro.losses._base import VoxelLoss, log_probs


def class_frequencies(label_maps, num_classes):
    """Share of voxels per class over an iterable of integer label maps (numpy).

    Args:
        label_maps: an array or an iterable of arrays of class ids.
        num_classes: K; ids outside ``[0, K)`` raise :class:`InputError`.

    Returns:
        float64 array ``[K]`` summing to 1.
    """
    if isinstance(label_maps, np.ndarray):
        label_maps = [label_maps]
    counts = np.zeros(num_classes, np.float64)
    for lab in label_maps:
        lab = np.asarray(lab)
        if lab.size and (lab.min() < 0 or lab.max() >= num_classes):
            raise InputError("label_maps", f"class ids must lie in [0, {num_classes}), got "
                                           f"[{lab.min()}, {lab.max()}]")
        counts += np.bincount(lab.astype(np.int64).ravel(), minlength=num_classes)
    if counts.sum() == 0:
        raise InputError("label_maps", "no voxels")
    return counts / counts.sum()


def median_frequency_weights(label_maps, num_classes):
    """Median-frequency class weights ``f_l = median(freq) / freq_l`` (QuickNAT).

    The median is over classes that occur; absent classes get weight 0 (they have no voxels to
    weight, and an inf would poison the loss).

    Args:
        label_maps: an array or an iterable of arrays of class ids.
        num_classes: K.

    Returns:
        float64 array ``[K]``.
    """
    freq = class_frequencies(label_maps, num_classes)
    present = freq > 0
    med = np.median(freq[present])
    return np.where(present, med / np.where(present, freq, 1.0), 0.0)


def quicknat_boundary_weight(class_weights):
    """``omega_0 = 2 * median(freq) / min(freq)`` = twice the largest median-frequency weight."""
    return 2.0 * float(np.max(class_weights))


def boundary_mask(labels):
    """float32 mask of voxels whose label differs from a face neighbour (``keras.ops``).

    Args:
        labels: integer tensor ``[B, *spatial]``.

    Returns:
        float32 tensor of the same shape, 1 on boundaries.
    """
    rank = len(labels.shape) - 1
    edge = ops.zeros_like(labels, dtype="bool")
    for axis in range(1, rank + 1):
        n = ops.shape(labels)[axis]
        lo = ops.take(labels, ops.arange(0, n - 1), axis=axis)
        hi = ops.take(labels, ops.arange(1, n), axis=axis)
        diff = ops.not_equal(lo, hi)
        pad_before = [[0, 0]] * (rank + 1)
        pad_after = [[0, 0]] * (rank + 1)
        pad_before[axis], pad_after[axis] = [1, 0], [0, 1]
        edge = ops.logical_or(edge, ops.pad(diff, pad_after, constant_values=False))
        edge = ops.logical_or(edge, ops.pad(diff, pad_before, constant_values=False))
    return ops.cast(edge, "float32")


def weighted_cross_entropy(g, y_pred, from_logits, class_weights=None, voxel_w=None,
                           boundary_weight=0.0):
    """Mean over (weighted) voxels of ``omega(x) * CE(x)``; see the module docstring.

    Args:
        g: float32 one-hot labels ``[B, *spatial, K]``.
        y_pred: probabilities or logits, same shape.
        from_logits: whether ``y_pred`` are logits.
        class_weights: None or ``[K]`` weights ``f_l``.
        voxel_w: None or ``[B, *spatial]`` (or broadcastable) voxel weights.
        boundary_weight: ``omega_0`` (0 disables the boundary term).

    Returns:
        float32 scalar.
    """
    ce = -ops.sum(g * log_probs(y_pred, from_logits), axis=-1)
    if class_weights is not None:
        omega = ops.sum(g * ops.convert_to_tensor(class_weights, "float32"), axis=-1)
    else:
        omega = ops.ones_like(ce)
    if boundary_weight:
        omega = omega + boundary_weight * boundary_mask(ops.argmax(g, axis=-1))
    s = ops.ones_like(ce) if voxel_w is None else ops.broadcast_to(voxel_w, ops.shape(ce))
    return ops.sum(s * omega * ce) / ops.maximum(ops.sum(s), 1e-12)


@keras.saving.register_keras_serializable(package="tfneuro")
class WeightedCrossEntropy(VoxelLoss):
    """QuickNAT weighted cross-entropy (median-frequency + boundary weights).

    Args:
        class_weights: None (unweighted) or ``[K]`` weights, e.g. from
            :func:`median_frequency_weights` on the training labels.
        boundary_weight: ``omega_0``: a float, ``"auto"`` (``2 * max(class_weights)``, Roy et
            al.'s ``2 * median(freq) / min(freq)``; needs class_weights) or 0 (off, default).
        from_logits: ``y_pred`` are logits (else probabilities, the tfneuro model output).
        reduction: "mean" (the only meaningful one: the loss is already a voxel mean).
        name: loss name.
    """

    def __init__(self, class_weights=None, boundary_weight=0.0, from_logits=False,
                 reduction="mean", name="weighted_cross_entropy"):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name)
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]
        if self.class_weights is not None and (
                min(self.class_weights) < 0 or not np.all(np.isfinite(self.class_weights))):
            raise InputError("WeightedCrossEntropy(class_weights)", "must be finite and >= 0")
        if boundary_weight == "auto":
            if self.class_weights is None:
                raise InputError("WeightedCrossEntropy(boundary_weight)",
                                 "'auto' needs class_weights (omega_0 = 2 * max weight)")
            boundary_weight = quicknat_boundary_weight(self.class_weights)
        self.boundary_weight = float(boundary_weight)

    def compute(self, g, y_pred, w):
        if self.class_weights is not None and len(self.class_weights) != g.shape[-1]:
            raise InputError("WeightedCrossEntropy(class_weights)",
                             f"has {len(self.class_weights)} values for {g.shape[-1]} classes")
        return weighted_cross_entropy(g, y_pred, self.from_logits, self.class_weights, w,
                                      self.boundary_weight)

    def get_config(self):
        config = super().get_config()
        config.update(class_weights=self.class_weights, boundary_weight=self.boundary_weight)
        return config
