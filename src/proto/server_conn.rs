//! The server side of one connection, as a state machine with no I/O.
//!
//! ```text
//!            HELLO ok                     start_drain()
//!  Handshake ────────► Open ─────────────────────────────► Draining ───┐ every id ≤ N answered
//!      │               │  │ (READY sent when the app       │  │         │ and flushed, and the
//!      │               │  │  says so; REQUEST before        │  │         │ caller closed (EOF)
//!      │               │  │  that → SHUTDOWN_REJECT)        │  │         ▼
//!      │               │  └─ EOF, nothing pending ──────────┼──┼──────► Closed
//!      │ bad bytes,    │ bad bytes, broken rule            │  │ drain budget spent
//!      └───────────────┴─────────────► Failing ◄───────────┘  └──► write side shut, linger
//!                        (ERROR queued; write side shut once flushed; read and discard until
//!                         EOF or linger end; then Closed — rule 4, never an RST)
//! ```
//!
//! # Calling protocol
//! * Inputs: [`handle_frame`](ServerConn::handle_frame) for each frame decoded from the peer,
//!   [`handle_decode_error`](ServerConn::handle_decode_error) when decoding fails,
//!   [`handle_eof`](ServerConn::handle_eof), [`handle_timeout`](ServerConn::handle_timeout).
//! * Application actions: [`respond`](ServerConn::respond), [`reject`](ServerConn::reject),
//!   [`set_ready`](ServerConn::set_ready), [`start_drain`](ServerConn::start_drain); for an
//!   answer the driver writes itself (another thread, straight to the socket),
//!   [`answer_encoder`](ServerConn::answer_encoder) then
//!   [`respond_elsewhere`](ServerConn::respond_elsewhere) and
//!   [`finished_elsewhere`](ServerConn::finished_elsewhere).
//! * Outputs: [`out`](ServerConn::out) (bytes to write; report writes with
//!   [`written`](ServerConn::written)), [`poll_timeout`](ServerConn::poll_timeout),
//!   [`poll_close`](ServerConn::poll_close).
//!
//! After every input or action, the driver writes what `out` holds and asks `poll_close`.

use std::time::{Duration, Instant};

use super::buf::OutBuf;
use super::codes::{ErrorCode, GoAwayReason, Kind, RejectReason, Status};
use super::error::{ApiMisuse, ConnError, DecodeError, ProtocolError};
use super::frame::{
    CRITICAL_FEATURES, ErrorFrame, FEATURE_METADATA, FEATURE_REFUSALS, Frame, GoAway, Hello,
    Metadata, OUR_FEATURES, Ready, Request, Response, ShutdownReject, VERSION, encode_header_only,
};
use super::header::HEADER_LEN;
use super::id_hash::IdSet;

/// Limits and timeouts of a server connection.
#[derive(Clone, Debug)]
pub struct ServerConnConfig {
    /// The largest frame body this side accepts (announced in HELLO).
    pub max_frame: u32,
    /// Requests accepted and not yet answered, at most; more are rejected as OVERLOADED.
    pub max_in_flight: usize,
    /// Time for the peer's HELLO to arrive.
    pub hello_timeout: Duration,
    /// With nothing pending and no input for this long, the server sends PING.
    pub idle_timeout: Duration,
    /// Time for the PONG to arrive before the connection is given up.
    pub ping_timeout: Duration,
    /// After shutting the write side, how long to read and discard before closing.
    pub linger: Duration,
}

impl Default for ServerConnConfig {
    fn default() -> Self {
        ServerConnConfig {
            max_frame: 1 << 20,
            max_in_flight: 1024,
            hello_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            ping_timeout: Duration::from_secs(10),
            linger: Duration::from_secs(2),
        }
    }
}

/// A request the connection accepted; the driver must answer it exactly once with
/// [`ServerConn::respond`] or (only if it never started) [`ServerConn::reject`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted<'a> {
    /// The request id.
    pub id: u64,
    /// The method name.
    pub method: &'a str,
    /// The payload, borrowed from the input buffer.
    pub body: &'a [u8],
    /// When the caller stops waiting.
    pub deadline: Instant,
    /// Whether the caller marked it safe to run more than once.
    pub idempotent: bool,
    /// The caller's metadata (empty unless both HELLOs set feature bit 1).
    pub metadata: Metadata<'a>,
}

