"""3D sliding-window inference with Gaussian (or constant) blending.

NEC-NET (paper 000 section 2.3.1) predicts "using the sliding window of 96*96*96 on the input
data"; paper 002's pipeline is MONAI-based and uses MONAI's ``sliding_window_inference``. This
module follows MONAI / nnU-Net: windows on a regular grid with step ``window * (1 - overlap)``
(the last window of each axis is shifted back to end at the border), each window's softmax
output weighted by an importance map (a Gaussian with ``sigma = sigma_scale * window``,
normalised to max 1, as ``monai.data.utils.compute_importance_map`` and nnU-Net's
``_get_gaussian``; or constant 1), summed, and divided by the summed weights.

Memory is bounded (never all windows at once): besides the caller's volume, the function holds

    4 * Xp*Yp*Zp * (K + 1)              output accumulator (float32) + weight map (float32)
  + 4 * B * Wx*Wy*Wz * (C + K)          one batch of input windows and of predictions
  + 4 * Wx*Wy*Wz                        the importance map
  + 4 * Xp*Yp*Zp * C                    a padded copy of the input, ONLY if some axis is
                                        smaller than the window
  + X*Y*Z*C                             transient booleans of the nonzero test (bbox; freed
                                        before the first window)

bytes, where ``(Xp, Yp, Zp)`` = ``max(volume shape, window)`` per axis, K classes, C channels,
B = ``batch_size``. (The model's own activations on the device come on top.) Example: a
256^3 volume, K=2, C=2, B=1, 96^3 windows: 4*256^3*3 + 4*96^3*4 + 4*96^3 = 201 MB + 14 MB +
3.5 MB ≈ 219 MB (+ 34 MB transient for the bbox). Measured with tracemalloc (numpy
allocations) on a 128^3 x 2-channel volume, K=2, B=2, 32^3 windows: peak 30.74 MB vs
30.54 MB from the formula.

Empty-window skipping (``skip_empty=True``): windows that lie entirely outside the bounding box
of the voxels with signal (any channel; a channel's 0 and its minimum are background, so a
z-scored volume gives the raw volume's box) are not run (paper 002 also crops to the nonzero
bounding box). Voxels covered only by skipped windows get background probability 1 (class 0 =
1, other classes 0); voxels covered by at least one computed window get the blend of the
computed windows only.

The model is called with ``model.predict_on_batch`` — Keras' compiled (``tf.function`` / jit)
predict step, traced once because every batch has the same shape (the last batch is padded with
empty windows whose predictions are discarded) — not ``model.predict`` per window.
"""

from __future__ import annotations

import itertools

import numpy as np

from tfneuro.data.patches import nonempty_mask
from tfneuro.errors import InputError
from tfneuro.inference import memory
from tfneuro.inference.precision import model_at_precision
from tfneuro.utils.precision import resolve_precision
from tfneuro.utils.progress import progress

_BLENDS = ("gaussian", "constant")


def importance_map(window, blend="gaussian", sigma_scale=0.125):
    """Per-voxel window weights (float32, max 1, strictly positive).

    Args:
        window: window size per axis.
        blend: "gaussian" (centre-weighted) or "constant" (all ones).
        sigma_scale: Gaussian sigma as a fraction of the window size per axis (0.125 = 1/8, the
            nnU-Net and MONAI default).
    """
    window = tuple(int(w) for w in window)
    if blend == "constant":
        return np.ones(window, dtype=np.float32)
    imp = np.ones((), dtype=np.float64)
    for w in window:
        sigma = max(sigma_scale * w, 1e-6)
        coord = np.arange(w, dtype=np.float64) - (w - 1) / 2.0
        imp = np.multiply.outer(imp, np.exp(-0.5 * (coord / sigma) ** 2))
    imp = (imp / imp.max()).astype(np.float32)
    if np.any(imp == 0):  # float32 underflow at far corners: keep every voxel weighted
        imp[imp == 0] = imp[imp > 0].min()
    return imp


