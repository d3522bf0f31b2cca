//! The caller side of one connection, as a state machine with no I/O.
//!
//! Every request id this side sends resolves exactly once (rule 1), as one [`Outcome`]:
//!
//! ```text
//!   send_request ──► outstanding ──┬─ RESPONSE ─────────────────────────► Completed
//!                                  ├─ RESPONSE, refusal status ─────────► Refused (never ran, final)
//!                                  ├─ SHUTDOWN_REJECT ──────────────────► Rejected (never ran)
//!                                  ├─ GOAWAY(N), id > N ────────────────► Rejected (never ran)
//!                                  ├─ connection ends, frame not fully
//!                                  │  written (the server cannot have it) ► Rejected (never ran)
//!                                  ├─ connection ends, frame written ────► Unknown (rule 5)
//!                                  ├─ deadline passes ──────────────────► DeadlineExceeded
//!                                  └─ cancel() ─────────────────────────► (dropped by the caller)
//! ```
//!
//! Connection states:
//!
//! ```text
//!  Handshake ── HELLO ──► Open ── READY ──► (sendable) ── GOAWAY(N) ──► Draining ── all ids ≤ N
//!      │                   │                                  │          resolved ──► Closed
//!      └───────────────────┴── bad frame / ERROR / EOF / timeout ──────────────────► Closed
//! ```
//!
//! Liveness (rule 8) holds in every state: Open and Draining connections PING after a silence
//! and end at the PING timeout; a Draining one also ends when the server's announced drain
//! budget plus [`drain_margin`](ClientConnConfig::drain_margin) has passed. Either way its
//! unanswered requests resolve as Unknown at once.
//!
//! # Calling protocol
//! * Inputs: [`handle_frame`](ClientConn::handle_frame),
//!   [`handle_decode_error`](ClientConn::handle_decode_error),
//!   [`handle_eof`](ClientConn::handle_eof), [`handle_timeout`](ClientConn::handle_timeout).
//! * Actions: [`send_request`](ClientConn::send_request), [`cancel`](ClientConn::cancel).
//! * Outputs: [`poll_event`](ClientConn::poll_event) (drain after every input), [`out`] and
//!   [`written`](ClientConn::written), [`poll_timeout`](ClientConn::poll_timeout),
//!   [`poll_close`](ClientConn::poll_close).
//!
//! [`out`]: ClientConn::out

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::buf::OutBuf;
use super::codes::{ErrorCode, GoAwayReason, Kind, RejectReason, Status};
use super::error::{ApiMisuse, ConnError, DecodeError, ProtocolError};
use super::frame::{
    CRITICAL_FEATURES, ErrorFrame, FEATURE_METADATA, FEATURE_REFUSALS, Frame, GoAway, Hello,
    MAX_METHOD_LEN, Metadata, OUR_FEATURES, Request, VERSION, encode_header_only,
};
use super::header::HEADER_LEN;
use super::id_hash::{IdMap, id_map};

/// Limits and timeouts of a caller connection.
#[derive(Clone, Debug)]
pub struct ClientConnConfig {
    /// The largest frame body this side accepts (announced in HELLO).
    pub max_frame: u32,
    /// Time for the server's HELLO to arrive.
    pub hello_timeout: Duration,
    /// With no input for this long, send PING.
    pub ping_interval: Duration,
    /// Time for the PONG to arrive before the connection is declared lost.
    pub ping_timeout: Duration,
    /// After GOAWAY, how long past the server's announced drain budget the caller still waits
    /// for the answers it is owed before it gives them up as Unknown (rule 8).
    pub drain_margin: Duration,
    /// The most bytes queued for the server. A REQUEST that would grow the output beyond it is
    /// refused ([`ApiMisuse::OutputFull`]) until the server reads: a server that stops reading
    /// cannot grow the caller's memory without bound. A REQUEST on an empty output always fits.
    pub max_out: usize,
}

