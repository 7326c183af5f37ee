"""Plumbing shared by the ``experiments/*.py`` entry points.

What every experiment does the same way:

* flags ``--cohort`` (a cohort CSV; default: the built-in synthetic cohort, made in
  ``<out>/cohort`` by :func:`tfneuro.data.synth.make_cohort` from ``--synth_subjects``,
  ``--synth_spacing`` and ``--seed``), ``--out`` (output directory) and ``--label_scheme``
  (:func:`define_experiment_flags`);
* up-front validation, before any work: the output directory (:func:`check_out_dir`, refuses
  an output over an input), the cohort's columns and every file (:func:`load_cohort`: all
  images and labels are loaded and validated, label values against the scheme, T1/T2/label on
  one grid, all problems reported together), the model name and modality count
  (:func:`check_model_name`), and the model head against the label count
  (:func:`check_model_classes`);
* evaluation of whole volumes (:func:`predict_volume`, :func:`evaluate_subjects`, built on
  :func:`tfneuro.metrics.evaluation_table`);
* the results CSV written atomically and a short summary printed (:func:`write_results`).

TensorFlow-only where it predicts (tfneuro.inference); the rest is numpy/pandas.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from absl import flags

from tfneuro.errors import InputError, InputErrors
from tfneuro.utils.atomic import atomic_path

__all__ = ["define_experiment_flags", "define_unet3d_flags", "seed_value", "check_out_dir",
           "input_files", "check_outputs", "load_cohort", "check_model_name",
           "check_model_classes", "check_model_channels", "cohort_shape", "spacing_of",
           "predict_volume", "evaluate_subjects", "mean_foreground_dice", "write_results",
           "print_summary", "save_keras_model", "load_model", "segmentation_loss",
           "resume_note", "check_pad_multiple", "patch_size_from_flags", "quiet_logs",
           "patch_train_fn", "build_segmentation_3d", "compile_3d", "class_weights_from_cohort"]


def define_experiment_flags(*, synth_subjects: int = 8, synth_spacing: float = 2.0,
                            label_scheme: str = "tissue4",
                            flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Define ``--cohort``, ``--out``, ``--synth_subjects``, ``--synth_spacing`` and
    ``--label_scheme`` (once per process; a second call is a no-op).

    Args:
        synth_subjects: default number of synthetic subjects when no ``--cohort`` is given.
        synth_spacing: default synthetic voxel size (mm).
        label_scheme: default ``--label_scheme``.
        flag_values: where to define them.
    """
    if "cohort" in flag_values:
        return
    fv = flag_values
    flags.DEFINE_string("cohort", None, "Cohort CSV (columns subject,t1,t2,label,age_months,"
                        "split; paths relative to the CSV). Default: the built-in synthetic "
                        "infant cohort, generated in OUT/cohort (reused when it exists).",
                        flag_values=fv)
    flags.DEFINE_string("out", None, "Output directory (created). Must not hold the inputs.",
                        flag_values=fv)
    flags.DEFINE_integer("synth_subjects", synth_subjects, "Synthetic cohort: number of "
                         "subjects (used without --cohort).", lower_bound=1, flag_values=fv)
    flags.DEFINE_float("synth_spacing", synth_spacing, "Synthetic cohort: isotropic voxel "
                       "size in mm.", lower_bound=0.5, flag_values=fv)
    flags.DEFINE_string("label_scheme", label_scheme, "Label scheme of the cohort's label "
                        "files (tfneuro.io.labels: tissue4, iseg2017, drawem9, drawem87, "
                        "neobrains12, mrbrains13).", flag_values=fv)


def seed_value(flag_values: flags.FlagValues = flags.FLAGS, default: int = 0) -> int:
    """``--seed`` when it is defined and set, else ``default``."""
    if "seed" in flag_values and flag_values["seed"].value is not None:
        return int(flag_values["seed"].value)
    return default