/// What a frame from the peer asks of the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// Nothing beyond what the connection did itself (it may have queued output).
    None,
    /// A new request to run.
    Request(Accepted<'a>),
    /// The caller no longer wants the answer to this pending id: reject it if it has not started.
    Cancel(u64),
    /// A request the connection rejected itself (SHUTDOWN_REJECT queued; rules 2, 6, 10, 11):
    /// it reaches no handler. Reported so the driver can count it; nothing is left to do.
    Rejected {
        /// The request's id.
        id: u64,
        /// The reason on the SHUTDOWN_REJECT.
        reason: RejectReason,
    },
}

/// What the driver must do to the socket, returned by [`ServerConn::poll_close`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseAction {
    /// Shut the write side (FIN) and keep reading and discarding.
    ShutdownWrite,
    /// Close the socket; no input can arrive any more, so no RST is sent.
    Close,
}

/// Progress of shutting our write side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shut {
    No,
    /// Decided (drain budget or linger spent); `poll_close` hands it to the driver.
    Wanted,
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Handshake,
    Open,
    Draining { last_accepted: u64 },
    Failing,
    Closed,
}

/// How one connection's answers are encoded: what its caller negotiated. Copied out of the core
/// for a driver that encodes answers on another thread.
#[derive(Clone, Copy, Debug)]
pub struct AnswerEncoder {
    refusals: bool,
    peer_max_frame: u32,
}

impl AnswerEncoder {
    /// Appends the RESPONSE frame for `id` to `dst`.
    ///
    /// A refusal status ([`Status::is_refusal`]: the request did not run, final) goes out as it
    /// is only to a caller that negotiated refusals; any other caller gets
    /// [`Status::v1_fallback`], which it reads as "ran" and so never replays (protocol.md §6.2).
    /// A frame never exceeds what the peer announced it accepts (rule 7 on its side): an answer
    /// too large for it becomes an INTERNAL status the caller can read, naming both sizes (a
    /// rare path, so the message may allocate).
    pub fn encode(&self, id: u64, status: Status, body: &[u8], dst: &mut Vec<u8>) {
        let status = if self.refusals {
            status
        } else {
            status.v1_fallback()
        };
        if 2 + body.len() > self.peer_max_frame as usize {
            let msg = format!(
                "response of {} bytes exceeds the caller's max_frame of {} bytes",
                2 + body.len(),
                self.peer_max_frame
            );
            Response {
                id,
                status: Status::INTERNAL,
                body: msg.as_bytes(),
            }
            .encode(dst);
        } else {
            Response { id, status, body }.encode(dst);
        }
    }
}

/// The server side of one connection.
#[derive(Debug)]
pub struct ServerConn {
    cfg: ServerConnConfig,
    state: State,
    out: OutBuf,
    /// Highest request id read (rule 1: ids strictly increase).
    last_id: u64,
    /// Accepted and not yet answered.
    pending: IdSet,
    /// Answered by the application, the answer queued and not yet written in full. Only these
    /// count as finished answers: a SHUTDOWN_REJECT the connection sends on its own (not ready,
    /// deadline, overloaded, draining) answers a request the driver never saw.
    answering: IdSet,
    /// Answers that no longer need the connection (written in full, or dropped because the
    /// connection failed) since the driver last asked.
    finished_answers: usize,
    /// Capacity the application wants advertised; `None` until it is ready.
    want_ready: Option<u8>,
    /// Capacity last sent in READY.
    sent_ready: Option<u8>,
    peer_max_frame: u32,
    /// Both HELLOs set FEATURE_REFUSALS: refusal statuses may be sent as they are.
    refusals: bool,
    /// Both HELLOs set feature bit 1: REQUEST may carry metadata.
    metadata_on: bool,
    peer_eof: bool,
    /// The caller's HELLO was read. Not the same as leaving `Handshake`: a drain may start
    /// before the caller's HELLO arrives.
    hello_done: bool,
    goaway_acked: bool,
    shut: Shut,
    last_input: Instant,
    hello_deadline: Option<Instant>,
    ping_deadline: Option<Instant>,
    drain_deadline: Option<Instant>,
    linger_deadline: Option<Instant>,
    error: Option<ConnError>,
}

