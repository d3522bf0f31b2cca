//! The caller side: a client a service embeds to call a set of nodes, which turns a node's
//! shutdown into zero caller-visible errors without ever running a request twice.
//!
//! # Example
//!
//! ```
//! use gracerpc::client::{CallOptions, Client};
//! use gracerpc::server::{Request, Server};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Server::builder()
//!     .inline_handler("echo", |r: &Request<'_>| Ok(r.body.to_vec()))
//!     .spawn()?;
//! let client = Client::builder().nodes([server.local_addr()]).build()?;
//!
//! // Blocking, from any thread (the client is cheap to clone, Send and Sync):
//! assert_eq!(client.call("echo", b"hi")?, b"hi");
//!
//! // Non-blocking: a std Future, usable on any executor.
//! let fut = client.call_async("echo", b"there".to_vec(), CallOptions::new().idempotent(true));
//! let reply = gracerpc::client::block_on(fut)?;
//! assert_eq!(reply.body, b"there");
//!
//! client.close(Duration::from_secs(1));
//! server.shutdown();
//! server.wait()?;
//! # Ok(())
//! # }
//! ```
//!
//! # Design
//! Calling threads choose a node from a lock-free [`NodeTable`], serialize their request (the id
//! is assigned at that moment, so ids increase in wire order) and write it to the socket
//! themselves under the connection's lock when its output is empty — no hand-off on the way out.
//! One I/O thread (a mio loop) reads every answer, hands it to the call's one-shot slot, runs
//! the protocol timers, and reconnects nodes with capped exponential backoff and jitter.
//!
//! Replays follow the core's outcomes: a request that provably did not run (SHUTDOWN_REJECT, an
//! id above GOAWAY's last accepted id, a frame never fully written) is sent again elsewhere; a
//! request whose outcome is unknown is retried only if the call is idempotent.

mod blocking;
mod call;
mod call_set;
mod cause;
mod discovery;
mod driver;
mod error;
mod health;
mod io_loop;
mod link;
mod link_events;
mod metrics;
mod own_read;
pub mod policy;
mod ready_list;
pub mod retry_budget;
mod routes;
mod slot;
pub mod table;
mod tls_link;
mod waiters;
mod wake;

/// Re-exported so a caller matching on [`CallError`] needs no `proto` import.
pub use crate::proto::{ApiMisuse, Status};
pub use blocking::block_on;
pub use call::{CallFuture, CallOptions, Response};
pub use call_set::CallSet;
pub use cause::{NodeCause, NodeReport};
pub use discovery::{Discovery, StaticList};
pub use error::CallError;
pub use metrics::ClientMetrics;
pub use table::{NodeEvent, NodeSnapshot, NodeState, NodeTable};

use std::borrow::Cow;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use mio::{Poll, Waker};
use parking_lot::Mutex;

use crate::proto::ClientConnConfig;
pub(crate) use health::IoHealth;
use io_loop::{Ctl, IoLoop};
use link::LinkRoutes;
use retry_budget::RetryBudget;
use waiters::Waiters;
use wake::IoWake;

/// Client settings.
#[derive(Clone, Debug)]
pub(crate) struct ClientConfig {
    pub default_deadline: Duration,
    pub replay: bool,
    pub max_replays: u32,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub conn: ClientConnConfig,
    /// Busy replays' token bucket: size and refill per success.
    pub retry_tokens: u32,
    pub retry_ratio: f64,
    /// Connections kept to each node (see [`ClientBuilder::connections_per_node`]).
    pub connections_per_node: usize,
    /// TLS on every connection.
    #[cfg(feature = "tls")]
    pub tls: Option<crate::tls::ClientTls>,
}

impl ClientConfig {
    /// Connections per node, within 1..=[`MAX_LANES`](routes::MAX_LANES).
    pub(crate) fn lanes(&self) -> usize {
        self.connections_per_node.clamp(1, routes::MAX_LANES)
    }
}

/// Configures a [`Client`].
pub struct ClientBuilder {
    discovery: Option<Box<dyn Discovery>>,
    cfg: ClientConfig,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            discovery: None,
            cfg: ClientConfig {
                default_deadline: Duration::from_secs(5),
                replay: true,
                max_replays: 16,
                backoff_min: Duration::from_millis(5),
                backoff_max: Duration::from_millis(100),
                conn: ClientConnConfig {
                    hello_timeout: Duration::from_secs(2),
                    ..Default::default()
                },
                retry_tokens: 100,
                retry_ratio: 10.0,
                connections_per_node: 1,
                #[cfg(feature = "tls")]
                tls: None,
            },
        }
    }
}

