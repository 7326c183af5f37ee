"""Whole-volume prediction with 2D / 2.5D slice models, and view aggregation.

A volume is a numpy array ``[X, Y, Z, C]`` (channels last) on the conformed RAS grid
(:func:`tfneuro.io.conform`). Views and axes are those of :mod:`tfneuro.io.views`: a slice is
``np.take(volume, n, axis)`` with the remaining axes in their original order (no
transposition or flip); slice models must be trained on slices taken the same way.

Input kinds (``input_kind``; default :func:`tfneuro.models.input_kind_of`: the model's
``spec.input_kind``, else ``"two_arm"`` for two model inputs, else ``"channels"``):

* ``"channels"``: the slice's C channels are the model input ``[B, H, W, C]``.
* ``"two_arm"``: InfiNet (paper 003) / double-arm U-Net: channel 0 feeds the first input (T1),
  channel 1 the second (T2); C must be 2.
* ``"rgb_slices"``: paper 004 section 3: the input for slice ``n`` is slices ``n-1, n, n+1``
  of a single-channel volume as R, G, B, "if the slice n-1 or n+1 is out of the MR volume, an
  image with constant 0 is used instead". Built on the fly per batch. (The volume should
  already be histogram-equalised; the per-channel mean is subtracted inside the model.)

Performance: slices are predicted in batches of contiguous slice ranges through
``model.predict_on_batch`` (Keras' compiled predict function: one trace, no per-slice Python,
XLA when the model was compiled with ``jit_compile=True``); each batch is one contiguous copy
of the input and the result is written (or accumulated) straight into the output volume.
Slices outside the bounding box of the volume's nonzero voxels (``skip_empty=True``) are not
computed: their probabilities are background = 1.

Back to the input space: the probabilities are on the conformed grid; with the
``ConformRecord`` returned by :func:`tfneuro.io.conform`, use
``tfneuro.io.deconform(probs, record, order=1)`` for probabilities (linear) and
``tfneuro.io.deconform(labels, record, order=0)`` for labels (nearest); both give exactly the
original image's shape and affine.
"""

from __future__ import annotations

import numpy as np

from tfneuro.data.patches import nonempty_mask
from tfneuro.errors import InputError
from tfneuro.inference.precision import model_at_precision
from tfneuro.io.views import VIEW_AXES, view_axis
from tfneuro.models.registry import input_kind_of
from tfneuro.utils.precision import resolve_precision

__all__ = ["VIEW_AXES", "predict_slices", "predict_volume_views", "nonzero_slice_range",
           "rgb_slice_stack", "view_weights", "FASTSURFER_WEIGHTS"]

#: FastSurfer's view weights (axial 0.4, coronal 0.4, sagittal 0.2).
FASTSURFER_WEIGHTS = {"axial": 0.4, "coronal": 0.4, "sagittal": 0.2}


def view_weights(views, weights: dict | None = None, *, source: str = "views") -> dict:
    """``{view: weight}`` normalised to sum to 1 (default equal weights).

    Raises:
        InputError: an unknown view (naming ``source``), a missing or negative weight, or
            weights summing to 0 (naming ``weights``).
    """
    bad = [v for v in views if v not in VIEW_AXES]
    if bad:
        raise InputError(source, f"unknown view(s) {bad}; use {sorted(VIEW_AXES)}")
    weights = {v: 1.0 for v in views} if weights is None else weights
    if any(v not in weights or float(weights[v]) < 0 for v in views):
        raise InputError("weights", f"need a non-negative weight for every view in {sorted(views)}")
    total = float(sum(float(weights[v]) for v in views))
    if total <= 0:
        raise InputError("weights", "weights sum to 0")
    return {v: float(weights[v]) / total for v in views}


def _check_volume(volume, name="volume"):
    vol = np.asarray(volume)
    if vol.ndim == 3:
        vol = vol[..., None]
    if vol.ndim != 4:
        raise InputError(name, f"must be [X, Y, Z] or [X, Y, Z, C], got shape {vol.shape}")
    vol = vol.astype(np.float32, copy=False)
    if not np.all(np.isfinite(vol)):
        raise InputError(name, "contains NaN or Inf")
    return vol


