"""Training loop around ``model.fit``: a checkpoint every epoch, resume, logs, progress bars.

TensorFlow-backend training engine (tf.data datasets, tf.distribute); the checkpoint format
itself is plain numpy + JSON.

Layout of ``out_dir``::

    checkpoints/epoch-000003/     one directory per completed epoch (the last ``keep``)
        variables.npz             every model variable (weights, BatchNorm statistics and the
                                  Keras SeedGenerator states of Dropout/noise layers), by index
        optimizer.npz             every optimizer variable (iteration counter, momenta,
                                  loss scale), by index
        state.json                completed epochs, seed, variable shapes, history so far
    training_log.csv              keras CSVLogger (appended on resume)
    tensorboard/                  keras TensorBoard

Each checkpoint directory is written under a temporary name and renamed when complete
(:func:`tfneuro.utils.atomic.atomic_path`), and ``state.json`` is written last inside it; a
process killed at any moment (SIGKILL included) leaves either a complete checkpoint or a
``.epoch-...tmp-*`` directory that :func:`latest_checkpoint` ignores.

Exact resumption. With a seed and op determinism (:class:`tfneuro.training.TrainingConfig`)
a run interrupted and resumed ends with the same weights as an uninterrupted run, because
everything that determines epoch ``e`` is either restored or a function of ``(seed, e)``:

* model variables, optimizer variables (so the step counter and thus the LR schedule) and
  the layers' random-seed states are restored from the checkpoint;
* before epoch ``e`` the global seeds are reset to :func:`epoch_seed` ``(seed, e)`` (only when
  ``train_ds`` or ``val_ds`` is a callable: the reset clears TF's kernel caches, which costs
  seconds per epoch, and buys nothing for a fixed dataset);
* ``train_ds`` may be a callable ``train_ds(epoch) -> dataset``: build each epoch's
  shuffling and augmentation from ``epoch_seed(seed, epoch)``. A fixed ``tf.data.Dataset``
  whose ``shuffle`` reshuffles every iteration restarts its shuffle sequence in a new
  process, so it trains correctly but does not resume bit-exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil

import keras
import numpy as np

from tfneuro.errors import InputError
from tfneuro.training.callbacks import ProgressBar, tensorboard_callback
from tfneuro.training.runtime import is_chief
from tfneuro.utils.atomic import atomic_path

__all__ = ["fit", "FitOptions", "epoch_seed", "save_checkpoint", "restore_checkpoint",
           "latest_checkpoint", "list_checkpoints", "resume_note"]

_CKPT_RE = re.compile(r"^epoch-(\d{6})$")
_FORMAT = 1


def epoch_seed(seed: int, epoch: int) -> int:
    """A 31-bit seed that is a fixed function of ``(seed, epoch)`` (numpy ``SeedSequence``)."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0] >> 1)


def list_checkpoints(out_dir) -> list[tuple[int, str]]:
    """Complete checkpoints in ``out_dir`` as ``[(epoch, path)]``, oldest first."""
    ckpt_root = os.path.join(os.fspath(out_dir), "checkpoints")
    if not os.path.isdir(ckpt_root):
        return []
    found = []
    for name in os.listdir(ckpt_root):
        m = _CKPT_RE.match(name)
        path = os.path.join(ckpt_root, name)
        if m and os.path.isfile(os.path.join(path, "state.json")):
            found.append((int(m.group(1)), path))
    return sorted(found)


def resume_note(out_dir, resume: bool) -> str:
    """One line saying where a run starts (for the log): fresh, or after which epoch."""
    found = list_checkpoints(out_dir) if resume else []
    return f"resuming after epoch {found[-1][0]}" if found else "starting at epoch 1"


def latest_checkpoint(out_dir) -> str | None:
    """Path of the last complete checkpoint in ``out_dir``, or ``None``."""
    found = list_checkpoints(out_dir)
    return found[-1][1] if found else None


def _optimizer(model):
    opt = getattr(model, "optimizer", None)
    if opt is None:
        raise InputError("model", "is not compiled (call model.compile(...) before fit)")
    return opt


