"""Segmentation training set-ups that several experiments share: the loss (with deep
supervision, and AgeU-Net's weighted age term), compiling a 3D segmentation model with a paper
recipe, the per-epoch patch and slice datasets and their step counts, QuickNAT's
median-frequency class weights over a cohort, and paper 001's two-stage fine-tuning of a
pre-trained model on a new label set."""

from __future__ import annotations

import keras
import numpy as np

from tfneuro.data.patches import patch_dataset
from tfneuro.data.slices import slice_dataset
from tfneuro.errors import InputError
from tfneuro.io import get_scheme, load_volume
from tfneuro.losses import DeepSupervisionLoss, DiceCELoss
from tfneuro.losses.cross_entropy import median_frequency_weights
from tfneuro.models import get
from tfneuro.training.loop import epoch_seed
from tfneuro.training.recipes import make_optimizer
from tfneuro.training.transfer import fit_two_stage, replace_classifier

__all__ = ["segmentation_loss", "compile_segmentation", "build_segmentation_3d",
           "patch_train_fn", "patch_steps", "count_batches", "repeating", "slice_train_fn",
           "class_weights_from_cohort", "finetune_two_stage"]


def segmentation_loss(model):
    """Dice + cross-entropy (paper 002 eq. 2 / paper 001's combined loss), wrapped in
    :class:`tfneuro.losses.DeepSupervisionLoss` for models with deep-supervision outputs."""
    if getattr(model, "num_deep_supervision", 0):
        return DeepSupervisionLoss(DiceCELoss())
    return DiceCELoss()


def compile_segmentation(model, *, steps_per_epoch: int, epochs: int, learning_rate,
                         compile_kwargs=None, recipe: str = "paper002", age_weight=None):
    """Compile ``model`` with a fresh optimizer of ``recipe`` and :func:`segmentation_loss`.

    A model with an age head (AgeU-Net, paper 002; ``model.has_age``) gets the total loss
    ``L_seg + age_weight * MSE(age)`` (``age_weight`` default
    :data:`tfneuro.models.res_unet3d.AGE_LOSS_WEIGHT`, 0.01) and takes targets
    ``{"segmentation": labels, "age": [B, 1]}``.
    """
    loss, weights = segmentation_loss(model), None
    if getattr(model, "has_age", False):
        from tfneuro.models.res_unet3d import AGE_LOSS_WEIGHT

        lam = AGE_LOSS_WEIGHT if age_weight is None else float(age_weight)
        loss, weights = {"segmentation": loss, "age": "mse"}, {"segmentation": 1.0, "age": lam}
    elif age_weight is not None:
        raise InputError("age_weight", f"{model.name!r} has no age head")
    model.compile(optimizer=make_optimizer(recipe, steps_per_epoch=steps_per_epoch,
                                           epochs=epochs, learning_rate=learning_rate),
                  loss=loss, loss_weights=weights, **(compile_kwargs or {}))
    return model


def build_segmentation_3d(name: str, num_classes: int, n_channels: int, *, base_filters: int,
                          depth: int, steps_per_epoch: int, epochs: int, learning_rate,
                          strategy, compile_kwargs=None, recipe: str = "paper002",
                          age_weight=None, **kwargs):
    """Build and compile a registered 3D segmentation model (res_unet3d, age_unet3d, unet3d)
    in ``strategy.scope()`` with a paper recipe's optimizer and :func:`segmentation_loss`
    (:func:`compile_segmentation`, ``age_weight`` for an age head)."""
    with strategy.scope():
        model = get(name, num_classes=num_classes, input_shape=(None, None, None, n_channels),
                    base_filters=base_filters, depth=depth, **kwargs)
        compile_segmentation(model, steps_per_epoch=steps_per_epoch, epochs=epochs,
                             learning_rate=learning_rate, compile_kwargs=compile_kwargs,
                             recipe=recipe, age_weight=age_weight)
    return model


def patch_train_fn(df, *, patch_size, patches_per_volume: int, modalities, scheme,
                   batch_size: int, seed: int, weights=None, **source):
    """``epoch -> tf.data.Dataset`` of class-balanced 3D patches (paper 002), seeded by
    :func:`tfneuro.training.loop.epoch_seed` so resumed runs see the same data.

    ``**source``: further :class:`tfneuro.data.VolumeSource` fields (``label``, ``normalize``).
    """
    def train_ds(epoch):
        return patch_dataset(df, patch_size=patch_size, patches_per_volume=patches_per_volume,
                             modalities=modalities, scheme=scheme, weights=weights,
                             batch_size=batch_size, seed=epoch_seed(seed, epoch), **source)

    return train_ds


