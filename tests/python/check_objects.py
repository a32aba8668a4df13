"""Reads lungwatch's SEG and SR with the reference libraries and checks them against the
analysis's own outputs (called by tests/objects_python.rs):

- highdicom reads the SEG; for every source slice it references, its four segments,
  combined the way labels.nii.gz combines them (a lesion over a lung), equal the NIfTI
  label map sampled at that slice's pixel centres, voxel for voxel. The pixel centres
  must fall on NIfTI voxel centres (the grids are one grid): no flip, no shift.
- pydicom reads the SR; its numeric measurements equal the report's figures.

usage: check_objects.py SEG SR LABELS_NII_GZ REPORT_JSON SOURCES_JSON
SOURCES_JSON lists [SOP Instance UID as lungwatch indexed it, path] of the source slices
(an export with an empty SOP Instance UID is indexed under a derived one).
Prints one line per check and exits 1 on the first mismatch.
"""

import gzip
import json
import struct
import sys

import highdicom as hd
import numpy as np
import pydicom


def fail(message):
    print(f"MISMATCH: {message}")
    sys.exit(1)


def read_nifti(path):
    raw = gzip.open(path).read()
    dims = struct.unpack_from("<8h", raw, 40)
    datatype = struct.unpack_from("<h", raw, 70)[0]
    vox_offset = int(struct.unpack_from("<f", raw, 108)[0])
    sform_code = struct.unpack_from("<h", raw, 254)[0]
    if datatype != 2 or sform_code < 1:
        fail(f"NIfTI datatype {datatype}, sform_code {sform_code}: expected uint8 with an sform")
    srow = [struct.unpack_from("<4f", raw, 280 + 16 * k) for k in range(3)]
    affine = np.vstack([np.array(srow, dtype=np.float64), [0, 0, 0, 1]])
    nx, ny, nz = dims[1], dims[2], dims[3]
    data = np.frombuffer(raw, dtype=np.uint8, count=nx * ny * nz, offset=vox_offset)
    # NIfTI stores x fastest.
    return data.reshape((nz, ny, nx)).transpose(2, 1, 0), affine


def check_seg(seg_path, labels_path, sources):
    seg = hd.seg.segread(seg_path)
    numbers = [int(s.SegmentNumber) for s in seg.SegmentSequence]
    if numbers != [1, 2, 3, 4]:
        fail(f"segments {numbers}")
    labels, affine = read_nifti(labels_path)
    to_voxel = np.linalg.inv(affine)
    referenced = {uid for (_, _, uid) in seg.get_source_image_uids()}
    checked = voxels = 0
    worst_offset = 0.0
    for uid, ds in sources:
        if uid not in referenced:
            continue
        pixels = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=[uid],
            segment_numbers=numbers,
            combine_segments=False,
        )[0]
        # labels.nii.gz: a lesion label over the lung label.
        expected = np.zeros(pixels.shape[:2], dtype=np.uint8)
        for label in (1, 2, 3, 4):
            expected[pixels[:, :, label - 1] > 0] = label
        rows, cols = int(ds.Rows), int(ds.Columns)
        row_dir = np.array(ds.ImageOrientationPatient[:3], dtype=np.float64)
        col_dir = np.array(ds.ImageOrientationPatient[3:], dtype=np.float64)
        dr, dc = (float(v) for v in ds.PixelSpacing)
        origin = np.array(ds.ImagePositionPatient, dtype=np.float64)
        i, j = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        lps = origin + j[..., None] * dc * row_dir + i[..., None] * dr * col_dir
        ras = lps * np.array([-1.0, -1.0, 1.0])
        homogeneous = np.concatenate([ras, np.ones(ras.shape[:2] + (1,))], axis=-1)
        voxel = homogeneous @ to_voxel.T
        nearest = np.rint(voxel[..., :3])
        worst_offset = max(worst_offset, float(np.abs(voxel[..., :3] - nearest).max()))
        idx = nearest.astype(int)
        inside = np.all((idx >= 0) & (idx < np.array(labels.shape)), axis=-1)
        if not inside.all():
            fail(f"slice {uid}: {int((~inside).sum())} pixels fall outside labels.nii.gz")
        sampled = labels[idx[..., 0], idx[..., 1], idx[..., 2]]
        if not np.array_equal(sampled, expected):
            diff = int((sampled != expected).sum())
            fail(f"slice {uid}: {diff} pixels differ between the SEG and labels.nii.gz")
        checked += 1
        voxels += int((expected > 0).sum())
    if worst_offset > 0.01:
        fail(f"SEG pixel centres are {worst_offset:.3f} voxel off the NIfTI grid")
    if checked == 0:
        fail("the SEG references none of the source slices given")
    print(f"SEG: {checked} source slices, {voxels} labelled pixels equal labels.nii.gz "
          f"(grid offset {worst_offset:.2e} voxel)")


