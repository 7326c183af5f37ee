"""Evaluation metrics on numpy label maps (distances in mm) and a streaming Keras Dice.

``a`` is always the reference (manual) map and ``b`` the prediction; see
:mod:`tfneuro.metrics.overlap` and :mod:`tfneuro.metrics.surface` for the exact definitions and
the documented results for empty structures.
"""

from tfneuro.metrics.keras_metrics import MeanDice
from tfneuro.metrics.overlap import confusion_matrix, dice_score, precision_score
from tfneuro.metrics.report import evaluation_table, summarize_table  # noqa: F401
from tfneuro.metrics.surface import (
    boundary,
    directed_distances,
    hausdorff_distance,
    mean_surface_distance,
)

__all__ = [
    "dice_score",
    "precision_score",
    "confusion_matrix",
    "hausdorff_distance",
    "mean_surface_distance",
    "boundary",
    "directed_distances",
    "MeanDice",
]
