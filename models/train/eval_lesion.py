"""Evaluate lesion_seg.onnx on a folder of 8-bit lung-windowed, lung-cropped axial slices
with binary infection masks (and optionally 1=GGO / 2=consolidation masks), e.g. the 50
MedSeg slices of infnet-eval (EVALUATION ONLY - never train on them).

  python models/train/eval_lesion.py --images ../shared/data/infnet-eval/images \
      --masks ../shared/data/infnet-eval/infection \
      --ggo-cons ../shared/data/infnet-eval/ggo-consolidation

Assumptions, fixed before looking at any label:
  * gray g in [0,255] maps linearly to HU in --window (default -1080..250). The default was
    derived from the images alone: median histogram mode of the dark lung parenchyma
    (gray 44.5) taken as -850 HU and of soft tissue (gray 214.5) as +40 HU.
  * --rotate 3: the infnet-eval slices are stored rotated by 90 degrees (anterior to the
    left); they are rotated clockwise so that anterior is up, like a DICOM axial slice.
  * the crop is treated as the lung box: padded to a square of side max(h,w)*1.08 with
    air (-1024 HU) and resampled to the model input size (bilinear), as in the appliance.
Prints per-slice Dice, then summary lines; the LAST line is the mean infection Dice."""
import argparse
import glob
import os

import numpy as np
from PIL import Image

import common as C
import pipeline as P


def dice(a, b):
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else 2.0 * np.logical_and(a, b).sum() / s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", default=os.path.join(C.DATA_DEFAULT, "infnet-eval/images"))
    ap.add_argument("--masks", default=os.path.join(C.DATA_DEFAULT, "infnet-eval/infection"))
    ap.add_argument("--ggo-cons", default=None, help="optional folder of 0/1/2 masks")
    ap.add_argument("--models", default=os.path.join(C.HERE, ".."))
    ap.add_argument("--window", type=float, nargs=2, default=[-1080.0, 250.0])
    ap.add_argument("--rotate", type=int, default=3, help="np.rot90 k applied to image (3 = clockwise)")
    ap.add_argument("--png", default=None, help="write overlay PNGs here")
    a = ap.parse_args()
    models = P.Models(a.models)
    files = sorted(glob.glob(os.path.join(a.images, "*")), key=lambda p: (len(os.path.basename(p)), p))
    dices, g_d, c_d = [], [], []
    tot = {"tp": 0, "fp": 0, "fn": 0}
    for f in files:
        stem = os.path.splitext(os.path.basename(f))[0]
        mp = [p for p in glob.glob(os.path.join(a.masks, stem + ".*"))]
        if not mp:
            continue
        g = np.array(Image.open(f).convert("L")).astype(np.float32)
        gt = np.array(Image.open(mp[0])) > 0
        if gt.ndim == 3:
            gt = gt[..., 0]
        g = np.rot90(g, a.rotate).copy()
        lo, hi = a.window
        hu = lo + g / 255.0 * (hi - lo)
        H, W = hu.shape
        center = ((H - 1) / 2.0, (W - 1) / 2.0)
        n = models.size("lesion_seg")
        pix = max(H, W) * C.LES_MARGIN / n   # "mm" = image pixels here
        x = C.normalise(C.sample_plane(hu, n, center, pix, (1.0, 1.0)))
        # 2D slices: a 2.5D model gets the slice as its own neighbours (its no-context
        # mode, 10 % of its training samples, as at the ends of a series).
        lg = models.run("lesion_seg", np.stack([x] * models.channels("lesion_seg"))[None])[0]
        pred = P.back_to_native(lg, (H, W), center, pix, (1.0, 1.0)).argmax(0)
        pred = np.rot90(pred, -a.rotate)
        d = dice(pred > 0, gt)
        dices.append(d)
        tot["tp"] += int(np.logical_and(pred > 0, gt).sum())
        tot["fp"] += int(np.logical_and(pred > 0, ~gt).sum())
        tot["fn"] += int(np.logical_and(pred == 0, gt).sum())
        line = f"{stem}\tdice {d:.3f}\tgt_px {int(gt.sum())}\tpred_px {int((pred > 0).sum())}"
        if a.ggo_cons:
            gc = np.array(Image.open(glob.glob(os.path.join(a.ggo_cons, stem + ".*"))[0]))
            if gc.ndim == 3:
                gc = gc[..., 0]
            dg, dc = dice(pred == 1, gc == 1), dice(pred == 2, gc == 2)
            g_d.append(dg)
            c_d.append(dc)
            line += f"\tggo {dg:.3f}\tcons {dc:.3f}"
        print(line)
        if a.png:
            os.makedirs(a.png, exist_ok=True)
            gg = np.rot90(g, -a.rotate).astype(np.uint8)
            rgb = np.stack([gg] * 3, -1).astype(np.float32)
            rgb[gt & (pred == 0)] = 0.5 * rgb[gt & (pred == 0)] + [0, 0, 127]       # missed: blue
            rgb[(pred > 0) & ~gt] = 0.5 * rgb[(pred > 0) & ~gt] + [127, 0, 0]       # false +: red
            rgb[(pred > 0) & gt] = 0.5 * rgb[(pred > 0) & gt] + [0, 127, 0]         # hit: green
            Image.fromarray(np.concatenate([np.stack([gg] * 3, -1), rgb.astype(np.uint8)], 1)).save(
                os.path.join(a.png, stem + ".png"))
    n = len(dices)
    print(f"slices {n}; window {a.window}; median Dice {np.median(dices):.3f}; "
          f"pooled (all pixels) Dice {2 * tot['tp'] / max(1, 2 * tot['tp'] + tot['fp'] + tot['fn']):.3f}")
    if g_d:
        print(f"mean Dice ground-glass {np.mean(g_d):.3f}; mean Dice consolidation {np.mean(c_d):.3f} "
              f"(slices without that class in both count as 1)")
    print(f"mean infection Dice {np.mean(dices):.4f}")


if __name__ == "__main__":
    main()
