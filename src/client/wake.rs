//! Waking the client's I/O thread: at most once per batch, and only when it would otherwise
//! sleep past something a caller needs (a write to flush, a deadline sooner than its timer).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use mio::Waker;

pub(crate) struct IoWake {
    waker: Waker,
    /// A wake-up is on its way: further `wake` calls cost nothing.
    pending: AtomicBool,
    base: Instant,
    /// When the I/O thread plans to wake by itself, in nanoseconds since `base`.
    sleep_until: AtomicU64,
}

impl IoWake {
    pub fn new(waker: Waker) -> IoWake {
        IoWake {
            waker,
            pending: AtomicBool::new(false),
            base: Instant::now(),
            sleep_until: AtomicU64::new(0),
        }
    }

    /// Wakes the I/O thread unless a wake-up is already on its way.
    pub fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel)
            && let Err(e) = self.waker.wake()
        {
            log::error!("cannot wake the client I/O thread: {e}");
        }
    }

    /// Wakes the I/O thread if it plans to sleep past `t` (a new request's deadline).
    pub fn wake_before(&self, t: Instant) {
        if self.nanos(t) < self.sleep_until.load(Ordering::Acquire) {
            self.wake();
        }
    }

    /// The I/O thread, before it sleeps: it will wake by itself at `t`.
    pub fn sleeping_until(&self, t: Instant) {
        self.sleep_until.store(self.nanos(t), Ordering::Release);
    }

    /// The I/O thread, after it woke: the next `wake` must signal again.
    pub fn clear(&self) {
        self.pending.store(false, Ordering::Release);
    }

    fn nanos(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_nanos() as u64
    }
}
