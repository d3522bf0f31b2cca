//! A caller that ignores GOAWAY: it never ACKs, never closes and keeps sending. Every request it
//! sent is still answered exactly once (RESPONSE up to N, SHUTDOWN_REJECT(SHUTTING_DOWN) above),
//! rejected requests never run, the drain still ends at the budget, and the caller never sees a
//! connection reset (rules 1, 2, 4).

#[path = "support/peer.rs"]
mod peer;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use gracerpc::proto::{RejectReason, Status};
use gracerpc::server::Server;
use peer::{
    Executions, Gate, OwnedFrame, PeerError, QUICK, connect_ready, frames, wait_report, wait_until,
};

const BUDGET: Duration = Duration::from_millis(1500);
const LINGER: Duration = Duration::from_millis(500);
/// The linger kept at the end of the budget: min(LINGER, BUDGET / 4). Answers until
/// BUDGET - RESERVE.
const RESERVE: Duration = Duration::from_millis(375);
/// How long after shutdown() the caller keeps sending (well inside the budget, so that every
/// request it sent can be answered before the budget runs out).
const SEND_WINDOW: Duration = Duration::from_millis(700);
/// Requests held running (one per worker) when the close sequence starts.
const HELD: u64 = 5;
/// Upper bound on requests sent, so the loop is bounded whatever the timing.
const MAX_REQUESTS: u64 = 400;

