"""NEC-NET's skull-age study (paper 000 sections 2.1, 2.3.2 and 3.2): the pieces that training
the age classifier (``experiments/train_age_classifier.py``) and explaining it
(``experiments/gradcam_age.py``) share -- the age-group cohort, age groups, the classifier
input of one subject, masks predicted by a NEC-NET model and loading that model, the results
table with its baselines (chance, head size), and the Grad-CAM of every subject."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from tfneuro.data.cohort import write_cohort
from tfneuro.data.load import load_cohort
from tfneuro.data.pipeline import fit_shape, load_subject
from tfneuro.data.synth import make_cohort
from tfneuro.errors import InputError
from tfneuro.inference.bridging import necnet_postprocess
from tfneuro.inference.sliding_window import sliding_window_predict
from tfneuro.models.resnet3d import AGE_GROUPS_MONTHS, make_classifier_input
from tfneuro.training.saving import load_keras_model
from tfneuro.utils.atomic import atomic_path

__all__ = ["age_group", "parse_shape", "predicted_mask", "classifier_input", "load_skull_model",
           "synth_age_cohort", "load_age_cohort", "results_table", "size_features",
           "size_baseline", "explain_subjects", "TEST_PER_GROUP", "AGE_JITTER_MONTHS"]

#: Held-out subjects per age group (paper 000 section 2.1: "the number of test subjects in
#: each age group is 2").
TEST_PER_GROUP = 2
#: Half-width (months) of the uniform spread of the synthetic ages around each scan visit
#: (12, 18, ... 60 months); our choice: real visits are not on the day. Every age stays
#: nearest to its own group.
AGE_JITTER_MONTHS = 1.5


def age_group(age_months) -> int:
    """Index of the nearest of paper 000's groups (12, 18, 24, 36, 48, 60 months); ties go to
    the younger group."""
    return int(np.argmin(np.abs(np.asarray(AGE_GROUPS_MONTHS, float) - float(age_months))))


def parse_shape(values, flag="--pad_to"):
    """Three positive ints from a flag list."""
    try:
        shape = tuple(int(v) for v in values)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(flag, f"expected three positive integers X,Y,Z, got {values}")
    return shape


def predicted_mask(model, row, modality, theta, window):
    """NEC-NET mask of one subject: sliding window, largest component, bridging."""
    x, _, _ = load_subject(row, modalities=(modality,), label=None, normalize="zscore")
    probs = sliding_window_predict(model, x, window=(window,) * 3)
    return necnet_postprocess(np.argmax(probs, axis=-1), theta)


def classifier_input(row, modality, pad_to, mask=None, mask_column="skull"):
    """``[image, mask, image*mask]`` of one subject, centre padded/cropped to ``pad_to``.

    Returns:
        ``(x [X,Y,Z,3] float32, mask [X,Y,Z] float32)`` on the padded grid.
    """
    x, m, _ = load_subject(row, modalities=(modality,),
                           label=None if mask is not None else mask_column, normalize="zscore")
    m = (np.asarray(mask) if mask is not None else m) > 0
    if m.shape != x.shape[:3]:
        raise InputError(row.get(mask_column, "mask"), f"mask shape {m.shape} differs from the "
                                                       f"image {x.shape[:3]}")
    x = make_classifier_input(x[..., 0], m)
    x, m, _ = fit_shape(x, m.astype(np.float32), np.zeros(m.shape, np.float32), pad_to)
    return x, m


def load_skull_model(path, unsafe=False):
    """Load a NEC-NET .keras model and check it takes one channel (a stage-1 model)."""
    if not os.path.isfile(path):
        raise InputError("--skull_model", f"{path}: file not found")
    model = load_keras_model(path, unsafe=unsafe)
    shape = model.inputs[0].shape
    if len(shape) != 5 or int(shape[-1]) != 1 or int(model.outputs[0].shape[-1]) != 2:
        raise InputError(path, f"is not a NEC-NET stage-1 model (input {tuple(shape)}, needs "
                               f"[B, X, Y, Z, 1] -> 2 classes)")
    return model


def synth_age_cohort(out_dir, n_subjects: int = 36, *, spacing: float = 4.0, seed: int = 0,
                     test_per_group: int = TEST_PER_GROUP, show_progress: bool = True) -> str:
    """The synthetic cohort of paper 000's age study in ``out_dir`` (made once, atomically;
    reused when its CSV exists): ``n_subjects`` spread evenly over the six groups (12, 18, 24,
    36, 48, 60 months; paper 000 section 2.3.2), ages uniform within
    +-:data:`AGE_JITTER_MONTHS` of the visit (at most 60), and a split stratified by group:
    ``test_per_group`` test subjects per group (paper 000 section 2.1: 2), the rest train.

    Returns:
        The cohort CSV path.
    """
    groups = len(AGE_GROUPS_MONTHS)
    per = int(n_subjects) // groups
    if int(n_subjects) % groups or per < int(test_per_group) + 1:
        raise InputError("--synth_subjects", f"{n_subjects}: need a multiple of {groups} with "
                                             f"at least {test_per_group + 1} per age group")
    csv = os.path.join(os.fspath(out_dir), "cohort.csv")
    if os.path.isfile(csv):
        return csv
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(n_subjects), 12]))
    visits = np.repeat(AGE_GROUPS_MONTHS, per).astype(float)
    ages = np.minimum(visits + rng.uniform(-AGE_JITTER_MONTHS, AGE_JITTER_MONTHS, visits.size),
                      60.0).round(1)
    with atomic_path(out_dir, suffix="") as tmp:
        df = make_cohort(tmp, len(ages), ages=ages, spacing=spacing, seed=seed,
                         show_progress=show_progress)
        df["split"] = ["test" if i % per < test_per_group else "train" for i in range(len(df))]
        write_cohort(df, os.path.join(tmp, "cohort.csv"))
    return csv


def load_age_cohort(cohort, *, out_dir, modality: str, mask_column: str | None,
                    synth_subjects: int = 36, spacing: float = 4.0, seed: int = 0,
                    min_subjects: int = 2) -> pd.DataFrame:
    """The validated cohort of an age-study run: ``cohort`` (a CSV) or the synthetic one
    (:func:`synth_age_cohort` in ``<out_dir>/cohort``). The skull masks (``mask_column``;
    ``None`` when they are predicted) must hold 0/1 (scheme ``neurocranium``); every subject
    needs ``age_months``."""
    if cohort is None:
        cohort = synth_age_cohort(os.path.join(os.fspath(out_dir), "cohort"), synth_subjects,
                                  spacing=spacing, seed=seed)
    return load_cohort(cohort, modalities=(modality,), label=mask_column,
                       scheme="neurocranium" if mask_column else None, require_age=True,
                       min_subjects=min_subjects)


def results_table(test: pd.DataFrame, probs: np.ndarray, baseline=None) -> pd.DataFrame:
    """One row per test subject: true and predicted group (months), ``correct``, the class
    probabilities ``p_<g>m``, and with ``baseline`` (predicted group indices) its group and
    ``baseline_correct``."""
    groups = np.asarray(AGE_GROUPS_MONTHS)
    truth = np.array([age_group(a) for a in test["age_months"]], int)
    pred = np.asarray(probs).argmax(axis=1)
    table = pd.DataFrame({"subject": list(test["subject"]), "age_months": list(test["age_months"]),
                          "true_group_months": groups[truth],
                          "predicted_group_months": groups[pred], "correct": pred == truth})
    for k, g in enumerate(groups):
        table[f"p_{g}m"] = np.asarray(probs)[:, k]
    if baseline is not None:
        table["size_baseline_group_months"] = groups[np.asarray(baseline, int)]
        table["size_baseline_correct"] = np.asarray(baseline, int) == truth
    return table


def size_features(row, mask, modality) -> np.ndarray:
    """``[log skull-mask volume, log head volume]`` (mL) of one subject: what head size alone
    tells about age. The head is the image's foreground (Otsu threshold, largest component,
    holes filled: :func:`tfneuro.evaluation.baselines.foreground_mask`)."""
    from tfneuro.evaluation.baselines import foreground_mask
    from tfneuro.io.nifti import voxel_spacing

    x, _, _ = load_subject(row, modalities=(modality,), label=None, normalize=None)
    ml = float(np.prod(voxel_spacing(row[modality]))) / 1000.0
    return np.log([max(float(np.sum(np.asarray(mask) > 0)), 1.0) * ml,
                   float(foreground_mask(x).sum()) * ml])


def size_baseline(train_features, train_groups, test_features) -> np.ndarray:
    """Nearest group centroid (group indices) in features scaled by the pooled within-group
    SD (linear discriminant with a shared diagonal covariance and equal priors), fitted on
    the training subjects. Groups absent from training are never predicted."""
    f, g = np.asarray(train_features, float), np.asarray(train_groups, int)
    present = np.unique(g)
    centres = np.stack([f[g == k].mean(axis=0) for k in present])
    resid = f - centres[np.searchsorted(present, g)]
    sd = np.sqrt((resid ** 2).sum(axis=0) / max(len(f) - len(present), 1))
    sd[sd == 0] = 1.0
    d = (((np.asarray(test_features, float)[:, None] - centres[None]) / sd) ** 2).sum(axis=-1)
    return present[np.argmin(d, axis=1)]


def explain_subjects(model, df, meta, *, layer="last_conv", class_source="predicted",
                     region="skull", skull_model=None):
    """Grad-CAM (paper 000 eq. 2) of every subject of ``df`` for the predicted (or true) age
    group, on the classifier's input grid.

    Args:
        model: the age classifier.
        df: the subjects (with ``age_months``).
        meta: ``classifier.json`` of ``train_age_classifier.py`` (``modality``, ``pad_to``,
            ``mask_column``, ``theta``, ``window``, ``age_groups_months``).
        layer: the layer whose activations are weighted.
        class_source: ``"predicted"`` or ``"true"``.
        region: ``"skull"`` (the subject's mask) or ``"all"`` (every voxel): the voxels the
            heatmap is later normalised over.
        skull_model: a NEC-NET model predicting the masks (else the cohort's masks).

    Returns:
        ``(rows, maps, images, regions)``: per subject a dict (subject, age, group, predicted
        and explained group in months), the heatmap, the image channel and the region mask.
    """
    from tfneuro.explain import grad_cam
    from tfneuro.utils.progress import progress

    groups = np.asarray(meta["age_groups_months"])
    rows, maps, images, regions = [], [], [], []
    for row in progress(df.to_dict("records"), desc="grad-cam", unit="subject"):
        mask = (predicted_mask(skull_model, row, meta["modality"], meta.get("theta", 6.0),
                               meta.get("window", 96)) if skull_model is not None else None)
        x, m = classifier_input(row, meta["modality"], meta["pad_to"], mask, meta["mask_column"])
        pred = int(np.argmax(np.asarray(model.predict_on_batch(x[None]))[0]))
        g = age_group(row["age_months"])
        cls = pred if class_source == "predicted" else g
        region_mask = m > 0 if region == "skull" else np.ones(m.shape, bool)
        if not region_mask.any():
            raise InputError(row.get(meta["mask_column"], row["subject"]),
                             f"subject {row['subject']}: empty skull mask (use --region all)")
        maps.append(grad_cam(model, x[None], cls, layer)[0])
        images.append(x[..., 0])
        regions.append(region_mask)
        rows.append({"subject": row["subject"], "age_months": row["age_months"],
                     "age_group_months": int(groups[g]),
                     "predicted_group_months": int(groups[pred]),
                     "explained_group_months": int(groups[cls])})
    return rows, maps, images, regions
