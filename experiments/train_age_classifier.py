"""NEC-NET's skull-age classifier (paper 000 section 2.3.2, Table 3): a 3D ResNet on
``[image, skull mask, image x mask]``, six age groups, top-1 accuracy on held-out subjects
beside chance and a head-size baseline.

    python experiments/train_age_classifier.py --out runs/age                 # synthetic cohort
    python experiments/train_age_classifier.py --out runs/age --model resnet3d_101
    python experiments/train_age_classifier.py --out runs/age --cohort c.csv \
        --skull_model runs/necnet/unet3d/stage1/model.keras                  # predicted masks

What it does:

1. validates flags, the cohort (image files, skull masks holding 0/1, ages present) and
   outputs before work. Without ``--cohort`` the synthetic age cohort is made in OUT/cohort
   (``tfneuro.apps.age_study.synth_age_cohort``): ``--synth_subjects`` (36) spread over the six
   groups of paper 000 (12-60 months; ages within 1.5 months of the visit), 2 test subjects
   per group as in paper 000 section 2.1, at ``--synth_spacing`` (4 mm);
2. maps each subject's ``age_months`` to the nearest of the paper's six groups (12, 18, 24, 36,
   48, 60 months; a tie goes to the younger group);
3. builds the classifier input with ``tfneuro.models.resnet3d.make_classifier_input``: the
   z-scored image, the skull mask and their product ("the raw 3D image data, forecasted skull
   mask results, and results from multiplying the image by the skull mask elementwise"). The
   mask is the cohort's ``--mask_column`` (default ``skull``), or -- as in the paper, "forecasted"
   -- predicted by a NEC-NET model from ``experiments/train_necnet.py`` (``--skull_model``:
   sliding window + largest component + bridging). Volumes are centre padded/cropped to one
   shape (``--pad_to``; default the cohort's largest shape rounded up to 16);
4. trains ``resnet3d_50`` (default; paper 000 Table 3's best), ``_101`` or ``_152`` on the
   ``train`` split (``val`` for validation accuracy when present) with cross-entropy;
5. evaluates top-1 accuracy on the ``test`` split beside chance (1/6) and a head-size baseline
   fitted on the training subjects (nearest group centroid of the log skull-mask and head
   volumes, ``age_study.size_baseline``), and writes ``OUT/results.csv`` (one row per test
   subject: true and predicted group, correct, class probabilities, the baseline's group),
   ``OUT/model.keras`` and ``OUT/classifier.json`` (read by ``experiments/gradcam_age.py``).

Paper 000 gives no optimiser, epochs or batch size; defaults (flags): Adam 1e-4, 50 epochs,
batch 2. No augmentation (none described). Decisions and figures: ``docs/necnet.md``.
"""

from __future__ import annotations

import json
import os

from absl import flags

from tfneuro import evaluation, training
from tfneuro.apps import checks
from tfneuro.apps import flags as aflags
from tfneuro.apps.age_study import (
    age_group,
    classifier_input,
    load_age_cohort,
    load_skull_model,
    parse_shape,
    predicted_mask,
    results_table,
    size_baseline,
    size_features,
)
from tfneuro.apps.cli import run
from tfneuro.data import cohort as cohorts
from tfneuro.errors import InputError

MODELS = ("resnet3d_50", "resnet3d_101", "resnet3d_152")
FLAGS = flags.FLAGS


