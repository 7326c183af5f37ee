"""Serving under load: an exported SavedModel's ``segment_volume`` called from many threads.

Question (issue 9, item 5): called from 8 threads for 200 calls, does an exported model return
identical results every time, and does resident memory stay flat?

Method: build QuickNAT (``--filters``, ``--depth``), export it with
:func:`tfneuro.export.export_model` (``--views`` view models, aggregated in the graph), load it
with plain ``tf.saved_model.load``, take one sequential reference call, then

1. warm-up: ``--warmup`` calls spread over the threads (every thread has run TensorFlow once,
   so per-thread allocator arenas and Eigen/oneDNN scratch buffers exist);
2. RSS after warm-up (``psutil``), then ``--calls`` calls from ``--threads`` threads (a shared
   counter hands out call numbers), every result compared bit for bit with the reference
   (labels AND probabilities), RSS sampled every 10 ms and recorded after every tenth of
   the calls (``rss_trace``: does it level off or keep climbing?);
3. RSS after the calls; growth = after - after warm-up (and the peak during the calls).

Run from the repository root:

    python benchmarks/serving_load.py                    # 96^3 volume, 8 threads, 200 calls
    python benchmarks/serving_load.py --shape 32,32,32 --filters 8 --depth 2 --calls 200

Prints a table; ``--json`` prints one JSON line instead (used by tests/test_serving_load.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _common import load_average, parse_shape  # noqa: E402

import numpy as np  # noqa: E402


def phantom(shape, seed=0):
    """A head-like test volume: a noisy ellipsoid of two intensities inside a zero border."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    r = np.sqrt(sum(g ** 2 for g in grid))
    vol = np.where(r < 0.8, 100.0, 0.0) + np.where(r < 0.5, 60.0, 0.0)
    vol = vol + (r < 0.8) * rng.normal(0, 5, shape)
    return vol.astype(np.float32)[..., None]


def rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def run_load(fn, volume, reference, *, threads: int, calls: int, warmup: int) -> dict:
    """Call ``fn(volume=...)`` ``calls`` times from ``threads`` threads after ``warmup`` calls.

    Args:
        fn: the ``segment_volume`` signature.
        volume: float32 ``[X, Y, Z, C]``.
        reference: ``(labels, probabilities)`` of one sequential call.
        threads, calls, warmup: load shape.

    Returns:
        dict with ``mismatches`` (calls whose labels or probabilities differ from the
        reference in any bit), ``calls``, ``rss_warm``, ``rss_after``, ``rss_peak`` (bytes),
        ``seconds``, ``errors`` (exceptions raised in threads, as text), ``rss_trace``
        (``[(calls done, RSS)]`` every tenth of the calls).
    """
    import tensorflow as tf

    x = tf.constant(volume)
    lock = threading.Lock()
    state = {"next": 0, "mismatch": 0, "done": 0, "errors": [], "trace": []}
    step = max(calls // 10, 1)

    def worker(total):
        while True:
            with lock:
                i = state["next"]
                if i >= total:
                    return
                state["next"] += 1
            try:
                out = fn(volume=x)
                same = (np.array_equal(out["labels"].numpy(), reference[0])
                        and np.array_equal(out["probabilities"].numpy(), reference[1]))
            except Exception as e:  # noqa: BLE001 - reported, the load continues
                with lock:
                    state["errors"].append(f"{type(e).__name__}: {e}")
                continue
            with lock:
                state["done"] += 1
                state["mismatch"] += not same
                if state["done"] % step == 0:
                    state["trace"].append((state["done"], rss()))

    def load(total):
        state["next"] = 0
        ts = [threading.Thread(target=worker, args=(total,)) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    load(warmup)
    state.update(mismatch=0, done=0, trace=[])
    import gc

    gc.collect()
    rss_warm = rss()
    peak = [rss_warm]
    stop = [False]

    def sample():
        while not stop[0]:
            peak[0] = max(peak[0], rss())
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    t0 = time.perf_counter()
    load(calls)
    seconds = time.perf_counter() - t0
    stop[0] = True
    sampler.join()
    gc.collect()
    return {"mismatches": state["mismatch"], "calls": state["done"], "rss_warm": rss_warm,
            "rss_after": rss(), "rss_peak": peak[0], "seconds": seconds,
            "errors": state["errors"][:3], "rss_trace": state["trace"]}


def export_quicknat(path, *, filters, depth, views, num_classes=4, seed=0):
    """Export QuickNAT view models (random weights, seeded) to ``path``; returns the models."""
    import keras

    from tfneuro.export import export_model
    from tfneuro.models import get

    models = {}
    for i, view in enumerate(views):
        keras.utils.set_random_seed(seed + i)
        models[view] = get("quicknat", num_classes=num_classes, input_shape=(None, None, 1),
                           filters=filters, depth=depth)
    export_model(models, path, batch_size=16)
    return models


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="96,96,96", help="volume shape X,Y,Z (default 96,96,96)")
    ap.add_argument("--filters", type=int, default=32, help="QuickNAT filters (paper: 64)")
    ap.add_argument("--depth", type=int, default=4, help="QuickNAT depth (paper: 4)")
    ap.add_argument("--views", default="axial", help="comma-separated views exported together")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=16)
    ap.add_argument("--json", action="store_true", help="print one JSON line")
    args = ap.parse_args(argv)
    shape = parse_shape(args.shape)
    views = [v for v in args.views.split(",") if v]

    import tensorflow as tf

    vol = phantom(shape)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "quicknat")
        export_quicknat(path, filters=args.filters, depth=args.depth, views=views)
        import keras

        keras.backend.clear_session()
        loaded = tf.saved_model.load(path)
        fn = loaded.signatures["segment_volume"]
        t0 = time.perf_counter()
        ref = fn(volume=tf.constant(vol))
        first = time.perf_counter() - t0
        reference = (ref["labels"].numpy(), ref["probabilities"].numpy())
        res = run_load(fn, vol, reference, threads=args.threads, calls=args.calls,
                       warmup=args.warmup)
    growth = res["rss_after"] - res["rss_warm"]
    res.update(shape=list(shape), filters=args.filters, depth=args.depth, views=views,
               threads=args.threads, warmup=args.warmup, requested_calls=args.calls,
               growth=growth, growth_pct=100.0 * growth / res["rss_warm"],
               first_call_s=first, load_average=load_average(),
               labels_in_reference=int(np.unique(reference[0]).size))
    if args.json:
        print("RESULT " + json.dumps(res))
        return 0 if res["mismatches"] == 0 and not res["errors"] else 1
    mb = 1e6
    print(f"serving load: QuickNAT filters={args.filters} depth={args.depth} views={views}, "
          f"volume {'x'.join(map(str, shape))}, {args.threads} threads, load avg {res['load_average']}")
    print("| calls | identical | errors | RSS after warm-up | RSS after calls | growth | peak during | s/call (wall) |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {res['calls']} | {res['calls'] - res['mismatches']}/{res['calls']} | {len(res['errors'])} "
          f"| {res['rss_warm'] / mb:.1f} MB | {res['rss_after'] / mb:.1f} MB "
          f"| {growth / mb:+.1f} MB ({res['growth_pct']:+.2f} %) | {res['rss_peak'] / mb:.1f} MB "
          f"| {res['seconds'] / max(res['calls'], 1):.3f} |")
    trace = ", ".join(f"{n}: {(r - res['rss_warm']) / mb:+.0f}" for n, r in res["rss_trace"])
    print(f"RSS growth after n calls (MB): {trace}")
    return 0 if res["mismatches"] == 0 and not res["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
