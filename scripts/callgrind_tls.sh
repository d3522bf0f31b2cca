#!/usr/bin/env bash
# Instructions per call over TLS against plaintext (benches/tls.rs's profile mode), both sides
# in one process: (Ir(2N) - Ir(N)) / N from callgrind's totals, so start-up, the handshake and
# warm-up cancel out. Deterministic enough to compare commits on a loaded machine (callgrind
# counts rep-prefixed memset/memcpy per byte, so zeroing weighs more here than in time).
# Usage: scripts/callgrind_tls.sh [N] [DEPTH] (defaults 2000, 1 = sequential)
set -euo pipefail
n=${1:-2000}
depth=${2:-1}
cd "$(dirname "$0")/.."
cargo bench --features tls --bench tls --no-run 2>/dev/null
bin=$(ls -t target/release/deps/tls-* | grep -v '\.d$' | head -1)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
ir() { # side body calls
    GRACERPC_PROFILE=$1 GRACERPC_BODY=$2 GRACERPC_N=$3 GRACERPC_DEPTH=$depth \
        valgrind --tool=callgrind --callgrind-out-file="$out/$1-$2-$3" "$bin" >/dev/null 2>&1
    grep '^summary:' "$out/$1-$2-$3" | awk '{print $2}'
}
for body in 32 4096; do
    for side in plain tls; do
        a=$(ir "$side" "$body" "$n")
        b=$(ir "$side" "$body" $((2 * n)))
        echo "$side $body B, depth $depth: $(((b - a) / n)) instructions per call"
    done
done
