"""tfneuro.data: cohort tables, tf.data pipelines, augmentation, the synthetic infant cohort.

Public names (imported lazily, so ``import tfneuro.data`` does not import TensorFlow):

- cohorts (:mod:`tfneuro.data.cohort`): ``read_cohort``, ``write_cohort``, ``validate_cohort``,
  ``check_files``, ``select_split``, ``assign_splits``, ``require_splits``,
  ``train_and_eval_splits``, ``cohort_files``,
  ``cohort_shape``; ``load_cohort`` (:mod:`tfneuro.data.load`: a run's validated cohort, or
  the synthetic one);
  builders from directory layouts (:mod:`tfneuro.data.builders`): ``from_dhcp``,
  ``from_iseg2017``, ``from_mcrib``, ``from_glob``;
- synthetic cohort (:mod:`tfneuro.data.synth`): ``make_cohort``, ``synth_subject``;
- datasets (TensorFlow-only): ``slice_dataset``, ``rgb_slice_dataset``
  (:mod:`tfneuro.data.slices`), ``patch_dataset`` (:mod:`tfneuro.data.patches`),
  ``volume_dataset``, ``load_subject`` (:mod:`tfneuro.data.pipeline`), all configured by the
  parameter objects ``VolumeSource`` and ``Batching`` (:mod:`tfneuro.data.options`);
- augmentation: :mod:`tfneuro.data.augment` (``Compose`` and stages).
Label budgets live in :mod:`tfneuro.data.budget`.
"""

from tfneuro.utils.lazy import lazy_exports

_EXPORTS = {
    "read_cohort": "cohort",
    "write_cohort": "cohort",
    "validate_cohort": "cohort",
    "check_files": "cohort",
    "select_split": "cohort",
    "assign_splits": "cohort",
    "load_cohort": "load",
    "require_splits": "cohort",
    "train_and_eval_splits": "cohort",
    "cohort_files": "cohort",
    "cohort_shape": "cohort",
    "from_dhcp": "builders",
    "from_iseg2017": "builders",
    "from_mcrib": "builders",
    "from_glob": "builders",
    "make_cohort": "synth",
    "synth_subject": "synth",
    "slice_dataset": "slices",
    "rgb_slice_dataset": "slices",
    "volume_to_slices": "slices",
    "patch_dataset": "patches",
    "VolumeSource": "options",
    "Batching": "options",
    "volume_dataset": "pipeline",
    "load_subject": "pipeline",
    "Compose": "augment",
    "default_augmentation": "augment",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
