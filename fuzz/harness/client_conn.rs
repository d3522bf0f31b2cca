//! The `client_conn` target: drives a [`ClientConn`] with a list of operations (frames from the
//! server, well-formed or raw bytes, through an [`InBuf`] and the decoder; requests, cancels;
//! partial writes; EOF; a virtual clock) and checks after each one what `client_conn.rs` and
//! `protocol.md` promise:
//!
//! * every id `send_request` returned resolves at most once, never after `cancel`, with the
//!   caller's token, and every outstanding id has resolved when `Closed` is reported (rule 1);
//!   `Closed` comes once, last, and clean (`error: None`) only after GOAWAY;
//! * no `Resolved` for an id never returned by `send_request`;
//! * `Completed` and `Rejected(Server)` only for the RESPONSE / SHUTDOWN_REJECT just read, for
//!   a REQUEST written in full; after GOAWAY(N), never `Completed` for an id above N, and
//!   `Rejected(GoAway)` only for ids above N (rules 2, 3);
//! * `Unknown` and `DeadlineExceeded { sent: true }` only for a REQUEST written at least in part
//!   (a frame partly written is finished, so it may run), and such a frame does reach the wire
//!   in full when the output is flushed (rule 5);
//! * `Rejected(NotSent)`, `Rejected(GoAway)` for an unwritten frame, and
//!   `DeadlineExceeded { sent: false }`: no byte of the REQUEST was written, and it never is
//!   afterwards — else the replay elsewhere would run it twice (rules 5, 11);
//! * the bytes written decode; HELLO first; REQUEST ids strictly increase on the wire (section
//!   5); nothing but our HELLO, the frame partly written, GOAWAY_ACK(N) and PING is started
//!   after GOAWAY, and after GOAWAY_ACK only PING and the ERROR of a violation (rules 3, 7, 8);
//!   nothing after ERROR; ERROR only when this side found the fault;
//! * after `handle_timeout(now)`, `poll_timeout` is never at or before `now`; `poll_close`
//!   says true once, when closed and flushed; no panic.
//!
//! It also lends output as the caller's link does (`Lend`: `lend_out`, then the lock is
//! released for the `send`; `Report(n)`: the writer says how much the socket took). While a loan
//! is open every other input may reach the connection, and:
//!
//! * a REQUEST in the loan may be on the wire: the fake server may answer it or accept it in
//!   GOAWAY (and then the writer reports at least that frame: the server read it); it resolves
//!   as `Unknown` / `DeadlineExceeded { sent: true }`, never as not sent;
//! * the lent bytes stay at the front of `out()` until the report, which writes a prefix of
//!   exactly those bytes;
//! * GOAWAY or the end of the connection during a loan: frames wholly beyond what the writer
//!   reported were not started before it, so rule 3 holds for them as for any other frame;
//! * `Write` / `WriteAll` are skipped while a loan is open (one writer at a time, as the
//!   link's `writing` flag makes it), and `Abandon` during a loan leaves the writer to report
//!   `min(n, out_len())` as the link does.
//!
//! Shared by `fuzz/fuzz_targets/client_conn.rs` and `tests/fuzz_corpus.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use gracerpc::proto::frame::{
    Cancel, ErrorFrame, GoAway, GoAwayAck, Hello, Ping, Ready, Request, Response, ShutdownReject,
};
use gracerpc::proto::{
    ApiMisuse, ClientConn, ClientConnConfig, ClientEvent, ConnError, ErrorCode, Frame,
    GoAwayReason, HEADER_LEN, InBuf, Kind, Outcome, RejectReason, Rejection, Status, decode,
};

/// The whole fuzz input.
#[derive(Arbitrary, Debug)]
pub struct Input {
    /// The largest body this side accepts is `1024 + max_frame`.
    pub max_frame: u16,
    /// HELLO timeout, `1 + n` ms.
    pub hello_timeout_ms: u16,
    /// PING interval, `1 + n` ms.
    pub ping_interval_ms: u16,
    /// PING timeout, `1 + n` ms.
    pub ping_timeout_ms: u16,
    /// What happens, in order.
    pub ops: Vec<Op>,
}

/// How a server frame picks the request id it names.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum IdChoice {
    /// The `n`-th id still outstanding (the highest id written if none is).
    Outstanding(u8),
    /// The highest id written in full.
    Written,
    /// The highest id `send_request` returned (its frame may still be queued).
    Assigned,
    /// `n` above the next id to be assigned (never sent).
    Above(u8),
    /// Any id.
    Raw(u64),
}

