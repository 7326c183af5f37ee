"""Segmenting scans and cohorts with an exported SavedModel or a ``.keras`` model.

``load_volume -> conform (the model's stored spacing / orientation) -> segment_volume ->
deconform`` (labels nearest-neighbour, probabilities linear), so outputs have exactly the
input's shape and affine. ``experiments/segment.py`` (``tfneuro segment``) is flag parsing
plus :func:`segment_files` or :func:`segment_cohort`; the quick start segments its held-out
subjects through the same functions. TensorFlow-only (it runs the SavedModel signature or the
in-memory :class:`~tfneuro.export.SegmentationModule`).

Safety: a ``.keras`` file is loaded with ``safe_mode=True``; a model carrying arbitrary Python
(a ``Lambda`` layer) is refused with an :class:`~tfneuro.errors.InputError` that names
``--unsafe``. All inputs are validated before anything is written, and all outputs of one
subject are written to temporary names and renamed together at the end
(:func:`tfneuro.apps.outputs.write_outputs`).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import traceback
import warnings

import numpy as np
import pandas as pd

from tfneuro.apps.checks import EXTENSIONS, check_outputs
from tfneuro.apps.outputs import label_volumes, volume_row, write_outputs
from tfneuro.errors import InputError
from tfneuro.export.metadata import ExportMetadata, read_metadata
from tfneuro.inference import memory
from tfneuro.io import check_same_grid, conform, deconform, load_volume, plan_conform
from tfneuro.utils.atomic import atomic_path
from tfneuro.utils.precision import check_precision
from tfneuro.utils.progress import progress

__all__ = ["Segmenter", "load_segmenter", "SegmentationResult", "load_images",
           "check_modalities", "load_inputs", "estimate_segment_bytes", "check_segment_memory",
           "segment_images", "warn_coarse_voxels", "segment_files", "cohort_plans",
           "segment_cohort", "KERNEL_ACTIVATION_FACTOR", "COARSE_FACTOR", "CoarseVoxelWarning"]

#: Activations of a SavedModel whose Keras model is not at hand: bytes per (batch voxel x
#: output channel of a kernel), see :func:`estimate_segment_bytes`.
KERNEL_ACTIVATION_FACTOR = 0.75
_F32 = 4
#: A scan whose voxels are more than this many times the model's spacing on any axis is
#: warned about (issue 16): the labels of a 10 mm scan upsampled to a 1-2 mm grid mean little.
COARSE_FACTOR = 3.0


class CoarseVoxelWarning(UserWarning):
    """The scan's voxels are much coarser than the model's grid (:func:`warn_coarse_voxels`)."""


@dataclasses.dataclass
class Segmenter:
    """A loaded model that segments conformed volumes.

    Attributes:
        source: the model path.
        meta: the export metadata.
        fn: ``fn(volume=tf.Tensor float32[X,Y,Z,C]) -> {"labels", "probabilities"}``.
        models: ``{view or "model": keras.Model}`` for a ``.keras`` model (else ``None``).
        handle: the loaded object that owns ``fn``'s variables (kept alive).
    """

    source: str
    meta: ExportMetadata
    fn: object
    models: dict | None = None
    handle: object = None

    def __call__(self, volume: np.ndarray):
        import tensorflow as tf

        out = self.fn(volume=tf.constant(np.asarray(volume, np.float32)))
        return out["labels"].numpy(), out["probabilities"].numpy()


def load_segmenter(path, *, unsafe: bool = False, precision: str = "auto",
                   **export_overrides) -> Segmenter:
    """Load a SavedModel directory (from :func:`tfneuro.export.export_model`) or a ``.keras``
    file.

    Args:
        path: SavedModel directory or ``.keras`` file.
        unsafe: allow ``.keras`` files with arbitrary Python code (``safe_mode=False``).
        precision: ``"auto"``, ``"float32"``, ``"bfloat16"`` or ``"float16"``
            (:mod:`tfneuro.utils.precision`). A ``.keras`` model runs at it; a SavedModel
            runs at the precision it was exported at (its metadata), and asking for another
            one is an error (re-export it with that precision).
        **export_overrides: for ``.keras`` files: the :class:`tfneuro.export.ExportOptions`
            that a SavedModel stores (``label_scheme``, ``spacing``, ``normalization``, ...).

    Raises:
        InputError: missing path, not a model, a Lambda layer without ``unsafe``, an unknown
            precision or one a SavedModel was not exported at.
    """
    import tensorflow as tf

    from tfneuro.export import build_module
    from tfneuro.training.saving import load_keras_model

    check_precision(precision)
    path = os.fspath(path)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise InputError(path, "not a SavedModel directory (no saved_model.pb)")
        meta = read_metadata(path)
        if precision not in ("auto", meta.precision):
            raise InputError("precision", f"{path} was exported at {meta.precision}; re-export "
                                          f"it with precision {precision} to run at {precision}")
        try:
            loaded = tf.saved_model.load(path)
        except Exception as e:  # noqa: BLE001 - corrupt or incompatible SavedModel
            raise InputError(path, f"cannot load the SavedModel ({type(e).__name__}: {e})") from e
        if "segment_volume" not in loaded.signatures:
            raise InputError(path, "the SavedModel has no segment_volume signature")
        return Segmenter(path, meta, loaded.signatures["segment_volume"], handle=loaded)
    if not os.path.exists(path):
        raise InputError(path, "model not found")
    if not path.endswith(".keras"):
        raise InputError(path, "model must be a SavedModel directory or a .keras file")
    module = build_module(load_keras_model(path, unsafe=unsafe), precision=precision,
                          **export_overrides)
    if not hasattr(module, "segment_volume"):
        raise InputError(path, f"model {module.meta.model_name!r} is not a segmentation model")
    return Segmenter(path, module.meta, module.segment_volume, models=module.models,
                     handle=module)


@dataclasses.dataclass
class SegmentationResult:
    """Native-space results for one subject.

    Attributes:
        labels: ``nibabel.Nifti1Image`` of class ids, the input's shape and affine.
        probabilities: 4D ``nibabel.Nifti1Image`` ``[X, Y, Z, K]`` (or None).
        conformed_image: the first modality on the conformed grid (for QC).
        conformed_labels: labels on the conformed grid (for QC).
        label_names: class names indexed by class id.
        model_name: the model's name (from its export metadata).
    """

    labels: object
    probabilities: object
    conformed_image: np.ndarray
    conformed_labels: np.ndarray
    label_names: list
    model_name: str = ""


def load_images(paths: list, names: list) -> list:
    """Load and validate the given input images (``None`` entries skipped); same grid.

    Args:
        paths: image paths (first modality first); ``None`` / ``""`` for not given.
        names: the flag (or column) of each path, for error messages.
    """
    given = [p for p in paths if p]
    imgs = [load_volume(p) for p in given]
    for p, img in zip(given[1:], imgs[1:]):
        check_same_grid(img, imgs[0], p, given[0])
    return imgs


def check_modalities(segmenter: Segmenter, paths: list, names: list) -> None:
    """Raise InputError naming the flag when the number of inputs differs from the model's."""
    meta = segmenter.meta
    want = meta.num_channels
    given = [n for p, n in zip(paths, names) if p]
    if len(given) != want:
        flag = names[min(len(given), want, len(names) - 1)] if len(given) < want else given[want]
        raise InputError(flag, f"model {meta.model_name!r} takes {want} modality(ies) "
                               f"({', '.join(meta.modalities)}), got {len(given)}")


