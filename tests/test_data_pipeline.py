"""tf.data pipelines: declared shapes/dtypes, 3-slice stacks vs numpy, one decode per epoch."""

import nibabel as nib
import numpy as np
import pytest
import tensorflow as tf

from tfneuro.data import augment, pipeline
from tfneuro.data.patches import patch_dataset
from tfneuro.data.pipeline import volume_dataset
from tfneuro.data.slices import rgb_slice_dataset, slice_dataset
from tfneuro.errors import InputError


def _arr(path):
    return np.asarray(nib.load(path).dataobj)


def _check_against_spec(ds, n=2):
    spec = tf.nest.flatten(ds.element_spec)
    for elem in ds.take(n):
        for t, s in zip(tf.nest.flatten(elem), spec):
            assert t.dtype == s.dtype
            assert s.shape.is_compatible_with(t.shape), (s.shape, t.shape)


@pytest.mark.parametrize("axis,ax", [("sagittal", 0), ("coronal", 1), ("axial", 2)])
def test_slice_shapes_dtypes_and_counts(synth_cohort, axis, ax):
    ds = slice_dataset(synth_cohort, axis=axis, modalities=("t1", "t2"), pad_to=(64, 64, 64),
                       batch_size=8)
    x_spec, y_spec = ds.element_spec
    hw = tuple(64 for i in range(3) if i != ax)
    assert x_spec.shape.as_list() == [None, *hw, 2] and x_spec.dtype == tf.float32
    assert y_spec.shape.as_list() == [None, *hw] and y_spec.dtype == tf.int32
    _check_against_spec(ds)
    assert sum(int(x.shape[0]) for x, _ in ds) == 4 * 64


def test_drop_empty_counts_match_numpy(synth_cohort):
    expected = 0
    for p in synth_cohort["label"]:
        lab = _arr(p)
        expected += int(np.sum(lab.reshape(lab.shape[0], -1).any(axis=1)))
        # sagittal axis 0: count slices holding any non-background label
    ds = slice_dataset(synth_cohort, axis="sagittal", drop_empty=True, batch_size=16)
    n = 0
    for _, y in ds:
        assert np.all(y.numpy().reshape(y.shape[0], -1).any(axis=1))
        n += int(y.shape[0])
    assert n == expected


def _numpy_stack(vol, axis):
    """Independent paper-004 stack: slices n-1, n, n+1 as channels, zeros outside."""
    v = np.moveaxis(vol, axis, 0)
    out = np.zeros(v.shape + (3,), np.float32)
    for n in range(v.shape[0]):
        for k, m in enumerate((n - 1, n, n + 1)):
            if 0 <= m < v.shape[0]:
                out[n, :, :, k] = v[m]
    return out


@pytest.mark.parametrize("axis,ax", [("coronal", 1), ("axial", 2)])
def test_rgb_stacks_equal_numpy_slicing(synth_cohort, axis, ax):
    one = synth_cohort.iloc[[1]]
    ds = rgb_slice_dataset(one, modality="t2", axis=axis, normalize=None, shuffle=False)
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    vol = _arr(one["t2"].iloc[0]).astype(np.float32)
    expect = _numpy_stack(vol, ax)
    np.testing.assert_array_equal(np.stack(xs), expect)
    np.testing.assert_array_equal(np.stack(ys), np.moveaxis(_arr(one["label"].iloc[0]), ax, 0))
    assert np.all(expect[0, ..., 0] == 0) and np.all(expect[-1, ..., 2] == 0)


def test_two_arm_and_weights_travel(synth_cohort):
    one = synth_cohort.iloc[[0]]
    ds = slice_dataset(one, modalities=("t1", "t2"), two_arm=True, stack=3, normalize=None,
                       shuffle=False, weights=lambda row, y: (y == 3).astype(np.float32))
    (a_spec, b_spec), y_spec, w_spec = ds.element_spec
    assert a_spec.shape[-1] == 3 and b_spec.shape[-1] == 3 and w_spec.dtype == tf.float32
    t1 = _arr(one["t1"].iloc[0]).astype(np.float32)
    t2 = _arr(one["t2"].iloc[0]).astype(np.float32)
    s1, s2 = _numpy_stack(t1, 2), _numpy_stack(t2, 2)
    for n, ((a, b), y, w) in enumerate(ds):
        np.testing.assert_array_equal(a.numpy(), s1[n])
        np.testing.assert_array_equal(b.numpy(), s2[n])
        np.testing.assert_array_equal(w.numpy(), (y.numpy() == 3).astype(np.float32))
    assert n + 1 == t1.shape[2]


