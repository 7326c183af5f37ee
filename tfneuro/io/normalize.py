"""Intensity normalisation of MR volumes (numpy / scikit-image).

- :func:`zscore`: clip to percentiles, then subtract the mean and divide by the standard
  deviation (statistics over ``mask`` if given).
- :func:`minmax`: clip to percentiles, then scale to [0, 1].
- :func:`histogram_equalize`: ``skimage.exposure.equalize_hist``; paper 004 (section 3,
  "Pre-processing") begins with "an histogram equalization of the whole MR volume", which is
  the default here (``mask=None``).
"""

from __future__ import annotations

import numpy as np
from skimage import exposure

from tfneuro.errors import InputError

__all__ = ["zscore", "minmax", "histogram_equalize", "percentile_clip"]


def _values(data: np.ndarray, mask) -> np.ndarray:
    if mask is None:
        return data.ravel()
    mask = np.asarray(mask)
    if mask.shape != data.shape:
        raise InputError("mask", f"shape {mask.shape} differs from the data shape {data.shape}")
    vals = data[mask.astype(bool)]
    if vals.size == 0:
        raise InputError("mask", "mask is empty")
    return vals


def percentile_clip(data, percentiles=(0.5, 99.5), mask=None) -> np.ndarray:
    """Clip ``data`` to its ``percentiles`` (computed over ``mask`` if given); float32.

    Args:
        data: array.
        percentiles: (low, high) in percent, or ``None`` for no clipping.
        mask: optional boolean array with ``data``'s shape.
    """
    data = np.asarray(data, dtype=np.float32)
    if percentiles is None:
        return data.copy()
    lo_p, hi_p = percentiles
    if not 0 <= lo_p < hi_p <= 100:
        raise InputError("percentiles", f"need 0 <= low < high <= 100, got {percentiles!r}")
    lo, hi = np.percentile(_values(data, mask), [lo_p, hi_p])
    return np.clip(data, lo, hi)


def zscore(data, mask=None, percentiles=(0.5, 99.5)) -> np.ndarray:
    """Percentile clip, then z-score: ``(x - mean) / std``.

    Args:
        data: array (any shape).
        mask: optional boolean array; percentiles, mean and std are computed inside it (the
            transform is applied to every voxel; background outside the mask is not zeroed).
        percentiles: clipping percentiles (low, high) or ``None``.

    Returns:
        float32 array; a constant input gives zeros.
    """
    x = percentile_clip(data, percentiles, mask)
    vals = _values(x, mask).astype(np.float64)
    mean, std = vals.mean(), vals.std()
    out = (x - mean) / std if std > 0 else x - mean
    return out.astype(np.float32)


def minmax(data, percentiles=(0.5, 99.5), mask=None) -> np.ndarray:
    """Percentile clip, then scale linearly so the clipped range maps to [0, 1].

    Args:
        data: array.
        percentiles: clipping percentiles (low, high) or ``None`` (use min and max).
        mask: optional boolean array for the percentiles.

    Returns:
        float32 array in [0, 1]; a constant input gives zeros.
    """
    x = percentile_clip(data, percentiles, mask)
    vals = _values(x, mask)
    lo, hi = float(vals.min()), float(vals.max())
    if hi <= lo:
        return np.zeros_like(x)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def histogram_equalize(data, mask=None, nbins: int = 256) -> np.ndarray:
    """Histogram equalisation (paper 004, section 3: of the whole MR volume) via skimage.

    Args:
        data: array.
        mask: optional boolean array; the histogram is built from the voxels in the mask only
            (``skimage.exposure.equalize_hist(..., mask=)``), all voxels are mapped.
        nbins: histogram bins.

    Returns:
        float32 array in [0, 1] (the intensity's cumulative distribution).
    """
    data = np.asarray(data, dtype=np.float32)
    if mask is not None:
        _values(data, mask)  # validates shape and non-emptiness
        mask = np.asarray(mask).astype(bool)
    if int(nbins) < 2:
        raise InputError("nbins", f"must be >= 2, got {nbins!r}")
    return exposure.equalize_hist(data, nbins=int(nbins), mask=mask).astype(np.float32)