/// One step.
#[derive(Arbitrary, Debug)]
pub enum Op {
    /// The server's HELLO as this implementation sends it.
    GoodHello,
    /// Any HELLO (the connection may refuse it).
    Hello {
        /// Lowest version.
        min_version: u16,
        /// Highest version.
        max_version: u16,
        /// Feature bits.
        features: u32,
        /// Largest body the server accepts.
        max_frame: u32,
    },
    /// READY with capacity `1 + n % 100`.
    Ready(u8),
    /// A RESPONSE.
    Response {
        /// Its id.
        id: IdChoice,
        /// Its status.
        status: u16,
        /// Its payload length.
        len: u8,
    },
    /// A SHUTDOWN_REJECT.
    Reject {
        /// Its id.
        id: IdChoice,
        /// Its reason.
        reason: u16,
    },
    /// A GOAWAY.
    GoAway {
        /// Its last accepted id.
        id: IdChoice,
        /// Its drain budget.
        budget_ms: u32,
        /// Its reason.
        reason: u16,
    },
    /// A PING.
    Ping(u64),
    /// A PONG.
    Pong(u64),
    /// An ERROR from the server.
    Error {
        /// The id it names.
        id: u64,
        /// Its code.
        code: u16,
    },
    /// A frame only a caller sends, or a second HELLO (`which` picks it).
    WrongSide(u8, u64),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// The application sends a request.
    Send {
        /// Method name length (0 and above 255 are misuse).
        method_len: u16,
        /// Payload length.
        body_len: u16,
        /// Deadline relative to now, in ms (negative: already passed).
        deadline_ms: i16,
        /// Its flag.
        idempotent: bool,
    },
    /// The application cancels an id.
    Cancel(IdChoice),
    /// The socket takes up to `n` bytes of output.
    Write(u16),
    /// The socket takes all output.
    WriteAll,
    /// The server shut its write side (or the socket failed).
    Eof,
    /// Time passes (ms), then timers run.
    Advance(u16),
    /// Time jumps to the next timer, which runs.
    NextTimer,
    /// The driver gives up on unwritten output (only once the connection is closed).
    Abandon,
    // New variants go last. `arbitrary` picks a variant as `(u32 * count) >> 32`, so adding
    // one still changes what committed inputs mean: rewrite their discriminants when you do.
    /// A writer borrows all pending output (`lend_out`) and sends it without the connection's
    /// lock, if no loan is open and output is pending.
    Lend,
    /// The writer of the open loan reports that the socket took `n` bytes (at most the loan;
    /// at least the lent frames the server has answered).
    Report(u16),
}

/// What the model knows about one request.
#[derive(Debug)]
struct Req {
    user: u64,
    deadline: Instant,
    state: ReqState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ReqState {
    Open,
    Cancelled,
    Resolved(Outcome),
}

/// The frame just handed to the connection, owned, to check events against.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fed {
    Response {
        id: u64,
        status: Status,
        body: Vec<u8>,
    },
    Reject {
        id: u64,
        reason: RejectReason,
    },
    GoAway {
        last_accepted: u64,
        budget_ms: u32,
        reason: GoAwayReason,
    },
    Ready(u8),
    Other,
}

impl Fed {
    fn of(frame: &Frame<'_>) -> Fed {
        match *frame {
            Frame::Response(r) => Fed::Response {
                id: r.id,
                status: r.status,
                body: r.body.to_vec(),
            },
            Frame::ShutdownReject(r) => Fed::Reject {
                id: r.id,
                reason: r.reason,
            },
            Frame::GoAway(g) => Fed::GoAway {
                last_accepted: g.last_accepted,
                budget_ms: g.drain_budget_ms,
                reason: g.reason,
            },
            Frame::Ready(r) => Fed::Ready(r.capacity),
            _ => Fed::Other,
        }
    }
}

/// What caused the events being checked.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ctx {
    Frame(Fed),
    Timeout,
    Other,
}

/// Output lent to a writer that has not reported yet.
#[derive(Debug)]
struct Loan {
    /// The bytes lent (`out()` at `lend_out`).
    bytes: Vec<u8>,
    /// Every REQUEST that ends in the loan (so may be written in full): its id, and the loan
    /// offset where its frame ends.
    requests: Vec<(u64, usize)>,
    /// The report covers at least this much: the server answered a request ending here, so
    /// it read it.
    floor: usize,
    /// GOAWAY was reported during the loan: its wire mark is known at the report.
    goaway: bool,
    /// The connection closed during the loan: likewise.
    closed: bool,
    /// `abandon_output` ran during the loan: the writer reports what `out_len` allows.
    abandoned: bool,
}

