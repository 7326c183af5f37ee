"""Evaluation tables and the baselines every score is reported beside.

Part of the apps layer: it may use everything below it (data, models, inference, ...).

- :mod:`tfneuro.evaluation.tables`: ``evaluate_subjects`` (predict -> labels -> Dice,
  precision, HD95, MSD per class and subject, with a post-processing hook),
  ``mean_foreground_dice``, ``write_results``, ``print_summary``;
- :mod:`tfneuro.evaluation.baselines`: intensity, atlas and nearest-labelled-slice baselines
  (numpy / scipy / scikit-image only; the last in :mod:`tfneuro.evaluation.nearest_slice`);
- :mod:`tfneuro.evaluation.compare`: the baselines' rows of a results table, fitted on the
  same training subjects as the model (``baseline_tables``, ``evaluate_splits``: a model on
  val/test with the baselines beside it; ``unlabelled_slice_tables``: a label-budget model
  against the nearest labelled slice), the model's skill over the best of them, and
  ``comparison_table`` (models side by side, one row per metric: paper 000's Table 2).

Names are resolved lazily: importing the package imports no TensorFlow.
"""

from tfneuro.utils.lazy import lazy_exports

_EXPORTS = {
    "evaluate_subjects": "tables",
    "mean_foreground_dice": "tables",
    "write_results": "tables",
    "print_summary": "tables",
    "as_predictor": "tables",
    "as_labels": "tables",
    "baseline_tables": "compare",
    "evaluate_splits": "compare",
    "split_baselines": "compare",
    "unlabelled_slice_tables": "compare",
    "skill_summary": "compare",
    "NEAREST_SLICE": "compare",
    "comparison_table": "compare",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
