//! The whole-cluster deterministic simulation (`support/cluster_sim.rs`) over many seeds: a
//! bounded number here; `scripts/sim.sh` runs more. `SIM_CLUSTER_SEED=n` replays one seed
//! exactly; `SIM_CLUSTER_SEEDS=n` runs seeds 0..n.

mod support;

use support::cluster_sim::{Fault, Rng, Scenario, World};

/// Seeds run by the test command (under 20 s on a loaded 2-core machine).
const DEFAULT_SEEDS: u64 = 200;

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
        assert_eq!(
            run_seed(seed),
            run_seed(seed),
            "seed {seed} is not deterministic"
        );
    }
}

/// The no-growth check finds issue 11's finding 4: a node removed and re-added by discovery
/// leaks its old connection if the driver leaves it open (as `io_loop.rs` did), and holds with
/// the driver closing it once idle.
#[test]
fn a_discovery_flap_that_leaves_the_old_connection_open_is_caught() {
    let flap = |close_removed: bool| {
        let mut sc = Scenario::random(&mut Rng(7));
        sc.faults = vec![
            (
                std::time::Duration::from_millis(100),
                Fault::Flap {
                    client: 0,
                    node: 0,
                    len: std::time::Duration::from_millis(50),
                },
            ),
            (
                std::time::Duration::from_millis(300),
                Fault::Flap {
                    client: 0,
                    node: 0,
                    len: std::time::Duration::from_millis(50),
                },
            ),
        ];
        sc.close_removed = close_removed;
        std::panic::catch_unwind(|| World::new(7, sc).run())
    };
    assert!(
        flap(true).is_ok(),
        "closing removed connections once idle keeps no leak"
    );
    let err = flap(false).expect_err("a leaked connection must fail the no-growth check");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("open connections"), "{msg}");
}
