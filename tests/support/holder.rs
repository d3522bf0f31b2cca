//! Many idle connections held by a child process (the test binary itself, running one named
//! test), so the fd limit only has to hold one end here and this process's RSS is the server's
//! alone. Used by `hostile_conns` and `tls_idle_conns`.
//!
//! Standalone module: include it with `#[path = "support/holder.rs"] mod holder;`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

/// Raises RLIMIT_NOFILE to at least `need`; false if the machine refuses.
pub fn raise_nofile(need: u64) -> bool {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid pointer to an rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return false;
    }
    if lim.rlim_cur >= need {
        return true;
    }
    let want = libc::rlimit {
        rlim_cur: need,
        rlim_max: lim.rlim_max.max(need),
    };
    // SAFETY: a valid pointer to an rlimit. Raising the hard limit needs privileges: if that is
    // refused, try the soft limit alone.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
        return true;
    }
    lim.rlim_max >= need && {
        let soft = libc::rlimit {
            rlim_cur: need,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &soft) == 0 }
    }
}

/// The child process holding the connections; killed if dropped while it runs.
pub struct Holder {
    child: Child,
    lines: Receiver<String>,
}

impl Holder {
    /// Runs the test `name` of this binary as the holder, with `env` set.
    pub fn spawn(name: &str, env: &[(&str, String)]) -> Holder {
        let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
        cmd.args(["--exact", name, "--nocapture", "--quiet"]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the holder process");
        let stdout = child.stdout.take().expect("holder stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Holder { child, lines }
    }

    /// Waits (at most `timeout`) for the holder's `opened N` line; asserts N is `conns`.
    pub fn wait_opened(&mut self, conns: usize, timeout: Duration) {
        let opened = loop {
            match self.lines.recv_timeout(timeout) {
                Ok(line) if line.starts_with("opened ") => break line,
                Ok(_) => {}
                Err(_) => {
                    let _ = self.child.kill();
                    panic!("the holder did not open {conns} connections within {timeout:?}");
                }
            }
        };
        assert_eq!(opened, format!("opened {conns}"));
    }

    /// Closes the holder's stdin: it exits, and the kernel closes every socket it held (FIN).
    pub fn release(&mut self) {
        drop(self.child.stdin.take());
    }

    /// Waits for the holder to exit.
    pub fn wait(mut self) -> ExitStatus {
        self.release();
        self.child.wait().expect("holder wait")
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
