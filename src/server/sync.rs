//! The atomics and the cell of the request slot (`slot.rs`) and the loop's waker flag
//! (`workers.rs`), from std — or from loom when built
//! with `RUSTFLAGS="--cfg gracerpc_loom"`, so the loom models (`loom_models.rs`) explore every
//! interleaving of the real code. Normal builds are unaffected.

#[cfg(gracerpc_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, fence};
#[cfg(not(gracerpc_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, fence};

#[cfg(gracerpc_loom)]
pub(crate) use loom::cell::UnsafeCell;

/// `std::cell::UnsafeCell` with loom's access API (`with_mut`), so `slot.rs` reads the same
/// under both.
#[cfg(not(gracerpc_loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(gracerpc_loom))]
impl<T> UnsafeCell<T> {
    pub fn new(v: T) -> Self {
        UnsafeCell(std::cell::UnsafeCell::new(v))
    }

    /// Runs `f` on a pointer to the value; the caller upholds exclusive access.
    #[inline]
    pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}
