//! [`CallSet`]: many futures in flight, polled from the calling thread, which writes their
//! requests and reads their answers itself when it can.
//!
//! A foreign executor polls a call, parks, and is woken by the client's I/O thread, which
//! read the answer and wrote the requests queued meanwhile: two thread hops and a wake per
//! batch. A set drives its futures in *rounds* instead:
//!
//! 1. it polls every future that was woken (a new future counts as woken); a call sent during
//!    the round is queued, not written, and does not wake the I/O thread
//!    ([`SendMode::Defer`](super::link::SendMode));
//! 2. it writes the round's requests, one `send` per connection ([`defer_flush`]), and
//!    already during the round once [`WRITE_BATCH`] are queued. A round's first request goes
//!    out alone, at once, only on an idle connection and while more than a batch of the round
//!    is still to be polled: the node starts on it meanwhile. In a shorter round it would
//!    only wake the node twice (16 in flight per thread: 8 requests per `send` instead of
//!    16, and fan-in at 0.58 of raw TCP instead of 0.72);
//! 3. when none of its futures is ready, and every one waits for nothing but a call on one
//!    connection that has no other call outstanding, it reads that connection itself
//!    ([`Link::read_for_set`]: plaintext in a blocking `recv`, TLS in `poll(2)`) until a batch
//!    of answers is in; otherwise it parks until woken, with the connection watched by the
//!    I/O thread again.
//!
//! Under TLS a round's requests are encrypted by the set's thread only while it is the
//! connection's reader: encrypting under the link's lock while the I/O thread decrypts would
//! stall both. The set keeps what its rounds queued itself (not its thread), so it may move
//! between threads between calls of `next`.
//!
//! "Nothing but a call" is proven the way [`block_on`](super::block_on) proves it: each
//! future has its own waker, and a pending future whose waker's only clone outside the set
//! is held by its call's slot can be woken by nothing else. So a future that also waits for a
//! timer or a channel is never starved: the set parks for it as any executor would.
//!
//! What a call guarantees (exactly-once resolution, its deadline, replay) is the call's own
//! business and holds whoever reads: the set's thread reads and handles frames through the
//! same code as the I/O thread, and stops reading before a deadline is due.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use super::driver::{Driver, OwnRead, driven_by, with_offers};
use super::link::Link;
use super::ready_list::{LaneMark, ReadyList};
use super::table::NodeTable;

/// The longest a set parks before it polls its futures again (as `block_on`'s slice).
const PARK_SLICE: Duration = Duration::from_millis(20);

/// A round writes its requests once this many are queued, not only at its end: the server
/// starts on the first ones while the set still polls the rest (with all 64 of a full round in
/// one write, each side idled while the other worked: 64 in flight took 1.3–1.4 µs per call,
/// with a write per 32 requests 0.9–1.1; per 8 it is slower again, 1.5).
const WRITE_BATCH: usize = 32;

thread_local! {
    /// The connections the future being polled queued requests on, and how many requests:
    /// the set polling it takes them over after the poll (`CallSet::take_queued`).
    static QUEUED: RefCell<(Vec<Pending>, usize)> = const { RefCell::new((Vec::new(), 0)) };
}

/// A connection with requests queued by a set's round, and its node table.
type Pending = (Arc<Link>, Arc<NodeTable>);

/// Called by a call whose request a set's round queued on `link` (see the module docs).
pub(super) fn defer_flush(link: &Arc<Link>, table: &Arc<NodeTable>) {
    QUEUED.with_borrow_mut(|(links, n)| {
        add_link(links, link, table);
        *n += 1;
    });
}

fn add_link(links: &mut Vec<Pending>, link: &Arc<Link>, table: &Arc<NodeTable>) {
    if !links.iter().any(|(l, _)| Arc::ptr_eq(l, link)) {
        links.push((link.clone(), table.clone()));
    }
}

/// One lane's waker: it puts the lane on the set's ready list.
struct LaneWaker {
    mark: LaneMark,
    ready: Arc<ReadyList>,
}

impl Wake for LaneWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.mark.wake(&self.ready);
    }
}

struct Lane<F> {
    fut: Pin<Box<Option<F>>>,
    arc: Arc<LaneWaker>,
    waker: Waker,
    /// The call the lane's future waits for, if its last poll offered exactly one read.
    offer: Option<OwnRead>,
}

impl<F> Lane<F> {
    /// Whether nothing but its call's slot can wake the lane: the set holds two references to
    /// its waker (`arc`, `waker`), the slot the third.
    fn only_the_call_can_wake(&self) -> bool {
        Arc::strong_count(&self.arc) == 3
    }
}

