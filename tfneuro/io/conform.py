"""Conform a volume to a working grid, and undo it exactly.

The working ("conformed") grid is defined from the input's *field of view in world space*, so
it is well defined for oblique inputs too:

1. Target voxel axes: the world (RAS+) axes, permuted/flipped to ``orientation``
   (e.g. ``"RAS"``, or FreeSurfer's ``"LIA"``), voxel size ``spacing`` mm, no rotation or shear.
2. Extent: the world-axis-aligned bounding box of the input's field of view (the 8 outer
   corners of its voxel grid, i.e. voxel centres +-0.5 voxel), expressed along the target axes.
   ``n = ceil(extent / spacing)`` voxels per axis, centred on the box.
3. Padding: ``n`` is padded up to a multiple of ``multiple`` with ``pad // 2`` voxels before and
   the rest after (whole voxels, so the grid of step 2 keeps its voxel centres).

If the input is already on a world-aligned grid at ``spacing`` (any axis order/flip), the
conformed voxel centres coincide with the input's voxel centres, so conform -> deconform of a
label map with nearest neighbour is exact (identity up to the integer shift of the padding).

Resampling is ``scipy.ndimage.affine_transform`` (the pull-back map ``inv(A_in) @ A_out``),
orientation bookkeeping is ``nibabel.orientations`` / ``nibabel.affines``. Compared with
FastSurfer's ``conform.py`` (ideas only): the check-only path (:func:`check_conform`) and the
conform path share one planning step (:func:`plan_conform`), and the record of the
transformation is a JSON-serialisable :class:`ConformRecord` so that exported models and
``deconform`` can put results back on the user's exact grid.
"""

from __future__ import annotations

import dataclasses
import json

import nibabel as nib
import numpy as np
from nibabel.orientations import aff2axcodes, axcodes2ornt
from scipy import ndimage

from tfneuro.errors import InputError

__all__ = ["ConformRecord", "plan_conform", "conform", "deconform", "check_conform"]

_RECORD_VERSION = 1


@dataclasses.dataclass
class ConformRecord:
    """How an image was conformed; enough to undo it (JSON-serialisable via :meth:`to_dict`).

    Attributes:
        original_shape: spatial shape of the input ``[X, Y, Z]``.
        original_affine: input voxel-to-world 4x4 matrix (nested lists, mm).
        original_axcodes: input orientation, e.g. ``"LPS"``.
        original_zooms: input voxel sizes (mm) along its voxel axes.
        qform_code, sform_code: the input header's codes, restored by :func:`deconform`.
        conformed_shape: spatial shape of the conformed grid.
        conformed_affine: conformed voxel-to-world 4x4 matrix.
        spacing, orientation, multiple: the conform parameters.
        unpadded_shape: shape before padding to ``multiple``.
        pad_before, pad_after: voxels of padding per axis.
        obliquity_deg: largest angle (degrees) between an input voxel axis and the nearest
            world axis (0 for a non-oblique input).
        identity: True when the conformed grid equals the input grid (nothing resampled).
        version: record format version.
    """

    original_shape: list
    original_affine: list
    original_axcodes: str
    original_zooms: list
    qform_code: int
    sform_code: int
    conformed_shape: list
    conformed_affine: list
    spacing: float
    orientation: str
    multiple: int
    unpadded_shape: list
    pad_before: list
    pad_after: list
    obliquity_deg: float
    identity: bool
    version: int = _RECORD_VERSION

    def to_dict(self) -> dict:
        """Plain-Python dict (lists, floats, ints, str, bool): ``json.dumps`` works on it."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> "ConformRecord":
        """Rebuild a record from :meth:`to_dict` output (e.g. read back from JSON)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(fields - set(d) - {"version"})
        if missing:
            raise InputError("conform record", f"missing fields {missing}")
        if int(d.get("version", _RECORD_VERSION)) > _RECORD_VERSION:
            raise InputError("conform record", f"version {d['version']} is newer than this tfneuro understands")
        return cls(**{k: v for k, v in d.items() if k in fields})

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> "ConformRecord":
        return cls.from_dict(json.loads(text))

    @property
    def original_affine_array(self) -> np.ndarray:
        return np.asarray(self.original_affine, dtype=np.float64)

    @property
    def conformed_affine_array(self) -> np.ndarray:
        return np.asarray(self.conformed_affine, dtype=np.float64)


