"""Synthetic cohort, geometry (:mod:`tfneuro.data.synth`): the ICBM152 template, the
anatomy derived from it once (ventricles, sectors), and the per-subject steps that change it
-- ventricle size, the map into the subject's space (scale, rotation, smooth deformations,
asymmetry), cortical thickness and sulcal CSF, extra-axial CSF, skull and scalp."""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

from tfneuro.data.augment import smooth_random_field
from tfneuro.data.synth_contrast import _maturity
from tfneuro.io.labels import SECTOR_GRID

#: Ages (months) and linear brain scale relative to the adult ICBM152 template.
#: Anchors: ~0.68 at birth, ~0.9 at 24 months, ~0.95 at 60 months (the issue's figures).
#: They approximate the cube root of reported total-brain-volume fractions of the adult
#: volume (Knickmeyer et al., J Neurosci 2008: ~36 % at 2–4 weeks, ~72 % at 1 year,
#: ~83 % at 2 years; ~90 % by 5–6 years, Lenroot & Giedd 2006), taken a little lower in the
#: first year to keep the issue's 0.9 at 24 months. Piecewise linear between anchors.
BRAIN_SCALE_AGES = (0.0, 3.0, 6.0, 12.0, 24.0, 60.0)
BRAIN_SCALE_VALUES = (0.68, 0.75, 0.80, 0.86, 0.90, 0.95)

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




# ----------------------------------------------------------------------- per-subject steps
def subject_grid(half_t, centre, scale: float, spacing: float, margin_mm: float):
    """Shape and origin (mm) of a subject's output grid: the scaled template brain box plus
    ``margin_mm`` on every side (cropped to the head at the end)."""
    half = half_t * scale * 1.1 + margin_mm
    shape = tuple(int(np.ceil(2 * h / spacing)) + 1 for h in half)
    origin = centre - spacing * (np.array(shape) - 1) / 2.0
    return shape, origin


def template_coords(rng, shape, origin, centre, scale: float, spacing: float, params: dict, *,
                    rotation_deg: float, scale_jitter: float, elastic_mm: float,
                    deform_mm: float):
    """Template mm ``[3, N]`` of every output voxel: ``x = centre + A^-1 (y - centre) / s + u(y)``
    with a random rotation and anisotropic scale ``A``, a fine (24 mm) and a large-scale
    (64 mm) smooth displacement ``u``, then the hemisphere-size asymmetry and the petalia
    shear of ``params``."""
    rot = _rotation(rng, rotation_deg)
    aniso = np.exp(rng.normal(0.0, scale_jitter, size=3))
    a_inv = np.linalg.inv(rot @ np.diag(aniso * scale))
    m = (a_inv * spacing).astype(np.float32)          # output voxel -> template mm (linear)
    off = (centre + a_inv @ (origin - centre)).astype(np.float32)
    grid = np.indices(shape, dtype=np.float32).reshape(3, -1)
    xyz = m @ grid + off[:, None]
    del grid
    for d in range(3):
        u = _smooth_field(rng, shape, 24.0, spacing, elastic_mm).reshape(-1)
        u += _smooth_field(rng, shape, 64.0, spacing, deform_mm).reshape(-1)
        xyz[d] += u
    # asymmetry: sample the right hemisphere from nearer the midline (-> larger) when the
    # ratio is > 1, and shear it forward (petalia), the left backward.
    dx = xyz[0] - np.float32(centre[0])
    xyz[1] -= np.float32(params["petalia_mm"]) * np.clip(dx / np.float32(5.0), -1.0, 1.0)
    xyz[0] += np.where(dx > 0, dx * np.float32(1.0 / params["hemisphere_ratio"] - 1.0), 0.0)
    return xyz


def warp_template(maps, aff_t, voxel: float, xyz, shape) -> list:
    """The template ``maps`` sampled (linearly) at template mm ``xyz``, on the output grid."""
    vox = (xyz - aff_t[:3, 3, None].astype(np.float32)) / np.float32(voxel)
    inside = np.all((vox > -1.0) & (vox < np.array(maps[0].shape, np.float32)[:, None]), axis=0)
    pts = vox[:, inside]
    out = []
    for vol in maps:
        o = np.zeros(inside.shape, np.float32)
        o[inside] = ndimage.map_coordinates(vol, pts, order=1, mode="constant", cval=0.0)
        out.append(o.reshape(shape))
    return out


def cortex_and_sulci(rng, gm, wm, gamma: float, thickness_sd: float, tau: float, spacing: float):
    """Cortical thickness and sulcal CSF, in place: ``wm ** gamma(x)`` (a regional field
    around ``gamma``; the removed WM becomes GM), then ``tau`` of the tissue fraction removed
    where tissue is partial (it becomes CSF)."""
    # computed where WM is partial; 0 and 1 are fixed points of the power
    log_g = np.log(gamma) + _smooth_field(rng, gm.shape, 60.0, spacing, thickness_sd)
    part = (wm > 0.0) & (wm < 1.0)
    w_part = wm[part]
    w_new = np.power(w_part, np.exp(log_g[part]))
    gm[part] += w_part - w_new
    wm[part] = w_new
    tissue = gm + wm
    part = (tissue > 0.0) & (tissue < 1.0)
    t_part = tissue[part]
    keep = np.clip((t_part - tau) / (1.0 - tau), 0.0, 1.0) / t_part
    gm[part] *= keep
    wm[part] *= keep


def head_layers(brain, y_mm, centre_y: float, half_y: float, spacing: float, ea_mm: float,
                skull_outer: float, scalp_mm: float) -> dict:
    """Extra-axial CSF (``ea_mm`` wide, up to 1.5x at the front of the template brain), skull
    shell and scalp from the distance (mm) to the brain; boolean volumes ``extra``,
    ``skull``, ``scalp``, ``head``."""
    dist = ndimage.distance_transform_edt(~brain, sampling=spacing)
    frontal = np.clip((y_mm - np.float32(centre_y)) / np.float32(half_y), 0.0, 1.0)
    ea_width = ea_mm * (1.0 + 0.5 * frontal.reshape(brain.shape))
    extra = (dist > 0) & (dist <= ea_width)
    inner = np.where(dist > 0, dist - ea_width, 0.0)   # distance beyond the CSF layer
    return {"extra": extra, "skull": (dist > 0) & ~extra & (inner <= skull_outer),
            "scalp": (inner > skull_outer) & (inner <= skull_outer + scalp_mm),
            "head": inner <= skull_outer + scalp_mm}
