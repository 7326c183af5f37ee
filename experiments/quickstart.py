"""Quick start: synthetic cohort -> QuickNAT -> SavedModel -> segmentation of a held-out scan.

    python experiments/quickstart.py --out out/quickstart

Steps (each with a progress bar; about 5-8 minutes on a 2-core CPU at the defaults):

1. make a small synthetic infant cohort (``tfneuro.data.synth.make_cohort``: 8 subjects at
   2 mm, ages 1-60 months, T1 + T2 + tissue labels) in ``OUT/cohort`` (reused if present);
2. train QuickNAT (paper 001) on the train split's axial slices, T1 and T2 as two channels,
   with a checkpoint every epoch (``OUT/train_<view>``; ``--resume`` continues);
3. export a SavedModel (``--saved_model``, default ``saved_models/quickstart_quicknat``) with
   the ``segment_volume`` signature;
4. segment every held-out (test split) subject THROUGH THE EXPORTED SavedModel, exactly as
   ``experiments/segment.py`` does (load_volume -> conform -> segment_volume -> deconform),
   writing ``OUT/<subject>_labels.nii.gz`` (input space), ``OUT/<subject>_volumes.csv`` (mL
   per tissue) and ``OUT/<subject>_qc.png`` (three orthogonal slices with the overlay);
5. evaluate those native-space label maps against the subjects' reference labels (Dice,
   precision, HD95, MSD per tissue: ``OUT/results.csv``) and print a summary whose last line
   is ``mean Dice: X`` = the mean of the Dice of CSF, GM and WM over the held-out subjects.

Departures from paper 001, for speed on a CPU (flags restore the paper's values):
``--filters 16`` (paper: 64; 16 makes a training step ~13x cheaper, measured), one view
(``--views axial``; the paper trains and aggregates three), Adam at 1e-3 for 12 epochs
(paper 001: 5e-5 for 50 epochs when pre-training), Dice + median-frequency weighted
cross-entropy without the boundary weight, slices without any tissue skipped.
"""

from __future__ import annotations

import os
import time

from absl import flags

from tfneuro import evaluation, training
from tfneuro.apps import checks, cli, segment
from tfneuro.apps import flags as aflags
from tfneuro.data import cohort as cohorts
from tfneuro.data.load import load_cohort
from tfneuro.errors import InputError
from tfneuro.io import voxel_spacing

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODALITIES = ("t1", "t2")
SCHEME = "tissue4"

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Output directory for the cohort, training run, label NIfTI, "
                    "volumes CSV, QC PNG and results.csv (created).")
flags.DEFINE_integer("subjects", 8, "Synthetic subjects (split train/val/test by "
                     "tfneuro.data.cohort.assign_splits; needs >= 3 for a test subject).",
                     lower_bound=3)
flags.DEFINE_float("spacing", 2.0, "Synthetic voxel size in mm (also the SavedModel's conform "
                   "spacing).", lower_bound=0.5)
flags.DEFINE_integer("filters", 16, "QuickNAT feature maps per convolution (paper 001: 64).",
                     lower_bound=1)
flags.DEFINE_list("views", ["axial"], "Views to train and aggregate (axial, coronal, sagittal; "
                  "paper 001 uses all three).")
flags.DEFINE_integer("steps_per_epoch", None, "Batches per epoch (default: all slices).",
                     lower_bound=1)
flags.DEFINE_string("saved_model", os.path.join(REPO, "saved_models", "quickstart_quicknat"),
                    "Where to export the SavedModel (a directory; replaced atomically).")
aflags.define_training_flags(epochs=12, batch_size=16, learning_rate=1e-3, seed=0)

def _check_flags():
    out = checks.check_out_dir(FLAGS.out)
    checks.check_views(FLAGS.views)
    sm = os.path.abspath(FLAGS.saved_model or "")
    if not FLAGS.saved_model:
        raise InputError("--saved_model", "is required")
    if os.path.exists(sm) and not os.path.isdir(sm):
        raise InputError("--saved_model", f"{FLAGS.saved_model} exists and is not a directory")
    if os.path.isdir(sm) and os.listdir(sm) and not os.path.isfile(os.path.join(sm, "saved_model.pb")):
        raise InputError("--saved_model", f"{FLAGS.saved_model} is a non-empty directory that is "
                                          "not a SavedModel; refusing to replace it")
    if os.path.realpath(sm) == os.path.realpath(out) or \
            os.path.realpath(out).startswith(os.path.realpath(sm) + os.sep):
        raise InputError("--saved_model", f"{FLAGS.saved_model} would replace the output directory")
    from tfneuro.training.loop import latest_checkpoint

    for v in FLAGS.views:
        if not FLAGS.resume and latest_checkpoint(os.path.join(out, f"train_{v}")):
            raise InputError("--out", f"{out} already holds a training run; pass --resume to "
                                      "continue it or choose another output directory")
    return out, sm


