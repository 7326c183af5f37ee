"""NEC-NET neurocranium segmentation (paper 000 section 2.3.1): a 3D U-Net trained on patches,
sliding-window inference, largest connected component + gap bridging, optional cascade.

Default run (synthetic cohort in OUT/cohort, its ``skull`` shells as the 2-class labels):

    python experiments/train_necnet.py --out runs/necnet
    python experiments/train_necnet.py --out runs/necnet --cohort my_cohort.csv --cascade

What it does:

1. validates every flag, the cohort (columns, files, label values 0/1, T1 and skull on one grid)
   and the output paths, before any work;
2. stage 1: trains ``unet3d`` (paper 000 Fig. 2) on random 3D patches of the training
   subjects (``tfneuro.data.patch_dataset``, class-balanced centres) with Dice + CE;
3. predicts every held-out (``split == test``) subject with the paper's 96^3 sliding window
   (``tfneuro.inference.sliding_window_predict``, Gaussian blending), then post-processes as
   the paper: the largest connected component ("maximum connected region algorithm") and the
   in-slice gap bridging of eq. (1) (``tfneuro.inference.bridging.necnet_postprocess``);
4. with ``--cascade``: "the inputs for the segmentation network are the original images and the
   predicted masks" -- stage 1's post-processed masks of the training and test subjects become
   a second input channel of a second ``unet3d`` (stage 2), trained and evaluated the same way;
5. writes ``OUT/results.csv`` (one row per test subject, stage and post-processing: Dice,
   precision, HD95, MSD of the neurocranium), ``OUT/stage<k>/model.keras``, the predicted masks
   ``OUT/stage<k>/masks/<subject>_necnet.nii.gz`` (input grid and affine), and prints a summary.

Paper 000 gives no loss, optimiser, epoch count, patch count or bridging threshold θ; our
defaults (flags): Dice + cross-entropy (MONAI's DiceCELoss, the paper's comparison models come
from MONAI), Adam 1e-4, 100 epochs, batch 2, 4 patches of 96^3 per volume and epoch, θ = 6
voxels. Patches of the paper's window size (96^3) are our choice too. Resumable: ``--resume``
continues each stage from its last epoch checkpoint (``tfneuro.training.fit``).
"""

from __future__ import annotations

import os

from absl import flags

from tfneuro import evaluation, training
from tfneuro.apps import checks
from tfneuro.apps import flags as aflags
from tfneuro.apps.cli import run
from tfneuro.data import cohort as cohorts
from tfneuro.errors import InputError
from tfneuro.io import voxel_spacing
from tfneuro.io.labels import get_scheme

#: 2-class scheme of the neurocranium masks (paper 000: "the number of labels, which in our
#: instance is 2"); files hold 0 (background) and 1 (neurocranium).
NEUROCRANIUM = get_scheme("neurocranium")
MODELS = ("unet3d",)
LOSSES = ("dice_ce", "dice", "ce")

FLAGS = flags.FLAGS
aflags.define_experiment_flags(synth_subjects=8, synth_spacing=2.0)
aflags.define_training_flags(epochs=100, batch_size=2, learning_rate=1e-4, seed=0)
flags.DEFINE_string("model", "unet3d", "Segmentation network: unet3d (NEC-NET's 3D U-Net, "
                    "paper 000 Fig. 2).")
flags.DEFINE_string("modality", "t1", "Cohort image column (paper 000: T1 MP-RAGE).")
flags.DEFINE_string("label_column", "skull", "Cohort column of the neurocranium masks (0/1).")
flags.DEFINE_integer("patch_size", 96, "Training patch edge in voxels (cubic; a multiple of "
                     "2**(depth-1)). Default: the paper's 96^3 window.", lower_bound=8)
flags.DEFINE_integer("patches_per_volume", 4, "Patches per training volume and epoch "
                     "(class-balanced centres).", lower_bound=1)
flags.DEFINE_integer("window", 96, "Sliding-window edge in voxels for inference (paper 000: "
                     "96*96*96; a multiple of 2**(depth-1)).", lower_bound=8)
flags.DEFINE_float("overlap", 0.5, "Sliding-window overlap fraction in [0, 1).")
flags.DEFINE_integer("base_filters", 32, "Channels of the U-Net's first convolution (Cicek "
                     "et al.: 32).", lower_bound=1)
flags.DEFINE_integer("depth", 4, "Resolution steps of the U-Net (paper 000: 4).", lower_bound=2)
flags.DEFINE_enum("norm", "batch", ["batch", "instance", "none"], "Normalisation in the U-Net "
                  "blocks (batch as in Cicek et al.).")
flags.DEFINE_enum("loss", "dice_ce", list(LOSSES), "Training loss (not given in paper 000): "
                  "dice_ce (Dice + cross-entropy), dice, ce.")
flags.DEFINE_float("theta", 6.0, "Bridging threshold θ of paper 000 eq. (1) in voxels: points "
                   "of one slice with |dx|+|dy|+2 <= θ are joined (paper gives no value).",
                   lower_bound=0.0)
