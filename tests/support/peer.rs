//! A raw test peer for the server's integration tests: a blocking `std::net::TcpStream` that
//! writes whatever bytes a test builds (see [`frames`]) and reads frames decoded by the core, with
//! every wait bounded.
//!
//! Reading tells apart what rule 4 cares about: a clean EOF (the server shut its write side or
//! closed after reading everything), a connection RESET (the server closed with input unread, or
//! aborted: never allowed), and a timeout.
//!
//! Also here, because every server test needs them: [`Gate`] (a handler that blocks until the
//! test releases it) and [`Executions`] (counts how often a handler ran, per request id).
//!
//! Standalone module: include it with `#[path = "support/peer.rs"] mod peer;`.
#![allow(dead_code)]

#[path = "frames.rs"]
pub mod frames;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use gracerpc::proto::{ErrorCode, Frame, GoAwayReason, RejectReason, Status, decode};
use gracerpc::server::{Failure, Request};

use frames::PEER_MAX_FRAME;

/// Default bound for waits that should be quick (a frame the server sends at once).
pub const QUICK: Duration = Duration::from_secs(5);

/// A frame read from the server, owning its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnedFrame {
    /// HELLO.
    Hello { max_frame: u32 },
    /// REQUEST (a server never sends one; kept so that any frame can be shown).
    Request {
        id: u64,
        method: String,
        body: Vec<u8>,
    },
    /// RESPONSE.
    Response {
        id: u64,
        status: Status,
        body: Vec<u8>,
    },
    /// SHUTDOWN_REJECT.
    Reject { id: u64, reason: RejectReason },
    /// GOAWAY.
    GoAway {
        last_accepted: u64,
        drain_budget_ms: u32,
        reason: GoAwayReason,
    },
    /// GOAWAY_ACK.
    GoAwayAck(u64),
    /// PING.
    Ping(u64),
    /// PONG.
    Pong(u64),
    /// READY.
    Ready(u8),
    /// CANCEL.
    Cancel(u64),
    /// ERROR.
    Error {
        id: u64,
        code: ErrorCode,
        message: String,
    },
}

impl OwnedFrame {
    fn from_frame(f: Frame<'_>) -> OwnedFrame {
        match f {
            Frame::Hello(h) => OwnedFrame::Hello {
                max_frame: h.max_frame,
            },
            Frame::Request(r) => OwnedFrame::Request {
                id: r.id,
                method: r.method.to_owned(),
                body: r.body.to_vec(),
            },
            Frame::Response(r) => OwnedFrame::Response {
                id: r.id,
                status: r.status,
                body: r.body.to_vec(),
            },
            Frame::ShutdownReject(r) => OwnedFrame::Reject {
                id: r.id,
                reason: r.reason,
            },
            Frame::GoAway(g) => OwnedFrame::GoAway {
                last_accepted: g.last_accepted,
                drain_budget_ms: g.drain_budget_ms,
                reason: g.reason,
            },
            Frame::GoAwayAck(a) => OwnedFrame::GoAwayAck(a.last_accepted),
            Frame::Ping(p) => OwnedFrame::Ping(p.opaque),
            Frame::Pong(p) => OwnedFrame::Pong(p.opaque),
            Frame::Ready(r) => OwnedFrame::Ready(r.capacity),
            Frame::Cancel(c) => OwnedFrame::Cancel(c.id),
            Frame::Error(e) => OwnedFrame::Error {
                id: e.id,
                code: e.code,
                message: String::from_utf8_lossy(e.message).into_owned(),
            },
        }
    }

    /// The request id this frame answers, if it is an answer (RESPONSE or SHUTDOWN_REJECT).
    pub fn answer_id(&self) -> Option<u64> {
        match self {
            OwnedFrame::Response { id, .. } | OwnedFrame::Reject { id, .. } => Some(*id),
            _ => None,
        }
    }
}

/// Why [`Peer::next_frame`] returned no frame.
#[derive(Debug)]
pub enum PeerError {
    /// The server closed its write side cleanly (read returned 0) on a frame boundary.
    Eof,
    /// Clean EOF, but in the middle of a frame: `bytes` were left undecoded.
    TruncatedEof { bytes: usize },
    /// The connection was reset (ECONNRESET / ECONNABORTED / EPIPE): rule 4 forbids it.
    Reset(io::Error),
    /// Nothing (complete) arrived in time.
    Timeout,
    /// The server sent bytes the core cannot decode.
    Decode(gracerpc::proto::DecodeError),
    /// Any other I/O failure.
    Io(io::Error),
}

