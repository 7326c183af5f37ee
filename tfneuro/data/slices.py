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
from tfneuro.data.options import Batching, VolumeSource, split_options
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


def slice_dataset(cohort, *, axis="axial", stack: int = 1, two_arm: bool = False,
                  drop_empty: bool = False, pad_to=None, multiple=None, augment=None,
                  source: VolumeSource | None = None, batching: Batching | None = None,
                  **fields):
    """2D slices (or odd-sized slice stacks) from every subject of a cohort.

    TensorFlow-only (tf.data). Elements (before batching): ``x [H, W, C*stack]`` float32,
    ``y [H, W]`` int32, and with weights ``w [H, W]`` float32; ``two_arm=True`` gives
    ``x = (t1 [H, W, stack], t2 [H, W, stack])``. H, W are known when ``pad_to`` is given,
    else ``None`` (batching then uses ``padded_batch``).

    Args:
        cohort: DataFrame or CSV path (:mod:`tfneuro.data.cohort`).
        axis: "axial", "coronal", "sagittal" (or 0/1/2; :mod:`tfneuro.io.views`).
        stack: 1 for plain slices, 3 for paper 004's n-1, n, n+1 stacks.
        two_arm: split x into ``(t1, t2)`` (needs exactly two modalities).
        drop_empty: drop slices whose labels are all background (and, with weights, slices
            whose weights are all zero).
        pad_to: fixed 3D shape each volume is centre padded/cropped to (after augmentation).
        multiple: zero-pad each volume axis to a multiple of this.
        augment: a :class:`tfneuro.data.augment.Compose` (or any stage) applied to each
            decoded 3D volume, seeded per volume and epoch from the seed.
        source: what each subject contributes (:class:`~tfneuro.data.VolumeSource`:
            modalities, label, weights, scheme, normalize, split, cache).
        batching: how slices are streamed (:class:`~tfneuro.data.Batching`: batch_size,
            shuffle, shuffle_buffer (default 256 slices), drop_remainder, seed,
            num_parallel_calls, prefetch).
        **fields: fields of ``source`` or ``batching`` given directly, e.g.
            ``modalities=("t1", "t2"), batch_size=16``.

    Returns:
        tf.data.Dataset of ``(x, y)`` or ``(x, y, w)``.
    """
    source, batching = split_options(source, batching, fields, shuffle_buffer=256)
    a = view_axis(axis)
    if stack < 1 or stack % 2 == 0:
        raise InputError("stack", f"{stack}: use an odd number of slices (1 or 3)")
    ds = pipeline.decoded_volumes(cohort, source, batching, two_arm=two_arm, pad_to=pad_to,
                                  multiple=multiple)
    c = source.channels * stack
    hw = (None, None) if pad_to is None else tuple(int(d) for i, d in enumerate(pad_to) if i != a)
    weighted = source.weights is not None

    def _cut(x, y, w, rng):
        if augment is not None:
            x, y, w = augment(x, y, w, rng=rng)
            x, y, w = fit_shape(x, y, w, pad_to, multiple)
        xs = volume_to_slices(x, a, stack)
        ys = label_slices(y, a).astype(np.int32)
        ws = label_slices(w, a).astype(np.float32)
        if drop_empty:
            keep = ys.reshape(len(ys), -1).any(axis=1)
            if weighted:
                keep &= ws.reshape(len(ws), -1).any(axis=1)
            xs, ys, ws = xs[keep], ys[keep], ws[keep]
        return xs, ys, ws

    ds = pipeline.cut_volumes(ds, _cut, (None,) + hw + (c,), (None,) + hw, batching)
    return pipeline.finish(ds, source, batching, two_arm=two_arm)


def rgb_slice_dataset(cohort, *, modality="t2", axis="axial", normalize="histeq", **kwargs):
    """Paper 004's 3-slice "RGB" inputs: slices n-1, n, n+1 of one modality as 3 channels,
    zeros outside the volume; histogram equalisation of the whole volume first (paper 004,
    section 3, "Pre-processing"; T2 for neonates, T1 for adults).

    TensorFlow-only. Same keyword arguments as :func:`slice_dataset` (``stack=3``), with the
    one modality given as ``modality``.
    The per-channel ImageNet mean subtraction belongs to the model (paper 004 builds on VGG16).
    """
    return slice_dataset(cohort, axis=axis, modalities=(modality,), normalize=normalize,
                         stack=3, **kwargs)
