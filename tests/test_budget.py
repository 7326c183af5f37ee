"""tfneuro.data.budget: slice label budgets (paper 002)."""

import numpy as np
import pytest

from tfneuro.data import budget
from tfneuro.errors import InputError

SHAPE = (30, 24, 18)


def _labelled_slices(mask, axis):
    """Independent check: which slices along `axis` are fully kept / partly kept."""
    others = tuple(a for a in range(3) if a != axis)
    return mask.all(axis=others), mask.any(axis=others)


@pytest.mark.parametrize("allocation,axis", [("sagittal", 0), ("coronal", 1), ("axial", 2)])
def test_fraction_along_each_axis(allocation, axis):
    mask = budget.budget_mask(SHAPE, allocation, 1 / 3, seed=3, key="sub-01")
    assert mask.shape == SHAPE and mask.dtype == bool
    full, anyk = _labelled_slices(mask, axis)
    np.testing.assert_array_equal(full, anyk)  # a slice is labelled entirely or not at all
    n = SHAPE[axis]
    assert full.sum() == round(n / 3)  # 30 -> 10, 24 -> 8, 18 -> 6
    assert mask.mean() == pytest.approx(round(n / 3) / n)
    # along the other axes every slice is partly labelled (i.e. no other axis is used)
    for other in set(range(3)) - {axis}:
        full_o, any_o = _labelled_slices(mask, other)
        assert any_o.all() and not full_o.any()


def test_other_fractions_and_minimum_one_slice():
    m = budget.budget_mask(SHAPE, "axial", 0.5, seed=0)
    assert _labelled_slices(m, 2)[0].sum() == 9
    m = budget.budget_mask(SHAPE, "axial", 0.01, seed=0)
    assert _labelled_slices(m, 2)[0].sum() == 1
    m = budget.budget_mask(SHAPE, "coronal", 1.0, seed=0)
    assert m.all()


def test_deterministic_per_seed_and_key():
    a = budget.budget_mask(SHAPE, "sagittal", seed=5, key="sub-01")
    b = budget.budget_mask(SHAPE, "sagittal", seed=5, key="sub-01")
    np.testing.assert_array_equal(a, b)
    c = budget.budget_mask(SHAPE, "sagittal", seed=6, key="sub-01")
    d = budget.budget_mask(SHAPE, "sagittal", seed=5, key="sub-02")
    assert not np.array_equal(a, c) and not np.array_equal(a, d)


def test_random_allocation_uses_one_axis_per_volume_and_mixes_axes():
    axes = []
    for key in range(30):
        mask = budget.budget_mask(SHAPE, "random", 1 / 3, seed=1, key=key)
        used = [ax for ax in range(3) if np.array_equal(*_labelled_slices(mask, ax))]
        assert len(used) == 1
        ax = used[0]
        assert _labelled_slices(mask, ax)[0].sum() == round(SHAPE[ax] / 3)
        axes.append(ax)
    assert set(axes) == {0, 1, 2}


def test_weights_inside_nonzero_bbox():
    label = np.zeros(SHAPE, np.int32)
    label[5:20, 4:16, 3:15] = 2  # bounding box along z: 3..14 (12 slices)
    w = budget.budget_weights(label, "axial", 1 / 3, seed=0, key="s")
    assert w.dtype == np.float32 and w.shape == SHAPE
    assert set(np.unique(w)) <= {0.0, 1.0}
    z_kept = np.nonzero(w.all(axis=(0, 1)))[0]
    assert len(z_kept) == 4 and z_kept.min() >= 3 and z_kept.max() <= 14
    assert w[..., :3].sum() == 0 and w[..., 15:].sum() == 0
    w_all = budget.budget_weights(label, "axial", 1 / 3, seed=0, crop_to_nonzero=False)
    assert w_all.all(axis=(0, 1)).sum() == 6


def test_even_spacing():
    m = budget.budget_mask((4, 4, 30), "axial", 1 / 3, seed=2, spacing="even")
    z = np.nonzero(m.all(axis=(0, 1)))[0]
    assert len(z) == 10 and set(np.diff(z)) == {3}


def test_units_scaling_is_fair():
    assert budget.budget_units(10, 1 / 3) == 30  # paper 002: "tripled"
    assert budget.budget_units(7, 0.5) == 14
    assert budget.budget_units(5, 1.0) == 5
    units = budget.allocate_budget([f"s{i}" for i in range(4)], n_full=2, fraction=1 / 3)
    assert len(units) == 6
    assert sorted(s for s, r in units if r == 0) == ["s0", "s1", "s2", "s3"]
    assert sorted(units) == sorted(set(units))  # repeats are distinct (subject, repeat) keys
    # enough subjects: all distinct
    units = budget.allocate_budget([f"s{i}" for i in range(12)], n_full=3, fraction=1 / 3)
    assert len({s for s, _ in units}) == 9 and all(r == 0 for _, r in units)
    with pytest.raises(InputError, match="needs 6 training scans"):
        budget.allocate_budget(["a", "b"], n_full=2, fraction=1 / 3, allow_repeat=False)


def test_bad_input():
    with pytest.raises(InputError, match="--allocation"):
        budget.budget_mask(SHAPE, "oblique")
    with pytest.raises(InputError, match="--fraction"):
        budget.budget_mask(SHAPE, "axial", 0)
    with pytest.raises(InputError, match="3D"):
        budget.budget_mask((4, 4), "axial")
