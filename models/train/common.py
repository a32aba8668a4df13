"""Shared code for the lungwatch reference models.

Everything that defines the *preprocessing contract* of the shipped ONNX models lives
here (sample_plane, normalise), so that training, evaluation and the Rust side agree.
See ../manifest.toml and ../MODEL_CARD.md for the contract in words.
"""
import glob
import hashlib
import os

import numpy as np
from scipy import ndimage as ndi

HERE = os.path.dirname(os.path.abspath(__file__))
DATA_DEFAULT = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "data"))

# ---------------------------------------------------------------- contract constants
HU_MIN, HU_MAX = -1024.0, 400.0   # clip window, then (hu - HU_MIN) / (HU_MAX - HU_MIN)
PAD_HU = -1024.0                  # value of samples that fall outside the image

LUNG_N = 128        # lung model input is 1x1x128x128
LUNG_PIX_MM = 3.0   # ... at 3.0 mm per pixel, centred on the image centre (384 mm FOV)

LES_N = 128         # lesion model input is 1x1x128x128
LES_MARGIN = 1.08   # lung box side = max(w, h) * 1.08 + 8 mm, square, centred on the box
LES_MARGIN_MM = 8.0
LES_CONTEXT_MM = 2.5  # 2.5D lesion model (v0.4): channels are slices z-k, z, z+k


def context_step(slice_mm, context_mm=LES_CONTEXT_MM):
    """k, the slice offset of the 2.5D neighbours: the nearest whole number of slices to
    context_mm, at least 1 (round half up; the ends of a series clamp to its first / last
    slice)."""
    return max(1, int(np.floor(context_mm / slice_mm + 0.5))) if slice_mm > 0 else 1

# class indices
LUNG_LABELS = ["background", "right_lung", "left_lung"]   # patient right / left
LES_LABELS = ["background", "ground_glass", "consolidation"]


def normalise(hu):
    hu = np.clip(np.asarray(hu, np.float32), HU_MIN, HU_MAX)
    return ((hu - HU_MIN) / (HU_MAX - HU_MIN)).astype(np.float32)


# ---------------------------------------------------------------- exact resampler
def bilinear(img, rows, cols, pad=PAD_HU):
    """Bilinear sample img (H, W) at continuous pixel-index coordinates (pixel centres
    are integers). Each of the four taps that falls outside the image reads `pad`."""
    H, W = img.shape
    r0 = np.floor(rows).astype(np.int64)
    c0 = np.floor(cols).astype(np.int64)
    fr = (rows - r0).astype(np.float32)
    fc = (cols - c0).astype(np.float32)
    out = np.zeros(rows.shape, np.float32)
    for dr, wr in ((0, 1 - fr), (1, fr)):
        for dc, wc in ((0, 1 - fc), (1, fc)):
            rr = r0 + dr
            cc = c0 + dc
            ok = (rr >= 0) & (rr < H) & (cc >= 0) & (cc < W)
            v = np.full(rows.shape, pad, np.float32)
            v[ok] = img[rr[ok], cc[ok]]
            out += wr * wc * v
    return out


def plane_coords(n, center_rc, out_pix_mm, spacing_rc, rot_deg=0.0):
    """Source pixel coordinates of an n x n output grid.
    Output pixel (r, c) samples the source at
        row = cy + (r + 0.5 - n/2) * out_pix_mm / spacing_row
        col = cx + (c + 0.5 - n/2) * out_pix_mm / spacing_col
    (rot_deg is only used for training augmentation; the contract uses 0)."""
    g = (np.arange(n, dtype=np.float64) + 0.5 - n / 2.0) * out_pix_mm
    yy, xx = np.meshgrid(g, g, indexing="ij")  # mm offsets
    if rot_deg:
        t = np.deg2rad(rot_deg)
        yy, xx = np.cos(t) * yy - np.sin(t) * xx, np.sin(t) * yy + np.cos(t) * xx
    rows = center_rc[0] + yy / spacing_rc[0]
    cols = center_rc[1] + xx / spacing_rc[1]
    return rows, cols