impl ClientBuilder {
    /// A fixed list of nodes (a [`StaticList`]).
    pub fn nodes(mut self, nodes: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.discovery = Some(Box::new(StaticList::new(nodes)));
        self
    }

    /// Where nodes come from.
    pub fn discovery(mut self, d: impl Discovery) -> Self {
        self.discovery = Some(Box::new(d));
        self
    }

    /// The deadline of calls that do not set one (default 5 s).
    pub fn default_deadline(mut self, d: Duration) -> Self {
        self.cfg.default_deadline = crate::capped(d);
        self
    }

    /// Replay requests that provably did not run, and retry idempotent ones whose outcome is
    /// unknown (default on). Off exists to show the contrast: every rejection becomes an error.
    pub fn replay(mut self, on: bool) -> Self {
        self.cfg.replay = on;
        self
    }

    /// Replays allowed per call after a node shut down or a connection was lost (default 16),
    /// and retries of idempotent calls whose outcome is unknown. Only provably-unrun requests
    /// (or idempotent ones) are replayed, and always within the deadline. Busy rejections
    /// (OVERLOADED, NOT_READY) are not counted here: see [`retry_budget`](Self::retry_budget).
    pub fn max_replays(mut self, n: u32) -> Self {
        self.cfg.max_replays = n;
        self
    }

    /// The client-wide budget of replays after busy rejections (OVERLOADED, NOT_READY), in the
    /// style of gRPC's retry throttling (defaults 100 tokens, 1.0): each busy rejection takes a
    /// token, each answered call puts back `ratio`, and busy replays go on — after a doubling
    /// pause, within the call's deadline — only while more than half the tokens are left. A
    /// cluster that turns most calls away thus sees calls fail fast (`CallError::Busy`)
    /// instead of a storm of replays. Replays after a shutdown (SHUTTING_DOWN, GOAWAY) never
    /// take tokens.
    pub fn retry_budget(mut self, tokens: u32, ratio: f64) -> Self {
        self.cfg.retry_tokens = tokens;
        self.cfg.retry_ratio = ratio;
        self
    }

    /// The cap of the reconnection backoff (default 100 ms), so a restarted node is back quickly.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.cfg.backoff_min = crate::capped(min);
        self.cfg.backoff_max = crate::capped(max.max(min));
        self
    }

    /// PING after this much silence, and give the connection up if the PONG does not come
    /// within `timeout` (defaults 5 s and 3 s).
    pub fn ping(mut self, interval: Duration, timeout: Duration) -> Self {
        self.cfg.conn.ping_interval = crate::capped(interval);
        self.cfg.conn.ping_timeout = crate::capped(timeout);
        self
    }

    /// Connect to every node over TLS (feature `tls`), with a client certificate if `tls` has
    /// one (mutual TLS). Keep a clone of `tls` to
    /// [`reload`](crate::tls::ClientTls::reload) its files while the client runs.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::tls::ClientTls) -> Self {
        self.cfg.tls = Some(tls);
        self
    }

    /// Connections kept to each node (default 1; 0 counts as 1, more than 16 as 16). A calling
    /// thread keeps to one of them (threads are spread over them round robin), so that many
    /// threads calling at once — each with a [`CallSet`], or blocking — do not all share one
    /// connection: each set can then read its own answers, and the threads contend less. Every connection is a whole
    /// gracerpc connection (GOAWAY, replay and the close sequence apply to each); a node is
    /// usable while one of them is, and a lost one is reconnected beside the others.
    pub fn connections_per_node(mut self, n: usize) -> Self {
        self.cfg.connections_per_node = n.clamp(1, routes::MAX_LANES);
        self
    }

    /// Starts the client's I/O thread.
    pub fn build(self) -> io::Result<Client> {
        let discovery: Box<dyn Discovery> = self
            .discovery
            .unwrap_or_else(|| Box::new(StaticList::new([])));
        let poll = Poll::new()?;
        let io_wake = Arc::new(IoWake::new(Waker::new(poll.registry(), io_loop::WAKER)?));
        let table = Arc::new(NodeTable::new());
        let waiters = Arc::new(Waiters::default());
        let routes = Arc::new(LinkRoutes::new());
        let health = Arc::new(IoHealth::default());
        let (ctl_tx, ctl_rx) = crossbeam_channel::bounded(4);
        let io = IoLoop::new(
            poll,
            table.clone(),
            waiters.clone(),
            discovery,
            self.cfg.clone(),
            ctl_rx,
            io_wake.clone(),
            routes.clone(),
            health.clone(),
        )?;
        let thread = std::thread::Builder::new()
            .name("gracerpc-client-io".into())
            .spawn(move || io.run())?;
        let inner = ClientInner {
            table,
            routes,
            health,
            budget: RetryBudget::new(self.cfg.retry_tokens, self.cfg.retry_ratio),
            waiters,
            io_wake,
            control: ctl_tx,
            closed: AtomicBool::new(false),
            cfg: self.cfg,
            stats: Stats::default(),
            active_calls: AtomicUsize::new(0),
            idle: (Mutex::new(()), parking_lot::Condvar::new()),
            thread: Mutex::new(Some(thread)),
        };
        Ok(Client {
            inner: Arc::new(inner),
        })
    }
}