/// The harness: the connection, a model of its requests, and the bytes it wrote.
struct Harness {
    conn: ClientConn,
    now: Instant,
    input: InBuf,
    /// No more input is read (EOF, a decode error, or the connection closed).
    input_done: bool,
    /// The server's HELLO was accepted, with this maximum frame.
    peer_max: Option<u32>,
    /// Every id `send_request` returned.
    reqs: BTreeMap<u64, Req>,
    next_user: u64,
    /// GOAWAY's N, once the connection reported it.
    goaway: Option<u64>,
    /// Wire offset at GOAWAY: frames starting at or after it were not started before it.
    goaway_mark: Option<u64>,
    /// Likewise when the connection closed.
    closed_mark: Option<u64>,
    /// The open loan, if any.
    loan: Option<Loan>,
    closed_event: Option<Option<ConnError>>,
    poll_closed: bool,
    abandoned: bool,
    /// Everything the connection wrote, and what the checker has decoded of it.
    wire: InBuf,
    /// Offset of the first byte in `wire` (bytes decoded so far).
    wire_at: u64,
    wire_hello: bool,
    wire_ack: bool,
    wire_error: bool,
    /// REQUEST ids written in full.
    wire_requests: BTreeSet<u64>,
    /// Ids that resolved as never run and whose frame had not been started: never written.
    never_written: BTreeSet<u64>,
    /// Ids that resolved as maybe run (Unknown, DeadlineExceeded { sent: true }).
    maybe_ran: BTreeSet<u64>,
}

/// Builds the input from `data` and runs it.
pub fn run(data: &[u8]) {
    if let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) {
        run_input(&input);
    }
}

/// Runs one input, checking the invariants after every operation, then ends the connection and
/// checks that everything resolved.
pub fn run_input(input: &Input) {
    let ms = |n: u16| Duration::from_millis(1 + u64::from(n));
    let cfg = ClientConnConfig {
        max_frame: 1024 + u32::from(input.max_frame),
        hello_timeout: ms(input.hello_timeout_ms),
        ping_interval: ms(input.ping_interval_ms),
        ping_timeout: ms(input.ping_timeout_ms),
        ..ClientConnConfig::default()
    };
    let now = Instant::now();
    let mut h = Harness {
        conn: ClientConn::new(now, cfg),
        now,
        input: InBuf::new(),
        input_done: false,
        peer_max: None,
        reqs: BTreeMap::new(),
        next_user: 1000,
        goaway: None,
        goaway_mark: None,
        closed_mark: None,
        loan: None,
        closed_event: None,
        poll_closed: false,
        abandoned: false,
        wire: InBuf::new(),
        wire_at: 0,
        wire_hello: false,
        wire_ack: false,
        wire_error: false,
        wire_requests: BTreeSet::new(),
        never_written: BTreeSet::new(),
        maybe_ran: BTreeSet::new(),
    };
    for op in &input.ops {
        h.step(op);
        h.check();
    }
    h.finish();
}

impl Harness {
    /// The highest id the server may have read in full: written, or in the open loan.
    fn readable_bound(&self) -> u64 {
        let written = self.wire_requests.last().copied().unwrap_or(0);
        let lent = self.loan.as_ref().and_then(|l| l.requests.last());
        written.max(lent.map_or(0, |&(id, _)| id))
    }

    /// Whether `id`'s REQUEST is in the open loan (so may be on the wire in full).
    fn is_lent(&self, id: u64) -> bool {
        self.loan
            .as_ref()
            .is_some_and(|l| !l.abandoned && l.requests.iter().any(|&(r, _)| r == id))
    }

    /// Wire offset of the end of what was written so far.
    fn wire_end(&self) -> u64 {
        self.wire_at + self.wire.data().len() as u64
    }

    fn pick_id(&self, c: IdChoice) -> u64 {
        let written = self.readable_bound();
        match c {
            IdChoice::Outstanding(n) => {
                let open: Vec<u64> = self
                    .reqs
                    .iter()
                    .filter(|(_, r)| r.state == ReqState::Open)
                    .map(|(&id, _)| id)
                    .collect();
                if open.is_empty() {
                    written
                } else {
                    open[usize::from(n) % open.len()]
                }
            }
            IdChoice::Written => written,
            IdChoice::Assigned => self.reqs.last_key_value().map_or(0, |(&id, _)| id),
            IdChoice::Above(n) => self.conn.next_id().saturating_add(u64::from(n)),
            IdChoice::Raw(id) => id,
        }
    }

