//! The close sequence, rules 2–4: GOAWAY, what happens to each request, and how both sides close.

mod support;

use std::time::Duration;

use gracerpc::proto::{
    ClientEvent, ConnError, GoAwayReason, Outcome, RejectReason, Rejection, Status,
};
use support::sim::{Ev, MS, SEC, Sim};
use support::wire::F;

fn completed(id: u64) -> Outcome {
    Outcome::Completed {
        status: Status::OK,
        body: id.to_be_bytes().to_vec(),
    }
}

fn goaway_event(last_accepted: u64, budget: Duration) -> ClientEvent {
    ClientEvent::GoAway {
        last_accepted,
        drain_budget: budget,
        reason: GoAwayReason::SHUTDOWN,
    }
}

/// The end of a clean drain: the caller closes once every id ≤ N resolved, the server sees EOF
/// with everything flushed and closes, never shutting its write side first.
fn assert_clean_close(sim: &Sim) {
    sim.expect_order(&[
        Ev::Client(ClientEvent::Closed { error: None }),
        Ev::ClientClose,
        Ev::ServerEof,
        Ev::ServerClose,
    ]);
    assert!(!sim.saw(&Ev::ServerShutdownWrite), "{}", sim.dump());
    assert!(!sim.saw(&Ev::ServerReset), "{}", sim.dump());
    assert!(
        sim.server.as_ref().is_some_and(|s| s.error().is_none()),
        "{}",
        sim.dump()
    );
}

#[test]
fn requests_in_flight_at_goaway_are_all_answered_then_clean_close() {
    let mut sim = Sim::new();
    sim.run();
    let ids = sim.send_n(5);
    sim.run();
    assert_eq!(sim.app.accepted, [1, 2, 3, 4, 5]);
    sim.start_all();

    sim.start_drain(5 * SEC);
    sim.run();
    assert_eq!(sim.server().last_accepted(), Some(5));
    assert!(sim.client().is_draining());
    assert_eq!(sim.to_server().last(), Some(&F::GoAwayAck(5)));
    assert!(
        !sim.client_closed(),
        "ids ≤ N are open: the caller must wait"
    );

    for &id in &ids {
        sim.finish(id);
    }
    sim.run_until_closed();

    assert_eq!(
        sim.to_client(),
        [
            F::HELLO,
            F::Ready(100),
            F::GoAway(5),
            F::Response(1, Status::OK),
            F::Response(2, Status::OK),
            F::Response(3, Status::OK),
            F::Response(4, Status::OK),
            F::Response(5, Status::OK),
        ]
    );
    let mut to_server = vec![F::HELLO];
    to_server.extend(ids.iter().map(|&id| F::Request(id)));
    to_server.push(F::GoAwayAck(5));
    assert_eq!(sim.to_server(), to_server);
    for &id in &ids {
        assert_eq!(sim.outcome(id), completed(id));
    }
    assert_eq!(
        sim.client_events(),
        [
            ClientEvent::Ready(100),
            goaway_event(5, 5 * SEC),
            ClientEvent::Closed { error: None },
        ]
    );
    assert_clean_close(&sim);
    assert_eq!(sim.elapsed(), Duration::ZERO, "no timer was needed");
    assert_eq!(sim.finished_answers, 5);
}

