"""Paper 001 step 1: pre-train QuickNAT on auxiliary labels (one model per view).

    python experiments/train_quicknat.py --out runs/quicknat_pre [--cohort cohort.csv]

Paper 001 (001_4781efe3c87e8969.txt sections 2.3, 3.1) pre-trains QuickNAT on a large set of
scans whose labels come from an automatic tool (FreeSurfer), then fine-tunes on a few manual
labels (experiments/finetune_quicknat.py). Here the auxiliary labels are chosen by
``--aux_labels``:

* ``kmeans`` (default): a cheap automatic tissue labelling: k-means (k = 3,
  ``scipy.cluster.vq.kmeans2``) of the z-scored first modality inside the brain mask (the
  cohort's ``mask`` column, else ``label > 0``), clusters numbered 1..3 by increasing mean
  intensity; written to ``OUT/aux_labels/<subject>_aux.nii.gz``. Like FreeSurfer labels for
  the paper, they are systematically wrong in places (on infant T1 the GM/WM contrast inverts
  around 6-9 months), which is the point of fine-tuning on manual labels afterwards.
* ``labels``: the cohort's own ``label`` column (e.g. the synthetic cohort's exact labels).

Outputs: ``OUT/<view>/`` (checkpoints every epoch, training_log.csv, TensorBoard),
``OUT/quicknat_<view>.keras`` (input of finetune_quicknat.py), ``OUT/results.csv`` (Dice,
precision, HD95, MSD per class of each view and of the view aggregate on the val/test
subjects, against the auxiliary labels) and a summary. ``--resume`` continues from the last
complete epoch.

Defaults are paper 001's: 64 filters, 5x5 kernels, three views, Adam 5e-5, batch 8, 50 epochs
(recipe ``paper001``). Loss: Dice + cross-entropy (paper 001's combined loss) without the
median-frequency/boundary weights (not restated in paper 001).
"""

from __future__ import annotations

import os

from absl import flags

from tfneuro import evaluation, training
from tfneuro.apps import checks, cli
from tfneuro.apps import flags as aflags
from tfneuro.data import cohort as cohorts
from tfneuro.errors import InputError

FLAGS = flags.FLAGS
aflags.define_experiment_flags()
aflags.define_training_flags(epochs=50, batch_size=8, learning_rate=5e-5, seed=0)
flags.DEFINE_string("model", "quicknat", "Registered 2D slice model (quicknat; unet2d works too).")
flags.DEFINE_integer("filters", 64, "Feature maps per convolution (paper 001: 64).", lower_bound=1)
flags.DEFINE_list("views", ["axial", "coronal", "sagittal"], "Views to train (one model each).")
flags.DEFINE_list("modalities", ["t1"], "Cohort image columns used as channels (paper 001: T1).")
flags.DEFINE_enum("aux_labels", "kmeans", ["kmeans", "labels"], "Auxiliary labels: kmeans "
                  "tissue clusters of the first modality in the brain mask, or the cohort's "
                  "label column.")
flags.DEFINE_integer("steps_per_epoch", None, "Batches per epoch (default: all slices).",
                     lower_bound=1)
flags.DEFINE_bool("distances", True, "Compute HD95 and MSD in the results.")

AUX_NAMES = ["background", "aux_dark", "aux_mid", "aux_bright"]


def kmeans_labels(image, mask, seed: int = 0, k: int = 3):
    """k-means tissue clusters of ``image`` inside ``mask``: 0 outside, 1..k by increasing
    cluster mean (``scipy.cluster.vq.kmeans2`` with k-means++ initialisation)."""
    import numpy as np
    from scipy.cluster.vq import kmeans2

    from tfneuro.io.normalize import zscore

    vals = zscore(image, mask=mask)[mask].astype(np.float64)
    centroids, assign = kmeans2(vals, k, seed=np.random.default_rng(seed), minit="++")
    order = np.argsort(np.argsort(centroids.ravel()))  # cluster -> rank
    out = np.zeros(image.shape, np.uint8)
    out[mask] = order[assign] + 1
    return out


def make_aux_cohort(df, out, seed):
    """Write k-means auxiliary labels for every subject; return the cohort pointing at them."""
    import numpy as np

    from tfneuro.io import load_volume, save_volume
    from tfneuro.utils.progress import progress

    aux_dir = os.path.join(out, "aux_labels")
    os.makedirs(aux_dir, exist_ok=True)
    df = df.copy()
    paths = []
    for row in progress(df.to_dict("records"), desc="auxiliary labels (k-means)", unit="subject"):
        path = os.path.join(aux_dir, f"{row['subject']}_aux.nii.gz")
        if not os.path.isfile(path):
            img = load_volume(row[FLAGS.modalities[0]])
            if row.get("mask"):
                mask = np.asarray(load_volume(row["mask"], kind="label").dataobj) > 0
            else:
                mask = np.asarray(load_volume(row["label"], kind="label").dataobj) > 0
            save_volume(kmeans_labels(np.asarray(img.dataobj, np.float32), mask, seed),
                        path, affine=img.affine)
        paths.append(path)
    df["label"] = paths
    return df


