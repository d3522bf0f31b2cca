//! A link's TLS session (feature `tls`): the read pass, the write pass, and the caller's
//! own-answer read redone for TLS. The plaintext path never comes here (`LinkInner::tls` is
//! `None`; without the feature the session type has no values at all).
//!
//! The own-answer read ([`Link::read_own`](super::link::Link::read_own)) under TLS: rustls may hold decrypted plaintext
//! that the edge-triggered socket no longer signals, so the socket stays non-blocking, the
//! caller waits in `poll(2)` (the only call that waits), and each read pass ends only when the
//! socket would block **and** rustls holds no plaintext.

#[cfg(not(feature = "tls"))]
use super::{
    link::{Deliveries, Link, LinkInner},
    table::NodeTable,
};
#[cfg(not(feature = "tls"))]
use std::time::Instant;

#[cfg(feature = "tls")]
pub(crate) use imp::TlsLink;

/// Without the feature there is no session: `Option<Box<TlsLink>>` is always `None`.
#[cfg(not(feature = "tls"))]
pub(crate) enum TlsLink {}

#[cfg(not(feature = "tls"))]
impl LinkInner {
    pub(super) fn tls_flushed(&self) -> bool {
        true
    }
    pub(super) fn tls_close(&mut self) {}
}

#[cfg(not(feature = "tls"))]
impl Link {
    pub(super) fn read_tls(
        &self,
        _: &mut LinkInner,
        _: &NodeTable,
        _: Instant,
        _: &mut Deliveries,
    ) {
    }
    pub(super) fn flush_tls(&self, _: &mut LinkInner) {}
    pub(super) fn read_own_tls(
        self: &std::sync::Arc<Self>,
        _: &NodeTable,
        _: u64,
        _: Instant,
    ) -> bool {
        false
    }
    pub(super) fn tls_own_pass(
        &self,
        _: std::os::fd::RawFd,
        _: &NodeTable,
        _: &mut Deliveries,
    ) -> (parking_lot::MutexGuard<'_, LinkInner>, Instant) {
        (self.inner.lock(), Instant::now())
    }
}

#[cfg(feature = "tls")]
mod imp {
    use std::os::fd::AsRawFd;
    use std::sync::Arc;
    use std::time::Instant;

    use rustls::ClientConnection;

    use super::super::link::{Deliveries, Link, LinkInner, READ_CHUNK, WAIT_SLICE, deliver};
    use super::super::own_read::{SCRATCH, own_read_over};
    use super::super::table::NodeTable;
    use crate::tls::session::{Incoming, Pulled, Pushed, flush_records, pull, push};

    pub(crate) struct TlsLink {
        session: ClientConnection,
        /// Ciphertext read and not yet taken by rustls (no memory between read passes).
        incoming: Incoming,
        /// TLS failed or ended: nothing more goes through it.
        over: bool,
        notify_sent: bool,
    }

    impl TlsLink {
        pub fn new(session: ClientConnection) -> TlsLink {
            TlsLink {
                session,
                incoming: Incoming::default(),
                over: false,
                notify_sent: false,
            }
        }
    }

    impl LinkInner {
        /// Whether rustls holds no record to write.
        pub(in crate::client) fn tls_flushed(&self) -> bool {
            self.tls.as_deref().is_none_or(|t| !t.session.wants_write())
        }

        /// The link ends, or shuts its write side: close_notify, written if the socket takes
        /// it at once.
        pub(in crate::client) fn tls_close(&mut self) {
            let LinkInner { tls, stream, .. } = self;
            if let Some(t) = tls.as_deref_mut()
                && !t.over
                && !t.notify_sent
            {
                t.notify_sent = true;
                t.session.send_close_notify();
                let _ = flush_records(&mut t.session, stream);
            }
        }
    }

    impl Link {
        /// A TLS read pass: until the socket would block and rustls holds no plaintext.
        pub(in crate::client) fn read_tls(
            &self,
            g: &mut LinkInner,
            table: &NodeTable,
            now: Instant,
            d: &mut Deliveries,
        ) {
            self.tls_read_pass(g, table, now, d, false);
        }