def sample_plane(img, n, center_rc, out_pix_mm, spacing_rc, rot_deg=0.0, order=1, pad=PAD_HU):
    rows, cols = plane_coords(n, center_rc, out_pix_mm, spacing_rc, rot_deg)
    if order == 1:
        return bilinear(img, rows, cols, pad)
    # nearest (labels)
    r = np.rint(rows).astype(np.int64)
    c = np.rint(cols).astype(np.int64)
    H, W = img.shape
    ok = (r >= 0) & (r < H) & (c >= 0) & (c < W)
    out = np.zeros(rows.shape, img.dtype)
    out[ok] = img[r[ok], c[ok]]
    return out


def lung_frame_center(shape_hw):
    """Lung model: centre of the native image, (H-1)/2, (W-1)/2."""
    return ((shape_hw[0] - 1) / 2.0, (shape_hw[1] - 1) / 2.0)


def lesion_box(lung_mask_3d, spacing_rc, n=None):
    """Lesion model frame from a lung mask (Z, H, W) on the native grid: union over all
    slices of the lung voxels' in-plane bounding box (pixel indices r0..r1, c0..c1
    inclusive). Returns (center_rc, out_pix_mm)."""
    m2 = lung_mask_3d.any(axis=0)
    rr = np.where(m2.any(axis=1))[0]
    cc = np.where(m2.any(axis=0))[0]
    if len(rr) == 0:
        return None
    r0, r1, c0, c1 = rr[0], rr[-1], cc[0], cc[-1]
    center = ((r0 + r1) / 2.0, (c0 + c1) / 2.0)
    h_mm = (r1 - r0 + 1) * spacing_rc[0]
    w_mm = (c1 - c0 + 1) * spacing_rc[1]
    side = max(h_mm, w_mm) * LES_MARGIN + LES_MARGIN_MM
    return center, side / (n or LES_N)


# ---------------------------------------------------------------- loading
def load_dicom_series(folder, return_files=False):
    """Returns (vol HU float32 (Z,H,W) ordered inferior->superior, spacing (z, row, col) mm,
    list of instance numbers (or, with return_files, file paths) in that order).
    Slices are ordered by position along the slice normal, never by Instance Number."""
    import pydicom
    files = sorted(glob.glob(os.path.join(folder, "*.dcm")))
    ds = [pydicom.dcmread(f) for f in files]
    normal = np.cross(np.array(ds[0].ImageOrientationPatient[:3], float),
                      np.array(ds[0].ImageOrientationPatient[3:], float))
    pos = [float(np.dot(normal, np.array(d.ImagePositionPatient, float))) for d in ds]
    order = np.argsort(pos)
    vol = np.stack([ds[i].pixel_array.astype(np.float32) * float(ds[i].RescaleSlope)
                    + float(ds[i].RescaleIntercept) for i in order])
    p = np.array(pos)[order]
    dz = float(np.median(np.diff(p))) if len(p) > 1 else float(ds[0].SliceThickness)
    sp = [float(x) for x in ds[0].PixelSpacing]
    if return_files:
        return vol, (abs(dz), sp[0], sp[1]), [files[i] for i in order]
    inst = [int(ds[i].InstanceNumber) for i in order]
    return vol, (abs(dz), sp[0], sp[1]), inst


def load_nifti(path):
    """NIfTI from normal-chest-ct: returns vol (Z,H,W) with slices in the DICOM display
    orientation (row = anterior->posterior, col = patient right->left), z inferior->superior."""
    import nibabel as nib
    im = nib.load(path)
    v = np.asanyarray(im.dataobj).astype(np.float32)  # (i, j, k)
    zooms = im.header.get_zooms()
    vol = np.transpose(v, (2, 1, 0))  # (k, j, i)
    if im.affine[2, 2] < 0:
        vol = vol[::-1]
    return np.ascontiguousarray(vol), (float(zooms[2]), float(zooms[1]), float(zooms[0]))


