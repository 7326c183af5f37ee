"""Overlap metrics on numpy label maps: Dice, precision (paper 001 "accuracy"), confusion matrix.

Conventions (all functions):

* ``a`` is the REFERENCE (manual) segmentation and ``b`` the PREDICTION (paper 001: "A and B
  denote the segmentation labels generated manually and computationally").
* ``labels=None`` evaluates every non-zero label present in ``a`` or ``b`` (0 is background);
  pass ``labels`` to choose (labels absent from both maps are reported, see below).
* Empty structures: a label absent from BOTH maps scores 1.0 (perfect agreement on "nothing");
  a label absent from exactly one map scores 0.0. Never a crash or a division by zero.
"""

from __future__ import annotations

import numpy as np

from tfneuro.errors import InputError


def _check_pair(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise InputError("label maps", f"shapes differ: {a.shape} vs {b.shape}")
    return a, b


def _labels(a, b, labels):
    if labels is None:
        found = np.union1d(np.unique(a), np.unique(b))
        return [x.item() for x in found if x != 0]
    return list(labels)


def dice_score(a, b, labels=None):
    """Dice ``2|A∩B| / (|A| + |B|)`` per label (paper 001 eq. 2; paper 004 "DC").

    Args:
        a: reference label map (any shape).
        b: predicted label map, same shape.
        labels: labels to score; None = every non-zero label present in a or b.

    Returns:
        ``{label: float}``; 1.0 when the label is absent from both, 0.0 when absent from one.
    """
    a, b = _check_pair(a, b)
    out = {}
    for lab in _labels(a, b, labels):
        ma, mb = a == lab, b == lab
        total = int(ma.sum()) + int(mb.sum())
        out[lab] = 1.0 if total == 0 else 2.0 * int(np.logical_and(ma, mb).sum()) / total
    return out


def precision_score(a, b, labels=None):
    """Precision ``|A∩B| / |B|`` per label: paper 001 eq. 1 ("accuracy").

    ``a`` is the manual reference (A), ``b`` the prediction (B), so this is the share of the
    predicted voxels that are right.

    Args:
        a: reference label map.
        b: predicted label map, same shape.
        labels: labels to score; None = every non-zero label present in a or b.

    Returns:
        ``{label: float}``; 1.0 when the label is absent from both, 0.0 when it is predicted
        nowhere but present in the reference.
    """
    a, b = _check_pair(a, b)
    out = {}
    for lab in _labels(a, b, labels):
        ma, mb = a == lab, b == lab
        nb = int(mb.sum())
        if nb == 0:
            out[lab] = 1.0 if not ma.any() else 0.0
        else:
            out[lab] = int(np.logical_and(ma, mb).sum()) / nb
    return out


def confusion_matrix(a, b, num_classes=None):
    """Voxel confusion matrix: rows = reference class (``a``), columns = predicted class (``b``).

    Args:
        a: reference label map of non-negative ints.
        b: predicted label map, same shape.
        num_classes: matrix size; None = ``max(a.max(), b.max()) + 1``.

    Returns:
        int64 array ``[K, K]``; ``M[i, j]`` = voxels labelled ``i`` in a and ``j`` in b.
    """
    a, b = _check_pair(a, b)
    a, b = a.astype(np.int64).ravel(), b.astype(np.int64).ravel()
    if a.size and min(a.min(), b.min()) < 0:
        raise InputError("label maps", "negative labels")
    k = int(max(a.max(initial=0), b.max(initial=0)) + 1) if num_classes is None else int(num_classes)
    if a.size and max(a.max(), b.max()) >= k:
        raise InputError("confusion_matrix(num_classes)", f"{k} is too small for the labels")
    return np.bincount(a * k + b, minlength=k * k).reshape(k, k)
