"""tfneuro.training.loop: checkpoints every epoch, atomic writes, exact resume (in-process and
after a real SIGKILL), logs."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import keras
import tensorflow as tf

from tfneuro.errors import InputError
from tfneuro.training.callbacks import ProgressBar
from tfneuro.training import loop

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Shared by the in-process tests and the subprocess script (kept in one string so both use
# exactly the same model, data and per-epoch pipeline).
SETUP = textwrap.dedent('''
    import numpy as np, keras, tensorflow as tf
    from tfneuro.training import loop, recipes

    SEED = 1234
    STEPS = 6

    def data():
        rng = np.random.default_rng(0)
        x = rng.normal(size=(48, 8, 8, 2)).astype("float32")
        y = (x[..., 0] + 0.5 * x[..., 1] > 0).astype("int32")
        return x, y

    def make_model():
        inp = keras.Input((8, 8, 2))
        h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="encoder_1")(inp)
        h = keras.layers.BatchNormalization(name="encoder_1_bn")(h)
        h = keras.layers.Dropout(0.3, name="encoder_1_drop")(h)
        out = keras.layers.Conv2D(2, 1, activation="softmax", name="classifier")(h)
        model = keras.Model(inp, out, name="tiny")
        opt = recipes.make_optimizer("paper002", steps_per_epoch=STEPS, epochs=5)
        model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", jit_compile=False)
        return model

    X, Y = data()

    def train_ds(epoch):
        # per-epoch shuffling is a function of (seed, epoch)
        return (tf.data.Dataset.from_tensor_slices((X, Y))
                .shuffle(48, seed=loop.epoch_seed(SEED, epoch))
                .batch(8))
''')
exec(SETUP)  # noqa: S102  defines make_model, train_ds, SEED, STEPS, X, Y


def _weights(model):
    return [np.asarray(v) for v in model.variables]


def _fresh(seed_for_init):
    keras.utils.set_random_seed(seed_for_init)
    return make_model()  # noqa: F821


@pytest.fixture(scope="module", autouse=True)
def _determinism():
    tf.config.experimental.enable_op_determinism()
    yield


def test_resume_in_process_equals_uninterrupted(tmp_path):
    full = _fresh(SEED)  # noqa: F821
    h_full = loop.fit(full, train_ds, epochs=4, out_dir=tmp_path / "full", seed=SEED)  # noqa
    part = _fresh(SEED)  # noqa: F821
    loop.fit(part, train_ds, epochs=2, out_dir=tmp_path / "part", seed=SEED)  # noqa: F821
    # a new model with DIFFERENT initial weights: everything must come from the checkpoint
    resumed = _fresh(99)
    h_res = loop.fit(resumed, train_ds, epochs=4, out_dir=tmp_path / "part", seed=SEED,  # noqa
                     resume=True)
    for a, b in zip(_weights(full), _weights(resumed)):
        np.testing.assert_array_equal(a, b)
    # optimizer state too (iterations = 4 epochs x 6 steps, momenta equal)
    assert int(resumed.optimizer.iterations) == 4 * STEPS  # noqa: F821
    for a, b in zip(full.optimizer.variables, resumed.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert list(h_res["epoch"]) == [0, 1, 2, 3]
    np.testing.assert_allclose(h_res["loss"], h_full["loss"], rtol=0, atol=0)
    # CSV log: one row per epoch, no duplicates across the resumption
    import pandas as pd
    log = pd.read_csv(tmp_path / "part" / "training_log.csv")
    assert list(log["epoch"]) == [0, 1, 2, 3]
    # only the last 2 checkpoints are kept; TensorBoard wrote event files
    assert [e for e, _ in loop.list_checkpoints(tmp_path / "part")] == [3, 4]
    assert any("tfevents" in f for _, _, fs in os.walk(tmp_path / "part" / "tensorboard")
               for f in fs)


def test_checkpoint_contents_and_schedule_continues(tmp_path):
    model = _fresh(SEED)  # noqa: F821
    loop.fit(model, train_ds, epochs=2, out_dir=tmp_path, seed=SEED)  # noqa: F821
    path = loop.latest_checkpoint(tmp_path)
    state = json.load(open(os.path.join(path, "state.json")))
    assert state["epoch"] == 2 and state["seed"] == SEED  # noqa: F821
    assert state["optimizer_iterations"] == 2 * STEPS  # noqa: F821
    # the restored LR is the poly schedule at epoch 2 of 5: 1e-2 * (1 - 2/5) ** 0.9
    other = _fresh(5)
    loop.restore_checkpoint(other, path)
    lr = float(other.optimizer.learning_rate)
    assert lr == pytest.approx(1e-2 * (1 - 2 / 5) ** 0.9, rel=1e-6)
    # SeedGenerator state of the Dropout layer is part of the checkpoint
    drop = model.get_layer("encoder_1_drop")
    np.testing.assert_array_equal(np.asarray(drop.seed_generator.state),
                                  np.asarray(other.get_layer("encoder_1_drop")
                                             .seed_generator.state))


def test_incomplete_checkpoints_are_ignored(tmp_path):
    model = _fresh(SEED)  # noqa: F821
    loop.fit(model, train_ds, epochs=1, out_dir=tmp_path, seed=SEED)  # noqa: F821
    root = tmp_path / "checkpoints"
    # what a kill during a write leaves behind: a temp dir, and a dir without state.json
    (root / ".epoch-000002.tmp-abcd").mkdir()
    (root / ".epoch-000002.tmp-abcd" / "variables.npz").write_bytes(b"garbage")
    (root / "epoch-000003").mkdir()
    (root / "epoch-000003" / "variables.npz").write_bytes(b"half")
    assert loop.latest_checkpoint(tmp_path) == str(root / "epoch-000001")


def test_refuses_to_overwrite_and_checks_seed_and_shapes(tmp_path):
    model = _fresh(SEED)  # noqa: F821
    loop.fit(model, train_ds, epochs=1, out_dir=tmp_path, seed=SEED)  # noqa: F821
    with pytest.raises(InputError, match="--resume"):
        loop.fit(model, train_ds, epochs=2, out_dir=tmp_path, seed=SEED)  # noqa: F821
    with pytest.raises(InputError, match="--seed"):
        loop.fit(model, train_ds, epochs=2, out_dir=tmp_path, seed=7, resume=True)  # noqa
    inp = keras.Input((8, 8, 2))
    other = keras.Model(inp, keras.layers.Conv2D(3, 1, name="classifier")(inp))
    other.compile(optimizer="sgd", loss="mse")
    with pytest.raises(InputError, match="do not match"):
        loop.restore_checkpoint(other, loop.latest_checkpoint(tmp_path))
    uncompiled = keras.Model(inp, keras.layers.Conv2D(2, 1)(inp))
    with pytest.raises(InputError, match="not compiled"):
        loop.fit(uncompiled, train_ds, epochs=1, out_dir=tmp_path / "x")  # noqa: F821


def test_progress_bar_total_from_previous_epoch(monkeypatch):
    """Unknown Keras steps: epoch 1 has no total, later epochs use the previous epoch's count."""
    monkeypatch.setenv("TFNEURO_PROGRESS", "1")  # a real (enabled) tqdm bar
    cb = ProgressBar(epochs=3)
    cb.set_params({"steps": None, "epochs": 3})
    cb.on_epoch_begin(0)
    assert cb._bar.total is None
    for b in range(5):
        cb.on_train_batch_end(b, {"loss": 1.0})
    cb.on_epoch_end(0, {"loss": 1.0})
    cb.on_epoch_begin(1)
    assert cb._bar.total == 5 and cb._bar.desc.startswith("epoch 2/3")
    cb.on_epoch_end(1)
    cb.set_params({"steps": 7, "epochs": 3})  # known steps win
    cb.on_epoch_begin(2)
    assert cb._bar.total == 7
    cb.on_epoch_end(2)