def nonzero_slice_range(volume, axis) -> tuple[int, int]:
    """``[start, stop)`` of the slices along ``axis`` that hold signal in any channel.

    Background is 0 or the channel's minimum (:func:`tfneuro.data.patches.nonempty_mask`), so
    the range is the same on a z-scored volume (background ``-mean/sd``) as on the raw one.

    Args:
        volume: ``[X, Y, Z]`` or ``[X, Y, Z, C]`` array.
        axis: 0, 1 or 2.

    Returns:
        ``(start, stop)``; ``(0, 0)`` for a volume without signal.
    """
    vol = np.asarray(volume)
    nz = nonempty_mask(vol if vol.ndim == 4 else vol[..., None])
    other = tuple(a for a in range(3) if a != axis)
    hit = np.flatnonzero(nz.any(axis=other))
    if hit.size == 0:
        return 0, 0
    return int(hit[0]), int(hit[-1]) + 1


def rgb_slice_stack(moved, start, stop):
    """Paper-004 3-slice stacks for slices ``start..stop-1`` of a slice-first volume.

    Args:
        moved: ``[N, H, W]`` or ``[N, H, W, 1]`` single-channel volume, slices first.
        start, stop: slice range.

    Returns:
        ``[stop-start, H, W, 3]`` float32 with channels (n-1, n, n+1), zeros outside the volume.
    """
    if moved.ndim == 4:
        moved = moved[..., 0]
    n = moved.shape[0]
    out = np.zeros((stop - start,) + moved.shape[1:] + (3,), dtype=np.float32)
    for c, shift in enumerate((-1, 0, 1)):
        lo, hi = max(start + shift, 0), min(stop + shift, n)
        if hi > lo:
            out[lo - start - shift:hi - start - shift, ..., c] = moved[lo:hi]
    return out


def _batch_input(moved, start, stop, kind):
    if kind == "rgb_slices":
        return rgb_slice_stack(moved, start, stop)
    batch = np.ascontiguousarray(moved[start:stop])
    if kind == "two_arm":
        return [np.ascontiguousarray(batch[..., 0:1]), np.ascontiguousarray(batch[..., 1:2])]
    return batch


def _check_kind_channels(kind, channels, model):
    if kind == "two_arm" and channels != 2:
        raise InputError("volume", f"a two-arm model needs 2 channels (T1, T2), got {channels}")
    if kind == "rgb_slices" and channels != 1:
        raise InputError("volume", f"an rgb_slices model needs a 1-channel volume, got {channels}")
    if kind == "channels":
        want = model.inputs[0].shape[-1] if getattr(model, "inputs", None) else None
        if want is not None and want != channels:
            raise InputError("volume", f"model {model.name!r} expects {want} channels, got {channels}")


def _slice_range(vol, axis, skip_empty):
    return nonzero_slice_range(vol, axis) if skip_empty else (0, vol.shape[axis])


def _iter_slice_batches(model, vol, axis, batch_size, kind, start, stop):
    """Yield ``(lo, hi, probs [hi-lo, H, W, K])`` for slices ``start..stop-1`` along ``axis``
    (``batch_size`` None: :func:`tfneuro.inference.memory.auto_slice_batch`)."""
    moved = np.moveaxis(vol, axis, 0)  # a view
    if batch_size is None:
        from tfneuro.inference.memory import auto_slice_batch

        batch_size = auto_slice_batch(*moved.shape[1:3])
    for lo in range(start, stop, batch_size):
        hi = min(lo + batch_size, stop)
        out = model.predict_on_batch(_batch_input(moved, lo, hi, kind))
        if isinstance(out, (list, tuple)):  # deep-supervision style models: full resolution first
            out = out[0]
        yield lo, hi, np.asarray(out, dtype=np.float32)


def _check_batch_size(batch_size):
    if batch_size is None:
        return None
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError("batch_size", f"must be a positive int, got {batch_size!r}")
    return int(batch_size)


