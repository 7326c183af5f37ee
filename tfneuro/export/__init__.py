"""SavedModel export (TensorFlow-only): whole-volume segmentation signatures for plain TF.

    >>> from tfneuro.export import export_model
    >>> export_model(model, "saved_models/quicknat", label_scheme="tissue4", spacing=1.0)

See :mod:`tfneuro.export.savedmodel`, :mod:`tfneuro.export.metadata` and
``saved_models/README.md``.
"""

from tfneuro.export.metadata import ExportMetadata, read_metadata
from tfneuro.export.options import ExportOptions, build_metadata
from tfneuro.export.savedmodel import (
                                       FORMAT_VERSION,
                                       SegmentationModule,
                                       build_module,
                                       export_model,
)

__all__ = ["export_model", "build_module", "build_metadata", "ExportOptions", "ExportMetadata",
           "read_metadata", "SegmentationModule", "FORMAT_VERSION"]
