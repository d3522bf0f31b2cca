//! REQUESTs that are wrong: ids (repeated, backwards, 0, exhausted), method names (empty, past
//! the body, not UTF-8, unknown), deadlines (zero, far away).

use std::time::Duration;

use gracerpc::proto::{ErrorCode, RejectReason, Status};

use crate::common::{Target, echo_ok, expect_error_close, raw_request};
use crate::peer::{OwnedFrame, QUICK, frames};

#[test]
fn a_repeated_request_id_gets_id_order_after_the_first_is_answered() {
    let t = Target::start();
    let mut p = t.peer();
    let mut bytes = frames::request(5, "echo", b"a");
    bytes.extend(frames::request(5, "echo", b"b"));
    p.send_ok(&bytes, "id 5 twice");
    let before = expect_error_close(&mut p, ErrorCode::ID_ORDER, Some(5));
    assert_eq!(
        before,
        vec![OwnedFrame::Response {
            id: 5,
            status: Status::OK,
            body: b"a".to_vec()
        }]
    );
    t.finish();
}

#[test]
fn request_ids_going_backwards_get_id_order_and_never_run() {
    let t = Target::start();
    let mut p = t.peer();
    p.send_request(10, "count", b"ten");
    p.collect_answers(&[10], QUICK);
    p.send_request(3, "count", b"three");
    expect_error_close(&mut p, ErrorCode::ID_ORDER, Some(3));
    assert_eq!((t.runs.count(10), t.runs.count(3)), (1, 0));
    t.finish();
}

/// Gaps are allowed: only order matters.
#[test]
fn request_ids_with_gaps_are_answered() {
    let t = Target::start();
    let mut p = t.peer();
    for id in [1, 1_000, 1 << 40, u64::MAX - 1] {
        echo_ok(&mut p, id, b"gap");
    }
    p.close_and_expect_eof(QUICK, "close");
    t.finish();
}

#[test]
fn request_id_zero_gets_malformed() {
    let t = Target::start();
    let mut p = t.peer();
    p.send_ok(&frames::request(0, "count", b"zero"), "REQUEST id 0");
    expect_error_close(&mut p, ErrorCode::MALFORMED, Some(0));
    assert_eq!(t.runs.total(), 0);
    t.finish();
}

/// The last id, u64::MAX, is accepted; nothing can follow it: the same id again, or any lower
/// one, is ID_ORDER.
#[test]
fn id_space_exhausted_max_is_answered_then_any_id_gets_id_order() {
    let t = Target::start();
    for next in [u64::MAX, 1] {
        let mut p = t.peer();
        echo_ok(&mut p, u64::MAX, b"last id");
        p.send_request(next, "count", b"after the last");
        expect_error_close(&mut p, ErrorCode::ID_ORDER, Some(next));
    }
    assert_eq!(t.runs.total(), 0);
    t.finish();
}

#[test]
fn an_empty_method_name_gets_malformed() {
    let t = Target::start();
    let mut p = t.peer();
    p.send_ok(&raw_request(1, 0, 0, b"", b"payload"), "method_len 0");
    expect_error_close(&mut p, ErrorCode::MALFORMED, Some(0));
    t.finish();
}

#[test]
fn a_method_name_longer_than_the_body_gets_malformed() {
    let t = Target::start();
    let mut p = t.peer();
    p.send_ok(
        &raw_request(1, 0, 200, b"count", b""),
        "method_len 200, 5 bytes",
    );
    expect_error_close(&mut p, ErrorCode::MALFORMED, Some(0));
    assert_eq!(t.runs.total(), 0);
    t.finish();
}

#[test]
fn a_method_name_not_utf8_gets_malformed() {
    let t = Target::start();
    let mut p = t.peer();
    let method = [b'c', 0xff, 0xfe, b't'];
    p.send_ok(&raw_request(1, 0, 4, &method, b"x"), "method not UTF-8");
    expect_error_close(&mut p, ErrorCode::MALFORMED, Some(0));
    t.finish();
}

#[test]
fn a_request_body_shorter_than_its_fixed_fields_gets_malformed() {
    let t = Target::start();
    let mut p = t.peer();
    let mut bytes = frames::raw_header(0x02, 0, 3, 1);
    bytes.extend_from_slice(&[0, 0, 1]);
    p.send_ok(&bytes, "REQUEST of 3 bytes");
    expect_error_close(&mut p, ErrorCode::MALFORMED, Some(0));
    t.finish();
}

