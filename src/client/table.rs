//! The healthy-node table: which nodes a call may go to, and the choice between them.
//!
//! # Why it is built this way
//! Choosing a node is on every call's path, and updates (a GOAWAY, a READY, a node added by
//! discovery) happen while calls are being made. So the choose path takes **no lock at all**:
//!
//! * Nodes live in an append-only array of [`OnceLock`] slots with an atomic length. A slot, once
//!   filled, is never emptied or moved; a removed node is only marked removed (and revived in
//!   place if it comes back). A chooser reads the length and the slots without waiting for anyone.
//! * Everything that changes about a node (state, advertised capacity, outstanding calls, an
//!   overload penalty) is an atomic of its own, written with a single store.
//! * Writers that must change several things together (adding nodes) serialize on one `Mutex`
//!   that choosers never take, so a writer that stalls never stalls a call.
//!
//! A GOAWAY is processed by a single atomic store of [`NodeState::Draining`]: any choice that
//! starts after that store sees it and skips the node.
//!
//! Balancing is power-of-two-choices on outstanding calls weighted by capacity: two random
//! choosable nodes are compared by `(outstanding + 1) / capacity` and the lower wins. A node that
//! answered OVERLOADED recently counts a quarter of its capacity for a short while (it is never
//! evicted for being busy).

use std::cell::Cell;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};

use super::cause::{Issue, NodeCause, NodeReport};

/// The most nodes a table holds.
pub const MAX_NODES: usize = 256;

/// How long an OVERLOADED answer lowers a node's weight.
const PENALTY: Duration = Duration::from_millis(200);

/// Where a node stands, as the caller sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NodeState {
    /// Connecting or handshaking; not chosen.
    Connecting,
    /// READY with a capacity below 100 %: chosen, with a smaller share.
    Warming,
    /// READY at full capacity.
    Ready,
    /// GOAWAY seen: not chosen; answers to requests it accepted still arrive.
    Draining,
    /// Not connected; reconnecting with backoff.
    Down,
    /// Discovery no longer lists it.
    Removed,
}

impl NodeState {
    fn from_u8(v: u8) -> NodeState {
        match v {
            0 => NodeState::Connecting,
            1 => NodeState::Warming,
            2 => NodeState::Ready,
            3 => NodeState::Draining,
            4 => NodeState::Down,
            _ => NodeState::Removed,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            NodeState::Connecting => 0,
            NodeState::Warming => 1,
            NodeState::Ready => 2,
            NodeState::Draining => 3,
            NodeState::Down => 4,
            NodeState::Removed => 5,
        }
    }

    /// Whether calls may be sent to a node in this state.
    pub fn is_choosable(self) -> bool {
        matches!(self, NodeState::Warming | NodeState::Ready)
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One node.
pub struct Node {
    addr: SocketAddr,
    index: usize,
    state: AtomicU8,
    capacity: AtomicU8,
    outstanding: AtomicU32,
    /// Nanoseconds since the table's epoch until which the node is penalized.
    penalty_until: AtomicU64,
    /// Its latest failure (only failure paths and a call that found no node touch it).
    issue: Mutex<Issue>,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("addr", &self.addr)
            .field("state", &self.state())
            .field("capacity", &self.capacity())
            .field("outstanding", &self.outstanding())
            .finish()
    }
}

impl Node {
    /// The node's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its slot in the table.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Its state.
    pub fn state(&self) -> NodeState {
        NodeState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// The capacity from its last READY (percent), 0 before any.
    pub fn capacity(&self) -> u8 {
        self.capacity.load(Ordering::Relaxed)
    }

    /// Calls sent to it and not yet resolved.
    pub fn outstanding(&self) -> u32 {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// A call was sent to it (the client's driver counts; public for simulations).
    #[doc(hidden)]
    pub fn add_outstanding(&self) {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
    }

    /// The node is ready: its past failures no longer say anything.
    pub(crate) fn note_usable(&self) {
        let mut issue = self.issue.lock();
        if issue.cause.is_some() {
            *issue = Issue::default();
        }
    }

    /// A call sent to it resolved.
    #[doc(hidden)]
    pub fn sub_outstanding(&self) {
        let _ = self
            .outstanding
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(1))
            });
    }
}

