//! A plaintext connection's socket as the worker threads write to it.
//!
//! A worker writes the answers it produced itself, with no hand-off to the event loop, whenever
//! nothing else is on its way to that socket: the loop's own output is written in full and no
//! earlier write was left short. Every write happens under the wire's lock and writes whole
//! frames, so frames from the loop and from workers never interleave.
//!
//! * The loop opens the wire after each flush that wrote all its output, while the core can
//!   still answer; it closes it when it cannot write everything, before it shuts the write side
//!   and before the socket is closed ([`Wire::shut`]) — so no worker ever writes into a closed
//!   file descriptor, reused or not.
//! * A worker that wrote only part of its frames leaves the rest as the wire's tail and closes
//!   the wire: the tail ends a frame already begun on the socket, so the loop writes it before
//!   anything else.
//! * A worker finding the wire closed hands its answers to the loop, as before there was a
//!   wire.
//!
//! TLS connections have no wire: there the session is the write path, and only the loop drives
//! it.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Mutex, MutexGuard};

pub(crate) struct Wire {
    fd: RawFd,
    state: Mutex<WireState>,
    /// Workers may write: opened only by the loop, closed by whoever cannot write in full.
    /// Changed under the lock; read without it by the loop, whose flush has nothing to do while
    /// the wire is open and its own output empty (open implies no tail).
    open: AtomicBool,
    /// A tail waits (changed under the lock).
    has_tail: AtomicBool,
}

#[derive(Default)]
pub(crate) struct WireState {
    /// The write side is shut or the socket closed: nothing is written any more.
    shut: bool,
    /// Bytes a worker could not write: the end of a frame begun on the socket, and any frames
    /// after it. The loop writes them before anything else.
    tail: Vec<u8>,
}

/// The loop's hold on the wire while it writes: workers wait meanwhile.
pub(crate) struct WireGuard<'a> {
    wire: &'a Wire,
    state: MutexGuard<'a, WireState>,
}

/// What a worker's [`Wire::send`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Nothing was written: the wire is closed (or the socket took not one byte). The frames are
    /// the loop's to write.
    Refused,
    /// The first `n` bytes are on the socket; the rest (if any) is the wire's tail.
    Wrote(usize),
}

impl Wire {
    /// The wire of the socket `fd`, closed until the loop opens it. The loop must call
    /// [`shut`](Self::shut) before `fd` is closed.
    pub fn new(fd: RawFd) -> Arc<Wire> {
        Arc::new(Wire {
            fd,
            state: Mutex::new(WireState::default()),
            open: AtomicBool::new(false),
            has_tail: AtomicBool::new(false),
        })
    }

    /// A worker writes `frames` (whole frames), unless the wire is closed.
    pub fn send(&self, frames: &[u8]) -> Sent {
        let mut st = self.state.lock();
        if !self.open.load(Ordering::Acquire) {
            return Sent::Refused;
        }
        let mut done = 0;
        while done < frames.len() {
            // `fd` is open while the wire is not shut: the loop shuts it, under this lock,
            // before the socket is closed.
            match crate::sock::send(self.fd, &frames[done..]) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Full (or failed: the loop learns that from its own read or write).
                Err(_) => break,
            }
        }
        if done < frames.len() {
            self.open.store(false, Ordering::Release);
            if done == 0 {
                return Sent::Refused;
            }
            st.tail.extend_from_slice(&frames[done..]);
            self.has_tail.store(true, Ordering::Release);
        }
        Sent::Wrote(done)
    }

    /// The loop's hold on the wire while it writes: workers wait meanwhile.
    pub fn lock(&self) -> WireGuard<'_> {
        WireGuard {
            wire: self,
            state: self.state.lock(),
        }
    }

    /// Whether workers may write now (and so no tail waits).
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Whether no tail waits.
    pub fn flushed(&self) -> bool {
        !self.has_tail.load(Ordering::Acquire)
    }

    /// No worker writes any more: before the write side is shut or the socket closed. Drops
    /// the tail (what was not written by now never will be).
    pub fn shut(&self) {
        let mut st = self.state.lock();
        st.shut = true;
        self.open.store(false, Ordering::Release);
        st.tail = Vec::new();
        self.has_tail.store(false, Ordering::Release);
    }
}

impl WireGuard<'_> {
    /// What a worker left unwritten: to write before anything else.
    pub fn tail(&self) -> &[u8] {
        &self.state.tail
    }

    /// The first `n` bytes of the tail are written.
    pub fn tail_written(&mut self, n: usize) {
        let n = n.min(self.state.tail.len());
        self.state.tail.drain(..n);
        if self.state.tail.is_empty() {
            self.state.tail = Vec::new();
            self.wire.has_tail.store(false, Ordering::Release);
        }
    }

    /// Opens the wire to workers (`open`) or closes it; it never opens once shut or with a
    /// tail.
    pub fn set_open(&mut self, open: bool) {
        let open = open && !self.state.shut && self.state.tail.is_empty();
        self.wire.open.store(open, Ordering::Release);
    }
}
