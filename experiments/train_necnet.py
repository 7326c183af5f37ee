"""NEC-NET neurocranium segmentation (paper 000 section 2.3.1) and its Table 2 comparison:
3D networks trained on patches, sliding-window inference, largest connected component + gap
bridging, optional cascade, and the baselines every score is reported beside.

Default run (synthetic cohort in OUT/cohort, its ``skull`` shells as the 2-class labels):

    python experiments/train_necnet.py --out runs/necnet
    python experiments/train_necnet.py --out runs/table2 --architecture unet3d,vnet,segresnet,unetr
    python experiments/train_necnet.py --out runs/necnet --cohort my_cohort.csv --cascade

What it does:

1. validates every flag, the cohort (columns, files, label values 0/1, T1 and skull on one grid)
   and the output paths, before any work;
2. for each ``--architecture`` (paper 000 Table 2: NEC-NET's ``unet3d``, and MONAI's ``vnet``,
   ``segresnet``, ``unetr``), in turn and on the same split: trains the network on random 3D
   patches of the training subjects (``tfneuro.data.patch_dataset``, class-balanced centres,
   the same loss, optimiser and budget for every network);
3. predicts every held-out (``split == test``) subject with the paper's 96^3 sliding window
   (Gaussian blending) and post-processes as the paper: the largest connected component and
   the in-slice gap bridging of eq. (1) (``tfneuro.inference.bridging.necnet_postprocess``),
   through ``tfneuro.evaluation.evaluate_subjects`` (raw and post-processed rows);
4. with ``--cascade``: "the inputs for the segmentation network are the original images and the
   predicted masks" -- stage 1's post-processed masks of the training and test subjects are
   written as NIfTI and become a second, un-normalised input channel (a cohort column read
   through ``VolumeSource.raw_channels``) of a second network (stage 2);
5. fits the baselines on the same training subjects (``tfneuro.evaluation.baseline_tables``:
   the intensity classifier with its decision rule tuned on the training Dice, and the atlas)
   and scores them on the same test subjects;
6. writes ``OUT/results.csv`` (one row per test subject, model, stage and post-processing:
   Dice, precision, HD95, MSD), ``OUT/table2.csv`` (paper 000 Table 2's shape: one row per
   metric, one column per model and the baselines), ``OUT/<architecture>/stage<k>/model.keras``
   and the predicted masks ``OUT/<architecture>/stage<k>/masks/<subject>_necnet.nii.gz``
   (input grid and affine), and prints Table 2 and each model's skill over the best baseline.

Paper 000 gives no loss, optimiser, epoch count, patch count or bridging threshold θ; our
defaults (flags): Dice + cross-entropy (MONAI's DiceCELoss, the paper's comparison models come
from MONAI), Adam 1e-4, 100 epochs, batch 2, 4 patches of 96^3 per volume and epoch, θ = 6
voxels. Each network has its published width (``--width_scale 1``: U-Net 32, VNet 16,
SegResNet 8, UNETR 16 / 768); UNETR takes one input size, so it needs ``--patch_size`` =
``--window``. Resumable: ``--resume`` continues each stage from its last epoch checkpoint.
Decisions and measured figures: ``docs/necnet.md``.
"""

from __future__ import annotations

import math
import os

from absl import flags

from tfneuro import evaluation, training
from tfneuro.apps import checks
from tfneuro.apps import flags as aflags
from tfneuro.apps.cli import run
from tfneuro.data import cohort as cohorts
from tfneuro.errors import InputError
from tfneuro.evaluation.compare import BASELINES
from tfneuro.io.labels import get_scheme

#: 2-class scheme of the neurocranium masks (paper 000: "the number of labels, which in our
#: instance is 2"); files hold 0 (background) and 1 (neurocranium).
NEUROCRANIUM = get_scheme("neurocranium")
#: Paper 000 Table 2's models: registry name -> (name in the table, spatial multiple the
#: network needs; unet3d's is 2 ** (depth - 1), see ``_multiple``).
ARCHITECTURES = {"unet3d": ("NEC-NET (unet3d)", None), "vnet": ("VNet", 16),
                 "segresnet": ("SegResNet", 8), "unetr": ("UNETR", 16)}
