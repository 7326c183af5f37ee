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

import os

import numpy as np
import pandas as pd

from tfneuro.data.synth_anatomy import (EXTRA_AXIAL_AGES, SULCAL_TAU, _anatomy,
                                        _resize_ventricles, _smooth_field, _template,
                                        brain_scale, cortex_and_sulci, extra_axial_mm,
                                        head_layers, sector_index, skull_thickness_mm,
                                        subject_grid, template_coords, ventricle_scale,
                                        warp_template)
from tfneuro.data.synth_contrast import (CONTRAST_AGES, CONTRAST_PROFILES,
                                         MATURATION_SD_MONTHS, MYELIN_LEAD_MONTHS,
                                         modality_image, myelin_lead, tissue_means)
from tfneuro.errors import InputError
from tfneuro.io.labels import N_SECTORS
from tfneuro.utils.progress import progress

__all__ = ["GENERATOR", "synth_subject", "make_cohort", "default_ages", "save_montage",
           "brain_scale", "skull_thickness_mm", "extra_axial_mm", "ventricle_scale",
           "tissue_means", "myelin_lead", "sector_index", "CONTRAST_AGES", "CONTRAST_PROFILES",
           "MAX_AGE_MONTHS", "LABEL_SCHEME", "PARCELLATION_SCHEME"]

#: Generator version, written to the cohort table's ``generator`` column.
GENERATOR = "tfneuro-synth/2"

MAX_AGE_MONTHS = 60.0
LABEL_SCHEME = "tissue4"
PARCELLATION_SCHEME = "tissue_sectors"


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
    age, sp = float(age_months), float(spacing)
    rng = np.random.default_rng(seed)
    resolution = 2 if sp >= 2.0 else 1
    gm_t, wm_t, mask_t, aff_t = _template(resolution)
    anat = _anatomy(resolution)
    centre, half_t = anat["centre"], anat["half"]
    params = _draw_params(rng, age, ventricle_sd, thickness_sd, extra_axial_sd, asymmetry,
                          petalia_mm, maturation_sd)
    g = _head_sizes(age, sp, params["extra_axial_factor"], scalp)
    gm_t, wm_t = _resize_ventricles(gm_t, wm_t, mask_t, anat, params["ventricle_factor"])
    s = float(brain_scale(age))
    margin = g["margin"] + 2.5 * np.hypot(elastic_mm, deform_mm) * s
    shape, origin = subject_grid(half_t, centre, s, sp, margin)
    xyz = template_coords(rng, shape, origin, centre, s, sp, params, rotation_deg=rotation_deg,
                          scale_jitter=scale_jitter, elastic_mm=elastic_mm, deform_mm=deform_mm)
    gm, wm, bmask = warp_template([gm_t, wm_t, mask_t], aff_t, anat["voxel"], xyz, shape)
    cortex_and_sulci(rng, gm, wm, params["thickness_gamma"], thickness_sd, g["tau"], sp)
    csf = np.clip(bmask - gm - wm, 0.0, 1.0)
    brain = bmask >= 0.5
    label = np.where(brain, np.argmax(np.stack([csf, gm, wm]), axis=0) + 1, 0).astype(np.uint8)
    layers = head_layers(brain, xyz[1], centre[1], half_t[1], sp, g["extra_axial"],
                         g["skull_outer"], g["scalp"])
    label[layers["extra"]] = 1
    wsel, lead, wweights = _wm_leads(wm * brain, xyz, anat, myelin_lead_months)
    fracs = {"csf": csf, "gm": gm, "wm": wm, "brain": brain, **layers}
    images = {mod: modality_image(
        rng, mod, age, params["maturation_offset"], fracs, lead, wsel, wweights,
        bias_field=lambda r: np.exp(_smooth_field(r, shape, 60.0, sp, bias_amplitude)),
        blur_voxels=blur_voxels, noise_std=noise_std) for mod in ("t1", "t2")}
    return _cropped(images, label, brain, layers, shape, origin, sp, xyz, age, params,
                    parcellation, fracs if fractions else None)


