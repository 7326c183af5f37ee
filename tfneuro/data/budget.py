"""Label budgets (paper 002): only a fraction of each volume's 2D slices is labelled.

Paper 002 (002_7b615860cc51c69e.txt, "Label Budgeting Experiments" and section 3) distributes
"a limited number of labelled 2D slices over 3D training data" in four ways -- sagittal,
coronal, axial and random -- with "the proportion of selected 2D slices per 3D brain ...
33%, i.e., two thirds of the slices along the respective axis were hidden during training",
and, "to enable a fair comparison, ... the number of data units in the training set was
tripled". Its abstract draws the conclusion that "distributing labels over a larger number of
brain scans can improve segmentation performance".

What we implement (pure numpy; the weight maps plug into datasets as the ``w`` of
``(x, y, w)``, CONTRACTS.md):

* **Axes**: the views of :mod:`tfneuro.io.views` (sagittal 0, coronal 1, axial 2 on the
  conformed RAS grid).
* **Which slices**: ``k = max(1, round(fraction * n))`` of the ``n`` candidate slices along the
  axis are labelled, chosen at random without replacement (the paper does not say how;
  ``spacing="even"`` gives evenly spaced slices with a random offset instead). Candidates are
  the slices that cross the bounding box of the label's non-zero voxels when
  ``crop_to_nonzero=True`` (paper 002 crops every volume to its non-zero bounding box, so
  empty slices outside the head never count against the budget), otherwise all slices.
* **random**: for each volume the axis itself is drawn at random (uniformly among the three),
  so the training set mixes orientations, each volume keeping ``fraction`` of its slices along
  its drawn axis. (Our reading: "random" is the fourth way of distributing slices; the paper
  gives no further detail. It is not a random choice of voxels.)
* **Weights**: 1 on every voxel of a labelled slice, 0 on every other voxel (the loss ignores
  weight-0 voxels, CONTRACTS.md).
* **Fair comparison** (:func:`budget_units`): a budget run uses ``round(n_full / fraction)``
  training units (volumes) where the full-label run uses ``n_full``: 3x for the default 1/3,
  so both runs see the same number of labelled slices. Where the cohort has enough scans these
  are distinct scans (the paper's "larger number of brain scans"); :func:`allocate_budget`
  otherwise repeats scans, each repeat with its own independently drawn slices.
* **Determinism**: every mask is a function of ``(seed, key)`` where ``key`` identifies the
  unit (subject id and repeat), through ``numpy.random.default_rng([seed, crc32(key)])``.
"""

from __future__ import annotations

import zlib

import numpy as np

from tfneuro.errors import InputError
from tfneuro.io.views import VIEW_AXES

__all__ = ["ALLOCATIONS", "budget_rng", "select_slices", "budget_mask",
           "budget_weights", "budget_units", "allocate_budget"]

ALLOCATIONS = ("sagittal", "coronal", "axial", "random")
#: slice orientation -> array axis on the conformed RAS grid
DEFAULT_FRACTION = 1.0 / 3.0


def _check(allocation, fraction):
    if allocation not in ALLOCATIONS:
        raise InputError("--allocation", f"unknown allocation {allocation!r}; choose one of "
                                         f"{', '.join(ALLOCATIONS)}")
    if not 0 < fraction <= 1:
        raise InputError("--fraction", f"must be in (0, 1], got {fraction!r}")


def budget_rng(seed: int, key) -> np.random.Generator:
    """The generator for unit ``key`` (a subject id, or ``(subject, repeat)``) under ``seed``."""
    digest = zlib.crc32(repr(key).encode("utf-8"))
    return np.random.default_rng([int(seed), digest])


def select_slices(candidates, fraction: float, rng: np.random.Generator,
                  spacing: str = "random") -> np.ndarray:
    """Choose ``max(1, round(fraction * n))`` of ``n`` candidate slice indices (sorted).

    Args:
        candidates: slice indices that may be labelled.
        fraction: the share to keep.
        rng: numpy generator.
        spacing: ``"random"`` (without replacement) or ``"even"`` (evenly spaced, random
            offset).
    """
    candidates = np.asarray(candidates)
    n = candidates.size
    if n == 0:
        raise InputError("label", "no slice to label (empty volume)")
    k = min(n, max(1, int(round(fraction * n))))
    if spacing == "random":
        chosen = rng.choice(n, size=k, replace=False)
    elif spacing == "even":
        step = n / k
        offset = rng.uniform(0, step)
        chosen = np.minimum(np.floor(offset + step * np.arange(k)).astype(int), n - 1)
    else:
        raise InputError("--spacing", f"must be 'random' or 'even', got {spacing!r}")
    return np.sort(candidates[chosen])


