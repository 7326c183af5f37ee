"""tf.data input pipeline vs QuickNAT training-step consumption (issue 8, item 5).

Question: does ``tfneuro.data.slice_dataset`` (decode .nii.gz, augment each 3D volume,
centre pad/crop to 256x256 axial slices, shuffle, batch 8) deliver slices at least 3x faster
than a QuickNAT training step (batch 8, 256x256, 64 filters, 5x5) consumes them?

* Cohort: ``tfneuro.data.synth.make_cohort`` (synthetic infant T1/T2/tissue labels written as
  .nii.gz; ``--spacing`` mm, default 1), generated once into ``--cohort_dir``.
* Pipeline: ``slice_dataset(cohort, axis="axial", pad_to=(256, 256, D), augment=
  default_augmentation(3), batch_size=8, shuffle=True).repeat()`` (D = the volumes' own axial
  extent); each pipeline run makes a FRESH iterator and times ``--batches`` batches (default:
  one epoch) from it, so volume decoding, 3D augmentation and filling the shuffle buffer are all
  inside the timed span and nothing was prefetched while the training side ran.
* Training: ``model.train_on_batch`` of ``tfneuro.models.quicknat`` (Adam, sparse categorical
  cross-entropy) on batches from the same pipeline, ``--steps`` steps per run,
  ``jit_compile=--jit``. Measured separately from the pipeline (not overlapped), so both are
  rates on the full machine.

Runs alternate (pipeline, training, pipeline, ...); medians of slices/s.
Last line: ``ratio pipeline/training: X`` (goal >= 3).
Tiny (the test): ``--spacing 4 --subjects 2 --size 32 --filters 4 --batches 2 --steps 1``
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import alternate, fmt, load_average, median, table  # noqa: E402

import numpy as np  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cohort_dir", default="/tmp/tfneuro_bench_cohort")
    p.add_argument("--subjects", type=int, default=4)
    p.add_argument("--spacing", type=float, default=1.0)
    p.add_argument("--size", type=int, default=256, help="slice size (pad/crop)")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--filters", type=int, default=64)
    p.add_argument("--kernel", type=int, default=5)
    p.add_argument("--batches", type=int, default=0,
                   help="pipeline batches per run (0: one epoch, subjects x axial slices / batch)")
    p.add_argument("--steps", type=int, default=2, help="training steps per run")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--jit", type=int, default=0, help="training step jit_compile (XLA)")
    p.add_argument("--augment", type=int, default=1)
    args = p.parse_args(argv)

    import keras
    import nibabel as nib

    from tfneuro.data import synth
    from tfneuro.data.augment import default_augmentation
    from tfneuro.data.cohort import read_cohort
    from tfneuro.data.slices import slice_dataset
    from tfneuro.models.quicknat import quicknat

    tag = f"s{args.subjects}_sp{args.spacing:g}"
    cdir = os.path.join(args.cohort_dir, tag)
    csv = os.path.join(cdir, "cohort.csv")
    if not os.path.exists(csv):
        t0 = time.perf_counter()
        synth.make_cohort(cdir, args.subjects, spacing=args.spacing, show_progress=False)
        print(f"made cohort {cdir} in {time.perf_counter() - t0:.1f} s", flush=True)
    cohort = read_cohort(csv)
    first = nib.load(cohort["t1"].iloc[0])
    depth = int(first.shape[2])
    labels = np.asarray(nib.load(cohort["label"].iloc[0]).dataobj)
    classes = int(labels.max()) + 1
    print(f"cohort: {len(cohort)} subjects, volume {first.shape} at {args.spacing:g} mm, "
          f"{classes} classes; load {load_average()}", flush=True)

    ds = slice_dataset(cohort, axis="axial", pad_to=(args.size, args.size, depth),
                       augment=default_augmentation(3, seed=0) if args.augment else None,
                       batch_size=args.batch_size, shuffle=True, seed=0,
                       drop_remainder=True).repeat()
    n_batches = args.batches or max(1, len(cohort) * depth // args.batch_size)
    it = iter(ds)
    x0, y0 = next(it)[:2]  # warm-up (first-use costs), also the training batches
    assert tuple(x0.shape) == (args.batch_size, args.size, args.size, 1), x0.shape

    model = quicknat(classes, input_shape=(args.size, args.size, 1), filters=args.filters,
                     kernel_size=args.kernel)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(), jit_compile=bool(args.jit))
    batches = [next(it)[:2] for _ in range(max(1, args.steps))]
    del it
    t0 = time.perf_counter()
    model.train_on_batch(x0, y0)  # trace / compile
    compile_s = time.perf_counter() - t0

    def run_pipeline():
        fresh = iter(ds)
        for _ in range(n_batches):
            x, _y = next(fresh)[:2]
        _ = x.numpy()
        del fresh

    def run_training():
        for x, y in batches:
            model.train_on_batch(x, y)

    print(f"timing {args.runs} alternating runs (pipeline, training, ...)", flush=True)
    times = alternate({"pipeline": run_pipeline, "training": run_training}, args.runs)
    per_run = {"pipeline": n_batches * args.batch_size, "training": len(batches) * args.batch_size}
    rate = {k: median([per_run[k] / t for t in v]) for k, v in times.items()}
    rows = [
        ["tf.data slice_dataset (decode .nii.gz + 3D augmentation + pad + shuffle + batch)",
         per_run["pipeline"], " ".join(fmt(t) for t in times["pipeline"]), fmt(rate["pipeline"], 1)],
        [f"QuickNAT train_on_batch (jit_compile={bool(args.jit)})", per_run["training"],
         " ".join(fmt(t) for t in times["training"]), fmt(rate["training"], 2)],
    ]
    print()
    print(f"batch {args.batch_size}, {args.size}x{args.size} axial slices, {args.filters} filters "
          f"{args.kernel}x{args.kernel}, augmentation={bool(args.augment)}")
    print(table(rows, ["side", "slices per run", "runs s", "median slices/s"]))
    print(f"training step trace/compile (untimed): {compile_s:.1f} s; load at end {load_average()}")
    print(f"ratio pipeline/training: {rate['pipeline'] / rate['training']:.2f}")


if __name__ == "__main__":
    main()
