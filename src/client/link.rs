//! One connection to a node, shared by the calling threads (which write their own frames) and the
//! client's I/O thread (which reads, runs timers, and finishes writes that would block).
//!
//! Lock order: a thread holding `Link::inner` may take `Node::current`; nobody takes
//! `Link::inner` while holding `Node::current`.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Instant;

use mio::Token;
use mio::net::TcpStream;
use parking_lot::Mutex;

use super::slot::Slot;
use super::table::{Node, NodeState, NodeTable};
use super::wake::IoWake;
use crate::proto::{
    ApiMisuse, ClientConn, ClientEvent, IdMap, InBuf, Outcome, RejectReason, decode, id_map,
};

const READ_CHUNK: usize = 16 * 1024;

/// Answers to hand to their slots once the link's lock is released.
pub(crate) type Deliveries = Vec<(Arc<Slot>, Outcome)>;

pub(crate) struct Link {
    pub node: Arc<Node>,
    pub token: Token,
    pub inner: Mutex<LinkInner>,
    io: Arc<IoWake>,
}

pub(crate) struct LinkInner {
    pub core: ClientConn,
    pub stream: TcpStream,
    pub input: InBuf,
    pub slots: IdMap<Arc<Slot>>,
    pub connected: bool,
    pub read_done: bool,
    /// Output waits for the I/O thread to write it (it was asked to).
    pub flush_wanted: bool,
}

/// Why a send did not happen.
pub(crate) enum SendFail {
    /// The connection cannot take a request now (not ready, draining, closed): choose again.
    NotSendable,
    /// The request is invalid anywhere.
    Invalid(ApiMisuse),
}

impl Link {
    pub fn new(
        node: Arc<Node>,
        token: Token,
        stream: TcpStream,
        core: ClientConn,
        io: Arc<IoWake>,
    ) -> Link {
        let inner = LinkInner {
            core,
            stream,
            input: InBuf::new(),
            slots: id_map(16),
            connected: false,
            read_done: false,
            flush_wanted: false,
        };
        Link {
            node,
            token,
            inner: Mutex::new(inner),
            io,
        }
    }

    /// Serializes a request. On an idle connection the calling thread writes it at once (the
    /// latency path: no hand-off). When other requests are outstanding, an answer is on its way
    /// and the I/O thread will be awake for it: the frame is left for the I/O thread, which
    /// writes every frame queued meanwhile in one `write` (the throughput path), and is woken
    /// once per batch in case it sleeps.
    #[allow(clippy::too_many_arguments)]
    pub fn send(
        self: &Arc<Self>,
        table: &NodeTable,
        now: Instant,
        method: &str,
        body: &[u8],
        deadline: Instant,
        idempotent: bool,
        slot: &Arc<Slot>,
    ) -> Result<u64, SendFail> {
        let mut deliveries = Deliveries::new();
        let mut wake = false;
        let res = {
            let mut g = self.inner.lock();
            let idle = g.core.out_len() == 0 && g.core.outstanding() == 0;
            match g
                .core
                .send_request(now, method, body, deadline, idempotent, 0)
            {
                Ok(id) => {
                    g.slots.insert(id, slot.clone());
                    self.node.add_outstanding();
                    if idle && g.connected {
                        self.flush(&mut g, table, now, &mut deliveries);
                    } else if !g.flush_wanted {
                        g.flush_wanted = true;
                        wake = true;
                    }
                    Ok(id)
                }
                Err(ApiMisuse::NotSendable) | Err(ApiMisuse::IdsExhausted) => {
                    Err(SendFail::NotSendable)
                }
                Err(e) => Err(SendFail::Invalid(e)),
            }
        };
        if wake {
            self.io.wake();
        } else if res.is_ok() {
            self.io.wake_before(deadline);
        }
        deliver(deliveries);
        res
    }

    /// Writes output a calling thread left for the I/O thread.
    pub fn flush_if_wanted(
        self: &Arc<Self>,
        table: &NodeTable,
        now: Instant,
        deliveries: &mut Deliveries,
    ) -> bool {
        let mut g = self.inner.lock();
        if g.flush_wanted && g.connected {
            self.flush(&mut g, table, now, deliveries);
        }
        self.finish(&mut g)
    }

