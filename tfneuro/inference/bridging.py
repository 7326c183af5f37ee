"""NEC-NET's in-slice gap bridging (paper 000 section 2.3.1, eq. 1).

Paper 000: "there were discontinuous distributions in the head surface region in the
prediction, resulting in holes ... For any two points (x1, y1) and (x2, y2), in each layer, if
(x2 - x1 + y2 - y1 + 2) <= θ ... then find a connection path r ... r_opt = min(Σ_{i,j in (I,J)}
r_ij - mask_ij) (1), where mask_ij indicates a region that is currently recognized as a mask".

Our reading, and how it is computed efficiently:

- Distance: ``|x2 - x1| + |y2 - y1| + 2 <= θ`` (absolute differences; the paper prints no
  bars), i.e. an L1 distance of at most ``θ - 2``, within each slice along ``axis``.
- Cost (eq. 1): a path pays 1 for each voxel it adds (non-mask) and nothing for mask voxels;
  we give mask voxels a cost of ``1e-3`` so that, among paths adding as few voxels as
  possible, the shortest is chosen. The path is found with scikit-image's minimum-cost-path
  routine (``skimage.graph.route_through_array``, 8-connected) inside the bounding box of the
  two points (the points' "coordinates (I, J)"); without that restriction two points of one
  C-shaped component would always be joined at zero cost around the C, and the gap would stay
  open. Only non-mask voxels on the path are added: bridging never removes voxels.
- Which pairs: trying every pair of mask points is O(n²) per slice. Any bridge lies in the gap
  region ``G = closing(mask, (2⌈(θ-2)/2⌉+1)² square) \\ mask`` (a gap of L1 width <= θ-2 is
  filled by that closing), so only mask boundary points touching ``G`` are candidates, and
  pairs are formed only between points touching the same component of ``G`` (``cKDTree``
  radius query in the L1 metric). Pairs are processed nearest first; a pair whose points are
  already connected through the mask inside its bounding box (e.g. after an earlier bridge, or
  around a concave corner) is skipped.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.graph import route_through_array

from tfneuro.errors import InputError
from tfneuro.utils.progress import progress

_EIGHT = np.ones((3, 3), dtype=bool)
_MASK_COST = 1e-3


def _bridge_slice(m, theta):
    """Bridge one 2D boolean slice in place; returns the number of voxels added."""
    r = int(theta) - 2  # largest L1 distance between two joined points
    if r < 2 or m.sum() < 2:  # L1 <= 1: the points already touch
        return 0
    rad = -(-r // 2)
    padded = np.pad(m, rad + 1)
    closed = ndimage.binary_closing(padded, structure=np.ones((2 * rad + 1,) * 2, bool))
    gap = (closed & ~padded)[rad + 1:-(rad + 1), rad + 1:-(rad + 1)]
    if not gap.any():
        return 0
    gap_lab, _ = ndimage.label(gap, structure=_EIGHT)
    boundary = m & ~ndimage.binary_erosion(m, structure=_EIGHT, border_value=0)
    touch_lab = ndimage.grey_dilation(gap_lab, footprint=_EIGHT)
    cand = boundary & (touch_lab > 0)
    pts = np.argwhere(cand)
    if len(pts) < 2:
        return 0
    gid = touch_lab[cand]
    pairs = cKDTree(pts).query_pairs(r, p=1, output_type="ndarray")
    if len(pairs) == 0:
        return 0
    pairs = pairs[gid[pairs[:, 0]] == gid[pairs[:, 1]]]
    dist = np.abs(pts[pairs[:, 0]] - pts[pairs[:, 1]]).sum(axis=1)
    pairs = pairs[np.argsort(dist, kind="stable")]
    added = 0
    for i, j in pairs:
        p, q = pts[i], pts[j]
        lo = np.minimum(p, q)
        hi = np.maximum(p, q) + 1
        box = m[lo[0]:hi[0], lo[1]:hi[1]]
        comp, _ = ndimage.label(box, structure=_EIGHT)
        a, b = tuple(p - lo), tuple(q - lo)
        if comp[a] == comp[b]:
            continue  # already connected inside the box
        cost = np.where(box, _MASK_COST, 1.0)
        path, _ = route_through_array(cost, a, b, fully_connected=True, geometric=False)
        path = np.asarray(path)
        new = ~box[path[:, 0], path[:, 1]]
        added += int(new.sum())
        box[path[:, 0], path[:, 1]] = True  # a view into m: only adds
    return added


def bridge_gaps(mask, theta, axis=2):
    """Join mask points closer than θ within each slice (paper 000 eq. 1); only adds voxels.

    Args:
        mask: 3D (or 2D) array; nonzero = mask (e.g. the predicted neurocranium).
        theta: the paper's threshold θ: points with ``|dx| + |dy| + 2 <= θ`` in one slice are
            joined along the least-cost path (cost 1 per added voxel). The paper gives no value.
        axis: slicing axis for 3D masks (2 = axial slices on a RAS grid).

    Returns:
        A copy of ``mask`` (same dtype) with the bridge voxels set to 1/True.
    """
    arr = np.asarray(mask)
    if arr.ndim not in (2, 3):
        raise InputError("mask", f"expected a 2D or 3D mask, got shape {arr.shape}")
    if isinstance(theta, bool) or not isinstance(theta, (int, np.integer, float)) or theta < 0:
        raise InputError("theta", f"must be a non-negative number, got {theta!r}")
    if arr.ndim == 3 and axis not in (0, 1, 2, -1, -2, -3):
        raise InputError("axis", f"must be 0, 1 or 2, got {axis!r}")
    theta = int(np.floor(theta))
    m = arr != 0
    if arr.ndim == 2:
        _bridge_slice(m, theta)
    else:
        view = np.moveaxis(m, axis, 0)  # a view: slices write into m
        for k in progress(range(view.shape[0]), desc="bridging", unit="slice"):
            if view[k].any():
                sl = np.ascontiguousarray(view[k])
                if _bridge_slice(sl, theta):
                    view[k] = sl
    out = arr.copy()
    out[m & (arr == 0)] = True if arr.dtype == bool else 1
    return out


def necnet_postprocess(mask, theta, axis=2):
    """NEC-NET's post-processing (paper 000 section 2.3.1): the largest connected component
    ("maximum connected region algorithm"), then :func:`bridge_gaps`.

    Args:
        mask: 3D binary mask (nonzero = neurocranium).
        theta: bridging threshold θ (see :func:`bridge_gaps`).
        axis: slicing axis for bridging.

    Returns:
        uint8 mask.
    """
    from tfneuro.inference.postprocess import largest_component_per_label

    arr = np.asarray(mask)
    if arr.ndim != 3:
        raise InputError("mask", f"expected a 3D mask, got shape {arr.shape}")
    binary = (arr != 0).astype(np.uint8)
    return bridge_gaps(largest_component_per_label(binary), theta, axis=axis)
