//! Rule 6: a request whose deadline budget is 0 is rejected as DEADLINE on arrival, and a queued
//! request whose deadline passes before a worker takes it is rejected as DEADLINE, unrun.

#[path = "support/peer.rs"]
mod peer;

use std::time::Duration;

use gracerpc::proto::{RejectReason, Status};
use peer::{OwnedFrame, QUICK, connect_ready, frames};

#[test]
fn expired_requests_are_rejected_as_deadline_and_never_run() {
    let (runs, gate, server) = peer::gated_server(|b| b.workers(1));
    let mut p = connect_ready(server.local_addr());

    p.send_ok(
        &frames::request_with(1, "block", b"zero", 0, true),
        "REQUEST",
    );
    let a = p.collect_answers(&[1], QUICK);
    assert_eq!(
        a[&1],
        OwnedFrame::Reject {
            id: 1,
            reason: RejectReason::DEADLINE
        }
    );

    p.send_request(2, "block", b"hold");
    gate.wait_started(b"hold", QUICK);
    // 30 ms of budget, queued behind the held worker for longer than that.
    p.send_ok(
        &frames::request_with(3, "block", b"late", 30_000, false),
        "REQUEST",
    );
    std::thread::sleep(Duration::from_millis(100)); // let the deadline pass: time is the input
    gate.release(b"hold");
    let a = p.collect_answers(&[2, 3], QUICK);
    assert!(
        matches!(
            a[&2],
            OwnedFrame::Response {
                status: Status::OK,
                ..
            }
        ),
        "{a:?}"
    );
    assert_eq!(
        a[&3],
        OwnedFrame::Reject {
            id: 3,
            reason: RejectReason::DEADLINE
        }
    );
    assert_eq!(
        (runs.count(1), runs.count(3)),
        (0, 0),
        "expired requests ran"
    );
    peer::wait_until(QUICK, "in-flight counter back to 0", || {
        server.in_flight() == 0
    });
    server.shutdown();
    let _ = p.expect_frame(QUICK, "GOAWAY");
    p.close_and_expect_eof(QUICK, "caller's close");
    let (report, _server) = peer::wait_report(server, QUICK);
    assert!(report.clean, "{report:?}");
}
