//! How requests resolve when the connection ends early or the server misbehaves (rules 1, 3, 5).

mod support;

use gracerpc::proto::{
    ClientEvent, ConnError, ErrorCode, Outcome, ProtocolError, RejectReason, Rejection, Status,
};
use support::sim::{Ev, MS, SEC, Sim, SimConfig};
use support::wire::{self, F};

/// A real caller facing a raw server that has sent HELLO and READY.
fn raw_server() -> Sim {
    let mut sim = Sim::with(SimConfig {
        server: None,
        ..SimConfig::default()
    });
    sim.raw_to_client(&wire::hello_ours());
    sim.raw_to_client(&wire::ready(100));
    sim.run();
    assert!(sim.client().is_sendable());
    sim
}

fn protocol_error(code: ErrorCode, id: u64, detail: &'static str) -> ConnError {
    ConnError::Protocol(ProtocolError { code, id, detail })
}

#[test]
fn connection_loss_mid_request_is_unknown() {
    let mut sim = Sim::new();
    sim.run();
    let id = sim.send();
    sim.run();
    sim.start(id);
    sim.kill();
    assert_eq!(sim.outcome(id), Outcome::Unknown);
    assert_eq!(
        sim.client_events().last(),
        Some(&ClientEvent::Closed {
            error: Some(ConnError::Lost("killed"))
        })
    );
    // The application finishes anyway; the answer is dropped and leaves the in-flight count.
    sim.finish(id);
    sim.run();
    assert_eq!(sim.finished_answers, 1);
}

#[test]
fn connection_loss_after_goaway_leaves_open_ids_unknown() {
    let mut sim = Sim::new();
    sim.run();
    sim.send_n(2);
    sim.run();
    sim.start_all();
    sim.start_drain(5 * SEC);
    sim.finish(1);
    sim.run();
    assert!(sim.client().is_draining());
    sim.kill();
    assert!(matches!(sim.outcome(1), Outcome::Completed { .. }));
    assert_eq!(
        sim.outcome(2),
        Outcome::Unknown,
        "rule 5: id ≤ N open at the end"
    );
}

#[test]
fn request_never_written_in_full_is_rejected_not_sent() {
    let mut sim = Sim::new();
    sim.run();
    // 27 bytes per REQUEST here: request 1 leaves whole, request 2 only in part, 3 not at all.
    sim.c2s.write_limit = Some(27 + 10);
    sim.send_n(3);
    sim.step();
    sim.c2s.hold = true;
    sim.run();
    assert_eq!(sim.to_server(), [F::HELLO, F::Request(1)]);
    sim.kill();
    assert_eq!(sim.outcome(1), Outcome::Unknown);
    // A frame partly written may still be completed by the driver: counted as sent.
    assert_eq!(sim.outcome(2), Outcome::Unknown);
    assert_eq!(sim.outcome(3), Outcome::Rejected(Rejection::NotSent));
}

#[test]
fn late_response_after_local_deadline_is_dropped_without_error() {
    let mut sim = Sim::new();
    sim.run();
    let deadline = sim.now + 50 * MS;
    let id = sim.send_with(deadline);
    sim.run();
    sim.start(id);
    sim.run_for(100 * MS);
    assert_eq!(sim.outcome(id), Outcome::DeadlineExceeded { sent: true });

    sim.finish(id);
    sim.run();
    assert_eq!(sim.to_client().last(), Some(&F::Response(id, Status::OK)));
    assert_eq!(sim.outcome(id), Outcome::DeadlineExceeded { sent: true });
    assert!(!sim.events().iter().any(|e| matches!(e, Ev::ClientErr(_))));
    assert!(sim.client().is_sendable(), "the connection stays usable");
    assert_eq!(sim.client_events(), [ClientEvent::Ready(100)]);
}

#[test]
fn deadline_passed_before_the_frame_left_means_it_never_runs() {
    let mut sim = Sim::new();
    sim.run();
    sim.c2s.hold = true; // the socket buffer is full
    let deadline = sim.now + 50 * MS;
    let id = sim.send_with(deadline);
    let later = sim.send();
    sim.run_for(100 * MS);
    assert_eq!(sim.outcome(id), Outcome::DeadlineExceeded { sent: false });

    // The socket drains: the caller said "not sent", so the server must never get it.
    sim.c2s.hold = false;
    sim.run();
    assert_eq!(sim.to_server(), [F::HELLO, F::Request(later)]);
    assert_eq!(sim.app.accepted, [later]);
}

