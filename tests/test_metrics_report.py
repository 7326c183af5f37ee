"""tfneuro.metrics.report: per-subject evaluation tables, checked against hand-computed values."""

import numpy as np
import pytest

from tfneuro.errors import InputError
from tfneuro.metrics import evaluation_table, summarize_table
from tfneuro.metrics.report import TABLE_COLUMNS


def _maps():
    # 1D-like strips in a 3D array so every count is easy to do by hand
    a = np.zeros((1, 1, 12), np.int32)
    b = np.zeros((1, 1, 12), np.int32)
    a[0, 0, 0:4] = 1   # CSF: voxels 0-3
    a[0, 0, 4:10] = 2  # GM: voxels 4-9
    b[0, 0, 0:2] = 1   # predicted CSF: 0-1
    b[0, 0, 2:10] = 2  # predicted GM: 2-9
    return a, b


def test_table_values_by_hand():
    a, b = _maps()
    t = evaluation_table(a, b, spacing=(1.0, 1.0, 2.0), subject="s1", distances=False)
    assert list(t.columns) == list(TABLE_COLUMNS)
    assert list(t["name"]) == ["CSF", "GM", "WM"]  # tissue4 names, foreground only
    csf, gm, wm = (t.iloc[i] for i in range(3))
    # CSF: |A|=4, |B|=2, |A∩B|=2 -> Dice 4/6, precision 2/2
    assert csf["dice"] == pytest.approx(2 * 2 / (4 + 2))
    assert csf["precision"] == pytest.approx(1.0)
    # GM: |A|=6, |B|=8, |A∩B|=6 -> Dice 12/14, precision 6/8
    assert gm["dice"] == pytest.approx(12 / 14)
    assert gm["precision"] == pytest.approx(6 / 8)
    assert (gm["reference_voxels"], gm["predicted_voxels"]) == (6, 8)
    # WM absent from both: Dice 1 by the metrics' convention
    assert wm["dice"] == 1.0 and wm["reference_voxels"] == 0
    assert t["hd95_mm"].isna().all()
    assert (t["subject"] == "s1").all()


def test_distances_in_mm_by_hand():
    a = np.zeros((1, 1, 12), np.int32)
    b = np.zeros((1, 1, 12), np.int32)
    a[0, 0, 2:5] = 1
    b[0, 0, 4:7] = 1  # the same 3-voxel object shifted by 2 voxels
    t = evaluation_table(a, b, spacing=(1.0, 1.0, 2.0), labels=[1])
    # every voxel of a 1-voxel-thick strip is boundary; shift 2 voxels * 2 mm:
    # a->b distances: voxel 2 -> 4 mm, 3 -> 2 mm, 4 -> 0; b->a symmetric (0, 2, 4)
    d = np.array([4.0, 2.0, 0.0])
    assert t.loc[0, "msd_mm"] == pytest.approx(d.mean())
    assert t.loc[0, "hd95_mm"] == pytest.approx(np.percentile(d, 95))


def test_mrbrains_grouping():
    # neobrains12 -> mrbrains13 (paper 004): CoGM(1)+BGT(2) -> GM(2); UWM(3)+MWM(4) -> WM(3)
    a = np.array([[[1, 2, 3, 4, 7, 0]]])
    b = np.array([[[2, 2, 4, 3, 8, 0]]])
    t = evaluation_table(a, b, 1.0, scheme="neobrains12", regroup_to="mrbrains13",
                         distances=False)
    assert list(t["name"]) == ["CSF", "GM", "WM"]
    # after grouping both maps are identical: CSF(7,8->1) GM GM WM WM CSF
    assert np.allclose(t["dice"], 1.0)
    # without grouping, class 1 (CoGM) is missed entirely
    t2 = evaluation_table(a, b, 1.0, scheme="neobrains12", distances=False, labels=[1])
    assert t2.loc[0, "dice"] == 0.0


def test_summarize_mean_and_sd():
    a, b = _maps()
    t1 = evaluation_table(a, b, 1.0, subject="s1", distances=False)
    t2 = evaluation_table(a, a, 1.0, subject="s2", distances=False)
    import pandas as pd

    s = summarize_table(pd.concat([t1, t2]))
    gm = s[s["name"] == "GM"].iloc[0]
    vals = np.array([12 / 14, 1.0])
    assert gm["dice_mean"] == pytest.approx(vals.mean())
    assert gm["dice_sd"] == pytest.approx(vals.std(ddof=1))
    overall = s[s["name"] == "mean"].iloc[0]
    assert overall["dice_mean"] == pytest.approx(np.mean([(4 / 6 + 1) / 2, vals.mean(), 1.0]))


def test_bad_inputs():
    a, b = _maps()
    with pytest.raises(InputError, match="shapes differ"):
        evaluation_table(a, b[..., :5], 1.0)
    with pytest.raises(InputError, match="outside"):
        evaluation_table(a, b, 1.0, labels=[9])
