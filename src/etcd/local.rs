//! A throwaway single-member etcd on loopback, for `gracerpc rollout --registry etcd` and for
//! tests: its own data directory, free ports, stopped by its PID.

use std::fs::File;
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Service;
use super::client::Etcd;

/// How long etcd may take to answer after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A local etcd process. Dropping it kills the process (by PID) and waits for it.
#[derive(Debug)]
pub struct LocalEtcd {
    exe: PathBuf,
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

impl LocalEtcd {
    /// The `etcd` binary on the `PATH`, if there is one.
    pub fn find() -> Option<PathBuf> {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|d| d.join("etcd"))
            .find(|p| p.is_file())
    }

    /// Starts etcd (found on the `PATH`) with its data and log under `dir`, on free loopback
    /// ports, and waits until it answers.
    pub fn start(dir: &Path) -> io::Result<LocalEtcd> {
        let exe = LocalEtcd::find().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "`etcd` is not on the PATH (Debian/Ubuntu: apt-get install etcd-server)",
            )
        })?;
        std::fs::create_dir_all(dir)?;
        let mut last = io::Error::other("etcd did not start");
        // A free port found by binding port 0 may be taken again before etcd binds it: retry.
        for _ in 0..3 {
            let mut etcd = LocalEtcd {
                exe: exe.clone(),
                dir: dir.to_owned(),
                client_port: free_port()?,
                peer_port: free_port()?,
                child: None,
            };
            match etcd.restart() {
                Ok(()) => return Ok(etcd),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// `HOST:PORT` of the client port.
    pub fn authority(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// `etcd://127.0.0.1:PORT/service`.
    pub fn url(&self, service: &str) -> String {
        format!("etcd://{}/{service}", self.authority())
    }

    /// The service `service` in this etcd.
    pub fn service(&self, service: &str) -> Service {
        Service {
            authority: self.authority(),
            name: service.to_owned(),
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The file etcd logs to.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("etcd.log")
    }

    /// Kills the process (SIGKILL, by PID) and waits for it. The data directory is kept, so
    /// [`restart`](Self::restart) brings the same store back.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// (Re)starts etcd on the same ports and data directory and waits until it answers.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new(&self.exe)
            .arg("--name=gracerpc")
            .arg(format!("--data-dir={}", self.dir.join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=gracerpc={peer}"))
            .args(["--logger=zap", "--log-level=warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()?;
        self.child = Some(child);
        let etcd = Etcd::new(&self.authority(), Duration::from_millis(500));
        let end = Instant::now() + START_TIMEOUT;
        loop {
            if etcd.range_prefix(b"gracerpc/").is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(io::Error::other(format!(
                    "etcd exited at start ({status}); see {}",
                    self.log_path().display()
                )));
            }
            if Instant::now() >= end {
                self.kill();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "etcd did not answer within {START_TIMEOUT:?}; see {}",
                        self.log_path().display()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for LocalEtcd {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