    fn step(&mut self, op: &Op) {
        let mut bytes = Vec::new();
        match *op {
            Op::GoodHello => Frame::Hello(Hello::ours(1 << 20)).encode(&mut bytes),
            Op::Hello {
                min_version,
                max_version,
                features,
                max_frame,
            } => Frame::Hello(Hello {
                min_version,
                max_version,
                features,
                max_frame,
            })
            .encode(&mut bytes),
            Op::Ready(c) => Frame::Ready(Ready {
                capacity: 1 + c % 100,
            })
            .encode(&mut bytes),
            Op::Response { id, status, len } => {
                let body = vec![0x5a; usize::from(len)];
                Frame::Response(Response {
                    id: self.pick_id(id),
                    status: Status(status),
                    body: &body,
                })
                .encode(&mut bytes);
            }
            Op::Reject { id, reason } => Frame::ShutdownReject(ShutdownReject {
                id: self.pick_id(id),
                reason: RejectReason(reason),
            })
            .encode(&mut bytes),
            Op::GoAway {
                id,
                budget_ms,
                reason,
            } => Frame::GoAway(GoAway {
                last_accepted: self.pick_id(id),
                drain_budget_ms: budget_ms,
                reason: GoAwayReason(reason),
            })
            .encode(&mut bytes),
            Op::Ping(v) => Frame::Ping(Ping { opaque: v }).encode(&mut bytes),
            Op::Pong(v) => Frame::Pong(Ping { opaque: v }).encode(&mut bytes),
            Op::Error { id, code } => Frame::Error(ErrorFrame {
                id,
                code: ErrorCode(code),
                message: b"server says no",
            })
            .encode(&mut bytes),
            Op::WrongSide(which, id) => {
                let id = id.max(1);
                let frame = match which % 4 {
                    0 => Frame::Request(Request {
                        id,
                        deadline_us: 1000,
                        idempotent: false,
                        method: "echo",
                        metadata: gracerpc::proto::frame::Metadata::EMPTY,
                        body: b"",
                    }),
                    1 => Frame::Cancel(Cancel { id }),
                    2 => Frame::GoAwayAck(GoAwayAck { last_accepted: id }),
                    _ => Frame::Hello(Hello::ours(1 << 20)),
                };
                frame.encode(&mut bytes);
            }
            Op::Bytes(ref raw) => bytes.extend_from_slice(raw),
            Op::Send {
                method_len,
                body_len,
                deadline_ms,
                idempotent,
            } => self.send(method_len, body_len, deadline_ms, idempotent),
            Op::Cancel(id) => {
                let id = self.pick_id(id);
                let open = self
                    .reqs
                    .get(&id)
                    .is_some_and(|r| r.state == ReqState::Open);
                let res = self.conn.cancel(id);
                assert_eq!(res.is_some(), open, "cancel({id}) gave {res:?}");
                if let Some(user) = res {
                    let r = self.reqs.get_mut(&id).expect("open");
                    assert_eq!(user, r.user, "cancel({id}) token");
                    r.state = ReqState::Cancelled;
                }
                self.drain_events(&Ctx::Other);
            }
            Op::Write(n) => self.write(usize::from(n)),
            Op::WriteAll => self.write(usize::MAX),
            Op::Lend => self.lend(),
            Op::Report(n) => self.report(usize::from(n)),
            Op::Eof => {
                self.input_done = true;
                self.conn.handle_eof("fuzz: EOF");
                assert!(self.conn.is_closed(), "open after EOF");
                self.drain_events(&Ctx::Other);
            }
            Op::Advance(ms) => {
                self.now += Duration::from_millis(u64::from(ms));
                self.timeout();
            }
            Op::NextTimer => {
                if let Some(t) = self.conn.poll_timeout() {
                    assert!(t <= self.now + Duration::from_secs(3600), "timer far away");
                    self.now = self.now.max(t);
                }
                self.timeout();
            }
            Op::Abandon => {
                if self.conn.is_closed() {
                    self.conn.abandon_output();
                    self.abandoned = true;
                    if let Some(loan) = &mut self.loan {
                        loan.abandoned = true;
                    }
                }
            }
        }
        if !bytes.is_empty() {
            self.feed(&bytes);
        }
        self.poll_close();
    }

