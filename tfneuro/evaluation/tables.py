"""Evaluation tables: every subject predicted, turned into labels and scored per class.

The one loop every experiment shares (``predict -> labels -> table``):

1. load the subject's normalised volume and reference labels
   (:func:`tfneuro.data.pipeline.load_subject`);
2. class probabilities from the model (:func:`tfneuro.inference.predict_volume`: slice models
   with view aggregation, or the 3D sliding window), or from any ``predict(x, row)`` callable
   (which may also return labels, or several named predictions at once);
3. labels = argmax; an optional ``postprocess(labels, row)`` hook returns further named
   variants (e.g. paper 004's slice cleaning, NEC-NET's largest component + bridging);
4. Dice, precision, HD95 and MSD per class (:func:`tfneuro.metrics.evaluation_table`) for the
   raw labels and every variant, in one table with a column naming the variant.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from tfneuro.data.pipeline import load_subject
from tfneuro.inference.volume import predict_volume
from tfneuro.io.nifti import voxel_spacing
from tfneuro.metrics.report import evaluation_table
from tfneuro.utils.atomic import atomic_path
from tfneuro.utils.progress import progress

__all__ = ["evaluate_subjects", "as_predictor", "as_labels", "mean_foreground_dice",
           "write_results", "print_summary"]


def evaluate_subjects(model, df: pd.DataFrame, *, modalities=("t1",), label="label",
                      scheme="tissue4", normalize="zscore", views=None, window=(96, 96, 96),
                      postprocess=None, variant_column: str = "postprocess",
                      desc: str = "evaluate", return_predictions: bool = False,
                      raw_channels=(), **scoring):
    """Predict every subject of ``df`` and tabulate Dice/precision/HD95/MSD per class.

    Args:
        model: a Keras model, a dict ``{view: 2D model}``, or a callable
            ``predict(x, row)`` (``x`` the normalised volume, ``row`` the cohort row) returning
            probabilities ``[X, Y, Z, K]``, labels ``[X, Y, Z]``, or a dict ``{variant: either}``
            of several predictions (each scored, named in ``variant_column``).
        df: the subjects (cohort rows).
        modalities, label, normalize: what :func:`~tfneuro.data.pipeline.load_subject` reads.
        scheme: label scheme used to remap the label files (``None``: stored values) and to
            name the classes, unless ``label_names`` (a list) is given.
        views, window: for Keras models, as :func:`tfneuro.inference.predict_volume`.
        postprocess: ``postprocess(labels, row) -> {variant: labels}``; each variant is scored
            beside the raw argmax (``variant_column``: ``"none"`` and the variants' names).
            Without it (and without a dict from ``predict``) the table has no such column.
        variant_column: name of the column naming the variant.
        desc: progress-bar label.
        return_predictions: also return ``{subject: {"reference": y, "none": labels,
            <variant>: labels, ...}}``.
        raw_channels: cohort columns appended to ``x`` as stored (e.g. a cascade's prior
            mask; :class:`~tfneuro.data.VolumeSource`).
        **scoring: :func:`tfneuro.metrics.evaluation_table` options: ``label_names``,
            ``labels`` (class ids to score; include 0 for paper 002's "with background"),
            ``regroup_to``, ``distances``.

    Returns:
        The concatenated table (one row per subject, class and variant); with
        ``return_predictions`` also the predictions.
    """
    names = scoring.pop("label_names", None)
    predict = as_predictor(model, views=views, window=window)
    tables, preds = [], {}
    for row in progress(df.to_dict("records"), desc=desc, unit="subject"):
        x, y, _ = load_subject(row, modalities=modalities, label=label, scheme=scheme,
                               normalize=normalize, raw_channels=raw_channels)
        out = predict(x, row)
        named = isinstance(out, dict)
        variants = {k: as_labels(v, y.ndim) for k, v in (out if named else {"none": out}).items()}
        if postprocess:
            variants.update(postprocess(variants["none"], row))
        spacing = voxel_spacing(row[modalities[0]])
        for variant, pred in variants.items():
            t = evaluation_table(y, pred, spacing, subject=row["subject"],
                                 scheme=list(names) if names else scheme, **scoring)
            if postprocess or named:
                t.insert(1, variant_column, variant)
            tables.append(t)
        if return_predictions:
            preds[row["subject"]] = {"reference": y, **variants}
    table = pd.concat(tables, ignore_index=True)
    return (table, preds) if return_predictions else table


def as_predictor(model, *, views=None, window=(96, 96, 96)):
    """``predict(x, row)`` for a Keras model or a dict ``{view: 2D model}``
    (:func:`tfneuro.inference.predict_volume`); a plain callable is returned as it is."""
    if callable(model) and not hasattr(model, "predict_on_batch"):
        return model
    return lambda x, row: predict_volume(model, x, views=views, window=window)


def as_labels(prediction, ndim: int = 3) -> np.ndarray:
    """Class ids from probabilities (argmax over the last axis) or from labels as they are."""
    p = np.asarray(prediction)
    return (np.argmax(p, axis=-1) if p.ndim == ndim + 1 else p).astype(np.int32)


def mean_foreground_dice(table: pd.DataFrame) -> float:
    """Mean Dice over every (subject, foreground class) row of an evaluation table."""
    return float(table["dice"].mean())


def write_results(table: pd.DataFrame, path) -> str:
    """Write a results CSV atomically (:func:`tfneuro.utils.atomic_path`); return the path."""
    path = os.fspath(path)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    return path


def print_summary(title: str, table: pd.DataFrame, columns=None, floatfmt: str = "{:.4f}") -> None:
    """Print ``title`` and a compact text table (``columns`` only, floats formatted)."""
    t = table[list(columns)] if columns is not None else table
    print(f"\n{title}")
    print(t.to_string(index=False, float_format=lambda v: floatfmt.format(v)))
