"""Synthetic cohort, intensities (:mod:`tfneuro.data.synth`): tissue contrast by age with the
isointense phase, the spatial myelination gradient, and the imaging steps (partial volume,
blur, bias field, noise)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

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

#: Local white-matter maturation curves (relative intensity by age) that set how a WM
#: position ahead of or behind the brain average differs from it: monotone, crossing GM
#: (0.50) at 7.5 months with no plateau (generator version 1's profiles). The brain average
#: itself follows ``CONTRAST_PROFILES`` (with the 6-9 month plateau): regions cross GM at
#: different ages, so the average stays isointense while regional contrast remains.
LOCAL_AGES = (0.0, 3.0, 6.0, 7.5, 9.0, 12.0, 24.0, 60.0)
LOCAL_WM = {"t1": (0.28, 0.33, 0.46, 0.50, 0.54, 0.66, 0.72, 0.75),
            "t2": (0.72, 0.66, 0.54, 0.50, 0.46, 0.36, 0.33, 0.31)}

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




def modality_image(rng, mod: str, age: float, maturation_offset: float, fractions: dict,
                   wm_lead, wm_sel, wm_weights, *, bias_field, blur_voxels: float,
                   noise_std: tuple) -> np.ndarray:
    """One modality (``"t1"``/``"t2"``) of a subject, float32 in 0-~1000.

    Tissue means from :data:`CONTRAST_PROFILES` with a per-subject gain and jitter; white
    matter at WM voxel ``wm_sel[i]`` (flat index) deviates from the brain-average profile as
    the local curve :data:`LOCAL_WM` at ``age + maturation_offset + wm_lead[i]`` deviates from
    its WM mean (weights ``wm_weights``). Mixed by the tissue ``fractions``
    (``csf, gm, wm, extra, skull, scalp``; partial volume), blurred, multiplied by
    ``bias_field(rng)`` and given Gaussian noise (magnitude image).
    """
    f = fractions
    means = tissue_means(mod, age)
    gain = float(np.exp(rng.normal(0.0, 0.04)))
    jit = {k: means[k] * gain * float(np.exp(rng.normal(0.0, 0.04)))
           for k in ("csf", "skull", "scalp")}
    a_eff = age + maturation_offset
    local = np.interp(a_eff + wm_lead, LOCAL_AGES, LOCAL_WM[mod])
    local -= float((local * wm_weights).sum()) / float(wm_weights.sum())
    target = float(np.interp(a_eff, CONTRAST_AGES, CONTRAST_PROFILES[mod]["wm"]))
    wm_int = np.full(f["wm"].shape, target, np.float32)
    wm_int.ravel()[wm_sel] = target + local
    img = (f["csf"] * jit["csf"] + f["gm"] * (means["gm"] * gain) + f["wm"] * (wm_int * gain)) \
        * f["brain"]
    img = img + f["extra"] * jit["csf"] + f["skull"] * jit["skull"] + f["scalp"] * jit["scalp"]
    img = ndimage.gaussian_filter(img.astype(np.float32), blur_voxels)
    img = img * bias_field(rng)
    img = np.abs(img + rng.normal(0.0, rng.uniform(*noise_std), size=img.shape))
    return (img * 1000.0).astype(np.float32)