        /// A TLS read pass. With `stop_drained`, it also ends once a short socket read left
        /// rustls nothing to hand out: only for the own-answer read, whose `poll(2)` is
        /// level-triggered and whose end gives the socket back to the I/O thread (re-armed).
        /// The I/O thread's edge-triggered pass reads on until the socket would block: the
        /// server's FIN may have come with the data, and no edge would tell of it again.
        fn tls_read_pass(
            &self,
            g: &mut LinkInner,
            table: &NodeTable,
            now: Instant,
            d: &mut Deliveries,
            stop_drained: bool,
        ) {
            let limit = g.core.max_frame() as usize + crate::proto::HEADER_LEN;
            while !g.read_done && !g.core.is_closed() {
                let LinkInner {
                    tls, stream, input, ..
                } = &mut *g;
                let Some(t) = tls.as_deref_mut() else {
                    return;
                };
                let room = input.spare(READ_CHUNK, limit.max(READ_CHUNK));
                if room.is_empty() {
                    break;
                }
                let mut pass_over = false;
                match pull(&mut t.session, stream, &mut t.incoming, room) {
                    Pulled::Plain { n, drained } => {
                        input.filled(n);
                        self.decode_input(g, now);
                        pass_over = drained && stop_drained;
                    }
                    Pulled::End { clean } => {
                        t.over = !clean;
                        g.read_done = true;
                        g.core.handle_eof("server closed the connection");
                    }
                    Pulled::Blocked => break,
                    Pulled::Tls(e) => {
                        log::warn!("TLS with {}: {e}", self.node.addr());
                        // The alert rustls queued goes out if the socket takes it at once.
                        let _ = flush_records(&mut t.session, stream);
                        t.over = true;
                        g.read_done = true;
                        g.core.handle_eof(crate::tls::session::describe(&e));
                    }
                    Pulled::Io(e) => {
                        log::debug!("read from {} failed: {e}", self.node.addr());
                        t.over = true;
                        g.read_done = true;
                        g.core.handle_eof("connection reset");
                    }
                }
                self.process(g, table, now, d);
                if pass_over {
                    break;
                }
            }
            g.input.shrink_if_empty(64 * 1024);
            if let Some(t) = g.tls.as_deref_mut() {
                // A link between answers holds no ciphertext buffer.
                t.incoming.release_if_empty();
            }
        }

        /// A TLS write pass: the core's output into rustls (a frame counts as written once
        /// rustls took its last byte), records to the socket.
        pub(in crate::client) fn flush_tls(&self, g: &mut LinkInner) {
            let LinkInner {
                tls, stream, core, ..
            } = g;
            let Some(t) = tls.as_deref_mut() else {
                return;
            };
            if t.over {
                core.abandon_output();
                return;
            }
            match push(&mut t.session, stream, core) {
                Pushed::Done | Pushed::Blocked => {}
                Pushed::Io(e) => {
                    log::debug!("write to {} failed: {e}", self.node.addr());
                    t.over = true;
                    core.handle_eof("write failed");
                    core.abandon_output();
                }
            }
        }

        /// [`Link::read_own`] under TLS: waits in `poll(2)` on the non-blocking socket, then
        /// runs a read pass under the lock (see the module docs).
        pub(in crate::client) fn read_own_tls(
            self: &Arc<Self>,
            table: &NodeTable,
            id: u64,
            deadline: Instant,
        ) -> bool {
            let fd = {
                let mut g = self.inner.lock();
                let flushed = g.tls_flushed();
                if !self.start_own_read(&mut g, id, deadline, flushed) {
                    return false;
                }
                g.stream.as_raw_fd()
            };
            let mut d = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
            loop {
                wait_readable(fd);
                let mut g = self.inner.lock();
                let now = Instant::now();
                self.tls_read_pass(&mut g, table, now, &mut d, true);
                self.flush(&mut g, table, now, &mut d);
                if !own_read_over(&g, id, deadline, now) {
                    drop(g);
                    deliver(d.drain(..));
                    continue;
                }
                self.end_own_read(g, d);
                return true;
            }
        }
    }

    impl Link {
        /// One pass of a caller's own read under TLS (a [`CallSet`](crate::client::CallSet)'s):
        /// waits for the socket at most a slice, then reads, handles and writes what it can.
        /// Returns the lock, held, and the time of the pass.
        pub(in crate::client) fn tls_own_pass(
            &self,
            fd: std::os::fd::RawFd,
            table: &NodeTable,
            d: &mut Deliveries,
        ) -> (parking_lot::MutexGuard<'_, LinkInner>, Instant) {
            wait_readable(fd);
            let mut g = self.inner.lock();
            let now = Instant::now();
            self.tls_read_pass(&mut g, table, now, d, true);
            self.flush(&mut g, table, now, d);
            (g, now)
        }
    }

    /// Waits until the socket is readable (or hung up), at most [`WAIT_SLICE`].
    fn wait_readable(fd: std::os::fd::RawFd) {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe {
            libc::poll(&mut p, 1, WAIT_SLICE.as_millis() as libc::c_int);
        }
    }
}