def _train_view(view, train_df, pad_to, out, strategy, config):
    import keras

    from tfneuro.data import slice_dataset
    from tfneuro.losses import DiceCELoss
    from tfneuro.models import get
    from tfneuro.training.loop import fit

    # paper 001's loss: median-frequency weighted cross-entropy + Dice
    ce_weight = training.class_weights_from_cohort(train_df, 4, SCHEME)
    with strategy.scope():
        model = get("quicknat", num_classes=4, input_shape=(None, None, len(MODALITIES)),
                    filters=FLAGS.filters)
        model.compile(optimizer=keras.optimizers.Adam(FLAGS.learning_rate),
                      loss=DiceCELoss(ce_weight=ce_weight), **config.compile_kwargs())

    # one dataset for all epochs: decoded volumes cached in memory, reshuffled every epoch
    # (a resumed run continues correctly but not bit-exactly; see tfneuro.training.loop)
    train_ds = slice_dataset(train_df, axis=view, modalities=MODALITIES, scheme=SCHEME,
                             pad_to=pad_to, drop_empty=True, batch_size=FLAGS.batch_size,
                             seed=FLAGS.seed, cache=True)

    print(f"training quicknat ({view}, {FLAGS.filters} filters, {FLAGS.epochs} epochs)")
    hist = fit(model, train_ds, epochs=FLAGS.epochs, out_dir=os.path.join(out, f"train_{view}"),
               resume=FLAGS.resume, seed=FLAGS.seed, steps_per_epoch=FLAGS.steps_per_epoch,
               tensorboard=FLAGS.tensorboard, strategy=strategy)
    return model, hist


def main(argv):
    if len(argv) > 1:
        raise InputError("command line", f"unexpected arguments {argv[1:]}")

    cli.quiet_logs()
    t0 = time.time()
    out, sm = _check_flags()
    config = aflags.config_from_flags()
    if FLAGS.seed is None:
        raise InputError("--seed", "is required")

    import numpy as np
    import pandas as pd

    from tfneuro.export import export_model
    from tfneuro.io import load_volume
    from tfneuro.metrics import evaluation_table
    from tfneuro.training.runtime import setup_runtime
    from tfneuro.utils.progress import progress

    # 1. cohort (validated like any experiment's cohort)
    df = load_cohort(None, out_dir=out, modalities=MODALITIES, scheme=SCHEME, min_subjects=3,
                     synth_subjects=FLAGS.subjects, synth_spacing=FLAGS.spacing, seed=FLAGS.seed)
    train_df, test_df = cohorts.require_splits(df, "train", "test")
    plans = segment.cohort_plans(test_df, out, volumes=True, qc=True)
    for plan in plans.values():
        checks.check_outputs(plan, cohorts.cohort_files(df), checks.EXTENSIONS)
    print(f"cohort: {len(df)} subjects ({len(train_df)} train, {len(test_df)} test) at "
          f"{FLAGS.spacing:g} mm in {os.path.dirname(df.attrs['source'])} "
          f"[{time.time() - t0:.0f} s]")

    # 2. train one QuickNAT per view
    strategy = setup_runtime(config)
    pad_to = cohorts.cohort_shape(df, "t1", multiple=16)
    models = {}
    for view in FLAGS.views:
        models[view], _ = _train_view(view, train_df, pad_to, out, strategy, config)
    print(f"trained [{time.time() - t0:.0f} s]")

    # 3. export
    model_arg = models if len(models) > 1 else models[FLAGS.views[0]]
    export_model(model_arg, sm, model_name="quickstart_quicknat", label_scheme=SCHEME,
                 spacing=FLAGS.spacing, views=None if len(models) > 1 else list(FLAGS.views),
                 modalities=list(MODALITIES))
    print(f"exported SavedModel {sm} [{time.time() - t0:.0f} s]")

    # 4. segment the held-out subjects through the SavedModel (experiments/segment.py's path)
    seg = segment.load_segmenter(sm)
    tables = []
    for row in progress(test_df.to_dict("records"), desc="segment (SavedModel)", unit="subject"):
        s = row["subject"]
        result, written = segment.segment_files(seg, [row[m] for m in MODALITIES],
                                                list(MODALITIES), plans[s],
                                                title=f"{s} (quickstart)")
        for w in written:
            print(f"wrote {w}")
        # 5. evaluate in the input space against the reference labels
        ref = load_volume(row["label"], kind="label", scheme=SCHEME)
        tables.append(evaluation_table(np.asarray(ref.dataobj).astype(np.int32),
                                       np.asarray(result.labels.dataobj).astype(np.int32),
                                       voxel_spacing(row["label"]), subject=s, scheme=SCHEME))
    table = pd.concat(tables, ignore_index=True)
    evaluation.write_results(table, os.path.join(out, "results.csv"))
    evaluation.print_summary("held-out subjects, segmented through the SavedModel (input space):", table,
                             ["subject", "name", "dice", "precision", "hd95_mm", "msd_mm"])
    print(f"results: {os.path.join(out, 'results.csv')}; total {time.time() - t0:.0f} s")
    print(f"mean Dice: {table['dice'].mean():.4f}")


if __name__ == "__main__":
    cli.run(main)