impl Default for ClientConnConfig {
    fn default() -> Self {
        ClientConnConfig {
            max_frame: 1 << 20,
            hello_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(5),
            ping_timeout: Duration::from_secs(3),
            drain_margin: Duration::from_secs(1),
            max_out: 4 << 20,
        }
    }
}

/// How a request ended when it was never run: safe to send anywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The server said so with SHUTDOWN_REJECT.
    Server(RejectReason),
    /// The id is above GOAWAY's `last_accepted` (rule 3).
    GoAway,
    /// The frame never left this side in full, so the server cannot have read it.
    NotSent,
}

/// How one request id resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The server ran it and answered.
    Completed {
        /// The handler's status.
        status: Status,
        /// The response payload.
        body: Vec<u8>,
    },
    /// It provably never ran.
    Rejected(Rejection),
    /// The server refused it: it never ran, and sending it elsewhere cannot help (a status in
    /// [`Status::REFUSALS`], on a connection where both HELLOs set
    /// [`FEATURE_REFUSALS`]; protocol.md §6.2, §8).
    Refused {
        /// The refusal status (unknown method, body that does not decode, …).
        status: Status,
        /// The server's detail, for humans.
        body: Vec<u8>,
    },
    /// The connection ended after the request was written and before its answer: it may have run
    /// (rule 5).
    Unknown,
    /// The caller's deadline passed first; `sent` tells whether the frame had been written in
    /// full (if so, it may have run).
    DeadlineExceeded {
        /// Whether the server may have read the request.
        sent: bool,
    },
}

/// Something the driver must act on, from [`ClientConn::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// The server is ready at this capacity (percent), or changed it.
    Ready(u8),
    /// The server sent GOAWAY: choose this connection no more.
    GoAway {
        /// Ids up to this one will still be answered.
        last_accepted: u64,
        /// The server's drain budget.
        drain_budget: Duration,
        /// The server's reason.
        reason: GoAwayReason,
    },
    /// A SHUTDOWN_REJECT said something about the node (not ready, shutting down, overloaded).
    NodeHint(RejectReason),
    /// A request resolved.
    Resolved {
        /// The request id.
        id: u64,
        /// The driver's token given to `send_request`.
        user: u64,
        /// How it ended.
        outcome: Outcome,
    },
    /// The connection is over; every request on it has resolved. `error` is `None` for a clean
    /// end after GOAWAY.
    Closed {
        /// Why, if it ended badly.
        error: Option<ConnError>,
    },
}

#[derive(Clone, Copy, Debug)]
struct Outstanding {
    user: u64,
    deadline: Instant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Handshake,
    Open,
    Draining { last_accepted: u64 },
    Closed,
}

/// The caller side of one connection.
#[derive(Debug)]
pub struct ClientConn {
    cfg: ClientConnConfig,
    state: State,
    out: OutBuf,
    next_id: u64,
    /// Highest id whose frame has been written in full.
    written_id: u64,
    /// The last REQUEST lent to a writer (see [`lend_out`](Self::lend_out)), 0 if none: it may
    /// have been written in full, so the server may answer it or accept it in a GOAWAY.
    lent_id: u64,
    outstanding: IdMap<Outstanding>,
    events: VecDeque<ClientEvent>,
    ready: Option<u8>,
    peer_max_frame: u32,
    /// Both HELLOs set FEATURE_REFUSALS: refusal statuses mean "not run, final".
    refusals: bool,
    /// Both HELLOs set feature bit 1: requests may carry metadata.
    metadata_on: bool,
    last_input: Instant,
    hello_deadline: Option<Instant>,
    ping_deadline: Option<Instant>,
    /// After GOAWAY: the announced drain budget plus the margin (rule 8).
    drain_deadline: Option<Instant>,
    /// The server's HELLO was read (the peer speaks this protocol).
    hello_done: bool,
    /// Earliest deadline among outstanding requests (a lower bound; recomputed when passed).
    next_deadline: Option<Instant>,
    closed_reported: bool,
}

