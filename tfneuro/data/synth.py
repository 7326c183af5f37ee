"""A synthetic infant cohort built from the ICBM152 2009 template that nilearn ships offline.

This is tfneuro's embedded default data (quick start, tests, demos). Generator version
:data:`GENERATOR` (``"tfneuro-synth/2"``, written to the cohort table's ``generator``
column; cohorts without that column come from version 1, which had one smooth warp and
spatially uniform contrast). Decisions, sources and measured figures:
``docs/synthetic_cohort.md``.

For each subject we:

1. take the ICBM152 2009 grey-matter, white-matter and brain-mask probability maps
   (``nilearn.datasets.load_mni152_gm_template`` / ``_wm_template`` / ``load_mni152_brain_mask``;
   CSF = clip(brain mask - GM - WM, 0, 1));
2. resize the lateral ventricles (found once in the template) by a per-subject volume
   factor around an age trend (:func:`ventricle_scale`), in template space;
3. map the template into the subject's space: an age-dependent linear brain scale
   (:func:`brain_scale`), a small random rotation / anisotropic scaling, a large-scale
   (64 mm) and a fine (24 mm) random smooth displacement, and a mild left-right asymmetry
   (one hemisphere a little larger, and a frontal-occipital "petalia" shear);
4. vary cortical thickness (a per-subject, regionally smooth power ``wm ** gamma`` of the WM
   probability, the removed WM becoming GM) and widen sulcal CSF, and add an extra-axial
   CSF layer between brain and skull, both largest at 4-7 months (:func:`extra_axial_mm`);
5. draw intensities from age-dependent contrast profiles (:data:`CONTRAST_PROFILES`, brain
   averages, with an isointense phase at 6-9 months) and a spatial myelination gradient:
   a white-matter position is ``lead(x)`` months ahead of the median WM position (up to
   :data:`MYELIN_LEAD_MONTHS` centrally / posteriorly / inferiorly, as much behind
   peripherally / anteriorly / superiorly; :func:`myelin_lead`) and deviates from the brain
   average as the local maturation curve (:data:`LOCAL_WM`) at ``age + lead(x)`` deviates
   from its WM mean, so the brain average stays on the profile;
6. add a neurocranium (skull) shell whose thickness grows with age
   (:func:`skull_thickness_mm`) and an optional scalp layer;
7. mix intensities by tissue probability (partial volume), blur, multiply by a smooth bias
   field and add Gaussian noise (magnitude image, so >= 0);
8. crop to the head's bounding box and save RAS NIfTI at the chosen spacing.

Outputs per subject: T1w, T2w (float32), tissue labels (scheme ``tissue4``: 0 background,
1 CSF, 2 GM, 3 WM), brain mask (brain + extra-axial CSF, i.e. every labelled voxel) and
skull shell (uint8); on request a parcellation (scheme ``tissue_sectors``: every tissue split
into :data:`tfneuro.io.labels.N_SECTORS` sectors by the template coordinates each voxel
came from, so sectors move with the anatomy). Everything is deterministic for a cohort
seed; each subject's seed is derived from (cohort seed, subject index) with
``numpy.random.SeedSequence``.

Departures: this is a phantom built from one adult template, not a model of infant
anatomy. Folding pattern, deep grey matter, cerebellum and head shape change only through
the deformations above; grey matter has no myelination gradient of its own.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import pandas as pd
from scipy import ndimage

from tfneuro.data.augment import smooth_random_field
from tfneuro.errors import InputError
from tfneuro.io.labels import N_SECTORS, SECTOR_GRID
from tfneuro.utils.progress import progress

#: Generator version, written to the cohort table's ``generator`` column.
GENERATOR = "tfneuro-synth/2"

#: Ages (months) and linear brain scale relative to the adult ICBM152 template.
#: Anchors: ~0.68 at birth, ~0.9 at 24 months, ~0.95 at 60 months (the issue's figures).
#: They approximate the cube root of reported total-brain-volume fractions of the adult
#: volume (Knickmeyer et al., J Neurosci 2008: ~36 % at 2–4 weeks, ~72 % at 1 year,
#: ~83 % at 2 years; ~90 % by 5–6 years, Lenroot & Giedd 2006), taken a little lower in the
#: first year to keep the issue's 0.9 at 24 months. Piecewise linear between anchors.
BRAIN_SCALE_AGES = (0.0, 3.0, 6.0, 12.0, 24.0, 60.0)
BRAIN_SCALE_VALUES = (0.68, 0.75, 0.80, 0.86, 0.90, 0.95)

#: Contrast profiles: brain-average relative intensity per modality, tissue and age (months),
#: piecewise linear between the ages in ``CONTRAST_AGES``. The WM curve crosses GM (0.50) at
#: 7.5 months in both modalities and stays within 0.005 of it from 6 to 9 months (below the
#: noise SD, 0.01-0.03): paper 001 (introduction): "similar GM/WM intensity values between
#: 6-9 months", paper 003 (introduction): "iso-intense stage (6 to 8 months postnatal)",
#: for both T1 and T2. Before 6 months T1w WM < GM (paper 001: "reversal of gray matter (GM)/
#: white matter (WM) voxel intensity values before 6 months"), from ~10 months WM > GM on
#: T1w and the converse on T2w ("reach adult values by 1 year of age").
CONTRAST_AGES = (0.0, 3.0, 5.0, 6.0, 7.5, 9.0, 10.0, 12.0, 24.0, 60.0)
CONTRAST_PROFILES = {
    "t1": {
        "csf": (0.12,) * 10,
        "gm": (0.50,) * 10,
        "wm": (0.28, 0.33, 0.43, 0.495, 0.50, 0.505, 0.56, 0.66, 0.72, 0.75),
        "skull": (0.08,) * 10,
        "scalp": (0.65,) * 10,
    },
    "t2": {
        "csf": (0.95,) * 10,
        "gm": (0.50,) * 10,
        "wm": (0.72, 0.66, 0.56, 0.505, 0.50, 0.495, 0.44, 0.36, 0.33, 0.31),
        "skull": (0.06,) * 10,
        "scalp": (0.45,) * 10,
    },
}

#: Largest myelination lead/lag (months) of a white-matter position relative to the median
#: WM position. Barkovich et al., Radiology 1988 (as tabulated by the radiology teaching pages
#: cited in docs/synthetic_cohort.md): T1w myelination appears in central occipital WM at
#: 3-5 months and in peripheral frontal WM at 7-11 months, on T2w at 9-14 and 14-18 months:
#: about +-3 months around the middle in both. Principles (same sources): central before
#: peripheral, posterior before anterior, caudal before cranial.
MYELIN_LEAD_MONTHS = 3.0
#: Weights of the central, posterior and inferior position in the lead (sum 1).
MYELIN_WEIGHTS = (0.5, 0.3, 0.2)
#: SD (months) of a subject's maturation offset (its WM contrast is that of a slightly older
#: or younger infant). Our choice; no published figure used.
MATURATION_SD_MONTHS = 0.5

#: Extra-axial (subarachnoid) CSF width in mm by age. Shape from a CT study of 153 normal
#: infants (Neurol Med Chir (Tokyo) 1981;21(2):155, abstract): the space "was not remarkable
#: in new-born infants", expanded "until the infant became four months of age", "was most
#: remarkable four to seven months after birth", then "disappeared between twelve and
#: eighteen months", "most notable in the bifrontal convexity space". The widths are ours.
EXTRA_AXIAL_AGES = (0.0, 4.0, 7.0, 18.0, 60.0)
EXTRA_AXIAL_MM = (1.5, 3.5, 3.5, 1.5, 1.5)
#: Sulcal CSF widening (tissue fraction removed where tissue is partial) at the same ages.
SULCAL_TAU = (0.05, 0.20, 0.20, 0.05, 0.05)

#: Lateral-ventricle volume relative to the (adult) template's ventricle/brain ratio, by
#: age: Knickmeyer et al. (J Neurosci 2008, abstract) report lateral ventricles +280 % and
#: total brain +101 % in the first year, so the ventricle/brain ratio grows 3.80/2.01 = 1.89x;
#: we put the template's ratio at 12 months and keep it after (their "small decrease in the
#: second" year is ignored).
VENTRICLE_AGES = (0.0, 12.0, 60.0)
VENTRICLE_SCALE = (1.0 / 1.89, 1.0, 1.0)

#: Local white-matter maturation curves (relative intensity by age) that set how a WM
#: position ahead of or behind the brain average differs from it: monotone, crossing GM
#: (0.50) at 7.5 months with no plateau (generator version 1's profiles). The brain average
#: itself follows ``CONTRAST_PROFILES`` (with the 6-9 month plateau): regions cross GM at
#: different ages, so the average stays isointense while regional contrast remains.
LOCAL_AGES = (0.0, 3.0, 6.0, 7.5, 9.0, 12.0, 24.0, 60.0)
LOCAL_WM = {"t1": (0.28, 0.33, 0.46, 0.50, 0.54, 0.66, 0.72, 0.75),
            "t2": (0.72, 0.66, 0.54, 0.50, 0.46, 0.36, 0.33, 0.31)}

MAX_AGE_MONTHS = 60.0
LABEL_SCHEME = "tissue4"
PARCELLATION_SCHEME = "tissue_sectors"


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


def extra_axial_mm(age_months) -> np.ndarray:
    """Mean extra-axial CSF width (mm) at ``age_months`` before per-subject and frontal
    variation (see :data:`EXTRA_AXIAL_MM`)."""
    return np.interp(age_months, EXTRA_AXIAL_AGES, EXTRA_AXIAL_MM)


def ventricle_scale(age_months) -> np.ndarray:
    """Mean lateral-ventricle volume factor relative to the template at ``age_months``."""
    return np.interp(age_months, VENTRICLE_AGES, VENTRICLE_SCALE)


def tissue_means(modality: str, age_months: float) -> dict:
    """Brain-average relative intensity of each tissue for ``modality`` ("t1"/"t2") at an age."""
    prof = CONTRAST_PROFILES[modality]
    return {k: float(np.interp(age_months, CONTRAST_AGES, v)) for k, v in prof.items()}


def _maturity(rel):
    """``w . (central, posterior, inferior)`` of normalised template positions ``rel``
    (``(x - centre) / half extent``, shape ``[3, N]``): central = 1 - 2 * radius (1 at the
    centre, -1 at the ellipsoidal surface), posterior = -y, inferior = -z."""
    r = np.sqrt(np.sum(rel * rel, axis=0))
    w = MYELIN_WEIGHTS
    return w[0] * (1.0 - 2.0 * np.clip(r, 0.0, 1.0)) - w[1] * rel[1] - w[2] * rel[2]


def myelin_lead(rel, centre: float, scale: float,
                lead_months: float = MYELIN_LEAD_MONTHS) -> np.ndarray:
    """Myelination lead (months) of normalised template positions ``rel`` (``[3, N]``):
    ``lead_months * clip((maturity - centre) / scale, -1, 1)``, where ``centre`` is the
    median maturity of the template's white matter and ``scale`` the 95th percentile of
    ``|maturity - centre|`` there: the median WM position has lead 0 and the 5 % most
    advanced / delayed WM is ``lead_months`` ahead / behind."""
    return lead_months * np.clip((_maturity(rel) - centre) / scale, -1.0, 1.0)


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


@functools.lru_cache(maxsize=2)
def _anatomy(resolution: int) -> dict:
    """Geometry derived once from the template: brain box, ventricles, sector edges.

    Ventricles: the connected CSF (argmax of CSF/GM/WM) region deeper than 4 mm in the brain
    that grows from the deep (> 8 mm) CSF component of > 2 mL, < 60 mm tall, centred within
    40 mm of MNI (0, -15, 15) -- the lateral ventricles (18.5 mL at 2 mm, 18.0 mL at 1 mm).
    Their signed distance (mm, < 0 inside) is kept in a box 12 mm around them.
    """
    gm, wm, mask, aff = _template(resolution)
    vs = float(aff[0, 0])
    if not np.allclose(aff[:3, :3], np.eye(3) * vs):
        raise ValueError("template affine is not diagonal isotropic RAS")
    brain = mask >= 0.5
    idx = np.argwhere(brain)
    lo_mm = aff[:3, :3] @ idx.min(0) + aff[:3, 3]
    hi_mm = aff[:3, :3] @ idx.max(0) + aff[:3, 3]
    centre, half = (lo_mm + hi_mm) / 2.0, (hi_mm - lo_mm) / 2.0

    csf = np.clip(mask - gm - wm, 0.0, 1.0)
    csf_label = brain & (csf > np.maximum(gm, wm))
    depth = ndimage.distance_transform_edt(brain, sampling=vs)
    comp, _ = ndimage.label(csf_label & (depth > 8.0))
    keep = []
    for i, sl in enumerate(ndimage.find_objects(comp)):
        part = comp[sl] == i + 1
        cen = aff[:3, :3] @ (np.argwhere(part).mean(0) + [s.start for s in sl]) + aff[:3, 3]
        if (part.sum() * vs ** 3 > 2000 and (sl[2].stop - sl[2].start) * vs < 60
                and np.linalg.norm(cen - [0.0, -15.0, 15.0]) < 40):
            keep.append(i + 1)
    vent = ndimage.binary_propagation(np.isin(comp, keep), mask=csf_label & (depth > 4.0))
    pad = int(np.ceil(12.0 / vs))
    vidx = np.argwhere(vent)
    box = tuple(slice(max(a - pad, 0), min(b + pad + 1, s))
                for a, b, s in zip(vidx.min(0), vidx.max(0), vent.shape))
    v = vent[box]
    sd = np.where(v, -(ndimage.distance_transform_edt(v, sampling=vs) - vs / 2),
                  ndimage.distance_transform_edt(~v, sampling=vs) - vs / 2).astype(np.float32)

    # sector edges: hemisphere at the midline, quantiles of brain voxels along y and z
    ys = aff[1, 1] * idx[:, 1] + aff[1, 3]
    zs = aff[2, 2] * idx[:, 2] + aff[2, 3]
    y_edges = np.quantile(ys, np.linspace(0, 1, SECTOR_GRID[1] + 1)[1:-1])
    z_edges = np.quantile(zs, np.linspace(0, 1, SECTOR_GRID[2] + 1)[1:-1])
    # centre and scale of the myelination lead over the template's white matter
    widx = np.argwhere(brain & (wm > 0.5))
    wmm = aff[:3, :3] @ widx.T + aff[:3, 3, None]
    maturity = _maturity((wmm - centre[:, None]) / half[:, None])
    lead_centre = float(np.median(maturity))
    lead_scale = float(np.quantile(np.abs(maturity - lead_centre), 0.95))
    return {"voxel": vs, "centre": centre, "half": half, "box": box, "vent_sd": sd,
            "vent_sorted": np.sort(sd.ravel()), "vent_voxels": int(v.sum()),
            "y_edges": y_edges, "z_edges": z_edges, "lead_centre": lead_centre,
            "lead_scale": lead_scale}


def _resize_ventricles(gm, wm, mask, anat, factor):
    """Copies of ``gm``/``wm`` with the ventricles scaled to ``factor`` x their volume.

    Voxels with signed distance below ``r`` become ventricle (partial volume over one voxel),
    where ``r`` is chosen so that ``factor * n0`` voxels lie below it; the template's own
    ventricle CSF outside the new surface becomes WM.
    """
    vs, box, sd, srt = anat["voxel"], anat["box"], anat["vent_sd"], anat["vent_sorted"]
    n = int(np.clip(round(factor * anat["vent_voxels"]), 1, srt.size - 1))
    r = min(float(srt[n - 1] + srt[n]) / 2.0, 10.0)
    v0 = np.clip(0.5 - sd / vs, 0.0, 1.0)
    v = np.clip(0.5 - (sd - r) / vs, 0.0, 1.0)
    gm, wm = gm.copy(), wm.copy()
    g, w, m = gm[box], wm[box], mask[box]
    w_base = w + np.clip(m - g - w, 0.0, 1.0) * v0
    gm[box] = g * (1.0 - v)
    wm[box] = w_base * (1.0 - v)
    return gm, wm


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


def sector_index(x_mm, y_mm, z_mm, anat) -> np.ndarray:
    """Sector 1..N_SECTORS of template positions (mm): ``1 + 12*hemi + 3*ap + si`` with
    ``hemi`` 0 left / 1 right of the template midline, ``ap`` 0 (posterior) .. 3 (anterior)
    and ``si`` 0 (inferior) .. 2 (superior), the y/z bins being quartiles/terciles of the
    template's brain voxels."""
    hemi = (x_mm >= anat["centre"][0]).astype(np.int32)
    ap = np.searchsorted(anat["y_edges"], y_mm).astype(np.int32)
    si = np.searchsorted(anat["z_edges"], z_mm).astype(np.int32)
    return 1 + hemi * (SECTOR_GRID[1] * SECTOR_GRID[2]) + ap * SECTOR_GRID[2] + si


