"""Transfer learning: a new classifier for a new label count, and freezing by named strategy.

Block naming convention (models from helpers MODELS2D and MODELS3D follow it):

* ``encoder_1`` ... ``encoder_L``: encoder blocks, ``1`` at full resolution, ``L`` deepest;
* ``bottleneck``;
* ``decoder_L`` ... ``decoder_1``: decoder blocks, ``decoder_i`` at ``encoder_i``'s resolution;
* ``classifier``: the final layer that maps features to class scores.

A layer belongs to block ``B`` when its name is ``B`` or starts with ``B_`` or ``B/`` (so
``encoder_1_pool`` is in ``encoder_1`` but ``encoder_10`` is not). The 0-based short names
``enc<k>`` / ``dec<k>`` (used by ``res_unet3d``) are read as ``encoder_<k+1>`` /
``decoder_<k+1>``. Freezing acts on the
model's top-level layers; a nested model whose own name is not a block name is searched
recursively. Layers in no block (inputs, padding/cropping, deep-supervision side heads, an
age head) are frozen by the partial strategies and trainable in ``full``.

Strategies (:func:`apply_strategy`). Paper 002 (002_7b615860cc51c69e.txt, "Transfer Learning
Experiments" and section 3) compares six ways to adapt a pre-trained model; it says shallow
fine-tuning trains "only the bottleneck and adjacent layer", medium adds "two blocks" and deep
adds "four new blocks". Our reading, with ``d`` = distance from the bottleneck
(``d(bottleneck) = 0``, ``d(encoder_i) = d(decoder_i) = L - i + 1``):

* ``none``: no fine-tuning, every layer frozen (the pre-trained model used as is);
* ``shallow``: ``d <= 1``: bottleneck, ``encoder_L`` and ``decoder_L``;
* ``medium``: ``d <= 2``: shallow + ``encoder_{L-1}``, ``decoder_{L-1}`` (two blocks);
* ``deep``: ``d <= 4``: medium + ``encoder_{L-2}``, ``decoder_{L-2}``, ``encoder_{L-3}``,
  ``decoder_{L-3}`` (four blocks);
* ``full``: every layer trainable, starting from the pre-trained weights;
* ``scratch``: every weight re-initialised (a new model from the same architecture), all
  trainable;
* ``two_stage`` (paper 001, 001_4781efe3c87e8969.txt section 3.2): stage 1 trains only the
  ``classifier`` (15 epochs in the paper), stage 2 trains everything (50 epochs). See
  :func:`fit_two_stage`.

In ``shallow``/``medium``/``deep`` the classifier stays frozen (paper 002 keeps its label set);
pass ``train_classifier=True`` when the classifier was replaced by :func:`replace_classifier`.
Keras needs ``model.compile`` again after trainability changes (and a fresh optimizer).
Frozen BatchNormalization layers run in inference mode (Keras 3 semantics).
"""

from __future__ import annotations

import os
import re

import keras

from tfneuro.errors import InputError
from tfneuro.models._common import carry_spec

__all__ = ["STRATEGIES", "block_of", "blocks_for_strategy", "apply_strategy",
           "replace_classifier", "reinitialize", "fit_two_stage", "trainable_layer_names"]

STRATEGIES = ("none", "shallow", "medium", "deep", "full", "scratch", "two_stage")
_DEPTH = {"shallow": 1, "medium": 2, "deep": 4}
_BLOCK_RE = re.compile(r"^(encoder_\d+|decoder_\d+|bottleneck|classifier)(?:[_/].*)?$")
# 0-based short names used by tfneuro.models.res_unet3d ("enc0" = encoder_1, "dec0" = decoder_1)
_SHORT_RE = re.compile(r"^(enc|dec)(\d+)(?:[_/].*)?$")


def block_of(layer_name: str) -> str | None:
    """The block a layer name belongs to (``"encoder_3"``, ``"bottleneck"``, ...), or ``None``.

    ``enc<k>`` / ``dec<k>`` (0-based, as in ``res_unet3d``) map to ``encoder_<k+1>`` /
    ``decoder_<k+1>``.
    """
    m = _BLOCK_RE.match(layer_name)
    if m:
        # "encoder_1_pool" is in encoder_1; "encoder_12" is its own block (greedy digits)
        return m.group(1)
    m = _SHORT_RE.match(layer_name)
    if m:
        kind = "encoder" if m.group(1) == "enc" else "decoder"
        return f"{kind}_{int(m.group(2)) + 1}"
    return None