/// A bounded set of futures polled from the calling thread: push futures, take their outputs
/// with [`next`](Iterator::next) in the order they complete.
///
/// It is an executor for a thread that keeps many calls in flight without an async runtime
/// (a load generator, a fan-out). The set is an [`Iterator`] over its futures' outputs, and
/// they make progress only inside `next`: requests queued while a round is polled go out once
/// 32 are queued or the round ends, which happens in the calls of `next` that return the
/// round's outputs (or when the set is dropped). Any future may go in; for those that wait for
/// gracerpc calls only, the thread writes their requests per round and reads their answers
/// itself (see the module docs).
///
/// ```no_run
/// # use gracerpc::client::{CallSet, Client, CallOptions};
/// # fn f(client: &Client) {
/// let opts = CallOptions::new();
/// let bodies: Vec<[u8; 1]> = (0..200u8).map(|i| [i]).collect();
/// let mut set = CallSet::with_capacity(64);
/// let mut todo = bodies.iter();
/// // Keep up to 64 calls in flight; a new one goes in as each ends.
/// for body in todo.by_ref().take(64) {
///     let _ = set.push(client.call_ref("echo", body, &opts));
/// }
/// while let Some(result) = set.next() {
///     println!("{:?}", result.map(|r| r.body));
///     if let Some(body) = todo.next() {
///         let _ = set.push(client.call_ref("echo", body, &opts));
///     }
/// }
/// # }
/// ```
pub struct CallSet<F: Future> {
    lanes: Vec<Lane<F>>,
    /// Lanes without a future.
    free: Vec<usize>,
    ready: Arc<ReadyList>,
    /// The lanes of the round being polled, and how far the round got.
    round: Vec<usize>,
    at: usize,
    /// Connections with requests the round queued, and how many requests: written by
    /// [`write_round`](Self::write_round). Kept by the set, not the thread, so a set moved
    /// to another thread between calls still writes them.
    queued: Vec<Pending>,
    requests: usize,
}

impl<F: Future> CallSet<F> {
    /// A set holding at most `capacity` futures at once (at least one).
    pub fn with_capacity(capacity: usize) -> CallSet<F> {
        let capacity = capacity.max(1);
        let ready = Arc::new(ReadyList::with_capacity(capacity));
        let lanes = (0..capacity)
            .map(|lane| {
                let arc = Arc::new(LaneWaker {
                    mark: LaneMark::new(lane),
                    ready: ready.clone(),
                });
                Lane {
                    fut: Box::pin(None),
                    waker: Waker::from(arc.clone()),
                    arc,
                    offer: None,
                }
            })
            .collect();
        CallSet {
            lanes,
            free: (0..capacity).rev().collect(),
            ready,
            round: Vec::with_capacity(capacity),
            at: 0,
            queued: Vec::new(),
            requests: 0,
        }
    }

    /// How many futures the set holds.
    pub fn len(&self) -> usize {
        self.lanes.len() - self.free.len()
    }

    /// Whether the set holds no future.
    pub fn is_empty(&self) -> bool {
        self.free.len() == self.lanes.len()
    }

    /// The most futures the set holds at once.
    pub fn capacity(&self) -> usize {
        self.lanes.len()
    }

    /// Adds a future, to be polled first by the next [`next`](Iterator::next). Gives it back when
    /// the set is full.
    pub fn push(&mut self, fut: F) -> Result<(), F> {
        let Some(i) = self.free.pop() else {
            return Err(fut);
        };
        let lane = &mut self.lanes[i];
        lane.fut.set(Some(fut));
        lane.arc.wake_by_ref();
        Ok(())
    }

    /// [`next`](Iterator::next), waiting at most `timeout`: `None` also when it passed first
    /// (tell the two apart with [`is_empty`](Self::is_empty)).
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<F::Output> {
        self.next_until(Some(Instant::now() + crate::capped(timeout)))
    }

    fn next_until(&mut self, until: Option<Instant>) -> Option<F::Output> {
        loop {
            if self.is_empty() {
                self.write_round();
                return None;
            }
            if self.at == self.round.len() && !self.next_round() {
                // Nothing is ready: write the round's requests, then read or park.
                self.write_round();
                if !self.next_round() {
                    if until.is_some_and(|t| Instant::now() >= t) {
                        return None;
                    }
                    self.wait(until);
                }
                continue;
            }
            let i = self.round[self.at];
            self.at += 1;
            if let Some(out) = self.poll_lane(i) {
                if self.at == self.round.len() && self.ready.is_empty() {
                    // The last of the round: its requests go out now, not when the caller
                    // comes back.
                    self.write_round();
                }
                return Some(out);
            }
        }
    }

    /// Takes over the requests the last poll queued; writes them once [`WRITE_BATCH`] are.
    fn take_queued(&mut self) {
        let queued = &mut self.queued;
        let n = QUEUED.with_borrow_mut(|(links, n)| {
            for (link, table) in links.drain(..) {
                add_link(queued, &link, &table);
            }
            std::mem::take(n)
        });
        self.requests += n;
        if self.requests >= WRITE_BATCH {
            self.write_round();
        }
    }

