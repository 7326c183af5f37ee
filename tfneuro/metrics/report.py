"""Per-subject, per-class evaluation tables (pandas) built from :mod:`tfneuro.metrics`.

One row per (subject, class): Dice, precision (paper 001 eq. 1), HD95 and MSD in mm (paper
004), voxel counts of the reference and the prediction, and the class name from the label
scheme. ``regroup_to`` evaluates after mapping both maps to another scheme with
:func:`tfneuro.io.labels.regroup` (e.g. paper 004's MRBrainS grouping ``neobrains12 ->
mrbrains13``). Used by ``experiments/evaluate.py`` and the training scripts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tfneuro.errors import InputError
from tfneuro.metrics.overlap import dice_score, precision_score
from tfneuro.metrics.surface import hausdorff_distance, mean_surface_distance

__all__ = ["evaluation_table", "summarize_table", "TABLE_COLUMNS"]

#: Columns of :func:`evaluation_table`, in order.
TABLE_COLUMNS = ("subject", "label", "name", "dice", "precision", "hd95_mm", "msd_mm",
                 "reference_voxels", "predicted_voxels")


def evaluation_table(reference, prediction, spacing, *, subject: str = "", scheme="tissue4",
                     labels=None, regroup_to=None, distances: bool = True,
                     hd_percentile: float = 95) -> pd.DataFrame:
    """Metrics of one subject, one row per foreground class.

    Args:
        reference: reference (manual) label map of class ids.
        prediction: predicted label map, same shape.
        spacing: voxel size in mm (a number or one per axis).
        subject: subject id written in the ``subject`` column.
        scheme: label scheme name (class names), or a list of class names.
        labels: class ids to score; default every foreground class of the scheme (1..K-1).
        regroup_to: scheme to regroup both maps to first (``tfneuro.io.labels.regroup``);
            names and labels then come from that scheme.
        distances: compute HD95 and MSD (the slow part); otherwise those columns are NaN.
        hd_percentile: the Hausdorff percentile (95 = HD95).

    Returns:
        DataFrame with :data:`TABLE_COLUMNS`. Dice is 1 and distances 0 for a class absent
        from both maps; Dice 0 and distances inf when absent from one (see the metrics).
    """
    from tfneuro.io.labels import get_scheme, regroup

    a, b = np.asarray(reference), np.asarray(prediction)
    if a.shape != b.shape:
        raise InputError("label maps", f"subject {subject}: shapes differ: {a.shape} vs {b.shape}")
    if regroup_to is not None:
        if isinstance(scheme, (list, tuple)):
            raise InputError("regroup_to", "needs a named source scheme, not a list of names")
        a, b = regroup(a, scheme, regroup_to), regroup(b, scheme, regroup_to)
        scheme = regroup_to
    names = list(scheme) if isinstance(scheme, (list, tuple)) else list(get_scheme(scheme).names)
    if labels is None:
        labels = list(range(1, len(names)))
    labels = [int(x) for x in labels]
    bad = [x for x in labels if not 0 <= x < len(names)]
    if bad:
        raise InputError("labels", f"class ids {bad} outside 0..{len(names) - 1}")
    dice = dice_score(a, b, labels)
    prec = precision_score(a, b, labels)
    if distances:
        hd = hausdorff_distance(a, b, spacing, percentile=hd_percentile, labels=labels)
        msd = mean_surface_distance(a, b, spacing, labels=labels)
    else:
        hd = msd = {x: float("nan") for x in labels}
    rows = [{"subject": subject, "label": x, "name": names[x], "dice": dice[x],
             "precision": prec[x], "hd95_mm": hd[x], "msd_mm": msd[x],
             "reference_voxels": int((a == x).sum()), "predicted_voxels": int((b == x).sum())}
            for x in labels]
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def summarize_table(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and SD (ddof=1) over subjects per class of an :func:`evaluation_table` (or their
    concatenation), plus a ``mean`` row averaging the per-class means over classes."""
    metrics = [c for c in ("dice", "precision", "hd95_mm", "msd_mm") if c in table.columns]
    g = table.groupby(["label", "name"], sort=True)[metrics]
    mean, sd = g.mean(), g.std(ddof=1)
    out = mean.add_suffix("_mean").join(sd.add_suffix("_sd")).reset_index()
    overall = {"label": -1, "name": "mean"}
    overall.update({f"{m}_mean": float(mean[m].mean()) for m in metrics})
    overall.update({f"{m}_sd": float("nan") for m in metrics})
    return pd.concat([out, pd.DataFrame([overall])], ignore_index=True)
