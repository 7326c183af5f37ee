"""Segment NIfTI files with an exported SavedModel or a ``.keras`` model.

``load_volume -> conform (the model's stored spacing / orientation) -> segment_volume ->
deconform`` (labels nearest-neighbour, probabilities linear), so outputs have exactly the
input's shape and affine. Used by ``experiments/segment.py``; TensorFlow-only (it runs the
SavedModel signature or the in-memory :class:`~tfneuro.export.savedmodel.SegmentationModule`).

Safety: a ``.keras`` file is loaded with ``safe_mode=True``; a model carrying arbitrary Python
(a ``Lambda`` layer) is refused with an :class:`~tfneuro.errors.InputError` that names
``--unsafe``. All inputs are validated before anything is written, and all outputs of one
subject are written to temporary names and renamed together at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io as _io
import os

import numpy as np

from tfneuro.errors import InputError
from tfneuro.utils.atomic import atomic_path

__all__ = ["Segmenter", "load_segmenter", "SegmentationResult", "segment_images",
           "label_volumes", "write_outputs", "load_images", "check_modalities", "load_inputs", "check_output_paths", "qc_figure",
           "check_memory"]


@dataclasses.dataclass
class Segmenter:
    """A loaded model that segments conformed volumes.

    Attributes:
        source: the model path.
        meta: the export metadata (see ``saved_models/README.md``).
        fn: ``fn(volume=tf.Tensor float32[X,Y,Z,C]) -> {"labels", "probabilities"}``.
    """

    source: str
    meta: dict
    fn: object

    def __call__(self, volume: np.ndarray):
        import tensorflow as tf

        out = self.fn(volume=tf.constant(np.asarray(volume, np.float32)))
        return out["labels"].numpy(), out["probabilities"].numpy()


def load_segmenter(path, *, unsafe: bool = False, **export_kwargs) -> Segmenter:
    """Load a SavedModel directory (from :func:`export_model`) or a ``.keras`` file.

    Args:
        path: SavedModel directory or ``.keras`` file.
        unsafe: allow ``.keras`` files with arbitrary Python code (``safe_mode=False``).
        **export_kwargs: for ``.keras`` files: the :func:`export_model` arguments that a
            SavedModel stores (``label_scheme``, ``spacing``, ``normalization``, ...).

    Raises:
        InputError: missing path, not a model, a Lambda layer without ``unsafe``.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        from tfneuro.export.savedmodel import read_metadata

        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise InputError(path, "not a SavedModel directory (no saved_model.pb)")
        meta = read_metadata(path)
        import tensorflow as tf

        try:
            loaded = tf.saved_model.load(path)
        except Exception as e:  # noqa: BLE001 - corrupt or incompatible SavedModel
            raise InputError(path, f"cannot load the SavedModel ({type(e).__name__}: {e})") from e
        if "segment_volume" not in loaded.signatures:
            raise InputError(path, "the SavedModel has no segment_volume signature")
        seg = Segmenter(path, meta, loaded.signatures["segment_volume"])
        seg._loaded = loaded  # keep the object (and its variables) alive
        return seg
    if not os.path.exists(path):
        raise InputError(path, "model not found")
    if not path.endswith(".keras"):
        raise InputError(path, "model must be a SavedModel directory or a .keras file")
    model = load_keras_model(path, unsafe=unsafe)
    from tfneuro.export.savedmodel import build_module

    module = build_module(model, **export_kwargs)
    if not hasattr(module, "segment_volume"):
        raise InputError(path, f"model {model.name!r} is not a segmentation model")
    seg = Segmenter(path, module.meta, module.segment_volume)
    seg._module = module
    return seg


def register_serializables() -> dict:
    """Import every module that registers Keras objects, so any tfneuro ``.keras`` file loads.

    Registration happens when a module is imported (``register_keras_serializable``): the
    layers, every registered model's module (e.g. ``vgg_fcn.ChannelMeanSubtract``,
    ``res_unet3d.DeepSupervisionModel``), and, for compiled models, the losses, the streaming
    metric, the optimizers and the schedules. Returns the layers' ``custom_objects()``.
    """
    import importlib

    import tfneuro.layers
    from tfneuro.models import registry

    for name in registry.list_models():
        importlib.import_module(registry.spec(name).builder.split(":")[0])
    for module in ("tfneuro.losses", "tfneuro.metrics.keras_metrics", "tfneuro.training.recipes",
                   "tfneuro.training.schedules"):
        importlib.import_module(module)
    return tfneuro.layers.custom_objects()


