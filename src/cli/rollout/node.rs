//! One `gracerpc serve` child process of the local cluster.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How a node process is started.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub exe: PathBuf,
    pub work_ms: u64,
    pub warmup_ms: u64,
    pub drain_timeout_s: f64,
    pub naive: bool,
    pub workers: usize,
    pub dir: PathBuf,
    /// `serve --register URL`: the node registers itself in this registry.
    pub register: Option<String>,
    /// `serve --startup`: time from binding to READY, in milliseconds.
    pub startup_ms: u64,
    /// `serve --startup-burn`: spend the startup burning CPU.
    pub startup_burn: bool,
    /// Restart by listener handoff: every node gets `--upgrade dir/node-N.sock`.
    pub handoff: bool,
    /// `serve --handler-mode`.
    pub handler_mode: crate::cli::serve::HandlerMode,
    /// `rollout --tls`: the throwaway certificates every node serves with.
    pub tls: Option<crate::cli::tls::TlsFiles>,
}

/// A running node process. Dropping it kills the process if it is still running.
pub struct NodeProc {
    child: Child,
    pub addr: SocketAddr,
}

impl NodeProc {
    /// Starts `gracerpc serve` listening on `listen` and waits for its `ready <addr>` line.
    pub fn start(spec: &NodeSpec, index: usize, listen: &str) -> io::Result<NodeProc> {
        let audit = audit_path(&spec.dir, index);
        let log = File::options()
            .create(true)
            .append(true)
            .open(log_path(&spec.dir, index))?;
        let mut cmd = Command::new(&spec.exe);
        cmd.arg("serve")
            .args(["--listen", listen])
            .arg("--audit")
            .arg(&audit)
            .args(["--work", &format!("{}ms", spec.work_ms)])
            .args(["--warmup", &format!("{}ms", spec.warmup_ms)])
            .args(["--drain-timeout", &spec.drain_timeout_s.to_string()])
            .args(["--workers", &spec.workers.to_string()])
            .args([
                "--handler-mode",
                match spec.handler_mode {
                    crate::cli::serve::HandlerMode::Blocking => "blocking",
                    crate::cli::serve::HandlerMode::Deferred => "deferred",
                },
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        if spec.naive {
            cmd.arg("--naive");
        }
        if let Some(url) = &spec.register {
            cmd.args(["--register", url]);
        }
        cmd.args(["--startup", &format!("{}ms", spec.startup_ms)]);
        if spec.startup_burn {
            cmd.arg("--startup-burn");
        }
        if spec.handoff {
            cmd.arg("--upgrade").arg(upgrade_path(&spec.dir, index));
        }
        if let Some(t) = &spec.tls {
            cmd.arg("--tls-cert")
                .arg(&t.node_cert)
                .arg("--tls-key")
                .arg(&t.node_key)
                .arg("--tls-client-ca")
                .arg(&t.ca);
        }
        let mut child = cmd.spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout"))?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let bound = Duration::from_secs(10) + Duration::from_millis(spec.startup_ms);
        let line = match rx.recv_timeout(bound) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::other(format!(
                    "node {index} did not print `ready` in {bound:?}"
                )));
            }
        };
        let addr = line
            .trim()
            .strip_prefix("ready ")
            .and_then(|a| a.parse().ok());
        match addr {
            Some(addr) => Ok(NodeProc { child, addr }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(io::Error::other(format!(
                    "node {index} failed to start (see {})",
                    log_path(&spec.dir, index).display()
                )))
            }
        }
    }

    /// Starts a node on a fixed address, retrying briefly while the port is still held.
    pub fn restart(spec: &NodeSpec, index: usize, addr: SocketAddr) -> io::Result<NodeProc> {
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            match NodeProc::start(spec, index, &addr.to_string()) {
                Ok(n) => return Ok(n),
                Err(e) if Instant::now() < end => {
                    log::debug!("restart of node {index} failed ({e}); retrying");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends a signal to this process (and only this one, by its PID).
    pub fn signal(&self, sig: i32) -> io::Result<()> {
        let pid = libc::pid_t::try_from(self.child.id()).map_err(io::Error::other)?;
        // SAFETY: kill(2) with a PID of a child we started and have not reaped yet.
        if unsafe { libc::kill(pid, sig) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Waits up to `timeout` for the process to exit; kills it if it does not.
    pub fn wait_exit(&mut self, timeout: Duration) -> io::Result<(ExitStatus, bool)> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok((status, false));
            }
            if Instant::now() >= end {
                let _ = self.child.kill();
                return Ok((self.child.wait()?, true));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An exit status as a number: the exit code, or minus the signal that ended the process.
pub fn exit_number(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| -s))
        .unwrap_or(i32::MIN)
}

pub fn audit_path(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("node-{index}.audit"))
}

/// The upgrade socket of node `index` (restarts by handoff).
pub fn upgrade_path(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("node-{index}.sock"))
}

pub fn log_path(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("node-{index}.log"))
}

/// The TLS handshakes the nodes of a rollout logged in their drain reports: every node
/// process's line summed, the peak the highest.
pub(super) fn handshake_note(dir: &std::path::Path, nodes: usize) -> String {
    let (mut begun, mut completed, mut peak, mut held, mut procs) = (0u64, 0u64, 0u64, 0u64, 0);
    for i in 0..nodes {
        let log = log_path(dir, i);
        let Ok(text) = std::fs::read_to_string(&log) else {
            continue;
        };
        for line in text.lines() {
            let Some(rest) = line.split("TLS handshakes: ").nth(1) else {
                continue;
            };
            let nums: Vec<u64> = rest
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|w| w.parse().ok())
                .collect();
            if let [b, c, p, h, ..] = nums[..] {
                begun += b;
                completed += c;
                peak = peak.max(p);
                held += h;
                procs += 1;
            }
        }
    }
    format!(
        "TLS (mutual, throwaway CA): {completed} handshakes completed over {procs} node \
         processes, and {} connections that closed before one (the port probe's bare \
         connects); burst: peak {peak} at once on one node, accepting held {held} times at the \
         cap of 64",
        begun.saturating_sub(completed)
    )
}
