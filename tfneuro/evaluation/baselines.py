"""Baselines a segmentation score is reported beside (issue 14): intensity, atlas, nearest slice.

numpy / scipy / scikit-image only (no TensorFlow). Volumes are numpy arrays on one common
orientation (e.g. conformed RAS); images are ``[X, Y, Z]`` (one channel) or ``[X, Y, Z, C]``
(channels last, e.g. T1 and T2), label maps integer ``[X, Y, Z]`` with 0 = background.

* **intensity** (:func:`fit_intensity_baseline` -> :class:`IntensityBaseline`): a per-voxel
  Gaussian classifier on the z-scored channels -- quadratic discriminant analysis (one full
  covariance per class) or Gaussian naive Bayes (diagonal) -- fitted on every labelled voxel
  of the training subjects, background included; optionally followed by a morphological
  opening and the largest connected component of the foreground. It asks: how far does
  intensity alone get?
* **atlas** (:func:`atlas_baseline`): each training label map is aligned to the test subject
  by the bounding box (per-axis scale + translation) or the second moments (full affine) of
  the head/brain foreground, then every voxel takes the majority label. It asks: how far
  does average anatomy get without looking at the test subject's intensities?
* **nearest labelled slice** (:func:`nearest_slice_baseline`, :func:`nearest_slice_fill`;
  in :mod:`tfneuro.evaluation.nearest_slice`, re-exported here): for label budgets (paper 002,
  "Label Budgeting Experiments": only a share of the 2D slices along an axis is labelled),
  every unlabelled slice takes the labels of the nearest labelled slice. It asks: what does
  simply copying the labelled slices give?
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from tfneuro.errors import InputError
from tfneuro.evaluation.nearest_slice import (  # noqa: F401 (re-exported)
    nearest_slice_baseline,
    nearest_slice_fill,
)

__all__ = ["IntensityBaseline", "fit_intensity_baseline", "tune_intensity_baseline",
           "foreground_mask", "align_to", "atlas_baseline", "nearest_slice_baseline",
           "nearest_slice_fill"]

MODELS = ("qda", "gnb")


def _as_image(image, name) -> np.ndarray:
    """``[X, Y, Z]`` or ``[X, Y, Z, C]`` -> float ``[X, Y, Z, C]``."""
    arr = np.asarray(image)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or arr.shape[-1] < 1:
        raise InputError(name, f"must be [X, Y, Z] or [X, Y, Z, C], got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise InputError(name, f"has non-numeric type {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise InputError(name, "contains NaN or Inf")
    return arr.astype(np.float32)


def _as_labels(labels, name, shape=None) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 3:
        raise InputError(name, f"must be a 3D label map, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(arr == np.round(arr)):
            raise InputError(name, "holds non-integer values")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "biu":
        raise InputError(name, f"has non-integer type {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise InputError(name, f"holds negative label {int(arr.min())}")
    if shape is not None and arr.shape != tuple(shape):
        raise InputError(name, f"shape {arr.shape} differs from its image's {tuple(shape)}")
    return arr.astype(np.int64)


def _pairs(images, labels, what):
    images, labels = list(images), list(labels)
    if not images:
        raise InputError(f"{what} images", "no subjects given")
    if len(images) != len(labels):
        raise InputError(f"{what} labels", f"{len(labels)} label maps for {len(images)} images")
    out = []
    channels = None
    for i, (img, lab) in enumerate(zip(images, labels)):
        x = _as_image(img, f"{what} image {i}")
        if channels is None:
            channels = x.shape[-1]
        elif x.shape[-1] != channels:
            raise InputError(f"{what} image {i}", f"has {x.shape[-1]} channels, image 0 has "
                                                  f"{channels}")
        out.append((x, _as_labels(lab, f"{what} labels {i}", x.shape[:3])))
    return out


def _zscore(image: np.ndarray) -> np.ndarray:
    """Per-channel z-score exactly as the training pipelines do (``normalize="zscore"``:
    :func:`tfneuro.io.normalize.zscore`, 0.5/99.5 percentile clip, whole-volume statistics)."""
    from tfneuro.io.normalize import zscore

    return np.stack([zscore(image[..., c]) for c in range(image.shape[-1])], axis=-1)


def _ball(radius: int) -> np.ndarray:
    return ndimage.iterate_structure(ndimage.generate_binary_structure(3, 1), int(radius))


def _clean_foreground(labels, opening: int, largest_component: bool, background: int = 0):
    """Opening of the foreground (non-background) with a ``radius``-voxel diamond, then its
    largest 26-connected component; removed voxels become ``background``."""
    from tfneuro.inference.postprocess import largest_component_per_label

    fg = labels != background
    if opening > 0:
        fg = ndimage.binary_opening(fg, structure=_ball(opening))
    if largest_component and fg.any():
        fg = largest_component_per_label(fg.astype(np.uint8)) > 0
    out = labels.copy()
    out[~fg] = background
    return out


@dataclasses.dataclass
class IntensityBaseline:
    """A fitted per-voxel Gaussian classifier (see :func:`fit_intensity_baseline`).

    Attributes:
        classes: class ids (sorted), ``[K]``.
        means: class means in z-scored units, ``[K, C]``.
        covariances: class covariances, ``[K, C, C]`` (diagonal for ``model="gnb"``).
        priors: class frequencies in the training voxels, ``[K]``.
        model: ``"qda"`` or ``"gnb"``.
        normalize: ``"zscore"`` (per subject and channel, as the networks' input) or ``None``.
        opening: radius (voxels) of the foreground opening in :meth:`predict`; 0 = none.
        largest_component: keep the largest foreground component in :meth:`predict`.
        background: the background class id.
        threshold: two classes only: the foreground wins where its posterior exceeds this
            (``None``: maximum posterior); see :func:`tune_intensity_baseline`.
    """

    classes: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    priors: np.ndarray
    model: str = "qda"
    normalize: str | None = "zscore"
    opening: int = 1
    largest_component: bool = True
    background: int = 0
    threshold: float | None = None

    def _features(self, image):
        x = _as_image(image, "image")
        if x.shape[-1] != self.means.shape[1]:
            raise InputError("image", f"has {x.shape[-1]} channels; the baseline was fitted on "
                                      f"{self.means.shape[1]}")
        return _zscore(x) if self.normalize == "zscore" else x

    def log_posterior(self, image) -> np.ndarray:
        """Unnormalised log posterior ``log p(x | k) + log prior_k``, ``[X, Y, Z, K]``."""
        x = self._features(image)
        flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
        out = np.empty((flat.shape[0], len(self.classes)), np.float64)
        for k in range(len(self.classes)):
            chol = np.linalg.cholesky(self.covariances[k])
            z = np.linalg.solve(chol, (flat - self.means[k]).T)          # [C, N]
            logdet = 2.0 * np.sum(np.log(np.diag(chol)))
            out[:, k] = -0.5 * (np.sum(z * z, axis=0) + logdet) + np.log(self.priors[k])
        return out.reshape(*x.shape[:3], len(self.classes))

    def predict_proba(self, image) -> np.ndarray:
        """Class posteriors ``[X, Y, Z, K]`` (columns in the order of :attr:`classes`)."""
        lp = self.log_posterior(image)
        lp -= lp.max(axis=-1, keepdims=True)
        p = np.exp(lp)
        return (p / p.sum(axis=-1, keepdims=True)).astype(np.float32)

    def predict(self, image, *, postprocess: bool = True) -> np.ndarray:
        """Maximum-posterior (or :attr:`threshold`) label map (int32), then the opening /
        largest component."""
        if self.threshold is None:
            lab = self.classes[np.argmax(self.log_posterior(image), axis=-1)].astype(np.int32)
        else:
            lab = _threshold_labels(self.predict_proba(image), self.classes, self.background,
                                    self.threshold)
        if postprocess and (self.opening > 0 or self.largest_component):
            lab = _clean_foreground(lab, self.opening, self.largest_component, self.background)
        return lab


def fit_intensity_baseline(images, labels, *, model: str = "qda", normalize="zscore",
                           opening: int = 1, largest_component: bool = True,
                           reg: float = 1e-6, background: int = 0) -> IntensityBaseline:
    """Fit the intensity baseline on training subjects.

    Fitted as carefully as a network: it sees the same input the networks see (each channel
    z-scored per subject exactly as ``slice_dataset``/``patch_dataset`` do with
    ``normalize="zscore"``), every labelled voxel of every training subject (background
    included, no subsampling), and its parameters are the exact maximum-likelihood Gaussian
    per class (closed form from streamed sums in float64: nothing is under-trained or
    stopped early), with the class frequencies as priors, so :meth:`IntensityBaseline.predict`
    is the Bayes (maximum-posterior) decision under the model. Post-processing, like the
    networks' ("opening", "largest component"), is on by default.

    Args:
        images: training images, each ``[X, Y, Z]`` or ``[X, Y, Z, C]`` (same ``C`` for all).
        labels: their integer label maps ``[X, Y, Z]``.
        model: ``"qda"`` (full covariance per class) or ``"gnb"`` (diagonal).
        normalize: ``"zscore"`` or ``None`` (use intensities as given).
        opening: radius in voxels of the foreground opening at prediction (0: none).
        largest_component: keep only the largest foreground component at prediction.
        reg: added to every covariance diagonal, times the mean channel variance (keeps a
            class seen on a constant intensity invertible).
        background: background class id (what post-processing removes voxels to).

    Returns:
        An :class:`IntensityBaseline`.

    Raises:
        InputError: no subjects, mismatched counts/shapes/channels, non-integer or negative
            labels, fewer than two classes, a class with fewer than ``C + 1`` voxels, unknown
            ``model`` or ``normalize``, negative ``opening``.
    """
    if model not in MODELS:
        raise InputError("model", f"{model!r}: use one of {list(MODELS)}")
    if normalize not in ("zscore", None):
        raise InputError("normalize", f"{normalize!r}: use 'zscore' or None")
    if int(opening) < 0:
        raise InputError("opening", f"{opening}: must be >= 0 voxels")
    if not reg >= 0:
        raise InputError("reg", f"{reg}: must be >= 0")
    pairs = _pairs(images, labels, "training")
    nc = pairs[0][0].shape[-1]
    count, total, outer = {}, {}, {}
    for x, lab in pairs:
        x = _zscore(x) if normalize == "zscore" else x
        flat = x.reshape(-1, nc).astype(np.float64)
        lab = lab.ravel()
        for k in np.unique(lab):
            v = flat[lab == k]
            count[k] = count.get(k, 0) + v.shape[0]
            total[k] = total.get(k, 0.0) + v.sum(axis=0)
            outer[k] = outer.get(k, 0.0) + v.T @ v
    classes = np.array(sorted(count), dtype=np.int64)
    if len(classes) < 2:
        raise InputError("training labels", f"only class {classes.tolist()} present; need >= 2")
    small = [int(k) for k in classes if count[k] < nc + 1]
    if small:
        raise InputError("training labels", f"class(es) {small} have fewer than {nc + 1} voxels")
    n = np.array([count[k] for k in classes], np.float64)
    means = np.stack([total[k] / count[k] for k in classes])
    covs = np.stack([outer[k] / count[k] - np.outer(m, m) for k, m in zip(classes, means)])
    if model == "gnb":
        covs = np.stack([np.diag(np.diag(c)) for c in covs])
    scale = float(np.mean([np.trace(c) for c in covs])) / nc or 1.0
    covs = covs + np.eye(nc)[None] * reg * scale
    return IntensityBaseline(classes=classes, means=means, covariances=covs, priors=n / n.sum(),
                             model=model, normalize=normalize, opening=int(opening),
                             largest_component=bool(largest_component), background=background)


def _threshold_labels(proba, classes, background, threshold) -> np.ndarray:
    """Two classes: the foreground where its posterior exceeds ``threshold``."""
    if len(classes) != 2 or background not in classes:
        raise InputError("threshold", f"needs two classes, one of them the background "
                                      f"{background}; got {list(classes)}")
    fg = int(np.flatnonzero(classes != background)[0])
    return np.where(proba[..., fg] > threshold, classes[fg], background).astype(np.int32)


#: Foreground posterior thresholds :func:`tune_intensity_baseline` tries (two classes).
THRESHOLDS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4)


def tune_intensity_baseline(fitted: IntensityBaseline, images, labels, *,
                            thresholds=THRESHOLDS, openings=(0, 1),
                            largest_component=(False, True)) -> IntensityBaseline:
    """``fitted`` with the decision rule that scores best on its own training subjects.

    A network trained with a Dice loss optimises overlap; the maximum posterior minimises
    voxel errors, which for a thin, rare class can mean predicting none of it (the synthetic
    neurocranium: Dice 0, docs/necnet.md). So the rule is chosen on the training subjects by
    mean foreground Dice over ``thresholds`` (two classes only; the maximum posterior is
    always a candidate) x ``openings`` (radius, voxels) x ``largest_component``; ties keep
    the earlier candidate (maximum posterior, smaller threshold, no opening, no component).

    Args: ``fitted`` (from :func:`fit_intensity_baseline` on ``images``, ``labels``), its
    training subjects, and the candidates. Returns a copy of ``fitted`` with ``threshold``,
    ``opening`` and ``largest_component`` set.
    """
    from tfneuro.metrics.overlap import dice_score

    pairs = _pairs(images, labels, "training")
    bg, classes = fitted.background, fitted.classes
    rules = [None] + (sorted(float(t) for t in thresholds)
                      if len(classes) == 2 and bg in classes else [])
    fg = [int(k) for k in classes if k != bg]
    probs = [fitted.predict_proba(x) for x, _ in pairs]
    best, best_score = None, -1.0
    for t in rules:
        raw = [classes[np.argmax(p, axis=-1)].astype(np.int32) if t is None
               else _threshold_labels(p, classes, bg, t) for p in probs]
        for o in openings:
            for lcc in largest_component:
                score = np.mean([list(dice_score(y, _clean_foreground(r, int(o), bool(lcc), bg),
                                                 labels=fg).values())
                                 for r, (_, y) in zip(raw, pairs)])
                if score > best_score:
                    best, best_score = (t, int(o), bool(lcc)), score
    return dataclasses.replace(fitted, threshold=best[0], opening=best[1],
                               largest_component=best[2])


def foreground_mask(image) -> np.ndarray:
    """Head foreground of an image: Otsu threshold of channel 0 (scikit-image), largest
    26-connected component, holes filled. Boolean ``[X, Y, Z]``."""
    from skimage.filters import threshold_otsu

    from tfneuro.inference.postprocess import largest_component_per_label

    x = _as_image(image, "image")[..., 0]
    if x.max() == x.min():
        raise InputError("image", "is constant; no foreground to align by")
    fg = x > threshold_otsu(x)
    fg = largest_component_per_label(fg.astype(np.uint8)) > 0
    return ndimage.binary_fill_holes(fg)


def _bbox(mask, name):
    idx = np.argwhere(mask)
    if idx.size == 0:
        raise InputError(name, "is empty; nothing to align by")
    return idx.min(0).astype(np.float64), idx.max(0).astype(np.float64)


def _sqrtm(cov):
    w, v = np.linalg.eigh(cov)
    return (v * np.sqrt(np.maximum(w, 1e-12))) @ v.T


def align_to(source_mask, target_mask, method: str = "bbox"):
    """Affine ``(matrix, offset)`` taking target voxel indices to source voxel indices, so that
    ``scipy.ndimage.affine_transform(source, matrix, offset, output_shape=target.shape)``
    brings ``source`` onto the target grid.

    * ``"bbox"``: per axis, the target's bounding box (voxel edges, i.e. ``lo - 0.5`` to
      ``hi + 0.5``) maps onto the source's: scale + translation.
    * ``"moments"``: the target's centroid and covariance of foreground coordinates map onto
      the source's: ``x_s = mu_s + S_s^(1/2) S_t^(-1/2) (x_t - mu_t)`` (a full affine).
    """
    if method == "bbox":
        lo_s, hi_s = _bbox(source_mask, "source mask")
        lo_t, hi_t = _bbox(target_mask, "target mask")
        scale = (hi_s - lo_s + 1.0) / (hi_t - lo_t + 1.0)
        return np.diag(scale), (lo_s - 0.5) - scale * (lo_t - 0.5)
    if method == "moments":
        stats = []
        for m, name in ((source_mask, "source mask"), (target_mask, "target mask")):
            idx = np.argwhere(m).astype(np.float64)
            if idx.shape[0] < 4:
                raise InputError(name, "has fewer than 4 voxels; cannot compute moments")
            stats.append((idx.mean(0), np.cov(idx.T, bias=True)))
        (mu_s, cov_s), (mu_t, cov_t) = stats
        mat = _sqrtm(cov_s) @ np.linalg.inv(_sqrtm(cov_t))
        return mat, mu_s - mat @ mu_t
    raise InputError("method", f"{method!r}: use 'bbox' or 'moments'")


def atlas_baseline(train_images, train_labels, test_image, *, method: str = "bbox",
                   train_masks=None, test_mask=None) -> np.ndarray:
    """Multi-atlas majority vote: align every training label map to the test subject, vote.

    Args:
        train_images: training images (``[X, Y, Z]`` or ``[X, Y, Z, C]``); only their
            foreground is used (:func:`foreground_mask`), unless ``train_masks`` are given.
        train_labels: their label maps.
        test_image: the test image (its intensities are used for its foreground only).
        method: ``"bbox"`` or ``"moments"`` (see :func:`align_to`).
        train_masks: optional foreground masks of the training subjects (e.g. brain masks).
        test_mask: optional foreground mask of the test subject.

    Returns:
        int32 label map on the test image's grid: per voxel the label most training maps put
        there (nearest-neighbour resampling; ties go to the smaller label; outside every
        aligned map counts as a vote for 0).
    """
    if method not in ("bbox", "moments"):
        raise InputError("method", f"{method!r}: use 'bbox' or 'moments'")
    pairs = _pairs(train_images, train_labels, "training")
    test = _as_image(test_image, "test image")
    if train_masks is not None and len(list(train_masks)) != len(pairs):
        raise InputError("train_masks", f"{len(list(train_masks))} masks for {len(pairs)} images")
    masks = (list(train_masks) if train_masks is not None
             else [foreground_mask(x) for x, _ in pairs])
    for i, (m, (x, _)) in enumerate(zip(masks, pairs)):
        if np.shape(m) != x.shape[:3]:
            raise InputError(f"train_masks {i}", f"shape {np.shape(m)} differs from its "
                                                 f"image's {x.shape[:3]}")
    t_mask = foreground_mask(test) if test_mask is None else np.asarray(test_mask, bool)
    if t_mask.shape != test.shape[:3]:
        raise InputError("test_mask", f"shape {t_mask.shape} differs from the test image's "
                                      f"{test.shape[:3]}")
    num = int(max(lab.max() for _, lab in pairs)) + 1
    votes = np.zeros((num, t_mask.size), np.int32)
    where = np.arange(t_mask.size)
    for (x, lab), m in zip(pairs, masks):
        mat, off = align_to(np.asarray(m, bool), t_mask, method)
        warped = ndimage.affine_transform(lab, mat, off, output_shape=test.shape[:3], order=0,
                                          mode="constant", cval=0)
        np.add.at(votes, (warped.ravel(), where), 1)
    return np.argmax(votes, axis=0).reshape(test.shape[:3]).astype(np.int32)
