//! Output lent to a writer (`ClientConn::lend_out`): the caller's link copies the output and
//! sends it with its lock released, so while the syscall runs the core must treat every lent
//! frame as possibly written. Each test names what would break without that: an answer (or a
//! GOAWAY) that outruns the writer's report is a protocol error, and a deadline, GOAWAY or
//! failure meanwhile would call a request "never sent" that is already on the wire.

#[path = "support/core.rs"]
mod core_support;

use std::time::{Duration, Instant};

use core_support::{frames, open_client};
use gracerpc::proto::frame::{GoAway, Response};
use gracerpc::proto::{ClientConn, ClientEvent, Frame, GoAwayReason, Outcome, Status, decode};

/// GOAWAY accepting ids up to `last_accepted`.
fn goaway(last_accepted: u64) -> Frame<'static> {
    Frame::GoAway(GoAway {
        last_accepted,
        drain_budget_ms: 1000,
        reason: GoAwayReason::SHUTDOWN,
    })
}

/// The length of the first frame in `c`'s output (request `a` of [`lent_pair`]).
fn first_frame_len(c: &ClientConn) -> usize {
    decode(c.out(), u32::MAX)
        .expect("our own frame")
        .expect("a whole frame")
        .1
}

fn outcomes(c: &mut ClientConn) -> Vec<(u64, Outcome)> {
    let mut v = Vec::new();
    while let Some(ev) = c.poll_event() {
        if let ClientEvent::Resolved { id, outcome, .. } = ev {
            v.push((id, outcome));
        }
    }
    v
}

/// Two requests queued and lent to a writer; the core does not know yet what went out.
fn lent_pair(now: Instant, deadline: Instant) -> (ClientConn, u64, u64, usize) {
    let mut c = open_client(now);
    let a = c.send_request(now, "m", b"a", deadline, false, 0).unwrap();
    let b = c.send_request(now, "m", b"b", deadline, false, 0).unwrap();
    let lent = c.lend_out().len();
    (c, a, b, lent)
}

/// The server can answer a lent request before the writer's `send` returns (loopback is that
/// fast): that answer is no protocol error and completes the call.
#[test]
fn an_answer_to_a_lent_request_completes_it() {
    let now = Instant::now();
    let (mut c, _a, b, lent) = lent_pair(now, now + Duration::from_secs(5));
    let mut bytes = Vec::new();
    Frame::Response(Response {
        id: b,
        status: Status::OK,
        body: b"ok",
    })
    .encode(&mut bytes);
    let f = frames(&bytes)[0];
    c.handle_frame(now, f)
        .expect("an answer for a lent request is not an error");
    assert!(!c.is_closed());
    c.written(lent);
    let got = outcomes(&mut c);
    assert!(
        matches!(got.as_slice(), [(id, Outcome::Completed { .. })] if *id == b),
        "{got:?}"
    );
}

/// A GOAWAY may accept a lent request: that is no "id never written" violation.
#[test]
fn a_goaway_may_accept_a_lent_request() {
    let now = Instant::now();
    let (mut c, a, _b, lent) = lent_pair(now, now + Duration::from_secs(5));
    let g = goaway(a);
    c.handle_frame(now, g)
        .expect("GOAWAY accepting a lent request is not an error");
    assert!(c.is_draining());
    c.written(lent);
    assert!(!c.is_closed(), "request {a} is still owed an answer");
}

/// A deadline that passes while the frames are lent resolves them as sent: they may be on
/// the wire, so "not sent" (which lets a caller replay a non-idempotent request) would lie.
#[test]
fn a_deadline_during_the_loan_resolves_as_sent() {
    let now = Instant::now();
    let (mut c, a, b, _lent) = lent_pair(now, now + Duration::from_millis(10));
    c.handle_timeout(now + Duration::from_millis(20));
    let got = outcomes(&mut c);
    for id in [a, b] {
        assert!(
            got.contains(&(id, Outcome::DeadlineExceeded { sent: true })),
            "request {id}: {got:?}"
        );
    }
    // The lent frames were not cut: the writer's bytes match what the core still holds.
    let still = frames(c.out()).len();
    assert!(still >= 2, "lent frames were cut ({still} left)");
}

/// The connection failing while frames are lent: their requests are unknown, not "not sent".
#[test]
fn a_failure_during_the_loan_leaves_lent_requests_unknown() {
    let now = Instant::now();
    let (mut c, a, b, _lent) = lent_pair(now, now + Duration::from_secs(5));
    c.handle_eof("connection reset");
    let got = outcomes(&mut c);
    for id in [a, b] {
        assert!(
            got.contains(&(id, Outcome::Unknown)),
            "request {id}: {got:?}"
        );
    }
}

/// The loan ends with the writer's report: bytes it did not write are pending again, and a
/// request wholly among them can be cut (and resolved as not sent) as before.
#[test]
fn bytes_the_writer_did_not_write_are_unstarted_again() {
    let now = Instant::now();
    let (mut c, a, b, _lent) = lent_pair(now, now + Duration::from_millis(10));
    let first = first_frame_len(&c);
    c.written(first); // only request `a` went out
    c.handle_timeout(now + Duration::from_millis(20));
    let got = outcomes(&mut c);
    assert!(got.contains(&(a, Outcome::DeadlineExceeded { sent: true })));
    assert!(
        got.contains(&(b, Outcome::DeadlineExceeded { sent: false })),
        "{got:?}"
    );
    assert!(c.out().is_empty(), "request {b} was cut");
}

/// The connection ends during the loan and the writer then reports that nothing went out: the
/// lent REQUEST was never started after all, so it is dropped as any unstarted frame is at the
/// end, not written after the connection ended (fuzz/regressions/client_conn/
/// lent-request-written-after-eof). It resolved as Unknown meanwhile, which stays true.
#[test]
fn a_lent_request_not_written_is_dropped_when_the_connection_ended_meanwhile() {
    let now = Instant::now();
    let (mut c, a, b, _lent) = lent_pair(now, now + Duration::from_secs(5));
    c.handle_eof("connection reset");
    let got = outcomes(&mut c);
    assert!(got.contains(&(a, Outcome::Unknown)) && got.contains(&(b, Outcome::Unknown)));
    c.written(0);
    let left = frames(c.out());
    assert!(
        !left.iter().any(|f| matches!(f, Frame::Request(_))),
        "a REQUEST would be written after the end: {left:?}"
    );
}

/// Likewise after GOAWAY: lent requests above N that the writer did not write are dropped, so
/// nothing but GOAWAY_ACK follows GOAWAY on the wire (rule 3).
#[test]
fn a_lent_request_not_written_is_dropped_after_goaway_meanwhile() {
    let now = Instant::now();
    let (mut c, a, _b, _lent) = lent_pair(now, now + Duration::from_secs(5));
    let first = first_frame_len(&c);
    let g = goaway(a);
    c.handle_frame(now, g)
        .expect("GOAWAY accepting a lent request");
    c.written(first); // request `a` went out, `b` did not
    let kinds: Vec<_> = frames(c.out()).iter().map(Frame::kind).collect();
    assert_eq!(kinds, [gracerpc::proto::Kind::GOAWAY_ACK], "{kinds:?}");
}
