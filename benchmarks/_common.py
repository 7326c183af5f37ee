"""Shared helpers of the benchmark scripts (timing, roofline, memory, tables, the test volume).

Not part of the library: ``benchmarks/*.py`` import it as ``from _common import ...`` after
putting this folder on ``sys.path`` (each script does that itself, so
``python benchmarks/<script>.py`` works from the repository root).

* :func:`alternate` runs the competitors in ALTERNATING order (a, b, a, b, ...) so a load
  change on this shared machine hits both sides alike; the figure reported is the median.
* :func:`matmul_peak` measures this CPU's float32 matmul rate (the roofline's ceiling) with a
  large ``tf.linalg.matmul``, best of several calls.
* :func:`keras_conv_macs` / :func:`torch_conv_macs` count convolution multiply-accumulates
  analytically from the layer shapes seen in one forward pass (conv: output voxels x kernel
  volume x C_in x C_out / groups; transposed conv: input voxels x the same), so each side's
  FLOPs come from its own network, not from a formula we wrote for one of them.
* :func:`mni_volume` is the real-anatomy test volume: nilearn's ICBM152 2009 T1 template at
  1 mm, centre-cropped/padded around its nonzero bounding box to the requested shape (zoomed
  down first only when the brain does not fit, e.g. for the tiny test sizes).
"""

from __future__ import annotations

import os
import resource
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TFNEURO_PROGRESS", "0")

import numpy as np  # noqa: E402


def parse_shape(text, n=3):
    """``"160,192,160"`` -> ``(160, 192, 160)``."""
    shape = tuple(int(v) for v in str(text).split(","))
    if len(shape) != n or min(shape) < 1:
        raise SystemExit(f"error: expected {n} positive comma-separated sizes, got {text!r}")
    return shape


def load_average() -> str:
    """1-minute load average as text (recorded next to every figure)."""
    return f"{os.getloadavg()[0]:.2f}"


def alternate(fns: dict, runs: int, warmup: bool = False, log=print) -> dict:
    """Time each callable ``runs`` times in alternating order; returns ``{name: [seconds]}``.

    Args:
        fns: ``{name: zero-argument callable}``, run in dict order within each round.
        runs: rounds (>= 1).
        warmup: call each once untimed first.
        log: called with one line per timed call (name, seconds, load average).
    """
    if warmup:
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for r in range(runs):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            times[name].append(dt)
            if log:
                log(f"  run {r + 1}/{runs} {name}: {dt:.2f} s (load {load_average()})")
    return times


def time_four_sides(sides: dict, tfneuro_run, monai_run, precision: str, runs: int,
                    peak_n: int):
    """Issue 17's four sides in ONE alternating run, then the matmul peak at both precisions.

    Args:
        sides: ``{"tfneuro float32": model, "tfneuro <precision>": model}``;
            ``tfneuro_run(model, precision)`` makes each side's zero-argument callable (float32
            for the side named "tfneuro float32", ``precision`` for the other).
        monai_run: ``monai_run(autocast: bool)`` makes MONAI's float32 and bfloat16 callables.
        runs, peak_n: alternating rounds; matmul size of :func:`matmul_peak`.

    Returns:
        ``(times, peaks)``: ``{side: [seconds]}`` in run order, ``{precision: GFLOP/s}``.
    """
    fns = {name: tfneuro_run(m, "float32" if name == "tfneuro float32" else precision)
           for name, m in sides.items()}
    fns.update({"MONAI float32": monai_run(False), "MONAI bfloat16 autocast": monai_run(True)})
    print(f"timing {runs} alternating runs ({', '.join(fns)}, ...)", flush=True)
    times = alternate(fns, runs)
    return times, {p: matmul_peak(peak_n, dtype=p) for p in ("float32", "bfloat16")}


def precision_report(tfneuro_precision: str, monai: bool = True) -> tuple[str, str]:
    """``(resolved tfneuro precision, report line)``: what tfneuro's precision resolves to on
    this machine, the CPU's bfloat16 flags and (``monai``) what MONAI's sides run at."""
    from tfneuro.utils.precision import Hardware, resolve_precision

    hw = Hardware.detect()
    p = resolve_precision(tfneuro_precision)
    peer = ("; MONAI float32 (its default) and bfloat16 under torch.autocast('cpu', "
            "dtype=torch.bfloat16)") if monai else ""
    return p, (f"precision: tfneuro {tfneuro_precision} -> {p} (float32 row: float32){peer}; "
               f"{hw.describe()}; /proc/cpuinfo bfloat16 flags: "
               f"{' '.join(hw.cpu_bfloat16_flags) or 'none'}")


