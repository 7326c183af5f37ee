"""Peak-memory estimates for whole-volume inference, and a budget check run before any work.

Whole-volume inference on a large or finely conformed volume can need more RAM than the
machine has; the kernel then OOM-kills the process (no message, possibly after minutes of
work). The inference entry points therefore estimate their peak memory first and refuse,
with advice, a volume whose estimate exceeds the budget:

* :func:`tfneuro.inference.predict_slices` / :func:`~tfneuro.inference.predict_volume_views`
  (estimate: :func:`estimate_slices_bytes`),
* :func:`tfneuro.inference.sliding_window_predict` (:func:`estimate_sliding_window_bytes`),
* segmenting a scan with an exported model (:mod:`tfneuro.apps.segment`, which models its own
  ``segment_volume`` path from the conformed shape and the export metadata).

Budget (:func:`resolve_budget`): the ``memory_budget=`` argument, else the environment
variable ``TFNEURO_MEMORY_BUDGET``, else 80 % of :func:`available_memory`. A budget is bytes
(int), a fraction of the available memory (a float in (0, 1]), or a string: ``"4GB"``,
``"512MiB"``, ``"0.5"``, ``"80%"``; ``"off"`` / ``"none"`` disables the check.

What the estimates count (float32 = 4 bytes; K classes, C channels, B = batch size):

* the result volume ``[X, Y, Z, K]``; a float32 copy of the input when it is not float32
  already; per-view uint8 label volumes plus the float32 uncertainty and int64 argmax volumes
  when uncertainty is requested; the sliding window's accumulator, weights, importance map
  and padded input (the formula in :mod:`tfneuro.inference.sliding_window`);
* one batch of model inputs and outputs (outputs twice: the returned array and the weighted
  copy that is accumulated);
* the model's activations for one batch (:func:`activation_bytes`): the sum of the sizes of
  every layer's output for that batch, computed symbolically with ``compute_output_spec`` on
  ``KerasTensor`` inputs of the batch's shape (no computation), times
  :data:`ACTIVATION_FACTOR`. Graph execution frees a tensor after its last consumer, so the
  sum is an upper bound on live activations; the factor covers the convolution workspaces
  and allocator slack that the sum does not see (1.5 for 2D, 3.0 for 3D: measured), plus
  :data:`RUNTIME_SLACK` once for tracing the predict function.

Measured (``tests/test_memory_budget.py::test_estimate_brackets_measured_rss``: a fresh
subprocess with ``MALLOC_MMAP_THRESHOLD_`` set so freed blocks go back to the OS; peak RSS
sampled every millisecond during the call minus the RSS just before it, after a warm-up call
that traced the model): see ``BUILD_NOTES.md`` ("Memory budget") for the figures; the test
asserts ``measured <= estimate <= 4 * measured``.

Estimates are deliberately conservative: a refused volume can still be run with a larger
budget (``memory_budget="off"``), at the user's risk.
"""

from __future__ import annotations

import math
import os
import re

import numpy as np

from tfneuro.errors import InputError

__all__ = ["MemoryBudgetError", "ACTIVATION_FACTOR", "DEFAULT_FRACTION", "ENV_VAR",
           "available_memory", "parse_budget", "resolve_budget", "check_memory",
           "activation_bytes", "estimate_slices_bytes", "estimate_sliding_window_bytes",
           "format_bytes", "slices_advice",
           "sliding_window_advice", "RUNTIME_SLACK",
           "AUTO_BATCH_PIXELS", "AUTO_BATCH_MAX", "auto_slice_batch", "slice_batch_shapes"]