def _walk(model):
    """Yield (layer, block) for top-level layers; recurse into unnamed nested models."""
    for layer in model.layers:
        block = block_of(layer.name)
        if block is None and isinstance(layer, keras.Model):
            yield from _walk(layer)
        else:
            yield layer, block


def _levels(model) -> int:
    levels = [int(b.split("_")[1]) for _, b in _walk(model)
              if b and (b.startswith("encoder_") or b.startswith("decoder_"))]
    return max(levels) if levels else 0


def blocks_for_strategy(model, strategy: str, *, stage: int | None = None,
                        train_classifier: bool = False) -> set[str] | None:
    """The block names trainable under ``strategy`` (``None`` means every layer).

    Args:
        model: the model (its deepest encoder level ``L`` is read from layer names).
        strategy: one of :data:`STRATEGIES`.
        stage: 1 or 2 for ``two_stage``.
        train_classifier: also train ``classifier`` in shallow/medium/deep.
    """
    if strategy not in STRATEGIES:
        raise InputError("--strategy", f"unknown transfer strategy {strategy!r}; choose one of "
                                       f"{', '.join(STRATEGIES)}")
    if strategy in ("full", "scratch"):
        return None
    if strategy == "none":
        return set()
    if strategy == "two_stage":
        if stage not in (1, 2):
            raise InputError("stage", f"two_stage needs stage=1 or stage=2, got {stage!r}")
        return {"classifier"} if stage == 1 else None
    depth = _DEPTH[strategy]
    levels = _levels(model)
    found = {b for _, b in _walk(model) if b}
    if "bottleneck" not in found or levels == 0:
        raise InputError(model.name, f"strategy {strategy!r} needs layers named 'bottleneck' and "
                                     f"'encoder_i'/'decoder_i' (found blocks {sorted(found)})")
    blocks = {"bottleneck"}
    for i in range(levels, levels - depth, -1):
        if i >= 1:
            blocks |= {f"encoder_{i}", f"decoder_{i}"}
    if train_classifier:
        blocks.add("classifier")
    return blocks


def apply_strategy(model, strategy: str, *, stage: int | None = None,
                   train_classifier: bool = False):
    """Freeze/unfreeze ``model``'s layers according to a named transfer strategy.

    Args:
        model: a Keras model following the block naming convention (module docstring).
        strategy: ``none``, ``shallow``, ``medium``, ``deep``, ``full``, ``scratch`` or
            ``two_stage``.
        stage: for ``two_stage``: 1 (classifier only) or 2 (everything).
        train_classifier: also train the classifier in shallow/medium/deep.

    Returns:
        The model: the same object with trainability set, except for ``scratch``, which
        returns a re-initialised copy (:func:`reinitialize`). Re-compile it before training.
    """
    blocks = blocks_for_strategy(model, strategy, stage=stage,
                                 train_classifier=train_classifier)
    if strategy == "scratch":
        model = reinitialize(model)
    if blocks is not None and "classifier" in blocks:
        if not any(b == "classifier" for _, b in _walk(model)):
            raise InputError(model.name, "has no layer named 'classifier'")
    _set_trainable(model, blocks)
    return model


def _set_trainable(model, blocks):
    model.trainable = True
    for layer in model.layers:
        block = block_of(layer.name)
        if block is None and isinstance(layer, keras.Model):
            _set_trainable(layer, blocks)
        else:
            layer.trainable = blocks is None or (block is not None and block in blocks)


def trainable_layer_names(model) -> set[str]:
    """Names of the (leaf-level of the convention) layers that own trainable weights now."""
    names = set()
    for layer, _ in _walk(model):
        if layer.trainable_weights:
            names.add(layer.name)
    return names


