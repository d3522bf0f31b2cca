//! The main job end to end: `gracerpc rollout` against real `gracerpc serve` processes.

use std::path::PathBuf;
use std::process::Command;

/// Runs `gracerpc rollout` with `args` and returns its JSON report and exit code: printed
/// with `--json` (stdout then holds the JSON object alone), or written with `--json-file`.
fn rollout(name: &str, args: &[&str], to_stdout: bool) -> (serde_json::Value, Option<i32>) {
    let json: PathBuf = std::env::temp_dir().join(format!(
        "gracerpc-test-rollout-{name}-{}.json",
        std::process::id()
    ));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gracerpc"));
    cmd.arg("rollout").args(args);
    if to_stdout {
        cmd.arg("--json");
    } else {
        cmd.arg("--json-file").arg(&json);
    }
    let out = cmd.output().expect("run gracerpc rollout");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let text = if to_stdout {
        Ok(stdout.to_string())
    } else {
        std::fs::read_to_string(&json)
    };
    let report = text
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        .unwrap_or_else(|e| {
            panic!(
                "no JSON report ({e}); stdout:\n{stdout}\nstderr:\n{}",
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
fn graceful_rollout_loses_fails_and_duplicates_nothing() {
    let (r, code) = rollout(
        "graceful",
        &["--nodes", "3", "--rounds", "1", "--settle", "500ms"],
        true,
    );
    assert_eq!(field(&r, "restarts"), 3, "{r}");
    // The restart keys (handoff's) are in the same report as every other key.
    assert_eq!(r["restart"], "plain", "{r}");
    assert_eq!(r["startup_burn"], false, "{r}");
    for key in ["startup_ms", "probe_connects", "conn_refused"] {
        assert!(r[key].is_u64(), "no {key} in {r}");
    }
    assert_eq!(field(&r, "failed"), 0, "{r}");
    assert_eq!(field(&r, "duplicates"), 0, "{r}");
    assert_eq!(field(&r, "lost"), 0, "{r}");
    assert_eq!(field(&r, "mismatched"), 0, "{r}");
    assert!(
        field(&r, "sent") >= 1000,
        "the load must be in the thousands: {r}"
    );
    assert_eq!(r["verdict"], "PASS", "{r}");
    assert_eq!(
        code,
        Some(0),
        "graceful rollout exits 0 when the audit is clean: {r}"
    );
}

#[test]
fn naive_rollout_shows_failures_the_audit_can_see() {
    let (r, _) = rollout(
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
        false,
    );
    assert_eq!(field(&r, "restarts"), 3, "{r}");
    assert!(
        field(&r, "failed") > 0,
        "killing nodes without a drain must fail calls: {r}"
    );
    assert_eq!(field(&r, "duplicates"), 0, "{r}");
    assert_eq!(field(&r, "mismatched"), 0, "{r}");
}
