"""Epoch-based learning-rate schedules from the papers, applied per optimizer step.

The papers state their schedules per epoch; Keras calls a ``LearningRateSchedule`` with the
optimizer's step counter. Each schedule here therefore takes ``steps_per_epoch`` and computes
``epoch = floor(step / steps_per_epoch)``, so the rate is constant within an epoch and changes
at epoch boundaries exactly as an epoch-wise scheduler (e.g. PyTorch's ``LambdaLR`` stepped
once per epoch) would. Because the optimizer's ``iterations`` counter is part of every
checkpoint (see :mod:`tfneuro.training.loop`), a resumed run continues the schedule where it
stopped.

Both schedules are written with ``keras.ops`` and are Keras-serializable
(``keras.optimizers.schedules.serialize`` / ``deserialize`` and ``.keras`` files).
"""

from __future__ import annotations

import keras
from keras import ops

from tfneuro.errors import InputError

__all__ = ["PolyDecay", "StepDecay"]


def _check_positive(name, value, integer=False):
    if integer and (int(value) != value):
        raise InputError(name, f"must be an integer, got {value!r}")
    if not value > 0:
        raise InputError(name, f"must be > 0, got {value!r}")


@keras.saving.register_keras_serializable(package="tfneuro")
class PolyDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Polynomial ("poly") decay per epoch: ``lr0 * (1 - epoch / max_epochs) ** power``.

    Paper 002 (002_7b615860cc51c69e.txt, section 2, "Pipeline Design"): "a scheduler which
    decays the learning rate via the scheme (1 - epoch/epoch_max)^0.9", initial rate 1e-2.
    ``epoch`` is the 0-based index of the current epoch, so the first epoch uses ``lr0``.
    Epochs past ``max_epochs`` use rate 0 (the base is clipped at 0, avoiding NaN).

    Args:
        initial_learning_rate: ``lr0`` (paper 002: 1e-2).
        max_epochs: ``epoch_max``, the total number of epochs of the run.
        steps_per_epoch: optimizer steps in one epoch (batches per epoch).
        power: exponent (paper 002: 0.9).
    """

    def __init__(self, initial_learning_rate=1e-2, max_epochs=100, steps_per_epoch=1,
                 power=0.9, name="PolyDecay"):
        _check_positive("initial_learning_rate", initial_learning_rate)
        _check_positive("max_epochs", max_epochs, integer=True)
        _check_positive("steps_per_epoch", steps_per_epoch, integer=True)
        _check_positive("power", power)
        self.initial_learning_rate = float(initial_learning_rate)
        self.max_epochs = int(max_epochs)
        self.steps_per_epoch = int(steps_per_epoch)
        self.power = float(power)
        self.name = name

    def __call__(self, step):
        step = ops.cast(step, "float32")
        epoch = ops.floor(step / float(self.steps_per_epoch))
        base = ops.maximum(1.0 - epoch / float(self.max_epochs), 0.0)
        return self.initial_learning_rate * ops.power(base, self.power)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "max_epochs": self.max_epochs, "steps_per_epoch": self.steps_per_epoch,
                "power": self.power, "name": self.name}


@keras.saving.register_keras_serializable(package="tfneuro")
class StepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Step decay per epoch: ``lr0 * factor ** floor(epoch / drop_every)``.

    Paper 003 (003_8dd6f4193dee9d40.txt, section 3, "Network Configuration"): "The learning
    rate was initially set to 0.01 and decreased by one order after every 10 epochs", i.e.
    ``lr0=0.01, factor=0.1, drop_every=10``. ``epoch`` is 0-based: epochs 0..9 use ``lr0``,
    epochs 10..19 use ``0.1 * lr0``, and so on.

    Args:
        initial_learning_rate: ``lr0`` (paper 003: 0.01).
        steps_per_epoch: optimizer steps in one epoch.
        drop_every: epochs between drops (paper 003: 10).
        factor: multiplier at each drop (paper 003: 0.1, "one order").
    """

    def __init__(self, initial_learning_rate=0.01, steps_per_epoch=1, drop_every=10,
                 factor=0.1, name="StepDecay"):
        _check_positive("initial_learning_rate", initial_learning_rate)
        _check_positive("steps_per_epoch", steps_per_epoch, integer=True)
        _check_positive("drop_every", drop_every, integer=True)
        _check_positive("factor", factor)
        self.initial_learning_rate = float(initial_learning_rate)
        self.steps_per_epoch = int(steps_per_epoch)
        self.drop_every = int(drop_every)
        self.factor = float(factor)
        self.name = name

    def __call__(self, step):
        step = ops.cast(step, "float32")
        epoch = ops.floor(step / float(self.steps_per_epoch))
        drops = ops.floor(epoch / float(self.drop_every))
        return self.initial_learning_rate * ops.power(self.factor, drops)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "steps_per_epoch": self.steps_per_epoch, "drop_every": self.drop_every,
                "factor": self.factor, "name": self.name}
