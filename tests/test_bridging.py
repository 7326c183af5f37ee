"""Tests for tfneuro.inference.bridging (paper 000 eq. 1 gap bridging)."""

import numpy as np
import pytest
from scipy import ndimage

from tfneuro.errors import InputError
from tfneuro.inference.bridging import bridge_gaps, necnet_postprocess


def _cut_ring(size=40, r_in=8, r_out=10, half_gap=1):
    """An annulus with a gap of 2*half_gap+1 rows cut out of its right side.

    The two cut ends face each other across the gap at the same column: L1 = 2*half_gap + 2.
    """
    yy, xx = np.mgrid[:size, :size]
    c = size // 2
    d = np.hypot(yy - c, xx - c)
    ring = (d >= r_in) & (d <= r_out)
    ring[c - half_gap:c + half_gap + 1, c:] = False
    return ring


def _is_closed(m):
    """A closed ring encloses background: hole filling adds voxels."""
    return ndimage.binary_fill_holes(m).sum() > m.sum()


def test_ring_gap_within_theta_is_closed():
    ring = _cut_ring(half_gap=1)  # gap rows: L1 between facing ends = 4 -> needs theta >= 6
    assert not _is_closed(ring)
    out = bridge_gaps(ring, theta=6)
    assert _is_closed(out)
    assert np.all(out[ring])  # only adds
    added = out & ~ring
    # the bridge lies in the cut (3 rows x ring thickness on the right side)
    assert added.any() and np.all(np.argwhere(added)[:, 0] >= 19) and np.all(np.argwhere(added)[:, 0] <= 21)
    assert added.sum() <= 3 * 3


def test_larger_gap_stays_open():
    ring = _cut_ring(half_gap=1)
    out = bridge_gaps(ring, theta=5)  # 4 + 2 > 5
    assert not _is_closed(out)
    np.testing.assert_array_equal(out, ring)
    wide = _cut_ring(half_gap=3)  # L1 = 8 -> needs theta >= 10
    assert not _is_closed(bridge_gaps(wide, theta=9))
    assert _is_closed(bridge_gaps(wide, theta=10))


def test_two_components_joined_only_within_theta():
    m = np.zeros((20, 20), np.uint8)
    m[5:10, 3:8] = 1
    m[5:10, 10:15] = 1  # columns 8, 9 empty: nearest points L1 = 3
    joined = bridge_gaps(m, theta=5)
    assert joined.dtype == np.uint8
    assert ndimage.label(joined, np.ones((3, 3)))[1] == 1
    # every facing pair (same row, L1 = 3) is joined by its straight 2-voxel path, and no
    # other pair is within L1 <= 3: exactly the 5x2 gap between the squares is filled
    expected = m.copy()
    expected[5:10, 8:10] = 1
    np.testing.assert_array_equal(joined, expected)
    apart = bridge_gaps(m, theta=4)
    np.testing.assert_array_equal(apart, m)


def test_3d_bridges_each_slice_along_axis():
    ring = _cut_ring(half_gap=1)
    vol = np.zeros((40, 40, 5), bool)
    vol[..., 1:4] = ring[..., None]
    out = bridge_gaps(vol, theta=6, axis=2)
    for k in range(1, 4):
        assert _is_closed(out[..., k])
    assert not out[..., 0].any() and not out[..., 4].any()
    # slicing along another axis bridges nothing in these (open-ring-free) slices' sense
    out0 = bridge_gaps(np.moveaxis(vol, 2, 0), theta=6, axis=0)
    np.testing.assert_array_equal(np.moveaxis(out0, 0, 2), out)


def test_necnet_postprocess_keeps_largest_component_then_bridges():
    ring = _cut_ring(half_gap=1)
    vol = np.zeros((40, 40, 3), np.uint8)
    vol[..., 1] = ring
    vol[0:2, 0:2, 0] = 1  # a speck, not connected to the ring
    out = necnet_postprocess(vol, theta=6)
    assert out[0:2, 0:2, 0].sum() == 0
    assert _is_closed(out[..., 1])


def test_bad_input():
    with pytest.raises(InputError):
        bridge_gaps(np.zeros(5), theta=4)
    with pytest.raises(InputError):
        bridge_gaps(np.zeros((5, 5)), theta=-1)