def _count_loads(monkeypatch):
    calls = []
    real = pipeline.load_subject

    def counting(row, *args, **kwargs):
        calls.append(row["subject"])
        return real(row, *args, **kwargs)

    monkeypatch.setattr(pipeline, "load_subject", counting)
    return calls


def test_each_volume_decoded_once_per_epoch(synth_cohort, monkeypatch):
    calls = _count_loads(monkeypatch)
    ds = slice_dataset(synth_cohort, axis="axial", batch_size=4,
                       augment=augment.Compose([augment.RandomFlip((0, 1))]))
    for epoch in (1, 2):
        n_slices = sum(int(x.shape[0]) for x, _ in ds)
        assert n_slices > 100                       # many slices ...
        assert len(calls) == 4 * epoch              # ... but one decode per volume per epoch
        assert sorted(calls[-4:]) == sorted(synth_cohort["subject"])


def test_cache_decodes_once_in_total(synth_cohort, monkeypatch):
    calls = _count_loads(monkeypatch)
    ds = patch_dataset(synth_cohort, patch_size=16, patches_per_volume=3, cache=True,
                       batch_size=6)
    for _ in range(3):
        assert sum(int(x.shape[0]) for x, _ in ds) == 12
    assert len(calls) == 4


def test_patch_shapes_and_class_balance(synth_cohort):
    kw = dict(patch_size=(16, 16, 16), patches_per_volume=64, modalities=("t1", "t2"),
              shuffle=False, seed=5)
    bal = patch_dataset(synth_cohort, class_balanced=True, **kw)
    uni = patch_dataset(synth_cohort, class_balanced=False, crop_to=None, **kw)
    assert bal.element_spec[0].shape.as_list() == [16, 16, 16, 2]
    assert bal.element_spec[1].shape.as_list() == [16, 16, 16]
    _check_against_spec(bal)

    def csf_centres(ds):
        return sum(int(y.numpy()[8, 8, 8] == 1) for _, y in ds)

    # Balanced sampling centres ~1/4 of the 256 patches on CSF (one of 4 classes; binomial SD
    # 6.9, a few less where a centre near the edge is clipped), uniform sampling only as often
    # as CSF occurs where centres can fall (~8 % in the tfneuro-synth/2 fixture, which has
    # extra-axial and wider sulcal CSF; ~3 % in version 1).
    n_bal, n_uni = csf_centres(bal), csf_centres(uni)
    assert n_bal >= 64 - 3 * 6.9 and n_bal > 2 * max(n_uni, 1), (n_bal, n_uni)


def test_volume_dataset_shapes_and_content(synth_cohort):
    ds = volume_dataset(synth_cohort, modalities=("t1",), multiple=16)
    for (x, y), path in zip(ds, synth_cohort["label"]):
        lab = _arr(path)
        assert all(s % 16 == 0 and s >= t and s - t < 16 for s, t in zip(y.shape, lab.shape))
        assert x.shape == y.shape + (1,) and x.dtype == tf.float32
        np.testing.assert_array_equal(np.bincount(y.numpy().ravel(), minlength=4)[1:],
                                      np.bincount(lab.astype(int).ravel(), minlength=4)[1:])


def test_same_seed_same_augmented_stream(synth_cohort):
    def first(seed):
        ds = slice_dataset(synth_cohort, pad_to=(48, 48, 48), batch_size=8, seed=seed,
                           augment=augment.default_augmentation())
        return next(iter(ds))[0].numpy()

    np.testing.assert_array_equal(first(1), first(1))
    assert not np.array_equal(first(1), first(2))


