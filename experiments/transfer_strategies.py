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
``--epochs`` epochs (``none`` trains nothing). Output: ``OUT/results.csv`` (strategy, subject,
class, Dice, precision, HD95, MSD), ``OUT/strategies.csv`` (the table: mean Dice per strategy
with trainable parameter counts) and a printed summary.
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


def main(argv):
    if len(argv) > 1:
        raise InputError("command line", f"unexpected arguments {argv[1:]}")
    cli.quiet_logs()
    bad = [s for s in FLAGS.strategies if s not in STRATEGIES]
    if bad or not FLAGS.strategies:
        raise InputError("--strategies", f"{FLAGS.strategies}: choose from {list(STRATEGIES)}")
    mods = tuple(FLAGS.modalities)
    checks.check_model_name(FLAGS.model, modalities=mods, tasks=("segmentation",), ndim=3)
    patch = aflags.patch_size_from_flags()
    if FLAGS.pretrained:
        if not os.path.isfile(FLAGS.pretrained):
            raise InputError(FLAGS.pretrained, "pre-trained model not found")
        if not FLAGS.pretrained.endswith(".keras"):
            raise InputError("--pretrained", f"{FLAGS.pretrained}: expected a .keras file")
    config = aflags.config_from_flags()
    seed = aflags.seed_value()
    out = checks.check_out_dir(FLAGS.out, [p for p in (FLAGS.cohort, FLAGS.pretrained) if p])
    df = aflags.cohort_from_flags(out_dir=out, modalities=mods, label="label", require_age=True,
                                  min_subjects=3)
    from tfneuro.io.labels import get_scheme

    scheme = FLAGS.label_scheme
    k = get_scheme(scheme).num_classes
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
    files = cohorts.cohort_files(df) + ([FLAGS.pretrained] if FLAGS.pretrained else [])
    outs = {"results.csv": os.path.join(out, "results.csv"),
            "strategies.csv": os.path.join(out, "strategies.csv"),
            "source.keras": os.path.join(out, "source.keras")}
    checks.check_outputs(outs, files)
    if FLAGS.pretrained:

        pre = training.load_keras_model(FLAGS.pretrained, unsafe=FLAGS.unsafe)
        checks.check_model_classes(pre, k, FLAGS.pretrained, scheme)
        checks.check_model_channels(pre, len(mods), "--modalities")

    import pandas as pd

    from tfneuro.training.loop import fit
    from tfneuro.training.runtime import setup_runtime
    from tfneuro.training.transfer import apply_strategy

    strategy = setup_runtime(config)

    def steps(n):
        return max(1, -(-n * FLAGS.patches_per_volume // FLAGS.batch_size))

    def data(part):
        return training.patch_train_fn(part, patch_size=patch, patches_per_volume=FLAGS.patches_per_volume,
                                       modalities=mods, scheme=scheme, batch_size=FLAGS.batch_size,
                                       seed=seed)

    pretrained = FLAGS.pretrained
    if not pretrained:
        run_dir = os.path.join(out, "source")
        print(f"source model: {len(source)} subjects older than {age_split:g} months; "
              f"{training.resume_note(run_dir, FLAGS.resume)}")
        model = training.build_segmentation_3d(FLAGS.model, k, len(mods), base_filters=FLAGS.base_filters,
                                               depth=FLAGS.depth, steps_per_epoch=steps(len(source)),
                                               epochs=FLAGS.source_epochs,
                                               learning_rate=FLAGS.learning_rate, strategy=strategy,
                                               compile_kwargs=config.compile_kwargs())
        fit(model, data(source), epochs=FLAGS.source_epochs, out_dir=run_dir,
            resume=FLAGS.resume, seed=seed, steps_per_epoch=steps(len(source)),
            tensorboard=FLAGS.tensorboard, strategy=strategy)
        pretrained = training.save_keras_model(model, outs["source.keras"])


    tables, rows = [], []
    for name in FLAGS.strategies:
        with strategy.scope():
            model = training.load_keras_model(pretrained, unsafe=FLAGS.unsafe)
            model = apply_strategy(model, name)
            training.compile_segmentation(model, steps_per_epoch=steps(len(t_train)), epochs=FLAGS.epochs,
                                          learning_rate=FLAGS.learning_rate, compile_kwargs=config.compile_kwargs())
        trainable = _count_trainable(model)
        if name != "none":
            run_dir = os.path.join(out, name)
            print(f"[{name}] fine-tuning {trainable:,} parameters on {len(t_train)} target "
                  f"subject(s); {training.resume_note(run_dir, FLAGS.resume)}")
            fit(model, data(t_train), epochs=FLAGS.epochs, out_dir=run_dir, resume=FLAGS.resume,
                seed=seed, steps_per_epoch=steps(len(t_train)), tensorboard=FLAGS.tensorboard,
                strategy=strategy)
        t = evaluation.evaluate_subjects(model, t_eval, modalities=mods, scheme=scheme, window=patch,
                                         distances=FLAGS.distances, desc=f"evaluate {name}")
        tables.append(t.assign(strategy=name))
        rows.append({"strategy": name, "trainable_params": trainable,
                     "epochs": 0 if name == "none" else FLAGS.epochs,
                     "mean_dice": float(t["dice"].mean()),
                     **{f"dice_{n}": float(v) for n, v in t.groupby("name", sort=False)["dice"].mean().items()}})
    evaluation.write_results(pd.concat(tables, ignore_index=True), outs["results.csv"])
    table = pd.DataFrame(rows)
    evaluation.write_results(table, outs["strategies.csv"])
    evaluation.print_summary(f"transfer strategies: source > {age_split:g} months, target <= "
                             f"{age_split:g} months ({len(t_train)} train, {len(t_eval)} evaluated); "
                             "mean Dice over foreground classes", table)
    print(f"results: {outs['results.csv']}, {outs['strategies.csv']}")


if __name__ == "__main__":
    cli.run(main)
