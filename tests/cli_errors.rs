//! The CLI fails before any work on what it can check first, and its exit codes say what went
//! wrong (issue 11, item 6).

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use gracerpc::server::{Request, Server};

fn gracerpc(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gracerpc"));
    c.args(args);
    c
}

/// Runs and returns the output, failing if it took longer than `limit` (a rollout run takes
/// seconds; a check before the run takes milliseconds).
fn run_within(mut c: Command, limit: Duration) -> Output {
    let t = Instant::now();
    let out = c.output().expect("run gracerpc");
    assert!(
        t.elapsed() < limit,
        "took {:?}: the error must come before the run\nstderr: {}",
        t.elapsed(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A temp folder of the test's own, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("gracerpc-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }

    fn entries(&self) -> Vec<String> {
        std::fs::read_dir(&self.0)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const QUICK: Duration = Duration::from_secs(3);

#[test]
fn rollout_checks_its_report_paths_before_the_run() {
    let tmp = TempDir::new("paths");
    let missing = tmp.0.join("no/such/folder/report.json");
    let dir = tmp.0.to_string_lossy().into_owned();
    for args in [
        vec!["--json-file", missing.to_str().expect("utf-8")],
        vec!["--plot", missing.to_str().expect("utf-8")],
        vec!["--plot", &dir],
    ] {
        let mut c = gracerpc(&["rollout"]);
        c.args(&args).env("TMPDIR", &tmp.0);
        let out = run_within(c, QUICK);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(args[1]),
            "names the path: {}",
            stderr(&out)
        );
    }
    assert!(
        tmp.entries().is_empty(),
        "nothing left behind: {:?}",
        tmp.entries()
    );
}

#[test]
fn rollout_refuses_zero_rounds_and_a_zero_drain_budget_with_a_reason() {
    for (args, why) in [
        (["--rounds", "0"], "bench"),
        (["--drain-timeout", "0"], "naive"),
    ] {
        let mut c = gracerpc(&["rollout"]);
        c.args(args);
        let out = run_within(c, QUICK);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(why),
            "{args:?} explains itself: {}",
            stderr(&out)
        );
    }
}

#[test]
fn rollout_help_documents_the_exit_codes() {
    let out = run_within(gracerpc(&["rollout", "--help"]), QUICK);
    let help = String::from_utf8_lossy(&out.stdout);
    for code in [
        "0 the promise held",
        "1 the promise was broken",
        "2 bad arguments",
        "3 the run could not be done",
        "4 the run was audited",
    ] {
        assert!(help.contains(code), "--help must say `{code}`:\n{help}");
    }
}

#[test]
fn a_rollout_leaves_no_temporary_folder_behind() {
    let tmp = TempDir::new("tmpdir");
    let json = tmp.0.join("report.json");
    let mut c = gracerpc(&[
        "rollout",
        "--nodes",
        "1",
        "--rounds",
        "1",
        "--settle",
        "0s",
        "--concurrency",
        "2",
        "--drain-timeout",
        "2s",
        "--json-file",
    ]);
    c.arg(&json).env("TMPDIR", &tmp.0);
    let out = run_within(c, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        tmp.entries(),
        vec!["report.json".to_owned()],
        "the run's folder must be removed"
    );
}

#[test]
fn a_rollout_that_cannot_run_exits_3_and_names_the_folder_it_kept() {
    let tmp = TempDir::new("notrun");
    // No etcd can be found with an empty PATH (or the feature is off): the run cannot be done.
    let mut c = gracerpc(&["rollout", "--registry", "etcd", "--nodes", "1"]);
    c.env("TMPDIR", &tmp.0).env("PATH", "");
    let out = run_within(c, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let kept = tmp.entries();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(
        stderr(&out).contains(&kept[0]),
        "the kept folder must be named: {}",
        stderr(&out)
    );
}

#[test]
fn call_resolves_a_host_name_in_nodes() {
    let server = Server::builder()
        .listen("127.0.0.1:0")
        .inline_handler("echo", |r: &Request<'_>| Ok(r.body.to_vec()))
        .spawn()
        .expect("spawn");
    let nodes = format!("localhost:{}", server.local_addr().port());
    let out = run_within(
        gracerpc(&["call", "--nodes", &nodes, "echo", "hello"]),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    server.shutdown();
    let _ = server.wait();
}
