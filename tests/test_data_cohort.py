"""Cohort tables: validation errors, check_files, directory-layout builders (tiny NIfTIs)."""

import os

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from tfneuro.data import builders
from tfneuro.data import cohort as C
from tfneuro.errors import InputError, InputErrors


def _nii(path, shape=(4, 4, 4), value=1.0, analyze=False):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = np.full(shape, value, np.float32)
    if analyze:
        nib.save(nib.AnalyzeImage(data, np.eye(4)), path)
    else:
        nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    return path


def _write_csv(path, rows, columns=C.COLUMNS):
    pd.DataFrame(rows, columns=list(columns)).to_csv(path, index=False)
    return str(path)


def test_read_resolves_relative_paths_and_fills_defaults(tmp_path):
    _nii(str(tmp_path / "a" / "t1.nii.gz"))
    csv = _write_csv(tmp_path / "c.csv", [["s1", "a/t1.nii.gz", "", "", "", ""]])
    df = C.read_cohort(csv)
    assert df.loc[0, "t1"] == str(tmp_path / "a" / "t1.nii.gz")
    assert df.loc[0, "t2"] == "" and np.isnan(df.loc[0, "age_months"])
    assert df.loc[0, "split"] == "train"
    assert df.attrs["source"] == csv


def test_write_then_read_round_trip_relative(tmp_path):
    t1 = _nii(str(tmp_path / "d" / "x.nii.gz"))
    df = pd.DataFrame([{"subject": "s", "t1": t1, "t2": "", "label": "", "age_months": 3.5,
                        "split": "val", "extra": "keep"}])
    csv = C.write_cohort(df, tmp_path / "d" / "cohort.csv")
    raw = pd.read_csv(csv, dtype=str, keep_default_na=False)
    assert raw.loc[0, "t1"] == "x.nii.gz"        # relative to the CSV's directory
    back = C.read_cohort(csv)
    assert back.loc[0, "t1"] == t1 and back.loc[0, "extra"] == "keep"
    assert back.loc[0, "age_months"] == 3.5 and back.loc[0, "split"] == "val"


def test_missing_columns_named_with_csv(tmp_path):
    csv = _write_csv(tmp_path / "c.csv", [["s1", "t1.nii"]], columns=["subject", "t1"])
    with pytest.raises(InputError) as e:
        C.read_cohort(csv)
    msg = str(e.value)
    assert csv in msg and "t2" in msg and "age_months" in msg and "split" in msg


def test_duplicate_subjects(tmp_path):
    csv = _write_csv(tmp_path / "c.csv", [["s1", "a.nii", "", "", "", ""],
                                          ["s1", "b.nii", "", "", "", ""],
                                          ["s2", "c.nii", "", "", "", ""]])
    with pytest.raises(InputError, match="duplicate subject.*s1") as e:
        C.read_cohort(csv)
    assert csv in str(e.value)


@pytest.mark.parametrize("age,split,match", [("abc", "", "not a number"),
                                             ("", "training", "unknown split")])
def test_bad_values(tmp_path, age, split, match):
    csv = _write_csv(tmp_path / "c.csv", [["s1", "a.nii", "", "", age, split]])
    with pytest.raises(InputError, match=match):
        C.read_cohort(csv)


def test_check_files_reports_every_problem_together(tmp_path):
    ok = _nii(str(tmp_path / "ok.nii.gz"))
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"this is not a nifti file at all" * 3)
    rows = [["s1", ok, "missing_t2.nii.gz", "", "", ""],
            ["s2", "missing_t1.nii.gz", "", "missing_lab.nii.gz", "", ""],
            ["s3", "broken.nii.gz", "", "", "", ""]]
    csv = _write_csv(tmp_path / "c.csv", rows)
    with pytest.raises(InputErrors) as e:
        C.check_files(csv)
    errs = e.value.errors
    assert len(errs) == 4
    msg = str(e.value)
    for name in ("missing_t2.nii.gz", "missing_t1.nii.gz", "missing_lab.nii.gz",
                 "broken.nii.gz"):
        assert name in msg
    assert "4 problem(s)" in msg


def test_check_files_passes_on_good_cohort(synth_cohort):
    df = C.check_files(synth_cohort, deep=True)
    assert len(df) == 4


