"""A synthetic infant cohort built from the ICBM152 2009 template that nilearn ships offline.

This is tfneuro's embedded default data (quick start, tests, demos). For each subject we:

1. take the ICBM152 2009 grey-matter, white-matter and brain-mask probability maps
   (``nilearn.datasets.load_mni152_gm_template`` / ``_wm_template`` / ``load_mni152_brain_mask``;
   CSF = clip(brain mask - GM - WM, 0, 1));
2. shrink them by an age-dependent linear brain scale (:func:`brain_scale`), apply a small
   random rotation / anisotropic scaling and a random smooth elastic displacement field;
3. draw per-subject, per-modality tissue intensities from age-dependent contrast profiles
   (:data:`CONTRAST_PROFILES`): on T1w the GM/WM contrast is inverted before ~6 months,
   near iso-intense at ~6–9 months and adult-like from ~12 months; T2w shows the converse;
4. add a neurocranium (skull) shell around the brain whose thickness grows with age
   (:func:`skull_thickness_mm`), and an optional scalp layer;
5. mix intensities by tissue probability (partial volume), blur (partial-volume / PSF blur),
   multiply by a smooth bias field and add Gaussian noise (magnitude image, so >= 0);
6. crop to the head's bounding box and save RAS NIfTI at the chosen spacing.

Outputs per subject: T1w, T2w (float32), tissue labels (scheme ``tissue4``: 0 background,
1 CSF, 2 GM, 3 WM), brain mask and skull shell (uint8). Everything is deterministic for a
cohort seed; each subject's seed is derived from (cohort seed, subject index) with
``numpy.random.SeedSequence``.

Departures: this is a phantom, not a model of infant anatomy. Folding, myelination gradients
and head shape do not change with age beyond the global scale and the contrast profile.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import pandas as pd
from scipy import ndimage

from tfneuro.data.augment import smooth_random_field
from tfneuro.errors import InputError
from tfneuro.utils.progress import progress

#: Ages (months) and linear brain scale relative to the adult ICBM152 template.
#: Anchors: ~0.68 at birth, ~0.9 at 24 months, ~0.95 at 60 months (the issue's figures).
#: They approximate the cube root of reported total-brain-volume fractions of the adult
#: volume (Knickmeyer et al., J Neurosci 2008: ~36 % at 2–4 weeks, ~72 % at 1 year,
#: ~83 % at 2 years; ~90 % by 5–6 years, Lenroot & Giedd 2006), taken a little lower in the
#: first year to keep the issue's 0.9 at 24 months. Piecewise linear between anchors.
BRAIN_SCALE_AGES = (0.0, 3.0, 6.0, 12.0, 24.0, 60.0)
BRAIN_SCALE_VALUES = (0.68, 0.75, 0.80, 0.86, 0.90, 0.95)

#: Contrast profiles: relative mean intensity per modality, tissue and age (months),
#: piecewise linear between the ages in ``CONTRAST_AGES``. The WM curve crosses GM (0.50)
#: at 7.5 months: T1w WM < GM before ~6 months (unmyelinated WM has long T1), |WM-GM| <= 0.04
#: in the iso-intense phase 6–9 months, WM > GM from 12 months; T2w the converse.
#: (Qualitative infant contrast phases as described for iSeg-2017 / Wang et al. 2019.)
CONTRAST_AGES = (0.0, 3.0, 6.0, 7.5, 9.0, 12.0, 24.0, 60.0)
CONTRAST_PROFILES = {
    "t1": {
        "csf": (0.12,) * 8,
        "gm": (0.50,) * 8,
        "wm": (0.28, 0.33, 0.46, 0.50, 0.54, 0.66, 0.72, 0.75),
        "skull": (0.08,) * 8,
        "scalp": (0.65,) * 8,
    },
    "t2": {
        "csf": (0.95,) * 8,
        "gm": (0.50,) * 8,
        "wm": (0.72, 0.66, 0.54, 0.50, 0.46, 0.36, 0.33, 0.31),
        "skull": (0.06,) * 8,
        "scalp": (0.45,) * 8,
    },
}

MAX_AGE_MONTHS = 60.0
LABEL_SCHEME = "tissue4"


def brain_scale(age_months) -> np.ndarray:
    """Linear brain size relative to the adult template at ``age_months`` (see module doc)."""
    return np.interp(age_months, BRAIN_SCALE_AGES, BRAIN_SCALE_VALUES)


def skull_thickness_mm(age_months) -> np.ndarray:
    """Neurocranium (vault) thickness in mm at ``age_months``.

    ``1.2 + 3.3 * (1 - exp(-age / 30))``: ~1.2 mm at birth, ~2.7 mm at 24 months,
    ~4.1 mm at 60 months. An approximation of paediatric CT vault-thickness reports
    (roughly 1–2 mm at birth rising to 4–5 mm by school age), not a fit to data.
    On the voxel grid the shell is at least one voxel thick.
    """
    age = np.asarray(age_months, dtype=float)
    return 1.2 + 3.3 * (1.0 - np.exp(-age / 30.0))


def tissue_means(modality: str, age_months: float) -> dict:
    """Mean relative intensity of each tissue for ``modality`` ("t1"/"t2") at an age."""
    prof = CONTRAST_PROFILES[modality]
    return {k: float(np.interp(age_months, CONTRAST_AGES, v)) for k, v in prof.items()}


@functools.lru_cache(maxsize=2)
def _template(resolution: int):
    """ICBM152 2009 probability maps (gm, wm, mask) as float32 arrays and their affine.

    The 1 mm maps are read from nilearn's package data; the 2 mm version is their 2x2x2
    block average (nilearn's own ``resolution=2`` resamples and is ~5x slower).
    """
    from nilearn import datasets

    gm_img = datasets.load_mni152_gm_template(resolution=1)
    affine = gm_img.affine.copy()
    gm = gm_img.get_fdata(dtype=np.float32)
    wm = datasets.load_mni152_wm_template(resolution=1).get_fdata(dtype=np.float32)
    mask = datasets.load_mni152_brain_mask(resolution=1).get_fdata(dtype=np.float32)
    maps = [gm * mask, wm * mask, mask]
    if resolution == 2:
        def block(a):
            a = np.pad(a, [(0, s % 2) for s in a.shape])
            x, y, z = (s // 2 for s in a.shape)
            return a.reshape(x, 2, y, 2, z, 2).mean(axis=(1, 3, 5))
        maps = [block(a) for a in maps]
        affine = affine @ np.array([[2, 0, 0, 0.5], [0, 2, 0, 0.5], [0, 0, 2, 0.5],
                                    [0, 0, 0, 1.0]])
    return (*maps, affine)


def _smooth_field(rng, shape, control_mm, spacing, amplitude):
    """Smooth random field with one control point every ``control_mm`` mm."""
    return smooth_random_field(rng, shape, control_mm / spacing, amplitude)


def _rotation(rng, max_deg):
    angles = np.deg2rad(rng.uniform(-max_deg, max_deg, size=3))
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def synth_subject(age_months: float, spacing: float = 2.0, seed=0, *,
                  elastic_mm: float = 2.0, rotation_deg: float = 6.0,
                  scale_jitter: float = 0.04, bias_amplitude: float = 0.12,
                  noise_std: tuple = (0.01, 0.03), blur_voxels: float = 0.5,
                  scalp: bool = True) -> dict:
    """Generate one synthetic infant head.

    Args:
        age_months: age at scan, 0–60 months.
        spacing: isotropic voxel size of the output in mm.
        seed: int or ``numpy.random.SeedSequence`` for this subject.
        elastic_mm: standard deviation of the coarse elastic displacement (template mm).
        rotation_deg: maximum absolute rotation about each axis.
        scale_jitter: standard deviation of the per-axis multiplicative scale jitter.
        bias_amplitude: standard deviation of the log bias field.
        noise_std: range (low, high) of the Gaussian noise standard deviation, relative to
            the intensity scale 0–1 (drawn per subject and modality).
        blur_voxels: Gaussian partial-volume blur sigma in output voxels.
        scalp: add a scalp layer (non-zero head intensity outside the skull).

    Returns:
        dict with ``t1``, ``t2`` (float32, 0–~1000), ``label`` (uint8, tissue4), ``mask``,
        ``skull`` (uint8), ``affine`` (4x4 RAS, voxel -> mm), ``age_months``, ``spacing``.
    """
    if not 0.0 <= float(age_months) <= MAX_AGE_MONTHS:
        raise InputError("age_months", f"{age_months} is outside 0–{MAX_AGE_MONTHS:g} months")
    if not float(spacing) > 0:
        raise InputError("spacing", f"{spacing} must be > 0 mm")
    rng = np.random.default_rng(seed)
    sp = float(spacing)
    resolution = 2 if sp >= 2.0 else 1
    gm_t, wm_t, mask_t, aff_t = _template(resolution)

    # Brain bounding box and centre in template mm.
    idx = np.argwhere(mask_t > 0.5)
    lo_v, hi_v = idx.min(0), idx.max(0)
    lo_mm = aff_t[:3, :3] @ lo_v + aff_t[:3, 3]
    hi_mm = aff_t[:3, :3] @ hi_v + aff_t[:3, 3]
    centre = (lo_mm + hi_mm) / 2.0

    s = float(brain_scale(age_months))
    t_mm = float(skull_thickness_mm(age_months))
    skull_outer = max(t_mm + 0.5 * sp, 1.01 * sp)
    scalp_mm = (3.0 + 2.0 * age_months / MAX_AGE_MONTHS) if scalp else 0.0
    head_margin = skull_outer + scalp_mm + 2 * sp
    # Generous grid in subject mm around the (scaled) brain; cropped to the head below.
    half = (hi_mm - lo_mm) / 2.0 * s * 1.12 + head_margin + elastic_mm * 3
    shape = tuple(int(np.ceil(2 * h / sp)) + 1 for h in half)
    origin = centre - sp * (np.array(shape) - 1) / 2.0

    # Subject mm -> template mm: x = centre + A^-1 (y - centre) / s + u(y).
    rot = _rotation(rng, rotation_deg)
    aniso = np.exp(rng.normal(0.0, scale_jitter, size=3))
    a_inv = np.linalg.inv(rot @ np.diag(aniso * s))
    vox_t = np.linalg.inv(aff_t)
    m = vox_t[:3, :3] @ a_inv * sp          # output voxel -> template voxel (linear part)
    off = vox_t[:3, :3] @ (centre + a_inv @ (origin - centre)) + vox_t[:3, 3]
    grid = np.indices(shape, dtype=np.float32).reshape(3, -1)
    coords = (m.astype(np.float32) @ grid) + off[:, None].astype(np.float32)
    for d in range(3):
        disp_mm = _smooth_field(rng, shape, 24.0, sp, elastic_mm).reshape(-1)
        coords += (vox_t[:3, d, None] * disp_mm[None, :]).astype(np.float32)

    def warp(vol):
        return ndimage.map_coordinates(vol, coords, order=1, mode="constant",
                                       cval=0.0).reshape(shape)

    gm, wm, bmask = warp(gm_t), warp(wm_t), warp(mask_t)
    csf = np.clip(bmask - gm - wm, 0.0, 1.0)
    brain = bmask >= 0.5
    label = np.zeros(shape, np.uint8)
    label[brain] = (np.argmax(np.stack([csf[brain], gm[brain], wm[brain]]), axis=0) + 1)

    # Skull shell and scalp from the distance (mm) to the brain.
    dist = ndimage.distance_transform_edt(~brain, sampling=sp)
    skull = (dist > 0) & (dist <= skull_outer)
    scalp_m = (dist > skull_outer) & (dist <= skull_outer + scalp_mm)
    head = dist <= skull_outer + scalp_mm

    images = {}
    for mod in ("t1", "t2"):
        means = tissue_means(mod, age_months)
        jit = {k: v * float(np.exp(rng.normal(0.0, 0.04))) for k, v in means.items()}
        img = (csf * jit["csf"] + gm * jit["gm"] + wm * jit["wm"]) * brain
        img = img + skull * jit["skull"] + scalp_m * jit["scalp"]
        img = ndimage.gaussian_filter(img.astype(np.float32), blur_voxels)
        bias = np.exp(_smooth_field(rng, shape, 60.0, sp, bias_amplitude))
        img = img * bias
        img = np.abs(img + rng.normal(0.0, rng.uniform(*noise_std), size=shape))
        images[mod] = (img * 1000.0).astype(np.float32)

    # Crop to the head bounding box (+1 voxel).
    hidx = np.argwhere(head)
    lo = np.maximum(hidx.min(0) - 1, 0)
    hi = np.minimum(hidx.max(0) + 2, shape)
    crop = tuple(slice(a, b) for a, b in zip(lo, hi))
    affine = np.eye(4)
    affine[:3, :3] = np.eye(3) * sp
    affine[:3, 3] = origin + sp * lo
    return {
        "t1": images["t1"][crop], "t2": images["t2"][crop], "label": label[crop],
        "mask": brain[crop].astype(np.uint8), "skull": skull[crop].astype(np.uint8),
        "affine": affine, "age_months": float(age_months), "spacing": sp,
    }


def _save(data, affine, path):
    """Write a RAS NIfTI through tfneuro.io.save_volume (atomic)."""
    from tfneuro.io import save_volume

    save_volume(data, path, affine=affine)


def default_ages(n_subjects: int) -> list[float]:
    """Ages spread evenly over 1–60 months (rounded to 0.1 month)."""
    if n_subjects == 1:
        return [12.0]
    return [round(float(a), 1) for a in np.linspace(1.0, MAX_AGE_MONTHS, n_subjects)]


def make_cohort(out_dir, n_subjects: int, ages=None, spacing: float = 2.0, seed: int = 0, *,
                prefix: str = "synth", csv_name: str = "cohort.csv", show_progress=True,
                **subject_kwargs) -> pd.DataFrame:
    """Generate and save a synthetic cohort; returns its table (also written as CSV).

    Args:
        out_dir: output directory (created). Files: ``<subject>_T1w.nii.gz``, ``_T2w``,
            ``_dseg`` (tissue4 labels), ``_brainmask``, ``_skull``; and ``cohort.csv``.
        n_subjects: number of subjects (>= 1).
        ages: ages in months (0–60), one per subject, or a single age for all; ``None``
            spreads ages evenly over 1–60 months (:func:`default_ages`).
        spacing: isotropic voxel size in mm.
        seed: cohort seed; subject ``i`` uses ``SeedSequence([seed, i])``, and the split
            assignment (:func:`tfneuro.data.cohort.assign_splits`) ``SeedSequence([seed, n])``.
        prefix: subject id prefix (``synth-000`` ...).
        csv_name: name of the cohort CSV inside ``out_dir``.
        show_progress: show a progress bar (also silenced by TFNEURO_PROGRESS=0).
        **subject_kwargs: passed to :func:`synth_subject`.

    Returns:
        DataFrame with columns subject, t1, t2, label, age_months, split, mask, skull, seed
        (paths relative to ``out_dir``, as in the CSV).
    """
    if int(n_subjects) < 1:
        raise InputError("--subjects", f"{n_subjects}: need at least one subject")
    n = int(n_subjects)
    if ages is None:
        ages = default_ages(n)
    ages = [float(a) for a in np.atleast_1d(ages)]
    if len(ages) == 1 and n > 1:
        ages = ages * n
    if len(ages) != n:
        raise InputError("--ages", f"{len(ages)} ages given for {n} subjects "
                         "(give one age, or one per subject)")
    bad = [a for a in ages if not 0.0 <= a <= MAX_AGE_MONTHS]
    if bad:
        raise InputError("--ages", f"{bad} outside 0–{MAX_AGE_MONTHS:g} months")
    if not float(spacing) > 0:
        raise InputError("--spacing", f"{spacing} must be > 0 mm")
    from tfneuro.data.cohort import assign_splits, write_cohort

    os.makedirs(out_dir, exist_ok=True)
    rows = []
    it = range(n)
    if show_progress:
        it = progress(it, desc="synthetic cohort", total=n, unit="subject")
    for i in it:
        sid = f"{prefix}-{i:03d}"
        ss = np.random.SeedSequence([int(seed), i])
        subj = synth_subject(ages[i], spacing, ss, **subject_kwargs)
        files = {}
        for key, suffix in (("t1", "T1w"), ("t2", "T2w"), ("label", "dseg"),
                            ("mask", "brainmask"), ("skull", "skull")):
            name = f"{sid}_{suffix}.nii.gz"
            _save(subj[key], subj["affine"], os.path.join(out_dir, name))
            files[key] = name
        rows.append({"subject": sid, **{k: files[k] for k in ("t1", "t2", "label")},
                     "age_months": ages[i], "split": "train", "mask": files["mask"],
                     "skull": files["skull"], "seed": f"{int(seed)}:{i}"})
    df = assign_splits(pd.DataFrame(rows), seed=np.random.SeedSequence([int(seed), n]))
    write_cohort(df, os.path.join(out_dir, csv_name))
    return df


def save_montage(df: pd.DataFrame, base_dir, path) -> str:
    """PNG montage: one row per subject with mid-axial T1w, T2w, labels and skull.

    Args:
        df: the cohort table returned by :func:`make_cohort` (paths relative to ``base_dir``).
        base_dir: the cohort directory.
        path: output PNG (written atomically).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import nibabel as nib

    from tfneuro.utils.atomic import atomic_path

    cols = ("t1", "t2", "label", "skull")
    fig, axes = plt.subplots(len(df), 4, figsize=(8, 2.2 * len(df)), squeeze=False)
    for r, (_, row) in enumerate(df.iterrows()):
        for c, key in enumerate(cols):
            p = row[key] if os.path.isabs(row[key]) else os.path.join(base_dir, row[key])
            vol = np.asanyarray(nib.load(p).dataobj)
            ax = axes[r, c]
            ax.imshow(np.rot90(vol[:, :, vol.shape[2] // 2]), cmap="gray" if c < 2 else "viridis")
            ax.set_axis_off()
            ax.set_title(f"{row['subject']} {row['age_months']:g} mo {key}", fontsize=6)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
    return os.fspath(path)