#[test]
fn request_sent_before_goaway_was_read_resolves_rejected_once() {
    let mut sim = Sim::new();
    sim.run();
    sim.send_n(5);
    sim.run();
    sim.start_all();

    // GOAWAY(5) is queued on the server; the caller sends 6 before it reads it.
    sim.start_drain(5 * SEC);
    let late = sim.send();
    assert_eq!(late, 6);
    sim.run();

    // The server read 6 after GOAWAY and rejected it; the caller had already resolved it by
    // the GOAWAY rule, so the SHUTDOWN_REJECT is dropped silently.
    assert_eq!(
        sim.to_client(),
        [
            F::HELLO,
            F::Ready(100),
            F::GoAway(5),
            F::Reject(6, RejectReason::SHUTTING_DOWN),
        ]
    );
    assert_eq!(sim.outcome(6), Outcome::Rejected(Rejection::GoAway));
    assert!(
        !sim.app.accepted.contains(&6),
        "id 6 > N must never reach the app"
    );

    sim.finish_all();
    sim.run_until_closed();
    for id in 1..=5 {
        assert_eq!(sim.outcome(id), completed(id));
    }
    assert_eq!(sim.outcome(6), Outcome::Rejected(Rejection::GoAway));
    sim.expect_order(&[
        Ev::Drain(5),
        Ev::ServerGot(F::Request(6)),
        Ev::ClientGot(F::GoAway(5)),
        Ev::Client(ClientEvent::Resolved {
            id: 6,
            user: 1005,
            outcome: Outcome::Rejected(Rejection::GoAway),
        }),
        Ev::ClientGot(F::Reject(6, RejectReason::SHUTTING_DOWN)),
        Ev::ClientGot(F::Response(5, Status::OK)),
    ]);
    // Dropped silently: no error, no event about the late frame.
    assert_eq!(
        sim.client_events(),
        [
            ClientEvent::Ready(100),
            goaway_event(5, 5 * SEC),
            ClientEvent::Closed { error: None },
        ]
    );
    assert!(!sim.events().iter().any(|e| matches!(e, Ev::ClientErr(_))));
    assert_clean_close(&sim);
    assert_eq!(sim.finished_answers, 5);
}

#[test]
fn queued_work_is_rejected_at_drain_and_started_work_is_answered() {
    let mut sim = Sim::new();
    sim.run();
    sim.send_n(4);
    sim.run();
    sim.start(1);
    sim.start(2);

    sim.start_drain(5 * SEC); // the application rejects 3 and 4, which never started
    sim.run();
    sim.finish(1);
    sim.finish(2);
    sim.run_until_closed();

    assert_eq!(
        sim.to_client(),
        [
            F::HELLO,
            F::Ready(100),
            F::GoAway(4),
            F::Reject(3, RejectReason::SHUTTING_DOWN),
            F::Reject(4, RejectReason::SHUTTING_DOWN),
            F::Response(1, Status::OK),
            F::Response(2, Status::OK),
        ]
    );
    assert_eq!(sim.outcome(1), completed(1));
    assert_eq!(sim.outcome(2), completed(2));
    let shutting = Outcome::Rejected(Rejection::Server(RejectReason::SHUTTING_DOWN));
    assert_eq!(sim.outcome(3), shutting);
    assert_eq!(sim.outcome(4), shutting);
    assert_eq!(sim.app.started.keys().copied().collect::<Vec<_>>(), [1, 2]);
    assert_clean_close(&sim);
    assert_eq!(sim.finished_answers, 4);
}

#[test]
fn goaway_on_idle_connection_is_acked_and_closed_at_once() {
    let mut sim = Sim::new();
    sim.run();
    sim.start_drain(5 * SEC);
    sim.run_until_closed();

    assert_eq!(sim.to_client(), [F::HELLO, F::Ready(100), F::GoAway(0)]);
    assert_eq!(
        sim.to_server(),
        [F::HELLO, F::GoAwayAck(0)],
        "rule 3: ACK, then close"
    );
    assert_eq!(
        sim.client_events(),
        [
            ClientEvent::Ready(100),
            goaway_event(0, 5 * SEC),
            ClientEvent::Closed { error: None },
        ]
    );
    assert_clean_close(&sim);
    assert_eq!(sim.elapsed(), Duration::ZERO);
}