    fn send(&mut self, method_len: u16, body_len: u16, deadline_ms: i16, idempotent: bool) {
        let method = "m".repeat(usize::from(method_len % 300));
        let body = vec![0xab; usize::from(body_len)];
        let rel = Duration::from_millis(u64::from(deadline_ms.unsigned_abs()));
        let deadline = if deadline_ms >= 0 {
            self.now + rel
        } else {
            self.now.checked_sub(rel).unwrap_or(self.now)
        };
        let sendable = self.conn.is_sendable();
        if sendable {
            assert!(self.peer_max.is_some(), "sendable before HELLO");
            assert!(self.goaway.is_none(), "sendable after GOAWAY");
            assert!(self.closed_event.is_none(), "sendable after Closed");
        }
        let expected_id = self.conn.next_id();
        let out_before = self.conn.out_len();
        let user = self.next_user;
        self.next_user += 1;
        let res = self
            .conn
            .send_request(self.now, &method, &body, deadline, idempotent, user);
        let len = Request::body_len(&method, &body);
        match res {
            Ok(id) => {
                assert!(sendable, "request {id} sent on a connection not sendable");
                assert!(
                    !method.is_empty() && method.len() <= 255,
                    "bad method accepted"
                );
                assert!(
                    len <= self.peer_max.unwrap_or(0) as usize,
                    "too large accepted"
                );
                assert_eq!(id, expected_id, "ids are assigned in order");
                assert!(
                    self.reqs
                        .last_key_value()
                        .is_none_or(|(&last, _)| id > last),
                    "id {id} not above the previous ones"
                );
                self.reqs.insert(
                    id,
                    Req {
                        user,
                        deadline,
                        state: ReqState::Open,
                    },
                );
            }
            Err(ApiMisuse::NotSendable) => assert!(!sendable, "sendable, yet NotSendable"),
            Err(ApiMisuse::BadMethod) => {
                assert!(
                    method.is_empty() || method.len() > 255,
                    "good method refused"
                )
            }
            Err(ApiMisuse::TooLarge { len: l, max }) => {
                assert_eq!(l, len);
                assert_eq!(Some(max), self.peer_max);
                assert!(l > max as usize, "TooLarge for {l} ≤ {max}");
            }
            Err(ApiMisuse::OutputFull { queued, max }) => {
                // Reachable when output piles up (a loan keeps other writers out).
                assert_eq!(queued, out_before, "OutputFull: queued");
                assert!(
                    queued > 0 && queued + HEADER_LEN + len > max,
                    "room, yet OutputFull"
                );
            }
            Err(e) => panic!("send_request: unexpected {e:?}"),
        }
        self.drain_events(&Ctx::Other);
    }

    fn timeout(&mut self) {
        self.conn.handle_timeout(self.now);
        if let Some(t) = self.conn.poll_timeout() {
            assert!(
                t > self.now,
                "poll_timeout at or before now after handle_timeout"
            );
        }
        self.drain_events(&Ctx::Timeout);
    }

    /// The driver's read path: decode what is complete and hand each frame over.
    fn feed(&mut self, bytes: &[u8]) {
        if self.input_done {
            return;
        }
        self.input.extend(bytes);
        loop {
            if self.conn.is_closed() {
                self.input_done = true;
                return;
            }
            let hello_done = self.peer_max.is_some();
            let (fed, res, used, hello) = match decode(self.input.data(), self.conn.max_frame()) {
                Ok(Some((frame, used))) => {
                    let fed = Fed::of(&frame);
                    let hello = match frame {
                        Frame::Hello(h) => Some(h.max_frame),
                        _ => None,
                    };
                    let res = self.conn.handle_frame(self.now, frame);
                    (fed, res, used, hello)
                }
                Ok(None) => return,
                Err(e) => {
                    let _ = self.conn.handle_decode_error(e);
                    assert!(self.conn.is_closed(), "open after a decode error");
                    self.input_done = true;
                    self.drain_events(&Ctx::Other);
                    return;
                }
            };
            self.input.consume(used);
            self.server_read(&fed);
            if let Err(e) = &res {
                assert!(self.conn.is_closed(), "open after {e}");
            } else if !hello_done {
                // Only a good HELLO opens the connection.
                self.peer_max = Some(hello.expect("the first frame accepted is HELLO"));
            }
            self.drain_events(&Ctx::Frame(fed));
            if res.is_ok() && self.conn.is_closed() {
                // Only the last answer of a drain ends the connection without an error.
                assert_eq!(self.closed_event, Some(None), "closed, yet Ok");
            }
        }
    }

    /// Takes every event and checks it against the model and what caused it.
    fn drain_events(&mut self, ctx: &Ctx) {
        while let Some(ev) = self.conn.poll_event() {
            assert!(self.closed_event.is_none(), "{ev:?} after Closed");
            match ev {
                ClientEvent::Ready(c) => {
                    assert_eq!(*ctx, Ctx::Frame(Fed::Ready(c)), "Ready({c})");
                }
                ClientEvent::GoAway {
                    last_accepted,
                    drain_budget,
                    reason,
                } => {
                    let Ctx::Frame(Fed::GoAway {
                        last_accepted: n,
                        budget_ms,
                        reason: r,
                    }) = *ctx
                    else {
                        panic!("GoAway event from {ctx:?}");
                    };
                    assert_eq!((last_accepted, reason), (n, r));
                    assert_eq!(drain_budget, Duration::from_millis(u64::from(budget_ms)));
                    assert!(self.goaway.is_none(), "second GoAway event");
                    let bound = self.readable_bound();
                    assert!(
                        n <= bound,
                        "GOAWAY({n}) accepted, highest written or lent {bound}"
                    );
                    self.goaway = Some(n);
                    match &mut self.loan {
                        Some(loan) => loan.goaway = true,
                        None => self.goaway_mark = Some(self.wire_end()),
                    }
                }
                ClientEvent::NodeHint(reason) => {
                    let Ctx::Frame(Fed::Reject { id, reason: r }) = *ctx else {
                        panic!("NodeHint from {ctx:?}");
                    };
                    assert_eq!(reason, r);
                    let open = self
                        .reqs
                        .get(&id)
                        .is_some_and(|r| r.state == ReqState::Open);
                    assert!(open, "NodeHint for {id}, not outstanding");
                }
                ClientEvent::Resolved { id, user, outcome } => {
                    self.resolved(ctx, id, user, outcome)
                }
                ClientEvent::Closed { error } => {
                    assert!(self.conn.is_closed(), "Closed event, not closed");
                    assert_eq!(self.conn.outstanding(), 0, "Closed with ids outstanding");
                    let open: Vec<u64> = self
                        .reqs
                        .iter()
                        .filter(|(_, r)| r.state == ReqState::Open)
                        .map(|(&id, _)| id)
                        .collect();
                    assert!(open.is_empty(), "Closed with {open:?} unresolved");
                    assert!(
                        error.is_some() || self.goaway.is_some(),
                        "clean close without GOAWAY"
                    );
                    self.closed_event = Some(error);
                    match &mut self.loan {
                        Some(loan) => loan.closed = true,
                        None => self.closed_mark = Some(self.wire_end()),
                    }
                }
            }
        }
    }

