"""Which floating-point precision a model runs at: the one place ``"auto"`` is decided.

``precision`` is one of :data:`PRECISIONS`:

* ``"float32"``: everything in float32 (the reference);
* ``"bfloat16"``: convolutions, matmuls and activations in bfloat16, weights kept in float32
  (Keras ``mixed_bfloat16``); softmax, view aggregation, window blending and argmax stay
  float32 (:mod:`tfneuro.inference.precision`);
* ``"float16"``: the same with float16 (Keras ``mixed_float16``), for GPUs with tensor cores;
  on a CPU it is emulated and slow;
* ``"auto"``: ``"bfloat16"`` where the hardware that runs the model computes bfloat16
  natively, else ``"float32"`` (:func:`resolve_precision`). The environment variable
  ``TFNEURO_PRECISION`` (``float32``, ``bfloat16`` or ``float16``) overrides what ``"auto"``
  means in a process, e.g. ``TFNEURO_PRECISION=float32`` for float32 everywhere.

Native bfloat16: when a GPU is visible the model runs there, so the GPU decides (compute
capability 8.0 or newer: Ampere, Hopper, ...); otherwise the CPU decides, by its
``avx512_bf16`` (AVX512-BF16: Cooper Lake, Zen 4 and newer) or ``amx_bf16`` (AMX: Sapphire
Rapids and newer) flag in ``/proc/cpuinfo``. A CPU without them emulates bfloat16 and gets
slower, not faster (issue 17). Non-Linux CPUs (no ``/proc/cpuinfo``) count as without.

No TensorFlow import at module level; :meth:`Hardware.detect` asks the Keras backend (TF or
JAX) for its GPUs.
"""

from __future__ import annotations

import dataclasses
import functools
import os

from tfneuro.errors import InputError

__all__ = ["PRECISIONS", "KERAS_POLICIES", "BFLOAT16_CPU_FLAGS", "Hardware", "cpu_flags",
           "resolve_precision", "check_precision"]

PRECISIONS = ("auto", "float32", "bfloat16", "float16")
#: Keras dtype policy of each concrete precision (weights stay float32 in the mixed ones).
KERAS_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
#: ``/proc/cpuinfo`` flags of CPUs that compute bfloat16 natively.
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
#: Oldest NVIDIA compute capability with bfloat16 tensor-core math (Ampere).
BFLOAT16_GPU_CAPABILITY = (8, 0)
ENV = "TFNEURO_PRECISION"


@functools.lru_cache(maxsize=1)
def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset:
    """The CPU's feature flags (the first ``flags`` line of ``/proc/cpuinfo``); empty where
    the file does not exist."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def _gpu_capability():
    """``(major, minor)`` compute capability of the first GPU the Keras backend sees, ``(0, 0)``
    for a GPU that does not say, or ``None`` without a GPU."""
    import keras

    if keras.backend.backend() == "jax":
        try:
            import jax
        except ImportError:  # Keras' JAX backend itself needs it
            raise InputError("KERAS_BACKEND", "jax needs JAX: pip install 'tfneuro[jax]'") from None

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        if not gpus:
            return None
        cc = str(getattr(gpus[0], "compute_capability", "0.0")).split(".")
        return tuple(int(c) for c in (cc + ["0"])[:2])
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    cc = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability")
    return tuple(cc) if cc else (0, 0)


@dataclasses.dataclass(frozen=True)
class Hardware:
    """What :func:`resolve_precision` looks at (tests build one by hand).

    Attributes:
        cpu_flags: the CPU's feature flags (``/proc/cpuinfo``).
        gpu_capability: ``(major, minor)`` of the GPU that runs the model, or ``None``.
    """

    cpu_flags: frozenset = frozenset()
    gpu_capability: tuple | None = None

    @classmethod
    def detect(cls) -> "Hardware":
        """This machine: :func:`cpu_flags` and the Keras backend's first GPU."""
        return cls(cpu_flags(), _gpu_capability())

    @property
    def cpu_bfloat16_flags(self) -> tuple:
        """The native-bfloat16 flags this CPU has (a subset of :data:`BFLOAT16_CPU_FLAGS`)."""
        return tuple(f for f in BFLOAT16_CPU_FLAGS if f in self.cpu_flags)

    @property
    def native_bfloat16(self) -> bool:
        """Whether the device that runs the model (the GPU if any, else the CPU) computes
        bfloat16 natively."""
        if self.gpu_capability is not None:
            return tuple(self.gpu_capability) >= BFLOAT16_GPU_CAPABILITY
        return bool(self.cpu_bfloat16_flags)

    def describe(self) -> str:
        """One line for logs and benchmark output."""
        if self.gpu_capability is not None:
            dev = "GPU compute capability {}.{}".format(*self.gpu_capability)
        else:
            dev = f"CPU bfloat16 flags: {', '.join(self.cpu_bfloat16_flags) or 'none'}"
        return f"{dev}; native bfloat16: {'yes' if self.native_bfloat16 else 'no'}"


def check_precision(precision, source: str = "precision") -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else :class:`InputError` naming
    ``source``."""
    if precision not in PRECISIONS:
        raise InputError(source, f"must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    return precision


def resolve_precision(precision: str = "auto", hardware: Hardware | None = None, *,
                      source: str = "precision") -> str:
    """The concrete precision (``"float32"``, ``"bfloat16"`` or ``"float16"``) to run at.

    Args:
        precision: one of :data:`PRECISIONS`; anything but ``"auto"`` is returned as it is.
        hardware: what to decide ``"auto"`` on (default: :meth:`Hardware.detect`, this
            machine); ignored when ``$TFNEURO_PRECISION`` is set.
        source: the argument or flag named in errors.

    Raises:
        InputError: an unknown precision (naming ``source``) or an unknown
            ``$TFNEURO_PRECISION``.
    """
    check_precision(precision, source)
    if precision != "auto":
        return precision
    forced = os.environ.get(ENV, "").strip()
    if forced and forced != "auto":
        return check_precision(forced, f"${ENV}")
    hardware = Hardware.detect() if hardware is None else hardware
    return "bfloat16" if hardware.native_bfloat16 else "float32"