impl PeerError {
    fn from_io(e: io::Error) -> PeerError {
        match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => PeerError::Reset(e),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => PeerError::Timeout,
            _ => PeerError::Io(e),
        }
    }

    /// Whether this is a connection reset.
    pub fn is_reset(&self) -> bool {
        matches!(self, PeerError::Reset(_))
    }
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerError::Eof => f.write_str("clean EOF"),
            PeerError::TruncatedEof { bytes } => write!(f, "EOF inside a frame ({bytes} bytes)"),
            PeerError::Reset(e) => write!(f, "connection RESET ({e})"),
            PeerError::Timeout => f.write_str("timed out"),
            PeerError::Decode(e) => write!(f, "undecodable bytes from the server: {e}"),
            PeerError::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

/// A raw peer on one connection.
pub struct Peer {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Capacity from the last READY read by [`connect_ready`] or [`Peer::wait_ready`].
    pub ready: Option<u8>,
    /// Frames read while waiting for something else, handed out first by `next_frame`.
    stash: std::collections::VecDeque<OwnedFrame>,
}

impl Peer {
    /// Connects (TCP_NODELAY on) and sends nothing.
    pub fn connect(addr: SocketAddr) -> io::Result<Peer> {
        let stream = TcpStream::connect_timeout(&addr, QUICK)?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(QUICK))?;
        Ok(Peer {
            stream,
            buf: Vec::new(),
            ready: None,
            stash: Default::default(),
        })
    }

    /// The peer's own address (what the server sees as the peer address).
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("local_addr")
    }

    /// A second handle on the socket, for a test that writes from one thread while it reads
    /// with this `Peer` on another (socket options such as non-blocking mode are shared).
    pub fn try_clone_stream(&self) -> TcpStream {
        self.stream.try_clone().expect("try_clone")
    }

    /// Writes raw bytes.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), PeerError> {
        self.stream.write_all(bytes).map_err(PeerError::from_io)
    }

    /// Writes raw bytes, panicking with `what` on failure.
    pub fn send_ok(&mut self, bytes: &[u8], what: &str) {
        if let Err(e) = self.send(bytes) {
            panic!("sending {what}: {e}");
        }
    }

    /// Sends a REQUEST with a long deadline.
    pub fn send_request(&mut self, id: u64, method: &str, body: &[u8]) {
        self.send_ok(&frames::request(id, method, body), "REQUEST");
    }

    /// Shuts our write side (the caller's close, rule 3), keeping the read side open.
    pub fn shutdown_write(&mut self) {
        self.stream
            .shutdown(Shutdown::Write)
            .expect("shutdown(write)");
    }

    /// The next frame, waiting at most `timeout`.
    pub fn next_frame(&mut self, timeout: Duration) -> Result<OwnedFrame, PeerError> {
        if let Some(f) = self.stash.pop_front() {
            return Ok(f);
        }
        let deadline = Instant::now() + timeout;
        loop {
            match decode(&self.buf, PEER_MAX_FRAME) {
                Ok(Some((frame, used))) => {
                    let owned = OwnedFrame::from_frame(frame);
                    self.buf.drain(..used);
                    return Ok(owned);
                }
                Ok(None) => {}
                Err(e) => return Err(PeerError::Decode(e)),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(PeerError::Timeout);
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("set_read_timeout");
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) if self.buf.is_empty() => return Err(PeerError::Eof),
                Ok(0) => {
                    return Err(PeerError::TruncatedEof {
                        bytes: self.buf.len(),
                    });
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => match PeerError::from_io(e) {
                    PeerError::Timeout => {}
                    other => return Err(other),
                },
            }
        }
    }

    /// The next frame, or a panic naming `what` was awaited.
    pub fn expect_frame(&mut self, timeout: Duration, what: &str) -> OwnedFrame {
        match self.next_frame(timeout) {
            Ok(f) => f,
            Err(e) => panic!("waiting {timeout:?} for {what}: {e}"),
        }
    }

    /// Reads frames until one matches `pred`; frames skipped on the way are kept and handed out
    /// by later reads. Panics on timeout, EOF or reset.
    pub fn expect_matching(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&OwnedFrame) -> bool,
    ) -> OwnedFrame {
        let deadline = Instant::now() + timeout;
        let mut skipped = Vec::new();
        if let Some(pos) = self.stash.iter().position(&pred) {
            return self.stash.remove(pos).expect("stashed frame");
        }
        let stashed = std::mem::take(&mut self.stash);
        let found = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_frame(left) {
                Ok(f) if pred(&f) => break f,
                Ok(f) => skipped.push(f),
                Err(e) => panic!(
                    "waiting {timeout:?} for {what}: {e}; frames seen meanwhile: {skipped:?}"
                ),
            }
        };
        self.stash = stashed;
        self.stash.extend(skipped);
        found
    }

    /// Asserts that nothing arrives for `quiet` (no frame, no EOF, no reset).
    pub fn expect_silence(&mut self, quiet: Duration, context: &str) {
        match self.next_frame(quiet) {
            Err(PeerError::Timeout) => {}
            Ok(f) => panic!("{context}: expected nothing for {quiet:?}, got {f:?}"),
            Err(e) => panic!("{context}: expected nothing for {quiet:?}, got {e}"),
        }
    }

    /// Reads every frame until a clean EOF; panics on reset, timeout or a torn frame.
    pub fn read_to_eof(&mut self, timeout: Duration, context: &str) -> Vec<OwnedFrame> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_frame(left) {
                Ok(f) => got.push(f),
                Err(PeerError::Eof) => return got,
                Err(e) => panic!("{context}: waiting for a clean EOF: {e}; frames read: {got:?}"),
            }
        }
    }

    /// The caller's close after rule 3: shut our write side, then read to a clean EOF (the
    /// server closes only once it has seen ours: rule 4). Returns frames read on the way.
    pub fn close_and_expect_eof(&mut self, timeout: Duration, context: &str) -> Vec<OwnedFrame> {
        self.shutdown_write();
        self.read_to_eof(timeout, context)
    }

    /// Reads until every id in `ids` is answered (RESPONSE or SHUTDOWN_REJECT). Panics on a
    /// second answer for an id, on an answer for an id not asked about, and on timeout. Other
    /// frames (GOAWAY, READY, PONG) are kept for later reads.
    pub fn collect_answers(&mut self, ids: &[u64], timeout: Duration) -> HashMap<u64, OwnedFrame> {
        let want: HashSet<u64> = ids.iter().copied().collect();
        let mut got: HashMap<u64, OwnedFrame> = HashMap::new();
        let mut other = Vec::new();
        let deadline = Instant::now() + timeout;
        let mut stashed: Vec<OwnedFrame> = self.stash.drain(..).collect();
        stashed.reverse();
        while got.len() < want.len() {
            let f = match stashed.pop() {
                Some(f) => f,
                None => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match self.next_frame(left) {
                        Ok(f) => f,
                        Err(e) => panic!(
                            "waiting {timeout:?} for answers to {ids:?}: {e}; answered so far: \
                             {:?}; other frames: {other:?}",
                            sorted_keys(&got)
                        ),
                    }
                }
            };
            match f.answer_id() {
                Some(id) => {
                    assert!(want.contains(&id), "answer for id {id} not awaited: {f:?}");
                    if let Some(prev) = got.insert(id, f.clone()) {
                        panic!("id {id} answered twice (rule 1): {prev:?} then {f:?}");
                    }
                }
                None => other.push(f),
            }
        }
        other.extend(stashed.into_iter().rev());
        self.stash.extend(other);
        got
    }

    /// Waits for READY and records its capacity.
    pub fn wait_ready(&mut self, timeout: Duration) -> u8 {
        match self.expect_matching(timeout, "READY", |f| matches!(f, OwnedFrame::Ready(_))) {
            OwnedFrame::Ready(c) => {
                self.ready = Some(c);
                c
            }
            _ => unreachable!(),
        }
    }

    /// Closes with unread input waiting, so the kernel sends RST instead of FIN. Waits (bounded)
    /// until some input is waiting; panics if none arrives.
    pub fn abort_with_reset(self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut one = [0u8; 1];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "abort_with_reset: no unread input arrived in {timeout:?}"
            );
            self.stream
                .set_read_timeout(Some(left))
                .expect("set_read_timeout");
            match self.stream.peek(&mut one) {
                Ok(n) if n > 0 => break,
                Ok(_) => panic!("abort_with_reset: the server closed first"),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => panic!("abort_with_reset: {e}"),
            }
        }
        drop(self.stream); // close(2) with unread data: RST
    }
}

