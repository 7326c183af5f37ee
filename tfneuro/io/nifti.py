"""Read, validate and write NIfTI / Analyze volumes (nibabel).

Every check raises :class:`tfneuro.errors.InputError` naming the file and the problem in one
line, at load time (the voxel data are read eagerly, so a truncated ``.nii.gz`` fails here and
not later inside a ``tf.data`` pipeline). Every write goes through
:func:`tfneuro.utils.atomic.atomic_path`, so no output is ever half-written.
"""

from __future__ import annotations

import itertools
import os

import nibabel as nib
import numpy as np

from tfneuro.errors import InputError
from tfneuro.utils.atomic import atomic_path

__all__ = ["load_volume", "save_volume", "check_same_grid", "volume_files"]

_NIFTI_EXTS = (".nii", ".nii.gz")
_ANALYZE_EXTS = (".hdr", ".img", ".hdr.gz", ".img.gz")


def volume_files(path: str | os.PathLike) -> list[str]:
    """Files that make up the volume at ``path`` (two for an Analyze/NIfTI pair, else one)."""
    path = os.fspath(path)
    low = path.lower()
    for a, b in ((".hdr", ".img"), (".img", ".hdr"), (".hdr.gz", ".img.gz"), (".img.gz", ".hdr.gz")):
        if low.endswith(a):
            return [path, path[: -len(a)] + b]
    return [path]


def voxel_spacing(path: str | os.PathLike) -> tuple:
    """Voxel size (mm) of a volume's first three axes, from its header."""
    return tuple(float(z) for z in nib.load(os.fspath(path)).header.get_zooms()[:3])


def _read_raw(path: str):
    """Open ``path`` with nibabel and read all voxels; any failure becomes one InputError."""
    if not os.path.exists(path):
        raise InputError(path, "file not found")
    if os.path.isdir(path):
        raise InputError(path, "is a directory, not an image file")
    for other in volume_files(path)[1:]:
        if not os.path.exists(other):
            raise InputError(path, f"Analyze/NIfTI pair is incomplete: {os.path.basename(other)} not found")
    try:
        img = nib.load(path)
    except Exception as e:  # nibabel raises ImageFileError, HeaderDataError, OSError, ...
        raise InputError(path, f"not a readable NIfTI/Analyze image ({type(e).__name__}: {e})") from e
    if not isinstance(img, nib.analyze.AnalyzeImage):  # e.g. MGH, MINC: not supported here
        raise InputError(path, f"unsupported image format {type(img).__name__}; use NIfTI (.nii, .nii.gz) or Analyze (.hdr/.img)")
    try:
        data = np.asanyarray(img.dataobj)  # forces decompression: truncated gzip fails here
    except Exception as e:  # EOFError, zlib.error, OSError, ValueError (short file)
        raise InputError(path, f"unreadable or truncated image data ({type(e).__name__}: {e})") from e
    return img, data


