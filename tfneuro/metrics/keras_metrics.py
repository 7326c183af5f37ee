"""Streaming Keras metric for mean Dice during ``fit`` (``keras.ops`` + variables)."""

from __future__ import annotations

import keras
from keras import ops

from tfneuro.errors import InputError


@keras.saving.register_keras_serializable(package="tfneuro")
class MeanDice(keras.metrics.Metric):
    """Mean over classes of the Dice of the hard (argmax) prediction, accumulated over batches.

    Per class ``c`` the metric accumulates ``|A_c ∩ B_c|`` and ``|A_c| + |B_c|`` over every voxel
    seen since the last reset (a global, not per-batch-averaged, Dice), weighted by an optional
    voxel ``sample_weight`` (weight-0 voxels ignored). ``result()`` is the mean of
    ``2 I_c / S_c`` over the classes with ``S_c > 0``, 0 if there are none.

    Args:
        num_classes: K, the number of output channels.
        include_background: include class 0 in the mean.
        name: metric name.
        dtype: variable dtype.
    """

    def __init__(self, num_classes, include_background=False, name="mean_dice", dtype="float32"):
        super().__init__(name=name, dtype=dtype)
        if int(num_classes) < 2:
            raise InputError("MeanDice(num_classes)", f"must be >= 2, got {num_classes}")
        self.num_classes, self.include_background = int(num_classes), bool(include_background)
        self.intersection = self.add_variable((self.num_classes,), "zeros", name="intersection")
        self.total = self.add_variable((self.num_classes,), "zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.convert_to_tensor(y_true)
        if len(y_true.shape) == len(y_pred.shape):
            y_true = ops.argmax(y_true, -1) if y_true.shape[-1] != 1 else ops.squeeze(y_true, -1)
        k = self.num_classes
        t = ops.one_hot(ops.cast(y_true, "int32"), k, dtype="float32")
        p = ops.one_hot(ops.argmax(y_pred, -1), k, dtype="float32")
        if sample_weight is not None:
            w = ops.cast(sample_weight, "float32")
            if len(w.shape) == len(t.shape) and w.shape[-1] == 1:
                w = ops.squeeze(w, -1)
            if len(w.shape) == 1:
                w = ops.reshape(w, (-1,) + (1,) * (len(t.shape) - 2))
            w = ops.expand_dims(ops.broadcast_to(w, ops.shape(t)[:-1]), -1)
            t, p = t * w, p * w
        axes = tuple(range(len(t.shape) - 1))
        # with weights: weight * 1[truth] * 1[pred] = t * (p / w); use min for 0/1 masks
        self.intersection.assign_add(ops.sum(ops.minimum(t, p), axis=axes))
        self.total.assign_add(ops.sum(t, axis=axes) + ops.sum(p, axis=axes))

    def result(self):
        inter, total = self.intersection, self.total
        if not self.include_background:
            inter, total = inter[1:], total[1:]
        valid = total > 0
        dice = ops.where(valid, 2.0 * inter / ops.where(valid, total, 1.0), 0.0)
        count = ops.sum(ops.cast(valid, "float32"))
        return ops.where(count > 0, ops.sum(dice) / ops.maximum(count, 1.0), 0.0)

    def reset_state(self):
        self.intersection.assign(ops.zeros((self.num_classes,)))
        self.total.assign(ops.zeros((self.num_classes,)))

    def get_config(self):
        return {"num_classes": self.num_classes, "include_background": self.include_background,
                "name": self.name, "dtype": self.dtype}
