//! The main job through etcd: `gracerpc rollout --registry etcd` restarts every node under load
//! while the callers know the nodes only from etcd.
#![cfg(feature = "etcd")]

mod etcd_support;

use std::path::PathBuf;
use std::process::Command;

/// The value under `key` in a flat JSON object (a number, or a string without its quotes).
/// The value under `key` in the JSON report, as text.
fn field(json: &str, key: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("not JSON ({e}): {json}"));
    match &v[key] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => panic!("no {key} in {json}"),
        other => other.to_string(),
    }
}

fn num(json: &str, key: &str) -> u64 {
    field(json, key)
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {json}"))
}

#[test]
fn rolling_restart_discovered_only_through_etcd_fails_loses_and_duplicates_nothing() {
    if !etcd_support::etcd_installed("rollout_through_etcd") {
        return;
    }
    let json: PathBuf = std::env::temp_dir().join(format!(
        "gracerpc-test-rollout-etcd-{}.json",
        std::process::id()
    ));
    let out = Command::new(env!("CARGO_BIN_EXE_gracerpc"))
        .args([
            "rollout",
            "--registry",
            "etcd",
            "--nodes",
            "3",
            "--rounds",
            "1",
        ])
        .args(["--settle", "500ms", "--json-file"])
        .arg(&json)
        .output()
        .expect("run gracerpc rollout");
    let r = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let _ = std::fs::remove_file(&json);
    assert_eq!(field(&r, "discovery"), "etcd", "{r}");
    assert_eq!(num(&r, "restarts"), 3, "{r}");
    assert_eq!(num(&r, "failed"), 0, "{r}");
    assert_eq!(num(&r, "duplicates"), 0, "{r}");
    assert_eq!(num(&r, "lost"), 0, "{r}");
    assert_eq!(num(&r, "mismatched"), 0, "{r}");
    assert!(
        num(&r, "sent") >= 1000,
        "the load must be in the thousands: {r}"
    );
    assert_eq!(out.status.code(), Some(0), "{r}");
}
