"""tfneuro.apps.age_study: the age-group cohort, the results table and the head-size baseline
of paper 000's age study, checked against values worked out here."""

import os

import numpy as np
import pandas as pd
import pytest

from tfneuro.apps import age_study
from tfneuro.errors import InputError

GROUPS = (12, 18, 24, 36, 48, 60)


def test_synth_age_cohort_six_groups_stratified_split(tmp_path):
    """Two subjects per group (12 at 8 mm), one held out per group; every age within
    +-1.5 months of its visit and nearest to it; the CSV is reused, not remade. Seen failing:
    with the split left to ``make_cohort``'s random assignment, a group had both subjects in
    the test split."""
    out = tmp_path / "cohort"
    csv = age_study.synth_age_cohort(out, 12, spacing=8.0, seed=3, test_per_group=1,
                                     show_progress=False)
    df = pd.read_csv(csv)
    visits = np.repeat(GROUPS, 2)
    assert np.all(np.abs(df["age_months"] - visits) <= 1.5) and df["age_months"].max() <= 60
    assert [GROUPS[age_study.age_group(a)] for a in df["age_months"]] == list(visits)
    for g in GROUPS:
        assert sorted(df["split"][visits == g]) == ["test", "train"]
    stamp = os.path.getmtime(csv)
    assert age_study.synth_age_cohort(out, 12, spacing=8.0, seed=3, test_per_group=1) == csv
    assert os.path.getmtime(csv) == stamp
    with pytest.raises(InputError, match="--synth_subjects"):
        age_study.synth_age_cohort(tmp_path / "bad", 14, spacing=8.0)
    with pytest.raises(InputError, match="--synth_subjects"):
        age_study.synth_age_cohort(tmp_path / "bad", 12, spacing=8.0)  # 2 per group, 2 test


def test_size_baseline_nearest_scaled_centroid_by_hand():
    """Centroids (0, 0) and (4, 1); pooled within-group SDs 1 and sqrt(1/2) (4 degrees of
    freedom); the point (2.5, 0.2) is at scaled squared distance 6.33 from group 0 and 3.53
    from group 5, so group 5. Seen failing: with the overall SD (residuals from the grand
    mean) instead of the within-group SD the point went to group 0."""
    train = [[-1, -1], [1, 1], [0, 0], [3, 1], [5, 1], [4, 1]]
    groups = [0, 0, 0, 5, 5, 5]
    # by hand: residuals x: (-1, 1, 0, -1, 1, 0) -> SS 4 -> sd sqrt(4/4) = 1;
    #          residuals y: (-1, 1, 0, 0, 0, 0)  -> SS 2 -> sd sqrt(2/4)
    sd = np.array([1.0, np.sqrt(0.5)])
    point = np.array([2.5, 0.2])
    d0 = np.sum(((point - [0, 0]) / sd) ** 2)
    d5 = np.sum(((point - [4, 1]) / sd) ** 2)
    assert d5 < d0
    assert list(age_study.size_baseline(train, groups, [point, [0.5, 0.0]])) == [5, 0]


def test_results_table_by_hand():
    """Groups from the ages (nearest visit, ties to the younger), argmax of the
    probabilities, and the baseline's column. Seen failing: with ``argmin`` the first row
    predicted 60 months."""
    test = pd.DataFrame({"subject": ["a", "b"], "age_months": [15.0, 59.0]})
    probs = np.array([[0.7, 0.1, 0.1, 0.05, 0.05, 0.0], [0.1, 0.1, 0.1, 0.1, 0.5, 0.1]])
    t = age_study.results_table(test, probs, baseline=[0, 5])
    assert list(t["true_group_months"]) == [12, 60]
    assert list(t["predicted_group_months"]) == [12, 48]
    assert list(t["correct"]) == [True, False]
    assert list(t["size_baseline_group_months"]) == [12, 60]
    assert list(t["size_baseline_correct"]) == [True, True]
    np.testing.assert_allclose(t[[f"p_{g}m" for g in GROUPS]].to_numpy(), probs)