LOSSES = ("dice_ce", "dice", "ce")
POST = "lcc+bridge"

FLAGS = flags.FLAGS
aflags.define_experiment_flags(synth_subjects=8, synth_spacing=2.0)
aflags.define_training_flags(epochs=100, batch_size=2, learning_rate=1e-4, seed=0)
flags.DEFINE_list("architecture", ["unet3d"], "Networks to train and compare on the same "
                  "split (paper 000 Table 2): unet3d (NEC-NET), vnet, segresnet, unetr.")
flags.DEFINE_string("modality", "t1", "Cohort image column (paper 000: T1 MP-RAGE).")
flags.DEFINE_string("label_column", "skull", "Cohort column of the neurocranium masks (0/1).")
flags.DEFINE_integer("patch_size", 96, "Training patch edge in voxels (cubic). Default: the "
                     "paper's 96^3 window.", lower_bound=8)
flags.DEFINE_integer("patches_per_volume", 4, "Patches per training volume and epoch "
                     "(class-balanced centres).", lower_bound=1)
flags.DEFINE_integer("window", 96, "Sliding-window edge in voxels for inference (paper 000: "
                     "96*96*96).", lower_bound=8)
flags.DEFINE_float("overlap", 0.5, "Sliding-window overlap fraction in [0, 1).")
flags.DEFINE_float("width_scale", 1.0, "Scales every network's published width (U-Net 32, "
                   "VNet 16, SegResNet 8, UNETR feature 16 / hidden 768 / MLP 3072 channels).",
                   lower_bound=0.0)
flags.DEFINE_integer("depth", 4, "Resolution steps of the U-Net (paper 000: 4).", lower_bound=2)
flags.DEFINE_enum("norm", "batch", ["batch", "instance", "none"], "Normalisation in the U-Net "
                  "blocks (batch as in Cicek et al.; the other networks keep MONAI's).")
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
flags.DEFINE_list("baselines", list(BASELINES), "Baselines fitted on the same training "
                  "subjects and scored beside the networks (intensity, atlas; empty: none).")
flags.DEFINE_integer("steps_per_epoch", None, "Batches per epoch (default: one pass over the "
                     "patches, subjects*patches_per_volume/batch_size).", lower_bound=1)
flags.DEFINE_boolean("distances", True, "Also compute HD95 and MSD (mm) per subject.")


def save_model(model, path):
    """Save the trained network for inference: architecture and weights, no compile state."""
    return training.save_keras_model(model, path, compiled=False)


def _multiple(arch):
    return ARCHITECTURES[arch][1] or 2 ** (FLAGS.depth - 1)


def _check_flags():
    archs = list(dict.fromkeys(FLAGS.architecture))
    if not archs:
        raise InputError("--architecture", f"give one or more of {', '.join(ARCHITECTURES)}")
    for arch in archs:
        if arch not in ARCHITECTURES:
            checks.check_model_name(arch, modalities=(FLAGS.modality,),  # unknown name first
                                    flag="--architecture")
            raise InputError("--architecture", f"{arch!r} is not a paper-000 segmentation "
                                               f"network; choose from {', '.join(ARCHITECTURES)}")
        for name in ("patch_size", "window"):
            if getattr(FLAGS, name) % _multiple(arch):
                raise InputError(f"--{name}", f"{getattr(FLAGS, name)} is not a multiple of "
                                              f"{_multiple(arch)} ({arch} downsamples "
                                              f"{_multiple(arch)}x)")
    if "unetr" in archs and FLAGS.patch_size != FLAGS.window:
        raise InputError("--window", f"{FLAGS.window} differs from --patch_size "
                                     f"{FLAGS.patch_size}: UNETR takes one input size")
    if not 0.0 <= FLAGS.overlap < 1.0:
        raise InputError("--overlap", f"must be in [0, 1), got {FLAGS.overlap}")
    if not FLAGS.width_scale > 0:
        raise InputError("--width_scale", f"must be > 0, got {FLAGS.width_scale}")
    if FLAGS.modality == FLAGS.label_column:
        raise InputError("--label_column", "must differ from --modality")
    unknown = [b for b in FLAGS.baselines if b not in BASELINES]
    if unknown:
        raise InputError("--baselines", f"unknown {unknown}; choose from {', '.join(BASELINES)}")
    return archs


