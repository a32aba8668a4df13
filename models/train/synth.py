"""Synthetic COVID-19-like lesions inserted into lesion-free lung (label-free training in the
spirit of Yao et al., IEEE TMI 2021). Works on one HU slice already resampled to a model
frame (pix_mm per pixel). Returns the new HU slice and a lesion label map
(0 none, 1 ground-glass, 2 consolidation)."""
import numpy as np
from scipy import ndimage as ndi


def _field(rng, shape, center, r_px, pix_mm, normal=None):
    """Irregular blob: rotated elliptical envelope + smoothed noise; returns values ~[0,1+]."""
    H, W = shape
    cy, cx = center
    # work on a local window for speed
    half = int(min(max(H, W), 3.2 * r_px + 6))
    y0, y1 = max(0, int(cy) - half), min(H, int(cy) + half + 1)
    x0, x1 = max(0, int(cx) - half), min(W, int(cx) + half + 1)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    if normal is None:
        t = rng.uniform(0, np.pi)
        ay = r_px * rng.uniform(0.6, 1.4)
        ax = r_px * rng.uniform(0.6, 1.4)
    else:  # subpleural: thin along the pleural normal, long along the pleura
        t = np.arctan2(-normal[1], normal[0]) + rng.normal(0, 0.2)
        ay = r_px * rng.uniform(0.35, 0.8)
        ax = r_px * rng.uniform(1.0, 1.8)
    dy, dx = yy - cy, xx - cx
    u = np.cos(t) * dy - np.sin(t) * dx
    v = np.sin(t) * dy + np.cos(t) * dx
    env = np.exp(-(u ** 2 / ay ** 2 + v ** 2 / ax ** 2))
    noise = ndi.gaussian_filter(rng.standard_normal(env.shape).astype(np.float32),
                                max(1.0, r_px * rng.uniform(0.2, 0.5)))
    noise /= noise.std() + 1e-6
    f = env + rng.uniform(0.15, 0.4) * noise * env ** 0.5
    out = np.zeros(shape, np.float32)
    out[y0:y1, x0:x1] = f
    return out


def _pick_center(rng, lung, dist_mm, peripheral):
    ys, xs = np.nonzero(lung)
    if len(ys) == 0:
        return None
    if peripheral:
        w = np.exp(-dist_mm[ys, xs] / rng.uniform(6, 15))
    else:
        w = np.ones(len(ys))
    # mild posterior (dependent) preference
    w = w * (1.0 + 0.6 * (ys - ys.min()) / max(1, ys.max() - ys.min()))
    i = rng.choice(len(ys), p=w / w.sum())
    return ys[i], xs[i]