def reinitialize(model):
    """A copy of ``model`` with every weight freshly initialised (strategy ``scratch``).

    Uses ``keras.models.clone_model`` (functional and sequential models, custom layers
    registered for serialization), which builds new layers that run their initializers.
    """
    try:
        return carry_spec(model, keras.models.clone_model(model))
    except Exception as e:  # subclassed models without a functional graph
        raise InputError(model.name, f"cannot be re-initialised by cloning ({e})") from None


def replace_classifier(model, num_classes: int, layer_name: str = "classifier"):
    """A copy of ``model`` whose ``layer_name`` layer outputs ``num_classes`` channels.

    Paper 001 section 3.2: "modified the classifier in last layer to make the architecture
    compatible with the number of tissue/region labels". The classifier is rebuilt from its
    config with the new count (its ``filters``, ``units`` or ``num_classes`` entry) and a fresh
    initialisation; every other layer is cloned and receives the original's weights.

    Args:
        model: a functional or sequential Keras model with a top-level ``layer_name`` layer.
        num_classes: the new number of classes.
        layer_name: the classifier's layer name.

    Returns:
        A new model (the original is untouched).
    """
    if int(num_classes) != num_classes or num_classes < 1:
        raise InputError("--num_classes", f"must be a positive integer, got {num_classes!r}")
    names = [layer.name for layer in model.layers]
    if layer_name not in names:
        raise InputError(model.name, f"has no top-level layer named {layer_name!r}")
    old = model.get_layer(layer_name)
    key = next((k for k in ("filters", "units", "num_classes") if k in old.get_config()), None)
    if key is None:
        raise InputError(layer_name, f"layer {type(old).__name__} has no 'filters', 'units' or "
                                     f"'num_classes' in its config; cannot change its class count")

    def clone(layer):
        config = layer.get_config()
        if layer.name == layer_name:
            config[key] = int(num_classes)
        return layer.__class__.from_config(config)

    try:
        new = keras.models.clone_model(model, clone_function=clone)
    except Exception as e:
        raise InputError(model.name, f"cannot be cloned to replace its classifier ({e})") from None
    for layer in new.layers:
        if layer.name != layer_name and layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return carry_spec(model, new)


def fit_two_stage(model, compile_fn, train_ds, val_ds=None, *, out_dir,
                  stage1_epochs: int = 15, stage2_epochs: int = 50, resume: bool = False,
                  **fit_kwargs):
    """Paper 001's two-stage fine-tuning with checkpoints and resume for each stage.

    Stage 1 trains only the classifier for ``stage1_epochs`` (paper: 15); stage 2 unfreezes
    every layer and trains ``stage2_epochs`` (paper: 50), each stage with its own optimizer.

    Args:
        model: a pre-trained model (usually after :func:`replace_classifier`).
        compile_fn: ``compile_fn(model, stage)`` compiles ``model`` with a fresh optimizer
            (called after trainability is set for each stage).
        train_ds, val_ds: as in :func:`tfneuro.training.loop.fit`.
        out_dir: run directory; stages write ``out_dir/stage1`` and ``out_dir/stage2``.
        stage1_epochs, stage2_epochs: epochs per stage.
        resume: continue an interrupted run (a run with stage-2 checkpoints skips stage 1).
        **fit_kwargs: passed to :func:`tfneuro.training.loop.fit` (``seed``, ...).

    Returns:
        ``pandas.DataFrame`` of both stages' epochs with a ``stage`` column.
    """
    import pandas as pd

    from tfneuro.training.loop import fit, latest_checkpoint

    out_dir = os.fspath(out_dir)
    stage2_dir = os.path.join(out_dir, "stage2")
    frames = []
    if not (resume and latest_checkpoint(stage2_dir)):
        apply_strategy(model, "two_stage", stage=1)
        compile_fn(model, 1)
        h1 = fit(model, train_ds, val_ds, epochs=stage1_epochs,
                 out_dir=os.path.join(out_dir, "stage1"), resume=resume, **fit_kwargs)
        frames.append(h1.assign(stage=1))
    apply_strategy(model, "two_stage", stage=2)
    compile_fn(model, 2)
    h2 = fit(model, train_ds, val_ds, epochs=stage2_epochs, out_dir=stage2_dir, resume=resume,
             **fit_kwargs)
    frames.append(h2.assign(stage=2))
    return pd.concat(frames, ignore_index=True)
