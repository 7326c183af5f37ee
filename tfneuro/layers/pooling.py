"""Index-preserving 2D max pooling and unpooling (QuickNAT, paper 001; InfiNet, paper 003).

QuickNAT (paper 001, "QuickNAT ... enhanced by unpooling layers") and InfiNet (paper 003,
"the pooled indices computed in the max-pooling layers ... perform non-linear learning-free
upsampling") pool with max pooling, keep *where* each maximum was, and let the decoder put
every pooled value back at that position with zeros elsewhere.

Index convention (shared by both implementations, so any pooling path pairs with the
unpooling layer):

* windows are non-overlapping (``strides == pool_size``) and follow TensorFlow's ``SAME``
  padding: a spatial size ``H`` gives ``ceil(H / p)`` windows; the ``ceil(H/p)*p - H`` missing
  rows are split as TensorFlow does (``pad_before = total // 2``, the rest after), so edge
  windows are cut and never select a padded position;
* ``indices`` is an ``int32`` tensor shaped like ``pooled`` holding the position of the maximum
  *inside its window*, in row-major window order: ``dy * pool_w + dx``;
* ties: the FIRST maximum in row-major window order wins. This is what
  ``tf.nn.max_pool_with_argmax`` does on CPU (checked in tests/test_layers_pooling.py) and what
  ``argmax`` does, so both paths agree exactly;
* the gradient of ``pooled`` flows only to the selected position (as
  ``tf.nn.max_pool_with_argmax``'s gradient does), never split between tied values.

Implementations (``impl``):

* ``"tf"`` -- TensorFlow only: ``tf.nn.max_pool_with_argmax`` (fast fused CPU/GPU kernel); its
  flat indices are converted to the window convention above. It has NO XLA kernel
  ("No registered 'MaxPoolWithArgmax' OpKernel for XLA_CPU_JIT"), so it cannot run under
  ``jit_compile=True``.
* ``"xla"`` -- pure ``keras.ops``: the input is padded (with the dtype's lowest finite value),
  reshaped to ``[B, OH, OW, ph*pw, C]`` windows, ``argmax`` picks the first maximum and the
  pooled value is selected with a one-hot mask. Compiles under XLA and builds on any backend.
* ``"auto"`` (default) -- ``"tf"`` when the backend is TensorFlow AND the layer is being
  traced outside an XLA context; ``"xla"`` under a non-TensorFlow backend or when called inside
  ``tf.function(jit_compile=True)`` (which includes ``model.compile(jit_compile=True)``: Keras
  wraps its train/predict steps in such a function). Detection uses TensorFlow's own test
  ``control_flow_util.GraphOrParentsInXlaContext`` on the graph being traced, the same test
  ``tf.function`` uses to avoid nesting XLA contexts. Models compiled by XLA auto-clustering
  (``TF_XLA_FLAGS=--tf_xla_auto_jit``) are not detected; pass ``impl="xla"`` there.

Unpooling uses one formulation for both paths: a one-hot of ``indices`` over the window
(``[B, OH, OW, ph*pw, C]``) multiplied by the broadcast pooled values, reshaped back to the
padded image and cropped to ``like``'s spatial size. This is a reshape/broadcast, not a scatter
with giant flat index tensors; see benchmarks/unpool_xla.py for the measured costs.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from tfneuro.errors import InputError

_IMPLS = ("auto", "tf", "xla")


def _pair(value, name):
    if isinstance(value, (int, np.integer)):
        value = (int(value), int(value))
    value = tuple(int(v) for v in value)
    if len(value) != 2 or min(value) < 1:
        raise InputError(name, f"must be a positive int or a pair of positive ints, got {value}")
    return value


def _check_pool(pool_size, strides, layer):
    pool = _pair(pool_size, f"{layer}(pool_size)")
    if strides is not None and _pair(strides, f"{layer}(strides)") != pool:
        raise InputError(
            f"{layer}(strides)",
            f"only non-overlapping windows are supported (strides == pool_size == {pool}), "
            f"got {strides}",
        )
    return pool


def _same_pads(size, pool):
    """TensorFlow SAME padding for stride == pool: (n_windows, pad_before, pad_after)."""
    n = (size + pool - 1) // pool
    total = n * pool - size
    before = total // 2
    return n, before, total - before


def _in_xla_context() -> bool:
    """True when TensorFlow is tracing inside an XLA (jit_compile=True) function."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf  # TF-only: isolated here
    from tensorflow.python.ops import control_flow_util

    if tf.executing_eagerly():
        return False
    return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))