/// A point-in-time view of one node, for tools and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSnapshot {
    /// The node's address.
    pub addr: SocketAddr,
    /// Its state.
    pub state: NodeState,
    /// Its advertised capacity (percent).
    pub capacity: u8,
    /// Calls outstanding on it.
    pub outstanding: u32,
}

/// A change of a node's state, delivered to subscribers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEvent {
    /// The node's address.
    pub addr: SocketAddr,
    /// Its new state.
    pub state: NodeState,
    /// Its capacity (percent) at that moment.
    pub capacity: u8,
    /// When the client processed the change.
    pub at: Instant,
}

/// The table of nodes. See the module docs for how it stays lock-free on the choose path.
pub struct NodeTable {
    slots: Box<[OnceLock<Arc<Node>>]>,
    len: AtomicUsize,
    update: Mutex<()>,
    epoch: Instant,
    subscribers: Mutex<Vec<crossbeam_channel::Sender<NodeEvent>>>,
    /// Bumped whenever a node becomes choosable, or fails in a way that may end the wait of a
    /// call (see `note_failure`); callers waiting for a node watch it.
    pub(crate) ready_epoch: AtomicU64,
    /// GOAWAY frames received from the nodes (for `ClientMetrics`).
    pub(crate) goaways_received: AtomicU64,
}

impl fmt::Debug for NodeTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.nodes()).finish()
    }
}

impl Default for NodeTable {
    fn default() -> Self {
        NodeTable::new()
    }
}

impl NodeTable {
    /// An empty table.
    pub fn new() -> NodeTable {
        NodeTable {
            slots: (0..MAX_NODES).map(|_| OnceLock::new()).collect(),
            len: AtomicUsize::new(0),
            update: Mutex::new(()),
            epoch: Instant::now(),
            subscribers: Mutex::new(Vec::new()),
            ready_epoch: AtomicU64::new(0),
            goaways_received: AtomicU64::new(0),
        }
    }

