"""tfneuro.io: load, validate, conform to a working grid, and undo it (nibabel, scipy.ndimage).

Public names: :func:`load_volume`, :func:`save_volume`, :func:`check_same_grid`,
:func:`conform`, :func:`deconform`, :func:`check_conform`, :class:`ConformRecord`,
:data:`VIEW_AXES`, :func:`view_axis`; sub-modules :mod:`tfneuro.io.normalize`,
:mod:`tfneuro.io.labels` and :mod:`tfneuro.io.views`.
"""

from tfneuro.io import labels, normalize
from tfneuro.io.conform import (
    ConformRecord,
    check_conform,
    conform,
    deconform,
    plan_conform,
)
from tfneuro.io.labels import LabelScheme, get_scheme, list_schemes
from tfneuro.io.nifti import check_same_grid, load_volume, save_volume, voxel_spacing
from tfneuro.io.views import VIEW_AXES, VIEWS, view_axis

__all__ = [
    "load_volume", "save_volume", "check_same_grid", "voxel_spacing",
    "conform", "deconform", "check_conform", "plan_conform", "ConformRecord",
    "LabelScheme", "get_scheme", "list_schemes", "labels", "normalize",
    "VIEW_AXES", "VIEWS", "view_axis",
]
