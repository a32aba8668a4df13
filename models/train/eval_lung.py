"""Lung model checks that have some reference:
  * cip-ct64: the only human lung mask here (COPDGene CT shrunk to 64x64x79, 4.2 mm
    pixels): whole-lung Dice of the lung model and of the classical labels.
  * DICOM series: per-lung Dice of the model against the classical threshold labels
    (a fair reference only where there are no dense lesions, e.g. the normal series) and
    both volumes in mL.

  python models/train/eval_lung.py [--series DIR ...]
The LAST line is the model's whole-lung Dice on cip-ct64."""
import argparse
import glob
import os

import numpy as np

import common as C
import pipeline as P


def dice(a, b):
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else 2.0 * np.logical_and(a, b).sum() / s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=C.DATA_DEFAULT)
    ap.add_argument("--models", default=os.path.join(C.HERE, ".."))
    ap.add_argument("--series", nargs="*", default=None)
    a = ap.parse_args()
    models = P.Models(a.models)
    series = a.series if a.series is not None else sorted(
        glob.glob(os.path.join(a.data, "covid-ct-md", "*", "")))
    for d in series:
        if not glob.glob(os.path.join(d, "*.dcm")):
            continue
        vol, sp, _ = C.load_dicom_series(d)
        ref = C.classical_lung_mask(vol, sp)
        lab = P.segment_lungs(models, vol, sp)
        v = np.prod(sp) / 1000
        nm = os.path.basename(os.path.normpath(d))
        print(f"{nm}: model R {np.sum(lab == 1) * v:.0f} mL L {np.sum(lab == 2) * v:.0f} mL | classical "
              f"R {np.sum(ref == 1) * v:.0f} mL L {np.sum(ref == 2) * v:.0f} mL | Dice vs classical "
              f"R {dice(lab == 1, ref == 1):.3f} L {dice(lab == 2, ref == 2):.3f} whole {dice(lab > 0, ref > 0):.3f}")
    import nrrd
    ct, hdr = nrrd.read(os.path.join(a.data, "normal-chest-ct/cip-ct64/ct-64.nrrd"))
    wl, _ = nrrd.read(os.path.join(a.data, "normal-chest-ct/cip-ct64/wholeLung-64.nrrd"))
    vol = np.transpose(ct.astype(np.float32), (2, 1, 0))
    ref = np.transpose(wl > 0, (2, 1, 0))
    dd = np.abs(np.diag(np.array(hdr["space directions"], float)))
    sp = (dd[2], dd[1], dd[0])
    cl = C.classical_lung_mask(vol, sp) > 0
    lab = P.segment_lungs(models, vol, sp)
    v = np.prod(sp) / 1000
    print(f"cip-ct64 ({vol.shape}, spacing {tuple(round(s, 2) for s in sp)}): human mask {ref.sum() * v:.0f} mL, "
          f"model {np.sum(lab > 0) * v:.0f} mL, classical {cl.sum() * v:.0f} mL; classical Dice {dice(cl, ref):.3f}")
    print(f"cip-ct64 whole-lung Dice (model vs human mask) {dice(lab > 0, ref):.4f}")


if __name__ == "__main__":
    main()
