//! [`LoopWaker`]: how other threads (workers, responders, the handle, readiness) wake the
//! server's event loop — at most once per batch of work they published.

use std::sync::atomic::Ordering;

use mio::Waker;

use super::sync::{AtomicBool, fence};

/// Wakes the event loop at most once per batch of completions.
pub(crate) struct LoopWaker {
    waker: Waker,
    pending: AtomicBool,
}

impl LoopWaker {
    pub fn new(waker: Waker) -> LoopWaker {
        LoopWaker {
            waker,
            pending: AtomicBool::new(false),
        }
    }

    /// Wakes the loop unless a wake-up is already on its way. Call it after publishing the
    /// work (the completion channel, the done list).
    pub fn wake(&self) {
        // Pairs with the fence in `clear`: either the loop's drain after its `clear` sees the
        // work published before this fence, or this swap comes after that `clear` (reads
        // false) and wakes it again. Without both fences the two threads' writes may each
        // miss the other's (store buffering), and work could sit on the list with no wake-up
        // on its way — found by `loom_done_list_every_push_comes_off_once`.
        fence(Ordering::SeqCst);
        if !self.pending.swap(true, Ordering::AcqRel)
            && let Err(e) = self.waker.wake()
        {
            log::error!("cannot wake the event loop: {e}");
        }
    }

    /// Whether a wake-up is on its way (for the loom models).
    #[cfg(all(test, gracerpc_loom))]
    pub fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Called by the loop before it drains the completion channel.
    pub fn clear(&self) {
        self.pending.store(false, Ordering::Release);
        fence(Ordering::SeqCst); // see `wake`
    }
}
