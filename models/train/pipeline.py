"""Reference Python pipeline (pydicom + numpy + onnxruntime) that applies the shipped models
exactly as manifest.toml describes. The Rust appliance implements the same contract; this
file is the executable specification used by the evaluation scripts.

Stages for one series (vol (Z,H,W) HU ordered inferior->superior, spacing (dz, dy, dx) mm):
  1. lung_seg on every slice: frame = 128x128 at 3.0 mm/pixel centred on the image centre;
     logits mapped back to the native grid by bilinear interpolation, argmax; keep the
     largest 3D connected component of each lung label (6-connectivity).
  2. lesion box = union over slices of the lung mask's in-plane bounding box, square,
     side = max(w,h)*1.08 + 8 mm; lesion_seg on every slice that holds lung, at the model input size (128x128);
     logits mapped back bilinearly, argmax, then kept only inside the lung mask.
  3. false-positive control (manifest models.lesion_seg.postprocessing): 3D 6-connected
     lesion components (ground-glass and consolidation together) under min_component_ml
     are set to background; what was removed is reported as "below the reporting
     threshold". A zone scores in the severity score only from zone_min_ratio on.
  4. features (FEATURES below) -> classifier.onnx -> probabilities.
"""
import os
import tomllib

import numpy as np
from scipy import ndimage as ndi

import common as C

FEATURES = [
    "affected_ratio",          # lesion volume / lung volume (both lungs), 0..1
    "log_affected_pct",        # log10(100 * affected_ratio + 0.1)
    "bilateral_balance",       # min(ratio_right, ratio_left) / max(...), 0 if no lesion
    "peripheral_share",        # lesion voxels with in-plane distance to non-lung <= 20 mm / lesion voxels
    "ggo_share",               # ground-glass voxels / lesion voxels
    "lower_zone_share",        # lesion voxels in the lower third of their lung / lesion voxels
    "zones_involved",          # number of the 6 zones with zone lesion ratio >= 1 %, / 6
    "largest_component_share", # largest 3D (6-conn.) lesion component / lesion voxels
    # v0.2 of the classifier: the signal of multifocal / bilateral / lobar patterns
    "lesion_components_log",   # log10(1 + n_right + n_left), n_x = 3D lesion components within lung x
    "bilateral_components_log",  # log10(1 + min(n_right, n_left))
    "largest_component_consolidation_share",  # consolidation voxels / voxels of the largest component
    "lung_base_ratio",         # lesion voxels / lung voxels in the lower thirds of both lungs
]
PERIPHERAL_MM = 20.0


def load_rules(models_dir):
    """False-positive rules from manifest.toml (the one source the Rust side reads too)."""
    with open(os.path.join(models_dir, "manifest.toml"), "rb") as f:
        m = tomllib.load(f)
    pp = m["models"]["lesion_seg"]["postprocessing"]
    return {"min_component_ml": float(pp["min_component_ml"]), "zone_min_ratio": float(pp["zone_min_ratio"])}


def load_gas_pocket_rules(models_dir):
    """The lung model's gas-pocket rule from manifest.toml, as remove_gas_pockets's keywords."""
    with open(os.path.join(models_dir, "manifest.toml"), "rb") as f:
        pp = tomllib.load(f)["models"]["lung_seg"]["postprocessing"]
    return {"aer_hu": float(pp["gas_pocket_aerated_below_hu"]), "keep_frac": float(pp["gas_pocket_max_share"]),
            "pocket_ml": float(pp["gas_pocket_min_ml"])}


MODELS_DIR = os.path.join(C.HERE, "..")


