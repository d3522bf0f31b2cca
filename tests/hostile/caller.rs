//! The caller side: a real `Client` against raw servers (std::net and the core's frames) that
//! misbehave. Each case gives the call a typed `CallError` with the right `may_have_run()`, with
//! no panic and no wait past the deadline; the raw server checks what the client wrote back (the
//! ERROR code, or nothing after the server's own ERROR); and the client then keeps working with
//! a healthy node.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use gracerpc::client::{CallError, CallOptions, Client, Response};
use gracerpc::proto::frame::{ErrorFrame, Hello, Request};
use gracerpc::proto::{ErrorCode, Frame, RejectReason};

use crate::cluster::{self, Got, RawConn, RawServer, TestNode, WAIT};
use crate::peer::frames;

/// The deadline of the hostile calls.
const DEADLINE: Duration = Duration::from_secs(2);
/// How long a call may take past the moment it can be decided.
const PROMPT: Duration = Duration::from_secs(1);

/// A raw node whose first connection runs `script` (later connections are closed at once), a
/// healthy node held back from READY so that calls can only go to the raw one, and a client of
/// both.
struct Scene {
    raw: RawServer,
    spare: TestNode,
    client: Client,
    /// What the script reports (`Seen`), in order.
    seen: Receiver<Seen>,
}

/// Reports from a script.
#[derive(Debug)]
enum Seen {
    /// A milestone.
    Step(&'static str),
    /// Everything the client wrote after the script's last act, up to its close.
    Tail(Vec<Got>),
    /// The script failed (the test fails with it, showing this).
    #[allow(dead_code)]
    Failed(String),
}

type Script = dyn Fn(&mut RawConn, &Sender<Seen>) -> io::Result<()> + Send + Sync;

impl Scene {
    fn new(
        script: impl Fn(&mut RawConn, &Sender<Seen>) -> io::Result<()> + Send + Sync + 'static,
    ) -> Scene {
        let (tx, rx) = crossbeam_channel::unbounded();
        let script: Box<Script> = Box::new(script);
        let raw = RawServer::spawn(move |n, mut c| {
            if n > 0 {
                return; // reconnections: closed at once
            }
            let seen = match script(&mut c, &tx) {
                Ok(()) => Seen::Tail(read_tail(&mut c)),
                Err(e) => Seen::Failed(e.to_string()),
            };
            let _ = tx.send(seen);
        });
        let spare = TestNode::start(|b| b.manual_ready());
        let client = cluster::client(&[raw.addr, spare.addr], |b| b);
        Scene {
            raw,
            spare,
            client,
            seen: rx,
        }
    }

    fn raw_ready(&self) {
        assert!(
            self.client.wait_ready(self.raw.addr, WAIT),
            "the raw node never READY: {:?}",
            self.client.nodes()
        );
    }

    /// A call of `record` with `opts` (deadline [`DEADLINE`] unless set), timed.
    fn call(&self, body: &[u8], opts: CallOptions) -> (Result<Response, CallError>, Duration) {
        let opts = match opts.deadline {
            Some(_) => opts,
            None => opts.deadline(DEADLINE),
        };
        let t0 = Instant::now();
        let r = self.client.call_with("record", body, &opts);
        (r, t0.elapsed())
    }