    /// The caller gave up on `id` (its future was dropped): forget it and send CANCEL.
    pub fn cancel(self: &Arc<Self>, table: &NodeTable, id: u64) {
        let mut deliveries = Deliveries::new();
        {
            let mut g = self.inner.lock();
            if g.slots.remove(&id).is_some() {
                self.node.sub_outstanding();
            }
            let was_empty = g.core.out_len() == 0;
            g.core.cancel(id);
            if was_empty && g.connected {
                self.flush(&mut g, table, Instant::now(), &mut deliveries);
            }
        }
        deliver(deliveries);
    }

    /// Handles readiness from the I/O thread. Returns true when the link is finished and must be
    /// dropped.
    pub fn on_ready(
        self: &Arc<Self>,
        table: &NodeTable,
        now: Instant,
        to_end: bool,
        deliveries: &mut Deliveries,
    ) -> bool {
        let mut g = self.inner.lock();
        if !g.connected {
            match connect_result(&g.stream) {
                Ok(true) => {
                    g.connected = true;
                    let _ = g.stream.set_nodelay(true);
                }
                Ok(false) => return false, // still connecting
                Err(e) => {
                    log::debug!("connect to {} failed: {e}", self.node.addr());
                    g.core.handle_eof("connect failed");
                    self.process(&mut g, table, now, deliveries);
                    return true;
                }
            }
        }
        self.read(&mut g, table, now, to_end, deliveries);
        self.flush(&mut g, table, now, deliveries);
        self.finish(&mut g)
    }

    /// Runs the core's timers. Returns true when the link is finished.
    pub fn on_timer(
        self: &Arc<Self>,
        table: &NodeTable,
        now: Instant,
        deliveries: &mut Deliveries,
    ) -> bool {
        let mut g = self.inner.lock();
        if g.core.poll_timeout().is_some_and(|t| t <= now) {
            g.core.handle_timeout(now);
            self.process(&mut g, table, now, deliveries);
            if g.connected {
                self.flush(&mut g, table, now, deliveries);
            }
        }
        self.finish(&mut g)
    }

    /// Ends the link at once (client shutting down).
    pub fn abort(self: &Arc<Self>, table: &NodeTable, now: Instant, deliveries: &mut Deliveries) {
        let mut g = self.inner.lock();
        g.core.handle_eof("client closed");
        self.process(&mut g, table, now, deliveries);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.inner.lock().core.poll_timeout()
    }

