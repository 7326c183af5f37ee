"""Grad-CAM of NEC-NET's skull-age classifier (paper 000 sections 2.3.2 and 3.2, Table 4,
Fig. 4): heatmaps per subject, their 95th percentiles, a one-way ANOVA across age groups, and a
PNG of the mean heatmap per age group.

    python experiments/train_age_classifier.py --out runs/age
    python experiments/gradcam_age.py --classifier runs/age --out runs/age_gradcam

What it does:

1. loads the classifier (``OUT/model.keras`` of ``train_age_classifier.py``, safe mode) and its
   ``classifier.json`` (input shape, modality, where the skull masks come from); the cohort is
   ``--cohort`` or, by default, the one the classifier was trained on;
2. checks before any work that the chosen subjects (``--split``; default ``test``, the
   held-out subjects the classifier never saw) have ages, and that at least two age groups
   have at least two subjects each (the ANOVA needs them);
3. per subject: the classifier input ``[image, mask, image x mask]``, and the Grad-CAM map
   (paper 000 eq. 2, ``tfneuro.explain.grad_cam``) of the layer ``last_conv`` -- "the last
   convolutional layer of the last Res-block", read as the block's output feature maps (see
   ``tfneuro.models.resnet3d``; ``--layer stage4_block3_conv3`` for the literal conv) -- for
   the predicted class (``--class_source``), trilinearly upsampled to the input grid;
4. "the 95th percentile threshold of the normalized neurocranium heatmaps" with "an ANOVA test
   ... between different age groups": each map is z-scored over the neurocranium voxels
   (``--region skull``; ``all`` uses every voxel), its 95th percentile taken, and
   ``tfneuro.explain.heatmap_statistics`` gives Table 4 (mean ± SD per group, F, p);
5. writes ``OUT/gradcam_subjects.csv`` (per subject), ``OUT/gradcam_table4.csv`` (Table 4's
   shape) and ``OUT/gradcam_mean_by_age.png``: per age group (rows) the sagittal, coronal and
   axial mid-slices of the group's mean image with its mean heatmap overlaid; prints Table 4.

Departures: paper 000 projects heatmaps onto an age-matched template (Fig. 4, volume rendering);
we average on the classifier's input grid (subjects centre padded, not registered) and show
orthogonal slices. Groups with fewer than two subjects are listed in the per-subject CSV but
left out of the ANOVA.
"""

from __future__ import annotations

import json
import os

from absl import flags

from tfneuro import evaluation
from tfneuro.apps import age_study, checks
from tfneuro.apps import flags as aflags
from tfneuro.apps.cli import run
from tfneuro.data import cohort as cohorts
from tfneuro.errors import InputError

FLAGS = flags.FLAGS
aflags.define_experiment_flags(synth_subjects=36, synth_spacing=4.0)
flags.DEFINE_string("classifier", None, "Output directory of train_age_classifier.py (or its "
                    "model.keras, with classifier.json beside it).")
flags.DEFINE_enum("split", "test", ["all", "train", "val", "test"], "Subjects to explain: "
                  "the held-out test subjects (default), a training split, or all.")
flags.DEFINE_enum("class_source", "predicted", ["predicted", "true"], "Class whose score is "
                  "explained: the classifier's prediction (Grad-CAM's usual choice) or the "
                  "subject's true age group.")
flags.DEFINE_enum("region", "skull", ["skull", "all"], "Voxels over which each heatmap is "
                  "normalised and its percentile taken: the neurocranium mask (paper 000: "
                  "'normalized neurocranium heatmaps') or the whole input grid.")
flags.DEFINE_enum("normalization", "zscore", ["zscore", "minmax", "max"], "Heatmap "
                  "normalisation before the percentile (Table 4's values exceed 1: z-score).")
flags.DEFINE_float("percentile", 95.0, "Percentile of each normalised heatmap (paper 000: 95).",
                   lower_bound=0.0, upper_bound=100.0)
flags.DEFINE_string("layer", "last_conv", "Layer whose activations Grad-CAM weights.")
flags.DEFINE_boolean("unsafe", False, "Allow models with arbitrary Python code (Lambda layers).")

OUTPUTS = ("gradcam_subjects.csv", "gradcam_table4.csv", "gradcam_mean_by_age.png")


def _classifier_paths(path):
    if not path:
        raise InputError("--classifier", "is required (the output directory of "
                                         "train_age_classifier.py)")
    model = os.path.join(path, "model.keras") if os.path.isdir(path) else path
    info = os.path.join(os.path.dirname(model), "classifier.json")
    for p in (model, info):
        if not os.path.isfile(p):
            raise InputError("--classifier", f"{p}: file not found")
    try:
        with open(info, encoding="utf-8") as f:
            meta = json.load(f)
        meta["pad_to"] = age_study.parse_shape(meta["pad_to"], info)
        for key in ("modality", "mask_column", "age_groups_months"):
            meta[key]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise InputError(info, f"not a classifier.json of train_age_classifier.py ({e})") from None
    return model, meta


def _check_groups(df, source):
    groups = [age_study.age_group(a) for a in df["age_months"]]
    counts = {g: groups.count(g) for g in set(groups)}
    if sum(1 for c in counts.values() if c >= 2) < 2:
        raise InputError(source, f"the ANOVA needs >= 2 age groups with >= 2 subjects each; "
                                 f"split '{FLAGS.split}' has subjects per group index {counts}")


