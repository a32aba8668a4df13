"""False-positive check on real normal / near-normal chest CT: the whole reference pipeline
(pipeline.analyse, with the manifest's false-positive rules) on each NIfTI volume of
normal-chest-ct. These volumes hold no pneumonia, so every lesion voxel is a false positive
(the LIDC nodule, the Lung-PET-CT-Dx mass, the Lung-Fused adenocarcinoma and the POPI
tumour are real findings, but not pneumonia).

  python eval_normals.py [--models DIR] [--names a.nii.gz ...]

Part of the lesion model-selection rule (MODEL_CARD.md): the LAST line is the mean
affected ratio (after the rules) over the volumes. The six CC BY volumes are the v0.3
training backgrounds (without synthetic lesions); POPI is not trained on by v0.3."""
import argparse
import os
import time

import numpy as np

import common as C
import pipeline as P

ALL = C.NORMAL_VOLUMES_V3 + ["popi-phase00.nii.gz"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=C.DATA_DEFAULT)
    ap.add_argument("--models", default=os.path.join(C.HERE, ".."))
    ap.add_argument("--rules-from", default=None, help="read the FP rules from this folder's manifest.toml")
    ap.add_argument("--names", nargs="*", default=ALL)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    rules = P.load_rules(a.rules_from or a.models)
    models = P.Models(a.models, threads=a.threads, rules=rules)
    ratios = []
    print(f"rules {rules}")
    for name in a.names:
        t = time.time()
        vol, sp = C.load_nifti(os.path.join(a.data, "normal-chest-ct", name))
        r = P.analyse(models, vol, sp)
        m, f, p = r["measurements"], r["features"], r["probs"]
        raw = m["raw_lesion_ml"] / max(1e-9, m["lung_ml"])
        ratios.append(f["affected_ratio"])
        ps = "" if p is None else f"; p covid {p[0]:.3f} cap {p[1]:.3f} normal {p[2]:.3f}"
        print(f"{name}: lung {m['lung_ml']:.0f} mL; raw lesion {m['raw_lesion_ml']:.1f} mL ({100 * raw:.2f} %); "
              f"after rules {m['lesion_ml']:.1f} mL ({100 * f['affected_ratio']:.3f} %), "
              f"below threshold {m['below_threshold_ml']:.1f} mL in {m['below_threshold_components']} components; "
              f"severity {m['severity_score_0_24']}{ps} [{time.time() - t:.0f}s]", flush=True)
    print(f"mean affected ratio over {len(ratios)} normal volumes: {100 * np.mean(ratios):.3f} %")


if __name__ == "__main__":
    main()