impl ServerConn {
    /// A new connection; our HELLO is queued at once.
    pub fn new(now: Instant, cfg: ServerConnConfig) -> ServerConn {
        let mut out = OutBuf::default();
        Hello::ours(cfg.max_frame).encode(out.vec());
        ServerConn {
            pending: IdSet::with_capacity(cfg.max_in_flight.min(64)),
            answering: IdSet::with_capacity(cfg.max_in_flight.min(64)),
            hello_deadline: Some(now + cfg.hello_timeout),
            cfg,
            state: State::Handshake,
            out,
            last_id: 0,
            finished_answers: 0,
            want_ready: None,
            sent_ready: None,
            peer_max_frame: super::frame::MIN_MAX_FRAME,
            refusals: false,
            metadata_on: false,
            peer_eof: false,
            hello_done: false,
            goaway_acked: false,
            shut: Shut::No,
            last_input: now,
            ping_deadline: None,
            drain_deadline: None,
            linger_deadline: None,
            error: None,
        }
    }

    // ---- getters ----

    /// The largest body this side accepts: pass it to [`decode`](super::decode).
    pub fn max_frame(&self) -> u32 {
        self.cfg.max_frame
    }

    /// The largest body the peer accepts (from its HELLO).
    pub fn peer_max_frame(&self) -> u32 {
        self.peer_max_frame
    }

    /// Requests accepted and not yet answered.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether `id` is accepted and not yet answered.
    pub fn is_pending(&self, id: u64) -> bool {
        self.pending.contains(id)
    }

    /// Whether GOAWAY has been queued.
    pub fn is_draining(&self) -> bool {
        matches!(self.state, State::Draining { .. })
    }

    /// The `last_accepted` id announced in GOAWAY, once draining.
    pub fn last_accepted(&self) -> Option<u64> {
        match self.state {
            State::Draining { last_accepted } => Some(last_accepted),
            _ => None,
        }
    }

    /// Whether the connection has finished: the driver should have closed the socket.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether the caller acknowledged our GOAWAY.
    pub fn goaway_acked(&self) -> bool {
        self.goaway_acked
    }

    /// The failure that ended the connection, if any.
    pub fn error(&self) -> Option<&ConnError> {
        self.error.as_ref()
    }

    /// Whether frames should still be read and handled. When false (the connection failed or is
    /// closing), the driver reads and discards input so that the peer's close is seen.
    pub fn wants_frames(&self) -> bool {
        matches!(
            self.state,
            State::Handshake | State::Open | State::Draining { .. }
        )
    }

    // ---- inputs ----

