//! The one-shot place where a call's answer lands, and the waker of whoever waits for it.

use std::cell::RefCell;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;

use crate::proto::Outcome;

#[derive(Default)]
struct Inner {
    outcome: Option<Outcome>,
    waker: Option<Waker>,
}

/// A call's answer slot. Reused across the replays of one call.
#[derive(Default)]
pub(crate) struct Slot {
    inner: Mutex<Inner>,
}

impl Slot {
    /// Stores the outcome and wakes the waiter. The deliverer's reference is dropped before the
    /// wake, so the woken call holds the only one and can reuse the slot.
    pub fn complete(self: Arc<Self>, outcome: Outcome) {
        let waker = {
            let mut g = self.inner.lock();
            g.outcome = Some(outcome);
            g.waker.take()
        };
        drop(self);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Stores the outcome and returns the waker to wake (after the deliverer's reference is
    /// dropped, as in [`complete`](Self::complete)).
    pub fn fill(self: Arc<Self>, outcome: Outcome) -> Option<Waker> {
        let mut g = self.inner.lock();
        g.outcome = Some(outcome);
        g.waker.take()
    }

    /// The outcome if it arrived; otherwise registers the waker.
    pub fn poll(&self, cx: &mut Context<'_>) -> Poll<Outcome> {
        let mut g = self.inner.lock();
        if let Some(o) = g.outcome.take() {
            return Poll::Ready(o);
        }
        match &g.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => g.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// Slots kept per thread for reuse, at most.
const POOL: usize = 256;

thread_local! {
    static POOLED: RefCell<Vec<Arc<Slot>>> = const { RefCell::new(Vec::new()) };
}

/// A slot for a new call: a pooled one of this thread's, or a new one.
pub(crate) fn take_pooled() -> Arc<Slot> {
    POOLED.with(|p| p.borrow_mut().pop()).unwrap_or_default()
}

/// Gives a finished call's slot back to this thread's pool — only if nothing else holds it (a
/// connection still delivering to it keeps it, and it is then simply dropped).
pub(crate) fn return_pooled(mut slot: Arc<Slot>) {
    let Some(s) = Arc::get_mut(&mut slot) else {
        return;
    };
    let inner = s.inner.get_mut();
    inner.outcome = None;
    inner.waker = None;
    POOLED.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL {
            p.push(slot);
        }
    });
}
