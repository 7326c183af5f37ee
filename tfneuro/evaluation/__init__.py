"""Evaluation tables (and, beside them, the baselines every score is compared with).

Part of the apps layer: it may use everything below it (data, models, inference, ...).

- :mod:`tfneuro.evaluation.tables`: ``evaluate_subjects`` (predict -> labels -> Dice,
  precision, HD95, MSD per class and subject, with a post-processing hook),
  ``mean_foreground_dice``, ``write_results``, ``print_summary``.
"""

from tfneuro.utils.lazy import lazy_exports

_EXPORTS = {
    "evaluate_subjects": "tables",
    "mean_foreground_dice": "tables",
    "write_results": "tables",
    "print_summary": "tables",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
