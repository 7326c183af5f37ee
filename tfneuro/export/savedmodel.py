"""SavedModel export: whole-volume segmentation that plain TensorFlow can run.

TensorFlow-only by design (``tf.saved_model`` has no backend-neutral equivalent in Keras 3).

:func:`export_model` writes a SavedModel (``tf.saved_model.save`` of a :class:`tf.Module`)
with these signatures (layout and a plain-TF example in ``saved_models/README.md``):

* ``serving_default(<model inputs>) -> {"probabilities": float32[B, ..., K]}``: a batch of
  model inputs, equal to ``model.predict`` (for a dict of per-view models: the first view;
  every view also has ``serving_<view>``).
* ``segment_volume(volume: float32[X, Y, Z, C]) -> {"labels": int32[X, Y, Z],
  "probabilities": float32[X, Y, Z, K]}`` for a volume on the conformed grid; intensity
  normalisation, slice-wise prediction with view aggregation (2D) or the Gaussian-blended
  sliding window (3D), padding and cropping all happen in the graph (:mod:`.graph`).
* ``metadata() -> {"json": string}``: the stored metadata (also for serving systems that
  only see signatures).

Metadata (conform spacing and orientation, normalisation, label scheme and names, model name,
tfneuro version, ...) is stored twice: as the asset ``assets/tfneuro.json`` and as
non-trainable ``tf.Variable`` attributes of the loaded object (``loaded.metadata_json``,
``loaded.spacing``, ``loaded.orientation``, ``loaded.label_names``, ``loaded.model_name``,
``loaded.tfneuro_version``, ``loaded.num_classes``, ``loaded.num_channels``).

The functions keep no state between calls (no variables are written), so a loaded signature
may be called from several threads at once.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np
import tensorflow as tf

from tfneuro.errors import InputError
from tfneuro.export import graph
from tfneuro.utils.atomic import atomic_path

__all__ = ["export_model", "build_module", "model_metadata", "read_metadata", "VIEW_AXES",
           "FORMAT_VERSION"]

#: RAS conformed grid: view name -> slicing axis (as tfneuro.inference.slices).
VIEW_AXES = {"sagittal": 0, "coronal": 1, "axial": 2}
FORMAT_VERSION = 1
_KINDS = ("channels", "two_arm", "rgb_slices")
_METHODS = ("zscore", "minmax", "none")


# --------------------------------------------------------------------------- model facts
def _first(outputs):
    return outputs[0] if isinstance(outputs, (list, tuple)) else outputs


def _registered_spec(model):
    from tfneuro.models import registry

    name = getattr(model, "name", None)
    return registry.spec(name) if name in registry.list_models() else None


def _input_kind(model, input_kind):
    if input_kind is not None:
        if input_kind not in _KINDS:
            raise InputError("input_kind", f"must be one of {_KINDS}, got {input_kind!r}")
        return input_kind
    if len(model.inputs) == 2:
        return "two_arm"
    spec = _registered_spec(model)
    return spec.input_kind if spec is not None and spec.input_kind in _KINDS else "channels"


def _num_channels(model, kind):
    if kind == "two_arm":
        return 2
    if kind == "rgb_slices":
        return 1
    c = model.inputs[0].shape[-1]
    if c is None:
        raise InputError("model", f"model {model.name!r} has no fixed channel count")
    return int(c)


def _probe(model, spatial, kind, channels):
    """Output spatial shape of ``model`` for an input of ``spatial`` size (symbolic, no compute)."""
    import keras

    c = 1 if kind == "two_arm" else (3 if kind == "rgb_slices" else channels)
    x = [keras.KerasTensor((1, *spatial, c)) for _ in range(2 if kind == "two_arm" else 1)]
    try:
        out = _first(model.compute_output_spec(x if kind == "two_arm" else x[0]))
    except Exception:  # noqa: BLE001 - any failure means "this size does not work"
        return None
    return tuple(out.shape[1:-1])


def _detect_multiple(model, ndim, kind, channels):
    """Smallest m (power of 2) such that sizes 3m give outputs of the same size."""
    for m in (1, 2, 4, 8, 16, 32, 64, 128):
        size = (3 * m,) * ndim
        if _probe(model, size, kind, channels) == size:
            return m
    raise InputError("model", f"model {model.name!r} does not return outputs of its input's "
                              "spatial size for any multiple of 2 up to 128")


def _fixed_spatial(model):
    shape = tuple(model.inputs[0].shape[1:-1])
    return None if any(s is None for s in shape) else tuple(int(s) for s in shape)


# --------------------------------------------------------------------------- metadata
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
    return scheme_name, names


def _normalization(normalization, hist_eq):
    if normalization is None:
        normalization = "none" if hist_eq else "zscore"
    if isinstance(normalization, str):
        normalization = {"method": normalization}
    norm = {"method": "zscore", "percentiles": [0.5, 99.5], "mask": None}
    norm.update(dict(normalization))
    if norm["method"] not in _METHODS:
        raise InputError("normalization", f"method must be one of {_METHODS}, got {norm['method']!r}")
    if norm["mask"] not in (None, "nonzero"):
        raise InputError("normalization", f"mask must be None or 'nonzero', got {norm['mask']!r}")
    if norm["percentiles"] is not None:
        lo, hi = (float(p) for p in norm["percentiles"])
        if not 0 <= lo < hi <= 100:
            raise InputError("normalization", f"need 0 <= low < high <= 100 percentiles, got {norm['percentiles']!r}")
        norm["percentiles"] = [lo, hi]
    return norm


def model_metadata(model_or_views, *, model_name=None, label_scheme="tissue4", spacing=1.0,
                   orientation="RAS", normalization=None, histogram_equalization=None,
                   channel_mean=None, view_weights=None, views=None, window=(96, 96, 96),
                   overlap=0.5, batch_size=None, input_kind=None, modalities=None,
                   multiple=None, skip_empty=True, sigma_scale=0.125, conform_multiple=16):
    """Validate the export arguments and return ``(models, metadata dict)``.

    Args: as :func:`export_model`.
    """
    import keras

    import tfneuro

    if isinstance(model_or_views, dict):
        if not model_or_views:
            raise InputError("views", "empty dict of view models")
        bad = [v for v in model_or_views if v not in VIEW_AXES]
        if bad:
            raise InputError("views", f"unknown view(s) {bad}; use {sorted(VIEW_AXES)}")
        models = dict(model_or_views)
    else:
        if not isinstance(model_or_views, keras.Model):
            raise InputError("model", f"expected a keras.Model or a dict of them, got {type(model_or_views).__name__}")
        models = {"model": model_or_views}
    for v, m in models.items():
        if not isinstance(m, keras.Model):
            raise InputError(f"views[{v}]", f"expected a keras.Model, got {type(m).__name__}")
    first = next(iter(models.values()))
    ndim = len(first.inputs[0].shape) - 2
    if ndim not in (2, 3):
        raise InputError("model", f"model {first.name!r} has {ndim}-D inputs; need 2D slices or 3D volumes")
    kinds = {v: _input_kind(m, input_kind) for v, m in models.items()}
    spec = _registered_spec(first)
    task = spec.task if spec is not None else "segmentation"
    if ndim == 3 and len(models) > 1:
        raise InputError("views", "per-view models must be 2D slice models")
    if ndim == 2 and "model" in models:
        views = list(views or ["axial"])
        bad = [v for v in views if v not in VIEW_AXES]
        if bad:
            raise InputError("views", f"unknown view(s) {bad}; use {sorted(VIEW_AXES)}")
    elif ndim == 2:
        views = list(models)
    chans = {v: _num_channels(m, kinds[v]) for v, m in models.items()}
    if len(set(chans.values())) != 1:
        raise InputError("views", f"view models disagree on the number of channels: {chans}")
    ks = {v: int(_first(m.outputs).shape[-1]) for v, m in models.items()}
    if len(set(ks.values())) != 1:
        raise InputError("views", f"view models disagree on the number of classes: {ks}")
    num_classes = next(iter(ks.values()))
    num_channels = next(iter(chans.values()))
    if hist_eq_auto := histogram_equalization is None:
        histogram_equalization = any(k == "rgb_slices" for k in kinds.values())
    hist = {"nbins": 256} if histogram_equalization is True else (
        dict(histogram_equalization) if histogram_equalization else None)
    norm = _normalization(normalization, hist is not None)
    if channel_mean is not None:
        channel_mean = [float(c) for c in np.ravel(channel_mean)]
        in_c = 3 if kinds[next(iter(kinds))] == "rgb_slices" else num_channels
        if len(channel_mean) not in (1, in_c):
            raise InputError("channel_mean", f"need 1 or {in_c} values, got {len(channel_mean)}")
    if isinstance(spacing, (int, float)):
        spacing = [float(spacing)] * 3
    spacing = [float(s) for s in spacing]
    if len(spacing) != 3 or min(spacing) <= 0:
        raise InputError("spacing", f"need one or three positive values, got {spacing!r}")
    if not (isinstance(orientation, str) and len(orientation) == 3):
        raise InputError("orientation", f"need a 3-letter axis code like 'RAS', got {orientation!r}")
    if task == "classification":
        scheme_name, names = None, None
    else:
        scheme_name, names = _label_names(label_scheme, num_classes)
    if modalities is None:
        modalities = ["t1", "t2"][:num_channels] if num_channels <= 2 else [f"channel{i}" for i in range(num_channels)]
    modalities = [str(m) for m in modalities]
    if len(modalities) != num_channels:
        raise InputError("modalities", f"the model takes {num_channels} channel(s), got {modalities}")
    meta = {
        "format": "tfneuro-savedmodel",
        "format_version": FORMAT_VERSION,
        "tfneuro_version": tfneuro.__version__,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "model_name": model_name or first.name,
        "model_names": {v: m.name for v, m in models.items()},
        "task": task,
        "ndim": ndim,
        "input_kind": kinds[next(iter(kinds))],
        "num_classes": num_classes,
        "num_channels": num_channels,
        "modalities": modalities,
        "label_scheme": scheme_name,
        "label_names": names,
        "conform": {"spacing": spacing, "orientation": orientation.upper(),
                    "multiple": conform_multiple},
        "normalization": norm,
        "histogram_equalization": hist,
        "histogram_equalization_auto": hist_eq_auto,
        "channel_mean": channel_mean,
        "skip_empty": bool(skip_empty),
    }
    if ndim == 2:
        if view_weights is None:
            view_weights = {v: 1.0 for v in views}
        missing = [v for v in views if v not in view_weights]
        if missing or any(float(view_weights[v]) < 0 for v in views):
            raise InputError("view_weights", f"need a non-negative weight for every view in {views}")
        total = sum(float(view_weights[v]) for v in views)
        if total <= 0:
            raise InputError("view_weights", "weights sum to 0")
        meta["views"] = {v: {"axis": VIEW_AXES[v], "weight": float(view_weights[v]) / total}
                         for v in views}
        mult = {v: (int(multiple) if multiple else _detect_multiple(m, 2, kinds[v], num_channels))
                for v, m in models.items()}
        meta["pad_multiple"] = mult
        meta["batch_size"] = int(batch_size) if batch_size else None  # None: from the slice size
    else:
        m = first
        fixed = _fixed_spatial(m)
        window = [int(w) for w in (fixed or window)]
        if len(window) != 3 or min(window) < 1:
            raise InputError("window", f"need three positive sizes, got {window!r}")
        if task != "classification" and _probe(m, tuple(window), kinds["model"], num_channels) != tuple(window):
            raise InputError("window", f"model {m.name!r} does not map a {tuple(window)} window "
                                       "to an output of the same size; choose a multiple of its pooling")
        if not 0 <= float(overlap) < 1:
            raise InputError("overlap", f"must be in [0, 1), got {overlap!r}")
        meta.update(window=window, overlap=float(overlap), blend="gaussian",
                    sigma_scale=float(sigma_scale), batch_size=int(batch_size or 1))
    return models, meta


# --------------------------------------------------------------------------- the module
class SegmentationModule(tf.Module):
    """The exported object: the model(s), metadata variables and the serving functions.

    Built by :func:`build_module`; also usable in-process (``module.segment_volume(volume)``)
    for a ``.keras`` model, without saving.
    """

    def __init__(self, models: dict, meta: dict):
        super().__init__(name="tfneuro_segmentation")
        self.models = models  # tracked: the Keras models' variables are saved with the module
        # kept as a string: tf.Module would wrap a dict attribute for tracking
        self._meta_text = json.dumps(meta, sort_keys=True)
        meta = self.meta
        self.metadata_json = tf.Variable(self._meta_text, trainable=False, name="metadata_json")
        self.model_name = tf.Variable(meta["model_name"], trainable=False, name="model_name")
        self.tfneuro_version = tf.Variable(meta["tfneuro_version"], trainable=False,
                                           name="tfneuro_version")
        self.spacing = tf.Variable(meta["conform"]["spacing"], dtype=tf.float32,
                                   trainable=False, name="spacing")
        self.orientation = tf.Variable(meta["conform"]["orientation"], trainable=False,
                                       name="orientation")
        self.num_classes = tf.Variable(meta["num_classes"], trainable=False, name="num_classes")
        self.num_channels = tf.Variable(meta["num_channels"], trainable=False, name="num_channels")
        if meta["label_names"] is not None:
            self.label_names = tf.Variable(meta["label_names"], trainable=False, name="label_names")
            self.label_scheme = tf.Variable(meta["label_scheme"], trainable=False,
                                            name="label_scheme")
        self._build_functions()

    @property
    def meta(self) -> dict:
        """The metadata dict (a fresh copy)."""
        return json.loads(self._meta_text)

    # ----- model calls
    def _call(self, view):
        model = self.models[view]

        def call(inputs):
            return _first(model(inputs, training=False))

        return call

    def _serving_fn(self, view):
        model = self.models[view]
        specs = []
        for i, t in enumerate(model.inputs):
            name = _sanitize(getattr(t, "name", None) or f"input_{i}", f"input_{i}")
            specs.append(tf.TensorSpec([None, *t.shape[1:]], tf.float32, name=name))
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            specs = [tf.TensorSpec(s.shape, s.dtype, name=f"input_{i}") for i, s in enumerate(specs)]

        def serve(*xs):
            out = model(list(xs) if len(xs) > 1 else xs[0], training=False)
            outs = list(out) if isinstance(out, (list, tuple)) else [out]
            result = {"probabilities": tf.cast(outs[0], tf.float32)}
            for j, o in enumerate(outs[1:], start=1):
                result[f"output_{j}"] = tf.cast(o, tf.float32)
            return result

        return tf.function(serve, input_signature=specs, autograph=False)

    # ----- whole volume
    def _normalize(self, volume, meta):
        norm = meta["normalization"]
        hist = meta["histogram_equalization"]
        chans = []
        for c in range(meta["num_channels"]):
            x = volume[..., c]
            if hist is not None:
                x = graph.histogram_equalize(x, nbins=int(hist.get("nbins", 256)))
            x = graph.normalize_channel(x, norm["method"], norm["percentiles"], norm["mask"])
            chans.append(x)
        return tf.stack(chans, axis=-1)

    def _segment(self, volume):
        meta = self.meta
        k = meta["num_classes"]
        tf.debugging.assert_equal(tf.shape(volume)[3], meta["num_channels"],
                                  message="volume: wrong number of channels (last axis)")
        tf.debugging.assert_all_finite(volume, "volume contains NaN or Inf")
        v = self._normalize(tf.cast(volume, tf.float32), meta)
        mean = meta["channel_mean"]
        if meta["ndim"] == 2:
            probs = None
            for view, vinfo in meta["views"].items():
                key = view if view in self.models else "model"
                call = self._call(key)
                if mean is not None:
                    call = _subtract_mean(call, mean, meta["input_kind"])
                p = graph.predict_slices(call, v, vinfo["axis"], k, input_kind=meta["input_kind"],
                                         multiple=meta["pad_multiple"][key],
                                         batch_size=meta["batch_size"],
                                         skip_empty=meta["skip_empty"])
                p = p * vinfo["weight"]
                probs = p if probs is None else probs + p
        else:
            call = self._call("model")
            if mean is not None:
                call = _subtract_mean(call, mean, meta["input_kind"])
            probs = graph.sliding_window(call, v, meta["window"], k, overlap=meta["overlap"],
                                         sigma_scale=meta["sigma_scale"],
                                         batch_size=meta["batch_size"],
                                         input_kind=meta["input_kind"])
        labels = tf.argmax(probs, axis=-1, output_type=tf.int32)
        return {"labels": labels, "probabilities": probs}

    def _build_functions(self):
        views = list(self.models)
        self.serving_default = self._serving_fn(views[0])
        if len(views) > 1 or views[0] != "model":
            for v in views:
                setattr(self, f"serving_{v}", self._serving_fn(v))
        c = self.meta["num_channels"]
        if self.meta["task"] != "classification":
            self.segment_volume = tf.function(
                self._segment, autograph=False,
                input_signature=[tf.TensorSpec([None, None, None, c], tf.float32, name="volume")])
        self.metadata = tf.function(lambda: {"json": self.metadata_json.read_value()},
                                    input_signature=[], autograph=False)

    def signatures(self) -> dict:
        sigs = {"serving_default": self.serving_default, "metadata": self.metadata}
        if hasattr(self, "segment_volume"):
            sigs["segment_volume"] = self.segment_volume
        for v in self.models:
            if hasattr(self, f"serving_{v}"):
                sigs[f"serving_{v}"] = getattr(self, f"serving_{v}")
        return sigs


def _subtract_mean(call, mean, kind):
    m = tf.constant(np.asarray(mean, np.float32))

    def wrapped(inputs):
        if isinstance(inputs, (list, tuple)):
            return call([x - m[i % m.shape[0]] for i, x in enumerate(inputs)])
        return call(inputs - m)

    return wrapped


def _sanitize(name, default):
    s = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in str(name)).strip("_")
    return s if s and s[0].isalpha() else default


def build_module(model_or_views, **kwargs) -> SegmentationModule:
    """Validate arguments (as :func:`export_model`) and build the in-memory serving module."""
    models, meta = model_metadata(model_or_views, **kwargs)
    return SegmentationModule(models, meta)


def export_model(model_or_views, path, *, model_name=None, label_scheme="tissue4", spacing=1.0,
                 orientation="RAS", normalization=None, histogram_equalization=None,
                 channel_mean=None, view_weights=None, views=None, window=(96, 96, 96),
                 overlap=0.5, batch_size=None, input_kind=None, modalities=None,
                 multiple=None, skip_empty=True, sigma_scale=0.125, conform_multiple=16):
    """Write a SavedModel with ``serving_default``, ``segment_volume`` and ``metadata``.

    TensorFlow-only (``tf.saved_model``). The directory is written atomically
    (:func:`tfneuro.utils.atomic_path`): it appears complete or not at all.

    Args:
        model_or_views: a Keras model (2D slice model or 3D volume model), or a dict
            ``{"axial"|"coronal"|"sagittal": 2D model}`` for view aggregation.
        path: output directory.
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
        input_kind: override the registry's ``"channels" | "two_arm" | "rgb_slices"``.
        modalities: names of the C input channels (default ``["t1"]`` / ``["t1", "t2"]``).
        multiple: 2D: pad slices to this multiple (default: detected from the model).
        skip_empty: 2D: predict only slices inside the nonzero bounding box.
        sigma_scale: 3D Gaussian sigma as a fraction of the window.
        conform_multiple: the ``multiple`` stored for :func:`tfneuro.io.conform`.

    Returns:
        The metadata dict that was stored.
    """
    module = build_module(model_or_views, model_name=model_name, label_scheme=label_scheme,
                          spacing=spacing, orientation=orientation, normalization=normalization,
                          histogram_equalization=histogram_equalization,
                          channel_mean=channel_mean, view_weights=view_weights, views=views,
                          window=window, overlap=overlap, batch_size=batch_size,
                          input_kind=input_kind, modalities=modalities, multiple=multiple,
                          skip_empty=skip_empty, sigma_scale=sigma_scale,
                          conform_multiple=conform_multiple)
    path = os.fspath(path)
    with tempfile.TemporaryDirectory() as tmpdir:
        asset_file = os.path.join(tmpdir, "tfneuro.json")
        with open(asset_file, "w", encoding="utf-8") as f:
            json.dump(module.meta, f, indent=2, sort_keys=True)
        module.metadata_asset = tf.saved_model.Asset(asset_file)
        with atomic_path(path, suffix="") as tmp:
            tf.saved_model.save(module, tmp, signatures=module.signatures())
    return module.meta


def read_metadata(path) -> dict:
    """The metadata stored in an exported SavedModel directory (reads ``assets/tfneuro.json``)."""
    f = os.path.join(os.fspath(path), "assets", "tfneuro.json")
    if not os.path.isfile(f):
        raise InputError(path, "not a tfneuro SavedModel (no assets/tfneuro.json)")
    with open(f, encoding="utf-8") as fh:
        return json.load(fh)
