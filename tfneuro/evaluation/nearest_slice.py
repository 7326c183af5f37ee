"""The nearest-labelled-slice baseline for label budgets (paper 002, "Label Budgeting
Experiments": only a share of the 2D slices of a volume along one axis is labelled).

numpy only. Every unlabelled slice takes the labels of the nearest labelled slice: what simply
copying the labelled slices gives, the baseline a network trained on a slice budget must beat
on the slices it never saw labelled. :func:`nearest_slice_fill` does the same for a volume
labelled by several budgets at once (a scan repeated in a budget run, each repeat with its own
slices, possibly along different axes).
"""

from __future__ import annotations

import numpy as np

from tfneuro.errors import InputError

__all__ = ["nearest_slice_baseline", "nearest_slice_fill"]


def nearest_slice_baseline(labels, labelled_mask, axis: int = 2) -> np.ndarray:
    """Fill every unlabelled slice with the labels of the nearest labelled slice.

    Args:
        labels: label map (any dimensionality >= 2); only its labelled slices are read.
        labelled_mask: which slices along ``axis`` are labelled: a boolean vector with one
            entry per slice, or a mask with ``labels``' shape that is constant within each
            slice (e.g. a label-budget weight map, :func:`tfneuro.data.budget.budget_weights`).
        axis: the slicing axis (paper 002's budgets: 0 sagittal, 1 coronal, 2 axial on RAS).

    Returns:
        A copy of ``labels`` where slice ``i`` holds labelled slice ``j`` minimising
        ``|i - j|`` (a tie goes to the lower index); labelled slices are unchanged.
    """
    labels = np.asarray(labels)
    axis = _check_axis(labels, axis)
    source, _ = _nearest_source(_slice_flags(labels, labelled_mask, axis))
    return np.take(labels, source, axis=axis)


def nearest_slice_fill(labels, labelled_masks):
    """:func:`nearest_slice_baseline` over several slice budgets of one volume at once.

    For a volume labelled by several budget units (paper 002's repeated scans, each with its
    own slices, possibly along different axes for the "random" allocation): every voxel takes
    the label of the nearest labelled slice of any mask, the distance counted in slices along
    that mask's own axis. Masks along the same axis are pooled first (so they give exactly
    :func:`nearest_slice_baseline` of their union: ties to the lower slice); between axes a tie
    goes to the axis whose mask came first. Each mask must be whole slices along one axis
    (found from the mask itself).

    Args:
        labels: 3D label map (only its labelled slices are read).
        labelled_masks: masks shaped like ``labels`` (e.g. budget weight maps), at least one.

    Returns:
        ``(filled, distance)``: the filled label map and, per voxel, the distance in slices to
        the slice it was copied from (0 on labelled voxels).
    """
    labels = np.asarray(labels)
    masks = list(labelled_masks)
    if not masks:
        raise InputError("labelled_masks", "no mask given")
    per_axis = {}  # axis -> labelled slices, in the order the axes first appear
    for i, mask in enumerate(masks):
        mask = np.asarray(mask)
        if mask.shape != labels.shape:
            raise InputError(f"labelled_masks {i}", f"shape {mask.shape} differs from the "
                                                    f"labels' {labels.shape}")
        axis = _whole_slice_axis(mask != 0, i)
        flags = _slice_flags(labels, mask, axis)
        per_axis[axis] = per_axis[axis] | flags if axis in per_axis else flags
    out = dist = None
    for axis, flags in per_axis.items():
        source, d = _nearest_source(flags)
        shape = [1] * labels.ndim
        shape[axis] = labels.shape[axis]
        d = np.broadcast_to(d.reshape(shape), labels.shape)
        filled = np.take(labels, source, axis=axis)
        if out is None:
            out, dist = filled, d.copy()
            continue
        closer = d < dist
        out[closer] = filled[closer]
        dist[closer] = d[closer]
    return out, dist


def _check_axis(labels, axis) -> int:
    if labels.ndim < 2:
        raise InputError("labels", f"must have >= 2 dimensions, got shape {labels.shape}")
    if not -labels.ndim <= int(axis) < labels.ndim:
        raise InputError("axis", f"{axis} is not an axis of a {labels.ndim}D label map")
    return int(axis) % labels.ndim


def _whole_slice_axis(mask, index) -> int:
    """The axis along which ``mask`` is made of whole slices (the first, if several)."""
    for axis in range(mask.ndim):
        m = np.moveaxis(mask, axis, 0).reshape(mask.shape[axis], -1)
        if np.all(m.all(1) | ~m.any(1)):
            return axis
    raise InputError(f"labelled_masks {index}", "is not made of whole slices along one axis")


def _slice_flags(labels, labelled_mask, axis) -> np.ndarray:
    """One flag per slice along ``axis``: is it labelled."""
    n = labels.shape[axis]
    mask = np.asarray(labelled_mask)
    if mask.shape == labels.shape:
        m = np.moveaxis(mask != 0, axis, 0).reshape(n, -1)
        partial = np.flatnonzero(m.any(1) & ~m.all(1))
        if partial.size:
            raise InputError("labelled_mask", f"slice(s) {partial[:5].tolist()} along axis {axis} "
                                              "are only partly labelled")
        return m.all(1)
    if mask.shape == (n,):
        return mask.astype(bool)
    raise InputError("labelled_mask", f"shape {mask.shape}: give one flag per slice ({n},) "
                                      f"or a mask shaped like labels {labels.shape}")


def _nearest_source(per_slice):
    """For each slice, the nearest labelled slice (ties: the lower index) and its distance."""
    known = np.flatnonzero(per_slice)
    if known.size == 0:
        raise InputError("labelled_mask", "no slice is labelled")
    i = np.arange(per_slice.size)
    right = np.clip(np.searchsorted(known, i), 0, known.size - 1)
    left = np.clip(right - 1, 0, known.size - 1)
    use_left = np.abs(i - known[left]) <= np.abs(known[right] - i)
    source = np.where(use_left, known[left], known[right])
    return source, np.abs(i - source)
