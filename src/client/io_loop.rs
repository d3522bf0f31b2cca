//! The client's I/O thread: a mio loop that connects to nodes (reconnecting with capped
//! exponential backoff and jitter), reads every answer, runs the cores' timers, and finishes
//! writes that would block. Calling threads write their own requests (see `link.rs`).

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::{Events, Poll, Registry, Token};
use slab::Slab;

use super::cause::connect_cause;
use super::discovery::Discovery;
use super::link::{Deliveries, Link, LinkRoutes, REGISTERED, deliver, deliver_batch};
use super::table::{Node, NodeState, NodeTable, random_below};
use super::waiters::Waiters;
use super::wake::IoWake;
use super::{ClientConfig, IoHealth};
use crate::proto::ClientConn;

pub(crate) const WAKER: Token = Token(usize::MAX);

const SLOT_BITS: u32 = 24;

/// Requests to the I/O thread.
pub(crate) enum Ctl {
    /// Close every connection and stop: each finishes as a retired one does (its write side
    /// shut, read until the node's close) until the deadline, then whatever is left is cut.
    Close(Instant),
    /// Panic (tests: the I/O thread dying of a bug must not strand a call).
    Panic,
}

/// Reconnection state of one node.
#[derive(Clone, Copy)]
struct Retry {
    next: Instant,
    backoff: Duration,
}

pub(crate) struct IoLoop {
    pub poll: Poll,
    pub table: Arc<NodeTable>,
    pub waiters: Arc<Waiters>,
    pub discovery: Box<dyn Discovery>,
    pub cfg: ClientConfig,
    pub control: Receiver<Ctl>,
    pub io: Arc<IoWake>,
    pub routes: Arc<LinkRoutes>,
    pub health: Arc<IoHealth>,
    /// `poll`'s registry, shared with the links (a calling thread that reads its own answer
    /// takes read interest away meanwhile).
    registry: Arc<Registry>,
    links: Slab<Arc<Link>>,
    generation: u32,
    retry: Vec<Retry>,
    last_epoch: u64,
    /// Closing: no connection is made any more, and the loop ends when the last link has
    /// finished or at this deadline.
    closing: Option<Instant>,
}

