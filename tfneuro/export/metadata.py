"""The metadata an exported SavedModel carries, as typed, frozen dataclasses.

:class:`ExportMetadata` is built once, by :func:`tfneuro.export.options.build_metadata`,
and read through attributes everywhere else (the serving graph, the segmentation app, memory
estimates). On disk it is one JSON object (``assets/tfneuro.json``, ``loaded.metadata_json``
and the ``metadata`` signature; keys in ``saved_models/README.md``); :meth:`ExportMetadata.to_dict`
and :meth:`ExportMetadata.from_dict` convert both ways, and a plain-TensorFlow program can read
the JSON without tfneuro. Like :class:`tfneuro.io.ConformRecord`, the dataclasses hold only
JSON types (tuples become lists on disk).

Pure Python (no TensorFlow), so reading an export's metadata is cheap.
"""

from __future__ import annotations

import dataclasses
import json
import os

from tfneuro.errors import InputError

__all__ = ["FORMAT", "FORMAT_VERSION", "ConformSpec", "Normalization", "ViewInfo",
           "ExportMetadata", "read_metadata"]

FORMAT = "tfneuro-savedmodel"
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class ConformSpec:
    """How a scan is put on the model's grid (:func:`tfneuro.io.conform`).

    Attributes:
        spacing: voxel size in mm along each conformed axis (three values).
        orientation: axis code of the conformed grid, e.g. ``"RAS"``.
        multiple: every conformed axis is padded to a multiple of this.
    """

    spacing: tuple
    orientation: str = "RAS"
    multiple: int = 16

    @property
    def conform_spacing(self):
        """``spacing`` as :func:`tfneuro.io.conform` takes it: one number when isotropic."""
        return self.spacing[0] if len(set(self.spacing)) == 1 else tuple(self.spacing)

    def conform_kwargs(self) -> dict:
        """Keyword arguments of :func:`tfneuro.io.conform` and :func:`tfneuro.io.plan_conform`."""
        return {"spacing": self.conform_spacing, "orientation": self.orientation,
                "multiple": self.multiple}


@dataclasses.dataclass(frozen=True)
class Normalization:
    """Per-channel intensity normalisation done in the graph (:mod:`tfneuro.io.normalize`).

    Attributes:
        method: ``"zscore"``, ``"minmax"`` or ``"none"``.
        percentiles: clipping percentiles ``(low, high)`` or ``None``.
        mask: ``None`` (statistics over all voxels) or ``"nonzero"``.
    """

    method: str = "zscore"
    percentiles: tuple | None = (0.5, 99.5)
    mask: str | None = None


@dataclasses.dataclass(frozen=True)
class ViewInfo:
    """One view of a 2D export: its slicing axis (:mod:`tfneuro.io.views`) and its weight
    in the view average (weights sum to 1)."""

    axis: int
    weight: float


