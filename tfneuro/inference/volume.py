"""Whole-volume class probabilities from any tfneuro segmentation model: slice models
(one view or several, aggregated) or 3D models (sliding window)."""

from __future__ import annotations

import numpy as np

from tfneuro.inference.slices import predict_volume_views
from tfneuro.inference.sliding_window import sliding_window_predict
from tfneuro.models.registry import spec_of

__all__ = ["predict_volume", "model_ndim"]


def model_ndim(model) -> int:
    """Spatial dimensions of one input of ``model``: its spec's, else its input rank - 2."""
    found = spec_of(model)
    return found.ndim if found is not None else len(model.inputs[0].shape) - 2


def predict_volume(model, x: np.ndarray, *, views=None, window=(96, 96, 96),
                   batch_size: int | None = None, precision: str = "auto") -> np.ndarray:
    """Class probabilities ``[X, Y, Z, K]`` of one volume ``x [X, Y, Z, C]``.

    Args:
        model: a 2D slice model, a dict ``{view: 2D model}`` (view aggregation,
            :func:`tfneuro.inference.predict_volume_views`), or a 3D model
            (:func:`tfneuro.inference.sliding_window_predict`).
        x: the (normalised) volume.
        views: for a single 2D model: the views to predict and average (default axial).
        window: 3D sliding window size; an axis of the volume smaller than the window gets a
            window of the volume's size rounded up to 16.
        batch_size: slices per call (2D; None: automatic from the slice size).
        precision: ``"auto"``, ``"float32"``, ``"bfloat16"`` or ``"float16"`` (as
            :func:`tfneuro.inference.predict_slices`).
    """
    if isinstance(model, dict):
        return predict_volume_views(model, x, batch_size=batch_size, precision=precision)
    if model_ndim(model) == 2:
        return predict_volume_views({v: model for v in (views or ["axial"])}, x,
                                    batch_size=batch_size, precision=precision)
    win = tuple(min(int(w), int(-(-s // 16) * 16)) for w, s in zip(window, x.shape[:3]))
    return sliding_window_predict(model, x, window=win, precision=precision)
