//! Requests in flight when the close sequence starts are all answered before the connection
//! closes, and the close is a clean EOF that follows the caller's own close (rules 2–4).

#[path = "support/peer.rs"]
mod peer;

use std::time::Duration;

use gracerpc::proto::{GoAwayReason, Status};
use gracerpc::server::Server;
use peer::{Gate, OwnedFrame, QUICK, connect_ready, frames, wait_report};

const BUDGET: Duration = Duration::from_secs(10);
/// What GOAWAY announces: the budget less the linger kept at its end, min(linger 2 s, B/4).
const ANNOUNCED: Duration = Duration::from_secs(8);

#[test]
fn in_flight_requests_are_answered_then_the_server_waits_for_the_callers_close() {
    let gate = Gate::new();
    let server = Server::builder()
        .workers(4)
        .drain_budget(BUDGET)
        .handler("block", gate.handler())
        .spawn()
        .expect("spawn");
    let mut p = connect_ready(server.local_addr());
    for (id, body) in [(1, "a"), (2, "b"), (3, "c")] {
        p.send_request(id, "block", body.as_bytes());
    }
    gate.wait_started_count(3, QUICK);

    server.shutdown();
    let goaway = p.expect_frame(QUICK, "GOAWAY after shutdown()");
    assert_eq!(
        goaway,
        OwnedFrame::GoAway {
            last_accepted: 3,
            drain_budget_ms: ANNOUNCED.as_millis() as u32,
            reason: GoAwayReason::SHUTDOWN
        },
        "GOAWAY must name the highest accepted id"
    );
    p.send_ok(&frames::goaway_ack(3), "GOAWAY_ACK");
    p.expect_silence(
        Duration::from_millis(200),
        "handlers still running: nothing may arrive, least of all an EOF",
    );

    gate.release_all();
    let answers = p.collect_answers(&[1, 2, 3], QUICK);
    for (id, body) in [(1, "a"), (2, "b"), (3, "c")] {
        assert_eq!(
            answers[&id],
            OwnedFrame::Response {
                id,
                status: Status::OK,
                body: body.as_bytes().to_vec()
            },
            "started work is answered, never rejected (rule 2)"
        );
    }
    p.expect_silence(
        Duration::from_millis(200),
        "all answered but the caller has not closed: the server must wait for it (rule 4)",
    );
    let rest = p.close_and_expect_eof(QUICK, "after the caller's close");
    assert!(rest.is_empty(), "nothing after the answers: {rest:?}");

    let (report, server) = wait_report(server, QUICK);
    assert!(report.clean, "{report:?}");
    assert!(!report.forced_by_signal, "{report:?}");
    assert_eq!(report.goaway_sent, 1, "{report:?}");
    assert_eq!(report.rejected_queued, 0, "{report:?}");
    assert_eq!(report.abandoned, 0, "{report:?}");
    assert!(report.abandoned_on.is_empty(), "{report:?}");
    assert!(report.answered_in.is_some(), "{report:?}");
    assert!(report.total < BUDGET, "{report:?}");
    assert_eq!(server.in_flight(), 0);
}

#[test]
fn a_caller_that_closes_right_after_its_ack_still_gets_every_answer() {
    let gate = Gate::new();
    let server = Server::builder()
        .workers(2)
        .drain_budget(BUDGET)
        .handler("block", gate.handler())
        .spawn()
        .expect("spawn");
    let mut p = connect_ready(server.local_addr());
    p.send_request(1, "block", b"x");
    p.send_request(2, "block", b"y");
    gate.wait_started_count(2, QUICK);
    server.shutdown();
    match p.expect_frame(QUICK, "GOAWAY") {
        OwnedFrame::GoAway { last_accepted, .. } => assert_eq!(last_accepted, 2),
        other => panic!("expected GOAWAY, got {other:?}"),
    }
    p.send_ok(&frames::goaway_ack(2), "GOAWAY_ACK");
    // The caller's side is done writing before the answers exist: the server must still write
    // them (our read side is open) and close only afterwards.
    p.shutdown_write();
    p.expect_silence(Duration::from_millis(150), "handlers still running");
    gate.release_all();
    let frames_read = p.read_to_eof(QUICK, "answers, then the server's close");
    let ids: Vec<_> = frames_read
        .iter()
        .filter_map(OwnedFrame::answer_id)
        .collect();
    assert_eq!(
        frames_read.len(),
        2,
        "exactly the two answers, then a clean EOF: {frames_read:?}"
    );
    assert!(ids.contains(&1) && ids.contains(&2), "{frames_read:?}");
    for f in &frames_read {
        assert!(
            matches!(
                f,
                OwnedFrame::Response {
                    status: Status::OK,
                    ..
                }
            ),
            "{f:?}"
        );
    }
    let (report, _server) = wait_report(server, QUICK);
    assert!(report.clean, "{report:?}");
    assert_eq!(report.abandoned, 0, "{report:?}");
}
