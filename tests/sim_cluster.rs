//! The whole-cluster deterministic simulation (`support/cluster_sim.rs`) over many seeds: a
//! bounded number here; `scripts/sim.sh` runs more. `SIM_CLUSTER_SEED=n` replays one seed
//! exactly; `SIM_CLUSTER_SEEDS=n` runs seeds 0..n.

mod support;

use support::cluster_sim::{Rng, Scenario, World};

/// Seeds run by the test command (under 20 s on a loaded 2-core machine).
const DEFAULT_SEEDS: u64 = 40;

fn run_seed(seed: u64) -> String {
    let mut rng = Rng(seed);
    let sc = Scenario::random(&mut rng);
    World::new(seed, sc).run()
}

#[test]
fn random_cluster_schedules_keep_every_promise() {
    if let Some(seed) = std::env::var("SIM_CLUSTER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        println!("{}", run_seed(seed));
        return;
    }
    let n = std::env::var("SIM_CLUSTER_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEEDS);
    for seed in 0..n {
        let summary = run_seed(seed);
        if seed < 3 || seed % 100 == 0 {
            println!("{summary}");
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_run() {
    for seed in [3, 17] {
        assert_eq!(run_seed(seed), run_seed(seed), "seed {seed} is not deterministic");
    }
}
