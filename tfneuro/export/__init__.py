"""SavedModel export (TensorFlow-only): whole-volume segmentation signatures for plain TF.

    >>> from tfneuro.export import export_model
    >>> export_model(model, "saved_models/quicknat", label_scheme="tissue4", spacing=1.0)

See :mod:`tfneuro.export.savedmodel` and ``saved_models/README.md``.
"""

from tfneuro.export.savedmodel import (FORMAT_VERSION, SegmentationModule, build_module,
                                       export_model, model_metadata, read_metadata)

__all__ = ["export_model", "build_module", "model_metadata", "read_metadata",
           "SegmentationModule", "FORMAT_VERSION"]
