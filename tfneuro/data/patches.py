"""Random 3D patch datasets (TensorFlow-only code: tf.data).

Paper 002 (section 2, "Pipeline Design"): "We cropped training and validation images to
non-zero value regions using a bounding box ... We cropped the images into patches and we
introduced a range of spatial and intensity-based transformations". :func:`patch_dataset`
decodes each volume once per epoch, optionally crops it to the bounding box of its non-zero
voxels, augments it, and samples ``patches_per_volume`` patches from it, either uniformly or
class-balanced (a class is drawn uniformly among the classes present, then a patch centre
uniformly among that class's voxels — the sampling MONAI calls RandCropByLabelClasses; the
paper does not specify its sampler, so this is our choice for small structures).
"""

from __future__ import annotations

import numpy as np

from tfneuro.data import pipeline
from tfneuro.data.augment import pad_to_shape
from tfneuro.data.options import Batching, VolumeSource, split_options
from tfneuro.errors import InputError

CROPS = ("nonzero", "foreground", None)


def nonempty_mask(x) -> np.ndarray:
    """Voxels of ``x [X,Y,Z,C]`` that hold signal in at least one channel.

    A channel's background is 0 (a raw scan's zero padding or stripped background) and its
    minimum: z-scoring, min-max scaling and histogram equalisation are monotone, so they map
    a zero background to the channel's minimum (z-score: ``-mean/sd``, not 0). Testing both
    makes the "nonzero" crop and the sliding window's empty-window skipping find the same box
    on a normalised volume as on the raw one (on a raw image >= 0 it is ``x != 0``).
    """
    x = np.asarray(x)
    if x.size == 0:
        return np.zeros(x.shape[:-1], bool)
    lo = x.reshape(-1, x.shape[-1]).min(axis=0)
    return np.any((x != 0) & (x != lo), axis=-1)


def bbox_crop(x, y, w, crop_to="nonzero", margin: int = 2):
    """Crop ``x [X,Y,Z,C]``, ``y``, ``w`` to the bounding box (+ ``margin`` voxels) of the
    voxels with signal (any channel, :func:`nonempty_mask`; "nonzero") or of label > 0
    ("foreground")."""
    if crop_to is None:
        return x, y, w
    if crop_to == "nonzero":
        m = nonempty_mask(x)
    elif crop_to == "foreground":
        m = y > 0
    else:
        raise InputError("crop_to", f"{crop_to!r}: use one of {list(CROPS)}")
    if not m.any():
        return x, y, w
    idx = np.argwhere(m)
    lo = np.maximum(idx.min(0) - margin, 0)
    hi = np.minimum(idx.max(0) + 1 + margin, m.shape)
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    return x[sl], y[sl], w[sl]


def sample_patches(x, y, w, patch_size, n, rng, class_balanced=True, class_probs=None):
    """Cut ``n`` patches of ``patch_size`` from a volume (zero-padded up to the patch size).

    Args:
        x, y, w: ``[X,Y,Z,C]``, ``[X,Y,Z]``, ``[X,Y,Z]``.
        patch_size: 3 ints.
        n: number of patches.
        rng: numpy Generator.
        class_balanced: draw a class (uniformly among the present ones, or by
            ``class_probs``), then a centre among its voxels; else uniform positions.
        class_probs: optional dict class id -> relative probability.

    Returns:
        ``(xs [n,*P,C], ys [n,*P], ws [n,*P])``.
    """
    p = tuple(int(s) for s in patch_size)
    x, y, w = (pad_to_shape(a, p) for a in (x, y, w))
    shape = np.array(y.shape)
    hi = shape - np.array(p)  # max start per axis
    classes = np.unique(y)
    if class_probs is not None:
        classes = np.array([c for c in classes if class_probs.get(int(c), 0) > 0])
    xs, ys, ws = [], [], []
    for _ in range(n):
        if class_balanced and len(classes):
            if class_probs is not None:
                pr = np.array([class_probs[int(c)] for c in classes], float)
                cls = rng.choice(classes, p=pr / pr.sum())
            else:
                cls = rng.choice(classes)
            vox = np.flatnonzero(y.reshape(-1) == cls)
            centre = np.array(np.unravel_index(vox[rng.integers(len(vox))], y.shape))
            start = np.clip(centre - np.array(p) // 2, 0, hi)
        else:
            start = np.array([rng.integers(0, h + 1) for h in hi])
        sl = tuple(slice(int(a), int(a) + s) for a, s in zip(start, p))
        xs.append(x[sl])
        ys.append(y[sl])
        ws.append(w[sl])
    return (np.stack(xs).astype(np.float32), np.stack(ys).astype(np.int32),
            np.stack(ws).astype(np.float32))


def patch_dataset(cohort, *, patch_size=(96, 96, 96), patches_per_volume: int = 4,
                  crop_to="nonzero", class_balanced: bool = True, class_probs=None,
                  two_arm: bool = False, augment=None, source: VolumeSource | None = None,
                  batching: Batching | None = None, **fields):
    """Random 3D patches (paper 002), ``patches_per_volume`` per decoded volume per epoch.

    TensorFlow-only (tf.data). Elements: ``x [*patch_size, C]`` float32, ``y [*patch_size]``
    int32, with weights also ``w [*patch_size]`` float32 (shapes fully known).

    Args:
        cohort: DataFrame or CSV path.
        patch_size: spatial patch size (paper 000 / 002 use 96^3 windows).
        patches_per_volume: patches cut from each volume per epoch.
        crop_to: "nonzero" (paper 002's bounding box of non-zero voxels), "foreground"
            (label > 0) or None; applied before augmentation.
        class_balanced: class-balanced patch centres (see module doc); else uniform.
        class_probs: optional dict class id -> relative probability of being the centre.
        two_arm: x as ``(t1, t2)``.
        augment: :class:`tfneuro.data.augment.Compose` applied to the cropped volume.
        source, batching, **fields: as in :func:`tfneuro.data.slices.slice_dataset` (the
            default shuffle buffer here is 16 patches).

    Returns:
        tf.data.Dataset of ``(x, y)`` or ``(x, y, w)``.
    """
    source, batching = split_options(source, batching, fields, shuffle_buffer=16)
    if crop_to not in CROPS:
        raise InputError("crop_to", f"{crop_to!r}: use one of {list(CROPS)}")
    p = tuple(int(s) for s in (patch_size if not np.isscalar(patch_size)
                               else (patch_size,) * 3))
    if len(p) != 3 or min(p) < 1:
        raise InputError("patch_size", f"{patch_size}: need three positive sizes")
    n = int(patches_per_volume)
    if n < 1:
        raise InputError("patches_per_volume", f"{patches_per_volume}: need >= 1")
    ds = pipeline.decoded_volumes(cohort, source, batching, two_arm=two_arm)

    def _cut(x, y, w, rng):
        x, y, w = bbox_crop(x, y, w, crop_to)
        if augment is not None:
            x, y, w = augment(x, y, w, rng=rng)
        return sample_patches(x, y, w, p, n, rng, class_balanced, class_probs)

    c = source.channels
    ds = pipeline.cut_volumes(ds, _cut, (n,) + p + (c,), (n,) + p, batching)
    return pipeline.finish(ds, source, batching, two_arm=two_arm)
