#!/usr/bin/env bash
# Soak: `gracerpc rollout` for a long stretch (default 10 minutes) with many rounds of graceful
# restarts under load, then the figures: calls, failed / duplicates / lost from rollout's audit,
# and the peak RSS (VmHWM) of the `gracerpc serve` nodes and of the rollout process (the client).
#
# Not part of the test command. Usage:
#   scripts/soak.sh                     # 600 s, 3 nodes, graceful
#   DURATION=120 MODE=kill scripts/soak.sh
# Environment: DURATION (s), NODES, CONCURRENCY, WORK_MS, SETTLE_MS, MODE, OUT (directory for
# the report, the rollout output and the RSS samples; default a new temp directory).
# Exit status: rollout's (non-zero if any call failed, was lost or ran twice), or 124 if it ran
# past DURATION + 5 minutes and was stopped.
set -u

DURATION=${DURATION:-600}
NODES=${NODES:-3}
CONCURRENCY=${CONCURRENCY:-32}
WORK_MS=${WORK_MS:-1}
SETTLE_MS=${SETTLE_MS:-300}
MODE=${MODE:-graceful}
OUT=${OUT:-$(mktemp -d /tmp/gracerpc-soak.XXXXXX)}
mkdir -p "$OUT"

cd "$(dirname "$0")/.."
nice -n 10 cargo build --release --bin gracerpc || exit 1
# A copy: rollout restarts nodes from its own executable, which a rebuild must not replace.
cp target/release/gracerpc "$OUT/gracerpc" || exit 1
BIN=$OUT/gracerpc

echo "soak: ${DURATION}s of rollout, $NODES nodes, $CONCURRENCY callers, mode $MODE; output in $OUT"
# --rounds is only a ceiling: --duration ends the run at a round boundary.
timeout --signal=KILL $((DURATION + 300)) nice -n 10 "$BIN" rollout \
    --nodes "$NODES" --concurrency "$CONCURRENCY" --work-ms "$WORK_MS" \
    --settle-ms "$SETTLE_MS" --mode "$MODE" --rounds 100000 --duration "$DURATION" \
    --json-file "$OUT/report.json" >"$OUT/rollout.txt" 2>"$OUT/rollout.log" &
TIMEOUT_PID=$!

# Sample VmHWM of the rollout process (the child of `timeout`) and of its `gracerpc serve`
# children until it ends. Nodes live one round each, so sample often.
peak_node=0 peak_node_pid=- peak_client=0 samples=0 nodes_seen=0
declare -A seen=()
hwm() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null; }
while kill -0 "$TIMEOUT_PID" 2>/dev/null; do
    for roll in $(pgrep -P "$TIMEOUT_PID" -x gracerpc); do
        h=$(hwm "$roll"); h=${h:-0}
        ((h > peak_client)) && peak_client=$h
        for node in $(pgrep -P "$roll" -x gracerpc); do
            h=$(hwm "$node"); h=${h:-0}
            [[ -z ${seen[$node]:-} ]] && { seen[$node]=1; nodes_seen=$((nodes_seen + 1)); }
            if ((h > peak_node)); then peak_node=$h; peak_node_pid=$node; fi
        done
    done
    samples=$((samples + 1))
    ((samples % 50 == 0)) && echo "$(date +%T) samples $samples node peak ${peak_node} kB client peak ${peak_client} kB" >>"$OUT/rss.txt"
    sleep 0.2
done
wait "$TIMEOUT_PID"
rc=$?

cut -c1-160 "$OUT/rollout.txt"  # drain ms / exit codes have one entry per restart
field() { grep -o "\"$1\": *[0-9]*" "$OUT/report.json" 2>/dev/null | grep -o '[0-9]*$'; }
if [[ -s $OUT/report.json ]]; then
    echo "soak figures ($MODE, ${DURATION}s):"
    for k in restarts sent ok failed duplicates lost mismatched phantom outcome_unknown replayed; do
        printf '  %-16s %s\n' "$k" "$(field "$k")"
    done
else
    echo "soak: no report (rollout exit $rc); see $OUT/rollout.log"
fi
echo "  node peak RSS    ${peak_node} kB (VmHWM, pid $peak_node_pid; $nodes_seen node processes sampled)"
echo "  client peak RSS  ${peak_client} kB (VmHWM of rollout: it keeps one record per call)"
echo "  rollout exit     $rc"
exit "$rc"
