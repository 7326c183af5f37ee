"""Keras models of the five papers, built from :mod:`tfneuro.layers`.

    >>> import tfneuro.models as M
    >>> model = M.get("quicknat", num_classes=4, input_shape=(None, None, 1))
"""

from tfneuro.models.registry import ModelSpec, builder, get, list_models, spec

__all__ = ["ModelSpec", "builder", "get", "list_models", "spec"]
