//! Helpers for the client's integration tests: in-process servers whose handlers count what they
//! ran, restartable on the same port; raw misbehaving servers written with the core's frames; and
//! bounded waits that fail with a clear message.
//!
//! Include it with `#[path = "support/cluster.rs"] mod cluster;`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gracerpc::client::{Client, ClientBuilder, NodeEvent, NodeState};
use gracerpc::proto::frame::{GoAway, Hello, Ready, Response, ShutdownReject};
use gracerpc::proto::{ErrorCode, Frame, GoAwayReason, Kind, RejectReason, Status, decode};
use gracerpc::server::{Builder, DrainReport, Failure, Request, Server, ServerHandle};

/// The longest any helper waits before failing the test.
pub const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Bounded waits
// ---------------------------------------------------------------------------------------------

/// Polls `cond` until it holds; panics with `what` after `timeout`. For conditions that have no
/// event to wait on (server counters).
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < end,
            "timed out after {timeout:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until the client itself sees every address choosable.
pub fn wait_all_ready(client: &Client, addrs: &[SocketAddr]) {
    for &a in addrs {
        assert!(
            client.wait_ready(a, WAIT),
            "the client did not see {a} READY within {WAIT:?}: {:?}",
            client.nodes()
        );
    }
}

/// Waits for an event about `addr` matching `pred` on a subscription; returns it (and when the
/// test thread received it).
pub fn wait_event(
    events: &crossbeam_channel::Receiver<NodeEvent>,
    addr: SocketAddr,
    timeout: Duration,
    what: &str,
    mut pred: impl FnMut(&NodeEvent) -> bool,
) -> (NodeEvent, Instant) {
    let end = Instant::now() + timeout;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(ev) if ev.addr == addr && pred(&ev) => return (ev, Instant::now()),
            Ok(_) => {}
            Err(_) => panic!("no event for {addr} ({what}) within {timeout:?}"),
        }
    }
}

/// The state the client has for `addr`.
pub fn state_of(client: &Client, addr: SocketAddr) -> Option<NodeState> {
    client.table().find(addr).map(|n| n.state())
}

// ---------------------------------------------------------------------------------------------
// Counting handlers
// ---------------------------------------------------------------------------------------------

/// What one node's handlers ran, shared across restarts of the node.
#[derive(Default)]
pub struct Recorder {
    counts: Mutex<HashMap<Vec<u8>, u32>>,
    changed: Condvar,
    /// Extra time `record` takes, in microseconds.
    pub delay_us: AtomicU64,
    gate: Mutex<bool>,
    gate_cv: Condvar,
    /// `block` calls that have started.
    pub blocked: AtomicUsize,
}

impl Recorder {
    fn record(&self, token: &[u8]) {
        *self
            .counts
            .lock()
            .unwrap()
            .entry(token.to_vec())
            .or_default() += 1;
        self.changed.notify_all();
    }

    /// How many times `token` ran here.
    pub fn count(&self, token: &[u8]) -> u32 {
        self.counts.lock().unwrap().get(token).copied().unwrap_or(0)
    }

    /// Executions of any token.
    pub fn total(&self) -> u64 {
        self.counts
            .lock()
            .unwrap()
            .values()
            .map(|&c| u64::from(c))
            .sum()
    }

    /// A copy of every token and its count.
    pub fn tokens(&self) -> HashMap<Vec<u8>, u32> {
        self.counts.lock().unwrap().clone()
    }

    /// Waits until `token` ran at least once; false after `timeout`.
    pub fn wait_for(&self, token: &[u8], timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        let mut g = self.counts.lock().unwrap();
        while g.get(token).is_none() {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            g = self.changed.wait_timeout(g, left).unwrap().0;
        }
        true
    }

    /// Lets every `block` call finish (and later ones pass at once).
    pub fn open_gate(&self) {
        *self.gate.lock().unwrap() = true;
        self.gate_cv.notify_all();
    }

    fn wait_gate(&self) {
        let end = Instant::now() + WAIT;
        let mut g = self.gate.lock().unwrap();
        while !*g && Instant::now() < end {
            g = self.gate_cv.wait_timeout(g, WAIT).unwrap().0;
        }
    }
}

/// A unique token for a `record` call.
pub fn token(worker: usize, seq: u64) -> Vec<u8> {
    format!("w{worker}-{seq}").into_bytes()
}

