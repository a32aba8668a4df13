"""Render synthetic v0.3 training samples beside real lesion slices of covid-ct-md (the real
slices are only LOOKED AT, to judge realism; nothing from them enters training).

  python montage_synth.py --out /tmp/lungwatch-cache/png
  python montage_synth.py --task lesion4 --out /tmp/lungwatch-cache/png   # 2.5D samples
  python montage_synth.py --task lesion5 --out /tmp/lungwatch-cache/png   # surface hard negatives
  python montage_synth.py --task lesion6 --out /tmp/lungwatch-cache/png   # through-plane ones

Writes synth_v3.png (training samples as the network sees them, lesion outline yellow =
ground-glass, red = consolidation, and the same samples without overlay) and
real_covidctmd.png (slices labelled infected in slices.csv, in the same lesion-box frame,
same window). With --task lesion4, synth_v4.png instead: each row one 2.5D sample, its
channels z-k, z, z+k and the centre slice with the label outline."""
import argparse
import csv
import functools
import os

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

import common as C
import pipeline as P
import synth
import train_seg as T


def gray(x01):
    hu = x01 * (C.HU_MAX - C.HU_MIN) + C.HU_MIN
    return (np.clip((hu + 1350) / 1500, 0, 1) * 255).astype(np.uint8)


def outline(g, y):
    rgb = np.stack([g] * 3, -1).astype(np.uint8)
    for k, col in ((1, (255, 230, 0)), (2, (255, 0, 0))):
        m = y == k
        e = m & ~ndi.binary_erosion(m)
        rgb[e] = col
    return rgb


def grid(tiles, ncol, size=256):
    tiles = [np.array(Image.fromarray(t).resize((size, size), Image.NEAREST)) for t in tiles]
    tiles = [np.stack([t] * 3, -1) if t.ndim == 2 else t for t in tiles]
    while len(tiles) % ncol:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i:i + ncol], 1) for i in range(0, len(tiles), ncol)]
    return np.concatenate(rows, 0)


def box_plane(v, img, order=1):
    """A slice of volume v sampled into its lesion-box frame, unaugmented."""
    (cy, cx), pix = v["box"]
    return C.sample_plane(img, v["les_n"], (cy, cx), pix, v["sp"][1:], order=order)


def surface_pairs(vols, rng, n, path, through_plane=False):
    """A lung-end hard negative: n slices from the ends of the lung, each as it is, with
    the hard negative (labelled background), and the HU it added (black 0, white 500 HU
    or more), side by side. v0.5's is synth.surface_partial_volume; with through_plane,
    v0.6's train_seg.through_plane_partial_volume."""
    tiles = []
    for _ in range(n):
        v = vols[rng.integers(len(vols))]
        z = rng.choice(T.lung_end_slices(v["lung_slices"]))
        pix = v["box"][1]
        plane = functools.partial(box_plane, v)
        hu = plane(v["vol"][z])
        if through_plane:
            hu2 = T.through_plane_partial_volume(v, z, hu, rng, plane)
        else:
            hu2 = synth.surface_partial_volume(hu, plane(v["lab"][z], order=0), rng, pix)
        added = (np.clip((hu2 - hu) / 500, 0, 1) * 255).astype(np.uint8)
        tiles += [gray(C.normalise(hu)), gray(C.normalise(hu2)), added]
    Image.fromarray(grid(tiles, 6)).save(path)
    print("wrote", path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=C.DATA_DEFAULT)
    ap.add_argument("--cache", default="/tmp/lungwatch-cache")
    ap.add_argument("--out", default="/tmp/lungwatch-cache/png")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--task", choices=["lesion3", "lesion4", "lesion5", "lesion6"], default="lesion3")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    vols = T.load_training_volumes(a.data, a.cache, C.LES_N, names=C.NORMAL_VOLUMES_V3, lung_model=True)
    for v in vols:
        v["les_n"] = C.LES_N
    rng = np.random.default_rng(a.seed)
    if a.task == "lesion5":
        surface_pairs(vols, rng, a.n, os.path.join(a.out, "synth_v5_surfaces.png"))
        return
    if a.task == "lesion6":
        surface_pairs(vols, rng, a.n, os.path.join(a.out, "synth_v6_through_plane.png"), through_plane=True)
        return
    if a.task == "lesion4":
        rows = []
        while len(rows) < 4 * max(1, a.n // 4):  # a.n // 4 samples, 4 tiles each
            v = vols[rng.integers(len(vols))]
            x, y = T.make_sample_v4(v, rng)
            if (y > 0).sum() < 20:
                continue
            rows += [gray(x[0]), gray(x[1]), gray(x[2]), outline(gray(x[1]), y)]
        Image.fromarray(grid(rows, 4)).save(os.path.join(a.out, "synth_v4.png"))
        print("wrote", os.path.join(a.out, "synth_v4.png"))
        return
    plain, over = [], []
    while len(plain) < a.n:
        v = vols[rng.integers(len(vols))]
        x, y = T.make_sample_v3(v, rng)
        if (y > 0).sum() < 20 and len(plain) < a.n - 3:
            continue
        g = gray(x)
        plain.append(g)
        over.append(outline(g, y))
    Image.fromarray(np.concatenate([grid(plain, 4), grid(over, 4)], 1)).save(os.path.join(a.out, "synth_v3.png"))
    # real lesions: covid19-P002 and cap-cap002 slices labelled infected
    models = P.Models(threads=1)
    lab = {}
    with open(os.path.join(a.data, "covid-ct-md/slices.csv")) as f:
        for r in csv.DictReader(f):
            if r.get("slice_infection", "").strip() == "1":
                lab.setdefault(r["series_folder"], set()).add(r["file"])
    tiles = []
    for s in ("covid19-P002", "cap-cap002"):
        vol, sp, files = C.load_dicom_series(os.path.join(a.data, "covid-ct-md", s), return_files=True)
        lung = P.segment_lungs(models, vol, sp)
        center, pix = C.lesion_box(lung > 0, sp[1:], C.LES_N)
        zs = [z for z, f in enumerate(files) if os.path.basename(f) in lab.get(s, ())]
        for z in np.array(zs)[np.linspace(0, len(zs) - 1, 8).astype(int)]:
            tiles.append(gray(C.normalise(C.sample_plane(vol[z], C.LES_N, center, pix, sp[1:]))))
    Image.fromarray(grid(tiles, 4)).save(os.path.join(a.out, "real_covidctmd.png"))
    print("wrote", os.path.join(a.out, "synth_v3.png"), os.path.join(a.out, "real_covidctmd.png"))


if __name__ == "__main__":
    main()
