//! [`Builder`]: what a server is configured with, and `spawn`/`run`, which start it.

use std::io;
use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use mio::{Interest, Poll, Waker};

use super::event_loop::{DeferredLimits, EventLoop, LoopConfig, Stats};
use super::handle::HandleParts;
use super::loop_waker::LoopWaker;
use super::registry::{Callable, Registry};
use super::responder::Shared;
use super::{
    DeferredHandler, DrainReport, Handler, Placement, ReadyHandle, Registrar, Reply, Request,
    ServerHandle, ServerMetrics,
};
use super::{announce, event_loop, readiness, token, workers};
use crate::proto::ServerConnConfig;

/// Configures and starts a server.
pub struct Builder {
    listen: String,
    inherited: Option<std::net::TcpListener>,
    accept_paused: bool,
    workers: usize,
    queue: usize,
    drain_budget: Duration,
    max_connections: usize,
    conn: ServerConnConfig,
    out_limit: usize,
    signals: bool,
    manual_ready: bool,
    warmup: Duration,
    pub(super) registry: Registry,
    registrar: Option<Box<dyn Registrar>>,
    registry_timeout: Duration,
    deferred: DeferredLimits,
    unready_delay: Duration,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::ServerTls>,
}

impl Default for Builder {
    fn default() -> Self {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        Builder {
            listen: "127.0.0.1:0".into(),
            inherited: None,
            accept_paused: false,
            workers,
            queue: 4096,
            drain_budget: Duration::from_secs(10),
            max_connections: 16 * 1024,
            conn: ServerConnConfig::default(),
            out_limit: 4 << 20,
            signals: false,
            manual_ready: false,
            warmup: Duration::ZERO,
            registry: Registry::default(),
            registrar: None,
            registry_timeout: Duration::from_millis(500),
            deferred: DeferredLimits {
                max: 16 * 1024,
                grace: Duration::from_millis(100),
            },
            unready_delay: Duration::ZERO,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// Record per-method latency histograms for [`ServerMetrics`] (two clock reads per call;
    /// the event counters are kept either way).
    pub fn metrics(mut self) -> Self {
        self.registry.timed = true;
        self
    }

    /// At the start of the close sequence, turn unready at once ([`ServerMetrics::is_serving`],
    /// an admin endpoint's `/readyz`) but keep serving for `delay` before the registry
    /// withdrawal and GOAWAY: for load balancers and Kubernetes endpoints that notice a node
    /// going away only when they next poll it. Default 0.
    pub fn unready_delay(mut self, delay: Duration) -> Self {
        self.unready_delay = crate::capped(delay);
        self
    }

    /// Serve TLS on every connection (feature `tls`): with a client CA in `tls`, mutual TLS —
    /// the caller's verified identity reaches handlers as [`Request::identity`] and the
    /// [`authorize`](Self::authorize) hook. Keep a clone of `tls` to
    /// [`reload`](crate::tls::ServerTls::reload) its certificates while the node runs.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::tls::ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The address to listen on; port 0 picks a free one.
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = addr.into();
        self
    }

    /// Serve on this already-bound, listening socket instead of binding
    /// [`listen`](Self::listen)'s address: one inherited from a parent process, from systemd
    /// socket activation, or from a running node through [`crate::handoff`]. It is set
    /// non-blocking. (On Linux, [`inherit::tcp_listener`] checks a raw fd first.)
    ///
    /// [`inherit::tcp_listener`]: crate::server::inherit::tcp_listener
    pub fn listener(mut self, listener: std::net::TcpListener) -> Self {
        self.inherited = Some(listener);
        self
    }

    /// Start without accepting: the listener is held but connections wait in its accept queue
    /// until [`ServerControl::start_accepting`]. The registry (if any) is told only once
    /// accepting. For the new process of a listener handoff, which must not accept before the
    /// old one commits.
    ///
    /// [`ServerControl::start_accepting`]: crate::server::ServerControl::start_accepting
    pub fn accept_paused(mut self) -> Self {
        self.accept_paused = true;
        self
    }

    /// Worker threads for [`Placement::Worker`] handlers (default: available cores; at least 1).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// Requests waiting for a worker, at most; more are rejected as OVERLOADED (never run).
    pub fn queue(mut self, n: usize) -> Self {
        self.queue = n.max(1);
        self
    }

    /// How long the whole close sequence may take, registry withdrawal and linger included
    /// (default 10 s; see the module docs for how it is divided). Zero ends connections at once
    /// (still without an RST): nothing in flight gets its answer.
    pub fn drain_budget(mut self, budget: Duration) -> Self {
        self.drain_budget = crate::capped(budget);
        self
    }

    /// Connections open at once, at most; more are closed as they arrive.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Answer bytes waiting for one connection's peer, at most, before the server stops
    /// reading that peer's requests until it reads its answers (default 4 MiB; at least 1 KiB).
    /// A peer that never reads costs the server this much, and no other connection waits.
    pub fn max_output_per_connection(mut self, bytes: usize) -> Self {
        self.out_limit = bytes.max(1024);
        self
    }

    /// The largest frame body accepted (default 1 MiB; at least 1024).
    pub fn max_frame(mut self, bytes: u32) -> Self {
        self.conn.max_frame = bytes.max(crate::proto::frame::MIN_MAX_FRAME);
        self
    }

    /// Requests accepted and unanswered on one connection, at most; more are rejected as
    /// OVERLOADED.
    pub fn max_in_flight_per_connection(mut self, n: usize) -> Self {
        self.conn.max_in_flight = n.max(1);
        self
    }

    /// With nothing pending and no input for this long, a connection is probed with PING; a
    /// connection with requests pending is never idle.
    pub fn idle_timeout(mut self, idle: Duration, ping_timeout: Duration) -> Self {
        self.conn.idle_timeout = crate::capped(idle);
        self.conn.ping_timeout = crate::capped(ping_timeout);
        self
    }

    /// How long a new connection may take to send its HELLO before it is refused with ERROR
    /// HANDSHAKE (default 10 s). Bytes that do not complete the HELLO frame do not extend it.
    pub fn hello_timeout(mut self, timeout: Duration) -> Self {
        self.conn.hello_timeout = crate::capped(timeout);
        self
    }

    /// How long to wait for a caller's close after our write side is shut (default 2 s; during
    /// the close sequence at most a quarter of the drain budget).
    pub fn linger(mut self, linger: Duration) -> Self {
        self.conn.linger = crate::capped(linger);
        self
    }

    /// Registers a handler run on worker threads. Takes a closure with a concrete signature, so
    /// `|r| Ok(r.body().to_vec())` needs no annotation; any [`Handler`] goes through
    /// [`handler_with`](Self::handler_with).
    ///
    /// On a plaintext connection the worker writes the answer to the socket itself (a batch's
    /// answers in one write), so an answer costs the event loop no wake-up; over TLS it goes
    /// back to the loop, which drives the session.
    pub fn handler<F>(self, method: &str, h: F) -> Self
    where
        F: Fn(&Request<'_>) -> Reply + Send + Sync + 'static,
    {
        self.handler_with(method, h, Placement::Worker)
    }

    /// Registers a short, never-blocking handler run on the event-loop thread.
    pub fn inline_handler<F>(self, method: &str, h: F) -> Self
    where
        F: Fn(&Request<'_>) -> Reply + Send + Sync + 'static,
    {
        self.handler_with(method, h, Placement::Inline)
    }

    /// Registers a handler with an explicit placement. The method takes requests flagged
    /// idempotent or not (see [`method`](Self::method) to declare it).
    pub fn handler_with(mut self, method: &str, h: impl Handler, placement: Placement) -> Self {
        self.registry
            .insert(method, Callable::Now(Arc::new(h)), placement, None);
        self
    }

    /// Registers a handler whose idempotency is declared: with `idempotent == false`, a request
    /// flagged IDEMPOTENT is refused unrun (`Status::REFUSED_NOT_IDEMPOTENT`), so no stale or
    /// hand-written caller can have it retried after an unknown outcome. Typed services
    /// register through this.
    pub fn method(
        mut self,
        method: &str,
        h: impl Handler,
        placement: Placement,
        idempotent: bool,
    ) -> Self {
        self.registry.insert(
            method,
            Callable::Now(Arc::new(h)),
            placement,
            Some(idempotent),
        );
        self
    }

    /// Registers a handler that answers later, from any thread, through the [`Responder`] it
    /// is given. It is started on a worker thread; it should return soon and keep the
    /// responder (hand it to a timer, a channel, another thread). See [`Responder`] for what
    /// happens to one dropped or never answered.
    ///
    /// [`Responder`]: crate::server::Responder
    pub fn deferred_handler(self, method: &str, h: impl DeferredHandler) -> Self {
        self.deferred_handler_with(method, h, Placement::Worker)
    }

    /// Registers a deferred handler with an explicit placement: [`Placement::Inline`] starts it
    /// on the event-loop thread (it must not block), saving the hand-off to a worker.
    pub fn deferred_handler_with(
        mut self,
        method: &str,
        h: impl DeferredHandler,
        placement: Placement,
    ) -> Self {
        self.registry
            .insert(method, Callable::Later(Arc::new(h)), placement, None);
        self
    }

    /// Registers an async handler, run on the tokio runtime behind `runtime` (feature `tokio`).
    /// Its future must not block; it may await other calls (with
    /// [`CallOptions::from_request`](crate::client::CallOptions::from_request) to pass the
    /// deadline and trace context on). Cancelled by CANCEL or at its deadline, its future is
    /// dropped and the caller gets status CANCELLED or DEADLINE_EXCEEDED. Counts toward
    /// [`max_deferred`](Builder::max_deferred).
    #[cfg(feature = "tokio")]
    pub fn async_handler(
        mut self,
        runtime: &tokio::runtime::Handle,
        method: &str,
        h: impl super::AsyncHandler,
    ) -> Self {
        let entry = super::async_handler::AsyncEntry::new(method, h, runtime);
        self.registry.insert(
            method,
            Callable::Async(Arc::new(entry)),
            Placement::Inline,
            None,
        );
        self
    }

    /// Deferred and async requests started and not yet answered, at most, server-wide (default
    /// 16384; at least 1); more are rejected as OVERLOADED before they start.
    pub fn max_deferred(mut self, n: usize) -> Self {
        self.deferred.max = n.max(1);
        self
    }

    /// How long after a deferred request's deadline the server stops waiting for its
    /// responder and answers [`Status::DEADLINE_EXCEEDED`](crate::proto::Status) itself
    /// (default 100 ms). Async handlers are cancelled at the deadline itself.
    pub fn deferred_grace(mut self, grace: Duration) -> Self {
        self.deferred.grace = crate::capped(grace);
        self
    }

    /// The authorization hook for every method without one of its own
    /// ([`authorize_method`](Self::authorize_method)): it sees the request — its method, its
    /// caller's [`identity`](Request::identity) (mutual TLS), address and metadata — before the
    /// handler does, on the event-loop thread (keep it short). A request it says no to is
    /// refused with [`Status::REFUSED_PERMISSION_DENIED`]: never run, and final — the caller
    /// gets [`CallError::Refused`](crate::client::CallError::Refused), not a closed connection,
    /// and never replays it on another node. A hook that panics says no.
    ///
    /// [`Status::REFUSED_PERMISSION_DENIED`]: crate::server::Status::REFUSED_PERMISSION_DENIED
    pub fn authorize<F>(mut self, hook: F) -> Self
    where
        F: Fn(&Request<'_>) -> bool + Send + Sync + 'static,
    {
        self.registry.authorize_all = Some(Arc::new(hook));
        self
    }

    /// The authorization hook for one method (see [`authorize`](Self::authorize)).
    pub fn authorize_method<F>(mut self, method: &str, hook: F) -> Self
    where
        F: Fn(&Request<'_>) -> bool + Send + Sync + 'static,
    {
        self.registry
            .authorize_method
            .insert(method.to_owned(), Arc::new(hook));
        self
    }

    /// Registers every method of a typed service (a `<Name>Server` made by
    /// [`#[gracerpc::service]`](macro@crate::service)).
    pub fn service(self, s: impl crate::service::Register) -> Self {
        s.register(self)
    }

    /// Handle SIGTERM and SIGINT: the first starts the close sequence, a second stops at once.
    /// Off by default: a library must not take over its host's signals unasked.
    pub fn handle_signals(mut self) -> Self {
        self.signals = true;
        self
    }

    /// Do not send READY until [`ReadyHandle::set_ready`] is called; until then requests are
    /// rejected as NOT_READY.
    pub fn manual_ready(mut self) -> Self {
        self.manual_ready = true;
        self
    }

    /// Once ready, ramp the advertised capacity from 10 % to 100 % over this period.
    pub fn warmup(mut self, warmup: Duration) -> Self {
        self.warmup = crate::capped(warmup);
        self
    }

    /// Publish the node in a service registry: registered once READY, withdrawn at the start of
    /// the close sequence, before GOAWAY. The registrar runs on a thread of its own.
    pub fn registrar(mut self, r: impl Registrar) -> Self {
        self.registrar = Some(Box::new(r));
        self
    }

    /// How long the close sequence waits for the registry to confirm the withdrawal before it
    /// sends GOAWAY anyway (default 500 ms; at most a quarter of the drain budget).
    pub fn registry_timeout(mut self, timeout: Duration) -> Self {
        self.registry_timeout = crate::capped(timeout);
        self
    }

    /// Binds, starts the workers and the event loop on a thread of its own, and returns a
    /// handle.
    pub fn spawn(self) -> io::Result<ServerHandle> {
        let (el, handle_parts) = self.build()?;
        let thread = std::thread::Builder::new()
            .name("gracerpc-server".into())
            .spawn(move || el.run())?;
        Ok(handle_parts.into_handle(Some(thread)))
    }

    /// Binds and runs on the calling thread until the close sequence ends.
    pub fn run(self) -> io::Result<DrainReport> {
        let (el, _parts) = self.build()?;
        el.run()
    }

    /// Like [`run`](Self::run), but calls `started` with the handle once bound (to learn the
    /// address or to say ready from another thread).
    pub fn run_with(self, started: impl FnOnce(&ServerHandle)) -> io::Result<DrainReport> {
        let (el, parts) = self.build()?;
        let handle = parts.into_handle(None);
        started(&handle);
        el.run()
    }

    fn build(self) -> io::Result<(EventLoop, HandleParts)> {
        let poll = Poll::new()?;
        let mut listener = match self.inherited {
            Some(l) => {
                l.set_nonblocking(true)?;
                mio::net::TcpListener::from_std(l)
            }
            None => {
                let addr = self.listen.to_socket_addrs()?.next().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "no address to listen on")
                })?;
                mio::net::TcpListener::bind(addr)?
            }
        };
        let local_addr = listener.local_addr()?;
        if !self.accept_paused {
            poll.registry()
                .register(&mut listener, token::LISTENER, Interest::READABLE)?;
        }
        let signals = if self.signals {
            let mut s = signal_hook_mio::v1_0::Signals::new([
                signal_hook::consts::SIGTERM,
                signal_hook::consts::SIGINT,
            ])?;
            poll.registry()
                .register(&mut s, token::SIGNALS, Interest::READABLE)?;
            Some(s)
        } else {
            None
        };
        let waker = Arc::new(LoopWaker::new(Waker::new(poll.registry(), token::WAKER)?));
        let job_queue = workers::JobQueue::new(self.queue, self.workers);
        // Owned from here on: if anything below fails, dropping it stops the workers started.
        let job_sender = workers::JobSender(job_queue.clone());
        // Every queued or running job sends at most one completion, so this bound is never
        // reached; bounded, the channel is an array that allocates nothing per message.
        let (done_tx, done_rx) = crossbeam_channel::bounded(self.queue + self.workers + 64);
        let (ctl_tx, ctl_rx) = crossbeam_channel::bounded(16);
        let stats = Arc::new(Stats::default());
        let workers = workers::spawn(
            self.workers,
            job_queue.clone(),
            done_tx,
            waker.clone(),
            stats.clone(),
        )?;
        let target = Arc::new(AtomicU8::new(if self.manual_ready { 0 } else { 100 }));
        let mut readiness = readiness::Readiness::new(target.clone(), self.warmup);
        readiness.poll_change(std::time::Instant::now());
        stats
            .counters
            .serving
            .store(readiness.capacity().is_some(), Ordering::Release);
        let cfg = LoopConfig {
            conn: self.conn,
            max_connections: self.max_connections,
            drain_budget: self.drain_budget,
            deferred: self.deferred,
            unready_delay: self.unready_delay,
            out_limit: self.out_limit,
            #[cfg(feature = "tls")]
            tls: self.tls,
        };
        let shared = Shared::new(waker.clone());
        let metrics = ServerMetrics {
            stats: stats.clone(),
            shared: shared.clone(),
            methods: self.registry.latencies().into(),
        };
        let mut el = EventLoop::new(
            poll,
            listener,
            signals,
            cfg,
            self.registry,
            job_sender,
            done_rx,
            ctl_rx,
            waker.clone(),
            stats.clone(),
            readiness,
            !self.accept_paused,
            shared.clone(),
        );
        el.workers = Some(workers);
        if let Some(r) = self.registrar {
            el.announcer = Some(announce::Announcer::spawn(
                r,
                local_addr,
                event_loop::withdrawal_limit(self.drain_budget, self.registry_timeout),
                waker.clone(),
            )?);
        }
        let ready = ReadyHandle::new(target, waker.clone());
        Ok((
            el,
            HandleParts {
                local_addr,
                control: ctl_tx,
                waker,
                stats,
                ready,
                shared,
                metrics,
            },
        ))
    }
}
