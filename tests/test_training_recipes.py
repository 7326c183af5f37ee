"""tfneuro.training.schedules / recipes: schedules against hand values, SGD coupled L2 step
against a hand computation, recipe defaults from the papers, LR sweep."""

import math

import numpy as np
import pytest

import keras

from tfneuro.errors import InputError
from tfneuro.training import recipes, schedules


def test_poly_decay_hand_values():
    # paper 002: lr0 * (1 - epoch / epoch_max) ** 0.9, epoch constant within an epoch
    s = schedules.PolyDecay(1e-2, max_epochs=10, steps_per_epoch=5)
    expected = {0: 1e-2, 4: 1e-2, 5: 1e-2 * 0.9 ** 0.9, 9: 1e-2 * 0.9 ** 0.9,
                10: 1e-2 * 0.8 ** 0.9, 47: 1e-2 * 0.1 ** 0.9, 50: 0.0, 80: 0.0}
    for step, lr in expected.items():
        assert float(s(step)) == pytest.approx(lr, rel=1e-6, abs=1e-12), step
    assert float(s(5)) == pytest.approx(0.0090953, rel=1e-4)  # 0.01 * 0.9**0.9 by hand


def test_step_decay_hand_values():
    # paper 003: 0.01, one order less every 10 epochs
    s = schedules.StepDecay(0.01, steps_per_epoch=3, drop_every=10, factor=0.1)
    assert float(s(0)) == pytest.approx(0.01)
    assert float(s(29)) == pytest.approx(0.01)      # epoch 9
    assert float(s(30)) == pytest.approx(0.001)     # epoch 10
    assert float(s(59)) == pytest.approx(0.001)     # epoch 19
    assert float(s(60)) == pytest.approx(0.0001)    # epoch 20


@pytest.mark.parametrize("sched", [schedules.PolyDecay(0.02, 7, 3, power=0.8),
                                   schedules.StepDecay(0.05, 4, 2, 0.5)])
def test_schedules_serialize(sched):
    again = keras.optimizers.schedules.deserialize(
        keras.optimizers.schedules.serialize(sched))
    assert type(again) is type(sched) and again.get_config() == sched.get_config()
    for step in (0, 3, 11, 25):
        assert float(again(step)) == pytest.approx(float(sched(step)))


def test_schedule_in_optimizer_and_keras_roundtrip(tmp_path):
    opt = recipes.make_optimizer("paper002", steps_per_epoch=2, epochs=4)
    inp = keras.Input((3,))
    model = keras.Model(inp, keras.layers.Dense(1)(inp))
    model.compile(optimizer=opt, loss="mse")
    model.fit(np.ones((4, 3), "float32"), np.ones((4, 1), "float32"), batch_size=2,
              epochs=2, verbose=0)
    assert int(opt.iterations) == 4
    assert float(opt.learning_rate) == pytest.approx(1e-2 * (1 - 2 / 4) ** 0.9, rel=1e-6)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.optimizer, recipes.SGDL2)
    assert loaded.optimizer.l2 == pytest.approx(3e-5)
    assert isinstance(loaded.optimizer._learning_rate, schedules.PolyDecay)


def test_sgd_l2_coupled_hand_values():
    # v = m*v - lr*(g + wd*w);  w += m*v - lr*(g + wd*w)  (Nesterov, Keras formulation)
    lr, m, wd = 0.1, 0.9, 0.01
    opt = recipes.SGDL2(learning_rate=lr, momentum=m, nesterov=True, l2=wd)
    w0, g0, g1 = 2.0, 0.5, -0.25
    v = keras.Variable(np.array([w0], "float32"))
    opt.build([v])
    opt.apply([np.array([g0], "float32")], [v])
    gp = g0 + wd * w0
    mom = -lr * gp
    w1 = w0 + m * mom - lr * gp
    assert float(np.asarray(v)[0]) == pytest.approx(w1, rel=1e-6)
    opt.apply([np.array([g1], "float32")], [v])
    gp = g1 + wd * w1
    mom = m * mom - lr * gp
    w2 = w1 + m * mom - lr * gp
    assert float(np.asarray(v)[0]) == pytest.approx(w2, rel=1e-6)


