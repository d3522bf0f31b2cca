//! Limits answer with SHUTDOWN_REJECT(OVERLOADED) and never run the request: the per-connection
//! limit on requests in flight, and a full work queue.

#[path = "support/peer.rs"]
mod peer;

use gracerpc::proto::{RejectReason, Status};
use peer::{OwnedFrame, Peer, QUICK, connect_ready, frames, gated_server, wait_report, wait_until};

/// Waits for the answer to `id` and asserts it is SHUTDOWN_REJECT(OVERLOADED).
fn expect_overloaded(p: &mut Peer, id: u64) {
    let got = p.collect_answers(&[id], QUICK);
    assert_eq!(
        got[&id],
        OwnedFrame::Reject {
            id,
            reason: RejectReason::OVERLOADED
        }
    );
}

fn assert_ok(f: &OwnedFrame, id: u64) {
    assert!(
        matches!(f, OwnedFrame::Response { id: i, status: Status::OK, .. } if *i == id),
        "id {id}: {f:?}"
    );
}

#[test]
fn the_per_connection_in_flight_limit_rejects_as_overloaded() {
    let (runs, gate, server) = gated_server(|b| b.workers(4).max_in_flight_per_connection(2));
    let mut p = connect_ready(server.local_addr());
    let mut other = connect_ready(server.local_addr());
    p.send_request(1, "block", b"1");
    p.send_request(2, "block", b"2");
    p.send_request(3, "block", b"3");
    expect_overloaded(&mut p, 3);
    // The limit is per connection: another one is not affected.
    other.send_request(1, "block", b"other");
    gate.wait_started_count(3, QUICK);

    gate.release_all();
    let got = p.collect_answers(&[1, 2], QUICK);
    assert_ok(&got[&1], 1);
    assert_ok(&got[&2], 2);
    assert_ok(&other.collect_answers(&[1], QUICK)[&1], 1);
    // Room again once answered.
    p.send_request(4, "block", b"4");
    assert_ok(&p.collect_answers(&[4], QUICK)[&4], 4);
    assert_eq!(runs.count(3), 0, "the rejected request ran");
    assert_eq!(runs.total(), 4);

    server.shutdown();
    for c in [&mut p, &mut other] {
        c.expect_frame(QUICK, "GOAWAY");
        c.close_and_expect_eof(QUICK, "caller's close");
    }
    let (report, _server) = wait_report(server, QUICK);
    assert!(report.clean, "{report:?}");
    assert_eq!(report.abandoned, 0, "{report:?}");
}

#[test]
fn a_full_work_queue_rejects_as_overloaded() {
    let (runs, gate, server) = gated_server(|b| b.workers(1).queue(1));
    let mut p = connect_ready(server.local_addr());
    p.send_request(1, "block", b"running");
    gate.wait_started(b"running", QUICK);
    p.send_request(2, "block", b"queued");
    p.send_request(3, "block", b"no room");
    expect_overloaded(&mut p, 3);
    p.send_ok(&frames::ping(1), "PING");
    assert_eq!(p.expect_frame(QUICK, "PONG"), OwnedFrame::Pong(1));
    assert_eq!(server.in_flight(), 2, "ids 1 and 2 in flight, 3 answered");

    gate.release_all();
    let got = p.collect_answers(&[1, 2], QUICK);
    assert_ok(&got[&1], 1);
    assert_ok(&got[&2], 2);
    assert_eq!(runs.count(3), 0, "the rejected request ran");
    assert_eq!(runs.total(), 2);
    wait_until(QUICK, "in-flight counter back to 0", || {
        server.in_flight() == 0
    });

    server.shutdown();
    p.expect_frame(QUICK, "GOAWAY");
    p.close_and_expect_eof(QUICK, "caller's close");
    let (report, _server) = wait_report(server, QUICK);
    assert!(report.clean, "{report:?}");
}