fn sorted_keys(m: &HashMap<u64, OwnedFrame>) -> Vec<u64> {
    let mut k: Vec<u64> = m.keys().copied().collect();
    k.sort_unstable();
    k
}

/// Connects and sends HELLO; waits for the server's HELLO (not for READY).
pub fn connect_hello(addr: SocketAddr) -> Peer {
    let mut p = Peer::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    p.send_ok(&frames::hello(), "HELLO");
    match p.expect_frame(QUICK, "the server's HELLO") {
        OwnedFrame::Hello { .. } => {}
        other => panic!("first frame from the server must be HELLO, got {other:?}"),
    }
    p
}

/// Connects, exchanges HELLO and waits for READY (rule 6: usable only after READY).
pub fn connect_ready(addr: SocketAddr) -> Peer {
    let mut p = connect_hello(addr);
    p.wait_ready(QUICK);
    p
}

// ---- handler helpers ----

/// A handler that blocks until the test releases it, keyed by the request body. Dropping the
/// `Gate` releases every handler still blocked, so worker threads never outlive a test for long.
pub struct Gate {
    inner: Arc<GateInner>,
}

struct GateInner {
    state: Mutex<GateState>,
    cv: Condvar,
}

#[derive(Default)]
struct GateState {
    started: Vec<Vec<u8>>,
    finished: Vec<Vec<u8>>,
    released: HashSet<Vec<u8>>,
    all_open: bool,
}

