"""Quick start: paper 001's transfer recipe, small, on the synthetic infant cohort.

    python experiments/quickstart.py --out out/quickstart      (or: tfneuro quickstart ...)

Paper 001 (001_4781efe3c87e8969.txt) pre-trains QuickNAT on automatic ("auxiliary") labels of
many scans (section 2.1, Dataset I), then fine-tunes it in two stages on a few manually
labelled scans (section 3.2) and compares it with other methods (section 3.4). Here, each
step with a progress bar (decisions and measured figures: ``docs/quickstart.md``):

1. cohort (``OUT/cohort``, reused when present): synthetic subjects (``tfneuro-synth/2``) in
   three roles: ``--aux_subjects`` auxiliary-only ones (ages spread geometrically over 1-60
   months), ``--labelled_ages`` ones whose reference labels are used (2-3, paper 001's
   "few manual labels"), and ``--test_ages`` held-out ones (the isointense phase, 6-9
   months, and younger and older ages);
2. auxiliary labels for every subject that is not held out (``--aux_labels``: ``em_atlas``,
   EM with an atlas prior from the labelled subjects, or ``kmeans``;
   :mod:`tfneuro.evaluation.auxiliary`), in ``OUT/aux_labels``;
3. pre-training QuickNAT on them (``OUT/pretrain``);
4. two-stage fine-tuning on the labelled subjects (``OUT/finetune``: classifier only, then
   everything; :func:`tfneuro.training.finetune_two_stage`);
5. the same network trained from scratch on the same labelled subjects for as many epochs
   (``OUT/scratch``), paper 001's comparison;
6. export of the fine-tuned model as a SavedModel (``--saved_model``; the modalities are
   recorded in its metadata);
7. every held-out subject segmented THROUGH THE SavedModel as ``tfneuro segment`` does
   (``OUT/<subject>_labels.nii.gz``, ``_volumes.csv``, ``_qc.png``), and scored against its
   reference labels beside the transfer and scratch networks in memory and the baselines
   (intensity and atlas, fitted on the same labelled subjects): ``OUT/results.csv``.

The summary ends with exactly these lines (checks parse them)::

    baseline intensity mean Dice: Y
    isointense subjects: mean Dice X_iso vs intensity baseline Y_iso
    transfer vs scratch mean Dice: X_t vs X_s
    mean Dice: X

``X`` is the mean Dice (CSF, GM, WM, all held-out subjects) of the SavedModel's labels; the
isointense subjects are the held-out ones aged 6-9 months (paper 001, introduction:
"similar GM/WM intensity values between 6-9 months").

Departures from paper 001, for a few minutes on a CPU (flags restore the paper's values):
``--filters 16`` (paper: 64), epochs and Adam rates far below the paper's 50 epochs at 5e-5
(pre-training) and 15 + 50 at 1e-4 (fine-tuning), no learning-rate sweep, T1 and T2 as two
channels by default (paper: T2 only; see ``--modalities``), tissue auxiliary labels (paper:
87 regions and 9 tissues from the dHCP pipeline). The view is the paper's: axial.
"""

from __future__ import annotations

import os
import time

from absl import flags

from tfneuro.errors import InputError

FLAGS = flags.FLAGS
SCHEME = "tissue4"
#: The isointense phase (paper 001, introduction: "6-9 months").
ISOINTENSE_MONTHS = (6.0, 9.0)
MODEL = "quicknat transfer (SavedModel)"


