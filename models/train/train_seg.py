"""Train and export the lung or lesion segmentation model (2D thin U-Net, CPU only).

  python models/train/train_seg.py --task lung   --minutes 14
  python models/train/train_seg.py --task lesion --minutes 28

Training data: ONLY the three redistributable-licence NIfTI volumes in
../shared/data/normal-chest-ct (TCGA CC BY 3.0, Lung-PET-CT-Dx CC BY 4.0, POPI research
licence - see MODEL_CARD.md), with classical lung labels (common.classical_lung_mask) and
synthetic lesions (synth.py). No covid-ct-md and no infnet-eval data is used for training.
"""
import argparse
import functools
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

import common as C
import synth

VAL_SEED = 1234


def load_training_volumes(data, cache, les_n=None, names=None, lung_model=False):
    """names: NIfTI files of normal-chest-ct. lung_model: lung labels from the shipped
    lung_seg (pipeline.segment_lungs, as at inference) instead of the classical method."""
    vols = []
    os.makedirs(cache, exist_ok=True)
    models = None
    for name in names or C.NORMAL_VOLUMES:
        stem = name.replace(".nii.gz", "")
        p = os.path.join(cache, stem + ("_lungseg.npz" if lung_model else ".npz"))
        if os.path.exists(p):
            z = np.load(p)
            vol, lab, sp = z["vol"].astype(np.float32), z["lab"], tuple(z["spacing"])
        else:
            vol, sp = C.load_nifti(os.path.join(data, "normal-chest-ct", name))
            if lung_model:
                import pipeline as P
                models = models or P.Models(threads=1)
                lab = P.segment_lungs(models, vol, sp)
            else:
                lab = C.classical_lung_mask(vol, sp)
            np.savez_compressed(p, vol=vol.astype(np.int16), lab=lab, spacing=np.array(sp))
        lung_slices = np.where((lab > 0).reshape(lab.shape[0], -1).sum(1) * sp[1] * sp[2] > 300)[0]
        box = C.lesion_box(lab > 0, sp[1:], les_n)
        vols.append({"name": stem, "vol": vol, "lab": lab, "sp": sp, "lung_slices": lung_slices, "box": box})
        print(f"loaded {stem} {vol.shape} lung slices {len(lung_slices)}", flush=True)
    return vols


def scanner_aug(hu, rng):
    """v0.3 scanner variation: window/calibration (HU scale and offset, about +-100 HU at
    the lung), dose (white and correlated noise up to ~60 HU), kernel (soft: Gaussian blur;
    sharp: unsharp masking). hu: (H,W), or (C,H,W) for the channels of one 2.5D sample:
    one scanner for all channels, each with its own noise. A (H,W) slice draws exactly what
    a (1,H,W) stack does, so the v0.3 batches stay as they were."""
    plane = hu.ndim == 2
    hu = hu[None] if plane else hu
    s = rng.uniform(0.92, 1.08)
    hu = (hu + 1000.0) * s - 1000.0 + rng.normal(0, 30)
    k = rng.random()
    if k < 0.45:
        hu = ndi.gaussian_filter(hu, (0, *[rng.uniform(0.3, 1.4)] * 2))
    elif k < 0.65:
        b = ndi.gaussian_filter(hu, (0, *[rng.uniform(0.6, 1.2)] * 2))
        hu = hu + rng.uniform(0.3, 1.2) * (hu - b)
    if rng.random() < 0.5:
        n = ndi.gaussian_filter(rng.standard_normal(hu.shape).astype(np.float32), (0, *[rng.uniform(0.5, 1.2)] * 2))
        hu = hu + n * (rng.uniform(0, 60) / (n.std() + 1e-6))
    hu = hu + rng.normal(0, rng.uniform(0, 30), hu.shape)
    hu = hu.astype(np.float32)
    return hu[0] if plane else hu


