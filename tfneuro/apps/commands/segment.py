r"""Segment NIfTI volumes with an exported SavedModel (or a ``.keras`` model).

One subject:

    tfneuro segment --model saved_models/quicknat --input t1.nii.gz \
        --output labels.nii.gz [--input2 t2.nii.gz] [--probabilities probs.nii.gz] \
        [--volumes_csv volumes.csv] [--qc_png qc.png] [--subject sub-01] [--age_months 6]

A cohort (CSV with columns subject, t1, t2, label, age_months, split):

    tfneuro segment --model saved_models/quicknat --cohort cohort.csv \
        --output_dir out/ [--save_probabilities] [--save_qc]

writes ``out/<subject>_labels.nii.gz`` (and ``_probabilities.nii.gz``, ``_qc.png``) and
``out/volumes.csv`` (one row per subject: age, mL per class, total brain). A subject that
fails is skipped and listed in a summary at the end; the exit status is then 1.
``python experiments/segment.py`` takes the same flags.

Volumes are in mL rounded to 0.01, background left out, with a ``total brain`` row (which
classes count: ``tfneuro.apps.outputs.brain_classes``); the QC picture shows the subject, age,
model name and volumes. A scan whose voxels are more than 3x the model's spacing on an axis
gets one warning line; a constant or all-zero image is refused.

Pipeline (tfneuro.apps.segment): load_volume -> conform (the spacing / orientation stored in
the model) -> segment_volume -> deconform (labels nearest, probabilities linear), so outputs
have the input's exact shape and affine. ``.keras`` models load with ``safe_mode=True``; a
model with a Lambda layer is refused unless ``--unsafe``. Bad input: one line naming the file,
exit 2, no output written.
"""

from __future__ import annotations

import os
import sys

from absl import flags

from tfneuro.apps import checks, segment
from tfneuro.errors import InputError
from tfneuro.utils.precision import PRECISIONS

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "SavedModel directory (from tfneuro export) or .keras file.")
flags.DEFINE_string("input", None, "First modality (T1 or T2, as the model was trained).")
flags.DEFINE_string("input2", None, "Second modality for two-channel models (T2).")
flags.DEFINE_string("output", None, "Labels NIfTI (class ids) in the input's shape and affine.")
flags.DEFINE_string("probabilities", None, "Optional 4D NIfTI of class probabilities.")
flags.DEFINE_string("volumes_csv", None, "Optional CSV: volume in mL per class, and the total "
                    "brain volume.")
flags.DEFINE_string("qc_png", None, "Optional PNG: three orthogonal slices with a label overlay, "
                    "and the volumes.")
flags.DEFINE_string("subject", None, "Subject name in the volumes CSV and QC picture (default: "
                    "the --input file name without its extension).")
flags.DEFINE_float("age_months", None, "Age of the subject in months, for the volumes CSV and "
                   "QC picture (batch mode: the cohort's age_months column).")
flags.DEFINE_string("cohort", None, "Batch mode: cohort CSV (columns subject, t1, t2, ...).")
flags.DEFINE_string("output_dir", None, "Batch mode: directory for per-subject outputs.")
flags.DEFINE_bool("save_probabilities", False, "Batch mode: also write <subject>_probabilities.nii.gz.")
flags.DEFINE_bool("save_qc", False, "Batch mode: also write <subject>_qc.png.")
flags.DEFINE_string("memory_budget", None, "Peak-memory budget per subject: bytes, '8GB', a fraction "
                    "of available RAM ('0.5') or 'off' (default: $TFNEURO_MEMORY_BUDGET or 80%).")
flags.DEFINE_enum("precision", "auto", list(PRECISIONS),
                  "Compute precision: auto (bfloat16 where the CPU/GPU has it natively, else "
                  "float32). A SavedModel runs at its exported precision; another is an error.")
flags.DEFINE_bool("unsafe", False, "Allow .keras models containing arbitrary Python (Lambda layers).")
flags.DEFINE_string("label_scheme", "tissue4", ".keras models only: label scheme of the model's classes.")
flags.DEFINE_float("spacing", 1.0, ".keras models only: conform spacing in mm.")
flags.DEFINE_string("orientation", "RAS", ".keras models only: conform orientation.")
flags.DEFINE_string("normalization", None, ".keras models only: zscore | minmax | none (default: "
                    "zscore, none for histogram-equalised models).")


def _segmenter():
    if not FLAGS.model:
        raise InputError("--model", "is required")
    return segment.load_segmenter(FLAGS.model, unsafe=FLAGS.unsafe, precision=FLAGS.precision,
                                  label_scheme=FLAGS.label_scheme, spacing=FLAGS.spacing,
                                  orientation=FLAGS.orientation,
                                  normalization=FLAGS.normalization)


def _stem(path) -> str:
    name = os.path.basename(path)
    for ext in (".nii.gz", ".nii", ".hdr.gz", ".img.gz", ".hdr", ".img"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def _single():
    if FLAGS.output_dir:
        raise InputError("--output_dir", "only with --cohort; use --output for one subject")
    if not FLAGS.input:
        raise InputError("--input", "is required (or use --cohort)")
    if not FLAGS.output:
        raise InputError("--output", "is required")
    outputs = {"--output": FLAGS.output, "--probabilities": FLAGS.probabilities,
               "--volumes_csv": FLAGS.volumes_csv, "--qc_png": FLAGS.qc_png}
    checks.check_outputs(outputs, [FLAGS.input, FLAGS.input2, FLAGS.model], checks.EXTENSIONS)
    paths, names = [FLAGS.input, FLAGS.input2], ["--input", "--input2"]
    segment.load_images(paths, names)  # validate the inputs before the (slow) model load
    subject = FLAGS.subject or _stem(FLAGS.input)
    _, written = segment.segment_files(_segmenter(), paths, names, outputs,
                                       memory_budget=FLAGS.memory_budget, subject=subject,
                                       age_months=FLAGS.age_months)
    for w in written:
        print(f"wrote {w}")
    return 0


def _cohort():
    from tfneuro.data.cohort import read_cohort

    if (FLAGS.input or FLAGS.output or FLAGS.probabilities or FLAGS.qc_png or FLAGS.subject
            or FLAGS.age_months is not None):
        raise InputError("--cohort", "batch mode takes --output_dir (and --save_probabilities, "
                                     "--save_qc, --volumes_csv), not --input/--output/"
                                     "--probabilities/--qc_png/--subject/--age_months")
    if not FLAGS.output_dir:
        raise InputError("--output_dir", "is required with --cohort")
    df = read_cohort(FLAGS.cohort)
    checks.check_out_dir(FLAGS.output_dir, flag="--output_dir")
    table, failed = segment.segment_cohort(
        _segmenter(), df, FLAGS.output_dir, protected=[FLAGS.model, FLAGS.cohort],
        probabilities=FLAGS.save_probabilities, qc=FLAGS.save_qc,
        volumes_csv=FLAGS.volumes_csv, memory_budget=FLAGS.memory_budget,
        verbose=FLAGS.verbose)
    print(f"segmented {len(table)} of {len(df)} subject(s); outputs in {FLAGS.output_dir}")
    if failed:
        print(f"{len(failed)} subject(s) failed:", file=sys.stderr)
        for s, msg in failed:
            print(f"  {s}: {msg}", file=sys.stderr)
        return 1
    return 0


def main(argv):
    if len(argv) > 1:
        raise InputError("command line", f"unexpected arguments {argv[1:]}")
    status = _cohort() if FLAGS.cohort else _single()
    if status:
        sys.exit(status)