def budget_mask(shape, allocation: str, fraction: float = DEFAULT_FRACTION, *, seed: int = 0,
                key=0, bbox=None, spacing: str = "random") -> np.ndarray:
    """Boolean mask of the labelled voxels of one volume.

    Args:
        shape: the 3D volume shape ``(X, Y, Z)``.
        allocation: ``"sagittal"``, ``"coronal"``, ``"axial"`` or ``"random"``.
        fraction: share of the candidate slices that is labelled (paper 002: 1/3).
        seed: experiment seed.
        key: identifies the unit (subject id, or ``(subject, repeat)``).
        bbox: optional ``[(lo, hi), ...]`` per axis (hi exclusive): only slices inside it are
            candidates.
        spacing: ``"random"`` or ``"even"`` (see :func:`select_slices`).

    Returns:
        bool array of ``shape``; True on the labelled slices.
    """
    _check(allocation, fraction)
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        raise InputError("shape", f"budget masks are for 3D volumes, got shape {shape}")
    rng = budget_rng(seed, key)
    axis = int(rng.integers(3)) if allocation == "random" else VIEW_AXES[allocation]
    lo, hi = (0, shape[axis]) if bbox is None else bbox[axis]
    slices = select_slices(np.arange(lo, hi), fraction, rng, spacing=spacing)
    keep = np.zeros(shape[axis], bool)
    keep[slices] = True
    view = [1, 1, 1]
    view[axis] = shape[axis]
    return np.broadcast_to(keep.reshape(view), shape).copy()


def _nonzero_bbox(label):
    coords = np.nonzero(label)
    if coords[0].size == 0:
        return None
    return [(int(c.min()), int(c.max()) + 1) for c in coords]


def budget_weights(label, allocation: str, fraction: float = DEFAULT_FRACTION, *,
                   seed: int = 0, key=0, crop_to_nonzero: bool = True,
                   spacing: str = "random") -> np.ndarray:
    """Voxel weight map for one label volume: 1 on labelled slices, 0 elsewhere.

    Args:
        label: integer label volume ``(X, Y, Z)`` on the conformed grid.
        allocation, fraction, seed, key, spacing: as in :func:`budget_mask`.
        crop_to_nonzero: draw slices only inside the bounding box of ``label != 0``.

    Returns:
        float32 array with ``label``'s shape.
    """
    label = np.asarray(label)
    bbox = _nonzero_bbox(label) if crop_to_nonzero else None
    mask = budget_mask(label.shape, allocation, fraction, seed=seed, key=key, bbox=bbox,
                       spacing=spacing)
    return mask.astype(np.float32)


def budget_units(n_full: int, fraction: float = DEFAULT_FRACTION) -> int:
    """Training units for a budget run that matches ``n_full`` fully labelled units.

    ``round(n_full / fraction)``: paper 002 "tripled" the data units for its 1/3 budget, so the
    budget and full-label runs see the same number of labelled slices.
    """
    if not 0 < fraction <= 1:
        raise InputError("--fraction", f"must be in (0, 1], got {fraction!r}")
    if int(n_full) != n_full or n_full < 1:
        raise InputError("n_full", f"must be a positive integer, got {n_full!r}")
    return int(round(n_full / fraction))


def allocate_budget(subjects, n_full: int, fraction: float = DEFAULT_FRACTION, *,
                    seed: int = 0, allow_repeat: bool = True) -> list[tuple[str, int]]:
    """Pick the units of a budget run: ``budget_units(n_full, fraction)`` (subject, repeat).

    Distinct subjects are used first (in a seeded random order); when there are fewer
    subjects than units and ``allow_repeat`` is True, subjects are reused with repeat index
    1, 2, ... -- pass ``key=(subject, repeat)`` to :func:`budget_weights` so each repeat gets
    its own slices.

    Args:
        subjects: available training subject ids.
        n_full: units of the full-label run it is compared with.
        fraction: label budget.
        seed: experiment seed.
        allow_repeat: allow reusing subjects; otherwise too few subjects is an InputError.

    Returns:
        ``[(subject, repeat), ...]`` of length ``budget_units(n_full, fraction)``.
    """
    subjects = [str(s) for s in subjects]
    if not subjects:
        raise InputError("subjects", "no training subjects")
    need = budget_units(n_full, fraction)
    if need > len(subjects) and not allow_repeat:
        raise InputError("subjects", f"a budget of {fraction:.3g} needs {need} training scans "
                                     f"to match {n_full} fully labelled ones; only "
                                     f"{len(subjects)} available")
    rng = budget_rng(seed, "allocate")
    order = [subjects[i] for i in rng.permutation(len(subjects))]
    return [(order[i % len(order)], i // len(order)) for i in range(need)]