@dataclasses.dataclass(frozen=True)
class ExportMetadata:
    """Everything a serving program (or :mod:`tfneuro.apps.segment`) needs to know.

    Attributes:
        model_name: name stored for the export; ``model_names``: ``{view or "model": name}``.
        task: ``"segmentation"``, ``"segmentation+age"`` or ``"classification"``.
        ndim: 2 (slice models) or 3 (volume models); ``input_kind``: how the model takes the
            channels (:data:`tfneuro.models.INPUT_KINDS`).
        num_classes, num_channels: K and C; ``modalities``: the name of each channel.
        label_scheme, label_names: class names indexed by class id (``None`` for classifiers).
        conform: :class:`ConformSpec`; normalization: :class:`Normalization`.
        histogram_equalization: ``{"nbins": n}`` or ``None``; ``histogram_equalization_auto``:
            whether it was chosen automatically (``rgb_slices`` models).
        channel_mean: values subtracted from the model inputs, or ``None``.
        skip_empty: 2D: predict only slices inside the nonzero bounding box.
        views: 2D: ``{view: ViewInfo}``; pad_multiple: 2D: ``{view or "model": multiple}``.
        batch_size: slices (2D; ``None``: from the slice size) or windows (3D) per call.
        window, overlap, blend, sigma_scale: 3D sliding window.
        model_spec: the :class:`~tfneuro.models.ModelSpec` config of the (first) model, or
            ``None`` for a model no registered builder made.
        precision: what the graph computes the model in (``"float32"``, ``"bfloat16"``,
            ``"float16"``; exports written before it was recorded read as ``"float32"``).
        batch_norm_folded: how many batch norms the graph folded into their convolutions.
        tfneuro_version, tensorflow_version, keras_version: versions that wrote it.
        format, format_version: :data:`FORMAT`, :data:`FORMAT_VERSION`.
    """

    model_name: str
    model_names: dict
    task: str
    ndim: int
    input_kind: str
    num_classes: int
    num_channels: int
    modalities: tuple
    label_scheme: str | None
    label_names: tuple | None
    conform: ConformSpec
    normalization: Normalization
    histogram_equalization: dict | None = None
    histogram_equalization_auto: bool = False
    channel_mean: tuple | None = None
    skip_empty: bool = True
    views: dict | None = None
    pad_multiple: dict | None = None
    batch_size: int | None = None
    window: tuple | None = None
    overlap: float | None = None
    blend: str | None = None
    sigma_scale: float | None = None
    model_spec: dict | None = None
    precision: str = "float32"
    batch_norm_folded: int = 0
    tfneuro_version: str = ""
    tensorflow_version: str = ""
    keras_version: str = ""
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    # ---------------------------------------------------------------- JSON round trip
    def to_dict(self) -> dict:
        """The JSON object stored with the export (keys as in ``saved_models/README.md``;
        2D-only or 3D-only keys are left out of the other kind's metadata)."""
        d = json.loads(json.dumps(dataclasses.asdict(self)))
        only2d, only3d = ("views", "pad_multiple"), ("window", "overlap", "blend", "sigma_scale")
        for key in only3d if self.ndim == 2 else only2d:
            d.pop(key)
        return d

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, **kwargs)

    @classmethod
    def from_dict(cls, d: dict, source="metadata") -> "ExportMetadata":
        """Rebuild from :meth:`to_dict` output (e.g. read back from JSON).

        Raises:
            InputError: naming ``source``, for another format, a newer format version, or
                missing keys.
        """
        if d.get("format") != FORMAT:
            raise InputError(source, f"not tfneuro export metadata (format {d.get('format')!r})")
        if int(d.get("format_version", 0)) > FORMAT_VERSION:
            raise InputError(source, f"format version {d['format_version']} is newer than this "
                                     f"tfneuro understands ({FORMAT_VERSION}); upgrade tfneuro")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        required = [n for n, f in fields.items()
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [n for n in required if n not in d]
        if missing:
            raise InputError(source, f"metadata lacks {missing}")
        kw = {k: v for k, v in d.items() if k in fields}
        kw["conform"] = ConformSpec(**{**d["conform"], "spacing": tuple(d["conform"]["spacing"])})
        norm = dict(d["normalization"])
        if norm.get("percentiles") is not None:
            norm["percentiles"] = tuple(norm["percentiles"])
        kw["normalization"] = Normalization(**norm)
        if d.get("views") is not None:
            kw["views"] = {v: ViewInfo(**info) for v, info in d["views"].items()}
        for key in ("modalities", "label_names", "channel_mean", "window"):
            if kw.get(key) is not None:
                kw[key] = tuple(kw[key])
        return cls(**kw)

    @classmethod
    def from_json(cls, text: str, source="metadata") -> "ExportMetadata":
        return cls.from_dict(json.loads(text), source=source)

    # ---------------------------------------------------------------- derived facts
    @property
    def view_items(self) -> list:
        """2D: ``[(view, ViewInfo, key of its model)]``; the key is the view itself for
        per-view models, else ``"model"``."""
        return [(v, info, v if v in self.model_names else "model")
                for v, info in (self.views or {}).items()]


def read_metadata(path) -> ExportMetadata:
    """The metadata of an exported SavedModel directory (reads ``assets/tfneuro.json``).

    Raises:
        InputError: naming ``path`` when it is not a tfneuro SavedModel.
    """
    f = os.path.join(os.fspath(path), "assets", "tfneuro.json")
    if not os.path.isfile(f):
        raise InputError(path, "not a tfneuro SavedModel (no assets/tfneuro.json)")
    with open(f, encoding="utf-8") as fh:
        try:
            return ExportMetadata.from_dict(json.load(fh), source=path)
        except (json.JSONDecodeError, TypeError, KeyError) as e:
            raise InputError(path, f"unreadable metadata ({type(e).__name__}: {e})") from None
