"""Cohort tables from public datasets' directory layouts: dHCP, iSeg-2017, M-CRIB, or glob
patterns. Each builder returns a validated cohort (:func:`tfneuro.data.cohort.validate_cohort`)."""

from __future__ import annotations

import glob
import os
import re

import numpy as np
import pandas as pd

from tfneuro.data.cohort import COLUMNS, validate_cohort
from tfneuro.errors import InputError

__all__ = ["from_dhcp", "from_iseg2017", "from_mcrib", "from_glob"]


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