def test_from_dhcp(tmp_path):
    root = tmp_path / "derivatives"
    for sub, ses, pma in (("CC001", "100", 41.0), ("CC002", "200", 38.5)):
        anat = root / f"sub-{sub}" / f"ses-{ses}" / "anat"
        stem = str(anat / f"sub-{sub}_ses-{ses}")
        _nii(stem + "_T2w.nii.gz")
        _nii(stem + "_T1w.nii.gz")
        _nii(stem + "_desc-drawem9_dseg.nii.gz")
        pd.DataFrame({"session_id": [f"ses-{ses}"], "scan_age": [pma]}).to_csv(
            root / f"sub-{sub}" / f"sub-{sub}_sessions.tsv", sep="\t", index=False)
    (root / "dataset_description.json").write_text("{}")
    df = builders.from_dhcp(root)
    assert list(df["subject"]) == ["CC001_ses-100", "CC002_ses-200"]
    assert df.loc[0, "t2"].endswith("sub-CC001_ses-100_T2w.nii.gz")
    assert df.loc[1, "label"].endswith("sub-CC002_ses-200_desc-drawem9_dseg.nii.gz")
    np.testing.assert_allclose(df["scan_age_weeks"], [41.0, 38.5])
    np.testing.assert_allclose(df["age_months"], [1.0 / 4.345, -1.5 / 4.345])
    C.check_files(df)


def test_from_iseg2017(tmp_path):
    for n in (1, 2):
        for kind in ("T1", "T2", "label"):
            _nii(str(tmp_path / f"subject-{n}-{kind}.hdr"), analyze=True)
    _nii(str(tmp_path / "subject-11-T1.hdr"), analyze=True)
    _nii(str(tmp_path / "subject-11-T2.hdr"), analyze=True)
    df = builders.from_iseg2017(tmp_path)
    assert list(df["subject"]) == ["subject-01", "subject-02", "subject-11"]
    assert df.loc[0, "label"].endswith("subject-1-label.hdr")
    assert df.loc[2, "label"] == "" and df.loc[2, "split"] == "test"
    assert (df["age_months"] == 6.0).all()
    C.check_files(df)


def test_from_mcrib(tmp_path):
    for p in ("P01", "P02"):
        _nii(str(tmp_path / f"M-CRIB_{p}_T2.nii.gz"))
        _nii(str(tmp_path / f"M-CRIB_{p}_T1.nii.gz"))
        _nii(str(tmp_path / f"M-CRIB_{p}_parcellation.nii.gz"))
    df = builders.from_mcrib(tmp_path)
    assert list(df["subject"]) == ["P01", "P02"]
    assert df.loc[1, "t1"].endswith("M-CRIB_P02_T1.nii.gz")
    assert df.loc[1, "t2"].endswith("M-CRIB_P02_T2.nii.gz")
    assert df.loc[0, "label"].endswith("M-CRIB_P01_parcellation.nii.gz")


def test_from_glob(tmp_path):
    for s in ("a1", "b2"):
        _nii(str(tmp_path / f"sub-{s}" / "anat" / f"sub-{s}_T1w.nii.gz"))
    _nii(str(tmp_path / "sub-a1" / "anat" / "sub-a1_dseg.nii.gz"))
    df = builders.from_glob(tmp_path, t1="sub-{subject}/anat/*_T1w.nii.gz",
                     label="sub-{subject}/anat/*_dseg.nii.gz", age_months={"a1": 2.0})
    assert list(df["subject"]) == ["a1", "b2"]
    assert df.loc[0, "label"].endswith("sub-a1_dseg.nii.gz") and df.loc[1, "label"] == ""
    assert df.loc[0, "age_months"] == 2.0 and np.isnan(df.loc[1, "age_months"])
    with pytest.raises(InputError, match="no {subject} placeholder"):
        builders.from_glob(tmp_path, t1="*/anat/*_T1w.nii.gz")


def test_assign_splits_counts():
    df = pd.DataFrame({"subject": [f"s{i}" for i in range(10)]})
    out = C.assign_splits(df, seed=3)
    assert sorted(out["split"].value_counts().to_dict().items()) == [
        ("test", 2), ("train", 6), ("val", 2)]
    assert list(C.assign_splits(df, seed=3)["split"]) == list(out["split"])
