"""Evaluation tables and the baselines every score is reported beside.

Part of the apps layer: it may use everything below it (data, models, inference, ...).

- :mod:`tfneuro.evaluation.tables`: ``evaluate_subjects`` (predict -> labels -> Dice,
  precision, HD95, MSD per class and subject, with a post-processing hook),
  ``mean_foreground_dice``, ``write_results``, ``print_summary``;
- :mod:`tfneuro.evaluation.baselines`: intensity, atlas and nearest-labelled-slice baselines
  (numpy / scipy / scikit-image only);
- :mod:`tfneuro.evaluation.compare`: the baselines' rows of a results table, fitted on the
  same training subjects as the model, the model's skill over the best of them, and
  ``comparison_table`` (models side by side, one row per metric: paper 000's Table 2).

Names are resolved lazily: importing the package imports no TensorFlow.
"""

from tfneuro.utils.lazy import lazy_exports

_EXPORTS = {
    "evaluate_subjects": "tables",
    "mean_foreground_dice": "tables",
    "write_results": "tables",
    "print_summary": "tables",
    "baseline_tables": "compare",
    "skill_summary": "compare",
    "comparison_table": "compare",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