def check_out_dir(out, inputs=(), flag: str = "--out") -> str:
    """Validate an output directory before any work; return its absolute path.

    Refuses: no value, an existing non-directory (or a parent that is a file), and a path
    that IS one of ``inputs``. Missing parent directories are allowed (created on write).

    Args:
        out: the directory.
        inputs: input file or directory paths that must not be overwritten.
        flag: flag name for messages.
    """
    if not out:
        raise InputError(flag, "is required")
    path = os.path.abspath(os.fspath(out))
    real = os.path.realpath(path)
    for p in inputs:
        if p and os.path.realpath(os.fspath(p)) == real:
            raise InputError(flag, f"{out} is an input ({p}); choose another output directory")
    if os.path.exists(path) and not os.path.isdir(path):
        raise InputError(flag, f"{out} exists and is not a directory")
    parent = os.path.dirname(path)
    while parent and not os.path.exists(parent):  # missing parents are created later
        parent = os.path.dirname(parent)
    if parent and not os.path.isdir(parent):
        raise InputError(flag, f"{parent} (a parent of {out}) is not a directory")
    return path


def input_files(df: pd.DataFrame) -> list[str]:
    """Every input file of a cohort (image/label/mask columns, Analyze pairs, the CSV)."""
    from tfneuro.io.nifti import volume_files

    files = []
    for c in ("t1", "t2", "label", "mask", "skull", "weights"):
        if c in df.columns:
            for p in df[c]:
                if p:
                    files.extend(volume_files(p))
    src = df.attrs.get("source")
    if src:
        files.append(os.fspath(src))
    return files


def check_outputs(outputs: dict, inputs) -> None:
    """Refuse output files that would overwrite an input (or each other).

    Args:
        outputs: ``{flag or name: path}`` of the files the run will write.
        inputs: input file paths (e.g. :func:`input_files`).
    """
    protected = {os.path.realpath(os.fspath(p)): p for p in inputs if p}
    seen = {}
    for name, path in outputs.items():
        if not path:
            continue
        real = os.path.realpath(os.fspath(path))
        if real in protected:
            raise InputError(name, f"{path} would overwrite the input {protected[real]}")
        if real in seen:
            raise InputError(name, f"{path} is also the output {seen[real]}")
        if os.path.isdir(real):
            raise InputError(name, f"{path} is a directory")
        seen[real] = name


def _load_checked(path, kind, scheme, errors, what):
    from tfneuro.io import load_volume

    try:
        return load_volume(path, kind=kind, scheme=scheme)
    except InputError as e:
        errors.append(InputError(e.source, f"({what}) {e.problem}"))
    return None


