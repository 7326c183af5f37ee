"""3-view whole-volume QuickNAT inference: tfneuro vs MONAI (issue 8, items 1, 3 and 4).

Task: one real-anatomy volume (nilearn's ICBM152 2009 T1 template at 1 mm, cropped/padded to
160x192x160), QuickNAT with 4 classes, 64 filters, 5x5 kernels, untrained weights, one model
per view (sagittal, coronal, axial), softmax probabilities averaged over the three views.

* tfneuro: ``tfneuro.inference.predict_volume_views`` with three ``tfneuro.models.quicknat``
  models (``--batch_size`` slices per ``predict_on_batch``, default: the library's automatic
  batch, 2**17 pixels per call, which MONAI's ``sw_batch_size`` gets too; ``skip_empty``
  computes only the slices inside the volume's nonzero bounding box — tfneuro's own feature, stated in the table).
* MONAI: ``monai.networks.nets.Quicknat`` (eval mode, ``torch.inference_mode``,
  ``torch.set_num_threads(--threads)``) wrapped with a softmax, run by
  ``monai.inferers.SliceInferer(roi_size=<whole slice>, sw_batch_size=batch_size,
  spatial_dim=axis)`` along the three axes, averaged. MONAI computes every slice (it has no
  bounding-box skipping) unless ``--monai_same_slices`` hands it the same slab tfneuro computes.
  Architecture notes: MONAI's dense blocks hard-code instance norm + PReLU (its ``act``/``norm``
  arguments do not reach them) and its bottleneck is a full dense block; tfneuro follows Roy et
  al.'s text (BN + ReLU, one 5x5 conv bottleneck). Conv MACs are counted for both nets from
  their own layer shapes and printed.

Roofline (item 3): conv FLOPs (2 x MACs, only the slices each side computes) / median time,
as a % of the ``tf.linalg.matmul`` peak of the side's precision (float32 or bfloat16) measured
in this run.

Memory (item 4): ``--memory_shape 256,256,256`` runs tfneuro's side once in a FRESH
subprocess on a volume of that shape and reports its peak resident memory (``VmHWM``).

Precision (issue 17): tfneuro runs at ``--precision`` (default ``auto``: bfloat16 on a CPU with
avx512_bf16 / amx_bf16, else float32; ``tfneuro.utils.precision``) AND at float32; MONAI runs at
float32 (its default) AND under ``torch.autocast("cpu", dtype=torch.bfloat16)``; all sides in the
same alternating run (a side equal to another, e.g. tfneuro auto = float32 on a CPU without
bfloat16, runs once). The output says what each side ran at and the CPU's bfloat16 flags.

The last lines are (medians over ``--runs`` alternating runs; checks parse them)::

    ratio tfneuro/monai_bf16: X2     tfneuro at --precision / MONAI under bfloat16 autocast
    ratio tfneuro/monai: X           tfneuro at --precision / MONAI float32

Run (full size; 30 min on 2 cores including the 256^3 memory run, so in the background):
  nohup python benchmarks/quicknat_vs_monai.py > /tmp/quicknat_vs_monai.log 2>&1 &
Tiny (the test): python benchmarks/quicknat_vs_monai.py --shape 32,32,32 --filters 4
  --kernel 3 --runs 3 --memory_shape 32,32,32 --peak_n 256
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (fmt, keras_conv_macs, load_average, median, mni_volume,  # noqa: E402
                     parse_shape, peak_rss_mb, precision_report, profile_layers, profile_table,
                     ratio_lines, run_memory_child, table, time_four_sides, time_model_calls,
                     torch_conv_macs, torch_softmax)

import numpy as np  # noqa: E402

VIEWS = ("sagittal", "coronal", "axial")


def build_tfneuro(args, precision="float32"):
    """One QuickNAT per view, at ``precision`` (``tfneuro.inference.model_at_precision``:
    the float32 model itself, or its copy at bfloat16)."""
    from tfneuro.inference import model_at_precision
    from tfneuro.models.quicknat import quicknat

    models = {}
    for view in VIEWS:
        m = quicknat(args.classes, input_shape=(None, None, 1), filters=args.filters,
                     kernel_size=args.kernel, name="quicknat")
        m.jit_compile = bool(args.jit)
        models[view] = model_at_precision(m, precision)
    return models


def view_batch(args, hw):
    """Slices per call for ``hw`` slices: ``--batch_size``, or (0) tfneuro's default
    ``auto_slice_batch`` — MONAI's ``sw_batch_size`` gets the same number."""
    from tfneuro.inference.memory import auto_slice_batch

    return args.batch_size or auto_slice_batch(*hw)


