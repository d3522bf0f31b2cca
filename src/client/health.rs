//! Whether the client's I/O thread is still running, and what went wrong if not — checked by
//! every call, so that no call waits for a thread that is gone.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

#[derive(Default)]
pub(crate) struct IoHealth {
    failed: AtomicBool,
    cause: Mutex<Option<String>>,
    discovery_failed: AtomicBool,
    discovery_cause: Mutex<Option<String>>,
}

impl IoHealth {
    /// The I/O thread stopped for `cause`.
    pub fn fail(&self, cause: String) {
        *self.cause.lock() = Some(cause);
        self.failed.store(true, Ordering::Release);
    }

    /// Why the I/O thread stopped, if it did.
    pub fn failure(&self) -> Option<String> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        Some(self.cause.lock().clone().unwrap_or_default())
    }

    /// The discovery panicked (`why`): it is asked no more.
    pub fn discovery_panicked(&self, why: String) {
        *self.discovery_cause.lock() = Some(why);
        self.discovery_failed.store(true, Ordering::Release);
    }

    pub fn discovery_failed(&self) -> bool {
        self.discovery_failed.load(Ordering::Acquire)
    }

    /// Why the discovery was given up, if it was.
    pub fn discovery_error(&self) -> Option<String> {
        self.discovery_cause.lock().clone()
    }
}