#: Environment variable holding the default budget.
ENV_VAR = "TFNEURO_MEMORY_BUDGET"
#: Default budget: this fraction of the available memory.
DEFAULT_FRACTION = 0.8
#: Multiplier on the summed per-layer output sizes, for 2D and 3D models (measured: see the
#: module docstring; 3D convolutions on the CPU need about twice the workspace of 2D ones).
ACTIVATION_FACTOR = {2: 1.5, 3: 3.0}
#: Added once to every estimate that calls a model: tracing the predict function and the TF
#: runtime's buffers (measured 30-60 MB for QuickNAT / 3D U-Net on the first call).
RUNTIME_SLACK = 64 * 2 ** 20
#: Slice inference with ``batch_size=None`` feeds about this many pixels per model call
#: (:func:`auto_slice_batch`). Measured (benchmarks/README.md, "Other timings"): QuickNAT
#: with 64 filters and 5x5 kernels at 192x160 takes the same time per slice at batch 2, 4, 8
#: and 16 on the 2-core CPU, while its activations grow with the batch; 2**17 pixels = 4
#: slices of 192x160, 2 of 256x256, 8 of 128x128.
AUTO_BATCH_PIXELS = 2 ** 17
#: Upper bound of the automatic slice batch (the former fixed default).
AUTO_BATCH_MAX = 16
_F32 = 4
_UNITS = {"": 1, "B": 1, "K": 1e3, "KB": 1e3, "M": 1e6, "MB": 1e6, "G": 1e9, "GB": 1e9,
          "T": 1e12, "TB": 1e12, "KIB": 2 ** 10, "MIB": 2 ** 20, "GIB": 2 ** 30, "TIB": 2 ** 40}


class MemoryBudgetError(InputError):
    """Whole-volume inference would need more memory than the budget allows.

    Attributes:
        estimate: estimated peak bytes.
        budget: the budget in bytes.
    """

    def __init__(self, source, problem, estimate: int, budget: int):
        self.estimate = int(estimate)
        self.budget = int(budget)
        super().__init__(source, problem)


def format_bytes(n) -> str:
    """``1536000000 -> '1.54 GB'`` (decimal units)."""
    n = float(n)
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


