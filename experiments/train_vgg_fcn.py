"""Paper 004 (Xu, Geraud & Bloch, ICIP 2017): an ImageNet VGG16 FCN with side outputs on
"3D-like" RGB slices (slices n-1, n, n+1) of a histogram-equalised volume, fine-tuned with SGD,
slice-wise post-processing, Dice / HD95 / MSD.

    python experiments/train_vgg_fcn.py --out runs/vgg                   # downloads ImageNet VGG16
    python experiments/train_vgg_fcn.py --out runs/vgg --weights none    # random initialisation
    python experiments/train_vgg_fcn.py --out runs/vgg --cohort neobrains.csv \
        --label_scheme neobrains12 --mrbrains_grouping

What it does (paper 004 section 3):

1. validates flags, the ImageNet / local VGG16 weights (``--weights``; a failed download is one
   error line), the cohort (the ``--modality`` images and labels) and the outputs before work;
2. "We begin with an histogram equalization of the whole MR volume" (``normalize="histeq"``),
   and forms per slice the RGB image of slices n-1, n, n+1 with zeros outside the volume
   (``tfneuro.data.rgb_slice_dataset``), along ``--axis``;
3. "subtract the mean value for each channel in the training images": the channel mean of the
   training inputs is computed once and stored IN the model (``vgg_fcn.set_channel_mean``), so
   the saved ``model.keras`` carries it;
4. fine-tunes the whole network with "the multinomial logistic loss" (cross-entropy), "data
   augmentation ... by scaling and rotating", SGD "momentum = 0.99, weight_decay = 0.005",
   "lr = 1e-10 for neonates" (recipe ``paper004``). The paper's rate is for Caffe's loss summed
   over the pixels of an image; Keras averages, so the rate is multiplied by the pixels per
   training slice and the weight decay divided by it (``tfneuro.training.caffe_equivalent``:
   the same SGD steps). "100k iterations" of "20 images": ``--iterations`` and batch 20;
5. predicts every ``test`` subject slice by slice (``tfneuro.inference.predict_slices``) and
   post-processes it (``--postprocess paper004``: "a region R of each slice that is small or does
   not superpose importantly with the brain mask M (e.g. |R| < 5 mm^2 or |R ∩ M|/|R| < 0.8) is
   automatically considered as background", ``tfneuro.inference.clean_slices``);
6. fits the baselines on the same ``train`` subjects (per-voxel intensity classifier on the
   z-scored ``--modality`` image, and the atlas of the training label maps) and scores them on
   the same test subjects and classes (``tfneuro.evaluation.evaluate_splits``);
7. writes ``OUT/results.csv`` (per test subject, post-processing and class: Dice, precision,
   HD95, MSD; with ``--mrbrains_grouping`` after paper 004's MRBrainS grouping GM = CoGM+BGT,
   WM = UWM+WML/MWM, CSF' = Vent+CSF; the baselines' rows beside the model's, named in the
   ``model`` column), ``OUT/model.keras`` and prints a summary and the model's skill over the
   best baseline.

Defaults are paper 004's neonatal settings (T2, axial, ImageNet weights, lr 1e-10); for adults
use ``--modality t1 --learning_rate 1e-8 --drop_coarsest``.

Departure (``--weights none`` only): the input scale. With ImageNet weights the mean-subtracted
[0, 1] slices are multiplied by 255, the 8-bit range those filters were trained on (paper 004
fed 8-bit images to Caffe). A randomly initialised VGG16 has no such range, and with 255-scaled
inputs it collapsed to all-background (Dice 0 for every class after 150 steps, where scale 1
reached 0.32; docs/papers_002_003_004.md), so ``--input_scale`` defaults to 255 with pre-trained
weights and to 1 with ``--weights none``.
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
from tfneuro.io import VIEWS, view_axis, voxel_spacing

MODEL = "vgg16_fcn"
WEIGHT_DECAY = 0.005  # paper 004 section 3 (Caffe units)

FLAGS = flags.FLAGS
aflags.define_experiment_flags(synth_subjects=8, synth_spacing=2.0)
aflags.define_training_flags(epochs=None, batch_size=20, learning_rate=1e-10, seed=0)
flags.DEFINE_string("model", MODEL, "Slice model (paper 004: vgg16_fcn).")
flags.DEFINE_string("modality", "t2", "Cohort image column (paper 004: T2 for neonates, T1 for "
                    "adults).")
flags.DEFINE_enum("axis", "axial", list(VIEWS), "Slicing axis (paper 004 segments along the "
                  "acquisition plane: axial or coronal).")
flags.DEFINE_string("weights", "imagenet", "VGG16 base weights: imagenet (paper 004; downloaded "
                    "by Keras on first use, needs network), none (random), or a path to "
                    "VGG16(include_top=False) weights.")
flags.DEFINE_float("input_scale", None, "Multiplier after the channel-mean subtraction (default "
                   "255, the 8-bit range of ImageNet VGG16, with pre-trained weights; 1 with "
                   "--weights none).", lower_bound=0.0)
flags.DEFINE_integer("side_filters", 16, "Maps K of each specialised side layer (paper: 16).",
                     lower_bound=1)
flags.DEFINE_boolean("drop_coarsest", False, "Drop the stage-5 side output (paper 004: adults).")
flags.DEFINE_integer("iterations", 100000, "SGD iterations (paper 004: 100k) when --epochs is "
                     "not given: epochs = ceil(iterations / steps_per_epoch).", lower_bound=1)
flags.DEFINE_integer("steps_per_epoch", None, "Batches per epoch (default: one pass over the "
                     "slices; more repeats them).", lower_bound=1)
flags.DEFINE_boolean("augment", True, "Random rotation and scaling of the training volumes "
                     "(paper 004: 'scaling and rotating').")
flags.DEFINE_boolean("drop_empty", False, "Train only on slices holding labels (paper 004 "
                     "trains on every slice).")
flags.DEFINE_enum("postprocess", "paper004", ["paper004", "full", "none"], "paper004: slice "
                  "cleaning; full: + largest component per label + hole filling; none.")
flags.DEFINE_float("min_area_mm2", 5.0, "Slice cleaning: smallest kept region (paper: 5 mm^2).",
                   lower_bound=0.0)
flags.DEFINE_float("min_overlap", 0.8, "Slice cleaning: least fraction of a region inside the "
                   "brain mask (paper: 0.8).", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_boolean("mrbrains_grouping", False, "Evaluate after paper 004's MRBrainS grouping "
                     "(label scheme -> mrbrains13).")
flags.DEFINE_boolean("distances", True, "Compute HD95 and MSD (paper 004 reports them).")


def _check_flags():
    from tfneuro.io.labels import GROUPINGS, get_scheme

    if len(FLAGS.modality.split(",")) != 1:
        raise InputError("--modality", f"{FLAGS.modality!r}: vgg16_fcn takes one modality "
                                       "(3 adjacent slices as RGB)")
    checks.check_model_name(FLAGS.model, modalities=(FLAGS.modality,), tasks=("segmentation",))
    if FLAGS.model != MODEL:
        raise InputError("--model", f"{FLAGS.model!r}: this experiment trains {MODEL}")
    w = FLAGS.weights
    if w not in ("imagenet", "none") and not os.path.isfile(w):
        raise InputError("--weights", f"{w}: not 'imagenet', 'none' or an existing weights file")
    try:
        scheme = get_scheme(FLAGS.label_scheme).name
    except InputError as e:
        raise InputError("--label_scheme", e.problem) from None
    if FLAGS.mrbrains_grouping and scheme != "mrbrains13" and (scheme, "mrbrains13") not in GROUPINGS:
        raise InputError("--mrbrains_grouping", f"no MRBrainS grouping for label scheme {scheme!r} "
                                                f"(defined for neobrains12, mrbrains13)")
    return scheme


def _build(strategy, num_classes):
    from tfneuro.models import get

    weights = None if FLAGS.weights == "none" else FLAGS.weights
    scale = FLAGS.input_scale if FLAGS.input_scale is not None else (255.0 if weights else 1.0)
    with strategy.scope():
        try:
            return get(FLAGS.model, num_classes=num_classes, weights=weights, input_scale=scale,
                       side_filters=FLAGS.side_filters, drop_coarsest=FLAGS.drop_coarsest)
        except InputError:
            raise
        except Exception as e:  # noqa: BLE001 - keras' download error is a bare Exception
            if weights != "imagenet":
                raise
            raise InputError("--weights", f"cannot get the ImageNet VGG16 weights "
                                          f"({str(e).splitlines()[0][:300]}); pass --weights none "
                                          "or a local VGG16(include_top=False) weights file") from e


def _train(model, train, scheme, pad_to, strategy, config, out):
    """Paper 004 section 3: the training channel mean stored in the model, then SGD on the
    3-slice stacks with the Caffe rate converted for a mean-reduced loss."""
    import numpy as np

    from tfneuro.data import rgb_slice_dataset
    from tfneuro.data.augment import Compose, RotateScale
    from tfneuro.losses import WeightedCrossEntropy
    from tfneuro.models.vgg_fcn import compute_channel_mean, set_channel_mean
    from tfneuro.training import caffe_equivalent, epoch_seed, fit, make_optimizer

    seed = aflags.seed_value(FLAGS)
    augment = Compose([RotateScale(max_degrees=10.0, scale=(0.9, 1.1), prob=0.5)]) \
        if FLAGS.augment else None

    def slices(epoch, augment=augment, shuffle=True, batch=FLAGS.batch_size):
        return rgb_slice_dataset(train, modality=FLAGS.modality, axis=FLAGS.axis, label="label",
                                 scheme=scheme, pad_to=pad_to, drop_empty=FLAGS.drop_empty,
                                 augment=augment, shuffle=shuffle, batch_size=batch,
                                 seed=epoch_seed(seed, epoch))

    mean = compute_channel_mean(slices(0, augment=None, shuffle=False, batch=64))
    set_channel_mean(model, mean)
    steps = FLAGS.steps_per_epoch or training.count_batches(slices(0, augment=None,
                                                                   shuffle=False))
    epochs = FLAGS.epochs or max(1, math.ceil(FLAGS.iterations / steps))
    pixels = int(np.prod([s for i, s in enumerate(pad_to) if i != view_axis(FLAGS.axis)]))
    lr, wd = caffe_equivalent(FLAGS.learning_rate, WEIGHT_DECAY, pixels)
    with strategy.scope():
        model.compile(optimizer=make_optimizer("paper004", steps_per_epoch=steps, epochs=epochs,
                                               learning_rate=lr, weight_decay=wd),
                      loss=WeightedCrossEntropy(), **config.compile_kwargs())
    run_dir = os.path.join(out, "train")
    print(f"[{MODEL}] {training.resume_note(run_dir, FLAGS.resume)}; {epochs} epoch(s) x {steps} "
          f"steps; channel mean {np.round(mean, 4).tolist()}; Caffe lr {FLAGS.learning_rate:g} "
          f"-> {lr:.3g} per-pixel-mean lr ({pixels} pixels per slice)")
    fit(model, training.repeating(slices) if FLAGS.steps_per_epoch else slices, epochs=epochs,
        out_dir=run_dir, resume=FLAGS.resume, seed=seed, steps_per_epoch=steps,
        strategy=strategy, tensorboard=FLAGS.tensorboard)


def _cleaner(axis):
    """Paper 004 section 3 post-processing, scored beside the raw labels."""
    from tfneuro.inference.postprocess import clean_slices, postprocess

    kw = dict(min_area_mm2=FLAGS.min_area_mm2, min_overlap=FLAGS.min_overlap)

    def cleaned(raw, row):
        if FLAGS.postprocess == "none":
            return {}
        clean = clean_slices if FLAGS.postprocess == "paper004" else postprocess
        return {FLAGS.postprocess: clean(raw, voxel_spacing(row[FLAGS.modality]), axis, **kw)}

    return cleaned


def main(argv):
    if len(argv) > 1:
        raise InputError("command line", f"unexpected arguments {argv[1:]}")
    from tfneuro.inference import predict_slices
    from tfneuro.io.labels import get_scheme
    from tfneuro.training import setup_runtime

    out = checks.check_out_dir(FLAGS.out, inputs=[FLAGS.cohort] if FLAGS.cohort else [])
    scheme = _check_flags()
    config = aflags.config_from_flags()
    strategy = setup_runtime(config)
    model = _build(strategy, get_scheme(scheme).num_classes)  # checks --weights before data work
    df = aflags.cohort_from_flags(FLAGS, out_dir=out, modalities=(FLAGS.modality,), label="label",
                                  min_subjects=2)
    train, test = cohorts.require_splits(df, "train", "test")
    paths = {n: os.path.join(out, n) for n in ("results.csv", "model.keras")}
    checks.check_outputs(paths, cohorts.cohort_files(df))
    _train(model, train, scheme, cohorts.cohort_shape(df, FLAGS.modality, multiple=16), strategy,
           config, out)
    training.save_keras_model(model, paths["model.keras"], compiled=False)

    regroup = "mrbrains13" if FLAGS.mrbrains_grouping else None
    table = evaluation.evaluate_splits(
        lambda x, row: predict_slices(model, x, FLAGS.axis, skip_empty=False), {"test": test},
        name=MODEL, train_df=train, modalities=(FLAGS.modality,), scheme=scheme,
        normalize="histeq", postprocess=_cleaner(view_axis(FLAGS.axis)),
        variant_column="postprocess", regroup_to=regroup, distances=FLAGS.distances)
    evaluation.write_results(table, paths["results.csv"])
    cols = [c for c in ("dice", "hd95_mm", "msd_mm") if table[c].notna().any()]
    summary = table.groupby(["model", "postprocess", "name"], sort=False, dropna=False)[cols]
    evaluation.print_summary(f"{MODEL} ({FLAGS.modality}, {FLAGS.axis}): mean over {len(test)} "
                             "test subject(s)" + (" (MRBrainS grouping)" if regroup else ""),
                             summary.mean().reset_index())
    print(evaluation.skill_summary(table, MODEL, where={"postprocess": FLAGS.postprocess}))
    final = table[(table["model"] == MODEL) & (table["postprocess"] == FLAGS.postprocess)]
    print(f"results: {paths['results.csv']}")
    print(f"mean Dice ({FLAGS.postprocess}): {final['dice'].mean():.4f}")


if __name__ == "__main__":
    run(main)
