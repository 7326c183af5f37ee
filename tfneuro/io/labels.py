"""Label schemes: class names and the remap from the values stored in files to class ids.

A :class:`LabelScheme` maps *raw* values (as stored in a dataset's label files) to class ids
``0..K-1`` and names the classes; ``scheme.names`` label every per-class column of the CSVs
the library writes (``scheme.keys`` are the same names as snake_case identifiers).

Schemes:

- ``tissue4``: 0 background, 1 CSF, 2 GM, 3 WM (the synthetic cohort; iSeg after remap; also
  the coding of MRBrainS13's ``LabelsForTesting`` files).
- ``iseg2017``: raw 0/10/150/250 -> background/CSF/GM/WM (iSeg-2017 challenge files).
- ``drawem9``: dHCP Draw-EM tissue labels (paper 002), 0..9: unlabelled, CSF, cortical GM,
  WM, background (non-brain inside the mask), ventricles, cerebellum, deep GM, brainstem,
  hippocampi and amygdala; names as in Draw-EM's ``label_names/ALBERT/tissue_labels.csv``.
- ``drawem87``: dHCP Draw-EM regions 1..87 (+ 0 background), names as published in Draw-EM's
  ``label_names/ALBERT/all_labels.csv`` (MIRTK/DrawEM).
- ``neobrains12``: NeoBrainS12 (paper 004, section 1): 0 background, 1 cortical GM, 2 basal
  ganglia and thalami, 3 unmyelinated WM, 4 myelinated WM, 5 brainstem, 6 cerebellum,
  7 ventricles, 8 CSF in the extracerebral space.
- ``mrbrains13``: the MRBrainS13 evaluation grouping (paper 004, section 4: "CoGM and BGT
  together into gray matter (GM), UWM and WML into white matter (WM), and Vent and CSF into
  cerebrospinal fluid (CSF')"), applied to the raw MRBrainS13 training labels (1 CoGM, 2 BGT,
  3 WM, 4 WML, 5 CSF, 6 Vent, 7 cerebellum, 8 brainstem). Cerebellum and brainstem become
  background, as in the challenge's own evaluation labels. Classes in tissue4 order.
- ``neurocranium``: NEC-NET (paper 000) binary skull mask, 0 background, 1 neurocranium (the
  synthetic cohort's ``skull`` files).
- ``tissue_sectors``: the synthetic cohort's optional parcellation (issue 14, part 4): each
  tissue4 tissue split into :data:`N_SECTORS` sectors of the template space (``SECTOR_GRID``:
  2 hemispheres x 4 anterior-posterior x 3 inferior-superior bins; the geometry lives in
  :func:`tfneuro.data.synth.sector_index`). Class ``1 + (t - 1) * N_SECTORS + (k - 1)`` is
  tissue ``t`` (1 CSF, 2 GM, 3 WM), sector ``k``, named e.g. ``"GM sector 12"``; 0 background.

:func:`regroup` converts class ids between schemes where a grouping is defined
(``neobrains12 -> mrbrains13`` with the same grouping; ``iseg2017``/``mrbrains13`` ->
``tissue4``, identity on class ids; ``tissue_sectors -> tissue4``, each sector to its tissue).
"""

from __future__ import annotations

import dataclasses
import re
import types

import numpy as np

from tfneuro.errors import InputError

__all__ = ["LabelScheme", "get_scheme", "list_schemes", "regroup", "GROUPINGS", "N_SECTORS",
           "SECTOR_GRID"]


