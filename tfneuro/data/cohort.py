"""Cohort tables: read, validate, write, check files, and build them from directory layouts.

A cohort is a pandas DataFrame (a CSV on disk) with the columns ``subject, t1, t2, label,
age_months, split``. ``t2``, ``label`` and ``age_months`` may be empty; extra columns (e.g.
``mask``, ``skull``, ``weights``, ``parcellation``) are kept. In a CSV, relative paths are
relative to the CSV's directory; :func:`read_cohort` returns them absolute and
:func:`write_cohort` writes them relative to the CSV when they lie below it.

Builders: :func:`from_dhcp` (BIDS derivatives), :func:`from_iseg2017`, :func:`from_mcrib`,
:func:`from_glob`.
"""

from __future__ import annotations

import glob
import os
import re

import numpy as np
import pandas as pd

from tfneuro.errors import InputError, InputErrors
from tfneuro.utils.atomic import atomic_path

COLUMNS = ("subject", "t1", "t2", "label", "age_months", "split")
PATH_COLUMNS = ("t1", "t2", "label")
#: Extra columns that, when present, also hold file paths (resolved and checked like t1).
EXTRA_PATH_COLUMNS = ("mask", "skull", "weights", "parcellation")
SPLITS = ("train", "val", "test")


def _path_columns(df) -> list[str]:
    return [c for c in PATH_COLUMNS + EXTRA_PATH_COLUMNS if c in df.columns]


def _empty(v) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v)) or (isinstance(v, str)
                                                                    and not v.strip())


def validate_cohort(df: pd.DataFrame, source: str = "cohort") -> pd.DataFrame:
    """Check a cohort table's columns and values; return a cleaned copy.

    Empty path cells become ``""``, empty ages ``NaN``, empty splits ``"train"``.

    Args:
        df: the table.
        source: name used in error messages (the CSV path).

    Raises:
        InputError: missing columns (all named), duplicate subjects (all named), empty
            subject or t1 cells, non-numeric or negative-beyond-preterm ages, unknown splits.
    """
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise InputError(source, f"missing column(s) {missing}; a cohort needs {list(COLUMNS)}")
    df = df.copy()
    df["subject"] = df["subject"].map(lambda v: "" if _empty(v) else str(v).strip())
    if (df["subject"] == "").any():
        rows = [int(i) + 2 for i in np.flatnonzero(df["subject"].to_numpy() == "")]
        raise InputError(source, f"empty subject id on line(s) {rows}")
    dup = df["subject"][df["subject"].duplicated()].unique().tolist()
    if dup:
        raise InputError(source, f"duplicate subject(s) {dup}")
    for c in _path_columns(df):
        df[c] = df[c].map(lambda v: "" if _empty(v) else str(v).strip()).astype(object)
    if (df["t1"] == "").all() and (df["t2"] == "").all():
        raise InputError(source, "no image paths: columns t1 and t2 are both empty")
    ages = pd.to_numeric(df["age_months"].map(lambda v: np.nan if _empty(v) else v),
                         errors="coerce")
    bad = df["subject"][ages.isna() & ~df["age_months"].map(_empty)].tolist()
    if bad:
        raise InputError(source, f"age_months is not a number for subject(s) {bad}")
    df["age_months"] = ages.astype(float)
    df["split"] = df["split"].map(lambda v: "train" if _empty(v) else str(v).strip())
    unknown = sorted(set(df["split"]) - set(SPLITS))
    if unknown:
        raise InputError(source, f"unknown split value(s) {unknown}; use {list(SPLITS)}")
    return df.reset_index(drop=True)