    fn read(
        &self,
        g: &mut LinkInner,
        table: &NodeTable,
        now: Instant,
        to_end: bool,
        d: &mut Deliveries,
    ) {
        let limit = g.core.max_frame() as usize + crate::proto::HEADER_LEN;
        while !g.read_done {
            let room = g.input.spare(READ_CHUNK, limit.max(READ_CHUNK));
            if room.is_empty() {
                break;
            }
            match g.stream.read(room) {
                Ok(0) => {
                    g.read_done = true;
                    g.core.handle_eof("server closed the connection");
                }
                Ok(n) => {
                    // A short read drained the socket (see the server's `ReadOutcome`), unless a
                    // FIN may follow: then read on to see it.
                    let drained = n < room.len() && !to_end;
                    g.input.filled(n);
                    let LinkInner { core, input, .. } = g;
                    loop {
                        match decode(input.data(), core.max_frame()) {
                            Ok(Some((frame, used))) => {
                                if let Err(e) = core.handle_frame(now, frame) {
                                    log::warn!("connection to {}: {e}", self.node.addr());
                                }
                                input.consume(used);
                            }
                            Ok(None) => break,
                            Err(e) => {
                                let e = core.handle_decode_error(e);
                                log::warn!("connection to {}: {e}", self.node.addr());
                                input.consume(usize::MAX);
                                break;
                            }
                        }
                    }
                    if drained {
                        self.process(g, table, now, d);
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("read from {} failed: {e}", self.node.addr());
                    g.read_done = true;
                    g.core.handle_eof("connection reset");
                }
            }
            self.process(g, table, now, d);
            if g.core.is_closed() {
                break;
            }
        }
        g.input.shrink_if_empty(64 * 1024);
    }

    fn flush(&self, g: &mut LinkInner, table: &NodeTable, now: Instant, d: &mut Deliveries) {
        g.flush_wanted = false;
        while !g.core.out().is_empty() {
            match g.stream.write(g.core.out()) {
                Ok(n) => g.core.written(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("write to {} failed: {e}", self.node.addr());
                    g.core.handle_eof("write failed");
                    g.core.abandon_output();
                    break;
                }
            }
        }
        self.process(g, table, now, d);
    }

    /// Whether the core is done and its output is written (or can no longer be).
    fn finish(&self, g: &mut LinkInner) -> bool {
        if g.core.poll_close() {
            return true;
        }
        if g.core.is_closed() && g.read_done {
            g.core.abandon_output();
            return true;
        }
        false
    }

    /// Acts on the core's events: node state changes, and answers for their slots.
    fn process(&self, g: &mut LinkInner, table: &NodeTable, now: Instant, d: &mut Deliveries) {
        while let Some(ev) = g.core.poll_event() {
            match ev {
                ClientEvent::Ready(capacity) => {
                    if self.is_current() {
                        table.set_capacity(&self.node, capacity, now);
                    }
                }
                ClientEvent::GoAway { .. } => {
                    // Stop choosing the node at once; answers up to last_accepted still come here.
                    // (A newer connection already current is a restarted node: leave it be.)
                    let was_current = self.detach();
                    // A node discovery removed (a registry withdraws a node before its GOAWAY)
                    // stays removed: Draining would have it reconnected.
                    if (was_current || self.node.current.lock().is_none())
                        && self.node.state() != NodeState::Removed
                    {
                        table.set_state(&self.node, NodeState::Draining, now);
                    }
                }
                ClientEvent::NodeHint(reason) => match reason {
                    RejectReason::OVERLOADED | RejectReason::NOT_READY => {
                        // Busy (or not ready yet): a lower weight for a while, never an eviction,
                        // or a drain that shifts load onto the survivors would evict them too.
                        table.penalize(&self.node, now)
                    }
                    // Normally its GOAWAY came first; either way, stop choosing the node now —
                    // unless a newer connection (a restarted node) is already current.
                    RejectReason::SHUTTING_DOWN if self.detach() => {
                        table.set_state(&self.node, NodeState::Draining, now);
                    }
                    _ => {}
                },
                ClientEvent::Resolved { id, outcome, .. } => {
                    if let Some(slot) = g.slots.remove(&id) {
                        self.node.sub_outstanding();
                        d.push((slot, outcome));
                    }
                }
                ClientEvent::Closed { error } => {
                    if let Some(e) = &error {
                        log::debug!("connection to {} ended: {e}", self.node.addr());
                    }
                    if self.detach() && self.node.state() != NodeState::Removed {
                        table.set_state(&self.node, NodeState::Down, now);
                    }
                }
            }
        }
    }

    fn is_current(&self) -> bool {
        self.node
            .current
            .lock()
            .as_ref()
            .is_some_and(|l| std::ptr::eq(Arc::as_ptr(l), self))
    }

    /// Makes the node stop using this link. Returns true if it was the node's current link.
    fn detach(&self) -> bool {
        let mut cur = self.node.current.lock();
        if cur
            .as_ref()
            .is_some_and(|l| std::ptr::eq(Arc::as_ptr(l), self))
        {
            *cur = None;
            return true;
        }
        false
    }
}

/// Hands answers to their waiting calls (outside any lock).
pub(crate) fn deliver(deliveries: impl IntoIterator<Item = (Arc<Slot>, Outcome)>) {
    for (slot, outcome) in deliveries {
        slot.complete(outcome);
    }
}

/// Like [`deliver`], in two passes: every outcome is stored first, then every waiter is woken,
/// so a thread that polls many calls finds the whole batch ready when it wakes. `wakers` is
/// the I/O thread's reusable scratch space.
pub(crate) fn deliver_batch(
    deliveries: impl IntoIterator<Item = (Arc<Slot>, Outcome)>,
    wakers: &mut Vec<std::task::Waker>,
) {
    wakers.extend(
        deliveries
            .into_iter()
            .filter_map(|(slot, outcome)| slot.fill(outcome)),
    );
    for w in wakers.drain(..) {
        w.wake();
    }
}

/// Whether a non-blocking connect has finished: `Ok(true)` connected, `Ok(false)` not yet.
fn connect_result(stream: &TcpStream) -> io::Result<bool> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}