/// A server builder on `listen` with the test methods, all counting into `rec`:
/// * `record` (worker): waits `delay_us`, counts its body as a token, echoes it;
/// * `echo` (inline): echoes, counts nothing;
/// * `sleep` (worker): sleeps the number of milliseconds in its body, then counts it;
/// * `block` (worker): waits until [`Recorder::open_gate`], then counts its body.
pub fn builder(listen: &str, rec: &Arc<Recorder>) -> Builder {
    let (r1, r2, r3) = (rec.clone(), rec.clone(), rec.clone());
    Server::builder()
        .listen(listen)
        .drain_budget(Duration::from_secs(5))
        .handler("record", move |req: &Request<'_>| {
            let d = r1.delay_us.load(Ordering::Relaxed);
            if d > 0 {
                std::thread::sleep(Duration::from_micros(d));
            }
            r1.record(req.body);
            Ok(req.body.to_vec())
        })
        .inline_handler("echo", |req: &Request<'_>| Ok(req.body.to_vec()))
        .handler("sleep", move |req: &Request<'_>| {
            let ms: u64 = std::str::from_utf8(req.body)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| Failure::new(Status::INVALID_ARGUMENT, "body: millis"))?;
            std::thread::sleep(Duration::from_millis(ms));
            r2.record(req.body);
            Ok(req.body.to_vec())
        })
        .handler("block", move |req: &Request<'_>| {
            r3.blocked.fetch_add(1, Ordering::AcqRel);
            r3.wait_gate();
            r3.record(req.body);
            Ok(req.body.to_vec())
        })
}

/// One in-process server node, restartable on the same address with the same [`Recorder`].
pub struct TestNode {
    pub rec: Arc<Recorder>,
    pub addr: SocketAddr,
    handle: Option<ServerHandle>,
    tweak: Arc<dyn Fn(Builder) -> Builder + Send + Sync>,
}

impl TestNode {
    /// Starts a node on a free port; `tweak` adjusts the builder (and is reused on restart).
    pub fn start(tweak: impl Fn(Builder) -> Builder + Send + Sync + 'static) -> TestNode {
        let rec = Arc::new(Recorder::default());
        let tweak: Arc<dyn Fn(Builder) -> Builder + Send + Sync> = Arc::new(tweak);
        let handle = tweak(builder("127.0.0.1:0", &rec))
            .spawn()
            .expect("start a test server");
        TestNode {
            rec,
            addr: handle.local_addr(),
            handle: Some(handle),
            tweak,
        }
    }

    /// A node with the default settings.
    pub fn plain() -> TestNode {
        TestNode::start(|b| b)
    }

    /// The running server.
    pub fn handle(&self) -> &ServerHandle {
        self.handle.as_ref().expect("the node is stopped")
    }

    /// Starts the close sequence (GOAWAY) without waiting.
    pub fn begin_shutdown(&self) {
        self.handle().shutdown();
    }

    /// Waits for a shutdown begun earlier to finish; returns the drain report.
    pub fn wait_stopped(&mut self) -> DrainReport {
        let h = self.handle.take().expect("the node is stopped");
        h.wait().expect("server ended with an error")
    }

    /// Shuts the node down and waits for its report.
    pub fn stop(&mut self) -> DrainReport {
        self.begin_shutdown();
        self.wait_stopped()
    }

    /// Binds a new server on the same address, counting into the same recorder.
    pub fn start_again(&mut self) {
        assert!(self.handle.is_none(), "start_again on a running node");
        let end = Instant::now() + WAIT;
        loop {
            match (self.tweak)(builder(&self.addr.to_string(), &self.rec)).spawn() {
                Ok(h) => {
                    self.handle = Some(h);
                    return;
                }
                Err(e) if Instant::now() < end && e.kind() == io::ErrorKind::AddrInUse => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("rebind {}: {e}", self.addr),
            }
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
            let _ = h.wait();
        }
    }
}

/// A client of `addrs` with quick reconnection, adjusted by `tweak`.
pub fn client(addrs: &[SocketAddr], tweak: impl FnOnce(ClientBuilder) -> ClientBuilder) -> Client {
    let b = Client::builder()
        .nodes(addrs.iter().copied())
        .reconnect_backoff(Duration::from_millis(2), Duration::from_millis(50));
    tweak(b).build().expect("build client")
}

// ---------------------------------------------------------------------------------------------
// Raw servers
// ---------------------------------------------------------------------------------------------

/// A frame a raw server read, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Got {
    Hello,
    Request {
        id: u64,
        method: String,
        body: Vec<u8>,
        idempotent: bool,
    },
    Cancel(u64),
    GoAwayAck(u64),
    /// ERROR from the caller: the rule it says the server broke.
    Error {
        id: u64,
        code: ErrorCode,
    },
    Other(Kind),
}