def main(argv):
    if len(argv) > 1:
        raise InputError("command line", f"unexpected arguments {argv[1:]}")
    cli.quiet_logs()
    checks.check_views(FLAGS.views)
    mods = tuple(FLAGS.modalities)
    spec = checks.check_model_name(FLAGS.model, modalities=mods, tasks=("segmentation",))
    if spec.ndim != 2 or spec.input_kind != "channels":
        raise InputError("--model", f"{FLAGS.model!r} is not a 2D channels slice model (quicknat, unet2d)")
    config = aflags.config_from_flags()
    seed = aflags.seed_value()
    cohort_inputs = [FLAGS.cohort] if FLAGS.cohort else []
    out = checks.check_out_dir(FLAGS.out, cohort_inputs)
    if FLAGS.aux_labels == "labels":
        df = aflags.cohort_from_flags(out_dir=out, modalities=mods, label="label", min_subjects=2)
        scheme = FLAGS.label_scheme
        from tfneuro.io.labels import get_scheme

        names = list(get_scheme(scheme).names)
    else:
        df = aflags.cohort_from_flags(out_dir=out, modalities=mods, label=None, min_subjects=2)
        if "mask" not in df.columns or not all(df["mask"]):
            # a brain mask is needed for k-means: the mask column, else the labels
            df = aflags.cohort_from_flags(out_dir=out, modalities=mods, label="label", min_subjects=2)
        scheme = None
        names = AUX_NAMES
    files = cohorts.cohort_files(df)
    results_csv = os.path.join(out, "results.csv")
    outputs = {"results.csv": results_csv}
    outputs.update({f"quicknat_{v}.keras": os.path.join(out, f"quicknat_{v}.keras") for v in FLAGS.views})
    checks.check_outputs(outputs, files)

    from tfneuro.data import slice_dataset
    from tfneuro.data.cohort import select_split
    from tfneuro.models import get
    from tfneuro.training.loop import epoch_seed, fit
    from tfneuro.training.recipes import make_optimizer
    from tfneuro.training.runtime import setup_runtime

    if FLAGS.aux_labels == "kmeans":
        df = make_aux_cohort(df, out, seed)
    train_df = select_split(df, "train")
    eval_df = select_split(df, ["val", "test"])
    if train_df.empty:
        raise InputError(df.attrs.get("source", "cohort"), "no subjects in the train split")
    if eval_df.empty:
        eval_df = train_df
    strategy = setup_runtime(config)
    pad_to = cohorts.cohort_shape(df, mods[0], multiple=16)
    k = len(names)
    models, tables = {}, []
    for view in FLAGS.views:
        run_dir = os.path.join(out, view)
        from tfneuro.training.loop import list_checkpoints

        done = list_checkpoints(run_dir)[-1][0] if FLAGS.resume and list_checkpoints(run_dir) else 0
        print(f"[{view}] {training.resume_note(run_dir, FLAGS.resume)}")

        def train_ds(epoch, view=view):
            return slice_dataset(train_df, axis=view, modalities=mods, scheme=scheme,
                                 pad_to=pad_to, drop_empty=True, batch_size=FLAGS.batch_size,
                                 seed=epoch_seed(seed, epoch))

        n_slices = sum(1 for _ in train_ds(0).unbatch()) if FLAGS.steps_per_epoch is None else None
        steps = FLAGS.steps_per_epoch or max(1, -(-n_slices // FLAGS.batch_size))
        with strategy.scope():
            model = get(FLAGS.model, num_classes=k, input_shape=(None, None, len(mods)),
                        filters=FLAGS.filters)
            model.compile(optimizer=make_optimizer("paper001", steps_per_epoch=steps,
                                                   epochs=FLAGS.epochs,
                                                   learning_rate=FLAGS.learning_rate),
                          loss=training.segmentation_loss(model), **config.compile_kwargs())
        hist = fit(model, train_ds, epochs=FLAGS.epochs, out_dir=run_dir, resume=FLAGS.resume,
                   seed=seed, steps_per_epoch=steps, tensorboard=FLAGS.tensorboard,
                   strategy=strategy)
        print(f"[{view}] trained epochs {done + 1}-{FLAGS.epochs}; "
              f"final loss {hist['loss'].iloc[-1]:.4f}")
        training.save_keras_model(model, outputs[f"quicknat_{view}.keras"])
        models[view] = model
        t = evaluation.evaluate_subjects(model, eval_df, modalities=mods, scheme=scheme, label_names=names,
                                         views=[view], distances=FLAGS.distances, desc=f"evaluate {view}")
        tables.append(t.assign(view=view))
    if len(models) > 1:
        t = evaluation.evaluate_subjects(models, eval_df, modalities=mods, scheme=scheme, label_names=names,
                                         distances=FLAGS.distances, desc="evaluate aggregate")
        tables.append(t.assign(view="aggregate"))
    import pandas as pd

    table = pd.concat(tables, ignore_index=True)
    evaluation.write_results(table, results_csv)
    summary = table.groupby("view", sort=False)[["dice", "precision"]].mean().reset_index()
    evaluation.print_summary(f"QuickNAT pre-training on {FLAGS.aux_labels} labels: mean over "
                             f"{eval_df['subject'].nunique()} val/test subject(s) and foreground classes",
                             summary)
    print(f"results: {results_csv}")
    print(f"models: {', '.join(outputs[f'quicknat_{v}.keras'] for v in FLAGS.views)}")


if __name__ == "__main__":
    cli.run(main)
