"""A run's cohort, loaded and fully validated before any work: the given cohort CSV, or the
built-in synthetic cohort made on first use."""

from __future__ import annotations

import os

import pandas as pd

from tfneuro.data.cohort import as_cohort, check_files, read_cohort
from tfneuro.data.synth import make_cohort
from tfneuro.errors import InputError, InputErrors
from tfneuro.io import check_same_grid, get_scheme, load_volume
from tfneuro.utils.atomic import atomic_path

__all__ = ["load_cohort"]


def load_cohort(cohort=None, *, out_dir=None, modalities=("t1",), label: str | None = "label",
                scheme: str | None = "tissue4", require_age: bool = False,
                min_subjects: int = 1, deep: bool = True, synth_subjects: int = 8,
                synth_spacing: float = 2.0, seed: int = 0, show_progress: bool = True,
                source: str = "--cohort") -> pd.DataFrame:
    """A run's cohort, fully validated before any training.

    With ``cohort`` (a CSV path or DataFrame): read and validate it (:func:`read_cohort`).
    Without: make (or reuse) the built-in synthetic cohort in ``<out_dir>/cohort``
    (:func:`tfneuro.data.synth.make_cohort` with ``synth_subjects``, ``synth_spacing`` and
    ``seed``).

    Then every subject's ``modalities`` and ``label`` files are checked: missing/unreadable
    files (all of them, :func:`check_files`), and with ``deep`` every volume is loaded with
    :func:`tfneuro.io.load_volume` (NaN/Inf, all-zero, 2D/4D, label values outside
    ``scheme``) and the modalities and label are checked to share one grid. All problems are
    reported in one :class:`~tfneuro.errors.InputErrors`.

    Args:
        cohort: cohort CSV path or DataFrame; ``None`` for the synthetic cohort.
        out_dir: the run's output directory (holds the synthetic cohort).
        modalities: image columns the model reads.
        label: label column (``None``: labels not needed).
        scheme: label scheme name (or :class:`~tfneuro.io.LabelScheme`) of the label files.
        require_age: every subject needs ``age_months``.
        min_subjects: fewest subjects the run can work with.
        deep: load and validate every volume.
        synth_subjects, synth_spacing, seed: the synthetic cohort's size, voxel size and seed.
        show_progress: progress bar while the synthetic cohort is made.
        source: what to name when neither ``cohort`` nor ``out_dir`` is given.

    Returns:
        The cohort DataFrame (absolute paths; ``attrs["source"]`` = CSV path).
    """
    if scheme is not None:
        get_scheme(scheme)  # an unknown scheme fails before any file is read
    if cohort is not None:
        df = as_cohort(cohort)
    else:
        if out_dir is None:
            raise InputError(source, "is required (or give --out for a synthetic cohort)")
        df = read_cohort(_synthetic_cohort(out_dir, synth_subjects, synth_spacing, seed,
                                           show_progress))
    source = df.attrs.get("source", "cohort")
    need = list(modalities) + ([label] if label else [])
    for c in need:
        if c not in df.columns:
            raise InputError(source, f"missing column {c!r}")
    empty = [f"{s} ({c})" for c in need for s, p in zip(df["subject"], df[c]) if not p]
    if empty:
        raise InputError(source, f"empty {'/'.join(need)} cell(s): {', '.join(empty[:5])}"
                                 + (" ..." if len(empty) > 5 else ""))
    if require_age:
        noage = df["subject"][df["age_months"].isna()].tolist()
        if noage:
            raise InputError(source, f"no age_months for subject(s) {noage}")
    if len(df) < min_subjects:
        raise InputError(source, f"{len(df)} subject(s); this experiment needs at least {min_subjects}")
    check_files(df, columns=need)
    if deep:
        errors = []
        for row in df.to_dict("records"):
            s = row["subject"]
            imgs = [(m, _load_checked(row[m], "image", None, errors, f"subject {s}, {m}"))
                    for m in modalities]
            if label:
                imgs.append((label, _load_checked(row[label], "label", scheme, errors,
                                                  f"subject {s}, {label}")))
            good = [(c, i) for c, i in imgs if i is not None]
            for c, img in good[1:]:
                try:
                    check_same_grid(img, good[0][1], row[c], row[good[0][0]])
                except InputError as e:
                    errors.append(InputError(e.source, f"(subject {s}) {e.problem}"))
        if errors:
            raise errors[0] if len(errors) == 1 else InputErrors(errors, what=f"cohort {source}")
    return df


def _synthetic_cohort(out_dir, n, spacing, seed, show_progress) -> str:
    """The CSV of the synthetic cohort in ``<out_dir>/cohort``, made (atomically) if absent."""
    cdir = os.path.join(os.fspath(out_dir), "cohort")
    csv = os.path.join(cdir, "cohort.csv")
    if not os.path.isfile(csv):
        with atomic_path(cdir, suffix="") as tmp:
            make_cohort(tmp, int(n), spacing=float(spacing), seed=int(seed),
                        show_progress=show_progress)
    return csv


def _load_checked(path, kind, scheme, errors, what):
    try:
        return load_volume(path, kind=kind, scheme=scheme)
    except InputError as e:
        errors.append(InputError(e.source, f"({what}) {e.problem}"))
    return None