/// One accepted connection of a raw server, speaking frames by hand.
pub struct RawConn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    fn new(stream: TcpStream) -> RawConn {
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(WAIT));
        RawConn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes one frame.
    pub fn send(&mut self, f: Frame<'_>) -> io::Result<()> {
        let mut out = Vec::new();
        f.encode(&mut out);
        self.stream.write_all(&out)
    }

    /// Reads the caller's HELLO, answers HELLO, and READY(capacity) if given.
    pub fn handshake(&mut self, ready: Option<u8>) -> io::Result<()> {
        match self.next()? {
            Got::Hello => {}
            other => return Err(io::Error::other(format!("expected HELLO, got {other:?}"))),
        }
        self.send(Frame::Hello(Hello::ours(1 << 20)))?;
        if let Some(capacity) = ready {
            self.send(Frame::Ready(Ready { capacity }))?;
        }
        Ok(())
    }

    /// The next frame (PINGs are answered and skipped). Fails on EOF or after [`WAIT`].
    pub fn next(&mut self) -> io::Result<Got> {
        loop {
            let decoded = decode(&self.buf, 1 << 20)
                .map_err(|e| io::Error::other(format!("bad frame: {e}")))?;
            if let Some((frame, used)) = decoded {
                let got = match frame {
                    Frame::Hello(_) => Got::Hello,
                    Frame::Request(r) => Got::Request {
                        id: r.id,
                        method: r.method.to_owned(),
                        body: r.body.to_vec(),
                        idempotent: r.idempotent,
                    },
                    Frame::Cancel(c) => Got::Cancel(c.id),
                    Frame::GoAwayAck(a) => Got::GoAwayAck(a.last_accepted),
                    Frame::Error(e) => Got::Error {
                        id: e.id,
                        code: e.code,
                    },
                    Frame::Ping(p) => {
                        self.buf.drain(..used);
                        self.send(Frame::Pong(p))?;
                        continue;
                    }
                    other => Got::Other(other.kind()),
                };
                self.buf.drain(..used);
                return Ok(got);
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next REQUEST: `(id, method, body, idempotent)`.
    pub fn next_request(&mut self) -> io::Result<(u64, String, Vec<u8>, bool)> {
        match self.next()? {
            Got::Request {
                id,
                method,
                body,
                idempotent,
            } => Ok((id, method, body, idempotent)),
            other => Err(io::Error::other(format!("expected REQUEST, got {other:?}"))),
        }
    }

    pub fn respond(&mut self, id: u64, body: &[u8]) -> io::Result<()> {
        self.send(Frame::Response(Response {
            id,
            status: Status::OK,
            body,
        }))
    }

    pub fn reject(&mut self, id: u64, reason: RejectReason) -> io::Result<()> {
        self.send(Frame::ShutdownReject(ShutdownReject { id, reason }))
    }

    pub fn goaway(&mut self, last_accepted: u64) -> io::Result<()> {
        self.send(Frame::GoAway(GoAway {
            last_accepted,
            drain_budget_ms: 5_000,
            reason: GoAwayReason::SHUTDOWN,
        }))
    }

    /// Waits until at least `n` bytes sit unread in the socket (without reading them).
    pub fn peek_at_least(&mut self, n: usize) -> io::Result<()> {
        let mut tmp = vec![0u8; n];
        let end = Instant::now() + WAIT;
        loop {
            let got = self.stream.peek(&mut tmp)?;
            if got >= n {
                return Ok(());
            }
            if got == 0 || Instant::now() >= end {
                return Err(io::Error::other(format!("only {got} of {n} bytes arrived")));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Closes with FIN.
    pub fn close(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// A server on a free loopback port that runs `script(connection number, conn)` for every
/// connection, each on a thread of its own. Dropping it stops accepting.
pub struct RawServer {
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RawServer {
    pub fn spawn(script: impl Fn(usize, RawConn) + Send + Sync + 'static) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind raw server");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let script = Arc::new(script);
        let (stop2, accepted2) = (stop.clone(), accepted.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::Acquire) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let n = accepted2.fetch_add(1, Ordering::AcqRel);
                let script = script.clone();
                std::thread::spawn(move || script(n, RawConn::new(stream)));
            }
        });
        RawServer {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        }
    }
}

impl RawServer {
    /// A raw node whose first connection is READY with `capacity` and then runs `script` (its
    /// I/O errors end it quietly: the test sees what the caller got); reconnections are closed
    /// at once.
    pub fn first_ready(
        capacity: u8,
        script: impl Fn(&mut RawConn) -> io::Result<()> + Send + Sync + 'static,
    ) -> RawServer {
        RawServer::spawn(move |n, mut c| {
            if n == 0 && c.handshake(Some(capacity)).is_ok() {
                let _ = script(&mut c);
            }
        })
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An address on which nothing listens (bound, then released).
pub fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}