impl ClientConn {
    /// A new connection; our HELLO is queued at once.
    pub fn new(now: Instant, cfg: ClientConnConfig) -> ClientConn {
        let mut out = OutBuf::default();
        Hello::ours(cfg.max_frame).encode(out.vec());
        ClientConn {
            hello_deadline: Some(now + cfg.hello_timeout),
            cfg,
            state: State::Handshake,
            out,
            next_id: 1,
            written_id: 0,
            lent_id: 0,
            outstanding: id_map(64),
            events: VecDeque::with_capacity(16),
            ready: None,
            peer_max_frame: super::frame::MIN_MAX_FRAME,
            refusals: false,
            metadata_on: false,
            last_input: now,
            ping_deadline: None,
            drain_deadline: None,
            hello_done: false,
            next_deadline: None,
            closed_reported: false,
        }
    }

    // ---- getters ----

    /// The largest body this side accepts: pass it to [`decode`](super::decode).
    pub fn max_frame(&self) -> u32 {
        self.cfg.max_frame
    }

    /// Whether a request may be sent now: handshake done, READY seen, no GOAWAY.
    pub fn is_sendable(&self) -> bool {
        self.state == State::Open && self.ready.is_some()
    }

    /// The capacity from the last READY, if any.
    pub fn ready_capacity(&self) -> Option<u8> {
        self.ready
    }

    /// Whether the server's HELLO was read: the peer speaks this protocol. Stays true once the
    /// connection closes (a failure before it is a failed handshake).
    pub fn handshake_done(&self) -> bool {
        self.hello_done
    }

    /// Whether GOAWAY has been read.
    pub fn is_draining(&self) -> bool {
        matches!(self.state, State::Draining { .. })
    }

    /// Whether the connection is over.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Requests sent and not yet resolved.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Whether `id` was sent and has not resolved (nor been cancelled).
    pub fn is_outstanding(&self, id: u64) -> bool {
        self.outstanding.contains_key(&id)
    }

    /// The id the next request will get.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    // ---- actions ----

    /// Encodes a REQUEST and returns its id. Ids are assigned here, at serialization, so they
    /// strictly increase in wire order. `user` comes back in the request's [`ClientEvent::Resolved`].
    pub fn send_request(
        &mut self,
        now: Instant,
        method: &str,
        body: &[u8],
        deadline: Instant,
        idempotent: bool,
        user: u64,
    ) -> Result<u64, ApiMisuse> {
        self.send_request_with(
            now,
            method,
            Metadata::EMPTY,
            body,
            deadline,
            idempotent,
            user,
        )
    }

    /// Whether the server's HELLO set feature bit 1: metadata given to
    /// [`send_request_with`](Self::send_request_with) is sent.
    pub fn metadata_on(&self) -> bool {
        self.metadata_on
    }

    /// [`send_request`](Self::send_request) with metadata. The metadata is sent only where both
    /// HELLOs set feature bit 1; to an older server the request goes without it.
    #[allow(clippy::too_many_arguments)]
    pub fn send_request_with(
        &mut self,
        now: Instant,
        method: &str,
        metadata: Metadata<'_>,
        body: &[u8],
        deadline: Instant,
        idempotent: bool,
        user: u64,
    ) -> Result<u64, ApiMisuse> {
        let metadata = if self.metadata_on {
            metadata
        } else {
            Metadata::EMPTY
        };
        if !self.is_sendable() {
            return Err(ApiMisuse::NotSendable);
        }
        if method.is_empty() || method.len() > MAX_METHOD_LEN {
            return Err(ApiMisuse::BadMethod);
        }
        let len = Request::body_len_with(method, metadata, body);
        if len > self.peer_max_frame as usize {
            return Err(ApiMisuse::TooLarge {
                len,
                max: self.peer_max_frame,
            });
        }
        let queued = self.out.len();
        if queued > 0 && queued + HEADER_LEN + len > self.cfg.max_out {
            return Err(ApiMisuse::OutputFull {
                queued,
                max: self.cfg.max_out,
            });
        }
        let id = self.next_id;
        if id == u64::MAX {
            return Err(ApiMisuse::IdsExhausted);
        }
        self.next_id += 1;
        let budget = deadline.saturating_duration_since(now).as_micros();
        let deadline_us = u32::try_from(budget).unwrap_or(u32::MAX);
        Request {
            id,
            deadline_us,
            idempotent,
            method,
            metadata,
            body,
        }
        .encode(self.out.vec());
        self.outstanding.insert(id, Outstanding { user, deadline });
        if self.next_deadline.is_none_or(|d| deadline < d) {
            self.next_deadline = Some(deadline);
        }
        Ok(id)
    }

