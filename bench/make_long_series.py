"""Builds a 300-slice chest CT series for the speed benchmark from a real one: the slices
of SRC are linearly interpolated along z onto 300 evenly spaced positions over the same
extent (so the anatomy, lungs and lesions are real, only thinner-sliced), written as new
instances with their own UIDs, then JPEG Lossless SV1 compressed with dcmtk's dcmcjpeg,
like the source.

    python bench/make_long_series.py SRC_DIR DST_DIR [--slices 300]
"""
import argparse
import copy
import os
import shutil
import subprocess
import warnings

import numpy as np
import pydicom
from pydicom.uid import ExplicitVRLittleEndian, generate_uid


def main():
    warnings.filterwarnings("ignore", message="Invalid value for VR UI")
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--slices", type=int, default=300)
    a = ap.parse_args()
    files = sorted(os.path.join(a.src, f) for f in os.listdir(a.src) if f.endswith(".dcm"))
    ds = [pydicom.dcmread(f) for f in files]
    ds.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    z = np.array([float(d.ImagePositionPatient[2]) for d in ds])
    stored = np.stack([d.pixel_array.astype(np.float32) for d in ds])
    os.makedirs(a.dst, exist_ok=True)
    series_uid = generate_uid()
    new_z = np.linspace(z[0], z[-1], a.slices)
    step = float(new_z[1] - new_z[0])
    for i, zz in enumerate(new_z):
        k = min(int(np.searchsorted(z, zz, side="right")) - 1, len(z) - 2)
        f = (zz - z[k]) / (z[k + 1] - z[k])
        pixels = np.rint((1 - f) * stored[k] + f * stored[k + 1]).astype(ds[0].pixel_array.dtype)
        d = copy.deepcopy(ds[k])
        d.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        d.PixelData = pixels.tobytes()
        d.SeriesInstanceUID = series_uid
        d.SOPInstanceUID = generate_uid()
        d.file_meta.MediaStorageSOPInstanceUID = d.SOPInstanceUID
        d.InstanceNumber = i + 1
        d.ImagePositionPatient = [float(d.ImagePositionPatient[0]), float(d.ImagePositionPatient[1]), float(zz)]
        d.SliceThickness = round(step, 3)
        d.SeriesDescription = f"{a.slices}-slice interpolation of {os.path.basename(os.path.normpath(a.src))} (benchmark)"
        raw = os.path.join(a.dst, f"raw{i:04d}.dcm")
        d.save_as(raw, enforce_file_format=True)
        out = os.path.join(a.dst, f"IM{i + 1:04d}.dcm")
        if shutil.which("dcmcjpeg"):
            subprocess.run(["dcmcjpeg", "+e1", raw, out], check=True)
            os.remove(raw)
        else:
            os.rename(raw, out)
    print(f"{a.slices} slices, {step:.3f} mm apart, in {a.dst}"
          + ("" if shutil.which("dcmcjpeg") else " (uncompressed: dcmcjpeg not found)"))


if __name__ == "__main__":
    main()