def define_flags():
    """Flags of this script (defined only when it runs as a program)."""
    aflags.define_experiment_flags(synth_subjects=36, synth_spacing=4.0)
    aflags.define_training_flags(epochs=50, batch_size=2, learning_rate=1e-4, seed=0)
    flags.DEFINE_string("model", "resnet3d_50", "Classifier: resnet3d_50 (paper 000's best), "
                        "resnet3d_101 or resnet3d_152.")
    flags.DEFINE_string("modality", "t1", "Cohort image column (paper 000: T1).")
    flags.DEFINE_string("mask_column", "skull", "Cohort column of the skull masks (used "
                        "unless --skull_model is given).")
    flags.DEFINE_string("skull_model", None, "A NEC-NET .keras model (train_necnet.py "
                        "stage 1): predict the skull masks instead of reading --mask_column "
                        "(paper 000: 'forecasted skull mask results').")
    flags.DEFINE_boolean("unsafe", False, "Allow a --skull_model with arbitrary Python code "
                         "(Lambda layers).")
    flags.DEFINE_float("theta", 6.0, "Bridging threshold θ for predicted masks (see "
                       "train_necnet.py).", lower_bound=0.0)
    flags.DEFINE_integer("window", 96, "Sliding window for predicted masks (paper 000: 96).",
                         lower_bound=8)
    flags.DEFINE_list("pad_to", None, "Input shape X,Y,Z every volume is centre padded/cropped "
                      "to (default: the cohort's largest, rounded up to 16).")
    flags.DEFINE_integer("steps_per_epoch", None, "Batches per epoch (default: one pass over "
                         "the training subjects; more passes per epoch save the per-epoch "
                         "re-seeding of tfneuro.training.fit).", lower_bound=1)
    flags.DEFINE_integer("base_filters", 64, "Bottleneck width of the first ResNet stage (He et "
                         "al.: 64).", lower_bound=1)


def save_model(model, path):
    """Save the trained network for inference: architecture and weights, no compile state."""
    return training.save_keras_model(model, path, compiled=False)


# --- the program -----------------------------------------------------------------------------

def _dataset(rows, masks, pad_to, seed, shuffle, repeat=False):
    """Batches of ``(classifier input, age-group index)``; ``repeat``: endless (a new order
    each pass), for ``--steps_per_epoch``."""
    import numpy as np
    import tensorflow as tf

    def gen():
        rng = np.random.default_rng(seed)
        while True:
            for i in rng.permutation(len(rows)) if shuffle else range(len(rows)):
                row = rows[i]
                x, _ = classifier_input(row, FLAGS.modality, pad_to, masks.get(row["subject"]),
                                        FLAGS.mask_column)
                yield x, np.int32(age_group(row["age_months"]))
            if not repeat:
                return

    ds = tf.data.Dataset.from_generator(gen, output_signature=(
        tf.TensorSpec(tuple(pad_to) + (3,), tf.float32), tf.TensorSpec((), tf.int32)))
    if not repeat:
        ds = ds.apply(tf.data.experimental.assert_cardinality(len(rows)))
    return ds.batch(FLAGS.batch_size).prefetch(2)


def _skull_masks(df, skull_model):
    """NEC-NET masks of every subject ({} when the cohort's masks are used)."""
    from tfneuro.utils.progress import progress

    if skull_model is None:
        return {}
    return {row["subject"]: predicted_mask(skull_model, row, FLAGS.modality, FLAGS.theta,
                                           FLAGS.window)
            for row in progress(df.to_dict("records"), desc="skull masks", unit="subject")}


def _size_baseline(train, test, masks, pad_to):
    """Groups the head-size baseline predicts for ``test``, fitted on ``train``."""
    def feats(d):
        return [size_features(r, classifier_input(r, FLAGS.modality, pad_to,
                                                  masks.get(r["subject"]), FLAGS.mask_column)[1],
                              FLAGS.modality) for r in d.to_dict("records")]

    return size_baseline(feats(train), [age_group(a) for a in train["age_months"]], feats(test))


