"""MULTI-WORKER (two local processes, loopback only): --strategy=multi_worker trains a tiny
model with tf.distribute.MultiWorkerMirroredStrategy through TF_CONFIG on 127.0.0.1, and both
workers end with the same weights. Slow-ish (two TF processes); kept well under 60 s."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKER = textwrap.dedent('''
    import os, sys
    import numpy as np
    from tfneuro.training import TrainingConfig, setup_runtime, fit, is_chief
    out = sys.argv[1]
    strategy = setup_runtime(TrainingConfig(strategy="multi_worker", seed=7, deterministic=True))
    import keras, tensorflow as tf
    assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
    with strategy.scope():
        inp = keras.Input((6,))
        h = keras.layers.Dense(8, activation="relu", name="encoder_1")(inp)
        out_t = keras.layers.Dense(2, activation="softmax", name="classifier")(h)
        model = keras.Model(inp, out_t)
        model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                      loss="sparse_categorical_crossentropy", jit_compile=False)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    def ds(epoch):
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat()
    init = [np.asarray(v).copy() for v in model.variables]
    hist = fit(model, ds, epochs=2, steps_per_epoch=3, out_dir=out, seed=7, strategy=strategy,
        progress_bar=False, tensorboard=False)
    np.savez(out + ".npz", *[np.asarray(v) for v in model.variables],
             chief=np.array(is_chief(strategy)),
             moved=np.array([not np.array_equal(a, np.asarray(v))
                             for a, v in zip(init, model.variables)]),
             loss=hist["loss"].to_numpy())
''')


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_two_local_workers_agree(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i in range(2):
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   TF_CONFIG=json.dumps({"cluster": cluster,
                                         "task": {"type": "worker", "index": i}}))
        procs.append(subprocess.Popen([sys.executable, str(script), str(tmp_path / f"w{i}")],
                                      env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=120)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, o in zip(procs, outs):
        assert p.returncode == 0, o[-3000:]
    w0, w1 = np.load(tmp_path / "w0.npz"), np.load(tmp_path / "w1.npz")
    assert bool(w0["chief"]) and not bool(w1["chief"])
    keys = [k for k in w0.files if k.startswith("arr_")]
    assert len(keys) == 4
    for k in keys:
        np.testing.assert_array_equal(w0[k], w1[k])
    assert w0["moved"].all() and w1["moved"].all()  # it trained
    assert np.isfinite(w0["loss"]).all() and len(w0["loss"]) == 2
    np.testing.assert_allclose(w0["loss"], w1["loss"], rtol=1e-6)  # global (all-reduced) means
    # the chief wrote the checkpoints; the non-chief wrote nothing
    assert [e for e, _ in __import__("tfneuro.training.loop", fromlist=["x"])
            .list_checkpoints(tmp_path / "w0")] == [1, 2]
    assert not (tmp_path / "w1").exists()