def insert_lesions(hu, lung, rng, pix_mm, n_lesions=None, kinds=None, max_r_mm=60.0):
    """hu: (H,W) float32 HU; lung: (H,W) labels (>0 lung). Returns hu2, lesion labels."""
    hu = hu.astype(np.float32).copy()
    lab = np.zeros(hu.shape, np.uint8)
    lungm = lung > 0
    if lungm.sum() < 30:
        return hu, lab
    dist_mm = ndi.distance_transform_edt(lungm) * pix_mm
    gyx = np.gradient(ndi.gaussian_filter(dist_mm, 1.5))
    if n_lesions is None:
        n_lesions = int(min(12, rng.geometric(0.3)))
    sides = [1, 2]
    bilateral = rng.random() < 0.7
    side_pref = rng.choice(sides)
    for _ in range(n_lesions):
        side = rng.choice(sides) if bilateral else side_pref
        region = (lung == side) if (lung == side).sum() > 30 else lungm
        peripheral = rng.random() < 0.75
        c = _pick_center(rng, region, dist_mm, peripheral=peripheral)
        if c is None:
            continue
        r_mm = float(np.exp(rng.uniform(np.log(4.0), np.log(max_r_mm))))
        r_px = r_mm / pix_mm
        normal = None
        if peripheral and rng.random() < 0.7:
            gy, gx = gyx[0][c], gyx[1][c]
            nn = np.hypot(gy, gx)
            if nn > 1e-6:
                normal = (gy / nn, gx / nn)
        f = _field(rng, hu.shape, c, r_px, pix_mm, normal)
        kind = rng.choice(kinds) if kinds is not None else rng.choice(
            ["ggo", "ggo", "ggo", "crazy", "cons", "mixed"])
        thr = rng.uniform(0.35, 0.6)
        # soft alpha, confined to the lung (subpleural lesions stop at the pleura)
        m = (f > thr).astype(np.float32)
        if m.sum() == 0:
            continue
        a = ndi.gaussian_filter(m, rng.uniform(0.6, 1.6)) * lungm
        if kind in ("ggo", "crazy", "mixed"):
            T = rng.uniform(-760, -430) if kind != "mixed" else rng.uniform(-700, -450)
            tex = ndi.gaussian_filter(rng.standard_normal(hu.shape).astype(np.float32), rng.uniform(0.7, 2.0))
            tex *= rng.uniform(10, 40) / (tex.std() + 1e-6)
            add = np.clip(T - hu, 0, None)  # vessels stay visible
            hu = hu + a * (add + tex)
            if kind == "crazy":
                net = ndi.gaussian_filter(rng.standard_normal(hu.shape).astype(np.float32),
                                          max(0.8, rng.uniform(3.0, 6.0) / pix_mm))
                net /= net.std() + 1e-6
                lines = np.exp(-(net / rng.uniform(0.12, 0.25)) ** 2)  # zero crossings
                hu = hu + a * lines * rng.uniform(120, 300)
            lab[(a > 0.5) & (lab == 0)] = 1
        if kind in ("cons", "mixed"):
            if kind == "mixed":
                core = (f > thr + rng.uniform(0.15, 0.35)).astype(np.float32)
                if core.sum() == 0:
                    continue
                a2 = ndi.gaussian_filter(core, 0.8) * lungm
            else:
                a2 = a
            T = rng.uniform(-180, 60)
            tex = ndi.gaussian_filter(rng.standard_normal(hu.shape).astype(np.float32), 1.0)
            tex *= rng.uniform(8, 25) / (tex.std() + 1e-6)
            hu = hu + a2 * (T - hu + tex)
            # occasional air bronchogram: a thin dark line through the consolidation
            if rng.random() < 0.3:
                ys, xs = np.nonzero(a2 > 0.8)
                if len(ys) > 10:
                    i = rng.integers(len(ys))
                    ang = rng.uniform(0, np.pi)
                    L = rng.uniform(5, 25) / pix_mm
                    s = np.linspace(-L, L, int(10 * L) + 2)
                    py = np.clip(np.rint(ys[i] + s * np.sin(ang)).astype(int), 0, hu.shape[0] - 1)
                    px = np.clip(np.rint(xs[i] + s * np.cos(ang)).astype(int), 0, hu.shape[1] - 1)
                    line = np.zeros(hu.shape, np.float32)
                    line[py, px] = 1
                    line = ndi.gaussian_filter(line, 0.7)
                    line = np.clip(line / (line.max() + 1e-6), 0, 1) * (a2 > 0.8)
                    hu = hu + line * (rng.uniform(-950, -800) - hu)
            lab[a2 > 0.5] = 2
    return hu, lab


# ====================================================================== v0.3 synthesis
# Follows the recipe summarised in shared/docs/MODEL-NOTES.md (Hu et al., CVPR 2023; Yao et
# al., TMI 2021): shapes from elastically deformed ellipses combined with smoothed random
# noise thresholded at several scales; texture from blurred noise plus a sparse "salt"
# field blurred again; edges blended with a Gaussian of sigma 1-2 px; ground-glass density
# drawn around the published -460 +- 100 HU (clipped -760..-300), consolidation above
# -200 HU; vessels stay visible inside ground-glass (HU is only raised towards the target,
# never lowered); subpleural / posterior bias; multifocal, bilateral, diffuse-patchy and
# crazy-paving cases; lesions may fill the lung up to the pleura.


def _smooth_noise(rng, shape, sigma):
    n = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), max(0.5, sigma))
    return n / (n.std() + 1e-6)


def _elastic(rng, shape, amp_px, sigma_px):
    """Smooth displacement field (dy, dx) in pixels."""
    dy = _smooth_noise(rng, shape, sigma_px) * amp_px
    dx = _smooth_noise(rng, shape, sigma_px) * amp_px
    return dy, dx


