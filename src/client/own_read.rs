//! Who reads a link's answers: the I/O thread, or the calling thread that waits for one.
//!
//! Normally the I/O thread reads every answer and hands it to its call's slot, which wakes the
//! calling thread: a thread hop per call. A blocking caller whose call is the only one
//! outstanding reads its answer itself instead ([`Link::read_own`], leader/follower): it takes
//! the socket out of the I/O thread's poll (`caller_reading`) — before its request goes out
//! when it can, so the answer's arrival wakes nobody but itself — waits on the socket, and
//! reads and processes frames through the same code the I/O thread uses, so GOAWAY, PING,
//! ERROR and EOF are handled by the core exactly as there, and answers of calls other threads
//! made meanwhile are delivered too. When its answer has come (or a timer of the core is due,
//! or the connection ends) it gives the reading back: the socket goes back into the poll at
//! once if anything is still owed on it, else at the I/O thread's next tick or the next call
//! the I/O thread must read (so back-to-back blocking calls cost no `epoll_ctl`); epoll
//! reports readiness already there when a socket is added, so data that came meanwhile is
//! not lost.
//!
//! The socket's membership of the I/O thread's poll lives here too: out while a caller reads,
//! back in when the I/O thread must read again.

use std::cell::RefCell;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::Interest;
use parking_lot::MutexGuard;

use super::link::{Deliveries, Link, LinkInner, READ_CHUNK, WAIT_SLICE, deliver};
use super::table::NodeTable;
use crate::proto::InBuf;
use crate::sock::recv;

/// How long a [`CallSet`](super::CallSet)'s connection stays out of the I/O thread's poll
/// after a read of the set's that left calls outstanding, before a tick puts it back (a set
/// that stopped calling `next`): one tick.
const KEEP_FOR: Duration = Duration::from_millis(100);

thread_local! {
    /// A calling thread's deliveries while it reads its own answer (kept to allocate once).
    pub(super) static SCRATCH: RefCell<Deliveries> = const { RefCell::new(Vec::new()) };
}

/// The earliest of the core's next timer and `deadline`.
pub(super) fn next_timer(g: &LinkInner, deadline: Instant) -> Instant {
    match g.core.poll_timeout() {
        Some(t) => t.min(deadline),
        None => deadline,
    }
}

/// Whether a caller's own read of the answer to `id` ends: the answer came (or the call ended),
/// the connection ended, or a timer of the core (its deadline among them) is near.
pub(super) fn own_read_over(g: &LinkInner, id: u64, deadline: Instant, now: Instant) -> bool {
    !g.core.is_outstanding(id)
        || g.read_done
        || g.core.is_closed()
        || next_timer(g, deadline) < now + WAIT_SLICE
}

impl Link {
    /// Takes the socket out of the I/O thread's poll, so nothing that arrives wakes it. (An
    /// interest it ignores would not do: epoll wakes its waiter for any readiness the socket
    /// signals and filters only after, so every answer would still cost the I/O thread a
    /// wake-up.) Returns false if it is not in the poll.
    pub(super) fn leave_poll(&self, g: &mut LinkInner) -> bool {
        if !g.registered || g.removed {
            return false;
        }
        match self.registry.deregister(&mut g.stream) {
            Ok(()) => {
                g.registered = false;
                true
            }
            Err(e) => {
                log::debug!(
                    "taking the link to {} out of the poll: {e}",
                    self.node.addr()
                );
                false
            }
        }
    }

    /// Puts the socket back into the I/O thread's poll with `want`. Readiness already there is
    /// reported at once, so data that came while it was out reaches the I/O thread.
    pub(super) fn rejoin_poll(&self, g: &mut LinkInner, want: Interest) {
        g.kept_until = None;
        if g.registered || g.removed {
            return self.set_interest(g, want);
        }
        g.interest = want;
        match self.registry.register(&mut g.stream, self.token, want) {
            Ok(()) => g.registered = true,
            Err(e) => log::debug!("the link to {} back into the poll: {e}", self.node.addr()),
        }
    }

