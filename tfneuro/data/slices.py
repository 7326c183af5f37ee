"""2D slice datasets and 3-slice "RGB" stacks (TensorFlow-only code: tf.data).

- :func:`slice_dataset`: 2D slices along the axial / coronal / sagittal axis of one or more
  modalities (channels), optionally as a two-arm ``(t1, t2)`` input (InfiNet, paper 003).
- :func:`rgb_slice_dataset`: paper 004 (section 3, "3D-like" inputs): to segment slice n,
  slices n-1, n, n+1 are the red, green and blue channels; "if the slice n-1 or n+1 is out of
  the MR volume, an image with constant 0 is used instead".

A volume is decoded once per epoch (one ``tf.py_function`` call, :mod:`tfneuro.data.pipeline`)
and cut into its slices by a second numpy ``py_function``; the slices are ``unbatch``-ed,
shuffled in a buffer, batched and prefetched.

Axis convention on RAS volumes ``[X, Y, Z]``: sagittal = axis 0, coronal = axis 1,
axial = axis 2; a slice keeps the other two axes in order (axial slice = ``[X, Y]``).
"""

from __future__ import annotations

import numpy as np

from tfneuro.data import pipeline
from tfneuro.data.pipeline import fit_shape
from tfneuro.errors import InputError
from tfneuro.io.views import view_axis


def volume_to_slices(x: np.ndarray, axis, stack: int = 1) -> np.ndarray:
    """All slices of ``x [X,Y,Z,C]`` along ``axis`` -> ``[N, H, W, C*stack]``.

    With ``stack=3`` channel ``3*c + k`` holds modality c of slice ``n - 1 + k``; slices
    outside the volume are zeros (paper 004). ``stack`` must be odd.
    """
    if stack < 1 or stack % 2 == 0:
        raise InputError("stack", f"{stack}: use an odd number of slices (1 or 3)")
    a = view_axis(axis)
    s = np.moveaxis(np.asarray(x), a, 0)           # [N, H, W, C]
    if stack == 1:
        return np.ascontiguousarray(s, dtype=np.float32)
    h = stack // 2
    padded = np.pad(s, [(h, h)] + [(0, 0)] * (s.ndim - 1))
    n = s.shape[0]
    parts = [padded[k:k + n] for k in range(stack)]  # each [N, H, W, C]
    out = np.stack(parts, axis=-1)                   # [N, H, W, C, stack]
    return np.ascontiguousarray(out.reshape(out.shape[:3] + (-1,)), dtype=np.float32)


def label_slices(y: np.ndarray, axis) -> np.ndarray:
    """Slices of a ``[X,Y,Z]`` map along ``axis`` -> ``[N, H, W]``."""
    return np.ascontiguousarray(np.moveaxis(np.asarray(y), view_axis(axis), 0))