def lung_end_slices(lung_slices):
    """The lowest and the highest 15 % of a volume's slices with lung (at least one each):
    bases and apices, where the slice cuts the pleura and the diaphragm obliquely."""
    k = max(1, round(0.15 * len(lung_slices)))
    return np.concatenate([lung_slices[:k], lung_slices[-k:]])


def through_plane_partial_volume(v, z, hu, rng, plane):
    """The slice of a lung end (base or apex) averaged with one outward neighbour 1.5-5 mm
    away, weight 0.2-0.6: a slice profile (or breathing motion) that reaches past the top
    of a diaphragm dome takes in a whole patch of liver or spleen, and the lung field over
    it reads -450 to -700 HU with its vessels blurred (the false positives on POPI, MODEL_CARD
    v0.5 section). Normal anatomy, so labels are unchanged. `plane` samples a slice of the
    volume into the frame of `hu`."""
    ls = v["lung_slices"]
    step = max(1, round(rng.uniform(1.5, 5.0) / v["sp"][0]))
    zz = z - step if z < np.median(ls) else z + step  # towards the nearer end of the lung
    if not 0 <= zz < v["vol"].shape[0]:
        return hu
    a = rng.uniform(0.2, 0.6)
    return (1 - a) * hu + a * plane(v["vol"][zz])


# The 2D tasks on the v0.3 backgrounds and synthesis: v0.3, v0.5 and v0.6 recipes.
V3_TASKS = ("lesion3", "lesion5", "lesion6")


def make_sample_v3(v, rng, surfaces=False, through_plane=False):
    """Lesion v0.3 sample: real lesion-free background (slice-thickness augmentation by
    averaging neighbour slices), hard negatives, v0.3 synthetic lesions, flips, scanner
    augmentation. surfaces=True is the v0.5 recipe (task lesion5): a quarter of the slices
    come from the ends of the lung (bases and apices, where slices cut the pleura and the
    diaphragm obliquely) and 40 % get surface partial volume as a hard negative.
    through_plane=True (task lesion6, with surfaces) adds, on 60 % of those lung-end slices,
    through_plane_partial_volume. With both False the random draws are exactly v0.3's, so
    its validation batch is unchanged; with through_plane False they are v0.5's."""
    Z = v["vol"].shape[0]
    ls = v["lung_slices"]
    from_end = surfaces and rng.random() < 0.25
    if from_end:
        z = rng.choice(lung_end_slices(ls))
    else:
        z = rng.choice(ls) if rng.random() < 0.95 else rng.integers(Z)
    n = v["les_n"]
    (cy, cx), pix = v["box"]
    pix = pix * rng.uniform(0.85, 1.2)
    center = (cy + rng.normal(0, 6) / v["sp"][1], cx + rng.normal(0, 6) / v["sp"][2])
    rot = rng.normal(0, 6)
    plane = functools.partial(C.sample_plane, n=n, center_rc=center, out_pix_mm=pix,
                              spacing_rc=v["sp"][1:], rot_deg=rot)  # this sample's frame
    hu = plane(v["vol"][z])
    if rng.random() < 0.3 and 0 < z < Z - 1:  # thicker slice: partial volume along z
        w = rng.uniform(0.15, 0.35)
        hu = (1 - 2 * w) * hu + w * (plane(v["vol"][z - 1]) + plane(v["vol"][z + 1]))
    if through_plane and from_end and rng.random() < 0.6:
        hu = through_plane_partial_volume(v, z, hu, rng, plane)
    lab = plane(v["lab"][z], order=0)
    if rng.random() < 0.5:
        hu = synth.hard_negatives(hu, lab, rng, pix)
    if surfaces and rng.random() < 0.4:
        hu = synth.surface_partial_volume(hu, lab, rng, pix)
    if rng.random() < 0.8:
        hu, les = synth.insert_lesions_v3(hu, lab, rng, pix)
    else:
        les = np.zeros(hu.shape, np.uint8)
    y = les.astype(np.int64)
    if rng.random() < 0.5:
        hu, y = hu[:, ::-1], y[:, ::-1]
    hu = scanner_aug(hu, rng)
    return C.normalise(hu), np.ascontiguousarray(y)