def _figure(images, heatmaps, labels, path):
    """Rows: groups; columns: sagittal, coronal, axial mid-slices; image + heatmap overlay."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from matplotlib.figure import Figure

    from tfneuro.utils.atomic import atomic_path

    vmax = max(float(np.percentile(h, 99.5)) for h in heatmaps) or 1.0
    fig = Figure(figsize=(9, 2.8 * len(images) + 0.6), dpi=100)
    axes = fig.subplots(len(images), 3, squeeze=False)
    for r, (img, heat, label) in enumerate(zip(images, heatmaps, labels)):
        centre = np.array(img.shape) // 2
        for c, (axis, view) in enumerate(((0, "sagittal"), (1, "coronal"), (2, "axial"))):
            ax = axes[r, c]
            ax.imshow(np.take(img, centre[axis], axis=axis).T, cmap="gray", origin="lower")
            im = ax.imshow(np.take(heat, centre[axis], axis=axis).T, cmap="jet", alpha=0.45,
                           vmin=0.0, vmax=vmax, origin="lower")
            ax.set_title(f"{label} - {view}", fontsize=9)
            ax.axis("off")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, label="mean Grad-CAM")
    fig.suptitle(f"Mean Grad-CAM (layer {FLAGS.layer}) per age group", fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def _heatmap_table(per, maps, regions, age_groups, csv_path):
    """Table 4 (95th percentiles, ANOVA) over the groups with >= 2 subjects; fills the
    per-subject ``heatmap_percentile`` and ``in_anova`` columns."""
    import numpy as np

    from tfneuro.explain import heatmap_statistics

    counts = per["age_group_months"].value_counts()
    keep = per["age_group_months"].isin(counts[counts >= 2].index).to_numpy()
    idx = np.flatnonzero(keep)
    stats_rows, table = heatmap_statistics(
        [maps[i] for i in idx], [f"{per['age_group_months'][i]}m" for i in idx],
        q=int(FLAGS.percentile) if float(FLAGS.percentile).is_integer() else FLAGS.percentile,
        method=FLAGS.normalization, masks=[regions[i] for i in idx],
        group_order=[f"{g}m" for g in age_groups if counts.get(g, 0) >= 2], csv_path=csv_path)
    per["heatmap_percentile"] = np.nan
    per.loc[idx, "heatmap_percentile"] = stats_rows["value"].to_numpy()
    per["in_anova"] = keep
    return table


def main(argv):
    del argv
    import numpy as np
    import pandas as pd

    out = checks.check_out_dir(FLAGS.out, inputs=[FLAGS.cohort] if FLAGS.cohort else [])
    model_path, meta = _classifier_paths(FLAGS.classifier)
    skull_path = meta.get("skull_model")
    if skull_path and not os.path.isfile(skull_path):
        raise InputError(os.path.join(os.path.dirname(model_path), "classifier.json"),
                         f"its skull_model {skull_path} no longer exists")
    df = age_study.load_age_cohort(
        FLAGS.cohort or meta.get("cohort"), out_dir=out, modality=meta["modality"],
        mask_column=None if skull_path else meta["mask_column"],
        synth_subjects=FLAGS.synth_subjects, spacing=FLAGS.synth_spacing,
        seed=aflags.seed_value(FLAGS), min_subjects=4)
    source = df.attrs.get("source", "cohort")
    if FLAGS.split != "all":
        df = df[df["split"] == FLAGS.split].reset_index(drop=True)
    _check_groups(df, source)
    paths = {name: os.path.join(out, name) for name in OUTPUTS}
    checks.check_outputs(paths, cohorts.cohort_files(df) + [model_path])

    from tfneuro.training.saving import load_keras_model

    model = load_keras_model(model_path, unsafe=FLAGS.unsafe)
    try:
        model.get_layer(FLAGS.layer)
    except ValueError:
        raise InputError("--layer", f"model {model_path} has no layer {FLAGS.layer!r}") from None
    skull_model = age_study.load_skull_model(skull_path, FLAGS.unsafe) if skull_path else None
    rows, maps, images, regions = age_study.explain_subjects(
        model, df, meta, layer=FLAGS.layer, class_source=FLAGS.class_source,
        region=FLAGS.region, skull_model=skull_model)
    per = pd.DataFrame(rows)
    table = _heatmap_table(per, maps, regions, meta["age_groups_months"],
                           paths["gradcam_table4.csv"])
    evaluation.write_results(per, paths["gradcam_subjects.csv"])
    labels, mean_imgs, mean_maps = [], [], []
    for g in sorted(per["age_group_months"].unique()):
        members = np.flatnonzero(per["age_group_months"].to_numpy() == g)
        labels.append(f"{g} months (n={len(members)})")
        mean_imgs.append(np.mean([images[i] for i in members], axis=0))
        mean_maps.append(np.mean([maps[i] for i in members], axis=0))
    _figure(mean_imgs, mean_maps, labels, paths["gradcam_mean_by_age.png"])
    print(f"\nGrad-CAM {FLAGS.percentile:g}th percentile by age group ({len(per)} subjects of "
          f"split {FLAGS.split}, layer {FLAGS.layer}, region {FLAGS.region}, "
          f"{FLAGS.normalization})")
    print(table.to_string())
    for name in OUTPUTS:
        print(f"{name}: {paths[name]}")
    print(f"ANOVA p value: {float(table['p value'].iloc[0]):.4g}")


if __name__ == "__main__":
    run(main)