def synth_subject(age_months: float, spacing: float = 2.0, seed=0, *,
                  elastic_mm: float = 2.0, deform_mm: float = 4.0, rotation_deg: float = 6.0,
                  scale_jitter: float = 0.04, asymmetry: float = 0.015,
                  petalia_mm: tuple = (1.5, 1.0), ventricle_sd: float = 0.3,
                  thickness_sd: float = 0.12, extra_axial_sd: float = 0.3,
                  myelin_lead_months: float = MYELIN_LEAD_MONTHS,
                  maturation_sd: float = MATURATION_SD_MONTHS,
                  bias_amplitude: float = 0.12, noise_std: tuple = (0.01, 0.03),
                  blur_voxels: float = 0.5, scalp: bool = True,
                  parcellation: bool = False, fractions: bool = False) -> dict:
    """Generate one synthetic infant head (see the module docstring for the model).

    Args:
        age_months: age at scan, 0–60 months.
        spacing: isotropic voxel size of the output in mm.
        seed: int or ``numpy.random.SeedSequence`` for this subject.
        elastic_mm: SD of the fine (24 mm control spacing) displacement, template mm.
        deform_mm: SD of the large-scale (64 mm control spacing) displacement, template mm.
        rotation_deg: maximum absolute rotation about each axis.
        scale_jitter: standard deviation of the per-axis multiplicative scale jitter.
        asymmetry: SD of the relative size difference between the hemispheres.
        petalia_mm: (mean, SD) of the petalia shear: the right hemisphere shifted forward
            and the left backward by this much (mm, template space; positive = the usual
            right-frontal / left-occipital protrusion).
        ventricle_sd: SD of the log ventricle-volume factor around :func:`ventricle_scale`.
        thickness_sd: SD of the log cortical-thickness exponent (``wm ** gamma``; ``gamma > 1``
            thickens the cortex), plus a regional field of the same SD.
        extra_axial_sd: SD of the log factor on the extra-axial width and sulcal widening.
        myelin_lead_months: largest myelination lead/lag (0: spatially uniform WM contrast).
        maturation_sd: SD (months) of the subject's maturation offset.
        bias_amplitude: standard deviation of the log bias field.
        noise_std: range (low, high) of the Gaussian noise standard deviation, relative to
            the intensity scale 0–1 (drawn per subject and modality).
        blur_voxels: Gaussian partial-volume blur sigma in output voxels.
        scalp: add a scalp layer (non-zero head intensity outside the skull).
        parcellation: also return ``parc`` (scheme ``tissue_sectors``).
        fractions: also return ``fractions``, float32 ``[X, Y, Z, 3]``: the CSF, GM and WM
            fractions the intensities were mixed from (before blur, bias and noise).

    Returns:
        dict with ``t1``, ``t2`` (float32, 0–~1000), ``label`` (uint8, tissue4), ``mask``,
        ``skull`` (uint8), optionally ``parc`` (uint8) and ``fractions``, ``affine`` (4x4
        RAS, voxel -> mm), ``age_months``, ``spacing`` and ``params`` (the subject's drawn
        parameters).
    """
    if not 0.0 <= float(age_months) <= MAX_AGE_MONTHS:
        raise InputError("age_months", f"{age_months} is outside 0–{MAX_AGE_MONTHS:g} months")
    if not float(spacing) > 0:
        raise InputError("spacing", f"{spacing} must be > 0 mm")
    age = float(age_months)
    rng = np.random.default_rng(seed)
    sp = float(spacing)
    resolution = 2 if sp >= 2.0 else 1
    gm_t, wm_t, mask_t, aff_t = _template(resolution)
    anat = _anatomy(resolution)
    centre, half_t = anat["centre"], anat["half"]

    # per-subject anatomy and contrast parameters (all drawn up front, in a fixed order)
    params = {
        "ventricle_factor": float(ventricle_scale(age) * np.exp(rng.normal(0, ventricle_sd))),
        "thickness_gamma": float(np.exp(rng.normal(0.0, thickness_sd))),
        "extra_axial_factor": float(np.exp(rng.normal(0.0, extra_axial_sd))),
        "hemisphere_ratio": float(np.exp(rng.normal(0.0, asymmetry))),
        "petalia_mm": float(rng.normal(*petalia_mm)),
        "maturation_offset": float(rng.normal(0.0, maturation_sd)),
    }
    ea_mm = float(extra_axial_mm(age)) * params["extra_axial_factor"]
    tau = float(np.clip(np.interp(age, EXTRA_AXIAL_AGES, SULCAL_TAU)
                        * params["extra_axial_factor"], 0.0, 0.4))

    gm_t, wm_t = _resize_ventricles(gm_t, wm_t, mask_t, anat, params["ventricle_factor"])

    s = float(brain_scale(age))
    t_mm = float(skull_thickness_mm(age))
    skull_outer = max(t_mm + 0.5 * sp, 1.01 * sp)
    scalp_mm = (3.0 + 2.0 * age / MAX_AGE_MONTHS) if scalp else 0.0
    ea_max = 1.5 * ea_mm                    # frontal widening, see below
    head_margin = ea_max + skull_outer + scalp_mm + 2 * sp
    # Grid in subject mm around the (scaled) brain; cropped to the head below.
    deform_margin = 2.5 * np.hypot(elastic_mm, deform_mm) * s
    half = half_t * s * 1.1 + head_margin + deform_margin
    shape = tuple(int(np.ceil(2 * h / sp)) + 1 for h in half)
    origin = centre - sp * (np.array(shape) - 1) / 2.0

    # Subject mm -> template mm: x = centre + A^-1 (y - centre) / s + u(y).
    rot = _rotation(rng, rotation_deg)
    aniso = np.exp(rng.normal(0.0, scale_jitter, size=3))
    a_inv = np.linalg.inv(rot @ np.diag(aniso * s))
    m = (a_inv * sp).astype(np.float32)             # output voxel -> template mm (linear)
    off = (centre + a_inv @ (origin - centre)).astype(np.float32)
    grid = np.indices(shape, dtype=np.float32).reshape(3, -1)
    xyz = m @ grid + off[:, None]                   # template mm of every output voxel
    del grid
    for d in range(3):
        u = _smooth_field(rng, shape, 24.0, sp, elastic_mm).reshape(-1)
        u += _smooth_field(rng, shape, 64.0, sp, deform_mm).reshape(-1)
        xyz[d] += u
    # asymmetry: sample the right hemisphere from nearer the midline (-> larger) when the
    # ratio is > 1, and shear it forward (petalia), the left backward.
    dx = xyz[0] - np.float32(centre[0])
    xyz[1] -= np.float32(params["petalia_mm"]) * np.clip(dx / np.float32(5.0), -1.0, 1.0)
    xyz[0] += np.where(dx > 0, dx * np.float32(1.0 / params["hemisphere_ratio"] - 1.0), 0.0)
    del dx

    vox = (xyz - aff_t[:3, 3, None].astype(np.float32)) / np.float32(anat["voxel"])
    inside = np.all((vox > -1.0) & (vox < np.array(gm_t.shape, np.float32)[:, None]), axis=0)
    pts = vox[:, inside]

    def warp(vol):
        out = np.zeros(inside.shape, np.float32)
        out[inside] = ndimage.map_coordinates(vol, pts, order=1, mode="constant", cval=0.0)
        return out.reshape(shape)

    gm, wm, bmask = warp(gm_t), warp(wm_t), warp(mask_t)
    del pts, vox

    # cortical thickness: wm ** gamma(x), removed WM -> GM
    # (computed where WM is partial; 0 and 1 are fixed points of the power)
    log_g = np.log(params["thickness_gamma"]) + _smooth_field(rng, shape, 60.0, sp, thickness_sd)
    part = (wm > 0.0) & (wm < 1.0)
    w_part = wm[part]
    w_new = np.power(w_part, np.exp(log_g[part]))
    gm[part] += w_part - w_new
    wm[part] = w_new
    # sulcal CSF: remove tau of the tissue fraction where tissue is partial
    tissue = gm + wm
    part = (tissue > 0.0) & (tissue < 1.0)
    t_part = tissue[part]
    keep = np.clip((t_part - tau) / (1.0 - tau), 0.0, 1.0) / t_part
    gm[part] *= keep
    wm[part] *= keep
    del tissue, part, log_g
    csf = np.clip(bmask - gm - wm, 0.0, 1.0)
    brain = bmask >= 0.5
    label = np.zeros(shape, np.uint8)
    label[brain] = (np.argmax(np.stack([csf[brain], gm[brain], wm[brain]]), axis=0) + 1)

    # extra-axial CSF, skull shell and scalp from the distance (mm) to the brain
    dist = ndimage.distance_transform_edt(~brain, sampling=sp)
    # frontal widening: up to 1.5x at the front of the template brain
    frontal = np.clip((xyz[1] - np.float32(centre[1])) / np.float32(half_t[1]), 0.0, 1.0)
    ea_width = ea_mm * (1.0 + 0.5 * frontal.reshape(shape))
    extra = (dist > 0) & (dist <= ea_width)
    inner = np.where(dist > 0, dist - ea_width, 0.0)   # distance beyond the CSF layer
    skull = (dist > 0) & ~extra & (inner <= skull_outer)
    scalp_m = (inner > skull_outer) & (inner <= skull_outer + scalp_mm)
    head = (inner <= skull_outer + scalp_mm)
    label[extra] = 1
    mask = brain | extra

    # myelination lead (months) of every WM voxel, from its template position
    wm_w = wm * brain
    wsel = np.flatnonzero(wm_w)
    wm_w = wm_w.ravel()[wsel]
    wsum = float(wm_w.sum())
    lead = myelin_lead((xyz[:, wsel] - centre[:, None]) / half_t[:, None], anat["lead_centre"],
                       anat["lead_scale"], myelin_lead_months)

    images = {}
    for mod in ("t1", "t2"):
        means = tissue_means(mod, age)
        gain = float(np.exp(rng.normal(0.0, 0.04)))
        jit = {k: means[k] * gain * float(np.exp(rng.normal(0.0, 0.04)))
               for k in ("csf", "skull", "scalp")}
        a_eff = age + params["maturation_offset"]
        # regional deviation from the local curve, around the brain-average profile
        local = np.interp(a_eff + lead, LOCAL_AGES, LOCAL_WM[mod])
        local -= float((local * wm_w).sum()) / wsum
        target = float(np.interp(a_eff, CONTRAST_AGES, CONTRAST_PROFILES[mod]["wm"]))
        wm_int = np.full(shape, target, np.float32)
        wm_int.ravel()[wsel] = target + local
        img = (csf * jit["csf"] + gm * (means["gm"] * gain) + wm * (wm_int * gain)) * brain
        img = img + extra * jit["csf"] + skull * jit["skull"] + scalp_m * jit["scalp"]
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
    out = {
        "t1": images["t1"][crop], "t2": images["t2"][crop], "label": label[crop],
        "mask": mask[crop].astype(np.uint8), "skull": skull[crop].astype(np.uint8),
        "affine": affine, "age_months": age, "spacing": sp, "params": params,
    }
    if parcellation:
        sec = sector_index(*(c.reshape(shape)[crop] for c in xyz), anat)
        lab = out["label"].astype(np.int32)
        out["parc"] = np.where(lab > 0, (lab - 1) * N_SECTORS + sec, 0).astype(np.uint8)
    if fractions:
        frac = np.stack([csf * brain + extra, gm * brain, wm * brain], axis=-1)
        out["fractions"] = frac[crop].astype(np.float32)
    return out


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
                parcellation: bool = False, **subject_kwargs) -> pd.DataFrame:
    """Generate and save a synthetic cohort; returns its table (also written as CSV).

    Args:
        out_dir: output directory (created). Files: ``<subject>_T1w.nii.gz``, ``_T2w``,
            ``_dseg`` (tissue4 labels), ``_brainmask``, ``_skull``, with ``parcellation``
            also ``_parc`` (scheme ``tissue_sectors``); and ``cohort.csv``.
        n_subjects: number of subjects (>= 1).
        ages: ages in months (0–60), one per subject, or a single age for all; ``None``
            spreads ages evenly over 1–60 months (:func:`default_ages`).
        spacing: isotropic voxel size in mm.
        seed: cohort seed; subject ``i`` uses ``SeedSequence([seed, i])``, and the split
            assignment (:func:`tfneuro.data.cohort.assign_splits`) ``SeedSequence([seed, n])``.
        prefix: subject id prefix (``synth-000`` ...).
        csv_name: name of the cohort CSV inside ``out_dir``.
        show_progress: show a progress bar (also silenced by TFNEURO_PROGRESS=0).
        parcellation: also write the sector parcellation (column ``parcellation``).
        **subject_kwargs: passed to :func:`synth_subject`.

    Returns:
        DataFrame with columns subject, t1, t2, label, age_months, split, mask, skull, seed,
        generator (:data:`GENERATOR`) [, parcellation] (paths relative to ``out_dir``, as in
        the CSV).
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
    outputs = [("t1", "T1w"), ("t2", "T2w"), ("label", "dseg"), ("mask", "brainmask"),
               ("skull", "skull")] + ([("parc", "parc")] if parcellation else [])
    rows = []
    it = range(n)
    if show_progress:
        it = progress(it, desc="synthetic cohort", total=n, unit="subject")
    for i in it:
        sid = f"{prefix}-{i:03d}"
        ss = np.random.SeedSequence([int(seed), i])
        subj = synth_subject(ages[i], spacing, ss, parcellation=parcellation, **subject_kwargs)
        files = {}
        for key, suffix in outputs:
            name = f"{sid}_{suffix}.nii.gz"
            _save(subj[key], subj["affine"], os.path.join(out_dir, name))
            files[key] = name
        row = {"subject": sid, **{k: files[k] for k in ("t1", "t2", "label")},
               "age_months": ages[i], "split": "train", "mask": files["mask"],
               "skull": files["skull"], "seed": f"{int(seed)}:{i}", "generator": GENERATOR}
        if parcellation:
            row["parcellation"] = files["parc"]
        rows.append(row)
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
