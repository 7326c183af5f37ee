"""Cost of argmax pooling + index unpooling: TF kernel vs keras.ops (XLA) path, vs scatter.

Question: what does the XLA-compilable ``keras.ops`` formulation of
MaxPoolingWithArgmax2D / MaxUnpooling2D cost against ``tf.nn.max_pool_with_argmax``, and is
the reshape/broadcast unpooling cheaper than the classic ``tf.scatter_nd`` on flat indices?

Variants (pool 2x2 then unpool back to the input size; "fwd+bwd" adds the gradient w.r.t. the
input of ``sum(unpooled * r)``):

* ``tf+bcast``   tf.nn.max_pool_with_argmax, window indices, broadcast unpool (impl="tf")
* ``ops+bcast``  keras.ops argmax pooling, broadcast unpool (impl="xla")
* ``tf+scatter`` tf.nn.max_pool_with_argmax flat indices + tf.scatter_nd (the usual TF recipe)

Modes: ``eager`` (op by op), ``graph`` (tf.function), ``jit`` (tf.function(jit_compile=True);
only possible for ``ops+bcast``, the TF kernel has no XLA implementation).

Run: ``python benchmarks/unpool_xla.py [--shape 8,256,256,64] [--repeats 5]``.
Prints median seconds per call and the ratio to ``tf+bcast graph``.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfneuro.layers.pooling import (  # noqa: E402
    max_pool_with_argmax_tf,
    max_pool_with_argmax_xla,
    max_unpool,
)


def tf_bcast(x):
    p, i = max_pool_with_argmax_tf(x, (2, 2))
    return max_unpool(p, i, tf.shape(x), (2, 2))


def ops_bcast(x):
    p, i = max_pool_with_argmax_xla(x, (2, 2))
    return max_unpool(p, i, tf.shape(x), (2, 2))


def tf_scatter(x):
    p, flat = tf.nn.max_pool_with_argmax(x, 2, 2, "SAME", include_batch_in_index=True)
    out = tf.scatter_nd(tf.reshape(flat, (-1, 1)), tf.reshape(p, (-1,)),
                        tf.cast(tf.reshape(tf.size(x), (1,)), tf.int64))
    return tf.reshape(out, tf.shape(x))


def with_grad(fn, r):
    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(fn(x) * r)
        return tape.gradient(y, x)
    return run


def timeit(fn, x, repeats):
    out = fn(x)  # warm-up / trace / compile
    _ = out.numpy()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(x)
        _ = out.numpy()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="8,256,256,64")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    shape = tuple(int(s) for s in args.shape.split(","))
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=shape).astype(np.float32))
    r = tf.constant(rng.normal(size=shape).astype(np.float32))

    # identical outputs and gradients before timing anything
    jit_fwd = tf.function(ops_bcast, jit_compile=True)
    assert np.array_equal(tf_bcast(x).numpy(), jit_fwd(x).numpy())
    assert np.array_equal(tf_bcast(x).numpy(), tf_scatter(x).numpy())
    assert np.array_equal(with_grad(tf_bcast, r)(x).numpy(),
                          tf.function(with_grad(ops_bcast, r), jit_compile=True)(x).numpy())

    variants = {"tf+bcast": tf_bcast, "ops+bcast": ops_bcast, "tf+scatter": tf_scatter}
    rows = []
    for name, fn in variants.items():
        for pass_name, f in (("fwd", fn), ("fwd+bwd", with_grad(fn, r))):
            modes = {"eager": f, "graph": tf.function(f)}
            if name == "ops+bcast":
                modes["jit"] = tf.function(f, jit_compile=True)
            for mode, g in modes.items():
                rows.append((name, pass_name, mode, timeit(g, x, args.repeats)))

    base = {p: t for n, p, m, t in rows if n == "tf+bcast" and m == "graph"}
    print(f"shape {shape} float32, pool 2x2, CPU threads: "
          f"{tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()}, "
          f"device: {'GPU' if tf.config.list_physical_devices('GPU') else 'CPU'}")
    print(f"{'variant':<12}{'pass':<9}{'mode':<7}{'median s':>10}{'vs tf+bcast graph':>19}")
    for name, pass_name, mode, t in rows:
        print(f"{name:<12}{pass_name:<9}{mode:<7}{t:>10.4f}{t / base[pass_name]:>19.2f}")


if __name__ == "__main__":
    main()