#[derive(Default, Debug)]
pub(crate) struct Stats {
    pub replayed: AtomicU64,
    pub retried: AtomicU64,
    pub outcome_unknown: AtomicU64,
}

/// Counters of a client since it was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Requests sent again because a node rejected them unrun (GOAWAY, SHUTDOWN_REJECT).
    pub replayed: u64,
    /// Idempotent requests retried after an unknown outcome.
    pub retried: u64,
}

/// How long a closing client waits at least for its nodes to close their side of each
/// connection after its own (protocol.md, rule 4): a loopback or LAN round trip is far less.
const CLOSE_LINGER: Duration = Duration::from_millis(100);

pub(crate) struct ClientInner {
    table: Arc<NodeTable>,
    /// Each node's current connections (its lanes).
    routes: Arc<LinkRoutes>,
    /// Whether the I/O thread runs.
    health: Arc<IoHealth>,
    /// Busy replays left (see `retry_budget.rs`).
    budget: RetryBudget,
    waiters: Arc<Waiters>,
    io_wake: Arc<IoWake>,
    control: Sender<Ctl>,
    closed: AtomicBool,
    cfg: ClientConfig,
    stats: Stats,
    active_calls: AtomicUsize,
    /// Signalled when the last active call of a closing client ends.
    idle: (Mutex<()>, parking_lot::Condvar),
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl ClientInner {
    /// A call future finished or was dropped.
    fn call_ended(&self) {
        if self.active_calls.fetch_sub(1, Ordering::AcqRel) == 1
            && self.closed.load(Ordering::Acquire)
        {
            let _g = self.idle.0.lock();
            self.idle.1.notify_all();
        }
    }

    /// How many of node `index`'s connections can take a call now.
    fn ready_connections(&self, index: usize) -> usize {
        self.routes
            .links(index)
            .iter()
            .filter(|l| l.is_sendable())
            .count()
    }

    fn wake_io(&self) {
        self.io_wake.wake();
    }

    /// Stops the I/O thread: its connections close cleanly until `until`, then it cuts the
    /// rest and ends; returns once it has.
    fn stop_io(&self, until: Instant) {
        if self.control.try_send(Ctl::Close(until)).is_ok() {
            self.wake_io();
        }
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl Drop for ClientInner {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Release);
        self.stop_io(Instant::now() + CLOSE_LINGER);
    }
}

/// A client of a set of nodes. Cheap to clone (an `Arc`), `Send + Sync`, usable from many
/// threads at once.
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("nodes", &self.inner.table)
            .finish()
    }
}

impl Client {
    /// A builder; give it nodes with [`ClientBuilder::nodes`] or [`ClientBuilder::discovery`].
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Calls `method` with the default options and waits for the answer.
    pub fn call(&self, method: &str, body: &[u8]) -> Result<Vec<u8>, CallError> {
        self.call_with(method, body, &CallOptions::default())
            .map(|r| r.body)
    }

    /// Calls `method` with options and waits for the answer.
    pub fn call_with(
        &self,
        method: &str,
        body: &[u8],
        opts: &CallOptions,
    ) -> Result<Response, CallError> {
        self.call_ref(method, body, opts).wait()
    }

