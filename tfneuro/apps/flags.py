"""absl flag groups shared by the ``experiments/*.py`` entry points, and what they become.

Usage in an experiment script::

    from absl import flags
    from tfneuro.apps import flags as aflags

    aflags.define_experiment_flags()                     # --cohort, --out, --synth_*, --label_scheme
    aflags.define_training_flags(epochs=20, batch_size=8, learning_rate=1e-2)
    FLAGS = flags.FLAGS

    def main(argv):
        config = aflags.config_from_flags()              # validated TrainingConfig
        df = aflags.cohort_from_flags(out_dir=out, modalities=("t1",))

Training flags: ``--seed``, ``--deterministic``, ``--xla`` / ``--noxla`` (default: auto, on
for GPU), ``--mixed_precision=auto|float32|bfloat16|float16`` (``--mixed_precision`` alone is
float16 and ``--nomixed_precision`` float32, as when it was a boolean), ``--strategy``
(default | mirrored | multi_worker), ``--resume``, ``--epochs``, ``--batch_size``,
``--learning_rate``, ``--tensorboard``.
Cohort flags (:func:`define_experiment_flags`): ``--cohort`` (a cohort CSV; default: the
built-in synthetic cohort, made in ``<out>/cohort`` from ``--synth_subjects``,
``--synth_spacing`` and ``--seed``), ``--out`` and ``--label_scheme``. 3D flags
(:func:`define_unet3d_flags`): ``--modalities``, ``--base_filters``, ``--depth``,
``--patch_size``, ``--patches_per_volume``, ``--distances``.
"""

from __future__ import annotations

from absl import flags

from tfneuro.apps.checks import check_pad_multiple
from tfneuro.data.load import load_cohort
from tfneuro.errors import InputError
from tfneuro.io.labels import get_scheme
from tfneuro.training.runtime import STRATEGIES, TrainingConfig
from tfneuro.utils.precision import PRECISIONS

__all__ = ["define_training_flags", "config_from_flags", "define_experiment_flags",
           "define_unet3d_flags", "seed_value", "cohort_from_flags", "patch_size_from_flags"]

class _MixedPrecisionParser(flags.ArgumentParser):
    """``auto|float32|bfloat16|float16``; the boolean words of the former boolean flag map to
    ``float16`` (true: ``--mixed_precision``) and ``float32`` (false: ``--nomixed_precision``)."""

    _WORDS = {"true": "float16", "t": "float16", "1": "float16",
              "false": "float32", "f": "float32", "0": "float32"}

    def parse(self, argument):
        if isinstance(argument, bool):
            return "float16" if argument else "float32"
        text = self._WORDS.get(str(argument).strip().lower(), str(argument).strip().lower())
        if text not in PRECISIONS:
            raise ValueError(f"must be one of {', '.join(PRECISIONS)} (or --[no]mixed_precision), "
                             f"got {argument!r}")
        return text

    def flag_type(self):
        return "string"


