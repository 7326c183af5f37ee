"""Tests for tfneuro.explain (Grad-CAM vs tf-explain and a hand computation; Table-4 ANOVA)."""

import numpy as np
import keras
import pandas as pd
import pytest
import tensorflow as tf
from scipy import stats

from tfneuro.errors import InputError
from tfneuro.explain import (grad_cam, grad_cam_tf_explain, heatmap_anova_table,
                             heatmap_statistics, normalize_heatmap)


def _classifier(ndim, seed=0):
    keras.utils.set_random_seed(seed)
    conv = keras.layers.Conv2D if ndim == 2 else keras.layers.Conv3D
    gap = keras.layers.GlobalAveragePooling2D if ndim == 2 else keras.layers.GlobalAveragePooling3D
    inp = keras.Input((12,) * ndim + (3,))
    x = conv(6, 3, padding="same", activation="relu")(inp)
    x = conv(5, 3, strides=2, padding="same", activation="relu", name="feat")(x)
    x = gap()(x)
    out = keras.layers.Dense(4, activation="softmax")(x)
    return keras.Model(inp, out)


@pytest.mark.parametrize("guided", [True, False])
def test_grad_cam_matches_tf_explain_2d(guided):
    model = _classifier(2)
    x = np.random.default_rng(0).normal(size=(3, 12, 12, 3)).astype("float32")
    ours = grad_cam(model, x, 2, "feat", upsample=False, guided=guided)
    theirs = grad_cam_tf_explain(model, x, 2, "feat", use_guided_grads=guided)
    assert ours.shape == theirs.shape == (3, 6, 6)
    assert ours.max() > 0
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)


def test_grad_cam_3d_by_hand_and_upsampled_shape():
    model = _classifier(3, seed=1)
    x = np.random.default_rng(1).normal(size=(2, 12, 12, 12, 3)).astype("float32")
    # hand computation from the definition with a separate tape
    feat_model = keras.Model(model.inputs, [model.get_layer("feat").output, model.output])
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        a, p = feat_model(xt)
        score = p[:, 1]
    g = tape.gradient(score, a).numpy()
    a = a.numpy()
    w = g.mean(axis=(1, 2, 3))  # [B, K]
    want = np.maximum(np.einsum("bxyzk,bk->bxyz", a, w), 0)
    got = grad_cam(model, x, 1, "feat", upsample=False)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    up = grad_cam(model, x, 1, "feat")
    assert up.shape == (2, 12, 12, 12) and up.min() >= 0
    # trilinear upsampling of a constant map stays constant
    from tfneuro.explain import resize_maps
    np.testing.assert_allclose(resize_maps(np.full((1, 3, 4, 5), 2.0), (6, 8, 10)), 2.0)


def test_grad_cam_unknown_layer():
    with pytest.raises(InputError):
        grad_cam(_classifier(2), np.zeros((1, 12, 12, 3)), 0, "nope")


def test_anova_table_equals_scipy_f_oneway(tmp_path):
    rng = np.random.default_rng(0)
    groups = [12] * 4 + [18] * 5 + [24] * 3
    values = np.concatenate([rng.normal(0.2, 0.3, 4), rng.normal(0.8, 0.3, 5),
                             rng.normal(1.2, 0.1, 3)])
    path = tmp_path / "table4.csv"
    table = heatmap_anova_table(values, groups, csv_path=path)
    f_ref, p_ref = stats.f_oneway(values[:4], values[4:9], values[9:])
    # F from its definition: between-group / within-group mean squares
    parts = [values[:4], values[4:9], values[9:]]
    grand = values.mean()
    ssb = sum(len(s) * (s.mean() - grand) ** 2 for s in parts)
    ssw = sum(((s - s.mean()) ** 2).sum() for s in parts)
    f_hand = (ssb / 2) / (ssw / (len(values) - 3))
    assert table.loc["95th percentile", "F"] == pytest.approx(f_ref, rel=1e-12)
    assert table.loc["95th percentile", "F"] == pytest.approx(f_hand, rel=1e-10)
    assert table.loc["95th percentile", "p value"] == pytest.approx(p_ref, rel=1e-12)
    s = values[4:9]
    assert table.loc["95th percentile", "18"] == f"{s.mean():.4f} ± {s.std(ddof=1):.4f}"
    assert list(table.columns) == ["12", "18", "24", "F", "p value"]
    back = pd.read_csv(path, index_col=0)
    assert back.loc["95th percentile", "24"] == table.loc["95th percentile", "24"]


def test_heatmap_statistics_percentiles():
    rng = np.random.default_rng(1)
    maps = [rng.gamma(2.0, size=(6, 6, 6)) for _ in range(6)]
    per_subject, table = heatmap_statistics(maps, [12, 12, 12, 60, 60, 60])
    for h, v in zip(maps, per_subject["value"]):
        z = (h - h.mean()) / h.std()
        assert v == pytest.approx(np.percentile(z, 95))
    assert "p value" in table.columns
    mm = normalize_heatmap(maps[0], "minmax")
    assert mm.min() == 0 and mm.max() == 1


def test_anova_needs_two_subjects_per_group():
    with pytest.raises(InputError):
        heatmap_anova_table([1.0, 2.0, 3.0], [12, 18, 18])