def patch_steps(n_volumes: int, patches_per_volume: int, batch_size: int) -> int:
    """Batches per epoch of :func:`patch_train_fn`: every volume's patches once."""
    return max(1, -(-int(n_volumes) * int(patches_per_volume) // int(batch_size)))


def count_batches(dataset) -> int:
    """Batches in one pass of a finite dataset (at least 1): the default steps per epoch."""
    return max(1, sum(1 for _ in dataset))


def repeating(make_dataset):
    """``epoch -> make_dataset(epoch).repeat()``: an epoch of a given number of steps then
    never runs out of data (each epoch's dataset is still built from its own seed)."""
    return lambda epoch: make_dataset(epoch).repeat()


def slice_train_fn(df, *, view, modalities, scheme, pad_to, batch_size: int, seed: int,
                   per_epoch: bool = True, **source):
    """Training slices of one view (paper 001 trains on 2D slices; background-only slices
    dropped), for :func:`tfneuro.training.loop.fit`.

    Args:
        df: the training subjects.
        view, modalities, scheme, pad_to, batch_size: as :func:`tfneuro.data.slice_dataset`.
        seed: the run's seed.
        per_epoch: ``True``: a callable ``epoch -> dataset`` seeded by
            :func:`~tfneuro.training.loop.epoch_seed` (a resumed run sees the same data; ``fit``
            re-seeds before every epoch, measured +6-7 s per epoch on a 2-core CPU).
            ``False``: one dataset whose decoded volumes are cached in memory and whose slices
            are reshuffled every epoch (no re-seeding: for short epochs; a resumed run
            continues correctly but not bit-exactly).
        **source: further :class:`tfneuro.data.VolumeSource` fields (``label``, ``normalize``).
    """
    def train_ds(epoch):
        return slice_dataset(df, axis=view, modalities=modalities, scheme=scheme,
                             pad_to=pad_to, drop_empty=True, batch_size=batch_size,
                             seed=epoch_seed(seed, epoch) if per_epoch else seed,
                             cache=not per_epoch, **source)

    return train_ds if per_epoch else train_ds(0)


def finetune_two_stage(pretrained, num_classes: int, train_ds, *, learning_rate: float,
                       out_dir, stage1_epochs: int = 15, stage2_epochs: int = 50, loss=None,
                       strategy=None, compile_kwargs=None, **fit_kwargs):
    """Paper 001's transfer (001_4781efe3c87e8969.txt section 3.2): a copy of ``pretrained``
    with a new ``num_classes`` classifier (:func:`~tfneuro.training.transfer.replace_classifier`),
    trained classifier-only for ``stage1_epochs`` (paper: 15), then whole for
    ``stage2_epochs`` (paper: 50) (:func:`~tfneuro.training.transfer.fit_two_stage`), each
    stage with a fresh Adam at ``learning_rate`` (paper: 1e-4, chosen by a sweep).

    Args:
        pretrained: the pre-trained Keras model (left untouched).
        num_classes: classes of the new label set.
        train_ds: dataset or ``epoch -> dataset`` (:func:`slice_train_fn`).
        learning_rate: Adam's rate in both stages.
        out_dir: run directory (``stage1/``, ``stage2/``).
        loss: the loss (default :func:`segmentation_loss` of the model).
        strategy: ``tf.distribute`` strategy (the new model is built in its scope).
        compile_kwargs: further ``model.compile`` arguments (``jit_compile``, ...).
        **fit_kwargs: :func:`~tfneuro.training.transfer.fit_two_stage` /
            :func:`~tfneuro.training.loop.fit` options (``resume``, ``seed``, ...).

    Returns:
        ``(model, history)``.
    """
    import contextlib

    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = replace_classifier(pretrained, num_classes)

    def compile_fn(m, stage):
        m.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=loss if loss is not None else segmentation_loss(m),
                  **(compile_kwargs or {}))

    history = fit_two_stage(model, compile_fn, train_ds, out_dir=out_dir,
                            stage1_epochs=stage1_epochs, stage2_epochs=stage2_epochs,
                            strategy=strategy, **fit_kwargs)
    return model, history


def class_weights_from_cohort(df, num_classes: int, scheme=None, column: str = "label"):
    """Median-frequency class weights (QuickNAT, paper 001 / Roy et al.) over the label maps
    of a cohort (``tfneuro.losses.cross_entropy.median_frequency_weights``)."""
    maps = []
    for p in df[column]:
        raw = np.asanyarray(load_volume(p, kind="label").dataobj)
        maps.append(get_scheme(scheme).remap(raw, source=p) if scheme else np.rint(raw).astype(np.int64))
    return [float(w) for w in median_frequency_weights(maps, num_classes)]
