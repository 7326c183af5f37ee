"""Cohort tables: read, validate, write, check files, and load a validated cohort for a run.

A cohort is a pandas DataFrame (a CSV on disk) with the columns ``subject, t1, t2, label,
age_months, split``. ``t2``, ``label`` and ``age_months`` may be empty; extra columns (e.g.
``mask``, ``skull``, ``weights``, ``parcellation``) are kept. In a CSV, relative paths are
relative to the CSV's directory; :func:`read_cohort` returns them absolute and
:func:`write_cohort` writes them relative to the CSV when they lie below it.

Builders from directory layouts (dHCP, iSeg-2017, M-CRIB, glob patterns) are in
:mod:`tfneuro.data.builders`.
"""

from __future__ import annotations

import os

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


def cohort_files(df: pd.DataFrame) -> list[str]:
    """Every input file of a cohort (image/label/mask columns, Analyze pairs, the CSV): the
    files a run must never overwrite."""
    from tfneuro.io.nifti import volume_files

    files = []
    for c in PATH_COLUMNS + EXTRA_PATH_COLUMNS:
        if c in df.columns:
            for p in df[c]:
                if p:
                    files.extend(volume_files(p))
    src = df.attrs.get("source")
    if src:
        files.append(os.fspath(src))
    return files


def cohort_shape(df: pd.DataFrame, column: str = "t1", multiple: int = 16) -> tuple:
    """Largest volume shape of a cohort (from the headers), rounded up to ``multiple``: the
    ``pad_to`` shape for slice/volume datasets of volumes with different sizes."""
    import nibabel as nib

    shapes = np.array([nib.load(p).shape[:3] for p in df[column]])
    top = shapes.max(axis=0)
    return tuple(int(-(-s // multiple) * multiple) for s in top)


def require_splits(df: pd.DataFrame, *names) -> tuple:
    """``select_split(df, name)`` for each name, refusing an empty one before any work.

    Raises:
        InputError: naming the cohort CSV and the split that has no subjects.
    """
    parts = tuple(select_split(df, name) for name in names)
    for name, part in zip(names, parts):
        if part.empty:
            raise InputError(df.attrs.get("source", "cohort"), f"no subjects with split '{name}'")
    return parts


def train_and_eval_splits(df: pd.DataFrame, evals=("val", "test")) -> tuple:
    """``(train rows, {split: rows})``: the ``train`` split and every non-empty split of
    ``evals``, refusing a cohort without training subjects or without any of ``evals``.

    Raises:
        InputError: naming the cohort CSV.
    """
    train = select_split(df, "train")
    parts = {name: select_split(df, name) for name in evals}
    parts = {name: part for name, part in parts.items() if not part.empty}
    if train.empty or not parts:
        raise InputError(df.attrs.get("source", "cohort"),
                         f"needs subjects with split 'train' and with split {' or '.join(evals)}")
    return train, parts