def define_flags() -> None:
    """Define the quick start's flags (once per process)."""
    if "aux_subjects" in FLAGS:
        return
    from tfneuro.apps import flags as aflags

    flags.DEFINE_string("out", None, "Output directory (cohort, runs, labels, results.csv).")
    flags.DEFINE_string("saved_model", os.path.join("saved_models", "quickstart_quicknat"),
                        "Where to export the SavedModel (a directory; replaced atomically).")
    flags.DEFINE_list("modalities", ["t1", "t2"], "Input channels: t1, t2 or t1,t2 (recorded "
                      "in the SavedModel; a t1 model segments T1-only scans). Paper 001: t2.")
    flags.DEFINE_enum("view", "axial", ["axial", "coronal", "sagittal"], "Slice view "
                      "(paper 001: axial).")
    flags.DEFINE_integer("filters", 16, "QuickNAT maps per convolution (paper 001: 64).",
                         lower_bound=1)
    flags.DEFINE_float("spacing", 2.0, "Synthetic voxel size in mm (the SavedModel's conform "
                       "spacing).", lower_bound=0.5)
    flags.DEFINE_integer("aux_subjects", 12, "Auxiliary-only subjects (ages spread "
                         "geometrically over 1-60 months).", lower_bound=0)
    flags.DEFINE_list("labelled_ages", ["3", "7.5", "24"], "Ages (months) of the subjects "
                      "whose reference labels are used (fine-tuning, scratch, baselines).")
    flags.DEFINE_list("test_ages", ["2", "4.5", "6.5", "7.5", "8.5", "14", "40"], "Ages "
                      "(months) of the held-out subjects.")
    flags.DEFINE_enum("aux_labels", "em_atlas", ["em_atlas", "kmeans"], "Auxiliary labels "
                      "(tfneuro.evaluation.auxiliary).")
    flags.DEFINE_integer("pretrain_epochs", 3, "Pre-training epochs (paper 001: 50).",
                         lower_bound=1)
    flags.DEFINE_float("pretrain_learning_rate", 1e-3, "Pre-training Adam rate (paper 001: "
                       "5e-5).")
    flags.DEFINE_integer("stage1_epochs", 2, "Fine-tuning stage I epochs, classifier only "
                         "(paper 001: 15).", lower_bound=1)
    flags.DEFINE_integer("scratch_epochs", None, "Epochs of the from-scratch network "
                         "(default: stage I + stage II epochs).", lower_bound=1)
    flags.DEFINE_float("scratch_learning_rate", None, "Adam rate of the from-scratch network "
                       "(default: --learning_rate).")
    flags.DEFINE_bool("distances", True, "Compute HD95 and MSD in the results.")
    aflags.define_training_flags(epochs=8, batch_size=8, learning_rate=1e-3, seed=0)


define_flags()


def _ages(values, flag):
    try:
        ages = [float(a) for a in values]
    except (TypeError, ValueError):
        raise InputError(flag, f"{values}: not numbers") from None
    bad = [a for a in ages if not 0 <= a <= 60]
    if bad:
        raise InputError(flag, f"{bad}: ages must lie in 0-60 months")
    return ages


def _check_flags():
    """Every flag and output path, before any work; returns ``(out, saved_model)``."""
    from tfneuro.apps import checks

    out = checks.check_out_dir(FLAGS.out)
    mods = list(FLAGS.modalities)
    if not mods or len(set(mods)) != len(mods) or not set(mods) <= {"t1", "t2"}:
        raise InputError("--modalities", f"{','.join(mods)}: use t1, t2 or t1,t2")
    if not 2 <= len(_ages(FLAGS.labelled_ages, "--labelled_ages")) <= 10:
        raise InputError("--labelled_ages", "give 2-10 labelled subjects")
    if not _ages(FLAGS.test_ages, "--test_ages"):
        raise InputError("--test_ages", "give at least one held-out subject")
    if FLAGS.seed is None:
        raise InputError("--seed", "is required")
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

    for run in ("pretrain", "finetune/stage1", "finetune/stage2", "scratch"):
        if not FLAGS.resume and latest_checkpoint(os.path.join(out, run)):
            raise InputError("--out", f"{out} already holds a training run; pass --resume to "
                                      "continue it or choose another output directory")
    return out, sm


