#!/usr/bin/env bash
# Server memory over many calls with metrics on and nobody scraping (issue 15): one
# `gracerpc serve --admin-listen` node (per-method histograms on), `gracerpc bench` against it
# in rounds until CALLS calls were made (counted by the bench reports); after each round the
# server's RSS. Flat RSS = nothing kept per call. Scraped once, at the end, to show the count.
# Usage: scripts/metrics_rss.sh [CALLS (default 10000000)] [ROUND (default 10s)]
set -euo pipefail
calls=${1:-10000000}
round=${2:-10s}
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/gracerpc
dir=$(mktemp -d)
"$bin" serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 >"$dir/out" 2>"$dir/err" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do
    grep -q '^ready' "$dir/out" && grep -q '/metrics' "$dir/err" && break
    sleep 0.1
done
addr=$(awk '/^ready/{print $2}' "$dir/out")
admin=$(grep -o 'http://[^/]*/metrics' "$dir/err" | head -1)
rss() { awk '/VmRSS/{print $2}' "/proc/$pid/status"; }
printf '%8s %12s %12s\n' round calls rss_kib
printf '%8s %12s %12s\n' 0 0 "$(rss)"
total=0
for r in $(seq 100); do
    [ "$total" -lt "$calls" ] || break
    n=$("$bin" bench --nodes "$addr" --concurrency 64 --duration "$round" --json |
        grep -o '"ok":[0-9]*' | cut -d: -f2)
    total=$((total + n))
    printf '%8s %12s %12s\n' "$r" "$total" "$(rss)"
done
echo "server's own count: $(curl -s "$admin" | grep '^gracerpc_requests_accepted_total')"
