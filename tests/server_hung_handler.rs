//! A handler that hangs past the drain budget: the server ends the connection at the budget
//! (write side first: the caller sees a clean EOF, no answer, no reset), and `wait()` reports the
//! request abandoned on that connection, and the worker still running it, within the budget
//! (+ slack): the budget covers the linger at its end.

#[path = "support/peer.rs"]
mod peer;

use std::time::{Duration, Instant};

use gracerpc::server::Server;
use peer::{Gate, OwnedFrame, PeerError, QUICK, connect_ready, frames, wait_report};

const BUDGET: Duration = Duration::from_millis(500);
const LINGER: Duration = Duration::from_millis(300);
const SLACK: Duration = Duration::from_millis(700);
/// The linger kept at the end of the budget: min(LINGER, BUDGET / 4).
const RESERVE: Duration = Duration::from_millis(125);

#[test]
fn a_handler_hanging_past_the_budget_is_reported_abandoned() {
    let gate = Gate::new();
    let server = Server::builder()
        .workers(2)
        .drain_budget(BUDGET)
        .linger(LINGER)
        .handler("hang", gate.handler())
        .spawn()
        .expect("spawn");
    let mut hung = connect_ready(server.local_addr());
    let mut fine = connect_ready(server.local_addr());
    hung.send_request(1, "hang", b"forever");
    gate.wait_started(b"forever", QUICK);

    let t0 = Instant::now();
    server.shutdown();
    for (p, n) in [(&mut hung, 1), (&mut fine, 0)] {
        match p.expect_frame(QUICK, "GOAWAY") {
            OwnedFrame::GoAway { last_accepted, .. } => assert_eq!(last_accepted, n),
            other => panic!("expected GOAWAY, got {other:?}"),
        }
        p.send_ok(&frames::goaway_ack(n), "GOAWAY_ACK");
    }
    fine.close_and_expect_eof(QUICK, "the idle caller's close");

    // No answer for id 1 can come; at the budget less its linger the server shuts its write side.
    match hung.next_frame(BUDGET + QUICK) {
        Err(PeerError::Eof) => {}
        other => panic!("expected a clean EOF at the budget, got {other:?}"),
    }
    let eof_at = t0.elapsed();
    assert!(
        eof_at + Duration::from_millis(50) >= BUDGET - RESERVE,
        "EOF after {eof_at:?}, before the budget less its linger"
    );
    let hung_addr = hung.local_addr();
    hung.shutdown_write();

    let (report, server) = wait_report(server, BUDGET + LINGER + SLACK + QUICK);
    let total = t0.elapsed();
    assert!(
        total <= BUDGET + SLACK,
        "wait() returned after {total:?}, past budget + slack"
    );
    assert_eq!(report.stuck_workers.len(), 1, "{report:?}");
    assert!(!report.clean, "{report:?}");
    assert!(!report.forced_by_signal, "{report:?}");
    assert_eq!(report.abandoned, 1, "{report:?}");
    assert_eq!(report.abandoned_on, vec![(hung_addr, 1)], "{report:?}");
    assert_eq!(report.goaway_sent, 2, "{report:?}");
    assert!(report.answered_in.is_none(), "{report:?}");
    assert!(report.total >= BUDGET - RESERVE, "{report:?}");
    assert_eq!(server.in_flight(), 1, "the hung request is still counted");
    drop(gate); // lets the handler return; its answer goes nowhere
}
