"""bfloat16 against float32 on the quick start's trained model (issue 17, item 2: the figure).

Takes a finished quick start run (``python experiments/quickstart.py --out OUT``), rebuilds
its fine-tuned QuickNAT from the last checkpoint of ``OUT/finetune/stage2`` (paper 001's
stage II), builds the serving module twice (``tfneuro.export.build_module``, the graph
``export_model`` saves, with the quick start's export options) at float32 and at bfloat16,
and segments every held-out (test split) subject through both exactly as the quick start does (load -> conform -> ``segment_volume`` ->
deconform; ``tfneuro.apps.segment.segment_images``). Per subject, in the input space:

* agreement: the fraction of brain voxels (reference label > 0) whose bfloat16 label equals the
  float32 label (goal >= 99.5 %);
* mean Dice of CSF, GM and WM against the reference at each precision (goal: change <= 0.005),
  beside the Dice of labelling the whole brain with its commonest tissue (a floor);
* ``segment_images`` seconds at each precision (alternating; only meaningful on a CPU with
  native bfloat16, which the output states).

Last line: ``agreement bfloat16/float32: X`` (the lowest over the held-out subjects).

    python experiments/quickstart.py --out out/quickstart
    python benchmarks/precision_accuracy.py --run out/quickstart

``--filters``, ``--view``, ``--spacing`` and ``--modalities`` must match the quick start's
flags (their defaults are the quick start's defaults).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import fmt, load_average, median, precision_report, table  # noqa: E402

import numpy as np  # noqa: E402

TISSUES = (1, 2, 3)  # tissue4: CSF, GM, WM


def trained_model(args, n_channels):
    """The quick start's fine-tuned QuickNAT (4 tissue classes) from its last checkpoint."""
    import keras

    from tfneuro.models.quicknat import quicknat
    from tfneuro.training.loop import latest_checkpoint, restore_checkpoint

    ckpt = latest_checkpoint(os.path.join(args.run, "finetune", "stage2"))
    if ckpt is None:
        raise SystemExit(f"error: no checkpoint in {args.run}/finetune/stage2")
    m = quicknat(4, input_shape=(None, None, n_channels), filters=args.filters)
    m.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    restore_checkpoint(m, ckpt)
    return m


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="the quick start's --out directory")
    p.add_argument("--filters", type=int, default=16)
    p.add_argument("--view", default="axial")
    p.add_argument("--spacing", type=float, default=2.0)
    p.add_argument("--modalities", default="t1,t2")
    p.add_argument("--runs", type=int, default=3, help="timed segmentations per precision")
    args = p.parse_args(argv)

    from tfneuro.apps.segment import Segmenter, load_images, segment_images
    from tfneuro.data.cohort import read_cohort
    from tfneuro.export import build_module
    from tfneuro.io import load_volume
    from tfneuro.metrics import dice_score

    _, report = precision_report("bfloat16", monai=False)
    print(f"load {load_average()}; {report}", flush=True)
    mods = args.modalities.split(",")
    df = read_cohort(os.path.join(args.run, "cohort", "cohort.csv"))
    test = df[df["split"] == "test"].to_dict("records")
    model = trained_model(args, len(mods))
    segs = {}
    for prec in ("float32", "bfloat16"):
        module = build_module(model, model_name="quickstart_quicknat", label_scheme="tissue4",
                              spacing=args.spacing, modalities=mods, precision=prec,
                              views=[args.view], conform_multiple=1)
        segs[prec] = Segmenter(args.run, module.meta, module.segment_volume, handle=module)
    rows, agreements, changes, secs = [], [], [], {p: [] for p in segs}
    for row in test:
        imgs = load_images([row[m] for m in mods], mods)
        ref = np.asarray(load_volume(row["label"], kind="label", scheme="tissue4").dataobj)
        labels = {}
        for r in range(args.runs):
            for prec, seg in segs.items():
                t0 = time.perf_counter()
                labels[prec] = np.asarray(segment_images(seg, imgs).labels.dataobj)
                secs[prec].append(time.perf_counter() - t0)
        brain = ref > 0
        agree = float(np.mean(labels["float32"][brain] == labels["bfloat16"][brain]))
        dice = {p: float(np.mean([dice_score(ref, lab, labels=list(TISSUES))[k]
                                  for k in TISSUES])) for p, lab in labels.items()}
        common = np.bincount(ref[brain].astype(int)).argmax()
        floor = np.mean(list(dice_score(ref, np.where(brain, common, 0),
                                        labels=list(TISSUES)).values()))
        agreements.append(agree)
        changes.append(dice["bfloat16"] - dice["float32"])
        rows.append([row["subject"], fmt(100 * agree, 3), fmt(dice["float32"], 4),
                     fmt(dice["bfloat16"], 4), fmt(changes[-1], 4), fmt(float(floor), 4)])
    print()
    print(f"quick start model ({args.view}, {args.filters} filters) on {len(test)} held-out "
          f"subject(s), input space; load {load_average()}")
    print(table(rows, ["subject", "agreement % brain voxels", "mean Dice float32",
                       "mean Dice bfloat16", "change", "commonest-tissue Dice (floor)"]))
    t32, t16 = median(secs["float32"]), median(secs["bfloat16"])
    print(f"segment_images median s: float32 {t32:.2f}, bfloat16 {t16:.2f}, ratio "
          f"{t16 / t32:.3f} (alternating, {args.runs} per subject)")
    print(f"goals: agreement >= 99.5 %: {'met' if min(agreements) >= 0.995 else 'NOT met'}; "
          f"|mean Dice change| <= 0.005: "
          f"{'met' if max(abs(c) for c in changes) <= 0.005 else 'NOT met'}")
    print(f"agreement bfloat16/float32: {min(agreements):.4f}")


if __name__ == "__main__":
    main()
