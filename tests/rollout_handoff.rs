//! `gracerpc rollout --restart handoff` end to end: one node restarted by listener handoff
//! under load, with a slow start, loses, fails and duplicates nothing and never refuses a
//! connection.
#![cfg(target_os = "linux")]

use std::path::PathBuf;
use std::process::Command;

/// Runs `gracerpc rollout` with `args` and returns its JSON report and exit code.
fn rollout(name: &str, args: &[&str]) -> (serde_json::Value, Option<i32>) {
    let json: PathBuf = std::env::temp_dir().join(format!(
        "gracerpc-test-rollout-{name}-{}.json",
        std::process::id()
    ));
    let out = Command::new(env!("CARGO_BIN_EXE_gracerpc"))
        .arg("rollout")
        .args(args)
        .arg("--json-file")
        .arg(&json)
        .output()
        .expect("run gracerpc rollout");
    let report = std::fs::read_to_string(&json)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        .unwrap_or_else(|e| {
            panic!(
                "no JSON report ({e}); stdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let _ = std::fs::remove_file(&json);
    (report, out.status.code())
}

/// The number under `key` in the report.
fn field(json: &serde_json::Value, key: &str) -> u64 {
    json[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a number in {json}"))
}

#[test]
fn a_single_node_restarted_by_handoff_never_refuses_and_loses_nothing() {
    let (r, code) = rollout(
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
    );
    assert_eq!(r["restart"], "handoff", "{r}");
    assert_eq!(r["verdict"], "PASS", "{r}");
    assert_eq!(field(&r, "restarts"), 2, "{r}");
    assert_eq!(field(&r, "failed"), 0, "{r}");
    assert_eq!(field(&r, "duplicates"), 0, "{r}");
    assert_eq!(field(&r, "lost"), 0, "{r}");
    assert_eq!(field(&r, "mismatched"), 0, "{r}");
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
