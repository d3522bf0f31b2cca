//! One connection to a node, shared by the calling threads (which write their own frames) and the
//! client's I/O thread (which reads, runs timers, and finishes writes that would block).
//!
//! Which link a node's calls go to is in `routes.rs`; the raw socket calls in `sock.rs`; what
//! the core's events do to the node table and the calls in `link_events.rs`.
//!
//! Who reads — the I/O thread, or a caller waiting for its own answer — is in `own_read.rs`;
//! the TLS session between the socket and the core in `tls_link.rs`.
//!
//! # Who writes
//! Calling threads write their own requests when the connection is idle, and leave them to
//! the I/O thread (one `send` per batch) otherwise. Every `recv` and `send` of a plaintext
//! link runs without the lock (see [`Link::flush`] and `ClientConn::lend_out`), so a thread
//! queueing a request never waits behind another's syscall.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use parking_lot::{Mutex, MutexGuard};
use slab::Slab;

use super::cause::connect_cause;
use super::routes::Routes;
use super::slot::Slot;
use super::table::{Node, NodeTable};
use super::tls_link::TlsLink;
use super::wake::IoWake;
use crate::proto::{ApiMisuse, ClientConn, InBuf, Outcome, decode};
use crate::sock::{connect_result, make_blocking, recv, send};

pub(super) const READ_CHUNK: usize = 16 * 1024;

/// How long a caller reading its own answer waits in one `recv` (the socket's receive timeout)
/// before it looks at its call again; it stops reading when a timer of the core (its deadline
/// among them) is nearer than this, and parks until the I/O thread runs it.
pub(super) const WAIT_SLICE: Duration = Duration::from_millis(5);

/// The most output a writer copies to send without the link's lock; more is sent under it
/// (a syscall that large is rare and worth more than the copy).
const UNLOCKED_SEND_MAX: usize = 16 * 1024;

/// The interest a link is registered with when it connects (writable reports the connect).
pub(crate) const REGISTERED: Interest = Interest::READABLE.add(Interest::WRITABLE);

/// Which link each node's calls go to.
pub(crate) type LinkRoutes = Routes<Link>;

/// Answers to hand to their slots once the link's lock is released.
pub(crate) type Deliveries = Vec<(Arc<Slot>, Outcome)>;

pub(crate) struct Link {
    pub node: Arc<Node>,
    pub token: Token,
    pub inner: Mutex<LinkInner>,
    pub(super) io: Arc<IoWake>,
    /// The I/O thread's poll registry, to change the socket's interest from a calling thread.
    pub(super) registry: Arc<Registry>,
    pub(super) routes: Arc<LinkRoutes>,
    /// The link runs TLS (fixed at creation).
    pub(super) is_tls: bool,
}

pub(crate) struct LinkInner {
    pub core: ClientConn,
    pub stream: TcpStream,
    pub input: InBuf,
    /// The slots of the calls outstanding; a slot's key is its request's user token in the
    /// core, which hands it back when the request resolves or is cancelled.
    pub slots: Slab<Arc<Slot>>,
    pub connected: bool,
    pub read_done: bool,
    /// Output waits for the I/O thread to write it (it was asked to).
    pub flush_wanted: bool,
    /// A calling thread waits on the socket and reads it (see [`Link::read_own`]): the I/O
    /// thread must not read.
    pub caller_reading: bool,
    /// A blocking caller took the reading over for this id before its request went out (see
    /// [`Link::send`]), so its answer's arrival does not wake the I/O thread; it reads once it
    /// waits ([`Link::read_own`]), and gives the reading back if the call ends first.
    pub(super) claimed: Option<u64>,
    /// The socket is in blocking mode with a receive timeout of [`WAIT_SLICE`] (see
    /// [`make_blocking`]): a caller can wait in `recv` itself.
    pub(super) blocking: bool,
    /// The interest registered with the I/O thread's poll (or to register again, while a
    /// caller reads with the socket out of the poll).
    pub(super) interest: Interest,
    /// While a caller read, something asked for the socket to go back into the I/O thread's
    /// poll (a call the I/O thread must read): it goes back when the read ends.
    pub(super) rejoin_wanted: bool,
    /// A [`CallSet`](super::CallSet)'s read ended with its calls still outstanding and left
    /// the socket out of the poll for its next round: until then the I/O thread's timers do
    /// not put it back (see [`Link::on_timer`]).
    pub(super) kept_until: Option<Instant>,
    /// The socket is in the I/O thread's poll: a caller reading its own answer takes it out
    /// (see [`Link::take_reading`]).
    pub(super) registered: bool,
    /// The I/O thread has forgotten the link: the socket never goes back into its poll.
    pub(super) removed: bool,
    /// Discovery removed the node: once nothing is outstanding the link shuts its write side
    /// and ends when the server closes (no connection left open per removal).
    pub(super) retired: bool,
    /// Our write side is shut (a retired link, idle).
    write_shut: bool,
    /// The TLS session between the socket and the core (see `tls_link.rs`).
    pub(super) tls: Option<Box<TlsLink>>,
    /// The I/O thread is in a `recv` without the lock, into `input` (taken out meanwhile):
    /// nobody else may read (see [`Link::read`]).
    pub(super) io_reading: bool,
    /// A thread is in a `send` without the lock of bytes it copied from the core's output
    /// (still counted there until written): nobody else may write (see [`Link::flush`]).
    writing: bool,
    /// The copy of the output a writer sends without the lock (kept to allocate once).
    out_copy: Vec<u8>,
}

