"""Synthetic infant cohort: reproducibility, contrast inversion, skull growth, files, CLI."""

import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from tfneuro.data import synth
from tfneuro.errors import InputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tissue_means(subj, modality):
    lab = subj["label"]
    img = subj[modality]
    return {k: float(img[lab == v].mean()) for k, v in (("csf", 1), ("gm", 2), ("wm", 3))}


def test_same_seed_identical_different_seed_differs():
    a = synth.synth_subject(5.0, 4.0, np.random.SeedSequence([7, 0]))
    b = synth.synth_subject(5.0, 4.0, np.random.SeedSequence([7, 0]))
    c = synth.synth_subject(5.0, 4.0, np.random.SeedSequence([8, 0]))
    for k in ("t1", "t2", "label", "mask", "skull"):
        np.testing.assert_array_equal(a[k], b[k])
    np.testing.assert_array_equal(a["affine"], b["affine"])
    assert a["t1"].shape != c["t1"].shape or not np.array_equal(a["t1"], c["t1"])
    assert a["label"].shape != c["label"].shape or not np.array_equal(a["label"], c["label"])


def test_make_cohort_reproducible_from_seed(tmp_path):
    d1 = synth.make_cohort(tmp_path / "a", 2, ages=[2, 30], spacing=4.0, seed=3,
                           show_progress=False)
    d2 = synth.make_cohort(tmp_path / "b", 2, ages=[2, 30], spacing=4.0, seed=3,
                           show_progress=False)
    d3 = synth.make_cohort(tmp_path / "c", 2, ages=[2, 30], spacing=4.0, seed=4,
                           show_progress=False)
    pd.testing.assert_frame_equal(d1, d2)
    differs = False
    for i in range(2):
        for col in ("t1", "t2", "label", "skull"):
            x1 = nib.load(tmp_path / "a" / d1.loc[i, col])
            x2 = nib.load(tmp_path / "b" / d2.loc[i, col])
            np.testing.assert_array_equal(x1.get_fdata(), x2.get_fdata())
            np.testing.assert_array_equal(x1.affine, x2.affine)
            x3 = nib.load(tmp_path / "c" / d3.loc[i, col]).get_fdata()
            differs |= x3.shape != x1.shape or not np.array_equal(x3, x1.get_fdata())
    assert differs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_contrast_inversion(seed):
    young = synth.synth_subject(2.0, 3.0, seed)
    older = synth.synth_subject(24.0, 3.0, seed)
    t1y, t1o = _tissue_means(young, "t1"), _tissue_means(older, "t1")
    t2y, t2o = _tissue_means(young, "t2"), _tissue_means(older, "t2")
    assert t1y["wm"] < t1y["gm"] and t1o["wm"] > t1o["gm"]      # T1w inverted before 6 mo
    assert t2y["wm"] > t2y["gm"] and t2o["wm"] < t2o["gm"]      # T2w the converse
    assert t1o["csf"] < t1o["gm"] and t2o["csf"] > t2o["gm"]    # CSF dark T1, bright T2


def _ray_thickness_mm(subj):
    """Mean skull thickness along 5 axis-aligned rays (L, R, A, P, S) from the brain centre."""
    skull, mask, sp = subj["skull"], subj["mask"], subj["spacing"]
    c = np.round(np.argwhere(mask).mean(0)).astype(int)
    rays = [skull[c[0]:, c[1], c[2]], skull[:c[0] + 1, c[1], c[2]],
            skull[c[0], c[1]:, c[2]], skull[c[0], :c[1] + 1, c[2]], skull[c[0], c[1], c[2]:]]
    return float(np.mean([r.sum() * sp for r in rays]))


def test_skull_thickness_grows_with_age():
    t = {age: np.mean([_ray_thickness_mm(synth.synth_subject(age, 1.5, s)) for s in (0,)])
         for age in (1.0, 24.0, 60.0)}
    assert t[1.0] < t[24.0] < t[60.0], t
    assert t[1.0] <= 3.0 and t[60.0] >= 3.5, t


def test_brain_grows_with_age_and_outputs_are_consistent():
    a, b = synth.synth_subject(0.5, 3.0, 0), synth.synth_subject(60.0, 3.0, 0)
    va, vb = a["mask"].sum(), b["mask"].sum()
    # linear scale 0.68 -> 0.95 means ~2.7x volume; allow jitter.
    assert 2.0 < vb / va < 3.6
    for s in (a, b):
        assert set(np.unique(s["label"])) == {0, 1, 2, 3}
        np.testing.assert_array_equal(s["label"] > 0, s["mask"] > 0)
        assert not np.any((s["skull"] > 0) & (s["mask"] > 0))
        assert s["t1"].dtype == np.float32 and s["t1"].min() >= 0
        assert max(s["t1"].shape) <= 64 or s is b


def test_fixture_cohort_files(synth_cohort):
    assert len(synth_cohort) == 4
    assert sorted(synth_cohort["split"]) == ["test", "train", "train", "val"]
    for _, row in synth_cohort.iterrows():
        img = nib.load(row["t1"])
        assert max(img.shape) <= 64
        assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
        np.testing.assert_allclose(img.header.get_zooms(), (3.0, 3.0, 3.0))
        lab = nib.load(row["label"])
        np.testing.assert_array_equal(lab.affine, img.affine)
        assert set(np.unique(np.asarray(lab.dataobj))) <= {0, 1, 2, 3}


def test_bad_arguments():
    with pytest.raises(InputError, match="--ages"):
        synth.make_cohort("/nonexistent/never", 3, ages=[1, 2])
    with pytest.raises(InputError, match="--ages"):
        synth.make_cohort("/nonexistent/never", 1, ages=[61])
    with pytest.raises(InputError, match="--subjects"):
        synth.make_cohort("/nonexistent/never", 0)


def test_cli(tmp_path):
    out = tmp_path / "cli"
    env = dict(os.environ, TFNEURO_PROGRESS="0")
    script = os.path.join(ROOT, "experiments", "make_synthetic_cohort.py")
    r = subprocess.run([sys.executable, script, "--out", str(out), "--subjects", "2",
                        "--spacing", "4", "--ages", "3,30", "--seed", "1"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(out / "cohort.csv")
    assert list(df["age_months"]) == [3.0, 30.0]
    assert all((out / p).is_file() for p in df["t1"])
    r = subprocess.run([sys.executable, script, "--out", str(out), "--subjects", "2",
                        "--ages", "1,2,3"], capture_output=True, text=True, env=env)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error: --ages")
