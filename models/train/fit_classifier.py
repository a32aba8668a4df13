"""Fit and export the 3-class pattern classifier (COVID-19 pneumonia / common pneumonia /
normal-other) as a tiny ONNX model over the documented lesion-pattern feature vector
(pipeline.FEATURES).

  python models/train/fit_classifier.py

THERE IS NO LABELLED PATIENT DATA BEHIND THIS MODEL. It is a knowledge-based prior: the
feature vectors are drawn from class-conditional distributions written down below from the
published descriptions of typical COVID-19 pneumonia CT (RSNA consensus, Simpson et al.
2020; CO-RADS, Prokop et al. 2020; Bai et al., Radiology 2020) - bilateral, peripheral,
ground-glass-dominant, multifocal, lower-zone - against common (bacterial/lobar or
broncho-) pneumonia - unilateral or asymmetric, consolidation-dominant, focal/lobar, less
peripheral - and normal/other lungs, where only small false-positive specks are expected.
A multinomial logistic regression (equal class priors) is fitted to 60,000 such vectors.
Sites should replace it with a model fitted on their own labelled cases (same input).
"""
import argparse
import os

import numpy as np

import common as C
import pipeline as P

CLASSES = ["covid19_pneumonia", "common_pneumonia", "normal_other"]


def beta(rng, a, b, n):
    return rng.beta(a, b, n)


def sample_class(rng, cls, n):
    F = np.zeros((n, len(P.FEATURES)))
    if cls == 0:    # COVID-19: typical pattern
        pct = np.clip(np.exp(rng.normal(np.log(6.0), 1.2, n)), 0.2, 85)
        bil = rng.random(n) < 0.85
        bal = np.where(bil, beta(rng, 3, 2, n), rng.uniform(0, 0.1, n))
        per = beta(rng, 7, 3, n)
        ggo = np.where(pct > 30, beta(rng, 4, 3, n), beta(rng, 6, 2, n))
        low = beta(rng, 5, 4, n)
        zmax = np.where(bil, 6, 3)
        zones = np.clip(np.round(zmax * (1 - np.exp(-pct / 6.0)) + rng.normal(0, 0.7, n)), 1, zmax)
        lcs = np.where(pct > 30, beta(rng, 4, 2, n), beta(rng, 2, 3, n))
    elif cls == 1:  # common (bacterial / broncho-) pneumonia
        pct = np.clip(np.exp(rng.normal(np.log(4.0), 1.1, n)), 0.2, 70)
        bil = rng.random(n) < 0.35
        bal = np.where(bil, beta(rng, 2, 4, n), rng.uniform(0, 0.1, n))
        per = beta(rng, 4, 4, n)
        ggo = beta(rng, 2, 4, n)
        low = beta(rng, 4, 3, n)
        zmax = np.where(bil, 4, 2)
        zones = np.clip(np.round(zmax * (1 - np.exp(-pct / 6.0)) + rng.normal(0, 0.7, n)), 1, zmax)
        lcs = beta(rng, 5, 2, n)
    else:           # normal / other: small false-positive specks, or a small focal density
        focal = rng.random(n) < 0.15
        pct = np.where(focal, rng.uniform(0.3, 3.0, n), np.clip(np.exp(rng.normal(np.log(0.15), 1.0, n)), 0, 1.5))
        pct = np.where(rng.random(n) < 0.1, 0.0, pct)
        bal = np.where(focal, rng.uniform(0, 0.1, n), rng.uniform(0, 1, n))
        per = beta(rng, 3, 2, n)
        ggo = np.where(focal, beta(rng, 2, 4, n), beta(rng, 3, 2, n))
        low = beta(rng, 2, 2, n)
        zones = np.clip(np.round(rng.exponential(0.4, n) + (pct > 1.0)), 0, 3)
        lcs = beta(rng, 2, 2, n)
        none = pct == 0
        bal[none] = per[none] = ggo[none] = low[none] = lcs[none] = 0
        zones[none] = 0
    ratio = pct / 100.0
    cols = dict(affected_ratio=ratio, log_affected_pct=np.log10(pct + 0.1), bilateral_balance=bal,
                peripheral_share=per, ggo_share=ggo, lower_zone_share=low, zones_involved=zones / 6.0,
                largest_component_share=lcs)
    for j, k in enumerate(P.FEATURES):
        F[:, j] = cols[k]
    return F


def fit(X, y, l2=1e-3, iters=3000, lr=0.5):
    mu, sd = X.mean(0), X.std(0) + 1e-9
    Z = (X - mu) / sd
    n, d = Z.shape
    W = np.zeros((d, 3))
    b = np.zeros(3)
    Y = np.eye(3)[y]
    for _ in range(iters):
        p = C.softmax(Z @ W + b, axis=1)
        g = p - Y
        W -= lr * (Z.T @ g / n + l2 * W)
        b -= lr * g.mean(0)
    return mu, sd, W, b


def export(mu, sd, W, b, path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    # fold the standardisation into the Gemm: (x - mu)/sd @ W + b = x @ (W/sd) + (b - mu/sd @ W)
    Wf = (W / sd[:, None]).astype(np.float32)
    bf = (b - (mu / sd) @ W).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["features", "W", "b"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)]
    g = helper.make_graph(nodes, "lungwatch_pattern_classifier",
                          [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, len(P.FEATURES)])],
                          [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, 3])],
                          [numpy_helper.from_array(Wf, "W"), numpy_helper.from_array(bf.reshape(1, 3)[0], "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="lungwatch-fit_classifier")
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(C.HERE, ".."))
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    X = np.concatenate([sample_class(rng, c, a.n) for c in range(3)])
    y = np.repeat(np.arange(3), a.n)
    mu, sd, W, b = fit(X, y)
    # accuracy on a fresh synthetic draw (only measures separability of the priors)
    rng2 = np.random.default_rng(a.seed + 1)
    Xt = np.concatenate([sample_class(rng2, c, 5000) for c in range(3)])
    yt = np.repeat(np.arange(3), 5000)
    pt = C.softmax(((Xt - mu) / sd) @ W + b, axis=1)
    acc = (pt.argmax(1) == yt).mean()
    print("standardised coefficients (rows = features, cols = " + ", ".join(CLASSES) + ")")
    for k, row in zip(P.FEATURES, W):
        print(f"  {k:26s} " + " ".join(f"{v:+.2f}" for v in row))
    print(f"accuracy on a fresh draw from the SAME synthetic priors: {acc:.3f} (not a clinical metric)")
    path = os.path.join(a.out, "classifier.onnx")
    export(mu, sd, W, b, path)
    # fixture: a typical-COVID-like feature vector
    x = sample_class(np.random.default_rng(5), 0, 1).astype(np.float32)
    y = C.write_fixture(path, x, "classifier", os.path.join(a.out, "fixtures"))
    ref = C.softmax(((x - mu) / sd) @ W + b, axis=1)
    print(f"exported {path} sha256 {C.sha256(path)}; numpy-vs-ort max abs diff {np.abs(ref - y).max():.1e}")


if __name__ == "__main__":
    main()