class _MixedPrecisionFlag(flags.Flag):
    """A flag that takes a value (``--mixed_precision=bfloat16``) yet, like a boolean flag,
    also stands alone (``--mixed_precision``) or negated (``--nomixed_precision``)."""

    def __init__(self, name, default, help_string, **kwargs):
        super().__init__(_MixedPrecisionParser(), flags.ArgumentSerializer(), name, default,
                         help_string, boolean=True, **kwargs)

    def _serialize(self, value):
        return "" if value is None else f"--{self.name}={value}"


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
    flags.DEFINE_flag(_MixedPrecisionFlag(
        "mixed_precision", "float32", "Compute precision of training: auto (bfloat16 where the "
        "CPU (avx512_bf16 / amx_bf16) or GPU has it natively, else float32), float32, bfloat16 "
        "(mixed_bfloat16) or float16 (mixed_float16, dynamic loss scaling). Give it as "
        "--mixed_precision=VALUE; --mixed_precision alone means float16 and "
        "--nomixed_precision float32. Weights, final softmax and losses stay float32."),
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
    flags.DEFINE_boolean("tensorboard", True, "Write TensorBoard logs to OUT/tensorboard (epoch "
                         "scalars; graphs and histograms too with pip install "
                         "'tfneuro[tensorboard]').", flag_values=fv)


def config_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> TrainingConfig:
    """Turn the parsed shared flags into a validated :class:`TrainingConfig`.

    Raises:
        InputError: naming the flag, for bad combinations (e.g. --deterministic without
            --seed, --strategy=multi_worker without TF_CONFIG).
    """
    values = {name: flag_values[name].value for name in _NAMES}
    return TrainingConfig(**values).validate()


def define_experiment_flags(*, synth_subjects: int = 8, synth_spacing: float = 2.0,
                            label_scheme: str = "tissue4",
                            flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Define ``--cohort``, ``--out``, ``--synth_subjects``, ``--synth_spacing`` and
    ``--label_scheme`` (once per process; a second call is a no-op).

    Args:
        synth_subjects: default number of synthetic subjects when no ``--cohort`` is given.
        synth_spacing: default synthetic voxel size (mm).
        label_scheme: default ``--label_scheme``.
        flag_values: where to define them.
    """
    if "cohort" in flag_values:
        return
    fv = flag_values
    flags.DEFINE_string("cohort", None, "Cohort CSV (columns subject,t1,t2,label,age_months,"
                        "split; paths relative to the CSV). Default: the built-in synthetic "
                        "infant cohort, generated in OUT/cohort (reused when it exists).",
                        flag_values=fv)
    flags.DEFINE_string("out", None, "Output directory (created). Must not hold the inputs.",
                        flag_values=fv)
    flags.DEFINE_integer("synth_subjects", synth_subjects, "Synthetic cohort: number of "
                         "subjects (used without --cohort).", lower_bound=1, flag_values=fv)
    flags.DEFINE_float("synth_spacing", synth_spacing, "Synthetic cohort: isotropic voxel "
                       "size in mm.", lower_bound=0.5, flag_values=fv)
    flags.DEFINE_string("label_scheme", label_scheme, "Label scheme of the cohort's label "
                        "files (tfneuro.io.labels: tissue4, iseg2017, drawem9, drawem87, "
                        "neobrains12, mrbrains13).", flag_values=fv)


def seed_value(flag_values: flags.FlagValues = flags.FLAGS, default: int = 0) -> int:
    """``--seed`` when it is defined and set, else ``default``."""
    if "seed" in flag_values and flag_values["seed"].value is not None:
        return int(flag_values["seed"].value)
    return default


def cohort_from_flags(flag_values: flags.FlagValues = flags.FLAGS, *, out_dir=None,
                      scheme=None, **kwargs):
    """:func:`tfneuro.data.load_cohort` from ``--cohort``, ``--synth_subjects``,
    ``--synth_spacing``, ``--seed`` and ``--label_scheme`` (unless ``scheme`` is given).

    Args:
        flag_values: parsed flags (:func:`define_experiment_flags`).
        out_dir: the run's output directory (for the synthetic cohort).
        scheme: label scheme; default ``--label_scheme`` (an unknown one names the flag).
        **kwargs: further :func:`~tfneuro.data.load_cohort` arguments (``modalities``,
            ``label``, ``require_age``, ``min_subjects``, ``deep``, ``show_progress``).
    """
    fv = flag_values
    if scheme is None:
        scheme = fv["label_scheme"].value
        try:
            get_scheme(scheme)
        except InputError as e:
            raise InputError("--label_scheme", e.problem) from None
    return load_cohort(fv["cohort"].value or None, out_dir=out_dir, scheme=scheme,
                       synth_subjects=int(fv["synth_subjects"].value),
                       synth_spacing=float(fv["synth_spacing"].value), seed=seed_value(fv),
                       **kwargs)


def define_unet3d_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Flags of the paper-002 3D experiments: ``--modalities`` (t1,t2), ``--base_filters``
    (32), ``--depth`` (5), ``--patch_size`` (96,96,96), ``--patches_per_volume`` (4) and
    ``--distances`` (once per process)."""
    if "patch_size" in flag_values:
        return
    fv = flag_values
    flags.DEFINE_list("modalities", ["t1", "t2"], "Cohort image columns used as channels "
                      "(paper 002: T1, T2).", flag_values=fv)
    flags.DEFINE_integer("base_filters", 32, "Channels of the first level (paper 002 / "
                         "DynUNet: 32).", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("depth", 5, "Resolution levels incl. the bottleneck (paper 002: 5).",
                         lower_bound=3, flag_values=fv)
    flags.DEFINE_list("patch_size", ["96", "96", "96"], "Training patch and inference window "
                      "size (multiples of 2**(depth-1)).", flag_values=fv)
    flags.DEFINE_integer("patches_per_volume", 4, "Patches per volume per epoch.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_bool("distances", True, "Compute HD95 and MSD in the results.", flag_values=fv)


def patch_size_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> tuple:
    """``--patch_size`` as three ints, checked against ``2 ** (--depth - 1)``."""
    try:
        patch = tuple(int(p) for p in flag_values["patch_size"].value)
    except ValueError:
        raise InputError("--patch_size", f"{flag_values['patch_size'].value}: not integers") from None
    return check_pad_multiple(patch, 2 ** (int(flag_values["depth"].value) - 1))