def test_epoch_seed_is_a_fixed_function():
    assert loop.epoch_seed(1, 2) == loop.epoch_seed(1, 2)
    seeds = {loop.epoch_seed(s, e) for s in range(3) for e in range(5)}
    assert len(seeds) == 15 and all(0 <= s < 2**31 for s in seeds)


WORKER = SETUP + textwrap.dedent('''
    import os, signal, sys
    tf.config.experimental.enable_op_determinism()
    out_dir, mode = sys.argv[1], sys.argv[2]

    class KillAt(keras.callbacks.Callback):
        """SIGKILL ourselves in the middle of epoch 3 (0-based epoch 2), batch 3."""
        def __init__(self):
            super().__init__()
            self.epoch = None
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 2 and batch == 3:
                os.kill(os.getpid(), signal.SIGKILL)

    keras.utils.set_random_seed(SEED if mode != "resume" else 4321)
    model = make_model()
    cbs = [KillAt()] if mode == "kill" else []
    loop.fit(model, train_ds, epochs=4, out_dir=out_dir, seed=SEED, resume=(mode == "resume"),
             callbacks=cbs, tensorboard=False)
    np.savez(os.path.join(out_dir, "final.npz"), *[np.asarray(v) for v in model.variables])
''')


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def start(out, mode):
        return subprocess.Popen([sys.executable, str(script), str(out), mode], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    # the uninterrupted reference and the run that gets killed run side by side
    ref_p, kill_p = start(tmp_path / "ref", "full"), start(tmp_path / "run", "kill")
    ref_out, _ = ref_p.communicate(timeout=120)
    kill_out, _ = kill_p.communicate(timeout=120)
    assert ref_p.returncode == 0, ref_out[-2000:]
    assert kill_p.returncode == -9, kill_out[-2000:]  # killed by SIGKILL
    # killed during epoch 3: the last complete checkpoint is epoch 2, no final weights
    assert [e for e, _ in loop.list_checkpoints(tmp_path / "run")] == [1, 2]
    assert not (tmp_path / "run" / "final.npz").exists()
    res_p = start(tmp_path / "run", "resume")
    res_out, _ = res_p.communicate(timeout=120)
    assert res_p.returncode == 0, res_out[-2000:]
    ref = np.load(tmp_path / "ref" / "final.npz")
    got = np.load(tmp_path / "run" / "final.npz")
    assert len(ref.files) == len(got.files) > 0
    for k in ref.files:
        np.testing.assert_array_equal(ref[k], got[k])
