"""Run configuration: seed and op determinism, XLA, mixed precision, tf.distribute strategy.

TensorFlow-only (tf.config, tf.distribute): this module is the TF-backend training engine.
:class:`TrainingConfig` holds the settings that every experiment shares (see
:mod:`tfneuro.training.flags` for the matching absl flags); :func:`setup_runtime` applies
them once, at the start of a program, and returns the ``tf.distribute.Strategy`` under whose
``scope()`` the model must be built and compiled.
"""

from __future__ import annotations

import dataclasses
import json
import os

from tfneuro.errors import InputError
from tfneuro.utils.precision import KERAS_POLICIES, check_precision, resolve_precision

__all__ = ["TrainingConfig", "STRATEGIES", "setup_runtime", "make_strategy", "resolve_xla",
           "is_chief", "gpu_available"]

STRATEGIES = ("default", "mirrored", "multi_worker")


@dataclasses.dataclass
class TrainingConfig:
    """Settings shared by every training entry point.

    Args:
        seed: global seed (python, numpy, TF, Keras); ``None`` = not seeded.
        deterministic: enable TF op determinism (needs ``seed``); with it, an interrupted and
            resumed run ends with exactly the weights of an uninterrupted one.
        xla: compile the train step with XLA (``jit_compile``); ``None`` = on when a GPU is
            visible, off on CPU (measured: XLA made a 3D U-Net forward about 5.6x slower on
            the 2-core build CPU, issue 6).
        mixed_precision: ``"float32"`` (default), ``"bfloat16"`` (Keras ``mixed_bfloat16``),
            ``"float16"`` (``mixed_float16``; ``model.compile`` wraps the optimizer in a
            ``LossScaleOptimizer``) or ``"auto"`` (bfloat16 where the CPU or GPU computes it
            natively, else float32: :func:`tfneuro.utils.precision.resolve_precision`).
            ``True`` / ``False`` mean ``"float16"`` / ``"float32"`` (the former boolean
            flag). Models keep their final softmax in float32 and the losses compute in
            float32; the weights stay float32.
        strategy: ``"default"`` (one device), ``"mirrored"`` (all local GPUs) or
            ``"multi_worker"`` (``tf.distribute.MultiWorkerMirroredStrategy``; the cluster comes
            from the ``TF_CONFIG`` environment variable).
        resume: continue from the last complete checkpoint in the output directory.
        epochs: epochs to train (``None`` = the recipe's).
        batch_size: global batch size (``None`` = the recipe's).
        learning_rate: initial learning rate (``None`` = the recipe's).
        tensorboard: write TensorBoard logs.
    """

    seed: int | None = None
    deterministic: bool = False
    xla: bool | None = None
    mixed_precision: str | bool = "float32"
    strategy: str = "default"
    resume: bool = False
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    tensorboard: bool = True

    def __post_init__(self):
        if isinstance(self.mixed_precision, bool) or self.mixed_precision is None:
            self.mixed_precision = "float16" if self.mixed_precision else "float32"

    def validate(self) -> "TrainingConfig":
        """Check the settings; raise one :class:`InputError` naming the flag."""
        check_precision(self.mixed_precision, "--mixed_precision")
        if self.strategy not in STRATEGIES:
            raise InputError("--strategy", f"unknown strategy {self.strategy!r}; choose one of "
                                           f"{', '.join(STRATEGIES)}")
        if self.deterministic and self.seed is None:
            raise InputError("--deterministic", "deterministic ops need --seed")
        if self.seed is not None and not (0 <= int(self.seed) < 2**32):
            raise InputError("--seed", f"must be in [0, 2**32), got {self.seed!r}")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"--{name}", f"must be >= 1, got {value!r}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise InputError("--learning_rate", f"must be > 0, got {self.learning_rate!r}")
        if self.strategy == "multi_worker":
            _check_tf_config()
        return self

    @property
    def jit_compile(self) -> bool:
        """The ``jit_compile`` value for ``model.compile`` (see ``xla``)."""
        return resolve_xla(self.xla)

    @property
    def dtype_policy(self) -> str:
        """The Keras global dtype policy ``mixed_precision`` resolves to on this machine."""
        return KERAS_POLICIES[resolve_precision(self.mixed_precision, source="--mixed_precision")]

    def compile_kwargs(self) -> dict:
        """Keyword arguments for ``model.compile`` that come from this configuration."""
        return {"jit_compile": self.jit_compile}


def gpu_available() -> bool:
    """True when TensorFlow sees at least one GPU."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def resolve_xla(xla: bool | None) -> bool:
    """``xla`` if set, else True on GPU and False on CPU."""
    return gpu_available() if xla is None else bool(xla)


def _check_tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise InputError("TF_CONFIG", "--strategy=multi_worker needs the TF_CONFIG environment "
                                      "variable (cluster and task)")
    try:
        conf = json.loads(raw)
    except json.JSONDecodeError as e:
        raise InputError("TF_CONFIG", f"not valid JSON ({e.msg})") from None
    cluster, task = conf.get("cluster"), conf.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise InputError("TF_CONFIG", "has no 'cluster' mapping")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise InputError("TF_CONFIG", "has no 'task' with 'type' and 'index'")
    members = cluster.get(task["type"])
    if not isinstance(members, list) or not 0 <= int(task["index"]) < len(members):
        raise InputError("TF_CONFIG", f"task {task} is not in the cluster {cluster}")
    return conf


def make_strategy(name: str = "default"):
    """Create the ``tf.distribute.Strategy`` named by ``--strategy``.

    Create it at the start of the program, before other TensorFlow work (a requirement of
    ``MultiWorkerMirroredStrategy``).
    """
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        _check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise InputError("--strategy", f"unknown strategy {name!r}; choose one of "
                                   f"{', '.join(STRATEGIES)}")


def setup_runtime(config: TrainingConfig):
    """Apply ``config`` to this process and return the distribution strategy.

    Order matters: op determinism and the strategy come before any other TF work; then the
    seeds; then the mixed-precision policy (before the model is built).

    Returns:
        The ``tf.distribute.Strategy``: build and compile the model in ``strategy.scope()``.
    """
    import keras
    import tensorflow as tf

    config.validate()
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    strategy = make_strategy(config.strategy)
    if config.seed is not None:
        keras.utils.set_random_seed(int(config.seed))
    keras.mixed_precision.set_global_policy(config.dtype_policy)
    return strategy


def is_chief(strategy=None) -> bool:
    """True unless this process is a non-chief worker of a multi-worker cluster.

    The chief writes checkpoints and logs; other workers train but write nothing. Without a
    ``chief`` task in the cluster, worker 0 is the chief (TF's convention).
    """
    resolver = getattr(strategy, "cluster_resolver", None) if strategy is not None else None
    if resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type is None or task_type == "chief":
        return True
    if task_type == "worker":
        spec = resolver.cluster_spec().as_dict()
        return "chief" not in spec and int(task_id or 0) == 0
    return False
