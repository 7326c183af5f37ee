"""Training recipes: optimizers and schedules from the papers, run configuration (seed,
determinism, XLA, mixed precision, tf.distribute), the checkpointing ``fit`` loop, transfer
learning, shared segmentation set-ups, and saving / loading ``.keras`` models.

Names are resolved lazily (PEP 562), so ``import tfneuro.training`` does not import
TensorFlow until a name is used.
"""

from __future__ import annotations

from tfneuro.utils.lazy import lazy_exports

_EXPORTS = {
    # schedules.py
    "PolyDecay": "schedules",
    "StepDecay": "schedules",
    # recipes.py
    "SGDL2": "recipes",
    "Recipe": "recipes",
    "RECIPES": "recipes",
    "PAPER001_RATES": "recipes",
    "get_recipe": "recipes",
    "list_recipes": "recipes",
    "make_optimizer": "recipes",
    "caffe_equivalent": "recipes",
    "lr_sweep": "recipes",
    # runtime.py
    "TrainingConfig": "runtime",
    "setup_runtime": "runtime",
    "make_strategy": "runtime",
    "resolve_xla": "runtime",
    "is_chief": "runtime",
    # loop.py
    "fit": "loop",
    "epoch_seed": "loop",
    "save_checkpoint": "loop",
    "restore_checkpoint": "loop",
    "latest_checkpoint": "loop",
    "list_checkpoints": "loop",
    "resume_note": "loop",
    "FitOptions": "loop",
    "ProgressBar": "callbacks",
    "EpochScalars": "callbacks",
    # transfer.py
    "apply_strategy": "transfer",
    "replace_classifier": "transfer",
    "reinitialize": "transfer",
    "fit_two_stage": "transfer",
    "blocks_for_strategy": "transfer",
    "block_of": "transfer",
    # saving.py
    "save_keras_model": "saving",
    "load_keras_model": "saving",
    "register_serializables": "saving",
    # segmentation.py
    "segmentation_loss": "segmentation",
    "compile_segmentation": "segmentation",
    "build_segmentation_3d": "segmentation",
    "patch_train_fn": "segmentation",
    "slice_train_fn": "segmentation",
    "finetune_two_stage": "segmentation",
    "class_weights_from_cohort": "segmentation",
    "patch_steps": "segmentation",
    "count_batches": "segmentation",
    "repeating": "segmentation",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
