"""Paper 002's neonatal segmentation pipeline: residual 3D U-Net with deep supervision and a
Dice + cross-entropy loss; ``--age_head`` trains AgeU-Net (segmentation + λ·MSE(age)).

    python experiments/train_neonatal_unet.py --out runs/neonatal [--cohort dhcp.csv] [--age_head]

Paper 002 (002_7b615860cc51c69e.txt, "Pipeline Design"): U-Net with residual blocks and deep
supervision, patches cropped from the non-zero bounding box, spatial and intensity
augmentation, loss ``L = L_Dice + L_CE`` (eq. 2), SGD lr 1e-2, Nesterov momentum 0.99, weight
decay, poly decay (1 - epoch/epoch_max)^0.9 (recipe ``paper002``); T1 and T2 as two channels.
AgeU-Net adds an age-regression head on the bottleneck; total loss = segmentation loss +
λ·MSE(age), λ = 0.01 (``tfneuro.models.res_unet3d.AGE_LOSS_WEIGHT``, from the authors' code;
``--age_weight``). Ages in months (the cohort's ``age_months``).

Trains on the ``train`` split (``OUT/run``: checkpoints every epoch, ``--resume``), evaluates
the ``val`` and ``test`` splits by sliding window (96^3 windows, Gaussian blending), beside the
baselines fitted on the same ``train`` subjects (per-voxel intensity classifier on the z-scored
T1 and T2; atlas of the training label maps; ``tfneuro.evaluation.evaluate_splits``). Outputs:
``OUT/model.keras``, ``OUT/results.csv`` (split, subject, model or baseline, class, Dice,
precision, HD95, MSD), with ``--age_head`` also ``OUT/age.csv`` (split, subject, model or
baseline, true and predicted age, absolute error; the baseline predicts the mean age of the
training subjects), and a summary with the model's skill over the best baseline per split.

Departure: ``--augment`` (default on) uses ``tfneuro.data.augment.default_augmentation``
(flips, rotation/scale, elastic, noise, smoothing, intensity) -- the paper's list, with our
parameter values (paper 002 gives none).
"""

from __future__ import annotations

import os

from absl import flags

from tfneuro import evaluation, training
from tfneuro.apps import checks, cli
from tfneuro.apps import flags as aflags
from tfneuro.data import cohort as cohorts
from tfneuro.errors import InputError

AGE_BASELINE = "baseline: mean training age"

FLAGS = flags.FLAGS
aflags.define_experiment_flags()
aflags.define_training_flags(epochs=20, batch_size=2, learning_rate=1e-2, seed=0)
flags.DEFINE_bool("age_head", False, "Train AgeU-Net: segmentation + age regression.")
flags.DEFINE_float("age_weight", None, "λ of the age MSE (default 0.01, "
                   "tfneuro.models.res_unet3d.AGE_LOSS_WEIGHT).", lower_bound=0.0)
flags.DEFINE_integer("steps_per_epoch", None, "Batches per epoch (default: every training "
                     "volume's patches once; more repeats them).", lower_bound=1)
aflags.define_unet3d_flags()
flags.DEFINE_bool("augment", True, "Spatial and intensity augmentation (paper 002).")


def age_train_fn(df, *, patch, mods, scheme, seed, augment):
    """``epoch -> dataset`` of ``(x, {"segmentation": y, "age": [age]})`` batches: one patch
    stream per subject (its age attached), sampled uniformly (``sample_from_datasets``)."""
    import tensorflow as tf

    from tfneuro.data import patch_dataset
    from tfneuro.training.loop import epoch_seed

    rows = df.to_dict("records")

    def train_ds(epoch):
        s = epoch_seed(seed, epoch)
        parts = []
        for i, row in enumerate(rows):
            one = df.iloc[[i]].reset_index(drop=True)
            one.attrs.update(df.attrs)
            age = float(row["age_months"])
            ds = patch_dataset(one, patch_size=patch, patches_per_volume=FLAGS.patches_per_volume,
                               modalities=mods, scheme=scheme, augment=augment,
                               batch_size=None, seed=s + i, prefetch=False)
            parts.append(ds.map(lambda x, y, a=age: (x, {"segmentation": y,
                                                         "age": tf.constant([a], tf.float32)})))
        mixed = tf.data.Dataset.sample_from_datasets(parts, seed=s, stop_on_empty_dataset=False)
        return mixed.batch(FLAGS.batch_size).prefetch(tf.data.AUTOTUNE)

    return train_ds


def age_table(model, evals: dict, train_df, mods, multiple):
    """Whole-volume age predictions per split (the age head pools globally, so any padded
    size works), beside the baseline that predicts the training subjects' mean age."""
    import numpy as np
    import pandas as pd

    from tfneuro.data.pipeline import fit_shape, load_subject
    from tfneuro.utils.progress import progress

    mean_age = float(train_df["age_months"].astype(float).mean())
    rows = []
    for split, df in evals.items():
        for row in progress(df.to_dict("records"), desc=f"predict age {split}", unit="subject"):
            x, y, w = load_subject(row, modalities=mods, label=None)
            x, _, _ = fit_shape(x, y, w, multiple=multiple)
            pred = float(np.asarray(model(x[None], training=False)["age"]).ravel()[0])
            for who, p in ((model.name, pred), (AGE_BASELINE, mean_age)):
                rows.append({"split": split, "subject": row["subject"], "model": who,
                             "age_months": float(row["age_months"]), "predicted_age_months": p,
                             "absolute_error": abs(p - float(row["age_months"]))})
    return pd.DataFrame(rows)


