"""Shared plumbing for tfneuro losses (private).

* label handling: ``y_true`` as integer labels (``y_pred``'s shape without the channel axis,
  or with a trailing 1 channel) or one-hot / soft labels (``y_pred``'s shape);
* ``y_pred`` as probabilities (``from_logits=False``, the default: tfneuro models end in a
  softmax) or logits (``from_logits=True``, MONAI's ``softmax=True``); always computed in
  float32, so float16 / bfloat16 predictions from mixed precision are safe;
* voxel weights: ``sample_weight`` with the spatial shape (optionally a trailing 1) is a voxel
  weight map; a per-sample ``[B]`` weight is broadcast over that sample's voxels;
* :class:`VoxelLoss` overrides ``keras.losses.Loss.__call__`` so that Keras passes the weight map
  (``fit(x, y, sample_weight=w)`` or datasets yielding ``(x, y, w)``) into the loss's own sums
  instead of multiplying a per-sample loss afterwards. Subclasses implement
  ``compute(y_true_onehot, y_pred, weights) -> scalar or unreduced tensor``.
"""

from __future__ import annotations

import keras
from keras import ops

from tfneuro.errors import InputError

REDUCTIONS = ("mean", "sum", "none")


def standardize_reduction(reduction, owner):
    if reduction == "sum_over_batch_size":
        reduction = "mean"
    if reduction is None:
        reduction = "none"
    if reduction not in REDUCTIONS:
        raise InputError(f"{owner}(reduction)", f"must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def to_probs(y_pred, from_logits):
    y_pred = ops.cast(y_pred, "float32")
    return ops.softmax(y_pred, axis=-1) if from_logits else y_pred


def log_probs(y_pred, from_logits, eps=1e-7):
    y_pred = ops.cast(y_pred, "float32")
    if from_logits:
        return ops.log_softmax(y_pred, axis=-1)
    return ops.log(ops.clip(y_pred, eps, 1.0))


def one_hot_labels(y_true, y_pred):
    """Return float32 one-hot (or soft) labels with ``y_pred``'s shape."""
    num_classes = y_pred.shape[-1]
    if num_classes is None:
        raise InputError("y_pred", "the channel (class) axis must have a static size")
    rank_t, rank_p = len(y_true.shape), len(y_pred.shape)
    if rank_t == rank_p and y_true.shape[-1] == 1 and num_classes != 1:
        y_true = ops.squeeze(y_true, -1)
        rank_t -= 1
    if rank_t == rank_p - 1:
        return ops.one_hot(ops.cast(y_true, "int32"), num_classes, dtype="float32")
    if rank_t == rank_p:
        return ops.cast(y_true, "float32")
    raise InputError("y_true", f"shape {tuple(y_true.shape)} does not fit y_pred "
                               f"{tuple(y_pred.shape)} (labels or one-hot expected)")


def voxel_weights(sample_weight, y_pred):
    """float32 weights broadcastable to ``y_pred`` without its channel axis, or None."""
    if sample_weight is None:
        return None
    w = ops.cast(sample_weight, "float32")
    spatial_rank = len(y_pred.shape) - 1
    if len(w.shape) == spatial_rank + 1 and w.shape[-1] == 1:
        w = ops.squeeze(w, -1)
    if len(w.shape) == spatial_rank:
        return w
    if len(w.shape) == 1:  # per-sample weight
        return ops.reshape(w, (-1,) + (1,) * (spatial_rank - 1))
    raise InputError("sample_weight", f"shape {tuple(w.shape)} is neither per-sample [B] nor a "
                                      f"voxel map {tuple(y_pred.shape[:-1])}")


def reduce(values, reduction):
    if reduction == "mean":
        return ops.mean(values)
    if reduction == "sum":
        return ops.sum(values)
    return values


class VoxelLoss(keras.losses.Loss):
    """Base class: routes ``sample_weight`` as a voxel weight map into :meth:`compute`."""

    def __init__(self, from_logits=False, reduction="mean", name=None):
        self.loss_reduction = standardize_reduction(reduction, type(self).__name__)
        super().__init__(name=name, reduction="none", dtype="float32")
        self.from_logits = bool(from_logits)

    def __call__(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.convert_to_tensor(y_pred)
        g = one_hot_labels(ops.convert_to_tensor(y_true), y_pred)
        w = voxel_weights(sample_weight, y_pred)
        return self.compute(g, y_pred, w)

    def call(self, y_true, y_pred):
        return self(y_true, y_pred)

    def compute(self, g, y_pred, w):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self):
        return {"name": self.name, "reduction": self.loss_reduction,
                "from_logits": self.from_logits}