#[test]
fn goaway_above_what_was_written_is_a_protocol_error() {
    let mut sim = raw_server();
    sim.send_n(2);
    sim.run();
    sim.c2s.hold = true;
    let unsent = sim.send();
    sim.raw_to_client(&wire::go_away(10));
    sim.run();
    let err = protocol_error(
        ErrorCode::UNKNOWN_ID,
        10,
        "GOAWAY accepts an id that was never written",
    );
    assert!(sim.saw(&Ev::ClientErr(err.clone())), "{}", sim.dump());
    assert_eq!(sim.outcome(1), Outcome::Unknown);
    assert_eq!(sim.outcome(2), Outcome::Unknown);
    assert_eq!(sim.outcome(unsent), Outcome::Rejected(Rejection::NotSent));

    sim.c2s.hold = false;
    sim.run();
    assert_eq!(
        sim.to_server(),
        [
            F::HELLO,
            F::Request(1),
            F::Request(2),
            F::Error(10, ErrorCode::UNKNOWN_ID)
        ]
    );
    assert!(sim.client_closed());
    assert_eq!(
        sim.client_events().last(),
        Some(&ClientEvent::Closed { error: Some(err) })
    );
}

#[test]
fn second_goaway_with_another_last_id_is_an_error() {
    let mut sim = raw_server();
    sim.send_n(3);
    sim.run();
    sim.raw_to_client(&wire::go_away(2));
    sim.run();
    assert_eq!(sim.outcome(3), Outcome::Rejected(Rejection::GoAway));
    sim.raw_to_client(&wire::go_away(1));
    sim.run();
    let err = protocol_error(
        ErrorCode::UNEXPECTED_FRAME,
        1,
        "a second GOAWAY changed last_accepted",
    );
    assert!(sim.saw(&Ev::ClientErr(err)), "{}", sim.dump());
    assert_eq!(sim.outcome(1), Outcome::Unknown);
    assert_eq!(sim.outcome(2), Outcome::Unknown);
    assert_eq!(
        sim.to_server(),
        [
            F::HELLO,
            F::Request(1),
            F::Request(2),
            F::Request(3),
            F::GoAwayAck(2),
            F::Error(1, ErrorCode::UNEXPECTED_FRAME),
        ]
    );
}

#[test]
fn repeated_goaway_with_the_same_last_id_changes_nothing() {
    let mut sim = raw_server();
    sim.send_n(2);
    sim.run();
    sim.raw_to_client(&wire::go_away(1));
    sim.raw_to_client(&wire::go_away(1));
    sim.raw_to_client(&wire::response(1));
    sim.run();
    assert!(matches!(sim.outcome(1), Outcome::Completed { .. }));
    assert_eq!(sim.outcome(2), Outcome::Rejected(Rejection::GoAway));
    assert!(!sim.events().iter().any(|e| matches!(e, Ev::ClientErr(_))));
    assert_eq!(sim.to_server().last(), Some(&F::GoAwayAck(1)));
    assert!(sim.client_closed());
}

#[test]
fn answer_for_an_id_never_sent_is_an_error() {
    let mut sim = raw_server();
    let id = sim.send();
    sim.run();
    sim.raw_to_client(&wire::reject(7, RejectReason::OVERLOADED));
    sim.run();
    let err = protocol_error(ErrorCode::UNKNOWN_ID, 7, "answer for an id never sent");
    assert!(sim.saw(&Ev::ClientErr(err)), "{}", sim.dump());
    assert_eq!(sim.outcome(id), Outcome::Unknown);
    assert_eq!(
        sim.to_server().last(),
        Some(&F::Error(7, ErrorCode::UNKNOWN_ID))
    );
}

#[test]
fn server_eof_before_goaway_is_unknown_for_written_ids() {
    let mut sim = raw_server();
    sim.send_n(2);
    sim.run();
    sim.raw_server_close();
    sim.run();
    assert_eq!(sim.outcome(1), Outcome::Unknown);
    assert_eq!(sim.outcome(2), Outcome::Unknown);
    assert!(sim.saw(&Ev::ClientEof));
}