def read_cohort(path, *, resolve: bool = True) -> pd.DataFrame:
    """Read and validate a cohort CSV.

    Args:
        path: the CSV file.
        resolve: make relative paths absolute (relative to the CSV's directory).

    Returns:
        The validated DataFrame; ``df.attrs["source"]`` is the CSV path.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(path, "cohort CSV not found")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InputError(path, f"not a readable CSV ({e})") from None
    df = validate_cohort(df, source=path)
    if resolve:
        base = os.path.dirname(os.path.abspath(path))
        for c in _path_columns(df):
            df[c] = df[c].map(lambda p: p if p == "" or os.path.isabs(p)
                              else os.path.normpath(os.path.join(base, p)))
    df.attrs["source"] = path
    return df


def write_cohort(df: pd.DataFrame, path) -> str:
    """Validate and write a cohort CSV atomically; paths below its directory become relative.

    Returns:
        The CSV path.
    """
    path = os.fspath(path)
    df = validate_cohort(df, source=path)
    base = os.path.dirname(os.path.abspath(path))
    for c in _path_columns(df):
        def rel(p):
            if p == "" or not os.path.isabs(p):
                return p
            r = os.path.relpath(p, base)
            return p if r.startswith("..") else r
        df[c] = df[c].map(rel)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return path


def as_cohort(cohort) -> pd.DataFrame:
    """Accept a cohort DataFrame or a CSV path; return a validated DataFrame."""
    if isinstance(cohort, pd.DataFrame):
        return validate_cohort(cohort, source=cohort.attrs.get("source", "cohort"))
    return read_cohort(cohort)


def select_split(cohort, split) -> pd.DataFrame:
    """Rows of ``cohort`` whose split is ``split`` (a name or a list of names)."""
    df = as_cohort(cohort)
    names = [split] if isinstance(split, str) else list(split)
    out = df[df["split"].isin(names)].reset_index(drop=True)
    out.attrs.update(df.attrs)
    return out


def check_files(cohort, columns=None, *, deep: bool = False) -> pd.DataFrame:
    """Check that every file of the cohort exists and is readable; report ALL problems at once.

    Args:
        cohort: DataFrame or CSV path.
        columns: path columns to check (default: t1, t2, label and any of mask/skull/weights).
        deep: load every volume with ``tfneuro.io.load_volume`` (full validation: NaN/Inf,
            all-zero, label values...). Otherwise only the header is read (fast).

    Returns:
        The validated cohort.

    Raises:
        InputErrors: listing every missing or unreadable file (subject, column, path).
    """
    df = as_cohort(cohort)
    source = df.attrs.get("source", "cohort")
    cols = list(columns) if columns is not None else _path_columns(df)
    errors = []
    for _, row in df.iterrows():
        for c in cols:
            p = row.get(c, "")
            if _empty(p):
                if c == "t1" and _empty(row.get("t2", "")):
                    errors.append(InputError(source, f"subject {row['subject']}: no image"))
                continue
            try:
                _check_file(p, c, deep)
            except InputError as e:
                errors.append(InputError(e.source, f"(subject {row['subject']}, column {c}) "
                                                   f"{e.problem}"))
    if errors:
        raise InputErrors(errors, what=f"cohort {source}")
    return df


def _check_file(path, column, deep):
    if not os.path.isfile(path):
        raise InputError(path, "file not found")
    if deep:
        from tfneuro.io import load_volume

        load_volume(path, kind="label" if column in ("label", "mask", "skull", "parcellation")
                    else "image")
        return
    import nibabel as nib

    try:
        img = nib.load(path)
        img.header.get_data_shape()
        if os.path.getsize(_data_file(path)) == 0:
            raise ValueError("empty data file")
    except Exception as e:  # noqa: BLE001 - any nibabel failure means unreadable
        raise InputError(path, f"unreadable image ({type(e).__name__}: {e})") from None


def _data_file(path):
    if path.endswith(".hdr"):
        return path[:-4] + ".img"
    return path


def assign_splits(df: pd.DataFrame, val: float = 0.2, test: float = 0.2,
                  seed: int = 0) -> pd.DataFrame:
    """Assign train/val/test at random (seeded). With >= 3 subjects and val, test > 0 there is
    at least one val and one test subject; 2 subjects -> train, val; 1 -> train."""
    df = df.copy()
    n = len(df)
    rng = np.random.default_rng(seed)
    if n == 1:
        labels = ["train"]
    elif n == 2:
        labels = ["train", "val"]
    else:
        n_test = max(1, int(round(test * n))) if test > 0 else 0
        n_val = max(1, int(round(val * n))) if val > 0 else 0
        labels = ["test"] * n_test + ["val"] * n_val + ["train"] * (n - n_test - n_val)
    out = [""] * n
    for pos, i in enumerate(rng.permutation(n)):
        out[i] = labels[pos]
    df["split"] = out
    return df


def _table(rows, source):
    df = pd.DataFrame(rows, columns=None)
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = "" if c != "age_months" else np.nan
    if df.empty:
        raise InputError(source, "no subjects found")
    df = df.sort_values("subject").reset_index(drop=True)
    extra = [c for c in df.columns if c not in COLUMNS]
    return validate_cohort(df[list(COLUMNS) + extra], source=source)


def _one(pattern, source, what):
    hits = sorted(glob.glob(pattern))
    if len(hits) > 1:
        raise InputError(source, f"{len(hits)} files match the {what} pattern {pattern}")
    return hits[0] if hits else ""


def from_dhcp(root, *, label: str = "drawem9", sessions: str = "all") -> pd.DataFrame:
    """Cohort from a dHCP BIDS derivatives tree.

    Layout: ``root/sub-X/ses-Y/anat/sub-X_ses-Y_T2w.nii.gz``, ``..._T1w.nii.gz``,
    ``..._desc-<label>_dseg.nii.gz`` (``label``: "drawem9" tissues or "drawem87" regions),
    optional ``..._desc-brain_mask.nii.gz``. Ages: when ``sub-X/sub-X_sessions.tsv`` has
    ``scan_age`` (weeks post-menstrual age), ``age_months = (scan_age - 40) / 4.345`` (months
    after term-equivalent age; negative for preterm scans) and ``scan_age_weeks`` is kept.

    Args:
        root: the derivatives directory.
        label: which dseg ("drawem9" or "drawem87").
        sessions: "all" (one row per session, subject id ``X_ses-Y``) or "first".
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise InputError(root, "dHCP directory not found")
    rows = []
    for sub_dir in sorted(glob.glob(os.path.join(root, "sub-*"))):
        if not os.path.isdir(sub_dir):
            continue
        sub = os.path.basename(sub_dir)
        ages = _dhcp_ages(os.path.join(sub_dir, f"{sub}_sessions.tsv"))
        ses_dirs = sorted(d for d in glob.glob(os.path.join(sub_dir, "ses-*")) if os.path.isdir(d))
        if sessions == "first":
            ses_dirs = ses_dirs[:1]
        for ses_dir in ses_dirs:
            ses = os.path.basename(ses_dir)
            anat = os.path.join(ses_dir, "anat")
            stem = os.path.join(anat, f"{sub}_{ses}")
            t2 = _one(stem + "_T2w.nii*", root, "T2w")
            t1 = _one(stem + "_T1w.nii*", root, "T1w")
            if not (t1 or t2):
                continue
            row = {"subject": f"{sub[4:]}_{ses}" if sessions == "all" else sub[4:],
                   "t1": t1, "t2": t2,
                   "label": _one(stem + f"_desc-{label}_dseg.nii*", root, "dseg"),
                   "mask": _one(stem + "_desc-brain_mask.nii*", root, "mask"),
                   "split": "train"}
            pma = ages.get(ses[4:])
            row["scan_age_weeks"] = pma if pma is not None else np.nan
            row["age_months"] = (pma - 40.0) / 4.345 if pma is not None else np.nan
            rows.append(row)
    return _table(rows, root)