/// How long a gated handler waits at most for its release before failing on its own.
const GATE_SAFETY: Duration = Duration::from_secs(60);

impl Default for Gate {
    fn default() -> Self {
        Gate::new()
    }
}

impl Gate {
    pub fn new() -> Gate {
        Gate {
            inner: Arc::new(GateInner {
                state: Mutex::new(GateState::default()),
                cv: Condvar::new(),
            }),
        }
    }

    /// A handler: records that it started, blocks until its body is released, echoes the body.
    pub fn handler(
        &self,
    ) -> impl Fn(&Request<'_>) -> Result<Vec<u8>, Failure> + Send + Sync + 'static {
        let inner = self.inner.clone();
        move |req: &Request<'_>| {
            let key = req.body.to_vec();
            let mut st = inner.state.lock().unwrap();
            st.started.push(key.clone());
            inner.cv.notify_all();
            let until = Instant::now() + GATE_SAFETY;
            while !st.all_open && !st.released.contains(&key) {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Failure::new(
                        gracerpc::proto::Status::APP_ERROR,
                        "gate never opened",
                    ));
                }
                st = inner.cv.wait_timeout(st, left).unwrap().0;
            }
            st.finished.push(key.clone());
            inner.cv.notify_all();
            Ok(key)
        }
    }

    /// Like [`Gate::handler`], recording each execution in `runs` before it blocks.
    pub fn counted_handler(
        &self,
        runs: &Executions,
    ) -> impl Fn(&Request<'_>) -> Result<Vec<u8>, Failure> + Send + Sync + 'static {
        let (runs, gated) = (runs.clone(), self.handler());
        move |req: &Request<'_>| {
            runs.record(req.id);
            gated(req)
        }
    }

    /// Waits until a handler with this body has started.
    pub fn wait_started(&self, key: &[u8], timeout: Duration) {
        self.wait_for(
            timeout,
            &format!("handler {:?} to start", String::from_utf8_lossy(key)),
            |st| st.started.iter().any(|k| k == key),
        );
    }

    /// Waits until `n` handlers in all have started.
    pub fn wait_started_count(&self, n: usize, timeout: Duration) {
        self.wait_for(timeout, &format!("{n} handlers to start"), |st| {
            st.started.len() >= n
        });
    }

    /// Bodies of the handlers that started, in order.
    pub fn started(&self) -> Vec<Vec<u8>> {
        self.inner.state.lock().unwrap().started.clone()
    }

    /// Lets the handler with this body return.
    pub fn release(&self, key: &[u8]) {
        self.inner
            .state
            .lock()
            .unwrap()
            .released
            .insert(key.to_vec());
        self.inner.cv.notify_all();
    }

    /// Lets every handler, present and future, return.
    pub fn release_all(&self) {
        self.inner.state.lock().unwrap().all_open = true;
        self.inner.cv.notify_all();
    }

    /// Waits until the handler with this body has returned.
    pub fn wait_finished(&self, key: &[u8], timeout: Duration) {
        self.wait_for(
            timeout,
            &format!("handler {:?} to return", String::from_utf8_lossy(key)),
            |st| st.finished.iter().any(|k| k == key),
        );
    }

    fn wait_for(&self, timeout: Duration, what: &str, cond: impl Fn(&GateState) -> bool) {
        let deadline = Instant::now() + timeout;
        let mut st = self.inner.state.lock().unwrap();
        while !cond(&st) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "waited {timeout:?} for {what}; started so far: {:?}",
                st.started
            );
            st = self.inner.cv.wait_timeout(st, left).unwrap().0;
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        // Handlers hold `GateInner`, not a `Gate`: only the test's handle ends here.
        if let Ok(mut st) = self.inner.state.lock() {
            st.all_open = true;
        }
        self.inner.cv.notify_all();
    }
}