def num_items(items, out):
    for item in items:
        if item.ValueType == "NUM" and "MeasuredValueSequence" in item:
            meaning = item.ConceptNameCodeSequence[0].CodeMeaning
            out.append((meaning, float(item.MeasuredValueSequence[0].NumericValue)))
        if "ContentSequence" in item:
            num_items(item.ContentSequence, out)
    return out


def check_sr(sr_path, report):
    sr = pydicom.dcmread(sr_path)
    if sr.SOPClassUID != "1.2.840.10008.5.1.4.1.1.88.33":
        fail(f"SR SOP class {sr.SOPClassUID}")
    found = num_items(sr.ContentSequence, [])
    p = report["probabilities"]
    ar = report["affected_ratio"]
    z = report["zones"]
    lungs = report["lung_volume_ml"]
    expected = [
        ("Volume", lungs["right"]),
        ("Volume", lungs["left"]),
        ("Volume", report["lesion_volume_ml"]),
        ("Affected ratio (lesion volume / lung volume)", 100 * ar["total"]),
        ("Affected ratio (lesion volume / lung volume)", 100 * ar["right"]),
        ("Affected ratio (lesion volume / lung volume)", 100 * ar["left"]),
        ("Severity score (0-24, 0-4 per zone)", report["severity_score"]),
        ("Probability of COVID-19 pneumonia", 100 * p["covid19"]),
        ("Probability of other pneumonia", 100 * p["other_pneumonia"]),
        ("Probability of normal or other", 100 * p["normal"]),
        ("Affected ratio, right upper zone", 100 * z["right_upper"]),
        ("Affected ratio, right middle zone", 100 * z["right_middle"]),
        ("Affected ratio, right lower zone", 100 * z["right_lower"]),
        ("Affected ratio, left upper zone", 100 * z["left_upper"]),
        ("Affected ratio, left middle zone", 100 * z["left_middle"]),
        ("Affected ratio, left lower zone", 100 * z["left_lower"]),
    ]
    if report["lesion_volume_ml"] > 0:
        expected += [
            ("Ground-glass share of lesion volume", 100 * report["ggo_share"]),
            ("Consolidation share of lesion volume", 100 * report["consolidation_share"]),
        ]
    for meaning, value in expected:
        values = [v for (m, v) in found if m == meaning]
        if not any(abs(v - value) <= 1e-4 * max(1.0, abs(value)) for v in values):
            fail(f"SR {meaning!r}: {values}, report {value}")
    print(f"SR: {len(found)} numeric items read by pydicom; the report's {len(expected)} "
          f"figures among them")


def main():
    if len(sys.argv) != 6 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if sys.argv[1:2] in (["-h"], ["--help"]) else 2)
    seg_path, sr_path, labels_path, report_path, sources_path = sys.argv[1:6]
    sources = [
        (uid, pydicom.dcmread(path, stop_before_pixels=True))
        for uid, path in json.load(open(sources_path))
    ]
    report = json.load(open(report_path))
    check_seg(seg_path, labels_path, sources)
    check_sr(sr_path, report)


if __name__ == "__main__":
    main()