    /// The I/O thread forgets the link: the socket leaves its poll for good.
    pub(super) fn forget(&self) {
        let mut g = self.inner.lock();
        g.removed = true;
        if std::mem::take(&mut g.registered) {
            let _ = self.registry.deregister(&mut g.stream);
        }
    }

    /// Whether the calling thread reads the answer to `id` itself now: it claimed the reading
    /// when the request went out (kept only if the request went out whole), or it may take the
    /// reading over now ([`begin_own_read`](Self::begin_own_read)).
    pub(super) fn start_own_read(
        &self,
        g: &mut MutexGuard<'_, LinkInner>,
        id: u64,
        deadline: Instant,
        transport_ready: bool,
    ) -> bool {
        if g.claimed != Some(id) {
            return self.begin_own_read(g, id, deadline, transport_ready);
        }
        g.claimed = None;
        if g.core.out_len() == 0 && transport_ready {
            return true;
        }
        if self.give_back_reading(g) {
            self.io.wake();
        }
        false
    }

    /// Whether the calling thread may read the answer to `id` itself, and if so takes the reading
    /// over from the I/O thread: nothing is left to write, and the transport is ready for it
    /// (`transport_ready`: the blocking socket, or TLS output flushed); see
    /// [`take_reading`](Self::take_reading) for the rest.
    pub(super) fn begin_own_read(
        &self,
        g: &mut LinkInner,
        id: u64,
        deadline: Instant,
        transport_ready: bool,
    ) -> bool {
        transport_ready && g.core.out_len() == 0 && self.take_reading(g, id, deadline)
    }

    /// Takes the reading over from the I/O thread for the answer to `id`, if `id` is the only
    /// call outstanding, no one else reads, and no timer of the core is due within a wait slice:
    /// read interest leaves the I/O thread's poll.
    pub(super) fn take_reading(&self, g: &mut LinkInner, id: u64, deadline: Instant) -> bool {
        let alone = g.slots.len() == 1 && g.core.is_outstanding(id);
        if !alone
            || !g.connected
            || g.caller_reading
            || g.io_reading
            || g.read_done
            || g.core.is_closed()
            || next_timer(g, deadline) < Instant::now() + WAIT_SLICE
        {
            return false;
        }
        // Out of the poll already (left there after the last own read, see
        // `give_back_reading`): nothing to do.
        if g.removed || (g.registered && !self.leave_poll(g)) {
            return false;
        }
        g.caller_reading = true;
        true
    }

    /// The caller of `id` will not read its answer after all ([`block_on`] found other things
    /// that may wake it): a reading it claimed goes back to the I/O thread.
    ///
    /// [`block_on`]: super::block_on
    pub fn give_back_claim(&self, id: u64) {
        let mut g = self.inner.lock();
        if g.claimed == Some(id) {
            self.release_claim(&mut g);
        }
    }

    /// A call that claimed the reading before its request went out ended (answered, failed or
    /// cancelled) without reading: the reading goes back to the I/O thread.
    pub(super) fn release_claim(&self, g: &mut LinkInner) {
        g.claimed = None;
        if self.give_back_reading(g) {
            self.io.wake();
        }
    }