def _ensure_optimizer_built(model):
    opt = _optimizer(model)
    if not opt.built:
        strategy = getattr(model, "distribute_strategy", None)
        if strategy is not None:
            with strategy.scope():
                opt.build(model.trainable_variables)
        else:
            opt.build(model.trainable_variables)
    return opt


def save_checkpoint(model, out_dir, epoch: int, *, seed: int | None = None,
                    history: list | None = None, keep: int = 2) -> str:
    """Write the checkpoint of ``epoch`` completed epochs atomically; keep the last ``keep``.

    Args:
        model: a compiled Keras model.
        out_dir: run directory (checkpoints go to ``out_dir/checkpoints``).
        epoch: number of completed epochs.
        seed: the run's seed (stored, checked on resume).
        history: per-epoch log rows so far (stored so a resumed run returns the full history).
        keep: how many checkpoints to keep (older ones are deleted after the new one exists).

    Returns:
        The checkpoint directory.
    """
    opt = _ensure_optimizer_built(model)
    variables = model.variables
    opt_store: dict = {}
    opt.save_own_variables(opt_store)
    state = {
        "format": _FORMAT, "epoch": int(epoch), "seed": seed,
        "model_name": model.name,
        "variable_shapes": [list(v.shape) for v in variables],
        "optimizer_variables": len(opt_store),
        "optimizer_iterations": int(np.asarray(opt.iterations)),
        "history": history or [],
    }
    target = os.path.join(os.fspath(out_dir), "checkpoints", f"epoch-{int(epoch):06d}")
    with atomic_path(target, suffix="") as tmp:
        os.makedirs(tmp)
        np.savez(os.path.join(tmp, "variables.npz"),
                 **{f"v{i}": np.asarray(v) for i, v in enumerate(variables)})
        np.savez(os.path.join(tmp, "optimizer.npz"),
                 **{f"v{k}": np.asarray(val) for k, val in opt_store.items()})
        with open(os.path.join(tmp, "state.json"), "w", encoding="utf-8") as f:
            json.dump(state, f, default=_json_default)
            f.flush()
            os.fsync(f.fileno())
    for _, old in list_checkpoints(out_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def restore_checkpoint(model, path) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` into a compiled ``model``.

    Returns:
        The checkpoint's state dict (``epoch``, ``seed``, ``history``, ...).

    Raises:
        InputError: the checkpoint does not match the model (variable count or shapes).
    """
    path = os.fspath(path)
    with open(os.path.join(path, "state.json"), encoding="utf-8") as f:
        state = json.load(f)
    variables = model.variables
    shapes = [list(v.shape) for v in variables]
    if shapes != state["variable_shapes"]:
        raise InputError(path, f"checkpoint holds {len(state['variable_shapes'])} variables "
                               f"that do not match the model's {len(shapes)} (another model or "
                               f"configuration?)")
    with np.load(os.path.join(path, "variables.npz")) as data:
        for i, v in enumerate(variables):
            v.assign(data[f"v{i}"])
    opt = _ensure_optimizer_built(model)
    with np.load(os.path.join(path, "optimizer.npz")) as data:
        store = {k[1:]: data[k] for k in data.files}
    if len(store) != len(opt.variables):
        raise InputError(path, f"checkpoint holds {len(store)} optimizer variables, the "
                               f"model's optimizer has {len(opt.variables)} (another optimizer, "
                               f"or different trainable layers?)")
    for i, v in enumerate(opt.variables):
        if tuple(v.shape) != tuple(store[str(i)].shape):
            raise InputError(path, f"optimizer variable {i} has shape {store[str(i)].shape}, "
                                   f"expected {tuple(v.shape)}")
        v.assign(store[str(i)])
    return state


def _trim_csv(path, start_epoch: int):
    """Drop CSV rows of epochs >= start_epoch (written before a crash, not checkpointed)."""
    if not os.path.isfile(path):
        return
    import pandas as pd

    try:
        table = pd.read_csv(path)
    except Exception:  # empty or unreadable log: start it again
        os.unlink(path)
        return
    if "epoch" in table.columns:
        table = table[table["epoch"] < start_epoch]
        with atomic_path(path) as tmp:
            table.to_csv(tmp, index=False)


@dataclasses.dataclass(frozen=True)
class FitOptions:
    """How :func:`fit` runs, besides the model, the data, the epochs and the run directory.

    Attributes:
        resume: continue from the last complete checkpoint in ``out_dir`` (from scratch if
            there is none). Without ``resume``, an ``out_dir`` that already holds
            checkpoints is refused, so no run is overwritten by accident.
        seed: the run's seed (stored in the checkpoints; a resume with another seed is
            refused). When ``train_ds``/``val_ds`` is a callable, the global seeds are reset to
            ``epoch_seed(seed, e)`` before each epoch ``e``. ``None`` leaves the random state alone.
        steps_per_epoch: batches per epoch (``None`` = one pass over ``train_ds``).
        validation_steps: validation batches (``None`` = one pass).
        callbacks: extra Keras callbacks (called within each epoch's ``model.fit``; their
            ``on_train_begin``/``on_train_end`` run once per epoch).
        keep_checkpoints: how many epoch checkpoints to keep.
        tensorboard: write ``out_dir/tensorboard``.
        csv_log: write ``out_dir/training_log.csv`` (appended across resumptions).
        progress_bar: show a tqdm bar per epoch (silenced by ``TFNEURO_PROGRESS=0``).
        strategy: the ``tf.distribute`` strategy; on a non-chief worker nothing is written.
        class_weight: passed to ``model.fit``.
    """

    resume: bool = False
    seed: int | None = None
    steps_per_epoch: int | None = None
    validation_steps: int | None = None
    callbacks: tuple = ()
    keep_checkpoints: int = 2
    tensorboard: bool = True
    csv_log: bool = True
    progress_bar: bool = True
    strategy: object = None
    class_weight: dict | None = None


def fit(model, train_ds, val_ds=None, *, epochs: int, out_dir,
        options: FitOptions | None = None, **fields):
    """Train ``model`` epoch by epoch with a checkpoint after every epoch.

    Args:
        model: a compiled Keras model (compile it in ``strategy.scope()`` when distributing).
        train_ds: a dataset/iterable for ``model.fit``, or a callable ``train_ds(epoch)``
            returning the dataset of that epoch (needed for bit-exact resumption; see the
            module docstring and :func:`epoch_seed`).
        val_ds: validation data (or callable of the epoch), or ``None``.
        epochs: total number of epochs (including those already done when resuming).
        out_dir: run directory for checkpoints and logs.
        options: a :class:`FitOptions` (default: its defaults).
        **fields: :class:`FitOptions` fields given directly (``resume=True, seed=0, ...``).

    Returns:
        ``pandas.DataFrame`` with one row per epoch (``epoch`` and the logged metrics),
        including epochs restored from the checkpoint.
    """
    import pandas as pd

    o = dataclasses.replace(options or FitOptions(), **fields)
    if int(epochs) != epochs or epochs < 1:
        raise InputError("--epochs", f"must be a positive integer, got {epochs!r}")
    _optimizer(model)
    out_dir = os.fspath(out_dir)
    chief = is_chief(o.strategy)
    start, history = _start(model, out_dir, o)
    cbs = _callbacks(out_dir, o, chief, start, epochs)
    # Re-seeding calls tf.random.set_seed, which clears TF's kernel caches: measured +6-7 s per
    # epoch for a 16-filter QuickNAT on this CPU. It buys exact resumption only when each
    # epoch's data is rebuilt from (seed, epoch), so a fixed dataset is not re-seeded.
    reseed = o.seed is not None and (callable(train_ds) or callable(val_ds))
    with _multi_worker_fit(model):
        for epoch in range(start, int(epochs)):
            if reseed:
                keras.utils.set_random_seed(epoch_seed(o.seed, epoch))
            ds = train_ds(epoch) if callable(train_ds) else train_ds
            vds = val_ds(epoch) if callable(val_ds) else val_ds
            hist = model.fit(ds, validation_data=vds, epochs=epoch + 1, initial_epoch=epoch,
                             steps_per_epoch=o.steps_per_epoch,
                             validation_steps=o.validation_steps, callbacks=cbs, verbose=0,
                             class_weight=o.class_weight, shuffle=False)
            row = {"epoch": epoch}
            for key, values in hist.history.items():
                if values:
                    row[key] = float(np.asarray(values[-1]))
            history.append(row)
            if chief:
                save_checkpoint(model, out_dir, epoch + 1, seed=o.seed, history=history,
                                keep=o.keep_checkpoints)
    return pd.DataFrame(history)


def _start(model, out_dir, o: FitOptions):
    """``(first epoch, history so far)``: refuses to overwrite a run without ``resume``;
    restores the last checkpoint (checking the seed) with it."""
    existing = latest_checkpoint(out_dir)
    if existing and not o.resume:
        raise InputError(out_dir, "already holds checkpoints of a run; pass --resume to "
                                  "continue it or choose another output directory")
    if not (o.resume and existing):
        return 0, []
    state = restore_checkpoint(model, existing)
    if state.get("seed") != o.seed:
        raise InputError("--seed", f"the run in {out_dir} used seed {state.get('seed')}, "
                                   f"not {o.seed}; resume with the same seed")
    return int(state["epoch"]), list(state.get("history", []))


def _callbacks(out_dir, o: FitOptions, chief: bool, start: int, epochs: int) -> list:
    """The user's callbacks plus the CSV log (trimmed to the checkpointed epochs),
    TensorBoard and the progress bar; the chief alone writes."""
    cbs = list(o.callbacks)
    if chief:
        os.makedirs(out_dir, exist_ok=True)
    csv_path = os.path.join(out_dir, "training_log.csv")
    if chief and o.csv_log:
        if start == 0 and os.path.exists(csv_path):
            os.unlink(csv_path)
        _trim_csv(csv_path, start)
        cbs.append(keras.callbacks.CSVLogger(csv_path, append=True))
    if chief and o.tensorboard:
        cbs.append(tensorboard_callback(os.path.join(out_dir, "tensorboard")))
    if o.progress_bar:
        cbs.append(ProgressBar(epochs))
    return cbs


@contextlib.contextmanager
def _multi_worker_fit(model):
    """Work around Keras 3's ``fit`` under ``MultiWorkerMirroredStrategy`` (keras-team/keras
    #20585, open), which fails twice:

    1. ``_maybe_symbolic_build`` eagerly reduces the first distributed input batch ("Attempt
       to convert a value (PerReplica...)"). We clear the model's stored strategy during
       ``fit`` and enter the strategy's scope instead: Keras then takes the strategy from the
       scope (``tf.distribute.get_strategy()``), distributes the dataset and runs each step
       with ``strategy.run`` as usual, and builds at trace time.
    2. The per-step logs are reduced across workers with ``strategy.reduce("MEAN", v,
       axis=0)``, which rejects scalars. We wrap ``train_step``/``test_step`` so scalar logs
       have shape ``[1]``; the reduction then averages them over all replicas (global means).

    Gradients are all-reduced by the Keras optimizer as usual. Other strategies are left
    alone.
    """
    import tensorflow as tf

    strategy = getattr(model, "_distribute_strategy", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        yield
        return

    def vectorize(step):
        def wrapped(data):
            logs = step(data)
            return {k: (tf.reshape(v, [1]) if tf.is_tensor(v) and v.shape.rank == 0 else v)
                    for k, v in logs.items()}
        return wrapped

    model._distribute_strategy = None
    model.train_step = vectorize(type(model).train_step.__get__(model))
    model.test_step = vectorize(type(model).test_step.__get__(model))
    model.train_function = model.test_function = None
    try:
        with strategy.scope():
            yield
    finally:
        del model.train_step, model.test_step
        model.train_function = model.test_function = None
        model._distribute_strategy = strategy