# --------------------------------------------------------------------------- available RAM
def _read_int(path):
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except OSError:
        return None
    if not text or text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _cgroup_free(root="/sys/fs/cgroup"):
    """Bytes left under the cgroup memory limit, or None when there is no limit.

    cgroup v2: ``memory.max`` - ``memory.current``; cgroup v1: ``memory/memory.limit_in_bytes``
    - ``memory/memory.usage_in_bytes`` (v1 reports "no limit" as a huge number).
    """
    for limit_f, usage_f in (("memory.max", "memory.current"),
                             ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        limit = _read_int(os.path.join(root, limit_f))
        if limit is None or limit >= 2 ** 60:
            continue
        usage = _read_int(os.path.join(root, usage_f)) or 0
        return max(limit - usage, 0)
    return None


def available_memory(cgroup_root: str = "/sys/fs/cgroup") -> int:
    """Bytes this process can still allocate: ``psutil.virtual_memory().available``, or less
    when a cgroup memory limit (containers, Slurm jobs) leaves less.

    Args:
        cgroup_root: where the cgroup filesystem is mounted (a parameter for tests).
    """
    import psutil

    avail = int(psutil.virtual_memory().available)
    free = _cgroup_free(cgroup_root)
    return avail if free is None else min(avail, int(free))


# --------------------------------------------------------------------------- budget
def parse_budget(value, *, source: str = "memory_budget", available: int | None = None):
    """Turn a budget setting into bytes (``math.inf`` = no limit).

    Args:
        value: int bytes; float in (0, 1] = fraction of available memory (a float > 1 is
            bytes); a string ``"4GB"``, ``"512MiB"``, ``"2e9"``, ``"0.5"``, ``"80%"``, or
            ``"off"``/``"none"``/``"inf"`` for no limit.
        source: the argument or variable name used in error messages.
        available: available bytes (default: :func:`available_memory`).
    """
    if isinstance(value, bool):
        raise InputError(source, f"expected bytes, a fraction or a size like '4GB', got {value!r}")
    if isinstance(value, str):
        text = value.strip().upper().replace(" ", "")
        if text in ("OFF", "NONE", "INF", "UNLIMITED"):
            return math.inf
        if text.endswith("%"):
            try:
                frac = float(text[:-1]) / 100.0
            except ValueError:
                frac = -1.0
            if not 0 < frac <= 1:
                raise InputError(source, f"a percentage must be in (0, 100], got {value!r}")
            return _fraction(frac, available)
        m = re.fullmatch(r"([0-9]*\.?[0-9]+(?:E[+-]?[0-9]+)?)([A-Z]*)", text)
        if not m or m.group(2) not in _UNITS:
            raise InputError(source, f"cannot read {value!r}: use bytes, a fraction (0.5), "
                                     "a percentage (80%) or a size (4GB, 512MiB), or 'off'")
        number, unit = float(m.group(1)), m.group(2)
        if unit == "" and 0 < number <= 1:
            return _fraction(number, available)
        value = number * _UNITS[unit]
        if value <= 0:
            raise InputError(source, f"must be positive, got {m.group(0)!r}")
        return int(value)
    if isinstance(value, (int, np.integer)):
        if value <= 0:
            raise InputError(source, f"must be positive, got {value!r}")
        return int(value)
    if isinstance(value, (float, np.floating)):
        if math.isinf(value) and value > 0:
            return math.inf
        if not value > 0 or math.isnan(value):
            raise InputError(source, f"must be positive, got {value!r}")
        return _fraction(float(value), available) if value <= 1 else int(value)
    raise InputError(source, f"expected bytes, a fraction or a size like '4GB', got {value!r}")


def _fraction(frac, available):
    return int(frac * (available_memory() if available is None else available))


def resolve_budget(memory_budget=None, *, available: int | None = None):
    """The budget in bytes: ``memory_budget``, else ``$TFNEURO_MEMORY_BUDGET``, else 80 % of
    the available memory. Returns ``math.inf`` when the check is switched off."""
    if memory_budget is not None:
        return parse_budget(memory_budget, source="memory_budget", available=available)
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return parse_budget(env, source=ENV_VAR, available=available)
    return _fraction(DEFAULT_FRACTION, available)


def check_memory(estimate_bytes, budget=None, *, what: str, advice: str | list,
                 source: str = "volume"):
    """Raise :class:`MemoryBudgetError` when ``estimate_bytes`` exceeds the budget.

    Args:
        estimate_bytes: estimated peak bytes of the work about to start, or a function of no
            arguments returning them (not called when the check is switched off).
        budget: see :func:`resolve_budget` (``None``: environment variable / 80 % of RAM).
        what: the work, e.g. ``"slice inference on a 256x256x256x1 volume"``.
        advice: what the user can change (one string, or several joined with "; ").
        source: the argument / file the problem is reported against.

    Returns:
        The budget in bytes (``math.inf`` if switched off).
    """
    limit = resolve_budget(budget)
    if math.isinf(limit):
        return limit
    if callable(estimate_bytes):
        estimate_bytes = estimate_bytes()
    if estimate_bytes > limit:
        if isinstance(advice, (list, tuple)):
            advice = "; ".join(a for a in advice if a)
        how = ("the memory_budget argument" if budget is not None
               else f"{ENV_VAR} (default {int(DEFAULT_FRACTION * 100)}% of available RAM)")
        raise MemoryBudgetError(
            source,
            f"{what} needs about {format_bytes(estimate_bytes)} at its peak, more than the "
            f"memory budget of {format_bytes(limit)} (set by {how}); to fit: {advice}",
            estimate_bytes, limit)
    return limit


# --------------------------------------------------------------------------- activations
def _spec_bytes(spec) -> int:
    import keras

    total = 0
    for t in keras.tree.flatten(spec):
        shape = getattr(t, "shape", None)
        if shape is None or any(s is None for s in shape):
            continue
        dtype = getattr(t, "dtype", "float32") or "float32"
        try:
            size = np.dtype(keras.backend.standardize_dtype(dtype)).itemsize
        except TypeError:
            size = _F32
        total += int(np.prod(shape, dtype=np.int64)) * size
    return total


def _graph_activation_bytes(model, inputs):
    """Sum of every operation's output bytes when ``model`` (a Functional) runs on ``inputs``
    (KerasTensors); nested Functional models are expanded."""
    from keras.src.models.functional import Functional

    total = [0]

    def operation_fn(op):
        def run(*args, **kwargs):
            if isinstance(op, Functional):
                sub_inputs = args[0] if len(args) == 1 else list(args)
                out, sub = _graph_activation_bytes(op, sub_inputs)
                total[0] += sub
                return out
            out = op.compute_output_spec(*args, **kwargs)
            total[0] += _spec_bytes(out)
            return out

        return run

    out = model._run_through_graph(inputs, operation_fn=operation_fn)
    return out, total[0]


def activation_bytes(model, batch_shapes, *, factor: float | None = None) -> int:
    """Activation memory of one model call on a batch, from symbolic shapes (no compute).

    Args:
        model: a Keras model. Functional models (and subclassed models wrapping one, e.g.
            ``DeepSupervisionModel``) are walked layer by layer; for any other model only the
            output size is known and the estimate is ``32 x`` the output (a documented
            heuristic).
        batch_shapes: the input shape(s) of one batch, e.g. ``(16, 256, 256, 1)``, or a list
            of shapes for multi-input models.
        factor: multiplier on the summed layer outputs (default :data:`ACTIVATION_FACTOR`
            for the batch's number of spatial dimensions).

    Returns:
        Estimated bytes.
    """
    import keras
    from keras.src.models.functional import Functional

    shapes = batch_shapes if isinstance(batch_shapes, list) else [batch_shapes]
    if factor is None:
        factor = ACTIVATION_FACTOR.get(len(shapes[0]) - 2, 3.0)
    xs = [keras.KerasTensor(tuple(int(s) for s in shp), dtype="float32") for shp in shapes]
    x = xs if len(xs) > 1 else xs[0]
    target = model
    if not isinstance(target, Functional):
        inner = [lay for lay in getattr(model, "layers", []) if isinstance(lay, Functional)]
        target = inner[0] if len(inner) == 1 else None
    if target is not None:
        try:
            _, total = _graph_activation_bytes(target, x)
            return int(factor * total)
        except Exception:  # noqa: BLE001 - fall back to the output-size heuristic below
            pass
    try:
        out = model.compute_output_spec(x)
    except Exception:  # noqa: BLE001 - unknown model: count the inputs only
        out = xs
    return int(32 * _spec_bytes(out))


# --------------------------------------------------------------------------- estimates
def auto_slice_batch(h, w) -> int:
    """Slices per model call for ``h x w`` slices when ``batch_size`` is None:
    ``AUTO_BATCH_PIXELS // (h * w)``, clipped to ``[1, AUTO_BATCH_MAX]``."""
    return int(min(AUTO_BATCH_MAX, max(1, AUTO_BATCH_PIXELS // max(1, int(h) * int(w)))))


def slice_batch_shapes(kind, batch, h, w, channels):
    """Input shape(s) of one batch of ``h x w`` slices for a model fed as ``kind``."""
    if kind == "two_arm":
        return [(batch, h, w, 1), (batch, h, w, 1)]
    if kind == "rgb_slices":
        return (batch, h, w, 3)
    return (batch, h, w, channels)


def estimate_slices_bytes(models: dict, shape, *, batch_size: int | None = None, num_classes: int,
                          kinds: dict, input_dtype=np.float32, uncertainty: bool = False,
                          new_output: bool = True) -> int:
    """Peak bytes of :func:`~tfneuro.inference.predict_slices` (one view) or
    :func:`~tfneuro.inference.predict_volume_views` (several).

    Args:
        models: ``{axis (0/1/2): model}``.
        shape: volume shape ``[X, Y, Z, C]``.
        batch_size: slices per call (None: :func:`auto_slice_batch` per view).
        num_classes: K.
        kinds: ``{axis: input kind}``.
        input_dtype: dtype of the caller's volume (a float32 copy is made otherwise).
        uncertainty: per-view label volumes and the uncertainty map are kept.
        new_output: the result volume is allocated (False: the caller passed ``out``).
    """
    x, y, z, c = (int(s) for s in shape)
    k = int(num_classes)
    vox = x * y * z
    fixed = _F32 * vox * k if new_output else 0
    if np.dtype(input_dtype) != np.float32:
        fixed += _F32 * vox * c
    if uncertainty:
        lab = 1 if k < 256 else 4
        fixed += len(models) * lab * vox + _F32 * vox + 8 * vox  # labels, unc, argmax
    transient = vox * c + vox  # nonzero test (booleans) before the first batch
    per_batch = 0
    for axis, model in models.items():
        h, w = (d for a, d in enumerate((x, y, z)) if a != axis)
        b = min(auto_slice_batch(h, w) if batch_size is None else int(batch_size), (x, y, z)[axis])
        in_c = {"two_arm": 2, "rgb_slices": 3}.get(kinds[axis], c)
        io_bytes = _F32 * b * h * w * (2 * in_c + 2 * k)  # batch copy (+split) and outputs (+weighted)
        act = activation_bytes(model, slice_batch_shapes(kinds[axis], b, h, w, c))
        per_batch = max(per_batch, io_bytes + act)
    return int(fixed + max(transient, per_batch) + RUNTIME_SLACK)


def estimate_sliding_window_bytes(model, shape, window, *, batch_size: int = 1,
                                  num_classes: int, input_dtype=np.float32) -> int:
    """Peak bytes of :func:`~tfneuro.inference.sliding_window_predict`: the formula in
    :mod:`tfneuro.inference.sliding_window` plus :func:`activation_bytes` for one batch.

    Args:
        model: the 3D Keras model.
        shape: volume shape ``[X, Y, Z, C]``.
        window: window size per axis.
        batch_size: windows per call.
        num_classes: K.
        input_dtype: dtype of the caller's volume.
    """
    x, y, z, c = (int(s) for s in shape)
    k = int(num_classes)
    window = tuple(int(v) for v in window)
    padded = tuple(max(s, v) for s, v in zip((x, y, z), window))
    pvox = int(np.prod(padded, dtype=np.int64))
    wvox = int(np.prod(window, dtype=np.int64))
    b = int(batch_size)
    fixed = _F32 * pvox * (k + 1) + _F32 * wvox
    if padded != (x, y, z):
        fixed += np.dtype(input_dtype).itemsize * pvox * c
    transient = x * y * z * c
    io_bytes = _F32 * b * wvox * (c + 2 * k) + _F32 * wvox * k  # batch, outputs, weighted window
    act = activation_bytes(model, (b, *window, c))
    return int(fixed + max(transient, io_bytes + act) + RUNTIME_SLACK)


def slices_advice(batch_size: int | None, views: int = 1) -> list:
    """Advice strings for slice inference."""
    tips = []
    if batch_size is None:
        tips.append("a small explicit batch_size (now automatic, see auto_slice_batch)")
    elif batch_size > 1:
        tips.append(f"a smaller batch_size (now {batch_size})")
    if views > 1:
        tips.append("fewer views at once (predict_slices per view into one `out` array, "
                    "or aggregate the views on the CPU)")
    tips.append("conform to a coarser spacing")
    tips.append(f"or raise the budget (memory_budget= or {ENV_VAR}, e.g. '16GB')")
    return tips


def sliding_window_advice(batch_size: int, window) -> list:
    """Advice strings for sliding-window inference."""
    tips = []
    if batch_size > 1:
        tips.append(f"a smaller batch_size (now {batch_size})")
    tips.append(f"a smaller window (now {tuple(int(w) for w in window)})")
    tips.append("conform to a coarser spacing")
    tips.append(f"or raise the budget (memory_budget= or {ENV_VAR}, e.g. '16GB')")
    return tips