class Models:
    def __init__(self, models_dir=MODELS_DIR, threads=2, rules=None):
        import onnxruntime as ort
        self.rules = rules if rules is not None else load_rules(models_dir)
        self.gas_pockets = load_gas_pocket_rules(models_dir)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.sess = {}
        for name in ("lung_seg", "lesion_seg", "classifier"):
            p = os.path.join(models_dir, name + ".onnx")
            if os.path.exists(p):
                self.sess[name] = ort.InferenceSession(p, so, providers=["CPUExecutionProvider"])

        # 2.5D lesion model: its slice context, read from the manifest as lungwatch reads it
        ctx = self._manifest(models_dir)["models"]["lesion_seg"].get("preprocessing", {}).get("context_mm")
        self.context_mm = None if ctx is None else float(ctx)
        if "lesion_seg" in self.sess and self.channels("lesion_seg") != (1 if ctx is None else 3):
            raise ValueError("lesion_seg: 3 input channels need preprocessing.context_mm in manifest.toml, 1 none")

    @staticmethod
    def _manifest(models_dir):
        with open(os.path.join(models_dir, "manifest.toml"), "rb") as f:
            return tomllib.load(f)

    def size(self, name):
        return int(self.sess[name].get_inputs()[0].shape[-1])

    def channels(self, name):
        return int(self.sess[name].get_inputs()[0].shape[1])

    def run(self, name, x):
        s = self.sess[name]
        return s.run(None, {s.get_inputs()[0].name: x.astype(np.float32)})[0]


def back_to_native(logits, shape_hw, center_rc, out_pix_mm, spacing_rc):
    """Bilinear-resample model-frame maps (K,N,N) to the native grid (K,H,W): native pixel
    (r,c) reads the frame at u = (r - cy) * spacing_row / out_pix_mm + N/2 - 0.5 (same for
    columns); samples outside the frame read the edge value (clamped)."""
    K, N, _ = logits.shape
    H, W = shape_hw
    u = (np.arange(H) - center_rc[0]) * spacing_rc[0] / out_pix_mm + N / 2.0 - 0.5
    v = (np.arange(W) - center_rc[1]) * spacing_rc[1] / out_pix_mm + N / 2.0 - 0.5
    u = np.clip(u, 0, N - 1)
    v = np.clip(v, 0, N - 1)
    u0 = np.minimum(np.floor(u).astype(int), N - 2)
    v0 = np.minimum(np.floor(v).astype(int), N - 2)
    fu = (u - u0)[:, None]
    fv = (v - v0)[None, :]
    out = np.empty((K, H, W), np.float32)
    for k in range(K):
        L = logits[k]
        a = L[u0][:, v0]
        b = L[u0][:, v0 + 1]
        c = L[u0 + 1][:, v0]
        d = L[u0 + 1][:, v0 + 1]
        out[k] = (1 - fu) * ((1 - fv) * a + fv * b) + fu * ((1 - fv) * c + fv * d)
    return out


def segment_lungs(models, vol, spacing):
    Z, H, W = vol.shape
    lab = np.zeros(vol.shape, np.uint8)
    center = C.lung_frame_center((H, W))
    for z in range(Z):
        x = C.normalise(C.sample_plane(vol[z], C.LUNG_N, center, C.LUNG_PIX_MM, spacing[1:]))
        lg = models.run("lung_seg", x[None, None])[0]
        lab[z] = back_to_native(lg, (H, W), center, C.LUNG_PIX_MM, spacing[1:]).argmax(0)
    lab = remove_gas_pockets(lab, vol, spacing, **models.gas_pockets)
    out = np.zeros_like(lab)
    for k in (1, 2):
        cc, n = ndi.label(lab == k)
        if n:
            sizes = ndi.sum(lab == k, cc, range(1, n + 1))
            out[cc == int(np.argmax(sizes)) + 1] = k
    return out


def remove_gas_pockets(lab, vol, spacing, aer_hu, keep_frac, pocket_ml):
    """Bowel/stomach gas under the diaphragm that the lung model labels as lung.
    aerated = lung label & HU < aer_hu. 3D 6-connected components of aerated voxels smaller
    than keep_frac of the largest are 'pockets'; pockets >= pocket_ml are removed, and so is
    every 3D 6-connected component of dense lung-labelled voxels (HU >= aer_hu) that touches
    (6-neighbourhood) a removed pocket (bowel content next to bowel gas). The numbers are the
    manifest's (models.lung_seg.postprocessing, load_gas_pocket_rules)."""
    lung = lab > 0
    aer = lung & (vol < aer_hu)
    cc, n = ndi.label(aer)
    if n < 2:
        return lab
    sizes = ndi.sum(aer, cc, range(1, n + 1))
    vml = spacing[0] * spacing[1] * spacing[2] / 1000.0
    small = (sizes < keep_frac * sizes.max()) & (sizes * vml >= pocket_ml)
    if not small.any():
        return lab
    pockets = np.isin(cc, np.where(small)[0] + 1)
    dense = lung & ~aer
    dc, _ = ndi.label(dense)
    touch = np.unique(dc[ndi.binary_dilation(pockets) & dense])
    touch = touch[touch > 0]
    out = lab.copy()
    out[pockets] = 0
    if len(touch):
        out[np.isin(dc, touch)] = 0
    return out