flags.DEFINE_integer("bridge_axis", 2, "Slicing axis of the bridging (2 = axial on RAS).",
                     lower_bound=0, upper_bound=2)
flags.DEFINE_boolean("postprocess", True, "Largest connected component + bridging "
                     "(paper 000); results list the raw prediction too.")
flags.DEFINE_boolean("cascade", False, "Train a second stage whose inputs are the image and "
                     "stage 1's predicted mask (paper 000: 'the inputs ... are the original "
                     "images and the predicted masks').")
flags.DEFINE_integer("steps_per_epoch", None, "Batches per epoch (default: one pass over the "
                     "patches, subjects*patches_per_volume/batch_size).", lower_bound=1)
flags.DEFINE_boolean("distances", True, "Also compute HD95 and MSD (mm) per subject.")


def save_model(model, path):
    """Save the trained network for inference: architecture and weights, no compile state."""
    return training.save_keras_model(model, path, compiled=False)


def _check_flags():
    if FLAGS.model not in MODELS:
        checks.check_model_name(FLAGS.model, modalities=(FLAGS.modality,))  # unknown name first
        raise InputError("--model", f"{FLAGS.model!r} is not a NEC-NET segmentation network; "
                                    f"choose one of {', '.join(MODELS)}")
    checks.check_model_name(FLAGS.model, modalities=(FLAGS.modality,), tasks=("segmentation",))
    m = 2 ** (FLAGS.depth - 1)
    for name in ("patch_size", "window"):
        if getattr(FLAGS, name) % m:
            raise InputError(f"--{name}", f"{getattr(FLAGS, name)} is not a multiple of {m} "
                                          f"(the U-Net of depth {FLAGS.depth} downsamples {m}x)")
    if not 0.0 <= FLAGS.overlap < 1.0:
        raise InputError("--overlap", f"must be in [0, 1), got {FLAGS.overlap}")
    if FLAGS.modality == FLAGS.label_column:
        raise InputError("--label_column", "must differ from --modality")


def _loss():
    from tfneuro.losses import DiceCELoss, DiceLoss, WeightedCrossEntropy

    return {"dice_ce": DiceCELoss, "dice": DiceLoss, "ce": WeightedCrossEntropy}[FLAGS.loss]()


def _build(strategy, channels, config):
    import keras

    from tfneuro.models import get

    with strategy.scope():
        model = get(FLAGS.model, num_classes=NEUROCRANIUM.num_classes,
                    input_shape=(None, None, None, channels), base_filters=FLAGS.base_filters,
                    depth=FLAGS.depth, norm=None if FLAGS.norm == "none" else FLAGS.norm)
        model.compile(optimizer=keras.optimizers.Adam(FLAGS.learning_rate), loss=_loss(),
                      **config.compile_kwargs())
    return model


def _load(row, prior=None):
    """(x [X,Y,Z,C], y, affine): z-scored image (+ the prior mask as a raw 0/1 channel)."""
    import nibabel as nib
    import numpy as np

    from tfneuro.data.pipeline import load_subject

    x, y, _ = load_subject(row, modalities=(FLAGS.modality,), label=FLAGS.label_column,
                           scheme=NEUROCRANIUM, normalize="zscore")
    if prior is not None:
        x = np.concatenate([x, prior[..., None].astype(np.float32)], axis=-1)
    return x, y, nib.load(row[FLAGS.modality]).affine


def _prior_patches(rows, priors, seed):
    """Stage-2 patches: image + prior-mask channel, with the library's crop and sampler.

    The prior channel is added after the image's z-scoring (the tf.data pipelines normalise
    every channel alike, which would rescale a binary mask per subject); TensorFlow-only.
    """
    import numpy as np
    import tensorflow as tf

    from tfneuro.data.patches import bbox_crop, sample_patches

    p = (FLAGS.patch_size,) * 3

    def gen():
        rng = np.random.default_rng(seed)
        for i in rng.permutation(len(rows)):
            x, y, _ = _load(rows[i], priors[rows[i]["subject"]])
            w = np.ones(y.shape, np.float32)
            x, y, w = bbox_crop(x, y, w, "nonzero")
            xs, ys, _ = sample_patches(x, y, w, p, FLAGS.patches_per_volume, rng)
            for k in range(len(xs)):
                yield xs[k], ys[k]

    ds = tf.data.Dataset.from_generator(gen, output_signature=(
        tf.TensorSpec(p + (2,), tf.float32), tf.TensorSpec(p, tf.int32)))
    ds = ds.apply(tf.data.experimental.assert_cardinality(len(rows) * FLAGS.patches_per_volume))
    return ds.batch(FLAGS.batch_size).prefetch(tf.data.AUTOTUNE)