    /// The same call on a thread of its own.
    fn call_bg(
        &self,
        body: &'static [u8],
        opts: CallOptions,
    ) -> std::thread::JoinHandle<(Result<Response, CallError>, Duration)> {
        let client = self.client.clone();
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let r = client.call_with("record", body, &opts.deadline(DEADLINE));
            (r, t0.elapsed())
        })
    }

    fn step(&self, what: &str) {
        match self.seen.recv_timeout(WAIT) {
            Ok(Seen::Step(s)) if s == what => {}
            other => panic!("waiting for the raw node's step {what:?}: {other:?}"),
        }
    }

    /// What the client wrote after the script's last act.
    fn tail(&self) -> Vec<Got> {
        loop {
            match self.seen.recv_timeout(WAIT) {
                Ok(Seen::Tail(t)) => return t,
                Ok(Seen::Step(_)) => {}
                other => panic!("waiting for the raw node's report: {other:?}"),
            }
        }
    }

    /// Asserts that the client answered the fault with exactly one ERROR(`code`) and closed.
    fn client_sent_error(&self, code: ErrorCode) {
        let tail = self.tail();
        assert!(
            matches!(tail.as_slice(), [Got::Error { code: c, .. }] if *c == code),
            "the client must write ERROR {code} and close: {tail:?}"
        );
    }

    fn open_spare(&self) {
        self.spare.handle().ready().set_ready();
        assert!(
            self.client.wait_ready(self.spare.addr, WAIT),
            "spare never READY"
        );
    }

    /// The after-case check: once the raw node is out of the choice, with a healthy node READY,
    /// calls succeed there.
    fn healthy_node_works(&self) {
        cluster::wait_until("the raw node to be out of the choice", WAIT, || {
            self.client
                .table()
                .find(self.raw.addr)
                .is_none_or(|n| !n.state().is_choosable())
        });
        self.open_spare();
        for i in 0..3 {
            let body = format!("healthy-{i}");
            let r = self
                .client
                .call_with(
                    "record",
                    body.as_bytes(),
                    &CallOptions::new().deadline(WAIT),
                )
                .unwrap_or_else(|e| panic!("call on the healthy node: {e}"));
            assert_eq!(
                (r.node, r.body),
                (self.spare.addr, body.clone().into_bytes())
            );
            assert_eq!(self.spare.rec.count(body.as_bytes()), 1);
        }
    }
}

/// Reads what the client writes until it closes (PINGs answered on the way).
fn read_tail(c: &mut RawConn) -> Vec<Got> {
    let mut got = Vec::new();
    let end = Instant::now() + WAIT;
    while Instant::now() < end {
        match c.next() {
            Ok(g) => got.push(g),
            Err(_) => break,
        }
    }
    got
}

fn expect_err(r: &Result<Response, CallError>, want: &CallError, may_have_run: bool) {
    match r {
        Err(e) => {
            assert_eq!(e, want, "call error");
            assert_eq!(e.may_have_run(), may_have_run, "may_have_run of {e:?}");
        }
        Ok(resp) => panic!("expected {want:?}, the call succeeded: {resp:?}"),
    }
}

fn prompt(took: Duration) {
    assert!(
        took < PROMPT,
        "the call took {took:?}: it waited for a timeout"
    );
}

/// Reads the request, then `act`s; the non-idempotent call ends OutcomeUnknown at once (it was
/// written, it may have run), the client writes ERROR(`code`), and healthy nodes still work.
fn after_request(
    code: Option<ErrorCode>,
    act: impl Fn(&mut RawConn, u64) -> io::Result<()> + Send + Sync + 'static,
) {
    let s = Scene::new(move |c, _| {
        c.handshake(Some(100))?;
        let (id, ..) = c.next_request()?;
        act(c, id)
    });
    s.raw_ready();
    let (r, took) = s.call(b"A", CallOptions::new());
    expect_err(&r, &CallError::OutcomeUnknown, true);
    prompt(took);
    match code {
        Some(code) => s.client_sent_error(code),
        None => {
            let tail = s.tail();
            assert!(tail.is_empty(), "nothing written back: {tail:?}");
        }
    }
    assert_eq!(
        s.spare.rec.count(b"A"),
        0,
        "a call that may have run is not replayed"
    );
    s.healthy_node_works();
}

fn write_raw(c: &mut RawConn, bytes: &[u8]) -> io::Result<()> {
    c.stream.write_all(bytes)
}

#[test]
fn caller_server_answers_garbage() {
    after_request(Some(ErrorCode::UNKNOWN_KIND), |c, _| {
        write_raw(c, b"\xeeHTTP/1.1 400 Bad Request\r\n\r\n")
    });
}