def segment_lesions(models, vol, spacing, lung):
    Z, H, W = vol.shape
    les = np.zeros(vol.shape, np.uint8)
    n = models.size("lesion_seg")
    box = C.lesion_box(lung > 0, spacing[1:], n)
    if box is None:
        return les, None
    center, pix = box
    k = C.context_step(spacing[0], models.context_mm) if models.context_mm else 0
    for z in range(Z):
        if not lung[z].any():
            continue
        zs = [z] if not k else [max(0, z - k), z, min(Z - 1, z + k)]
        x = np.stack([C.normalise(C.sample_plane(vol[zz], n, center, pix, spacing[1:])) for zz in zs])
        lg = models.run("lesion_seg", x[None])[0]
        les[z] = back_to_native(lg, (H, W), center, pix, spacing[1:]).argmax(0)
    les[lung == 0] = 0
    return les, box


def suppress_small_components(les, spacing, min_ml):
    """Sets to background every 3D 6-connected component of lesion voxels (any class)
    smaller than min_ml. Returns (les, removed voxels, removed components)."""
    if min_ml <= 0 or not les.any():
        return les, 0, 0
    cc, _ = ndi.label(les > 0)
    sizes = np.bincount(cc.ravel())
    vml = spacing[0] * spacing[1] * spacing[2] / 1000.0
    small = np.where(sizes * vml < min_ml)[0]
    small = small[small > 0]
    if len(small) == 0:
        return les, 0, 0
    drop = np.isin(cc, small)
    out = les.copy()
    out[drop] = 0
    return out, int(drop.sum()), len(small)


def zone_score(zr, zone_min_ratio):
    if zr <= 0 or zr < zone_min_ratio:
        return 0
    return 1 if zr < 0.25 else 2 if zr < 0.5 else 3 if zr < 0.75 else 4


def features(lung, les, spacing, zone_min_ratio=0.0):
    les_any = les > 0
    n_les = int(les_any.sum())
    vox = spacing[0] * spacing[1] * spacing[2] / 1000.0
    out = {}
    lung_vox = int((lung > 0).sum())
    out["lung_ml"] = lung_vox * vox
    out["lesion_ml"] = n_les * vox
    r = {}
    for k, nm in ((1, "right"), (2, "left")):
        lv = int((lung == k).sum())
        lsv = int((les_any & (lung == k)).sum())
        out[f"lung_{nm}_ml"] = lv * vox
        out[f"lesion_{nm}_ml"] = lsv * vox
        r[k] = lsv / lv if lv else 0.0
    ratio = n_les / lung_vox if lung_vox else 0.0
    f = {"affected_ratio": ratio, "log_affected_pct": float(np.log10(100 * ratio + 0.1))}
    mx = max(r[1], r[2])
    f["bilateral_balance"] = min(r[1], r[2]) / mx if mx > 0 else 0.0
    if n_les:
        per = 0
        for z in np.where(les_any.any(axis=(1, 2)))[0]:
            d = ndi.distance_transform_edt(lung[z] > 0, sampling=spacing[1:])
            per += int(((d <= PERIPHERAL_MM) & les_any[z]).sum())
        f["peripheral_share"] = per / n_les
        f["ggo_share"] = float((les == 1).sum()) / n_les
    else:
        f["peripheral_share"] = 0.0
        f["ggo_share"] = 0.0
    lower = 0
    lower_lung = 0
    zones = 0
    score = 0
    zones_below = 0
    for k in (1, 2):
        zs = np.where((lung == k).any(axis=(1, 2)))[0]
        if len(zs) == 0:
            continue
        z0, z1 = zs[0], zs[-1] + 1
        edges = [z0 + (z1 - z0) * i / 3.0 for i in range(4)]
        for zi in range(3):  # 0 = lower (inferior) third, 2 = upper
            a, b = int(np.ceil(edges[zi] - 1e-9)), int(np.ceil(edges[zi + 1] - 1e-9))
            lv = int((lung[a:b] == k).sum())
            lsv = int((les_any[a:b] & (lung[a:b] == k)).sum())
            if zi == 0:
                lower += lsv
                lower_lung += lv
            zr = lsv / lv if lv else 0.0
            zones += zr >= 0.01
            score += zone_score(zr, zone_min_ratio)
            zones_below += 0 < zr < zone_min_ratio
    f["lower_zone_share"] = lower / n_les if n_les else 0.0
    f["zones_involved"] = zones / 6.0
    f["lung_base_ratio"] = lower / lower_lung if lower_lung else 0.0
    ncomp = [0, 0]
    if n_les:
        cc, _ = ndi.label(les_any)
        sizes = np.bincount(cc.ravel())
        sizes[0] = 0
        big = int(np.argmax(sizes))
        f["largest_component_share"] = float(sizes[big]) / n_les
        f["largest_component_consolidation_share"] = float((les[cc == big] == 2).sum()) / float(sizes[big])
        for i, k in enumerate((1, 2)):
            ncomp[i] = int(ndi.label(les_any & (lung == k))[1])
    else:
        f["largest_component_share"] = 0.0
        f["largest_component_consolidation_share"] = 0.0
    f["lesion_components_log"] = float(np.log10(1 + ncomp[0] + ncomp[1]))
    f["bilateral_components_log"] = float(np.log10(1 + min(ncomp)))
    out["lesion_components"] = ncomp
    out["severity_score_0_24"] = int(score)
    out["zones_below_threshold"] = int(zones_below)
    out["ggo_ml"] = float((les == 1).sum()) * vox
    out["consolidation_ml"] = float((les == 2).sum()) * vox
    return out, f