def load_cohort(flag_values: flags.FlagValues = flags.FLAGS, *, out_dir: str | None = None,
                modalities=("t1",), label: str | None = "label", scheme: str | None = None,
                require_age: bool = False, min_subjects: int = 1, deep: bool = True,
                show_progress: bool = True) -> pd.DataFrame:
    """The experiment's cohort, fully validated before any training.

    With ``--cohort``: read and validate the CSV (:func:`tfneuro.data.cohort.read_cohort`).
    Without: make (or reuse) the synthetic cohort in ``<out_dir>/cohort``.

    Then every subject's ``modalities`` and ``label`` files are checked: missing/unreadable
    files (all of them, :func:`tfneuro.data.cohort.check_files`), and with ``deep`` every
    volume is loaded with :func:`tfneuro.io.load_volume` (NaN/Inf, all-zero, 2D/4D, label
    values outside ``scheme``) and the modalities and label are checked to share one grid.
    All problems are reported in one :class:`~tfneuro.errors.InputErrors`.

    Args:
        flag_values: parsed flags (``--cohort``, ``--synth_*``, ``--seed``, ``--label_scheme``).
        out_dir: the run's output directory (for the synthetic cohort).
        modalities: image columns the model reads.
        label: label column (``None``: labels not needed).
        scheme: label scheme (default ``--label_scheme``).
        require_age: every subject needs ``age_months``.
        min_subjects: fewest subjects the experiment can run with.
        deep: load and validate every volume.
        show_progress: progress bar for the synthetic cohort.

    Returns:
        The cohort DataFrame (absolute paths; ``attrs["source"]`` = CSV path).
    """
    from tfneuro.data.cohort import check_files, read_cohort
    from tfneuro.io import check_same_grid

    scheme = scheme or flag_values["label_scheme"].value
    from tfneuro.io.labels import get_scheme

    try:
        get_scheme(scheme)
    except InputError as e:
        raise InputError("--label_scheme", e.problem) from None
    cohort = flag_values["cohort"].value
    if cohort:
        df = read_cohort(cohort)
    else:
        if out_dir is None:
            raise InputError("--cohort", "is required (or give --out for a synthetic cohort)")
        from tfneuro.data.synth import make_cohort

        cdir = os.path.join(out_dir, "cohort")
        csv = os.path.join(cdir, "cohort.csv")
        if not os.path.isfile(csv):
            with atomic_path(cdir, suffix="") as tmp:
                make_cohort(tmp, int(flag_values["synth_subjects"].value),
                            spacing=float(flag_values["synth_spacing"].value),
                            seed=seed_value(flag_values), show_progress=show_progress)
        df = read_cohort(csv)
    source = df.attrs.get("source", "cohort")
    need = list(modalities) + ([label] if label else [])
    for c in need:
        if c not in df.columns:
            raise InputError(source, f"missing column {c!r}")
    empty = [f"{s} ({c})" for c in need for s, p in zip(df["subject"], df[c]) if not p]
    if empty:
        raise InputError(source, f"empty {'/'.join(need)} cell(s): {', '.join(empty[:5])}"
                                 + (" ..." if len(empty) > 5 else ""))
    if require_age:
        noage = df["subject"][df["age_months"].isna()].tolist()
        if noage:
            raise InputError(source, f"no age_months for subject(s) {noage}")
    if len(df) < min_subjects:
        raise InputError(source, f"{len(df)} subject(s); this experiment needs at least {min_subjects}")
    check_files(df, columns=need)
    if deep:
        errors = []
        for _, row in df.iterrows():
            s = row["subject"]
            imgs = [(m, _load_checked(row[m], "image", None, errors, f"subject {s}, {m}"))
                    for m in modalities]
            if label:
                imgs.append((label, _load_checked(row[label], "label", scheme, errors,
                                                  f"subject {s}, {label}")))
            good = [(c, i) for c, i in imgs if i is not None]
            for c, img in good[1:]:
                try:
                    check_same_grid(img, good[0][1], row[c], row[good[0][0]])
                except InputError as e:
                    errors.append(InputError(e.source, f"(subject {s}) {e.problem}"))
        if errors:
            raise errors[0] if len(errors) == 1 else InputErrors(errors, what=f"cohort {source}")
    return df


def check_model_name(name: str, *, modalities=("t1",), flag: str = "--model", tasks=None,
                     ndim=None):
    """Check a registry model name and that it takes ``modalities``; return its ModelSpec.

    Raises:
        InputError: unknown name (listing the known ones), a task the experiment cannot run,
            a model that is not ``ndim``-D (2 = slice models, 3 = volume models), or a
            modality count the model's input kind does not take (two-arm models need
            exactly 2, RGB-slice models exactly 1).
    """
    from tfneuro.models.registry import spec

    s = spec(name, source=flag)
    if tasks is not None and s.task not in tasks:
        raise InputError(flag, f"model {name!r} is a {s.task} model; this experiment needs {' or '.join(tasks)}")
    if ndim is not None and s.ndim != ndim:
        raise InputError(flag, f"{name!r} is not a {ndim}D {' or '.join(tasks or ('',)).strip()} model")
    n = len(tuple(modalities))
    if s.input_kind == "two_arm" and n != 2:
        raise InputError("--modalities", f"model {name!r} takes 2 modalities (t1, t2), got {n}")
    if s.input_kind == "rgb_slices" and n != 1:
        raise InputError("--modalities", f"model {name!r} takes 1 modality (3 adjacent slices as RGB), got {n}")
    if n < 1:
        raise InputError("--modalities", "give at least one modality")
    return s


def check_model_classes(model, num_classes: int, source: str, scheme: str = "") -> None:
    """Raise InputError naming ``source`` when the model's head does not output ``num_classes``."""
    outs = model.outputs if isinstance(model.outputs, (list, tuple)) else [model.outputs]
    k = int(outs[0].shape[-1])
    if k != int(num_classes):
        raise InputError(source, f"the model's head has {k} classes but the labels"
                                 f"{' (scheme ' + scheme + ')' if scheme else ''} have {num_classes}")