def ratio_lines(t_tf, t_mo, t_mo_bf16, per_tflop=None) -> str:
    """The benchmarks' last lines (checks parse them): tfneuro at its default precision
    against MONAI bfloat16, [per conv TFLOP against MONAI float32,] against MONAI float32."""
    lines = [f"ratio tfneuro/monai_bf16: {t_tf / t_mo_bf16:.3f}"]
    if per_tflop is not None:
        lines.append(f"ratio per conv TFLOP tfneuro/monai: {per_tflop:.3f}")
    lines.append(f"ratio tfneuro/monai: {t_tf / t_mo:.3f}")
    return "\n".join(lines)


def median(values) -> float:
    return float(statistics.median(values))


def matmul_peak(n: int = 4096, repeats: int = 5, dtype: str = "float32") -> float:
    """Best-of-``repeats`` ``tf.linalg.matmul`` rate in GFLOP/s (2 n^3 FLOPs per call) in
    ``dtype`` (float32 or bfloat16: the roofline of each precision)."""
    import tensorflow as tf

    a = tf.cast(tf.random.normal((n, n)), dtype)
    b = tf.cast(tf.random.normal((n, n)), dtype)
    mm = tf.function(tf.linalg.matmul)
    mm(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        mm(a, b).numpy()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9


def keras_conv_macs(model, x) -> int:
    """Convolution MACs of one forward pass of a Keras model on ``x`` (any batch; per sample).

    Hooks ``call`` of Keras' conv base classes (Conv1D/2D/3D and their transposes) for one
    eager call and counts each from its kernel shape and the input/output shapes.
    """
    from keras.src.layers.convolutional.base_conv import BaseConv
    from keras.src.layers.convolutional.base_conv_transpose import BaseConvTranspose

    total = [0]
    originals = {cls: cls.call for cls in (BaseConv, BaseConvTranspose)}

    def hook(cls, transpose):
        orig = originals[cls]

        def call(self, inputs, *args, **kwargs):
            out = orig(self, inputs, *args, **kwargs)
            k = int(np.prod(self.kernel.shape))  # spatial x C_in x C_out (/groups in C_in)
            spatial = tuple(inputs.shape[1:-1]) if transpose else tuple(out.shape[1:-1])
            total[0] += int(np.prod(spatial)) * k
            return out
        return call

    try:
        BaseConv.call = hook(BaseConv, False)
        BaseConvTranspose.call = hook(BaseConvTranspose, True)
        model(x, training=False)
    finally:
        for cls, orig in originals.items():
            cls.call = orig
    return total[0] // int(np.shape(x)[0] if not isinstance(x, (list, tuple)) else np.shape(x[0])[0])


def torch_conv_macs(net, x) -> int:
    """Convolution MACs of one forward pass of a torch module on ``x`` (per sample)."""
    import torch

    total = [0]
    conv = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
    convt = (torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)

    def fwd(mod, inp, out):
        k = int(np.prod(mod.weight.shape))  # C_out x C_in/groups x spatial (C_in x C_out/g x .. for T)
        spatial = inp[0].shape[2:] if isinstance(mod, convt) else out.shape[2:]
        total[0] += int(np.prod(tuple(spatial))) * k

    handles = [m.register_forward_hook(fwd) for m in net.modules() if isinstance(m, conv + convt)]
    try:
        with torch.inference_mode():
            net(x)
    finally:
        for h in handles:
            h.remove()
    return total[0] // int(x.shape[0])


def torch_softmax(net):
    """``net`` followed by a softmax over channels (dim 1), in eval mode (torch)."""
    import torch

    class WithSoftmax(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.net = inner

        def forward(self, x):
            return torch.softmax(self.net(x), dim=1)

    return WithSoftmax(net).eval()


def time_model_calls(model, clock):
    """Wrap ``model.predict_on_batch`` so its seconds accumulate into ``clock[0]``."""
    orig = model.predict_on_batch

    def call(x):
        t0 = time.perf_counter()
        out = orig(x)
        clock[0] += time.perf_counter() - t0
        return out
    model.predict_on_batch = call


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB: Linux ``VmHWM`` of
    ``/proc/self/status`` (the high-water mark of this process image's own memory).

    Not ``ru_maxrss``: on Linux it carries the PARENT's resident size over fork + exec (measured:
    a child started by a parent holding 1 GB reports ru_maxrss 981 MB, VmHWM 13.6 MB), which
    made the first full-size memory run report the benchmark parent's 3.03 GB as the child's
    peak. ``ru_maxrss`` (KiB) is the fallback where ``/proc`` is missing.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def run_memory_child(script: str, args) -> dict:
    """Run ``script --memory_child ARGS`` in a fresh process and parse the line it prints,
    ``memory_child KEY VALUE KEY VALUE ...`` (e.g. ``peak_rss_mb``, from :func:`peak_rss_mb`),
    into ``{KEY: float}``. On failure the child's output tails are printed and the benchmark
    stops with one error line."""
    import subprocess
    import sys

    cmd = [sys.executable, os.path.abspath(script), "--memory_child", *map(str, args)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    line = [s for s in res.stdout.splitlines() if s.startswith("memory_child")]
    if res.returncode or not line:
        print(res.stdout[-2000:], res.stderr[-4000:])
        raise SystemExit("error: the memory subprocess failed")
    parts = line[-1].split()[1:]
    return {k: float(v) for k, v in zip(parts[::2], parts[1::2])}


def mni_volume(shape=(160, 192, 160)) -> np.ndarray:
    """ICBM152 2009 T1 template (nilearn, 1 mm) cropped/padded to ``shape`` around the brain.

    Returns float32 ``[X, Y, Z]`` with zeros outside the template's nonzero region (RAS axes).
    """
    from nilearn.datasets import load_mni152_template
    from scipy import ndimage

    data = np.asarray(load_mni152_template(resolution=1).get_fdata(), dtype=np.float32)
    nz = np.argwhere(data > 0)
    lo, hi = nz.min(0), nz.max(0) + 1
    data = data[tuple(slice(a, b) for a, b in zip(lo, hi))]
    fit = min(1.0, min(s / d for s, d in zip(shape, data.shape)))
    if fit < 1.0:  # tiny test sizes: shrink the brain so it fits
        data = ndimage.zoom(data, fit, order=1)
        data = data[tuple(slice(0, min(d, s)) for d, s in zip(data.shape, shape))]
    out = np.zeros(shape, dtype=np.float32)
    before = [(s - d) // 2 for s, d in zip(shape, data.shape)]
    out[tuple(slice(b, b + d) for b, d in zip(before, data.shape))] = data
    return out


def profile_layers(model, batch: int, peak: float, repeats: int = 3):
    """Per-layer profile of a Keras functional model with fully defined input shapes.

    Each top-level layer with weights (QuickNAT's dense blocks, a U-Net's encoder/decoder
    blocks, the classifier) is timed alone as a ``tf.function`` on random inputs of the shapes it
    sees in the model, batch ``batch`` (best of ``repeats``), next to its conv FLOPs
    (:func:`keras_conv_macs`) and their rate as a % of ``peak`` (GFLOP/s); the whole model is
    timed the same way. Returns ``(rows, whole_s, sum_s)``; :func:`profile_table` prints them.
    """
    import tensorflow as tf

    def best(fn, x):
        fn(x)
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = fn(x)
            (out[0] if isinstance(out, (list, tuple)) else out).numpy()
            ts.append(time.perf_counter() - t0)
        return min(ts)

    def randoms(symbolic, b):
        """Random inputs of batch ``b`` shaped like the symbolic input(s); a list stays a list."""
        return tf.nest.map_structure(lambda t: tf.random.uniform((b,) + tuple(t.shape[1:])),
                                     symbolic)

    rows, total = [], 0.0
    for layer in model.layers:
        if not layer.weights:
            continue
        x = randoms(layer.input, batch)
        t = best(tf.function(lambda v, lay=layer: lay(v, training=False), autograph=False), x)
        gflop = 2 * keras_conv_macs(layer, randoms(layer.input, 1)) * batch / 1e9
        total += t
        shapes = " + ".join("x".join(map(str, v.shape)) for v in tf.nest.flatten(x))
        rows.append([layer.name, shapes, fmt(t, 3), fmt(gflop, 1), fmt(gflop / t, 1),
                     fmt(100 * gflop / t / peak, 1)])
    whole = best(tf.function(lambda v: model(v, training=False), autograph=False),
                 randoms(model.input, batch))
    for r in rows:
        r.insert(3, fmt(100 * float(r[2]) / total, 1))
    return rows, whole, total


def profile_table(rows, whole, total) -> str:
    """The table of :func:`profile_layers` plus the whole-model line."""
    return (table(rows, ["layer", "input", "s", "% of layer sum", "conv GFLOP", "GFLOP/s",
                         "% matmul peak"])
            + f"\nsum of layers {total:.3f} s, whole model {whole:.3f} s per batch")


def table(rows, headers) -> str:
    """A markdown table."""
    cells = [[str(c) for c in r] for r in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join(lines)


def fmt(v, nd=2) -> str:
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)
