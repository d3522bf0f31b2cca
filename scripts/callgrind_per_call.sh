#!/usr/bin/env bash
# Instructions per call of a callgrind bench binary (benches/typed_calls.rs,
# benches/metrics_cost.rs): for each mode, (Ir(2N) - Ir(N)) / N from callgrind's totals, so
# start-up and warm-up cancel out. Deterministic for one binary, whatever the machine's load.
# Usage: scripts/callgrind_per_call.sh BENCH MODE... (N from $CALLS, default 2560)
set -euo pipefail
bench=$1
shift
n=${CALLS:-2560}
cd "$(dirname "$0")/.."
cargo bench --bench "$bench" --no-run 2>/dev/null
bin=$(ls -t target/release/deps/"$bench"-* | grep -v '\.d$' | head -1)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
ir() { # mode calls
    valgrind --tool=callgrind --callgrind-out-file="$out/$1-$2" "$bin" "$1" "$2" >/dev/null 2>&1
    grep '^summary:' "$out/$1-$2" | awk '{print $2}'
}
for mode in "$@"; do
    a=$(ir "$mode" "$n")
    b=$(ir "$mode" $((2 * n)))
    echo "$mode: $(((b - a) / n)) instructions per call (Ir $a for $n calls, $b for $((2 * n)))"
done
