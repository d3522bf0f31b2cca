//! A real `gracerpc serve` child process for fault tests: started from any `Command` (so it can
//! run inside a network namespace), its `ready <addr>` line awaited with a bound, its stderr
//! kept for assertions, and signals sent to its PID only. Dropping it kills and reaps the
//! process if it still runs, and prints its log if the test is failing.
//!
//! Standalone module: include it with `#[path = "support/serve.rs"] mod serve;`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bound for a process to print `ready` (two busy cores).
pub const START: Duration = Duration::from_secs(15);

/// `gracerpc serve` with `args`, on a free loopback port unless `args` has `--listen`.
pub fn serve_command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gracerpc"));
    c.arg("serve");
    if !args.contains(&"--listen") {
        c.args(["--listen", "127.0.0.1:0"]);
    }
    c.args(args);
    c
}

/// A running `gracerpc serve` process.
pub struct ServeProc {
    child: Child,
    /// The address from its `ready` line.
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
    name: String,
}

impl ServeProc {
    /// Starts `gracerpc serve` with `args` on loopback.
    pub fn start(name: &str, args: &[&str]) -> ServeProc {
        ServeProc::spawn(name, serve_command(args))
    }

    /// Spawns `cmd` (a `gracerpc serve`, maybe wrapped) and waits for its `ready <addr>` line.
    pub fn spawn(name: &str, mut cmd: Command) -> ServeProc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({cmd:?}): {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            for _ in lines {} // keep the pipe drained
        });
        let mut proc = ServeProc {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            log,
            name: name.to_owned(),
        };
        let line = match rx.recv_timeout(START) {
            Ok(Some(Ok(line))) => line,
            other => panic!(
                "{name}: no `ready <addr>` line within {START:?}: {other:?}; log:\n{}",
                proc.log()
            ),
        };
        proc.addr = line
            .strip_prefix("ready ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{name}: first stdout line is not `ready <addr>`: {line:?}"));
        proc
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` to this process, and only to it.
    pub fn signal(&self, sig: i32) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on the PID of a child we started and have not reaped.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {sig}): {}",
            std::io::Error::last_os_error()
        );
    }

    /// Waits at most `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits, unbounded, for the exit (a blocking `waitpid`, so the moment it returns is the
    /// moment of the exit, not of a poll).
    pub fn wait(&mut self) -> ExitStatus {
        self.child.wait().expect("waitpid")
    }

    /// Waits for the exit and returns its status; panics naming `what` after `timeout`.
    pub fn expect_exit(&mut self, timeout: Duration, what: &str) -> ExitStatus {
        self.wait_exit(timeout).unwrap_or_else(|| {
            panic!(
                "{}: {what}: did not exit within {timeout:?}; log:\n{}",
                self.name,
                self.log()
            )
        })
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Its stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until its stderr has a line containing `needle`; returns that line.
    pub fn wait_log_line(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.log().lines().find(|l| l.contains(needle)) {
                return l.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "{}: no log line with {needle:?} within {timeout:?}; log:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for ServeProc {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- {} (gracerpc serve) log ----\n{}",
                self.name,
                self.log()
            );
        }
    }
}

/// Executions per token in `gracerpc serve` audit files (8-byte big-endian tokens, appended).
pub fn read_audit(files: &[std::path::PathBuf]) -> std::collections::HashMap<u64, u32> {
    let mut runs = std::collections::HashMap::new();
    for f in files {
        let bytes = match std::fs::read(f) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("read {}: {e}", f.display()),
        };
        assert_eq!(bytes.len() % 8, 0, "{}: torn audit record", f.display());
        for c in bytes.chunks_exact(8) {
            *runs
                .entry(u64::from_be_bytes(c.try_into().unwrap()))
                .or_default() += 1;
        }
    }
    runs
}

/// A temporary directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("gracerpc-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn file(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
