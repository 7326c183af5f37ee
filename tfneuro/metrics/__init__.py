"""Evaluation metrics on numpy label maps (distances in mm) and a streaming Keras Dice.

``a`` is always the reference (manual) map and ``b`` the prediction; see
:mod:`tfneuro.metrics.overlap` and :mod:`tfneuro.metrics.surface` for the exact definitions and
the documented results for empty structures. Names are resolved lazily, so the numpy metrics
(and ``experiments/evaluate.py``) do not import Keras/TensorFlow; only ``MeanDice`` does.
"""

from tfneuro.utils.lazy import lazy_exports

_EXPORTS = {
    "dice_score": "overlap",
    "precision_score": "overlap",
    "confusion_matrix": "overlap",
    "hausdorff_distance": "surface",
    "mean_surface_distance": "surface",
    "boundary": "surface",
    "directed_distances": "surface",
    "evaluation_table": "report",
    "summarize_table": "report",
    "MeanDice": "keras_metrics",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
