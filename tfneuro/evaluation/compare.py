"""A model's score beside the baselines (issue 14): the baselines' rows of a results table,
fitted on the same training subjects and scored on the same test subjects, and one line that
says how far the model is above (or below) the best of them.

Rows come from :func:`tfneuro.evaluation.tables.evaluate_subjects`, so the metrics, columns
and class names are those of the model's own table; a ``model`` column names each row's
source (the model's name, ``"baseline: intensity"``, ``"baseline: atlas"``).

* :func:`baseline_tables`: the baselines' rows on a set of test subjects;
* :func:`evaluate_splits`: a model's rows on several splits (val, test) with the baselines'
  rows beside them, the one results table every experiment writes;
* :func:`unlabelled_slice_tables`: for label budgets (paper 002), the model against the
  nearest-labelled-slice baseline on the training voxels that no budget unit labelled;
* :func:`skill_summary`: the model's mean Dice beside each baseline's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tfneuro.data.pipeline import load_subject
from tfneuro.errors import InputError
from tfneuro.evaluation.baselines import (
    atlas_baseline,
    fit_intensity_baseline,
    tune_intensity_baseline,
)
from tfneuro.evaluation.nearest_slice import nearest_slice_fill
from tfneuro.evaluation.tables import as_labels, as_predictor, evaluate_subjects
from tfneuro.metrics.report import evaluation_table
from tfneuro.utils.progress import progress

__all__ = ["BASELINES", "NEAREST_SLICE", "baseline_tables", "evaluate_splits",
           "split_baselines", "unlabelled_slice_tables", "skill_summary", "comparison_table"]

#: Keyword arguments of ``evaluate_subjects`` that also apply to the baselines' rows.
_SHARED = ("modalities", "label", "scheme", "label_names", "labels", "regroup_to", "distances")
#: Name of the nearest-labelled-slice baseline's rows.
NEAREST_SLICE = "baseline: nearest slice"

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


def evaluate_splits(model, splits: dict, *, name: str, train_df=None, which=BASELINES,
                    model_column: str = "model", split_column: str = "split",
                    desc: str = "evaluate", **kwargs) -> pd.DataFrame:
    """A model's evaluation rows on every split, with the baselines' rows beside them.

    Args:
        model: what :func:`~tfneuro.evaluation.tables.evaluate_subjects` takes (a Keras model,
            ``{view: model}`` or a ``predict(x, row)`` callable).
        splits: ``{split name: cohort rows}`` (e.g. ``{"val": ..., "test": ...}``).
        name: the model's name in ``model_column``.
        train_df: the model's training subjects; the baselines (``which``) are fitted on them
            and scored on the same subjects and classes as the model (:func:`baseline_tables`).
            ``None``: no baseline rows.
        model_column, split_column: columns naming each row's source and split.
        desc: progress-bar label.
        **kwargs: :func:`~tfneuro.evaluation.tables.evaluate_subjects` options (``modalities``,
            ``scheme``, ``window``, ``postprocess``, ``labels``, ``distances`` ...); those that
            make sense for a baseline (:data:`_SHARED`) are passed to it too.

    Returns:
        One table: ``split_column``, ``subject``, ``model_column``, then the metric columns
        (and the model's variant column, empty on the baselines' rows).
    """
    tables = []
    for split, df in splits.items():
        t = evaluate_subjects(model, df, desc=f"{desc} {split}", **kwargs)
        t.insert(1, model_column, name)
        tables.append(t.assign(**{split_column: split}))
    if train_df is not None and which:
        shared = {k: v for k, v in kwargs.items() if k in _SHARED}
        tables.append(split_baselines(train_df, splits, which=which, model_column=model_column,
                                      split_column=split_column, desc=f"{desc} baselines",
                                      **shared))
    table = pd.concat(tables, ignore_index=True)
    return table[[split_column] + [c for c in table.columns if c != split_column]]


def split_baselines(train_df, splits: dict, *, split_column: str = "split",
                    **kwargs) -> pd.DataFrame:
    """:func:`baseline_tables` fitted once on ``train_df`` and scored on every split of
    ``splits`` (``{split name: cohort rows}``); ``split_column`` names each row's split.
    ``**kwargs``: :func:`baseline_tables` options."""
    tested = pd.concat(list(splits.values()), ignore_index=True)
    where = {s: split for split, df in splits.items() for s in df["subject"]}
    base = baseline_tables(train_df, tested, **kwargs)
    return base.assign(**{split_column: base["subject"].map(where)})


def unlabelled_slice_tables(model, units: pd.DataFrame, weights, *, name: str,
                            group_column: str = "subject", model_column: str = "model",
                            modalities=("t1",), label="label", scheme="tissue4", labels=None,
                            label_names=None, views=None, window=(96, 96, 96),
                            desc: str = "unlabelled slices") -> pd.DataFrame:
    """A model trained on a label budget against the nearest-labelled-slice baseline, both
    scored on the same voxels: those of the training subjects that no budget unit labelled.

    Paper 002's budget runs label a share of each unit's slices (:mod:`tfneuro.data.budget`);
    a scan may appear in several units, each with its own slices. Per scan (the units sharing
    ``group_column``): the labelled voxels are the union of its units' weight maps; the
    baseline fills every other voxel from the nearest labelled slice of any unit
    (:func:`~tfneuro.evaluation.nearest_slice.nearest_slice_fill`); the model predicts the
    whole scan. Both are scored (Dice, precision; no distances, the scored voxels are not a
    closed shape) on the voxels that are unlabelled AND inside the bounding box of the
    reference foreground: the baseline is asked to interpolate between labelled slices, not
    to extrapolate into the empty slices outside the head that the budget never offered.

    Args:
        model: Keras model, ``{view: model}`` or ``predict(x, row)`` (as ``evaluate_subjects``).
        units: the budget run's training units (cohort rows; repeated scans share the files).
        weights: the run's ``weights(row, y)`` (1 on labelled voxels), as given to training.
        name: the model's name in ``model_column``.
        group_column: column naming the scan of each unit.
        modalities, label, scheme: what the model reads (z-scored, as in training).
        labels, label_names: classes to score (default the scheme's foreground) and names.
        views, window: prediction options (as ``evaluate_subjects``).
        desc: progress-bar label.

    Returns:
        Rows per scan, class and source (``name`` and :data:`NEAREST_SLICE`), with
        ``scored_voxels``; a scan whose units label every voxel of its box has no rows.
    """
    predict = as_predictor(model, views=views, window=window)
    names = list(label_names) if label_names else scheme
    tables = []
    groups = list(units.groupby(group_column, sort=False))
    for scan, part in progress(groups, desc=desc, unit="subject"):
        rows = part.to_dict("records")
        x, y, _ = load_subject(rows[0], modalities=modalities, label=label, scheme=scheme)
        filled, dist = nearest_slice_fill(y, [weights(r, y) for r in rows])
        scored = (dist > 0) & _box(y != 0)
        if not scored.any():
            continue
        pred = as_labels(predict(x, rows[0]), y.ndim)
        for who, p in ((name, pred), (NEAREST_SLICE, filled)):
            t = evaluation_table(y[scored], p[scored], 1.0, subject=str(scan), scheme=names,
                                 labels=labels, distances=False)
            t.insert(1, model_column, who)
            tables.append(t.assign(scored_voxels=int(scored.sum())))
    if not tables:
        return pd.DataFrame(columns=["subject", model_column, "dice", "scored_voxels"])
    return pd.concat(tables, ignore_index=True)


def _box(mask: np.ndarray) -> np.ndarray:
    """The bounding box of ``mask``'s True voxels, as a mask (empty if none)."""
    out = np.zeros(mask.shape, bool)
    idx = np.argwhere(mask)
    if idx.size:
        lo, hi = idx.min(0), idx.max(0) + 1
        out[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return out


def skill_summary(table: pd.DataFrame, model: str, *, model_column="model",
                  metric: str = "dice", where: dict | None = None) -> str:
    """One line: the model's mean ``metric`` beside each baseline's and its skill over the best.

    Args:
        table: rows of the model (``model_column == model``) and of the baselines
            (``model_column`` starting with ``"baseline: "``), e.g. a model's table with
            :func:`baseline_tables` appended.
        model: the model's name in ``model_column``.
        metric: the column averaged.
        where: ``{column: value}``: keep only the rows with that value or none (empty) in
            each column, e.g. ``{"method": "aggregated"}`` scores the aggregated views beside
            baselines that have no method.

    Returns:
        e.g. ``"mean Dice: quicknat 0.8123; baseline: intensity 0.7801, baseline: atlas
        0.4402; skill over the best baseline (intensity): +0.0322"``.
    """
    for column, value in (where or {}).items():
        table = table[(table[column] == value) | table[column].isna()]
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
