"""Label schemes: names and remaps checked against hand-written cases."""

import numpy as np
import pytest

from tfneuro.errors import InputError
from tfneuro.io.labels import GROUPINGS, LabelScheme, get_scheme, list_schemes, regroup


def test_list_and_names():
    assert list_schemes() == ["drawem87", "drawem9", "iseg2017", "mrbrains13", "neobrains12",
                              "neurocranium", "tissue4", "tissue_sectors"]
    assert get_scheme("tissue4").names == ("background", "CSF", "GM", "WM")
    assert get_scheme("drawem9").num_classes == 10
    d9 = get_scheme("drawem9").names
    assert (d9[1], d9[2], d9[3], d9[5], d9[7], d9[9]) == (
        "CSF", "cortical grey matter", "white matter", "ventricles", "deep grey matter", "hippocampi and amygdala")
    d87 = get_scheme("drawem87")
    assert d87.num_classes == 88 and d87.names[0] == "background"
    assert d87.names[1] == "Hippocampus left" and d87.names[19] == "Brainstem, spans the midline"
    assert d87.names[83] == "CSF" and d87.names[87] == "Thalamus left, low intensity part in T2"
    assert len(set(d87.names)) == 88 and len(set(d87.keys)) == 88
    assert d87.keys[5] == "anterior_temporal_lobe_medial_part_left_gm"
    n12 = get_scheme("neobrains12")
    assert n12.num_classes == 9 and n12.names[3] == "unmyelinated white matter" and n12.names[8].startswith("CSF")
    assert get_scheme("MRBrainS13") is get_scheme("mrbrains13")
    with pytest.raises(InputError, match="unknown scheme 'aseg'"):
        get_scheme("aseg")


def test_iseg_remap_and_back():
    s = get_scheme("iseg2017")
    raw = np.array([[0, 10], [150, 250]], dtype=np.uint8)
    np.testing.assert_array_equal(s.remap(raw), [[0, 1], [2, 3]])
    np.testing.assert_array_equal(s.to_raw(np.array([3, 2, 1, 0])), [250, 150, 10, 0])
    assert s.names == get_scheme("tissue4").names
    with pytest.raises(InputError, match=r"seg.hdr: label values 11 are not in scheme 'iseg2017'"):
        s.remap(np.array([0, 11, 10]), source="seg.hdr")


def test_mrbrains13_grouping_paper004():
    s = get_scheme("mrbrains13")
    # raw: 1 CoGM, 2 BGT, 3 WM, 4 WML, 5 CSF, 6 Vent, 7 cerebellum, 8 brainstem
    raw = np.arange(9)
    # -> tissue4 order: 0 bg, 1 CSF, 2 GM, 3 WM ; CB, BS -> background (challenge evaluation)
    np.testing.assert_array_equal(s.remap(raw), [0, 2, 2, 3, 3, 1, 1, 0, 0])
    assert s.names == ("background", "CSF", "GM", "WM")


def test_neobrains12_to_mrbrains13_grouping():
    # 1 CoGM, 2 BGT, 3 UWM, 4 MWM, 5 BS, 6 CB, 7 Vent, 8 CSF
    np.testing.assert_array_equal(regroup(np.arange(9), "neobrains12", "mrbrains13"), [0, 2, 2, 3, 3, 0, 0, 1, 1])
    assert ("neobrains12", "mrbrains13") in GROUPINGS
    with pytest.raises(InputError, match="no grouping from 'drawem87' to 'tissue4'"):
        regroup(np.zeros(3, int), "drawem87", "tissue4")
    with pytest.raises(InputError, match="class ids outside 0..8"):
        regroup(np.array([9]), "neobrains12", "mrbrains13")


def test_validate_float_and_out_of_range():
    s = get_scheme("tissue4")
    s.validate(np.array([0.0, 1.0, 3.0]), "a.nii")
    with pytest.raises(InputError, match=r"a.nii: label map has non-integer values \(e.g. 2.5\)"):
        s.validate(np.array([0.0, 2.5]), "a.nii")
    with pytest.raises(InputError, match=r"a.nii: label values -1, 4 are not in scheme 'tissue4'"):
        s.validate(np.array([-1, 0, 4]), "a.nii")
    np.testing.assert_array_equal(s.remap(np.array([3.0, 0.0])), [3, 0])


def test_custom_scheme_and_bad_definition():
    s = LabelScheme("mine", ("bg", "lesion"), {0: 0, 5: 1, 6: 1})
    np.testing.assert_array_equal(s.remap(np.array([5, 6, 0])), [1, 1, 0])
    np.testing.assert_array_equal(s.to_raw(np.array([1, 0])), [5, 0])
    with pytest.raises(ValueError):
        LabelScheme("broken", ("bg",), {0: 0, 1: 1})


def test_tissue_sectors_scheme():
    """72 sector classes + background: class 1 + (t - 1) * 24 + (k - 1) is tissue t, sector k
    (written out by hand here), and the grouping to tissue4 maps each to its tissue.
    Seen failing: with the grouping written ``(c - 1) // N_SECTORS`` (no +1) every class went
    one tissue down."""
    s = get_scheme("tissue_sectors")
    assert s.num_classes == 73 and s.names[0] == "background"
    assert (s.names[1], s.names[24], s.names[25], s.names[36], s.names[72]) == (
        "CSF sector 1", "CSF sector 24", "GM sector 1", "GM sector 12", "WM sector 24")
    ids = np.array([0, 1, 24, 25, 36, 48, 49, 72])
    np.testing.assert_array_equal(regroup(ids, "tissue_sectors", "tissue4"),
                                  [0, 1, 1, 2, 2, 2, 3, 3])
