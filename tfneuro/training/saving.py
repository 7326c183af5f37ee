"""Saving and loading ``.keras`` models with every tfneuro serializable registered.

Registration happens when a module is imported (``keras.saving.register_keras_serializable``):
the layers, every registered model's module (e.g. ``vgg_fcn.ChannelMeanSubtract``,
``res_unet3d.DeepSupervisionModel``, ``RegisteredModel``) and, for compiled models, the losses,
the streaming metric, the optimizers and the schedules. :func:`load_keras_model` imports them
all first, so any tfneuro ``.keras`` file loads in a fresh process.

Safety: files are loaded with ``safe_mode=True``; a model carrying arbitrary Python (a
``Lambda`` layer) is refused with an :class:`~tfneuro.errors.InputError` that names
``--unsafe``. Files are written atomically (:func:`tfneuro.utils.atomic_path`).
"""

from __future__ import annotations

import os

import keras

import tfneuro.layers
import tfneuro.losses  # noqa: F401  (registers the losses)
from tfneuro.errors import InputError
from tfneuro.metrics import keras_metrics  # noqa: F401  (registers MeanDice)
from tfneuro.models import _common, registry
from tfneuro.training import recipes, schedules  # noqa: F401  (register SGDL2, the schedules)
from tfneuro.utils.atomic import atomic_path

__all__ = ["register_serializables", "load_keras_model", "save_keras_model", "copy_model"]


def register_serializables() -> dict:
    """Import every module that registers Keras objects; return the layers'
    ``custom_objects()`` (see the module docstring)."""
    for name in registry.list_models():
        registry.builder(name)  # imports the model's module
    return {**tfneuro.layers.custom_objects(), "RegisteredModel": _common.RegisteredModel}


def load_keras_model(path, *, unsafe: bool = False):
    """``keras.saving.load_model(path, safe_mode=not unsafe)`` with tfneuro's objects registered.

    Raises:
        InputError: naming the file; for a Lambda layer (or other arbitrary code) the message
            names ``--unsafe``.
    """
    custom = register_serializables()
    try:
        return keras.saving.load_model(path, custom_objects=custom, safe_mode=not unsafe)
    except ValueError as e:
        if "safe_mode" in str(e) or "Lambda" in str(e):
            raise InputError(path, "contains a Lambda layer or other arbitrary Python code, which "
                                   "is refused in safe mode; pass --unsafe only if you trust its "
                                   "source") from e
        raise InputError(path, f"cannot load the .keras model ({e})".splitlines()[0]) from e
    except Exception as e:  # noqa: BLE001 - zip/HDF5/JSON errors of a broken file
        raise InputError(path, f"cannot load the .keras model ({type(e).__name__}: {e})".splitlines()[0]) from e


def save_keras_model(model, path, *, compiled: bool = True) -> str:
    """Save a ``.keras`` model atomically; return the path.

    ``compiled=False`` saves an uncompiled copy (architecture and weights only, no optimizer
    state): the inference copy a segmentation or Grad-CAM run needs. ``keras.models.clone_model``
    would re-compile the clone, so the copy is rebuilt from the config.
    """
    path = os.fspath(path)
    if not compiled:
        model = copy_model(model)
    with atomic_path(path) as tmp:
        model.save(tmp)
    return path


def copy_model(model):
    """An uncompiled copy of ``model`` with its own variables holding the same values: rebuilt
    from the config (so a :class:`~tfneuro.models.RegisteredModel` keeps its registry name and
    multiple, and custom layers are rebuilt by their own ``from_config``), then
    ``set_weights``. The copy's layers may be changed (precision, folding) without touching
    ``model``.

    Safe mode is off for the copy: ``model`` is already in memory, so whatever Python it
    carries (a ``Lambda`` of a model loaded with ``--unsafe``) was accepted when it was
    loaded; refusing it again would only make such a model impossible to copy.
    """
    data = dict(keras.saving.serialize_keras_object(model))
    data.pop("compile_config", None)
    cls = type(model)
    custom = {cls.__name__: cls, data.get("registered_name") or cls.__name__: cls}
    clone = keras.saving.deserialize_keras_object(data, custom_objects=custom, safe_mode=False)
    clone.set_weights(model.get_weights())
    return clone
