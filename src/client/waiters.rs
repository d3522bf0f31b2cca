//! Calls waiting for a node to become choosable (e.g. a one-node service restarting): woken when
//! one does, or when their deadline passes.

use std::task::Waker;
use std::time::Instant;

use parking_lot::Mutex;

#[derive(Default)]
pub(crate) struct Waiters {
    list: Mutex<Vec<(Waker, Instant)>>,
}

impl Waiters {
    /// Wakes `waker` when a node becomes choosable, or at `deadline` at the latest. A waker
    /// registered twice keeps the earlier of its deadlines.
    pub fn register(&self, waker: &Waker, deadline: Instant) {
        let mut list = self.list.lock();
        match list.iter_mut().find(|(w, _)| w.will_wake(waker)) {
            Some((_, d)) => *d = (*d).min(deadline),
            None => list.push((waker.clone(), deadline)),
        }
    }

    /// Wakes everyone (a node became choosable, or the client is closing).
    pub fn wake_all(&self) {
        let list = std::mem::take(&mut *self.list.lock());
        for (w, _) in list {
            w.wake();
        }
    }

    /// Wakes those whose deadline has passed; returns the earliest deadline left.
    pub fn wake_expired(&self, now: Instant) -> Option<Instant> {
        let mut expired = Vec::new();
        let next = {
            let mut list = self.list.lock();
            let mut i = 0;
            while i < list.len() {
                if list[i].1 <= now {
                    expired.push(list.swap_remove(i).0);
                } else {
                    i += 1;
                }
            }
            list.iter().map(|(_, d)| *d).min()
        };
        for w in expired {
            w.wake();
        }
        next
    }
}
