r"""Evaluate predicted label maps against reference labels: Dice, precision, HD95 and MSD per
class per subject, as a CSV (optionally after the MRBrainS grouping).

    tfneuro evaluate --cohort cohort.csv --predictions_dir out/ --output eval.csv
    tfneuro evaluate --cohort cohort.csv --prediction_column pred --output eval.csv \
        --label_scheme neobrains12 --regroup_to mrbrains13

References: the cohort's ``label`` column (raw values remapped with ``--label_scheme``).
Predictions: class ids of the same scheme (what ``tfneuro segment`` writes), either
``--predictions_dir`` + ``--pattern`` (default ``{subject}_labels.nii.gz``, ``tfneuro segment``'s
batch naming) or a cohort column (``--prediction_column``). Each prediction must be on its
reference's grid (same shape and affine). Metrics (``tfneuro.metrics.evaluation_table``):
Dice (paper 001 eq. 2, paper 004 "DC"), precision (paper 001 eq. 1), HD95 and MSD in mm from
the voxel size in the header (paper 004). ``--regroup_to mrbrains13`` evaluates paper 004's
MRBrainS grouping of NeoBrainS12 classes (``tfneuro.io.labels.GROUPINGS``).

Everything is validated before any metric is computed; the CSV is written atomically; a
per-class mean/SD summary is printed (and written to ``--summary`` if given). ``python
experiments/evaluate.py`` takes the same flags.
"""

from __future__ import annotations

import os

from absl import flags

from tfneuro import evaluation
from tfneuro.apps import checks
from tfneuro.data import cohort as cohorts
from tfneuro.errors import InputError, InputErrors

FLAGS = flags.FLAGS
flags.DEFINE_string("cohort", None, "Cohort CSV with a label column (references).")
flags.DEFINE_string("predictions_dir", None, "Directory of predicted label maps.")
flags.DEFINE_string("pattern", "{subject}_labels.nii.gz", "File name of a subject's prediction "
                    "in --predictions_dir ({subject} is replaced).")
flags.DEFINE_string("prediction_column", None, "Cohort column holding prediction paths "
                    "(instead of --predictions_dir).")
flags.DEFINE_string("label_scheme", "tissue4", "Label scheme of the references (and the class "
                    "ids of the predictions).")
flags.DEFINE_string("regroup_to", None, "Evaluate after regrouping both maps to this scheme "
                    "(e.g. mrbrains13 for paper 004's MRBrainS grouping of neobrains12).")
flags.DEFINE_string("output", None, "Results CSV (one row per subject and class).")
flags.DEFINE_string("summary", None, "Optional CSV of the per-class mean/SD summary.")
flags.DEFINE_bool("distances", True, "Compute HD95 and MSD (slower).")
flags.DEFINE_float("percentile", 95, "Hausdorff percentile (95 = HD95, 100 = classic HD).")


def _pairs(df):
    """[(subject, reference path, prediction path)] for every subject."""
    if bool(FLAGS.predictions_dir) == bool(FLAGS.prediction_column):
        raise InputError("--predictions_dir", "give exactly one of --predictions_dir and --prediction_column")
    src = df.attrs.get("source", FLAGS.cohort)
    if FLAGS.prediction_column:
        if FLAGS.prediction_column not in df.columns:
            raise InputError(src, f"no column {FLAGS.prediction_column!r}")
        base = os.path.dirname(os.path.abspath(FLAGS.cohort))
        preds = [p if not p or os.path.isabs(p) else os.path.normpath(os.path.join(base, p))
                 for p in df[FLAGS.prediction_column].astype(str).map(str.strip)]
    else:
        if not os.path.isdir(FLAGS.predictions_dir):
            raise InputError("--predictions_dir", f"{FLAGS.predictions_dir} is not a directory")
        if "{subject}" not in FLAGS.pattern:
            raise InputError("--pattern", f"{FLAGS.pattern!r} must contain {{subject}}")
        preds = [os.path.join(FLAGS.predictions_dir, FLAGS.pattern.replace("{subject}", s))
                 for s in df["subject"]]
    empty = [s for s, p in zip(df["subject"], df["label"]) if not p]
    if empty:
        raise InputError(src, f"no label for subject(s) {empty}")
    return list(zip(df["subject"], df["label"], preds))