def predict_slices(model, volume, axis, *, batch_size: int | None = None,
                   input_kind: str | None = None, skip_empty: bool = True, num_classes: int | None = None,
                   out: np.ndarray | None = None, weight: float = 1.0,
                   labels_out: np.ndarray | None = None, memory_budget=None,
                   precision: str = "auto") -> np.ndarray:
    """Slice-wise prediction of a whole volume along one axis.

    Args:
        model: a Keras slice model returning softmax probabilities ``[B, H, W, K]``.
        volume: ``[X, Y, Z, C]`` (or ``[X, Y, Z]``) float array on the conformed grid.
        axis: 0/1/2 or ``"sagittal"``/``"coronal"``/``"axial"`` (module docstring).
        batch_size: slices per model call; None (default): about ``AUTO_BATCH_PIXELS``
            (2**17) pixels per call, ``tfneuro.inference.memory.auto_slice_batch`` (4 slices
            of 192x160, 2 of 256x256) — as fast as larger batches on the CPU, with a smaller
            memory peak.
        input_kind: ``"channels"``, ``"two_arm"``, ``"rgb_slices"`` or None (inferred).
        skip_empty: do not compute slices outside the nonzero bounding box along ``axis``;
            those get background probability 1.
        num_classes: K; default from ``model.outputs``.
        out: optional float32 ``[X, Y, Z, K]`` array to ACCUMULATE into (``out += weight *
            probs``), for in-place view aggregation; when None a new array is returned.
        weight: multiplier for the accumulated probabilities.
        labels_out: optional integer ``[X, Y, Z]`` array that receives THIS view's own argmax
            labels for the computed slices (left as it is outside them: pass zeros for
            background); used for the views' disagreement map.
        memory_budget: peak-memory budget checked before any model call
            (:mod:`tfneuro.inference.memory`; default ``$TFNEURO_MEMORY_BUDGET`` or 80 % of
            available RAM; ``"off"`` disables). Raises ``MemoryBudgetError`` when exceeded.
        precision: ``"auto"`` (bfloat16 where the hardware has it natively, else float32),
            ``"float32"``, ``"bfloat16"`` or ``"float16"``: what the model computes in
            (:mod:`tfneuro.inference.precision`; ``model`` itself is not changed). The
            probabilities, their accumulation and the argmax are float32 at every precision.

    Returns:
        ``[X, Y, Z, K]`` float32 probabilities (``out`` itself when given).
    """
    precision = resolve_precision(precision)
    in_dtype = getattr(volume, "dtype", np.float64)
    vol = _check_volume(volume)
    axis = view_axis(axis)
    batch_size = _check_batch_size(batch_size)
    kind = input_kind_of(model, input_kind)
    _check_kind_channels(kind, vol.shape[-1], model)
    if num_classes is None:
        num_classes = model.outputs[0].shape[-1]
    shape = vol.shape[:3] + (num_classes,)
    from tfneuro.inference import memory

    memory.check_memory(lambda: memory.estimate_slices_bytes(
        {axis: model}, vol.shape, batch_size=batch_size, num_classes=num_classes,
        kinds={axis: kind}, input_dtype=in_dtype, new_output=out is None), memory_budget,
        what=f"slice inference on a {'x'.join(map(str, vol.shape))} volume",
        advice=memory.slices_advice(batch_size))
    if out is None:
        out = np.zeros(shape, dtype=np.float32)
    elif out.shape != shape:
        raise InputError("out", f"must have shape {shape}, got {out.shape}")
    if labels_out is not None and labels_out.shape != shape[:3]:
        raise InputError("labels_out", f"must have shape {shape[:3]}, got {labels_out.shape}")
    out_m = np.moveaxis(out, axis, 0)
    lab_m = None if labels_out is None else np.moveaxis(labels_out, axis, 0)
    start, stop = _slice_range(vol, axis, skip_empty)
    model = model_at_precision(model, precision)
    # background outside the predicted slab
    out_m[:start, ..., 0] += weight
    out_m[stop:, ..., 0] += weight
    for lo, hi, probs in _iter_slice_batches(model, vol, axis, batch_size, kind, start, stop):
        if probs.shape[1:] != out_m.shape[1:]:
            raise InputError("model", f"output slice shape {probs.shape[1:]} does not match "
                                      f"the volume's {out_m.shape[1:]}")
        if weight == 1.0:
            out_m[lo:hi] += probs
        else:
            out_m[lo:hi] += np.float32(weight) * probs
        if lab_m is not None:
            lab_m[lo:hi] = np.argmax(probs, axis=-1)
    return out


