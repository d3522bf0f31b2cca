//! At the start of the drain, requests queued for a worker and not started are rejected
//! (SHUTDOWN_REJECT(SHUTTING_DOWN)) and never run, while the started one completes (rule 2; the
//! run-or-reject state decides). One worker and a blocking handler make "started" exact.

#[path = "support/peer.rs"]
mod peer;

use std::time::Duration;

use gracerpc::proto::{RejectReason, Status};
use peer::{OwnedFrame, QUICK, connect_ready, frames, gated_server, wait_report};

#[test]
fn queued_work_is_rejected_at_drain_and_never_runs_while_started_work_completes() {
    let (runs, gate, server) = gated_server(|b| b.workers(1).drain_budget(Duration::from_secs(10)));
    let mut p = connect_ready(server.local_addr());
    p.send_request(1, "block", b"first");
    gate.wait_started(b"first", QUICK);
    p.send_request(2, "block", b"second");
    p.send_request(3, "block", b"third");
    // Both are read and queued once the server answers a PING sent after them.
    p.send_ok(&frames::ping(77), "PING");
    assert_eq!(p.expect_frame(QUICK, "PONG"), OwnedFrame::Pong(77));
    assert_eq!(server.in_flight(), 3);

    server.shutdown();
    match p.expect_frame(QUICK, "GOAWAY") {
        OwnedFrame::GoAway { last_accepted, .. } => assert_eq!(last_accepted, 3),
        other => panic!("expected GOAWAY, got {other:?}"),
    }
    let rejected = p.collect_answers(&[2, 3], QUICK);
    for id in [2, 3] {
        assert_eq!(
            rejected[&id],
            OwnedFrame::Reject {
                id,
                reason: RejectReason::SHUTTING_DOWN
            }
        );
    }
    p.send_ok(&frames::goaway_ack(3), "GOAWAY_ACK");
    gate.release_all();
    let first = p.collect_answers(&[1], QUICK);
    assert_eq!(
        first[&1],
        OwnedFrame::Response {
            id: 1,
            status: Status::OK,
            body: b"first".to_vec()
        }
    );
    // The worker now takes the rejected jobs off its queue: it must drop them, not run them.
    p.expect_silence(Duration::from_millis(200), "after the only answer owed");
    assert_eq!(
        gate.started(),
        vec![b"first".to_vec()],
        "only id 1 ever started"
    );
    assert_eq!((runs.count(2), runs.count(3)), (0, 0), "rejected work ran");

    let rest = p.close_and_expect_eof(QUICK, "caller's close");
    assert!(rest.is_empty(), "{rest:?}");
    let (report, server) = wait_report(server, QUICK);
    assert!(report.clean, "{report:?}");
    assert_eq!(report.rejected_queued, 2, "{report:?}");
    assert_eq!(report.abandoned, 0, "{report:?}");
    assert_eq!(runs.total(), 1);
    assert_eq!(server.in_flight(), 0);
}
