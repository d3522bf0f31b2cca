//! Running `gracerpc rollout` from a test and reading its JSON report.
//!
//! Standalone module: include it with `#[path = "support/rollout.rs"] mod rollout;`.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// A short rollout the tests share: 3 nodes, each restarted once, half a second of load
/// between restarts. Tests append their own flags.
pub const ONE_ROUND: &[&str] = &["--nodes", "3", "--rounds", "1", "--settle", "500ms"];

/// Where the report goes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// `--json`: stdout holds the JSON object alone.
    Stdout,
    /// `--json-file`: written to a file.
    File,
}

/// Runs `gracerpc rollout` with `args` and returns its JSON report and exit code. `name`
/// keeps the report files of tests running at once apart.
pub fn run(name: &str, args: &[&str], report: Report) -> (serde_json::Value, Option<i32>) {
    let (value, code, _) = run_logged(name, args, report);
    (value, code)
}

/// [`run`], and what the command wrote on stderr (its log).
pub fn run_logged(
    name: &str,
    args: &[&str],
    report: Report,
) -> (serde_json::Value, Option<i32>, String) {
    let json: PathBuf = std::env::temp_dir().join(format!(
        "gracerpc-test-rollout-{name}-{}.json",
        std::process::id()
    ));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gracerpc"));
    cmd.arg("rollout").args(args);
    match report {
        Report::Stdout => cmd.arg("--json"),
        Report::File => cmd.arg("--json-file").arg(&json),
    };
    let out = cmd.output().expect("run gracerpc rollout");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let text = match report {
        Report::Stdout => Ok(stdout.to_string()),
        Report::File => std::fs::read_to_string(&json),
    };
    let value = text
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        .unwrap_or_else(|e| {
            panic!(
                "no JSON report ({e}); stdout:\n{stdout}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let _ = std::fs::remove_file(&json);
    (
        value,
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The number under `key` in the report.
pub fn field(json: &serde_json::Value, key: &str) -> u64 {
    json[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a number in {json}"))
}

/// Asserts the promise on a report: nothing failed, ran twice, got lost or mismatched, the
/// verdict is PASS and the command exited 0.
pub fn assert_clean(r: &serde_json::Value, code: Option<i32>) {
    for key in ["failed", "duplicates", "lost", "mismatched"] {
        assert_eq!(field(r, key), 0, "{key}: {r}");
    }
    assert_eq!(r["verdict"], "PASS", "{r}");
    assert_eq!(code, Some(0), "a clean rollout exits 0: {r}");
}