/// How a calling thread's request is written (see [`Link::send`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum SendMode {
    /// At once when the link is idle, else by the I/O thread (woken once per batch).
    Now,
    /// As `Now`; and the caller, which waits for this answer itself, takes the reading over
    /// before the request goes out when it may.
    Claim,
    /// By the calling thread with the rest of its round (a [`CallSet`](super::CallSet)'s),
    /// without waking the I/O thread: one `send` per round and connection. At once only on an
    /// idle link while more than a write's worth of the round is still to be polled
    /// (`long_round`): the node starts on it meanwhile.
    Defer { long_round: bool },
}

/// Why a send did not happen.
pub(crate) enum SendFail {
    /// The connection cannot take a request now (not ready, draining, closed): choose again.
    NotSendable,
    /// The server is not reading: the output is full. Choose again.
    Full,
    /// The request is invalid anywhere.
    Invalid(ApiMisuse),
}

impl Link {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node: Arc<Node>,
        token: Token,
        stream: TcpStream,
        core: ClientConn,
        io: Arc<IoWake>,
        registry: Arc<Registry>,
        routes: Arc<LinkRoutes>,
        tls: Option<Box<TlsLink>>,
    ) -> Link {
        let is_tls = tls.is_some();
        let inner = LinkInner {
            tls,
            core,
            stream,
            input: InBuf::new(),
            slots: Slab::with_capacity(16),
            connected: false,
            read_done: false,
            flush_wanted: false,
            caller_reading: false,
            rejoin_wanted: false,
            kept_until: None,
            claimed: None,
            blocking: false,
            interest: REGISTERED,
            registered: true,
            removed: false,
            retired: false,
            write_shut: false,
            io_reading: false,
            writing: false,
            out_copy: Vec::new(),
        };
        Link {
            node,
            token,
            inner: Mutex::new(inner),
            io,
            registry,
            routes,
            is_tls,
        }
    }

    /// Serializes a request. On an idle connection the calling thread writes it at once (the
    /// latency path: no hand-off). When other requests are outstanding, an answer is on its way
    /// and the I/O thread will be awake for it: the frame is left for the I/O thread, which
    /// writes every frame queued meanwhile in one `write` (the throughput path), and is woken
    /// once per batch in case it sleeps.
    ///
    /// With [`SendMode::Claim`] (a blocking caller that will wait for this answer), the caller
    /// takes the reading over before the request goes out, when it may (see
    /// [`Link::read_own`]). With [`SendMode::Defer`] a frame that is not written at once is
    /// left for the calling thread to write with the rest of its round (also on an idle link,
    /// unless the round is long), and the I/O thread is not woken: the returned flag says so.
    #[allow(clippy::too_many_arguments)]
    pub fn send(
        self: &Arc<Self>,
        table: &NodeTable,
        now: Instant,
        method: &str,
        metadata: crate::proto::frame::Metadata<'_>,
        body: &[u8],
        deadline: Instant,
        idempotent: bool,
        slot: &Arc<Slot>,
        mode: SendMode,
    ) -> Result<(u64, bool), SendFail> {
        let mut deliveries = Deliveries::new();
        let mut wake = false;
        // The I/O thread will flush this link, then run its timers (this deadline's among
        // them): no need to tell it of the deadline.
        let flush_pending;
        let res = {
            let mut g = self.inner.lock();
            if g.retired {
                return Err(SendFail::NotSendable);
            }
            let idle = g.core.out_len() == 0 && g.core.outstanding() == 0;
            flush_pending = g.flush_wanted;
            // The slot's key in `slots` is the request's user token in the core.
            let key = g.slots.vacant_key();
            match g.core.send_request_with(
                now, method, metadata, body, deadline, idempotent, key as u64,
            ) {
                Ok(id) => {
                    g.slots.insert(slot.clone());
                    self.node.add_outstanding();
                    // (A TLS link's socket stays non-blocking: its caller waits in poll(2).)
                    let claimed = idle
                        && g.connected
                        && mode == SendMode::Claim
                        && (g.blocking || self.is_tls)
                        && self.take_reading(&mut g, id, deadline);
                    if claimed {
                        g.claimed = Some(id);
                    } else if !matches!(mode, SendMode::Defer { .. }) {
                        // (A set's thread reads its link itself, or watches it before it
                        // parks: see `CallSet::next`.)
                        self.watch(&mut g);
                    }
                    // A set's round writes this request with the rest of the round: also
                    // on an idle link, where the node would be woken for it alone, unless many
                    // of the round's futures are still to be polled (then the node starts on it
                    // meanwhile). Under TLS only while the I/O thread does not read the link: a
                    // round encrypted under the link's lock would stall its decrypting of
                    // answers; else it writes, as for `Now`.
                    let by_round = match mode {
                        SendMode::Defer { long_round } => {
                            let io_reads_tls = self.is_tls && g.registered;
                            let lead = long_round && idle && g.connected;
                            !io_reads_tls && !lead
                        }
                        SendMode::Now | SendMode::Claim => false,
                    };
                    let mut deferred = false;
                    if by_round {
                        g.flush_wanted = true;
                        deferred = true;
                    } else if idle && g.connected {
                        self.flush(&mut g, table, now, &mut deliveries);
                    } else if !g.flush_wanted {
                        g.flush_wanted = true;
                        wake = true;
                    }
                    Ok((id, deferred))
                }
                Err(ApiMisuse::NotSendable) | Err(ApiMisuse::IdsExhausted) => {
                    Err(SendFail::NotSendable)
                }
                Err(ApiMisuse::OutputFull { .. }) => Err(SendFail::Full),
                Err(e) => Err(SendFail::Invalid(e)),
            }
        };
        if wake {
            self.io.wake();
        } else if res.is_ok() && !flush_pending {
            self.io.wake_before(deadline);
        }
        deliver(deliveries);
        res
    }

    /// Writes, from the calling thread, the requests a [`CallSet`](super::CallSet)'s round left
    /// queued (see [`SendMode::Defer`]) — unless another writer did meanwhile. What the socket
    /// does not take now goes to the I/O thread.
    pub fn flush_deferred(self: &Arc<Self>, table: &NodeTable) {
        let mut deliveries = Deliveries::new();
        let left = {
            let mut g = self.inner.lock();
            if !g.flush_wanted || !g.connected {
                return;
            }
            self.flush(&mut g, table, Instant::now(), &mut deliveries);
            let left = !g.core.out().is_empty() || !g.tls_flushed();
            if left {
                // The I/O thread writes the rest: with the socket in its poll, and woken now
                // (write interest set earlier reports nothing new).
                self.watch(&mut g);
                g.flush_wanted = true;
            }
            left
        };
        if left {
            self.io.wake();
        }
        deliver(deliveries);
    }

    /// Puts the socket back into the I/O thread's poll if a caller's read left it out (a
    /// [`CallSet`](super::CallSet) that parks instead of reading).
    pub fn unlease(&self) {
        let mut g = self.inner.lock();
        self.watch(&mut g);
    }

    /// Writes output a calling thread left for the I/O thread.
    pub fn flush_if_wanted(
        self: &Arc<Self>,
        table: &NodeTable,
        now: Instant,
        deliveries: &mut Deliveries,
    ) -> bool {
        let mut g = self.inner.lock();
        if g.flush_wanted && g.connected {
            self.flush(&mut g, table, now, deliveries);
        }
        self.finish(&mut g)
    }

    /// Whether the connection can take a request now (READY, not draining or closed).
    pub fn is_sendable(&self) -> bool {
        self.inner.lock().core.is_sendable()
    }

    /// Discovery removed the node: finish the calls outstanding, then close (see `retired`).
    pub fn retire(&self) {
        self.inner.lock().retired = true;
    }

    /// Runs the core's timers due at `now` from a calling thread whose deadline passed
    /// without an answer — the I/O thread normally does, but a call must end at its
    /// deadline without it. The I/O thread, if alive, still finishes the link.
    pub fn run_timers(self: &Arc<Self>, table: &NodeTable, now: Instant) {
        let mut deliveries = Deliveries::new();
        let wake = {
            let mut g = self.inner.lock();
            if g.core.poll_timeout().is_some_and(|t| t <= now) {
                g.core.handle_timeout(now);
                self.process(&mut g, table, now, &mut deliveries);
                if g.connected && !g.caller_reading {
                    self.flush(&mut g, table, now, &mut deliveries);
                }
            }
            let wake = g.core.is_closed() || !g.core.out().is_empty() || !g.tls_flushed();
            g.flush_wanted |= wake;
            wake
        };
        if wake {
            self.io.wake();
        }
        deliver(deliveries);
    }

    /// The caller gave up on `id` (its future was dropped): forget it and send CANCEL.
    pub fn cancel(self: &Arc<Self>, table: &NodeTable, id: u64) {
        let mut deliveries = Deliveries::new();
        {
            let mut g = self.inner.lock();
            let was_empty = g.core.out_len() == 0;
            if let Some(key) = g.core.cancel(id)
                && g.slots.try_remove(key as usize).is_some()
            {
                self.node.sub_outstanding();
            }
            if g.claimed == Some(id) {
                self.release_claim(&mut g);
            }
            if was_empty && g.connected {
                self.flush(&mut g, table, Instant::now(), &mut deliveries);
            }
        }
        deliver(deliveries);
    }

    /// Handles readiness from the I/O thread. Returns true when the link is finished and must be
    /// dropped.
    pub fn on_ready(
        self: &Arc<Self>,
        table: &NodeTable,
        now: Instant,
        to_end: bool,
        deliveries: &mut Deliveries,
    ) -> bool {
        let mut g = self.inner.lock();
        if !g.connected {
            match connect_result(&g.stream) {
                Ok(true) => {
                    g.connected = true;
                    let _ = g.stream.set_nodelay(true);
                    // Under TLS the socket stays non-blocking: a caller reading its own answer
                    // waits in poll(2) instead (see `tls_link.rs`).
                    g.blocking = !self.is_tls
                        && match make_blocking(g.stream.as_raw_fd(), WAIT_SLICE) {
                            Ok(()) => true,
                            Err(e) => {
                                log::debug!("blocking mode for {}: {e}", self.node.addr());
                                false
                            }
                        };
                }
                Ok(false) => return false, // still connecting
                Err(e) => {
                    log::debug!("connect to {} failed: {e}", self.node.addr());
                    g.core.handle_eof("connect failed");
                    self.process(&mut g, table, now, deliveries);
                    if !self.routes.has(self.node.index()) {
                        table.note_failure(&self.node, connect_cause(&e), now);
                    }
                    return true;
                }
            }
        }
        if !g.caller_reading {
            self.read(&mut g, table, now, to_end, deliveries);
        }
        self.flush(&mut g, table, now, deliveries);
        self.finish(&mut g)
    }

    /// Runs the core's timers. Returns true when the link is finished.
    pub fn on_timer(
        self: &Arc<Self>,
        table: &NodeTable,
        now: Instant,
        deliveries: &mut Deliveries,
    ) -> bool {
        let mut g = self.inner.lock();
        // A socket the last own read left out of the poll goes back in — unless a caller
        // reads it now, or a set's round that just read it comes back for it: taking it then
        // would have this thread decrypt and deliver the set's answers, a hand-off per batch
        // (under TLS at 4 KiB, 5.7 against 3.8 µs per call).
        let kept = g.caller_reading || g.kept_until.is_some_and(|t| t > now);
        if !kept {
            self.watch(&mut g);
        }
        if g.core.poll_timeout().is_some_and(|t| t <= now) {
            g.core.handle_timeout(now);
            self.process(&mut g, table, now, deliveries);
            if g.connected {
                self.flush(&mut g, table, now, deliveries);
            }
        }
        self.finish(&mut g)
    }

    /// The client is closing (no call will come): finish as a retired link does — shut the
    /// write side once nothing is owed, then read on until the node closes its side — so no
    /// answer still on its way (to a call given up on) meets a reset. Returns true when the
    /// link is finished.
    pub fn begin_close(
        self: &Arc<Self>,
        table: &NodeTable,
        now: Instant,
        deliveries: &mut Deliveries,
    ) -> bool {
        let mut g = self.inner.lock();
        g.retired = true;
        g.kept_until = None;
        self.watch(&mut g);
        if g.connected {
            self.flush(&mut g, table, now, deliveries);
        }
        self.finish(&mut g)
    }

    /// Ends the link at once (client shutting down).
    pub fn abort(self: &Arc<Self>, table: &NodeTable, now: Instant, deliveries: &mut Deliveries) {
        let mut g = self.inner.lock();
        g.core.handle_eof("client closed");
        self.process(&mut g, table, now, deliveries);
        if g.caller_reading {
            // Its call is answered now (as not run or unknown): end the caller's wait.
            let _ = g.stream.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.inner.lock().core.poll_timeout()
    }

    /// Reads (without waiting) and handles input until the socket is drained. With `to_end`, a
    /// short read does not count as drained (the peer's FIN may follow the data).
    ///
    /// Each `recv` runs without the lock (into the input buffer, taken out meanwhile), so a
    /// calling thread sending a request never waits behind the I/O thread's syscall; frames are
    /// decoded and handled under it.
    pub(super) fn read(
        &self,
        g: &mut MutexGuard<'_, LinkInner>,
        table: &NodeTable,
        now: Instant,
        to_end: bool,
        d: &mut Deliveries,
    ) {
        if g.tls.is_some() {
            return self.read_tls(g, table, now, d);
        }
        let limit = g.core.max_frame() as usize + crate::proto::HEADER_LEN;
        while !g.read_done && !g.io_reading {
            let fd = g.stream.as_raw_fd();
            let mut input = std::mem::take(&mut g.input);
            g.io_reading = true;
            let res = MutexGuard::unlocked(g, || {
                let room = input.spare(READ_CHUNK, limit.max(READ_CHUNK));
                let len = room.len();
                (len > 0).then(|| (recv(fd, room, false), len))
            });
            g.io_reading = false;
            g.input = input;
            let Some((res, len)) = res else {
                break;
            };
            if self.received(g, table, now, res, len, to_end, d) || g.core.is_closed() {
                break;
            }
        }
        g.input.shrink_if_empty(64 * 1024);
    }

    /// Handles the result of one `recv` of at most `room` bytes into `g.input`. Returns true
    /// when the socket is drained.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn received(
        &self,
        g: &mut LinkInner,
        table: &NodeTable,
        now: Instant,
        res: io::Result<usize>,
        room: usize,
        to_end: bool,
        d: &mut Deliveries,
    ) -> bool {
        let drained = match res {
            Ok(0) => {
                g.read_done = true;
                g.core.handle_eof("server closed the connection");
                false
            }
            Ok(n) => {
                // A short read drained the socket (see the server's `ReadOutcome`), unless a
                // FIN may follow: then read on to see it.
                let drained = n < room && !to_end;
                g.input.filled(n);
                self.decode_input(g, now);
                drained
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => false,
            Err(e) => {
                log::debug!("read from {} failed: {e}", self.node.addr());
                g.read_done = true;
                g.core.handle_eof("connection reset");
                false
            }
        };
        self.process(g, table, now, d);
        drained
    }

    /// Decodes and hands to the core every whole frame in the input buffer.
    pub(super) fn decode_input(&self, g: &mut LinkInner, now: Instant) {
        let LinkInner { core, input, .. } = g;
        loop {
            match decode(input.data(), core.max_frame()) {
                Ok(Some((frame, used))) => {
                    if let Err(e) = core.handle_frame(now, frame) {
                        log::warn!("connection to {}: {e}", self.node.addr());
                    }
                    input.consume(used);
                }
                Ok(None) => break,
                Err(e) => {
                    let e = core.handle_decode_error(e);
                    log::warn!("connection to {}: {e}", self.node.addr());
                    input.consume(usize::MAX);
                    break;
                }
            }
        }
    }

    /// Writes the core's output, as much as the socket takes now. A small output is copied and
    /// sent without the lock (the bytes stay in the core's output, unwritten, until the `send`
    /// returns), so calling threads queueing requests meanwhile do not wait behind the syscall;
    /// one writer at a time (`writing`): bytes queued meanwhile are sent by that writer.
    pub(super) fn flush(
        &self,
        g: &mut MutexGuard<'_, LinkInner>,
        table: &NodeTable,
        now: Instant,
        d: &mut Deliveries,
    ) {
        g.flush_wanted = false;
        if g.writing {
            // The writer in its `send` loops back for these bytes (and sets write interest
            // if the socket fills).
            return;
        }
        if g.tls.is_some() {
            self.flush_tls(g);
        }
        while g.tls.is_none() && !g.core.out().is_empty() {
            match self.send_out(g) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("write to {} failed: {e}", self.node.addr());
                    g.core.handle_eof("write failed");
                    g.core.abandon_output();
                    break;
                }
            }
        }
        if (!g.core.out().is_empty() || !g.tls_flushed()) && !g.interest.is_writable() {
            // The rest goes out when the socket drains: the I/O thread must hear of it.
            let want = g.interest.add(Interest::WRITABLE);
            self.set_interest(g, want);
        }
        self.process(g, table, now, d);
    }

    /// One `send` of the core's output, recorded as written. Up to [`UNLOCKED_SEND_MAX`] bytes
    /// are lent to this thread and sent without the lock (see `ClientConn::lend_out`: until
    /// the send returns they count as possibly written); more are sent under it.
    fn send_out(&self, g: &mut MutexGuard<'_, LinkInner>) -> io::Result<usize> {
        let fd = g.stream.as_raw_fd();
        if g.core.out_len() > UNLOCKED_SEND_MAX {
            let n = send(fd, g.core.out())?;
            g.core.written(n);
            return Ok(n);
        }
        let mut copy = std::mem::take(&mut g.out_copy);
        copy.clear();
        copy.extend_from_slice(g.core.lend_out());
        g.writing = true;
        let res = MutexGuard::unlocked(g, || send(fd, &copy));
        g.writing = false;
        g.out_copy = copy;
        // The loan ends whatever happened (a failure path may have dropped the output
        // meanwhile): what went out counts, the rest is pending again.
        let n = res.as_ref().map_or(0, |&n| n.min(g.core.out_len()));
        g.core.written(n);
        res
    }

    /// Changes the socket's interest in the I/O thread's poll, if it differs (while the socket
    /// is out of the poll, the interest it goes back with).
    pub(super) fn set_interest(&self, g: &mut LinkInner, want: Interest) {
        if g.interest == want {
            return;
        }
        if !g.registered {
            g.interest = want;
            return;
        }
        let LinkInner {
            stream, interest, ..
        } = g;
        match self.registry.reregister(stream, self.token, want) {
            Ok(()) => *interest = want,
            // Deregistered: the I/O thread has already dropped the link.
            Err(e) => log::debug!("interest of the link to {}: {e}", self.node.addr()),
        }
    }

    /// Whether the core is done and its output is written (or can no longer be).
    fn finish(&self, g: &mut LinkInner) -> bool {
        if g.core.poll_close() {
            g.tls_close();
            return true;
        }
        // Never connected (a connect that timed out): nothing can be written any more.
        if g.core.is_closed() && (g.read_done || !g.connected) {
            g.core.abandon_output();
            return true;
        }
        if g.retired
            && g.core.outstanding() == 0
            && g.core.out_len() == 0
            && g.tls_flushed()
            && !g.write_shut
        {
            if !g.connected {
                return true;
            }
            // The server closes at our EOF when nothing is owed (rule 4); we read on until its
            // close, so nothing it wrote meets a reset.
            g.write_shut = true;
            g.tls_close();
            if g.stream.shutdown(std::net::Shutdown::Write).is_err() {
                return true;
            }
        }
        false
    }
}

/// Hands answers to their waiting calls (outside any lock).
pub(crate) fn deliver(deliveries: impl IntoIterator<Item = (Arc<Slot>, Outcome)>) {
    for (slot, outcome) in deliveries {
        slot.complete(outcome);
    }
}

/// Like [`deliver`], in two passes: every outcome is stored first, then every waiter is woken,
/// so a thread that polls many calls finds the whole batch ready when it wakes. `wakers` is
/// the I/O thread's reusable scratch space.
pub(crate) fn deliver_batch(
    deliveries: impl IntoIterator<Item = (Arc<Slot>, Outcome)>,
    wakers: &mut Vec<std::task::Waker>,
) {
    wakers.extend(
        deliveries
            .into_iter()
            .filter_map(|(slot, outcome)| slot.fill(outcome)),
    );
    for w in wakers.drain(..) {
        w.wake();
    }
}
