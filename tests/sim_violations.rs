//! Rule 7: broken frames and broken rules from the caller get ERROR with a code, then a close
//! without a reset (rule 4; the simulator fails any reset).

mod support;

use std::time::Duration;

use gracerpc::proto::{ErrorCode, Kind, RejectReason, ServerConnConfig, Status};
use support::sim::{Ev, SEC, Sim, SimConfig};
use support::wire::{self, F};

/// A real server, ready, facing a raw caller that has sent HELLO.
fn raw_client() -> Sim {
    let mut sim = Sim::with(SimConfig {
        client: None,
        server: Some(ServerConnConfig {
            max_frame: 1024,
            ..ServerConnConfig::default()
        }),
        ..SimConfig::default()
    });
    sim.raw_to_server(&wire::hello_ours());
    sim.run();
    sim
}

/// After the ERROR: the server shuts its write side once it is flushed, reads until the caller
/// closes, then closes — never the other way round.
fn assert_error_then_close(sim: &mut Sim, error: F) {
    assert_eq!(sim.to_client().last(), Some(&error), "{}", sim.dump());
    assert!(!sim.server().wants_frames());
    sim.expect_order(&[Ev::ClientGot(error), Ev::ServerShutdownWrite, Ev::ClientEof]);
    assert!(
        !sim.server_closed(),
        "must wait for the caller's close (rule 4)"
    );
    sim.raw_client_close();
    sim.run();
    sim.expect_order(&[Ev::ClientClose, Ev::ServerEof, Ev::ServerClose]);
    assert!(sim.server_closed());
}

#[test]
fn duplicate_id_is_id_order_error() {
    let mut sim = raw_client();
    sim.raw_to_server(&wire::request(1));
    sim.raw_to_server(&wire::request(2));
    sim.raw_to_server(&wire::request(2));
    sim.raw_to_server(&wire::request(3)); // after the error: discarded
    sim.run();
    assert_eq!(sim.app.accepted, [1, 2]);
    assert_error_then_close(&mut sim, F::Error(2, ErrorCode::ID_ORDER));
    assert_eq!(
        sim.to_client(),
        [F::HELLO, F::Ready(100), F::Error(2, ErrorCode::ID_ORDER)]
    );
    // Accepted work still gets its answer from the app; it is dropped and counted.
    sim.start_all();
    sim.finish_all();
    sim.run();
    assert_eq!(sim.finished_answers, 2);
}

#[test]
fn backwards_id_is_id_order_error() {
    let mut sim = raw_client();
    sim.raw_to_server(&wire::request(5));
    sim.raw_to_server(&wire::request(3));
    sim.run();
    assert_eq!(sim.app.accepted, [5]);
    assert_error_then_close(&mut sim, F::Error(3, ErrorCode::ID_ORDER));
}

#[test]
fn answers_queued_before_the_error_are_still_written() {
    let mut sim = raw_client();
    sim.raw_to_server(&wire::request(1));
    sim.run();
    sim.start(1);
    sim.finish(1);
    sim.raw_to_server(&wire::request(1));
    sim.run();
    assert_eq!(
        sim.to_client(),
        [
            F::HELLO,
            F::Ready(100),
            F::Response(1, Status::OK),
            F::Error(1, ErrorCode::ID_ORDER)
        ]
    );
    assert_error_then_close(&mut sim, F::Error(1, ErrorCode::ID_ORDER));
}

#[test]
fn oversize_frame_is_refused_from_the_header_alone() {
    let mut sim = raw_client();
    // Only the 16-byte header of a 1025-byte REQUEST: the body never comes.
    sim.raw_to_server(&wire::header(Kind::REQUEST, 0, 1025, 1));
    sim.run();
    assert!(sim.app.accepted.is_empty());
    assert_error_then_close(&mut sim, F::Error(0, ErrorCode::TOO_LARGE));
}

#[test]
fn frame_of_exactly_max_size_is_accepted() {
    let mut sim = raw_client();
    let mut req = wire::header(Kind::REQUEST, 0, 1024, 1);
    req.extend_from_slice(&10_000_000u32.to_be_bytes());
    req.push(4);
    req.extend_from_slice(b"echo");
    req.resize(16 + 1024, 0);
    sim.c2s.read_limit = Some(100); // arrives in pieces
    sim.raw_to_server(&req);
    sim.run();
    assert_eq!(sim.app.accepted, [1]);
}

#[test]
fn unknown_kind_is_refused() {
    let mut sim = raw_client();
    sim.raw_to_server(&wire::header(Kind(0x7f), 0, 0, 0));
    sim.run();
    assert_error_then_close(&mut sim, F::Error(0, ErrorCode::UNKNOWN_KIND));
}

#[test]
fn caller_sending_goaway_cannot_make_the_server_drain() {
    let mut sim = raw_client();
    sim.raw_to_server(&wire::request(1));
    sim.raw_to_server(&wire::go_away(1));
    sim.run();
    assert!(!sim.server().is_draining());
    assert_eq!(sim.server().last_accepted(), None);
    assert!(!sim.to_client().iter().any(|f| matches!(f, F::GoAway(_))));
    assert_error_then_close(&mut sim, F::Error(0, ErrorCode::UNEXPECTED_FRAME));
}

#[test]
fn caller_sending_response_is_unexpected() {
    let mut sim = raw_client();
    sim.raw_to_server(&wire::request(1));
    sim.run();
    sim.raw_to_server(&wire::response(1));
    sim.run();
    assert!(!sim.to_client().iter().any(|f| matches!(f, F::Response(..))));
    assert_error_then_close(&mut sim, F::Error(0, ErrorCode::UNEXPECTED_FRAME));
}

#[test]
fn caller_sending_ready_is_unexpected() {
    let mut sim = raw_client();
    sim.raw_to_server(&wire::ready(100));
    sim.run();
    assert_error_then_close(&mut sim, F::Error(0, ErrorCode::UNEXPECTED_FRAME));
}

#[test]
fn caller_sending_shutdown_reject_is_unexpected() {
    let mut sim = raw_client();
    sim.raw_to_server(&wire::reject(1, RejectReason::SHUTTING_DOWN));
    sim.run();
    assert_error_then_close(&mut sim, F::Error(0, ErrorCode::UNEXPECTED_FRAME));
}

#[test]
fn goaway_ack_without_goaway_is_unexpected() {
    let mut sim = raw_client();
    sim.raw_to_server(&wire::go_away_ack(0));
    sim.run();
    assert_error_then_close(&mut sim, F::Error(0, ErrorCode::UNEXPECTED_FRAME));
}

#[test]
fn cancel_for_an_id_never_sent_is_unknown_id() {
    let mut sim = raw_client();
    sim.raw_to_server(&wire::request(1));
    sim.raw_to_server(&wire::cancel(2));
    sim.run();
    assert_error_then_close(&mut sim, F::Error(2, ErrorCode::UNKNOWN_ID));
}

#[test]
fn caller_that_never_closes_after_error_is_closed_after_linger() {
    let mut sim = raw_client();
    sim.raw_to_server(&wire::header(Kind(0x7f), 0, 0, 0));
    sim.run_for(10 * SEC);
    assert_eq!(sim.time_of(&Ev::ServerShutdownWrite), Duration::ZERO);
    assert_eq!(sim.time_of(&Ev::ServerClose), 2 * SEC);
}