def _train_stage(stage, strategy, config, train_rows, out, priors=None):
    from tfneuro.data import patch_dataset
    from tfneuro.training import epoch_seed, fit

    model = _build(strategy, 1 if priors is None else 2, config)
    seed = aflags.seed_value(FLAGS)
    if priors is None:
        def train_ds(epoch):
            return patch_dataset(
                train_rows, patch_size=(FLAGS.patch_size,) * 3,
                patches_per_volume=FLAGS.patches_per_volume, modalities=(FLAGS.modality,),
                label=FLAGS.label_column, scheme=NEUROCRANIUM, normalize="zscore",
                batch_size=FLAGS.batch_size, seed=epoch_seed(seed, epoch))
    else:
        rows = train_rows.to_dict("records")

        def train_ds(epoch):
            return _prior_patches(rows, priors, epoch_seed(seed, epoch))
    stage_dir = os.path.join(out, f"stage{stage}")
    history = fit(model, train_ds, epochs=FLAGS.epochs, out_dir=stage_dir, resume=FLAGS.resume,
                  seed=seed, steps_per_epoch=FLAGS.steps_per_epoch, strategy=strategy,
                  tensorboard=FLAGS.tensorboard)
    save_model(model, os.path.join(stage_dir, "model.keras"))
    return model, history


def _predict(model, rows, stage, out, priors=None, save=True):
    """Sliding-window masks of ``rows``: {subject: (reference, raw, post-processed)}."""
    import numpy as np

    from tfneuro.inference import sliding_window_predict
    from tfneuro.inference.bridging import necnet_postprocess
    from tfneuro.io import save_volume
    from tfneuro.utils.progress import progress

    results = {}
    for row in progress(rows.to_dict("records"), desc=f"stage {stage} predict", unit="subject"):
        prior = None if priors is None else priors[row["subject"]]
        x, y, affine = _load(row, prior)
        probs = sliding_window_predict(model, x, window=(FLAGS.window,) * 3,
                                       overlap=FLAGS.overlap)
        raw = np.argmax(probs, axis=-1).astype(np.uint8)
        post = (necnet_postprocess(raw, FLAGS.theta, axis=FLAGS.bridge_axis)
                if FLAGS.postprocess else raw)
        if save:
            save_volume(post, os.path.join(out, f"stage{stage}", "masks",
                                           f"{row['subject']}_necnet.nii.gz"), affine=affine)
        results[row["subject"]] = (y, raw, post)
    return results


def _evaluate(preds, rows, stage):
    import pandas as pd

    from tfneuro.metrics.report import evaluation_table

    tables = []
    for row in rows.to_dict("records"):
        y, raw, post = preds[row["subject"]]
        variants = [("none", raw)] + ([("lcc+bridge", post)] if FLAGS.postprocess else [])
        for name, pred in variants:
            t = evaluation_table(y, pred, voxel_spacing(row[FLAGS.modality]),
                                 subject=row["subject"], scheme=NEUROCRANIUM,
                                 distances=FLAGS.distances)
            t.insert(1, "stage", stage)
            t.insert(2, "postprocess", name)
            tables.append(t)
    return pd.concat(tables, ignore_index=True)


def main(argv):
    del argv
    out = checks.check_out_dir(FLAGS.out, inputs=[FLAGS.cohort] if FLAGS.cohort else [])
    _check_flags()
    config = aflags.config_from_flags()
    df = aflags.cohort_from_flags(FLAGS, out_dir=out, modalities=(FLAGS.modality,),
                                  label=FLAGS.label_column, scheme=NEUROCRANIUM, min_subjects=2)
    train, test = cohorts.require_splits(df, "train", "test")
    results_csv = os.path.join(out, "results.csv")
    checks.check_outputs({"results": results_csv}, cohorts.cohort_files(df))

    from tfneuro.training import setup_runtime

    strategy = setup_runtime(config)
    model1, _ = _train_stage(1, strategy, config, train, out)
    test_preds = _predict(model1, test, 1, out)
    table = _evaluate(test_preds, test, 1)
    if FLAGS.cascade:
        train_preds = _predict(model1, train, 1, out)
        priors = {s: v[2] for s, v in {**train_preds, **test_preds}.items()}
        model2, _ = _train_stage(2, strategy, config, train, out, priors=priors)
        table2 = _evaluate(_predict(model2, test, 2, out, priors=priors), test, 2)
        import pandas as pd

        table = pd.concat([table, table2], ignore_index=True)
    evaluation.write_results(table, results_csv)
    summary = (table.groupby(["stage", "postprocess"], sort=True)[["dice", "hd95_mm", "msd_mm"]]
               .mean().reset_index())
    evaluation.print_summary(f"NEC-NET neurocranium, {len(test)} test subject(s) (mean over subjects)",
                             summary)
    final = table[(table["stage"] == table["stage"].max())
                  & (table["postprocess"] == ("lcc+bridge" if FLAGS.postprocess else "none"))]
    print(f"results: {results_csv}")
    print(f"mean Dice: {final['dice'].mean():.4f}")


if __name__ == "__main__":
    run(main)
