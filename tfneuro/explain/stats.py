"""Grad-CAM heatmap statistics as in NEC-NET's Table 4 (paper 000 section 3.2).

Paper 000: "we calculated the 95th percentile threshold of the normalized neurocranium
heatmaps and used an ANOVA test to perform statistical analysis between different age groups
... p < 0.01 as significance." Table 4 reports, per age group, mean (± standard deviation) of
the subjects' 95th percentiles, and one p value.

Choices (the paper does not say): the normalisation is a z-score of each heatmap (Table 4's
values exceed 1, so it is not min-max to [0, 1]; ``method="minmax"`` and ``"max"`` are
available); voxels may be restricted to a mask (e.g. the neurocranium); SD is the sample
standard deviation (ddof=1); the test is a one-way ANOVA, ``scipy.stats.f_oneway``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from tfneuro.errors import InputError
from tfneuro.utils.atomic import atomic_path

_METHODS = ("zscore", "minmax", "max", None)


def normalize_heatmap(heatmap, method="zscore", mask=None):
    """Normalise one heatmap over its (masked) voxels.

    Args:
        heatmap: array of any shape.
        method: "zscore" ((h - mean) / sd), "minmax" (to [0, 1]), "max" (h / max) or None.
        mask: optional boolean array of the same shape; only these voxels are used and returned.

    Returns:
        1D float64 array of the normalised (masked) values.
    """
    if method not in _METHODS:
        raise InputError("method", f"must be one of {_METHODS}, got {method!r}")
    h = np.asarray(heatmap, dtype=np.float64)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != h.shape:
            raise InputError("mask", f"shape {mask.shape} differs from the heatmap's {h.shape}")
        h = h[mask]
    h = h.ravel()
    if h.size == 0:
        raise InputError("mask", "selects no voxels")
    if method == "zscore":
        sd = h.std()
        return (h - h.mean()) / sd if sd > 0 else h - h.mean()
    if method == "minmax":
        rng = h.max() - h.min()
        return (h - h.min()) / rng if rng > 0 else np.zeros_like(h)
    if method == "max":
        return h / h.max() if h.max() > 0 else h
    return h


def heatmap_percentile(heatmap, q=95, method="zscore", mask=None):
    """The ``q``-th percentile of a normalised heatmap (paper 000: q = 95)."""
    return float(np.percentile(normalize_heatmap(heatmap, method, mask), q))


def heatmap_anova_table(values, groups=None, group_order=None, csv_path=None,
                        value_name="95th percentile", decimals=4):
    """Table 4 of paper 000: mean ± SD per group, one-way ANOVA F and p.

    Args:
        values: per-subject values (e.g. :func:`heatmap_percentile`), a sequence, or a DataFrame
            with columns ``group`` and ``value``.
        groups: per-subject group labels (e.g. age in months) when ``values`` is a sequence.
        group_order: column order (default: sorted group labels).
        csv_path: if given, the table is written there (atomically).
        value_name: the row label.
        decimals: decimals in the "mean ± SD" cells.

    Returns:
        A one-row DataFrame: a column per group holding ``"mean ± sd"``, then ``"F"`` and
        ``"p value"`` (floats). ``df.attrs`` holds the numbers: ``mean``, ``sd``, ``n`` per group.
    """
    if isinstance(values, pd.DataFrame):
        missing = {"group", "value"} - set(values.columns)
        if missing:
            raise InputError("values", f"DataFrame lacks column(s) {sorted(missing)}")
        df = values[["group", "value"]].copy()
    else:
        if groups is None or len(groups) != len(values):
            raise InputError("groups", "give one group label per value")
        df = pd.DataFrame({"group": list(groups), "value": np.asarray(values, dtype=float)})
    order = list(group_order) if group_order is not None else sorted(df["group"].unique())
    samples = [df.loc[df["group"] == g, "value"].to_numpy(dtype=float) for g in order]
    bad = [str(g) for g, s in zip(order, samples) if len(s) < 2]
    if len(order) < 2 or bad:
        raise InputError("groups", "ANOVA needs >= 2 groups with >= 2 subjects each"
                         + (f"; too few in {', '.join(bad)}" if bad else ""))
    f_stat, p_value = stats.f_oneway(*samples)
    means = [float(s.mean()) for s in samples]
    sds = [float(s.std(ddof=1)) for s in samples]
    row = {str(g): f"{m:.{decimals}f} ± {sd:.{decimals}f}" for g, m, sd in zip(order, means, sds)}
    row["F"] = float(f_stat)
    row["p value"] = float(p_value)
    table = pd.DataFrame([row], index=pd.Index([value_name], name="Age group"))
    table.attrs = {"mean": dict(zip(map(str, order), means)),
                   "sd": dict(zip(map(str, order), sds)),
                   "n": {str(g): len(s) for g, s in zip(order, samples)}}
    if csv_path is not None:
        with atomic_path(csv_path) as tmp:
            table.to_csv(tmp)
    return table


def heatmap_statistics(heatmaps, groups, q=95, method="zscore", masks=None, group_order=None,
                       csv_path=None):
    """Per-subject ``q``-th percentile of each normalised heatmap, then :func:`heatmap_anova_table`.

    Args:
        heatmaps: iterable of per-subject heatmaps (e.g. 3D Grad-CAM maps).
        groups: per-subject group labels (age groups in months).
        q: percentile (95).
        method: normalisation (see :func:`normalize_heatmap`).
        masks: optional per-subject masks (e.g. the neurocranium).
        group_order: column order of the table.
        csv_path: optional CSV output (atomic).

    Returns:
        (per-subject DataFrame with ``group`` and ``value``, the table).
    """
    heatmaps = list(heatmaps)
    masks = [None] * len(heatmaps) if masks is None else list(masks)
    if len(groups) != len(heatmaps) or len(masks) != len(heatmaps):
        raise InputError("groups", "give one group label (and mask) per heatmap")
    per_subject = pd.DataFrame({
        "group": list(groups),
        "value": [heatmap_percentile(h, q, method, m) for h, m in zip(heatmaps, masks)]})
    return per_subject, heatmap_anova_table(per_subject, group_order=group_order,
                                            csv_path=csv_path, value_name=f"{q}th percentile")