    /// Writes the requests the round queued, one `send` per connection.
    fn write_round(&mut self) {
        self.requests = 0;
        for (link, table) in self.queued.drain(..) {
            link.flush_deferred(&table);
        }
    }

    /// Takes the ready list as the next round. Returns false if it was empty.
    fn next_round(&mut self) -> bool {
        self.at = 0;
        self.ready.take(&mut self.round)
    }

    fn poll_lane(&mut self, i: usize) -> Option<F::Output> {
        let lane = &mut self.lanes[i];
        lane.arc.mark.polling();
        let fut = lane.fut.as_mut().as_pin_mut()?;
        let mut cx = Context::from_waker(&lane.waker);
        let long_round = self.round.len() - self.at > WRITE_BATCH;
        let polled = driven_by(Driver::Set { long_round }, || fut.poll(&mut cx));
        self.take_queued();
        let lane = &mut self.lanes[i];
        // The lane's call, if its poll offered exactly one read.
        lane.offer = with_offers(|o| {
            let one = if o.len() == 1 { o.pop() } else { None };
            o.clear();
            one
        });
        match polled {
            Poll::Pending => None,
            Poll::Ready(out) => {
                lane.fut.set(None);
                lane.offer = None;
                self.free.push(i);
                Some(out)
            }
        }
    }

    /// Nothing is ready: reads the one connection every pending future waits on, if there is
    /// one (see the module docs); else parks until a future is woken (at most a slice).
    fn wait(&mut self, until: Option<Instant>) {
        if let Some((link, table, calls, deadline)) = self.own_read_plan() {
            let ready = &self.ready;
            let stop = || !ready.is_empty();
            let deadline = until.map_or(deadline, |t| t.min(deadline));
            if link.read_for_set(&table, calls, deadline, &stop) {
                return;
            }
        }
        // The I/O thread reads for us meanwhile: give it back any connection our last read
        // left out of its poll.
        let mut last: Option<&Arc<Link>> = None;
        for o in self.lanes.iter().filter_map(|l| l.offer.as_ref()) {
            // (Lanes on one link come one after another, mostly: once per run is enough.)
            if !last.is_some_and(|l| Arc::ptr_eq(l, &o.link)) {
                o.link.unlease();
                last = Some(&o.link);
            }
        }
        let slice = until.map_or(PARK_SLICE, |t| {
            PARK_SLICE.min(t.saturating_duration_since(Instant::now()))
        });
        self.ready.sleep(slice);
        // A call past its deadline is polled again, which ends it even if the I/O thread that
        // should have is gone or stalled (as `block_on` polls again every slice).
        let now = Instant::now();
        for lane in &self.lanes {
            if lane.offer.as_ref().is_some_and(|o| o.deadline <= now) {
                lane.arc.wake_by_ref();
            }
        }
    }

    /// The connection to read, the table, the calls outstanding there and the earliest
    /// deadline, when every future in the set waits for nothing but one call on it.
    fn own_read_plan(&self) -> Option<(Arc<Link>, Arc<NodeTable>, usize, Instant)> {
        let mut plan: Option<(&OwnRead, usize, Instant)> = None;
        for lane in &self.lanes {
            if lane.fut.is_none() {
                continue;
            }
            let o = lane.offer.as_ref()?;
            if !lane.only_the_call_can_wake() {
                return None;
            }
            match &mut plan {
                None => plan = Some((o, 1, o.deadline)),
                Some((first, calls, deadline)) => {
                    if !Arc::ptr_eq(&first.link, &o.link) {
                        return None;
                    }
                    *calls += 1;
                    *deadline = (*deadline).min(o.deadline);
                }
            }
        }
        let (o, calls, deadline) = plan?;
        Some((o.link.clone(), o.table.clone(), calls, deadline))
    }
}

/// The set's outputs as they complete; iterating blocks the thread. Futures pushed after it
/// returned `None` (the set was empty) are waited for by the next call.
impl<F: Future> Iterator for CallSet<F> {
    type Item = F::Output;

    /// Waits for one of the set's futures to complete and returns its output; `None` when the
    /// set is empty. (Any thread may call it; the set may move between threads.)
    fn next(&mut self) -> Option<F::Output> {
        self.next_until(None)
    }
}

impl<F: Future> Drop for CallSet<F> {
    fn drop(&mut self) {
        // Dropping the futures cancels their calls; what a round queued still goes out (a
        // cancelled request is answered and forgotten, as any other).
        for lane in &mut self.lanes {
            lane.fut.set(None);
        }
        self.take_queued();
        self.write_round();
    }
}
