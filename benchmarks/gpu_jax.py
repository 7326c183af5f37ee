"""Whole-volume QuickNAT and 3D sliding-window inference under ``KERAS_BACKEND=jax`` on a GPU
(issue 17, item 6), at float32 and at tfneuro's default precision.

The same work as ``quicknat_vs_monai.py`` (3-view QuickNAT, 4 classes, 64 filters, 5x5, on the
ICBM152 template cropped to 160x192x160, ``predict_volume_views``) and ``unet3d_vs_monai.py``
(``unet3d`` base 32, 96^3 windows, overlap 0.5, Gaussian blending, ``sliding_window_predict``),
tfneuro side only: the models are Keras 3 models, so the same code runs on JAX (the slice
loop, accumulation and blending stay numpy on the host; each model call is a jitted
``predict_on_batch`` on the GPU). Each workload runs at float32 and at ``--precision``
(default ``auto``: bfloat16 on a GPU of compute capability 8.0 or newer), alternating.
MONAI is not run here (the ``bench`` extra installs CPU torch).

Needs JAX with a GPU backend (``pip install "jax[cuda12]"``); without one it prints ONE line
``error: gpu_jax.py needs JAX with a GPU: <why>`` on stderr and exits with status 2 (checked
before Keras, TensorFlow or tfneuro are imported). Written and tested on a machine with
neither (this session was lent no GPU): the timing part has not run yet.

Last line: ``ratio <precision>/float32: X`` (geometric mean over the two workloads of the
median time at ``--precision`` / the median float32 time).

Full size: ``python benchmarks/gpu_jax.py``; small: ``--shape 64,64,64 --filters 16
--window 32 --base_filters 8``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

os.environ["KERAS_BACKEND"] = "jax"
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")  # if TensorFlow touches the GPU
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def gpu_problem() -> str | None:
    """Why this machine cannot run the benchmark (no JAX, or JAX without a GPU), or None."""
    try:
        import jax
    except ImportError:
        return 'jax is not installed (pip install "jax[cuda12]")'
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:
        gpus = []
    if not gpus:
        found = sorted({d.platform for d in jax.devices()})
        return f"JAX sees no GPU (its devices: {', '.join(found) or 'none'})"
    return None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="160,192,160", help="volume shape X,Y,Z")
    p.add_argument("--classes", type=int, default=4, help="QuickNAT classes")
    p.add_argument("--filters", type=int, default=64)
    p.add_argument("--kernel", type=int, default=5)
    p.add_argument("--batch_size", type=int, default=0, help="slices per call (0: automatic)")
    p.add_argument("--window", type=int, default=96)
    p.add_argument("--overlap", type=float, default=0.5)
    p.add_argument("--base_filters", type=int, default=32)
    p.add_argument("--window_batch", type=int, default=1, help="windows per call")
    p.add_argument("--precision", default="auto", help="auto | bfloat16 | float16 | float32")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--skip_empty", type=int, default=1)
    p.add_argument("--jit", type=int, default=1,
                   help="model.jit_compile (1: jitted predict; 0 runs JAX eagerly, slowly)")
    args = p.parse_args(argv)
    problem = gpu_problem()
    if problem:
        print(f"error: gpu_jax.py needs JAX with a GPU: {problem}", file=sys.stderr)
        return 2
    return run(args)


def run(args):
    import jax
    import numpy as np

    from _common import alternate, fmt, load_average, median, mni_volume, parse_shape, table
    from quicknat_vs_monai import build_tfneuro, warm_tfneuro
    from tfneuro.inference import (model_at_precision, predict_volume_views,
                                   sliding_window_predict)
    from tfneuro.models.unet3d import unet3d
    from tfneuro.utils.precision import Hardware, resolve_precision

    gpu = jax.devices("gpu")[0]
    precision = resolve_precision(args.precision)
    print(f"JAX {jax.__version__} on {gpu.device_kind}; {Hardware.detect().describe()}; "
          f"tfneuro {args.precision} -> {precision}; load {load_average()}", flush=True)
    shape = parse_shape(args.shape)
    vol = mni_volume(shape)
    win = (args.window,) * 3
    qn = build_tfneuro(args)
    u3 = unet3d(2, input_shape=(None, None, None, 1), base_filters=args.base_filters)
    sides = {"float32": (qn, u3)}
    if precision != "float32":
        sides[precision] = ({v: model_at_precision(m, precision) for v, m in qn.items()},
                            model_at_precision(u3, precision))
    t0 = time.perf_counter()
    for q, u in sides.values():
        warm_tfneuro(q, vol, args)
        u.predict_on_batch(np.zeros((args.window_batch,) + win + (1,), np.float32))
    print(f"trace/compile (untimed): {time.perf_counter() - t0:.1f} s", flush=True)

    def quicknat_run(models, p):
        return lambda: predict_volume_views(models, vol, batch_size=args.batch_size or None,
                                            skip_empty=bool(args.skip_empty), precision=p)

    def unet_run(model, p):
        return lambda: sliding_window_predict(model, vol[..., None], window=win,
                                              overlap=args.overlap, batch_size=args.window_batch,
                                              skip_empty=bool(args.skip_empty), precision=p)

    rows, ratios = [], []
    for work, make, i in (("QuickNAT 3 views", quicknat_run, 0), ("unet3d window", unet_run, 1)):
        fns = {p: make(models[i], p) for p, models in sides.items()}
        times = alternate(fns, args.runs)
        med = {p: median(t) for p, t in times.items()}
        ratios.append(med[precision] / med["float32"])
        for p in fns:
            rows.append([work, p, fmt(med[p]), " ".join(fmt(t) for t in times[p])])
    stats = gpu.memory_stats() or {}
    print()
    print(f"volume {shape}, QuickNAT {args.filters} filters {args.kernel}x{args.kernel}, unet3d "
          f"base {args.base_filters} window {win} overlap {args.overlap}; load {load_average()}")
    print(table(rows, ["workload", "precision", "median s", "runs s"]))
    if "peak_bytes_in_use" in stats:
        print(f"GPU peak memory in use: {stats['peak_bytes_in_use'] / 1e9:.2f} GB")
    gm = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print(f"ratio {precision}/float32: {gm:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