def _key(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


@dataclasses.dataclass(frozen=True)
class LabelScheme:
    """A set of classes and how raw file values map onto them.

    Attributes:
        name: scheme name (``get_scheme(name)``).
        names: class names indexed by class id (``names[0]`` is class 0).
        raw_to_class: raw value stored in files -> class id (many-to-one allowed).
        description: where the scheme comes from.
    """

    name: str
    names: tuple
    raw_to_class: types.MappingProxyType
    description: str = ""

    def __post_init__(self):
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "raw_to_class", types.MappingProxyType(
            {int(k): int(v) for k, v in dict(self.raw_to_class).items()}))
        bad = [v for v in self.raw_to_class.values() if not 0 <= v < len(self.names)]
        if bad:
            raise ValueError(f"scheme {self.name}: class ids {bad} have no name")

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def keys(self) -> tuple:
        """``names`` as snake_case identifiers (for column names)."""
        return tuple(_key(n) for n in self.names)

    @property
    def raw_values(self) -> tuple:
        return tuple(sorted(self.raw_to_class))

    def _bad_values(self, array: np.ndarray) -> list:
        vals = np.unique(array)
        return [v.item() for v in vals if v.item() not in self.raw_to_class]

    def validate(self, array, source=None) -> None:
        """Raise :class:`InputError` (naming ``source``) unless every value is a raw value of this
        scheme (floats must be whole numbers)."""
        array = np.asarray(array)
        if array.dtype.kind == "f":
            nonint = array != np.round(array)
            if nonint.any():
                raise InputError(source, f"label map has non-integer values (e.g. {float(array[nonint][0]):g}); "
                                         f"scheme '{self.name}' needs integer labels")
        elif array.dtype.kind not in "biu":
            raise InputError(source, f"label map has non-numeric type {array.dtype}")
        bad = self._bad_values(array)
        if bad:
            shown = ", ".join(f"{b:g}" for b in bad[:10]) + (", ..." if len(bad) > 10 else "")
            allowed = self.raw_values
            allowed_s = ", ".join(str(v) for v in allowed) if len(allowed) <= 12 else f"{allowed[0]}..{allowed[-1]}"
            raise InputError(source, f"label values {shown} are not in scheme '{self.name}' (allowed: {allowed_s})")

    def remap(self, raw, source=None) -> np.ndarray:
        """Map raw file values to class ids (int32, same shape); unknown values raise InputError."""
        raw = np.asarray(raw)
        self.validate(raw, source)
        keys = np.asarray(self.raw_values, dtype=np.int64)
        classes = np.asarray([self.raw_to_class[k] for k in self.raw_values], dtype=np.int32)
        idx = np.searchsorted(keys, np.round(raw).astype(np.int64))
        return classes[idx]

    def to_raw(self, classes) -> np.ndarray:
        """Map class ids back to raw values (e.g. iSeg's 0/10/150/250). For classes reached from
        several raw values the smallest raw value is used."""
        classes = np.asarray(classes)
        inverse = {}
        for r in self.raw_values:
            inverse.setdefault(self.raw_to_class[r], r)
        lut = np.array([inverse.get(c, -1) for c in range(self.num_classes)], dtype=np.int64)
        if classes.size and (classes.min() < 0 or classes.max() >= self.num_classes):
            raise InputError(None, f"class ids outside 0..{self.num_classes - 1} for scheme '{self.name}'")
        out = lut[classes.astype(np.int64)]
        if (out < 0).any():
            raise InputError(None, f"some classes of scheme '{self.name}' have no raw value")
        return out.astype(np.int32)


_TISSUE4 = ("background", "CSF", "GM", "WM")

_DRAWEM9 = ("unlabelled", "CSF", "cortical grey matter", "white matter", "background (non-brain)",
            "ventricles", "cerebellum", "deep grey matter", "brainstem", "hippocampi and amygdala")