    /// Handles one frame from the peer.
    ///
    /// On `Err`, an ERROR frame has been queued and the connection is failing: stop handling
    /// frames, keep writing `out` and follow `poll_close`.
    pub fn handle_frame<'a>(
        &mut self,
        now: Instant,
        frame: Frame<'a>,
    ) -> Result<Incoming<'a>, ConnError> {
        if !self.wants_frames() {
            return Ok(Incoming::None);
        }
        self.last_input = now;
        self.ping_deadline = None;
        match (self.state, frame) {
            (_, Frame::Hello(h)) if !self.hello_done => {
                self.on_hello(now, h).map(|_| Incoming::None)
            }
            (_, f) if !self.hello_done => Err(self.violation(
                now,
                ErrorCode::HANDSHAKE,
                f,
                "the first frame must be HELLO",
            )),
            (_, Frame::Request(r)) => self.on_request(now, r),
            (_, Frame::Cancel(c)) => {
                if c.id > self.last_id {
                    Err(self.violation(
                        now,
                        ErrorCode::UNKNOWN_ID,
                        frame,
                        "CANCEL for an id never sent",
                    ))
                } else if self.pending.contains(c.id) {
                    Ok(Incoming::Cancel(c.id))
                } else {
                    Ok(Incoming::None) // already answered: the hint came too late
                }
            }
            (_, Frame::Ping(p)) => {
                encode_header_only(Kind::PONG, p.opaque, self.out.vec());
                Ok(Incoming::None)
            }
            (_, Frame::Pong(_)) => Ok(Incoming::None),
            (State::Draining { .. }, Frame::GoAwayAck(_)) => {
                self.goaway_acked = true;
                Ok(Incoming::None)
            }
            (_, Frame::Error(e)) => {
                let message = String::from_utf8_lossy(e.message).into_owned();
                let err = ConnError::Peer {
                    code: e.code,
                    message,
                };
                // The peer closes after ERROR; it sends nothing more, so there is nothing to
                // send back but our FIN.
                self.state = State::Failing;
                self.error = Some(err.clone());
                self.linger_deadline = Some(now + self.cfg.linger);
                Err(err)
            }
            // A second HELLO, a GOAWAY_ACK without GOAWAY, and frames only a server sends.
            (_, f) => Err(self.violation(
                now,
                ErrorCode::UNEXPECTED_FRAME,
                f,
                "frame not allowed from a caller at this point",
            )),
        }
    }

    /// Handles bytes that do not decode: queues ERROR with the matching code (rule 7).
    pub fn handle_decode_error(&mut self, now: Instant, err: DecodeError) -> ConnError {
        let err = ConnError::Decode(err);
        if self.wants_frames() {
            self.fail(now, err.clone(), 0);
        }
        err
    }

    /// The peer shut its write side (read returned 0). No more input will arrive.
    pub fn handle_eof(&mut self, now: Instant) {
        self.peer_eof = true;
        if self.state == State::Handshake {
            self.state = State::Failing;
            self.error = Some(ConnError::Lost("peer closed before HELLO"));
            self.linger_deadline = Some(now + self.cfg.linger);
        }
    }

    /// The layer under the frames failed while the socket still works (a TLS alert, a bad
    /// record): no frame can be read or written any more, but the peer may still send bytes.
    /// The connection takes the failing path: the write side is shut once the layer's own
    /// output (its alert) is out, and the peer's close is awaited for the linger, reading and
    /// discarding (rule 4: no RST).
    pub fn handle_layer_error(&mut self, now: Instant, why: &'static str) {
        if self.wants_frames() {
            self.discard_out();
            self.fail(now, ConnError::Lost(why), 0);
        }
    }

    /// The socket failed (reset, broken pipe): nothing more can be written or read.
    pub fn handle_transport_error(&mut self, why: &'static str) {
        if self.state != State::Closed {
            self.discard_out();
            self.error.get_or_insert(ConnError::Lost(why));
            self.state = State::Closed;
        }
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.hello_deadline.is_some_and(|d| now >= d) {
            // Cleared whatever the state, so that poll_timeout moves on.
            self.hello_deadline = None;
            if !self.hello_done && self.wants_frames() {
                let detail = "HELLO did not arrive in time";
                let err = ProtocolError::new(ErrorCode::HANDSHAKE, 0, detail);
                self.fail(now, ConnError::Protocol(err), 0);
            }
        }
        if self.ping_deadline.is_some_and(|d| now >= d) {
            // Cleared whatever the state, so that poll_timeout moves on.
            self.ping_deadline = None;
            if self.wants_frames() {
                let detail = "PING not answered in time";
                let err = ProtocolError::new(ErrorCode::TIMEOUT, 0, detail);
                self.fail(now, ConnError::Protocol(err), 0);
            }
        }
        if self.state == State::Open
            && self.ping_deadline.is_none()
            && self.pending.is_empty()
            && now >= self.last_input + self.cfg.idle_timeout
        {
            // Idle: probe liveness. A connection with requests pending is never idle.
            encode_header_only(Kind::PING, 0, self.out.vec());
            self.ping_deadline = Some(now + self.cfg.ping_timeout);
        }
        if self.drain_deadline.is_some_and(|d| now >= d) {
            self.drain_deadline = None;
            if self.state != State::Closed && self.shut == Shut::No {
                // Rule 4: the budget is spent; end the write side now, whatever is pending.
                self.state = State::Failing;
                self.error
                    .get_or_insert(ConnError::Lost("drain budget spent"));
                self.shut = Shut::Wanted;
            }
        }
        if self.linger_deadline.is_some_and(|d| now >= d) {
            self.linger_deadline = None;
            match self.shut {
                // The peer did not read our last bytes in time: shut the write side anyway.
                Shut::No => self.shut = Shut::Wanted,
                // The peer did not close in time: stop waiting for it.
                Shut::Wanted | Shut::Done => self.peer_eof = true,
            }
        }
    }

    // ---- application actions ----

    /// Answers an accepted request. Answers for a failed or closed connection are dropped.
    ///
    /// A refusal status ([`Status::is_refusal`]: the request did not run, final) goes out as it
    /// is only to a caller that negotiated refusals; any other caller gets
    /// [`Status::v1_fallback`], which it reads as "ran" and so never replays (protocol.md §6.2).
    pub fn respond(&mut self, id: u64, status: Status, body: &[u8]) -> Result<(), ApiMisuse> {
        if !self.pending.remove(id) {
            return Err(ApiMisuse::NotPending(id));
        }
        if self.can_answer() {
            self.encoder().encode(id, status, body, self.out.vec());
            self.answering.insert(id);
        } else {
            self.finished_answers += 1;
        }
        Ok(())
    }

    /// Rejects an accepted request that never started (rule 2: started work is never rejected;
    /// the driver guarantees it with its run-or-reject state).
    pub fn reject(&mut self, id: u64, reason: RejectReason) -> Result<(), ApiMisuse> {
        if !self.pending.remove(id) {
            return Err(ApiMisuse::NotPending(id));
        }
        if self.can_answer() {
            ShutdownReject { id, reason }.encode(self.out.vec());
            self.answering.insert(id);
        } else {
            self.finished_answers += 1;
        }
        Ok(())
    }

    /// How this connection's answers are encoded, for a driver that writes some of them itself
    /// (see [`respond_elsewhere`](Self::respond_elsewhere)); `None` while answers cannot go out
    /// (before the caller's HELLO, failing, shut).
    pub fn answer_encoder(&self) -> Option<AnswerEncoder> {
        (self.hello_done && self.can_answer() && self.shut == Shut::No).then(|| self.encoder())
    }

    fn encoder(&self) -> AnswerEncoder {
        AnswerEncoder {
            refusals: self.refusals,
            peer_max_frame: self.peer_max_frame,
        }
    }

    /// Records that the answer to `id` (encoded by this connection's [`AnswerEncoder`]) goes
    /// out by another path than [`out`](Self::out): the driver writes it to the socket itself,
    /// as a whole frame, never inside another, and never before the connection's HELLO (the
    /// encoder exists only once answers may go out). It may overtake frames `out` still holds:
    /// no rule orders an answer against them.
    ///
    /// The driver counts its unwritten bytes as output not yet flushed wherever it asks
    /// [`poll_close_below`](Self::poll_close_below), and reports the answer finished with
    /// [`finished_elsewhere`](Self::finished_elsewhere) once its last byte is written (or can
    /// never be).
    pub fn respond_elsewhere(&mut self, id: u64) -> Result<(), ApiMisuse> {
        if self.pending.remove(id) {
            Ok(())
        } else {
            Err(ApiMisuse::NotPending(id))
        }
    }

    /// `n` answers given by [`respond_elsewhere`](Self::respond_elsewhere) are written in full,
    /// or dropped for good: they count among the finished answers.
    pub fn finished_elsewhere(&mut self, n: usize) {
        self.finished_answers += n;
    }

    /// The application is ready at `capacity` percent (1..=100): READY is sent (again, when the
    /// value changes) once the handshake is done. `None` withdraws nothing already sent; it only
    /// stops READY from going out on connections that have not had it.
    pub fn set_ready(&mut self, capacity: Option<u8>) {
        self.want_ready = capacity.map(|c| c.clamp(1, 100));
        self.send_ready_if_changed();
    }

    /// Starts the close sequence (rule 2): queues GOAWAY(last id read), and from now on rejects
    /// every new request. `budget` bounds the whole drain; past it the write side is shut.
    pub fn start_drain(&mut self, now: Instant, budget: Duration, reason: GoAwayReason) {
        if !matches!(self.state, State::Handshake | State::Open) {
            return;
        }
        let last_accepted = self.last_id;
        self.state = State::Draining { last_accepted };
        let drain_budget_ms = u32::try_from(budget.as_millis()).unwrap_or(u32::MAX);
        GoAway {
            last_accepted,
            drain_budget_ms,
            reason,
        }
        .encode(self.out.vec());
        self.drain_deadline = Some(now + budget);
        self.ping_deadline = None;
    }

    // ---- outputs ----

    /// Bytes to write to the peer.
    pub fn out(&self) -> &[u8] {
        self.out.pending()
    }

    /// Bytes waiting in the output buffer (for the driver's back-pressure limit).
    pub fn out_len(&self) -> usize {
        self.out.len()
    }

    /// Records that `n` bytes of [`out`](Self::out) were written.
    pub fn written(&mut self, n: usize) {
        let (answering, finished) = (&mut self.answering, &mut self.finished_answers);
        self.out.consume(n, |head| {
            if is_app_answer(answering, head) {
                *finished += 1;
            }
        });
        self.out.shrink_if_empty(64 * 1024);
    }

    /// Answers finished since the last call: written to the socket in full, or dropped because
    /// the connection failed first. The driver takes them off its in-flight counter (a request
    /// leaves it only once its answer is written, or can never be).
    pub fn take_finished_answers(&mut self) -> usize {
        std::mem::take(&mut self.finished_answers)
    }

    /// The next instant [`handle_timeout`](Self::handle_timeout) must run, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // The same condition handle_timeout acts on: a connection with requests pending is
        // never idle, so its idle deadline is not a wake-up (it would stay due and spin).
        let idle =
            (self.state == State::Open && self.ping_deadline.is_none() && self.pending.is_empty())
                .then(|| self.last_input + self.cfg.idle_timeout);
        [
            self.hello_deadline,
            self.ping_deadline,
            self.drain_deadline,
            self.linger_deadline,
            idle,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// What to do to the socket now, if anything. Each action is returned once and is taken as
    /// done.
    pub fn poll_close(&mut self, now: Instant) -> Option<CloseAction> {
        self.poll_close_below(now, true)
    }

    /// [`poll_close`](Self::poll_close) for a driver with a layer under the frames (TLS) that
    /// may still hold output of its own: with `below_flushed` false, nothing counts as flushed
    /// yet — no close and no write-side shut that waits for the output to go out.
    pub fn poll_close_below(&mut self, now: Instant, below_flushed: bool) -> Option<CloseAction> {
        if self.state == State::Closed {
            return None;
        }
        let flushed = self.out.is_empty() && below_flushed;
        if self.shut == Shut::Wanted
            || (self.state == State::Failing && self.shut == Shut::No && flushed)
        {
            // Whatever was not written by now never will be.
            self.discard_out();
            self.shut = Shut::Done;
            self.linger_deadline = Some(now + self.cfg.linger);
            return Some(CloseAction::ShutdownWrite);
        }
        if self.shut == Shut::Done {
            if self.peer_eof {
                self.state = State::Closed;
                return Some(CloseAction::Close);
            }
            return None;
        }
        // Rule 4: close only when every answer is written and the peer can send nothing more.
        if self.state != State::Failing && self.pending.is_empty() && flushed && self.peer_eof {
            self.state = State::Closed;
            return Some(CloseAction::Close);
        }
        None
    }

    // ---- internals ----

    /// Drops every byte not yet written; the application's answers among them are finished.
    fn discard_out(&mut self) {
        let (answering, finished) = (&mut self.answering, &mut self.finished_answers);
        self.out.discard(|head| {
            if is_app_answer(answering, head) {
                *finished += 1;
            }
        });
    }

    fn on_hello(&mut self, now: Instant, h: Hello) -> Result<(), ConnError> {
        self.hello_deadline = None;
        self.hello_done = true;
        if h.min_version > VERSION || h.max_version < VERSION {
            let err = ProtocolError::new(
                ErrorCode::UNSUPPORTED_VERSION,
                0,
                "no protocol version in common",
            );
            return Err(self.fail(now, ConnError::Protocol(err), 0));
        }
        if h.features & CRITICAL_FEATURES != 0 {
            let err = ProtocolError::new(
                ErrorCode::UNSUPPORTED_FEATURE,
                0,
                "unknown critical feature",
            );
            return Err(self.fail(now, ConnError::Protocol(err), 0));
        }
        // Unknown optional feature bits are ignored.
        self.metadata_on = h.features & FEATURE_METADATA != 0;
        self.peer_max_frame = h.max_frame;
        self.refusals = h.features & OUR_FEATURES & FEATURE_REFUSALS != 0;
        if self.state == State::Handshake {
            self.state = State::Open;
            self.send_ready_if_changed();
        }
        Ok(())
    }

    fn on_request<'a>(&mut self, now: Instant, r: Request<'a>) -> Result<Incoming<'a>, ConnError> {
        // Rule 1: ids strictly increase in wire order.
        if r.id <= self.last_id {
            let err = ProtocolError::new(ErrorCode::ID_ORDER, r.id, "request id not increasing");
            return Err(self.fail(now, ConnError::Protocol(err), r.id));
        }
        // Metadata only where both HELLOs set feature bit 1 (protocol.md §4.2).
        if !r.metadata.is_empty() && !self.metadata_on {
            let err = ProtocolError::new(
                ErrorCode::MALFORMED,
                r.id,
                "REQUEST carries metadata the connection did not negotiate",
            );
            return Err(self.fail(now, ConnError::Protocol(err), r.id));
        }
        self.last_id = r.id;
        let reason = match self.state {
            // Rule 2: every id above last_accepted is rejected.
            State::Draining { .. } => Some(RejectReason::SHUTTING_DOWN),
            // Rule 6: usable only after READY.
            _ if self.sent_ready.is_none() => Some(RejectReason::NOT_READY),
            _ if r.deadline_us == 0 => Some(RejectReason::DEADLINE),
            _ if self.pending.len() >= self.cfg.max_in_flight => Some(RejectReason::OVERLOADED),
            _ => None,
        };
        if let Some(reason) = reason {
            ShutdownReject { id: r.id, reason }.encode(self.out.vec());
            return Ok(Incoming::Rejected { id: r.id, reason });
        }
        self.pending.insert(r.id);
        Ok(Incoming::Request(Accepted {
            id: r.id,
            method: r.method,
            body: r.body,
            deadline: now + Duration::from_micros(u64::from(r.deadline_us)),
            idempotent: r.idempotent,
            metadata: r.metadata,
        }))
    }

    fn violation(
        &mut self,
        now: Instant,
        code: ErrorCode,
        f: Frame<'_>,
        detail: &'static str,
    ) -> ConnError {
        let id = match f {
            Frame::Request(r) => r.id,
            Frame::Cancel(c) => c.id,
            _ => 0,
        };
        self.fail(
            now,
            ConnError::Protocol(ProtocolError::new(code, id, detail)),
            id,
        )
    }

    /// Queues ERROR and enters Failing (rule 7); pending answers are still written if they come.
    fn fail(&mut self, now: Instant, err: ConnError, id: u64) -> ConnError {
        if let Some(code) = err.sent_code() {
            let message = err.to_string();
            ErrorFrame {
                id,
                code,
                message: message.as_bytes(),
            }
            .encode(self.out.vec());
        }
        self.state = State::Failing;
        self.error = Some(err.clone());
        // Bounded wait for the peer to read the ERROR before the write side is shut anyway.
        self.linger_deadline = Some(now + self.cfg.linger);
        err
    }

    /// Answers go out only while the connection is healthy: after our ERROR the caller treats
    /// every open id as Unknown, and after the write side is shut nothing can be written.
    fn can_answer(&self) -> bool {
        matches!(
            self.state,
            State::Handshake | State::Open | State::Draining { .. }
        )
    }

    fn send_ready_if_changed(&mut self) {
        if self.state != State::Open || self.want_ready == self.sent_ready {
            return;
        }
        if let Some(capacity) = self.want_ready {
            Ready { capacity }.encode(self.out.vec());
            self.sent_ready = Some(capacity);
        }
    }
}

/// Whether the frame with this header is an answer the application gave (and takes it off
/// `answering`).
fn is_app_answer(answering: &mut IdSet, head: &[u8; HEADER_LEN]) -> bool {
    (head[0] == Kind::RESPONSE.0 || head[0] == Kind::SHUTDOWN_REJECT.0)
        && head[8..16]
            .try_into()
            .is_ok_and(|id| answering.remove(u64::from_be_bytes(id)))
}