def make_sample_v4(v, rng):
    """Lesion v0.4 (2.5D) sample: the v0.3 recipe on the three slices z-k, z, z+k (k from
    common.context_step, clamped at the ends of the volume as at inference); in 10 % of
    samples all three are slice z (no context: the ends of a series, 2D evaluation sets).
    Channel order is reversed in half the samples, so the model does not depend on which
    way the slices run. Returns (x (3,N,N), y (N,N) labels of the centre slice)."""
    Z = v["vol"].shape[0]
    z = rng.choice(v["lung_slices"]) if rng.random() < 0.95 else rng.integers(Z)
    k = C.context_step(v["sp"][0])
    zs = [max(0, z - k), z, min(Z - 1, z + k)] if rng.random() >= 0.1 else [z, z, z]
    n = v["les_n"]
    (cy, cx), pix = v["box"]
    pix = pix * rng.uniform(0.85, 1.2)
    center = (cy + rng.normal(0, 6) / v["sp"][1], cx + rng.normal(0, 6) / v["sp"][2])
    rot = rng.normal(0, 6)
    sp = v["sp"][1:]
    thick = rng.uniform(0.15, 0.35) if rng.random() < 0.3 else 0.0

    def plane(zz):
        hu = C.sample_plane(v["vol"][zz], n, center, pix, sp, rot)
        if thick and 0 < zz < Z - 1:  # thicker slice: partial volume along z
            hu = (1 - 2 * thick) * hu + thick * (C.sample_plane(v["vol"][zz - 1], n, center, pix, sp, rot)
                                                 + C.sample_plane(v["vol"][zz + 1], n, center, pix, sp, rot))
        return hu

    hus = np.stack([plane(zz) for zz in zs])
    lungs = np.stack([C.sample_plane(v["lab"][zz], n, center, pix, sp, rot, order=0) for zz in zs])
    if rng.random() < 0.5:
        seed = int(rng.integers(1 << 31))
        hus = np.stack([synth.hard_negatives(h, lb, np.random.default_rng(seed), pix) for h, lb in zip(hus, lungs)])
    dz_mm = abs(zs[2] - zs[1]) * v["sp"][0]
    if rng.random() < 0.8:
        hus, les = synth.insert_lesions_v4(hus, lungs, rng, pix, dz_mm)
    else:
        les = np.zeros(hus.shape[1:], np.uint8)
    y = les.astype(np.int64)
    if rng.random() < 0.5:
        hus = hus[::-1]
    if rng.random() < 0.5:
        hus, y = hus[:, :, ::-1], y[:, ::-1]
    hus = scanner_aug(np.ascontiguousarray(hus), rng)
    return C.normalise(hus), np.ascontiguousarray(y)


def make_sample(v, rng, task):
    """One augmented training pair in the model frame: (x float32 (N,N), y int64 (N,N))."""
    if task in V3_TASKS:
        return make_sample_v3(v, rng, surfaces=task in ("lesion5", "lesion6"), through_plane=task == "lesion6")
    if task == "lesion4":
        return make_sample_v4(v, rng)
    Z = v["vol"].shape[0]
    if task == "lung":
        z = rng.choice(v["lung_slices"]) if rng.random() < 0.85 else rng.integers(Z)
        n = C.LUNG_N
        pix = C.LUNG_PIX_MM * rng.uniform(0.8, 1.25)  # covers FOVs / patient sizes
        center = C.lung_frame_center(v["vol"].shape[1:])
        center = (center[0] + rng.normal(0, 15) / v["sp"][1], center[1] + rng.normal(0, 15) / v["sp"][2])
    else:
        z = rng.choice(v["lung_slices"]) if rng.random() < 0.95 else rng.integers(Z)
        n = v["les_n"]
        (cy, cx), pix = v["box"]
        pix = pix * rng.uniform(0.85, 1.2)
        center = (cy + rng.normal(0, 6) / v["sp"][1], cx + rng.normal(0, 6) / v["sp"][2])
    rot = rng.normal(0, 6)
    hu = C.sample_plane(v["vol"][z], n, center, pix, v["sp"][1:], rot)
    lab = C.sample_plane(v["lab"][z], n, center, pix, v["sp"][1:], rot, order=0)
    if task == "lung":
        if rng.random() < 0.6:
            hu, _ = synth.insert_lesions(hu, lab, rng, pix, kinds=["cons", "cons", "mixed", "ggo", "crazy"],
                                         max_r_mm=80.0)
        y = lab.astype(np.int64)
    else:
        if rng.random() < 0.85:
            hu, les = synth.insert_lesions(hu, lab, rng, pix)
        else:
            les = np.zeros(hu.shape, np.uint8)
        y = les.astype(np.int64)
        if rng.random() < 0.5:
            hu, y = hu[:, ::-1], y[:, ::-1]
    # scanner variation: offset, noise, blur
    hu = hu + rng.normal(0, 15)
    if rng.random() < 0.5:
        hu = ndi.gaussian_filter(hu, rng.uniform(0.3, 1.0))
    hu = hu + rng.normal(0, rng.uniform(0, 25), hu.shape)
    return C.normalise(hu), np.ascontiguousarray(y)