def resolve_impl(impl: str) -> str:
    """Resolve ``"auto"`` to ``"tf"`` or ``"xla"`` for the current backend and tracing context."""
    if impl != "auto":
        return impl
    if keras.backend.backend() != "tensorflow" or _in_xla_context():
        return "xla"
    return "tf"


def _lowest(dtype):
    """Lowest finite value of a float dtype (the padding value: never selected as a max)."""
    dtype = keras.backend.standardize_dtype(dtype)
    if dtype == "bfloat16":
        import ml_dtypes

        return float(ml_dtypes.finfo(ml_dtypes.bfloat16).min)
    return float(np.finfo(np.dtype(dtype)).min)


def max_pool_with_argmax_xla(x, pool_size=(2, 2)):
    """``keras.ops`` max pooling with window argmax (XLA-compilable, any backend).

    Args:
        x: ``[B, H, W, C]`` tensor (H, W may be dynamic under TensorFlow).
        pool_size: ``(ph, pw)`` window, equal to the stride.

    Returns:
        ``(pooled, indices)`` as described in the module docstring.
    """
    ph, pw = pool_size
    shape = ops.shape(x)
    b, h, w, c = shape[0], shape[1], shape[2], shape[3]
    oh, top, bottom = _same_pads(h, ph)
    ow, left, right = _same_pads(w, pw)
    xp = ops.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]],
                 constant_values=_lowest(x.dtype))
    win = ops.reshape(xp, (b, oh, ph, ow, pw, c))
    win = ops.transpose(win, (0, 1, 3, 2, 4, 5))
    win = ops.reshape(win, (b, oh, ow, ph * pw, c))
    idx = ops.argmax(win, axis=3)  # first maximum in row-major window order
    onehot = ops.equal(ops.expand_dims(idx, 3),
                       ops.reshape(ops.arange(ph * pw, dtype=idx.dtype), (1, 1, 1, ph * pw, 1)))
    pooled = ops.sum(ops.where(onehot, win, ops.zeros_like(win)), axis=3)
    return pooled, ops.cast(idx, "int32")