# Draw-EM ALBERT region names 1..87 (MIRTK/DrawEM label_names/ALBERT/all_labels.csv).
_DRAWEM87 = (
    "Hippocampus left", "Hippocampus right", "Amygdala left", "Amygdala right",
    "Anterior temporal lobe, medial part left GM", "Anterior temporal lobe, medial part right GM",
    "Anterior temporal lobe, lateral part left GM", "Anterior temporal lobe, lateral part right GM",
    "Gyri parahippocampalis et ambiens anterior part left GM", "Gyri parahippocampalis et ambiens anterior part right GM",
    "Superior temporal gyrus, middle part left GM", "Superior temporal gyrus, middle part right GM",
    "Medial and inferior temporal gyri anterior part left GM", "Medial and inferior temporal gyri anterior part right GM",
    "Lateral occipitotemporal gyrus, gyrus fusiformis anterior part left GM",
    "Lateral occipitotemporal gyrus, gyrus fusiformis anterior part right GM",
    "Cerebellum left", "Cerebellum right", "Brainstem, spans the midline",
    "Insula right GM", "Insula left GM", "Occipital lobe right GM", "Occipital lobe left GM",
    "Gyri parahippocampalis et ambiens posterior part right GM", "Gyri parahippocampalis et ambiens posterior part left GM",
    "Lateral occipitotemporal gyrus, gyrus fusiformis posterior part right GM",
    "Lateral occipitotemporal gyrus, gyrus fusiformis posterior part left GM",
    "Medial and inferior temporal gyri posterior part right GM", "Medial and inferior temporal gyri posterior part left GM",
    "Superior temporal gyrus, posterior part right GM", "Superior temporal gyrus, posterior part left GM",
    "Cingulate gyrus, anterior part right GM", "Cingulate gyrus, anterior part left GM",
    "Cingulate gyrus, posterior part right GM", "Cingulate gyrus, posterior part left GM",
    "Frontal lobe right GM", "Frontal lobe left GM", "Parietal lobe right GM", "Parietal lobe left GM",
    "Caudate nucleus right", "Caudate nucleus left",
    "Thalamus right, high intensity part in T2", "Thalamus left, high intensity part in T2",
    "Subthalamic nucleus right", "Subthalamic nucleus left", "Lentiform Nucleus right", "Lentiform Nucleus left",
    "Corpus Callosum", "Lateral Ventricle left", "Lateral Ventricle right",
    "Anterior temporal lobe, medial part left WM", "Anterior temporal lobe, medial part right WM",
    "Anterior temporal lobe, lateral part left WM", "Anterior temporal lobe, lateral part right WM",
    "Gyri parahippocampalis et ambiens anterior part left WM", "Gyri parahippocampalis et ambiens anterior part right WM",
    "Superior temporal gyrus, middle part left WM", "Superior temporal gyrus, middle part right WM",
    "Medial and inferior temporal gyri anterior part left WM", "Medial and inferior temporal gyri anterior part right WM",
    "Lateral occipitotemporal gyrus, gyrus fusiformis anterior part left WM",
    "Lateral occipitotemporal gyrus, gyrus fusiformis anterior part right WM",
    "Insula right WM", "Insula left WM", "Occipital lobe right WM", "Occipital lobe left WM",
    "Gyri parahippocampalis et ambiens posterior part right WM", "Gyri parahippocampalis et ambiens posterior part left WM",
    "Lateral occipitotemporal gyrus, gyrus fusiformis posterior part right WM",
    "Lateral occipitotemporal gyrus, gyrus fusiformis posterior part left WM",
    "Medial and inferior temporal gyri posterior part right WM", "Medial and inferior temporal gyri posterior part left WM",
    "Superior temporal gyrus, posterior part right WM", "Superior temporal gyrus, posterior part left WM",
    "Cingulate gyrus, anterior part right WM", "Cingulate gyrus, anterior part left WM",
    "Cingulate gyrus, posterior part right WM", "Cingulate gyrus, posterior part left WM",
    "Frontal lobe right WM", "Frontal lobe left WM", "Parietal lobe right WM", "Parietal lobe left WM",
    "CSF", "Extra-cranial background", "Intra-cranial background",
    "Thalamus right, low intensity part in T2", "Thalamus left, low intensity part in T2",
)

_NEOBRAINS12 = ("background", "cortical grey matter", "basal ganglia and thalami", "unmyelinated white matter",
                "myelinated white matter", "brainstem", "cerebellum", "ventricles", "CSF in the extracerebral space")


def _identity(n: int) -> dict:
    return {i: i for i in range(n)}


#: Sectors of the ``tissue_sectors`` scheme: hemispheres x anterior-posterior x
#: inferior-superior bins.
SECTOR_GRID = (2, 4, 3)
N_SECTORS = SECTOR_GRID[0] * SECTOR_GRID[1] * SECTOR_GRID[2]
_SECTORS = ("background",) + tuple(f"{t} sector {k}" for t in _TISSUE4[1:]
                                   for k in range(1, N_SECTORS + 1))