NORMAL_VOLUMES = ["tcga-de-a4ma-chest.nii.gz", "lung-pet-ct-dx-a0002.nii.gz", "popi-phase00.nii.gz"]
# v0.3 lesion backgrounds: every normal-chest-ct volume with a CC BY licence (TCIA). POPI
# is left out: its terms ("free for research with citation") do not say that derived
# weights may be redistributed.
NORMAL_VOLUMES_V3 = ["tcga-de-a4ma-chest.nii.gz", "lung-pet-ct-dx-a0002.nii.gz", "lidc-idri-0001.nii.gz",
                     "acrin-flt-breast-001.nii.gz", "lung-fused-ct-pathology-01-0001.nii.gz",
                     "rider-pilot-0117.nii.gz"]
COVIDCTMD_SERIES = ["covid19-P002", "cap-cap002", "normal-normal002"]


# ---------------------------------------------------------------- classical lung mask
def classical_lung_mask(vol, spacing, thr=-400.0):
    """Classical lung labels for a (Z,H,W) HU volume. Returns uint8 labels 0 bg, 1 right
    lung (image left, low column index), 2 left lung.
    1. body = HU > thr, per slice: largest 2D component, holes filled (removes table,
       outside air).
    2. air inside body = HU < thr within body; 3D components; drop those touching the
       first/last slice only if small; keep components >= 8% of the largest (lungs).
    3. left/right split: if one component holds both lungs, erode until it splits, then
       grow the seeds back inside the mask (watershed on distance).
    4. per slice hole filling of each lung and a small closing (vessels, nodules)."""
    Z = vol.shape[0]
    body = np.zeros(vol.shape, bool)
    for z in range(Z):
        b = vol[z] > thr
        b = ndi.binary_opening(b, iterations=2)
        lab, n = ndi.label(b)
        if n == 0:
            continue
        sizes = ndi.sum(b, lab, range(1, n + 1))
        k = int(np.argmax(sizes)) + 1
        body[z] = ndi.binary_fill_holes(lab == k)
    air = (vol < thr) & body
    # remove 1-pixel rim effects
    air = ndi.binary_opening(air, structure=np.ones((1, 3, 3), bool))
    # trachea / main bronchi: small 2D components of almost pure air (mean < -930 HU,
    # area < 10 cm^2). Lung parenchyma averages about -850 HU, even at the apex.
    pix_cm2 = spacing[1] * spacing[2] / 100.0
    for z in range(Z):
        l2, n2 = ndi.label(air[z])
        if n2 == 0:
            continue
        idx = np.arange(1, n2 + 1)
        area = ndi.sum(air[z], l2, idx) * pix_cm2
        mean = ndi.mean(vol[z], l2, idx)
        drop = idx[(area < 10.0) & (mean < -930.0)]
        if len(drop):
            air[z][np.isin(l2, drop)] = False
    lab, n = ndi.label(air)
    if n == 0:
        return np.zeros(vol.shape, np.uint8)
    sizes = ndi.sum(air, lab, range(1, n + 1))
    vox_ml = spacing[0] * spacing[1] * spacing[2] / 1000.0
    keep = [i + 1 for i, s in enumerate(sizes) if s >= 0.08 * sizes.max() and s * vox_ml > 50]
    lung = np.isin(lab, keep)
    # trachea / main bronchi: air much darker than parenchyma in a small midline tube is
    # not separated here; the model card states that the main bronchi may be included.
    labels = split_left_right(lung, spacing)
    out = np.zeros(vol.shape, np.uint8)
    st = ndi.generate_binary_structure(2, 1)
    for z in range(Z):
        for k in (1, 2):
            m = labels[z] == k
            if not m.any():
                continue
            m = ndi.binary_closing(m, structure=st, iterations=2)
            m = ndi.binary_fill_holes(m)
            out[z][m & (out[z] == 0)] = k
    return out


