//! The caller side: list the service's prefix, then watch it from the next revision; on any
//! failure keep the last known set, retry with backoff, and list again.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::watch::{Event, Watched};
use super::{Service, parse_addr};
use crate::client::Discovery;

/// How long one watch read waits, so the thread sees its stop flag.
const POLL: Duration = Duration::from_millis(200);
/// A watch silent for this long is replaced by a fresh list and watch, so a registry that
/// vanished without closing the connection is noticed.
const IDLE_RESYNC: Duration = Duration::from_secs(30);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Nodes of a service registered in etcd (implements [`Discovery`]; give it to
/// [`ClientBuilder::discovery`](crate::client::ClientBuilder::discovery)).
///
/// A background thread lists `gracerpc/<service>/` and then watches it from the revision after
/// the list, so no change between the two is missed. Every change is published to
/// [`poll`](Discovery::poll) as the whole current set. When etcd is unreachable, or the watch
/// ends, the thread logs it, keeps the last known set (the table is never emptied because the
/// registry blinked; callers go on calling the nodes they know), and lists again with backoff
/// (100 ms doubling up to 2 s). New nodes enter the client's table as connecting and are chosen
/// only after their READY; removed ones are no longer chosen, while a connection that is
/// draining still receives its answers.
///
/// Dropping it stops the thread (within a fraction of a second).
pub struct EtcdDiscovery {
    latest: Arc<Mutex<Option<Vec<SocketAddr>>>>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for EtcdDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdDiscovery").finish_non_exhaustive()
    }
}

impl EtcdDiscovery {
    /// Starts watching `service`.
    pub fn start(service: Service) -> EtcdDiscovery {
        let latest = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = Watcher {
            service,
            latest: latest.clone(),
            stop: stop.clone(),
            known: BTreeMap::new(),
            published: None,
        };
        let spawned = std::thread::Builder::new()
            .name("gracerpc-etcd-watch".into())
            .spawn(move || watcher.run());
        if let Err(e) = spawned {
            log::error!("discovery: cannot start the etcd watch thread: {e}");
        }
        EtcdDiscovery { latest, stop }
    }
}

impl Discovery for EtcdDiscovery {
    fn poll(&mut self) -> Option<Vec<SocketAddr>> {
        self.latest.lock().take()
    }
}

impl Drop for EtcdDiscovery {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

struct Watcher {
    service: Service,
    latest: Arc<Mutex<Option<Vec<SocketAddr>>>>,
    stop: Arc<AtomicBool>,
    /// key → address, as of the last list and the watch events since.
    known: BTreeMap<Vec<u8>, SocketAddr>,
    published: Option<Vec<SocketAddr>>,
}

impl Watcher {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn run(mut self) {
        let mut backoff = MIN_BACKOFF;
        let mut failing_since: Option<Instant> = None;
        while !self.stopped() {
            let err = match self.sync(&mut failing_since) {
                Ok(()) => continue, // a quiet watch is renewed at once
                Err(e) => e,
            };
            if self.stopped() {
                return;
            }
            let since = match failing_since {
                Some(t) => t,
                None => {
                    // It was healthy until now: start the backoff over.
                    backoff = MIN_BACKOFF;
                    *failing_since.insert(Instant::now())
                }
            };
            log::warn!(
                "discovery: etcd {}: {err}; keeping the last known {} nodes, retrying in {} ms \
                 (unavailable for {} ms)",
                self.service,
                self.published.as_ref().map_or(0, Vec::len),
                backoff.as_millis(),
                since.elapsed().as_millis()
            );
            let end = Instant::now() + backoff;
            while Instant::now() < end && !self.stopped() {
                std::thread::sleep(POLL.min(end.saturating_duration_since(Instant::now())));
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One list, then the watch until it fails or stays idle too long.
    fn sync(&mut self, failing_since: &mut Option<Instant>) -> std::io::Result<()> {
        let etcd = self.service.etcd();
        let prefix = self.service.prefix();
        let (revision, kvs) = etcd.range_prefix(prefix.as_bytes())?;
        let mut watch = etcd.watch_prefix(prefix.as_bytes(), revision + 1, POLL)?;
        if let Some(since) = failing_since.take() {
            log::info!(
                "discovery: etcd {} reachable again after {} ms; watch resumed at revision {}",
                self.service,
                since.elapsed().as_millis(),
                revision + 1
            );
        }
        self.known = kvs
            .into_iter()
            .filter_map(|(k, v)| Some((k, self.addr(&v)?)))
            .collect();
        self.publish();
        let mut last_news = Instant::now();
        while !self.stopped() {
            match watch.next()? {
                Watched::Idle => {
                    if last_news.elapsed() >= IDLE_RESYNC {
                        return Ok(());
                    }
                }
                Watched::Events(events) => {
                    last_news = Instant::now();
                    for ev in events {
                        match ev {
                            Event::Put((k, v)) => match self.addr(&v) {
                                Some(a) => {
                                    self.known.insert(k, a);
                                }
                                None => {
                                    self.known.remove(&k);
                                }
                            },
                            Event::Delete(k) => {
                                self.known.remove(&k);
                            }
                        }
                    }
                    self.publish();
                }
            }
        }
        Ok(())
    }

    fn addr(&self, value: &[u8]) -> Option<SocketAddr> {
        let a = parse_addr(value);
        if a.is_none() {
            log::warn!(
                "discovery: etcd {}: ignoring a value that is not ip:port: {:?}",
                self.service,
                String::from_utf8_lossy(value)
            );
        }
        a
    }

    /// Hands the current set to `poll` if it changed.
    fn publish(&mut self) {
        let mut nodes: Vec<SocketAddr> = self.known.values().copied().collect();
        nodes.sort_unstable();
        nodes.dedup();
        if self.published.as_ref() == Some(&nodes) {
            return;
        }
        log::info!(
            "discovery: etcd {}: {} nodes: {}",
            self.service,
            nodes.len(),
            nodes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.published = Some(nodes.clone());
        *self.latest.lock() = Some(nodes);
    }
}