impl IoLoop {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        poll: Poll,
        table: Arc<NodeTable>,
        waiters: Arc<Waiters>,
        discovery: Box<dyn Discovery>,
        cfg: ClientConfig,
        control: Receiver<Ctl>,
        io: Arc<IoWake>,
        routes: Arc<LinkRoutes>,
        health: Arc<IoHealth>,
    ) -> io::Result<IoLoop> {
        let registry = Arc::new(poll.registry().try_clone()?);
        Ok(IoLoop {
            poll,
            table,
            waiters,
            discovery,
            cfg,
            control,
            io,
            routes,
            health,
            registry,
            links: Slab::new(),
            generation: 0,
            retry: Vec::new(),
            last_epoch: 0,
            closing: None,
        })
    }

    /// Runs the loop until shutdown. If it fails — a poll error, or a panic (a bug) — every
    /// call waiting on it and every later call ends with `CallError::IoFailed` instead of
    /// waiting for a thread that is gone.
    pub fn run(mut self) {
        let res = catch_unwind(AssertUnwindSafe(|| self.run_loop()));
        let cause = match res {
            Ok(None) => return,
            Ok(Some(e)) => e,
            Err(p) => format!("it panicked: {}", panic_message(&*p)),
        };
        log::error!("client I/O thread stopped: {cause}");
        self.health.fail(cause);
        // Connections end (their calls resolve), and everyone waiting is woken.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            let mut deliveries = Deliveries::new();
            self.shutdown(&mut deliveries);
        }));
        self.waiters.wake_all();
    }

    /// The loop. Returns `None` at shutdown, or why it failed.
    fn run_loop(&mut self) -> Option<String> {
        let mut events = Events::with_capacity(256);
        let mut deliveries = Deliveries::with_capacity(64);
        let mut wakers = Vec::with_capacity(64);
        let mut next_tick = Instant::now();
        loop {
            let now = Instant::now();
            if let Some(until) = self.closing
                && (self.links.is_empty() || now >= until)
            {
                self.shutdown(&mut deliveries);
                return None;
            }
            let wake_at = self.closing.map_or(next_tick, |c| c.min(next_tick));
            self.io.sleeping_until(wake_at);
            let timeout = wake_at.saturating_duration_since(now);
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Some(format!("poll failed: {e}")),
            }
            self.io.clear();
            let now = Instant::now();
            let mut woken = false;
            for event in events.iter() {
                if event.token() == WAKER {
                    woken = true;
                    continue;
                }
                let slot = event.token().0 & ((1 << SLOT_BITS) - 1);
                let Some(link) = self.links.get(slot) else {
                    continue;
                };
                if link.token != event.token() {
                    continue; // stale: that connection is gone
                }
                let link = link.clone();
                let to_end = event.is_read_closed() || event.is_error();
                if link.on_ready(&self.table, now, to_end, &mut deliveries) {
                    self.remove(slot);
                }
                deliver_batch(deliveries.drain(..), &mut wakers);
            }
            if woken {
                match self.control.try_recv() {
                    Ok(Ctl::Close(until)) => self.begin_close(until, now, &mut deliveries),
                    Ok(Ctl::Panic) => panic!("asked to panic"),
                    Err(_) => {}
                }
                self.flush_wanted(now, &mut deliveries);
            }
            if woken || now >= next_tick {
                next_tick = self.tick(now, &mut deliveries);
            }
        }
    }

    /// Writes what calling threads left for this thread, one `write` per connection.
    fn flush_wanted(&mut self, now: Instant, deliveries: &mut Deliveries) {
        let mut finished = Vec::new();
        for (slot, link) in self.links.iter() {
            if link.flush_if_wanted(&self.table, now, deliveries) {
                finished.push(slot);
            }
        }
        deliver(deliveries.drain(..));
        for slot in finished {
            self.remove(slot);
        }
    }

    /// Starts closing: every link finishes once what it owes is answered (see `Ctl::Close`).
    fn begin_close(&mut self, until: Instant, now: Instant, deliveries: &mut Deliveries) {
        self.closing = Some(until);
        let mut finished = Vec::new();
        for (slot, link) in self.links.iter() {
            if link.begin_close(&self.table, now, deliveries) {
                finished.push(slot);
            }
        }
        deliver(deliveries.drain(..));
        for slot in finished {
            self.remove(slot);
        }
    }

    /// Timers, discovery and reconnection (not while closing). Returns when to run next.
    fn tick(&mut self, now: Instant, deliveries: &mut Deliveries) -> Instant {
        if self.closing.is_none()
            && let Some(addrs) = self.poll_discovery()
        {
            self.apply_discovery(addrs, now);
        }
        let mut next = now + Duration::from_millis(100);
        let mut finished = Vec::new();
        for (slot, link) in self.links.iter() {
            if link.on_timer(&self.table, now, deliveries) {
                finished.push(slot);
            } else if let Some(t) = link.poll_timeout() {
                next = next.min(t);
            }
        }
        deliver(deliveries.drain(..));
        for slot in finished {
            self.remove(slot);
        }
        if self.closing.is_none() {
            for i in 0..self.retry.len() {
                if let Some(t) = self.maintain(i, now) {
                    next = next.min(t);
                }
            }
        }
        let epoch = self
            .table
            .ready_epoch
            .load(std::sync::atomic::Ordering::Acquire);
        if epoch != self.last_epoch {
            self.last_epoch = epoch;
            self.waiters.wake_all();
        }
        if let Some(t) = self.waiters.wake_expired(now) {
            next = next.min(t);
        }
        next.max(now + Duration::from_micros(200))
    }

    /// Asks the discovery for changes. It is user code: a panic in it is caught and logged,
    /// and the discovery is not asked again (its state is unknown); the client goes on with
    /// the nodes it has.
    fn poll_discovery(&mut self) -> Option<Vec<std::net::SocketAddr>> {
        if self.health.discovery_failed() {
            return None;
        }
        match catch_unwind(AssertUnwindSafe(|| self.discovery.poll())) {
            Ok(r) => r,
            Err(p) => {
                let why = format!("Discovery::poll panicked: {}", panic_message(&*p));
                log::error!("{why}; the client keeps its current nodes");
                self.health.discovery_panicked(why);
                None
            }
        }
    }

    fn apply_discovery(&mut self, addrs: Vec<std::net::SocketAddr>, now: Instant) {
        for node in self.table.nodes() {
            if !addrs.contains(&node.addr()) && node.state() != NodeState::Removed {
                log::info!("node {} removed by discovery", node.addr());
                // A draining or busy connection keeps delivering its answers; it is only no
                // longer chosen, and not reconnected. Once idle it closes (else each removal
                // and re-adding would leave one connection open).
                for link in self.routes.take_all(node.index()) {
                    link.retire();
                }
                self.table.set_state(node, NodeState::Removed, now);
            }
        }
        for addr in addrs {
            match self.table.upsert(addr) {
                Some(node) => {
                    while self.retry.len() <= node.index() {
                        self.retry.push(Retry {
                            next: now,
                            backoff: self.cfg.backoff_min,
                        });
                    }
                    self.retry[node.index()].next = now;
                }
                None => log::warn!("node table full: {addr} ignored"),
            }
        }
    }

    /// Connects a node that has fewer connections than it should (none, or fewer than the
    /// client's connections per node), when its backoff allows. Returns when to look again.
    fn maintain(&mut self, index: usize, now: Instant) -> Option<Instant> {
        let node = self.table.nodes().nth(index)?.clone();
        let state = node.state();
        if state == NodeState::Removed {
            return None;
        }
        let lanes = self.routes.count(index);
        if lanes >= self.cfg.lanes() {
            if state.is_choosable() {
                // Connected and ready: the next reconnection, if ever needed, starts fast.
                self.retry[index].backoff = self.cfg.backoff_min;
            }
            return None;
        }
        let retry = self.retry[index];
        if now < retry.next {
            return Some(retry.next);
        }
        // Back off before the next attempt, in case this one fails; READY resets it.
        let jitter = retry.backoff.as_micros() as usize / 4 + 1;
        let delay = retry.backoff + Duration::from_micros(random_below(jitter) as u64);
        self.retry[index] = Retry {
            next: now + delay,
            backoff: (retry.backoff * 2).min(self.cfg.backoff_max),
        };
        for _ in lanes..self.cfg.lanes() {
            if let Err(e) = self.connect(&node, now) {
                log::debug!("connect to {}: {e}", node.addr());
                // (A node with other connections is still usable through them.)
                if !self.routes.has(index) {
                    self.table.note_failure(&node, connect_cause(&e), now);
                    if state != NodeState::Draining {
                        self.table.set_state(&node, NodeState::Down, now);
                    }
                }
                break;
            }
        }
        Some(self.retry[index].next)
    }

    /// The TLS session for a new connection to `addr` (with the configuration current now),
    /// or `None` without TLS.
    fn tls_session(
        &self,
        addr: std::net::SocketAddr,
    ) -> io::Result<Option<Box<super::tls_link::TlsLink>>> {
        #[cfg(feature = "tls")]
        if let Some(t) = &self.cfg.tls {
            let session = t.connect(addr)?;
            return Ok(Some(Box::new(super::tls_link::TlsLink::new(session))));
        }
        let _ = addr;
        Ok(None)
    }

    fn connect(&mut self, node: &Arc<Node>, now: Instant) -> io::Result<()> {
        let tls = self.tls_session(node.addr())?;
        let mut stream = mio::net::TcpStream::connect(node.addr())?;
        let entry = self.links.vacant_entry();
        let token = Token(((self.generation as usize) << SLOT_BITS) | entry.key());
        self.generation = self.generation.wrapping_add(1);
        self.poll
            .registry()
            .register(&mut stream, token, REGISTERED)?;
        let core = ClientConn::new(now, self.cfg.conn.clone());
        let link = Arc::new(Link::new(
            node.clone(),
            token,
            stream,
            core,
            self.io.clone(),
            self.registry.clone(),
            self.routes.clone(),
            tls,
        ));
        entry.insert(link.clone());
        // Only a node's first connection makes it Connecting: one more lane beside working
        // ones leaves it as it is.
        let first = !self.routes.has(node.index());
        self.routes.add(node.index(), link);
        if first && node.state() != NodeState::Draining {
            self.table.set_state(node, NodeState::Connecting, now);
        }
        Ok(())
    }

    /// Forgets a finished link; its socket closes when the last reference (a call still
    /// holding it) goes.
    fn remove(&mut self, slot: usize) {
        if !self.links.contains(slot) {
            return;
        }
        self.links.remove(slot).forget();
    }

    fn shutdown(&mut self, deliveries: &mut Deliveries) {
        let now = Instant::now();
        for (_, link) in self.links.iter() {
            link.abort(&self.table, now, deliveries);
        }
        deliver(deliveries.drain(..));
        self.links.clear();
        self.waiters.wake_all();
    }
}

/// The text of a caught panic.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}
