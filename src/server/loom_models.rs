//! loom models of the request slot (`slot.rs`), the responder (`responder.rs`) and the loop's
//! side of both: loom runs each model under every interleaving of its threads (and every
//! memory ordering the atomics allow), through the real code — the slot's atomics come from
//! loom in this build (`sync.rs`).
//!
//! ```text
//! RUSTFLAGS="--cfg gracerpc_loom" CARGO_TARGET_DIR=target/loom cargo test --release --lib loom_
//! ```
//!
//! Each model fails with the compare-and-swaps broken (`--cfg loom_break_cas` turns them, and
//! the done list's, into a load then a store).
//!
//! The loop's side is played by a model thread doing what `later.rs` does: its own answers
//! (expiry, CANCEL) go through the same compare-and-swaps, and it takes the done list after
//! clearing the waker's flag. `in_flight` stands for the server's in-flight counter: the loop
//! decrements it once per answer it sends, and a model asserts it never goes below zero and
//! ends at zero.

use std::sync::Arc;

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use loom::thread;

use super::loop_waker::LoopWaker;
use super::responder::{Responder, Shared};
use super::slot::{Answer, JobState};
use super::token::ConnRef;
use crate::proto::{RejectReason, Status};

/// What went out for the request (from the done list or the loop's own answer).
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    Ok(Vec<u8>),
    Status(Status),
    Reject(RejectReason),
    /// Never from the done list: only a worker's completion says it wrote the answer itself.
    WrittenByWorker,
}

impl From<Answer> for Sent {
    fn from(a: Answer) -> Sent {
        match a {
            Answer::Ran(Ok(body)) => Sent::Ok(body),
            Answer::Ran(Err(f)) => Sent::Status(f.status),
            Answer::Rejected(r) => Sent::Reject(r),
            Answer::Written { .. } => Sent::WrittenByWorker,
        }
    }
}

/// The loop: its waker, the responders' shared state, its in-flight counter, what it sent.
struct Loop {
    shared: Arc<Shared>,
    in_flight: AtomicUsize,
    sent: loom::sync::Mutex<Vec<Sent>>,
    // Kept alive for the waker's sake.
    _poll: mio::Poll,
}

impl Loop {
    /// One request in flight.
    fn new() -> Arc<Loop> {
        let poll = mio::Poll::new().expect("poll");
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).expect("waker");
        Arc::new(Loop {
            shared: Shared::new(Arc::new(LoopWaker::new(waker))),
            in_flight: AtomicUsize::new(1),
            sent: loom::sync::Mutex::new(Vec::new()),
            _poll: poll,
        })
    }

    /// Sends one answer: the in-flight counter goes down once.
    fn send(&self, s: Sent) {
        let before = self.in_flight.fetch_sub(1, SeqCst);
        assert!(before >= 1, "in-flight decremented twice (sending {s:?})");
        self.sent.lock().unwrap().push(s);
    }

    /// A wake-up: clear the flag, then take the done list (the order of `on_wake`).
    fn take_done(&self) {
        self.shared.waker.clear();
        for slot in self.shared.done.take_all() {
            let a = slot
                .take_answer()
                .expect("a slot is pushed with its answer");
            self.send(a.into());
        }
    }

    /// The server's own answer at the deadline plus the grace (`expire` in `later.rs`).
    fn expire(&self, slot: &JobState) {
        if slot.try_answer() {
            self.send(Sent::Status(Status::DEADLINE_EXCEEDED));
        } else if slot.try_reject() {
            self.send(Sent::Reject(RejectReason::DEADLINE));
        }
    }

    /// CANCEL (`cancel` in `later.rs`).
    fn cancel(&self, slot: &JobState) {
        if slot.try_reject() {
            self.send(Sent::Reject(RejectReason::CANCELLED));
        } else if slot.is_deferred() && slot.try_answer() {
            self.send(Sent::Status(Status::CANCELLED));
        }
    }

    /// After every thread finished: what is left on the list goes out (it must have woken the
    /// loop: the flag is set), then exactly one answer went out in all.
    fn finish(&self) -> Sent {
        if !self.shared.done.is_empty() {
            assert!(
                self.shared.waker.is_pending(),
                "an answer is on the done list but no wake-up is on its way"
            );
        }
        self.take_done();
        assert_eq!(
            self.in_flight.load(SeqCst),
            0,
            "the request is still in flight"
        );
        let mut sent = self.sent.lock().unwrap();
        assert_eq!(sent.len(), 1, "answers sent: {sent:?}");
        sent.pop().expect("one answer")
    }
}

/// A deferred request's slot, QUEUED.
fn queued() -> Arc<JobState> {
    let mut slot = Arc::new(JobState::default());
    Arc::get_mut(&mut slot).expect("fresh").prepare(
        ConnRef {
            slot: 0,
            generation: 0,
        },
        7,
        true,
        None,
    );
    slot
}

/// A deferred request's slot, started (RUNNING), as a worker leaves it for its responder.
fn running() -> Arc<JobState> {
    let slot = queued();
    assert!(slot.try_start());
    slot
}

fn responder(l: &Loop, slot: Arc<JobState>) -> Responder {
    Responder::new(slot, l.shared.clone(), std::time::Instant::now())
}

