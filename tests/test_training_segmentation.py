"""tfneuro.training.segmentation: AgeU-Net's age weight in the loss (paper 002), and the step
counts / repeating datasets the experiments share."""

import keras
import numpy as np
import pytest

from tfneuro.errors import InputError
from tfneuro.losses import DeepSupervisionLoss, DiceCELoss
from tfneuro.models import get
from tfneuro.training import segmentation as S


def test_age_weight_enters_the_loss_as_lambda_times_the_age_mse():
    """AgeU-Net's total loss is ``L_seg + λ · MSE(age)`` (paper 002; λ = 0.01 from the
    authors' code). With the model's own outputs fixed, ``L(λ) - L(0)`` must be ``λ`` times the
    age MSE computed here in numpy, ``L(0)`` must be the deep-supervised Dice + CE of the
    segmentation outputs alone, and the default must be λ = 0.01.

    Seen failing: with ``compile_segmentation`` passing ``loss_weights=None`` (the weight
    dropped: λ = 1 whatever was asked) ``L(0.01) - L(0)`` was 0.0 instead of 0.01 x MSE = 2.05;
    with the age term left out of the loss dict it was 0.0 too.
    """
    keras.utils.set_random_seed(0)
    model = get("age_unet3d", num_classes=3, input_shape=(16, 16, 16, 2), base_filters=2,
                depth=4, age_hidden=(4,))  # depth 4: one deep-supervision output
    rng = np.random.default_rng(0)
    x = rng.random((2, 16, 16, 16, 2)).astype("float32")
    y = {"segmentation": rng.integers(0, 3, (2, 16, 16, 16)).astype("int32"),
         "age": np.array([[3.0], [20.0]], "float32")}
    pred = model(x, training=True)
    assert len(pred["segmentation"]) == 2
    loss = {}
    for lam in (0.0, 0.01, 1.0, None):
        S.compile_segmentation(model, steps_per_epoch=1, epochs=1, learning_rate=0.01,
                               age_weight=lam)
        loss[lam] = float(model.compute_loss(x, y, pred))
    mse = float(np.mean((y["age"] - keras.ops.convert_to_numpy(pred["age"])) ** 2))
    assert mse > 1.0  # an untrained head: the age term is not negligible
    assert loss[0.01] - loss[0.0] == pytest.approx(0.01 * mse, rel=1e-4)
    assert loss[1.0] - loss[0.0] == pytest.approx(mse, rel=1e-4)
    seg = DeepSupervisionLoss(DiceCELoss())(y["segmentation"], list(pred["segmentation"]))
    assert loss[0.0] == pytest.approx(float(seg), rel=1e-5)
    assert loss[None] == pytest.approx(loss[0.01], rel=1e-6)


def test_age_weight_without_an_age_head_is_refused():
    """Seen failing: without the ``elif`` a segmentation-only model compiled silently."""
    model = get("res_unet3d", num_classes=3, input_shape=(None, None, None, 1), base_filters=2,
                depth=3)
    with pytest.raises(InputError, match="age_weight"):
        S.compile_segmentation(model, steps_per_epoch=1, epochs=1, learning_rate=0.01,
                               age_weight=0.5)


def test_patch_steps_count_batches_and_repeating():
    """Steps by hand: ceil(5 volumes x 3 patches / 4) = 4; one pass of range(10) in batches of 3
    is 4 batches; ``repeating`` yields more than one pass. Seen failing: with floor division in
    ``patch_steps`` it gave 3."""
    import tensorflow as tf

    assert S.patch_steps(5, 3, 4) == 4 and S.patch_steps(1, 1, 8) == 1
    make = lambda epoch: tf.data.Dataset.range(10).batch(3)  # noqa: E731
    assert S.count_batches(make(0)) == 4
    assert len(list(S.repeating(make)(0).take(9))) == 9
