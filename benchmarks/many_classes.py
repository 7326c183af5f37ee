"""Many classes: does QuickNAT learn a 73-class parcellation from a few subjects? (issue 14, part 4)

Question: paper 001 pre-trains QuickNAT on 87 regions (001_4781efe3c87e8969.txt, section 2.1,
Dataset I: "Auxiliary labels (87 regions and 9 tissues)"; section 3.1 and Table 2: mean Dice
0.88 over the 87 regions) and users bring their own parcellations. With the library's recipe
(``tfneuro.models.get("quicknat")``, paper 001's loss: Dice + median-frequency weighted
cross-entropy with the weights of ``tfneuro.training.class_weights_from_cohort``), how fast
does the mean Dice over the held-out subjects' regions rise, epoch by epoch, next to the atlas
baseline fitted on the same training subjects?

* Cohort: ``tfneuro.data.synth.make_cohort(..., parcellation=True)`` (scheme
  ``tissue_sectors``: background + CSF/GM/WM x 24 template-space sectors = 73 classes, 72
  regions; docs/synthetic_cohort.md), ``--train + --test`` subjects at ``--spacing`` mm,
  ages ``linspace(--ages)``; the held-out subjects are spread inside the age range (not its
  ends), the rest train (make_cohort's own split is ignored).
* Model: ``quicknat`` with ``--filters`` maps and ``--kernel`` kernels (paper 001 / Roy et
  al.: 64 and 5), one view (``--view``), T1+T2 as channels (``--modalities``), Adam
  (paper 001's optimizer, see ``tfneuro.training.recipes``) at each ``--learning_rates`` value,
  batch ``--batch_size``, axial slices without any label skipped (as the quick start).
* Losses (``--losses``, each run from the same initial weights and data order):
  ``dice_wce`` Dice + median-frequency weighted CE (paper 001's, the default),
  ``bdice_wce`` the same with the Dice sums taken over the whole batch (``batch=True``, one
  Dice per class and batch, as QuickNAT's reference code ai-med/quickNAT_pytorch computes it),
  ``dice_wce_boundary`` the same plus QuickNAT's boundary weight (``boundary_weight="auto"``),
  ``dice_ce`` Dice + unweighted CE, ``dice`` soft Dice alone, ``wce`` weighted CE alone,
  ``ce`` unweighted CE alone.
* Score after every epoch: the held-out subjects predicted whole
  (``tfneuro.evaluation.evaluate_subjects``), Dice per region; per subject the mean over the
  regions present in its reference; the mean over subjects. "regions found": regions with
  Dice > 0, averaged over subjects (a run stalled on background finds few).
* Atlas baseline: ``tfneuro.evaluation.compare.baseline_tables(which=("atlas",))``: the
  training subjects' parcellations aligned to each test head by bounding box, majority vote,
  scored the same way. The intensity baseline cannot tell sectors of one tissue apart, so it
  appears only at the tissue level (``--tissue_check``): the first run's parcellation
  regrouped to CSF/GM/WM beside the intensity and atlas baselines on the tissue labels.

Prints one row per run and epoch (seconds of training, load average), a summary table, writes
``--png`` (mean Dice by epoch for every run, the atlas baseline as a horizontal line) and ends
with ``mean Dice over held-out regions: quicknat X vs atlas baseline Y`` (the first run's last
epoch) and ``ratio quicknat/atlas: X``.
Tiny (the test): ``--train 2 --test 1 --spacing 6 --filters 4 --epochs 2``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _common import load_average, table  # noqa: E402

import numpy as np  # noqa: E402

# Keras warns every epoch that a finite tf.data dataset "ran out of data" (it is re-iterated
# each epoch, as intended) and that shuffle=True is ignored (the dataset shuffles itself).
warnings.filterwarnings("ignore", message=".*(ran out of data|shuffle=True).*")

SCHEME = "tissue_sectors"
LOSSES = ("dice_wce", "bdice_wce", "dice_wce_boundary", "dice_ce", "dice", "wce", "ce")


def make_loss(name, class_weights):
    """The loss called ``name`` (see the module docstring)."""
    from tfneuro.losses import DiceCELoss, DiceLoss, WeightedCrossEntropy

    if name == "dice_wce":
        return DiceCELoss(ce_weight=class_weights)
    if name == "bdice_wce":
        return DiceCELoss(ce_weight=class_weights, batch=True)
    if name == "dice_wce_boundary":
        wce = WeightedCrossEntropy(class_weights, boundary_weight="auto")
        dice = DiceLoss()
        return lambda y, p: dice(y, p) + wce(y, p)
    if name == "dice_ce":
        return DiceCELoss()
    if name == "dice":
        return DiceLoss()
    if name == "wce":
        return WeightedCrossEntropy(class_weights)
    return WeightedCrossEntropy()


def held_out(n, k):
    """Indices of ``k`` of ``n`` age-sorted subjects spread inside the range (not its ends)."""
    return sorted({int(i) for i in np.round(np.linspace(0, n - 1, k + 2)[1:-1])})


def region_scores(table_):
    """(mean Dice over regions present in each reference, then over subjects; regions found)."""
    t = table_[table_["reference_voxels"] > 0]
    per_subject = t.groupby("subject")["dice"].mean()
    found = t.assign(hit=t["dice"] > 0).groupby("subject")["hit"].sum()
    return float(per_subject.mean()), float(found.mean())


def all_background_dice_loss(train_df, k, view):
    """Per-sample soft Dice loss (``DiceLoss()``: background included, smoothing 1e-5) of a
    prediction with probability 1 on background everywhere, averaged over the training
    slices the network sees (non-empty, padded with background to the cohort shape).

    Closed form per slice: background Dice ``2 n0 / (hw + n0)``, every present region 0,
    every absent class 1 (``1e-5 / 1e-5``); loss ``((1 - d0) + regions present) / k``.
    """
    from tfneuro.data.cohort import cohort_shape
    from tfneuro.data.pipeline import load_subject
    from tfneuro.io.views import view_axis

    axis = view_axis(view)
    shape = cohort_shape(train_df, "t1")
    hw = int(np.prod([d for i, d in enumerate(shape) if i != axis]))
    losses = []
    for row in train_df.to_dict("records"):
        _, y, _ = load_subject(row, ("t1",), label="parcellation", scheme=SCHEME, normalize=None)
        for i in range(y.shape[axis]):
            counts = np.bincount(np.take(y, i, axis=axis).ravel(), minlength=k)
            if not counts[1:].any():
                continue
            n0 = counts[0] + hw - counts.sum()
            losses.append((1 - 2 * n0 / (hw + n0) + (counts[1:] > 0).sum()) / k)
    return float(np.mean(losses))


def summarize(rows, atlas):
    """One row per run: last Dice, its mean over the last 3 epochs (the held-out Dice moves by
    up to ~0.1 from one epoch to the next), the best, the first epoch above the atlas baseline
    and the training seconds spent until the end of that epoch."""
    runs = {}
    for r in rows:
        runs.setdefault((r[0], r[1]), []).append(r)
    out = []
    for (loss, lr), rs in runs.items():
        dice = [float(r[4]) for r in rs]
        best = int(np.argmax(dice))
        above = [i for i, d in enumerate(dice) if d > atlas]
        seconds = sum(float(r[6]) for r in rs[:above[0] + 1]) if above else None
        out.append([loss, lr, f"{dice[-1]:.4f}", f"{np.mean(dice[-3:]):.4f}",
                    f"{dice[best]:.4f} ({rs[best][2]})",
                    rs[above[0]][2] if above else "never", "-" if seconds is None
                    else f"{seconds:.0f}"])
    return out


def make_split(args):
    from tfneuro.data.cohort import read_cohort
    from tfneuro.data.synth import make_cohort

    n = args.train + args.test
    lo, hi = (float(v) for v in args.ages.split("-"))
    make_cohort(args.out, n, ages=np.linspace(lo, hi, n), spacing=args.spacing, seed=args.seed,
                parcellation=True, show_progress=False)
    df = read_cohort(os.path.join(args.out, "cohort.csv"))
    test = df.index.isin(held_out(n, args.test))
    return df[~test].reset_index(drop=True), df[test].reset_index(drop=True)


def train_run(loss_name, lr, train_df, test_df, args, weights, init, log):
    """Train one configuration; returns the per-epoch rows and the model."""
    import keras

    from tfneuro.data import slice_dataset
    from tfneuro.data.cohort import cohort_shape
    from tfneuro.evaluation import evaluate_subjects

    mods = tuple(args.modalities.split(","))
    ds = slice_dataset(train_df, axis=args.view, modalities=mods, label="parcellation",
                       scheme=SCHEME, pad_to=cohort_shape(train_df, mods[0]), drop_empty=True,
                       batch_size=args.batch_size, seed=args.seed, cache=True)
    model = keras.models.clone_model(init)
    model.set_weights(init.get_weights())
    rate = lr
    if args.schedule == "poly":
        from tfneuro.training import PolyDecay

        steps = -(-sum(1 for _ in ds.unbatch()) // args.batch_size)
        rate = PolyDecay(lr, max_epochs=args.epochs, steps_per_epoch=steps)
    model.compile(optimizer=keras.optimizers.Adam(rate), loss=make_loss(loss_name, weights))
    rows = []

    class Score(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds = time.perf_counter() - self.t0
            t = evaluate_subjects(self.model, test_df, modalities=mods, label="parcellation",
                                  scheme=SCHEME, views=[args.view], distances=False,
                                  desc="evaluate")
            dice, found = region_scores(t)
            rows.append([loss_name, f"{lr:g}", epoch + 1, f"{logs['loss']:.4f}", f"{dice:.4f}",
                         f"{found:.1f}", f"{seconds:.1f}", load_average()])
            log(f"  {loss_name} lr {lr:g} epoch {epoch + 1}: loss {logs['loss']:.4f}, "
                f"mean Dice {dice:.4f}, regions found {found:.1f}, {seconds:.1f} s "
                f"(load {load_average()})")

    model.fit(ds, epochs=args.epochs, callbacks=[Score()], verbose=0)
    return rows, model


def tissue_check(model, train_df, test_df, args):
    """The first run's parcellation regrouped to CSF/GM/WM beside the tissue baselines."""
    from tfneuro.evaluation import baseline_tables, evaluate_subjects

    mods = tuple(args.modalities.split(","))
    t = evaluate_subjects(model, test_df, modalities=mods, label="parcellation", scheme=SCHEME,
                          views=[args.view], distances=False, regroup_to="tissue4")
    base = baseline_tables(train_df, test_df, modalities=mods, label="label", scheme="tissue4",
                           distances=False)
    means = base.groupby("model")["dice"].mean()
    return (f"tissue level (parcellation regrouped to CSF/GM/WM): quicknat {t['dice'].mean():.4f}"
            f", intensity baseline {means['baseline: intensity']:.4f}, atlas baseline "
            f"{means['baseline: atlas']:.4f}")


