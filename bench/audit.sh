#!/usr/bin/env bash
# What the audit trail costs a page request; prints a table.
#   bash bench/audit.sh                     (LUNGWATCH_BENCH_REQUESTS=N, default 2000)
# Runs tests/web/audit.rs's `audit_latency_bench`: two web servers in one process on the same
# database (the study page of a study with two analysed series, a logged-in user, Argon2
# check cached), one with `audit.enabled = true` and one without, requested alternately
# over fresh HTTP/1.0 connections from one client thread, so that other load on the
# machine falls on both alike. Reports the median and p95 latency of each and the
# difference; the target is under 1 ms added at the median. Every audited request is
# checked to have left a row.
set -euo pipefail
case "${1:-}" in -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
cd "$(dirname "$0")/.."
out="$(cargo test --release --test web audit_latency_bench -- --ignored --nocapture --test-threads 1 2>&1)" ||
  { echo "$out" >&2; exit 1; }
echo "study page, $(nproc) CPU cores, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "$out" | grep -E '^\||^target:'
