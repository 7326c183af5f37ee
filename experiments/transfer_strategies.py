"""Paper 002's transfer-learning strategies: adapt a model pre-trained on older infants to
younger ones, fine-tuning more or fewer blocks.

    python experiments/transfer_strategies.py --out runs/transfer [--cohort cohort.csv] \
        [--pretrained source.keras]

Paper 002 (002_7b615860cc51c69e.txt, "Transfer Learning Experiments" and section 3) compares
six ways to adapt "a baseline model pre-trained on a source dataset of older infant brains to
the task of segmenting preterm infant brain MRI": ``none`` (use it as is), ``shallow``
(bottleneck and adjacent blocks), ``medium`` (+2 blocks), ``deep`` (+4 blocks), ``full``
(every layer from the pre-trained weights) and ``scratch`` (same architecture, random
weights). Which layers each trains: ``tfneuro.training.transfer``.

Data: subjects older than ``--age_split`` months (default: the cohort's median age) form the
SOURCE set; younger ones the TARGET set. Without ``--pretrained`` a source model is trained
first on every source subject (``OUT/source/``, ``OUT/source.keras``). Target subjects in the
``train`` split fine-tune; target ``val``/``test`` subjects are evaluated.

Model and recipe: ``res_unet3d`` with deep supervision and Dice+CE (paper 002), SGD Nesterov
0.99 with poly decay (recipe ``paper002``), class-balanced 96^3 patches. Each strategy trains
``--epochs`` epochs (``none`` trains nothing).

Baselines: the intensity and atlas baselines (``tfneuro.evaluation.baseline_tables``) fitted on
the target ``train`` subjects (those every fine-tuning strategy trains on, the only ones
``scratch`` sees, in the age range of the evaluated subjects) and scored on the same target
subjects; their rows carry ``baseline: <name>`` in the ``strategy`` column.

Output: ``OUT/results.csv`` (strategy or baseline, subject, class, Dice, precision, HD95,
MSD), ``OUT/strategies.csv`` (the table: mean Dice per strategy with trainable parameter
counts, and the baselines' rows) and a printed summary with each strategy's skill over the
best baseline.
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
aflags.define_training_flags(epochs=20, batch_size=2, learning_rate=1e-2, seed=0)
flags.DEFINE_string("model", "res_unet3d", "Registered 3D segmentation model (res_unet3d, unet3d).")
flags.DEFINE_string("pretrained", None, "Source model (.keras); default: train one on the "
                    "source subjects first.")
flags.DEFINE_bool("unsafe", False, "Allow .keras models with arbitrary Python (Lambda layers).")
flags.DEFINE_integer("source_epochs", 20, "Epochs of the source model when no --pretrained.",
                     lower_bound=1)
flags.DEFINE_list("strategies", ["none", "shallow", "medium", "deep", "full", "scratch"],
                  "Strategies to compare (paper 002's six).")
flags.DEFINE_float("age_split", None, "Source = older than this (months); target = the rest. "
                   "Default: the median age.")
aflags.define_unet3d_flags()

STRATEGIES = ("none", "shallow", "medium", "deep", "full", "scratch")


def _count_trainable(model):
    import numpy as np

    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def _check_flags():
    bad = [s for s in FLAGS.strategies if s not in STRATEGIES]
    if bad or not FLAGS.strategies:
        raise InputError("--strategies", f"{FLAGS.strategies}: choose from {list(STRATEGIES)}")
    mods = tuple(FLAGS.modalities)
    checks.check_model_name(FLAGS.model, modalities=mods, tasks=("segmentation",), ndim=3)
    if FLAGS.pretrained:
        if not os.path.isfile(FLAGS.pretrained):
            raise InputError(FLAGS.pretrained, "pre-trained model not found")
        if not FLAGS.pretrained.endswith(".keras"):
            raise InputError("--pretrained", f"{FLAGS.pretrained}: expected a .keras file")
    return mods


def _split_by_age(df):
    """``(age split, source, target train, target val/test)`` (checked before any work)."""
    age_split = FLAGS.age_split if FLAGS.age_split is not None else float(df["age_months"].median())
    source = df[df["age_months"] > age_split].reset_index(drop=True)
    target = df[df["age_months"] <= age_split].reset_index(drop=True)
    t_train = target[target["split"] == "train"].reset_index(drop=True)
    t_eval = target[target["split"] != "train"].reset_index(drop=True)
    for part in (source, target, t_train, t_eval):
        part.attrs.update(df.attrs)
    src = df.attrs.get("source", "cohort")
    if not FLAGS.pretrained and source.empty:
        raise InputError("--age_split", f"no source subjects older than {age_split:g} months")
    if t_train.empty or t_eval.empty:
        raise InputError(src, f"target subjects (age <= {age_split:g} months) need both train and "
                              f"val/test splits; found {len(t_train)} train, {len(t_eval)} val/test")
    return age_split, source, t_train, t_eval


def _steps(n):
    return training.patch_steps(n, FLAGS.patches_per_volume, FLAGS.batch_size)


def _data(part, mods, patch, seed):
    return training.patch_train_fn(part, patch_size=patch,
                                   patches_per_volume=FLAGS.patches_per_volume, modalities=mods,
                                   scheme=FLAGS.label_scheme, batch_size=FLAGS.batch_size,
                                   seed=seed)


def _source_model(source, age_split, k, mods, patch, strategy, config, seed, out, path):
    """Train the source model on every source subject; return the saved .keras path."""
    from tfneuro.training.loop import fit

    run_dir = os.path.join(out, "source")
    print(f"source model: {len(source)} subjects older than {age_split:g} months; "
          f"{training.resume_note(run_dir, FLAGS.resume)}")
    model = training.build_segmentation_3d(
        FLAGS.model, k, len(mods), base_filters=FLAGS.base_filters, depth=FLAGS.depth,
        steps_per_epoch=_steps(len(source)), epochs=FLAGS.source_epochs,
        learning_rate=FLAGS.learning_rate, strategy=strategy,
        compile_kwargs=config.compile_kwargs())
    fit(model, _data(source, mods, patch, seed), epochs=FLAGS.source_epochs, out_dir=run_dir,
        resume=FLAGS.resume, seed=seed, steps_per_epoch=_steps(len(source)),
        tensorboard=FLAGS.tensorboard, strategy=strategy)
    return training.save_keras_model(model, path)


def _adapt(name, pretrained, t_train, mods, patch, strategy, config, seed, out):
    """Load the source model, apply strategy ``name`` and fine-tune it on ``t_train``."""
    from tfneuro.training.loop import fit
    from tfneuro.training.transfer import apply_strategy

    with strategy.scope():
        model = apply_strategy(training.load_keras_model(pretrained, unsafe=FLAGS.unsafe), name)
        training.compile_segmentation(model, steps_per_epoch=_steps(len(t_train)),
                                      epochs=FLAGS.epochs, learning_rate=FLAGS.learning_rate,
                                      compile_kwargs=config.compile_kwargs())
    if name != "none":
        run_dir = os.path.join(out, name)
        print(f"[{name}] fine-tuning {_count_trainable(model):,} parameters on {len(t_train)} "
              f"target subject(s); {training.resume_note(run_dir, FLAGS.resume)}")
        fit(model, _data(t_train, mods, patch, seed), epochs=FLAGS.epochs, out_dir=run_dir,
            resume=FLAGS.resume, seed=seed, steps_per_epoch=_steps(len(t_train)),
            tensorboard=FLAGS.tensorboard, strategy=strategy)
    return model


def _row(name, table, trainable=None, epochs=None):
    mine = table[table["strategy"] == name]
    return {"strategy": name, "trainable_params": trainable, "epochs": epochs,
            "mean_dice": float(mine["dice"].mean()),
            **{f"dice_{n}": float(v) for n, v in mine.groupby("name", sort=False)["dice"].mean().items()}}


def main(argv):
    if len(argv) > 1:
        raise InputError("command line", f"unexpected arguments {argv[1:]}")
    cli.quiet_logs()
    mods = _check_flags()
    patch = aflags.patch_size_from_flags()
    config = aflags.config_from_flags()
    seed = aflags.seed_value()
    out = checks.check_out_dir(FLAGS.out, [p for p in (FLAGS.cohort, FLAGS.pretrained) if p])
    df = aflags.cohort_from_flags(out_dir=out, modalities=mods, label="label", require_age=True,
                                  min_subjects=3)
    from tfneuro.io.labels import get_scheme

    scheme = FLAGS.label_scheme
    k = get_scheme(scheme).num_classes
    age_split, source, t_train, t_eval = _split_by_age(df)
    files = cohorts.cohort_files(df) + ([FLAGS.pretrained] if FLAGS.pretrained else [])
    outs = {n: os.path.join(out, n) for n in ("results.csv", "strategies.csv", "source.keras")}
    checks.check_outputs(outs, files)
    if FLAGS.pretrained:
        pre = training.load_keras_model(FLAGS.pretrained, unsafe=FLAGS.unsafe)
        checks.check_model_classes(pre, k, FLAGS.pretrained, scheme)
        checks.check_model_channels(pre, len(mods), "--modalities")

    import pandas as pd

    from tfneuro.training.runtime import setup_runtime

    strategy = setup_runtime(config)
    pretrained = FLAGS.pretrained or _source_model(source, age_split, k, mods, patch, strategy,
                                                   config, seed, out, outs["source.keras"])
    score = dict(modalities=mods, scheme=scheme, distances=FLAGS.distances)
    tables, rows = [], []
    for name in FLAGS.strategies:
        model = _adapt(name, pretrained, t_train, mods, patch, strategy, config, seed, out)
        t = evaluation.evaluate_subjects(model, t_eval, window=patch, desc=f"evaluate {name}",
                                         **score)
        tables.append(t.assign(strategy=name))
        rows.append(_row(name, tables[-1], _count_trainable(model),
                         0 if name == "none" else FLAGS.epochs))
    base = evaluation.baseline_tables(t_train, t_eval, model_column="strategy", **score)
    table = pd.concat([*tables, base], ignore_index=True)
    evaluation.write_results(table, outs["results.csv"])
    rows += [_row(b, base) for b in base["strategy"].unique()]
    summary = pd.DataFrame(rows).astype({"trainable_params": "Int64", "epochs": "Int64"})
    evaluation.write_results(summary, outs["strategies.csv"])
    evaluation.print_summary(f"transfer strategies: source > {age_split:g} months, target <= "
                             f"{age_split:g} months ({len(t_train)} train, {len(t_eval)} evaluated); "
                             "mean Dice over foreground classes", summary)
    for name in FLAGS.strategies:
        print(f"{name}: " + evaluation.skill_summary(table, name, model_column="strategy"))
    print(f"results: {outs['results.csv']}, {outs['strategies.csv']}")


if __name__ == "__main__":
    cli.run(main)
