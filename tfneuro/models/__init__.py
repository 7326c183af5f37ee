"""Keras models of the five papers, built from :mod:`tfneuro.layers`.

    >>> import tfneuro.models as M
    >>> model = M.get("quicknat", num_classes=4, input_shape=(None, None, 1))
    >>> M.spec_of(model).input_kind
    'channels'

``import tfneuro.models`` imports no architecture (and no Keras) until a model is built;
:class:`RegisteredModel` is resolved on first use.
"""

from tfneuro.models.registry import (
    INPUT_KINDS,
    ModelSpec,
    builder,
    get,
    input_kind_of,
    list_models,
    spec,
    spec_of,
)

__all__ = ["INPUT_KINDS", "ModelSpec", "RegisteredModel", "builder", "get", "input_kind_of",
           "list_models", "spec", "spec_of"]


def __getattr__(name):
    if name == "RegisteredModel":
        from tfneuro.models._common import RegisteredModel

        return RegisteredModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