    fn resolved(&mut self, ctx: &Ctx, id: u64, user: u64, outcome: Outcome) {
        let started = self.started_request() == Some(id);
        let written = self.wire_requests.contains(&id);
        // In the open loan: the server may have read it, and it cannot be taken back.
        let lent = self.is_lent(id);
        let closed = self.conn.is_closed();
        let now = self.now;
        let goaway = self.goaway;
        let Some(req) = self.reqs.get_mut(&id) else {
            panic!("{id} resolved ({outcome:?}), never sent");
        };
        assert_eq!(
            req.state,
            ReqState::Open,
            "{id} resolved again: {outcome:?}"
        );
        assert_eq!(req.user, user, "{id} resolved with another token");
        match outcome {
            Outcome::Completed { status, ref body } => {
                let want = Ctx::Frame(Fed::Response {
                    id,
                    status,
                    body: body.clone(),
                });
                assert_eq!(*ctx, want, "Completed({id})");
                assert!(
                    goaway.is_none_or(|n| id <= n),
                    "{id} Completed after GOAWAY below"
                );
                assert!(
                    written || lent,
                    "{id} Completed, its REQUEST never written in full"
                );
            }
            Outcome::Refused { status, ref body } => {
                // A RESPONSE all the same, classified "not run, final" (both HELLOs set
                // FEATURE_REFUSALS and the status is in the refusal range).
                assert!(status.is_refusal(), "{id} Refused with {status}");
                let want = Ctx::Frame(Fed::Response {
                    id,
                    status,
                    body: body.clone(),
                });
                assert_eq!(*ctx, want, "Refused({id})");
                assert!(
                    written || lent,
                    "{id} Refused, its REQUEST never written in full"
                );
            }
            Outcome::Rejected(Rejection::Server(reason)) => {
                assert_eq!(
                    *ctx,
                    Ctx::Frame(Fed::Reject { id, reason }),
                    "Rejected({id})"
                );
                assert!(
                    written || lent,
                    "{id} rejected by the server, never written in full"
                );
            }
            Outcome::Rejected(Rejection::GoAway) => {
                assert!(
                    matches!(ctx, Ctx::Frame(Fed::GoAway { .. })),
                    "GoAway rejection"
                );
                assert!(goaway.is_some_and(|n| id > n), "{id} Rejected(GoAway) ≤ N");
                if !written && !started && !lent {
                    self.never_written.insert(id);
                }
            }
            Outcome::Rejected(Rejection::NotSent) => {
                assert!(closed, "{id} NotSent on an open connection");
                assert!(!written && !started, "{id} NotSent, but written");
                assert!(!lent, "{id} NotSent, but lent to a writer");
                self.never_written.insert(id);
            }
            Outcome::Unknown => {
                assert!(closed, "{id} Unknown on an open connection");
                assert!(goaway.is_none_or(|n| id <= n), "{id} Unknown above N");
                assert!(written || started || lent, "{id} Unknown, never written");
                // A lent frame the writer then did not write is dropped: it was not started
                // after all, and "may have run" was all that could be said.
                if !lent {
                    self.maybe_ran.insert(id);
                }
            }
            Outcome::DeadlineExceeded { sent } => {
                assert_eq!(*ctx, Ctx::Timeout, "DeadlineExceeded({id})");
                assert!(req.deadline <= now, "{id} expired early");
                if sent {
                    assert!(written || started || lent, "{id} sent: true, never written");
                    if !lent {
                        self.maybe_ran.insert(id);
                    }
                } else {
                    assert!(!written && !started, "{id} sent: false, but written");
                    assert!(!lent, "{id} sent: false, but lent to a writer");
                    self.never_written.insert(id);
                }
            }
        }
        req.state = ReqState::Resolved(outcome);
    }

