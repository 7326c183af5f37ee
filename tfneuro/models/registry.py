"""The model registry: ``tfneuro.models.get(name, **kwargs)`` and ``list_models()``.

Builders are imported lazily, so ``import tfneuro.models`` does not build or import every
architecture. Each entry also carries a :class:`ModelSpec` that inference and export read to
know how to feed the model (2D slices, 3-slice RGB stacks, two arms, or 3D windows).
"""

from __future__ import annotations

import dataclasses
import importlib


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
    """

    name: str
    builder: str
    ndim: int
    input_kind: str
    paper: str
    task: str = "segmentation"


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


def spec(name: str, source: str = "model") -> ModelSpec:
    """The :class:`ModelSpec` of a registered model.

    Raises:
        InputError: for an unknown name, naming ``source`` (e.g. the flag that gave it).
    """
    try:
        return _SPECS[name]
    except KeyError:
        from tfneuro.errors import InputError

        raise InputError(source, f"unknown model name {name!r}; known: {', '.join(list_models())}") from None


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
