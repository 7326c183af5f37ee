"""How hard is the synthetic cohort? Intensity and atlas baselines by age band (issue 14, part 3).

Question: on held-out synthetic subjects, what mean Dice (CSF, GM, WM) do the two baselines of
``tfneuro.evaluation.baselines`` reach in each age band, and does the intensity baseline fall
to <= 0.65 in the isointense band (6-9 months)?

* Cohort: ``tfneuro.data.synth.make_cohort`` written to ``--out`` (a temporary directory by
  default), ``--per_band`` subjects per band with ages evenly spaced from the band's first to
  its last month (``linspace(lo, hi, per_band)``), cohort seed ``--seed``.
* Split (band-stratified; make_cohort's own random split is ignored): in every band
  ``--test_per_band`` subjects spread inside the band (not its edge ages) are held out, the
  rest train. Both baselines are fitted on the training subjects of ALL bands.
* Intensity baseline: ``fit_intensity_baseline`` on T1+T2 (``--model``, z-scored per subject
  as the networks' input, every labelled voxel, opening radius ``--opening`` and the largest
  component); the table also shows it without post-processing ("raw").
* Atlas baseline: ``atlas_baseline(..., method=--atlas_method)`` (head foreground by Otsu on
  T1; bounding-box or moments alignment; per-voxel majority vote of all training maps).
* Score: ``tfneuro.metrics.dice_score`` on CSF, GM, WM; per subject their mean; per band the
  mean over its held-out subjects.

Last lines: ``isointense (6-9 months) intensity baseline mean Dice: X`` and
``ratio intensity/atlas: X`` (the two baselines' mean Dice in the 6-9 month band).
``--cohort CSV`` evaluates on an existing cohort's own train/test split instead (held-out
subjects grouped into the same bands). ``--synth KEY=VALUE`` passes options to ``synth_subject`` (sensitivity of the figures to the
cohort's settings; the defaults are the cohort's).
Tiny (the test): ``--per_band 3 --test_per_band 1 --spacing 4 --bands 0-5,6-9``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _common import fmt, load_average, table  # noqa: E402

import numpy as np  # noqa: E402

TISSUES = (1, 2, 3)     # tissue4: CSF, GM, WM
ISO_BAND = (6.0, 9.0)


def parse_bands(text):
    bands = []
    for part in text.split(","):
        lo, hi = (float(v) for v in part.split("-"))
        if not 0 <= lo <= hi <= 60:
            raise SystemExit(f"error: --bands: {part!r} is not a range inside 0-60 months")
        bands.append((lo, hi))
    return bands


def parse_synth(items):
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            nums = tuple(float(v) for v in value.split(","))
        except ValueError:
            raise SystemExit(f"error: --synth {item!r}: VALUE must be numbers") from None
        if not key or not value:
            raise SystemExit(f"error: --synth {item!r}: use KEY=VALUE")
        out[key] = nums[0] if len(nums) == 1 else nums
    return out


def band_index(age, bands):
    """The band an age falls in: band i covers [lo_i, lo_(i+1)) (the last one up to its hi),
    so ages between two bands' listed months (e.g. 5.5) count with the lower band."""
    starts = [lo for lo, _ in bands]
    return max(0, int(np.searchsorted(starts, age, side="right")) - 1)


def held_out(n, k):
    """Indices of ``k`` of ``n`` subjects spread inside the band (not its edges if possible)."""
    if not 0 < k < n:
        raise SystemExit(f"error: need 0 < --test_per_band ({k}) < --per_band ({n})")
    return sorted({int(i) for i in np.round(np.linspace(0, n - 1, k + 2)[1:-1])})


def load(row, modalities=("t1", "t2")):
    import nibabel as nib

    x = np.stack([np.asarray(nib.load(row[m]).dataobj, np.float32) for m in modalities], -1)
    y = np.asarray(nib.load(row["label"]).dataobj).astype(np.int32)
    return x, y