    /// The id of the REQUEST written in part, if the wire ends inside one.
    fn started_request(&self) -> Option<u64> {
        let part = self.wire.data();
        if part.is_empty() || self.abandoned {
            return None;
        }
        let mut head = part.to_vec();
        head.extend_from_slice(self.conn.out());
        let head = head.first_chunk::<HEADER_LEN>()?;
        (head[0] == Kind::REQUEST.0).then(|| {
            let mut id = [0u8; 8];
            id.copy_from_slice(&head[8..16]);
            u64::from_be_bytes(id)
        })
    }

    /// The driver's write path: up to `n` bytes of output leave, and the checker reads them.
    fn write(&mut self, n: usize) {
        // One writer at a time: while a loan is open the link's other threads leave the
        // output to its writer.
        if self.poll_closed || self.abandoned || self.loan.is_some() {
            return;
        }
        let out = self.conn.out();
        let n = n.min(out.len());
        self.wire.extend(&out[..n]);
        self.conn.written(n);
        self.check_wire();
        self.drain_events(&Ctx::Other);
    }

    /// The link's unlocked send, first half: the writer borrows every pending byte.
    fn lend(&mut self) {
        if self.loan.is_some() || self.poll_closed || self.abandoned || self.conn.out().is_empty() {
            return;
        }
        let bytes = self.conn.lend_out().to_vec();
        assert_eq!(bytes, self.conn.out(), "lend_out() is not out()");
        // Walk the frames from the start of the one partly written (its head is in `wire`).
        let part = self.wire.data().len();
        let mut all = self.wire.data().to_vec();
        all.extend_from_slice(&bytes);
        let mut requests = Vec::new();
        let mut at = 0;
        while at < all.len() {
            let (frame, used) = decode(&all[at..], u32::MAX)
                .expect("lent bytes decode")
                .expect("a loan ends at the end of a frame");
            at += used;
            if let Frame::Request(r) = frame {
                requests.push((r.id, at - part));
            }
        }
        self.loan = Some(Loan {
            bytes,
            requests,
            floor: 0,
            goaway: false,
            closed: false,
            abandoned: false,
        });
    }

    /// The fake server read the ids `fed` names: a lent REQUEST it names was written in full, so the
    /// writer's report will cover it.
    fn server_read(&mut self, fed: &Fed) {
        let read = match *fed {
            Fed::Response { id, .. } | Fed::Reject { id, .. } => id,
            Fed::GoAway { last_accepted, .. } => last_accepted,
            _ => return,
        };
        if let Some(loan) = &mut self.loan {
            let end = loan.requests.iter().rev().find(|&&(id, _)| id <= read);
            if let Some(&(_, end)) = end {
                loan.floor = loan.floor.max(end);
            }
        }
    }

    /// The link's unlocked send, second half: the socket took `n` of the lent bytes (at least
    /// what the server has shown it read), they reach the wire, and the loan ends.
    fn report(&mut self, n: usize) {
        let Some(loan) = self.loan.take() else {
            return;
        };
        if loan.abandoned {
            // The link reports what went out, bounded by what is left: nothing.
            let n = n.min(loan.bytes.len()).min(self.conn.out_len());
            self.conn.written(n);
            self.drain_events(&Ctx::Other);
            return;
        }
        let n = n.min(loan.bytes.len()).max(loan.floor);
        assert!(
            self.conn.out().starts_with(&loan.bytes),
            "the lent bytes changed before the report"
        );
        // Frames wholly beyond what the writer wrote were not started before a GOAWAY or the
        // end during the loan.
        let end = self.wire_end() + n as u64;
        if loan.goaway {
            self.goaway_mark = Some(end);
        }
        if loan.closed {
            self.closed_mark = Some(end);
        }
        self.wire.extend(&loan.bytes[..n]);
        self.conn.written(n);
        self.check_wire();
        self.drain_events(&Ctx::Other);
    }

    fn poll_close(&mut self) {
        if self.conn.poll_close() {
            assert!(!self.poll_closed, "poll_close true twice");
            assert!(self.conn.is_closed(), "poll_close on an open connection");
            assert!(self.conn.out().is_empty(), "poll_close with output pending");
            assert!(self.closed_event.is_some(), "poll_close before Closed");
            self.poll_closed = true;
        }
    }