def quickstart_cohort(out_dir, aux_ages, labelled_ages, test_ages, *, spacing: float,
                      seed: int):
    """The quick start's synthetic cohort in ``<out_dir>/cohort`` (made atomically, reused
    when present with the same ages): subjects in the order auxiliary, labelled, held out,
    with a ``role`` column (``auxiliary``, ``labelled``, ``held_out``) and split ``test`` for
    the held-out subjects (``train`` for the others). Returns the CSV path."""
    from tfneuro.data.cohort import read_cohort, write_cohort
    from tfneuro.data.synth import make_cohort
    from tfneuro.utils.atomic import atomic_path

    roles = (["auxiliary"] * len(aux_ages) + ["labelled"] * len(labelled_ages)
             + ["held_out"] * len(test_ages))
    ages = list(aux_ages) + list(labelled_ages) + list(test_ages)
    cdir = os.path.join(os.fspath(out_dir), "cohort")
    csv = os.path.join(cdir, "cohort.csv")
    if not os.path.isfile(csv):
        with atomic_path(cdir, suffix="") as tmp:
            df = make_cohort(tmp, len(ages), ages=ages, spacing=spacing, seed=seed)
            df["role"] = roles
            df["split"] = ["test" if r == "held_out" else "train" for r in roles]
            write_cohort(df, os.path.join(tmp, "cohort.csv"))
    old = read_cohort(csv)
    if list(old.get("role", [])) != roles or not all(
            abs(a - b) < 1e-6 for a, b in zip(old["age_months"], ages)) or len(old) != len(ages):
        raise InputError("--out", f"{cdir} holds a cohort with other subjects or ages; choose "
                                  "another output directory")
    return csv


def _pretrain(aux_df, k, out, strategy, config):
    """Step 3: QuickNAT on the auxiliary labels."""
    import keras

    from tfneuro import training
    from tfneuro.losses import DiceCELoss
    from tfneuro.models import get

    mods = tuple(FLAGS.modalities)
    with strategy.scope():
        model = get("quicknat", num_classes=k, input_shape=(None, None, len(mods)),
                    filters=FLAGS.filters)
        # QuickNAT's loss (Roy et al.; paper 001): Dice + median-frequency weighted CE
        model.compile(optimizer=keras.optimizers.Adam(FLAGS.pretrain_learning_rate),
                      loss=DiceCELoss(ce_weight=training.class_weights_from_cohort(aux_df, k)),
                      **config.compile_kwargs())
    ds = _slices(aux_df, None)
    print(f"pre-training quicknat on {len(aux_df)} subjects' {FLAGS.aux_labels} labels "
          f"({FLAGS.view}, {FLAGS.filters} filters, {FLAGS.pretrain_epochs} epochs)")
    training.fit(model, ds, epochs=FLAGS.pretrain_epochs, out_dir=os.path.join(out, "pretrain"),
                 **_fit_kwargs(strategy))
    return model


def _slices(df, scheme):
    from tfneuro.data.cohort import cohort_shape
    from tfneuro.training import slice_train_fn

    return slice_train_fn(df, view=FLAGS.view, modalities=tuple(FLAGS.modalities),
                          scheme=scheme, pad_to=cohort_shape(df, FLAGS.modalities[0], 16),
                          batch_size=FLAGS.batch_size, seed=FLAGS.seed, per_epoch=False)


def _fit_kwargs(strategy):
    return dict(resume=FLAGS.resume, seed=FLAGS.seed, tensorboard=FLAGS.tensorboard,
                strategy=strategy)


def _finetune_and_scratch(pre, lab_df, out, strategy, config):
    """Steps 4 and 5: the transfer model and the from-scratch model, same data and loss."""
    import keras

    from tfneuro import training
    from tfneuro.losses import DiceCELoss
    from tfneuro.models import get

    k = 4
    loss = DiceCELoss(ce_weight=training.class_weights_from_cohort(lab_df, k, SCHEME))
    ds = _slices(lab_df, SCHEME)
    print(f"fine-tuning on {len(lab_df)} labelled subjects: stage I {FLAGS.stage1_epochs} "
          f"epochs (classifier), stage II {FLAGS.epochs} epochs (all layers)")
    transfer, _ = training.finetune_two_stage(
        pre, k, ds, learning_rate=FLAGS.learning_rate, out_dir=os.path.join(out, "finetune"),
        stage1_epochs=FLAGS.stage1_epochs, stage2_epochs=FLAGS.epochs, loss=loss,
        compile_kwargs=config.compile_kwargs(), **_fit_kwargs(strategy))
    epochs = FLAGS.scratch_epochs or FLAGS.stage1_epochs + FLAGS.epochs
    rate = FLAGS.scratch_learning_rate or FLAGS.learning_rate
    print(f"training the same network from scratch on them: {epochs} epochs, Adam {rate:g}")
    with strategy.scope():
        scratch = get("quicknat", num_classes=k, input_shape=(None, None, len(FLAGS.modalities)),
                      filters=FLAGS.filters)
        scratch.compile(optimizer=keras.optimizers.Adam(rate), loss=loss,
                        **config.compile_kwargs())
    training.fit(scratch, ds, epochs=epochs, out_dir=os.path.join(out, "scratch"),
                 **_fit_kwargs(strategy))
    return transfer, scratch