def batch(vols, rng, task, bs):
    w = np.array([len(v["lung_slices"]) for v in vols], float)
    xs, ys = [], []
    for _ in range(bs):
        v = vols[rng.choice(len(vols), p=w / w.sum())]
        x, y = make_sample(v, rng, task)
        xs.append(x)
        ys.append(y)
    x = np.stack(xs)
    return torch.from_numpy(x[:, None] if x.ndim == 3 else x), torch.from_numpy(np.stack(ys))


def load_folded_onnx(model, path, in_ch):
    """Loads a shipped U-Net (export of common.unet with BatchNorm folded into the
    convolutions) into `model`: each Conv / ConvTranspose in graph order takes its weight,
    the bias goes to the BatchNorm after it (weight 1, mean 0, variance 1 - eps, so that the
    frozen BatchNorm adds the bias), and a 1-channel first convolution becomes the centre
    channel of an in_ch one (the other channels start at zero)."""
    import onnx
    from onnx import numpy_helper
    g = onnx.load(path).graph
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    nodes = [nd for nd in g.node if nd.op_type in ("Conv", "ConvTranspose")]
    convs = []  # (conv module, BatchNorm after it or None), in forward order

    def block(b):
        return [(b[0], b[1]), (b[3], b[4])]
    for e in model.enc:
        convs += block(e)
    convs += block(model.bott)
    for u, d in zip(model.up, model.dec):
        convs += [(u, None)] + block(d)
    convs.append((model.head, None))
    assert len(nodes) == len(convs), (len(nodes), len(convs))
    with torch.no_grad():
        for i, (nd, (conv, bn)) in enumerate(zip(nodes, convs)):
            w = init[nd.input[1]]
            b = init[nd.input[2]] if len(nd.input) > 2 else np.zeros(w.shape[0], np.float32)
            if i == 0 and in_ch != w.shape[1]:
                full = np.zeros((w.shape[0], in_ch, *w.shape[2:]), np.float32)
                full[:, in_ch // 2] = w[:, 0]
                w = full
            assert tuple(conv.weight.shape) == w.shape, (i, tuple(conv.weight.shape), w.shape)
            conv.weight.copy_(torch.from_numpy(w))
            if bn is None:
                conv.bias.copy_(torch.from_numpy(b))
            else:
                bn.weight.fill_(1.0)
                bn.bias.copy_(torch.from_numpy(b))
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)