def _dhcp_ages(tsv):
    if not os.path.isfile(tsv):
        return {}
    t = pd.read_csv(tsv, sep="\t", dtype=str)
    if "session_id" not in t.columns or "scan_age" not in t.columns:
        return {}
    out = {}
    for sid, age in zip(t["session_id"], t["scan_age"]):
        try:
            out[str(sid).replace("ses-", "")] = float(age)
        except ValueError:
            pass
    return out


def from_iseg2017(root, *, age_months: float = 6.0) -> pd.DataFrame:
    """Cohort from the iSeg-2017 layout ``subject-N-T1.hdr``, ``-T2.hdr``, ``-label.hdr``.

    iSeg-2017 subjects are ~6-month-old infants (iso-intense phase), hence the default age.
    Subjects without a label file (the challenge's test set) get split "test".
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise InputError(root, "iSeg-2017 directory not found")
    rows = []
    for t1 in sorted(glob.glob(os.path.join(root, "**", "subject-*-T1.hdr"), recursive=True)):
        m = re.match(r"subject-(\d+)-T1\.hdr$", os.path.basename(t1))
        if not m:
            continue
        n = m.group(1)
        d = os.path.dirname(t1)
        t2 = os.path.join(d, f"subject-{n}-T2.hdr")
        lab = os.path.join(d, f"subject-{n}-label.hdr")
        rows.append({"subject": f"subject-{int(n):02d}", "t1": t1,
                     "t2": t2 if os.path.isfile(t2) else "",
                     "label": lab if os.path.isfile(lab) else "",
                     "age_months": age_months,
                     "split": "train" if os.path.isfile(lab) else "test"})
    return _table(rows, root)


def from_mcrib(root, *, age_months: float = 0.0) -> pd.DataFrame:
    """Cohort from an M-CRIB directory (term neonates, scanned at 40–43 weeks PMA).

    Files are matched per participant id ``P<digits>`` found in the file name:
    T1 = name containing ``T1`` (not a label), T2 = containing ``T2``, label = containing
    ``parcellation``, ``parc`` or ``label`` (NIfTI or Analyze). Several candidates for one role
    raise an InputError naming them.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise InputError(root, "M-CRIB directory not found")
    files = sorted(f for ext in ("*.nii", "*.nii.gz", "*.hdr")
                   for f in glob.glob(os.path.join(root, "**", ext), recursive=True))
    by_subj: dict[str, dict] = {}
    for f in files:
        name = os.path.basename(f)
        m = re.search(r"P(\d+)", name)
        if not m:
            continue
        low = name.lower()
        if any(k in low for k in ("parc", "label", "seg")):
            role = "label"
        elif "t1" in low:
            role = "t1"
        elif "t2" in low:
            role = "t2"
        else:
            continue
        subj = f"P{int(m.group(1)):02d}"
        entry = by_subj.setdefault(subj, {})
        if role in entry:
            raise InputError(root, f"subject {subj}: several {role} files "
                                   f"({os.path.basename(entry[role])}, {name})")
        entry[role] = f
    rows = [{"subject": s, "t1": e.get("t1", ""), "t2": e.get("t2", ""),
             "label": e.get("label", ""), "age_months": age_months, "split": "train"}
            for s, e in by_subj.items() if e.get("t1") or e.get("t2")]
    return _table(rows, root)


