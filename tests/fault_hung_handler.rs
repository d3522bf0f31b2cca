//! A `gracerpc serve` node whose handlers hang past the drain budget, with two callers: a
//! `Client` (which closes once the node ends its side) and a raw caller that goes silent and
//! never closes. On SIGTERM the drain ends at its budget: the client's call ends right then as
//! `OutcomeUnknown` (not at its far deadline), the node exits with the documented code 3 (see
//! `gracerpc serve --help`) at the end of its budget, which includes the silent caller's linger, and its log names the
//! connections where requests were abandoned.

#[path = "support/peer.rs"]
mod peer;
#[path = "support/serve.rs"]
mod serve;

use std::time::{Duration, Instant};

use gracerpc::client::{CallError, CallOptions, Client};
use peer::{OwnedFrame, PeerError, QUICK, connect_ready, frames};
use serve::ServeProc;

/// `--drain-timeout` of the node.
const BUDGET: Duration = Duration::from_secs(1);
/// The server's default linger (`serve` has no flag for it).
const LINGER: Duration = Duration::from_secs(2);
const SLACK: Duration = Duration::from_millis(1500);
/// The linger kept at the end of the budget: min(LINGER, BUDGET / 4).
const RESERVE: Duration = Duration::from_millis(250);

#[test]
fn a_hung_handler_ends_the_drain_at_its_budget_with_exit_3_and_a_log_of_what_was_abandoned() {
    let mut node = ServeProc::start(
        "hung node",
        &[
            "--work-ms",
            "60000",
            "--workers",
            "2",
            "--drain-timeout",
            "1",
        ],
    );
    let client = Client::builder()
        .nodes([node.addr])
        .build()
        .expect("client");
    assert!(client.wait_ready(node.addr, QUICK), "node never READY");
    let call = {
        let client = client.clone();
        std::thread::spawn(move || {
            let opts = CallOptions::new().deadline(Duration::from_secs(30));
            let r = client.call_with("work", b"client", &opts);
            (r, Instant::now())
        })
    };
    let mut silent = connect_ready(node.addr);
    silent.send_request(1, "work", b"silent");
    silent.send_ok(&frames::ping(1), "PING");
    silent.expect_matching(QUICK, "PONG", |f| *f == OwnedFrame::Pong(1));
    // Nothing outside the process shows that a handler took a request off the queue; a
    // request still queued at SIGTERM would rightly be rejected, not hang. Both workers are
    // idle, so 300 ms is ample (and a rejection below says so clearly).
    std::thread::sleep(Duration::from_millis(300));

    let t0 = Instant::now();
    node.signal(libc::SIGTERM);
    match silent.expect_matching(QUICK, "GOAWAY", |f| matches!(f, OwnedFrame::GoAway { .. })) {
        OwnedFrame::GoAway { last_accepted, .. } => assert_eq!(last_accepted, 1),
        _ => unreachable!(),
    }
    // At the budget the node shuts its write side: a clean EOF, no answer, no reset. The
    // caller stays silent and never closes.
    match silent.next_frame(BUDGET + QUICK) {
        Err(PeerError::Eof) => {}
        other => panic!("expected a clean EOF at the budget (a hung handler), got {other:?}"),
    }
    let eof = t0.elapsed();
    assert!(
        eof + Duration::from_millis(50) >= BUDGET - RESERVE,
        "EOF after {eof:?}, before the budget less its linger"
    );

    let (r, ended) = call.join().expect("caller thread");
    let call_took = ended - t0;
    match r {
        Err(CallError::OutcomeUnknown) => {}
        other => panic!(
            "a call whose handler hangs past the drain: expected OutcomeUnknown, got {other:?}"
        ),
    }
    assert!(
        call_took < BUDGET + SLACK,
        "the call ended {call_took:?} after SIGTERM: it should end at the budget, not its deadline"
    );

    let st = node.expect_exit(BUDGET + LINGER + SLACK + QUICK, "drain with a hung handler");
    let took = t0.elapsed();
    assert_eq!(
        st.code(),
        Some(3),
        "documented exit code for a spent budget: {st}"
    );
    assert!(
        took >= BUDGET && took <= BUDGET + SLACK,
        "exit {took:?} after SIGTERM: expected the budget, which includes the silent caller's \
         linger ({BUDGET:?})"
    );
    let line = node.wait_log_line("drain budget spent", QUICK);
    assert!(
        line.contains("2 requests abandoned on 2 connections"),
        "the log must say what was abandoned: {line}"
    );
    let silent_addr = silent.local_addr().to_string();
    assert!(
        line.contains(&format!("{silent_addr} (1)")),
        "the log must name the silent caller {silent_addr}: {line}"
    );
    client.close(QUICK);
}
