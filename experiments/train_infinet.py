"""InfiNet (paper 003): two encoder arms (T1, T2), Generalized Dice Loss, one network per view,
view aggregation, an optional bootstrap ensemble, and the paper's U-Net baselines.

    python experiments/train_infinet.py --out runs/infinet                     # synthetic cohort
    python experiments/train_infinet.py --out runs/infinet --bootstrap 5       # ensemble
    python experiments/train_infinet.py --out runs/unet1 --model unet2d --arms 1 --views coronal
    python experiments/train_infinet.py --out runs/unet2 --model unet2d --arms 2 --views coronal

What it does (paper 003 section 2 and 3):

1. validates flags, the cohort (T1, T2 and labels present, readable, on one grid, label values in
   ``--label_scheme``) and the outputs before any work;
2. for each view in ``--views`` (default axial, coronal, sagittal: "three independent networks
   dedicated to segment along three different principal axes"), trains a network on the 2D
   slices of the ``train`` subjects (``tfneuro.data.slice_dataset``; InfiNet gets ``(t1, t2)`` as
   its two arms). InfiNet: Generalized Dice Loss with the class weights "determined by the
   inverse square of their frequencies in the training data"; U-Net baselines: "median-frequency
   balanced cross-entropy". Optimiser: recipe ``paper003`` (SGD, momentum 0.95, rate 0.01
   decreased ten-fold every 10 epochs, batch 8);
3. ``--bootstrap N``: "we trained ensemble of InfiNets for each view by bootstrapping from the 10
   training volumes": N networks per view, each on a resample (with replacement) of the training
   subjects; their probabilities are averaged;
4. predicts every ``test`` subject per view (``tfneuro.inference.predict_slices``) and aggregates
   the views by averaging the probability maps ("aggregated through averaging"); the per-view
   and aggregated predictions are scored by ``tfneuro.evaluation.evaluate_splits`` (one row per
   subject, method and class);
5. fits the baselines on the same ``train`` subjects (per-voxel intensity classifier on the
   z-scored T1 and T2, and the atlas of the training label maps; ``tfneuro.evaluation.
   baselines``) and scores them on the same test subjects;
6. writes ``OUT/results.csv`` (per test subject, method = each view and ``aggregated``, per class:
   Dice, precision; HD95/MSD with ``--distances``; the baselines' rows beside them, named in the
   ``model`` column), the models ``OUT/<view>[_bNN]/model.keras``, and prints a table shaped like
   paper 003's Table 1 (mean Dice per class and method, with the baselines' rows) and the
   model's skill over the best baseline.

Paper 003 trains "until convergence"; the default 30 epochs (three learning-rate levels) is the
recipe's. Intensities are z-scored per volume (the paper does not say). Slices without any label
are not used for training (``--nodrop_empty`` keeps them). ``--steps_per_epoch`` beyond one pass
over the slices repeats them. InfiNet has two conv units per encoder block by default
(``--encoder_convs 2``: the reading of section 2.1 closest to the paper's 0.74 M parameters,
docs/infinet.md; ``--encoder_convs 1`` is the text as written).
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

MODELS = ("infinet", "unet2d")

FLAGS = flags.FLAGS
aflags.define_experiment_flags(synth_subjects=10, synth_spacing=2.0)
aflags.define_training_flags(epochs=30, batch_size=8, learning_rate=0.01, seed=0)
flags.DEFINE_string("model", "infinet", "infinet (paper 003) or unet2d (its U-Net baselines).")
flags.DEFINE_integer("arms", 1, "unet2d only: 1 = single arm (modalities stacked as channels), "
                     "2 = double arm (one encoder per modality).", lower_bound=1, upper_bound=2)
flags.DEFINE_list("modalities", ["t1", "t2"], "Cohort image columns (paper 003: T1 and T2).")
flags.DEFINE_list("views", ["axial", "coronal", "sagittal"], "Views to train, one network each; "
                  "aggregated by averaging.")
flags.DEFINE_integer("bootstrap", 0, "Train N networks per view on bootstrap resamples of the "
                     "training subjects and average them (0 = one network on all).",
                     lower_bound=0)
flags.DEFINE_integer("filters", 64, "Feature maps per convolution (paper 003: 64; U-Net: 64 at "
                     "the first level).", lower_bound=1)
flags.DEFINE_integer("depth", None, "Poolings (default: InfiNet 3, U-Net 4).", lower_bound=1)
flags.DEFINE_integer("encoder_convs", None, "InfiNet only: conv -> ReLU -> BN units per encoder "
                     "block (default 2, the reading closest to paper 003's 0.74 M parameters; 1 = "
                     "section 2.1 as written; docs/infinet.md).", lower_bound=1)
flags.DEFINE_enum("loss", "auto", ["auto", "gdl", "wce"], "auto: GDL for InfiNet, "
                  "median-frequency weighted cross-entropy for the U-Nets (paper 003).")
flags.DEFINE_boolean("drop_empty", True, "Train only on slices holding labels.")
flags.DEFINE_integer("steps_per_epoch", None, "Batches per epoch (default: one pass over the "
                     "slices; more repeats them).", lower_bound=1)
flags.DEFINE_boolean("distances", False, "Also compute HD95 and MSD (paper 003 reports Dice).")


def _check_flags():
    checks.check_views(FLAGS.views)
    mods = tuple(FLAGS.modalities)
    if len(set(mods)) != len(mods):
        raise InputError("--modalities", f"{list(mods)}: repeated column")
    checks.check_model_name(FLAGS.model, modalities=mods, tasks=("segmentation",))
    if FLAGS.model not in MODELS:
        raise InputError("--model", f"{FLAGS.model!r}: choose one of {', '.join(MODELS)}")
    if FLAGS.model == "unet2d" and FLAGS.arms == 2 and len(mods) != 2:
        raise InputError("--modalities", f"a double-arm unet2d takes 2 modalities (t1, t2), "
                                         f"got {len(mods)}")
    if FLAGS.model == "infinet" and FLAGS.arms != 1:
        raise InputError("--arms", "applies to unet2d only (InfiNet always has two arms)")
    if FLAGS.model != "infinet" and FLAGS.encoder_convs is not None:
        raise InputError("--encoder_convs", "applies to infinet only")
    return mods


def _two_arm():
    return FLAGS.model == "infinet" or FLAGS.arms == 2


def _model_label():
    return FLAGS.model if FLAGS.model == "infinet" else f"unet2d_{FLAGS.arms}arm"


def _resample(train, b, seed):
    """Bootstrap resample b of the training subjects (duplicates renamed ``<id>#k``)."""
    import numpy as np

    rng = np.random.default_rng(np.random.SeedSequence([seed, 3, b]))
    pick = train.iloc[rng.integers(0, len(train), len(train))].copy()
    counts: dict = {}
    names = []
    for s in pick["subject"]:
        counts[s] = counts.get(s, 0) + 1
        names.append(s if counts[s] == 1 else f"{s}#{counts[s]}")
    pick["subject"] = names
    return pick.reset_index(drop=True)


def _loss(train, num_classes, scheme):
    from tfneuro.data.pipeline import load_subject
    from tfneuro.losses import GeneralizedDiceLoss, WeightedCrossEntropy
    from tfneuro.losses.cross_entropy import class_frequencies, median_frequency_weights
    from tfneuro.losses.dice import inverse_square_frequency_weights

    kind = FLAGS.loss if FLAGS.loss != "auto" else ("gdl" if FLAGS.model == "infinet" else "wce")
    labels = [load_subject(r, modalities=(FLAGS.modalities[0],), scheme=scheme)[1]
              for r in train.to_dict("records")]
    if kind == "gdl":
        freq = class_frequencies(labels, num_classes)
        return GeneralizedDiceLoss(class_weights=inverse_square_frequency_weights(freq).tolist())
    return WeightedCrossEntropy(class_weights=median_frequency_weights(labels, num_classes).tolist())


def _build(num_classes, n_modalities):
    from tfneuro.models import get

    kwargs = {"num_classes": num_classes, "filters": FLAGS.filters}
    if FLAGS.depth:
        kwargs["depth"] = FLAGS.depth
    if FLAGS.encoder_convs:
        kwargs["encoder_convs"] = FLAGS.encoder_convs
    if FLAGS.model == "unet2d":
        kwargs.update(arms=FLAGS.arms,
                      input_shape=(None, None, 1 if FLAGS.arms == 2 else n_modalities))
    return get(FLAGS.model, **kwargs)


def _train_one(name, view, train, pad_to, num_classes, scheme, strategy, config, out):
    from tfneuro.data import slice_dataset
    from tfneuro.training import epoch_seed, fit, make_optimizer

    seed = aflags.seed_value(FLAGS)
    mods = tuple(FLAGS.modalities)

    def train_ds(epoch):
        return slice_dataset(train, axis=view, modalities=mods, label="label", scheme=scheme,
                             two_arm=_two_arm(), drop_empty=FLAGS.drop_empty, pad_to=pad_to,
                             batch_size=FLAGS.batch_size, seed=epoch_seed(seed, epoch))

    steps = FLAGS.steps_per_epoch or training.count_batches(train_ds(0))
    with strategy.scope():
        model = _build(num_classes, len(mods))
        model.compile(optimizer=make_optimizer("paper003", steps_per_epoch=steps,
                                               epochs=FLAGS.epochs,
                                               learning_rate=FLAGS.learning_rate),
                      loss=_loss(train, num_classes, scheme), **config.compile_kwargs())
    run_dir = os.path.join(out, name)
    print(f"[{name}] {training.resume_note(run_dir, FLAGS.resume)}, {steps} steps per epoch")
    data = training.repeating(train_ds) if FLAGS.steps_per_epoch else train_ds
    fit(model, data, epochs=FLAGS.epochs, out_dir=run_dir, resume=FLAGS.resume, seed=seed,
        steps_per_epoch=steps, strategy=strategy, tensorboard=FLAGS.tensorboard)
    training.save_keras_model(model, os.path.join(run_dir, "model.keras"), compiled=False)
    return model


def view_predictor(models: dict, views, n_models: int, num_classes: int):
    """``predict(x, row) -> {view: probabilities, ..., "aggregated": their mean}``: each view's
    bootstrap networks averaged, then the views averaged (paper 003 section 2.2: "aggregated
    through averaging"; no ``aggregated`` entry for a single view)."""
    import numpy as np

    from tfneuro.inference import predict_slices

    def predict(x, row):
        per_view = {}
        for view in views:
            acc = np.zeros(x.shape[:3] + (num_classes,), np.float32)
            for b in range(n_models):  # ensemble: mean of the bootstrap networks
                predict_slices(models[(view, b)], x, view, out=acc, weight=1.0 / n_models)
            per_view[view] = acc
        if len(per_view) > 1:
            per_view["aggregated"] = np.mean(list(per_view.values()), axis=0)
        return per_view

    return predict


def _summary(table, names, n_models, n_test):
    """Paper 003 Table 1's shape: mean Dice per class, one row per method and baseline."""
    rows = table["method"].fillna(table["model"]).rename("method")
    summary = table.assign(method=rows).pivot_table(index="method", columns="name", values="dice",
                                                    aggfunc="mean", sort=False)
    summary = summary[[n for n in names if n in summary.columns]].reset_index()
    evaluation.print_summary(f"{_model_label()} ({n_models} network(s) per view): mean Dice over "
                             f"{n_test} test subject(s)", summary)


def main(argv):
    if len(argv) > 1:
        raise InputError("command line", f"unexpected arguments {argv[1:]}")
    from tfneuro.io.labels import get_scheme

    out = checks.check_out_dir(FLAGS.out, inputs=[FLAGS.cohort] if FLAGS.cohort else [])
    mods = _check_flags()
    config = aflags.config_from_flags()
    df = aflags.cohort_from_flags(FLAGS, out_dir=out, modalities=mods, label="label",
                                  min_subjects=2)
    train, test = cohorts.require_splits(df, "train", "test")
    scheme = FLAGS.label_scheme
    names = list(get_scheme(scheme).names)
    n_models = max(1, FLAGS.bootstrap)
    runs = [(v, b) for v in FLAGS.views for b in range(n_models)]
    run_name = {(v, b): v if not FLAGS.bootstrap else f"{v}_b{b:02d}" for v, b in runs}
    results_csv = os.path.join(out, "results.csv")
    checks.check_outputs({"results.csv": results_csv,
                          **{run_name[r]: os.path.join(out, run_name[r], "model.keras")
                             for r in runs}}, cohorts.cohort_files(df))

    from tfneuro.training import setup_runtime

    strategy = setup_runtime(config)
    pad_to = cohorts.cohort_shape(df, mods[0], multiple=16)
    seed = aflags.seed_value(FLAGS)
    models = {}
    for view, b in runs:
        subjects = _resample(train, b, seed) if FLAGS.bootstrap else train
        models[(view, b)] = _train_one(run_name[(view, b)], view, subjects, pad_to, len(names),
                                       scheme, strategy, config, out)
    table = evaluation.evaluate_splits(
        view_predictor(models, FLAGS.views, n_models, len(names)), {"test": test},
        name=_model_label(), train_df=train, modalities=mods, scheme=scheme,
        variant_column="method", distances=FLAGS.distances)
    mine = table["model"] == _model_label()
    table.insert(4, "ensemble", table["model"].where(~mine, n_models).where(mine).astype("Int64"))
    evaluation.write_results(table, results_csv)
    _summary(table, names, n_models, len(test))
    final = "aggregated" if len(FLAGS.views) > 1 else FLAGS.views[0]
    print(evaluation.skill_summary(table, _model_label(), where={"method": final}))
    print(f"results: {results_csv}")
    print(f"mean Dice ({final}): {table[mine & (table['method'] == final)]['dice'].mean():.4f}")


if __name__ == "__main__":
    run(main)
