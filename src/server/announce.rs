//! Announcing the node in a registry: register once READY, withdraw first on the close sequence.
//!
//! The close sequence with a registry is: withdraw the node (so callers that are not connected
//! stop discovering it), *then* GOAWAY (so connected callers learn at once). A registry is a
//! network service that may be slow or down, so the event loop never calls it: a thread of its
//! own runs the [`Registrar`], and the loop waits for the withdrawal only through its waker, for
//! at most the withdrawal timeout, before it sends GOAWAY anyway.
//!
//! ```text
//!   Idle ── READY ──► Registering/Registered ── close sequence ──► Withdrawing ──┬─ done ─────► Withdrawn
//!     │                                                                           └─ timeout ──► Withdrawn
//!     └── close sequence before READY ──► Withdrawn (nothing to withdraw)
//! ```

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::loop_waker::LoopWaker;

/// Publishes the node in a service registry. Implemented by `gracerpc::etcd` (feature `etcd`);
/// any registry can plug in.
///
/// Both methods run on a dedicated thread (never the event loop's) and may block; the server
/// calls them at most once each, in this order.
pub trait Registrar: Send + 'static {
    /// The server is READY and listening on `addr`: publish it, and keep it published (e.g.
    /// renew a lease) until [`deregister`](Registrar::deregister). An error is logged; the
    /// server keeps serving.
    fn register(&mut self, addr: SocketAddr) -> io::Result<()>;

    /// The close sequence has begun: withdraw the node. The server sends GOAWAY as soon as this
    /// returns, or after the withdrawal timeout if it has not returned by then.
    fn deregister(&mut self) -> io::Result<()>;

    /// The node's listeners were handed to a new process (see `gracerpc::handoff`), which
    /// serves the same address and registers it itself: stop keeping the entry alive but do
    /// **not** withdraw it (that would delete the new process's entry). Called instead of
    /// [`deregister`](Registrar::deregister). The default does nothing.
    fn handed_off(&mut self) {}
}

enum Cmd {
    Register(SocketAddr),
    Deregister,
    HandedOff,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    Registered,
    Withdrawing { since: Instant, until: Instant },
    Withdrawn,
}

/// The event loop's side: tells the registrar thread what to do, never waits on it.
pub(crate) struct Announcer {
    tx: Sender<Cmd>,
    addr: SocketAddr,
    timeout: Duration,
    withdrawn: Arc<AtomicBool>,
    phase: Phase,
}

/// Whether the close sequence may go on to GOAWAY.
pub(crate) enum Withdrawal {
    /// Withdrawn (or timed out, or never registered): send GOAWAY now.
    Done,
    /// Still waiting for the registry, at most until then.
    Wait(Instant),
}

impl Announcer {
    /// Starts the registrar's thread. `waker` wakes the loop when the withdrawal is done.
    pub fn spawn(
        mut registrar: Box<dyn Registrar>,
        addr: SocketAddr,
        timeout: Duration,
        waker: Arc<LoopWaker>,
    ) -> io::Result<Announcer> {
        let (tx, rx) = crossbeam_channel::unbounded::<Cmd>();
        let withdrawn = Arc::new(AtomicBool::new(false));
        let flag = withdrawn.clone();
        std::thread::Builder::new()
            .name("gracerpc-registrar".into())
            .spawn(move || {
                while let Ok(cmd) = rx.recv() {
                    match cmd {
                        Cmd::Register(addr) => {
                            if let Err(e) = registrar.register(addr) {
                                log::warn!("registry: could not register {addr}: {e}");
                            }
                        }
                        Cmd::HandedOff => {
                            registrar.handed_off();
                            log::info!("registry: entry left for the process that took over");
                            flag.store(true, Ordering::Release);
                            waker.wake();
                            return;
                        }
                        Cmd::Deregister => {
                            if let Err(e) = registrar.deregister() {
                                log::warn!("registry: could not deregister: {e}");
                            }
                            flag.store(true, Ordering::Release);
                            waker.wake();
                            return;
                        }
                    }
                }
            })?;
        Ok(Announcer {
            tx,
            addr,
            timeout,
            withdrawn,
            phase: Phase::Idle,
        })
    }

    /// The server is READY: register (once).
    pub fn ready(&mut self) {
        if self.phase == Phase::Idle {
            self.phase = Phase::Registered;
            let _ = self.tx.send(Cmd::Register(self.addr));
        }
    }

    /// The listeners were handed off: the entry stays for the new process. The close sequence
    /// that follows does not wait for (or ask for) a withdrawal.
    pub fn hand_off(&mut self) {
        if self.phase == Phase::Registered {
            let _ = self.tx.send(Cmd::HandedOff);
        }
        self.phase = Phase::Withdrawn;
    }

    /// Called when the close sequence starts and again on every wake-up and tick until it
    /// returns [`Withdrawal::Done`].
    pub fn withdraw(&mut self, now: Instant) -> Withdrawal {
        match self.phase {
            Phase::Idle => {
                self.phase = Phase::Withdrawn;
                Withdrawal::Done
            }
            Phase::Registered => {
                let until = now + self.timeout;
                self.phase = Phase::Withdrawing { since: now, until };
                log::info!(
                    "close sequence: withdrawing {} from the registry before GOAWAY (at most {} ms)",
                    self.addr,
                    self.timeout.as_millis()
                );
                if self.tx.send(Cmd::Deregister).is_err() {
                    self.phase = Phase::Withdrawn;
                    return Withdrawal::Done;
                }
                self.withdraw(now)
            }
            Phase::Withdrawing { since, until } => {
                if self.withdrawn.load(Ordering::Acquire) {
                    log::info!(
                        "close sequence: withdrawn from the registry in {} ms; sending GOAWAY",
                        now.saturating_duration_since(since).as_millis()
                    );
                } else if now >= until {
                    log::warn!(
                        "close sequence: the registry did not confirm the withdrawal within {} ms; \
                         sending GOAWAY anyway",
                        self.timeout.as_millis()
                    );
                } else {
                    return Withdrawal::Wait(until);
                }
                self.phase = Phase::Withdrawn;
                Withdrawal::Done
            }
            Phase::Withdrawn => Withdrawal::Done,
        }
    }
}
