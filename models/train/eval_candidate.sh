#!/usr/bin/env bash
# Evaluates a candidate lesion_seg.onnx against the shipped one, in the order the model
# card's selection rule asks: first the two rule conditions (synthetic validation on the
# v0.3 batch, false positives on the seven real normals), then, for the comparison only,
# MedSeg Dice and covid-ct-md detection and class calls. The two halves run side by side
# (one thread each, two cores).
#
#   cd models/train && bash eval_candidate.sh /tmp/lungwatch-v05/lesion_seg.onnx /tmp/eval-v05
#
# OUT gets models/ (the shipped models and manifest with the candidate's lesion model,
# its sha256 written in), and one log per evaluation; the summary lines are printed.
set -euo pipefail

candidate=${1:?usage: eval_candidate.sh CANDIDATE.onnx OUT}
out=${2:?usage: eval_candidate.sh CANDIDATE.onnx OUT}
python=${PYTHON:-python}
data=${DATA:-../../../shared/data}
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

mkdir -p "$out/models"
cp ../lung_seg.onnx ../classifier.onnx "$out/models/"
cp "$candidate" "$out/models/lesion_seg.onnx"
shipped_sha=$(sha256sum ../lesion_seg.onnx | cut -d' ' -f1)
candidate_sha=$(sha256sum "$candidate" | cut -d' ' -f1)
sed "s/$shipped_sha/$candidate_sha/" ../manifest.toml > "$out/models/manifest.toml"
grep -q "$candidate_sha" "$out/models/manifest.toml"

# The rule's two conditions, then MedSeg; and beside them, covid-ct-md.
(
    "$python" synth_val.py --data "$data" ../lesion_seg.onnx "$candidate" > "$out/synth_val.log" 2>&1
    "$python" eval_normals.py --data "$data" --models "$out/models" > "$out/normals.log" 2>&1
    "$python" eval_lesion.py --images "$data/infnet-eval/images" --masks "$data/infnet-eval/infection" \
        --ggo-cons "$data/infnet-eval/ggo-consolidation" --models "$out/models" > "$out/medseg.log" 2>&1
) &
rule=$!
"$python" eval_series.py --root "$data/covid-ct-md" --labels "$data/covid-ct-md/slices.csv" \
    --models "$out/models" > "$out/series.log" 2>&1
wait "$rule"

echo "== rule 1, synthetic validation (v0.3 batch):"
cat "$out/synth_val.log"
echo "== rule 2, seven normals:"
grep -E "after rules|mean affected" "$out/normals.log"
echo "== after the decision: MedSeg"
tail -4 "$out/medseg.log"
echo "== after the decision: covid-ct-md"
grep -E "^== |lesion |probabilities|sensitivity|AUC" "$out/series.log"