def from_glob(root, t1: str | None = None, t2: str | None = None, label: str | None = None,
              age_months=None, **extra_patterns) -> pd.DataFrame:
    """Cohort from glob patterns containing ``{subject}``, relative to ``root``.

    Example: ``from_glob("data", t1="sub-{subject}/anat/*_T1w.nii.gz",
    t2="sub-{subject}/anat/*_T2w.nii.gz", label="sub-{subject}/anat/*_dseg.nii.gz")``.
    Subjects are discovered from the first of t1/t2 given; other patterns are filled in per
    subject (empty when no file matches; an InputError when several do).

    Args:
        root: base directory.
        t1, t2, label: patterns (at least one of t1/t2).
        age_months: optional dict subject -> age.
        **extra_patterns: more path columns, e.g. ``mask="..."``.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise InputError(root, "directory not found")
    main = t1 or t2
    if not main:
        raise InputError("t1/t2", "give a t1 or t2 pattern")
    pats = {"t1": t1, "t2": t2, "label": label, **extra_patterns}
    for k, p in pats.items():
        if p and "{subject}" not in p:
            raise InputError(k, f"pattern {p!r} has no {{subject}} placeholder")
    key = "t1" if t1 else "t2"
    regex = re.compile("^" + "(?P<subject>[^/]+?)".join(
        _glob_to_regex(part) for part in main.split("{subject}")) + "$")
    rows = []
    for f in sorted(glob.glob(os.path.join(root, main.replace("{subject}", "*")))):
        m = regex.match(os.path.relpath(f, root).replace(os.sep, "/"))
        if not m:
            continue
        s = m.group("subject")
        row = {"subject": s, key: f, "split": "train",
               "age_months": (age_months or {}).get(s, np.nan)}
        for k, p in pats.items():
            if p and k != key:
                row[k] = _one(os.path.join(root, p.replace("{subject}", glob.escape(s))),
                              root, k)
        rows.append(row)
    return _table(rows, root)


def _glob_to_regex(part: str) -> str:
    out = []
    for ch in part:
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(ch))
    return "".join(out)