def plot(rows, atlas, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from tfneuro.utils.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    runs = {}
    for r in rows:
        runs.setdefault(f"{r[0]}, lr {r[1]}", []).append((r[2], float(r[4])))
    for name, pts in runs.items():
        ax.plot(*zip(*pts), marker="o", ms=3, label=f"QuickNAT {name}")
    ax.axhline(atlas, color="k", ls="--", label=f"atlas baseline ({atlas:.3f})")
    ax.set(xlabel="epoch", ylabel="mean Dice over held-out regions", ylim=(0, 1), title=title)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="cohort directory (default: a temporary one)")
    p.add_argument("--png", default="many_classes.png", help="the curve (PNG)")
    p.add_argument("--train", type=int, default=4, help="training subjects")
    p.add_argument("--test", type=int, default=2, help="held-out subjects")
    p.add_argument("--ages", default="1-60", help="age range lo-hi in months (linspace)")
    p.add_argument("--spacing", type=float, default=3.0, help="voxel size in mm")
    p.add_argument("--seed", type=int, default=0, help="cohort, weights and data-order seed")
    p.add_argument("--modalities", default="t1,t2", help="input channels")
    p.add_argument("--view", default="axial", choices=("axial", "coronal", "sagittal"))
    p.add_argument("--filters", type=int, default=16, help="QuickNAT maps (paper 001: 64)")
    p.add_argument("--kernel", type=int, default=5, help="QuickNAT kernel (paper 001: 5)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--losses", default="dice_wce", help=f"comma-separated, from {LOSSES}")
    p.add_argument("--learning_rates", default="1e-3", help="comma-separated Adam rates")
    p.add_argument("--schedule", default="constant", choices=("constant", "poly"),
                   help="constant rate, or paper 002's poly decay (1 - epoch/epochs)^0.9")
    p.add_argument("--tissue_check", type=int, default=1,
                   help="1: also score the first run at the tissue level beside the intensity "
                        "baseline")
    args = p.parse_args(argv)
    bad = [x for x in args.losses.split(",") if x not in LOSSES]
    if bad:
        p.error(f"--losses: unknown {bad}; choose from {LOSSES}")
    if args.train < 1 or args.test < 1 or args.epochs < 1:
        p.error("--train, --test and --epochs must be >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    tmp = None
    if args.out is None:
        tmp = tempfile.TemporaryDirectory(prefix="many_classes_")
        args.out = tmp.name
    t0 = time.perf_counter()
    train_df, test_df = make_split(args)
    print(f"cohort: {len(train_df)} train (ages {', '.join(f'{a:g}' for a in train_df['age_months'])}"
          f"), {len(test_df)} held out (ages {', '.join(f'{a:g}' for a in test_df['age_months'])}"
          f") at {args.spacing:g} mm, {time.perf_counter() - t0:.0f} s (load {load_average()})")

    import keras

    from tfneuro.evaluation import baseline_tables
    from tfneuro.io import get_scheme
    from tfneuro.models import get
    from tfneuro.training import class_weights_from_cohort

    k = len(get_scheme(SCHEME).names)
    mods = tuple(args.modalities.split(","))
    base = baseline_tables(train_df, test_df, modalities=mods, label="parcellation",
                           scheme=SCHEME, which=("atlas",), distances=False)
    atlas, atlas_found = region_scores(base)
    print(f"atlas baseline: mean Dice {atlas:.4f}, regions found {atlas_found:.1f} of {k - 1}")
    weights = class_weights_from_cohort(train_df, k, SCHEME, column="parcellation")
    print(f"median-frequency weights: background {weights[0]:.4f}, regions "
          f"{min(weights[1:]):.2f}-{max(weights[1:]):.2f}")
    print(f"per-sample Dice loss of an all-background prediction on the training slices: "
          f"{all_background_dice_loss(train_df, k, args.view):.4f}")
    keras.utils.set_random_seed(args.seed)
    init = get("quicknat", num_classes=k, input_shape=(None, None, len(mods)),
               filters=args.filters, kernel_size=args.kernel)
    rows, first = [], None
    for loss_name in args.losses.split(","):
        for lr in (float(v) for v in args.learning_rates.split(",")):
            keras.utils.set_random_seed(args.seed)
            run_rows, model = train_run(loss_name, lr, train_df, test_df, args, weights, init,
                                        print)
            rows += run_rows
            first = first or (run_rows[-1], model)
    print()
    print(table(rows, ["loss", "lr", "epoch", "train loss", "mean Dice", "regions found",
                       "train s", "load"]))
    print()
    print(table(summarize(rows, atlas), ["loss", "lr", "last epoch Dice", "last 3 epochs",
                                         "best Dice (epoch)", "first epoch above atlas",
                                         "train s until then"]))
    if args.tissue_check:
        print(tissue_check(first[1], train_df, test_df, args))
    plot(rows, atlas, args.png, f"QuickNAT on {k - 1} regions: {len(train_df)} training, "
                                f"{len(test_df)} held-out subjects, {args.spacing:g} mm")
    print(f"curve: {args.png}")
    print(f"total {time.perf_counter() - t0:.0f} s (load {load_average()})")
    dice = float(first[0][4])
    print(f"mean Dice over held-out regions: quicknat {dice:.4f} vs atlas baseline {atlas:.4f}")
    print(f"ratio quicknat/atlas: {dice / atlas:.4f}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