def check_model_channels(model, n_modalities: int, source: str) -> None:
    """Raise InputError naming ``source`` when the model does not take ``n_modalities`` channels."""
    ins = model.inputs if isinstance(model.inputs, (list, tuple)) else [model.inputs]
    c = sum(int(i.shape[-1]) for i in ins) if len(ins) > 1 else int(ins[0].shape[-1])
    if c != int(n_modalities):
        raise InputError(source, f"the model takes {c} input channel(s) but {n_modalities} "
                                 "modality(ies) were given")


def cohort_shape(df: pd.DataFrame, column: str = "t1", multiple: int = 16) -> tuple:
    """Largest volume shape of a cohort (from the headers), rounded up to ``multiple``: the
    ``pad_to`` shape for slice/volume datasets of volumes with different sizes."""
    import nibabel as nib

    shapes = np.array([nib.load(p).shape[:3] for p in df[column]])
    top = shapes.max(axis=0)
    return tuple(int(-(-s // multiple) * multiple) for s in top)


def spacing_of(path) -> tuple:
    """Voxel size (mm) of a volume from its header."""
    import nibabel as nib

    return tuple(float(z) for z in nib.load(os.fspath(path)).header.get_zooms()[:3])


def predict_volume(model, x: np.ndarray, *, views=None, window=(96, 96, 96),
                   batch_size: int | None = None) -> np.ndarray:
    """Class probabilities ``[X, Y, Z, K]`` of one volume ``x [X, Y, Z, C]``.

    Args:
        model: a 2D slice model, a dict ``{view: 2D model}`` (view aggregation,
            :func:`tfneuro.inference.predict_volume_views`), or a 3D model
            (:func:`tfneuro.inference.sliding_window_predict`).
        x: the (normalised) volume.
        views: for a single 2D model: the views to predict and average (default axial).
        window: 3D sliding window size.
        batch_size: slices per call (2D; None: automatic from the slice size).
    """
    from tfneuro.inference import predict_volume_views, sliding_window_predict

    if isinstance(model, dict):
        return predict_volume_views(model, x, batch_size=batch_size)
    ndim = len(model.inputs[0].shape) - 2
    if ndim == 2:
        return predict_volume_views({v: model for v in (views or ["axial"])}, x,
                                    batch_size=batch_size)
    win = tuple(min(int(w), int(-(-s // 16) * 16)) for w, s in zip(window, x.shape[:3]))
    return sliding_window_predict(model, x, window=win)


def evaluate_subjects(model, df: pd.DataFrame, *, modalities=("t1",), label="label",
                      scheme="tissue4", normalize="zscore", views=None, window=(96, 96, 96),
                      distances: bool = True, regroup_to=None, desc: str = "evaluate",
                      return_predictions: bool = False, label_names=None, labels=None):
    """Predict every subject of ``df`` and tabulate Dice/precision/HD95/MSD per class.

    Args:
        scheme: label scheme used to remap the label files (``None``: stored values) and to
            name the classes, unless ``label_names`` (a list) is given.
        labels: class ids to score (default the foreground classes; include 0 for
            "mean DSC with background" as in paper 002's tables).

    Returns:
        The concatenated :func:`tfneuro.metrics.evaluation_table` (one row per subject and
        foreground class); with ``return_predictions`` also ``{subject: label map}``.
    """
    from tfneuro.data.pipeline import load_subject
    from tfneuro.metrics.report import evaluation_table
    from tfneuro.utils.progress import progress

    tables, preds = [], {}
    for row in progress(df.to_dict("records"), desc=desc, unit="subject"):
        x, y, _ = load_subject(row, modalities=modalities, label=label, scheme=scheme,
                               normalize=normalize)
        probs = predict_volume(model, x, views=views, window=window)
        pred = np.argmax(probs, axis=-1).astype(np.int32)
        tables.append(evaluation_table(y, pred, spacing_of(row[modalities[0]]),
                                       subject=row["subject"],
                                       scheme=list(label_names) if label_names else scheme,
                                       regroup_to=regroup_to, distances=distances,
                                       labels=labels))
        if return_predictions:
            preds[row["subject"]] = (y, pred)
    table = pd.concat(tables, ignore_index=True)
    return (table, preds) if return_predictions else table


def mean_foreground_dice(table: pd.DataFrame) -> float:
    """Mean Dice over every (subject, foreground class) row of an evaluation table."""
    return float(table["dice"].mean())


def write_results(table: pd.DataFrame, path) -> str:
    """Write a results CSV atomically (:func:`tfneuro.utils.atomic_path`); return the path."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    return path


def print_summary(title: str, table: pd.DataFrame, columns=None, floatfmt: str = "{:.4f}") -> None:
    """Print ``title`` and a compact text table (``columns`` only, floats formatted)."""
    t = table[list(columns)] if columns is not None else table
    print(f"\n{title}")
    print(t.to_string(index=False, float_format=lambda v: floatfmt.format(v)))


def require_splits(df, *names) -> tuple:
    """``select_split(df, name)`` for each name, refusing an empty one before any work.

    Raises:
        InputError: naming the cohort CSV and the split that has no subjects.
    """
    from tfneuro.data.cohort import select_split

    parts = tuple(select_split(df, name) for name in names)
    for name, part in zip(names, parts):
        if part.empty:
            raise InputError(df.attrs.get("source", "cohort"), f"no subjects with split '{name}'")
    return parts


def save_keras_model(model, path, *, compiled: bool = True) -> str:
    """Save a ``.keras`` model atomically; return the path.

    ``compiled=False`` saves an uncompiled copy (architecture and weights only, no optimizer
    state): the inference copy a segmentation or Grad-CAM run needs. ``keras.models.clone_model``
    would re-compile the clone, so the copy is rebuilt from the config.
    """
    path = os.fspath(path)
    if not compiled:
        clone = model.__class__.from_config(model.get_config())
        clone.set_weights(model.get_weights())
        model = clone
    with atomic_path(path) as tmp:
        model.save(tmp)
    return path


def segmentation_loss(model):
    """Dice + cross-entropy (paper 002 eq. 2 / paper 001's combined loss), wrapped in
    :class:`tfneuro.losses.DeepSupervisionLoss` for models with deep-supervision outputs."""
    from tfneuro.losses import DeepSupervisionLoss, DiceCELoss

    if getattr(model, "num_deep_supervision", 0):
        return DeepSupervisionLoss(DiceCELoss())
    return DiceCELoss()


def resume_note(run_dir, resume: bool) -> str:
    """One line saying where a run starts (for the log): fresh, or after which epoch."""
    from tfneuro.training.loop import list_checkpoints

    found = list_checkpoints(run_dir) if resume else []
    return f"resuming after epoch {found[-1][0]}" if found else "starting at epoch 1"


def check_pad_multiple(shape, multiple: int, flag: str = "--patch_size") -> tuple:
    """Check a 3D patch/window size against a model's pooling multiple."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or any(s < multiple or s % multiple for s in shape):
        raise InputError(flag, f"{list(shape)}: need three sizes that are positive multiples of {multiple}")
    return shape


def quiet_logs() -> None:
    """Silence TensorFlow's INFO/retracing log lines and Keras' "input ran out of data"
    warning (each epoch's dataset is finite by design), so summaries stay readable."""
    import warnings

    from absl import logging

    logging.set_verbosity(logging.ERROR)
    warnings.filterwarnings("ignore", message="Your input ran out of data")
    # DeepSupervisionModel overrides compile(); the experiments re-compile after loading
    warnings.filterwarnings("ignore", message=r"`compile\(\)` was not called as part of model loading")


def patch_train_fn(df, *, patch_size, patches_per_volume: int, modalities, scheme,
                   batch_size: int, seed: int, weights=None):
    """``epoch -> tf.data.Dataset`` of class-balanced 3D patches (paper 002), seeded by
    :func:`tfneuro.training.loop.epoch_seed` so resumed runs see the same data."""
    from tfneuro.data import patch_dataset
    from tfneuro.training.loop import epoch_seed

    def train_ds(epoch):
        return patch_dataset(df, patch_size=patch_size, patches_per_volume=patches_per_volume,
                             modalities=modalities, scheme=scheme, weights=weights,
                             batch_size=batch_size, seed=epoch_seed(seed, epoch))

    return train_ds


def build_segmentation_3d(name: str, num_classes: int, n_channels: int, *, base_filters: int,
                          depth: int, steps_per_epoch: int, epochs: int, learning_rate,
                          strategy, compile_kwargs=None, recipe: str = "paper002", **kwargs):
    """Build and compile a registered 3D segmentation model (res_unet3d / unet3d) with a paper
    recipe's optimizer and :func:`segmentation_loss`."""
    from tfneuro.models import get

    with strategy.scope():
        model = get(name, num_classes=num_classes, input_shape=(None, None, None, n_channels),
                    base_filters=base_filters, depth=depth, **kwargs)
        compile_3d(model, steps_per_epoch=steps_per_epoch, epochs=epochs,
                   learning_rate=learning_rate, compile_kwargs=compile_kwargs, recipe=recipe)
    return model


def compile_3d(model, *, steps_per_epoch: int, epochs: int, learning_rate, compile_kwargs=None,
               recipe: str = "paper002"):
    """Compile ``model`` with a fresh optimizer of ``recipe`` and :func:`segmentation_loss`."""
    from tfneuro.training.recipes import make_optimizer

    model.compile(optimizer=make_optimizer(recipe, steps_per_epoch=steps_per_epoch,
                                           epochs=epochs, learning_rate=learning_rate),
                  loss=segmentation_loss(model), **(compile_kwargs or {}))
    return model


def class_weights_from_cohort(df, num_classes: int, scheme=None, column: str = "label"):
    """Median-frequency class weights (QuickNAT, paper 001 / Roy et al.) over the label maps
    of a cohort (``tfneuro.losses.cross_entropy.median_frequency_weights``)."""
    from tfneuro.io import get_scheme, load_volume
    from tfneuro.losses.cross_entropy import median_frequency_weights

    maps = []
    for p in df[column]:
        raw = np.asanyarray(load_volume(p, kind="label").dataobj)
        maps.append(get_scheme(scheme).remap(raw, source=p) if scheme else np.rint(raw).astype(np.int64))
    return [float(w) for w in median_frequency_weights(maps, num_classes)]


def define_unet3d_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Flags of the paper-002 3D experiments: ``--modalities`` (t1,t2), ``--base_filters``
    (32), ``--depth`` (5), ``--patch_size`` (96,96,96), ``--patches_per_volume`` (4) and
    ``--distances`` (once per process)."""
    if "patch_size" in flag_values:
        return
    fv = flag_values
    flags.DEFINE_list("modalities", ["t1", "t2"], "Cohort image columns used as channels "
                      "(paper 002: T1, T2).", flag_values=fv)
    flags.DEFINE_integer("base_filters", 32, "Channels of the first level (paper 002 / "
                         "DynUNet: 32).", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("depth", 5, "Resolution levels incl. the bottleneck (paper 002: 5).",
                         lower_bound=3, flag_values=fv)
    flags.DEFINE_list("patch_size", ["96", "96", "96"], "Training patch and inference window "
                      "size (multiples of 2**(depth-1)).", flag_values=fv)
    flags.DEFINE_integer("patches_per_volume", 4, "Patches per volume per epoch.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_bool("distances", True, "Compute HD95 and MSD in the results.", flag_values=fv)


def patch_size_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> tuple:
    """``--patch_size`` as three ints, checked against ``2 ** (--depth - 1)``."""
    try:
        patch = tuple(int(p) for p in flag_values["patch_size"].value)
    except ValueError:
        raise InputError("--patch_size", f"{flag_values['patch_size'].value}: not integers") from None
    return check_pad_multiple(patch, 2 ** (int(flag_values["depth"].value) - 1))


def load_model(path, *, unsafe: bool = False):
    """Load a ``.keras`` model in safe mode (:func:`tfneuro.export.pipeline.load_keras_model`,
    which registers tfneuro's layers, models, losses, optimizers and schedules first)."""
    from tfneuro.export.pipeline import load_keras_model

    return load_keras_model(path, unsafe=unsafe)
