//! Shared by the `etcd_*` tests: a real etcd per test, bounded waits.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gracerpc::etcd::LocalEtcd;

/// A local etcd for one test, with its own temp dir; dropped: killed by PID, dir removed.
pub struct TestEtcd {
    pub etcd: LocalEtcd,
    dir: PathBuf,
}

impl Drop for TestEtcd {
    fn drop(&mut self) {
        self.etcd.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether `etcd` is on the PATH. Without it: panics when `CI` is set (CI must install it),
/// otherwise says the test `name` is skipped and returns false.
pub fn etcd_installed(name: &str) -> bool {
    if LocalEtcd::find().is_some() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{name}: `etcd` is not on the PATH but CI is set: \
             .ci/run must `apt-get install -y etcd-server`"
        );
    }
    eprintln!("SKIPPED {name}: `etcd` is not on the PATH (apt-get install etcd-server)");
    false
}

/// Starts an etcd for test `name` (`None`: not installed and not on CI; the test skips).
pub fn etcd(name: &str) -> Option<TestEtcd> {
    if !etcd_installed(name) {
        return None;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "gracerpc-test-{name}-{}-{nanos}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let etcd = LocalEtcd::start(&dir).unwrap_or_else(|e| panic!("{name}: start etcd: {e}"));
    Some(TestEtcd { etcd, dir })
}

/// Polls `f` until it is true; panics with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !f() {
        assert!(
            Instant::now() < end,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