def _wm_leads(wm_brain, xyz, anat, lead_months):
    """Flat indices of the white-matter voxels, their myelination lead (months, from their
    template position; :func:`myelin_lead`) and their WM fractions."""
    wsel = np.flatnonzero(wm_brain)
    rel = (xyz[:, wsel] - anat["centre"][:, None]) / anat["half"][:, None]
    lead = myelin_lead(rel, anat["lead_centre"], anat["lead_scale"], lead_months)
    return wsel, lead, wm_brain.ravel()[wsel]


def _head_sizes(age, sp, extra_axial_factor, scalp) -> dict:
    """Extra-axial CSF width and sulcal widening ``tau``, the skull's outer distance and the
    scalp width (mm) of a subject, and the grid margin they need (frontal widening 1.5x)."""
    ea_mm = float(extra_axial_mm(age)) * extra_axial_factor
    tau = float(np.clip(np.interp(age, EXTRA_AXIAL_AGES, SULCAL_TAU) * extra_axial_factor,
                        0.0, 0.4))
    skull_outer = max(float(skull_thickness_mm(age)) + 0.5 * sp, 1.01 * sp)
    scalp_mm = (3.0 + 2.0 * age / MAX_AGE_MONTHS) if scalp else 0.0
    return {"extra_axial": ea_mm, "tau": tau, "skull_outer": skull_outer, "scalp": scalp_mm,
            "margin": 1.5 * ea_mm + skull_outer + scalp_mm + 2 * sp}


def _draw_params(rng, age, ventricle_sd, thickness_sd, extra_axial_sd, asymmetry, petalia_mm,
                 maturation_sd) -> dict:
    """A subject's anatomy and contrast parameters, drawn up front in a fixed order."""
    return {
        "ventricle_factor": float(ventricle_scale(age) * np.exp(rng.normal(0, ventricle_sd))),
        "thickness_gamma": float(np.exp(rng.normal(0.0, thickness_sd))),
        "extra_axial_factor": float(np.exp(rng.normal(0.0, extra_axial_sd))),
        "hemisphere_ratio": float(np.exp(rng.normal(0.0, asymmetry))),
        "petalia_mm": float(rng.normal(*petalia_mm)),
        "maturation_offset": float(rng.normal(0.0, maturation_sd)),
    }


def _cropped(images, label, brain, layers, shape, origin, sp, xyz, age, params, parcellation,
             fracs) -> dict:
    """The subject's volumes cropped to the head bounding box (+1 voxel), as
    :func:`synth_subject` returns them."""
    hidx = np.argwhere(layers["head"])
    lo = np.maximum(hidx.min(0) - 1, 0)
    hi = np.minimum(hidx.max(0) + 2, shape)
    crop = tuple(slice(a, b) for a, b in zip(lo, hi))
    affine = np.eye(4)
    affine[:3, :3] = np.eye(3) * sp
    affine[:3, 3] = origin + sp * lo
    out = {
        "t1": images["t1"][crop], "t2": images["t2"][crop], "label": label[crop],
        "mask": (brain | layers["extra"])[crop].astype(np.uint8),
        "skull": layers["skull"][crop].astype(np.uint8),
        "affine": affine, "age_months": age, "spacing": sp, "params": params,
    }
    if parcellation:
        anat = _anatomy(2 if sp >= 2.0 else 1)
        sec = sector_index(*(c.reshape(shape)[crop] for c in xyz), anat)
        lab = out["label"].astype(np.int32)
        out["parc"] = np.where(lab > 0, (lab - 1) * N_SECTORS + sec, 0).astype(np.uint8)
    if fracs is not None:
        frac = np.stack([fracs["csf"] * brain + layers["extra"], fracs["gm"] * brain,
                         fracs["wm"] * brain], axis=-1)
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
