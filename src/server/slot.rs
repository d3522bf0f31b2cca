//! The per-request slot: one atomic run-or-reject-or-answer state, and, for requests answered
//! later (deferred and async handlers), the room for the answer and the link that puts the slot
//! on the loop's list of finished requests.
//!
//! A worker, a responder on any thread, an async task, and the event loop (draining, cancelling,
//! expiring, or closing the connection) race for the state with compare-and-swaps, and only the
//! winner acts:
//!
//! ```text
//! QUEUED ──try_start──► RUNNING ──try_answer──► ANSWERED
//!    └────try_reject──► REJECTED
//! ```
//!
//! So a request is never both run and rejected (protocol.md rule 2), and one that ran is
//! answered exactly once: the first `try_answer` wins, every later answer is dropped.
//!
//! Completing a slot allocates nothing and never blocks: the slot is its own list node (an
//! intrusive Treiber stack that only the loop empties, all at once, so there is no ABA), so the
//! list can never be full, however long responders outlive the workers.

use std::ptr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Waker;
use std::time::Instant;

use parking_lot::Mutex;

use super::handler::Reply;
use super::latency::MethodLatency;
use super::sync::{AtomicPtr, AtomicU8, UnsafeCell};
use super::token::ConnRef;
use crate::proto::RejectReason;

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const REJECTED: u8 = 2;
const ANSWERED: u8 = 3;

/// How an accepted request ended, as its runner reports it to the loop.
pub(crate) enum Answer {
    Ran(Reply),
    /// Never started (its deadline passed while queued, or its runtime dropped it unpolled).
    Rejected(RejectReason),
    /// Ran, and the worker wrote the answer itself (`tail`: all but the rest the connection's
    /// wire holds; see `wire.rs`).
    Written {
        tail: bool,
    },
}

/// A worker's answer for the loop.
pub(crate) struct Completion {
    pub conn: ConnRef,
    pub id: u64,
    pub result: Answer,
    /// The request's buffer, back for reuse.
    pub buf: Vec<u8>,
    /// The worker kept the request's buffer (`buf` is empty): pool the answer's instead.
    pub pool_answer: bool,
    /// The worker counted the answer among the completed ones already (and recorded its
    /// latency): it was about to write it itself.
    pub counted: bool,
    /// The job's timing, back to the loop, which records it with its own clock reading.
    pub timing: Option<(Instant, Arc<MethodLatency>)>,
}

/// The shared state of one accepted request.
pub(crate) struct JobState {
    state: AtomicU8,
    /// Answered later (a deferred or async handler): finished through the done list.
    deferred: bool,
    conn: ConnRef,
    id: u64,
    /// The next slot on the done list.
    next: AtomicPtr<JobState>,
    /// Written once, by the thread that won `try_answer` (or `try_reject` for an async task
    /// dropped unpolled), before it pushes the slot; read by the loop after it took the list.
    answer: UnsafeCell<Option<Answer>>,
    /// An async task to wake when someone else answered for it (cancel, deadline), so it drops
    /// its future.
    waker: Mutex<Option<Waker>>,
    /// When the loop accepted it, and its method's histogram (metrics on, answered later):
    /// the loop records the latency when it takes the answer off the done list.
    timing: Option<(Instant, Arc<MethodLatency>)>,
}

// SAFETY: `answer` is the only non-Sync field. It is written by exactly one thread — the one
// whose compare-and-swap moved the state out of RUNNING (or QUEUED) for a deferred slot — and
// only before that thread pushes the slot on the done list (a Release swap); the loop reads it
// only after taking the list (an Acquire swap). No two threads ever touch it at once.
unsafe impl Sync for JobState {}

impl Default for JobState {
    fn default() -> Self {
        JobState {
            state: AtomicU8::new(QUEUED),
            deferred: false,
            conn: ConnRef {
                slot: 0,
                generation: 0,
            },
            id: 0,
            next: AtomicPtr::new(ptr::null_mut()),
            answer: UnsafeCell::new(None),
            waker: Mutex::new(None),
            timing: None,
        }
    }
}