def load_volume(path: str | os.PathLike, *, kind: str = "image", scheme=None,
                allow_empty: bool = False) -> nib.Nifti1Image:
    """Load and validate one 3D volume.

    NIfTI (``.nii``, ``.nii.gz``) and Analyze / NIfTI pairs (``.hdr``/``.img``) are read with
    nibabel; the voxel data are read eagerly and checked. A 4D image whose trailing dimension(s)
    are 1 is squeezed to 3D.

    Args:
        path: the file to read.
        kind: ``"image"`` (returned as float32) or ``"label"`` (returned as int32 class values
            as stored in the file, i.e. *raw* values; use ``scheme.remap`` to get class ids).
        scheme: for ``kind="label"``: a :class:`tfneuro.io.labels.LabelScheme` or its name; the
            stored values must all belong to it.
        allow_empty: accept an all-zero or constant volume (e.g. a predicted mask that found
            nothing, read as a raw input channel).

    Returns:
        An in-memory ``nibabel.Nifti1Image`` (Analyze inputs are converted) whose header keeps
        the file's qform/sform codes and units.

    Raises:
        InputError: missing file, unreadable or truncated data, not an image, 2D, 4D with more
            than one volume, NaN/Inf voxels, all-zero volume, a constant image (every voxel
            the same non-zero value; label maps may be constant); for labels also non-integer
            values and values outside ``scheme``.
    """
    path = os.fspath(path)
    if kind not in ("image", "label"):
        raise InputError("kind", f"must be 'image' or 'label', got {kind!r}")
    img, data = _read_raw(path)

    shape = data.shape
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim < 3 or (data.ndim == 3 and min(data.shape) == 1):
        raise InputError(path, f"2D image (shape {tuple(shape)}); a 3D volume is needed")
    if data.ndim > 3:
        n = int(np.prod(data.shape[3:]))
        raise InputError(path, f"4D image with {n} volumes (shape {tuple(shape)}); a single 3D volume is needed")
    if data.dtype.kind not in "biuf":
        raise InputError(path, f"unsupported voxel type {data.dtype}")

    if data.dtype.kind == "f":
        finite = np.isfinite(data)
        if not finite.all():
            bad = int(data.size - np.count_nonzero(finite))
            first = tuple(int(i) for i in np.argwhere(~finite)[0])
            raise InputError(path, f"{bad} NaN/Inf voxel(s), first at voxel {first}")
    if not allow_empty and not np.any(data):
        raise InputError(path, "all voxels are zero (empty volume)")
    if kind == "image" and not allow_empty and data.min() == data.max():
        raise InputError(path, f"all voxels have the same value {float(data.flat[0]):g} "
                               "(a constant image has no anatomy to segment)")

    if kind == "label":
        if data.dtype.kind == "f":
            nonint = data != np.round(data)
            if nonint.any():
                first = tuple(int(i) for i in np.argwhere(nonint)[0])
                raise InputError(
                    path,
                    f"label map has non-integer values ({int(nonint.sum())} voxels, e.g. {float(data[first]):g} "
                    f"at voxel {first}); is this a probability map or an image?",
                )
        if scheme is not None:
            from tfneuro.io.labels import get_scheme

            scheme = get_scheme(scheme) if isinstance(scheme, str) else scheme
            scheme.validate(data, path)
        data = data.astype(np.int32)
    else:
        data = data.astype(np.float32, copy=False)

    return _as_nifti(data, img)


def _as_nifti(data: np.ndarray, img) -> nib.Nifti1Image:
    """In-memory Nifti1Image for ``data`` with ``img``'s affine and (NIfTI) header fields."""
    affine = img.affine
    if isinstance(img, (nib.Nifti1Image, nib.Nifti1Pair)):
        hdr = img.header.copy()
        out = nib.Nifti1Image(data, affine, header=hdr)
        # keep the file's codes (Nifti1Image(..., header) may reset them from the affine)
        q, qc = img.header.get_qform(coded=True)
        s, sc = img.header.get_sform(coded=True)
        out.set_qform(q, int(qc)) if q is not None else out.set_qform(None, 0)
        out.set_sform(s, int(sc)) if s is not None else out.set_sform(None, 0)
    else:  # Analyze 7.5: no orientation fields; nibabel's affine is the best we have
        out = nib.Nifti1Image(data, affine)
        out.header.set_xyzt_units("mm")
    out.header.set_data_dtype(data.dtype)
    out.header.set_slope_inter(1.0, 0.0)
    return out


