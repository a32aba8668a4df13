"""Run the whole reference pipeline on DICOM series and report lung volumes, lesion burden,
slice-level infection detection against a slices.csv, and class probabilities.

  python models/train/eval_series.py --root ../shared/data/covid-ct-md \
      --labels ../shared/data/covid-ct-md/slices.csv --png models/eval

--root holds one sub-folder of .dcm files per series (or pass --series DIR ...).
slices.csv columns used: series_folder, file, slice_infection (1/0/blank).
A slice is called infected when its predicted lesion area (inside the lung) is at least
--min-area-mm2 (default 100 mm^2, fixed a priori). The AUC uses the lesion area as score.
The LAST line is the slice-level AUC over all labelled slices (or 'n/a')."""
import argparse
import csv
import glob
import json
import os
import time

import numpy as np
from PIL import Image

import common as C
import pipeline as P


def auc(scores, labels):
    s = np.asarray(scores, float)
    y = np.asarray(labels, int)
    pos, neg = s[y == 1], s[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    # Mann-Whitney with ties counted 1/2
    gt = (pos[:, None] > neg[None, :]).sum()
    eq = (pos[:, None] == neg[None, :]).sum()
    return float((gt + 0.5 * eq) / (len(pos) * len(neg)))


def overlay_png(vol, lung, les, path, n=8, size=256):
    from scipy import ndimage as ndi
    zs = np.where(lung.any(axis=(1, 2)))[0]
    if len(zs) == 0:
        return
    pick = np.linspace(zs[0] + 0.1 * len(zs), zs[-1] - 0.1 * len(zs), n).astype(int)[::-1]
    tiles = []
    for z in pick:
        g = (np.clip((vol[z] + 1350) / 1500, 0, 1) * 255).astype(np.float32)
        rgb = np.stack([g] * 3, -1)
        for k, col in ((1, (0, 255, 0)), (2, (0, 160, 255))):
            m = lung[z] == k
            e = m & ~ndi.binary_erosion(m, iterations=2)
            rgb[e] = col
        for k, col in ((1, (255, 230, 0)), (2, (255, 0, 0))):
            m = les[z] == k
            rgb[m] = 0.55 * rgb[m] + 0.45 * np.array(col)
        tiles.append(np.array(Image.fromarray(rgb.astype(np.uint8)).resize((size, size), Image.BILINEAR)))
    rows = [np.concatenate(tiles[i:i + 4], 1) for i in range(0, n, 4)]
    Image.fromarray(np.concatenate(rows, 0)).save(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=os.path.join(C.DATA_DEFAULT, "covid-ct-md"))
    ap.add_argument("--series", nargs="*", default=None)
    ap.add_argument("--labels", default=os.path.join(C.DATA_DEFAULT, "covid-ct-md/slices.csv"))
    ap.add_argument("--models", default=os.path.join(C.HERE, ".."))
    ap.add_argument("--png", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--min-area-mm2", type=float, default=100.0)
    a = ap.parse_args()
    series = a.series or sorted(d for d in glob.glob(os.path.join(a.root, "*")) if glob.glob(os.path.join(d, "*.dcm")))
    lab = {}
    if a.labels and os.path.exists(a.labels):
        with open(a.labels) as f:
            for r in csv.DictReader(f):
                v = r.get("slice_infection", "").strip()
                lab[(r["series_folder"], r["file"])] = int(v) if v != "" else None
    models = P.Models(a.models)
    all_s, all_y = [], []
    all_s_n, all_y_n = [], []
    results = {}
    for d in series:
        name = os.path.basename(os.path.normpath(d))
        t = time.time()
        vol, sp, files = C.load_dicom_series(d, return_files=True)
        t_load = time.time() - t
        t = time.time()
        r = P.analyse(models, vol, sp)
        t_an = time.time() - t
        m, f, p = r["measurements"], r["features"], r["probs"]
        print(f"== {name}: {vol.shape[0]} slices, spacing {tuple(round(s, 3) for s in sp)}; "
              f"load {t_load:.1f}s, models+post {t_an:.1f}s (onnxruntime)")
        print(f"   lung right {m['lung_right_ml']:.0f} mL, left {m['lung_left_ml']:.0f} mL, total {m['lung_ml']:.0f} mL")
        print(f"   lesion {m['lesion_ml']:.1f} mL (GGO {m['ggo_ml']:.1f}, consolidation {m['consolidation_ml']:.1f}); "
              f"right {m['lesion_right_ml']:.1f}, left {m['lesion_left_ml']:.1f}; severity {m['severity_score_0_24']}/24")
        print("   features " + ", ".join(f"{k}={f[k]:.3f}" for k in P.FEATURES))
        if p is not None:
            print(f"   probabilities covid19 {p[0]:.3f}, common_pneumonia {p[1]:.3f}, normal_other {p[2]:.3f}")
        area = (r["lesion"] > 0).sum(axis=(1, 2)) * sp[1] * sp[2]
        ys, ss = [], []
        for z, fn in enumerate(files):
            key = (name, os.path.basename(fn))
            if key in lab:
                y = lab[key]
                if y is None:  # blank: normal series, slice not labelled -> negative in the 2nd analysis
                    all_s_n.append(area[z]); all_y_n.append(0)
                    continue
                ys.append(y); ss.append(area[z])
                all_s_n.append(area[z]); all_y_n.append(y)
        if ys:
            ys, ss = np.array(ys), np.array(ss)
            pr = ss >= a.min_area_mm2
            tp, fn_, tn, fp = int((pr & (ys == 1)).sum()), int((~pr & (ys == 1)).sum()), int((~pr & (ys == 0)).sum()), int((pr & (ys == 0)).sum())
            print(f"   slices labelled: {len(ys)} ({int(ys.sum())} infected); TP {tp} FN {fn_} TN {tn} FP {fp}; "
                  f"AUC {auc(ss, ys):.3f}")
            all_s += list(ss); all_y += list(ys)
        results[name] = {"measurements": m, "features": f, "probs": None if p is None else [float(x) for x in p],
                         "lesion_area_mm2_per_slice": [float(x) for x in area]}
        if a.png:
            os.makedirs(a.png, exist_ok=True)
            overlay_png(vol, r["lung"], r["lesion"], os.path.join(a.png, name + "_overlay.png"))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    if all_y:
        s, y = np.array(all_s), np.array(all_y)
        pr = s >= a.min_area_mm2
        sens = (pr & (y == 1)).sum() / max(1, (y == 1).sum())
        spec = (~pr & (y == 0)).sum() / max(1, (y == 0).sum())
        print(f"labelled slices (infection 1/0 in slices.csv): n={len(y)}, positives={int(y.sum())}; "
              f"threshold {a.min_area_mm2} mm2: sensitivity {sens:.3f}, specificity {spec:.3f}")
        s2, y2 = np.array(all_s_n), np.array(all_y_n)
        pr2 = s2 >= a.min_area_mm2
        print(f"adding the unlabelled normal-series slices as negatives: n={len(y2)}; "
              f"specificity {(~pr2 & (y2 == 0)).sum() / max(1, (y2 == 0).sum()):.3f}; AUC {auc(s2, y2):.3f}")
        print(f"slice-level AUC {auc(s, y):.4f}")
    else:
        print("slice-level AUC n/a")


if __name__ == "__main__":
    main()