def _shape_v3(rng, shape, center, r_px, normal=None):
    """Shape field (values ~[0, 1+]): a deformed ellipse times multi-scale noise."""
    H, W = shape
    cy, cx = center
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    dy, dx = _elastic(rng, shape, rng.uniform(0.1, 0.35) * r_px, max(2.0, 0.6 * r_px))
    yy, xx = yy + dy, xx + dx
    if normal is None:
        t = rng.uniform(0, np.pi)
        ay = r_px * rng.uniform(0.6, 1.4)
        ax = r_px * rng.uniform(0.6, 1.4)
    else:  # subpleural: thin along the pleural normal, long along the pleura
        t = np.arctan2(-normal[1], normal[0]) + rng.normal(0, 0.25)
        ay = r_px * rng.uniform(0.35, 0.8)
        ax = r_px * rng.uniform(1.0, 2.0)
    u = np.cos(t) * (yy - cy) - np.sin(t) * (xx - cx)
    v = np.sin(t) * (yy - cy) + np.cos(t) * (xx - cx)
    env = np.exp(-(u ** 2 / ay ** 2 + v ** 2 / ax ** 2))
    # several scales of thresholded smoothed noise
    f = env.copy()
    for s, w in ((0.45, rng.uniform(0.15, 0.4)), (0.18, rng.uniform(0.05, 0.25)), (0.07, rng.uniform(0.0, 0.12))):
        f += w * _smooth_noise(rng, shape, max(0.7, s * r_px)) * np.sqrt(env)
    return f


def _texture(rng, shape, amp):
    """Blurred noise + sparse salt, blurred again (Hu et al.)."""
    t = _smooth_noise(rng, shape, rng.uniform(0.6, 1.5))
    salt = (rng.random(shape) < rng.uniform(0.01, 0.05)).astype(np.float32)
    t = t + rng.uniform(0.5, 2.0) * ndi.gaussian_filter(salt, rng.uniform(0.6, 1.2)) * 6.0
    t = ndi.gaussian_filter(t, rng.uniform(0.4, 0.9))
    return t * (amp / (t.std() + 1e-6))


def _ggo_target(rng):
    # -460 +- 100 HU in one quantitative study; the real covid-ct-md lesions looked at in
    # the montage include fainter ones, so the draw reaches down to -780 HU
    return float(np.clip(rng.normal(-560, 120), -780, -300))


def _apply_kind(hu, lab, a, f, thr, kind, rng, pix_mm, lungm):
    if kind in ("ggo", "crazy", "mixed"):
        T = _ggo_target(rng)
        tex = _texture(rng, hu.shape, rng.uniform(8, 35))
        add = np.clip(T - hu, 0, None)  # vessels stay visible: never lower HU
        hu = hu + a * (add + tex)
        if kind == "crazy":
            net = _smooth_noise(rng, hu.shape, max(0.8, rng.uniform(3.0, 6.0) / pix_mm))
            lines = np.exp(-(net / rng.uniform(0.12, 0.25)) ** 2)  # zero crossings: septal lines
            hu = hu + a * lines * rng.uniform(100, 300)
        lab[(a > 0.5) & (lab == 0)] = 1
    if kind in ("cons", "mixed"):
        if kind == "mixed":
            core = (f > thr + rng.uniform(0.15, 0.4)).astype(np.float32)
            if core.sum() == 0:
                return hu
            a2 = ndi.gaussian_filter(core, rng.uniform(0.7, 1.5)) * lungm
        else:
            a2 = a
        T = rng.uniform(-200, 50)
        tex = _texture(rng, hu.shape, rng.uniform(6, 20))
        hu = hu + a2 * (T - hu + tex)
        if rng.random() < 0.35:  # air bronchogram
            ys, xs = np.nonzero(a2 > 0.8)
            if len(ys) > 10:
                i = rng.integers(len(ys))
                ang = rng.uniform(0, np.pi)
                L = rng.uniform(5, 25) / pix_mm
                s = np.linspace(-L, L, int(10 * L) + 2)
                py = np.clip(np.rint(ys[i] + s * np.sin(ang)).astype(int), 0, hu.shape[0] - 1)
                px = np.clip(np.rint(xs[i] + s * np.cos(ang)).astype(int), 0, hu.shape[1] - 1)
                line = np.zeros(hu.shape, np.float32)
                line[py, px] = 1
                line = ndi.gaussian_filter(line, 0.7)
                line = np.clip(line / (line.max() + 1e-6), 0, 1) * (a2 > 0.8)
                hu = hu + line * (rng.uniform(-950, -800) - hu)
        lab[a2 > 0.5] = 2
    return hu