#[test]
fn goaway_and_last_response_in_one_read_still_ack() {
    let mut sim = Sim::new();
    sim.run();
    let id = sim.send();
    sim.run();
    sim.start(id);
    // GOAWAY(1) and RESPONSE(1) reach the caller in the same read.
    sim.start_drain(5 * SEC);
    sim.finish(id);
    sim.run_until_closed();

    assert_eq!(
        sim.to_client(),
        [
            F::HELLO,
            F::Ready(100),
            F::GoAway(1),
            F::Response(1, Status::OK)
        ]
    );
    assert_eq!(sim.to_server(), [F::HELLO, F::Request(1), F::GoAwayAck(1)]);
    assert_eq!(sim.outcome(id), completed(id));
    assert_clean_close(&sim);
}

#[test]
fn drain_before_the_callers_hello_still_closes_cleanly() {
    let mut sim = Sim::new();
    // SIGTERM arrives just after accept: GOAWAY(0) is queued behind our HELLO before the
    // caller's HELLO is read.
    sim.start_drain(5 * SEC);
    sim.run_until_closed();

    assert_eq!(sim.to_client(), [F::HELLO, F::GoAway(0)]);
    assert_eq!(sim.to_server(), [F::HELLO, F::GoAwayAck(0)]);
    assert!(
        !sim.events()
            .iter()
            .any(|e| matches!(e, Ev::ServerErr(_) | Ev::ClientErr(_)))
    );
    assert_clean_close(&sim);
}

#[test]
fn goaway_ack_never_arriving_ends_by_budget_write_side_first_then_linger() {
    let mut sim = Sim::new();
    sim.run();
    sim.client_frozen = true; // the caller's driver hangs: no ACK, no close
    sim.start_drain(100 * MS);
    sim.run_for(10 * SEC);

    assert_eq!(sim.time_of(&Ev::ServerShutdownWrite), 100 * MS);
    assert_eq!(
        sim.time_of(&Ev::ServerClose),
        100 * MS + 2 * SEC,
        "linger is 2 s"
    );
    sim.expect_order(&[
        Ev::Drain(0),
        Ev::ServerErr(ConnError::Lost("drain budget spent")),
        Ev::ServerShutdownWrite,
        Ev::ServerClose,
    ]);
    assert!(!sim.server().goaway_acked());
}

#[test]
fn drain_budget_cuts_unanswered_work_and_the_caller_sees_unknown() {
    let mut sim = Sim::new();
    sim.run();
    let id = sim.send();
    sim.run();
    sim.start(id); // runs past the budget
    sim.start_drain(100 * MS);
    sim.run_until_closed();

    assert_eq!(sim.time_of(&Ev::ServerShutdownWrite), 100 * MS);
    assert_eq!(
        sim.outcome(id),
        Outcome::Unknown,
        "rule 5: id ≤ N open at the end"
    );
    sim.expect_order(&[
        Ev::ServerShutdownWrite,
        Ev::ClientEof,
        Ev::ClientClose,
        Ev::ServerEof,
        Ev::ServerClose,
    ]);
    assert_eq!(
        sim.time_of(&Ev::ServerClose),
        100 * MS,
        "the caller closed at once"
    );
    // The answer that comes too late is dropped, and still leaves the in-flight count.
    sim.finish(id);
    sim.run();
    assert_eq!(sim.finished_answers, 1);
}

#[test]
fn goaway_read_before_the_caller_wrote_its_hello_keeps_the_hello() {
    let mut sim = Sim::new();
    sim.c2s.hold = true; // the caller reads before its socket is writable
    sim.run();
    sim.start_drain(5 * SEC);
    sim.run();
    assert!(sim.client().is_closed(), "idle: the drain is over at once");
    sim.c2s.hold = false;
    sim.run_until_closed();

    assert_eq!(
        sim.to_server(),
        [F::HELLO, F::GoAwayAck(0)],
        "HELLO first, always"
    );
    assert!(
        !sim.events()
            .iter()
            .any(|e| matches!(e, Ev::ServerErr(_) | Ev::ClientErr(_)))
    );
    assert_clean_close(&sim);
}
