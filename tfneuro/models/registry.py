"""The model registry: ``tfneuro.models.get(name, **kwargs)`` and ``list_models()``.

Builders are imported lazily, so ``import tfneuro.models`` does not build or import every
architecture. Each entry also carries a :class:`ModelSpec` that inference and export read to
know how to feed the model (2D slices, 3-slice RGB stacks, two arms, or 3D windows).

A model built by a registered builder carries its registry name and its instance's spatial
``multiple`` in its Keras config (:class:`tfneuro.models.RegisteredModel`), so they survive
``.keras`` files; SavedModel export stores the whole spec in its metadata. :func:`spec_of`
gives a model's spec and :func:`input_kind_of` is the one place that decides how a model is
fed. This module imports no model module until a model is built (builders are strings).
"""

from __future__ import annotations

import dataclasses
import importlib

from tfneuro.errors import InputError

#: How a model takes a volume's channels: ``"channels"`` (modalities stacked last),
#: ``"two_arm"`` (one input per modality, InfiNet) or ``"rgb_slices"`` (3 adjacent slices of
#: one modality as RGB, paper 004).
INPUT_KINDS = ("channels", "two_arm", "rgb_slices")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What a registered model expects.

    Attributes:
        name: registry name.
        builder: ``"module:function"`` that builds the Keras model.
        ndim: spatial dimensions of one model input (2 for slice models, 3 for volume models).
        input_kind: ``"channels"`` (modalities stacked last), ``"two_arm"`` (one input per
            modality, InfiNet), or ``"rgb_slices"`` (3 adjacent slices as RGB, paper 004).
        paper: the paper file prefix in ``shared/papers`` the model follows.
        task: ``"segmentation"``, ``"segmentation+age"`` or ``"classification"``.
        multiple: known spatial sizes must be multiples of this (``2 ** (depth - 1)`` for the
            3D U-Nets; 1 for models that pad internally). Set per built model.
    """

    name: str
    builder: str
    ndim: int
    input_kind: str
    paper: str
    task: str = "segmentation"
    multiple: int = 1

    def to_config(self) -> dict:
        """JSON-serialisable dict (``ModelSpec(**config)`` inverts it)."""
        return dataclasses.asdict(self)


_SPECS = {
    s.name: s
    for s in [
        ModelSpec("quicknat", "tfneuro.models.quicknat:quicknat", 2, "channels", "001"),
        ModelSpec("infinet", "tfneuro.models.infinet:infinet", 2, "two_arm", "003"),
        ModelSpec("unet2d", "tfneuro.models.unet2d:unet2d", 2, "channels", "003"),
        ModelSpec("vgg16_fcn", "tfneuro.models.vgg_fcn:vgg16_fcn", 2, "rgb_slices", "004"),
        ModelSpec("unet3d", "tfneuro.models.unet3d:unet3d", 3, "channels", "000"),
        ModelSpec("vnet", "tfneuro.models.vnet:vnet", 3, "channels", "000"),
        ModelSpec("segresnet", "tfneuro.models.segresnet:segresnet", 3, "channels", "000"),
        ModelSpec("unetr", "tfneuro.models.unetr:unetr", 3, "channels", "000"),
        ModelSpec("res_unet3d", "tfneuro.models.res_unet3d:res_unet3d", 3, "channels", "002"),
        ModelSpec("age_unet3d", "tfneuro.models.res_unet3d:age_unet3d", 3, "channels", "002",
                  task="segmentation+age"),
        ModelSpec("resnet3d_50", "tfneuro.models.resnet3d:resnet3d_50", 3, "channels", "000",
                  task="classification"),
        ModelSpec("resnet3d_101", "tfneuro.models.resnet3d:resnet3d_101", 3, "channels", "000",
                  task="classification"),
        ModelSpec("resnet3d_152", "tfneuro.models.resnet3d:resnet3d_152", 3, "channels", "000",
                  task="classification"),
    ]
}


def list_models() -> list[str]:
    """Names accepted by :func:`get`, sorted."""
    return sorted(_SPECS)


def spec(name: str, source: str = "model", *, multiple: int | None = None) -> ModelSpec:
    """The :class:`ModelSpec` of a registered model (with ``multiple`` set, if given).

    Raises:
        InputError: for an unknown name, naming ``source`` (e.g. the flag that gave it).
    """
    try:
        found = _SPECS[name]
    except KeyError:
        raise InputError(source, f"unknown model name {name!r}; known: {', '.join(list_models())}") from None
    return found if multiple is None else dataclasses.replace(found, multiple=int(multiple))


def spec_of(model) -> ModelSpec | None:
    """The :class:`ModelSpec` of a model made by a registered builder (with the model's own
    spatial ``multiple``), or ``None`` for any other model."""
    name = getattr(model, "registry_name", None)
    if name not in _SPECS:
        return None
    return dataclasses.replace(_SPECS[name], multiple=int(getattr(model, "multiple", 1)))


def input_kind_of(model, input_kind: str | None = None) -> str:
    """How ``model`` takes a volume's channels (one of :data:`INPUT_KINDS`).

    ``input_kind`` when given; else ``"two_arm"`` for a model with two inputs (InfiNet, the
    two-arm U-Net); else the model's spec; else ``"channels"``.

    Raises:
        InputError: an ``input_kind`` that is not one of :data:`INPUT_KINDS`.
    """
    if input_kind is not None:
        if input_kind not in INPUT_KINDS:
            raise InputError("input_kind", f"must be one of {INPUT_KINDS}, got {input_kind!r}")
        return input_kind
    if len(getattr(model, "inputs", None) or []) == 2:
        return "two_arm"
    found = spec_of(model)
    return found.input_kind if found is not None else "channels"


def builder(name: str):
    """The builder function of a registered model."""
    module, func = spec(name).builder.split(":")
    return getattr(importlib.import_module(module), func)


def get(name: str, **kwargs):
    """Build the registered model ``name``.

    Common keyword arguments are ``num_classes`` and ``input_shape`` (spatial dimensions may
    be ``None``); the rest are the builder's own (see each model module).
    """
    return builder(name)(**kwargs)
