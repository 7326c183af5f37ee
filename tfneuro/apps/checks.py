"""Checks every entry point runs before any work: output paths, model names and heads.

Each raises one :class:`~tfneuro.errors.InputError` naming the flag or file.
"""

from __future__ import annotations

import os

from tfneuro.errors import InputError
from tfneuro.io.nifti import volume_files
from tfneuro.io.views import VIEWS
from tfneuro.models.registry import spec

__all__ = ["check_out_dir", "check_outputs", "check_model_name", "check_model_classes",
           "check_model_channels", "check_pad_multiple", "check_views", "NIFTI", "EXTENSIONS"]

NIFTI = (".nii", ".nii.gz")
#: File endings the segmentation outputs must have, by flag.
EXTENSIONS = {"--output": NIFTI, "--probabilities": NIFTI, "--volumes_csv": (".csv",),
              "--qc_png": (".png",)}


def check_out_dir(out, inputs=(), flag: str = "--out") -> str:
    """Validate an output directory before any work; return its absolute path.

    Refuses: no value, an existing non-directory (or a parent that is a file), and a path
    that IS one of ``inputs``. Missing parent directories are allowed (created on write).

    Args:
        out: the directory.
        inputs: input file or directory paths that must not be overwritten.
        flag: flag name for messages.
    """
    if not out:
        raise InputError(flag, "is required")
    path = os.path.abspath(os.fspath(out))
    real = os.path.realpath(path)
    for p in inputs:
        if p and os.path.realpath(os.fspath(p)) == real:
            raise InputError(flag, f"{out} is an input ({p}); choose another output directory")
    if os.path.exists(path) and not os.path.isdir(path):
        raise InputError(flag, f"{out} exists and is not a directory")
    _check_parent(path, flag, out)
    return path


def _check_parent(path, flag, shown):
    parent = os.path.dirname(os.path.abspath(path))
    while parent and not os.path.exists(parent):  # missing parents are created on write
        parent = os.path.dirname(parent)
    if parent and not os.path.isdir(parent):
        raise InputError(flag, f"{parent} (a parent of {shown}) is not a directory")


def check_outputs(outputs: dict, inputs, extensions: dict | None = None) -> None:
    """Refuse output files that would overwrite an input or each other, that are directories,
    whose parent is a file, or (with ``extensions``) that have the wrong file ending.

    Args:
        outputs: ``{flag or name: path or None}`` of the files the run will write.
        inputs: input paths (images, labels, models, CSVs) that must not be overwritten; an
            Analyze ``.hdr`` protects its ``.img`` too.
        extensions: ``{flag: allowed endings}`` (e.g. :data:`EXTENSIONS`).
    """
    protected = {os.path.realpath(f): p for p in inputs if p for f in volume_files(p)}
    seen = {}
    for name, path in outputs.items():
        if not path:
            continue
        real = os.path.realpath(os.fspath(path))
        if real in protected:
            raise InputError(name, f"{path} would overwrite the input {protected[real]}")
        if real in seen:
            raise InputError(name, f"{path} is also the output {seen[real]}")
        want = (extensions or {}).get(name)
        if want and not os.fspath(path).lower().endswith(want):
            raise InputError(name, f"{path}: expected a file ending in {' or '.join(want)}")
        if os.path.isdir(real):
            raise InputError(name, f"{path} is a directory")
        _check_parent(real, name, path)
        seen[real] = name


def check_model_name(name: str, *, modalities=("t1",), flag: str = "--model", tasks=None,
                     ndim=None):
    """Check a registry model name and that it takes ``modalities``; return its ModelSpec.

    Raises:
        InputError: unknown name (listing the known ones), a task the experiment cannot run,
            a model that is not ``ndim``-D (2 = slice models, 3 = volume models), or a
            modality count the model's input kind does not take (two-arm models need
            exactly 2, RGB-slice models exactly 1).
    """
    s = spec(name, source=flag)
    if tasks is not None and s.task not in tasks:
        raise InputError(flag, f"model {name!r} is a {s.task} model; this experiment needs {' or '.join(tasks)}")
    if ndim is not None and s.ndim != ndim:
        raise InputError(flag, f"{name!r} is not a {ndim}D {' or '.join(tasks or ('',)).strip()} model")
    n = len(tuple(modalities))
    if s.input_kind == "two_arm" and n != 2:
        raise InputError("--modalities", f"model {name!r} takes 2 modalities (t1, t2), got {n}")
    if s.input_kind == "rgb_slices" and n != 1:
        raise InputError("--modalities", f"model {name!r} takes 1 modality (3 adjacent slices as RGB), got {n}")
    if n < 1:
        raise InputError("--modalities", "give at least one modality")
    return s


def check_model_classes(model, num_classes: int, source: str, scheme: str = "") -> None:
    """Raise InputError naming ``source`` when the model's head does not output ``num_classes``."""
    outs = model.outputs if isinstance(model.outputs, (list, tuple)) else [model.outputs]
    k = int(outs[0].shape[-1])
    if k != int(num_classes):
        raise InputError(source, f"the model's head has {k} classes but the labels"
                                 f"{' (scheme ' + scheme + ')' if scheme else ''} have {num_classes}")


def check_model_channels(model, n_modalities: int, source: str) -> None:
    """Raise InputError naming ``source`` when the model does not take ``n_modalities`` channels."""
    ins = model.inputs if isinstance(model.inputs, (list, tuple)) else [model.inputs]
    c = sum(int(i.shape[-1]) for i in ins) if len(ins) > 1 else int(ins[0].shape[-1])
    if c != int(n_modalities):
        raise InputError(source, f"the model takes {c} input channel(s) but {n_modalities} "
                                 "modality(ies) were given")


def check_pad_multiple(shape, multiple: int, flag: str = "--patch_size") -> tuple:
    """Check a 3D patch/window size against a model's pooling multiple."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or any(s < multiple or s % multiple for s in shape):
        raise InputError(flag, f"{list(shape)}: need three sizes that are positive multiples of {multiple}")
    return shape


def check_views(views, flag: str = "--views") -> list:
    """Distinct view names (:data:`tfneuro.io.VIEWS`), at least one; returns them as a list."""
    views = list(views or [])
    if not views or any(v not in VIEWS for v in views) or len(set(views)) != len(views):
        raise InputError(flag, f"{views}: give distinct views from {list(VIEWS)}")
    return views
