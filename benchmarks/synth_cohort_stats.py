"""The synthetic cohort's generator: speed, anatomical variability and GM/WM contrast (issue 14).

Questions:

1. Seconds per subject of ``tfneuro.data.synth.synth_subject`` at ``--spacing`` (2 mm: the
   quick start's), this tree's generator vs the one at git ``--baseline_ref`` (default
   ``main``), in ALTERNATING order (old, new, old, ...), medians over ``--runs`` subjects with
   ages spread over 1-60 months. (Writing the NIfTI files is the same for both and not timed.)
2. Coefficient of variation (SD / mean) of the CSF, GM and WM volumes (mL, from the label
   maps) over ``--cv_subjects`` subjects of one age (``--cv_age``, default 12 months), for
   both generators.
3. GM - WM contrast by age, in noise SDs (noise SD from the air around the head, where the
   magnitude image is |N(0, sd)|, so sd = sqrt(mean(x^2))): (a) difference of the label
   means of GM and WM in the default images (bias field, blur and partial volume included);
   (b) difference of the pure-tissue intensities estimated by least squares on the tissue
   fractions, in images made without blur and bias field (the contrast model itself).
   Mean over ``--contrast_seeds`` subjects per age.

Last line: ``ratio v2/v1: X`` (median seconds per subject, this tree / baseline ref).
Tiny (the test): ``--runs 2 --cv_subjects 2 --contrast_seeds 1 --spacing 4 --ages 7.5``
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from _common import alternate, fmt, load_average, median, table  # noqa: E402

import numpy as np  # noqa: E402


def load_baseline(ref):
    """The synth module as it is at git ``ref`` (imported from a temporary copy)."""
    src = subprocess.run(["git", "show", f"{ref}:tfneuro/data/synth.py"], cwd=ROOT,
                         capture_output=True, text=True)
    if src.returncode != 0:
        raise SystemExit(f"error: --baseline_ref {ref}: {src.stderr.strip()}")
    tmp = tempfile.NamedTemporaryFile("w", suffix="_synth_baseline.py", delete=False)
    with tmp:
        tmp.write(src.stdout)
    spec = importlib.util.spec_from_file_location("synth_baseline", tmp.name)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    os.unlink(tmp.name)
    return mod


def volumes_ml(subj):
    vox = subj["spacing"] ** 3 / 1000.0
    return np.array([(subj["label"] == k).sum() * vox for k in (1, 2, 3)])


def noise_sd(subj, modality):
    from scipy import ndimage

    head = ndimage.binary_dilation((subj["mask"] | subj["skull"]) > 0, iterations=5)
    return float(np.sqrt(np.mean(subj[modality][~head].astype(np.float64) ** 2)))


def contrast(synth, age, seed, spacing):
    """(label-mean GM-WM, least-squares GM-WM) in noise SDs, for t1 and t2."""
    out = {}
    a = synth.synth_subject(age, spacing, seed)
    b = synth.synth_subject(age, spacing, seed, bias_amplitude=0.0, blur_voxels=0.0,
                            fractions=True)
    f = b["fractions"]
    inside = f.sum(-1) > 0.5
    for mod in ("t1", "t2"):
        lab = a["label"]
        label_diff = (a[mod][lab == 2].mean() - a[mod][lab == 3].mean()) / noise_sd(a, mod)
        coef, *_ = np.linalg.lstsq(f[inside].astype(np.float64), b[mod][inside], rcond=None)
        out[mod] = (label_diff, (coef[1] - coef[2]) / noise_sd(b, mod))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline_ref", default="main", help="git ref of the generator to compare")
    p.add_argument("--spacing", type=float, default=2.0)
    p.add_argument("--runs", type=int, default=9, help="subjects timed per generator")
    p.add_argument("--cv_subjects", type=int, default=10)
    p.add_argument("--cv_age", type=float, default=12.0)
    p.add_argument("--ages", default="2,4,6,7.5,9,12,24",
                   help="ages (months) of the contrast table, comma-separated")
    p.add_argument("--contrast_seeds", type=int, default=3)
    args = p.parse_args(argv)

    from tfneuro.data import synth as new

    old = load_baseline(args.baseline_ref)
    for mod in (old, new):        # template loading / caches outside the timed calls
        mod.synth_subject(12.0, args.spacing, 0)

    # 1. speed
    ages = np.linspace(1.0, 60.0, args.runs)
    state = {"old": 0, "new": 0}

    def timed(name, mod):
        def call():
            i = state[name]
            state[name] += 1
            mod.synth_subject(float(ages[i % len(ages)]), args.spacing,
                              np.random.SeedSequence([0, i]))
        return call

    times = alternate({"v1 (" + args.baseline_ref + ")": timed("old", old),
                       "v2 (this tree)": timed("new", new)}, runs=args.runs,
                      log=lambda *a: None)
    meds = {k: median(v) for k, v in times.items()}
    print(f"## seconds per subject at {args.spacing:g} mm (synth_subject, {args.runs} subjects "
          f"each, ages 1-60 months, alternating; load {load_average()})")
    print(table([[k, fmt(v, 3), fmt(min(times[k]), 3), fmt(max(times[k]), 3)]
                 for k, v in meds.items()], ["generator", "median s", "min s", "max s"]))

    # 2. variability at one age
    rows = []
    for name, mod in (("v1 (" + args.baseline_ref + ")", old), ("v2 (this tree)", new)):
        vols = np.array([volumes_ml(mod.synth_subject(args.cv_age, args.spacing,
                                                      np.random.SeedSequence([1, i])))
                         for i in range(args.cv_subjects)])
        mean, sd = vols.mean(0), vols.std(0, ddof=1) if len(vols) > 1 else np.zeros(3)
        rows.append([name] + [f"{m:.1f} / {c:.3f}" for m, c in zip(mean, sd / mean)])
    print(f"\n## volumes at {args.cv_age:g} months, {args.cv_subjects} subjects, "
          f"{args.spacing:g} mm: mean mL / coefficient of variation")
    print(table(rows, ["generator", "CSF", "GM", "WM"]))

    # 3. contrast by age (this tree)
    rows = []
    for age in (float(a) for a in args.ages.split(",")):
        vals = [contrast(new, age, s, args.spacing) for s in range(args.contrast_seeds)]
        row = [f"{age:g}"]
        for mod in ("t1", "t2"):
            row += [f"{np.mean([v[mod][0] for v in vals]):+.2f}",
                    f"{np.mean([v[mod][1] for v in vals]):+.2f}"]
        rows.append(row)
    print(f"\n## (GM - WM) / noise SD by age, this tree, mean of {args.contrast_seeds} subjects, "
          f"{args.spacing:g} mm")
    print(table(rows, ["age (months)", "T1 label means", "T1 pure tissue", "T2 label means",
                       "T2 pure tissue"]))
    keys = list(meds)
    print(f"ratio v2/v1: {meds[keys[1]] / meds[keys[0]]:.4f}")


if __name__ == "__main__":
    main()
