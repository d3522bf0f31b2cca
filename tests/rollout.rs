//! The main job end to end: `gracerpc rollout` against real `gracerpc serve` processes.

use std::path::PathBuf;
use std::process::Command;

/// Runs `gracerpc rollout` with `args` and returns its JSON report and exit code.
fn rollout(name: &str, args: &[&str]) -> (String, Option<i32>) {
    let json: PathBuf = std::env::temp_dir().join(format!(
        "gracerpc-test-rollout-{name}-{}.json",
        std::process::id()
    ));
    let out = Command::new(env!("CARGO_BIN_EXE_gracerpc"))
        .arg("rollout")
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run gracerpc rollout");
    let report = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let _ = std::fs::remove_file(&json);
    (report, out.status.code())
}

/// The number under `key` in a flat JSON object.
fn field(json: &str, key: &str) -> u64 {
    let pat = format!("\"{key}\": ");
    let at = json
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + pat.len();
    let digits: String = json[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {json}"))
}

#[test]
fn graceful_rollout_loses_fails_and_duplicates_nothing() {
    let (r, code) = rollout(
        "graceful",
        &["--nodes", "3", "--rounds", "1", "--settle-ms", "500"],
    );
    assert_eq!(field(&r, "restarts"), 3, "{r}");
    assert_eq!(field(&r, "failed"), 0, "{r}");
    assert_eq!(field(&r, "duplicates"), 0, "{r}");
    assert_eq!(field(&r, "lost"), 0, "{r}");
    assert_eq!(field(&r, "mismatched"), 0, "{r}");
    assert!(
        field(&r, "sent") >= 1000,
        "the load must be in the thousands: {r}"
    );
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
    );
    assert_eq!(field(&r, "restarts"), 3, "{r}");
    assert!(
        field(&r, "failed") > 0,
        "killing nodes without a drain must fail calls: {r}"
    );
    assert_eq!(field(&r, "duplicates"), 0, "{r}");
    assert_eq!(field(&r, "mismatched"), 0, "{r}");
}
