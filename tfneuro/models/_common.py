"""Small helpers shared by the model builders (argument checks, classifier head, pad/crop,
the model class that knows its registered builder).

Any model module may use these (2D and 3D): they validate the common keyword arguments the
same way everywhere and build the same named classifier head, so transfer-learning code can
find ``"classifier"`` in every segmentation model.
"""

from __future__ import annotations

import keras

from tfneuro.errors import InputError


@keras.saving.register_keras_serializable(package="tfneuro")
class RegisteredModel(keras.Model):
    """A functional Keras model that knows which registered builder made it.

    Constructed like a functional model, ``RegisteredModel(inputs, outputs, name=...,
    registry_name="quicknat", multiple=1)``. ``registry_name`` and the instance's spatial
    ``multiple`` are part of ``get_config``, so ``.keras`` files and ``from_config`` keep
    them; :func:`tfneuro.models.spec_of` turns them into the model's
    :class:`~tfneuro.models.ModelSpec` (how it is fed, its task and paper).
    ``keras.models.clone_model`` does not pass them on (use :func:`carry_spec`).
    """

    def __init__(self, inputs, outputs, name=None, **kwargs):
        self.registry_name = kwargs.pop("registry_name", None)
        self.multiple = int(kwargs.pop("multiple", 1))
        super().__init__(inputs, outputs, name=name, **kwargs)

    def get_config(self):
        return {**super().get_config(), "registry_name": self.registry_name,
                "multiple": self.multiple}


def registered_model(inputs, outputs, *, name: str, registry_name: str, multiple: int = 1):
    """``RegisteredModel(inputs, outputs)`` made by the registered builder ``registry_name``;
    known spatial sizes must be multiples of ``multiple``."""
    return RegisteredModel(inputs, outputs, name=name, registry_name=registry_name,
                           multiple=multiple)


def carry_spec(source, target):
    """Give ``target`` (e.g. a clone of ``source``) the registry name and multiple of
    ``source``; returns ``target``."""
    for attr in ("registry_name", "multiple"):
        if hasattr(source, attr):
            setattr(target, attr, getattr(source, attr))
    return target


def check_num_classes(num_classes, model: str) -> int:
    """``num_classes`` as a positive int (>= 2 for a softmax segmentation), else InputError."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise InputError(f"{model}(num_classes)", f"must be an int >= 2, got {num_classes!r}")
    return num_classes


def check_input_shape(input_shape, ndim: int, model: str, channels: int | None = None) -> tuple:
    """Validate ``input_shape`` = ``ndim`` spatial dims (int >= 1 or None) + channels (int).

    Args:
        input_shape: e.g. ``(None, None, 1)``.
        ndim: number of spatial dimensions.
        model: model name for the error message.
        channels: required channel count, if the model fixes it.

    Returns:
        The shape as a tuple.
    """
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = None
    if shape is None or len(shape) != ndim + 1:
        raise InputError(f"{model}(input_shape)",
                         f"must have {ndim} spatial dims + channels, got {input_shape!r}")
    for s in shape[:-1]:
        if s is not None and (not isinstance(s, int) or s < 1):
            raise InputError(f"{model}(input_shape)",
                             f"spatial dims must be positive ints or None, got {input_shape!r}")
    if not isinstance(shape[-1], int) or shape[-1] < 1:
        raise InputError(f"{model}(input_shape)",
                         f"the channel dim must be a positive int, got {input_shape!r}")
    if channels is not None and shape[-1] != channels:
        raise InputError(f"{model}(input_shape)",
                         f"this model takes {channels} channel(s), got {input_shape!r}")
    return shape


def check_positive(value, name: str, model: str) -> int:
    """A positive int argument, else InputError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{model}({name})", f"must be a positive int, got {value!r}")
    return value


def check_choice(value, choices, name: str, model: str):
    """``value`` if it is one of ``choices``, else InputError naming ``model(name)``."""
    if value not in choices:
        raise InputError(f"{model}({name})", f"must be one of {tuple(choices)}, got {value!r}")
    return value


def classifier_head(x, num_classes: int, ndim: int = 2, name: str = "classifier"):
    """1x1 convolution named ``name`` (the layer transfer learning replaces), then softmax.

    The softmax runs in float32 (``dtype="float32"``) so mixed-precision models still output
    float32 probabilities.
    """
    conv = keras.layers.Conv2D if ndim == 2 else keras.layers.Conv3D
    logits = conv(num_classes, 1, name=name)(x)
    return keras.layers.Softmax(axis=-1, dtype="float32", name="softmax")(logits)


def pad_to_multiple(x, multiple: int, name: str = "pad"):
    """Pad the spatial dims of ``x`` up to a multiple of ``multiple`` (``layers.PadToMultiple``)."""
    from tfneuro.layers.heads import PadToMultiple

    return PadToMultiple(multiple, name=name)(x)


def crop_like(x, like, name: str = "crop"):
    """Crop ``x`` back to the spatial size of ``like`` (``layers.CropLike``)."""
    from tfneuro.layers.heads import CropLike

    return CropLike(name=name)([x, like])
