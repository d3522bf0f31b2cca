//! The server side: register under a lease once READY, keep the lease alive, revoke it before
//! GOAWAY.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::Service;
use super::client::Etcd;
use crate::server::Registrar;

/// Longest wait between two attempts while etcd is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Publishes a server in etcd (implements [`Registrar`]; give it to
/// [`Builder::registrar`](crate::server::Builder::registrar)).
///
/// * `register`: grants a lease of the TTL (default 5 s), puts `gracerpc/<service>/<addr>` on
///   it, and starts a thread that renews the lease every third of its TTL. If etcd is
///   unreachable, or the lease was lost (etcd was down longer than the TTL), that thread
///   registers again, with backoff, logging each failure; the server serves meanwhile.
/// * `deregister`: stops renewing and revokes the lease, which deletes the key at once.
///
/// A node that crashes stops renewing: etcd deletes its key when the TTL runs out.
pub struct EtcdRegistrar {
    service: Service,
    ttl: Duration,
    advertise: Option<SocketAddr>,
    shared: Arc<Shared>,
    keeper: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    /// The lease the key is attached to, once registered.
    lease: Option<i64>,
    /// Deregistered (or dropped): the keeper must stop and never register again.
    stopped: bool,
}

impl std::fmt::Debug for EtcdRegistrar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdRegistrar")
            .field("service", &self.service)
            .field("ttl", &self.ttl)
            .field("advertise", &self.advertise)
            .finish_non_exhaustive()
    }
}

impl EtcdRegistrar {
    /// A registrar for `service`, lease TTL 5 s.
    pub fn new(service: Service) -> EtcdRegistrar {
        EtcdRegistrar {
            service,
            ttl: Duration::from_secs(5),
            advertise: None,
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                wake: Condvar::new(),
            }),
            keeper: None,
        }
    }

    /// The lease TTL: how long a crashed node stays listed (whole seconds, at least 1).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.max(Duration::from_secs(1));
        self
    }

    /// The address to publish, when callers must use another one than the listening address
    /// (e.g. the server listens on `0.0.0.0`).
    pub fn advertise(mut self, addr: SocketAddr) -> Self {
        self.advertise = Some(addr);
        self
    }

    fn stop_keeper(&mut self) -> Option<i64> {
        let lease = {
            let mut st = self.shared.state.lock();
            st.stopped = true;
            st.lease.take()
        };
        self.shared.wake.notify_all();
        lease
    }
}

impl Registrar for EtcdRegistrar {
    fn register(&mut self, addr: SocketAddr) -> io::Result<()> {
        let addr = self.advertise.unwrap_or(addr);
        if addr.ip().is_unspecified() {
            log::warn!(
                "registry: registering {addr}, which callers cannot connect to; \
                 give the address to publish (EtcdRegistrar::advertise, serve --advertise)"
            );
        }
        let keeper = Keeper {
            etcd: self.service.etcd(),
            key: self.service.key(addr),
            value: addr.to_string(),
            ttl_s: self.ttl.as_secs().max(1),
            shared: self.shared.clone(),
        };
        let first = keeper.register();
        self.keeper = Some(
            std::thread::Builder::new()
                .name("gracerpc-etcd-lease".into())
                .spawn(move || keeper.run())?,
        );
        first.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{e} (etcd {}: retrying in the background)", self.service),
            )
        })
    }

    fn deregister(&mut self) -> io::Result<()> {
        let Some(lease) = self.stop_keeper() else {
            log::info!("registry: nothing to deregister (never registered)");
            return Ok(());
        };
        let t = Instant::now();
        self.service.etcd().revoke(lease)?;
        log::info!(
            "registry: deregistered from {} (lease {lease:x} revoked in {} ms)",
            self.service,
            t.elapsed().as_millis()
        );
        Ok(())
    }

    fn handed_off(&mut self) {
        // The new process has put the same key on its own lease (or will within our TTL):
        // revoking ours would delete nothing of its, but the key may still be on ours.
        if self.stop_keeper().is_some() {
            log::info!(
                "registry: handed off; the lease is no longer renewed and the key stays for \
                 the new process"
            );
        }
    }
}

impl Drop for EtcdRegistrar {
    /// Stops renewing (the lease then expires on its own); does not revoke.
    fn drop(&mut self) {
        self.stop_keeper();
    }
}

/// The lease thread.
struct Keeper {
    etcd: Etcd,
    key: String,
    value: String,
    ttl_s: u64,
    shared: Arc<Shared>,
}

impl Keeper {
    /// Grants a lease and puts the key on it, unless deregistration came first.
    fn register(&self) -> io::Result<()> {
        let t = Instant::now();
        let lease = self.etcd.grant(self.ttl_s)?;
        let put = self
            .etcd
            .put(self.key.as_bytes(), self.value.as_bytes(), lease);
        let mut st = self.shared.state.lock();
        if st.stopped || put.is_err() {
            drop(st);
            // Deregistered meanwhile (or the put failed): this lease must not outlive us.
            let _ = self.etcd.revoke(lease);
            return put;
        }
        st.lease = Some(lease);
        log::info!(
            "registry: registered {} = {} (lease {lease:x}, TTL {} s) in {} ms",
            self.key,
            self.value,
            self.ttl_s,
            t.elapsed().as_millis()
        );
        Ok(())
    }

    fn run(self) {
        let period = Duration::from_millis(self.ttl_s * 1000 / 3).max(Duration::from_millis(300));
        let mut backoff = Duration::from_millis(100);
        let mut failing = false;
        let mut wait = period;
        loop {
            {
                let mut st = self.shared.state.lock();
                if !st.stopped {
                    let _ = self.shared.wake.wait_for(&mut st, wait);
                }
                if st.stopped {
                    return;
                }
            }
            let lease = self.shared.state.lock().lease;
            let res = match lease {
                Some(id) => match self.etcd.keep_alive(id) {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) => {
                        log::warn!("registry: lease {id:x} expired; registering again");
                        self.forget(id);
                        self.register()
                    }
                    Err(e) => Err(e),
                },
                None => self.register(),
            };
            match res {
                Ok(()) => {
                    if failing {
                        log::info!("registry: etcd reachable again");
                    }
                    failing = false;
                    backoff = Duration::from_millis(100);
                    wait = period;
                }
                Err(e) => {
                    log::warn!(
                        "registry: {e}; retrying in {} ms (callers keep their connections)",
                        backoff.as_millis()
                    );
                    failing = true;
                    wait = backoff.min(period);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    fn forget(&self, lease: i64) {
        let mut st = self.shared.state.lock();
        if st.lease == Some(lease) {
            st.lease = None;
        }
    }
}
