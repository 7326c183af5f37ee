"""Deep supervision loss, paper 002 eq. (3).

``L_total = w_final * L_final + w_-1 * L_-1 + w_-2 * L_-2 + ...``: the same loss applied to the
full-resolution output and to each lower-resolution output of deeper decoder stages, against
the labels (and voxel weights) downsampled by nearest neighbour to that output's size
(paper 002 sec. 2: "The model compared the outputs from deeper layers with downsampled
versions of the ground truth segmentations"; lower resolutions get lower weights).

Nearest neighbour uses half-pixel centres: output index ``i`` of an axis of size ``n_out``
reads input index ``floor((i + 0.5) * n_in / n_out)`` (clipped to ``n_in - 1``); for a factor
2 that is ``2i + 1``, the second voxel of each 2-block.

Default weights (paper 002 follows nnU-Net [12], which halves the weight per level):
``w_i = 2^-i`` normalised to sum to 1.
"""

from __future__ import annotations

import keras
from keras import ops

from tfneuro.errors import InputError


def nearest_downsample(x, size, first_axis=1):
    """Nearest-neighbour resample of axes ``first_axis ..`` of ``x`` to ``size`` (keras.ops).

    Args:
        x: tensor ``[B, *spatial, ...]``.
        size: target spatial size (ints or scalar tensors).
        first_axis: index of the first spatial axis.

    Returns:
        the resampled tensor.
    """
    for k, n_out in enumerate(size):
        axis = first_axis + k
        n_in = ops.shape(x)[axis]
        if isinstance(n_in, int) and isinstance(n_out, int) and n_in == n_out:
            continue
        pos = (ops.cast(ops.arange(n_out), "float32") + 0.5) * (
            ops.cast(n_in, "float32") / ops.cast(n_out, "float32"))
        idx = ops.minimum(ops.cast(ops.floor(pos), "int32"), ops.cast(n_in, "int32") - 1)
        x = ops.take(x, idx, axis=axis)
    return x


@keras.saving.register_keras_serializable(package="tfneuro")
class DeepSupervisionLoss(keras.losses.Loss):
    """Weighted sum of one loss over outputs at decreasing resolution (paper 002 eq. (3)).

    ``DeepSupervisionLoss(loss)(y_true, [full, half, quarter, ...], sample_weight)``.

    Args:
        loss: a tfneuro/Keras loss instance (e.g. :class:`DiceCELoss`, paper 002's choice).
        weights: one weight per output, full resolution first (``w_final, w_-1, ...``); None
            gives ``2^-i`` normalised to sum 1. Extra outputs beyond ``len(weights)`` raise.
        name: loss name.

    Keras note: a model with a list of outputs and a single ``y`` cannot use this loss through
    ``model.compile(loss=...)`` (Keras pairs losses with outputs one to one); call it from a
    custom ``train_step`` / ``compute_loss``, or have the model return the list as one output.
    """

    def __init__(self, loss, weights=None, name="deep_supervision_loss"):
        super().__init__(name=name, reduction="none", dtype="float32")
        if isinstance(loss, dict):
            loss = keras.saving.deserialize_keras_object(loss)
        if not callable(loss):
            raise InputError("DeepSupervisionLoss(loss)", f"must be a loss, got {loss!r}")
        self.loss = loss
        if weights is not None:
            weights = [float(w) for w in weights]
            if not weights or min(weights) < 0:
                raise InputError("DeepSupervisionLoss(weights)", f"must be >= 0, got {weights}")
        self.weights = weights

    def output_weights(self, n):
        if self.weights is None:
            raw = [2.0 ** -i for i in range(n)]
            return [w / sum(raw) for w in raw]
        if len(self.weights) != n:
            raise InputError("DeepSupervisionLoss(weights)",
                             f"has {len(self.weights)} values for {n} outputs")
        return self.weights

    def __call__(self, y_true, y_pred, sample_weight=None):
        preds = list(y_pred) if isinstance(y_pred, (list, tuple)) else [y_pred]
        total = 0.0
        for pred, weight in zip(preds, self.output_weights(len(preds))):
            rank = len(pred.shape) - 2
            size = tuple(ops.shape(pred)[1:1 + rank])
            y = nearest_downsample(ops.convert_to_tensor(y_true), size)
            w = None if sample_weight is None else ops.convert_to_tensor(sample_weight)
            if w is not None and len(w.shape) > 1:
                w = nearest_downsample(w, size)
            total = total + weight * ops.cast(self.loss(y, pred, w), "float32")
        return total

    def call(self, y_true, y_pred):
        return self(y_true, y_pred)

    def get_config(self):
        return {"name": self.name, "weights": self.weights,
                "loss": keras.saving.serialize_keras_object(self.loss)}