def _axes_matrix(orientation: str) -> np.ndarray:
    """3x3 signed permutation: column i is the world (RAS+) direction of target voxel axis i."""
    code = str(orientation).upper()
    try:
        if len(code) != 3:
            raise ValueError
        ornt = axcodes2ornt(tuple(code))
        if np.isnan(ornt).any() or len({int(a) for a in ornt[:, 0]}) != 3:
            raise ValueError
    except ValueError:
        raise InputError("orientation", f"{orientation!r} is not a 3-letter axis code such as 'RAS', 'LPS' or 'LIA'") from None
    p = np.zeros((3, 3))
    for i, (axis, flip) in enumerate(ornt):
        p[int(axis), i] = flip
    return p


def _check_params(spacing, multiple):
    if not (np.isscalar(spacing) and float(spacing) > 0 and np.isfinite(float(spacing))):
        raise InputError("spacing", f"must be a positive number of mm, got {spacing!r}")
    if multiple is not None and (int(multiple) != multiple or int(multiple) < 1):
        raise InputError("multiple", f"must be a positive integer, got {multiple!r}")


def _obliquity_deg(affine: np.ndarray) -> float:
    return float(np.degrees(np.max(np.abs(nib.affines.obliquity(affine)))))


def plan_conform(shape, affine, spacing: float = 1.0, orientation: str = "RAS", multiple: int | None = 16,
                 qform_code: int = 1, sform_code: int = 1) -> ConformRecord:
    """Compute the conformed grid for an input grid (no resampling). See the module docstring.

    Args:
        shape: input spatial shape (first 3 entries are used).
        affine: input voxel-to-world 4x4 matrix.
        spacing: target isotropic voxel size in mm.
        orientation: target axis code (``"RAS"``, ``"LPS"``, ``"LIA"``, ...).
        multiple: pad each axis to a multiple of this (``None`` or 1: no padding).
        qform_code, sform_code: header codes to remember for :func:`deconform`.

    Returns:
        The :class:`ConformRecord`.
    """
    _check_params(spacing, multiple)
    spacing = float(spacing)
    multiple = 1 if multiple is None else int(multiple)
    shape = tuple(int(s) for s in shape[:3])
    a = np.asarray(affine, dtype=np.float64)
    p = _axes_matrix(orientation)

    corners = np.array([[i, j, k] for i in (-0.5, shape[0] - 0.5) for j in (-0.5, shape[1] - 0.5)
                        for k in (-0.5, shape[2] - 0.5)])
    world = nib.affines.apply_affine(a, corners)
    u = world @ p  # coordinates along the target voxel axes (p is orthonormal)
    lo, hi = u.min(axis=0), u.max(axis=0)
    # 1e-4 voxel slack: an extent of exactly k voxels (up to float error) gives k, not k + 1
    n = np.maximum(1, np.ceil((hi - lo) / spacing - 1e-4)).astype(int)
    total = -(-n // multiple) * multiple
    before = (total - n) // 2
    after = total - n - before
    u0 = (lo + hi) / 2 - ((n - 1) / 2 + before) * spacing  # centre of conformed voxel 0
    b = np.eye(4)
    b[:3, :3] = p * spacing
    b[:3, 3] = p @ u0

    identity = tuple(total) == shape and np.allclose(b, a, rtol=0, atol=1e-6)
    if identity:
        b = a.copy()  # exactly the input grid
    zooms = np.sqrt((a[:3, :3] ** 2).sum(axis=0))
    return ConformRecord(
        original_shape=list(shape),
        original_affine=a.tolist(),
        original_axcodes="".join(str(c) for c in aff2axcodes(a)),
        original_zooms=[float(z) for z in zooms],
        qform_code=int(qform_code),
        sform_code=int(sform_code),
        conformed_shape=[int(t) for t in total],
        conformed_affine=b.tolist(),
        spacing=spacing,
        orientation=str(orientation).upper(),
        multiple=multiple,
        unpadded_shape=[int(v) for v in n],
        pad_before=[int(v) for v in before],
        pad_after=[int(v) for v in after],
        obliquity_deg=_obliquity_deg(a),
        identity=bool(identity),
    )


def _header_codes(img) -> tuple[int, int]:
    hdr = getattr(img, "header", None)
    if isinstance(hdr, nib.Nifti1Header):
        return int(hdr["qform_code"]), int(hdr["sform_code"])
    return 0, 2


def _resample(data: np.ndarray, matrix: np.ndarray, out_shape, order: int, mode: str, box_mask: bool) -> np.ndarray:
    """Pull ``data`` (3D, or 4D with channels last) through the 4x4 voxel map ``matrix``.

    ``box_mask``: zero every output voxel whose source point is outside the input's field of
    view (voxel centres +-0.5), also for linear interpolation (whose ``nearest`` edge mode would
    otherwise smear the border outwards).
    """
    m, off = matrix[:3, :3], matrix[:3, 3]
    # snap float noise so grid-aligned maps stay exactly integer (keeps order-0 exact)
    m = np.where(np.abs(m - np.round(m)) < 1e-9, np.round(m), m)
    off = np.where(np.abs(off - np.round(off)) < 1e-9, np.round(off), off)
    out_shape = tuple(int(s) for s in out_shape)
    in_shape = data.shape[:3]
    channels = data.shape[3:]
    src = data.reshape(in_shape + (-1,))
    # Grid-aligned map (each output axis reads one input axis): transpose the input so the
    # matrix is diagonal and scipy takes its fast separable path (a 1-D ``matrix``).
    perm = None
    if np.count_nonzero(m) == 3 and all(np.count_nonzero(m[:, j]) == 1 for j in range(3)):
        perm = [int(np.flatnonzero(m[:, j])[0]) for j in range(3)]
        src = src.transpose(perm + [3])
        m, off = np.diag(m[perm, :]).copy(), off[perm]
        in_shape = tuple(in_shape[i] for i in perm)
    out_dtype = data.dtype if order == 0 else np.float32
    if order == 0 and data.dtype == np.bool_:
        src = src.astype(np.uint8)
    out = np.empty(out_shape + (src.shape[3],), dtype=src.dtype if order == 0 else np.float32)
    for c in range(src.shape[3]):
        vol = src[..., c]
        if order > 0 and vol.dtype.kind != "f":
            vol = vol.astype(np.float32)
        ndimage.affine_transform(vol, m, offset=off, output_shape=out_shape, output=out[..., c], order=order,
                                 mode="grid-constant" if (box_mask and order == 0) else mode, cval=0,
                                 prefilter=order > 1)
    if box_mask and order > 0:
        if perm is not None:  # separable: the field of view is a box in output index space
            inside = np.ones(out_shape, dtype=bool)
            for j in range(3):
                coord = m[j] * np.arange(out_shape[j]) + off[j]
                ok = (coord >= -0.5 - 1e-6) & (coord <= in_shape[j] - 0.5 + 1e-6)
                inside &= ok.reshape([-1 if k == j else 1 for k in range(3)])
        else:
            inside = ndimage.affine_transform(np.ones(in_shape, np.uint8), m, offset=off, output_shape=out_shape,
                                              order=0, mode="grid-constant", cval=0).astype(bool)
        out[~inside] = 0
    return out.reshape(out_shape + channels).astype(out_dtype, copy=False)


def _new_image(data: np.ndarray, affine: np.ndarray, qform_code: int, sform_code: int) -> nib.Nifti1Image:
    if data.dtype == np.int64:
        data = data.astype(np.int32)
    affine = np.asarray(affine, dtype=np.float64)
    img = nib.Nifti1Image(data, affine)
    # header fields are float32; keep the exact float64 affine on the in-memory image
    img.set_qform(affine, int(qform_code) if qform_code > 0 else 1, update_affine=False)
    img.set_sform(affine, int(sform_code) if sform_code > 0 else 2, update_affine=False)
    img.header.set_xyzt_units("mm")
    return img


def conform(img, spacing: float = 1.0, orientation: str = "RAS", multiple: int | None = 16, order: int = 1,
            antialias: bool = True):
    """Reorient, resample to isotropic ``spacing`` and pad to a multiple of ``multiple``.

    Args:
        img: a 3D nibabel image (e.g. from :func:`tfneuro.io.load_volume`); 4D data with
            channels last is resampled channel by channel.
        spacing: target voxel size in mm (isotropic).
        orientation: target axis code; ``"RAS"`` (default) or e.g. ``"LIA"`` (FreeSurfer).
        multiple: pad each axis to a multiple of this (16 suits 4 poolings); ``None``: no pad.
        order: spline order: 1 (linear) for images, 0 (nearest) for label maps.
        antialias: for ``order >= 1``, Gaussian-smooth along input axes whose voxels are finer
            than ``spacing`` before resampling (sigma = (factor - 1) / 2 voxels, the rule
            ``skimage.transform.resize`` uses), so 0.35 mm in-plane data does not alias.

    Returns:
        ``(conformed_img, record)``: a ``Nifti1Image`` on the conformed grid (float32 for
        ``order >= 1``, the input dtype for ``order=0``) and its :class:`ConformRecord`.
    """
    if int(order) != order or not 0 <= order <= 5:
        raise InputError("order", f"must be an integer 0..5, got {order!r}")
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim < 3:
        raise InputError("image", f"conform needs a 3D volume, got shape {data.shape}")
    qc, sc = _header_codes(img)
    record = plan_conform(data.shape, img.affine, spacing, orientation, multiple, qc, sc)
    if record.identity:
        out = np.array(data, copy=True)
        if order > 0:
            out = out.astype(np.float32)
        return _new_image(out, record.conformed_affine_array, qc, sc), record
    if order > 0 and antialias:
        factors = record.spacing / np.asarray(record.original_zooms)
        sigma = np.maximum(0.0, (factors - 1) / 2)
        if np.any(sigma > 0):
            sigma = list(sigma) + [0.0] * (data.ndim - 3)
            data = ndimage.gaussian_filter(data.astype(np.float32), sigma=sigma, mode="nearest")
    matrix = np.linalg.inv(img.affine) @ record.conformed_affine_array
    out = _resample(data, matrix, record.conformed_shape, int(order), mode="nearest", box_mask=True)
    return _new_image(out, record.conformed_affine_array, qc, sc), record


def _as_record(record) -> ConformRecord:
    if isinstance(record, ConformRecord):
        return record
    if isinstance(record, dict):
        return ConformRecord.from_dict(record)
    if isinstance(record, str):
        return ConformRecord.from_json(record)
    raise InputError("conform record", f"expected a ConformRecord, dict or JSON string, got {type(record).__name__}")


def deconform(data_or_img, record, order: int = 0) -> nib.Nifti1Image:
    """Put data from the conformed grid back on the original grid.

    Args:
        data_or_img: array or nibabel image on the conformed grid: 3D ``[X, Y, Z]`` (labels) or
            4D ``[X, Y, Z, K]`` (per-class probabilities).
        record: the :class:`ConformRecord` from :func:`conform` (or its dict / JSON).
        order: 0 (nearest neighbour, for labels; keeps the dtype) or 1 (linear, for
            probabilities; float32).

    Returns:
        A ``Nifti1Image`` with exactly the original shape (plus ``K`` for 4D input) and exactly
        the original affine, with the original qform/sform codes.
    """
    rec = _as_record(record)
    if int(order) != order or not 0 <= order <= 5:
        raise InputError("order", f"must be an integer 0..5, got {order!r}")
    if isinstance(data_or_img, nib.spatialimages.SpatialImage):
        data = np.asanyarray(data_or_img.dataobj)
    else:
        data = np.asarray(data_or_img)
    if tuple(data.shape[:3]) != tuple(rec.conformed_shape) or data.ndim not in (3, 4):
        raise InputError("deconform", f"data shape {tuple(data.shape)} does not match the conformed shape "
                                      f"{tuple(rec.conformed_shape)} (+ optional class axis) of this record")
    a = rec.original_affine_array
    if rec.identity:
        out = np.array(data, copy=True)
        if order > 0:
            out = out.astype(np.float32)
    else:
        matrix = np.linalg.inv(rec.conformed_affine_array) @ a
        # every original voxel centre lies inside the conformed field of view, so edge
        # replication ("nearest") only ever acts within half a conformed voxel of the border
        out = _resample(data, matrix, rec.original_shape, int(order), mode="nearest", box_mask=False)
    return _new_image(out, a, rec.qform_code, rec.sform_code)


def check_conform(img, spacing: float = 1.0, orientation: str = "RAS", multiple: int | None = 16) -> dict:
    """Report what :func:`conform` would change, without resampling (a ``--check_only`` path).

    Args:
        img: a nibabel image.
        spacing, orientation, multiple: as for :func:`conform`.

    Returns:
        dict with ``is_conform`` (bool: nothing would change), ``changes`` (list of one-line
        descriptions), and the details ``orientation`` (from, to), ``spacing`` (zooms, target),
        ``shape`` (from, to), ``padding`` (before, after), ``oblique`` (bool),
        ``obliquity_deg`` and ``record`` (the planned record as a dict).
    """
    qc, sc = _header_codes(img)
    rec = plan_conform(img.shape, img.affine, spacing, orientation, multiple, qc, sc)
    changes = []
    if rec.original_axcodes != rec.orientation:
        changes.append(f"reorient {rec.original_axcodes} -> {rec.orientation}")
    zooms = np.asarray(rec.original_zooms)
    if not np.allclose(zooms, rec.spacing, rtol=0, atol=1e-4):
        changes.append("resample voxel size " + "x".join(f"{z:.4g}" for z in zooms) + f" mm -> {rec.spacing:g} mm isotropic")
    oblique = rec.obliquity_deg > 1e-3
    if oblique:
        changes.append(f"remove obliquity ({rec.obliquity_deg:.3g} deg) by resampling onto world axes")
    if rec.unpadded_shape != rec.original_shape:
        changes.append(f"field of view {tuple(rec.original_shape)} -> {tuple(rec.unpadded_shape)} voxels")
    if any(rec.pad_before) or any(rec.pad_after):
        changes.append(f"pad to a multiple of {rec.multiple}: before {tuple(rec.pad_before)}, after {tuple(rec.pad_after)}"
                       f" -> shape {tuple(rec.conformed_shape)}")
    if not changes and not rec.identity:  # e.g. a sub-voxel shift of the origin
        changes.append("shift the grid origin (resample)")
    return {
        "is_conform": bool(rec.identity),
        "changes": changes,
        "orientation": (rec.original_axcodes, rec.orientation),
        "spacing": (list(rec.original_zooms), rec.spacing),
        "shape": (tuple(rec.original_shape), tuple(rec.conformed_shape)),
        "padding": (tuple(rec.pad_before), tuple(rec.pad_after)),
        "oblique": bool(oblique),
        "obliquity_deg": rec.obliquity_deg,
        "record": rec.to_dict(),
    }