#[test]
fn caller_response_for_an_id_never_sent() {
    after_request(Some(ErrorCode::UNKNOWN_ID), |c, id| {
        c.respond(id + 41, b"who?")
    });
}

#[test]
fn caller_shutdown_reject_for_an_unknown_id() {
    after_request(Some(ErrorCode::UNKNOWN_ID), |c, id| {
        c.reject(id + 1, RejectReason::SHUTTING_DOWN)
    });
}

#[test]
fn caller_response_with_id_zero() {
    after_request(Some(ErrorCode::MALFORMED), |c, _| {
        let mut b = frames::raw_header(0x03, 0, 2, 0);
        b.extend_from_slice(&[0, 0]);
        write_raw(c, &b)
    });
}

#[test]
fn caller_goaway_above_every_id_written() {
    after_request(Some(ErrorCode::UNKNOWN_ID), |c, id| c.goaway(id + 5));
}

#[test]
fn caller_response_header_over_the_maximum() {
    after_request(Some(ErrorCode::TOO_LARGE), |c, id| {
        write_raw(c, &frames::raw_header(0x03, 0, (1 << 20) + 1, id))
    });
}

#[test]
fn caller_request_from_a_server() {
    after_request(Some(ErrorCode::UNEXPECTED_FRAME), |c, id| {
        c.send(Frame::Request(Request {
            id,
            deadline_us: 1000,
            idempotent: false,
            method: "record",
            metadata: gracerpc::proto::frame::Metadata::EMPTY,
            body: b"reversed",
        }))
    });
}

/// The server's ERROR: the client sends nothing back (rule 7) and closes.
#[test]
fn caller_error_frame_from_the_server() {
    after_request(None, |c, id| {
        c.send(Frame::Error(ErrorFrame {
            id,
            code: ErrorCode::MALFORMED,
            message: b"your request offends me",
        }))
    });
}

/// Same garbage, idempotent call: retried on the healthy node, and it succeeds there.
#[test]
fn caller_garbage_with_an_idempotent_call_is_retried_elsewhere() {
    let s = Scene::new(|c, tx| {
        c.handshake(Some(100))?;
        c.next_request()?;
        let _ = tx.send(Seen::Step("read"));
        write_raw(c, &[0xee; 32])
    });
    s.raw_ready();
    let call = s.call_bg(b"I", CallOptions::new().idempotent(true));
    s.step("read");
    s.open_spare();
    let (r, took) = call.join().unwrap();
    let r = r.unwrap_or_else(|e| panic!("the idempotent call must be retried: {e}"));
    assert_eq!(r.node, s.spare.addr);
    assert_eq!(s.spare.rec.count(b"I"), 1);
    assert!(took < DEADLINE, "{took:?}");
    assert_eq!(s.client.stats().retried, 1);
    s.client_sent_error(ErrorCode::UNKNOWN_KIND);
    s.healthy_node_works();
}

/// A RESPONSE repeated for an id already answered is dropped (rule 1): not an error, the
/// connection stays and the next call on it works.
#[test]
fn caller_duplicate_response_is_dropped_and_the_connection_stays() {
    let (hangup_tx, hangup_rx) = crossbeam_channel::bounded::<()>(1);
    let s = Scene::new(move |c, tx| {
        c.handshake(Some(100))?;
        let (id, _, body, _) = c.next_request()?;
        c.respond(id, &body)?;
        c.respond(id, b"again")?;
        let (id, _, body, _) = c.next_request()?;
        c.respond(id, &body)?;
        let _ = tx.send(Seen::Step("answered"));
        // Leave, so that the healthy node gets the next calls.
        hangup_rx.recv_timeout(WAIT).map_err(io::Error::other)?;
        c.stream.shutdown(std::net::Shutdown::Both)
    });
    s.raw_ready();
    for tok in [&b"one"[..], b"two"] {
        let (r, _) = s.call(tok, CallOptions::new());
        let r = r.unwrap_or_else(|e| panic!("call {tok:?}: {e}"));
        assert_eq!((r.node, &r.body[..]), (s.raw.addr, tok));
    }
    assert_eq!(
        s.raw.accepted.load(std::sync::atomic::Ordering::Acquire),
        1,
        "the connection was not dropped"
    );
    s.step("answered");
    hangup_tx.send(()).unwrap();
    s.healthy_node_works();
}

