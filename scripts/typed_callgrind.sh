#!/usr/bin/env bash
# Instructions per call, typed vs bytes, 64 in flight, both sides in one process (issue 12):
# (Ir(2N) - Ir(N)) / N for each mode, from callgrind's totals. Usage: scripts/typed_callgrind.sh [N]
set -euo pipefail
n=${1:-2560}
cd "$(dirname "$0")/.."
cargo bench --bench typed_calls --no-run 2>/dev/null
bin=$(ls -t target/release/deps/typed_calls-* | grep -v '\.d$' | head -1)
out=$(mktemp -d)
ir() { # mode calls
    valgrind --tool=callgrind --callgrind-out-file="$out/$1-$2" "$bin" "$1" "$2" >/dev/null 2>&1
    grep '^summary:' "$out/$1-$2" | awk '{print $2}'
}
for mode in bytes typed typed_serde_bytes; do
    a=$(ir "$mode" "$n"); b=$(ir "$mode" $((2 * n)))
    echo "$mode: $(( (b - a) / n )) instructions per call (Ir $a for $n calls, $b for $((2 * n)))"
done
rm -rf "$out"
