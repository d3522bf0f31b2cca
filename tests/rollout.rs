//! The main job end to end: `gracerpc rollout` against real `gracerpc serve` processes.

#[path = "support/rollout.rs"]
mod rollout;

use rollout::{Report, field};

#[test]
fn graceful_rollout_loses_fails_and_duplicates_nothing() {
    let (r, code) = rollout::run("graceful", rollout::ONE_ROUND, Report::Stdout);
    assert_eq!(field(&r, "restarts"), 3, "{r}");
    // The restart keys (handoff's) are in the same report as every other key.
    assert_eq!(r["restart"], "plain", "{r}");
    assert_eq!(r["startup_burn"], false, "{r}");
    assert_eq!(field(&r, "connections_per_node"), 1, "{r}");
    for key in ["startup_ms", "probe_connects", "conn_refused"] {
        assert!(r[key].is_u64(), "no {key} in {r}");
    }
    rollout::assert_clean(&r, code);
    assert!(
        field(&r, "sent") >= 1000,
        "the load must be in the thousands: {r}"
    );
}

#[test]
fn graceful_rollout_with_two_connections_per_node_loses_nothing() {
    // Every node's GOAWAY reaches the caller on each of its two connections; the load's two
    // drivers each keep to one.
    let (r, code) = rollout::run(
        "graceful-lanes",
        &[rollout::ONE_ROUND, &["--connections", "2"]].concat(),
        Report::Stdout,
    );
    assert_eq!(field(&r, "connections_per_node"), 2, "{r}");
    assert_eq!(field(&r, "restarts"), 3, "{r}");
    rollout::assert_clean(&r, code);
    assert!(
        field(&r, "sent") >= 1000,
        "the load must be in the thousands: {r}"
    );
}

#[test]
fn naive_rollout_shows_failures_the_audit_can_see() {
    let (r, _) = rollout::run(
        "naive",
        &[
            "--nodes",
            "3",
            "--rounds",
            "1",
            "--mode",
            "naive",
            "--settle-ms",
            "500",
        ],
        Report::File,
    );
    assert_eq!(field(&r, "restarts"), 3, "{r}");
    assert!(
        field(&r, "failed") > 0,
        "killing nodes without a drain must fail calls: {r}"
    );
    assert_eq!(field(&r, "duplicates"), 0, "{r}");
    assert_eq!(field(&r, "mismatched"), 0, "{r}");
}