def window_starts(size, window: int, overlap: float, xp=np):
    """Start indices of windows along one axis (MONAI/nnU-Net grid; last window flush).

    Windows start every ``step = max(1, int(window * (1 - overlap)))`` voxels;
    ``n = ceil((size - window) / step) + 1`` of them, the last moved back to end at ``size``
    (one window at 0 when ``size <= window``). Written once for both paths: ``size`` is an
    int with ``xp=numpy``, or a scalar tensor inside the exported graph with a namespace of
    TensorFlow ops (``arange``, ``minimum``, ``maximum``; :mod:`tfneuro.export.graph`).
    """
    step = max(1, int(window * (1.0 - overlap)))
    room = xp.maximum(size - window, 0)
    n = (room + step - 1) // step + 1
    return xp.minimum(xp.arange(n) * step, room)


def _nonzero_bbox(volume):
    """(lo, hi) per spatial axis of the voxels with signal (hi exclusive; 0 and each channel's
    minimum are background, :func:`tfneuro.data.patches.nonempty_mask`), or None if none."""
    nz = nonempty_mask(volume)
    lo, hi = [], []
    for axis in range(3):
        proj = np.any(nz, axis=tuple(a for a in range(3) if a != axis))
        idx = np.flatnonzero(proj)
        if idx.size == 0:
            return None
        lo.append(int(idx[0]))
        hi.append(int(idx[-1]) + 1)
    return lo, hi


def _select_output(pred, output_key):
    if isinstance(pred, dict):
        if output_key not in pred:
            raise InputError("output_key", f"model outputs {sorted(pred)}, not {output_key!r}")
        pred = pred[output_key]
    elif isinstance(pred, (list, tuple)):
        pred = pred[0]
    return np.asarray(pred, dtype=np.float32)