def test_bad_options(synth_cohort):
    with pytest.raises(InputError, match="axis"):
        slice_dataset(synth_cohort, axis="oblique")
    with pytest.raises(InputError, match="two_arm"):
        slice_dataset(synth_cohort, two_arm=True)
    with pytest.raises(InputError, match="stack"):
        slice_dataset(synth_cohort, stack=2)
    with pytest.raises(InputError, match="no column"):
        slice_dataset(synth_cohort, modalities=("flair",))


def _zscore_by_hand(v):
    """Paper-free reference of ``normalize="zscore"``: clip to the 0.5 / 99.5 percentiles,
    then subtract the mean and divide by the (population) SD."""
    lo, hi = np.percentile(v, [0.5, 99.5])
    c = np.clip(v, lo, hi).astype(np.float64)
    return (c - c.mean()) / c.std()


def test_raw_channel_is_appended_unnormalised(synth_cohort, tmp_path):
    """A prior mask read through ``raw_channels`` (NEC-NET's cascade) arrives as stored, after
    the z-scored modality, in load_subject and in patch_dataset; an all-zero prior is valid.
    Seen failing: with the raw channel normalised like the modalities, channel 1 differed
    from the mask on every voxel (by up to 1.44)."""
    from tfneuro.data.pipeline import load_subject
    from tfneuro.io import save_volume

    df = synth_cohort.iloc[:2].copy()
    priors = []
    for i, row in enumerate(df.to_dict("records")):
        lab = _arr(row["label"])
        prior = (lab == 2).astype(np.uint8) if i == 0 else np.zeros(lab.shape, np.uint8)
        save_volume(prior, tmp_path / f"prior{i}.nii.gz", affine=nib.load(row["t1"]).affine)
        priors.append(prior)
    df["prior"] = [str(tmp_path / f"prior{i}.nii.gz") for i in range(2)]
    for row, prior in zip(df.to_dict("records"), priors):
        x, _, _ = load_subject(row, raw_channels=("prior",))
        assert x.shape == prior.shape + (2,)
        np.testing.assert_array_equal(x[..., 1], prior)
        np.testing.assert_allclose(x[..., 0], _zscore_by_hand(_arr(row["t1"])), atol=1e-4)
    shape = _arr(df["t1"].iloc[0]).shape
    big = tuple(s + (-s) % 8 for s in shape)  # one patch = the whole (zero-padded) volume
    ds = patch_dataset(df.iloc[:1], patch_size=big, patches_per_volume=1, crop_to=None,
                       raw_channels=("prior",), shuffle=False)
    assert ds.element_spec[0].shape.as_list() == list(big) + [2]
    x, _ = next(iter(ds))
    np.testing.assert_array_equal(x.numpy()[..., 1], augment.pad_to_shape(priors[0], big))
    with pytest.raises(InputError, match="distinct"):
        patch_dataset(df, modalities=("t1",), raw_channels=("t1",))


def test_nonzero_crop_finds_the_raw_box_after_normalisation():
    """The "nonzero" crop keeps the box of the raw signal (+2 voxels) whether the volume is
    raw, z-scored or min-max scaled (the zero background becomes each channel's minimum), and
    a second, raw 0/1 channel adds its own voxels. Seen failing: with the old ``x != 0``
    test the z-scored volume was not cropped at all ((20, 20, 20) instead of (11, 12, 10))."""
    from tfneuro.data.patches import bbox_crop
    from tfneuro.data.pipeline import normalize_volume

    rng = np.random.default_rng(0)
    raw = np.zeros((20, 20, 20), np.float32)
    raw[5:12, 6:14, 3:9] = rng.uniform(1.0, 2.0, (7, 8, 6))
    y = np.zeros(raw.shape, np.int32)
    w = np.ones(raw.shape, np.float32)
    want = (7 + 4, 8 + 4, 6 + 4)  # the box plus a 2-voxel margin on each side
    for method in (None, "zscore", "minmax", "histeq"):
        x = normalize_volume(raw, method)[..., None]
        assert bbox_crop(x, y, w)[0].shape == want + (1,), method
    prior = np.zeros(raw.shape, np.float32)
    prior[15, 16, 17] = 1.0  # far corner of the box: (5..15, 6..16, 3..17) + 2
    x = np.stack([normalize_volume(raw, "zscore"), prior], axis=-1)
    assert bbox_crop(x, y, w)[0].shape == (15, 15, 19, 2)