def _segment_held_out(sm, test_df, plans):
    """Step 7: segment through the SavedModel, score in the input space."""
    import numpy as np

    from tfneuro.apps import segment
    from tfneuro.io import load_volume, voxel_spacing
    from tfneuro.metrics import evaluation_table
    from tfneuro.utils.progress import progress

    seg = segment.load_segmenter(sm)
    mods = list(FLAGS.modalities)
    tables = []
    for row in progress(test_df.to_dict("records"), desc="segment (SavedModel)", unit="subject"):
        s = row["subject"]
        result, written = segment.segment_files(seg, [row[m] for m in mods], mods, plans[s],
                                                subject=s, age_months=row["age_months"])
        for w in written:
            print(f"wrote {w}")
        ref = load_volume(row["label"], kind="label", scheme=SCHEME)
        tables.append(evaluation_table(np.asarray(ref.dataobj).astype(np.int32),
                                       np.asarray(result.labels.dataobj).astype(np.int32),
                                       voxel_spacing(row["label"]), subject=s, scheme=SCHEME,
                                       distances=FLAGS.distances))
    return tables


def _aux_quality(pre_df, aux_df):
    """Mean Dice of the em_atlas auxiliary labels against the reference labels."""
    import numpy as np

    from tfneuro.data.pipeline import load_subject
    from tfneuro.metrics import dice_score

    scores = []
    for ref_row, aux_row in zip(pre_df.to_dict("records"), aux_df.to_dict("records")):
        _, ref, _ = load_subject(ref_row, modalities=FLAGS.modalities[:1], scheme=SCHEME)
        _, aux, _ = load_subject(aux_row, modalities=FLAGS.modalities[:1], scheme=None)
        scores.extend(dice_score(ref, aux, labels=[1, 2, 3]).values())
    return float(np.mean(scores))


def _summary(table, ages, out):
    """The results table, the skill line and the four last lines."""
    from tfneuro import evaluation

    evaluation.write_results(table, os.path.join(out, "results.csv"))
    per = table.assign(age_months=table["subject"].map(ages)).groupby(
        ["model", "subject", "age_months"], sort=False)["dice"].mean().reset_index()
    evaluation.print_summary("mean Dice (CSF, GM, WM) per held-out subject:",
                             per.pivot(index=["subject", "age_months"], columns="model",
                                       values="dice").reset_index())
    print("\n" + evaluation.skill_summary(table, MODEL))
    iso = [s for s, a in ages.items() if ISOINTENSE_MONTHS[0] <= a <= ISOINTENSE_MONTHS[1]]

    def mean(model, subjects=None):
        t = table[table["model"] == model]
        return t[t["subject"].isin(subjects)]["dice"].mean() if subjects is not None \
            else t["dice"].mean()

    print(f"results: {os.path.join(out, 'results.csv')}")
    print(f"baseline intensity mean Dice: {mean('baseline: intensity'):.4f}")
    print(f"isointense subjects: mean Dice {mean(MODEL, iso):.4f} vs intensity baseline "
          f"{mean('baseline: intensity', iso):.4f}")
    print(f"transfer vs scratch mean Dice: {mean('quicknat transfer'):.4f} vs "
          f"{mean('quicknat scratch'):.4f}")
    print(f"mean Dice: {mean(MODEL):.4f}")


def main(argv):
    if len(argv) > 1:
        raise InputError("command line", f"unexpected arguments {argv[1:]}")
    from tfneuro.apps import cli

    cli.quiet_logs()
    t0 = time.time()
    out, sm = _check_flags()
    import numpy as np

    from tfneuro.apps import flags as aflags
    config = aflags.config_from_flags()
    aux_ages = [round(float(a), 1) for a in np.geomspace(1, 60, FLAGS.aux_subjects)]
    csv = quickstart_cohort(out, aux_ages, _ages(FLAGS.labelled_ages, "--labelled_ages"),
                            _ages(FLAGS.test_ages, "--test_ages"), spacing=FLAGS.spacing,
                            seed=FLAGS.seed)
    run = _prepare(csv, out, t0)
    _train_and_report(run, out, sm, config, t0)


