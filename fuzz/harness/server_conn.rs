//! The `server_conn` target: drives a [`ServerConn`] with a list of operations (frames from the
//! caller, as bytes through an [`InBuf`] and the decoder; application actions; time; writes;
//! EOF) and checks its invariants after each one.
//!
//! Shared by `fuzz/fuzz_targets/server_conn.rs` and `tests/fuzz_corpus.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use gracerpc::proto::frame::{
    Cancel, ErrorFrame, GoAway, GoAwayAck, Hello, Ping, Ready, Request, Response, ShutdownReject,
};
use gracerpc::proto::{
    CloseAction, ErrorCode, Frame, GoAwayReason, InBuf, Incoming, Kind, RejectReason, ServerConn,
    ServerConnConfig, Status, decode,
};

/// The whole fuzz input.
#[derive(Arbitrary, Debug)]
pub struct Input {
    /// The connection's in-flight limit is `1 + max_in_flight % 8`.
    pub max_in_flight: u8,
    /// What happens, in order.
    pub ops: Vec<Op>,
}

/// How an operation picks a request id relative to the highest one sent so far.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum IdChoice {
    /// One above the highest sent.
    Next,
    /// Above the highest sent by `1 + n`.
    Skip(u8),
    /// The highest sent again.
    Same,
    /// Below the highest sent by `n`.
    Back(u8),
    /// Any id.
    Raw(u64),
}

/// One step.
#[derive(Arbitrary, Debug)]
pub enum Op {
    /// The caller's HELLO as this implementation sends it.
    GoodHello,
    /// Any HELLO (bytes the decoder may refuse).
    Hello {
        /// Lowest version.
        min_version: u16,
        /// Highest version.
        max_version: u16,
        /// Feature bits.
        features: u32,
        /// Largest body accepted.
        max_frame: u32,
    },
    /// A REQUEST.
    Request {
        /// Its id.
        id: IdChoice,
        /// Its deadline budget.
        deadline_us: u32,
        /// Its flag.
        idempotent: bool,
        /// Its payload length.
        len: u8,
    },
    /// A CANCEL.
    Cancel(IdChoice),
    /// A PING.
    Ping(u64),
    /// A PONG.
    Pong(u64),
    /// A GOAWAY_ACK.
    GoAwayAck(u64),
    /// An ERROR from the caller.
    Error(u16),
    /// A frame only a server sends (`which` picks the kind).
    WrongSide(u8, u64),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// The application answers the `pick`-th pending id.
    Respond(u8, u16, u8),
    /// The application rejects the `pick`-th pending id.
    Reject(u8, u16),
    /// The application answers an id of its choice (misuse unless pending).
    AnswerAny(u64, bool),
    /// The application's readiness.
    SetReady(Option<u8>),
    /// The close sequence starts with this budget (ms) and reason.
    StartDrain(u16, u16),
    /// Time passes (ms), then timers run.
    Advance(u16),
    /// Time jumps to the next timer, which runs.
    NextTimer,
    /// The caller shut its write side.
    Eof,
    /// The socket failed.
    TransportError,
    /// The socket takes up to `n` bytes of output.
    Write(u16),
    /// The socket takes all output.
    WriteAll,
}

/// What the application did with an accepted id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Respond,
    Reject,
}

/// The harness: the connection, a model of what it must be doing, and the bytes it wrote.
struct Harness {
    conn: ServerConn,
    now: Instant,
    input: InBuf,
    /// Highest REQUEST id fed.
    last_sent: u64,
    /// Ids the connection handed to the application.
    accepted: BTreeSet<u64>,
    /// Ids the application answered, with how.
    answered: BTreeMap<u64, Answer>,
    /// REQUESTs the connection rejected itself (never handed to the application).
    immediate_rejects: usize,
    /// Sum of `take_finished_answers`.
    finished: usize,
    eof: bool,
    shut: bool,
    closed: bool,
    /// Everything the connection wrote, and what the checker has decoded of it.
    wire: InBuf,
    wire_hello: bool,
    wire_goaway: Option<u64>,
    /// The N of the GOAWAY the connection queued, once it did.
    goaway_n: Option<u64>,
    wire_error: bool,
    wire_answers: BTreeMap<u64, Kind>,
}