/// A typed status, not a close: the connection keeps working, also with the longest name. The
/// peer's HELLO sets REFUSALS, so the status is the refusal (not run, final); a v1 peer gets
/// UNKNOWN_METHOD (tests/core_refusals.rs, tests/server_inline.rs).
#[test]
fn an_unknown_method_gets_a_refusal_and_the_connection_stays() {
    let t = Target::start();
    let mut p = t.peer();
    let long = "n".repeat(255);
    for (id, method) in [(1, "no-such-method"), (2, long.as_str())] {
        p.send_request(id, method, b"x");
        match &p.collect_answers(&[id], QUICK)[&id] {
            OwnedFrame::Response { status, .. } => {
                assert_eq!(*status, Status::REFUSED_UNKNOWN_METHOD)
            }
            other => panic!("{other:?}"),
        }
    }
    echo_ok(&mut p, 3, b"still open");
    p.close_and_expect_eof(QUICK, "close");
    t.finish();
}

/// Deadline 0: rejected unrun (DEADLINE), the connection stays.
#[test]
fn a_zero_deadline_is_rejected_deadline_and_never_runs() {
    let t = Target::start();
    let mut p = t.peer();
    p.send_ok(
        &frames::request_with(1, "count", b"dead", 0, false),
        "deadline 0",
    );
    let got = p.collect_answers(&[1], QUICK);
    assert_eq!(
        got[&1],
        OwnedFrame::Reject {
            id: 1,
            reason: RejectReason::DEADLINE
        }
    );
    echo_ok(&mut p, 2, b"alive");
    p.close_and_expect_eof(QUICK, "close");
    assert_eq!(t.runs.total(), 0, "a zero deadline never runs");
    t.finish();
}

/// u32::MAX µs (71 minutes) runs normally.
#[test]
fn a_far_future_deadline_runs_normally() {
    let t = Target::start();
    let mut p = t.peer();
    p.send_ok(
        &frames::request_with(1, "count", b"far", u32::MAX, true),
        "deadline u32::MAX",
    );
    let got = p.collect_answers(&[1], QUICK);
    assert_eq!(
        got[&1],
        OwnedFrame::Response {
            id: 1,
            status: Status::OK,
            body: b"far".to_vec()
        }
    );
    p.close_and_expect_eof(QUICK, "close");
    assert_eq!(t.runs.count(1), 1);
    t.finish();
}

/// A deadline that passes while the request waits for a worker: rejected unrun.
#[test]
fn a_deadline_that_passes_in_the_queue_is_rejected_unrun() {
    let t = Target::start_with(|b| b.workers(1));
    let mut p = t.peer();
    p.send_request(1, "slow", b"300");
    p.send_ok(
        &frames::request_with(2, "count", b"late", 50_000, false),
        "50 ms deadline behind a 300 ms job",
    );
    let got = p.collect_answers(&[1, 2], Duration::from_secs(5));
    assert_eq!(
        got[&2],
        OwnedFrame::Reject {
            id: 2,
            reason: RejectReason::DEADLINE
        }
    );
    assert!(matches!(
        got[&1],
        OwnedFrame::Response {
            status: Status::OK,
            ..
        }
    ));
    p.close_and_expect_eof(QUICK, "close");
    assert_eq!(t.runs.total(), 0);
    t.finish();
}

/// Garbage while a request runs on a worker: ERROR at once, the request still runs to its end,
/// its answer goes nowhere (after ERROR no RESPONSE is written), and the counters return to 0.
#[test]
fn garbage_while_a_request_runs_drops_its_answer_and_settles() {
    let t = Target::start();
    let mut p = t.peer();
    let mut bytes = frames::request(1, "slow", b"200");
    bytes.extend_from_slice(&[0xee; 16]);
    p.send_ok(&bytes, "a slow request, then garbage");
    let before = expect_error_close(&mut p, ErrorCode::UNKNOWN_KIND, Some(0));
    assert!(
        before.is_empty(),
        "no RESPONSE before or after ERROR: {before:?}"
    );
    t.finish();
}
