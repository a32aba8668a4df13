"""The obvious Python alternative to `lungwatch analyze`: pydicom (+ pylibjpeg for JPEG
Lossless) to read the series, numpy/scipy for pre- and post-processing and onnxruntime
(2 threads) for the same ONNX models, following models/train/pipeline.py exactly.

    python bench/reference_pipeline.py SERIES_DIR [SERIES_DIR ...]

Prints one JSON object per series: wall time (load + analyse) and the key volumes.
"""
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "models", "train"))

import common as C
import pipeline as P


def main():
    if not sys.argv[1:] or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if sys.argv[1:] else 2)
    models = P.Models(os.path.join(HERE, "..", "models"), threads=2)
    for folder in sys.argv[1:]:
        t0 = time.perf_counter()
        vol, spacing, _ = C.load_dicom_series(folder)
        t1 = time.perf_counter()
        out = P.analyse(models, vol, spacing)
        t2 = time.perf_counter()
        m = out["measurements"]
        print(json.dumps({
            "series": os.path.basename(os.path.normpath(folder)),
            "slices": int(vol.shape[0]),
            "load_s": round(t1 - t0, 3),
            "analyse_s": round(t2 - t1, 3),
            "total_s": round(t2 - t0, 3),
            "lung_right_ml": round(m["lung_right_ml"], 1),
            "lung_left_ml": round(m["lung_left_ml"], 1),
            "lesion_ml": round(m["lesion_ml"], 1),
            "probabilities": [round(float(p), 4) for p in out["probs"]],
        }), flush=True)


if __name__ == "__main__":
    main()