    /// Waits for the answer to `id` by reading the socket on the calling thread (see the module
    /// docs), when `id` is the only call outstanding on this link and no one else reads it.
    /// Returns false when it did not wait (the caller parks until the I/O thread delivers);
    /// true when it waited: the answer may have been delivered, or a timer of the core is near,
    /// and the caller polls its call again.
    pub fn read_own(self: &Arc<Self>, table: &NodeTable, id: u64, deadline: Instant) -> bool {
        if self.is_tls {
            return self.read_own_tls(table, id, deadline);
        }
        let (fd, limit, mut input) = {
            let mut g = self.inner.lock();
            let blocking = g.blocking;
            if !self.start_own_read(&mut g, id, deadline, blocking) {
                return false;
            }
            let limit = g.core.max_frame() as usize + crate::proto::HEADER_LEN;
            // While a caller reads, nobody else touches the input buffer: it is read into
            // without the lock.
            (g.stream.as_raw_fd(), limit, std::mem::take(&mut g.input))
        };
        let mut d = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
        loop {
            let (mut g, now) = self.plain_own_pass(fd, limit, input, table, &mut d);
            if !own_read_over(&g, id, deadline, now) {
                input = std::mem::take(&mut g.input);
                drop(g);
                deliver(d.drain(..));
                continue;
            }
            self.end_own_read(g, d);
            return true;
        }
    }

    /// Reads answers on the calling thread for a [`CallSet`](super::CallSet) whose pending
    /// futures all wait for calls on this link, `calls` of them, which are every call
    /// outstanding on it: the set's thread takes the reading over (as [`Link::read_own`] does
    /// for one call), waits on the socket, and returns once a batch of answers is delivered,
    /// the connection ends, a timer of the core (the earliest `deadline` among them) is near,
    /// or `stop` says the set has other work. Returns false when it did not read (the set
    /// parks).
    pub fn read_for_set(
        self: &Arc<Self>,
        table: &NodeTable,
        calls: usize,
        deadline: Instant,
        stop: &dyn Fn() -> bool,
    ) -> bool {
        let mut d = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
        let taken = {
            let mut g = self.inner.lock();
            let now = Instant::now();
            if g.connected && (g.core.out_len() != 0 || !g.tls_flushed()) {
                // Requests the I/O thread was asked to write (a TLS round's, see
                // `SendMode::Defer`): write them now, as the reader will.
                self.flush(&mut g, table, now, &mut d);
            }
            // Plaintext waits in a blocking `recv`; TLS in poll(2), with no record left to
            // write (see `tls_link.rs`).
            let transport_ready = if self.is_tls {
                g.tls_flushed()
            } else {
                g.blocking
            };
            if !transport_ready
                || !g.connected
                || g.core.out_len() != 0
                || g.slots.len() != calls
                || g.claimed.is_some()
                || g.caller_reading
                || g.io_reading
                || g.read_done
                || g.core.is_closed()
                || next_timer(&g, deadline) < now + WAIT_SLICE
                || g.removed
                || (g.registered && !self.leave_poll(&mut g))
            {
                None
            } else {
                g.caller_reading = true;
                let limit = g.core.max_frame() as usize + crate::proto::HEADER_LEN;
                // A plaintext read fills the input buffer without the lock (nobody else
                // reads).
                let input = (!self.is_tls).then(|| std::mem::take(&mut g.input));
                Some((g.stream.as_raw_fd(), limit, input))
            }
        };
        let Some((fd, limit, mut input)) = taken else {
            deliver(d.drain(..));
            SCRATCH.with(|s| *s.borrow_mut() = d);
            return false;
        };
        loop {
            let (mut g, now) = match input.take() {
                None => self.tls_own_pass(fd, table, &mut d),
                Some(buf) => self.plain_own_pass(fd, limit, buf, table, &mut d),
            };
            let over = !d.is_empty()
                || g.read_done
                || g.core.is_closed()
                || next_timer(&g, deadline) < now + WAIT_SLICE
                || stop();
            if !over {
                if !self.is_tls {
                    input = Some(std::mem::take(&mut g.input));
                }
                continue;
            }
            g.input.shrink_if_empty(64 * 1024);
            let wake_io = self.hand_back(&mut g, true);
            drop(g);
            if wake_io {
                self.io.wake();
            }
            deliver(d.drain(..));
            SCRATCH.with(|s| *s.borrow_mut() = d);
            return true;
        }
    }