def insert_lesions_v3(hu, lung, rng, pix_mm):
    """hu: (H,W) HU in the lesion-model frame; lung: (H,W) labels (1 right, 2 left).
    Returns (hu2, lesion labels 0/1/2)."""
    hu = hu.astype(np.float32).copy()
    lab = np.zeros(hu.shape, np.uint8)
    lungm = lung > 0
    if lungm.sum() < 30:
        return hu, lab
    dist_mm = ndi.distance_transform_edt(lungm) * pix_mm
    gyx = np.gradient(ndi.gaussian_filter(dist_mm, 1.5))
    mode = rng.choice(["focal", "multifocal", "diffuse"], p=[0.3, 0.5, 0.2])
    bilateral = rng.random() < 0.75
    side_pref = rng.choice([1, 2])
    style = rng.choice(["ggo", "ggo", "ggo", "crazy", "cons", "mixed", "mixed"])
    if mode == "diffuse":
        # patchy confluent disease over much of one or both lungs, peripheral-weighted:
        # a large-scale thresholded noise field, denser near the pleura and posteriorly
        sides = [1, 2] if bilateral else [side_pref]
        region = np.isin(lung, sides) if np.isin(lung, sides).sum() > 30 else lungm
        ys = np.arange(hu.shape[0], dtype=np.float32)[:, None]
        ys_l = np.nonzero(region)[0]
        post = np.clip((ys - ys_l.min()) / max(1, ys_l.max() - ys_l.min()), 0, 1)
        periph = np.exp(-dist_mm / rng.uniform(10, 40))
        f = (rng.uniform(0.2, 0.7) * periph + rng.uniform(0, 0.3) * post
             + rng.uniform(0.25, 0.5) * _smooth_noise(rng, hu.shape, rng.uniform(4, 12) / pix_mm)
             + 0.15 * _smooth_noise(rng, hu.shape, rng.uniform(1.5, 4) / pix_mm))
        thr = float(np.quantile(f[region], rng.uniform(0.35, 0.85)))
        m = ((f > thr) & region).astype(np.float32)
        a = ndi.gaussian_filter(m, rng.uniform(1.0, 2.0)) * lungm
        if m.sum() > 0:
            hu = _apply_kind(hu, lab, a, f, thr, style, rng, pix_mm, lungm)
        n_extra = int(rng.integers(0, 3))
    else:
        n_extra = 1 if mode == "focal" else int(min(14, 1 + rng.geometric(0.22)))
    for _ in range(n_extra):
        side = rng.choice([1, 2]) if bilateral else side_pref
        region = (lung == side) if (lung == side).sum() > 30 else lungm
        peripheral = rng.random() < 0.8
        c = _pick_center(rng, region, dist_mm, peripheral=peripheral)
        if c is None:
            continue
        # sizes: many small (4-15 mm), some large confluent (to 70 mm)
        r_mm = float(np.exp(rng.uniform(np.log(4.0), np.log(70.0 if mode == "focal" else 45.0))))
        normal = None
        if peripheral and rng.random() < 0.75:
            gy, gx = gyx[0][c], gyx[1][c]
            nn = np.hypot(gy, gx)
            if nn > 1e-6:
                normal = (gy / nn, gx / nn)
        f = _shape_v3(rng, hu.shape, c, r_mm / pix_mm, normal)
        thr = rng.uniform(0.35, 0.6)
        m = (f > thr).astype(np.float32)
        if m.sum() == 0:
            continue
        a = ndi.gaussian_filter(m, rng.uniform(0.8, 2.0)) * lungm
        kind = style if rng.random() < 0.7 else rng.choice(["ggo", "crazy", "cons", "mixed"])
        hu = _apply_kind(hu, lab, a, f, thr, kind, rng, pix_mm, lungm)
    lab[~lungm] = 0
    return hu, lab