    fn check(&mut self) {
        let open = self
            .reqs
            .values()
            .filter(|r| r.state == ReqState::Open)
            .count();
        assert_eq!(self.conn.outstanding(), open, "outstanding count");
        assert_eq!(
            self.conn.is_closed(),
            self.closed_event.is_some(),
            "Closed event"
        );
        if self.conn.is_closed() {
            assert!(!self.conn.is_sendable());
            assert_eq!(
                self.conn.poll_timeout(),
                None,
                "timer on a closed connection"
            );
        }
        if self.poll_closed {
            assert!(self.conn.out().is_empty(), "output after poll_close");
        }
        if let Some(loan) = self.loan.as_ref().filter(|l| !l.abandoned) {
            let out = self.conn.out();
            assert!(
                out.starts_with(&loan.bytes),
                "the lent bytes changed during the loan"
            );
        }
        if self.goaway.is_some() {
            assert!(self.conn.is_draining() || self.conn.is_closed());
        }
    }

    /// Decodes what the connection wrote and checks the frames against the model.
    fn check_wire(&mut self) {
        loop {
            let (kind, id, used) = match decode(self.wire.data(), u32::MAX) {
                Ok(Some((frame, used))) => {
                    let id = match frame {
                        Frame::Request(r) => r.id,
                        Frame::Cancel(c) => c.id,
                        Frame::GoAwayAck(a) => a.last_accepted,
                        Frame::Error(e) => {
                            let sent = self.closed_event.as_ref().and_then(|e| e.as_ref());
                            let code = sent.and_then(ConnError::sent_code);
                            assert_eq!(Some(e.code), code, "ERROR written: {sent:?}");
                            e.id
                        }
                        _ => 0,
                    };
                    (frame.kind(), id, used)
                }
                Ok(None) => return,
                Err(e) => panic!("caller wrote bytes that do not decode: {e}"),
            };
            let start = self.wire_at;
            self.wire.consume(used);
            self.wire_at += used as u64;
            assert!(!self.wire_error, "{kind} written after ERROR");
            assert_eq!(kind == Kind::HELLO, !self.wire_hello, "HELLO first, once");
            self.wire_hello = true;
            if self.wire_ack {
                let ok = [Kind::ERROR, Kind::PING];
                assert!(ok.contains(&kind), "{kind} written after GOAWAY_ACK");
            }
            if self.goaway_mark.is_some_and(|m| start >= m) {
                let ok = [Kind::HELLO, Kind::GOAWAY_ACK, Kind::ERROR, Kind::PING];
                assert!(ok.contains(&kind), "{kind} started after GOAWAY");
            }
            if self.closed_mark.is_some_and(|m| start >= m) && self.goaway.is_none() {
                // Unstarted frames are dropped at the end; a HELLO is kept, ERROR follows.
                let ok = [Kind::HELLO, Kind::ERROR];
                assert!(
                    ok.contains(&kind),
                    "{kind} started after the connection ended"
                );
            }
            match kind {
                Kind::REQUEST => {
                    assert!(self.reqs.contains_key(&id), "REQUEST {id} never sent");
                    assert!(
                        self.wire_requests.last().is_none_or(|&last| id > last),
                        "REQUEST {id} out of order"
                    );
                    assert!(
                        !self.never_written.contains(&id),
                        "REQUEST {id} written after it resolved as never run"
                    );
                    self.wire_requests.insert(id);
                }
                Kind::CANCEL => {
                    let r = self.reqs.get(&id).map(|r| &r.state);
                    assert_eq!(r, Some(&ReqState::Cancelled), "CANCEL {id}");
                }
                Kind::GOAWAY_ACK => {
                    assert_eq!(Some(id), self.goaway, "GOAWAY_ACK's N");
                    self.wire_ack = true;
                }
                Kind::ERROR => self.wire_error = true,
                Kind::HELLO | Kind::PING | Kind::PONG => {}
                other => panic!("caller wrote {other}"),
            }
        }
    }

    /// Ends the connection if the input did not, flushes, and checks that everything resolved.
    fn finish(&mut self) {
        if !self.conn.is_closed() {
            self.conn.handle_eof("fuzz: end of input");
            self.drain_events(&Ctx::Other);
        }
        assert!(self.closed_event.is_some(), "no Closed event after EOF");
        self.report(usize::MAX);
        for _ in 0..4 {
            self.write(usize::MAX);
        }
        self.poll_close();
        self.check();
        if !self.abandoned {
            assert!(self.poll_closed, "poll_close never true");
            assert!(self.wire.is_empty(), "half a frame left on the wire");
            let lost: Vec<u64> = self
                .maybe_ran
                .difference(&self.wire_requests)
                .copied()
                .collect();
            assert!(
                lost.is_empty(),
                "{lost:?} reported as maybe run, never written"
            );
        }
        assert!(
            self.reqs.values().all(|r| r.state != ReqState::Open),
            "unresolved at the end"
        );
    }
}