/// Builds the input from `data` and runs it.
pub fn run(data: &[u8]) {
    if let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) {
        run_input(&input);
    }
}

/// Runs one input, checking the invariants after every operation.
pub fn run_input(input: &Input) {
    let cfg = ServerConnConfig {
        max_frame: 4096,
        max_in_flight: 1 + usize::from(input.max_in_flight % 8),
        ..ServerConnConfig::default()
    };
    let now = Instant::now();
    let mut h = Harness {
        conn: ServerConn::new(now, cfg),
        now,
        input: InBuf::new(),
        last_sent: 0,
        accepted: BTreeSet::new(),
        answered: BTreeMap::new(),
        immediate_rejects: 0,
        finished: 0,
        eof: false,
        shut: false,
        closed: false,
        wire: InBuf::new(),
        wire_hello: false,
        wire_goaway: None,
        goaway_n: None,
        wire_error: false,
        wire_answers: BTreeMap::new(),
    };
    for op in &input.ops {
        h.step(op);
        h.check();
    }
}

impl Harness {
    fn pick_id(&self, c: IdChoice) -> u64 {
        match c {
            IdChoice::Next => self.last_sent.saturating_add(1),
            IdChoice::Skip(n) => self.last_sent.saturating_add(2 + u64::from(n)),
            IdChoice::Same => self.last_sent,
            IdChoice::Back(n) => self.last_sent.saturating_sub(u64::from(n)),
            IdChoice::Raw(id) => id,
        }
    }

