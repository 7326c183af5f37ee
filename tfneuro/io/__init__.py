"""tfneuro.io: load, validate, conform to a working grid, and undo it (nibabel, scipy.ndimage).

Public names: :func:`load_volume`, :func:`save_volume`, :func:`check_same_grid`,
:func:`conform`, :func:`deconform`, :func:`check_conform`, :class:`ConformRecord`;
sub-modules :mod:`tfneuro.io.normalize` and :mod:`tfneuro.io.labels`.
"""

from tfneuro.io import labels, normalize
from tfneuro.io.conform import ConformRecord, check_conform, conform, deconform, plan_conform
from tfneuro.io.labels import LabelScheme, get_scheme, list_schemes
from tfneuro.io.nifti import check_same_grid, load_volume, save_volume

__all__ = [
    "load_volume", "save_volume", "check_same_grid",
    "conform", "deconform", "check_conform", "plan_conform", "ConformRecord",
    "LabelScheme", "get_scheme", "list_schemes", "labels", "normalize",
]
