"""Composable, seeded augmentation stages (numpy / scipy.ndimage; no TensorFlow).

Each stage is a callable ``stage(image, label, weight, rng) -> (image, label, weight)``:
``image`` is ``[*spatial, C]`` float32 (2D or 3D spatial), ``label`` ``[*spatial]`` int or
``None``, ``weight`` ``[*spatial]`` float32 or ``None``. Spatial stages move label and weight
with the image (labels by nearest neighbour, so only existing label values appear; weights
linearly); intensity stages touch the image only. Every stage fires with probability
``prob``. :class:`Compose` chains stages and draws all randomness from one
``numpy.random.Generator``, so a pipeline is reproducible from its seed.

The organisation (one documented class per transform, each with ``prob``) follows the ideas
of SynthSeg's lab2im layers; the list of transforms is paper 002's (section 2, "Pipeline
Design": random spatial cropping, 3D elastic deformation, flipping, Gaussian noising and
smoothing, intensity scaling and shifting) plus rotation/scaling.

The tf.data pipelines (:mod:`tfneuro.data.slices`, :mod:`tfneuro.data.patches`) apply a
``Compose`` to each decoded volume inside their ``tf.py_function``, seeded per volume and
epoch.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

from tfneuro.errors import InputError

__all__ = ["Compose", "RandomCrop", "RandomFlip", "ElasticDeform", "RotateScale",
           "GaussianNoise", "GaussianSmooth", "IntensityScaleShift", "smooth_random_field",
           "default_augmentation"]


def _check_prob(prob):
    if not 0.0 <= float(prob) <= 1.0:
        raise InputError("prob", f"{prob} is not a probability in [0, 1]")
    return float(prob)


def _range(v, name):
    lo, hi = (v, v) if np.isscalar(v) else tuple(v)
    if lo > hi:
        raise InputError(name, f"range {v} has low > high")
    return float(lo), float(hi)


class Stage:
    """Base class: ``prob`` is the probability the stage is applied to a sample."""

    def __init__(self, prob: float = 1.0):
        self.prob = _check_prob(prob)

    def __call__(self, image, label=None, weight=None, rng=None):
        rng = np.random.default_rng() if rng is None else rng
        if self.prob < 1.0 and rng.random() >= self.prob:
            return image, label, weight
        return self.apply(image, label, weight, rng)

    def apply(self, image, label, weight, rng):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Compose:
    """Chain stages; ``Compose(stages, seed)(image, label, weight, rng=None)``.

    Args:
        stages: list of stages (callables as above).
        seed: default seed when no ``rng``/``seed`` is given at call time.
    """

    def __init__(self, stages, seed: int | None = 0):
        self.stages = list(stages)
        self.seed = seed

    def __call__(self, image, label=None, weight=None, rng=None, seed=None):
        if rng is None:
            rng = np.random.default_rng(self.seed if seed is None else seed)
        for stage in self.stages:
            image, label, weight = stage(image, label, weight, rng)
        return image, label, weight

    def __repr__(self):
        return f"Compose({self.stages!r})"


class RandomCrop(Stage):
    """Crop a random window of ``size`` (spatial; larger than the volume -> zero padding).

    Args:
        size: spatial size of the crop (one int for all axes, or one per axis).
        prob: probability of cropping.
    """

    def __init__(self, size, prob: float = 1.0):
        super().__init__(prob)
        self.size = size

    def apply(self, image, label, weight, rng):
        nd = image.ndim - 1
        size = (self.size,) * nd if np.isscalar(self.size) else tuple(self.size)
        image, label, weight = (pad_to_shape(a, size) if a is not None else None
                                for a in (image, label, weight))
        start = [int(rng.integers(0, s - c + 1)) for s, c in zip(image.shape[:nd], size)]
        sl = tuple(slice(a, a + c) for a, c in zip(start, size))
        return image[sl], None if label is None else label[sl], \
            None if weight is None else weight[sl]


class RandomFlip(Stage):
    """Flip along each of ``axes`` independently with probability ``prob``.

    Left-right flips swap hemispheres: fine for tissue labels, not for lateralised parcels.

    Args:
        axes: spatial axes that may be flipped.
        prob: probability, per axis, of flipping.
    """

    def __init__(self, axes=(0,), prob: float = 0.5):
        super().__init__(1.0)
        self.axes = tuple(axes)
        self.flip_prob = _check_prob(prob)

    def apply(self, image, label, weight, rng):
        for ax in self.axes:
            if rng.random() < self.flip_prob:
                image = np.flip(image, ax)
                label = None if label is None else np.flip(label, ax)
                weight = None if weight is None else np.flip(weight, ax)
        return (np.ascontiguousarray(image), None if label is None else np.ascontiguousarray(label),
                None if weight is None else np.ascontiguousarray(weight))


def smooth_random_field(rng, shape, control_spacing, amplitude) -> np.ndarray:
    """Smooth random scalar field: N(0, amplitude) noise on a coarse grid (one node every
    ``control_spacing`` voxels), cubic-spline upsampled to ``shape``.

    Cubic zoom is a tensor product, so it is applied axis by axis as a small
    (shape x coarse) matrix (the zoom of each unit vector) — far faster than a 3D zoom.
    """
    shape = tuple(int(s) for s in shape)
    coarse = tuple(max(2, int(np.ceil(s / control_spacing)) + 1) for s in shape)
    noise = rng.normal(0.0, amplitude, size=coarse).astype(np.float32)
    mats = [_upsample_matrix(c, n) for c, n in zip(coarse, shape)]
    letters = "ijkl"[: len(shape)]
    caps = "abcd"[: len(shape)]
    expr = ",".join(f"{o}{c}" for o, c in zip(letters, caps)) + f",{caps}->{letters}"
    return np.einsum(expr, *mats, noise, optimize=True).astype(np.float32)


@functools.lru_cache(maxsize=128)
def _upsample_matrix(coarse: int, n: int) -> np.ndarray:
    eye = np.eye(coarse, dtype=np.float32)
    mat = ndimage.zoom(eye, (n / coarse, 1.0), order=3, mode="nearest", grid_mode=True)
    out = np.empty((n, coarse), np.float32)
    m = min(n, mat.shape[0])
    out[:m] = mat[:m]
    out[m:] = mat[-1]
    return out


def _warp(image, label, weight, coords):
    """Resample image (linear, per channel), label (nearest), weight (linear) at coords."""
    shape = coords.shape[1:]
    flat = coords.reshape(coords.shape[0], -1)

    def res(vol, order):
        return ndimage.map_coordinates(vol, flat, order=order, mode="constant",
                                       cval=0.0).reshape(shape)

    img = np.stack([res(image[..., c], 1) for c in range(image.shape[-1])], axis=-1)
    lab = None if label is None else res(label, 0).astype(label.dtype)
    w = None if weight is None else res(weight, 1).astype(weight.dtype)
    return img.astype(np.float32), lab, w


class ElasticDeform(Stage):
    """Random smooth elastic deformation (paper 002: "3D elastic deformation").

    Displacements per axis: N(0, ``magnitude``) voxels on a grid of one control point every
    ``control_spacing`` voxels, cubic-spline upsampled. Labels are resampled by nearest
    neighbour, so the output holds only label values of the input.

    Args:
        magnitude: displacement standard deviation in voxels.
        control_spacing: voxels between control points (larger = smoother).
        prob: probability of deforming.
    """

    def __init__(self, magnitude: float = 2.0, control_spacing: float = 16.0,
                 prob: float = 0.5):
        super().__init__(prob)
        self.magnitude = float(magnitude)
        self.control_spacing = float(control_spacing)

    def apply(self, image, label, weight, rng):
        shape = image.shape[:-1]
        coords = np.indices(shape, dtype=np.float32)
        for d in range(len(shape)):
            coords[d] += smooth_random_field(rng, shape, self.control_spacing, self.magnitude)
        return _warp(image, label, weight, coords)


class RotateScale(Stage):
    """Random rotation (about the centre) and isotropic scaling.

    Args:
        max_degrees: rotation angles drawn uniformly in [-max, max] (each axis in 3D).
        scale: range (low, high) of the isotropic scale factor.
        prob: probability of transforming.
    """

    def __init__(self, max_degrees: float = 10.0, scale=(0.9, 1.1), prob: float = 0.5):
        super().__init__(prob)
        self.max_degrees = float(max_degrees)
        self.scale = _range(scale, "scale")

    def apply(self, image, label, weight, rng):
        shape = np.array(image.shape[:-1])
        nd = len(shape)
        ang = np.deg2rad(rng.uniform(-self.max_degrees, self.max_degrees, size=3))
        if nd == 2:
            c, s = np.cos(ang[0]), np.sin(ang[0])
            rot = np.array([[c, -s], [s, c]])
        else:
            rot = np.eye(3)
            for i, (a, b) in enumerate(((1, 2), (0, 2), (0, 1))):
                r = np.eye(3)
                r[a, a] = r[b, b] = np.cos(ang[i])
                r[a, b], r[b, a] = -np.sin(ang[i]), np.sin(ang[i])
                rot = r @ rot
        zoom = rng.uniform(*self.scale)
        mat = rot / zoom  # output -> input
        centre = (shape - 1) / 2.0
        grid = np.indices(tuple(shape), dtype=np.float32).reshape(nd, -1) - centre[:, None]
        coords = (mat.astype(np.float32) @ grid + centre[:, None]).reshape(nd, *shape)
        return _warp(image, label, weight, coords.astype(np.float32))


class GaussianNoise(Stage):
    """Add N(0, std) noise to the image, std drawn uniformly from ``std`` (image units).

    Args:
        std: range (low, high) of the noise standard deviation.
        prob: probability of adding noise.
    """

    def __init__(self, std=(0.0, 0.1), prob: float = 0.5):
        super().__init__(prob)
        self.std = _range(std, "std")

    def apply(self, image, label, weight, rng):
        sd = rng.uniform(*self.std)
        return (image + rng.normal(0.0, sd, size=image.shape)).astype(np.float32), label, weight


class GaussianSmooth(Stage):
    """Gaussian blur of the image (spatial axes only), sigma drawn from ``sigma`` voxels.

    Args:
        sigma: range (low, high) of the blur sigma in voxels.
        prob: probability of smoothing.
    """

    def __init__(self, sigma=(0.5, 1.0), prob: float = 0.3):
        super().__init__(prob)
        self.sigma = _range(sigma, "sigma")

    def apply(self, image, label, weight, rng):
        s = rng.uniform(*self.sigma)
        sig = (s,) * (image.ndim - 1) + (0.0,)
        return ndimage.gaussian_filter(image, sig).astype(np.float32), label, weight


class IntensityScaleShift(Stage):
    """``image * a + b`` with a, b drawn uniformly from ``scale`` and ``shift``.

    Args:
        scale: range of the multiplicative factor.
        shift: range of the additive offset (image units).
        prob: probability of applying.
    """

    def __init__(self, scale=(0.9, 1.1), shift=(-0.1, 0.1), prob: float = 0.5):
        super().__init__(prob)
        self.scale = _range(scale, "scale")
        self.shift = _range(shift, "shift")

    def apply(self, image, label, weight, rng):
        a = rng.uniform(*self.scale)
        b = rng.uniform(*self.shift)
        return (image * a + b).astype(np.float32), label, weight


def default_augmentation(ndim: int = 3, seed: int | None = 0) -> Compose:
    """Paper 002's set (flip, elastic, rotation/scale, noise, smoothing, scale/shift)."""
    return Compose([
        RandomFlip(axes=tuple(range(ndim)), prob=0.5),
        ElasticDeform(magnitude=2.0, control_spacing=16.0, prob=0.3),
        RotateScale(max_degrees=10.0, scale=(0.9, 1.1), prob=0.3),
        GaussianNoise(std=(0.0, 0.1), prob=0.3),
        GaussianSmooth(sigma=(0.5, 1.0), prob=0.2),
        IntensityScaleShift(scale=(0.9, 1.1), shift=(-0.1, 0.1), prob=0.5),
    ], seed=seed)


def pad_to_shape(a: np.ndarray, shape, value=0) -> np.ndarray:
    """Zero-pad the leading ``len(shape)`` axes of ``a`` (centred) up to at least ``shape``."""
    pads = []
    for s, t in zip(a.shape, shape):
        extra = max(0, int(t) - s)
        pads.append((extra // 2, extra - extra // 2))
    pads += [(0, 0)] * (a.ndim - len(pads))
    if not any(p != (0, 0) for p in pads):
        return a
    return np.pad(a, pads, constant_values=value)
