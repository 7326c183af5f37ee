"""Training-step time with and without XLA (``jit_compile``) on this CPU (issue 8, item 6).

Models (small but realistic sizes, flags below): QuickNAT (paper 001; 2D, 64 filters, 5x5),
InfiNet (paper 003; two-arm T1/T2 2D, 64 filters, 3x3) and NEC-NET's ``unet3d`` (paper 000;
base 32). Each is compiled twice — ``jit_compile=False`` (TF graph, oneDNN kernels, the
``tf.nn.max_pool_with_argmax`` pooling path) and ``jit_compile=True`` (XLA; pooling takes the
``keras.ops`` path through ``impl="auto"``) — with Adam and sparse categorical cross-entropy,
and ``train_on_batch`` is timed on a fixed random batch, ``--steps`` steps per run, runs
alternating (no-XLA, XLA, no-XLA, ...). First-call trace/compile time is reported separately.

GPU half: not run here — no GPU could be lent to this session (device ``status``:
``can_start_another`` false); the script says so in its output.

Last line: ``ratio xla/no_xla: X`` = geometric mean over the models of (median XLA step time /
median no-XLA step time); < 1 means XLA is faster.
Tiny (the test): ``--models infinet --size2d 16 --filters 2 --steps 1``
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import alternate, fmt, load_average, median, table  # noqa: E402

import numpy as np  # noqa: E402


def builders(args):
    from tfneuro.models.infinet import infinet
    from tfneuro.models.quicknat import quicknat
    from tfneuro.models.unet3d import unet3d

    s2, s3 = args.size2d, args.size3d
    rng = np.random.default_rng(0)
    x2 = rng.random((args.batch2d, s2, s2, 1), dtype=np.float32)
    y2 = rng.integers(0, 4, (args.batch2d, s2, s2)).astype(np.int32)
    x3 = rng.random((args.batch3d, s3, s3, s3, 1), dtype=np.float32)
    y3 = rng.integers(0, 2, (args.batch3d, s3, s3, s3)).astype(np.int32)
    return {
        f"quicknat {args.batch2d}x{s2}x{s2}, {args.filters} filters 5x5":
            (lambda: quicknat(4, input_shape=(s2, s2, 1), filters=args.filters), x2, y2),
        f"infinet {args.batch2d}x{s2}x{s2} T1+T2, {args.filters} filters 3x3":
            (lambda: infinet(4, input_shape=(s2, s2, 1), filters=args.filters), [x2, x2], y2),
        f"unet3d {args.batch3d}x{s3}^3, base {args.base3d}":
            (lambda: unet3d(2, input_shape=(s3, s3, s3, 1), base_filters=args.base3d), x3, y3),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size2d", type=int, default=128)
    p.add_argument("--batch2d", type=int, default=4)
    p.add_argument("--filters", type=int, default=64)
    p.add_argument("--size3d", type=int, default=48)
    p.add_argument("--batch3d", type=int, default=1)
    p.add_argument("--base3d", type=int, default=32)
    p.add_argument("--steps", type=int, default=2, help="train steps per timed run")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--models", default="quicknat,infinet,unet3d",
                   help="comma-separated subset of quicknat,infinet,unet3d")
    args = p.parse_args(argv)

    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    print(f"GPU half: not run by this script; TensorFlow sees {len(gpus)} GPU(s); the steps "
          f"below run on {'the GPU' if gpus else 'the CPU'}.", flush=True)
    print(f"load {load_average()}", flush=True)
    rows, ratios = [], []
    wanted = [m.strip() for m in args.models.split(",") if m.strip()]
    for name, (build, x, y) in builders(args).items():
        if name.split()[0] not in wanted:
            continue
        fns, compile_s = {}, {}
        for jit in (False, True):
            model = build()
            model.compile(optimizer=keras.optimizers.Adam(1e-3),
                          loss=keras.losses.SparseCategoricalCrossentropy(), jit_compile=jit)
            t0 = time.perf_counter()
            model.train_on_batch(x, y)
            compile_s[jit] = time.perf_counter() - t0

            def run(model=model):
                for _ in range(args.steps):
                    model.train_on_batch(x, y)
            fns["xla" if jit else "no_xla"] = run
        print(f"{name}: timing {args.runs} alternating runs", flush=True)
        times = alternate(fns, args.runs)
        t_no, t_x = (median(times[k]) / args.steps for k in ("no_xla", "xla"))
        ratios.append(t_x / t_no)
        rows.append([name, fmt(t_no, 3), fmt(t_x, 3), fmt(t_x / t_no, 3),
                     f"{compile_s[False]:.1f} / {compile_s[True]:.1f}"])
    print()
    print(f"CPU training step (train_on_batch), median s/step over {args.runs} alternating runs of "
          f"{args.steps} steps; load at end {load_average()}")
    print(table(rows, ["model", "no XLA s/step", "XLA s/step", "XLA/no-XLA",
                       "first step s (no XLA / XLA)"]))
    gm = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print(f"ratio xla/no_xla: {gm:.3f}")


if __name__ == "__main__":
    main()