def slab(vol, axis, skip_empty):
    from tfneuro.inference.slices import nonzero_slice_range

    return nonzero_slice_range(vol, axis) if skip_empty else (0, vol.shape[axis])


def warm_tfneuro(models, vol, args):
    """Trace/compile each view's predict function for the batch shapes the run will use."""
    for axis, view in enumerate(VIEWS):
        start, stop = slab(vol, axis, args.skip_empty)
        hw = tuple(s for i, s in enumerate(vol.shape) if i != axis)
        n, b = stop - start, view_batch(args, hw)
        sizes = {min(b, n)} | ({n % b} if n % b else set())
        for b in sorted(s for s in sizes if s > 0):
            models[view].predict_on_batch(np.zeros((b,) + hw + (1,), np.float32))


def memory_child(args):
    """Fresh process: tfneuro's 3-view inference once on ``--shape``; prints peak RSS."""
    from tfneuro.inference import predict_volume_views

    vol = mni_volume(parse_shape(args.shape))
    models = build_tfneuro(args, args.precision)
    base = peak_rss_mb()
    t0 = time.perf_counter()
    probs = predict_volume_views(models, vol, batch_size=args.batch_size or None,
                                 skip_empty=bool(args.skip_empty), precision=args.precision)
    dt = time.perf_counter() - t0
    assert probs.shape == vol.shape + (args.classes,)
    print(f"memory_child peak_rss_mb {peak_rss_mb():.1f} rss_before_mb {base:.1f} "
          f"seconds {dt:.1f}", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="160,192,160", help="volume shape X,Y,Z")
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--filters", type=int, default=64)
    p.add_argument("--kernel", type=int, default=5)
    p.add_argument("--batch_size", type=int, default=0,
                   help="slices per model call, both sides (0: tfneuro's automatic batch per view)")
    p.add_argument("--runs", type=int, default=3, help="alternating runs per side (>= 3)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--jit", type=int, default=0, help="tfneuro: model.jit_compile (XLA)")
    p.add_argument("--skip_empty", type=int, default=1, help="tfneuro: bounding-box skipping")
    p.add_argument("--monai_same_slices", type=int, default=0,
                   help="give MONAI only the slab of slices tfneuro computes")
    p.add_argument("--memory_shape", default="256,256,256",
                   help="shape of the fresh-process peak-RSS run ('none' skips it)")
    p.add_argument("--peak_n", type=int, default=4096, help="matmul size of the peak measurement")
    p.add_argument("--profile", type=int, default=1,
                   help="per-layer profile of the axial tfneuro model (one batch per layer)")
    p.add_argument("--precision", default="auto",
                   help="tfneuro's default side: auto | float32 | bfloat16 "
                        "(a float32 side runs too)")
    p.add_argument("--memory_child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        return memory_child(args)

    import torch
    from monai.inferers import SliceInferer
    from monai.networks.nets import Quicknat

    from tfneuro.inference import predict_volume_views

    torch.set_num_threads(args.threads)
    shape = parse_shape(args.shape)
    vol = mni_volume(shape)
    precision, report = precision_report(args.precision)
    print(f"volume {shape} (ICBM152 1 mm), load {load_average()}", flush=True)
    print(report, flush=True)

    # ---- tfneuro sides: float32 and the default precision (the same models if it is float32)
    models = build_tfneuro(args)
    sides = {"tfneuro float32": models}
    if precision != "float32":
        from tfneuro.inference import model_at_precision

        sides[f"tfneuro {args.precision} ({precision})"] = {
            v: model_at_precision(m, precision) for v, m in models.items()}
    default = list(sides)[-1]
    t0 = time.perf_counter()
    for side in sides.values():
        warm_tfneuro(side, vol, args)
    compile_s = time.perf_counter() - t0
    clocks = {name: [0.0] for name in sides}
    for name, side in sides.items():
        for m in side.values():
            time_model_calls(m, clocks[name])

    def tfneuro_run(side_models, p):
        def run():
            probs = predict_volume_views(side_models, vol, batch_size=args.batch_size or None,
                                         skip_empty=bool(args.skip_empty), precision=p)
            assert probs.shape == shape + (args.classes,)
        return run

    # ---- MONAI sides: float32 and bfloat16 autocast
    nets = [torch_softmax(Quicknat(num_classes=args.classes, num_channels=1,
                                 num_filters=args.filters, kernel_size=args.kernel,
                                 se_block="None", drop_out=0).eval()) for _ in VIEWS]
    inferers = []
    monai_slabs = []
    for axis in range(3):
        roi = tuple(s for i, s in enumerate(shape) if i != axis)
        inferers.append(SliceInferer(roi_size=roi, sw_batch_size=view_batch(args, roi),
                                     spatial_dim=axis, progress=False))
        monai_slabs.append(slab(vol, axis, args.monai_same_slices))
    xt = torch.from_numpy(vol)[None, None]

    def monai_run(bf16):
        def run():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                        enabled=bf16):
                out = torch.zeros((1, args.classes) + shape)
                for axis in range(3):
                    lo, hi = monai_slabs[axis]
                    idx = [slice(None)] * 5
                    idx[2 + axis] = slice(lo, hi)
                    part = inferers[axis](xt[tuple(idx)], nets[axis])
                    out[tuple(idx)] += part.float() / 3.0
                out.numpy()
        return run

    for bf16 in (False, True):  # warm-up (allocator, oneDNN primitives) at both precisions
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for axis in range(3):
                roi = tuple(s for i, s in enumerate(shape) if i != axis)
                nets[axis](torch.zeros((1, 1) + roi))

    # ---- FLOPs (conv MACs from each net's own layer shapes, per slice, per view)
    tf_slices, mo_slices, tf_macs, mo_macs, mo_per, tf_per = [], [], 0, 0, [], []
    for axis, view in enumerate(VIEWS):
        hw = tuple(s for i, s in enumerate(shape) if i != axis)
        a = keras_conv_macs(models[view], np.zeros((1,) + hw + (1,), np.float32))
        b = torch_conv_macs(nets[axis].net, torch.zeros((1, 1) + hw))
        lo, hi = slab(vol, axis, args.skip_empty)
        mlo, mhi = monai_slabs[axis]
        tf_slices.append(hi - lo)
        mo_slices.append(mhi - mlo)
        tf_macs += a * (hi - lo)
        mo_macs += b * (mhi - mlo)
        tf_per.append(a)
        mo_per.append(b)
    n_tf_params = models["axial"].count_params()
    n_mo_params = sum(q.numel() for q in nets[0].parameters())

    times, peaks = time_four_sides(sides, tfneuro_run, monai_run, precision, args.runs,
                                   args.peak_n)
    load_end = load_average()

    med = {name: median(t) for name, t in times.items()}
    gf_tf, gf_mo = 2 * tf_macs / 1e9, 2 * mo_macs / 1e9
    rows = []
    for name in times:
        tf_side = name.startswith("tfneuro")
        gf, n = (gf_tf, tf_slices) if tf_side else (gf_mo, mo_slices)
        peak = peaks["float32" if name.endswith("float32") else "bfloat16"]
        what = "predict_volume_views" if tf_side else "Quicknat + SliceInferer"
        rows.append([f"{name} {what}", fmt(med[name]), " ".join(fmt(t) for t in times[name]),
                     f"{sum(n)} ({'/'.join(map(str, n))})", fmt(med[name] / sum(n), 3),
                     f"{n_tf_params if tf_side else n_mo_params:,}", fmt(gf, 1),
                     fmt(gf / med[name], 1), fmt(100 * gf / med[name] / peak, 1)])
    batches = "/".join(str(view_batch(args, tuple(s for i, s in enumerate(shape) if i != a)))
                       for a in range(3))
    print()
    print(f"QuickNAT 3-view inference, volume {shape}, {args.classes} classes, {args.filters} "
          f"filters, {args.kernel}x{args.kernel}, batch (sag/cor/ax) {batches}, torch threads "
          f"{args.threads}, tfneuro jit_compile={bool(args.jit)}, skip_empty="
          f"{bool(args.skip_empty)}, MONAI same slices={bool(args.monai_same_slices)}")
    print(table(rows, ["side", "median s", "runs s", "slices computed (sag/cor/ax)",
                       "s/slice", "params", "conv GFLOP", "GFLOP/s",
                       "% matmul peak (own precision)"]))
    print()
    print(f"matmul peak ({args.peak_n}^2 tf.linalg.matmul, best of 5): " + ", ".join(
        f"{k} {v:.1f} GFLOP/s" for k, v in peaks.items()))
    print(f"conv MACs per slice (sag/cor/ax): tfneuro {'/'.join(f'{m / 1e9:.2f}G' for m in tf_per)}"
          f", MONAI {'/'.join(f'{m / 1e9:.2f}G' for m in mo_per)}")
    print(f"tfneuro trace/compile (untimed warm-up, all tfneuro sides): {compile_s:.1f} s")
    for name in sides:
        print(f"profile: {name} model calls (predict_on_batch) = "
              f"{100 * clocks[name][0] / sum(times[name]):.1f}% of its inference time; the rest "
              f"is slicing, accumulation, bbox")
    t_tf, t_mo = med[default], med["MONAI float32"]
    bound = gf_tf / peaks["float32"]
    print(f"roofline: tfneuro's conv FLOPs at 100% of the float32 matmul peak take {bound:.1f} s "
          f"-> best possible float32 ratio on this work {bound / t_mo:.2f}")
    per_slice_ratio = (t_tf / sum(tf_slices)) / (t_mo / sum(mo_slices))
    print(f"per computed slice ratio tfneuro/monai: {per_slice_ratio:.3f}")
    print(f"ratio tfneuro float32/monai float32: {med['tfneuro float32'] / t_mo:.3f}; "
          f"tfneuro {precision}/float32: {t_tf / med['tfneuro float32']:.3f}; MONAI "
          f"bfloat16/float32: {med['MONAI bfloat16 autocast'] / t_mo:.3f}")
    print(f"load average: start of timing see per-run lines, end {load_end}")
    if args.profile:
        from tfneuro.inference import model_at_precision
        from tfneuro.models.quicknat import quicknat

        hw = (shape[0], shape[1])
        batch = view_batch(args, hw)

        prof = model_at_precision(quicknat(args.classes, input_shape=hw + (1,),
                                           filters=args.filters, kernel_size=args.kernel),
                                  precision)
        print()
        print(f"profile (axial model at {precision}, {hw[0]}x{hw[1]}, batch {batch}; each layer "
              f"timed alone in a tf.function, best of 3; % of the {precision} matmul peak; "
              f"load {load_average()}):")
        print(profile_table(*profile_layers(prof, batch, peaks[precision])))

    if args.memory_shape.lower() != "none":
        mshape = parse_shape(args.memory_shape)
        got = run_memory_child(__file__, [
            "--shape", ",".join(map(str, mshape)), "--classes", args.classes, "--filters",
            args.filters, "--kernel", args.kernel, "--batch_size", args.batch_size, "--jit",
            args.jit, "--skip_empty", args.skip_empty, "--precision", args.precision])
        rss, before, secs = got["peak_rss_mb"], got["rss_before_mb"], got["seconds"]
        print(f"memory: tfneuro 3-view inference at {precision} on {mshape} in a fresh process: "
              f"peak RSS {rss / 1000:.2f} GB (after imports + models, before inference: "
              f"{before / 1000:.2f} GB; {secs:.0f} s; batch {args.batch_size or 'auto'}; load "
              f"{load_average()}); goal <= 1.5 GB (issue 17): "
              f"{'met' if rss <= 1500 else 'NOT met'}")

    print(ratio_lines(t_tf, t_mo, med["MONAI bfloat16 autocast"]))

if __name__ == "__main__":
    main()
