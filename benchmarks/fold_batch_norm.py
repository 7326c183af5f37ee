"""What folding batch norm into the convolutions saves in an exported graph (issue 17, item 4).

``segment_volume`` of the in-memory serving module (``tfneuro.export.build_module``: the same
``tf.function`` that ``export_model`` saves) with ``fold_batch_norm=True`` vs ``False``, timed
in ALTERNATING runs (folded, unfolded, ...) on the ICBM152 template cropped to
``--shape``, for

* ``unet3d`` (paper 000 / Cicek: every conv is followed by BN, so every BN folds; 2 classes,
  ``--base_filters``, ``--window``^3 windows, overlap 0.5), and
* QuickNAT (paper 001 / Roy et al.: BN -> ReLU -> conv dense blocks; only the bottleneck's
  conv -> BN folds; 4 classes, ``--filters``, 5x5, three views),

each at float32 and at ``--precision`` (default ``auto``: bfloat16 on a CPU with avx512_bf16 /
amx_bf16; a precision equal to float32 runs once). Memory: each variant runs once more in a
FRESH process, which reports its peak resident set (``VmHWM``) and its resident set just
before the call, so the difference is what the call itself added.

Last line: ``ratio folded/unfolded: X`` = median folded / median unfolded ``segment_volume``
time of unet3d at ``--precision`` (the case folding is for).

Full size (about an hour on 2 cores): ``python benchmarks/fold_batch_norm.py``; reduced:
``--shape 96,112,96 --window 64 --base_filters 16 --filters 32 --runs 3``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (alternate, fmt, load_average, median, mni_volume,  # noqa: E402
                     parse_shape, peak_rss_mb, precision_report, run_memory_child, table)

import numpy as np  # noqa: E402

WORKLOADS = ("unet3d", "quicknat")


def build(args, workload, fold, precision):
    """The serving module of ``workload`` (untrained weights, non-trivial BN statistics)."""
    from tfneuro.export import build_module
    from tfneuro.models import get

    import keras

    keras.utils.set_random_seed(0)
    if workload == "unet3d":
        model = get("unet3d", num_classes=2, input_shape=(None, None, None, 1),
                    base_filters=args.base_filters)
        opts = {"window": (args.window,) * 3, "label_scheme": ["background", "foreground"]}
    else:
        model = get("quicknat", num_classes=4, input_shape=(None, None, 1),
                    filters=args.filters, kernel_size=args.kernel)
        opts = {"views": ["sagittal", "coronal", "axial"]}
    rng = np.random.default_rng(0)
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.1, n))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n))
    return build_module(model, fold_batch_norm=fold, precision=precision, **opts)


def memory_child(args):
    """Fresh process: one variant, traced once on a tiny volume, then run once on --shape."""
    import tensorflow as tf

    module = build(args, args.workload, bool(args.fold), args.precision)
    module.segment_volume(tf.zeros((16, 16, 16, 1)))  # trace
    vol = tf.constant(mni_volume(parse_shape(args.shape))[..., None])
    with open("/proc/self/status") as f:
        rss = [int(line.split()[1]) * 1024 / 1e6 for line in f if line.startswith("VmRSS:")][0]
    t0 = time.perf_counter()
    module.segment_volume(vol)["labels"].numpy()
    print(f"memory_child peak_rss_mb {peak_rss_mb():.1f} rss_before_mb {rss:.1f} "
          f"seconds {time.perf_counter() - t0:.1f}", flush=True)


def child_memory(args, workload, fold, precision):
    got = run_memory_child(__file__, [
        "--workload", workload, "--fold", int(fold), "--precision", precision, "--shape",
        args.shape, "--window", args.window, "--base_filters", args.base_filters, "--filters",
        args.filters, "--kernel", args.kernel])
    return got["peak_rss_mb"], got["rss_before_mb"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="160,192,160", help="volume shape X,Y,Z")
    p.add_argument("--window", type=int, default=96, help="unet3d window")
    p.add_argument("--base_filters", type=int, default=32, help="unet3d base filters")
    p.add_argument("--filters", type=int, default=64, help="QuickNAT filters")
    p.add_argument("--kernel", type=int, default=5, help="QuickNAT kernel")
    p.add_argument("--precision", default="auto", help="besides float32: auto | bfloat16")
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--memory", type=int, default=1, help="fresh-process peak RSS per variant")
    p.add_argument("--memory_child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--workload", default="unet3d", help=argparse.SUPPRESS)
    p.add_argument("--fold", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        return memory_child(args)

    import tensorflow as tf

    precision, report = precision_report(args.precision, monai=False)
    print(f"load {load_average()}; {report}", flush=True)
    vol = tf.constant(mni_volume(parse_shape(args.shape))[..., None])
    precisions = ["float32"] + ([precision] if precision != "float32" else [])
    rows, last = [], None
    for workload in [w.strip() for w in args.workloads.split(",") if w.strip()]:
        for prec in precisions:
            mods = {f: build(args, workload, f, prec) for f in (True, False)}
            folded = mods[True].meta.batch_norm_folded
            t0 = time.perf_counter()
            for m in mods.values():
                m.segment_volume(vol)["labels"].numpy()
            warm = time.perf_counter() - t0
            fns = {name: (lambda m=m: m.segment_volume(vol)["labels"].numpy())
                   for name, m in (("folded", mods[True]), ("unfolded", mods[False]))}
            print(f"{workload} {prec}: {folded} batch norm(s) folded; warm-up {warm:.1f} s; "
                  f"timing {args.runs} alternating runs", flush=True)
            times = alternate(fns, args.runs)
            t_f, t_u = median(times["folded"]), median(times["unfolded"])
            mem = {f: child_memory(args, workload, f, prec) for f in (True, False)} \
                if args.memory else None
            rows.append([workload, prec, str(folded), fmt(t_f), fmt(t_u), fmt(t_f / t_u, 3),
                         " / ".join(f"{mem[f][0] / 1000:.2f}" for f in (True, False))
                         if mem else "-",
                         " / ".join(f"{(mem[f][0] - mem[f][1]) / 1000:.2f}" for f in (True, False))
                         if mem else "-", load_average()])
            if workload == "unet3d" and prec == precision:
                last = t_f / t_u
    print()
    print(f"segment_volume on {parse_shape(args.shape)} (ICBM152), unet3d base "
          f"{args.base_filters} window {args.window}, QuickNAT {args.filters} filters "
          f"{args.kernel}x{args.kernel} 3 views; medians of {args.runs} alternating runs")
    print(table(rows, ["model", "precision", "BN folded", "folded s", "unfolded s",
                       "folded/unfolded", "peak RSS GB folded / unfolded",
                       "added by the call GB folded / unfolded", "load at end"]))
    if last is not None:
        print(f"ratio folded/unfolded: {last:.3f}")


if __name__ == "__main__":
    main()