def load_keras_model(path, *, unsafe: bool = False):
    """``keras.saving.load_model(path, safe_mode=not unsafe)`` with tfneuro's layers registered.

    Raises:
        InputError: naming the file; for a Lambda layer (or other arbitrary code) the message
            names ``--unsafe``.
    """
    import keras

    custom = register_serializables()
    try:
        return keras.saving.load_model(path, custom_objects=custom, safe_mode=not unsafe)
    except ValueError as e:
        if "safe_mode" in str(e) or "Lambda" in str(e):
            raise InputError(path, "contains a Lambda layer or other arbitrary Python code, which "
                                   "is refused in safe mode; pass --unsafe only if you trust its "
                                   "source") from e
        raise InputError(path, f"cannot load the .keras model ({e})".splitlines()[0]) from e
    except Exception as e:  # noqa: BLE001 - zip/HDF5/JSON errors of a broken file
        raise InputError(path, f"cannot load the .keras model ({type(e).__name__}: {e})".splitlines()[0]) from e


@dataclasses.dataclass
class SegmentationResult:
    """Native-space results for one subject.

    Attributes:
        labels: ``nibabel.Nifti1Image`` of class ids, the input's shape and affine.
        probabilities: 4D ``nibabel.Nifti1Image`` ``[X, Y, Z, K]`` (or None).
        conformed_image: the first modality on the conformed grid (for QC).
        conformed_labels: labels on the conformed grid (for QC).
        label_names: class names indexed by class id.
    """

    labels: object
    probabilities: object
    conformed_image: np.ndarray
    conformed_labels: np.ndarray
    label_names: list


def load_images(paths: list, names: list) -> list:
    """Load and validate the given input images (``None`` entries skipped); same grid.

    Args:
        paths: image paths (first modality first); ``None`` / ``""`` for not given.
        names: the flag (or column) of each path, for error messages.
    """
    from tfneuro.io import check_same_grid, load_volume

    given = [p for p in paths if p]
    imgs = [load_volume(p) for p in given]
    for p, img in zip(given[1:], imgs[1:]):
        check_same_grid(img, imgs[0], p, given[0])
    return imgs


def check_modalities(segmenter: Segmenter, paths: list, names: list) -> None:
    """Raise InputError naming the flag when the number of inputs differs from the model's."""
    meta = segmenter.meta
    want = int(meta["num_channels"])
    given = [n for p, n in zip(paths, names) if p]
    if len(given) != want:
        mods = ", ".join(meta.get("modalities", []))
        flag = names[min(len(given), want, len(names) - 1)] if len(given) < want else given[want]
        raise InputError(flag, f"model {meta['model_name']!r} takes {want} modality(ies) ({mods}), "
                               f"got {len(given)}")


def load_inputs(segmenter: Segmenter, paths: list, names: list) -> list:
    """:func:`check_modalities`, then :func:`load_images`."""
    check_modalities(segmenter, paths, names)
    return load_images(paths, names)


def check_memory(segmenter: Segmenter, imgs: list, memory_budget=None, source=None) -> None:
    """Refuse (``MemoryBudgetError``) a subject whose conformed volume would exceed the memory
    budget (:mod:`tfneuro.inference.memory`), from its header and the model's metadata."""
    from tfneuro.inference import memory
    from tfneuro.io.conform import plan_conform

    c, meta = segmenter.meta["conform"], segmenter.meta
    spacing = c["spacing"][0] if len(set(c["spacing"])) == 1 else c["spacing"]
    shape = plan_conform(imgs[0].shape, imgs[0].affine, spacing, c["orientation"],
                         c.get("multiple", 16)).conformed_shape
    module = getattr(segmenter, "_module", None)
    memory.check_memory(lambda: memory.estimate_segment_volume_bytes(
        meta, shape, variables=getattr(segmenter.fn, "variables", None),
        models=getattr(module, "models", None)), memory_budget, source=source or segmenter.source,
        what=f"segmenting a volume conformed to {'x'.join(map(str, shape))} at {spacing} mm",
        advice=["re-export the model with a smaller batch_size", "a coarser conform spacing",
                f"or raise the budget (--memory_budget or {memory.ENV_VAR}, e.g. '16GB')"])


def segment_images(segmenter: Segmenter, imgs: list, *, probabilities: bool = False) -> SegmentationResult:
    """Conform, segment and deconform one subject's images (one per modality, same grid)."""
    from tfneuro.io import conform, deconform

    c = segmenter.meta["conform"]
    conformed, record = [], None
    for img in imgs:
        cimg, record = conform(img, spacing=c["spacing"][0] if len(set(c["spacing"])) == 1 else c["spacing"],
                               orientation=c["orientation"], multiple=c.get("multiple", 16))
        conformed.append(np.asarray(cimg.dataobj, np.float32))
    volume = np.stack(conformed, axis=-1)
    labels, probs = segmenter(volume)
    k = int(segmenter.meta["num_classes"])
    dtype = np.uint8 if k < 256 else np.int16
    lab_img = deconform(labels.astype(dtype), record, order=0)
    prob_img = deconform(probs, record, order=1) if probabilities else None
    return SegmentationResult(lab_img, prob_img, volume[..., 0], labels,
                              list(segmenter.meta["label_names"]))


