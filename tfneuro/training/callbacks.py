"""Keras callbacks of the training loop: a per-epoch progress bar and TensorBoard scalars
that need only TensorFlow."""

from __future__ import annotations

import os

import keras
import numpy as np

from tfneuro.utils.progress import progress

__all__ = ["ProgressBar", "EpochScalars", "tensorboard_callback"]


class ProgressBar(keras.callbacks.Callback):
    """Per-epoch tqdm bar (``tfneuro.utils.progress``) showing ``epoch e/E`` and the loss.

    The bar's total is Keras' ``steps`` (``steps_per_epoch`` or a dataset of known cardinality);
    when Keras does not know it (``py_function`` pipelines of unknown length), the number of
    batches of the previous epoch is used from the second epoch on (the first has no total).

    Args:
        epochs: total epochs of the run (shown as ``e/E``).
    """

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs
        self._bar = None
        self._batches = 0  # batches seen in the current epoch
        self._last_steps = None

    def on_epoch_begin(self, epoch, logs=None):
        total = self.params.get("steps") or self._last_steps
        self._batches = 0
        self._bar = progress(total=total, desc=f"epoch {epoch + 1}/"
                             f"{self.epochs}", unit="batch")

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1
        if self._bar is not None:
            self._bar.update(1)
            if logs and "loss" in logs:
                self._bar.set_postfix(loss=f"{float(logs['loss']):.4f}", refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        if self._bar is not None:
            if logs:
                self._bar.set_postfix({k: f"{float(v):.4f}" for k, v in logs.items()
                                       if np.ndim(v) == 0}, refresh=False)
            self._last_steps = self._batches or None
            self._bar.close()
            self._bar = None


class EpochScalars(keras.callbacks.Callback):
    """Per-epoch scalars (losses, metrics, learning rate) as TensorBoard event files.

    Written with ``tf.summary.write`` and the ``scalars`` plugin metadata, which needs only
    TensorFlow: the ``tensorboard`` package (required by ``keras.callbacks.TensorBoard``)
    is not always installed. Training logs go to ``log_dir/train``, ``val_*`` logs to
    ``log_dir/validation``, as Keras' TensorBoard callback does.

    Args:
        log_dir: directory of the event files.
    """

    def __init__(self, log_dir):
        super().__init__()
        self.log_dir = os.fspath(log_dir)
        self._writers = {}

    def _writer(self, name):
        import tensorflow as tf

        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(
                os.path.join(self.log_dir, name))
        return self._writers[name]

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        meta = tf.compat.v1.SummaryMetadata(
            plugin_data=tf.compat.v1.SummaryMetadata.PluginData(plugin_name="scalars"))
        logs = dict(logs or {})
        opt = getattr(self.model, "optimizer", None)
        if opt is not None:
            logs.setdefault("learning_rate", float(np.asarray(opt.learning_rate)))
        for key, value in logs.items():
            if np.ndim(value) != 0:
                continue
            split, tag = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            with self._writer(split).as_default():
                tf.summary.write(f"epoch_{tag}", tf.constant(float(value), tf.float32),
                                 step=epoch, metadata=meta)
        for w in self._writers.values():
            w.flush()

    def on_train_end(self, logs=None):
        for w in self._writers.values():
            w.close()
        self._writers = {}


def tensorboard_callback(log_dir):
    """``keras.callbacks.TensorBoard`` when the ``tensorboard`` package is installed (the
    ``tfneuro[tensorboard]`` extra), else :class:`EpochScalars` (same directory layout, epoch
    scalars only)."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return EpochScalars(log_dir)
    return keras.callbacks.TensorBoard(os.fspath(log_dir), write_graph=False)
