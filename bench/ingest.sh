#!/usr/bin/env bash
# Ingest and decode throughput on the covid-ct-md series; prints a table.
#   bash bench/ingest.sh            (needs ../shared/data and a release build;
#                                    LUNGWATCH_BIN=path reuses a binary already built)
# Measures: `inspect` (read, examine, decode to HU) with 1 and 2 decode threads on one
# 133-slice series and on all three; and `serve` ingesting all three series from the drop
# folder (read, hash, examine, store with fsync, index) until every slice is indexed.
set -euo pipefail
case "${1:-}" in -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
cd "$(dirname "$0")/.."
data=../shared/data/covid-ct-md
[ -d "$data" ] || { echo "SKIPPED: $data not present"; exit 0; }
bin=${LUNGWATCH_BIN:-}
if [ -z "$bin" ]; then cargo build --release -q; bin=./target/release/lungwatch; fi
work=$(mktemp -d); trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
total=$(find "$data"/covid19-P002 "$data"/cap-cap002 "$data"/normal-normal002 -maxdepth 1 -name '*.dcm' | wc -l)

mkconf() { # threads stable quiet
  cat > "$work/c$1.toml" <<TOML
[paths]
incoming = "$work/in"
data = "$work/data"
[watch]
rescan_secs = 1
stable_secs = $2
[series]
quiet_secs = $3
[decode]
threads = $1
TOML
}

run_timed() { # label slices cmd...
  local label=$1 n=$2; shift 2
  /usr/bin/time -f "%e %M" -o "$work/t" "$@" >/dev/null
  read -r secs kb < "$work/t"
  printf "| %-44s | %6d | %7.2f | %8.0f | %7.0f |\n" "$label" "$n" "$secs" "$(echo "$n / $secs" | bc -l)" "$((kb / 1024))"
}

echo "| run                                          | slices | wall s | slices/s | RSS MiB |"
echo "|----------------------------------------------|--------|--------|----------|---------|"
for t in 1 2; do
  mkconf $t 0 3600
  run_timed "inspect covid19-P002, $t decode thread(s)" 133 "$bin" inspect --json --config "$work/c$t.toml" "$data/covid19-P002"
done
for t in 1 2; do
  run_timed "inspect all three series, $t decode thread(s)" "$total" "$bin" inspect --json --config "$work/c$t.toml" "$data/covid19-P002" "$data/cap-cap002" "$data/normal-normal002"
done

# serve: drop everything, then time until the index holds every slice.
mkdir -p "$work/in"
cp "$data"/covid19-P002/*.dcm "$work/in/" 2>/dev/null
for s in cap-cap002 normal-normal002; do for f in "$data/$s"/*.dcm; do cp "$f" "$work/in/$s-$(basename "$f")"; done; done
for f in "$data"/covid19-P002/*.dcm; do mv "$work/in/$(basename "$f")" "$work/in/P002-$(basename "$f")"; done
start=$(date +%s.%N)
$bin serve --config "$work/c2.toml" 2>"$work/serve.log" & pid=$!
until [ "$("$bin" status --json --config "$work/c2.toml" 2>/dev/null | grep -o '"instances": [0-9]*' | grep -o '[0-9]*$' || echo 0)" = "$total" ]; do sleep 0.1; done
end=$(date +%s.%N)
rss_kb=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
kill -TERM $pid; wait $pid || true
secs=$(echo "$end - $start" | bc -l)
printf "| %-44s | %6d | %7.2f | %8.0f | %7.0f |\n" "serve: drop folder to indexed (fsync each)" "$total" "$secs" "$(echo "$total / $secs" | bc -l)" "$((rss_kb / 1024))"