def load_inputs(segmenter: Segmenter, paths: list, names: list) -> list:
    """:func:`check_modalities`, then :func:`load_images`."""
    check_modalities(segmenter, paths, names)
    return load_images(paths, names)


def _kernel_channels(variables) -> int:
    """Sum of output channels over the convolution / dense kernels among ``variables``."""
    total = 0
    for v in variables:
        shape = getattr(v, "shape", ())
        name = getattr(v, "name", "") or ""
        if len(shape) >= 2 and ("kernel" in name or len(shape) >= 4) and shape[-1] is not None:
            total += int(shape[-1])
    return total


def estimate_segment_bytes(meta: ExportMetadata, shape, *, variables=None, models=None) -> int:
    """Peak bytes of segmenting one conformed volume: the ``segment_volume`` signature and
    the native-space resampling around it.

    In-graph tensors (see :mod:`tfneuro.export.graph`): the input, its normalised, transposed
    and padded copies (4 x ``[X,Y,Z,C]``); per view the concatenated slab, the background
    fill, the transpose back, the weighted copy and the running sum (5 x ``[X,Y,Z,K]``); or for
    3D the ``[X,Y,Z,K+1]`` accumulator twice (``tensor_scatter_nd_add`` returns a new one)
    and the division result; the returned probabilities and labels; plus the native-space
    resampling (one more ``[X,Y,Z,K]``). Activations: from the Keras models when given
    (:func:`tfneuro.inference.memory.activation_bytes`), else from the SavedModel's variables:
    ``KERNEL_ACTIVATION_FACTOR x 4 x (voxels of one batch) x (sum of the kernels' output
    channels)`` -- a heuristic: every kernel's output at full resolution, times 0.75 (on
    QuickNAT the kernels' channels at full resolution are about 3x the symbolic per-layer sum,
    which includes the normalisation and activation copies; 0.75 keeps the heuristic above it).

    Args:
        meta: the export metadata.
        shape: conformed volume shape ``[X, Y, Z]`` or ``[X, Y, Z, C]``.
        variables: the loaded SavedModel's variables (for the heuristic).
        models: ``{view or "model": keras.Model}`` when available (``.keras`` input).
    """
    x, y, z = (int(s) for s in shape[:3])
    c, k, kind = meta.num_channels, meta.num_classes, meta.input_kind
    vox = x * y * z
    fixed = _F32 * vox * c * 4 + _F32 * vox * k * 2 + 4 * vox  # inputs, outputs, labels
    fixed += _F32 * vox * k  # native-space probabilities / label resampling
    if meta.ndim == 2:
        fixed += _F32 * vox * k * 5
        batches = []
        for view, info, key in meta.view_items:
            h, w = (d for a, d in enumerate((x, y, z)) if a != info.axis)
            mult = meta.pad_multiple[key]
            h, w = -(-h // mult) * mult, -(-w // mult) * mult
            b = memory.auto_slice_batch(h, w) if meta.batch_size is None else meta.batch_size
            batches.append((key, min(b, (x, y, z)[info.axis]), h, w))
    else:
        fixed += _F32 * vox * (k + 1) * 3
        batches = [("model", int(meta.batch_size or 1), *meta.window)]
    kch = _kernel_channels(variables or [])
    per_batch = 0
    for key, b, *spatial in batches:
        bvox = b * int(np.prod(spatial))
        in_c = {"two_arm": 2, "rgb_slices": 3}.get(kind, c)
        io_bytes = _F32 * bvox * (2 * in_c + 3 * k)
        model = (models or {}).get(key)
        if model is not None:
            shp = (b, *spatial, c) if len(spatial) == 3 else memory.slice_batch_shapes(kind, b, *spatial, c)
            act = memory.activation_bytes(model, shp)
        else:
            act = int(KERNEL_ACTIVATION_FACTOR * _F32 * bvox * kch)
        per_batch = max(per_batch, io_bytes + act)
    return int(fixed + per_batch + memory.RUNTIME_SLACK)


def check_segment_memory(segmenter: Segmenter, imgs: list, memory_budget=None,
                         source=None) -> None:
    """Refuse (``MemoryBudgetError``) a subject whose conformed volume would exceed the memory
    budget (:mod:`tfneuro.inference.memory`), from its header and the model's metadata."""
    c = segmenter.meta.conform
    shape = plan_conform(imgs[0].shape, imgs[0].affine, c.conform_spacing, c.orientation,
                         c.multiple).conformed_shape
    memory.check_memory(lambda: estimate_segment_bytes(
        segmenter.meta, shape, variables=getattr(segmenter.fn, "variables", None),
        models=segmenter.models), memory_budget, source=source or segmenter.source,
        what=f"segmenting a volume conformed to {'x'.join(map(str, shape))} at "
             f"{c.conform_spacing} mm",
        advice=["re-export the model with a smaller batch_size", "a coarser conform spacing",
                f"or raise the budget (--memory_budget or {memory.ENV_VAR}, e.g. '16GB')"])


def segment_images(segmenter: Segmenter, imgs: list, *, probabilities: bool = False) -> SegmentationResult:
    """Conform, segment and deconform one subject's images (one per modality, same grid)."""
    conformed, record = [], None
    for img in imgs:
        cimg, record = conform(img, **segmenter.meta.conform.conform_kwargs())
        conformed.append(np.asarray(cimg.dataobj, np.float32))
    volume = np.stack(conformed, axis=-1)
    labels, probs = segmenter(volume)
    dtype = np.uint8 if segmenter.meta.num_classes < 256 else np.int16
    lab_img = deconform(labels.astype(dtype), record, order=0)
    prob_img = deconform(probs, record, order=1) if probabilities else None
    return SegmentationResult(lab_img, prob_img, volume[..., 0], labels,
                              list(segmenter.meta.label_names), segmenter.meta.model_name)


def warn_coarse_voxels(segmenter: Segmenter, img, source) -> bool:
    """Warn (:class:`CoarseVoxelWarning`, one line naming ``source`` and its voxel size) when
    a voxel axis of ``img`` is more than :data:`COARSE_FACTOR` times the model's spacing: the
    scan is upsampled to the model's grid and the labels say little. Returns whether it
    warned."""
    zooms = np.sqrt((np.asarray(img.affine, float)[:3, :3] ** 2).sum(axis=0))
    spacing = float(np.max(segmenter.meta.conform.spacing))
    if not np.any(zooms > COARSE_FACTOR * spacing):
        return False
    size = " x ".join(f"{z:.3g}" for z in zooms)
    warnings.warn(CoarseVoxelWarning(
        f"{source}: voxel size {size} mm is more than {COARSE_FACTOR:g}x the model's "
        f"{spacing:g} mm spacing; the segmentation of so coarse a scan means little"),
        stacklevel=2)
    return True


def segment_files(segmenter: Segmenter, paths: list, names: list, outputs: dict, *,
                  memory_budget=None, title: str = "", subject: str = "", age_months=None):
    """Segment one subject's images and write ``outputs`` (``{"--output": path,
    "--probabilities": path or None, "--volumes_csv": ..., "--qc_png": ...}``).

    Checks (before any model call): the modality count, the images (:func:`load_images`) and
    the memory budget; a scan much coarser than the model's grid gets a warning
    (:func:`warn_coarse_voxels`). ``subject`` and ``age_months`` go into the volumes CSV and
    the QC picture (:func:`tfneuro.apps.outputs.write_outputs`).

    Returns:
        ``(SegmentationResult, [paths written])``.
    """
    imgs = load_inputs(segmenter, paths, names)
    check_segment_memory(segmenter, imgs, memory_budget, source=paths[0])
    warn_coarse_voxels(segmenter, imgs[0], paths[0])
    result = segment_images(segmenter, imgs, probabilities=bool(outputs.get("--probabilities")))
    return result, write_outputs(result, output=outputs.get("--output"),
                                 probabilities=outputs.get("--probabilities"),
                                 volumes_csv=outputs.get("--volumes_csv"),
                                 qc_png=outputs.get("--qc_png"), title=title, subject=subject,
                                 age_months=age_months)


def cohort_plans(df: pd.DataFrame, out_dir, *, probabilities: bool = False, qc: bool = False,
                 volumes: bool = False) -> dict:
    """``{subject: {flag: path}}`` of the per-subject outputs a cohort run writes in
    ``out_dir`` (``<subject>_labels.nii.gz``, ``_probabilities.nii.gz``, ``_volumes.csv``,
    ``_qc.png``)."""
    def path(s, suffix, on=True):
        return os.path.join(out_dir, f"{s}_{suffix}") if on else None

    return {s: {"--output": path(s, "labels.nii.gz"),
                "--probabilities": path(s, "probabilities.nii.gz", probabilities),
                "--volumes_csv": path(s, "volumes.csv", volumes),
                "--qc_png": path(s, "qc.png", qc)} for s in df["subject"]}


def segment_cohort(segmenter: Segmenter, df: pd.DataFrame, out_dir, *, protected=(),
                   probabilities: bool = False, qc: bool = False, volumes_csv=None,
                   memory_budget=None, verbose: bool = False):
    """Segment every subject of a cohort into ``out_dir``; a subject that fails is skipped.

    Every output path is checked first (none may overwrite an input, ``protected`` or each
    other). Writes ``<subject>_labels.nii.gz`` (and ``_probabilities.nii.gz``, ``_qc.png``)
    per subject and one volumes CSV (a row per subject: ``subject``, ``age_months`` (empty
    where the cohort has none), ``<class>_ml`` per class but background and
    ``total_brain_ml``, as :func:`tfneuro.apps.outputs.label_volumes`; default
    ``out_dir/volumes.csv``).

    Returns:
        ``(volumes table, [(subject, error line), ...] of the subjects that failed)``.
    """
    mods = list(segmenter.meta.modalities)
    source = df.attrs.get("source", "cohort")
    missing = [m for m in mods if m not in df.columns]
    if missing:
        raise InputError(source, f"the model needs column(s) {missing}")
    protected = [p for m in mods for p in df[m] if p] + [p for p in protected if p]
    volumes_csv = volumes_csv or os.path.join(out_dir, "volumes.csv")
    plans = cohort_plans(df, out_dir, probabilities=probabilities, qc=qc)
    for plan in plans.values():
        check_outputs(plan, protected, EXTENSIONS)
    check_outputs({"--volumes_csv": volumes_csv}, protected, EXTENSIONS)
    os.makedirs(out_dir, exist_ok=True)
    rows, failed = [], []
    for row in progress(df.to_dict("records"), desc="segment", unit="subject"):
        s = row["subject"]
        try:
            paths = [row[m] for m in mods]
            empty = [m for m, p in zip(mods, paths) if not p]
            if empty:
                raise InputError(source, f"subject {s}: no {', '.join(empty)} image")
            age = row.get("age_months")
            age = None if age is None or pd.isna(age) or age == "" else float(age)
            result, _ = segment_files(segmenter, paths, mods, plans[s],
                                      memory_budget=memory_budget, subject=s, age_months=age)
            rows.append(volume_row(label_volumes(result.labels, result.label_names,
                                                 subject=s, age_months=age)))
        except Exception as e:  # noqa: BLE001 - one bad subject must not stop the batch
            if verbose:
                traceback.print_exc(file=sys.stderr)
            failed.append((s, str(e).splitlines()[0] if str(e) else type(e).__name__))
    table = pd.DataFrame(rows)
    if rows:
        with atomic_path(volumes_csv) as tmp:
            table.to_csv(tmp, index=False)
    return table, failed
