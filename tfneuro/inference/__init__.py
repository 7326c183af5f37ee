"""Whole-volume inference: slice models with view aggregation, 3D sliding window,
post-processing, and the way back to the input space.

Names are resolved lazily (PEP 562); see ``_EXPORTS`` for where each lives.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    # slices.py: 2D / 2.5D models over whole volumes, view aggregation, bbox skipping
    "predict_slices": "slices",
    "predict_volume_views": "slices",
    "nonzero_slice_range": "slices",
    "rgb_slice_stack": "slices",
    "VIEW_AXES": "slices",
    # postprocess.py: paper-004 slice cleaning, largest component per label, hole filling
    "clean_slices": "postprocess",
    "largest_component_per_label": "postprocess",
    "fill_holes": "postprocess",
    # sliding_window.py: 3D models over whole volumes
    "sliding_window_predict": "sliding_window",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
