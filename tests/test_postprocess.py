"""Tests for tfneuro.inference.postprocess (paper 004 slice cleaning, components, holes)."""

import numpy as np
import pytest

from tfneuro.errors import InputError
from tfneuro.inference.postprocess import (brain_mask_from_middle_slice, clean_slices,
                                           fill_holes, largest_component_per_label, postprocess)


def _volume():
    """30 x 30 x 9 labels, axial slices along axis 2; brain = square [5:20, 5:20] per slice."""
    lab = np.zeros((30, 30, 9), dtype=np.int32)
    lab[5:20, 5:20, :] = 2          # brain tissue
    lab[8:16, 8:16, :] = 3          # a second tissue inside
    return lab


def test_small_region_removed_large_kept():
    lab = _volume()
    lab[25:27, 25:27, 1] = 1        # planted small region: 4 voxels = 4 mm^2 < 5 mm^2, off-brain
    lab[5:20, 22:24, 2] = 1         # 30 mm^2 but outside the brain mask: overlap 0 < 0.8
    out = clean_slices(lab, spacing=1.0, axis=2)
    expected = _volume()
    np.testing.assert_array_equal(out, expected)
    # the brain (large, inside M) is untouched in every slice
    assert (out[5:20, 5:20, :] > 0).all()


def test_area_uses_spacing_and_overlap_threshold():
    lab = _volume()
    # 3 x 3 region touching the brain square only diagonally -> separate 8-connected? no:
    # place it fully separate and inside M by making M larger than the brain in slice 4
    blob = np.zeros_like(lab)
    blob[22:25, 22:25, 1] = 1       # 9 voxels
    lab = lab + blob
    mask = np.zeros((30, 30), dtype=bool)
    mask[0:30, 0:30] = True         # everything inside M -> only the area test matters
    # 1 mm spacing: 9 mm^2 >= 5 -> kept
    out = clean_slices(lab, spacing=(1.0, 1.0, 3.0), axis=2, brain_mask=mask)
    assert out[22:25, 22:25, 1].sum() == 9
    # 0.7 mm in-plane: 9 * 0.49 = 4.41 mm^2 < 5 -> removed (slice thickness irrelevant)
    out = clean_slices(lab, spacing=(0.7, 0.7, 3.0), axis=2, brain_mask=mask)
    assert out[22:25, 22:25, 1].sum() == 0
    assert (out[5:20, 5:20, :] > 0).all()


def test_overlap_fraction_boundary():
    lab = np.zeros((20, 20, 5), dtype=np.int32)
    lab[2:12, 2:12, 2] = 1                     # middle slice: the brain mask M = [2:12, 2:12]
    # slice 0: a 10 x 10 region with 9 of 10 columns inside M -> 0.9 >= 0.8, kept
    lab[2:12, 3:13, 0] = 1
    # slice 4: 10 x 10 region with 7 of 10 columns inside M -> 0.7 < 0.8, removed
    lab[2:12, 5:15, 4] = 1
    out = clean_slices(lab, spacing=1.0, axis=2)
    assert out[..., 0].sum() == 100
    assert out[..., 4].sum() == 0
    assert out[..., 2].sum() == 100


def test_brain_mask_is_largest_region_of_middle_slice_along_axis():
    lab = np.zeros((11, 12, 13), dtype=np.int32)
    lab[5, 1:4, 1:4] = 1     # small (9) on the middle sagittal slice (axis 0, index 5)
    lab[5, 6:11, 6:12] = 2   # large (30), two labels count as one foreground region
    lab[5, 6:11, 2:5] = 0
    m = brain_mask_from_middle_slice(lab, axis=0)
    expected = np.zeros((12, 13), dtype=bool)
    expected[6:11, 6:12] = True
    np.testing.assert_array_equal(m, expected)


def test_brain_mask_fills_holes_and_falls_back_when_middle_empty():
    lab = np.zeros((10, 10, 6), dtype=np.int32)
    lab[2:8, 2:8, 1] = 1
    lab[4:6, 4:6, 1] = 0     # hole
    # middle slice (index 3) is empty -> slice with most foreground (index 1)
    m = brain_mask_from_middle_slice(lab, axis=2)
    expected = np.zeros((10, 10), dtype=bool)
    expected[2:8, 2:8] = True
    np.testing.assert_array_equal(m, expected)


def test_largest_component_per_label():
    lab = np.zeros((16, 16, 16), dtype=np.int32)
    lab[1:4, 1:4, 1:4] = 1        # 27 voxels
    lab[10:12, 10:12, 10:12] = 1  # 8 voxels, separate -> removed
    lab[6:9, 1:3, 1:3] = 2        # single component of label 2, kept
    out = largest_component_per_label(lab)
    expected = lab.copy()
    expected[10:12, 10:12, 10:12] = 0
    np.testing.assert_array_equal(out, expected)
    # diagonal neighbours are one component with full connectivity, two with faces only
    lab2 = np.zeros((6, 6, 6), dtype=np.int32)
    lab2[1, 1, 1] = 1
    lab2[2, 2, 2] = 1
    lab2[4:6, 4:6, 4:6] = 1       # 8 voxels
    assert largest_component_per_label(lab2)[1, 1, 1] == 0
    assert largest_component_per_label(lab2, connectivity=3)[2, 2, 2] == 0


def test_fill_holes_uses_nearest_label():
    lab = np.zeros((12, 12, 12), dtype=np.int32)
    lab[2:10, 2:10, 2:10] = 3
    lab[5, 5, 7] = 0              # enclosed hole inside label 3
    lab[2:10, 2:10, 2:5] = 1      # a label-1 slab
    lab[5, 5, 3] = 0              # a hole inside the label-1 slab (all 6 neighbours label 1)
    out = fill_holes(lab)
    assert out[5, 5, 7] == 3
    assert out[5, 5, 3] == 1
    assert (out[0] == 0).all()    # outside background untouched
    assert (out != lab).sum() == 2


def test_postprocess_chain_removes_offbrain_and_islands():
    lab = _volume()
    lab[25:27, 25:27, 1] = 1                  # small off-brain region
    lab[11, 11, 4] = 2                        # stray voxel of label 2 inside label 3's region
    out = postprocess(lab, spacing=1.0, axis=2)
    expected = _volume()
    np.testing.assert_array_equal(out, expected)


def test_bad_input():
    with pytest.raises(InputError):
        clean_slices(np.zeros((4, 4)), spacing=1.0)
    with pytest.raises(InputError):
        clean_slices(np.zeros((4, 4, 4), dtype=int), spacing=(1.0, 1.0))
    with pytest.raises(InputError):
        clean_slices(np.zeros((4, 4, 4), dtype=int), axis=3)
    with pytest.raises(InputError):
        largest_component_per_label(np.full((4, 4, 4), 0.5))
