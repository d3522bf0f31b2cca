//! The one-shot place where a call's answer lands, and the waker of whoever waits for it.

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
    /// Stores the outcome and wakes the waiter.
    pub fn complete(&self, outcome: Outcome) {
        let waker = {
            let mut g = self.inner.lock();
            g.outcome = Some(outcome);
            g.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
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
