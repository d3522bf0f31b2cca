//! Refusals, "not run, final" (protocol.md §3.3 REFUSALS, §6.2), in the sans-IO core: the
//! caller classifies a refusal status as `Outcome::Refused` only when both HELLOs set the
//! feature bit, and the server sends a refusal only to a caller that set it (a v1 caller gets
//! the v1 status it never replays).

use std::time::{Duration, Instant};

use gracerpc::proto::frame::{FEATURE_REFUSALS, Hello, Ready, Response};
use gracerpc::proto::{
    ClientConn, ClientConnConfig, ClientEvent, Frame, Incoming, Outcome, ServerConn,
    ServerConnConfig, Status, decode,
};

fn hello(features: u32) -> Frame<'static> {
    Frame::Hello(Hello {
        features,
        ..Hello::ours(1 << 20)
    })
}

/// A caller whose peer's HELLO set `features`, with one request sent; returns it and the id.
fn caller(now: Instant, features: u32) -> (ClientConn, u64) {
    let mut c = ClientConn::new(now, ClientConnConfig::default());
    c.handle_frame(now, hello(features)).expect("hello");
    c.handle_frame(now, Frame::Ready(Ready { capacity: 100 }))
        .expect("ready");
    let id = c
        .send_request(
            now,
            "calc.add",
            b"x",
            now + Duration::from_secs(1),
            false,
            7,
        )
        .expect("send");
    let n = c.out_len();
    c.written(n);
    (c, id)
}

fn outcome(c: &mut ClientConn) -> Outcome {
    while let Some(e) = c.poll_event() {
        if let ClientEvent::Resolved { outcome, .. } = e {
            return outcome;
        }
    }
    panic!("no outcome");
}

#[test]
fn caller_classifies_refusals_only_when_negotiated() {
    let now = Instant::now();
    for status in [
        Status::REFUSED_UNKNOWN_METHOD,
        Status::REFUSED_BAD_BODY,
        Status::REFUSED_NOT_IDEMPOTENT,
        Status::REFUSED_PERMISSION_DENIED,
        Status(0x7f), // unnamed, in the range: a refusal all the same
    ] {
        let (mut c, id) = caller(now, FEATURE_REFUSALS);
        let r = Frame::Response(Response {
            id,
            status,
            body: b"why",
        });
        c.handle_frame(now, r).expect("response");
        assert_eq!(
            outcome(&mut c),
            Outcome::Refused {
                status,
                body: b"why".to_vec()
            }
        );
        // A server that did not set the bit: the same status is an ordinary, "ran" one.
        let (mut c, id) = caller(now, 0);
        c.handle_frame(now, r_with(id, status)).expect("response");
        assert!(
            matches!(outcome(&mut c), Outcome::Completed { status: s, .. } if s == status),
            "{status} without REFUSALS"
        );
    }
    // Outside the range nothing is a refusal.
    for status in [Status::UNKNOWN_METHOD, Status::APP_ERROR, Status(0x80)] {
        let (mut c, id) = caller(now, FEATURE_REFUSALS);
        c.handle_frame(now, r_with(id, status)).expect("response");
        assert!(matches!(outcome(&mut c), Outcome::Completed { .. }));
    }
}

fn r_with(id: u64, status: Status) -> Frame<'static> {
    Frame::Response(Response {
        id,
        status,
        body: b"why",
    })
}

/// The status the server core writes for a refusal, to a caller that sent `features`.
fn server_sends(features: u32, status: Status) -> Status {
    let now = Instant::now();
    let mut s = ServerConn::new(now, ServerConnConfig::default());
    s.set_ready(Some(100));
    s.handle_frame(now, hello(features)).expect("hello");
    let req = Frame::Request(gracerpc::proto::frame::Request {
        id: 1,
        deadline_us: 1_000_000,
        idempotent: true,
        method: "calc.add",
        metadata: gracerpc::proto::frame::Metadata::EMPTY,
        body: b"",
    });
    let Ok(Incoming::Request(acc)) = s.handle_frame(now, req) else {
        panic!("request not accepted");
    };
    let id = acc.id;
    s.respond(id, status, b"detail").expect("respond");
    let mut out = s.out().to_vec();
    let mut last = None;
    while let Ok(Some((f, used))) = decode(&out, 1 << 20) {
        if let Frame::Response(r) = f {
            last = Some(r.status);
        }
        out.drain(..used);
    }
    last.expect("a RESPONSE was written")
}

#[test]
fn server_sends_refusals_only_to_callers_that_negotiated_them() {
    for status in [
        Status::REFUSED_UNKNOWN_METHOD,
        Status::REFUSED_BAD_BODY,
        Status::REFUSED_NOT_IDEMPOTENT,
        Status::REFUSED_PERMISSION_DENIED,
    ] {
        assert_eq!(server_sends(FEATURE_REFUSALS, status), status);
        assert_eq!(server_sends(0, status), status.v1_fallback(), "{status}");
    }
    assert_eq!(
        server_sends(0, Status::REFUSED_UNKNOWN_METHOD),
        Status::UNKNOWN_METHOD
    );
    // Ordinary statuses pass unchanged either way.
    assert_eq!(server_sends(0, Status(0x123)), Status(0x123));
    assert_eq!(server_sends(FEATURE_REFUSALS, Status::OK), Status::OK);
}
