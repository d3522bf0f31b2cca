//! A running server's handles: [`ServerHandle`] (its owner's), [`ServerControl`] (a clone
//! for other threads) and what they report.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;

use super::event_loop::{Control, Stats};
use super::loop_waker::LoopWaker;
use super::responder::Shared;
use super::{DrainReport, ReadyHandle, ServerMetrics};

/// What `Builder` hands to the [`ServerHandle`] it returns.
pub(super) struct HandleParts {
    pub(super) local_addr: SocketAddr,
    pub(super) control: Sender<Control>,
    pub(super) waker: Arc<LoopWaker>,
    pub(super) stats: Arc<Stats>,
    pub(super) ready: ReadyHandle,
    pub(super) shared: Arc<Shared>,
    pub(super) metrics: ServerMetrics,
}

impl HandleParts {
    pub(super) fn into_handle(
        self,
        thread: Option<JoinHandle<io::Result<DrainReport>>>,
    ) -> ServerHandle {
        ServerHandle {
            local_addr: self.local_addr,
            control: self.control,
            waker: self.waker,
            stats: self.stats,
            ready: self.ready,
            shared: self.shared,
            metrics: self.metrics,
            thread: parking_lot::Mutex::new(thread),
            detached: false,
        }
    }
}

/// A running server.
///
/// Dropping the handle of a [`spawn`]ed server starts its close sequence (as
/// [`shutdown`](Self::shutdown)) and returns without waiting; [`wait`](Self::wait) to wait for
/// the drain report, or [`detach`](Self::detach) to leave the server running for the rest of
/// the process (it then stops only on a signal, with [`Builder::handle_signals`]).
///
/// [`spawn`]: crate::server::Builder::spawn
/// [`Builder::handle_signals`]: crate::server::Builder::handle_signals
#[must_use = "dropping the handle shuts the server down; call `detach()` to keep it running"]
pub struct ServerHandle {
    local_addr: SocketAddr,
    control: Sender<Control>,
    waker: Arc<LoopWaker>,
    stats: Arc<Stats>,
    ready: ReadyHandle,
    shared: Arc<Shared>,
    metrics: ServerMetrics,
    thread: parking_lot::Mutex<Option<JoinHandle<io::Result<DrainReport>>>>,
    detached: bool,
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        // Only a spawned server that nobody waited for: `run_with`'s handle has no thread, and
        // its server stops when `run_with` returns.
        if !self.detached && self.thread.get_mut().is_some() {
            self.shutdown();
        }
    }
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// The address the server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Starts the close sequence. Returns at once; [`wait`](Self::wait) for the report.
    pub fn shutdown(&self) {
        if self.control.try_send(Control::Shutdown).is_ok() {
            self.waker.wake();
        }
    }

    /// A cloneable, `Send` handle on the accept path, for a listener handoff (see
    /// [`crate::handoff`]) run from another thread.
    pub fn control(&self) -> ServerControl {
        ServerControl {
            control: self.control.clone(),
            waker: self.waker.clone(),
            local_addr: self.local_addr,
        }
    }

    /// The readiness handle: say when the server may take requests (with
    /// [`Builder::manual_ready`]), and at what capacity.
    ///
    /// [`Builder::manual_ready`]: crate::server::Builder::manual_ready
    pub fn ready(&self) -> &ReadyHandle {
        &self.ready
    }

    /// Requests accepted and not yet answered-and-written. An answer a worker writes itself is
    /// counted off at the event loop's next turn, which nothing hurries: within a millisecond
    /// while workers hold jobs (up to 32 ms while their handlers are slow), so this may trail
    /// the caller's answer by that much.
    pub fn in_flight(&self) -> usize {
        self.stats.in_flight.load(Ordering::Acquire)
    }

    /// Answers given through a [`Responder`] (or by an async handler) for requests already
    /// answered — by the server at the deadline, on CANCEL, or because the connection closed —
    /// and dropped.
    ///
    /// [`Responder`]: crate::server::Responder
    pub fn late_answers(&self) -> u64 {
        self.shared.late.load(Ordering::Relaxed)
    }

    /// Deferred and async requests the server answered itself because their handler had not
    /// answered by the deadline (plus the grace for deferred ones).
    pub fn expired(&self) -> usize {
        self.stats.expired.load(Ordering::Relaxed)
    }

    /// The server's metrics, to register in a Prometheus registry (a cheap handle; every
    /// scrape reads the counters as they are then).
    pub fn metrics(&self) -> ServerMetrics {
        self.metrics.clone()
    }

    /// TLS handshakes: the most in progress at once, how often accepting waited for one to
    /// end (the cap, [`ServerTls::max_handshakes`](crate::tls::ServerTls::max_handshakes)), how
    /// many began and how many completed.
    pub fn handshakes(&self) -> HandshakeReport {
        let h = &self.stats.handshakes;
        HandshakeReport {
            peak: h.peak.load(Ordering::Relaxed),
            held: h.held.load(Ordering::Relaxed),
            begun: h.begun.load(Ordering::Relaxed),
            completed: h.completed.load(Ordering::Relaxed),
        }
    }

    /// Connections open.
    pub fn connections(&self) -> usize {
        self.stats.connections.load(Ordering::Relaxed)
    }

    /// Lets the server run on after the handle is dropped, for the rest of the process.
    pub fn detach(mut self) {
        self.detached = true;
    }

    /// Waits for the server to stop and returns its drain report. For a server started with
    /// [`Builder::run_with`] this returns an error (the report is `run_with`'s return value).
    ///
    /// [`Builder::run_with`]: crate::server::Builder::run_with
    pub fn wait(&self) -> io::Result<DrainReport> {
        let Some(thread) = self.thread.lock().take() else {
            return Err(io::Error::other("no server thread to wait for"));
        };
        thread
            .join()
            .map_err(|_| io::Error::other("server thread panicked"))?
    }
}