def _data(train_df, patch, mods, scheme, seed):
    """The epoch -> dataset function of the run (patches, with ages for AgeU-Net)."""
    from tfneuro.data.augment import default_augmentation

    augment = default_augmentation(3, seed=seed) if FLAGS.augment else None
    if FLAGS.age_head:
        data = age_train_fn(train_df, patch=patch, mods=mods, scheme=scheme, seed=seed,
                            augment=augment)
    else:
        data = training.patch_train_fn(train_df, patch_size=patch,
                                       patches_per_volume=FLAGS.patches_per_volume,
                                       modalities=mods, scheme=scheme,
                                       batch_size=FLAGS.batch_size, seed=seed, augment=augment)
    return training.repeating(data) if FLAGS.steps_per_epoch else data


def _print_results(name, table, ages, hist):
    summary = table.groupby(["split", "model", "name"], sort=False)[["dice", "precision"]]
    evaluation.print_summary(f"{name} after {len(hist)} epoch(s): mean over subjects per class",
                             summary.mean().reset_index())
    for split in table["split"].unique():
        print(f"{split}: " + evaluation.skill_summary(table[table["split"] == split], name))
    if ages is not None:
        evaluation.print_summary("age (months)", ages)
        mae = ages.groupby("model", sort=False)["absolute_error"].mean()
        print(f"age MAE: {name} {mae[name]:.2f} months; {AGE_BASELINE} {mae[AGE_BASELINE]:.2f}")


def main(argv):
    if len(argv) > 1:
        raise InputError("command line", f"unexpected arguments {argv[1:]}")
    cli.quiet_logs()
    name = "age_unet3d" if FLAGS.age_head else "res_unet3d"
    mods = tuple(FLAGS.modalities)
    checks.check_model_name(name, modalities=mods)
    patch = aflags.patch_size_from_flags()
    if FLAGS.age_weight is not None and not FLAGS.age_head:
        raise InputError("--age_weight", "only with --age_head")
    config = aflags.config_from_flags()
    seed = aflags.seed_value()
    out = checks.check_out_dir(FLAGS.out, [FLAGS.cohort] if FLAGS.cohort else [])
    df = aflags.cohort_from_flags(out_dir=out, modalities=mods, label="label",
                                  require_age=FLAGS.age_head, min_subjects=2)
    from tfneuro.io.labels import get_scheme

    scheme = FLAGS.label_scheme
    train_df, evals = cohorts.train_and_eval_splits(df)
    outs = {"model.keras": os.path.join(out, "model.keras"),
            "results.csv": os.path.join(out, "results.csv"),
            "age.csv": os.path.join(out, "age.csv") if FLAGS.age_head else None}
    checks.check_outputs(outs, cohorts.cohort_files(df))

    import keras

    from tfneuro.training.loop import fit
    from tfneuro.training.runtime import setup_runtime

    strategy = setup_runtime(config)
    steps = FLAGS.steps_per_epoch or training.patch_steps(len(train_df), FLAGS.patches_per_volume,
                                                          FLAGS.batch_size)
    model = training.build_segmentation_3d(
        name, get_scheme(scheme).num_classes, len(mods), base_filters=FLAGS.base_filters,
        depth=FLAGS.depth, steps_per_epoch=steps, epochs=FLAGS.epochs,
        learning_rate=FLAGS.learning_rate, strategy=strategy,
        compile_kwargs=config.compile_kwargs(), age_weight=FLAGS.age_weight)
    run_dir = os.path.join(out, "run")
    print(f"{name}: {len(train_df)} training subject(s), {FLAGS.epochs} epochs, {steps} "
          f"steps/epoch; {training.resume_note(run_dir, FLAGS.resume)}")
    hist = fit(model, _data(train_df, patch, mods, scheme, seed), epochs=FLAGS.epochs,
               out_dir=run_dir, resume=FLAGS.resume, seed=seed, steps_per_epoch=steps,
               tensorboard=FLAGS.tensorboard, strategy=strategy)
    training.save_keras_model(model, outs["model.keras"])
    seg_model = model
    if FLAGS.age_head:  # a segmentation-only view of the same weights for the sliding window
        seg_model = keras.Model(model.network.inputs, model.network.outputs[0])
    table = evaluation.evaluate_splits(seg_model, evals, name=name, train_df=train_df,
                                       modalities=mods, scheme=scheme, window=patch,
                                       distances=FLAGS.distances)
    evaluation.write_results(table, outs["results.csv"])
    ages = None
    if FLAGS.age_head:
        ages = age_table(model, evals, train_df, mods, 2 ** (FLAGS.depth - 1))
        evaluation.write_results(ages, outs["age.csv"])
    _print_results(name, table, ages, hist)
    print(f"results: {outs['results.csv']}; model: {outs['model.keras']}")
    print(f"mean Dice: {table[table['model'] == name]['dice'].mean():.4f}")


if __name__ == "__main__":
    cli.run(main)
