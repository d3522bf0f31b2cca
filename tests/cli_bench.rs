//! `gracerpc bench` against a real node: its JSON report counts every call and says what the
//! calls cost the bench's own process (CPU time and context switches per call).

#[path = "support/serve.rs"]
mod serve;

use std::process::Command;
use std::time::Duration;

use serve::ServeProc;

#[test]
fn bench_json_reports_counts_latency_and_its_own_cost_per_call() {
    let mut node = ServeProc::start("bench-target", &[]);
    let addr = node.addr.to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_gracerpc"))
        .args([
            "bench",
            "--nodes",
            &addr,
            "--concurrency",
            "8",
            "--duration",
            "300ms",
            // Two drivers, each on a connection of its own.
            "--drivers",
            "2",
            "--connections",
            "2",
        ])
        .arg("--json")
        .output()
        .expect("run gracerpc bench");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON object");
    let num = |k: &str| {
        report[k]
            .as_f64()
            .unwrap_or_else(|| panic!("no number {k:?} in {report}"))
    };
    assert!(num("sent") > 0.0, "{report}");
    assert_eq!(num("ok"), num("sent"), "{report}");
    assert_eq!(num("failed"), 0.0, "{report}");
    assert!(
        num("p50_us") >= 1.0 && num("p50_us") <= num("p99_us"),
        "{report}"
    );
    // Every call costs its caller some CPU; a figure of 0 means it was not measured.
    assert!(num("cpu_us_per_call") > 0.0, "{report}");
    assert!(num("context_switches_per_call") >= 0.0, "{report}");
    node.signal(libc::SIGTERM);
    assert!(
        node.expect_exit(Duration::from_secs(30), "the node drains")
            .success()
    );
}

#[test]
fn bench_refuses_more_than_16_connections_per_node() {
    let out = Command::new(env!("CARGO_BIN_EXE_gracerpc"))
        .args(["bench", "--nodes", "127.0.0.1:9", "--connections", "17"])
        .output()
        .expect("run gracerpc bench");
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("between 1 and 16"), "{err}");
}
