"""Intensity normalisation checked against formulas evaluated independently in the test."""

import numpy as np
import pytest

from tfneuro.errors import InputError
from tfneuro.io.normalize import histogram_equalize, minmax, zscore


def data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.gamma(2.0, 50.0, size=(20, 20, 20)).astype(np.float32)
    x[0, 0, 0] = 1e5  # an outlier the percentile clip must remove
    return x


def test_zscore_matches_formula():
    x = data()
    vals = np.sort(x.ravel().astype(np.float64))
    # percentiles by numpy's linear rule, written out: position p/100 * (n - 1)
    def pct(p):
        pos = p / 100 * (vals.size - 1)
        lo = int(np.floor(pos))
        return vals[lo] + (pos - lo) * (vals[min(lo + 1, vals.size - 1)] - vals[lo])
    c = np.minimum(np.maximum(x.astype(np.float64), pct(0.5)), pct(99.5))
    expect = (c - c.sum() / c.size) / np.sqrt(((c - c.mean()) ** 2).mean())
    np.testing.assert_allclose(zscore(x), expect, atol=1e-4)
    z = zscore(x)
    assert abs(z.mean()) < 1e-5 and abs(z.std() - 1) < 1e-5 and z.max() < 10  # outlier clipped


def test_zscore_mask_and_constant():
    x = data()
    mask = np.zeros(x.shape, bool)
    mask[5:15, 5:15, 5:15] = True
    z = zscore(x, mask=mask, percentiles=None)
    inside = x[mask].astype(np.float64)
    np.testing.assert_allclose(z, (x - inside.mean()) / inside.std(), atol=1e-4)
    assert np.all(zscore(np.full((4, 4, 4), 7.0)) == 0)
    with pytest.raises(InputError, match="mask: shape"):
        zscore(x, mask=mask[:-1])
    with pytest.raises(InputError, match="mask is empty"):
        zscore(x, mask=np.zeros_like(mask))


def test_minmax():
    x = data()
    y = minmax(x, percentiles=None)
    np.testing.assert_allclose(y, (x - x.min()) / (x.max() - x.min()), atol=1e-6)
    y = minmax(x)
    lo, hi = np.percentile(x, [0.5, 99.5])
    np.testing.assert_allclose(y, np.clip((x - lo) / (hi - lo), 0, 1), atol=1e-5)
    assert y.min() == 0 and y.max() == 1
    with pytest.raises(InputError, match="percentiles"):
        minmax(x, percentiles=(50, 10))


def test_histogram_equalize_is_empirical_cdf():
    """Equalised value of a voxel = fraction of voxels at or below its intensity (up to the bin
    width; skimage interpolates the CDF at bin centres)."""
    x = data()
    x[0, 0, 0] = x[1, 1, 1]  # no outlier: fine bins over the real range
    y = histogram_equalize(x, nbins=4096)
    flat = np.sort(x.ravel())
    cdf = np.searchsorted(flat, x.ravel(), side="right") / flat.size
    assert np.max(np.abs(y.ravel() - cdf)) < 0.01
    assert y.dtype == np.float32 and 0 <= y.min() and y.max() <= 1
    # the output is (nearly) uniformly distributed
    hist = np.histogram(y, bins=10, range=(0, 1))[0] / y.size
    np.testing.assert_allclose(hist, 0.1, atol=0.02)


def test_histogram_equalize_with_mask():
    x = data()
    mask = np.zeros(x.shape, bool)
    mask[:10] = True
    x[0, 0, 0] = x[1, 1, 1]
    xc = x
    y = histogram_equalize(xc, mask=mask, nbins=4096)
    flat = np.sort(xc[mask])
    cdf = np.searchsorted(flat, xc[mask], side="right") / flat.size
    assert np.max(np.abs(y[mask] - cdf)) < 0.01
