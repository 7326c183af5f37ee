"""Paper 002's label budgets: label a third of the 2D slices of more scans, along sagittal,
coronal, axial or random axes, against fully labelled scans (a table like its Table 3).

    python experiments/label_budget.py --out runs/budget [--cohort cohort.csv]

Paper 002 (002_7b615860cc51c69e.txt, "Label Budgeting Experiments", section 3 and Table 3):
"the proportion of selected 2D slices per 3D brain was 33%, i.e., two thirds of the slices
along the respective axis were hidden during training (60 epochs). To enable a fair
comparison, ... the number of data units in the training set was tripled"; the baseline is
trained on fully labelled scans for 20 epochs.

Here (``tfneuro.data.budget``): the full-label baseline trains on the ``train`` split's
``n`` subjects; each budget condition trains on ``round(n / fraction)`` units
(``allocate_budget``: distinct subjects first, then repeats with their own slices), every unit
with voxel weight 1 on its labelled slices and 0 elsewhere (``budget_weights``), so the loss
ignores hidden slices. Models: ``res_unet3d`` + deep supervision + Dice/CE, recipe
``paper002``, class-balanced patches; evaluated on the ``val`` and ``test`` splits.

Output: ``OUT/results.csv`` (condition, split, subject, class incl. background, Dice,
precision, HD95, MSD), ``OUT/table3.csv`` (rows Random/Sagittal/Coronal/Axial/Full, columns
mean DSC and mean DSC without background on the validation and test sets) and a summary.
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
aflags.define_training_flags(epochs=60, batch_size=2, learning_rate=1e-2, seed=0)
flags.DEFINE_integer("full_epochs", 20, "Epochs of the fully labelled baseline (paper 002: 20; "
                     "--epochs is the budget runs' 60).", lower_bound=1)
flags.DEFINE_list("allocations", ["random", "sagittal", "coronal", "axial"],
                  "Budget allocations to run (paper 002's four).")
flags.DEFINE_float("fraction", 1.0 / 3.0, "Share of slices labelled per volume (paper 002: 1/3).")
flags.DEFINE_string("model", "res_unet3d", "Registered 3D segmentation model.")
aflags.define_unet3d_flags()

ALLOCATIONS = ("random", "sagittal", "coronal", "axial")


def budget_cohort(train_df, allocation, fraction, seed):
    """The units of one budget run as a cohort (``subject#r<repeat>`` ids) and its weights
    function ``weights(row, y)``."""
    import pandas as pd

    from tfneuro.data.budget import allocate_budget, budget_weights

    units = allocate_budget(list(train_df["subject"]), len(train_df), fraction, seed=seed)
    by_id = train_df.set_index("subject")
    rows = []
    for s, rep in units:
        r = by_id.loc[s].to_dict()
        rows.append({"subject": f"{s}#r{rep}", **r})
    df = pd.DataFrame(rows)
    df.attrs.update(train_df.attrs)

    def weights(row, y):
        return budget_weights(y, allocation, fraction, seed=seed, key=row["subject"])

    return df, weights


def main(argv):
    if len(argv) > 1:
        raise InputError("command line", f"unexpected arguments {argv[1:]}")
    cli.quiet_logs()
    bad = [a for a in FLAGS.allocations if a not in ALLOCATIONS]
    if bad:
        raise InputError("--allocations", f"{FLAGS.allocations}: choose from {list(ALLOCATIONS)}")
    if not 0 < FLAGS.fraction <= 1:
        raise InputError("--fraction", f"must be in (0, 1], got {FLAGS.fraction}")
    mods = tuple(FLAGS.modalities)
    checks.check_model_name(FLAGS.model, modalities=mods, tasks=("segmentation",), ndim=3)
    patch = aflags.patch_size_from_flags()
    config = aflags.config_from_flags()
    seed = aflags.seed_value()
    out = checks.check_out_dir(FLAGS.out, [FLAGS.cohort] if FLAGS.cohort else [])
    df = aflags.cohort_from_flags(out_dir=out, modalities=mods, label="label", min_subjects=2)
    from tfneuro.data.cohort import select_split
    from tfneuro.io.labels import get_scheme

    scheme = FLAGS.label_scheme
    k = get_scheme(scheme).num_classes
    train_df = select_split(df, "train")
    evals = {s: select_split(df, s) for s in ("val", "test")}
    evals = {s: d for s, d in evals.items() if not d.empty}
    src = df.attrs.get("source", "cohort")
    if train_df.empty or not evals:
        raise InputError(src, "needs train subjects and val or test subjects")
    outs = {"results.csv": os.path.join(out, "results.csv"),
            "table3.csv": os.path.join(out, "table3.csv")}
    checks.check_outputs(outs, cohorts.cohort_files(df))

    import pandas as pd

    from tfneuro.training.loop import fit
    from tfneuro.training.runtime import setup_runtime

    strategy = setup_runtime(config)
    conditions = [(a, *budget_cohort(train_df, a, FLAGS.fraction, seed), FLAGS.epochs)
                  for a in FLAGS.allocations]
    conditions.append(("full", train_df, None, FLAGS.full_epochs))
    tables, rows = [], []
    for name, units, weights, epochs in conditions:
        steps = max(1, -(-len(units) * FLAGS.patches_per_volume // FLAGS.batch_size))
        run_dir = os.path.join(out, name)
        print(f"[{name}] {len(units)} training unit(s), {epochs} epochs; "
              f"{training.resume_note(run_dir, FLAGS.resume)}")
        model = training.build_segmentation_3d(FLAGS.model, k, len(mods), base_filters=FLAGS.base_filters,
                                               depth=FLAGS.depth, steps_per_epoch=steps, epochs=epochs,
                                               learning_rate=FLAGS.learning_rate, strategy=strategy,
                                               compile_kwargs=config.compile_kwargs())
        data = training.patch_train_fn(units, patch_size=patch, patches_per_volume=FLAGS.patches_per_volume,
                                       modalities=mods, scheme=scheme, batch_size=FLAGS.batch_size,
                                       seed=seed, weights=weights)
        fit(model, data, epochs=epochs, out_dir=run_dir, resume=FLAGS.resume, seed=seed,
            steps_per_epoch=steps, tensorboard=FLAGS.tensorboard, strategy=strategy)
        row = {"condition": "Full" if name == "full" else name.capitalize(), "epochs": epochs,
               "units": len(units)}
        for split, edf in evals.items():
            t = evaluation.evaluate_subjects(model, edf, modalities=mods, scheme=scheme, window=patch,
                                             labels=list(range(k)), distances=FLAGS.distances,
                                             desc=f"evaluate {name} {split}")
            tables.append(t.assign(condition=name, split=split))
            row[f"{split}_mean_dsc"] = float(t["dice"].mean())
            row[f"{split}_mean_dsc_no_bg"] = float(t.loc[t["label"] != 0, "dice"].mean())
        rows.append(row)
    evaluation.write_results(pd.concat(tables, ignore_index=True), outs["results.csv"])
    table = pd.DataFrame(rows)
    evaluation.write_results(table, outs["table3.csv"])
    evaluation.print_summary(f"label budgets ({FLAGS.fraction:.3g} of the slices) vs full labels "
                             "(paper 002 Table 3 layout; DSC averaged over subjects and classes)", table)
    print(f"results: {outs['results.csv']}, {outs['table3.csv']}")


if __name__ == "__main__":
    cli.run(main)
