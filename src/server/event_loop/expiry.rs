//! When the server answers deferred and async requests itself: a min-heap of (time, request).
//!
//! An entry is a connection reference and a request id, not the slot, so a request answered
//! early costs nothing but its 32 bytes until its time comes, and then is skipped.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use crate::server::token::ConnRef;

#[derive(Default)]
pub(super) struct Expiries {
    heap: BinaryHeap<Reverse<(Instant, usize, u32, u64)>>,
}

impl Expiries {
    /// Answer request `id` on `conn` at `at` if nobody has by then.
    pub fn push(&mut self, at: Instant, conn: ConnRef, id: u64) {
        self.heap
            .push(Reverse((at, conn.slot, conn.generation, id)));
    }

    /// The earliest time an entry is due.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.0)
    }

    /// The next entry due at `now`, if any.
    pub fn pop_due(&mut self, now: Instant) -> Option<(ConnRef, u64)> {
        if self.next()? > now {
            return None;
        }
        let Reverse((_, slot, generation, id)) = self.heap.pop()?;
        Some((ConnRef { slot, generation }, id))
    }
}