/// GOAWAY(N) then GOAWAY with another N (higher or lower): the first one rejects the ids above
/// N (replayed on the healthy node, run once there); the second is UNEXPECTED_FRAME and the id
/// at or below N, unanswered, ends OutcomeUnknown.
fn second_goaway(first: u64, second: u64) {
    let s = Scene::new(move |c, tx| {
        c.handshake(Some(100))?;
        c.next_request()?;
        let _ = tx.send(Seen::Step("read 1"));
        c.next_request()?;
        c.goaway(first)?;
        let _ = tx.send(Seen::Step("goaway"));
        match c.next()? {
            Got::GoAwayAck(n) if n == first => {}
            other => {
                return Err(io::Error::other(format!(
                    "expected GOAWAY_ACK, got {other:?}"
                )));
            }
        }
        c.goaway(second)
    });
    s.raw_ready();
    let one = s.call_bg(b"one", CallOptions::new());
    s.step("read 1");
    let two = s.call_bg(b"two", CallOptions::new());
    s.step("goaway");
    s.open_spare();
    let (two, _) = two.join().unwrap();
    let two = two.unwrap_or_else(|e| panic!("id 2 > N was rejected: replay it: {e}"));
    assert_eq!(two.node, s.spare.addr);
    assert_eq!(s.spare.rec.count(b"two"), 1);
    let (one, took) = one.join().unwrap();
    expect_err(&one, &CallError::OutcomeUnknown, true);
    assert!(took < DEADLINE, "{took:?}");
    assert_eq!(s.spare.rec.count(b"one"), 0);
    s.client_sent_error(ErrorCode::UNEXPECTED_FRAME);
    s.healthy_node_works();
}

#[test]
fn caller_second_goaway_whose_last_id_goes_up() {
    second_goaway(1, 2);
}

#[test]
fn caller_second_goaway_whose_last_id_goes_down() {
    second_goaway(1, 0);
}

/// A node that fails the handshake never becomes choosable: the call, with nowhere to go,
/// ends NoNodeAvailable at its deadline (never ran), and the client wrote ERROR(`code`).
fn bad_handshake(
    code: ErrorCode,
    act: impl Fn(&mut RawConn) -> io::Result<()> + Send + Sync + 'static,
) {
    let s = Scene::new(move |c, _| {
        match c.next()? {
            Got::Hello => {}
            other => return Err(io::Error::other(format!("expected HELLO, got {other:?}"))),
        }
        act(c)
    });
    let deadline = Duration::from_millis(400);
    let (r, took) = s.call(b"H", CallOptions::new().deadline(deadline));
    match &r {
        Err(CallError::NoNodeAvailable { nodes }) => {
            let addrs: Vec<_> = nodes.iter().map(|n| n.addr).collect();
            assert_eq!(
                addrs,
                [s.raw.addr, s.spare.addr],
                "each node's cause: {nodes:?}"
            );
        }
        other => panic!("expected NoNodeAvailable, got {other:?}"),
    }
    assert!(
        took >= deadline && took < deadline + PROMPT,
        "took {took:?} for a {deadline:?} deadline"
    );
    s.client_sent_error(code);
    assert!(
        s.client
            .table()
            .find(s.raw.addr)
            .is_none_or(|n| !n.state().is_choosable()),
        "{:?}",
        s.client.nodes()
    );
    s.healthy_node_works();
}