def save_volume(data_or_img, path: str | os.PathLike, affine=None, header=None, dtype=None) -> str:
    """Write a volume atomically (temporary name, then rename).

    The format follows the extension: ``.nii`` / ``.nii.gz`` -> NIfTI-1; ``.hdr`` / ``.img`` ->
    NIfTI-1 pair (Analyze-compatible ``.hdr`` + ``.img``; the ``.img`` is renamed into place
    before the ``.hdr``, so a reader never sees a header without its data).

    Args:
        data_or_img: a numpy array or a nibabel image.
        path: output file.
        affine: voxel-to-world matrix for an array (default: ``header``'s best affine).
        header: optional header to copy fields (units, codes, description) from.
        dtype: on-disk dtype; default the data's (int64 is stored as int32 when it fits).

    Returns:
        ``path`` as a string.
    """
    path = os.fspath(path)
    if isinstance(data_or_img, nib.spatialimages.SpatialImage):
        data = np.asanyarray(data_or_img.dataobj)
        affine = data_or_img.affine if affine is None else affine
        header = data_or_img.header if header is None else header
    else:
        data = np.asarray(data_or_img)
        if affine is None:
            if header is None:
                raise InputError(path, "save_volume needs an affine (or a header) for a bare array")
            affine = header.get_best_affine()
    if dtype is None:
        if data.dtype == np.int64 or data.dtype == np.uint64:
            lo, hi = (int(data.min()), int(data.max())) if data.size else (0, 0)
            dtype = np.int32 if np.iinfo(np.int32).min <= lo and hi <= np.iinfo(np.int32).max else np.float64
        elif data.dtype == np.bool_:
            dtype = np.uint8
        else:
            dtype = data.dtype
    low = path.lower()
    pair = low.endswith((".hdr", ".img"))
    if pair and low.endswith(".img"):
        path = path[:-4] + ".hdr"
    cls = nib.Nifti1Pair if pair else nib.Nifti1Image
    hdr = None
    if header is not None:
        try:
            hdr = nib.Nifti1Header.from_header(header)
        except Exception:
            hdr = None
    img = cls(np.asarray(data).astype(dtype, copy=False), np.asarray(affine, dtype=np.float64), header=hdr)
    img.header.set_data_dtype(dtype)
    if hdr is None:
        img.header.set_xyzt_units("mm")
    with atomic_path(path) as tmp:
        try:
            nib.save(img, tmp)
            if pair:
                os.replace(tmp[:-4] + ".img", path[:-4] + ".img")
        finally:
            if pair and os.path.exists(tmp[:-4] + ".img"):
                os.unlink(tmp[:-4] + ".img")
    return path


def _fov_corners(shape, affine) -> np.ndarray:
    """World coordinates (mm) of the 8 outer corners of a grid's field of view."""
    corners = np.array(list(itertools.product(*[(-0.5, s - 0.5) for s in shape[:3]])))
    return nib.affines.apply_affine(np.asarray(affine, dtype=np.float64), corners)


def check_same_grid(img_a, img_b, name_a: str = "image A", name_b: str = "image B", atol: float = 0.01) -> None:
    """Check that two images (e.g. a subject's T1 and T2) share one voxel grid.

    Shapes must be equal and the two voxel-to-world mappings must agree: the largest distance
    between corresponding corners of the two fields of view must be at most ``atol`` mm (this
    measures translation, rotation and voxel-size differences in one physical unit).

    Args:
        img_a, img_b: nibabel images (3D; a trailing channel axis is ignored).
        name_a, name_b: the files (or flags) to name in the error.
        atol: tolerance in mm.

    Raises:
        InputError: naming both files, with the two shapes or the corner distance.
    """
    sa, sb = tuple(img_a.shape[:3]), tuple(img_b.shape[:3])
    if sa != sb:
        raise InputError(name_a, f"shape {sa} differs from {name_b} shape {sb}; both must be on the same voxel grid")
    dist = float(np.max(np.linalg.norm(_fov_corners(sa, img_a.affine) - _fov_corners(sb, img_b.affine), axis=1)))
    if not dist <= atol:
        raise InputError(
            name_a,
            f"affine differs from {name_b} (field-of-view corners up to {dist:.3g} mm apart, tolerance {atol:g} mm); "
            "both must be on the same voxel grid (register/resample one onto the other first)",
        )