def dice_loss(logits, y, n_cls):
    p = torch.softmax(logits, 1)
    oh = F.one_hot(y, n_cls).permute(0, 3, 1, 2).float()
    inter = (p * oh).sum((0, 2, 3))
    den = p.sum((0, 2, 3)) + oh.sum((0, 2, 3))
    d = (2 * inter + 1) / (den + 1)
    return 1 - d[1:].mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", choices=["lung", "lesion", "lesion3", "lesion4", "lesion5", "lesion6"], required=True,
                    help="lesion3 = v0.3 recipe (CC BY backgrounds, lung-model labels, synth v3); "
                         "lesion4 = the same recipe as 2.5D (3 slices in, synth v4); "
                         "lesion5 = lesion3 plus surface partial volume and lung-end slices "
                         "(validated on the lesion3 batch); lesion6 = lesion5 plus through-plane "
                         "partial volume at the lung ends (validated on the lesion3 batch)")
    ap.add_argument("--ckpt-every", type=int, default=500)
    ap.add_argument("--data", default=C.DATA_DEFAULT)
    ap.add_argument("--cache", default="/tmp/lungwatch-cache")
    ap.add_argument("--out", default=os.path.join(C.HERE, ".."))
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--iterations", type=int, default=None,
                    help="train for exactly this many iterations, the cosine schedule over them, instead "
                         "of --minutes of wall time (whose iteration count follows the machine's load), "
                         "so that runs on machines of different load compare")
    ap.add_argument("--base", type=int, default=None)
    ap.add_argument("--bs", type=int, default=12)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=None, help="lesion model input size (default common.LES_N)")
    ap.add_argument("--init", default=None, help="continue from a state_dict (.pt) saved by an earlier run")
    ap.add_argument("--warmup", type=int, default=0,
                    help="iterations of linear learning-rate warm-up (a fine-tune from trained weights "
                         "loses them to Adam's first full-size steps without it)")
    ap.add_argument("--init-onnx", default=None,
                    help="start from a shipped 1-channel ONNX U-Net (BatchNorm folded): its weights, the "
                         "first convolution's on the centre channel and zero on the others, with BatchNorm "
                         "frozen at identity so the start computes exactly what the ONNX model does")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    task = a.task
    n = C.LUNG_N if task == "lung" else (a.size or C.LES_N)
    base = a.base or 8
    minutes = a.minutes if a.minutes is not None else (14 if task == "lung" else 40)
    if task in V3_TASKS or task == "lesion4":
        vols = load_training_volumes(a.data, a.cache, n, names=C.NORMAL_VOLUMES_V3, lung_model=True)
    else:
        vols = load_training_volumes(a.data, a.cache, n if task == "lesion" else None)
    for v in vols:
        v["les_n"] = n
    # fixed synthetic validation set (same generator, other seed) to pick nothing but to
    # report convergence; the real evaluations are in eval_*.py
    vrng = np.random.default_rng(VAL_SEED)
    val_task = "lesion3" if task in V3_TASKS else task  # v0.5 and v0.6 are judged on v0.3's batch
    vx, vy = batch(vols, vrng, val_task, 96 if task in V3_TASKS or task == "lesion4" else 48)
    in_ch = 3 if task == "lesion4" else 1
    model = C.unet(in_ch, 3, base=base)
    frozen_bn = False
    if a.init:
        model.load_state_dict(torch.load(a.init))
        print(f"continuing from {a.init}", flush=True)
    if a.init_onnx:
        load_folded_onnx(model, a.init_onnx, in_ch)
        frozen_bn = True
        print(f"starting from {a.init_onnx} (BatchNorm frozen)", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    w = torch.tensor([1.0, 1.0, 1.0]) if task == "lung" else torch.tensor([1.0, 2.0, 2.0])
    t0 = time.time()
    it = 0
    budget = minutes * 60
    while True:
        el = time.time() - t0
        if (it >= a.iterations) if a.iterations else (el > budget):
            break
        progress = it / a.iterations if a.iterations else el / budget
        lr = a.lr * 0.5 * (1 + np.cos(np.pi * min(1.0, progress)))
        if a.warmup:
            lr *= min(1.0, (it + 1) / a.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        model.train()
        if frozen_bn:
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.eval()
        x, y = batch(vols, rng, task, a.bs)
        out = model(x)
        loss = F.cross_entropy(out, y, weight=w) + dice_loss(out, y, 3)
        opt.zero_grad()
        loss.backward()
        opt.step()
        it += 1
        if a.ckpt_every and it % a.ckpt_every == 0:
            torch.save(model.state_dict(), os.path.join(a.cache, f"{task}_ckpt.pt"))
        if it % 50 == 0:
            model.eval()
            with torch.no_grad():
                pv = model(vx).argmax(1)
            ds = []
            for k in (1, 2):
                inter = ((pv == k) & (vy == k)).sum().item()
                den = (pv == k).sum().item() + (vy == k).sum().item()
                ds.append(2 * inter / den if den else float("nan"))
            print(f"it {it} t {el / 60:.1f}m lr {lr:.2e} loss {loss.item():.3f} synth-val dice "
                  f"{ds[0]:.3f} {ds[1]:.3f}", flush=True)
    model.eval()
    os.makedirs(a.out, exist_ok=True)
    name = "lung_seg" if task == "lung" else "lesion_seg"
    with torch.no_grad():
        pv = model(vx).argmax(1)
    ds = []
    for k in (1, 2):
        inter = ((pv == k) & (vy == k)).sum().item()
        den = (pv == k).sum().item() + (vy == k).sum().item()
        ds.append(2 * inter / den if den else float("nan"))
    print(f"final synth-val dice {ds[0]:.4f} {ds[1]:.4f} mean {(ds[0] + ds[1]) / 2:.4f}", flush=True)
    torch.save(model.state_dict(), os.path.join(a.cache, name + ".pt"))
    onnx_path = os.path.join(a.out, name + ".onnx")
    C.export_onnx(model, (1, in_ch, n, n), onnx_path)
    # parity fixture: a real training-domain slice (TCGA, CC BY) in the model frame
    v = vols[0]
    z = v["lung_slices"][len(v["lung_slices"]) // 2]
    if task == "lesion4":
        (cy, cx), pix = v["box"]
        k = C.context_step(v["sp"][0])
        zs = [z - k, z, z + k]
        hus = np.stack([C.sample_plane(v["vol"][zz], n, (cy, cx), pix, v["sp"][1:]) for zz in zs])
        labs = np.stack([C.sample_plane(v["lab"][zz], n, (cy, cx), pix, v["sp"][1:], order=0) for zz in zs])
        hu, _ = synth.insert_lesions_v4(hus, labs, np.random.default_rng(7), pix, k * v["sp"][0])
    elif task in V3_TASKS:
        (cy, cx), pix = v["box"]
        hu = C.sample_plane(v["vol"][z], n, (cy, cx), pix, v["sp"][1:])
        lab = C.sample_plane(v["lab"][z], n, (cy, cx), pix, v["sp"][1:], order=0)
        hu, _ = synth.insert_lesions_v3(hu, lab, np.random.default_rng(7), pix)
    elif task == "lung":
        hu = C.sample_plane(v["vol"][z], n, C.lung_frame_center(v["vol"].shape[1:]), C.LUNG_PIX_MM, v["sp"][1:])
    else:
        (cy, cx), pix = v["box"]
        hu = C.sample_plane(v["vol"][z], n, (cy, cx), pix, v["sp"][1:])
        lab = C.sample_plane(v["lab"][z], n, (cy, cx), pix, v["sp"][1:], order=0)
        hu, _ = synth.insert_lesions(hu, lab, np.random.default_rng(7), pix, n_lesions=4)
    x = C.normalise(hu)[None, None] if hu.ndim == 2 else C.normalise(hu)[None]
    y = C.write_fixture(onnx_path, x, name, os.path.join(a.out, "fixtures"))
    with torch.no_grad():
        yt = model(torch.from_numpy(x)).numpy()
    print(f"exported {onnx_path} ({os.path.getsize(onnx_path)} bytes) sha256 {C.sha256(onnx_path)}; "
          f"torch-vs-ort max abs diff {np.abs(yt - y).max():.2e}; iterations {it}")


if __name__ == "__main__":
    main()