def sliding_window_predict(model, volume, window=(96, 96, 96), overlap=0.5, blend="gaussian",
                           batch_size=1, skip_empty=True, sigma_scale=0.125,
                           output_key="segmentation", num_classes=None, memory_budget=None,
                           precision="auto"):
    """Predict a whole volume with a 3D model by blended sliding windows.

    Args:
        model: a Keras model mapping ``[B, Wx, Wy, Wz, C]`` to probabilities
            ``[B, Wx, Wy, Wz, K]`` (a dict output is indexed by ``output_key``; a list output
            uses its first entry).
        volume: array ``[X, Y, Z, C]`` (``[X, Y, Z]`` is taken as C=1) on the model's grid.
        window: window size per axis (96^3 in paper 000). Must suit the model (e.g. multiples
            of 8 for ``unet3d``).
        overlap: fraction of overlap between neighbouring windows, in [0, 1).
        blend: "gaussian" or "constant".
        batch_size: windows per model call.
        skip_empty: skip windows entirely outside the bounding box of the voxels with signal.
        sigma_scale: Gaussian sigma as a fraction of the window (0.125).
        output_key: output to use when the model returns a dict (AgeU-Net).
        num_classes: K; only needed when every window is skipped and the model's output shape
            does not tell K.
        memory_budget: peak-memory budget checked before any work
            (:mod:`tfneuro.inference.memory`; default ``$TFNEURO_MEMORY_BUDGET`` or 80 % of
            available RAM; ``"off"`` disables). Raises ``MemoryBudgetError`` when exceeded.
        precision: ``"auto"`` (bfloat16 where the hardware has it natively, else float32),
            ``"float32"``, ``"bfloat16"`` or ``"float16"``: what the model computes in
            (:mod:`tfneuro.inference.precision`; ``model`` itself is not changed). The
            window probabilities are blended in float32 at every precision.

    Returns:
        float32 array ``[X, Y, Z, K]``: blended probabilities (see the module docstring for
        skipped regions).
    """
    volume, window, batch_size = _check_args(volume, window, overlap, blend, batch_size,
                                             sigma_scale)
    precision = resolve_precision(precision)

    def _estimate():
        k = int(num_classes or _static_classes(model) or 2)
        return memory.estimate_sliding_window_bytes(model, volume.shape, window,
                                                    batch_size=batch_size, num_classes=k,
                                                    input_dtype=volume.dtype)

    memory.check_memory(_estimate, memory_budget,
                        what=f"sliding-window inference on a {'x'.join(map(str, volume.shape))} volume",
                        advice=memory.sliding_window_advice(batch_size, window))
    shape = volume.shape[:3]
    padded = tuple(max(s, w) for s, w in zip(shape, window))
    before = tuple((p - s) // 2 for p, s in zip(padded, shape))
    vol = volume
    if padded != shape:
        pad = [(b, p - s - b) for b, p, s in zip(before, padded, shape)] + [(0, 0)]
        vol = np.pad(volume, pad, mode="constant")
    corners = _corners(vol, window, overlap, skip_empty)
    if corners:
        model = model_at_precision(model, precision)
    out, weight = _accumulate(model, vol, corners, window, batch_size,
                              importance_map(window, blend, sigma_scale), output_key)
    if out is None:  # every window skipped: all background
        num_classes = num_classes or _static_classes(model)
        if num_classes is None:
            raise InputError("num_classes", "every window was empty; pass num_classes")
        out = np.zeros((*padded, int(num_classes)), dtype=np.float32)
        weight = np.zeros(padded, dtype=np.float32)
    covered = weight > 0
    np.divide(out, weight[..., None], out=out, where=covered[..., None])
    out[~covered] = 0.0
    out[~covered, 0] = 1.0
    crop = tuple(slice(b, b + s) for b, s in zip(before, shape))
    return out[crop]


def _check_args(volume, window, overlap, blend, batch_size, sigma_scale):
    volume = np.asarray(volume)
    if volume.ndim == 3:
        volume = volume[..., None]
    if volume.ndim != 4:
        raise InputError("volume", f"expected [X, Y, Z, C], got shape {volume.shape}")
    if not np.issubdtype(volume.dtype, np.number):
        raise InputError("volume", f"must be numeric, got dtype {volume.dtype}")
    try:
        window = tuple(int(w) for w in window)
    except TypeError:
        window = ()
    if len(window) != 3 or min(window) < 1:
        raise InputError("window", f"expected 3 positive sizes, got {window!r}")
    if not 0.0 <= float(overlap) < 1.0:
        raise InputError("overlap", f"must be in [0, 1), got {overlap!r}")
    if blend not in _BLENDS:
        raise InputError("blend", f"must be one of {_BLENDS}, got {blend!r}")
    if int(batch_size) < 1:
        raise InputError("batch_size", f"must be >= 1, got {batch_size!r}")
    if blend == "gaussian" and not float(sigma_scale) > 0:
        raise InputError("sigma_scale", f"must be > 0, got {sigma_scale!r}")
    return volume, window, int(batch_size)


def _static_classes(model):
    """K from the model's (first) symbolic output, or None when it does not say."""
    try:
        outputs = model.outputs
        out = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
        return int(out.shape[-1]) if out.shape[-1] else None
    except (AttributeError, IndexError, TypeError, ValueError):
        return None


def _corners(vol, window, overlap, skip_empty) -> list:
    """Window start corners over the padded volume; with ``skip_empty`` only windows that
    reach into the nonzero bounding box."""
    starts = [window_starts(p, w, overlap) for p, w in zip(vol.shape[:3], window)]
    corners = list(itertools.product(*starts))
    if not skip_empty:
        return corners
    bbox = _nonzero_bbox(vol)
    if bbox is None:
        return []
    lo, hi = bbox
    return [c for c in corners if all(c[a] < hi[a] and c[a] + window[a] > lo[a] for a in range(3))]


def _accumulate(model, vol, corners, window, batch_size, imp, output_key):
    """Importance-weighted sums of the windows' probabilities and of the weights over the
    padded volume (``(None, None)`` when there is no window)."""
    out = weight = None
    batch = np.zeros((batch_size, *window, vol.shape[3]), dtype=np.float32)
    for i in progress(range(0, len(corners), batch_size), desc="sliding window",
                      total=-(-len(corners) // batch_size), unit="batch"):
        chunk = corners[i:i + batch_size]
        batch[len(chunk):] = 0
        for j, c in enumerate(chunk):
            batch[j] = vol[c[0]:c[0] + window[0], c[1]:c[1] + window[1], c[2]:c[2] + window[2]]
        pred = _select_output(model.predict_on_batch(batch), output_key)
        if pred.shape[1:4] != window:
            raise InputError("window", f"the model returned spatial shape {pred.shape[1:4]} for "
                                       f"window {window}; choose a window the model preserves")
        if out is None:
            out = np.zeros((*vol.shape[:3], pred.shape[-1]), dtype=np.float32)
            weight = np.zeros(vol.shape[:3], dtype=np.float32)
        for j, c in enumerate(chunk):
            sl = (slice(c[0], c[0] + window[0]), slice(c[1], c[1] + window[1]),
                  slice(c[2], c[2] + window[2]))
            out[sl] += pred[j] * imp[..., None]
            weight[sl] += imp
    return out, weight
