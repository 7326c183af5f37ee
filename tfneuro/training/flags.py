"""absl flags shared by every ``experiments/*.py`` training script, and the config they make.

Usage in an experiment script::

    from absl import flags
    from tfneuro.training import flags as tflags

    tflags.define_training_flags(epochs=20, batch_size=8, learning_rate=1e-2)
    FLAGS = flags.FLAGS

    def main(argv):
        config = tflags.config_from_flags()      # validated TrainingConfig
        strategy = setup_runtime(config)

Flags: ``--seed``, ``--deterministic``, ``--xla`` / ``--noxla`` (default: auto, on for GPU),
``--mixed_precision``, ``--strategy`` (default | mirrored | multi_worker), ``--resume``,
``--epochs``, ``--batch_size``, ``--learning_rate``, ``--tensorboard``.
"""

from __future__ import annotations

from absl import flags

from tfneuro.training.runtime import STRATEGIES, TrainingConfig

__all__ = ["define_training_flags", "config_from_flags"]

_NAMES = ("seed", "deterministic", "xla", "mixed_precision", "strategy", "resume", "epochs",
          "batch_size", "learning_rate", "tensorboard")


def define_training_flags(*, epochs: int | None = None, batch_size: int | None = None,
                          learning_rate: float | None = None, seed: int | None = None,
                          flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Define the shared training flags (once per process; a second call is a no-op).

    Args:
        epochs: default of ``--epochs`` (the script's paper value).
        batch_size: default of ``--batch_size``.
        learning_rate: default of ``--learning_rate``.
        seed: default of ``--seed``.
        flag_values: the ``FlagValues`` to define them in (tests pass a fresh one).
    """
    if "strategy" in flag_values:
        return
    fv = flag_values
    flags.DEFINE_integer("seed", seed, "Global random seed (python, numpy, TF, Keras). With "
                         "--deterministic, reruns and resumed runs give identical weights.",
                         flag_values=fv)
    flags.DEFINE_boolean("deterministic", False, "Enable TF op determinism (needs --seed; "
                         "slower on GPU).", flag_values=fv)
    flags.DEFINE_boolean("xla", None, "Compile the training step with XLA (jit_compile). "
                         "Default: on when a GPU is visible, off on CPU (XLA made a 3D U-Net "
                         "forward ~5.6x slower on a 2-core CPU).", flag_values=fv)
    flags.DEFINE_boolean("mixed_precision", False, "Train with the Keras mixed_float16 policy "
                         "(final softmax and losses stay float32; dynamic loss scaling).",
                         flag_values=fv)
    flags.DEFINE_enum("strategy", "default", list(STRATEGIES), "tf.distribute strategy: "
                      "default (one device), mirrored (all local GPUs), multi_worker "
                      "(MultiWorkerMirroredStrategy; cluster from the TF_CONFIG env var).",
                      flag_values=fv)
    flags.DEFINE_boolean("resume", False, "Continue from the last complete checkpoint in the "
                         "output directory (a checkpoint is written every epoch).",
                         flag_values=fv)
    flags.DEFINE_integer("epochs", epochs, "Epochs to train.", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("batch_size", batch_size, "Global batch size.", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_float("learning_rate", learning_rate, "Initial learning rate.",
                       flag_values=fv)
    flags.DEFINE_boolean("tensorboard", True, "Write TensorBoard logs to OUT/tensorboard.",
                         flag_values=fv)


def config_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> TrainingConfig:
    """Turn the parsed shared flags into a validated :class:`TrainingConfig`.

    Raises:
        InputError: naming the flag, for bad combinations (e.g. --deterministic without
            --seed, --strategy=multi_worker without TF_CONFIG).
    """
    values = {name: flag_values[name].value for name in _NAMES}
    return TrainingConfig(**values).validate()
