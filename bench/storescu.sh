#!/usr/bin/env bash
# C-STORE receive throughput: DCMTK's storescu sends the 167-slice normal-normal002 series
# (JPEG lossless, as exported) to `lungwatch serve` over loopback; prints instances/s.
# The export has empty SOP Instance UIDs, which a C-STORE cannot carry, so the copies sent
# get new ones first (dcmodify -gin).
# Every instance is fsynced into the store and indexed before its C-STORE response, so
# storescu's exit means everything is durable.
#   bash bench/storescu.sh      (needs ../shared/data, dcmtk and a release build;
#                                LUNGWATCH_BIN=path reuses a binary already built)
set -euo pipefail
case "${1:-}" in -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
cd "$(dirname "$0")/.."
series=../shared/data/covid-ct-md/normal-normal002
[ -d "$series" ] || { echo "SKIPPED: $series not present"; exit 0; }
if ! command -v storescu >/dev/null || ! command -v dcmodify >/dev/null; then
  echo "SKIPPED: storescu/dcmodify not installed (apt-get install dcmtk)"; exit 0
fi
bin=${LUNGWATCH_BIN:-}
if [ -z "$bin" ]; then cargo build --release -q; bin=./target/release/lungwatch; fi
work=$(mktemp -d); pid=""
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/series"; cp "$series"/*.dcm "$work/series/"; chmod u+w "$work/series"/*.dcm
dcmodify -q -nb -gin "$work/series"/*.dcm
series=$work/series
n=$(find "$series" -maxdepth 1 -name '*.dcm' | wc -l)
runs=${RUNS:-3}

cat > "$work/c.toml" <<TOML
[paths]
incoming = "$work/in"
data = "$work/data"
[series]
quiet_secs = 3600
[web]
listen = "127.0.0.1:0"
[dicom]
listen = "127.0.0.1:0"
TOML

echo "| run                                              | instances | wall s | instances/s |"
echo "|--------------------------------------------------|-----------|--------|-------------|"
for run in $(seq "$runs"); do
  rm -rf "$work/in" "$work/data"
  $bin serve --config "$work/c.toml" 2>"$work/serve.log" & pid=$!
  until grep -q "DICOM node .* listening on" "$work/serve.log"; do
    kill -0 $pid 2>/dev/null || { cat "$work/serve.log"; exit 1; }
    sleep 0.1
  done
  addr=$(grep -o "DICOM node .* listening on [0-9.:]*" "$work/serve.log" | awk '{print $NF}')
  start=$(date +%s.%N)
  storescu -xs -R -aec LUNGWATCH +sd "${addr%:*}" "${addr##*:}" "$series"
  end=$(date +%s.%N)
  indexed=$($bin status --json --config "$work/c.toml" | grep -o '"instances": [0-9]*' | grep -o '[0-9]*$')
  [ "$indexed" = "$n" ] || { echo "only $indexed of $n indexed"; exit 1; }
  kill -TERM $pid; wait $pid || true; pid=""
  secs=$(echo "$end - $start" | bc -l)
  printf "| %-48s | %9d | %6.2f | %11.0f |\n" "storescu -xs, run $run (fsync + index each)" "$n" "$secs" "$(echo "$n / $secs" | bc -l)"
done
