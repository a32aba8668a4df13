"""Per-slice onnxruntime latency of the shipped models (median of 50 runs), to size the
models for the 4 s budget (tract is about 2.5-4x slower than onnxruntime on 2D convs).

  python models/train/bench_ort.py
"""
import argparse
import os
import time

import numpy as np
import onnxruntime as ort

import common as C


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=os.path.join(C.HERE, ".."))
    a = ap.parse_args()
    for name in ("lung_seg", "lesion_seg", "classifier"):
        p = os.path.join(a.models, name + ".onnx")
        if not os.path.exists(p):
            continue
        for th in (1, 2):
            so = ort.SessionOptions()
            so.intra_op_num_threads = th
            s = ort.InferenceSession(p, so, providers=["CPUExecutionProvider"])
            i = s.get_inputs()[0]
            x = np.random.default_rng(0).random(i.shape).astype(np.float32)
            for _ in range(5):
                s.run(None, {i.name: x})
            ts = []
            for _ in range(50):
                t = time.perf_counter()
                s.run(None, {i.name: x})
                ts.append(time.perf_counter() - t)
            print(f"{name} {i.shape} threads {th}: median {np.median(ts) * 1000:.2f} ms "
                  f"({os.path.getsize(p) / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