    /// The update side's lock. Writers that change several things hold it; the choose path
    /// never takes it (tests hold it on purpose to prove that).
    pub fn update_lock(&self) -> MutexGuard<'_, ()> {
        self.update.lock()
    }

    /// Every node ever added (removed ones included), without locking.
    pub fn nodes(&self) -> impl Iterator<Item = &Arc<Node>> {
        let len = self.len.load(Ordering::Acquire);
        self.slots[..len].iter().filter_map(OnceLock::get)
    }

    /// The node with this address, if any.
    pub fn find(&self, addr: SocketAddr) -> Option<&Arc<Node>> {
        self.nodes().find(|n| n.addr == addr)
    }

    /// A snapshot of every node not removed.
    pub fn snapshot(&self) -> Vec<NodeSnapshot> {
        self.nodes()
            .filter(|n| n.state() != NodeState::Removed)
            .map(|n| NodeSnapshot {
                addr: n.addr,
                state: n.state(),
                capacity: n.capacity(),
                outstanding: n.outstanding(),
            })
            .collect()
    }

    /// Adds a node (or revives a removed one) in state Down, ready to be connected. Returns it,
    /// or `None` if the table is full.
    pub fn upsert(&self, addr: SocketAddr) -> Option<Arc<Node>> {
        let _guard = self.update.lock();
        if let Some(n) = self.find(addr) {
            if n.state() == NodeState::Removed {
                self.set_state(n, NodeState::Down, Instant::now());
            }
            return Some(n.clone());
        }
        let index = self.len.load(Ordering::Acquire);
        let slot = self.slots.get(index)?;
        let node = Arc::new(Node {
            addr,
            index,
            state: AtomicU8::new(NodeState::Down.to_u8()),
            capacity: AtomicU8::new(0),
            outstanding: AtomicU32::new(0),
            penalty_until: AtomicU64::new(0),
            issue: Mutex::new(Issue::default()),
        });
        let _ = slot.set(node.clone());
        self.len.store(index + 1, Ordering::Release);
        Some(node)
    }

    /// Sets a node's state (one atomic store) and tells subscribers.
    pub fn set_state(&self, node: &Node, state: NodeState, now: Instant) {
        let old = NodeState::from_u8(node.state.swap(state.to_u8(), Ordering::AcqRel));
        if state.is_choosable() && !old.is_choosable() {
            self.ready_epoch.fetch_add(1, Ordering::AcqRel);
        }
        if old != state {
            self.publish(node, state, now);
        }
    }

    /// Records a READY capacity: the node becomes Warming or Ready.
    pub fn set_capacity(&self, node: &Node, capacity: u8, now: Instant) {
        let old = node.capacity.swap(capacity, Ordering::AcqRel);
        let state = if capacity >= 100 {
            NodeState::Ready
        } else {
            NodeState::Warming
        };
        if node.state() != state {
            self.set_state(node, state, now);
        } else if old != capacity {
            self.publish(node, state, now);
        }
    }

    /// Records why `node` is not usable (the I/O thread, as a connection fails). A cause that
    /// can make calls give up early (a failed handshake, the start of a run of refusals) wakes
    /// the calls waiting for a node, so they look again.
    pub(crate) fn note_failure(&self, node: &Node, cause: NodeCause, now: Instant) {
        log::debug!("node {}: {cause}", node.addr);
        let wake = {
            let mut issue = node.issue.lock();
            let new_streak = cause == NodeCause::Refused && issue.refused_since.is_none();
            let wake = new_streak
                || matches!(cause, NodeCause::HandshakeFailed(_))
                    && !matches!(issue.cause, Some(NodeCause::HandshakeFailed(_)));
            issue.failed(cause, now);
            wake
        };
        if wake {
            self.ready_epoch.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Lowers a node's weight for a short while (it answered OVERLOADED).
    pub fn penalize(&self, node: &Node, now: Instant) {
        let until = (now + PENALTY)
            .saturating_duration_since(self.epoch)
            .as_nanos() as u64;
        node.penalty_until.store(until, Ordering::Relaxed);
    }

    /// Chooses a node for a call: power-of-two-choices among the choosable nodes, weighted by
    /// capacity. `avoid` (a node that just rejected this call) is skipped when another node is
    /// choosable. Takes no lock.
    pub fn choose(&self, now: Instant, avoid: Option<usize>) -> Option<Arc<Node>> {
        self.choose_except(now, avoid, &NodeSet::default())
    }

    /// [`choose`](Self::choose), never returning a node in `skip` (nodes a call just found
    /// without a usable connection).
    pub(crate) fn choose_except(
        &self,
        now: Instant,
        avoid: Option<usize>,
        skip: &NodeSet,
    ) -> Option<Arc<Node>> {
        let mut picks = [usize::MAX; 2];
        let mut seen = 0usize;
        let mut avoided = None;
        // Reservoir-sample two choosable nodes in one pass, without allocating.
        for node in self.nodes() {
            if !node.state().is_choosable() || skip.contains(node.index) {
                continue;
            }
            if Some(node.index) == avoid {
                avoided = Some(node.index);
                continue;
            }
            seen += 1;
            if seen <= 2 {
                picks[seen - 1] = node.index;
            } else {
                let r = random_below(seen);
                if r < 2 {
                    picks[r] = node.index;
                }
            }
        }
        let get = |i: usize| self.slots.get(i).and_then(OnceLock::get);
        match seen {
            0 => avoided.and_then(get).cloned(),
            1 => get(picks[0]).cloned(),
            _ => {
                let (a, b) = (get(picks[0])?, get(picks[1])?);
                // Ties (idle nodes, a caller with one call at a time) are broken at random:
                // favouring the first sample would send every such caller to the same node.
                let (la, lb) = (self.load(a, now), self.load(b, now));
                let pick = if la < lb || (la == lb && random_below(2) == 0) {
                    a
                } else {
                    b
                };
                Some(pick.clone())
            }
        }
    }

    /// Whether the node answered OVERLOADED (or NOT_READY) within the last [`PENALTY`].
    fn penalized(&self, node: &Node, now: Instant) -> bool {
        let now_ns = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        node.penalty_until.load(Ordering::Relaxed) > now_ns
    }

    /// Whether a call that finds no node should stop waiting for one: every node listed
    /// (at least one) has failed its handshake, or has refused connections for `patience`.
    /// Otherwise the instant to look again, if one of them may become hopeless (`Err`).
    pub(crate) fn hopeless(&self, now: Instant, patience: Duration) -> Result<(), Option<Instant>> {
        let mut any = false;
        let mut recheck: Option<Instant> = None;
        let mut all = true;
        for node in self.nodes() {
            let state = node.state();
            if state == NodeState::Removed {
                continue;
            }
            any = true;
            let at = match state {
                NodeState::Down | NodeState::Connecting => {
                    node.issue.lock().hopeless_at(patience, now)
                }
                _ => None,
            };
            match at {
                Some(t) if t <= now => {}
                Some(t) => {
                    all = false;
                    recheck = Some(recheck.map_or(t, |r| r.min(t)));
                }
                None => all = false,
            }
        }
        if any && all { Ok(()) } else { Err(recheck) }
    }

    /// Why each listed node could not take a call, for `CallError::NoNodeAvailable`.
    pub(crate) fn report(&self, now: Instant) -> Vec<NodeReport> {
        self.nodes()
            .filter(|n| n.state() != NodeState::Removed)
            .map(|n| {
                let cause = match n.state() {
                    NodeState::Draining => NodeCause::Draining,
                    s if s.is_choosable() && self.penalized(n, now) => NodeCause::Overloaded,
                    s => match n.issue.lock().cause.clone() {
                        Some(c) => c,
                        None if s.is_choosable() => NodeCause::NotReading,
                        None if s == NodeState::Down => {
                            NodeCause::ConnectionLost("not connected".into())
                        }
                        None => NodeCause::NotReady,
                    },
                };
                NodeReport {
                    addr: n.addr,
                    cause,
                }
            })
            .collect()
    }

    /// Outstanding calls per unit of capacity (lower is better), scaled to integers.
    fn load(&self, node: &Node, now: Instant) -> u64 {
        let mut capacity = u64::from(node.capacity().max(1));
        if self.penalized(node, now) {
            capacity = (capacity / 4).max(1);
        }
        (u64::from(node.outstanding()) + 1) * 10_000 / capacity
    }

    /// A channel of node state changes (bounded; a subscriber that does not read loses events,
    /// never blocks the client).
    pub fn subscribe(&self) -> crossbeam_channel::Receiver<NodeEvent> {
        let (tx, rx) = crossbeam_channel::bounded(4096);
        self.subscribers.lock().push(tx);
        rx
    }

    fn publish(&self, node: &Node, state: NodeState, now: Instant) {
        let mut subs = self.subscribers.lock();
        if subs.is_empty() {
            return;
        }
        let ev = NodeEvent {
            addr: node.addr,
            state,
            capacity: node.capacity(),
            at: now,
        };
        subs.retain(|tx| {
            !matches!(
                tx.try_send(ev.clone()),
                Err(crossbeam_channel::TrySendError::Disconnected(_))
            )
        });
    }
}

/// A set of node indexes (the table holds at most [`MAX_NODES`]).
#[derive(Clone, Default, Debug)]
pub(crate) struct NodeSet([u64; MAX_NODES / 64]);

impl NodeSet {
    pub fn insert(&mut self, i: usize) {
        if let Some(w) = self.0.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }

    pub fn contains(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let t = Instant::now();
    let addr = &t as *const Instant as u64;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (addr ^ nanos.rotate_left(17)) | 1
}

/// Seeds this thread's balancing choices (and reconnection jitter), for a deterministic
/// simulation that drives a [`NodeTable`] from one thread. Not needed otherwise: each thread
/// seeds itself from the clock.
#[doc(hidden)]
pub fn seed_thread_rng(seed: u64) {
    RNG.with(|c| c.set(seed | 1));
}

/// A uniform-enough random number below `n` (xorshift; for load balancing, not security).
#[doc(hidden)]
pub fn random_below(n: usize) -> usize {
    RNG.with(|c| {
        let mut x = c.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.set(x);
        ((x >> 11) % n.max(1) as u64) as usize
    })
}
