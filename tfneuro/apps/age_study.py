"""NEC-NET's skull-age study (paper 000 sections 2.3.2 and 3.2): the pieces that training the
age classifier (``experiments/train_age_classifier.py``) and explaining it
(``experiments/gradcam_age.py``) share -- age groups, the classifier input of one subject,
masks predicted by a NEC-NET model, and loading that model."""

from __future__ import annotations

import os

import numpy as np

from tfneuro.data.pipeline import fit_shape, load_subject
from tfneuro.errors import InputError
from tfneuro.inference.bridging import necnet_postprocess
from tfneuro.inference.sliding_window import sliding_window_predict
from tfneuro.models.resnet3d import AGE_GROUPS_MONTHS, make_classifier_input
from tfneuro.training.saving import load_keras_model

__all__ = ["age_group", "parse_shape", "predicted_mask", "classifier_input", "load_skull_model"]


def age_group(age_months) -> int:
    """Index of the nearest of paper 000's groups (12, 18, 24, 36, 48, 60 months); ties go to
    the younger group."""
    return int(np.argmin(np.abs(np.asarray(AGE_GROUPS_MONTHS, float) - float(age_months))))


def parse_shape(values, flag="--pad_to"):
    """Three positive ints from a flag list."""
    try:
        shape = tuple(int(v) for v in values)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(flag, f"expected three positive integers X,Y,Z, got {values}")
    return shape


def predicted_mask(model, row, modality, theta, window):
    """NEC-NET mask of one subject: sliding window, largest component, bridging."""
    x, _, _ = load_subject(row, modalities=(modality,), label=None, normalize="zscore")
    probs = sliding_window_predict(model, x, window=(window,) * 3)
    return necnet_postprocess(np.argmax(probs, axis=-1), theta)


def classifier_input(row, modality, pad_to, mask=None, mask_column="skull"):
    """``[image, mask, image*mask]`` of one subject, centre padded/cropped to ``pad_to``.

    Returns:
        ``(x [X,Y,Z,3] float32, mask [X,Y,Z] float32)`` on the padded grid.
    """
    x, m, _ = load_subject(row, modalities=(modality,),
                           label=None if mask is not None else mask_column, normalize="zscore")
    m = (np.asarray(mask) if mask is not None else m) > 0
    if m.shape != x.shape[:3]:
        raise InputError(row.get(mask_column, "mask"), f"mask shape {m.shape} differs from the "
                                                       f"image {x.shape[:3]}")
    x = make_classifier_input(x[..., 0], m)
    x, m, _ = fit_shape(x, m.astype(np.float32), np.zeros(m.shape, np.float32), pad_to)
    return x, m


def load_skull_model(path, unsafe=False):
    """Load a NEC-NET .keras model and check it takes one channel (a stage-1 model)."""
    if not os.path.isfile(path):
        raise InputError("--skull_model", f"{path}: file not found")
    model = load_keras_model(path, unsafe=unsafe)
    shape = model.inputs[0].shape
    if len(shape) != 5 or int(shape[-1]) != 1 or int(model.outputs[0].shape[-1]) != 2:
        raise InputError(path, f"is not a NEC-NET stage-1 model (input {tuple(shape)}, needs "
                               f"[B, X, Y, Z, 1] -> 2 classes)")
    return model
