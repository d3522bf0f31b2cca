//! A worker's spare buffer, for answers the typed layer encodes: the request buffer of an
//! earlier job, kept by the worker instead of sent back, while the answer encoded into it goes
//! back to the loop's buffer pool in its place. Buffers circulate loop → worker → loop, so a
//! typed answer allocates nothing once warm (and frees nothing on another thread).

use std::cell::Cell;

thread_local! {
    static SPARE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    /// `SPARE` holds no buffer (taken, or never filled). A plain flag (no destructor, so no
    /// lazy registration on access): `refill` checks it after every job, bytes ones included.
    static EMPTY: Cell<bool> = const { Cell::new(true) };
}

/// Spare buffers larger than this are not kept (as the loop's pool).
const MAX_SPARE: usize = 64 * 1024;

/// An empty buffer for an answer: on a worker thread, its spare (with the capacity of an earlier
/// request); elsewhere, or when none is kept, a new empty one.
pub(crate) fn take() -> Vec<u8> {
    if EMPTY.get() {
        return Vec::new();
    }
    EMPTY.set(true);
    let mut b = SPARE.take();
    b.clear();
    b
}

/// After a job ran on this worker: if the spare was taken (or none was kept), keeps the job's
/// request buffer `buf` as the new one and returns `true` — the loop then pools the answer's
/// buffer instead of the request's. Otherwise leaves `buf` alone.
#[inline]
pub(crate) fn refill(buf: &mut Vec<u8>) -> bool {
    if !EMPTY.get() || buf.capacity() == 0 || buf.capacity() > MAX_SPARE {
        return false;
    }
    SPARE.set(std::mem::take(buf));
    EMPTY.set(false);
    true
}
