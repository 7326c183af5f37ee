"""A model's score beside the baselines (issue 14): the baselines' rows of a results table,
fitted on the same training subjects and scored on the same test subjects, and one line that
says how far the model is above (or below) the best of them.

Rows come from :func:`tfneuro.evaluation.tables.evaluate_subjects`, so the metrics, columns
and class names are those of the model's own table; a ``model`` column names each row's
source (``"baseline: intensity"``, ``"baseline: atlas"``).
"""

from __future__ import annotations

import pandas as pd

from tfneuro.data.pipeline import load_subject
from tfneuro.errors import InputError
from tfneuro.evaluation.baselines import (
    atlas_baseline,
    fit_intensity_baseline,
    tune_intensity_baseline,
)
from tfneuro.evaluation.tables import evaluate_subjects
from tfneuro.utils.progress import progress

__all__ = ["BASELINES", "baseline_tables", "skill_summary", "comparison_table"]

#: The baselines :func:`baseline_tables` can fit from labelled training subjects.
BASELINES = ("intensity", "atlas")


def baseline_tables(train_df: pd.DataFrame, test_df: pd.DataFrame, *, modalities=("t1",),
                    label="label", scheme="tissue4", which=BASELINES, model_column="model",
                    tune_intensity: bool = False, desc: str = "baselines",
                    **scoring) -> pd.DataFrame:
    """Evaluation rows of the baselines on ``test_df``, fitted on ``train_df``.

    * intensity: :func:`~tfneuro.evaluation.baselines.fit_intensity_baseline` (QDA on the
      per-subject z-scored ``modalities``, every labelled training voxel, opening + largest
      component);
    * atlas: :func:`~tfneuro.evaluation.baselines.atlas_baseline` (the training label maps
      aligned to each test head by bounding box, majority vote).

    Args:
        train_df, test_df: cohort rows (the model's own training and test subjects).
        modalities, label, scheme: what the model read (raw intensities are loaded; each
            baseline normalises as it documents).
        which: baselines to fit (a subset of :data:`BASELINES`).
        model_column: column naming the source of each row.
        tune_intensity: choose the intensity baseline's decision rule (foreground threshold
            for two classes, opening, largest component) by Dice on the training subjects
            (:func:`~tfneuro.evaluation.baselines.tune_intensity_baseline`); for thin, rare
            classes (the neurocranium) the maximum posterior predicts none of them.
        desc: progress-bar label.
        **scoring: :func:`~tfneuro.evaluation.tables.evaluate_subjects` scoring options
            (``label_names``, ``labels``, ``regroup_to``, ``distances``).

    Returns:
        The rows of every baseline, one block per baseline.
    """
    unknown = [w for w in which if w not in BASELINES]
    if unknown:
        raise InputError("which", f"unknown baseline(s) {unknown}; choose from {list(BASELINES)}")
    images, labels = [], []
    for row in progress(train_df.to_dict("records"), desc=f"{desc}: fit", unit="subject"):
        x, y, _ = load_subject(row, modalities=modalities, label=label, scheme=scheme,
                               normalize=None)
        images.append(x)
        labels.append(y)
    predictors = {}
    if "intensity" in which:
        fitted = fit_intensity_baseline(images, labels)
        if tune_intensity:
            fitted = tune_intensity_baseline(fitted, images, labels)
        predictors["intensity"] = lambda x, row: fitted.predict(x)
    if "atlas" in which:
        predictors["atlas"] = lambda x, row: atlas_baseline(images, labels, x)
    tables = []
    for name, predict in predictors.items():
        t = evaluate_subjects(predict, test_df, modalities=modalities, label=label,
                              scheme=scheme, normalize=None, desc=f"{desc}: {name}", **scoring)
        t.insert(1, model_column, f"baseline: {name}")
        tables.append(t)
    return pd.concat(tables, ignore_index=True)


def skill_summary(table: pd.DataFrame, model: str, *, model_column="model",
                  metric: str = "dice") -> str:
    """One line: the model's mean ``metric`` beside each baseline's and its skill over the best.

    Args:
        table: rows of the model (``model_column == model``) and of the baselines
            (``model_column`` starting with ``"baseline: "``), e.g. a model's table with
            :func:`baseline_tables` appended.
        model: the model's name in ``model_column``.

    Returns:
        e.g. ``"mean Dice: quicknat 0.8123; baseline: intensity 0.7801, baseline: atlas
        0.4402; skill over the best baseline (intensity): +0.0322"``.
    """
    means = table.groupby(model_column, sort=False)[metric].mean()
    base = means[[m for m in means.index if str(m).startswith("baseline: ")]]
    name = "Dice" if metric == "dice" else metric
    line = f"mean {name}: {model} {means[model]:.4f}"
    if base.empty:
        return line + "; no baseline"
    best = base.idxmax()
    others = ", ".join(f"{m} {v:.4f}" for m, v in base.items())
    return (f"{line}; {others}; skill over the best baseline "
            f"({best.removeprefix('baseline: ')}): {means[model] - base[best]:+.4f}")


#: Column titles of :func:`comparison_table` for the evaluation tables' metrics.
METRIC_TITLES = {"dice": "Dice", "precision": "precision", "hd95_mm": "HD95 (mm)",
                 "msd_mm": "MSD (mm)"}


def comparison_table(table: pd.DataFrame, *, column: str = "model",
                     metrics=tuple(METRIC_TITLES)) -> pd.DataFrame:
    """Models side by side in the shape of paper 000's Table 2: one row per metric, one
    column per value of ``column`` (in order of appearance), each cell the mean over that
    model's rows (subjects and classes). Metrics missing from ``table`` or all NaN are left
    out.

    Args:
        table: evaluation rows of several models (e.g. a model's with
            :func:`baseline_tables` appended).
        column: the column naming each row's model.
        metrics: metric columns, in row order.

    Returns:
        DataFrame with a ``metric`` column and one column per model.
    """
    if column not in table.columns:
        raise InputError("column", f"{column!r} is not a column of the table")
    keep = [m for m in metrics if m in table.columns and table[m].notna().any()]
    means = table.groupby(column, sort=False)[keep].mean()
    out = means.T.reset_index(names="metric")
    out["metric"] = [METRIC_TITLES.get(m, m) for m in keep]
    out.columns.name = None
    return out
