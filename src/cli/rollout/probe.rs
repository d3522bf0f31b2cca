//! A caller's view of the port during a rollout: a thread that connects to every node's
//! address every few milliseconds, as a new caller would, and counts the connections refused
//! (the port was closed: a caller without another node would see an error or wait).

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often each address is probed.
const EVERY: Duration = Duration::from_millis(2);

/// Counts of a running probe.
pub struct Probe {
    stop: Arc<AtomicBool>,
    pub attempts: Arc<AtomicU64>,
    pub refused: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Probe {
    pub fn start(addrs: Vec<SocketAddr>) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let attempts = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(AtomicU64::new(0));
        let (s, a, r) = (stop.clone(), attempts.clone(), refused.clone());
        let thread = std::thread::Builder::new()
            .name("rollout-probe".into())
            .spawn(move || {
                while !s.load(Ordering::Acquire) {
                    for addr in &addrs {
                        a.fetch_add(1, Ordering::Relaxed);
                        match TcpStream::connect_timeout(addr, Duration::from_millis(500)) {
                            Ok(c) => drop(c), // closed at once: the node sees a caller leave
                            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                                r.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => log::debug!("probe {addr}: {e}"),
                        }
                    }
                    std::thread::sleep(EVERY);
                }
            })
            .ok();
        Probe {
            stop,
            attempts,
            refused,
            thread,
        }
    }

    /// Stops probing; returns (attempts, refused).
    pub fn stop(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (
            self.attempts.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }
}
