//! Listener handoff with real `gracerpc serve` processes on loopback: under load nothing fails,
//! runs twice or is lost and the port never refuses a connection, also for two upgrades in a
//! row (the second while the first old process still drains); a failed upgrade (the new
//! process dies, or is never ready) leaves the old one serving.
#![cfg(target_os = "linux")]

#[path = "support/serve.rs"]
mod serve;

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gracerpc::client::Client;
use serve::{ServeProc, TempDir, read_audit};

const EXIT: Duration = Duration::from_secs(30);

/// One call: its token and its result.
type Call = (u64, Result<Vec<u8>, String>);

/// Callers of `record` on `addr`, each call with a unique token, until stopped (bounded in
/// count and time).
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<Call>>>,
}

impl Load {
    fn start(client: &Client, callers: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..callers)
            .map(|c| {
                let (client, stop) = (client.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut out = Vec::new();
                    let end = Instant::now() + Duration::from_secs(60);
                    let mut n = 0u64;
                    while !stop.load(Ordering::Acquire) && Instant::now() < end && n < 200_000 {
                        let token = (c << 40) | n;
                        n += 1;
                        let r = client
                            .call("record", &token.to_be_bytes())
                            .map_err(|e| e.to_string());
                        out.push((token, r));
                    }
                    out
                })
            })
            .collect();
        Load { stop, threads }
    }

    fn stop(self) -> Vec<Call> {
        self.stop.store(true, Ordering::Release);
        self.threads
            .into_iter()
            .flat_map(|t| t.join().expect("load thread"))
            .collect()
    }
}

/// Connects to `addr` like a new caller every 2 ms; counts refusals.
struct Probe {
    stop: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
    thread: JoinHandle<u64>,
}

impl Probe {
    fn start(addr: SocketAddr) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicU64::new(0));
        let (s, r) = (stop.clone(), refused.clone());
        let thread = std::thread::spawn(move || {
            let mut tries = 0;
            while !s.load(Ordering::Acquire) && tries < 100_000 {
                tries += 1;
                if let Err(e) = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
                    && e.kind() == std::io::ErrorKind::ConnectionRefused
                {
                    r.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            tries
        });
        Probe {
            stop,
            refused,
            thread,
        }
    }

    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Release);
        let tries = self.thread.join().expect("probe");
        (tries, self.refused.load(Ordering::Relaxed))
    }
}

fn node(name: &str, dir: &TempDir, extra: &[&str]) -> ServeProc {
    let sock = dir.file("up.sock");
    let audit = dir.file("audit");
    let mut args = vec![
        "--upgrade",
        sock.to_str().unwrap(),
        "--audit",
        audit.to_str().unwrap(),
        "--workers",
        "8",
    ];
    args.extend_from_slice(extra);
    ServeProc::start(name, &args)
}

fn check_audit(dir: &TempDir, calls: &[Call]) {
    let runs = read_audit(&[dir.file("audit")]);
    let failed: Vec<_> = calls.iter().filter(|(_, r)| r.is_err()).take(5).collect();
    assert!(
        failed.is_empty(),
        "calls failed during the handoff: {failed:?}"
    );
    for (token, _) in calls {
        assert_eq!(
            runs.get(token).copied(),
            Some(1),
            "token {token:x} answered ok must have run exactly once"
        );
    }
    assert_eq!(runs.len(), calls.len(), "tokens ran that no call sent");
}

#[test]
fn two_handoffs_in_a_row_under_load_lose_nothing_and_never_refuse() {
    let dir = TempDir::new("handoff-load");
    // `record` takes 150 ms: the first old process is still draining when the second upgrade
    // comes.
    let mut a = node("A", &dir, &["--work-ms", "150"]);
    let addr = a.addr;
    let client = Client::builder().nodes([addr]).build().unwrap();
    assert!(client.wait_ready(addr, Duration::from_secs(10)));
    let probe = Probe::start(addr);
    let load = Load::start(&client, 16);
    std::thread::sleep(Duration::from_millis(300));

    let mut b = node("B", &dir, &["--work-ms", "150", "--startup-ms", "400"]);
    assert_eq!(b.addr, addr, "B serves the very same port");
    // At once, while A still drains its 150 ms calls: the second upgrade goes to B.
    let mut c = node("C", &dir, &["--work-ms", "150", "--startup-ms", "200"]);
    assert_eq!(c.addr, addr);
    a.wait_log_line("handoff committed", Duration::from_secs(5));
    b.wait_log_line("handoff committed", Duration::from_secs(5));
    let st = a.expect_exit(EXIT, "A drains and exits after the handoff");
    assert!(st.success(), "A: {st:?}\n{}", a.log());
    let st = b.expect_exit(EXIT, "B drains and exits after the second handoff");
    assert!(st.success(), "B: {st:?}\n{}", b.log());
    std::thread::sleep(Duration::from_millis(300));

    let calls = load.stop();
    let (tries, refused) = probe.stop();
    assert!(c.running(), "C serves");
    c.signal(libc::SIGTERM);
    assert!(c.expect_exit(EXIT, "C drains").success());
    assert!(calls.len() > 50, "too few calls to judge: {}", calls.len());
    assert_eq!(
        refused, 0,
        "{refused} of {tries} connects were refused: the port closed"
    );
    check_audit(&dir, &calls);
    assert!(
        !dir.file("up.sock").exists(),
        "the last owner (C) unlinks the upgrade socket when it stops"
    );
}

