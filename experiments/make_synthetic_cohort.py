"""Write a synthetic infant cohort (NIfTI + cohort.csv) from the ICBM152 2009 template.

Example:
    python experiments/make_synthetic_cohort.py --out /tmp/synth --subjects 10 --spacing 2
    python experiments/make_synthetic_cohort.py --out /tmp/synth --subjects 3 --ages 2,7.5,24

See tfneuro/data/synth.py and docs/synthetic_cohort.md for the model (age-dependent size,
contrast with an isointense phase and a myelination gradient, anatomy varying per subject,
skull thickness).
"""

from __future__ import annotations

import os

from absl import flags

from tfneuro.apps import checks
from tfneuro.apps.cli import run
from tfneuro.errors import InputError

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Output directory (created).")
flags.DEFINE_integer("subjects", 10, "Number of subjects.")
flags.DEFINE_list("ages", None, "Ages in months (0-60): one per subject, or one for all. "
                  "Default: evenly spread over 1-60 months.")
flags.DEFINE_float("spacing", 2.0, "Isotropic voxel size in mm.")
flags.DEFINE_integer("seed", 0, "Cohort seed (subject i uses SeedSequence([seed, i])).")
flags.DEFINE_string("montage", None, "Optional PNG: mid-axial T1/T2/labels/skull per subject.")
flags.DEFINE_bool("parcellation", False, "Also write a parcellation (label scheme "
                  "tissue_sectors: CSF/GM/WM x 24 template-space sectors; column parcellation).")


def main(argv):
    del argv
    checks.check_out_dir(FLAGS.out, flag="--out")
    ages = None
    if FLAGS.ages:
        try:
            ages = [float(a) for a in FLAGS.ages]
        except ValueError:
            raise InputError("--ages", f"{FLAGS.ages} are not numbers") from None
    from tfneuro.data import synth

    df = synth.make_cohort(FLAGS.out, FLAGS.subjects, ages=ages, spacing=FLAGS.spacing,
                           seed=FLAGS.seed, parcellation=FLAGS.parcellation)
    print(f"wrote {len(df)} subjects to {os.path.join(FLAGS.out, 'cohort.csv')}")
    print(df["split"].value_counts().to_string())
    if FLAGS.montage:
        synth.save_montage(df, FLAGS.out, FLAGS.montage)
        print(f"montage: {FLAGS.montage}")


if __name__ == "__main__":
    run(main)
