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

Baselines (docs/papers_002_003_004.md, "Label budgets: the baselines"):

* held-out subjects (``val``, ``test``): the intensity and atlas baselines fitted once on the
  ``train`` subjects' full label maps (``tfneuro.evaluation.split_baselines``), scored like the
  models (background included). They see every label of the training subjects, as the Full
  model does; a budget model sees a third of each unit's slices, so for the budget rows this
  baseline is the stricter comparison;
* the training subjects' unlabelled slices (split ``unlabelled``): each budget model against
  the nearest labelled slice (``tfneuro.evaluation.unlabelled_slice_tables``). Per scan, the
  labelled voxels are the union of its units' slices; the baseline copies the nearest of them
  into every other voxel; model and baseline are scored on the same voxels: unlabelled and
  inside the bounding box of the scan's reference foreground. Both have seen exactly the same
  labels, so this is the fair question a budget raises: does the network fill in the slices
  nobody labelled better than copying the labelled ones?

Output: ``OUT/results.csv`` (condition, split, subject, model or baseline, class incl.
background, Dice, precision, HD95, MSD; ``scored_voxels`` on the unlabelled rows),
``OUT/table3.csv`` (rows Random/Sagittal/Coronal/Axial/Full and the baselines, columns mean DSC
and mean DSC without background on the validation and test sets, and for the budget rows the
mean DSC on the unlabelled slices beside the nearest-labelled-slice baseline's) and a summary
with the skill lines.
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
UNLABELLED = "unlabelled"  # split name of the training subjects' unlabelled slices


def budget_cohort(train_df, allocation, fraction, seed):
    """The units of one budget run as a cohort (``subject#r<repeat>`` ids, the scan's id in
    ``scan``) and its weights function ``weights(row, y)``."""
    import pandas as pd

    from tfneuro.data.budget import allocate_budget, budget_weights

    units = allocate_budget(list(train_df["subject"]), len(train_df), fraction, seed=seed)
    by_id = train_df.set_index("subject")
    rows = []
    for s, rep in units:
        r = by_id.loc[s].to_dict()
        rows.append({"subject": f"{s}#r{rep}", "scan": s, **r})
    df = pd.DataFrame(rows)
    df.attrs.update(train_df.attrs)

    def weights(row, y):
        return budget_weights(y, allocation, fraction, seed=seed, key=row["subject"])

    return df, weights


def _train(name, units, weights, epochs, k, mods, patch, strategy, config, seed, out):
    from tfneuro.training.loop import fit

    steps = training.patch_steps(len(units), FLAGS.patches_per_volume, FLAGS.batch_size)
    run_dir = os.path.join(out, name)
    print(f"[{name}] {len(units)} training unit(s), {epochs} epochs; "
          f"{training.resume_note(run_dir, FLAGS.resume)}")
    model = training.build_segmentation_3d(
        FLAGS.model, k, len(mods), base_filters=FLAGS.base_filters, depth=FLAGS.depth,
        steps_per_epoch=steps, epochs=epochs, learning_rate=FLAGS.learning_rate,
        strategy=strategy, compile_kwargs=config.compile_kwargs())
    data = training.patch_train_fn(units, patch_size=patch,
                                   patches_per_volume=FLAGS.patches_per_volume, modalities=mods,
                                   scheme=FLAGS.label_scheme, batch_size=FLAGS.batch_size,
                                   seed=seed, weights=weights)
    fit(model, data, epochs=epochs, out_dir=run_dir, resume=FLAGS.resume, seed=seed,
        steps_per_epoch=steps, tensorboard=FLAGS.tensorboard, strategy=strategy)
    return model


def table3(table, conditions):
    """Paper 002 Table 3's layout: mean DSC (with and without background) per condition and
    split, the baselines' rows, and the unlabelled-slice comparison of the budget rows."""
    import pandas as pd

    rows = []
    for name, units, _, epochs in conditions:
        rows.append(({"condition": "Full" if name == "full" else name.capitalize(),
                      "epochs": epochs, "units": len(units)},
                     (table["condition"] == name) & (table["model"] == FLAGS.model)))
    for base in table.loc[table["condition"].isna(), "model"].unique():
        rows.append(({"condition": base}, table["model"] == base))
    out = []
    for row, sel in rows:
        for split in [s for s in table["split"].unique() if s != UNLABELLED]:
            t = table[sel & (table["split"] == split)]
            row[f"{split}_mean_dsc"] = float(t["dice"].mean())
            row[f"{split}_mean_dsc_no_bg"] = float(t.loc[t["label"] != 0, "dice"].mean())
        hidden = table[(table["split"] == UNLABELLED) & sel]
        if not hidden.empty:
            near = table[(table["split"] == UNLABELLED)
                         & (table["model"] == evaluation.NEAREST_SLICE)
                         & (table["condition"] == hidden["condition"].iloc[0])]
            row.update(unlabelled_dsc=float(hidden["dice"].mean()),
                       nearest_slice_dsc=float(near["dice"].mean()))
        out.append(row)
    return pd.DataFrame(out).astype({"epochs": "Int64", "units": "Int64"})


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
    from tfneuro.io.labels import get_scheme

    scheme = FLAGS.label_scheme
    k = get_scheme(scheme).num_classes
    train_df, evals = cohorts.train_and_eval_splits(df)
    outs = {"results.csv": os.path.join(out, "results.csv"),
            "table3.csv": os.path.join(out, "table3.csv")}
    checks.check_outputs(outs, cohorts.cohort_files(df))

    import pandas as pd

    from tfneuro.training.runtime import setup_runtime

    strategy = setup_runtime(config)
    conditions = [(a, *budget_cohort(train_df, a, FLAGS.fraction, seed), FLAGS.epochs)
                  for a in FLAGS.allocations]
    conditions.append(("full", train_df, None, FLAGS.full_epochs))
    score = dict(modalities=mods, scheme=scheme, labels=list(range(k)))
    tables = []
    for name, units, weights, epochs in conditions:
        model = _train(name, units, weights, epochs, k, mods, patch, strategy, config, seed, out)
        tables.append(evaluation.evaluate_splits(
            model, evals, name=FLAGS.model, window=patch, distances=FLAGS.distances,
            desc=f"evaluate {name}", **score).assign(condition=name))
        if weights is not None:
            tables.append(evaluation.unlabelled_slice_tables(
                model, units, weights, name=FLAGS.model, group_column="scan", window=patch,
                desc=f"unlabelled slices {name}", **score).assign(condition=name,
                                                                  split=UNLABELLED))
    tables.append(evaluation.split_baselines(train_df, evals, distances=FLAGS.distances,
                                             **score))
    table = pd.concat(tables, ignore_index=True)
    evaluation.write_results(table, outs["results.csv"])
    summary = table3(table, conditions)
    evaluation.write_results(summary, outs["table3.csv"])
    evaluation.print_summary(f"label budgets ({FLAGS.fraction:.3g} of the slices) vs full labels "
                             "(paper 002 Table 3 layout; DSC averaged over subjects and classes)",
                             summary)
    for name, *_ in conditions:
        for split in [*evals, UNLABELLED] if name != "full" else evals:
            line = evaluation.skill_summary(table[table["split"] == split], FLAGS.model,
                                            where={"condition": name})
            print(f"{name}, {split}: {line}")
    print(f"results: {outs['results.csv']}, {outs['table3.csv']}")


if __name__ == "__main__":
    cli.run(main)