def test_sgd_l2_differs_from_decoupled_with_momentum():
    # with g = 0 only the decay acts: coupled decay accumulates in the momentum buffer
    opt = recipes.SGDL2(learning_rate=0.1, momentum=0.9, l2=0.1)
    v = keras.Variable(np.array([1.0], "float32"))
    opt.build([v])
    for _ in range(2):
        opt.apply([np.array([0.0], "float32")], [v])
    # by hand (plain momentum): step1 mom=-0.01 w=0.99; step2 mom=0.9*-0.01-0.1*0.099
    w = 1.0 + -0.01
    w = w + (0.9 * -0.01 - 0.1 * 0.1 * w)
    assert float(np.asarray(v)[0]) == pytest.approx(w, rel=1e-6)


def test_recipes_carry_the_papers_values():
    r = recipes.get_recipe("paper002")
    assert (r.learning_rate, r.momentum, r.nesterov, r.schedule) == (1e-2, 0.99, True, "poly")
    assert r.schedule_kwargs == {"power": 0.9}
    r = recipes.get_recipe("paper003")
    assert (r.learning_rate, r.momentum, r.batch_size) == (0.01, 0.95, 8)
    assert r.schedule_kwargs == {"drop_every": 10, "factor": 0.1}
    r = recipes.get_recipe("paper004")
    assert (r.learning_rate, r.momentum, r.weight_decay, r.batch_size) == (1e-10, 0.99, 0.005, 20)
    assert recipes.get_recipe("paper001").learning_rate == 5e-5
    assert recipes.get_recipe("paper001_finetune").learning_rate == 1e-4
    assert len(recipes.PAPER001_RATES) == 9
    assert {5e-5, 1e-4} <= set(recipes.PAPER001_RATES)

    opt = recipes.make_optimizer("paper003", steps_per_epoch=10)
    assert isinstance(opt, recipes.SGDL2) and opt.momentum == pytest.approx(0.95)
    assert isinstance(opt._learning_rate, schedules.StepDecay)
    opt = recipes.make_optimizer("paper004")
    assert opt.momentum == pytest.approx(0.99) and opt.l2 == pytest.approx(0.005)
    assert not opt.nesterov
    opt = recipes.make_optimizer("paper001", learning_rate=1e-3)
    assert isinstance(opt, keras.optimizers.Adam)
    assert float(opt.learning_rate) == pytest.approx(1e-3)


def test_caffe_equivalent():
    lr, wd = recipes.caffe_equivalent(1e-10, 0.005, pixels_per_image=256 * 256)
    assert lr == pytest.approx(1e-10 * 65536) and wd == pytest.approx(0.005 / 65536)
    assert lr * wd == pytest.approx(1e-10 * 0.005)  # decay step unchanged


def test_bad_recipe_input():
    with pytest.raises(InputError, match="--recipe"):
        recipes.get_recipe("paper999")
    with pytest.raises(InputError, match="--epochs"):
        recipes.make_optimizer(recipes.Recipe("x", "", "sgd", 0.1, schedule="poly"))
    with pytest.raises(InputError, match="--learning_rate"):
        recipes.make_optimizer("paper003", learning_rate=-1)
    with pytest.raises(InputError, match="max_epochs"):
        schedules.PolyDecay(0.1, max_epochs=0)


def test_lr_sweep_picks_best_and_skips_diverged(tmp_path):
    scores = {1e-4: 0.7, 1e-3: 0.9, 1e-2: float("nan"), 1e-1: 0.5}
    calls = []

    def run(rate):
        calls.append(rate)
        return {"val_dice": scores[rate], "val_loss": 1 - (scores[rate] or 0)}

    best, table = recipes.lr_sweep(run, list(scores), metric="val_dice",
                                   out_csv=tmp_path / "sweep.csv")
    assert best == 1e-3 and calls == list(scores)
    assert list(table["learning_rate"]) == list(scores)
    assert table["best"].tolist() == [False, True, False, False]
    assert (tmp_path / "sweep.csv").exists()
    best, _ = recipes.lr_sweep(lambda r: {1e-4: 3.0, 1e-3: 1.0}[r], [1e-4, 1e-3], mode="min")
    assert best == 1e-3
    with pytest.raises(InputError, match="metric"):
        recipes.lr_sweep(run, [1e-4])
    with pytest.raises(RuntimeError, match="diverged"):
        recipes.lr_sweep(lambda r: math.inf, [1e-4])
