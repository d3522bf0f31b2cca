//! Frames that are wrong in themselves (kind, flags, reserved bytes, length, body) or wrong from
//! a caller (frames only a server sends, GOAWAY_ACK without GOAWAY, CANCEL for an id never
//! sent), and an ERROR from the caller.

use std::time::Duration;

use gracerpc::proto::frame::{ErrorFrame, GoAway, Ready, Response, ShutdownReject};
use gracerpc::proto::{ErrorCode, Frame, GoAwayReason, Kind, RejectReason, Status};

use crate::common::{MAX_FRAME, Target, echo_ok, encode, expect_error_close};
use crate::peer::{OwnedFrame, QUICK, frames};

#[test]
fn unknown_frame_kind_gets_unknown_kind() {
    let t = Target::start();
    for kind in [0x0c, 0x7f, 0xee, 0xff] {
        let mut p = t.peer();
        p.send_ok(&frames::raw_header(kind, 0, 0, 0), "unknown kind");
        expect_error_close(&mut p, ErrorCode::UNKNOWN_KIND, Some(0));
    }
    t.finish();
}

/// Every bit a kind does not define: on PING, and on REQUEST beside the IDEMPOTENT bit.
#[test]
fn reserved_flags_get_malformed() {
    let t = Target::start();
    let mut ping = frames::ping(1);
    ping[1] = 0x80;
    let mut request = frames::request(1, "count", b"x");
    request[1] = 0x02 | 0x01;
    for (bytes, what) in [(ping, "PING flags 0x80"), (request, "REQUEST flags 0x03")] {
        let mut p = t.peer();
        p.send_ok(&bytes, what);
        expect_error_close(&mut p, ErrorCode::MALFORMED, Some(0));
    }
    assert_eq!(
        t.runs.total(),
        0,
        "the REQUEST with a reserved flag never runs"
    );
    t.finish();
}

#[test]
fn reserved_header_bytes_get_malformed() {
    let t = Target::start();
    for reserved in [[0x00, 0x01], [0x80, 0x00]] {
        let mut p = t.peer();
        let mut bytes = frames::request(1, "count", b"x");
        bytes[2..4].copy_from_slice(&reserved);
        p.send_ok(&bytes, "reserved bytes set");
        expect_error_close(&mut p, ErrorCode::MALFORMED, Some(0));
    }
    assert_eq!(t.runs.total(), 0);
    t.finish();
}

/// Only the 16 header bytes are sent: the refusal cannot wait for the body.
#[test]
fn a_header_over_the_maximum_gets_too_large_from_the_header_alone() {
    let t = Target::start();
    for len in [MAX_FRAME + 1, u32::MAX] {
        let mut p = t.peer();
        p.send_ok(&frames::oversize_request_header(1, len), "oversize header");
        expect_error_close(&mut p, ErrorCode::TOO_LARGE, Some(0));
    }
    // A PING is always empty, but the length check comes first (protocol.md section 2).
    let mut p = t.peer();
    p.send_ok(&frames::raw_header(0x07, 0, MAX_FRAME + 1, 0), "PING");
    expect_error_close(&mut p, ErrorCode::TOO_LARGE, Some(0));
    t.finish();
}

/// Exactly the maximum is allowed.
#[test]
fn a_body_of_exactly_the_maximum_is_answered() {
    let t = Target::start();
    let mut p = t.peer();
    let payload = vec![b'm'; MAX_FRAME as usize - 5 - 4];
    let req = frames::request(1, "echo", &payload);
    assert_eq!(req.len(), 16 + MAX_FRAME as usize);
    p.send_ok(&req, "REQUEST of max_frame");
    let got = p.collect_answers(&[1], QUICK);
    assert!(
        matches!(&got[&1], OwnedFrame::Response { status: Status::OK, body, .. } if *body == payload)
    );
    p.close_and_expect_eof(QUICK, "close");
    t.finish();
}

#[test]
fn non_empty_ping_gets_malformed() {
    let t = Target::start();
    let mut p = t.peer();
    let mut bytes = frames::raw_header(0x07, 0, 3, 9);
    bytes.extend_from_slice(b"abc");
    p.send_ok(&bytes, "PING with a body");
    expect_error_close(&mut p, ErrorCode::MALFORMED, Some(0));
    t.finish();
}

