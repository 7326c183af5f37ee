"""Whole-volume inference: slice models with view aggregation, 3D sliding window,
post-processing, and the way back to the input space.

Names are resolved lazily (PEP 562); see ``_EXPORTS`` for where each lives.
"""

from __future__ import annotations

from tfneuro.utils.lazy import lazy_exports

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
    # volume.py: any segmentation model (2D views or 3D window) over a whole volume
    "predict_volume": "volume",
    # precision.py: a model at float32 / bfloat16 / float16 (a copy; the model is not changed)
    "model_at_precision": "precision",
    "model_precision": "precision",
    # memory.py: peak-memory estimates and the budget check before whole-volume inference
    "MemoryBudgetError": "memory",
    "check_memory": "memory",
    "available_memory": "memory",
    # bridging.py: NEC-NET in-slice gap bridging (paper 000 eq. 1)
    "bridge_gaps": "bridging",
    "necnet_postprocess": "bridging",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
