"""Paper 001 step 2: two-stage fine-tuning of a pre-trained QuickNAT, with an LR sweep and
leave-one-out cross-validation.

    python experiments/finetune_quicknat.py --pretrained runs/quicknat_pre/quicknat_axial.keras \
        --view axial --out runs/quicknat_ft [--cohort manual_labels.csv]

Paper 001 (001_4781efe3c87e8969.txt sections 3.2-3.3): the classifier of the pre-trained
network is replaced for the new label set, stage I trains only the classifier (15 epochs),
stage II trains every layer (50 epochs) (``tfneuro.training.finetune_two_stage``, shared with
the quick start); the learning rate is chosen from a sweep by validation
accuracy (``tfneuro.training.lr_sweep``); results are per-label Dice and precision
(paper 001 eq. 1-2) under leave-one-out cross-validation, and a confusion matrix.

Protocol here: the LR sweep runs ONCE, before cross-validation, training on the cohort's
``train`` split and scoring mean foreground Dice on its ``val`` split (never a CV test
subject). Then each of the (first ``--folds``) labelled subjects is left out in turn: the
model is fine-tuned from the pre-trained weights at the chosen rate on all other subjects and
evaluated on the left-out one.

Defaults are paper 001's: T2 slices (section 2.1: "we only used T2w structural scans") of the
axial view (section 2.2), Adam, batch 8. The pre-trained model must take the same channels
(train_quicknat.py also defaults to T2 and axial).

Outputs in OUT: ``lr_sweep.csv``, ``results.csv`` (fold, subject, class, Dice, precision,
HD95, MSD), ``per_label.csv`` (mean/SD over folds), ``confusion_matrix.csv`` and
``confusion_matrix.png`` (row-normalised, summed over folds), ``fold_<subject>/`` runs.
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
aflags.define_training_flags(epochs=50, batch_size=8, learning_rate=None, seed=0)
flags.DEFINE_string("pretrained", None, "Pre-trained 2D model (.keras, e.g. from "
                    "train_quicknat.py). Loaded in safe mode.")
flags.DEFINE_bool("unsafe", False, "Allow .keras models with arbitrary Python (Lambda layers).")
flags.DEFINE_enum("view", "axial", ["axial", "coronal", "sagittal"], "View the model segments.")
flags.DEFINE_list("modalities", ["t2"], "Cohort image columns used as channels (paper 001: T2).")
flags.DEFINE_integer("stage1_epochs", 15, "Stage I epochs: classifier only (paper 001: 15).",
                     lower_bound=1)
flags.DEFINE_list("rates", None, "Learning rates of the sweep (default: tfneuro.training."
                  "PAPER001_RATES, 9 rates; --learning_rate skips the sweep).")
flags.DEFINE_integer("folds", None, "Leave-one-out folds to run (default: every labelled "
                     "subject).", lower_bound=1)
flags.DEFINE_integer("steps_per_epoch", None, "Batches per epoch (default: all slices).",
                     lower_bound=1)
flags.DEFINE_bool("distances", True, "Compute HD95 and MSD in the results.")


def _confusion_png(matrix, names, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from matplotlib.figure import Figure

    from tfneuro.utils.atomic import atomic_path

    m = np.asarray(matrix, np.float64)
    norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(1.2 * len(names) + 2, 1.1 * len(names) + 1.5), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def main(argv):
    if len(argv) > 1:
        raise InputError("command line", f"unexpected arguments {argv[1:]}")

    cli.quiet_logs()
    if not FLAGS.pretrained:
        raise InputError("--pretrained", "is required (a .keras model, e.g. from train_quicknat.py)")
    if not os.path.isfile(FLAGS.pretrained):
        raise InputError(FLAGS.pretrained, "pre-trained model not found")
    if not FLAGS.pretrained.endswith(".keras"):
        raise InputError("--pretrained", f"{FLAGS.pretrained}: expected a .keras file")
    mods = tuple(FLAGS.modalities)
    config = aflags.config_from_flags()
    seed = aflags.seed_value()
    rates = None
    if FLAGS.learning_rate is None:
        from tfneuro.training.recipes import PAPER001_RATES

        try:
            rates = [float(r) for r in (FLAGS.rates or PAPER001_RATES)]
        except ValueError:
            raise InputError("--rates", f"{FLAGS.rates}: not numbers") from None
        if not rates or any(not r > 0 for r in rates):
            raise InputError("--rates", f"{rates}: need positive learning rates")
    out = checks.check_out_dir(FLAGS.out, [FLAGS.pretrained] + ([FLAGS.cohort] if FLAGS.cohort else []))
    df = aflags.cohort_from_flags(out_dir=out, modalities=mods, label="label", min_subjects=2)
    scheme = FLAGS.label_scheme
    from tfneuro.io.labels import get_scheme

    names = list(get_scheme(scheme).names)
    files = cohorts.cohort_files(df) + [FLAGS.pretrained]
    outs = {n: os.path.join(out, n) for n in ("lr_sweep.csv", "results.csv", "per_label.csv",
                                              "confusion_matrix.csv", "confusion_matrix.png")}
    checks.check_outputs(outs, files)


    pre = training.load_keras_model(FLAGS.pretrained, unsafe=FLAGS.unsafe)
    if len(pre.inputs[0].shape) != 4:
        raise InputError(FLAGS.pretrained, f"model {pre.name!r} is not a 2D slice model")
    checks.check_model_channels(pre, len(mods), "--modalities")
    if rates is not None:
        from tfneuro.data.cohort import select_split

        if select_split(df, "train").empty or select_split(df, "val").empty:
            raise InputError(df.attrs.get("source", "cohort"), "the LR sweep needs train and val "
                             "subjects (or give --learning_rate)")

    import numpy as np
    import pandas as pd

    from tfneuro.data.cohort import select_split
    from tfneuro.metrics import confusion_matrix
    from tfneuro.training.recipes import lr_sweep
    from tfneuro.training.runtime import setup_runtime

    strategy = setup_runtime(config)
    pad_to = cohorts.cohort_shape(df, mods[0], multiple=16)
    k = len(names)

    def finetune(train_df, rate, run_dir):
        train_ds = training.slice_train_fn(train_df, view=FLAGS.view, modalities=mods,
                                           scheme=scheme, pad_to=pad_to,
                                           batch_size=FLAGS.batch_size, seed=seed)
        model, _ = training.finetune_two_stage(
            pre, k, train_ds, learning_rate=rate, out_dir=run_dir,
            stage1_epochs=FLAGS.stage1_epochs, stage2_epochs=FLAGS.epochs,
            compile_kwargs=config.compile_kwargs(), resume=FLAGS.resume, seed=seed,
            steps_per_epoch=FLAGS.steps_per_epoch, tensorboard=FLAGS.tensorboard,
            strategy=strategy)
        return model

    if rates is not None:
        tr, va = select_split(df, "train"), select_split(df, "val")

        def trial(rate):
            model = finetune(tr, rate, os.path.join(out, "lr_sweep", f"lr_{rate:g}"))
            t = evaluation.evaluate_subjects(model, va, modalities=mods, scheme=scheme,
                                             views=[FLAGS.view], distances=False, desc="validate")
            return {"val_mean_dice": float(t["dice"].mean())}

        rate, sweep = lr_sweep(trial, rates, metric="val_mean_dice", mode="max",
                               out_csv=outs["lr_sweep.csv"])
        print(f"LR sweep: best rate {rate:g} (val mean Dice "
              f"{sweep.loc[sweep['best'], 'val_mean_dice'].iloc[0]:.4f})")
    else:
        rate = float(FLAGS.learning_rate)
        evaluation.write_results(pd.DataFrame([{"learning_rate": rate, "val_mean_dice": np.nan,
                                                "best": True}]), outs["lr_sweep.csv"])
    subjects = list(df["subject"])[: FLAGS.folds or len(df)]
    tables, cm = [], np.zeros((k, k), np.int64)
    for i, s in enumerate(subjects):
        test = df[df["subject"] == s]
        train = df[df["subject"] != s].reset_index(drop=True)
        train.attrs.update(df.attrs)
        test.attrs.update(df.attrs)
        print(f"fold {i + 1}/{len(subjects)}: leave out {s}")
        model = finetune(train, rate, os.path.join(out, f"fold_{s}"))
        t, preds = evaluation.evaluate_subjects(model, test, modalities=mods, scheme=scheme,
                                                views=[FLAGS.view], distances=FLAGS.distances,
                                                desc=f"evaluate {s}", return_predictions=True)
        cm += confusion_matrix(preds[s]["reference"], preds[s]["none"], num_classes=k)
        tables.append(t.assign(fold=i + 1, learning_rate=rate))
    table = pd.concat(tables, ignore_index=True)
    evaluation.write_results(table, outs["results.csv"])
    per_label = table.groupby(["label", "name"])[["dice", "precision"]].agg(["mean", "std"])
    per_label.columns = [f"{a}_{b}" for a, b in per_label.columns]
    per_label = per_label.reset_index()
    evaluation.write_results(per_label, outs["per_label.csv"])
    evaluation.write_results(pd.DataFrame(cm, index=names, columns=names).rename_axis("reference")
                             .reset_index(), outs["confusion_matrix.csv"])
    _confusion_png(cm, names, outs["confusion_matrix.png"],
                   f"QuickNAT fine-tuned ({FLAGS.view}), {len(subjects)} LOO fold(s)")
    evaluation.print_summary(f"two-stage fine-tuning, lr {rate:g}, leave-one-out over "
                             f"{len(subjects)} subject(s): per-label Dice / precision", per_label)
    print(f"results: {outs['results.csv']}; confusion matrix: {outs['confusion_matrix.png']}")
    print(f"mean Dice: {table['dice'].mean():.4f}")


if __name__ == "__main__":
    cli.run(main)