#[test]
fn caller_hello_with_a_wrong_version() {
    bad_handshake(ErrorCode::UNSUPPORTED_VERSION, |c| {
        c.send(Frame::Hello(Hello {
            min_version: 2,
            max_version: 3,
            features: 0,
            max_frame: 1 << 20,
        }))
    });
}

#[test]
fn caller_hello_with_a_critical_feature() {
    bad_handshake(ErrorCode::UNSUPPORTED_FEATURE, |c| {
        c.send(Frame::Hello(Hello {
            features: 0x0004_0000,
            ..Hello::ours(1 << 20)
        }))
    });
}

#[test]
fn caller_garbage_instead_of_hello() {
    bad_handshake(ErrorCode::UNKNOWN_KIND, |c| {
        write_raw(c, b"HTTP/1.1 200 OK\r\n\r\n")
    });
}

#[test]
fn caller_ready_with_capacity_zero() {
    bad_handshake(ErrorCode::MALFORMED, |c| {
        c.send(Frame::Hello(Hello::ours(1 << 20)))?;
        let mut b = frames::raw_header(0x09, 0, 1, 0);
        b.push(0);
        write_raw(c, &b)
    });
}

/// A server that reads the request and then says nothing: the call ends at its deadline as
/// DeadlineExceeded, may have run; it does not hang.
#[test]
fn caller_silent_server_ends_at_the_deadline() {
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
    let s = Scene::new(move |c, _| {
        c.handshake(Some(100))?;
        c.next_request()?;
        let _ = stop_rx.recv_timeout(WAIT);
        c.stream.shutdown(std::net::Shutdown::Both)
    });
    s.raw_ready();
    let deadline = Duration::from_millis(400);
    let (r, took) = s.call(b"S", CallOptions::new().deadline(deadline));
    expect_err(
        &r,
        &CallError::DeadlineExceeded { may_have_run: true },
        true,
    );
    assert!(
        took >= deadline && took < deadline + PROMPT,
        "took {took:?} for a {deadline:?} deadline"
    );
    stop_tx.send(()).unwrap();
    s.healthy_node_works();
}

/// A server announcing the smallest max_frame: a call too large for it is refused locally as
/// Invalid (never sent, never ran), and a call that fits works.
#[test]
fn caller_server_with_a_tiny_max_frame() {
    let s = Scene::new(|c, _| {
        match c.next()? {
            Got::Hello => {}
            other => return Err(io::Error::other(format!("expected HELLO, got {other:?}"))),
        }
        c.send(Frame::Hello(Hello::ours(1024)))?;
        c.send(Frame::Ready(gracerpc::proto::frame::Ready {
            capacity: 100,
        }))?;
        let (id, _, body, _) = c.next_request()?;
        c.respond(id, &body)?;
        c.stream.shutdown(std::net::Shutdown::Both)
    });
    s.raw_ready();
    let (r, took) = s.call(&[b'x'; 2000], CallOptions::new());
    match &r {
        Err(e @ CallError::Invalid(_)) => assert!(!e.may_have_run(), "{e:?}"),
        other => panic!("a body over the server's max_frame: {other:?}"),
    }
    prompt(took);
    let (r, _) = s.call(&[b'y'; 1000], CallOptions::new());
    assert_eq!(r.expect("a call that fits").body, vec![b'y'; 1000]);
    s.healthy_node_works();
}

