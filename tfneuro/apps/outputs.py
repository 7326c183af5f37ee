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

__all__ = ["label_volumes", "brain_classes", "volume_row", "qc_title", "qc_figure",
           "write_outputs", "NON_BRAIN_WORDS", "TOTAL"]

#: A class whose name contains one of these words is not brain (case-insensitive).
NON_BRAIN_WORDS = ("background", "unlabelled", "non-brain", "skull", "neurocranium")
#: Name of the total row of the volumes table (``total_brain_ml`` in the cohort table).
TOTAL = "total brain"


def brain_classes(label_names) -> list:
    """Class ids summed into the brain total: every class but class 0 whose name contains none
    of :data:`NON_BRAIN_WORDS`. CSF counts (tissue4: CSF + GM + WM; see
    ``docs/command_line.md`` for every scheme); a scheme with no such class (neurocranium)
    gets no total."""
    return [k for k, n in enumerate(label_names)
            if k > 0 and not any(w in str(n).lower() for w in NON_BRAIN_WORDS)]


def label_volumes(labels_img, label_names, *, subject: str = "", age_months=None) -> pd.DataFrame:
    """Volumes per class of a native-space label image, and the brain total.

    Volume = voxel count x the voxel volume from the affine (``|det A[:3, :3]|`` mm^3), in mL
    rounded to 0.01. Class 0 (background) is left out; the last row, :data:`TOTAL`, sums the
    :func:`brain_classes` (from the voxel counts, then rounded; its ``label`` is empty).

    Returns:
        Columns ``subject, age_months, label, name, voxels, volume_ml``.
    """
    data = np.asarray(labels_img.dataobj)
    voxel_ml = abs(float(np.linalg.det(labels_img.affine[:3, :3]))) / 1000.0
    k = len(label_names)
    counts = np.bincount(data.ravel().astype(np.int64), minlength=k)[:k]
    ids, names, voxels = list(range(1, k)), list(label_names[1:]), list(counts[1:])
    brain = brain_classes(label_names)
    if brain:
        ids, names, voxels = ids + [pd.NA], names + [TOTAL], voxels + [int(counts[brain].sum())]
    age = np.nan if age_months is None else float(age_months)
    return pd.DataFrame({"subject": subject, "age_months": age,
                         "label": pd.array(ids, dtype="Int64"), "name": names,
                         "voxels": np.asarray(voxels, np.int64),
                         "volume_ml": np.round(np.asarray(voxels, float) * voxel_ml, 2)})


def volume_row(volumes: pd.DataFrame) -> dict:
    """One subject's :func:`label_volumes` as a row of the cohort table: ``subject``,
    ``age_months`` and ``<name>_ml`` per row (``total_brain_ml`` for the total)."""
    first = volumes.iloc[0]
    row = {"subject": first["subject"], "age_months": first["age_months"]}
    row.update({f"{n.replace(' ', '_') if n == TOTAL else n}_ml": v
                for n, v in zip(volumes["name"], volumes["volume_ml"])})
    return row


def qc_title(subject: str = "", age_months=None, model_name: str = "") -> str:
    """``subject | age N months | model NAME`` (the parts that are known)."""
    age = "age not given" if age_months is None or pd.isna(age_months) else \
        f"age {float(age_months):g} months"
    return "  |  ".join(p for p in (subject, age, f"model {model_name}" if model_name else "") if p)


def _volume_panel(ax, volumes, colour, max_rows: int = 14, max_chars: int = 30) -> None:
    """Class colours and volumes (mL) as a text panel, the total last; with more than
    ``max_rows`` classes the largest are listed (the CSV has all), long names are shortened."""
    from matplotlib.patches import Rectangle

    ax.axis("off")
    classes = volumes[volumes["name"] != TOTAL]
    rows = classes.nlargest(max_rows, "volume_ml").sort_values("label")

    def short(name):
        return name if len(name) <= max_chars else name[:max_chars - 3] + "..."

    lines = [(colour(int(r.label)), f"{short(r.name)}: {r.volume_ml:.2f} mL")
             for r in rows.itertuples()]
    if len(rows) < len(classes):
        lines.append((None, f"(+{len(classes) - len(rows)} more in the CSV)"))
    total = volumes[volumes["name"] == TOTAL]
    if len(total):
        lines.append((None, f"{TOTAL}: {float(total['volume_ml'].iloc[0]):.2f} mL"))
    ax.text(0.0, 1.0, "volumes", fontsize=9, fontweight="bold", va="top", transform=ax.transAxes)
    step = min(0.09, 0.86 / max(len(lines), 1))
    for i, (c, text) in enumerate(lines):
        y = 0.88 - step * (i + 1)
        if c is not None:
            ax.add_patch(Rectangle((0.0, y), 0.06, 0.8 * step, color=c, alpha=0.6,
                                   transform=ax.transAxes))
        ax.text(0.09, y, text, fontsize=8 if len(lines) <= 10 else 7, va="bottom",
                transform=ax.transAxes)