def hard_negatives(hu, lung, rng, pix_mm):
    """Normal findings that must stay background (label 0): dependent (posterior) density
    as a smooth gradient along the posterior pleura, and a global density shift of the
    parenchyma (expiration, low dose, soft kernel). Applied to HU in the lesion-model frame.
    Partial volume at soft-tissue surfaces is surface_partial_volume (v0.5 recipe)."""
    hu = hu.astype(np.float32).copy()
    lungm = lung > 0
    if lungm.sum() < 30:
        return hu
    dist_mm = ndi.distance_transform_edt(lungm) * pix_mm
    if rng.random() < 0.6:
        # dependent density: strongest at the posterior pleura, fading over 5-25 mm
        ys = np.arange(hu.shape[0], dtype=np.float32)[:, None]
        ys_l = np.nonzero(lungm)[0]
        post = np.clip((ys - (ys_l.min() + 0.45 * (ys_l.max() - ys_l.min())))
                       / max(1.0, 0.55 * (ys_l.max() - ys_l.min())), 0, 1)
        band = np.exp(-dist_mm / rng.uniform(4, 20)) * post ** rng.uniform(0.5, 2.0)
        band = ndi.gaussian_filter(band, rng.uniform(1, 3))
        hu = hu + lungm * band * rng.uniform(40, 220) * (1 + 0.2 * _smooth_noise(rng, hu.shape, 3))
    if rng.random() < 0.3:
        # global parenchymal density shift (expiration, low dose, soft kernel)
        hu = hu + lungm * rng.uniform(20, 90)
    return hu


def surface_partial_volume(hu, lung, rng, pix_mm):
    """Partial volume where the slice cuts a soft-tissue surface obliquely: the domes of
    the diaphragm over the liver and spleen at the lung bases, the heart border. Through the
    slice thickness the lung voxels next to that surface average in soft tissue, so a crescent
    of -700 to -350 HU runs along it and fades over a few millimetres into the lung; the
    vessels inside stay visible, only denser. It is normal anatomy, so its label stays
    background. Built from the slice's own soft tissue: a random stretch of the lung boundary
    that touches it (a smooth window along the boundary), or all of it (a dome cut near its
    top, ringed by lung). Applied to HU in the lesion-model frame; labels are unchanged."""
    hu = hu.astype(np.float32).copy()
    lungm = lung > 0
    soft = (~lungm) & (hu > -300)
    if lungm.sum() < 30 or soft.sum() < 30:
        return hu
    d_mm = ndi.distance_transform_edt(~soft) * pix_mm  # distance from the soft tissue
    contact = lungm & (d_mm <= 1.5 * pix_mm)
    if contact.sum() < 5:
        return hu
    if rng.random() < 0.75:
        ys, xs = np.nonzero(contact)
        i = rng.integers(len(ys))
        yy, xx = np.mgrid[:hu.shape[0], :hu.shape[1]]
        r_px = rng.uniform(15, 70) / pix_mm
        window = np.exp(-((yy - ys[i]) ** 2 + (xx - xs[i]) ** 2) / (2 * r_px ** 2)).astype(np.float32)
    else:
        window = np.ones(hu.shape, np.float32)
    width = rng.uniform(2, 12)
    depth = np.exp(-(d_mm / width) ** rng.uniform(1.0, 2.0))
    alpha = rng.uniform(0.2, 0.6) * depth * window * (1 + 0.15 * _smooth_noise(rng, hu.shape, 3 / pix_mm))
    tissue = rng.uniform(20, 70)
    return hu + lungm * np.clip(alpha, 0, 0.8) * (tissue - hu)


# ====================================================================== v0.4 synthesis (2.5D)
# The v0.3 recipe, on a stack of three slices (z-k, z, z+k) for the 2.5D lesion model.
# Lesions are placed and labelled on the centre slice; each one then continues into the
# neighbours as a 3D shape would: its cross-section shrinks with the distance (threshold
# raised by exp(q * (dz / r)^2), q random, so a small focus is gone at +-2.5 mm and a large
# one barely changes) and drifts by up to a pixel. Each slice gets its own copy of the
# lesion rendered on its own background, so vessels stay those of that slice.