    /// One pass of a caller's own read of a plaintext link: waits for data in `recv` (at most
    /// [`WAIT_SLICE`], the socket's receive timeout) into `input`, taken out of the link
    /// meanwhile, then with the lock puts it back, reads on without waiting if the socket may
    /// hold more, handles the frames and writes what is pending. Returns the lock, held, and
    /// the time of the pass.
    fn plain_own_pass(
        &self,
        fd: RawFd,
        limit: usize,
        mut input: InBuf,
        table: &NodeTable,
        d: &mut Deliveries,
    ) -> (MutexGuard<'_, LinkInner>, Instant) {
        let room = input.spare(READ_CHUNK, limit.max(READ_CHUNK));
        let len = room.len();
        let res = recv(fd, room, true);
        let mut g = self.inner.lock();
        g.input = input;
        let now = Instant::now();
        let drained = self.received(&mut g, table, now, res, len, false, d);
        if !drained && !g.read_done && !g.core.is_closed() {
            self.read(&mut g, table, now, false, d);
        }
        self.flush(&mut g, table, now, d);
        (g, now)
    }

    /// Ends a caller's own read (plaintext or TLS): gives reading back to the I/O thread and
    /// wakes it when the link must be finished or has output left, then delivers `d`.
    pub(super) fn end_own_read(&self, mut g: MutexGuard<'_, LinkInner>, mut d: Deliveries) {
        g.input.shrink_if_empty(64 * 1024);
        let wake_io = self.give_back_reading(&mut g);
        drop(g);
        if wake_io {
            self.io.wake();
        }
        deliver(d.drain(..));
        SCRATCH.with(|s| *s.borrow_mut() = d);
    }

    /// Gives the reading back to the I/O thread. Returns whether it must be woken: to finish
    /// the link, or to write output left.
    ///
    /// A link with nothing outstanding, nothing to write and still open stays out of the poll
    /// for now: the next blocking call on it would only take it out again (two `epoll_ctl`
    /// per call saved). The I/O thread puts it back at its next tick (at most 100 ms: a
    /// GOAWAY or close on an idle connection is seen by then, and readiness that came
    /// meanwhile is reported when it is added), and so does any call that is not read by its
    /// caller ([`Link::watch`]).
    pub(super) fn give_back_reading(&self, g: &mut LinkInner) -> bool {
        self.hand_back(g, false)
    }

    /// [`give_back_reading`](Self::give_back_reading); with `keep`, the reader comes back for
    /// the calls still outstanding (a [`CallSet`](super::CallSet)'s next round), so the socket
    /// stays out of the poll while they are all its own: it goes back in if anything else
    /// needs the I/O thread (a call of another thread: `rejoin_wanted`), when the set parks
    /// without reading (it watches its links then), or at a tick once [`KEEP_FOR`] passed
    /// without the set coming back.
    fn hand_back(&self, g: &mut LinkInner, keep: bool) -> bool {
        g.caller_reading = false;
        let output_left = !g.core.out().is_empty() || !g.tls_flushed();
        let wake_io = g.core.is_closed() || g.read_done || output_left;
        let wanted = std::mem::take(&mut g.rejoin_wanted);
        g.kept_until = None;
        if wake_io || wanted || g.retired || (!keep && g.core.outstanding() > 0) {
            let mut want = Interest::READABLE;
            if output_left {
                want = want.add(Interest::WRITABLE);
            }
            self.rejoin_poll(g, want);
        } else if keep && g.core.outstanding() > 0 {
            g.kept_until = Some(Instant::now() + KEEP_FOR);
        }
        g.flush_wanted |= wake_io;
        wake_io
    }

    /// Puts a socket left out of the poll by the last own read back in, so the I/O thread
    /// hears of what arrives (a call it must deliver, or the idle connection's GOAWAY or close).
    pub(super) fn watch(&self, g: &mut LinkInner) {
        if g.caller_reading {
            g.rejoin_wanted = true;
            return;
        }
        if !g.registered && !g.removed {
            let want = g.interest.add(Interest::READABLE);
            self.rejoin_poll(g, want);
        }
    }
}