_SCHEMES = {
    "tissue4": LabelScheme("tissue4", _TISSUE4, _identity(4),
                           "0 background, 1 CSF, 2 GM, 3 WM (synthetic cohort; iSeg-2017 after remap)"),
    "iseg2017": LabelScheme("iseg2017", _TISSUE4, {0: 0, 10: 1, 150: 2, 250: 3},
                            "iSeg-2017 raw 0/10/150/250 -> background/CSF/GM/WM"),
    "drawem9": LabelScheme("drawem9", _DRAWEM9, _identity(10),
                           "dHCP Draw-EM 9 tissues + unlabelled (paper 002; MIRTK/DrawEM tissue_labels.csv)"),
    "drawem87": LabelScheme("drawem87", ("background",) + _DRAWEM87, _identity(88),
                            "dHCP Draw-EM 87 regions + background (MIRTK/DrawEM label_names/ALBERT/all_labels.csv)"),
    "neobrains12": LabelScheme("neobrains12", _NEOBRAINS12, _identity(9),
                               "NeoBrainS12 8 tissues + background (paper 004)"),
    "mrbrains13": LabelScheme("mrbrains13", _TISSUE4,
                              {0: 0, 1: 2, 2: 2, 3: 3, 4: 3, 5: 1, 6: 1, 7: 0, 8: 0},
                              "MRBrainS13 raw 1 CoGM,2 BGT,3 WM,4 WML,5 CSF,6 Vent,7 CB,8 BS grouped as in paper 004: "
                              "CoGM+BGT->GM, WM+WML->WM, Vent+CSF->CSF', CB and BS -> background"),
    "neurocranium": LabelScheme("neurocranium", ("background", "neurocranium"), _identity(2),
                                "NEC-NET (paper 000) binary neurocranium mask: 0 background, 1 skull"),
    "tissue_sectors": LabelScheme("tissue_sectors", _SECTORS, _identity(len(_SECTORS)),
                                  f"synthetic cohort parcellation: CSF/GM/WM x {N_SECTORS} "
                                  "template-space sectors"),
}

# class-id groupings between schemes: (source, target) -> {source class id: target class id}
GROUPINGS = {
    # paper 004 section 4 grouping applied to NeoBrainS12 classes: CoGM+BGT -> GM,
    # UWM+MWM -> WM, Vent+extracerebral CSF -> CSF; brainstem and cerebellum -> background.
    ("neobrains12", "mrbrains13"): {0: 0, 1: 2, 2: 2, 3: 3, 4: 3, 5: 0, 6: 0, 7: 1, 8: 1},
    ("iseg2017", "tissue4"): _identity(4),
    ("mrbrains13", "tissue4"): _identity(4),
    # each sector to its tissue: class c -> 1 + (c - 1) // N_SECTORS
    ("tissue_sectors", "tissue4"): {c: 0 if c == 0 else 1 + (c - 1) // N_SECTORS
                                    for c in range(len(_SECTORS))},
}


def list_schemes() -> list:
    """Names of the built-in label schemes."""
    return sorted(_SCHEMES)


def get_scheme(name) -> LabelScheme:
    """Return the scheme called ``name`` (a :class:`LabelScheme` is returned unchanged)."""
    if isinstance(name, LabelScheme):
        return name
    try:
        return _SCHEMES[str(name).lower()]
    except KeyError:
        raise InputError("label scheme", f"unknown scheme {name!r}; known: {', '.join(list_schemes())}") from None


def regroup(classes, source, target) -> np.ndarray:
    """Map class ids of scheme ``source`` to class ids of scheme ``target`` (see ``GROUPINGS``)."""
    s, t = get_scheme(source).name, get_scheme(target).name
    if s == t:
        return np.asarray(classes).astype(np.int32)
    if (s, t) not in GROUPINGS:
        raise InputError("label scheme", f"no grouping from '{s}' to '{t}'; defined: "
                                         + ", ".join(f"{a}->{b}" for a, b in GROUPINGS))
    mapping = GROUPINGS[(s, t)]
    classes = np.asarray(classes)
    n = get_scheme(s).num_classes
    if classes.size and (classes.min() < 0 or classes.max() >= n):
        raise InputError("label scheme", f"class ids outside 0..{n - 1} for scheme '{s}'")
    lut = np.array([mapping[i] for i in range(n)], dtype=np.int32)
    return lut[classes.astype(np.int64)]