def model_kwargs(arch, channels, width_scale=1.0):
    """Builder arguments of a Table 2 network at ``width_scale`` times its published width
    (MONAI's defaults for vnet, segresnet, unetr; Cicek et al.'s 32 for the U-Net)."""
    def scaled(n, multiple=1):
        return multiple * max(1, round(n * width_scale / multiple))

    if arch == "unet3d":
        return dict(base_filters=scaled(32), depth=FLAGS.depth,
                    norm=None if FLAGS.norm == "none" else FLAGS.norm)
    if arch == "vnet":  # the input is tiled to base_filters channels
        return dict(base_filters=scaled(16, channels))
    if arch == "segresnet":  # GroupNorm: the groups must divide the channels
        return dict(init_filters=scaled(8), num_groups=math.gcd(8, scaled(8)))
    hidden = scaled(768, 12)  # 12 heads
    return dict(feature_size=scaled(16), hidden_size=hidden, mlp_dim=4 * hidden,
                input_shape=(FLAGS.window,) * 3 + (channels,))


def _build(arch, strategy, channels, config):
    import keras

    from tfneuro.losses import DiceCELoss, DiceLoss, WeightedCrossEntropy
    from tfneuro.models import get

    loss = {"dice_ce": DiceCELoss, "dice": DiceLoss, "ce": WeightedCrossEntropy}[FLAGS.loss]()
    kwargs = dict(input_shape=(None, None, None, channels))
    kwargs.update(model_kwargs(arch, channels, FLAGS.width_scale))
    with strategy.scope():
        model = get(arch, num_classes=NEUROCRANIUM.num_classes, **kwargs)
        model.compile(optimizer=keras.optimizers.Adam(FLAGS.learning_rate), loss=loss,
                      **config.compile_kwargs())
    return model


def _train(arch, stage_dir, strategy, config, train_df, raw_channels):
    from tfneuro.data import patch_dataset
    from tfneuro.training import epoch_seed, fit

    model = _build(arch, strategy, 1 + len(raw_channels), config)
    seed = aflags.seed_value(FLAGS)

    def train_ds(epoch):
        return patch_dataset(train_df, patch_size=(FLAGS.patch_size,) * 3,
                             patches_per_volume=FLAGS.patches_per_volume,
                             modalities=(FLAGS.modality,), raw_channels=raw_channels,
                             label=FLAGS.label_column, scheme=NEUROCRANIUM, normalize="zscore",
                             batch_size=FLAGS.batch_size, seed=epoch_seed(seed, epoch),
                             shuffle_buffer=max(16, 2 * FLAGS.patches_per_volume))  # mix subjects

    fit(model, train_ds, epochs=FLAGS.epochs, out_dir=stage_dir, resume=FLAGS.resume, seed=seed,
        steps_per_epoch=FLAGS.steps_per_epoch, strategy=strategy, tensorboard=FLAGS.tensorboard)
    save_model(model, os.path.join(stage_dir, "model.keras"))
    return model


def _evaluate(model, df, stage_dir, raw_channels, desc, distances):
    """Rows of ``df`` (raw and post-processed) and the written masks: the paths by subject."""
    from tfneuro.inference import sliding_window_predict
    from tfneuro.inference.bridging import necnet_postprocess
    from tfneuro.io import load_volume, save_volume

    def predict(x, row):
        return sliding_window_predict(model, x, window=(FLAGS.window,) * 3, overlap=FLAGS.overlap)

    def post(raw, row):
        return {POST: necnet_postprocess(raw, FLAGS.theta, axis=FLAGS.bridge_axis)}

    table, preds = evaluation.evaluate_subjects(
        predict, df, modalities=(FLAGS.modality,), label=FLAGS.label_column, scheme=NEUROCRANIUM,
        raw_channels=raw_channels, postprocess=post if FLAGS.postprocess else None,
        distances=distances, return_predictions=True, desc=desc)
    if "postprocess" not in table.columns:
        table.insert(1, "postprocess", "none")
    masks = {}
    for row in df.to_dict("records"):
        masks[row["subject"]] = os.path.join(stage_dir, "masks", f"{row['subject']}_necnet.nii.gz")
        save_volume(preds[row["subject"]][POST if FLAGS.postprocess else "none"].astype("uint8"),
                    masks[row["subject"]], affine=load_volume(row[FLAGS.modality]).affine)
    return table, masks