#[test]
fn an_upgrade_that_dies_or_is_never_ready_leaves_the_old_node_serving() {
    let dir = TempDir::new("handoff-fail");
    let mut a = node("A", &dir, &["--upgrade-timeout", "1.5"]);
    let addr = a.addr;
    let client = Client::builder().nodes([addr]).build().unwrap();
    assert!(client.wait_ready(addr, Duration::from_secs(10)));
    let load = Load::start(&client, 4);

    // 1. The new process dies after receiving the listeners.
    let sock = dir.file("up.sock");
    let audit = dir.file("audit");
    let mut cmd = serve::serve_command(&[
        "--upgrade",
        sock.to_str().unwrap(),
        "--audit",
        audit.to_str().unwrap(),
        "--startup-ms",
        "60000",
    ]);
    let mut b = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    a.wait_log_line("upgrade requested by pid", Duration::from_secs(10));
    b.kill().unwrap();
    b.wait().unwrap();
    a.wait_log_line("upgrade failed, still serving", Duration::from_secs(10));

    // 2. The new process is never ready: A gives up after --upgrade-timeout, the new one exits
    //    at once having accepted nothing.
    let mut slow = ServeProcLike::spawn(cmd);
    let st = slow.wait(Duration::from_secs(20));
    assert_eq!(st.code(), Some(1), "a never-ready upgrader exits 1");
    // A logs the second failure (its stderr is read by another thread: wait for it).
    let end = Instant::now() + Duration::from_secs(10);
    while a.log().matches("upgrade failed, still serving").count() < 2 {
        assert!(Instant::now() < end, "A logs both failures:\n{}", a.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    a.wait_log_line("no READY within 1500 ms", Duration::from_secs(5));

    // A still serves, old connections and new ones alike, and the upgrade path still works.
    assert!(a.running());
    let fresh = Client::builder().nodes([addr]).build().unwrap();
    assert_eq!(fresh.call("echo", b"still here").unwrap(), b"still here");
    let calls = load.stop();
    assert!(
        calls.iter().all(|(_, r)| r.is_ok()),
        "A's callers saw errors"
    );
    let mut c = node("C", &dir, &[]);
    assert_eq!(c.addr, addr, "a later upgrade succeeds on the same path");
    assert!(a.expect_exit(EXIT, "A hands off to C").success());
    check_audit(&dir, &calls);
    c.signal(libc::SIGTERM);
    assert!(c.expect_exit(EXIT, "C drains").success());
}

/// A child whose output is not read for a `ready` line.
struct ServeProcLike(std::process::Child);

impl ServeProcLike {
    fn spawn(mut cmd: std::process::Command) -> ServeProcLike {
        ServeProcLike(
            cmd.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        )
    }

    fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let end = Instant::now() + timeout;
        loop {
            if let Some(st) = self.0.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < end,
                "the upgrader did not exit in {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ServeProcLike {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn sighup_makes_a_node_start_its_successor_which_takes_over() {
    let dir = TempDir::new("handoff-hup");
    let mut a = node("A", &dir, &[]);
    let addr = a.addr;
    let client = Client::builder().nodes([addr]).build().unwrap();
    assert!(client.wait_ready(addr, Duration::from_secs(10)));
    let load = Load::start(&client, 4);
    std::thread::sleep(Duration::from_millis(200));
    a.signal(libc::SIGHUP);
    let line = a.wait_log_line("SIGHUP: started pid", Duration::from_secs(10));
    let pid: libc::pid_t = line
        .split("started pid ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"));
    let _guard = KillOnDrop(pid);
    let st = a.expect_exit(EXIT, "A hands off to its successor and drains");
    assert!(st.success(), "A: {st:?}\n{}", a.log());
    a.wait_log_line(
        &format!("handoff committed: pid {pid}"),
        Duration::from_secs(10),
    );
    std::thread::sleep(Duration::from_millis(200));
    let calls = load.stop();
    check_audit(&dir, &calls);
    // The successor (A's child, not ours to wait for) serves; stop it by its pid.
    let fresh = Client::builder().nodes([addr]).build().unwrap();
    assert!(
        fresh.call("echo", b"x").is_ok(),
        "the successor serves {addr}"
    );
    // SAFETY: kill(2) on the pid of the successor this test caused to be started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let end = Instant::now() + EXIT;
    // Gone, or a zombie waiting for a reaper that is not us.
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit(')').next().map(|r| r.trim_start().to_owned()))
            .is_some_and(|r| !r.starts_with('Z'))
    };
    while alive() {
        assert!(
            Instant::now() < end,
            "the successor did not exit on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Kills the successor (not our child, so no `Child` to do it) if the test ends early.
struct KillOnDrop(libc::pid_t);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of the successor this test caused to be started; if it
        // already exited, ESRCH (or, after reuse, a process of our own uid: the test runs alone).
        if std::thread::panicking() {
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
}