    /// The caller no longer wants `id`: it is forgotten here (a late answer is dropped), and
    /// CANCEL is sent as a hint unless the connection is draining. Returns the token if `id`
    /// was outstanding.
    pub fn cancel(&mut self, id: u64) -> Option<u64> {
        let o = self.outstanding.remove(&id)?;
        if self.state == State::Open {
            encode_header_only(Kind::CANCEL, id, self.out.vec());
        }
        self.maybe_finish_drain();
        Some(o.user)
    }

    // ---- inputs ----

    /// Handles one frame from the server. On `Err`, an ERROR frame may have been queued, every
    /// outstanding request has resolved, and the connection is closing.
    pub fn handle_frame(&mut self, now: Instant, frame: Frame<'_>) -> Result<(), ConnError> {
        if self.state == State::Closed {
            return Ok(());
        }
        self.last_input = now;
        self.ping_deadline = None;
        match (self.state, frame) {
            (State::Handshake, Frame::Hello(h)) => self.on_hello(h),
            (State::Handshake, _) => {
                self.violation(ErrorCode::HANDSHAKE, 0, "the first frame must be HELLO")
            }
            (_, Frame::Ready(r)) => {
                if self.ready != Some(r.capacity) {
                    self.ready = Some(r.capacity);
                    self.events.push_back(ClientEvent::Ready(r.capacity));
                }
                Ok(())
            }
            (_, Frame::Response(r)) => {
                self.check_sent(r.id)?;
                let body = r.body.to_vec();
                let outcome = if self.refusals && r.status.is_refusal() {
                    Outcome::Refused {
                        status: r.status,
                        body,
                    }
                } else {
                    Outcome::Completed {
                        status: r.status,
                        body,
                    }
                };
                self.resolve(r.id, outcome);
                self.maybe_finish_drain();
                Ok(())
            }
            (_, Frame::ShutdownReject(r)) => {
                self.check_sent(r.id)?;
                // Rule 1: a SHUTDOWN_REJECT for an id already resolved (by GOAWAY, a deadline,
                // a cancel) is dropped silently, hint included.
                if self.outstanding.contains_key(&r.id) {
                    self.events.push_back(ClientEvent::NodeHint(r.reason));
                }
                self.resolve(r.id, Outcome::Rejected(Rejection::Server(r.reason)));
                self.maybe_finish_drain();
                Ok(())
            }
            (State::Open, Frame::GoAway(g)) => self.on_goaway(now, g),
            (State::Draining { last_accepted }, Frame::GoAway(g)) => {
                if g.last_accepted == last_accepted {
                    Ok(()) // a repeated GOAWAY changes nothing
                } else {
                    let detail = "a second GOAWAY changed last_accepted";
                    self.violation(ErrorCode::UNEXPECTED_FRAME, g.last_accepted, detail)
                }
            }
            (_, Frame::Ping(p)) => {
                if self.state == State::Open {
                    encode_header_only(Kind::PONG, p.opaque, self.out.vec());
                }
                Ok(())
            }
            (_, Frame::Pong(_)) => Ok(()),
            (_, Frame::Error(e)) => {
                let message = String::from_utf8_lossy(e.message).into_owned();
                self.end(
                    Some(ConnError::Peer {
                        code: e.code,
                        message,
                    }),
                    0,
                );
                Err(self.closing_error())
            }
            (_, f) => {
                let detail = "frame not allowed from a server at this point";
                self.violation(ErrorCode::UNEXPECTED_FRAME, frame_id(&f), detail)
            }
        }
    }