def tissue_dice(ref, pred):
    """Dice of CSF, GM, WM (in that order)."""
    from tfneuro.metrics import dice_score

    d = dice_score(ref, pred, labels=list(TISSUES))
    return np.array([d[t] for t in TISSUES])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="cohort directory (default: a temporary one)")
    p.add_argument("--cohort", default=None,
                   help="evaluate on this existing cohort CSV's own train/test split instead "
                        "of generating one (e.g. the quick start's OUT/cohort/cohort.csv)")
    p.add_argument("--bands", default="0-5,6-9,10-17,18-35,36-60",
                   help="age bands in months, lo-hi comma-separated")
    p.add_argument("--per_band", type=int, default=8, help="subjects per band")
    p.add_argument("--test_per_band", type=int, default=3, help="held-out subjects per band")
    p.add_argument("--spacing", type=float, default=2.0, help="voxel size in mm")
    p.add_argument("--seed", type=int, default=0, help="cohort seed")
    p.add_argument("--model", default="qda", choices=("qda", "gnb"))
    p.add_argument("--opening", type=int, default=1, help="opening radius (voxels), 0: none")
    p.add_argument("--atlas_method", default="bbox", choices=("bbox", "moments"))
    p.add_argument("--synth", action="append", default=[], metavar="KEY=VALUE",
                   help="synth_subject keyword (repeatable; VALUE a number or comma-separated "
                        "numbers, e.g. noise_std=0.02,0.05) to measure the cohort's sensitivity")
    args = p.parse_args(argv)
    bands = parse_bands(args.bands)
    synth_kwargs = parse_synth(args.synth)
    test_idx = None if args.cohort else held_out(args.per_band, args.test_per_band)

    from tfneuro.data import synth
    from tfneuro.data.cohort import read_cohort
    from tfneuro.evaluation.baselines import atlas_baseline, fit_intensity_baseline

    t0 = time.time()
    if args.cohort:
        df = read_cohort(args.cohort)
        df = df[df["split"].isin(["train", "test"])].reset_index(drop=True)
        ages = [float(a) for a in df["age_months"]]
        is_test = [s == "test" for s in df["split"]]
        data = [load(r) for r in df.to_dict("records")]
        what = f"{args.cohort} (its own train/test split)"
    else:
        ages, is_test = [], []
        for lo, hi in bands:
            for j, a in enumerate(np.linspace(lo, hi, args.per_band)):
                ages.append(round(float(a), 2))
                is_test.append(j in test_idx)
        with tempfile.TemporaryDirectory() as tmp:
            out = args.out or os.path.join(tmp, "cohort")
            synth.make_cohort(out, len(ages), ages=ages, spacing=args.spacing, seed=args.seed,
                              show_progress=False, **synth_kwargs)
            df = read_cohort(os.path.join(out, "cohort.csv"))
            data = [load(r) for r in df.to_dict("records")]
        what = (f"{args.spacing:g} mm, seed {args.seed}, synth_subject options "
                f"{synth_kwargs or 'default'}")
    gen = df["generator"].iloc[0] if "generator" in df.columns else "tfneuro-synth/1"
    print(f"cohort: {len(ages)} subjects ({gen}), {what}, {sum(is_test)} held out "
          f"[{time.time() - t0:.0f} s, load {load_average()}]")

    train = [d for d, t in zip(data, is_test) if not t]
    model = fit_intensity_baseline([x for x, _ in train], [y for _, y in train],
                                   model=args.model, opening=args.opening)
    scores = {}
    for i in np.flatnonzero(is_test):
        x, y = data[i]
        s = {"intensity": tissue_dice(y, model.predict(x)),
             "raw": tissue_dice(y, model.predict(x, postprocess=False)),
             "atlas": tissue_dice(y, atlas_baseline([x for x, _ in train], [y for _, y in train],
                                                    x, method=args.atlas_method))}
        scores.setdefault(band_index(ages[i], bands), []).append((ages[i], s))
    rows, tissue_rows, means = [], [], {}
    names = [f"{lo:g}-{hi:g}" for lo, hi in bands]
    for b in sorted(scores) + ["all"]:
        got = scores[b] if b != "all" else [g for v in scores.values() for g in v]
        per = {k: np.mean([s[k] for _, s in got], axis=0) for k in ("intensity", "raw", "atlas")}
        means[b] = {k: float(v.mean()) for k, v in per.items()}
        name = names[b] if b != "all" else "all held out"
        rows.append([name, len(got), ", ".join(f"{a:g}" for a, _ in got),
                     fmt(means[b]["intensity"], 3), fmt(means[b]["raw"], 3),
                     fmt(means[b]["atlas"], 3)])
        tissue_rows.append([name] + [" / ".join(f"{v:.3f}" for v in per[k])
                                     for k in ("intensity", "atlas")])
    print(f"baselines fitted on {len(train)} training subjects of all ages "
          f"({args.model}, opening {args.opening}; atlas {args.atlas_method}) "
          f"[{time.time() - t0:.0f} s]")
    print(table(rows, ["band (months)", "held out", "ages", "intensity mean Dice",
                       "intensity raw", "atlas mean Dice"]))
    print()
    print(table(tissue_rows, ["band (months)", "intensity CSF / GM / WM",
                              "atlas CSF / GM / WM"]))
    iso = [b for b, band in enumerate(bands) if band == ISO_BAND and b in scores]
    if iso:
        b = iso[0]
        print(f"isointense (6-9 months) intensity baseline mean Dice: "
              f"{means[b]['intensity']:.4f}")
    else:
        b = "all"
        print("isointense (6-9 months): no held-out subject; ratio over all held-out subjects")
    print(f"ratio intensity/atlas: {means[b]['intensity'] / means[b]['atlas']:.4f}")

if __name__ == "__main__":
    main()