/// Counts executions per request id.
#[derive(Clone, Default)]
pub struct Executions {
    runs: Arc<Mutex<HashMap<u64, usize>>>,
}

impl Executions {
    /// Records one execution of `id`.
    pub fn record(&self, id: u64) {
        *self.runs.lock().unwrap().entry(id).or_default() += 1;
    }

    /// How often `id` ran.
    pub fn count(&self, id: u64) -> usize {
        self.runs.lock().unwrap().get(&id).copied().unwrap_or(0)
    }

    /// Executions of every id together.
    pub fn total(&self) -> usize {
        self.runs.lock().unwrap().values().sum()
    }

    /// A handler that records its execution and echoes the body.
    pub fn echo_handler(
        &self,
    ) -> impl Fn(&Request<'_>) -> Result<Vec<u8>, Failure> + Send + Sync + 'static {
        let me = self.clone();
        move |req: &Request<'_>| {
            me.record(req.id);
            Ok(req.body.to_vec())
        }
    }
}

/// A server built by `configure` whose method `block` is a [`Gate::counted_handler`]; with the
/// counts and the gate.
pub fn gated_server(
    configure: impl FnOnce(gracerpc::server::Builder) -> gracerpc::server::Builder,
) -> (Executions, Gate, gracerpc::server::ServerHandle) {
    let (runs, gate) = (Executions::default(), Gate::new());
    let server = configure(gracerpc::server::Server::builder())
        .handler("block", gate.counted_handler(&runs))
        .spawn()
        .expect("spawn");
    (runs, gate, server)
}

/// A gracerpc client of the one node `addr`, READY.
pub fn ready_client(addr: SocketAddr) -> gracerpc::client::Client {
    let client = gracerpc::client::Client::builder()
        .nodes([addr])
        .build()
        .expect("client");
    assert!(client.wait_ready(addr, QUICK), "{addr} never READY");
    client
}

/// Polls `cond` until it holds, failing with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "waited {timeout:?} for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Shuts `server` down while `caller` is its last connection: the caller reads GOAWAY and
/// closes, and the drain must end clean. Returns the report (for further checks).
pub fn shutdown_clean(
    server: gracerpc::server::ServerHandle,
    caller: &mut Peer,
    who: &str,
) -> gracerpc::server::DrainReport {
    server.shutdown();
    caller.expect_frame(QUICK, "GOAWAY");
    caller.close_and_expect_eof(QUICK, who);
    let (report, _server) = wait_report(server, QUICK);
    assert!(report.clean, "{report:?}");
    report
}

/// Calls `ServerHandle::wait` on another thread and waits at most `timeout` for the report;
/// gives the handle back with it (for `in_flight()` and friends).
pub fn wait_report(
    server: gracerpc::server::ServerHandle,
    timeout: Duration,
) -> (
    gracerpc::server::DrainReport,
    gracerpc::server::ServerHandle,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let report = server.wait();
        let _ = tx.send((report, server));
    });
    match rx.recv_timeout(timeout) {
        Ok((Ok(report), server)) => (report, server),
        Ok((Err(e), _)) => panic!("ServerHandle::wait failed: {e}"),
        Err(_) => panic!("the server did not stop within {timeout:?}"),
    }
}