def _lesion_ops_v4(hu, lung, rng, pix_mm):
    """The lesions of one v0.4 case, planned on the centre slice: a list of dicts with the
    shape field f, its threshold, blend sigma, kind, z radius (px; None = diffuse) and the
    seed that draws the kind's own densities and textures."""
    lungm = lung > 0
    ops = []
    if lungm.sum() < 30:
        return ops
    dist_mm = ndi.distance_transform_edt(lungm) * pix_mm
    gyx = np.gradient(ndi.gaussian_filter(dist_mm, 1.5))
    mode = rng.choice(["focal", "multifocal", "diffuse"], p=[0.3, 0.5, 0.2])
    bilateral = rng.random() < 0.75
    side_pref = rng.choice([1, 2])
    style = rng.choice(["ggo", "ggo", "ggo", "crazy", "cons", "mixed", "mixed"])
    if mode == "diffuse":
        sides = [1, 2] if bilateral else [side_pref]
        region = np.isin(lung, sides) if np.isin(lung, sides).sum() > 30 else lungm
        ys = np.arange(hu.shape[0], dtype=np.float32)[:, None]
        ys_l = np.nonzero(region)[0]
        post = np.clip((ys - ys_l.min()) / max(1, ys_l.max() - ys_l.min()), 0, 1)
        periph = np.exp(-dist_mm / rng.uniform(10, 40))
        f = (rng.uniform(0.2, 0.7) * periph + rng.uniform(0, 0.3) * post
             + rng.uniform(0.25, 0.5) * _smooth_noise(rng, hu.shape, rng.uniform(4, 12) / pix_mm)
             + 0.15 * _smooth_noise(rng, hu.shape, rng.uniform(1.5, 4) / pix_mm))
        thr = float(np.quantile(f[region], rng.uniform(0.35, 0.85)))
        ops.append({"f": f, "thr": thr, "sigma": rng.uniform(1.0, 2.0), "kind": style, "r_px": None,
                    "sides": sides, "seed": int(rng.integers(1 << 31))})
        n_extra = int(rng.integers(0, 3))
    else:
        n_extra = 1 if mode == "focal" else int(min(14, 1 + rng.geometric(0.22)))
    for _ in range(n_extra):
        side = rng.choice([1, 2]) if bilateral else side_pref
        region = (lung == side) if (lung == side).sum() > 30 else lungm
        peripheral = rng.random() < 0.8
        c = _pick_center(rng, region, dist_mm, peripheral=peripheral)
        if c is None:
            continue
        r_mm = float(np.exp(rng.uniform(np.log(4.0), np.log(70.0 if mode == "focal" else 45.0))))
        normal = None
        if peripheral and rng.random() < 0.75:
            gy, gx = gyx[0][c], gyx[1][c]
            nn = np.hypot(gy, gx)
            if nn > 1e-6:
                normal = (gy / nn, gx / nn)
        f = _shape_v3(rng, hu.shape, c, r_mm / pix_mm, normal)
        kind = style if rng.random() < 0.7 else rng.choice(["ggo", "crazy", "cons", "mixed"])
        ops.append({"f": f, "thr": rng.uniform(0.35, 0.6), "sigma": rng.uniform(0.8, 2.0), "kind": kind,
                    "r_px": r_mm / pix_mm, "sides": None, "seed": int(rng.integers(1 << 31))})
    return ops


def _render_ops_v4(hu, lung, ops, dz_px, rng, pix_mm):
    """Renders the planned lesions on one slice dz_px (frame pixels) from the centre.
    Returns (hu2, labels); the labels are meaningful on the centre slice only."""
    hu = hu.astype(np.float32).copy()
    lab = np.zeros(hu.shape, np.uint8)
    lungm = lung > 0
    if lungm.sum() < 30:
        return hu, lab
    for op in ops:
        f, thr = op["f"], op["thr"]
        if dz_px:
            f = ndi.shift(f, rng.normal(0, 0.5, 2), order=1, mode="nearest")
            if op["r_px"] is None:
                thr = thr + rng.uniform(-0.03, 0.08)
            else:
                thr = thr * np.exp(rng.uniform(0.3, 1.5) * (dz_px / op["r_px"]) ** 2)
        m = f > thr
        if op["sides"] is not None:
            region = np.isin(lung, op["sides"])
            m &= region if region.sum() > 30 else lungm
        if not m.any():
            continue
        a = ndi.gaussian_filter(m.astype(np.float32), op["sigma"]) * lungm
        hu = _apply_kind(hu, lab, a, f, thr, op["kind"], np.random.default_rng(op["seed"]), pix_mm, lungm)
    lab[~lungm] = 0
    return hu, lab


def insert_lesions_v4(hus, lungs, rng, pix_mm, dz_mm):
    """hus, lungs: (3,H,W) HU and lung labels of slices z-k, z, z+k in the lesion frame;
    dz_mm: the distance between neighbouring channels. Returns (hus2, centre labels)."""
    c = hus.shape[0] // 2
    ops = _lesion_ops_v4(hus[c], lungs[c], rng, pix_mm)
    out = np.empty_like(hus, dtype=np.float32)
    lab = None
    for j in range(hus.shape[0]):
        out[j], lj = _render_ops_v4(hus[j], lungs[j], ops, abs(j - c) * dz_mm / pix_mm, rng, pix_mm)
        if j == c:
            lab = lj
    return out, lab