    /// The `pick`-th id accepted and not answered, if any.
    fn pick_pending(&self, pick: u8) -> Option<u64> {
        let open: Vec<u64> = self
            .accepted
            .iter()
            .copied()
            .filter(|id| !self.answered.contains_key(id))
            .collect();
        (!open.is_empty()).then(|| open[usize::from(pick) % open.len()])
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
            Op::Request {
                id,
                deadline_us,
                idempotent,
                len,
            } => {
                let id = self.pick_id(id);
                let body = vec![0xab; usize::from(len)];
                Frame::Request(Request {
                    id,
                    deadline_us,
                    idempotent,
                    method: "echo",
                    metadata: gracerpc::proto::frame::Metadata::EMPTY,
                    body: &body,
                })
                .encode(&mut bytes);
                self.last_sent = self.last_sent.max(id);
            }
            Op::Cancel(id) => Frame::Cancel(Cancel {
                id: self.pick_id(id),
            })
            .encode(&mut bytes),
            Op::Ping(v) => Frame::Ping(Ping { opaque: v }).encode(&mut bytes),
            Op::Pong(v) => Frame::Pong(Ping { opaque: v }).encode(&mut bytes),
            Op::GoAwayAck(v) => Frame::GoAwayAck(GoAwayAck { last_accepted: v }).encode(&mut bytes),
            Op::Error(code) => Frame::Error(ErrorFrame {
                id: 0,
                code: ErrorCode(code),
                message: b"bye",
            })
            .encode(&mut bytes),
            Op::WrongSide(which, id) => {
                let id = id.max(1);
                let frame = match which % 4 {
                    0 => Frame::Response(Response {
                        id,
                        status: Status::OK,
                        body: b"",
                    }),
                    1 => Frame::ShutdownReject(ShutdownReject {
                        id,
                        reason: RejectReason::OVERLOADED,
                    }),
                    2 => Frame::GoAway(GoAway {
                        last_accepted: id,
                        drain_budget_ms: 1,
                        reason: GoAwayReason::SHUTDOWN,
                    }),
                    _ => Frame::Ready(Ready { capacity: 50 }),
                };
                frame.encode(&mut bytes);
            }
            Op::Bytes(ref raw) => bytes.extend_from_slice(raw),
            Op::Respond(pick, status, len) => {
                if let Some(id) = self.pick_pending(pick) {
                    let body = vec![0xcd; usize::from(len)];
                    self.answer(id, Answer::Respond, |c| {
                        c.respond(id, Status(status), &body)
                    });
                }
            }
            Op::Reject(pick, reason) => {
                if let Some(id) = self.pick_pending(pick) {
                    self.answer(id, Answer::Reject, |c| c.reject(id, RejectReason(reason)));
                }
            }
            Op::AnswerAny(id, respond) => {
                if respond {
                    self.answer(id, Answer::Respond, |c| c.respond(id, Status::OK, b""));
                } else {
                    let why = RejectReason::SHUTTING_DOWN;
                    self.answer(id, Answer::Reject, |c| c.reject(id, why));
                }
            }
            Op::SetReady(c) => self.conn.set_ready(c),
            Op::StartDrain(ms, reason) => {
                let budget = Duration::from_millis(u64::from(ms));
                self.conn
                    .start_drain(self.now, budget, GoAwayReason(reason));
                if let Some(n) = self.conn.last_accepted() {
                    assert!(self.goaway_n.is_none_or(|g| g == n), "N changed");
                    self.goaway_n = Some(n);
                    assert!(
                        self.accepted.iter().all(|&id| id <= n),
                        "GOAWAY({n}) below an accepted id"
                    );
                }
            }
            Op::Advance(ms) => {
                self.now += Duration::from_millis(u64::from(ms));
                self.conn.handle_timeout(self.now);
            }
            Op::NextTimer => {
                if let Some(t) = self.conn.poll_timeout() {
                    assert!(t <= self.now + Duration::from_secs(3600), "timer far away");
                    self.now = self.now.max(t);
                }
                self.conn.handle_timeout(self.now);
            }
            Op::Eof => {
                self.eof = true;
                self.conn.handle_eof(self.now);
            }
            Op::TransportError => {
                self.conn.handle_transport_error("fuzz");
                assert!(self.conn.is_closed());
                self.closed = true;
            }
            Op::Write(n) => self.write(usize::from(n)),
            Op::WriteAll => self.write(usize::MAX),
        }
        if !bytes.is_empty() && !self.eof && !self.closed {
            self.feed(&bytes);
        }
        self.finished += self.conn.take_finished_answers();
        self.poll_close();
    }

    fn answer(
        &mut self,
        id: u64,
        how: Answer,
        f: impl FnOnce(&mut ServerConn) -> Result<(), gracerpc::proto::ApiMisuse>,
    ) {
        let open = self.accepted.contains(&id) && !self.answered.contains_key(&id);
        let res = f(&mut self.conn);
        assert_eq!(res.is_ok(), open, "answer for {id}: {res:?}");
        if res.is_ok() {
            self.answered.insert(id, how);
        }
    }

    /// The driver's read path: decode what is complete and hand each frame over.
    fn feed(&mut self, bytes: &[u8]) {
        if !self.conn.wants_frames() {
            return; // read and discard
        }
        self.input.extend(bytes);
        loop {
            if !self.conn.wants_frames() {
                let n = self.input.data().len();
                self.input.consume(n);
                return;
            }
            match decode(self.input.data(), self.conn.max_frame()) {
                Ok(Some((frame, used))) => {
                    let is_request = frame.kind() == Kind::REQUEST;
                    let draining = self.conn.is_draining();
                    match self.conn.handle_frame(self.now, frame) {
                        Ok(Incoming::Request(a)) => {
                            assert!(!draining, "request {} accepted while draining", a.id);
                            assert!(self.accepted.insert(a.id), "id {} accepted twice", a.id);
                            assert!(a.deadline > self.now, "accepted with no time left");
                        }
                        Ok(Incoming::Cancel(id)) => {
                            assert!(self.conn.is_pending(id), "CANCEL for {id} not pending");
                        }
                        Ok(Incoming::Rejected { id, .. }) => {
                            assert!(is_request, "a rejection for a frame that was no REQUEST");
                            assert!(
                                !self.accepted.contains(&id),
                                "id {id} accepted and rejected"
                            );
                            self.immediate_rejects += 1;
                        }
                        Ok(Incoming::None) => {
                            assert!(!is_request, "a REQUEST neither accepted nor rejected");
                        }
                        Err(e) => {
                            assert!(self.conn.error().is_some(), "failed without error: {e}");
                            assert!(!self.conn.wants_frames());
                        }
                    }
                    self.input.consume(used);
                }
                Ok(None) => return,
                Err(e) => {
                    let _ = self.conn.handle_decode_error(self.now, e);
                    assert!(!self.conn.wants_frames());
                }
            }
        }
    }

    /// The driver's write path: up to `n` bytes of output leave, and the checker reads them.
    fn write(&mut self, n: usize) {
        if self.closed {
            return;
        }
        let out = self.conn.out();
        let n = n.min(out.len());
        self.wire.extend(&out[..n]);
        self.conn.written(n);
        self.check_wire();
    }

    fn poll_close(&mut self) {
        let pending = self.conn.pending();
        let flushed = self.conn.out().is_empty();
        match self.conn.poll_close(self.now) {
            None => {}
            Some(CloseAction::ShutdownWrite) => {
                assert!(!self.shut, "write side shut twice");
                assert!(!self.closed, "write side shut after close");
                assert!(
                    self.conn.error().is_some(),
                    "write side shut on a healthy connection"
                );
                self.shut = true;
            }
            Some(CloseAction::Close) => {
                assert!(!self.closed, "closed twice");
                // Rule 4: never close while input may arrive, unless the connection failed
                // (then the write side was shut first and the linger ran out).
                match self.conn.error() {
                    None => {
                        assert!(self.eof, "closed before the caller's EOF");
                        assert_eq!(pending, 0, "closed with answers owed");
                        assert!(flushed, "closed with output unwritten");
                    }
                    Some(_) => assert!(self.shut || self.eof, "failed close without FIN"),
                }
                assert!(self.conn.is_closed());
                self.closed = true;
            }
        }
    }

    fn check(&mut self) {
        // Pending is exactly accepted minus answered.
        assert_eq!(
            self.conn.pending(),
            self.accepted.len() - self.answered.len(),
            "pending count"
        );
        if self.accepted.len() <= 64 {
            for &id in &self.accepted {
                let open = !self.answered.contains_key(&id);
                assert_eq!(self.conn.is_pending(id), open, "is_pending({id})");
            }
        }
        // Answers finish (written or dropped) at most once each.
        assert!(
            self.finished <= self.answered.len() + self.immediate_rejects,
            "{} answers finished, {} given",
            self.finished,
            self.answered.len() + self.immediate_rejects
        );
        // Nothing is written after the write side is shut.
        if self.shut || self.closed {
            assert!(self.conn.out().is_empty(), "output after FIN or close");
        }
        if let Some(n) = self.conn.last_accepted() {
            assert!(self.accepted.iter().all(|&id| id <= n), "accepted above N");
        }
    }

    /// Decodes what the connection wrote and checks the frames against the model.
    fn check_wire(&mut self) {
        loop {
            let (kind, id, used) = match decode(self.wire.data(), u32::MAX) {
                Ok(Some((frame, used))) => {
                    let id = match frame {
                        Frame::Response(r) => r.id,
                        Frame::ShutdownReject(r) => r.id,
                        Frame::GoAway(g) => g.last_accepted,
                        Frame::Error(e) => e.id,
                        _ => 0,
                    };
                    (frame.kind(), id, used)
                }
                Ok(None) => return,
                Err(e) => panic!("server wrote bytes that do not decode: {e}"),
            };
            self.wire.consume(used);
            assert!(!self.wire_error, "{kind} written after ERROR");
            assert_eq!(kind == Kind::HELLO, !self.wire_hello, "HELLO first, once");
            self.wire_hello = true;
            match kind {
                Kind::RESPONSE | Kind::SHUTDOWN_REJECT => {
                    let prev = self.wire_answers.insert(id, kind);
                    assert!(prev.is_none(), "id {id} answered twice ({prev:?}, {kind})");
                    let answered = self.answered.get(&id).copied();
                    if kind == Kind::RESPONSE {
                        assert_eq!(answered, Some(Answer::Respond), "RESPONSE {id}");
                    } else if self.accepted.contains(&id) {
                        assert_eq!(answered, Some(Answer::Reject), "accepted {id} rejected");
                    }
                }
                Kind::GOAWAY => {
                    assert!(self.wire_goaway.is_none(), "second GOAWAY");
                    assert_eq!(Some(id), self.goaway_n, "GOAWAY's N");
                    self.wire_goaway = Some(id);
                }
                Kind::READY => assert!(self.wire_goaway.is_none(), "READY after GOAWAY"),
                Kind::ERROR => {
                    assert!(self.conn.error().is_some());
                    self.wire_error = true;
                }
                Kind::HELLO | Kind::PING | Kind::PONG => {}
                other => panic!("server wrote {other}"),
            }
        }
    }
}