def main(argv):
    if len(argv) > 1:
        raise InputError("command line", f"unexpected arguments {argv[1:]}")
    if not FLAGS.cohort:
        raise InputError("--cohort", "is required")
    if not FLAGS.output:
        raise InputError("--output", "is required")
    from tfneuro.data.cohort import read_cohort
    from tfneuro.io import check_same_grid, load_volume
    from tfneuro.io.labels import get_scheme, regroup
    from tfneuro.metrics import evaluation_table, summarize_table

    for flag in ("--label_scheme", "--regroup_to"):
        value = FLAGS[flag[2:]].value
        if value:
            try:
                get_scheme(value)
            except InputError as e:
                raise InputError(flag, e.problem) from None
    if FLAGS.regroup_to:
        try:
            regroup([0], FLAGS.label_scheme, FLAGS.regroup_to)
        except InputError as e:
            raise InputError("--regroup_to", e.problem) from None
    if not 0 < FLAGS.percentile <= 100:
        raise InputError("--percentile", f"must be in (0, 100], got {FLAGS.percentile}")
    df = read_cohort(FLAGS.cohort)
    pairs = _pairs(df)
    outputs = {"--output": FLAGS.output, "--summary": FLAGS.summary}
    for flag, path in outputs.items():
        if path and not path.lower().endswith(".csv"):
            raise InputError(flag, f"{path}: expected a .csv file")
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise InputError(flag, f"directory {os.path.dirname(os.path.abspath(path))} does not exist")
    checks.check_outputs(outputs, cohorts.cohort_files(df) + [p for _, _, p in pairs])

    import numpy as np
    import pandas as pd

    from tfneuro.utils.progress import progress

    scheme = get_scheme(FLAGS.label_scheme)
    errors, loaded = [], []
    for s, ref_path, pred_path in pairs:
        try:
            ref = load_volume(ref_path, kind="label", scheme=scheme.name)
            pred = load_volume(pred_path, kind="label", scheme=None)
            check_same_grid(pred, ref, pred_path, ref_path)
            p = np.asarray(pred.dataobj)
            if not np.all(p == np.rint(p)) or p.min() < 0 or p.max() >= scheme.num_classes:
                raise InputError(pred_path, f"prediction values outside the class ids 0..{scheme.num_classes - 1} "
                                            f"of scheme {scheme.name}")
            loaded.append((s, ref_path, pred_path))
        except InputError as e:
            errors.append(InputError(e.source, f"(subject {s}) {e.problem}"))
    if errors:
        raise errors[0] if len(errors) == 1 else InputErrors(errors, what=f"cohort {FLAGS.cohort}")

    tables = []
    for s, ref_path, pred_path in progress(loaded, desc="evaluate", unit="subject"):
        ref = load_volume(ref_path, kind="label", scheme=scheme.name)
        a = scheme.remap(np.asarray(ref.dataobj), source=ref_path)
        b = np.rint(np.asarray(load_volume(pred_path, kind="label").dataobj)).astype(np.int32)
        spacing = tuple(float(z) for z in ref.header.get_zooms()[:3])
        tables.append(evaluation_table(a, b, spacing, subject=s, scheme=scheme.name,
                                       regroup_to=FLAGS.regroup_to, distances=FLAGS.distances,
                                       hd_percentile=FLAGS.percentile))
    table = pd.concat(tables, ignore_index=True)
    evaluation.write_results(table, FLAGS.output)
    summary = summarize_table(table)
    if FLAGS.summary:
        evaluation.write_results(summary, FLAGS.summary)
    cols = ["name", "dice_mean", "dice_sd", "precision_mean"] + (
        ["hd95_mm_mean", "msd_mm_mean"] if FLAGS.distances else [])
    evaluation.print_summary(f"{len(loaded)} subject(s), scheme {FLAGS.regroup_to or scheme.name}: mean (SD) "
                             "over subjects", summary, cols)
    print(f"results: {FLAGS.output}")
    print(f"mean Dice: {table['dice'].mean():.4f}")

