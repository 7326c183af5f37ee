"""Export options (one parameter object) and the one place export metadata is built.

:class:`ExportOptions` holds every choice :func:`tfneuro.export.export_model` takes;
:func:`build_metadata` checks them against the model(s) and returns the typed
:class:`~tfneuro.export.metadata.ExportMetadata`. What a model is (2D or 3D, how it takes its
channels, its spatial multiple, its task) comes from the spec it carries
(:func:`tfneuro.models.spec_of`); for a model that no registered builder made, from its input
rank, :func:`tfneuro.models.input_kind_of` and the ``input_kind`` / ``multiple`` options.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

import tfneuro
from tfneuro.errors import InputError
from tfneuro.export.fold import serving_copy
from tfneuro.export.metadata import ConformSpec, ExportMetadata, Normalization, ViewInfo
from tfneuro.inference.slices import view_weights as normalized_view_weights
from tfneuro.io.views import VIEW_AXES
from tfneuro.models.registry import input_kind_of, spec_of
from tfneuro.utils.precision import resolve_precision

__all__ = ["ExportOptions", "export_options", "build_metadata"]

_METHODS = ("zscore", "minmax", "none")


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    """What :func:`tfneuro.export.export_model` stores and how the graph segments a volume.

    Attributes:
        model_name: name stored in the metadata (default: the model's name).
        label_scheme: a :mod:`tfneuro.io.labels` scheme name, or a list of class names; its
            class count must equal the model's.
        spacing: conform spacing in mm (one value or three).
        orientation: conform axis code (e.g. ``"RAS"``).
        normalization: ``"zscore"``, ``"minmax"``, ``"none"`` or a dict ``{"method",
            "percentiles", "mask"}`` (mask ``None`` or ``"nonzero"``); the same steps as
            :mod:`tfneuro.io.normalize`. Default: ``"zscore"`` with percentiles (0.5, 99.5),
            or ``"none"`` for histogram-equalised models.
        histogram_equalization: ``None`` (auto: on for ``rgb_slices`` models, i.e.
            vgg16_fcn, paper 004 "Pre-processing"), ``True``/``False`` or ``{"nbins": n}``.
            Applied per channel before ``normalization``.
        channel_mean: per-model-input-channel means subtracted from the model inputs (paper
            004: "subtract the mean values for each channel"), or None.
        view_weights: ``{view: weight}`` for 2D view aggregation (default equal weights).
        views: for a single 2D model: the views it is applied on (default ``["axial"]``).
        window, overlap: 3D sliding window (ignored for 2D; a model with fixed spatial input
            size uses that size).
        batch_size: slices (2D; default None: about 2**17 pixels per call, computed from the
            slice size when serving, ``tfneuro.inference.memory.auto_slice_batch``) or windows
            (3D, default 1) per model call.
        input_kind: override how the model takes the channels (default: its spec).
        modalities: names of the C input channels (default ``["t1"]`` / ``["t1", "t2"]``).
        multiple: 2D: pad slices to this multiple (default: the model's spec, else 1).
        skip_empty: 2D: predict only slices inside the nonzero bounding box.
        sigma_scale: 3D Gaussian sigma as a fraction of the window.
        conform_multiple: the ``multiple`` stored for :func:`tfneuro.io.conform`.
        precision: ``"auto"`` (default), ``"float32"``, ``"bfloat16"`` or ``"float16"``: what
            the exported graph computes the model in (:mod:`tfneuro.utils.precision`);
            ``"auto"`` is decided on the machine that EXPORTS (bfloat16 where it is native
            there) and the result is stored in the metadata. Normalisation, softmax, view
            aggregation, window blending and argmax are float32 in every case.
        fold_batch_norm: fold each batch norm into the convolution before it in the exported
            graph (:mod:`tfneuro.export.fold`; same outputs within float32 round-off).
    """

    model_name: str | None = None
    label_scheme: object = "tissue4"
    spacing: object = 1.0
    orientation: str = "RAS"
    normalization: object = None
    histogram_equalization: object = None
    channel_mean: object = None
    view_weights: dict | None = None
    views: object = None
    window: tuple = (96, 96, 96)
    overlap: float = 0.5
    batch_size: int | None = None
    input_kind: str | None = None
    modalities: object = None
    multiple: int | None = None
    skip_empty: bool = True
    sigma_scale: float = 0.125
    conform_multiple: int = 16
    precision: str = "auto"
    fold_batch_norm: bool = True


def export_options(options: ExportOptions | None = None, **overrides) -> ExportOptions:
    """``options`` (default :class:`ExportOptions`) with ``overrides`` applied.

    Raises:
        TypeError: an override that is not an :class:`ExportOptions` field.
    """
    return dataclasses.replace(options or ExportOptions(), **overrides)


def _first(outputs):
    return outputs[0] if isinstance(outputs, (list, tuple)) else outputs


def _as_models(model_or_views) -> dict:
    if isinstance(model_or_views, dict):
        if not model_or_views:
            raise InputError("views", "empty dict of view models")
        bad = [v for v in model_or_views if v not in VIEW_AXES]
        if bad:
            raise InputError("views", f"unknown view(s) {bad}; use {sorted(VIEW_AXES)}")
        models = dict(model_or_views)
    elif isinstance(model_or_views, keras.Model):
        models = {"model": model_or_views}
    else:
        raise InputError("model", f"expected a keras.Model or a dict of them, got {type(model_or_views).__name__}")
    for v, m in models.items():
        if not isinstance(m, keras.Model):
            raise InputError(f"views[{v}]", f"expected a keras.Model, got {type(m).__name__}")
    return models


def _num_channels(model, kind):
    if kind in ("two_arm", "rgb_slices"):
        return {"two_arm": 2, "rgb_slices": 1}[kind]
    c = model.inputs[0].shape[-1]
    if c is None:
        raise InputError("model", f"model {model.name!r} has no fixed channel count")
    return int(c)


def _one_value(values: dict, what: str):
    if len(set(values.values())) != 1:
        raise InputError("views", f"view models disagree on the {what}: {values}")
    return next(iter(values.values()))


def _label_names(label_scheme, num_classes):
    if isinstance(label_scheme, (list, tuple)):
        names, scheme_name = [str(n) for n in label_scheme], "custom"
    else:
        from tfneuro.io.labels import get_scheme

        scheme = get_scheme(label_scheme)
        names, scheme_name = list(scheme.names), scheme.name
    if len(names) != num_classes:
        raise InputError("label_scheme", f"scheme {scheme_name!r} has {len(names)} classes but "
                                         f"the model predicts {num_classes}")
    return scheme_name, tuple(names)


def _normalization(normalization, hist_eq) -> Normalization:
    if normalization is None:
        normalization = "none" if hist_eq else "zscore"
    if isinstance(normalization, str):
        normalization = {"method": normalization}
    norm = {"method": "zscore", "percentiles": (0.5, 99.5), "mask": None, **dict(normalization)}
    if norm["method"] not in _METHODS:
        raise InputError("normalization", f"method must be one of {_METHODS}, got {norm['method']!r}")
    if norm["mask"] not in (None, "nonzero"):
        raise InputError("normalization", f"mask must be None or 'nonzero', got {norm['mask']!r}")
    if norm["percentiles"] is not None:
        lo, hi = (float(p) for p in norm["percentiles"])
        if not 0 <= lo < hi <= 100:
            raise InputError("normalization", f"need 0 <= low < high <= 100 percentiles, got {norm['percentiles']!r}")
        norm["percentiles"] = (lo, hi)
    return Normalization(**norm)


def _conform(o: ExportOptions) -> ConformSpec:
    spacing = [float(o.spacing)] * 3 if isinstance(o.spacing, (int, float)) else [float(s) for s in o.spacing]
    if len(spacing) != 3 or min(spacing) <= 0:
        raise InputError("spacing", f"need one or three positive values, got {o.spacing!r}")
    if not (isinstance(o.orientation, str) and len(o.orientation) == 3):
        raise InputError("orientation", f"need a 3-letter axis code like 'RAS', got {o.orientation!r}")
    return ConformSpec(tuple(spacing), o.orientation.upper(), int(o.conform_multiple))


def _layout_2d(models, kinds, o: ExportOptions) -> dict:
    views = list(o.views or ["axial"]) if "model" in models else list(models)
    weights = normalized_view_weights(views, o.view_weights, source="views")
    multiple = {}
    for key, m in models.items():
        found = spec_of(m)
        multiple[key] = int(o.multiple or (found.multiple if found is not None else 1))
    return {"views": {v: ViewInfo(VIEW_AXES[v], weights[v]) for v in views},
            "pad_multiple": multiple, "batch_size": int(o.batch_size) if o.batch_size else None}


def _layout_3d(model, task, o: ExportOptions) -> dict:
    shape = tuple(model.inputs[0].shape[1:-1])
    fixed = None if any(s is None for s in shape) else shape
    window = tuple(int(w) for w in (fixed or o.window))
    if len(window) != 3 or min(window) < 1:
        raise InputError("window", f"need three positive sizes, got {o.window!r}")
    found = spec_of(model)
    m = found.multiple if found is not None else int(o.multiple or 1)
    if task != "classification" and any(w % m for w in window):
        raise InputError("window", f"{window} is not a multiple of {m}, the spatial multiple "
                                   f"of model {model.name!r}")
    if not 0 <= float(o.overlap) < 1:
        raise InputError("overlap", f"must be in [0, 1), got {o.overlap!r}")
    return {"window": window, "overlap": float(o.overlap), "blend": "gaussian",
            "sigma_scale": float(o.sigma_scale), "batch_size": int(o.batch_size or 1)}


def _serving_models(models: dict, precision: str, fold: bool) -> tuple[dict, int]:
    """``({key: serving copy}, batch norms folded)``; views sharing one model share one copy."""
    copies, served = {}, {}
    for key, m in models.items():
        if id(m) not in copies:
            copies[id(m)] = serving_copy(m, precision, fold)
        served[key] = copies[id(m)][0]
    return served, sum(n for _, n in copies.values())


def build_metadata(model_or_views, options: ExportOptions) -> tuple[dict, ExportMetadata]:
    """Check ``options`` against the model(s); return ``({view or "model": model to serve},
    metadata)``. The models to serve are copies (:func:`tfneuro.export.fold.serving_copy`):
    batch norms folded (``fold_batch_norm``), layers at the resolved ``precision``; the
    caller's models are not changed.

    Raises:
        InputError: naming the option (or model) that does not fit.
    """
    o = options
    precision = resolve_precision(o.precision)
    models = _as_models(model_or_views)
    first = next(iter(models.values()))
    found = spec_of(first)
    ndim = found.ndim if found is not None else len(first.inputs[0].shape) - 2
    if ndim not in (2, 3):
        raise InputError("model", f"model {first.name!r} has {ndim}-D inputs; need 2D slices or 3D volumes")
    if ndim == 3 and len(models) > 1:
        raise InputError("views", "per-view models must be 2D slice models")
    task = found.task if found is not None else "segmentation"
    kinds = {v: input_kind_of(m, o.input_kind) for v, m in models.items()}
    num_channels = _one_value({v: _num_channels(m, kinds[v]) for v, m in models.items()}, "number of channels")
    num_classes = _one_value({v: int(_first(m.outputs).shape[-1]) for v, m in models.items()}, "number of classes")
    hist = o.histogram_equalization
    if hist_auto := hist is None:
        hist = any(k == "rgb_slices" for k in kinds.values())
    hist = {"nbins": 256} if hist is True else (dict(hist) if hist else None)
    kind = kinds[next(iter(kinds))]
    mean = None
    if o.channel_mean is not None:
        mean = tuple(float(c) for c in np.ravel(o.channel_mean))
        in_c = 3 if kind == "rgb_slices" else num_channels
        if len(mean) not in (1, in_c):
            raise InputError("channel_mean", f"need 1 or {in_c} values, got {len(mean)}")
    scheme_name, names = (None, None) if task == "classification" else _label_names(o.label_scheme, num_classes)
    mods = o.modalities or (["t1", "t2"][:num_channels] if num_channels <= 2
                            else [f"channel{i}" for i in range(num_channels)])
    if len(mods) != num_channels:
        raise InputError("modalities", f"the model takes {num_channels} channel(s), got {list(mods)}")
    layout = _layout_2d(models, kinds, o) if ndim == 2 else _layout_3d(first, task, o)
    served, folded = _serving_models(models, precision, bool(o.fold_batch_norm))
    meta = ExportMetadata(
        model_name=o.model_name or first.name, model_names={v: m.name for v, m in models.items()},
        task=task, ndim=ndim, input_kind=kind, num_classes=num_classes,
        num_channels=num_channels, modalities=tuple(str(m) for m in mods),
        label_scheme=scheme_name, label_names=names, conform=_conform(o),
        normalization=_normalization(o.normalization, hist is not None),
        histogram_equalization=hist, histogram_equalization_auto=hist_auto, channel_mean=mean,
        skip_empty=bool(o.skip_empty), model_spec=None if found is None else found.to_config(),
        tfneuro_version=tfneuro.__version__, tensorflow_version=tf.__version__,
        keras_version=keras.__version__, precision=precision,
        batch_norm_folded=folded, **layout)
    return served, meta