    /// A call as a future that borrows its method and body.
    pub fn call_ref<'a>(
        &self,
        method: &'a str,
        body: &'a [u8],
        opts: &CallOptions,
    ) -> CallFuture<'a> {
        CallFuture::new(
            self.inner.clone(),
            Cow::Borrowed(method),
            Cow::Borrowed(body),
            opts,
        )
    }

    /// A call as a `'static` future that owns its body (for spawning on an executor).
    pub fn call_async(
        &self,
        method: &str,
        body: Vec<u8>,
        opts: CallOptions,
    ) -> CallFuture<'static> {
        CallFuture::new(
            self.inner.clone(),
            Cow::Owned(method.to_owned()),
            Cow::Owned(body),
            &opts,
        )
    }

    /// The node table (states, capacities, outstanding calls).
    pub fn table(&self) -> &NodeTable {
        &self.inner.table
    }

    /// A snapshot of every node.
    pub fn nodes(&self) -> Vec<NodeSnapshot> {
        self.inner.table.snapshot()
    }

    /// How many of the client's connections to `addr` can take a call now (READY, not
    /// draining): up to [`ClientBuilder::connections_per_node`].
    pub fn connections(&self, addr: SocketAddr) -> usize {
        self.inner
            .table
            .find(addr)
            .map_or(0, |node| self.inner.ready_connections(node.index()))
    }

    /// A channel of node state changes, as the client itself processes them.
    pub fn subscribe(&self) -> crossbeam_channel::Receiver<NodeEvent> {
        self.inner.table.subscribe()
    }

    /// Waits until the client itself sees `addr` choosable (READY), or `timeout` passes.
    pub fn wait_ready(&self, addr: SocketAddr, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        let events = self.subscribe();
        loop {
            if self
                .inner
                .table
                .find(addr)
                .is_some_and(|n| n.state().is_choosable())
            {
                return true;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let _ = events.recv_timeout(left.min(Duration::from_millis(50)));
        }
    }

    /// Why the client's I/O thread stopped, if it did (a bug, or a failed poll): every call
    /// then ends with [`CallError::IoFailed`]; build a new client.
    pub fn io_failure(&self) -> Option<String> {
        self.inner.health.failure()
    }

    /// Why the client stopped asking its [`Discovery`] for changes, if it did: its `poll`
    /// panicked. The client goes on with the nodes it had.
    pub fn discovery_error(&self) -> Option<String> {
        self.inner.health.discovery_error()
    }

    /// Makes the I/O thread panic, as a bug in it would (for tests of what calls then see).
    #[doc(hidden)]
    pub fn crash_io_thread_for_tests(&self) {
        if self.inner.control.try_send(Ctl::Panic).is_ok() {
            self.inner.wake_io();
        }
    }

    /// The client's metrics, to register in a Prometheus registry. It does not keep the client
    /// alive: once the client is gone, scrapes show nothing of it.
    pub fn metrics(&self) -> ClientMetrics {
        ClientMetrics {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// Counters since the client was built.
    pub fn stats(&self) -> ClientStats {
        ClientStats {
            replayed: self.inner.stats.replayed.load(Ordering::Relaxed),
            retried: self.inner.stats.retried.load(Ordering::Relaxed),
        }
    }

    /// Stops taking new calls, lets the outstanding ones finish for up to `timeout`, then closes
    /// every connection. Calls still running after that end with an error.
    ///
    /// A connection closes cleanly: the client shuts its side, then reads until the node closes
    /// its own (an answer still on its way to a call given up on is read, not reset), for what
    /// is left of `timeout` but at least 100 ms.
    pub fn close(&self, timeout: Duration) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.waiters.wake_all();
        let end = Instant::now() + timeout;
        let (lock, cv) = &self.inner.idle;
        let mut g = lock.lock();
        let mut calls_left = false;
        while self.inner.active_calls.load(Ordering::Acquire) > 0 {
            if cv.wait_until(&mut g, end).timed_out() {
                calls_left = true;
                break;
            }
        }
        drop(g);
        // Calls outliving the bound end now; otherwise each connection closes cleanly: our
        // side shut, then read until the node's close, so an answer still on its way (to a
        // call given up on) never meets a reset (protocol.md, rule 4).
        let until = if calls_left {
            Instant::now()
        } else {
            end.max(Instant::now() + CLOSE_LINGER)
        };
        self.inner.stop_io(until);
    }
}
