"""Shared volume loading for the tf.data pipelines (TensorFlow-only code: tf.data).

Each subject is decoded ONCE per epoch by one ``tf.py_function`` call that returns the
whole volume ``x [X,Y,Z,C]`` float32, ``y [X,Y,Z]`` int32, ``w [X,Y,Z]`` float32; slices or
patches are cut from it by a second (cheap, numpy) ``py_function`` and ``unbatch``-ed.
Shapes and dtypes are declared after every ``py_function`` with ``tf.ensure_shape``.
With ``cache=True`` the decoded volumes are kept in memory (``Dataset.cache()``) and the
files are read only during the first epoch.

Volumes are expected on one working grid per subject (T1, T2, label and weights with the
same shape); conform them first (``tfneuro.io.conform``) or pass ``pad_to``/``multiple``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfneuro.data.augment import pad_to_shape
from tfneuro.data.cohort import as_cohort, select_split
from tfneuro.data.options import Batching, VolumeSource, split_options
from tfneuro.errors import InputError

NORMALIZERS = ("zscore", "minmax", "histeq", None)


def normalize_volume(data: np.ndarray, method) -> np.ndarray:
    """Normalise one modality with :mod:`tfneuro.io.normalize` (``None``: unchanged)."""
    from tfneuro.io import normalize

    if method is None:
        return data.astype(np.float32)
    if method == "zscore":
        return normalize.zscore(data).astype(np.float32)
    if method == "minmax":
        return normalize.minmax(data).astype(np.float32)
    if method == "histeq":
        return normalize.histogram_equalize(data).astype(np.float32)
    raise InputError("normalize", f"{method!r}: use one of {list(NORMALIZERS)}")


def load_subject(row: dict, modalities=("t1",), label="label", weights=None, scheme=None,
                 normalize="zscore", raw_channels=()):
    """Load one cohort row into arrays (numpy; the function the pipelines call per volume).

    Args:
        row: a cohort row as a dict (absolute paths).
        modalities: cohort columns stacked as channels (e.g. ``("t1", "t2")``).
        label: label column, or ``None`` (then ``y`` is all zeros).
        weights: ``None`` (all ones), a column holding weight-map paths, or a callable
            ``weights(row, y) -> array`` with y's shape (e.g. a label budget).
        scheme: label scheme name: raw file values are remapped to class ids with
            ``tfneuro.io.get_scheme(scheme).remap``; ``None`` keeps the stored values.
        normalize: "zscore", "minmax", "histeq" or None, per modality.
        raw_channels: cohort columns appended after the modalities as stored, never
            normalised (e.g. a prior mask; :class:`~tfneuro.data.VolumeSource`).

    Returns:
        ``(x [X,Y,Z,C] float32, y [X,Y,Z] int32, w [X,Y,Z] float32)``.
    """
    from tfneuro.io import get_scheme, load_volume

    columns = list(modalities) + list(raw_channels)
    chans = []
    for i, m in enumerate(columns):
        path = row.get(m, "")
        if not path:
            raise InputError(f"subject {row.get('subject')}", f"no {m} image")
        raw = i >= len(modalities)  # an empty raw channel is valid (a mask that found nothing)
        data = np.asanyarray(load_volume(path, allow_empty=raw).dataobj).astype(np.float32)
        chans.append(normalize_volume(data, None if raw else normalize))
    shape = chans[0].shape
    for m, c in zip(columns, chans):
        if c.shape != shape:
            raise InputError(row.get(m), f"shape {c.shape} differs from {columns[0]} {shape}")
    x = np.stack(chans, axis=-1)
    if label:
        path = row.get(label, "")
        if not path:
            raise InputError(f"subject {row.get('subject')}", f"no {label} file")
        raw = np.asanyarray(load_volume(path, kind="label").dataobj)
        y = (get_scheme(scheme).remap(raw, source=path) if scheme
             else np.rint(raw)).astype(np.int32)
        if y.shape != shape:
            raise InputError(path, f"label shape {y.shape} differs from the image {shape}")
    else:
        y = np.zeros(shape, np.int32)
    if weights is None:
        w = np.ones(shape, np.float32)
    elif callable(weights):
        w = np.asarray(weights(row, y), np.float32)
    else:
        w = np.asanyarray(load_volume(row[weights]).dataobj).astype(np.float32) \
            if row.get(weights) else np.ones(shape, np.float32)
    if w.shape != shape:
        raise InputError(f"subject {row.get('subject')}", f"weight shape {w.shape} != {shape}")
    return x, y, w


def fit_shape(x, y, w, pad_to=None, multiple=None):
    """Centre pad (and, for ``pad_to``, centre crop) the volume to ``pad_to``, then zero-pad
    each spatial axis up to a multiple of ``multiple``."""
    if pad_to is not None:
        target = tuple(int(t) for t in pad_to)
        x, y, w = (pad_to_shape(a, target) for a in (x, y, w))
        start = [(s - t) // 2 for s, t in zip(y.shape, target)]
        sl = tuple(slice(a, a + t) for a, t in zip(start, target))
        x, y, w = x[sl], y[sl], w[sl]
    if multiple:
        target = tuple(-(-s // int(multiple)) * int(multiple) for s in y.shape)
        x, y, w = (pad_to_shape(a, target) for a in (x, y, w))
    return x, y, w


def prepare_rows(cohort, source: VolumeSource) -> list[dict]:
    """Validated cohort rows as dicts (``source.split`` only, if given); checks the columns."""
    split, modalities, label = source.split, source.modalities, source.label
    df = select_split(cohort, split) if split is not None else as_cohort(cohort)
    if df.empty:
        raise InputError(df.attrs.get("source", "cohort"), f"no subjects (split={split!r})")
    for c in list(modalities) + list(source.raw_channels) + ([label] if label else []):
        if c not in df.columns:
            raise InputError(df.attrs.get("source", "cohort"), f"no column {c!r}")
    columns = list(modalities) + list(source.raw_channels)
    if len(set(columns)) != len(columns) or not modalities:
        raise InputError("modalities", f"{modalities} + raw channels {source.raw_channels}: "
                                       f"give distinct cohort columns")
    return df.to_dict("records")


def decoded_volumes(cohort, source: VolumeSource, batching: Batching, *, two_arm: bool = False,
                    pad_to=None, multiple=None):
    """tf.data.Dataset of decoded volumes ``(x, y, w)``, one py_function call per subject.

    Shuffling is of whole subjects: before decoding without cache, after the cache with it
    (so the cached epoch is replayed in a new order).
    """
    import tensorflow as tf

    if two_arm and (len(source.modalities) != 2 or source.raw_channels):
        raise InputError("two_arm", f"needs exactly two modalities (t1, t2) and no raw channels, "
                                    f"got {source.modalities} + {source.raw_channels}")
    rows = prepare_rows(cohort, source)
    n = len(rows)
    c = source.channels
    known = tuple(int(s) for s in pad_to) if pad_to is not None else (None, None, None)
    shuffle, seed, cache = batching.shuffle, batching.seed, source.cache

    def _load(i):
        # a global name, looked up at call time (tests replace it to count the calls)
        x, y, w = load_subject(rows[int(i)], source.modalities, source.label, source.weights,
                               source.scheme, source.normalize, source.raw_channels)
        return fit_shape(x, y, w, pad_to, multiple)

    def load(i):
        x, y, w = tf.py_function(_load, [i], [tf.float32, tf.int32, tf.float32])
        return (tf.ensure_shape(x, known + (c,)), tf.ensure_shape(y, known),
                tf.ensure_shape(w, known))

    ds = tf.data.Dataset.range(n)
    if shuffle and not cache:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(load, num_parallel_calls=batching.num_parallel_calls or tf.data.AUTOTUNE,
                deterministic=seed is not None)
    if cache:
        ds = ds.cache() if cache is True else ds.cache(str(cache))
        if shuffle:
            ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    return ds


def cut_volumes(ds, fn, x_shape, y_shape, batching: Batching):
    """Map each decoded volume ``(x, y, w)`` with a seed that changes every epoch
    (reproducible from ``batching.seed``) through the numpy function
    ``fn(x, y, w, rng) -> (xs [N,...], ys, ws)`` in a ``tf.py_function``, declare the shapes
    (``x_shape`` / ``y_shape`` with a leading N) and ``unbatch`` into single elements."""
    import tensorflow as tf

    def _np(x, y, w, s):
        rng = np.random.default_rng(int(s.numpy()) & 0x7FFFFFFF)
        return fn(x.numpy(), y.numpy(), w.numpy(), rng)

    def cut(vol, s):
        xs, ys, ws = tf.py_function(_np, [*vol, s], [tf.float32, tf.int32, tf.float32])
        return (tf.ensure_shape(xs, x_shape), tf.ensure_shape(ys, y_shape),
                tf.ensure_shape(ws, y_shape))

    seeds = tf.data.Dataset.random(seed=batching.seed, rerandomize_each_iteration=True)
    return tf.data.Dataset.zip((ds, seeds)).map(
        cut, num_parallel_calls=batching.num_parallel_calls or tf.data.AUTOTUNE,
        deterministic=batching.seed is not None).unbatch()


def finish(ds, source: VolumeSource, batching: Batching, *, two_arm: bool = False):
    """Drop w when unused, split x into (t1, t2) arms, shuffle, batch, prefetch."""
    import tensorflow as tf

    b = batching
    if b.shuffle and b.shuffle_buffer and b.shuffle_buffer > 1:
        ds = ds.shuffle(b.shuffle_buffer, seed=b.seed, reshuffle_each_iteration=True)
    if b.batch_size:
        spec = ds.element_spec
        if all(s.shape.is_fully_defined() for s in spec):
            ds = ds.batch(b.batch_size, drop_remainder=b.drop_remainder)
        else:
            ds = ds.padded_batch(b.batch_size, drop_remainder=b.drop_remainder)
    has_weights = source.weights is not None

    def arrange(x, y, w):
        if two_arm:
            x = (x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:])
        return (x, y, w) if has_weights else (x, y)

    ds = ds.map(arrange, num_parallel_calls=tf.data.AUTOTUNE)
    if b.prefetch:
        ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds


def volume_dataset(cohort, *, pad_to=None, multiple=None, two_arm: bool = False,
                   source: VolumeSource | None = None, batching: Batching | None = None,
                   **fields):
    """Whole volumes for evaluation, in cohort order (no shuffling, no augmentation).

    TensorFlow-only (tf.data). Elements: ``(x [X,Y,Z,C], y [X,Y,Z])`` or with weights
    ``(x, y, w)``; ``two_arm=True`` (two modalities) gives ``x = (t1 [..,1], t2 [..,1])``.

    Args:
        cohort: DataFrame or CSV path.
        pad_to: fixed spatial shape (centre pad/crop), else sizes vary per subject.
        multiple: zero-pad each axis to a multiple of this.
        two_arm: split the two modalities into a tuple (InfiNet).
        source: what each subject contributes (:class:`~tfneuro.data.VolumeSource`).
        batching: :class:`~tfneuro.data.Batching` (``batch_size``: ``padded_batch`` when
            shapes vary; shuffling is always off here).
        **fields: fields of ``source`` or ``batching`` (e.g. ``modalities=("t1", "t2")``,
            ``batch_size=2``).
    """
    source, batching = split_options(source, batching, fields, shuffle_buffer=0)
    batching = dataclasses.replace(batching, shuffle=False)
    ds = decoded_volumes(cohort, source, batching, two_arm=two_arm, pad_to=pad_to,
                         multiple=multiple)
    return finish(ds, source, batching, two_arm=two_arm)