/// RUNNING → ANSWERED: of two answers racing (and the loop taking the list meanwhile), the
/// first wins, the other is dropped and counted late, and the in-flight counter goes down
/// exactly once.
#[test]
fn loom_first_answer_wins_later_ones_are_dropped_and_counted() {
    loom::model(|| {
        let l = Loop::new();
        let slot = running();
        let answerers: Vec<_> = [1u8, 2]
            .into_iter()
            .map(|i| {
                let (l, slot) = (l.clone(), slot.clone());
                thread::spawn(move || l.shared.answer(&slot, Ok(vec![i])))
            })
            .collect();
        l.take_done();
        let won: Vec<bool> = answerers
            .into_iter()
            .map(|t| t.join().expect("answerer"))
            .collect();
        assert_eq!(won.iter().filter(|&&w| w).count(), 1, "winners: {won:?}");
        assert_eq!(l.shared.late.load(std::sync::atomic::Ordering::SeqCst), 1);
        let winner = if won[0] { 1 } else { 2 };
        assert_eq!(l.finish(), Sent::Ok(vec![winner]));
    });
}

/// A responder's answer racing the server's own at the deadline plus the grace: one goes
/// out; the responder learns whether it was its own, and a lost one is counted late.
#[test]
fn loom_responder_answer_races_the_server_expiry() {
    loom::model(|| {
        let l = Loop::new();
        let slot = running();
        let r = responder(&l, slot.clone());
        let t = thread::spawn(move || r.ok(b"done".to_vec()));
        l.expire(&slot);
        let mine = t.join().expect("responder");
        let sent = l.finish();
        let late = l.shared.late.load(std::sync::atomic::Ordering::SeqCst);
        if mine {
            assert_eq!(sent, Sent::Ok(b"done".to_vec()));
            assert_eq!(late, 0);
        } else {
            assert_eq!(sent, Sent::Status(Status::DEADLINE_EXCEEDED));
            assert_eq!(late, 1);
        }
    });
}

/// A responder dropped unanswered (INTERNAL) racing a CANCEL: one answer goes out, a
/// RESPONSE either way (the request ran), and the drop's answer is never counted late.
#[test]
fn loom_dropped_responder_races_a_cancel() {
    loom::model(|| {
        let l = Loop::new();
        let slot = running();
        let r = responder(&l, slot.clone());
        let t = thread::spawn(move || drop(r));
        l.cancel(&slot);
        t.join().expect("dropper");
        let sent = l.finish();
        assert!(
            sent == Sent::Status(Status::INTERNAL) || sent == Sent::Status(Status::CANCELLED),
            "{sent:?}"
        );
        assert_eq!(l.shared.late.load(std::sync::atomic::Ordering::SeqCst), 0);
    });
}

/// QUEUED → RUNNING for an async task's first poll against the loop's CANCEL: user code runs
/// only if the task won the start, and then the answer is a RESPONSE (its own or CANCELLED),
/// never a reject; if the loop won, the caller gets the reject and no user code ran.
#[test]
fn loom_async_first_poll_races_a_cancel() {
    loom::model(|| {
        let l = Loop::new();
        let slot = queued();
        let ran = Arc::new(AtomicBool::new(false));
        let t = {
            let (l, slot, ran) = (l.clone(), slot.clone(), ran.clone());
            // `run` in async_handler.rs: start, then the user's future, then the answer.
            thread::spawn(move || {
                if slot.try_start() {
                    ran.store(true, SeqCst);
                    l.shared.answer(&slot, Ok(b"async".to_vec()));
                }
            })
        };
        l.cancel(&slot);
        t.join().expect("task");
        let sent = l.finish();
        if ran.load(SeqCst) {
            assert!(
                sent == Sent::Ok(b"async".to_vec()) || sent == Sent::Status(Status::CANCELLED),
                "ran, then {sent:?}"
            );
        } else {
            assert_eq!(sent, Sent::Reject(RejectReason::CANCELLED));
        }
    });
}

/// An async task dropped before its first poll (its runtime shut down) racing the loop's
/// reject at the deadline: one reject goes out, SHUTTING_DOWN or DEADLINE — never INTERNAL.
#[test]
fn loom_async_dropped_unpolled_races_the_deadline() {
    loom::model(|| {
        let l = Loop::new();
        let slot = queued();
        let t = {
            let (l, slot) = (l.clone(), slot.clone());
            // `Guard::drop` in the `Unpolled` phase.
            thread::spawn(move || {
                l.shared.reject(&slot, RejectReason::SHUTTING_DOWN);
            })
        };
        l.expire(&slot);
        t.join().expect("runtime");
        let sent = l.finish();
        assert!(
            sent == Sent::Reject(RejectReason::SHUTTING_DOWN)
                || sent == Sent::Reject(RejectReason::DEADLINE),
            "{sent:?}"
        );
    });
}

/// The done list under two pushers and the loop taking it meanwhile: every slot comes off
/// exactly once, with its answer, and one left on the list has a wake-up on its way.
#[test]
fn loom_done_list_every_push_comes_off_once() {
    loom::model(|| {
        let l = Loop::new();
        l.in_flight.store(2, SeqCst);
        let pushers: Vec<_> = [1u8, 2]
            .into_iter()
            .map(|i| {
                let l = l.clone();
                thread::spawn(move || {
                    let slot = running();
                    assert!(l.shared.answer(&slot, Ok(vec![i])));
                })
            })
            .collect();
        l.take_done();
        for p in pushers {
            p.join().expect("pusher");
        }
        if !l.shared.done.is_empty() {
            assert!(l.shared.waker.is_pending(), "a push left without a wake-up");
        }
        l.take_done();
        assert_eq!(l.in_flight.load(SeqCst), 0);
        let mut sent = std::mem::take(&mut *l.sent.lock().unwrap());
        sent.sort_by_key(|s| format!("{s:?}"));
        assert_eq!(sent, vec![Sent::Ok(vec![1]), Sent::Ok(vec![2])]);
    });
}
