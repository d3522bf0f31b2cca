#!/usr/bin/env bash
# Instructions per call, typed vs bytes, 64 in flight, both sides in one process (issue 12):
# (Ir(2N) - Ir(N)) / N for each mode, from callgrind's totals, the median of R runs (thread
# scheduling under valgrind moves a single run's figure by a few per cent), and its ratio to
# the bytes call's. Usage: scripts/typed_callgrind.sh [N] [R]
set -euo pipefail
n=${1:-10240}
runs=${2:-3}
cd "$(dirname "$0")/.."
cargo bench --bench typed_calls --no-run 2>/dev/null
bin=$(ls -t target/release/deps/typed_calls-* | grep -v '\.d$' | head -1)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
ir() { # mode calls
    valgrind --tool=callgrind ${VG_OPTS:-} --callgrind-out-file="$out/$1-$2" "$bin" "$1" "$2" >/dev/null 2>&1
    grep '^summary:' "$out/$1-$2" | awk '{print $2}'
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }
declare -A per_call
for mode in bytes typed typed_serde_bytes; do
    all=""
    for _ in $(seq "$runs"); do
        a=$(ir "$mode" "$n"); b=$(ir "$mode" $((2 * n)))
        all+="$(( (b - a) / n ))"$'\n'
    done
    per_call[$mode]=$(printf '%s' "$all" | median)
    echo "$mode: ${per_call[$mode]} instructions per call (median of $runs: $(printf '%s' "$all" | tr '\n' ' '))"
done
for mode in typed typed_serde_bytes; do
    awk -v t="${per_call[$mode]}" -v b="${per_call[bytes]}" -v m="$mode" \
        'BEGIN {printf "%s / bytes: %.3f\n", m, t / b}'
done
