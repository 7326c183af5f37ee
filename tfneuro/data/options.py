"""Parameter objects of the ``tf.data`` pipelines (:mod:`tfneuro.data.slices`,
:mod:`tfneuro.data.patches`, :func:`tfneuro.data.pipeline.volume_dataset`).

Every pipeline reads volumes the same way (:class:`VolumeSource`) and streams its elements
the same way (:class:`Batching`); only what it cuts from a volume differs. The pipelines take
these objects, and for convenience any of their fields as keyword arguments
(``slice_dataset(df, modalities=("t1", "t2"), batch_size=16)``), which :func:`split_options`
routes to the right object.
"""

from __future__ import annotations

import dataclasses

__all__ = ["VolumeSource", "Batching", "split_options"]


@dataclasses.dataclass(frozen=True)
class VolumeSource:
    """What each subject contributes (:func:`tfneuro.data.pipeline.load_subject`).

    Attributes:
        modalities: cohort columns stacked as channels, e.g. ``("t1", "t2")``.
        label: label column (``None``: y is zeros).
        weights: voxel weights: ``None``, a column of weight-map paths, or a callable
            ``weights(row, y) -> array`` (e.g. a label budget).
        scheme: label scheme name used to remap raw label values to class ids.
        normalize: per-volume, per-modality ``"zscore"``, ``"minmax"``, ``"histeq"`` (paper
            004) or ``None``.
        split: only rows of this split (or list of splits).
        cache: keep decoded volumes (before augmentation) in memory (True) or a file (path).
        raw_channels: cohort columns appended as channels after the modalities, as stored
            (never normalised), e.g. NEC-NET's cascade prior mask (paper 000 section 2.3.1:
            "the original images and the predicted masks"); a z-score would rescale a 0/1
            mask per subject.
    """

    modalities: tuple = ("t1",)
    label: str | None = "label"
    weights: object = None
    scheme: object = None
    normalize: str | None = "zscore"
    split: object = None
    cache: object = False
    raw_channels: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "modalities", tuple(self.modalities))
        object.__setattr__(self, "raw_channels", tuple(self.raw_channels))

    @property
    def channels(self) -> int:
        """Channels of ``x``: the modalities, then the raw channels."""
        return len(self.modalities) + len(self.raw_channels)


@dataclasses.dataclass(frozen=True)
class Batching:
    """How elements are shuffled, batched and streamed.

    Attributes:
        batch_size: batch size, or ``None`` for unbatched elements.
        shuffle: shuffle subjects and elements.
        shuffle_buffer: element shuffle buffer (``None``: the pipeline's default).
        drop_remainder: drop the last incomplete batch.
        seed: seed of shuffling and augmentation (``None``: nondeterministic).
        num_parallel_calls: parallelism of decoding and cutting (default AUTOTUNE).
        prefetch: prefetch with AUTOTUNE.
    """

    batch_size: int | None = None
    shuffle: bool = True
    shuffle_buffer: int | None = None
    drop_remainder: bool = False
    seed: int | None = 0
    num_parallel_calls: int | None = None
    prefetch: bool = True


_SOURCE = {f.name for f in dataclasses.fields(VolumeSource)}
_BATCHING = {f.name for f in dataclasses.fields(Batching)}


def split_options(source: VolumeSource | None, batching: Batching | None, fields: dict,
                  *, shuffle_buffer: int) -> tuple[VolumeSource, Batching]:
    """``source`` and ``batching`` (defaults when ``None``) with ``fields`` applied to the
    object that has them; ``shuffle_buffer`` fills an unset buffer size.

    Raises:
        TypeError: a field that neither object has (like any unexpected keyword argument).
    """
    unknown = sorted(set(fields) - _SOURCE - _BATCHING)
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {unknown}")
    source = dataclasses.replace(source or VolumeSource(),
                                 **{k: v for k, v in fields.items() if k in _SOURCE})
    batching = dataclasses.replace(batching or Batching(),
                                   **{k: v for k, v in fields.items() if k in _BATCHING})
    if batching.shuffle_buffer is None:
        batching = dataclasses.replace(batching, shuffle_buffer=shuffle_buffer)
    return source, batching