/// A frame only a server may send, from a caller: ERROR UNEXPECTED_FRAME on that connection —
/// and the server neither drains nor stops: another connection, open throughout, sees no GOAWAY
/// and keeps being answered, and `shutdown()` later still drains cleanly.
fn server_frame_from_a_caller(bytes: Vec<u8>, what: &str) {
    let t = Target::start();
    let mut bystander = t.peer();
    echo_ok(&mut bystander, 1, b"before");
    let mut p = t.peer();
    p.send_ok(&bytes, what);
    let before = expect_error_close(&mut p, ErrorCode::UNEXPECTED_FRAME, Some(0));
    assert!(before.is_empty(), "{what}: {before:?}");
    bystander.expect_silence(Duration::from_millis(100), "no GOAWAY to a bystander");
    echo_ok(&mut bystander, 2, b"after");
    assert!(
        t.server().connections() >= 1,
        "the server must still be up after {what}"
    );
    bystander.close_and_expect_eof(QUICK, "bystander close");
    t.finish();
}

#[test]
fn response_from_a_caller_gets_unexpected_frame_and_no_drain() {
    server_frame_from_a_caller(
        encode(Frame::Response(Response {
            id: 1,
            status: Status::OK,
            body: b"forged",
        })),
        "RESPONSE",
    );
}

#[test]
fn goaway_from_a_caller_gets_unexpected_frame_and_no_drain() {
    server_frame_from_a_caller(
        encode(Frame::GoAway(GoAway {
            last_accepted: 0,
            drain_budget_ms: 0,
            reason: GoAwayReason::SHUTDOWN,
        })),
        "GOAWAY",
    );
}

#[test]
fn ready_from_a_caller_gets_unexpected_frame_and_no_drain() {
    server_frame_from_a_caller(encode(Frame::Ready(Ready { capacity: 1 })), "READY");
}

#[test]
fn shutdown_reject_from_a_caller_gets_unexpected_frame_and_no_drain() {
    server_frame_from_a_caller(
        encode(Frame::ShutdownReject(ShutdownReject {
            id: 1,
            reason: RejectReason::SHUTTING_DOWN,
        })),
        "SHUTDOWN_REJECT",
    );
}

#[test]
fn goaway_ack_without_goaway_gets_unexpected_frame() {
    let t = Target::start();
    let mut p = t.peer();
    p.send_ok(&frames::goaway_ack(0), "GOAWAY_ACK");
    expect_error_close(&mut p, ErrorCode::UNEXPECTED_FRAME, Some(0));
    t.finish();
}

#[test]
fn cancel_for_an_id_never_sent_gets_unknown_id() {
    let t = Target::start();
    let mut p = t.peer();
    echo_ok(&mut p, 1, b"one");
    p.send_ok(&frames::cancel(2), "CANCEL(2)");
    expect_error_close(&mut p, ErrorCode::UNKNOWN_ID, Some(2));
    t.finish();
}

/// CANCEL for an id already answered is a late hint: ignored, the connection stays.
#[test]
fn cancel_for_an_answered_id_is_ignored() {
    let t = Target::start();
    let mut p = t.peer();
    echo_ok(&mut p, 1, b"one");
    p.send_ok(&frames::cancel(1), "CANCEL(1)");
    echo_ok(&mut p, 2, b"two");
    p.close_and_expect_eof(QUICK, "close");
    t.finish();
}

#[test]
fn cancel_with_id_zero_gets_malformed() {
    let t = Target::start();
    let mut p = t.peer();
    p.send_ok(&frames::cancel(0), "CANCEL(0)");
    expect_error_close(&mut p, ErrorCode::MALFORMED, Some(0));
    t.finish();
}

/// An ERROR from the caller: the server sends nothing back (no ERROR for an ERROR), shuts its
/// write side, and closes once the caller does.
#[test]
fn error_from_a_caller_gets_no_error_back_and_a_clean_close() {
    let t = Target::start();
    let mut p = t.peer();
    p.send_ok(
        &encode(Frame::Error(ErrorFrame {
            id: 0,
            code: ErrorCode::MALFORMED,
            message: b"you are wrong",
        })),
        "ERROR",
    );
    let got = p.read_to_eof(QUICK, "the server's FIN after our ERROR");
    assert!(got.is_empty(), "nothing but FIN: {got:?}");
    p.shutdown_write();
    t.finish();
}

/// A frame kind the server knows but that only makes sense in the other direction is never
/// mistaken for its own: PONG without PING is simply proof of life.
#[test]
fn unsolicited_pong_is_ignored() {
    let t = Target::start();
    let mut p = t.peer();
    p.send_ok(&frames::raw_header(Kind::PONG.0, 0, 0, 77), "PONG");
    echo_ok(&mut p, 1, b"still here");
    p.close_and_expect_eof(QUICK, "close");
    t.finish();
}
