"""Views of a conformed volume: which array axis each slice orientation cuts.

On the conformed RAS grid (:func:`tfneuro.io.conform`) a volume is ``[X, Y, Z]`` with x
left-to-right, y posterior-to-anterior and z inferior-to-superior, so

=========  ====  ==============================
view       axis  slice ``n`` is
=========  ====  ==============================
sagittal   0     ``volume[n, :, :]``  (Y, Z)
coronal    1     ``volume[:, n, :]``  (X, Z)
axial      2     ``volume[:, :, n]``  (X, Y)
=========  ====  ==============================

A slice is ``np.take(volume, n, axis)`` with the remaining axes in their original order (no
transposition or flip). Every part of tfneuro that cuts slices (datasets, label budgets,
slice inference, the exported graph) takes the axis from here.
"""

from __future__ import annotations

import numbers

from tfneuro.errors import InputError

__all__ = ["VIEW_AXES", "VIEWS", "view_axis"]

#: View name -> slicing axis on the conformed RAS grid.
VIEW_AXES = {"sagittal": 0, "coronal": 1, "axial": 2}
#: The view names, in axis order.
VIEWS = tuple(VIEW_AXES)


def view_axis(view, source: str = "axis") -> int:
    """The array axis of ``view`` (a view name, or an axis 0/1/2 / -3..-1).

    Raises:
        InputError: naming ``source`` for anything else.
    """
    if isinstance(view, str):
        if view in VIEW_AXES:
            return VIEW_AXES[view]
    elif isinstance(view, numbers.Integral) and not isinstance(view, bool) and -3 <= view < 3:
        return int(view) % 3
    raise InputError(source, f"must be 0, 1, 2 or one of {list(VIEWS)}, got {view!r}")