def _prepare(csv, out, t0):
    """Steps 1-2: the validated cohort, the output plans, the auxiliary labels."""
    from tfneuro.apps import checks, segment
    from tfneuro.data import cohort as cohorts
    from tfneuro.data.load import load_cohort
    from tfneuro.evaluation.auxiliary import make_aux_cohort

    mods = tuple(FLAGS.modalities)
    df = load_cohort(csv, modalities=mods, scheme=SCHEME, min_subjects=3)
    role = {r: df[df["role"] == r].reset_index(drop=True) for r in ("labelled", "held_out")}
    pre_df = df[df["role"] != "held_out"].reset_index(drop=True)
    plans = segment.cohort_plans(role["held_out"], out, volumes=True, qc=True)
    for plan in plans.values():
        checks.check_outputs(plan, cohorts.cohort_files(df), checks.EXTENSIONS)
    print(f"cohort: {len(df)} subjects at {FLAGS.spacing:g} mm ({len(pre_df) - len(role['labelled'])} "
          f"auxiliary, {len(role['labelled'])} labelled, {len(role['held_out'])} held out) "
          f"in {os.path.dirname(csv)} [{time.time() - t0:.0f} s]")
    aux_df = make_aux_cohort(pre_df, os.path.join(out, "aux_labels"), method=FLAGS.aux_labels,
                             modalities=mods, atlas_df=role["labelled"], scheme=SCHEME,
                             seed=FLAGS.seed)
    if FLAGS.aux_labels == "em_atlas":
        print(f"auxiliary labels: mean Dice {_aux_quality(pre_df, aux_df):.4f} against the "
              f"reference labels (which pre-training does not see) [{time.time() - t0:.0f} s]")
    return dict(df=df, aux_df=aux_df, labelled=role["labelled"], test=role["held_out"],
                plans=plans)


def _train_and_report(run, out, sm, config, t0):
    """Steps 3-7."""
    import pandas as pd

    from tfneuro import evaluation
    from tfneuro.evaluation.auxiliary import aux_label_names
    from tfneuro.export import export_model
    from tfneuro.training.runtime import setup_runtime

    strategy = setup_runtime(config)
    pre = _pretrain(run["aux_df"], len(aux_label_names(FLAGS.aux_labels, SCHEME)), out,
                    strategy, config)
    print(f"pre-trained [{time.time() - t0:.0f} s]")
    transfer, scratch = _finetune_and_scratch(pre, run["labelled"], out, strategy, config)
    print(f"trained [{time.time() - t0:.0f} s]")
    mods = list(FLAGS.modalities)
    # conform without padding: the graph z-scores the scan as training did (padding to 16
    # first shifted the statistics: mean Dice 0.598 vs 0.671 in memory, docs/quickstart.md);
    # the 2D model pads its slices itself
    export_model(transfer, sm, model_name="quickstart_quicknat", label_scheme=SCHEME,
                 spacing=FLAGS.spacing, views=[FLAGS.view], modalities=mods, conform_multiple=1)
    print(f"exported SavedModel {sm} (modalities {','.join(mods)}) [{time.time() - t0:.0f} s]")
    test = run["test"]
    tables = [t.assign(model=MODEL) for t in _segment_held_out(sm, test, run["plans"])]
    for name, model in (("quicknat transfer", transfer), ("quicknat scratch", scratch)):
        tables.append(evaluation.evaluate_subjects(
            model, test, modalities=mods, scheme=SCHEME, views=[FLAGS.view],
            distances=FLAGS.distances, desc=name).assign(model=name))
    tables.append(evaluation.baseline_tables(run["labelled"], test, modalities=mods,
                                             scheme=SCHEME, distances=FLAGS.distances))
    table = pd.concat(tables, ignore_index=True)
    table.insert(1, "model", table.pop("model"))
    print(f"evaluated [{time.time() - t0:.0f} s]")
    _summary(table, dict(zip(test["subject"], test["age_months"])), out)