/// TLS handshakes seen by a server (see [`ServerHandle::handshakes`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandshakeReport {
    /// The most handshakes in progress at once.
    pub peak: usize,
    /// Times accepting stopped at the cap until a handshake ended.
    pub held: u64,
    /// Handshakes begun: every connection accepted on a TLS listener, including those that
    /// closed or failed before a session came up (a port probe, a plaintext caller).
    pub begun: u64,
    /// Handshakes that completed: TLS sessions that came up.
    pub completed: u64,
}

/// Controls a running server's accept path from any thread: start accepting (a server built
/// with [`Builder::accept_paused`]), lend its listener to another process, and hand it off.
/// Cheap to clone.
///
/// [`Builder::accept_paused`]: crate::server::Builder::accept_paused
#[derive(Clone)]
pub struct ServerControl {
    control: Sender<Control>,
    waker: Arc<LoopWaker>,
    local_addr: SocketAddr,
}

impl std::fmt::Debug for ServerControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerControl")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// How long a control request waits for the event loop to answer.
const CONTROL_WAIT: Duration = Duration::from_secs(5);

impl ServerControl {
    /// The address the server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    fn ask<T>(&self, make: impl FnOnce(Sender<io::Result<T>>) -> Control) -> io::Result<T> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.control
            .send_timeout(make(tx), CONTROL_WAIT)
            .map_err(|_| io::Error::other("the server has stopped"))?;
        self.waker.wake();
        rx.recv_timeout(CONTROL_WAIT).map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                "the server's event loop did not answer in 5 s (stopped?)",
            )
        })?
    }

    /// Starts accepting; returns once the event loop does.
    pub fn start_accepting(&self) -> io::Result<()> {
        self.ask(Control::StartAccepting)
    }

    /// A duplicate of the listening socket (the same socket and accept queue), to send to
    /// another process. Refused once the close sequence began.
    pub fn dup_listener(&self) -> io::Result<std::os::fd::OwnedFd> {
        self.ask(Control::DupListener)
    }

    /// Another process accepts on this server's listener now: stop accepting, keep the
    /// registry entry (see [`Registrar::handed_off`]), send GOAWAY and drain as on shutdown.
    ///
    /// [`Registrar::handed_off`]: crate::server::Registrar::handed_off
    pub fn handed_off(&self) {
        if self
            .control
            .send_timeout(Control::HandedOff, CONTROL_WAIT)
            .is_ok()
        {
            self.waker.wake();
        }
    }
}