    /// Handles bytes that do not decode: queues ERROR and ends the connection (rule 7).
    pub fn handle_decode_error(&mut self, err: DecodeError) -> ConnError {
        if self.state != State::Closed {
            self.end(Some(ConnError::Decode(err)), 0);
        }
        self.closing_error()
    }

    /// The server shut its write side, or the socket failed: the connection is over. Every id
    /// still outstanding resolves as Unknown, or Rejected if its frame never left (rule 5).
    pub fn handle_eof(&mut self, why: &'static str) {
        if self.state == State::Closed {
            return;
        }
        let clean = matches!(self.state, State::Draining { .. }) && self.outstanding.is_empty();
        self.end((!clean).then_some(ConnError::Lost(why)), 0);
    }

    /// Runs the timers due at `now`: request deadlines, HELLO and PING timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        if self.hello_deadline.is_some_and(|d| now >= d) && self.state == State::Handshake {
            self.hello_deadline = None;
            let err = ProtocolError::new(ErrorCode::HANDSHAKE, 0, "HELLO did not arrive in time");
            self.end(Some(ConnError::Protocol(err)), 0);
            return;
        }
        if self.ping_deadline.is_some_and(|d| now >= d) {
            self.ping_deadline = None;
            self.end(Some(ConnError::Lost("PING not answered in time")), 0);
            return;
        }
        if self.drain_deadline.is_some_and(|d| now >= d) {
            self.drain_deadline = None;
            let why = "the drain budget passed without the answers owed";
            self.end(Some(ConnError::Lost(why)), 0);
            return;
        }
        // Rule 8: a draining connection is watched too (a node silent after GOAWAY).
        if self.pings()
            && self.ping_deadline.is_none()
            && now >= self.last_input + self.cfg.ping_interval
        {
            encode_header_only(Kind::PING, 0, self.out.vec());
            self.ping_deadline = Some(now + self.cfg.ping_timeout);
        }
        if self.next_deadline.is_some_and(|d| now >= d) {
            let mut expired: Vec<u64> = Vec::new();
            let mut next: Option<Instant> = None;
            for (&id, o) in &self.outstanding {
                if now >= o.deadline {
                    expired.push(id);
                } else if next.is_none_or(|n| o.deadline < n) {
                    next = Some(o.deadline);
                }
            }
            expired.sort_unstable();
            for id in expired {
                // A frame still queued would go out later and may run although the caller was
                // told it was not sent: it is cut now. A frame partly written must be finished
                // (the peer never sees half a frame), so it counts as sent.
                let sent = id <= self.written_id || !self.out.cut_request(id);
                self.resolve(id, Outcome::DeadlineExceeded { sent });
            }
            self.next_deadline = next;
            self.maybe_finish_drain();
        }
    }

    // ---- outputs ----

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Bytes to write to the server.
    pub fn out(&self) -> &[u8] {
        self.out.pending()
    }

    /// [`out`](Self::out), lent to a writer that writes it without holding this connection
    /// (its lock released for the syscall): until [`written`](Self::written) says how much went
    /// out, every frame in it counts as possibly sent — a deadline, GOAWAY or failure meanwhile
    /// resolves its request as sent or unknown, never as "not sent". Frames queued after the
    /// loan are not part of it.
    pub fn lend_out(&mut self) -> &[u8] {
        self.out.lend();
        // The loan ends at a frame boundary: every REQUEST in it may be written in full.
        self.lent_id = self.out.started_request().unwrap_or(0);
        self.out.pending()
    }

    /// The highest id the server may have read in full: written, or lent to a writer.
    fn sent_bound(&self) -> u64 {
        self.written_id.max(self.lent_id)
    }

    /// Bytes waiting in the output buffer.
    pub fn out_len(&self) -> usize {
        self.out.len()
    }

    /// Records that `n` bytes of [`out`](Self::out) were written (and ends a loan, see
    /// [`lend_out`](Self::lend_out)).
    pub fn written(&mut self, n: usize) {
        self.lent_id = 0;
        let written = &mut self.written_id;
        self.out.consume(n, |head| {
            if head[0] == Kind::REQUEST.0 {
                *written = u64::from_be_bytes(head_id(head));
            }
        });
        self.out.shrink_if_empty(64 * 1024);
        self.maybe_finish_drain();
    }

    /// The next instant [`handle_timeout`](Self::handle_timeout) must run, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Closed {
            return None;
        }
        let ping = match self.ping_deadline {
            Some(d) => Some(d),
            None => self
                .pings()
                .then(|| self.last_input + self.cfg.ping_interval),
        };
        [
            self.hello_deadline,
            ping,
            self.drain_deadline,
            self.next_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Whether the driver should close the socket now: after GOAWAY once every id ≤ N resolved
    /// and GOAWAY_ACK is written (rule 3), or after a failure once ERROR is written. Returns true
    /// once.
    pub fn poll_close(&mut self) -> bool {
        if self.state == State::Closed && !self.closed_reported && self.out.is_empty() {
            self.closed_reported = true;
            return true;
        }
        false
    }

    /// Whether the socket must be closed now even with output pending (the connection failed
    /// and the peer may not read): the driver gives up on the remaining bytes.
    pub fn abandon_output(&mut self) {
        self.lent_id = 0;
        self.out.discard(|_| {});
    }

    // ---- internals ----

    /// Whether the PING timer runs: open, or draining (rule 8).
    fn pings(&self) -> bool {
        matches!(self.state, State::Open | State::Draining { .. })
    }

    fn on_hello(&mut self, h: Hello) -> Result<(), ConnError> {
        self.hello_deadline = None;
        self.hello_done = true;
        if h.min_version > VERSION || h.max_version < VERSION {
            let detail = "no protocol version in common";
            return self.violation(ErrorCode::UNSUPPORTED_VERSION, 0, detail);
        }
        if h.features & CRITICAL_FEATURES != 0 {
            return self.violation(
                ErrorCode::UNSUPPORTED_FEATURE,
                0,
                "unknown critical feature",
            );
        }
        self.peer_max_frame = h.max_frame;
        self.refusals = h.features & OUR_FEATURES & FEATURE_REFUSALS != 0;
        self.metadata_on = h.features & FEATURE_METADATA != 0;
        self.state = State::Open;
        Ok(())
    }

    /// Rule 3: stop writing (after any frame already started), resolve every id above N as
    /// Rejected, acknowledge, and wait for the ids up to N — at most the announced drain budget
    /// plus the margin (rule 8).
    fn on_goaway(&mut self, now: Instant, g: GoAway) -> Result<(), ConnError> {
        if g.last_accepted > self.sent_bound() {
            let detail = "GOAWAY accepts an id that was never written";
            return self.violation(ErrorCode::UNKNOWN_ID, g.last_accepted, detail);
        }
        self.state = State::Draining {
            last_accepted: g.last_accepted,
        };
        // Frames not yet started are dropped: requests among them are above N and resolve below.
        self.out.cut_unstarted(|_| {});
        let mut rejected: Vec<u64> = self
            .outstanding
            .keys()
            .copied()
            .filter(|&id| id > g.last_accepted)
            .collect();
        rejected.sort_unstable();
        for id in rejected {
            self.resolve(id, Outcome::Rejected(Rejection::GoAway));
        }
        encode_header_only(Kind::GOAWAY_ACK, g.last_accepted, self.out.vec());
        let drain_budget = Duration::from_millis(u64::from(g.drain_budget_ms));
        self.drain_deadline = Some(now + drain_budget + self.cfg.drain_margin);
        self.events.push_front(ClientEvent::GoAway {
            last_accepted: g.last_accepted,
            drain_budget,
            reason: g.reason,
        });
        self.maybe_finish_drain();
        Ok(())
    }

    /// Rule 1: an answer for an id never sent is an error; for a sent id that already resolved,
    /// the caller drops it. "Sent" means written in full (or lent to a writer that may have
    /// written it in full: a writer reports after the syscall), as for GOAWAY (rule 2): the server
    /// cannot have read a REQUEST still queued, and an answer taken for it would resolve an id
    /// whose frame is written later (and run) after the caller was told it completed or never ran.
    fn check_sent(&mut self, id: u64) -> Result<(), ConnError> {
        if id > self.sent_bound() || id == 0 {
            return self.violation(ErrorCode::UNKNOWN_ID, id, "answer for an id never sent");
        }
        Ok(())
    }

    fn resolve(&mut self, id: u64, outcome: Outcome) {
        if let Some(o) = self.outstanding.remove(&id) {
            self.events.push_back(ClientEvent::Resolved {
                id,
                user: o.user,
                outcome,
            });
        }
    }

    fn maybe_finish_drain(&mut self) {
        if matches!(self.state, State::Draining { .. }) && self.outstanding.is_empty() {
            self.end(None, 0);
        }
    }

    fn violation(
        &mut self,
        code: ErrorCode,
        id: u64,
        detail: &'static str,
    ) -> Result<(), ConnError> {
        let err = ConnError::Protocol(ProtocolError::new(code, id, detail));
        self.end(Some(err), id);
        Err(self.closing_error())
    }

    /// Ends the connection: every outstanding id resolves (rule 5), an ERROR frame is queued if
    /// this side found the fault (rule 7), then `Closed` is reported.
    fn end(&mut self, error: Option<ConnError>, error_id: u64) {
        if self.state == State::Closed {
            return;
        }
        let draining = matches!(self.state, State::Draining { .. });
        self.state = State::Closed;
        // Frames not started are never written now; a frame partly written may still be
        // completed, so the server may read it: it counts as sent. After GOAWAY the unstarted
        // frames were cut already and only GOAWAY_ACK was queued since: it must still go out
        // (rule 3), so it is kept.
        if !draining {
            self.out.cut_unstarted(|_| {});
        }
        let sent = self.written_id.max(self.out.started_request().unwrap_or(0));
        let mut ids: Vec<u64> = self.outstanding.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let outcome = if id <= sent {
                Outcome::Unknown
            } else {
                Outcome::Rejected(Rejection::NotSent)
            };
            self.resolve(id, outcome);
        }
        if let Some(code) = error.as_ref().and_then(ConnError::sent_code) {
            let message = error.as_ref().map(ToString::to_string).unwrap_or_default();
            let msg = message.as_bytes();
            ErrorFrame {
                id: error_id,
                code,
                message: msg,
            }
            .encode(self.out.vec());
        }
        self.next_deadline = None;
        self.ping_deadline = None;
        self.hello_deadline = None;
        self.drain_deadline = None;
        self.events.push_back(ClientEvent::Closed { error });
    }

    fn closing_error(&self) -> ConnError {
        self.events
            .iter()
            .rev()
            .find_map(|e| match e {
                ClientEvent::Closed { error: Some(e) } => Some(e.clone()),
                _ => None,
            })
            .unwrap_or(ConnError::Lost("connection closed"))
    }
}

fn head_id(head: &[u8; HEADER_LEN]) -> [u8; 8] {
    let mut id = [0u8; 8];
    id.copy_from_slice(&head[8..16]);
    id
}

fn frame_id(f: &Frame<'_>) -> u64 {
    match f {
        Frame::Request(r) => r.id,
        Frame::Cancel(c) => c.id,
        _ => 0,
    }
}
