//! `gracerpc rollout --restart handoff` end to end: one node restarted by listener handoff
//! under load, with a slow start, loses, fails and duplicates nothing and never refuses a
//! connection.
#![cfg(target_os = "linux")]

#[path = "support/rollout.rs"]
mod rollout;

use rollout::{Report, field};

#[test]
fn a_single_node_restarted_by_handoff_never_refuses_and_loses_nothing() {
    let (r, code) = rollout::run(
        "handoff",
        &[
            "--nodes",
            "1",
            "--rounds",
            "2",
            "--restart",
            "handoff",
            "--startup",
            "500ms",
            "--settle",
            "300ms",
        ],
        Report::File,
    );
    assert_eq!(r["restart"], "handoff", "{r}");
    rollout::assert_clean(&r, code);
    assert_eq!(field(&r, "restarts"), 2, "{r}");
    assert_eq!(
        field(&r, "conn_refused"),
        0,
        "the port closed during a handoff: {r}"
    );
    assert!(field(&r, "probe_connects") > 0, "{r}");
    assert!(
        field(&r, "sent") >= 1000,
        "the load must be in the thousands: {r}"
    );
    assert_eq!(code, Some(0), "a clean handoff rollout exits 0: {r}");
}
