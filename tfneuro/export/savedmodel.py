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

Metadata (:class:`~tfneuro.export.metadata.ExportMetadata`: conform spacing and orientation,
normalisation, label scheme and names, model name, tfneuro version, ...; built once by
:func:`~tfneuro.export.options.build_metadata` from the :class:`ExportOptions`) is stored twice:
as the asset ``assets/tfneuro.json`` and as non-trainable ``tf.Variable`` attributes of the
loaded object (``loaded.metadata_json``,
``loaded.spacing``, ``loaded.orientation``, ``loaded.label_names``, ``loaded.model_name``,
``loaded.tfneuro_version``, ``loaded.num_classes``, ``loaded.num_channels``).

Precision and batch norm (issue 17): the module serves COPIES of the models
(:func:`~tfneuro.export.options.build_metadata`) whose batch norms are folded into the
convolutions before them (:mod:`.fold`) and whose layers compute at the export's precision
(``precision``, :mod:`tfneuro.inference.precision`); the graph casts the volume and the model
outputs to float32, so normalisation, view aggregation, window blending and argmax are float32.
The metadata records ``precision`` and ``batch_norm_folded``.

The functions keep no state between calls (no variables are written), so a loaded signature
may be called from several threads at once.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import tensorflow as tf

from tfneuro.export import graph
from tfneuro.export.metadata import FORMAT_VERSION, ExportMetadata, read_metadata
from tfneuro.export.options import ExportOptions, build_metadata, export_options
from tfneuro.utils.atomic import atomic_path

__all__ = ["export_model", "build_module", "SegmentationModule", "ExportOptions",
           "read_metadata", "FORMAT_VERSION"]


class SegmentationModule(tf.Module):
    """The exported object: the model(s), metadata variables and the serving functions.

    Built by :func:`build_module`; also usable in-process (``module.segment_volume(volume)``)
    for a ``.keras`` model, without saving.
    """

    def __init__(self, models: dict, meta: ExportMetadata):
        super().__init__(name="tfneuro_segmentation")
        self.models = models  # tracked: the Keras models' variables are saved with the module
        self._meta = meta
        self.metadata_json = tf.Variable(meta.to_json(), trainable=False, name="metadata_json")
        self.model_name = tf.Variable(meta.model_name, trainable=False, name="model_name")
        self.tfneuro_version = tf.Variable(meta.tfneuro_version, trainable=False,
                                           name="tfneuro_version")
        self.spacing = tf.Variable(list(meta.conform.spacing), dtype=tf.float32,
                                   trainable=False, name="spacing")
        self.orientation = tf.Variable(meta.conform.orientation, trainable=False,
                                       name="orientation")
        self.num_classes = tf.Variable(meta.num_classes, trainable=False, name="num_classes")
        self.num_channels = tf.Variable(meta.num_channels, trainable=False, name="num_channels")
        if meta.label_names is not None:
            self.label_names = tf.Variable(list(meta.label_names), trainable=False,
                                           name="label_names")
            self.label_scheme = tf.Variable(meta.label_scheme, trainable=False,
                                            name="label_scheme")
        self._build_functions()

    @property
    def meta(self) -> ExportMetadata:
        """The export metadata."""
        return self._meta

    # ----- model calls
    def _call(self, key):
        model = self.models[key]
        mean = self._meta.channel_mean

        def call(inputs):
            if mean is not None:
                m = tf.constant(np.asarray(mean, np.float32))
                inputs = ([x - m[i % m.shape[0]] for i, x in enumerate(inputs)]
                          if isinstance(inputs, (list, tuple)) else inputs - m)
            out = model(inputs, training=False)
            return out[0] if isinstance(out, (list, tuple)) else out

        return call

    def _serving_fn(self, key):
        model = self.models[key]
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
    def _normalize(self, volume):
        meta = self._meta
        norm, hist = meta.normalization, meta.histogram_equalization
        chans = []
        for c in range(meta.num_channels):
            x = volume[..., c]
            if hist is not None:
                x = graph.histogram_equalize(x, nbins=int(hist.get("nbins", 256)))
            x = graph.normalize_channel(x, norm.method, norm.percentiles, norm.mask)
            chans.append(x)
        return tf.stack(chans, axis=-1)

    def _segment(self, volume):
        meta = self._meta
        k = meta.num_classes
        tf.debugging.assert_equal(tf.shape(volume)[3], meta.num_channels,
                                  message="volume: wrong number of channels (last axis)")
        tf.debugging.assert_all_finite(volume, "volume contains NaN or Inf")
        v = self._normalize(tf.cast(volume, tf.float32))
        if meta.ndim == 2:
            probs = None
            for _, info, key in meta.view_items:
                p = graph.predict_slices_in_graph(
                    self._call(key), v, info.axis, k, input_kind=meta.input_kind,
                    multiple=meta.pad_multiple[key], batch_size=meta.batch_size,
                    skip_empty=meta.skip_empty) * info.weight
                probs = p if probs is None else probs + p
        else:
            probs = graph.sliding_window(self._call("model"), v, meta.window, k,
                                         overlap=meta.overlap, sigma_scale=meta.sigma_scale,
                                         batch_size=meta.batch_size, input_kind=meta.input_kind)
        labels = tf.argmax(probs, axis=-1, output_type=tf.int32)
        return {"labels": labels, "probabilities": probs}

    def _build_functions(self):
        keys = list(self.models)
        self.serving_default = self._serving_fn(keys[0])
        if len(keys) > 1 or keys[0] != "model":
            for v in keys:
                setattr(self, f"serving_{v}", self._serving_fn(v))
        c = self._meta.num_channels
        if self._meta.task != "classification":
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


def _sanitize(name, default):
    s = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in str(name)).strip("_")
    return s if s and s[0].isalpha() else default


def build_module(model_or_views, options: ExportOptions | None = None,
                 **overrides) -> SegmentationModule:
    """Check the options (as :func:`export_model`) and build the in-memory serving module."""
    models, meta = build_metadata(model_or_views, export_options(options, **overrides))
    return SegmentationModule(models, meta)


def export_model(model_or_views, path, options: ExportOptions | None = None,
                 **overrides) -> ExportMetadata:
    """Write a SavedModel with ``serving_default``, ``segment_volume`` and ``metadata``.

    TensorFlow-only (``tf.saved_model``). The directory is written atomically
    (:func:`tfneuro.utils.atomic_path`): it appears complete or not at all.

    Args:
        model_or_views: a Keras model (2D slice model or 3D volume model), or a dict
            ``{"axial"|"coronal"|"sagittal": 2D model}`` for view aggregation.
        path: output directory.
        options: an :class:`ExportOptions` (default: its defaults).
        **overrides: :class:`ExportOptions` fields, e.g. ``label_scheme="tissue4",
            spacing=1.0, views=["axial"], window=(96, 96, 96)``.

    Returns:
        The :class:`~tfneuro.export.metadata.ExportMetadata` that was stored.
    """
    module = build_module(model_or_views, options, **overrides)
    path = os.fspath(path)
    with tempfile.TemporaryDirectory() as tmpdir:
        asset_file = os.path.join(tmpdir, "tfneuro.json")
        with open(asset_file, "w", encoding="utf-8") as f:
            f.write(module.meta.to_json(indent=2))
        module.metadata_asset = tf.saved_model.Asset(asset_file)
        with atomic_path(path, suffix="") as tmp:
            tf.saved_model.save(module, tmp, signatures=module.signatures())
    return module.meta