impl std::fmt::Debug for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobState")
            .field("state", &self.state.load(Ordering::Relaxed))
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl JobState {
    /// Sets who the slot is for. Only on a slot no other thread holds.
    pub fn prepare(
        &mut self,
        conn: ConnRef,
        id: u64,
        deferred: bool,
        timing: Option<(Instant, Arc<MethodLatency>)>,
    ) {
        // Exclusive (`&mut`): plain stores, written so under loom as well.
        self.state.store(QUEUED, Ordering::Relaxed);
        self.next.store(ptr::null_mut(), Ordering::Relaxed);
        // SAFETY: `&mut self`: no other access.
        self.answer.with_mut(|a| unsafe { *a = None });
        self.timing = timing;
        *self.waker.get_mut() = None;
        self.conn = conn;
        self.id = id;
        self.deferred = deferred;
    }

    /// The connection the request came on.
    pub fn conn(&self) -> ConnRef {
        self.conn
    }

    /// The request id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// When it was accepted and where its latency goes, if its method is timed and it is
    /// answered later.
    pub fn timing(&self) -> Option<&(Instant, Arc<MethodLatency>)> {
        self.timing.as_ref()
    }

    /// Whether the request is answered later, through the done list.
    pub fn is_deferred(&self) -> bool {
        self.deferred
    }

    /// Queued → running. False if the loop rejected it first.
    pub fn try_start(&self) -> bool {
        self.cas(QUEUED, RUNNING)
    }

    /// Queued → rejected. False if it was started first: it must then be answered.
    pub fn try_reject(&self) -> bool {
        self.cas(QUEUED, REJECTED)
    }

    /// Running → answered: true for the first answer only.
    pub fn try_answer(&self) -> bool {
        self.cas(RUNNING, ANSWERED)
    }

    /// Someone answered the request (or it was rejected): a runner still working on it may stop.
    pub fn is_settled(&self) -> bool {
        matches!(self.state.load(Ordering::Acquire), ANSWERED | REJECTED)
    }

    fn cas(&self, from: u8, to: u8) -> bool {
        // `--cfg loom_break_cas`: a deliberately broken CAS (a load, then a store), to show
        // the loom models catch it. Never in a real build.
        #[cfg(loom_break_cas)]
        {
            if self.state.load(Ordering::Acquire) != from {
                return false;
            }
            self.state.store(to, Ordering::Release);
            true
        }
        #[cfg(not(loom_break_cas))]
        self.state
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Stores the answer. Only the thread that just won `try_answer` (or `try_reject`) calls it,
    /// once, before [`DoneList::push`].
    pub fn set_answer(&self, answer: Answer) {
        // SAFETY: see the `Sync` impl — the caller won the state, so no other thread writes,
        // and the loop reads only after the push that follows.
        self.answer.with_mut(|a| unsafe { *a = Some(answer) })
    }

    /// Takes the answer. Only the loop calls it, on a slot it took from the done list.
    pub fn take_answer(&self) -> Option<Answer> {
        // SAFETY: the slot came off the done list (Acquire), after its writer's last write.
        self.answer.with_mut(|a| unsafe { (*a).take() })
    }

    /// Records the async task to wake when the request is answered by someone else.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub fn register_waker(&self, w: &Waker) {
        let mut slot = self.waker.lock();
        match slot.as_ref() {
            Some(old) if old.will_wake(w) => {}
            _ => *slot = Some(w.clone()),
        }
    }

    /// Wakes the registered task, if any (after someone else answered for it).
    pub fn wake_runner(&self) {
        if let Some(w) = self.waker.lock().take() {
            w.wake();
        }
    }
}

/// The slots whose answers wait for the loop: a lock-free stack of [`JobState`]s.
#[derive(Debug, Default)]
pub(crate) struct DoneList {
    head: AtomicPtr<JobState>,
}