def qc_figure(image: np.ndarray, labels: np.ndarray, title: str = "",
              label_names=None, volumes: pd.DataFrame | None = None) -> bytes:
    """PNG bytes: three orthogonal slices through the labelled region's centre, with overlay.

    With ``label_names`` (class names indexed by class id) the colours are fixed per class, the
    same for every subject, and a legend names them; with ``volumes`` (:func:`label_volumes`)
    a side panel lists each class's colour and volume and the brain total instead. The title
    and the volumes are also stored as the PNG's ``Title`` and ``Description`` text.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    fg = np.argwhere(labels > 0)
    centre = fg.mean(axis=0).round().astype(int) if len(fg) else np.array(labels.shape) // 2
    panel = volumes is not None and len(volumes) > 0
    fig = Figure(figsize=(12, 3.4) if panel else (9, 3.6 if label_names else 3.3), dpi=100)
    grid = fig.add_gridspec(1, 4 if panel else 3, width_ratios=[1, 1, 1, 1.1][:4 if panel else 3])
    kmax = max(len(label_names) - 1 if label_names else int(labels.max()), 1)
    cmap = matplotlib.colormaps["jet"]
    for i, (axis, name) in enumerate(((0, "sagittal"), (1, "coronal"), (2, "axial"))):
        ax = fig.add_subplot(grid[0, i])
        img = np.take(image, centre[axis], axis=axis).T
        lab = np.take(labels, centre[axis], axis=axis).T
        ax.imshow(img, cmap="gray", origin="lower")
        ax.imshow(np.ma.masked_equal(lab, 0), cmap="jet", vmin=0, vmax=kmax, alpha=0.4,
                  origin="lower", interpolation="nearest")
        ax.set_title(f"{name} {centre[axis]}", fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    if panel:
        _volume_panel(fig.add_subplot(grid[0, 3]), volumes, lambda k: cmap(k / kmax))
    elif label_names:
        fig.legend(handles=[Patch(color=cmap(k / kmax), alpha=0.6, label=name)
                            for k, name in enumerate(label_names) if k > 0],
                   loc="lower center", ncol=min(len(label_names) - 1, 8), fontsize=8,
                   frameon=False)
    text = {"Title": title} if title else {}
    if panel:
        text["Description"] = "; ".join(f"{n}: {v:.2f} mL" for n, v in
                                        zip(volumes["name"], volumes["volume_ml"]))
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", metadata=text)
    return buf.getvalue()


def write_outputs(result, *, output=None, probabilities=None, volumes_csv=None, qc_png=None,
                  title: str = "", subject: str = "", age_months=None) -> list:
    """Write the requested outputs of one :class:`~tfneuro.apps.segment.SegmentationResult`
    all-or-nothing: every file goes to a temporary name first; they are renamed only after
    all of them were written. Returns the paths written.

    The volumes CSV is :func:`label_volumes` (with ``subject`` and ``age_months``); the QC
    picture's title is ``title`` (default: ``subject``), the age and the model's name, and its
    side panel the volumes."""
    written = []
    volumes = label_volumes(result.labels, result.label_names, subject=subject,
                            age_months=age_months)
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
            volumes.to_csv(tmp, index=False)
            written.append(volumes_csv)
        if qc_png:
            tmp = stack.enter_context(atomic_path(qc_png))
            head = qc_title(title or subject, age_months, result.model_name)
            with open(tmp, "wb") as f:
                f.write(qc_figure(result.conformed_image, result.conformed_labels, head,
                                  result.label_names, volumes=volumes))
            written.append(qc_png)
    return written
