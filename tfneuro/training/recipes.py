"""Optimizers and learning-rate schedules of the five papers, as named recipes.

``get_recipe(name)`` returns a :class:`Recipe` (the paper's hyper-parameters as data) and
``make_optimizer(name, steps_per_epoch=..., epochs=...)`` builds the Keras optimizer with its
schedule. ``lr_sweep`` is paper 001's learning-rate search.

Recipes (defaults are the papers' values; every departure is noted):

* ``"paper002"`` -- SGD, Nesterov momentum 0.99, weight decay, initial rate 1e-2, poly decay
  ``(1 - epoch/epoch_max)^0.9`` (002_7b615860cc51c69e.txt, section 2). The paper does not give
  the weight-decay value; we use 3e-5, the value of nnU-Net, which paper 002 follows for its
  loss ("Following [11]"). Full-label baseline 20 epochs, label-budget runs 60 epochs (Table 3).
* ``"paper003"`` -- SGD, momentum 0.95, initial rate 0.01, x0.1 every 10 epochs, batch 8
  (003_8dd6f4193dee9d40.txt, section 3 "Network Configuration"). The paper trains "until
  convergence"; we default to 30 epochs (three rate levels).
* ``"paper004"`` -- SGD, momentum 0.99, weight decay 0.005, rate 1e-10 (neonates; 1e-8 for
  adults), 20 images per batch, 100k iterations (004_ca2e59df11513ff3.txt, section 2.3).
  These rates belong to Caffe's un-normalised loss (summed over pixels, "averaged over 20
  images"). Keras losses average over voxels, so the gradient is ``1/P`` of Caffe's (``P`` =
  pixels per image): :func:`caffe_equivalent` converts (lr, weight decay) so a mean-reduced loss
  takes the same steps.
* ``"paper001"`` / ``"paper001_finetune"`` -- Adam, rate 5e-5 for pre-training on auxiliary
  labels and 1e-4 for fine-tuning (001_4781efe3c87e8969.txt, sections 3.1 and 3.2; section
  3.3's "1 x 10^4" is read as 1e-4), batch 8, 50 epochs, fine-tuning stage I 15 epochs
  (classifier only) then stage II 50 epochs. Paper 001 names neither the optimizer nor its
  9 swept rates (they are in its unavailable supplement); Adam is what issue 6 specifies (and
  QuickNAT's reference code uses), and :data:`PAPER001_RATES` is a log grid of 9 rates that
  contains both reported optima.

Weight decay: PyTorch (paper 002's nnU-Net heritage) and Caffe (paper 004) add ``wd * w`` to
the gradient *before* momentum ("coupled" L2). Keras' built-in ``weight_decay`` is decoupled
(``w -= lr * wd * w`` outside the momentum buffer), which with momentum 0.99 decays about 100x
less. :class:`SGDL2` therefore implements the coupled form, and the recipes use it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Callable, Sequence

import keras

from tfneuro.errors import InputError
from tfneuro.training.schedules import PolyDecay, StepDecay

__all__ = ["SGDL2", "Recipe", "RECIPES", "PAPER001_RATES", "get_recipe", "list_recipes",
           "make_optimizer", "caffe_equivalent", "lr_sweep"]

#: Paper 001's sweep: 9 pre-defined rates (the paper's own list is in its supplement, which
#: we do not have); a log grid containing its reported optima 5e-5 and 1e-4.
PAPER001_RATES = (1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2)


@keras.saving.register_keras_serializable(package="tfneuro")
class SGDL2(keras.optimizers.SGD):
    """SGD (optionally Nesterov) with *coupled* L2 weight decay, as in PyTorch and Caffe.

    Each step uses the gradient ``g + l2 * w`` in Keras' SGD update
    (``v = momentum * v - lr * g'``; ``w += v``, or ``w += momentum * v - lr * g'`` with
    Nesterov), so the decay passes through the momentum buffer like
    ``torch.optim.SGD(weight_decay=...)`` and Caffe's ``weight_decay``.

    Args:
        learning_rate: float or ``LearningRateSchedule``.
        momentum: momentum factor.
        nesterov: Nesterov momentum.
        l2: the coupled weight-decay coefficient (0 disables it).
        **kwargs: passed to ``keras.optimizers.SGD`` (e.g. ``name``, ``clipnorm``).
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, l2=0.0, **kwargs):
        if l2 < 0:
            raise InputError("l2", f"weight decay must be >= 0, got {l2!r}")
        super().__init__(learning_rate=learning_rate, momentum=momentum, nesterov=nesterov,
                         **kwargs)
        self.l2 = float(l2)

    def update_step(self, gradient, variable, learning_rate):
        if self.l2:
            gradient = keras.ops.add(
                gradient, keras.ops.multiply(keras.ops.cast(self.l2, variable.dtype), variable))
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config["l2"] = self.l2
        return config


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A paper's training hyper-parameters.

    Args:
        name: recipe name.
        paper: the paper file and section the values come from.
        optimizer: ``"sgd"`` or ``"adam"``.
        learning_rate: initial learning rate.
        momentum: SGD momentum (``None`` for Adam).
        nesterov: Nesterov momentum.
        weight_decay: coupled L2 coefficient.
        schedule: ``"constant"``, ``"poly"`` or ``"step"``.
        schedule_kwargs: extra schedule arguments (``power``; ``drop_every``, ``factor``).
        batch_size: the paper's batch size (``None`` if not stated).
        epochs: the paper's epoch count (or our default; see ``notes``).
        notes: departures and interpretations.
    """

    name: str
    paper: str
    optimizer: str
    learning_rate: float
    momentum: float | None = None
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "constant"
    schedule_kwargs: dict = dataclasses.field(default_factory=dict)
    batch_size: int | None = None
    epochs: int | None = None
    notes: str = ""


RECIPES = {
    "paper002": Recipe(
        "paper002", "002_7b615860cc51c69e.txt section 2 (Pipeline Design)", "sgd", 1e-2,
        momentum=0.99, nesterov=True, weight_decay=3e-5, schedule="poly",
        schedule_kwargs={"power": 0.9}, batch_size=None, epochs=20,
        notes="weight decay value not stated in the paper: 3e-5 (nnU-Net). 20 epochs = the "
              "full-label baseline of Table 3; label-budget runs use 60."),
    "paper003": Recipe(
        "paper003", "003_8dd6f4193dee9d40.txt section 3 (Network Configuration)", "sgd", 0.01,
        momentum=0.95, schedule="step", schedule_kwargs={"drop_every": 10, "factor": 0.1},
        batch_size=8, epochs=30,
        notes="paper trains 'until convergence'; 30 epochs is our default."),
    "paper004": Recipe(
        "paper004", "004_ca2e59df11513ff3.txt section 2.3", "sgd", 1e-10, momentum=0.99,
        weight_decay=0.005, batch_size=20, epochs=None,
        notes="rate for Caffe's summed loss (neonates; adults 1e-8); 100k iterations; see "
              "caffe_equivalent() for a mean-reduced Keras loss."),
    "paper001": Recipe(
        "paper001", "001_4781efe3c87e8969.txt sections 2.3, 3.1", "adam", 5e-5, batch_size=8,
        epochs=50, notes="pre-training on auxiliary labels; optimizer not named in the paper "
                         "(Adam per issue 6 / QuickNAT code)."),
    "paper001_finetune": Recipe(
        "paper001_finetune", "001_4781efe3c87e8969.txt sections 3.2, 3.3", "adam", 1e-4,
        batch_size=8, epochs=50,
        notes="two-stage fine-tuning: stage I 15 epochs classifier only, stage II 50 epochs."),
}


def list_recipes() -> list[str]:
    """Names accepted by :func:`get_recipe` and :func:`make_optimizer`."""
    return sorted(RECIPES)


def get_recipe(name: str | Recipe) -> Recipe:
    """Return the named :class:`Recipe` (a ``Recipe`` is returned unchanged).

    Raises:
        InputError: unknown name.
    """
    if isinstance(name, Recipe):
        return name
    if name not in RECIPES:
        raise InputError("--recipe", f"unknown recipe {name!r}; choose one of "
                                     f"{', '.join(list_recipes())}")
    return RECIPES[name]


def make_optimizer(recipe: str | Recipe, *, steps_per_epoch: int = 1, epochs: int | None = None,
                   learning_rate: float | None = None, weight_decay: float | None = None,
                   **overrides) -> keras.optimizers.Optimizer:
    """Build the recipe's optimizer with its learning-rate schedule.

    Args:
        recipe: recipe name or :class:`Recipe`.
        steps_per_epoch: optimizer steps per epoch (the schedules are per epoch).
        epochs: total epochs (``epoch_max`` of the poly schedule); default the recipe's.
        learning_rate: overrides the recipe's initial rate (e.g. from an LR sweep).
        weight_decay: overrides the recipe's coupled L2 coefficient.
        **overrides: other ``Recipe`` fields to replace (``momentum``, ``nesterov``,
            ``schedule``, ``schedule_kwargs``).

    Returns:
        A fresh Keras optimizer (one per model; optimizers are stateful).
    """
    r = get_recipe(recipe)
    changes = dict(overrides)
    if learning_rate is not None:
        changes["learning_rate"] = float(learning_rate)
    if weight_decay is not None:
        changes["weight_decay"] = float(weight_decay)
    if changes:
        unknown = set(changes) - {f.name for f in dataclasses.fields(Recipe)}
        if unknown:
            raise InputError("make_optimizer", f"unknown recipe fields {sorted(unknown)}")
        r = dataclasses.replace(r, **changes)
    if not r.learning_rate > 0:
        raise InputError("--learning_rate", f"must be > 0, got {r.learning_rate!r}")
    epochs = r.epochs if epochs is None else epochs
    if r.schedule == "poly":
        if not epochs:
            raise InputError("--epochs", f"recipe {r.name!r} (poly decay) needs the epoch count")
        lr = PolyDecay(r.learning_rate, max_epochs=epochs, steps_per_epoch=steps_per_epoch,
                       **r.schedule_kwargs)
    elif r.schedule == "step":
        lr = StepDecay(r.learning_rate, steps_per_epoch=steps_per_epoch, **r.schedule_kwargs)
    elif r.schedule == "constant":
        lr = r.learning_rate
    else:
        raise InputError("schedule", f"unknown schedule {r.schedule!r}")
    if r.optimizer == "sgd":
        return SGDL2(learning_rate=lr, momentum=r.momentum or 0.0, nesterov=r.nesterov,
                     l2=r.weight_decay)
    if r.optimizer == "adam":
        if r.weight_decay:
            return keras.optimizers.AdamW(learning_rate=lr, weight_decay=r.weight_decay)
        return keras.optimizers.Adam(learning_rate=lr)
    raise InputError("optimizer", f"unknown optimizer {r.optimizer!r}")


def caffe_equivalent(learning_rate: float, weight_decay: float, pixels_per_image: int):
    """Convert Caffe (summed-loss) SGD settings for a Keras mean-reduced loss.

    Caffe's FCN loss (paper 004) sums the per-pixel cross-entropy and averages over images, so
    its data gradient is ``P`` times that of a loss averaged over the ``P`` pixels of an image.
    Multiplying the rate by ``P`` gives the same data step; dividing the (coupled) weight decay
    by ``P`` keeps the decay step ``lr * wd * w`` unchanged.

    Args:
        learning_rate: Caffe rate (paper 004: 1e-10 neonates, 1e-8 adults).
        weight_decay: Caffe weight decay (paper 004: 0.005).
        pixels_per_image: pixels over which the Keras loss averages per image.

    Returns:
        ``(learning_rate, weight_decay)`` for a mean-reduced loss.
    """
    if pixels_per_image < 1:
        raise InputError("pixels_per_image", f"must be >= 1, got {pixels_per_image!r}")
    return learning_rate * pixels_per_image, weight_decay / pixels_per_image


def lr_sweep(build_and_train_fn: Callable[[float], float | dict], rates: Sequence[float] =
             PAPER001_RATES, *, metric: str | None = None, mode: str = "max",
             out_csv: str | os.PathLike | None = None):
    """Paper 001's learning-rate search: train once per rate, keep the best on validation.

    Paper 001 (section 2.3) "trained each model for 50 epochs with 9 different pre-defined
    learning rates ... and chose the optimal learning rate based on segmentation accuracy".
    We choose on a validation score that ``build_and_train_fn`` returns (never the test set).

    Args:
        build_and_train_fn: ``fn(rate) -> score`` or ``-> dict of scores``; builds a fresh
            model, trains it with that rate and evaluates it on validation data.
        rates: the rates to try (default :data:`PAPER001_RATES`).
        metric: key of the score in the returned dict (required when dicts are returned).
        mode: ``"max"`` (e.g. Dice) or ``"min"`` (e.g. loss).
        out_csv: if given, the table is written there (atomically).

    Returns:
        ``(best_rate, table)``: ``table`` is a ``pandas.DataFrame`` with a row per rate
        (column ``learning_rate``, the score column(s), and ``best`` marking the winner).
        Non-finite scores (diverged runs) never win.
    """
    import pandas as pd

    from tfneuro.utils.atomic import atomic_path
    from tfneuro.utils.progress import progress

    rates = [float(r) for r in rates]
    if not rates:
        raise InputError("--rates", "no learning rates to sweep")
    bad = [r for r in rates if not (r > 0 and math.isfinite(r))]
    if bad:
        raise InputError("--rates", f"learning rates must be positive numbers, got {bad}")
    if mode not in ("max", "min"):
        raise InputError("mode", f"must be 'max' or 'min', got {mode!r}")
    rows = []
    for rate in progress(rates, desc="lr sweep", unit="rate"):
        result = build_and_train_fn(rate)
        if isinstance(result, dict):
            if metric is None or metric not in result:
                raise InputError("metric", f"build_and_train_fn returned keys {sorted(result)}"
                                           f"; pass metric= naming the validation score")
            row = {"learning_rate": rate, **{k: float(v) for k, v in result.items()}}
            score = float(result[metric])
        else:
            score = float(result)
            row = {"learning_rate": rate, metric or "score": score}
        row["_score"] = score
        rows.append(row)
    table = pd.DataFrame(rows)
    finite = table["_score"].apply(math.isfinite)
    if not finite.any():
        raise RuntimeError("lr_sweep: every rate gave a non-finite score (all runs diverged)")
    candidates = table[finite]
    idx = candidates["_score"].idxmax() if mode == "max" else candidates["_score"].idxmin()
    table["best"] = table.index == idx
    table = table.drop(columns="_score")
    best = float(table.loc[idx, "learning_rate"])
    if out_csv is not None:
        with atomic_path(out_csv) as tmp:
            table.to_csv(tmp, index=False)
    return best, table