/// A server that floods PINGs: the client answers every one, in order, and its call works.
#[test]
fn caller_ping_flood_from_the_server_is_ponged() {
    const N: u64 = 10_000;
    let s = Scene::new(|c, tx| {
        c.handshake(Some(100))?;
        let mut flood = Vec::with_capacity(16 * N as usize);
        for i in 1..=N {
            flood.extend(frames::ping(i));
        }
        write_raw(c, &flood)?;
        // Read the PONGs (and the request, whenever it comes) by hand.
        let mut pongs = 0u64;
        let mut request = None;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 64 * 1024];
        while pongs < N || request.is_none() {
            let mut at = 0;
            while let Some((f, used)) =
                gracerpc::proto::decode(&buf[at..], 1 << 20).map_err(io::Error::other)?
            {
                match f {
                    Frame::Pong(p) => {
                        pongs += 1;
                        if p.opaque != pongs {
                            return Err(io::Error::other(format!(
                                "PONG {} out of order",
                                p.opaque
                            )));
                        }
                    }
                    Frame::Request(r) => request = Some((r.id, r.body.to_vec())),
                    other => return Err(io::Error::other(format!("unexpected {other:?}"))),
                }
                at += used;
            }
            buf.drain(..at);
            if pongs == N && request.is_some() {
                break;
            }
            let n = std::io::Read::read(&mut c.stream, &mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let _ = tx.send(Seen::Step("ponged"));
        let (id, body) = request.expect("request");
        c.respond(id, &body)?;
        c.stream.shutdown(std::net::Shutdown::Both)
    });
    s.raw_ready();
    let (r, _) = s.call(b"P", CallOptions::new());
    assert_eq!(r.expect("the call during a PING flood").body, b"P");
    s.step("ponged");
    s.healthy_node_works();
}

/// A SHUTDOWN_REJECT with a reason code no version defines still means "never ran": the call
/// is replayed on the healthy node and runs there once.
#[test]
fn caller_reject_with_an_unknown_reason_is_replayed() {
    let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(2);
    let s = Scene::new(move |c, tx| {
        c.handshake(Some(100))?;
        let (id, ..) = c.next_request()?;
        let _ = tx.send(Seen::Step("read"));
        go_rx.recv_timeout(WAIT).map_err(io::Error::other)?;
        c.reject(id, RejectReason(0x00ff))?;
        // Stay connected until told: a node that rejects is not a node that went away (the
        // replay must go elsewhere because the node turned the call away, not because the
        // connection ended under it).
        go_rx.recv_timeout(WAIT).map_err(io::Error::other)?;
        c.stream.shutdown(std::net::Shutdown::Both)
    });
    s.raw_ready();
    let call = s.call_bg(b"R", CallOptions::new());
    s.step("read");
    s.open_spare();
    go_tx.send(()).unwrap();
    let (r, _) = call.join().unwrap();
    let r = r.unwrap_or_else(|e| panic!("a rejected call is replayed: {e}"));
    assert_eq!((r.node, r.replays), (s.spare.addr, 1));
    assert_eq!(s.spare.rec.count(b"R"), 1);
    go_tx.send(()).unwrap();
    s.healthy_node_works();
}

/// A server that writes its RESPONSE one byte per write: the call completes.
#[test]
fn caller_response_dribbled_byte_by_byte_completes() {
    let s = Scene::new(|c, _| {
        c.handshake(Some(100))?;
        let (id, _, body, _) = c.next_request()?;
        let mut b = Vec::new();
        Frame::Response(gracerpc::proto::frame::Response {
            id,
            status: gracerpc::proto::Status::OK,
            body: &body,
        })
        .encode(&mut b);
        for byte in b {
            write_raw(c, &[byte])?;
            std::thread::sleep(Duration::from_millis(1)); // pacing: one segment per byte
        }
        c.stream.shutdown(std::net::Shutdown::Both)
    });
    s.raw_ready();
    let (r, _) = s.call(b"dribbled", CallOptions::new());
    assert_eq!(r.expect("a dribbled RESPONSE").body, b"dribbled");
    s.healthy_node_works();
}

/// A server that accepts and never says a word: the call ends NoNodeAvailable at its deadline,
/// and the client gives the connection up at its HELLO timeout with ERROR HANDSHAKE.
#[test]
fn caller_server_that_never_sends_hello() {
    bad_handshake(ErrorCode::HANDSHAKE, |_| Ok(()));
}
