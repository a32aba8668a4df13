"""Synthetic-validation Dice of lesion_seg ONNX models on the fixed validation batch that
train_seg.py reports (96 samples, seed VAL_SEED, same volumes and generator): v0.3's
(--task lesion3) or the 2.5D v0.4 one (--task lesion4, where a 1-channel model reads the
centre channel). Part of the lesion model-selection rule (MODEL_CARD.md).

  python synth_val.py ../lesion_seg.onnx /tmp/lungwatch-v03/lesion_seg.onnx
  python synth_val.py --task lesion4 ../lesion_seg.onnx /tmp/lungwatch-v04/lesion_seg.onnx"""
import argparse

import numpy as np
import onnxruntime as ort

import common as C
import train_seg as T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--data", default=C.DATA_DEFAULT)
    ap.add_argument("--cache", default="/tmp/lungwatch-cache")
    ap.add_argument("--task", choices=["lesion3", "lesion4"], default="lesion3")
    a = ap.parse_args()
    vols = T.load_training_volumes(a.data, a.cache, C.LES_N, names=C.NORMAL_VOLUMES_V3, lung_model=True)
    for v in vols:
        v["les_n"] = C.LES_N
    vx, vy = T.batch(vols, np.random.default_rng(T.VAL_SEED), a.task, 96)
    vx, vy = vx.numpy(), vy.numpy()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    for path in a.models:
        s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        x = vx if s.get_inputs()[0].shape[1] == vx.shape[1] else vx[:, vx.shape[1] // 2:][:, :1]
        pv = np.concatenate([s.run(None, {s.get_inputs()[0].name: x[i:i + 1]})[0].argmax(1) for i in range(len(x))])
        ds = []
        for k in (1, 2):
            inter = ((pv == k) & (vy == k)).sum()
            den = (pv == k).sum() + (vy == k).sum()
            ds.append(2 * inter / den if den else float("nan"))
        print(f"{path}: synth-val dice ground-glass {ds[0]:.4f} consolidation {ds[1]:.4f} mean {np.mean(ds):.4f}")


if __name__ == "__main__":
    main()