def split_left_right(lung, spacing):
    lab, n = ndi.label(lung)
    sizes = ndi.sum(lung, lab, range(1, n + 1)) if n else []
    W = lung.shape[2]

    def side_of(mask):
        cols = np.where(mask)[2]
        return 1 if cols.mean() < W / 2 else 2

    comps = sorted(range(1, n + 1), key=lambda i: -sizes[i - 1])
    if n >= 2 and sizes[comps[1] - 1] > 0.25 * sizes[comps[0] - 1]:
        a, b = comps[0], comps[1]
        sa, sb = side_of(lab == a), side_of(lab == b)
        if sa != sb:
            out = np.zeros(lung.shape, np.uint8)
            out[lab == a] = sa
            out[lab == b] = sb
            # remaining smaller components: nearest side by column
            rest = lung & (out == 0)
            if rest.any():
                _assign_rest(out, rest)
            return out
    # one merged component: erode until two big parts appear
    m = lung.copy()
    seeds = None
    for it in range(1, 15):
        m = ndi.binary_erosion(m, structure=np.ones((1, 3, 3), bool))
        l2, n2 = ndi.label(m)
        if n2 < 2:
            continue
        s2 = ndi.sum(m, l2, range(1, n2 + 1))
        o = np.argsort(-s2)
        if s2[o[1]] > 0.25 * s2[o[0]]:
            a, b = o[0] + 1, o[1] + 1
            sa, sb = side_of(l2 == a), side_of(l2 == b)
            if sa != sb:
                seeds = np.zeros(lung.shape, np.uint8)
                seeds[l2 == a] = sa
                seeds[l2 == b] = sb
                break
    out = np.zeros(lung.shape, np.uint8)
    if seeds is None:
        # fall back to the body midline per slice
        cols = np.arange(W)[None, None, :]
        out[lung & (cols < W / 2)] = 1
        out[lung & (cols >= W / 2)] = 2
        return out
    # grow seeds back inside the lung mask (nearest seed)
    _, idx = ndi.distance_transform_edt(seeds == 0, sampling=spacing, return_indices=True)
    near = seeds[tuple(idx)]
    out[lung] = near[lung]
    return out


def _assign_rest(out, rest):
    _, idx = ndi.distance_transform_edt(out == 0, return_indices=True)
    near = out[tuple(idx)]
    out[rest] = near[rest]


# ---------------------------------------------------------------- networks
def unet(in_ch=1, n_cls=3, base=8, depth=4):
    import torch
    from torch import nn

    def block(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True),
                             nn.Conv2d(o, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            ch = [base * 2 ** i for i in range(depth)]
            self.enc = nn.ModuleList()
            c = in_ch
            for o in ch:
                self.enc.append(block(c, o))
                c = o
            self.pool = nn.MaxPool2d(2)
            self.bott = block(ch[-1], ch[-1] * 2)
            self.up = nn.ModuleList()
            self.dec = nn.ModuleList()
            c = ch[-1] * 2
            for o in reversed(ch):
                self.up.append(nn.ConvTranspose2d(c, o, 2, stride=2))
                self.dec.append(block(2 * o, o))
                c = o
            self.head = nn.Conv2d(c, n_cls, 1)

        def forward(self, x):
            skips = []
            for e in self.enc:
                x = e(x)
                skips.append(x)
                x = self.pool(x)
            x = self.bott(x)
            for u, d, s in zip(self.up, self.dec, reversed(skips)):
                x = d(torch.cat([u(x), s], 1))
            return self.head(x)

    return UNet()


def export_onnx(model, shape, path, in_name="input", out_name="logits"):
    import torch
    model.eval()
    x = torch.zeros(*shape)
    torch.onnx.export(model, x, path, opset_version=17, dynamo=False, input_names=[in_name],
                      output_names=[out_name], do_constant_folding=True)
    import onnx
    m = onnx.load(path)
    onnx.checker.check_model(m)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def write_fixture(onnx_path, x, name, fixtures_dir):
    """Runs onnxruntime on x and writes <name>.input.bin / .output.bin (LE f32)."""
    import onnxruntime as ort
    os.makedirs(fixtures_dir, exist_ok=True)
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    y = sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0]
    x.astype("<f4").tofile(os.path.join(fixtures_dir, name + ".input.bin"))
    y.astype("<f4").tofile(os.path.join(fixtures_dir, name + ".output.bin"))
    return y


def softmax(x, axis=1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)
