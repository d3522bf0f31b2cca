//! What every hostile-input case shares: a server with short timeouts, the after-case check (a
//! fresh connection still gets a normal answer, and the server's counters return to 0), the
//! "ERROR(code) then a clean close" assertion, and a few hand-built byte strings the frame
//! builders in `support/frames.rs` deliberately cannot produce.
//!
//! Included by the `hostile` test binaries as `mod common;` (next to `mod peer;`).
#![allow(dead_code)]

use std::time::{Duration, Instant};

use gracerpc::proto::frame::Hello;
use gracerpc::proto::{ErrorCode, Frame, Status};
use gracerpc::server::{Builder, DrainReport, Failure, Request, Server, ServerHandle};

use crate::peer::{self, Executions, OwnedFrame, Peer, QUICK, connect_ready, frames};

/// The server's maximum frame body in these tests (small, so TOO_LARGE is cheap to provoke).
pub const MAX_FRAME: u32 = 4096;
/// The server's linger after it shuts its write side.
pub const LINGER: Duration = Duration::from_millis(500);

/// A server under attack, with what its handlers ran.
pub struct Target {
    server: Option<ServerHandle>,
    /// Executions of the `count` method, per request id.
    pub runs: Executions,
}

/// The builder every case starts from:
/// * `echo` (inline): echoes its body;
/// * `count` (worker): records the run in [`Target::runs`], echoes;
/// * `slow` (worker): sleeps the milliseconds in its body (at most 2 s), echoes.
pub fn builder(runs: &Executions) -> Builder {
    Server::builder()
        .workers(2)
        .max_frame(MAX_FRAME)
        .drain_budget(Duration::from_secs(3))
        .linger(LINGER)
        .hello_timeout(Duration::from_secs(5))
        .inline_handler("echo", |r: &Request<'_>| Ok(r.body.to_vec()))
        .handler("count", runs.echo_handler())
        .handler("slow", |r: &Request<'_>| {
            let ms: u64 = std::str::from_utf8(r.body)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| Failure::new(Status::INVALID_ARGUMENT, "body: millis"))?;
            std::thread::sleep(Duration::from_millis(ms.min(2000)));
            Ok(r.body.to_vec())
        })
}

impl Target {
    /// A server with the defaults of [`builder`].
    pub fn start() -> Target {
        Target::start_with(|b| b)
    }

    /// A server from [`builder`] adjusted by `tweak`.
    pub fn start_with(tweak: impl FnOnce(Builder) -> Builder) -> Target {
        let runs = Executions::default();
        let server = tweak(builder(&runs)).spawn().expect("spawn the server");
        Target {
            server: Some(server),
            runs,
        }
    }

    pub fn server(&self) -> &ServerHandle {
        self.server.as_ref().expect("server stopped")
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.server().local_addr()
    }

    /// A fresh, handshaken connection.
    pub fn peer(&self) -> Peer {
        connect_ready(self.addr())
    }

    /// A connection with nothing sent yet.
    pub fn raw(&self) -> Peer {
        Peer::connect(self.addr()).unwrap_or_else(|e| panic!("connect: {e}"))
    }

    /// The after-case check: a new connection gets a normal answer, then closes cleanly.
    pub fn still_serves(&self) {
        let mut p = self.peer();
        echo_ok(&mut p, 1, b"still serving");
        let rest = p.close_and_expect_eof(QUICK, "the check connection's close");
        assert!(rest.is_empty(), "unexpected frames at close: {rest:?}");
    }

    /// Waits until every connection is gone and nothing is in flight.
    pub fn settles(&self) {
        let s = self.server();
        peer::wait_until(
            QUICK,
            "connections() and in_flight() to return to 0",
            || s.connections() == 0 && s.in_flight() == 0,
        );
    }

    /// Ends a case: the server still serves, settles to zero, and then drains cleanly.
    pub fn finish(mut self) -> DrainReport {
        self.still_serves();
        self.settles();
        let server = self.server.take().expect("server");
        server.shutdown();
        let (report, _server) = peer::wait_report(server, QUICK);
        assert!(report.clean, "the drain after the case: {report:?}");
        assert_eq!(report.abandoned, 0, "{report:?}");
        report
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
    }
}

/// Sends `echo` with `body` as request `id` and asserts the RESPONSE.
pub fn echo_ok(p: &mut Peer, id: u64, body: &[u8]) {
    p.send_request(id, "echo", body);
    let got = p.collect_answers(&[id], QUICK);
    assert_eq!(
        got[&id],
        OwnedFrame::Response {
            id,
            status: Status::OK,
            body: body.to_vec()
        }
    );
}

/// Reads to the server's FIN and asserts that the last frame is the one ERROR, with `code` (and
/// `id`, when given). A reset instead of the FIN fails the read. Then closes our side, so the
/// server can close without unread input (rule 4). Returns the frames before the ERROR.
pub fn expect_error_close(p: &mut Peer, code: ErrorCode, id: Option<u64>) -> Vec<OwnedFrame> {
    let mut got = p.read_to_eof(QUICK, &format!("ERROR {code} then the server's FIN"));
    let last = got.pop();
    match &last {
        Some(OwnedFrame::Error { code: c, id: i, .. }) => {
            assert_eq!(*c, code, "ERROR code; frames before: {got:?}");
            if let Some(id) = id {
                assert_eq!(*i, id, "ERROR id");
            }
        }
        other => panic!("expected ERROR {code} as the last frame, got {other:?} after {got:?}"),
    }
    assert!(
        !got.iter().any(|f| matches!(f, OwnedFrame::Error { .. })),
        "exactly one ERROR: {got:?}"
    );
    p.shutdown_write();
    got
}

/// Like [`expect_error_close`] on a connection that sent no HELLO: the server's HELLO comes
/// first, and nothing else before the ERROR.
pub fn expect_handshake_refused(p: &mut Peer, code: ErrorCode) {
    let before = expect_error_close(p, code, Some(0));
    assert!(
        matches!(before.as_slice(), [OwnedFrame::Hello { .. }]),
        "only the server's HELLO before ERROR {code}: {before:?}"
    );
}

/// The bytes of one frame.
pub fn encode(f: Frame<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    f.encode(&mut out);
    out
}

/// A HELLO with every field chosen (the encoder does not check them).
pub fn hello_with(min_version: u16, max_version: u16, features: u32, max_frame: u32) -> Vec<u8> {
    encode(Frame::Hello(Hello {
        min_version,
        max_version,
        features,
        max_frame,
    }))
}

/// A HELLO spelled out byte by byte: header id and the whole body chosen.
pub fn raw_hello(id: u64, body: &[u8]) -> Vec<u8> {
    let mut b = frames::raw_header(0x01, 0, body.len() as u32, id);
    b.extend_from_slice(body);
    b
}

/// A valid HELLO body (magic, 1..=1, no features, 1 MiB).
pub fn hello_body() -> Vec<u8> {
    frames::hello()[16..].to_vec()
}

/// A REQUEST spelled out: any flags, method bytes and method length byte.
pub fn raw_request(id: u64, flags: u8, method_len: u8, method: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&30_000_000u32.to_be_bytes());
    body.push(method_len);
    body.extend_from_slice(method);
    body.extend_from_slice(payload);
    let mut b = frames::raw_header(0x02, flags, body.len() as u32, id);
    b.extend_from_slice(&body);
    b
}

/// Resident set size of this process, from /proc/self/status (0 where unavailable).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Runs `f` and returns how long it took.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t0 = Instant::now();
    let v = f();
    (v, t0.elapsed())
}