impl DoneList {
    /// Pushes a finished slot. The caller won its state (so each slot is on the list at most
    /// once): never blocks, never allocates (the `Arc` becomes the node).
    pub fn push(&self, slot: Arc<JobState>) {
        let raw = Arc::into_raw(slot).cast_mut();
        let mut head = self.head.load(Ordering::Relaxed);
        #[cfg(loom_break_cas)]
        {
            // The broken twin of the loop below (see `JobState::cas`): a load, then a store.
            unsafe { (*raw).next.store(head, Ordering::Relaxed) };
            self.head.store(raw, Ordering::Release);
            return;
        }
        #[allow(unreachable_code)]
        loop {
            // SAFETY: `raw` is ours until the swap below publishes it.
            unsafe { (*raw).next.store(head, Ordering::Relaxed) };
            match self
                .head
                .compare_exchange_weak(head, raw, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }

    /// Whether nothing is on the list (for the loom models).
    #[cfg(all(test, gracerpc_loom))]
    pub fn is_empty(&self) -> bool {
        self.head.load(Ordering::Acquire).is_null()
    }

    /// Takes every slot pushed so far (most recent first).
    pub fn take_all(&self) -> Taken {
        Taken(self.head.swap(ptr::null_mut(), Ordering::Acquire))
    }
}

impl Drop for DoneList {
    fn drop(&mut self) {
        for slot in self.take_all() {
            drop(slot);
        }
    }
}

/// The slots taken off a [`DoneList`], as an iterator of the `Arc`s pushed.
pub(crate) struct Taken(*mut JobState);

impl Iterator for Taken {
    type Item = Arc<JobState>;

    fn next(&mut self) -> Option<Arc<JobState>> {
        if self.0.is_null() {
            return None;
        }
        // SAFETY: every node came from `Arc::into_raw` in `push`, and the list was taken by one
        // swap, so this iterator owns each node exactly once.
        let slot = unsafe { Arc::from_raw(self.0) };
        self.0 = slot.next.swap(ptr::null_mut(), Ordering::Relaxed);
        Some(slot)
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        for slot in self.by_ref() {
            drop(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    //! Bounded stress of the compare-and-swap rules: threads race for each slot's state, and
    //! exactly one wins; every slot pushed comes off the list exactly once.

    use super::*;
    use std::sync::Barrier;

    #[test]
    fn exactly_one_of_racing_answers_wins_and_each_push_comes_off_once() {
        const ROUNDS: usize = 2000;
        const RACERS: usize = 3;
        let list = Arc::new(DoneList::default());
        let mut taken = 0usize;
        for round in 0..ROUNDS {
            let slot = Arc::new(JobState::default());
            // Half the rounds race a start against a reject first.
            let started = if round % 2 == 0 {
                assert!(slot.try_start());
                true
            } else {
                false
            };
            let barrier = Arc::new(Barrier::new(RACERS));
            let handles: Vec<_> = (0..RACERS)
                .map(|i| {
                    let (slot, list, barrier) = (slot.clone(), list.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        let won = if started {
                            slot.try_answer()
                        } else if i == 0 {
                            slot.try_start() && slot.try_answer()
                        } else {
                            slot.try_reject()
                        };
                        if won {
                            slot.set_answer(Answer::Rejected(RejectReason::CANCELLED));
                            list.push(slot);
                        }
                        won
                    })
                })
                .collect();
            let wins = handles
                .into_iter()
                .map(|h| h.join().expect("racer"))
                .filter(|&w| w)
                .count();
            assert_eq!(wins, 1, "round {round}: {wins} answers won");
            if round % 64 == 63 {
                for s in list.take_all() {
                    assert!(s.take_answer().is_some(), "a slot came off twice");
                    taken += 1;
                }
            }
        }
        taken += list
            .take_all()
            .filter(|s| s.take_answer().is_some())
            .count();
        assert_eq!(taken, ROUNDS);
    }

    #[test]
    fn pushes_from_many_threads_all_come_off() {
        let list = Arc::new(DoneList::default());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let list = list.clone();
                std::thread::spawn(move || {
                    for _ in 0..5000 {
                        list.push(Arc::new(JobState::default()));
                    }
                })
            })
            .collect();
        let mut n = 0;
        while n < 20_000 {
            n += list.take_all().count();
            if handles.iter().all(|h| h.is_finished()) {
                n += list.take_all().count();
                break;
            }
        }
        for h in handles {
            h.join().expect("pusher");
        }
        n += list.take_all().count();
        assert_eq!(n, 20_000);
    }
}
