#!/usr/bin/env bash
# Syscalls per call of each thread, for one case of benches/roundtrip.rs (GRACERPC_PROFILE):
# perf counts every raw_syscalls:sys_enter by thread name (comm), divided by the case's calls.
# Server threads: gracerpc-server, gracerpc-worker-*, raw-srv; the rest is the caller side
# (the calling / load-generating thread and gracerpc-client-io, shown as gracerpc-client).
# The fixture (server start, connects) is included: a few hundred syscalls in all.
# Usage: scripts/syscalls_per_call.sh CASE...   e.g. sequential pipelined raw_pipelined
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench roundtrip --no-run 2>/dev/null
bin=$(ls -t target/release/deps/roundtrip-* | grep -v '\.d$' | head -1)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for case in "$@"; do
    GRACERPC_PROFILE=$case perf record -q -e raw_syscalls:sys_enter -c 1 -o "$out/data" \
        "$bin" >"$out/log" 2>&1
    calls=$(sed -n "s/^$case: \([0-9]*\) calls.*/\1/p" "$out/log")
    echo "$case ($calls calls): syscalls per call by thread"
    perf report -i "$out/data" --stdio --sort comm -F sample,comm 2>/dev/null |
        awk -v n="$calls" '!/^#/ && NF == 2 { printf "  %-20s %6.3f\n", $2, $1 / n }'
done
