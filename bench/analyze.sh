#!/usr/bin/env bash
# End-to-end analysis speed: `lungwatch analyze` against the obvious Python pipeline
# (pydicom + numpy/scipy + onnxruntime, bench/reference_pipeline.py) on the same files and
# the same ONNX models. Prints wall time, peak RSS, the ratio, and lungwatch's stages.
#   bash bench/analyze.sh        (needs ../shared/data, a Python with the packages in
#                                 models/train/requirements.txt as $PYTHON, and dcmtk)
# The 300- and 600-slice series are made once from covid19-P002 by bench/make_long_series.py
# (600 slices: the size for which the peak RSS target, 1.5 GiB, is set).
set -euo pipefail
case "${1:-}" in -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
cd "$(dirname "$0")/.."
data=../shared/data/covid-ct-md
[ -d "$data" ] || { echo "SKIPPED: $data not present"; exit 0; }
PYTHON=${PYTHON:-python3}
# LUNGWATCH_BIN=path skips the build (e.g. a binary already built by `cargo test --release`).
bin=${LUNGWATCH_BIN:-./target/release/lungwatch}
[ -n "${LUNGWATCH_BIN:-}" ] || cargo build --release -q
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
long_series() { # slices → the folder of covid19-P002 interpolated to that many slices
  local dir=target/bench/covid19-P002-$1
  if [ ! -f "$dir/IM$(printf %04d "$1").dcm" ]; then
    rm -rf "$dir"
    "$PYTHON" bench/make_long_series.py "$data/covid19-P002" "$dir" --slices "$1" >&2
  fi
  echo "$dir"
}
long300=$(long_series 300)
long600=$(long_series 600)

timed() { # output-file cmd... → "wall_s rss_mib"
  local out=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/t" "$@" > "$out"
  read -r secs kb < "$work/t"
  echo "$secs $((kb / 1024))"
}

echo "| series | slices | lungwatch wall s | lungwatch RSS MiB | Python wall s | Python RSS MiB | lungwatch / Python |"
echo "|---|---|---|---|---|---|---|"
stages=""
for s in "$data/covid19-P002" "$data/cap-cap002" "$data/normal-normal002" "$long300" "$long600"; do
  name=$(basename "$s")
  n=$(find "$s" -maxdepth 1 -name '*.dcm' | wc -l)
  read -r lw lr < <(timed "$work/lw.json" "$bin" analyze "$s" --json)
  read -r pw pr < <(timed "$work/py.json" "$PYTHON" bench/reference_pipeline.py "$s")
  printf "| %s | %d | %.2f | %d | %.2f | %d | %.2f |\n" "$name" "$n" "$lw" "$lr" "$pw" "$pr" "$(echo "$lw / $pw" | bc -l)"
  stages+=$("$PYTHON" -c '
import json, sys
r = json.load(open(sys.argv[1]))[0]
t = r["timings_ms"]
keys = ("decode", "preprocess", "inference", "postprocess", "total")
print("| " + sys.argv[2] + " | " + " | ".join(str(t[k]) for k in keys) + " |")
' "$work/lw.json" "$name")$'\n'
done
echo
echo "lungwatch stages (ms, from --json timings_ms; the rest of the wall time is start-up, model loading and file discovery):"
echo "| series | decode | preprocess | inference | postprocess | total |"
echo "|---|---|---|---|---|---|"
printf "%s" "$stages"
