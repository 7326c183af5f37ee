"""Dice-family losses: DiceLoss, GeneralizedDiceLoss (paper 003), DiceCELoss (paper 002).

Argument names follow MONAI ``monai/losses/dice.py`` where the meaning is the same
(``include_background``, ``squared_pred``, ``batch``, ``smooth_nr``, ``smooth_dr``, ``w_type``,
``lambda_dice``, ``lambda_ce``, ``reduction``); MONAI's ``softmax=True`` is ``from_logits=True``
here (tfneuro models output softmax probabilities, so the default is False). Labels, logits,
float16 predictions and voxel weight maps are handled as described in ``losses/_base.py``:
every sum below runs over voxels weighted by ``sample_weight`` (weight 0 = not labelled, the
voxel is absent from every sum).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from tfneuro.errors import InputError
from tfneuro.losses._base import VoxelLoss, reduce, standardize_reduction, to_probs
from tfneuro.losses.cross_entropy import weighted_cross_entropy


def _sum_axes(rank, batch):
    return tuple(range(0 if batch else 1, rank - 1))


def dice_terms(g, p, w, batch, squared_pred=False):
    """Weighted per-class sums: (intersection, prediction, ground truth), each [B, K] or [K]."""
    axes = _sum_axes(len(p.shape), batch)
    wv = 1.0 if w is None else ops.expand_dims(ops.broadcast_to(w, ops.shape(p)[:-1]), -1)
    inter = ops.sum(wv * p * g, axis=axes)
    pred = ops.sum(wv * (p * p if squared_pred else p), axis=axes)
    truth = ops.sum(wv * (g * g if squared_pred else g), axis=axes)
    return inter, pred, truth


@keras.saving.register_keras_serializable(package="tfneuro")
class DiceLoss(VoxelLoss):
    """Soft Dice loss ``1 - (2 sum p g + smooth_nr) / (sum p + sum g + smooth_dr)`` per class.

    Milletari et al. 2016 / paper 002 eq. (2) (there written ``-2/|K| sum_k ...``; ``1 - mean``
    differs by a constant, so the gradients are the same). A class absent from both prediction
    and truth gets Dice ``smooth_nr / smooth_dr`` = 1 (loss 0), never NaN.

    Args:
        include_background: keep class 0 in the mean (False drops channel 0).
        from_logits: apply a softmax to ``y_pred`` first (MONAI ``softmax=True``).
        squared_pred: squares in the denominator (V-Net variant).
        batch: sum over the batch before the ratio (one Dice per class) instead of per sample.
        smooth_nr: added to the numerator.
        smooth_dr: added to the denominator.
        reduction: "mean", "sum" or "none" over the ``[B, K]`` (or ``[K]``) loss values.
        name: loss name.
    """

    def __init__(self, include_background=True, from_logits=False, squared_pred=False,
                 batch=False, smooth_nr=1e-5, smooth_dr=1e-5, reduction="mean", name="dice_loss"):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name)
        self.include_background = bool(include_background)
        self.squared_pred, self.batch = bool(squared_pred), bool(batch)
        self.smooth_nr, self.smooth_dr = float(smooth_nr), float(smooth_dr)

    def per_class(self, g, y_pred, w):
        p = to_probs(y_pred, self.from_logits)
        inter, pred, truth = dice_terms(g, p, w, self.batch, self.squared_pred)
        loss = 1.0 - (2.0 * inter + self.smooth_nr) / (pred + truth + self.smooth_dr)
        if not self.include_background:
            if g.shape[-1] == 1:
                raise InputError("DiceLoss(include_background)", "False with a single class")
            loss = loss[..., 1:]
        return loss

    def compute(self, g, y_pred, w):
        return reduce(self.per_class(g, y_pred, w), self.loss_reduction)

    def get_config(self):
        config = super().get_config()
        config.update(include_background=self.include_background, squared_pred=self.squared_pred,
                      batch=self.batch, smooth_nr=self.smooth_nr, smooth_dr=self.smooth_dr)
        return config


def inverse_square_frequency_weights(frequencies):
    """InfiNet's fixed GDL weights ``w_l = 1 / f_l^2`` from training-set class frequencies.

    Paper 003 sec. 2.1: "The weights for different classes are determined by the inverse square
    of their frequencies in the training data". Absent classes (f_l = 0) get the largest weight
    of the present classes (same rule as the per-batch weights). Normalised to sum to 1 (the
    loss is invariant to the scale of the weights apart from the smoothing terms).

    Args:
        frequencies: ``[K]`` class frequencies, e.g. ``losses.class_frequencies(labels, K)``.

    Returns:
        float64 array ``[K]``.
    """
    f = np.asarray(frequencies, np.float64)
    w = np.where(f > 0, 1.0 / np.where(f > 0, f, 1.0) ** 2, 0.0)
    w = np.where(f > 0, w, w.max() if w.max() > 0 else 1.0)
    return w / w.sum()


@keras.saving.register_keras_serializable(package="tfneuro")
class GeneralizedDiceLoss(VoxelLoss):
    """Generalized Dice Loss (Sudre et al. 2017; paper 003 eq. (1), InfiNet).

    ``GDL = 1 - (2 sum_l w_l sum_x p_l g_l + smooth_nr) / (sum_l w_l sum_x (p_l + g_l) + smooth_dr)``
    with ``w_l = 1 / (sum_x g_l)^2`` (``w_type="square"``), sums over batch and voxels
    (``batch=True``, as paper 003 computes it over the training batch).

    Absent classes (rule, documented and tested): a class with ``sum_x g_l = 0`` would get an
    infinite weight. It instead gets the largest weight among the classes present (MONAI's
    replacement rule), so a prediction of an absent class is still penalised through the
    denominator; if no class is present (an all-zero voxel weight map) all weights are 1 and the
    loss is ``1 - smooth_nr / (sum p + smooth_dr)``-bounded and finite. Weights are then
    normalised to sum to 1 -- eq. (1) is invariant to their scale, but with raw ``1/G^2`` weights
    (1e-10 for a 256x256 slice) the smoothing terms would dominate the ratio (a MONAI pitfall).

    Args:
        include_background: keep class 0.
        from_logits: apply a softmax to ``y_pred`` first.
        w_type: "square" (1/G^2, paper 003), "simple" (1/G) or "uniform" (1).
        class_weights: fixed ``[K]`` weights instead of per-batch ones (InfiNet's training-set
            inverse-square frequencies; see :func:`inverse_square_frequency_weights`).
        batch: sum over the batch (one GDL per batch, paper) or per sample then ``reduction``.
        smooth_nr: added to the numerator.
        smooth_dr: added to the denominator.
        reduction: "mean", "sum" or "none" (only matters with ``batch=False``).
        name: loss name.
    """

    def __init__(self, include_background=True, from_logits=False, w_type="square",
                 class_weights=None, batch=True, smooth_nr=1e-5, smooth_dr=1e-5,
                 reduction="mean", name="generalized_dice_loss"):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name)
        if w_type not in ("square", "simple", "uniform"):
            raise InputError("GeneralizedDiceLoss(w_type)",
                             f"must be 'square', 'simple' or 'uniform', got {w_type!r}")
        self.include_background, self.w_type, self.batch = bool(include_background), w_type, bool(batch)
        self.class_weights = None if class_weights is None else [float(v) for v in class_weights]
        if self.class_weights is not None and (
                min(self.class_weights) < 0 or not np.all(np.isfinite(self.class_weights))):
            raise InputError("GeneralizedDiceLoss(class_weights)", "must be finite and >= 0")
        self.smooth_nr, self.smooth_dr = float(smooth_nr), float(smooth_dr)

    def weights(self, truth):
        """Class weights from per-class ground-truth sums ``truth`` ([..., K])."""
        if self.class_weights is not None:
            w = ops.broadcast_to(ops.convert_to_tensor(self.class_weights, "float32"),
                                 ops.shape(truth))
        else:
            present = truth > 0
            safe = ops.where(present, truth, ops.ones_like(truth))
            raw = {"square": 1.0 / ops.square(safe), "simple": 1.0 / safe,
                   "uniform": ops.ones_like(safe)}[self.w_type]
            raw = ops.where(present, raw, ops.zeros_like(raw))
            top = ops.max(raw, axis=-1, keepdims=True)
            w = ops.where(present, raw, top)  # absent class -> largest present weight
            w = ops.where(top > 0, w, ops.ones_like(w))  # nothing present -> uniform
        return w / ops.maximum(ops.sum(w, axis=-1, keepdims=True), 1e-30)

    def compute(self, g, y_pred, w):
        if self.class_weights is not None and len(self.class_weights) != g.shape[-1]:
            raise InputError("GeneralizedDiceLoss(class_weights)",
                             f"has {len(self.class_weights)} values for {g.shape[-1]} classes")
        p = to_probs(y_pred, self.from_logits)
        inter, pred, truth = dice_terms(g, p, w, self.batch)
        if not self.include_background:
            inter, pred, truth = inter[..., 1:], pred[..., 1:], truth[..., 1:]
        cw = ops.stop_gradient(self.weights(truth))
        numer = ops.sum(cw * inter, axis=-1)
        denom = ops.sum(cw * (pred + truth), axis=-1)
        loss = 1.0 - (2.0 * numer + self.smooth_nr) / (denom + self.smooth_dr)
        return reduce(loss, self.loss_reduction)

    def get_config(self):
        config = super().get_config()
        config.update(include_background=self.include_background, w_type=self.w_type,
                      class_weights=self.class_weights, batch=self.batch,
                      smooth_nr=self.smooth_nr, smooth_dr=self.smooth_dr)
        return config


@keras.saving.register_keras_serializable(package="tfneuro")
class DiceCELoss(VoxelLoss):
    """Dice + cross-entropy, paper 002 eq. (1): ``L = lambda_dice * L_Dice + lambda_ce * L_CE``.

    ``L_Dice`` is :class:`DiceLoss` (mean over classes and samples, eq. (2) up to a constant);
    ``L_CE`` is the (voxel-weighted) mean categorical cross-entropy, optionally class weighted
    (``ce_weight``, MONAI's ``weight``).

    Args:
        include_background: keep class 0 in the Dice term (CE always uses every class).
        from_logits: ``y_pred`` are logits.
        squared_pred: squares in the Dice denominator.
        batch: batch Dice (one per class) instead of per sample.
        smooth_nr: Dice numerator smoothing.
        smooth_dr: Dice denominator smoothing.
        lambda_dice: weight of the Dice term (paper 002: 1).
        lambda_ce: weight of the CE term (paper 002: 1).
        ce_weight: None or ``[K]`` class weights for CE.
        reduction: "mean" (Dice values averaged; the CE is a voxel mean).
        name: loss name.
    """

    def __init__(self, include_background=True, from_logits=False, squared_pred=False,
                 batch=False, smooth_nr=1e-5, smooth_dr=1e-5, lambda_dice=1.0, lambda_ce=1.0,
                 ce_weight=None, reduction="mean", name="dice_ce_loss"):
        if standardize_reduction(reduction, "DiceCELoss") != "mean":
            raise InputError("DiceCELoss(reduction)", "only 'mean' is supported")
        super().__init__(from_logits=from_logits, reduction=reduction, name=name)
        if lambda_dice < 0 or lambda_ce < 0:
            raise InputError("DiceCELoss(lambda_dice/lambda_ce)", "must be >= 0")
        self.dice = DiceLoss(include_background, from_logits, squared_pred, batch, smooth_nr,
                             smooth_dr, "mean")
        self.lambda_dice, self.lambda_ce = float(lambda_dice), float(lambda_ce)
        self.ce_weight = None if ce_weight is None else [float(v) for v in ce_weight]

    def compute(self, g, y_pred, w):
        dice = self.dice.compute(g, y_pred, w)
        ce = weighted_cross_entropy(g, y_pred, self.from_logits, self.ce_weight, w)
        return self.lambda_dice * dice + self.lambda_ce * ce

    def get_config(self):
        config = super().get_config()
        dice = self.dice.get_config()
        config.update({k: dice[k] for k in ("include_background", "squared_pred", "batch",
                                            "smooth_nr", "smooth_dr")})
        config.update(lambda_dice=self.lambda_dice, lambda_ce=self.lambda_ce,
                      ce_weight=self.ce_weight)
        return config