def label_volumes(labels_img, label_names) -> "pandas.DataFrame":  # noqa: F821
    """Voxel counts and volumes in mL per class of a native-space label image."""
    import pandas as pd

    data = np.asarray(labels_img.dataobj)
    voxel_ml = abs(float(np.linalg.det(labels_img.affine[:3, :3]))) / 1000.0
    counts = np.bincount(data.ravel().astype(np.int64), minlength=len(label_names))
    return pd.DataFrame({"label": np.arange(len(label_names)), "name": label_names,
                         "voxels": counts[:len(label_names)],
                         "volume_ml": counts[:len(label_names)] * voxel_ml})


def qc_figure(image: np.ndarray, labels: np.ndarray, title: str = "",
              label_names=None) -> bytes:
    """PNG bytes: three orthogonal slices through the labelled region's centre, with overlay.

    With ``label_names`` (class names indexed by class id) the colours are fixed per class, the
    same for every subject, and a legend names them.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    fg = np.argwhere(labels > 0)
    centre = fg.mean(axis=0).round().astype(int) if len(fg) else np.array(labels.shape) // 2
    fig = Figure(figsize=(9, 3.6 if label_names else 3.3), dpi=100)
    kmax = max(len(label_names) - 1 if label_names else int(labels.max()), 1)
    for i, (axis, name) in enumerate(((0, "sagittal"), (1, "coronal"), (2, "axial"))):
        ax = fig.add_subplot(1, 3, i + 1)
        img = np.take(image, centre[axis], axis=axis).T
        lab = np.take(labels, centre[axis], axis=axis).T
        ax.imshow(img, cmap="gray", origin="lower")
        ax.imshow(np.ma.masked_equal(lab, 0), cmap="jet", vmin=0, vmax=kmax, alpha=0.4,
                  origin="lower", interpolation="nearest")
        ax.set_title(f"{name} {centre[axis]}", fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    if label_names:
        cmap = matplotlib.colormaps["jet"]
        fig.legend(handles=[Patch(color=cmap(k / kmax), alpha=0.6, label=name)
                            for k, name in enumerate(label_names) if k > 0],
                   loc="lower center", ncol=min(len(label_names) - 1, 8), fontsize=8,
                   frameon=False)
    buf = _io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def check_output_paths(outputs: dict, inputs: list) -> None:
    """Refuse outputs that would overwrite an input, duplicate outputs, bad extensions, or
    missing parent directories.

    Args:
        outputs: ``{flag: path or None}``.
        inputs: input paths (images, model) that must not be overwritten.
    """
    from tfneuro.io.nifti import volume_files

    protected = {}
    for p in inputs:
        if p:
            for f in volume_files(p):
                protected[os.path.realpath(f)] = p
    seen = {}
    exts = {"--output": (".nii", ".nii.gz"), "--probabilities": (".nii", ".nii.gz"),
            "--volumes_csv": (".csv",), "--qc_png": (".png",)}
    for flag, path in outputs.items():
        if not path:
            continue
        real = os.path.realpath(path)
        if real in protected:
            raise InputError(flag, f"{path} would overwrite the input {protected[real]}")
        if real in seen:
            raise InputError(flag, f"{path} is also given as {seen[real]}")
        seen[real] = flag
        want = exts.get(flag)
        if want and not path.lower().endswith(want):
            raise InputError(flag, f"{path}: expected a file ending in {' or '.join(want)}")
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise InputError(flag, f"directory {parent} does not exist")
        if os.path.isdir(path):
            raise InputError(flag, f"{path} is a directory")


def write_outputs(result: SegmentationResult, *, output=None, probabilities=None,
                  volumes_csv=None, qc_png=None, title: str = "") -> list:
    """Write the requested outputs all-or-nothing: every file goes to a temporary name first;
    they are renamed only after all of them were written."""
    from tfneuro.io import save_volume

    written = []
    with contextlib.ExitStack() as stack:
        if output:
            tmp = stack.enter_context(atomic_path(output))
            save_volume(result.labels, tmp)
            written.append(output)
        if probabilities:
            if result.probabilities is None:
                raise InputError("--probabilities", "probabilities were not computed")
            tmp = stack.enter_context(atomic_path(probabilities))
            save_volume(result.probabilities, tmp, dtype=np.float32)
            written.append(probabilities)
        if volumes_csv:
            tmp = stack.enter_context(atomic_path(volumes_csv))
            label_volumes(result.labels, result.label_names).to_csv(tmp, index=False)
            written.append(volumes_csv)
        if qc_png:
            tmp = stack.enter_context(atomic_path(qc_png))
            with open(tmp, "wb") as f:
                f.write(qc_figure(result.conformed_image, result.conformed_labels, title,
                                  result.label_names))
            written.append(qc_png)
    return written
