//! Answers a driver writes itself, outside the core's output (`ServerConn::answer_encoder`,
//! `respond_elsewhere`, `finished_elsewhere`): the server's workers write theirs straight to
//! plaintext sockets. The core must still answer each id at most once, encode them as it
//! encodes its own, count them finished only when the driver says so, and offer no encoder
//! while answers cannot go out.

use std::time::{Duration, Instant};

use gracerpc::proto::frame::{FEATURE_REFUSALS, Hello, Metadata, Request};
use gracerpc::proto::{
    ApiMisuse, CloseAction, Frame, GoAwayReason, Incoming, ServerConn, ServerConnConfig, Status,
    decode,
};

fn hello(features: u32, max_frame: u32) -> Frame<'static> {
    Frame::Hello(Hello {
        features,
        ..Hello::ours(max_frame)
    })
}

/// A server connection past its caller's HELLO, its own output written, with request 1
/// accepted.
fn open(now: Instant, features: u32, max_frame: u32) -> ServerConn {
    let mut s = ServerConn::new(now, ServerConnConfig::default());
    s.set_ready(Some(100));
    assert!(
        s.answer_encoder().is_none(),
        "no encoder before the caller's HELLO"
    );
    s.handle_frame(now, hello(features, max_frame))
        .expect("hello");
    let n = s.out().len();
    s.written(n);
    let req = Frame::Request(Request {
        id: 1,
        deadline_us: 1_000_000,
        idempotent: false,
        method: "m",
        metadata: Metadata::EMPTY,
        body: b"",
    });
    let Ok(Incoming::Request(acc)) = s.handle_frame(now, req) else {
        panic!("request not accepted");
    };
    assert_eq!(acc.id, 1);
    s
}

/// The one RESPONSE in `bytes`: its status and body.
fn response(bytes: &[u8]) -> (Status, Vec<u8>) {
    match decode(bytes, u32::MAX) {
        Ok(Some((Frame::Response(r), used))) if used == bytes.len() => (r.status, r.body.to_vec()),
        other => panic!("not one RESPONSE: {other:?}"),
    }
}

#[test]
fn an_answer_given_elsewhere_is_given_once_and_finished_when_the_driver_says() {
    let now = Instant::now();
    let mut s = open(now, FEATURE_REFUSALS, 1 << 20);
    let enc = s
        .answer_encoder()
        .expect("an open connection has an encoder");
    let mut wire = Vec::new();
    enc.encode(1, Status::OK, b"done", &mut wire);
    assert_eq!(response(&wire), (Status::OK, b"done".to_vec()));

    s.respond_elsewhere(1).expect("pending");
    assert!(s.out().is_empty(), "the core writes nothing for it");
    assert_eq!(s.pending(), 0);
    // Never a second answer, by either path.
    assert!(matches!(
        s.respond_elsewhere(1),
        Err(ApiMisuse::NotPending(1))
    ));
    assert!(matches!(
        s.respond(1, Status::OK, b"again"),
        Err(ApiMisuse::NotPending(1))
    ));
    assert_eq!(
        s.take_finished_answers(),
        0,
        "not finished until the driver says"
    );
    s.finished_elsewhere(1);
    assert_eq!(s.take_finished_answers(), 1);
}

#[test]
fn the_encoder_puts_the_same_bytes_on_the_wire_as_respond() {
    let now = Instant::now();
    for features in [0, FEATURE_REFUSALS] {
        for (status, body) in [
            (Status::OK, &b"done"[..]),
            (Status::REFUSED_UNKNOWN_METHOD, b"no such method"),
            (Status(0x123), b""),
            (Status::OK, &[9; 100][..]), // over the caller's max_frame below
        ] {
            let mut s = open(now, features, 64);
            let enc = s.answer_encoder().expect("encoder");
            s.respond(1, status, body).expect("respond");
            let mut wire = Vec::new();
            enc.encode(1, status, body, &mut wire);
            assert_eq!(wire, s.out(), "{status} with features {features:#x}");
        }
    }
}

#[test]
fn the_encoder_encodes_as_the_core_does() {
    let now = Instant::now();
    // A caller without REFUSALS gets the v1 status it never replays.
    let s = open(now, 0, 1 << 20);
    let mut wire = Vec::new();
    s.answer_encoder()
        .expect("encoder")
        .encode(1, Status::REFUSED_UNKNOWN_METHOD, b"x", &mut wire);
    assert_eq!(
        response(&wire).0,
        Status::REFUSED_UNKNOWN_METHOD.v1_fallback()
    );
    // An answer larger than the caller accepts becomes INTERNAL, naming both sizes.
    let s = open(now, FEATURE_REFUSALS, 64);
    let mut wire = Vec::new();
    s.answer_encoder()
        .expect("encoder")
        .encode(1, Status::OK, &[7; 100], &mut wire);
    let (status, body) = response(&wire);
    assert_eq!(status, Status::INTERNAL);
    let msg = String::from_utf8(body).expect("text");
    assert!(msg.contains("102") && msg.contains("64"), "{msg}");
}

#[test]
fn no_encoder_once_answers_cannot_go_out() {
    let now = Instant::now();
    // Failing (a broken rule): after our ERROR no answer may follow.
    let mut s = open(now, FEATURE_REFUSALS, 1 << 20);
    let stray = Frame::Response(gracerpc::proto::frame::Response {
        id: 1,
        status: Status::OK,
        body: b"",
    });
    assert!(
        s.handle_frame(now, stray).is_err(),
        "a server never gets RESPONSE"
    );
    assert!(s.answer_encoder().is_none(), "failing");
    // The drain budget spent: the write side is shut.
    let mut s = open(now, FEATURE_REFUSALS, 1 << 20);
    s.start_drain(now, Duration::from_millis(10), GoAwayReason::SHUTDOWN);
    assert!(
        s.answer_encoder().is_some(),
        "draining: answers still go out"
    );
    let n = s.out().len();
    s.written(n);
    let later = now + Duration::from_millis(20);
    s.handle_timeout(later);
    assert_eq!(s.poll_close(later), Some(CloseAction::ShutdownWrite));
    assert!(s.answer_encoder().is_none(), "the write side is shut");
}