def predict_volume_views(models: dict, volume, *, weights: dict | None = None,
                         return_uncertainty: bool = False, batch_size: int | None = None,
                         input_kind: str | dict | None = None, skip_empty: bool = True,
                         memory_budget=None, precision: str = "auto"):
    """View aggregation: weighted mean of per-view probability volumes.

    InfiNet (paper 003, section 2.2): "the generated volume-level probability maps are
    aggregated through averaging"; FastSurfer weights views 0.4/0.4/0.2 (axial, coronal,
    sagittal; :data:`FASTSURFER_WEIGHTS`). Probabilities are accumulated in place into ONE
    ``[X, Y, Z, K]`` array (memory: that volume plus one batch; with ``return_uncertainty``
    also one uint8 label volume per view).

    Uncertainty (``return_uncertainty=True``): per voxel, the weighted fraction of views whose
    own argmax label differs from the aggregated argmax label,
    ``u = sum_v w_v [argmax p_v != argmax p]`` in [0, 1] (0: all views agree with the result).

    Args:
        models: ``{"axial"|"coronal"|"sagittal": model}`` (one to three views).
        volume: ``[X, Y, Z, C]`` float array on the conformed grid.
        weights: ``{view: weight}``; default equal weights. Normalised to sum to 1, so the
            result is a probability map.
        return_uncertainty: also return the disagreement map.
        batch_size: slices per model call (None: automatic, as :func:`predict_slices`).
        input_kind: None (inferred per model), one kind, or ``{view: kind}``.
        skip_empty: skip slices outside the volume's nonzero bounding box.
        memory_budget: as :func:`predict_slices` (checked once, for all views, before any
            model call).
        precision: as :func:`predict_slices` (decided once for all views; the weighted mean
            of the views is float32).

    Returns:
        ``probs`` float32 ``[X, Y, Z, K]``, or ``(probs, uncertainty float32 [X, Y, Z])``.
    """
    if not isinstance(models, dict) or not models:
        raise InputError("models", "must be a non-empty dict {view name: model}")
    weights = view_weights(list(models), weights, source="models")
    precision = resolve_precision(precision)
    in_dtype = getattr(volume, "dtype", np.float64)
    vol = _check_volume(volume)
    batch_size = _check_batch_size(batch_size)
    kinds = {v: input_kind_of(m, input_kind.get(v) if isinstance(input_kind, dict) else input_kind)
             for v, m in models.items()}
    nclasses = {v: m.outputs[0].shape[-1] for v, m in models.items()}
    if len(set(nclasses.values())) != 1:
        raise InputError("models", f"views disagree on the number of classes: {nclasses}")
    for v, m in models.items():
        _check_kind_channels(kinds[v], vol.shape[-1], m)
    k = next(iter(nclasses.values()))
    from tfneuro.inference import memory

    memory.check_memory(lambda: memory.estimate_slices_bytes(
        {VIEW_AXES[v]: m for v, m in models.items()}, vol.shape, batch_size=batch_size,
        num_classes=k, kinds={VIEW_AXES[v]: kinds[v] for v in models}, input_dtype=in_dtype,
        uncertainty=return_uncertainty), memory_budget,
        what=f"{len(models)}-view slice inference on a {'x'.join(map(str, vol.shape))} volume",
        advice=memory.slices_advice(batch_size, len(models)))
    probs = np.zeros(vol.shape[:3] + (k,), dtype=np.float32)
    view_labels = {}
    for view, model in models.items():
        w = weights[view]
        lab = None
        if return_uncertainty:  # this view's own labels (background 0 outside its slab)
            lab = np.zeros(vol.shape[:3], dtype=np.uint8 if k < 256 else np.int32)
            view_labels[view] = (lab, w)
        predict_slices(model, vol, VIEW_AXES[view], batch_size=batch_size,
                       input_kind=kinds[view], skip_empty=skip_empty, num_classes=k,
                       out=probs, weight=w, labels_out=lab, memory_budget="off",
                       precision=precision)
    if not return_uncertainty:
        return probs
    agg = np.argmax(probs, axis=-1)
    unc = np.zeros(vol.shape[:3], dtype=np.float32)
    for lab, w in view_labels.values():
        unc += np.float32(w) * (lab != agg)
    return probs, unc
