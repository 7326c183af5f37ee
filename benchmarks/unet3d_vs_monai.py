"""3D U-Net sliding-window inference: tfneuro vs MONAI (issue 8, items 2 and 3).

Task: the same real-anatomy volume as ``quicknat_vs_monai.py`` (ICBM152 2009 T1, 1 mm,
160x192x160), 96^3 windows, overlap 0.5, Gaussian blending (sigma = window/8), softmax
probabilities, untrained weights.

* tfneuro: ``tfneuro.models.unet3d`` (paper 000 / Çiçek et al.: 4 resolution levels, base 32
  doubling, two 3x3x3 convs + BN + ReLU per level, 2x2x2 max-pool down, 2x2x2 transposed conv
  up) run by ``tfneuro.inference.sliding_window_predict`` (``batch_size`` windows per
  ``predict_on_batch``; ``skip_empty`` skips windows outside the nonzero bounding box — stated
  in the table).
* MONAI: ``monai.networks.nets.UNet`` + softmax, run by
  ``monai.inferers.sliding_window_inference(mode="gaussian", overlap=0.5)`` (eval,
  ``torch.inference_mode``, ``torch.set_num_threads(--threads)``). MONAI's UNet has no max-pool
  and no plain double conv; the closest configuration (chosen by comparing parameter counts and
  conv MACs of several candidates, see the README) is
  ``channels=(b, 2b, 4b, 8b, 16b), strides=(1, 2, 2, 2), num_res_units=2, act=RELU,
  norm=BATCH``: 4 resolution levels (full, /2, /4, /8) with the same widths as unet3d's first
  convs, two 3x3x3 convs per level (residual units), strided-conv down, transposed-conv up;
  19.2 M parameters vs unet3d's 19.1 M at b=32. It does ~5x fewer conv MACs per window (its
  decoder runs narrow convs at full resolution), so the table prints the time per conv
  TFLOP too.

Profile (``--profile 1``): each encoder/decoder block of ``unet3d`` timed alone on one batch of
windows, with its conv FLOPs and GFLOP/s as a % of the matmul peak.

Roofline: conv FLOPs (2 x MACs from each net's own layer shapes, x the windows it computes) /
median time, as % of the float32 matmul peak measured in this run.

Precision (issue 17): tfneuro runs at ``--precision`` (default ``auto``: bfloat16 on a CPU with
avx512_bf16 / amx_bf16, else float32) AND at float32; MONAI at float32 (its default) AND under
``torch.autocast("cpu", dtype=torch.bfloat16)``; all in the same alternating run (a tfneuro side
equal to the float32 one runs once). The output says what each side ran at and the CPU's
bfloat16 flags. Last lines (medians over ``--runs`` alternating runs; checks parse them)::

    ratio tfneuro/monai_bf16: X2                 tfneuro at --precision / MONAI bf16 autocast
    ratio per conv TFLOP tfneuro/monai: X3       the same per conv TFLOP / MONAI float32's
    ratio tfneuro/monai: X                       tfneuro at --precision / MONAI float32
Full size (19 min on 2 cores):
  ``nohup python benchmarks/unet3d_vs_monai.py > /tmp/unet3d_vs_monai.log 2>&1 &``
Tiny (the test): ``--shape 32,32,32 --window 16 --base_filters 2 --peak_n 256``
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (fmt, keras_conv_macs, load_average, median, mni_volume,  # noqa: E402
                     parse_shape, precision_report, profile_layers, profile_table, ratio_lines,
                     table, time_four_sides, time_model_calls, torch_conv_macs, torch_softmax)

import numpy as np  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="160,192,160", help="volume shape X,Y,Z")
    p.add_argument("--window", type=int, default=96)
    p.add_argument("--overlap", type=float, default=0.5)
    p.add_argument("--classes", type=int, default=2, help="2 = paper 000's neurocranium task")
    p.add_argument("--base_filters", type=int, default=32)
    p.add_argument("--batch_size", type=int, default=1, help="windows per model call, both sides")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--jit", type=int, default=0, help="tfneuro: model.jit_compile (XLA)")
    p.add_argument("--skip_empty", type=int, default=1, help="tfneuro: skip empty windows")
    p.add_argument("--peak_n", type=int, default=4096)
    p.add_argument("--precision", default="auto",
                   help="tfneuro's default side: auto | float32 | bfloat16 "
                        "(a float32 side runs too)")
    p.add_argument("--profile", type=int, default=1,
                   help="per-block profile of tfneuro's unet3d on one batch of windows")
    args = p.parse_args(argv)

    import torch
    from monai.data.utils import dense_patch_slices
    from monai.inferers import sliding_window_inference
    from monai.inferers.utils import _get_scan_interval
    from monai.networks.nets import UNet

    from tfneuro.inference import sliding_window_predict
    from tfneuro.inference.sliding_window import _nonzero_bbox, window_starts
    from tfneuro.models.unet3d import unet3d

    torch.set_num_threads(args.threads)
    shape = parse_shape(args.shape)
    win = (args.window,) * 3
    vol = mni_volume(shape)
    b = args.base_filters
    print(f"volume {shape} (ICBM152 1 mm), load {load_average()}", flush=True)

    precision, report = precision_report(args.precision)
    print(report, flush=True)

    # ---- tfneuro: float32 and the default precision (a copy at bfloat16, or the same model)
    from tfneuro.inference import model_at_precision

    model = unet3d(args.classes, input_shape=(None, None, None, 1), base_filters=b)
    model.jit_compile = bool(args.jit)
    sides = {"tfneuro float32": model}
    if precision != "float32":
        sides[f"tfneuro {args.precision} ({precision})"] = model_at_precision(model, precision)
    default = list(sides)[-1]
    t0 = time.perf_counter()
    for m in sides.values():
        m.predict_on_batch(np.zeros((args.batch_size,) + win + (1,), np.float32))
    compile_s = time.perf_counter() - t0
    clocks = {name: [0.0] for name in sides}
    for name, m in sides.items():
        time_model_calls(m, clocks[name])

    def tfneuro_run(m, p):
        def run():
            out = sliding_window_predict(m, vol[..., None], window=win, overlap=args.overlap,
                                         blend="gaussian", batch_size=args.batch_size,
                                         skip_empty=bool(args.skip_empty), precision=p)
            assert out.shape == shape + (args.classes,)
        return run

    # windows tfneuro computes (same rule as sliding_window_predict)
    corners = [(x, y, z) for x in window_starts(shape[0], win[0], args.overlap)
               for y in window_starts(shape[1], win[1], args.overlap)
               for z in window_starts(shape[2], win[2], args.overlap)]
    n_grid = len(corners)
    if args.skip_empty:
        lo, hi = _nonzero_bbox(vol[..., None])
        corners = [c for c in corners if all(c[a] < hi[a] and c[a] + win[a] > lo[a] for a in range(3))]
    n_tf = len(corners)

    # ---- MONAI: float32 and bfloat16 autocast
    unet = UNet(spatial_dims=3, in_channels=1, out_channels=args.classes,
                channels=(b, 2 * b, 4 * b, 8 * b, 16 * b), strides=(1, 2, 2, 2),
                num_res_units=2, act="RELU", norm="BATCH").eval()
    net = torch_softmax(unet)
    xt = torch.from_numpy(vol)[None, None]
    n_mo = len(dense_patch_slices(shape, win, _get_scan_interval(shape, win, 3, (args.overlap,) * 3)))

    def monai_run(bf16):
        def run():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                        enabled=bf16):
                out = sliding_window_inference(xt, roi_size=win, sw_batch_size=args.batch_size,
                                               predictor=net, overlap=args.overlap,
                                               mode="gaussian", sigma_scale=0.125,
                                               progress=False)
                assert tuple(out.shape[2:]) == shape
                out.float().numpy()
        return run

    for bf16 in (False, True):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            net(torch.zeros((args.batch_size, 1) + win))

    # ---- conv MACs per window (each net's own layer shapes)
    small = min(32, args.window)  # count at a small window and scale by voxels (convs are linear)
    small -= small % 8
    scale = (args.window / small) ** 3
    mac_tf = keras_conv_macs(model, np.zeros((1, small, small, small, 1), np.float32)) * scale
    mac_mo = torch_conv_macs(unet, torch.zeros((1, 1, small, small, small))) * scale
    n_params_tf = model.count_params()
    n_params_mo = sum(q.numel() for q in unet.parameters())

    times, peaks = time_four_sides(sides, tfneuro_run, monai_run, precision, args.runs,
                                   args.peak_n)
    med = {name: median(t) for name, t in times.items()}
    gf_tf, gf_mo = 2 * mac_tf * n_tf / 1e9, 2 * mac_mo * n_mo / 1e9
    rows = []
    for name in times:
        tf_side = name.startswith("tfneuro")
        gf = gf_tf if tf_side else gf_mo
        peak = peaks["float32" if name.endswith("float32") else "bfloat16"]
        what = "unet3d + sliding_window_predict" if tf_side else "UNet + sliding_window_inference"
        rows.append([f"{name} {what}", fmt(med[name]), " ".join(fmt(t) for t in times[name]),
                     f"{n_tf} of {n_grid}" if tf_side else f"{n_mo} of {n_mo}",
                     f"{n_params_tf if tf_side else n_params_mo:,}", fmt(gf, 1),
                     fmt(gf / med[name], 1), fmt(100 * gf / med[name] / peak, 1),
                     fmt(1000 * med[name] / gf, 2)])
    print()
    print(f"3D U-Net sliding window, volume {shape}, window {win}, overlap {args.overlap}, "
          f"gaussian, {args.classes} classes, base {b}, batch {args.batch_size}, torch threads "
          f"{args.threads}, tfneuro jit_compile={bool(args.jit)}, skip_empty={bool(args.skip_empty)}")
    print("MONAI UNet(channels=({0}, {1}, {2}, {3}, {4}), strides=(1, 2, 2, 2), num_res_units=2, "
          "act=RELU, norm=BATCH)".format(b, 2 * b, 4 * b, 8 * b, 16 * b))
    print(table(rows, ["side", "median s", "runs s", "windows computed", "params",
                       "conv GFLOP", "GFLOP/s", "% matmul peak (own precision)",
                       "s per conv TFLOP"]))
    print()
    print(f"matmul peak ({args.peak_n}^2 tf.linalg.matmul, best of 5): " + ", ".join(
        f"{k} {v:.1f} GFLOP/s" for k, v in peaks.items()))
    print(f"conv MACs per window: tfneuro {mac_tf / 1e9:.2f} G, MONAI {mac_mo / 1e9:.2f} G")
    print(f"tfneuro trace (untimed warm-up, all tfneuro sides): {compile_s:.1f} s")
    for name in sides:
        print(f"profile: {name} model calls (predict_on_batch) = "
              f"{100 * clocks[name][0] / sum(times[name]):.1f}% of its inference time; the rest "
              f"is window copies, blending, division")
    t_tf, t_mo = med[default], med["MONAI float32"]
    per_tflop = (t_tf / gf_tf) / (t_mo / gf_mo)
    print(f"time per conv FLOP ratio tfneuro float32/monai float32: "
          f"{(med['tfneuro float32'] / gf_tf) / (t_mo / gf_mo):.3f}; tfneuro {precision}/float32: "
          f"{t_tf / med['tfneuro float32']:.3f}; MONAI bfloat16/float32: "
          f"{med['MONAI bfloat16 autocast'] / t_mo:.3f}")
    print(f"roofline: tfneuro's conv FLOPs at 100% of the float32 matmul peak take "
          f"{gf_tf / peaks['float32']:.1f} s -> best possible float32 ratio on this work "
          f"{gf_tf / peaks['float32'] / t_mo:.2f}")
    print(f"load average at end: {load_average()}")
    if args.profile:
        prof = model_at_precision(unet3d(args.classes, input_shape=win + (1,), base_filters=b),
                                  precision)
        print()
        print(f"profile (unet3d at {precision}, window {win}, batch {args.batch_size}; each block "
              f"timed alone in a tf.function, best of 3; % of the {precision} matmul peak; load "
              f"{load_average()}):")
        print(profile_table(*profile_layers(prof, args.batch_size, peaks[precision])))
    print(ratio_lines(t_tf, t_mo, med["MONAI bfloat16 autocast"], per_tflop))

if __name__ == "__main__":
    main()
