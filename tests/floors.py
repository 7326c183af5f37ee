"""Learning floors (issue 15) of the paper-002/003/004 end-to-end tests: the small cohorts the
networks are trained on, and the checks every floor makes.

A floor test runs an experiment script for well under a minute of training on a 2-core CPU and
asserts that the model's mean Dice beats a baseline of ``tfneuro.evaluation`` (fitted on the
same training subjects, written by the script beside the model's rows) by a margin an untrained
or broken model cannot reach. Before trusting the baselines' rows, :func:`check_intensity_rows`
refits the intensity baseline here on the cohort's ``train`` split and recomputes its Dice by
the definition, so a script that fitted it on the test subjects (or not at all) fails.

The figures these floors were set from, and the runs that made them fail, are in
docs/papers_002_003_004.md.
"""

import os

import numpy as np
import pandas as pd

#: Paper 003's phase (iSeg-2017, 6-8 months: "iso-intense stage"), small: 4 mm, 5 subjects
#: (make_cohort's split: 3 train, 1 val, 1 test).
ISO_AGES = (6.5, 7.0, 7.5, 8.0, 8.5)
#: Papers 002 and 004's neonates (dHCP 26-45 weeks post-menstrual; NeoBrainS12), small.
NEONATAL_AGES = (0.5, 1.0, 1.5, 2.0, 2.5)


def make_floor_cohort(out, ages, seed) -> str:
    """A tfneuro-synth/2 cohort at 4 mm; returns its CSV path."""
    from tfneuro.data.synth import make_cohort

    make_cohort(out, len(ages), ages=ages, spacing=4.0, seed=seed, show_progress=False)
    return os.path.join(str(out), "cohort.csv")


def dice(a, b, k):
    a, b = np.asarray(a) == k, np.asarray(b) == k
    return 2.0 * (a & b).sum() / (a.sum() + b.sum()) if (a.any() or b.any()) else 1.0


def check_intensity_rows(res, cohort_csv, modalities, scheme="tissue4", train=None,
                         model_column="model"):
    """The ``baseline: intensity`` rows of a results table equal the intensity baseline fitted
    here on the cohort's ``train`` split (or the subjects ``train``) and scored by the Dice
    definition on each subject."""
    from tfneuro.data.cohort import read_cohort
    from tfneuro.data.pipeline import load_subject
    from tfneuro.evaluation.baselines import fit_intensity_baseline

    df = read_cohort(cohort_csv)
    chosen = df["split"] == "train" if train is None else df["subject"].isin(list(train))
    train = df[chosen].to_dict("records")
    xs, ys = zip(*[load_subject(r, modalities=modalities, scheme=scheme, normalize=None)[:2]
                   for r in train])
    fitted = fit_intensity_baseline(list(xs), list(ys))
    rows = res[res[model_column] == "baseline: intensity"]
    assert len(rows), "no intensity baseline rows"
    for subject, got in rows.groupby("subject"):
        row = df[df["subject"] == subject].iloc[0].to_dict()
        x, y, _ = load_subject(row, modalities=modalities, scheme=scheme, normalize=None)
        pred = fitted.predict(x)
        np.testing.assert_allclose(got["dice"], [dice(y, pred, int(k)) for k in got["label"]],
                                   atol=1e-9)


def means(res: pd.DataFrame, column="model", **where) -> pd.Series:
    """Mean Dice per ``column`` over the rows with ``where``'s values (or none, for the
    baselines' rows that have no variant)."""
    for c, v in where.items():
        res = res[(res[c] == v) | res[c].isna()]
    return res.groupby(column)["dice"].mean()


def axial_fill_by_hand(y, masks):
    """The nearest-labelled-slice baseline of an axial budget, by brute force: the union of
    the masks' labelled z-slices, every other slice copied from the nearest of them (ties to
    the lower), and the voxels it is scored on (unlabelled, inside the bounding box of the
    reference foreground). Returns ``(filled, scored)``."""
    y = np.asarray(y)
    known = np.zeros(y.shape[2], bool)
    for w in masks:  # an axial budget: whole z-slices
        known |= np.asarray(w).reshape(-1, y.shape[2]).all(0)
    ks = np.flatnonzero(known)
    filled = np.stack([y[..., min(ks, key=lambda j: (abs(j - k), j))]
                       for k in range(y.shape[2])], axis=-1)
    idx = np.argwhere(y != 0)
    box = np.zeros(y.shape, bool)
    box[tuple(slice(a, b + 1) for a, b in zip(idx.min(0), idx.max(0)))] = True
    return filled, box & ~known[None, None, :]