def _run_architecture(arch, strategy, config, train, test, out):
    """Stage 1 (and with --cascade stage 2) of one network: its test rows."""
    tables, raw = [], ()
    for stage in (1, 2) if FLAGS.cascade else (1,):
        stage_dir = os.path.join(out, arch, f"stage{stage}")
        model = _train(arch, stage_dir, strategy, config, train, raw)
        t, masks = _evaluate(model, test, stage_dir, raw, f"{arch} stage {stage}", FLAGS.distances)
        tables.append(t.assign(model=arch, stage=stage))
        if FLAGS.cascade and stage == 1:  # the priors of stage 2: stage 1's in-sample masks
            _, train_masks = _evaluate(model, train, stage_dir, raw, f"{arch} priors", False)
            masks.update(train_masks)
            train, test = (d.assign(prior=d["subject"].map(masks)) for d in (train, test))
            raw = ("prior",)
    return tables


def _label(model, stage, post):
    """A row's column in Table 2: the network's name (its stage with --cascade) and its
    post-processing; a baseline keeps its own name."""
    if model not in ARCHITECTURES:
        return model
    name = ARCHITECTURES[model][0] + (f" stage {int(stage)}" if FLAGS.cascade else "")
    return name if post == "none" else f"{name} + {post}"


def main(argv):
    del argv
    out = checks.check_out_dir(FLAGS.out, inputs=[FLAGS.cohort] if FLAGS.cohort else [])
    archs = _check_flags()
    config = aflags.config_from_flags()
    df = aflags.cohort_from_flags(FLAGS, out_dir=out, modalities=(FLAGS.modality,),
                                  label=FLAGS.label_column, scheme=NEUROCRANIUM, min_subjects=2)
    train, test = cohorts.require_splits(df, "train", "test")
    paths = {n: os.path.join(out, n) for n in ("results.csv", "table2.csv")}
    checks.check_outputs(paths, cohorts.cohort_files(df))

    import pandas as pd

    from tfneuro.training import setup_runtime

    strategy = setup_runtime(config)
    tables = [t for a in archs for t in _run_architecture(a, strategy, config, train, test, out)]
    if FLAGS.baselines:
        tables.append(evaluation.baseline_tables(
            train, test, modalities=(FLAGS.modality,), label=FLAGS.label_column,
            scheme=NEUROCRANIUM, which=FLAGS.baselines, tune_intensity=True,
            distances=FLAGS.distances))
    table = pd.concat(tables, ignore_index=True)
    table["table2"] = [_label(m, s, p) for m, s, p in
                       zip(table["model"], table["stage"], table["postprocess"])]
    front = ["subject", "model", "stage", "postprocess", "table2"]
    table = table[front + [c for c in table.columns if c not in front]]
    evaluation.write_results(table, paths["results.csv"])
    table2 = evaluation.comparison_table(table, column="table2")
    evaluation.write_results(table2, paths["table2.csv"])
    shown = table2.set_index("metric").T.rename_axis("model").reset_index()  # a row per model
    evaluation.print_summary(f"Paper 000 Table 2 on {len(test)} test subject(s): mean over "
                             f"subjects, neurocranium (table2.csv: a column per model)", shown)
    final = {a: _label(a, 2 if FLAGS.cascade else 1, POST if FLAGS.postprocess else "none")
             for a in archs}
    for arch in archs:
        print(evaluation.skill_summary(table, final[arch], model_column="table2"))
    print(f"results: {paths['results.csv']}; table 2: {paths['table2.csv']}")
    first = table[table["table2"] == final[archs[0]]]
    print(f"mean Dice: {first['dice'].mean():.4f}")


if __name__ == "__main__":
    run(main)
