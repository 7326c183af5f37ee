"""What a segmentation writes: the labels NIfTI, the probabilities, the volumes table and the
QC picture, all-or-nothing (:func:`write_outputs`)."""

from __future__ import annotations

import contextlib
import io as _io

import numpy as np
import pandas as pd

from tfneuro.errors import InputError
from tfneuro.io.nifti import save_volume
from tfneuro.utils.atomic import atomic_path

__all__ = ["label_volumes", "qc_figure", "write_outputs"]


def label_volumes(labels_img, label_names) -> pd.DataFrame:
    """Voxel counts and volumes in mL per class of a native-space label image."""
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


def write_outputs(result, *, output=None, probabilities=None, volumes_csv=None, qc_png=None,
                  title: str = "") -> list:
    """Write the requested outputs of one :class:`~tfneuro.apps.segment.SegmentationResult`
    all-or-nothing: every file goes to a temporary name first; they are renamed only after
    all of them were written. Returns the paths written."""
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