#[test]
fn a_caller_that_ignores_goaway_gets_every_answer_and_no_reset() {
    let runs = Executions::default();
    let gate = Gate::new();
    let server = Server::builder()
        .workers(HELD as usize)
        .drain_budget(BUDGET)
        .linger(LINGER)
        .handler("count", runs.echo_handler())
        .handler("hold", gate.counted_handler(&runs))
        .spawn()
        .expect("spawn");
    let mut p = connect_ready(server.local_addr());

    let mut answers: HashMap<u64, OwnedFrame> = HashMap::new();
    let mut goaway: Option<u64> = None;

    // Before the close sequence: ten requests, all answered.
    for id in 1..=10 {
        p.send_request(id, "count", &id.to_be_bytes());
    }
    for (_, f) in p.collect_answers(&(1..=10).collect::<Vec<_>>(), QUICK) {
        note(f, &mut answers, &mut goaway);
    }
    // Five more running as the close sequence starts, one per worker, so that requests accepted
    // after them wait in the queue.
    for id in 11..=10 + HELD {
        p.send_request(id, "hold", &id.to_be_bytes());
    }
    gate.wait_started_count(HELD as usize, QUICK);
    let mut next_id = 11 + HELD;
    server.shutdown();
    let shutdown_at = Instant::now();

    // Keep sending through the GOAWAY, never ACKing it.
    while shutdown_at.elapsed() < SEND_WINDOW && next_id <= MAX_REQUESTS {
        p.send_request(next_id, "count", &next_id.to_be_bytes());
        next_id += 1;
        loop {
            match p.next_frame(Duration::from_millis(3)) {
                Ok(f) => note(f, &mut answers, &mut goaway),
                Err(PeerError::Timeout) => break,
                Err(e) => panic!("while sending through the drain: {e}"),
            }
        }
        if goaway.is_some() {
            // The drain has begun and rejected the queue: let the running handlers finish.
            gate.release_all();
        }
    }
    gate.release_all();
    let last_sent = next_id - 1;
    let outstanding: Vec<u64> = (1..=last_sent)
        .filter(|id| !answers.contains_key(id))
        .collect();
    for (_, f) in p.collect_answers(&outstanding, BUDGET) {
        note(f, &mut answers, &mut goaway);
    }
    if goaway.is_none() {
        match p.expect_frame(QUICK, "GOAWAY") {
            f @ OwnedFrame::GoAway { .. } => note(f, &mut answers, &mut goaway),
            other => panic!("expected GOAWAY, got {other:?}"),
        }
    }
    let n = goaway.expect("GOAWAY seen");
    assert!(
        (10 + HELD..last_sent).contains(&n),
        "GOAWAY({n}) must cover the requests sent before shutdown() and leave later ones out \
         (last sent {last_sent})"
    );
    assert!(
        last_sent - n >= 20,
        "the caller should have sent many requests after GOAWAY({n}); last sent {last_sent}"
    );

    // Every id answered exactly once, in the right way; rejected ones never ran.
    for id in 1..=last_sent {
        let f = &answers[&id];
        if id > 10 + HELD && id <= n {
            // Accepted before the drain began, queued behind the held workers: rejected unrun
            // at the start of the drain (rule 2 allows SHUTDOWN_REJECT only for such work).
            assert_eq!(
                f,
                &OwnedFrame::Reject {
                    id,
                    reason: RejectReason::SHUTTING_DOWN
                },
                "id {id}, queued at the drain, must be rejected"
            );
            assert_eq!(
                runs.count(id),
                0,
                "queued id {id} was rejected and must never run"
            );
        } else if id <= n {
            assert_eq!(
                f,
                &OwnedFrame::Response {
                    id,
                    status: Status::OK,
                    body: id.to_be_bytes().to_vec()
                },
                "id {id} ≤ N={n} must be answered with its RESPONSE"
            );
            assert_eq!(runs.count(id), 1, "id {id} ≤ N ran exactly once");
        } else {
            assert_eq!(
                f,
                &OwnedFrame::Reject {
                    id,
                    reason: RejectReason::SHUTTING_DOWN
                },
                "id {id} > N={n} must be rejected as SHUTTING_DOWN"
            );
            assert_eq!(runs.count(id), 0, "rejected id {id} must never run");
        }
    }
    assert_eq!(
        runs.total(),
        (10 + HELD) as usize,
        "only the requests started before the drain ran"
    );

    // The server waits for our close until the budget runs out, then shuts its write side:
    // a clean EOF, never a reset (rule 4).
    match p.next_frame(BUDGET + QUICK) {
        Err(PeerError::Eof) => {}
        Ok(f) => panic!("expected EOF at the budget, got {f:?}"),
        Err(e) => panic!("expected a clean EOF at the budget, got {e}"),
    }
    let eof_after = shutdown_at.elapsed();
    assert!(
        eof_after + Duration::from_millis(50) >= BUDGET - RESERVE,
        "the server shut its side after {eof_after:?}, before the {BUDGET:?} budget less its \
         linger, while the caller was still connected"
    );
    // Still ignoring the protocol: one more request after the EOF. The server reads and
    // discards it (rule 4); then the caller finally closes.
    p.send(&frames::request(last_sent + 1, "count", b"late"))
        .expect("a write after the server's FIN must not fail");
    p.shutdown_write();
    wait_until(LINGER + QUICK, "the server to close the connection", || {
        server.connections() == 0
    });
    match p.next_frame(Duration::from_millis(200)) {
        Err(PeerError::Eof) => {}
        other => panic!("after both closes, a read must see EOF, not {other:?}"),
    }
    assert_eq!(
        runs.count(last_sent + 1),
        0,
        "a request after the FIN never runs"
    );

    let (report, server) = wait_report(server, QUICK);
    let total = shutdown_at.elapsed();
    assert!(
        total <= BUDGET + Duration::from_secs(1),
        "the drain took {total:?}, past the budget (which includes the linger)"
    );
    assert!(
        !report.clean,
        "the caller never closed within the budget: {report:?}"
    );
    assert!(!report.forced_by_signal, "{report:?}");
    assert_eq!(report.goaway_sent, 1, "{report:?}");
    assert_eq!(
        report.rejected_queued as u64,
        n - (10 + HELD),
        "the queued requests: {report:?}"
    );
    assert_eq!(
        report.abandoned, 0,
        "every accepted request was answered: {report:?}"
    );
    assert!(report.abandoned_on.is_empty(), "{report:?}");
    assert!(report.answered_in.is_some_and(|t| t < BUDGET), "{report:?}");
    assert_eq!(server.in_flight(), 0, "in-flight counter after the drain");
}

/// Records one frame: GOAWAY (at most one) or an answer (at most one per id, rule 1).
fn note(f: OwnedFrame, answers: &mut HashMap<u64, OwnedFrame>, goaway: &mut Option<u64>) {
    match f {
        OwnedFrame::GoAway { last_accepted, .. } => {
            assert!(goaway.is_none(), "a second GOAWAY: {f:?}");
            *goaway = Some(last_accepted);
        }
        f => {
            let id = f
                .answer_id()
                .unwrap_or_else(|| panic!("unexpected frame {f:?}"));
            if let Some(prev) = answers.insert(id, f.clone()) {
                panic!("id {id} answered twice (rule 1): {prev:?} then {f:?}");
            }
        }
    }
}
