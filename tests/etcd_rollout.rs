//! The main job through etcd: `gracerpc rollout --registry etcd` restarts every node under load
//! while the callers know the nodes only from etcd.
#![cfg(feature = "etcd")]

mod etcd_support;

#[path = "support/rollout.rs"]
mod rollout;

use rollout::{Report, field};

#[test]
fn rolling_restart_discovered_only_through_etcd_fails_loses_and_duplicates_nothing() {
    if !etcd_support::etcd_installed("rollout_through_etcd") {
        return;
    }
    let (r, code) = rollout::run(
        "etcd",
        &[&["--registry", "etcd"], rollout::ONE_ROUND].concat(),
        Report::File,
    );
    assert_eq!(r["discovery"], "etcd", "{r}");
    assert_eq!(field(&r, "restarts"), 3, "{r}");
    rollout::assert_clean(&r, code);
    assert!(
        field(&r, "sent") >= 1000,
        "the load must be in the thousands: {r}"
    );
}
