"""Build classical lung labels (0 bg, 1 right lung, 2 left lung) for the training volumes
and cache them, and render PNG montages to check them by eye.

  python models/train/make_lung_labels.py --data ../shared/data --cache /tmp/lungwatch-cache

Also reports the Dice of the classical method against the only human lung mask we have
(normal-chest-ct/cip-ct64/wholeLung-64.nrrd)."""
import argparse
import os
import time

import numpy as np
from PIL import Image

import common as C


def overlay(hu, lab, lesion=None):
    g = (np.clip((hu + 1350) / 1500, 0, 1) * 255).astype(np.uint8)
    rgb = np.stack([g, g, g], -1).astype(np.float32)
    from scipy import ndimage as ndi
    for k, col in ((1, (0, 255, 0)), (2, (0, 128, 255))):
        m = lab == k
        edge = m & ~ndi.binary_erosion(m, iterations=2)
        rgb[m] = 0.8 * rgb[m] + 0.2 * np.array(col)
        rgb[edge] = col
    if lesion is not None:
        for k, col in ((1, (255, 220, 0)), (2, (255, 0, 0))):
            m = lesion == k
            rgb[m] = 0.5 * rgb[m] + 0.5 * np.array(col)
    return rgb.astype(np.uint8)


def montage(vol, lab, path, n=8, size=256, lesion=None):
    Z = vol.shape[0]
    zs = np.linspace(Z * 0.1, Z * 0.9, n).astype(int)
    tiles = []
    for z in zs:
        o = overlay(vol[z], lab[z], None if lesion is None else lesion[z])
        tiles.append(np.array(Image.fromarray(o).resize((size, size), Image.BILINEAR)))
    rows = [np.concatenate(tiles[i:i + 4], 1) for i in range(0, n, 4)]
    Image.fromarray(np.concatenate(rows, 0)).save(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=C.DATA_DEFAULT)
    ap.add_argument("--cache", default="/tmp/lungwatch-cache")
    ap.add_argument("--png", default="/tmp/lungwatch-cache/png")
    a = ap.parse_args()
    os.makedirs(a.cache, exist_ok=True)
    os.makedirs(a.png, exist_ok=True)
    todo = [("nifti", n) for n in C.NORMAL_VOLUMES] + [("dicom", s) for s in C.COVIDCTMD_SERIES]
    for kind, name in todo:
        t = time.time()
        if kind == "nifti":
            vol, sp = C.load_nifti(os.path.join(a.data, "normal-chest-ct", name))
        else:
            vol, sp, _ = C.load_dicom_series(os.path.join(a.data, "covid-ct-md", name))
        lab = C.classical_lung_mask(vol, sp)
        stem = name.replace(".nii.gz", "")
        np.savez_compressed(os.path.join(a.cache, stem + ".npz"), vol=vol.astype(np.int16), lab=lab,
                            spacing=np.array(sp))
        vml = np.prod(sp) / 1000
        print(f"{stem}: shape {vol.shape} spacing {sp} right {np.sum(lab == 1) * vml:.0f} mL "
              f"left {np.sum(lab == 2) * vml:.0f} mL ({time.time() - t:.0f}s)")
        montage(vol, lab, os.path.join(a.png, stem + "_classical.png"))
    # cip-ct64 check
    import nrrd
    ct, _ = nrrd.read(os.path.join(a.data, "normal-chest-ct/cip-ct64/ct-64.nrrd"))
    wl, hdr = nrrd.read(os.path.join(a.data, "normal-chest-ct/cip-ct64/wholeLung-64.nrrd"))
    vol = np.transpose(ct.astype(np.float32), (2, 1, 0))
    ref = np.transpose(wl > 0, (2, 1, 0))
    d = np.abs(np.diag(np.array(hdr["space directions"], float)))
    sp = (d[2], d[1], d[0])
    lab = C.classical_lung_mask(vol, sp)
    pred = lab > 0
    dice = 2 * np.sum(pred & ref) / (pred.sum() + ref.sum())
    print(f"cip-ct64 classical-vs-human whole-lung Dice {dice:.3f}")


if __name__ == "__main__":
    main()
