"""tfneuro.data: cohort tables, tf.data pipelines, augmentation, the synthetic infant cohort.

Public names (imported lazily, so ``import tfneuro.data`` does not import TensorFlow):

- cohorts (:mod:`tfneuro.data.cohort`): ``read_cohort``, ``write_cohort``, ``validate_cohort``,
  ``check_files``, ``select_split``, ``assign_splits``, ``from_dhcp``, ``from_iseg2017``,
  ``from_mcrib``, ``from_glob``;
- synthetic cohort (:mod:`tfneuro.data.synth`): ``make_cohort``, ``synth_subject``;
- datasets (TensorFlow-only): ``slice_dataset``, ``rgb_slice_dataset``
  (:mod:`tfneuro.data.slices`), ``patch_dataset`` (:mod:`tfneuro.data.patches`),
  ``volume_dataset``, ``load_subject`` (:mod:`tfneuro.data.pipeline`);
- augmentation: :mod:`tfneuro.data.augment` (``Compose`` and stages).
Label budgets live in :mod:`tfneuro.data.budget`.
"""

import importlib

_EXPORTS = {
    "read_cohort": "tfneuro.data.cohort",
    "write_cohort": "tfneuro.data.cohort",
    "validate_cohort": "tfneuro.data.cohort",
    "check_files": "tfneuro.data.cohort",
    "select_split": "tfneuro.data.cohort",
    "assign_splits": "tfneuro.data.cohort",
    "from_dhcp": "tfneuro.data.cohort",
    "from_iseg2017": "tfneuro.data.cohort",
    "from_mcrib": "tfneuro.data.cohort",
    "from_glob": "tfneuro.data.cohort",
    "make_cohort": "tfneuro.data.synth",
    "synth_subject": "tfneuro.data.synth",
    "slice_dataset": "tfneuro.data.slices",
    "rgb_slice_dataset": "tfneuro.data.slices",
    "volume_to_slices": "tfneuro.data.slices",
    "patch_dataset": "tfneuro.data.patches",
    "volume_dataset": "tfneuro.data.pipeline",
    "load_subject": "tfneuro.data.pipeline",
    "Compose": "tfneuro.data.augment",
    "default_augmentation": "tfneuro.data.augment",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tfneuro.data' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))
