//! Regressions: bugs in the connection state machines found while writing protocol.md and the
//! fuzz harness (and, independently, by the simulation). Each test states what protocol.md
//! requires; each failed before its fix.

#[path = "support/core.rs"]
mod core_support;

use std::time::{Duration, Instant};

use core_support::{frames, open_client};
use gracerpc::proto::frame::{GoAway, Hello, Request};
use gracerpc::proto::{ClientEvent, Frame, GoAwayReason, Outcome, ServerConn, ServerConnConfig};

/// `take_finished_answers` is documented as what the driver takes off its in-flight counter,
/// but it also counts the SHUTDOWN_REJECTs the connection sent itself for requests it never
/// handed to the driver (NOT_READY, DEADLINE, OVERLOADED, SHUTTING_DOWN): the driver's counter
/// goes below zero.
#[test]
fn finished_answers_count_only_requests_the_driver_accepted() {
    let now = Instant::now();
    let mut s = ServerConn::new(now, ServerConnConfig::default());
    let mut b = Vec::new();
    Frame::Hello(Hello::ours(1 << 20)).encode(&mut b);
    Frame::Request(Request {
        id: 1,
        deadline_us: 1000,
        idempotent: false,
        method: "m",
        metadata: gracerpc::proto::frame::Metadata::EMPTY,
        body: b"",
    })
    .encode(&mut b);
    for f in frames(&b) {
        // No READY yet: the REQUEST is rejected NOT_READY by the connection itself.
        assert!(matches!(
            s.handle_frame(now, f),
            Ok(gracerpc::proto::Incoming::None)
                | Ok(gracerpc::proto::Incoming::Rejected {
                    id: 1,
                    reason: gracerpc::proto::RejectReason::NOT_READY
                })
        ));
    }
    let n = s.out().len();
    s.written(n);
    assert_eq!(s.take_finished_answers(), 0, "no request was handed over");
}

/// `start_drain` is allowed in Handshake, but then the caller's HELLO (which it always sends
/// first) hits the `(_, f)` arm in Draining and fails the connection with UNEXPECTED_FRAME.
#[test]
fn hello_after_early_drain_is_not_an_error() {
    let now = Instant::now();
    let mut s = ServerConn::new(now, ServerConnConfig::default());
    s.start_drain(now, Duration::from_secs(1), GoAwayReason::SHUTDOWN);
    let mut b = Vec::new();
    Frame::Hello(Hello::ours(1 << 20)).encode(&mut b);
    let f = frames(&b)[0];
    assert!(s.handle_frame(now, f).is_ok(), "{:?}", s.error());
}

/// Rule 3: the caller writes GOAWAY_ACK. When GOAWAY leaves nothing outstanding (an idle
/// connection), `on_goaway` queues the ACK and `maybe_finish_drain` → `end` cuts every frame
/// not started — the ACK with them — so it is never written.
#[test]
fn goaway_ack_is_written_on_an_idle_connection() {
    let now = Instant::now();
    let mut c = open_client(now);
    let g = Frame::GoAway(GoAway {
        last_accepted: 0,
        drain_budget_ms: 1000,
        reason: GoAwayReason::SHUTDOWN,
    });
    c.handle_frame(now, g).unwrap();
    let kinds: Vec<_> = frames(c.out()).iter().map(Frame::kind).collect();
    assert_eq!(kinds, [gracerpc::proto::Kind::GOAWAY_ACK]);
}

/// `DeadlineExceeded { sent: false }` claims the server cannot have the request, but the
/// REQUEST frame stays in the output buffer and is written later: the server reads it with a
/// fresh budget and may run it (a non-idempotent replay would then run twice).
#[test]
fn a_request_resolved_as_not_sent_is_never_written() {
    let now = Instant::now();
    let mut c = open_client(now);
    let deadline = now + Duration::from_millis(10);
    let id = c.send_request(now, "m", b"", deadline, false, 0).unwrap();
    let later = now + Duration::from_millis(20);
    c.handle_timeout(later);
    let mut outcome = None;
    while let Some(ev) = c.poll_event() {
        if let ClientEvent::Resolved {
            id: i, outcome: o, ..
        } = ev
        {
            assert_eq!(i, id);
            outcome = Some(o);
        }
    }
    assert_eq!(outcome, Some(Outcome::DeadlineExceeded { sent: false }));
    let still_queued = frames(c.out())
        .iter()
        .any(|f| matches!(f, Frame::Request(r) if r.id == id));
    assert!(
        !still_queued,
        "REQUEST {id} resolved as not sent is still queued"
    );
}