def main(argv):
    del argv
    out = checks.check_out_dir(FLAGS.out, inputs=[FLAGS.cohort] if FLAGS.cohort else [])
    checks.check_model_name(FLAGS.model, modalities=(FLAGS.modality,), tasks=("classification",))
    if FLAGS.model not in MODELS:
        raise InputError("--model", f"choose one of {', '.join(MODELS)}")
    pad_to = parse_shape(FLAGS.pad_to) if FLAGS.pad_to else None
    if FLAGS.skull_model and not os.path.isfile(FLAGS.skull_model):
        raise InputError("--skull_model", f"{FLAGS.skull_model}: file not found")
    config = aflags.config_from_flags()
    seed = aflags.seed_value(FLAGS)
    df = load_age_cohort(FLAGS.cohort, out_dir=out, modality=FLAGS.modality,
                         mask_column=None if FLAGS.skull_model else FLAGS.mask_column,
                         synth_subjects=FLAGS.synth_subjects, spacing=FLAGS.synth_spacing,
                         seed=seed)
    train, test = cohorts.require_splits(df, "train", "test")
    val = df[df["split"] == "val"].reset_index(drop=True)
    outputs = {n: os.path.join(out, n) for n in ("results.csv", "model.keras", "classifier.json")}
    checks.check_outputs(outputs, cohorts.cohort_files(df))
    pad_to = pad_to or cohorts.cohort_shape(df, FLAGS.modality, multiple=16)
    skull_model = load_skull_model(FLAGS.skull_model, FLAGS.unsafe) if FLAGS.skull_model else None

    import keras

    from tfneuro.models import get
    from tfneuro.models.resnet3d import AGE_GROUPS_MONTHS
    from tfneuro.training import epoch_seed, fit, setup_runtime

    strategy = setup_runtime(config)
    masks = _skull_masks(df, skull_model)
    with strategy.scope():
        model = get(FLAGS.model, num_classes=len(AGE_GROUPS_MONTHS),
                    input_shape=tuple(pad_to) + (3,), base_filters=FLAGS.base_filters)
        model.compile(optimizer=keras.optimizers.Adam(FLAGS.learning_rate),
                      loss=keras.losses.SparseCategoricalCrossentropy(),
                      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                      **config.compile_kwargs())
    train_rows, val_rows = train.to_dict("records"), val.to_dict("records")
    steps = FLAGS.steps_per_epoch
    history = fit(model, lambda e: _dataset(train_rows, masks, pad_to, epoch_seed(seed, e), True,
                                            repeat=bool(steps)),
                  (lambda e: _dataset(val_rows, masks, pad_to, 0, False)) if val_rows else None,
                  epochs=FLAGS.epochs, out_dir=os.path.join(out, "train"), resume=FLAGS.resume,
                  seed=seed, steps_per_epoch=steps, strategy=strategy,
                  tensorboard=FLAGS.tensorboard)
    probs = model.predict(_dataset(test.to_dict("records"), masks, pad_to, 0, False), verbose=0)
    table = results_table(test, probs, _size_baseline(train, test, masks, pad_to))
    save_model(model, outputs["model.keras"])
    from tfneuro.utils.atomic import atomic_write_text

    atomic_write_text(outputs["classifier.json"], json.dumps({
        "model": FLAGS.model, "cohort": os.path.abspath(df.attrs.get("source", "cohort")),
        "modality": FLAGS.modality, "pad_to": list(pad_to), "normalize": "zscore",
        "age_groups_months": list(AGE_GROUPS_MONTHS), "mask_column": FLAGS.mask_column,
        "skull_model": os.path.abspath(FLAGS.skull_model) if FLAGS.skull_model else None,
        "theta": FLAGS.theta, "window": FLAGS.window, "last_conv": "last_conv",
        "epochs_trained": int(len(history))}, indent=2))
    evaluation.write_results(table, outputs["results.csv"])
    evaluation.print_summary(f"{FLAGS.model}: age group of {len(test)} test subject(s)", table,
                             ["subject", "age_months", "true_group_months",
                              "predicted_group_months", "correct", "size_baseline_group_months"])
    print(f"results: {outputs['results.csv']}")
    print(f"chance (1/{len(AGE_GROUPS_MONTHS)}): {1 / len(AGE_GROUPS_MONTHS):.4f}; head-size "
          f"baseline (fitted on the {len(train)} training subjects): "
          f"{float(table['size_baseline_correct'].mean()):.4f}")
    print(f"top-1 accuracy: {float(table['correct'].mean()):.4f}")


if __name__ == "__main__":
    define_flags()
    run(main)