def analyse(models, vol, spacing):
    lung = segment_lungs(models, vol, spacing)
    les, box = segment_lesions(models, vol, spacing, lung)
    raw_ml = float((les > 0).sum()) * spacing[0] * spacing[1] * spacing[2] / 1000.0
    les, rm_vox, rm_n = suppress_small_components(les, spacing, models.rules["min_component_ml"])
    meas, f = features(lung, les, spacing, models.rules["zone_min_ratio"])
    meas["raw_lesion_ml"] = raw_ml
    meas["below_threshold_ml"] = rm_vox * spacing[0] * spacing[1] * spacing[2] / 1000.0
    meas["below_threshold_components"] = rm_n
    probs = None
    if "classifier" in models.sess:
        x = np.array([[f[k] for k in FEATURES]], np.float32)
        probs = models.run("classifier", x)[0]
    return {"lung": lung, "lesion": les, "box": box, "measurements": meas, "features": f, "probs": probs}


def main():
    """Runs the reference pipeline on one series: a folder of DICOM files or a NIfTI volume
    of normal-chest-ct (HU, LPS as common.load_nifti reads it)."""
    import argparse
    import json
    ap = argparse.ArgumentParser()
    ap.add_argument("series", help="DICOM folder or .nii.gz")
    ap.add_argument("--models", default=os.path.join(C.HERE, ".."))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--png", default=None, help="write an overlay montage here")
    a = ap.parse_args()
    if a.series.endswith(".nii.gz") or a.series.endswith(".nii"):
        vol, sp = C.load_nifti(a.series)
    else:
        vol, sp, _ = C.load_dicom_series(a.series)
    models = Models(a.models, threads=a.threads)
    r = analyse(models, vol, sp)
    m, f, p = r["measurements"], r["features"], r["probs"]
    out = {"series": a.series, "slices": int(vol.shape[0]), "spacing": [float(x) for x in sp], "rules": models.rules,
           "affected_ratio": f["affected_ratio"], "severity": m["severity_score_0_24"],
           "measurements": {k: (float(v) if np.isscalar(v) else v) for k, v in m.items()}, "features": {k: float(v) for k, v in f.items()},
           "probabilities": None if p is None else dict(zip(["covid19", "common_pneumonia", "normal_other"],
                                                          [float(x) for x in p]))}
    print(json.dumps(out, indent=1))
    if a.png:
        from eval_series import overlay_png
        overlay_png(vol, r["lung"], r["lesion"], a.png)


if __name__ == "__main__":
    main()
