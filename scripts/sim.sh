#!/usr/bin/env bash
# The deterministic simulations over many seeds: the whole-cluster one (tests/sim_cluster.rs)
# and the per-connection one (tests/sim_random.rs). The test command runs a bounded number of
# seeds; this runs many more.
#
#   scripts/sim.sh                 # SEEDS seeds of each (default 20000)
#   SEEDS=100000 scripts/sim.sh
#   SEED=41 scripts/sim.sh         # replay one seed of the cluster simulation, with its trace
#
# A failing seed prints itself and the command that replays it exactly.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS="${SEEDS:-20000}"
if [[ -n "${SEED:-}" ]]; then
    SIM_CLUSTER_SEED="$SEED" exec nice cargo test --release --all-features --test sim_cluster \
        random_cluster_schedules_keep_every_promise -- --nocapture
fi
echo "sim: $SEEDS seeds of the cluster simulation and of the connection simulation"
SIM_CLUSTER_SEEDS="$SEEDS" nice cargo test --release --all-features --test sim_cluster \
    random_cluster_schedules_keep_every_promise -- --nocapture
SIM_SEEDS="$SEEDS" nice cargo test --release --all-features --test sim_random -- --nocapture
