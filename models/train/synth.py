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