def max_pool_with_argmax_tf(x, pool_size=(2, 2)):
    """TensorFlow-only path: ``tf.nn.max_pool_with_argmax`` (no XLA kernel).

    Converts TensorFlow's flat ``(y * W + x) * C + c`` indices to within-window indices.

    Args:
        x: ``[B, H, W, C]`` TensorFlow tensor.
        pool_size: ``(ph, pw)`` window, equal to the stride.

    Returns:
        ``(pooled, indices)`` as described in the module docstring.
    """
    import tensorflow as tf  # TF-only: isolated here

    ph, pw = pool_size
    pooled, flat = tf.nn.max_pool_with_argmax(
        x, ksize=(1, ph, pw, 1), strides=(1, ph, pw, 1), padding="SAME",
        include_batch_in_index=False)
    shape = tf.shape(x, out_type=tf.int64)
    h, w, c = shape[1], shape[2], shape[3]
    top = ((h + ph - 1) // ph * ph - h) // 2
    left = ((w + pw - 1) // pw * pw - w) // 2
    row = flat // (w * c)
    col = (flat // c) % w
    oshape = tf.shape(pooled, out_type=tf.int64)
    oy = tf.reshape(tf.range(oshape[1], dtype=tf.int64) * ph, (1, -1, 1, 1))
    ox = tf.reshape(tf.range(oshape[2], dtype=tf.int64) * pw, (1, 1, -1, 1))
    within = (row + top - oy) * pw + (col + left - ox)
    return pooled, tf.cast(within, tf.int32)


def max_unpool(pooled, indices, like_shape, pool_size=(2, 2)):
    """Put each pooled value back at its window position; zeros elsewhere (``keras.ops``).

    Args:
        pooled: ``[B, OH, OW, C]`` values.
        indices: ``[B, OH, OW, C]`` int within-window positions (module docstring).
        like_shape: shape of the reference ``[B, H, W, ...]``; only H and W are used.
        pool_size: ``(ph, pw)`` window used when pooling.

    Returns:
        ``[B, H, W, C]`` tensor.
    """
    ph, pw = pool_size
    shape = ops.shape(pooled)
    b, oh, ow, c = shape[0], shape[1], shape[2], shape[3]
    h, w = like_shape[1], like_shape[2]
    _, top, _ = _same_pads(h, ph)
    _, left, _ = _same_pads(w, pw)
    onehot = ops.equal(ops.expand_dims(ops.cast(indices, "int32"), 3),
                       ops.reshape(ops.arange(ph * pw, dtype="int32"), (1, 1, 1, ph * pw, 1)))
    vals = ops.where(onehot, ops.expand_dims(pooled, 3), ops.zeros((), dtype=pooled.dtype))
    vals = ops.reshape(vals, (b, oh, ow, ph, pw, c))
    vals = ops.transpose(vals, (0, 1, 3, 2, 4, 5))
    full = ops.reshape(vals, (b, oh * ph, ow * pw, c))
    return full[:, top:top + h, left:left + w, :]


@keras.saving.register_keras_serializable(package="tfneuro")
class MaxPoolingWithArgmax2D(keras.layers.Layer):
    """2D max pooling that also returns the position of each maximum in its window.

    QuickNAT (paper 001) / InfiNet (paper 003) encoder pooling. See the module docstring for
    the index convention, tie rule, odd sizes and how ``impl="auto"`` chooses a path.

    Args:
        pool_size: int or pair, window size (paper value 2).
        strides: None or equal to ``pool_size`` (only non-overlapping windows are supported:
            index unpooling is defined for them).
        impl: ``"auto"``, ``"tf"`` (``tf.nn.max_pool_with_argmax``, TensorFlow only, no XLA)
            or ``"xla"`` (``keras.ops``; XLA-compilable, any backend).
        **kwargs: base ``keras.layers.Layer`` arguments.

    Call:
        ``x`` ``[B, H, W, C]`` -> ``(pooled [B, ceil(H/ph), ceil(W/pw), C], indices int32)``.
    """

    def __init__(self, pool_size=2, strides=None, impl="auto", **kwargs):
        super().__init__(**kwargs)
        self.pool_size = _check_pool(pool_size, strides, type(self).__name__)
        if impl not in _IMPLS:
            raise InputError(f"{type(self).__name__}(impl)", f"must be one of {_IMPLS}, got {impl!r}")
        if impl == "tf" and keras.backend.backend() != "tensorflow":
            raise InputError(f"{type(self).__name__}(impl)",
                             f"'tf' needs the TensorFlow backend, not {keras.backend.backend()!r}")
        self.impl = impl

    def call(self, x):
        if resolve_impl(self.impl) == "tf":
            return max_pool_with_argmax_tf(x, self.pool_size)
        return max_pool_with_argmax_xla(x, self.pool_size)

    def compute_output_shape(self, input_shape):
        def out(n, p):
            return None if n is None else (n + p - 1) // p

        shape = (input_shape[0], out(input_shape[1], self.pool_size[0]),
                 out(input_shape[2], self.pool_size[1]), input_shape[3])
        return shape, shape

    def compute_output_spec(self, x):
        shape = self.compute_output_shape(x.shape)[0]
        return (keras.KerasTensor(shape, dtype=self.compute_dtype),
                keras.KerasTensor(shape, dtype="int32"))

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=self.pool_size, strides=None, impl=self.impl)
        return config


@keras.saving.register_keras_serializable(package="tfneuro")
class MaxUnpooling2D(keras.layers.Layer):
    """Index unpooling: inverse placement of :class:`MaxPoolingWithArgmax2D`.

    ``MaxUnpooling2D()([pooled, indices, like])`` returns a tensor with ``like``'s batch and
    spatial size and ``pooled``'s channels, holding each pooled value at the position its
    maximum came from and zero elsewhere (QuickNAT, paper 001; InfiNet, paper 003). Written with
    ``keras.ops`` only (reshape/broadcast, no scatter), so the same code runs eagerly, under
    XLA and on any backend; ``indices`` from either pooling path work.

    Args:
        pool_size: int or pair; must equal the pooling layer's.
        **kwargs: base ``keras.layers.Layer`` arguments.
    """

    def __init__(self, pool_size=2, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = _check_pool(pool_size, None, type(self).__name__)

    def call(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 3:
            raise InputError(type(self).__name__, "expects [pooled, indices, like]")
        pooled, indices, like = inputs
        return max_unpool(pooled, indices, ops.shape(like), self.pool_size)

    def compute_output_shape(self, input_shapes):
        pooled, _, like = input_shapes
        return (pooled[0], like[1], like[2], pooled[3])

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=self.pool_size)
        return config