def slice_dataset(cohort, *, axis="axial", modalities=("t1",), label="label", weights=None,
                  scheme=None, normalize="zscore", stack: int = 1, two_arm: bool = False,
                  drop_empty: bool = False, pad_to=None, multiple=None, augment=None,
                  split=None, shuffle: bool = True, shuffle_buffer: int = 256,
                  batch_size: int | None = None, drop_remainder: bool = False, cache=False,
                  seed: int | None = 0, num_parallel_calls=None, prefetch: bool = True):
    """2D slices (or odd-sized slice stacks) from every subject of a cohort.

    TensorFlow-only (tf.data). Elements (before batching): ``x [H, W, C*stack]`` float32,
    ``y [H, W]`` int32, and with ``weights`` ``w [H, W]`` float32; ``two_arm=True`` gives
    ``x = (t1 [H, W, stack], t2 [H, W, stack])``. H, W are known when ``pad_to`` is given,
    else ``None`` (batching then uses ``padded_batch``).

    Args:
        cohort: DataFrame or CSV path (:mod:`tfneuro.data.cohort`).
        axis: "axial", "coronal", "sagittal" (or 0/1/2).
        modalities: cohort columns stacked as channels, e.g. ``("t1", "t2")``.
        label: label column (``None``: y is zeros).
        weights: voxel weights: ``None``, a column of weight-map paths, or a callable
            ``weights(row, y) -> array`` (see :func:`tfneuro.data.pipeline.load_subject`).
        scheme: label scheme name used to remap raw label values to class ids.
        normalize: per-volume, per-modality "zscore", "minmax", "histeq" (paper 004) or None.
        stack: 1 for plain slices, 3 for paper 004's n-1, n, n+1 stacks.
        two_arm: split x into ``(t1, t2)`` (needs exactly two modalities).
        drop_empty: drop slices whose labels are all background (and, with weights, slices
            whose weights are all zero).
        pad_to: fixed 3D shape each volume is centre padded/cropped to (after augmentation).
        multiple: zero-pad each volume axis to a multiple of this.
        augment: a :class:`tfneuro.data.augment.Compose` (or any stage) applied to each
            decoded 3D volume, seeded per volume and epoch from ``seed``.
        split: only rows of this split (or list of splits).
        shuffle: shuffle subjects and slices (buffer ``shuffle_buffer``).
        shuffle_buffer: slice shuffle buffer size.
        batch_size: batch size, or ``None`` for unbatched elements.
        drop_remainder: drop the last incomplete batch.
        cache: keep decoded volumes (before augmentation) in memory (True) or a file (path).
        seed: seed of shuffling and augmentation (``None``: nondeterministic).
        num_parallel_calls: parallelism of decoding and slicing (default AUTOTUNE).
        prefetch: prefetch with AUTOTUNE.

    Returns:
        tf.data.Dataset of ``(x, y)`` or ``(x, y, w)``.
    """
    import tensorflow as tf

    modalities = tuple(modalities)
    pipeline._check_two_arm(two_arm, modalities)
    a = view_axis(axis)
    if stack < 1 or stack % 2 == 0:
        raise InputError("stack", f"{stack}: use an odd number of slices (1 or 3)")
    rows = pipeline.prepare_rows(cohort, split, modalities, label)
    npc = num_parallel_calls or tf.data.AUTOTUNE
    ds = pipeline.decoded_volumes(rows, modalities=modalities, label=label, weights=weights,
                                  scheme=scheme, normalize=normalize, pad_to=pad_to,
                                  multiple=multiple, shuffle=shuffle, seed=seed, cache=cache,
                                  num_parallel_calls=npc)
    ds = pipeline.with_seeds(ds, seed)
    c = len(modalities) * stack
    if pad_to is not None:
        dims = [int(s) for s in pad_to]
        hw = tuple(d for i, d in enumerate(dims) if i != a)
    else:
        hw = (None, None)

    def _cut(x, y, w, rng):
        if augment is not None:
            x, y, w = augment(x, y, w, rng=rng)
            x, y, w = fit_shape(x, y, w, pad_to, multiple)
        xs = volume_to_slices(x, a, stack)
        ys = label_slices(y, a).astype(np.int32)
        ws = label_slices(w, a).astype(np.float32)
        if drop_empty:
            keep = ys.reshape(len(ys), -1).any(axis=1)
            if weights is not None:
                keep &= ws.reshape(len(ws), -1).any(axis=1)
            xs, ys, ws = xs[keep], ys[keep], ws[keep]
        return xs, ys, ws

    ds = pipeline.cut_volumes(ds, _cut, (None,) + hw + (c,), (None,) + hw,
                              num_parallel_calls=npc, seed=seed)
    return pipeline.finish(ds, has_weights=weights is not None, two_arm=two_arm,
                           batch_size=batch_size, shuffle=shuffle,
                           shuffle_buffer=shuffle_buffer, seed=seed, prefetch=prefetch,
                           drop_remainder=drop_remainder)


def rgb_slice_dataset(cohort, *, modality="t2", axis="axial", normalize="histeq", **kwargs):
    """Paper 004's 3-slice "RGB" inputs: slices n-1, n, n+1 of one modality as 3 channels,
    zeros outside the volume; histogram equalisation of the whole volume first (paper 004,
    section 3, "Pre-processing"; T2 for neonates, T1 for adults).

    TensorFlow-only. Same keyword arguments as :func:`slice_dataset` (``stack=3``).
    The per-channel ImageNet mean subtraction belongs to the model (paper 004 builds on VGG16).
    """
    return slice_dataset(cohort, axis=axis, modalities=(modality,), normalize=normalize,
                         stack=3, **kwargs)
