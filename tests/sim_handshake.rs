//! HELLO and READY (rule 6): versions, features, readiness and its capacity.

mod support;

use gracerpc::proto::{
    ApiMisuse, ClientEvent, ConnError, ErrorCode, ProtocolError, RejectReason, ServerConnConfig,
};
use support::sim::{Ev, SEC, Sim, SimConfig};
use support::wire::{self, F};

/// A real server (not ready unless `ready`) facing a raw caller.
fn raw_client(ready: Option<u8>) -> Sim {
    Sim::with(SimConfig {
        client: None,
        ready,
        ..SimConfig::default()
    })
}

fn protocol_error(code: ErrorCode, id: u64, detail: &'static str) -> ConnError {
    ConnError::Protocol(ProtocolError { code, id, detail })
}

#[test]
fn requests_before_ready_are_rejected_not_ready_and_never_reach_the_app() {
    let mut sim = raw_client(None);
    sim.raw_to_server(&wire::hello_ours());
    sim.raw_to_server(&wire::request(1));
    sim.raw_to_server(&wire::request(2));
    sim.run();
    assert!(sim.app.accepted.is_empty());
    sim.set_ready(Some(50));
    sim.raw_to_server(&wire::request(3));
    sim.run();
    assert_eq!(
        sim.to_client(),
        [
            F::HELLO,
            F::Reject(1, RejectReason::NOT_READY),
            F::Reject(2, RejectReason::NOT_READY),
            F::Ready(50),
        ]
    );
    assert_eq!(sim.app.accepted, [3]);
    assert_eq!(
        sim.finished_answers, 0,
        "the connection's own rejects are not the app's"
    );
}

#[test]
fn caller_cannot_send_before_ready() {
    let mut sim = Sim::with(SimConfig {
        ready: None,
        ..SimConfig::default()
    });
    sim.run();
    let deadline = sim.now + SEC;
    assert_eq!(sim.try_send(deadline), Err(ApiMisuse::NotSendable));
    sim.set_ready(Some(100));
    sim.run();
    assert_eq!(sim.try_send(deadline), Ok(1));
}

#[test]
fn ready_capacity_changes_are_delivered() {
    let mut sim = Sim::with(SimConfig {
        ready: Some(10),
        ..SimConfig::default()
    });
    sim.run();
    sim.set_ready(Some(60));
    sim.run();
    sim.set_ready(Some(60)); // unchanged: nothing sent
    sim.run();
    sim.set_ready(Some(100));
    sim.run();
    assert_eq!(
        sim.to_client(),
        [F::HELLO, F::Ready(10), F::Ready(60), F::Ready(100)]
    );
    assert_eq!(
        sim.client_events(),
        [
            ClientEvent::Ready(10),
            ClientEvent::Ready(60),
            ClientEvent::Ready(100)
        ]
    );
    assert_eq!(sim.client().ready_capacity(), Some(100));
}

#[test]
fn deadline_zero_is_rejected_unrun() {
    let mut sim = raw_client(Some(100));
    sim.raw_to_server(&wire::hello_ours());
    sim.raw_to_server(&wire::request_with(1, 0));
    sim.run();
    assert_eq!(
        sim.to_client(),
        [
            F::HELLO,
            F::Ready(100),
            F::Reject(1, RejectReason::DEADLINE)
        ]
    );
    assert!(sim.app.accepted.is_empty());
}

#[test]
fn caller_hello_version_mismatch_gets_unsupported_version() {
    let mut sim = raw_client(Some(100));
    sim.raw_to_server(&wire::hello(2, 3, 0));
    sim.run();
    assert_eq!(
        sim.to_client(),
        [F::HELLO, F::Error(0, ErrorCode::UNSUPPORTED_VERSION)]
    );
    let err = protocol_error(
        ErrorCode::UNSUPPORTED_VERSION,
        0,
        "no protocol version in common",
    );
    sim.expect_order(&[Ev::ServerErr(err), Ev::ServerShutdownWrite, Ev::ClientEof]);
    sim.raw_client_close();
    sim.run();
    assert!(sim.server_closed(), "closes once the caller has closed");
}

#[test]
fn server_hello_version_mismatch_gets_unsupported_version() {
    let mut sim = Sim::with(SimConfig {
        server: None,
        ..SimConfig::default()
    });
    sim.raw_to_client(&wire::hello(0, 0, 0));
    sim.run();
    assert_eq!(
        sim.to_server(),
        [F::HELLO, F::Error(0, ErrorCode::UNSUPPORTED_VERSION)]
    );
    assert!(sim.client_closed());
}

#[test]
fn unknown_optional_feature_bits_are_ignored() {
    let mut sim = raw_client(Some(100));
    sim.raw_to_server(&wire::hello(1, 1, 0x0000_00f0));
    sim.raw_to_server(&wire::request(1));
    sim.run();
    assert_eq!(sim.to_client(), [F::HELLO, F::Ready(100)]);
    assert_eq!(sim.app.accepted, [1]);

    let mut sim = Sim::with(SimConfig {
        server: None,
        ..SimConfig::default()
    });
    sim.raw_to_client(&wire::hello(1, 4, 0x0000_8001));
    sim.raw_to_client(&wire::ready(100));
    sim.run();
    assert!(sim.client().is_sendable());
    assert!(!sim.events().iter().any(|e| matches!(e, Ev::ClientErr(_))));
}

#[test]
fn unknown_critical_feature_bit_is_refused() {
    let mut sim = raw_client(Some(100));
    sim.raw_to_server(&wire::hello(1, 1, 0x0001_0000));
    sim.run();
    assert_eq!(
        sim.to_client(),
        [F::HELLO, F::Error(0, ErrorCode::UNSUPPORTED_FEATURE)]
    );
}

#[test]
fn hello_that_never_arrives_times_out() {
    let mut sim = Sim::with(SimConfig {
        client: None,
        server: Some(ServerConnConfig {
            hello_timeout: SEC,
            ..ServerConnConfig::default()
        }),
        ..SimConfig::default()
    });
    sim.run_for(5 * SEC);
    assert_eq!(
        sim.to_client(),
        [F::HELLO, F::Error(0, ErrorCode::HANDSHAKE)]
    );
    assert_eq!(sim.time_of(&Ev::ServerShutdownWrite), SEC);
    assert_eq!(
        sim.time_of(&Ev::ServerClose),
        3 * SEC,
        "closed after the 2 s linger"
    );
}

#[test]
fn frame_before_hello_is_a_handshake_error() {
    let mut sim = raw_client(Some(100));
    sim.raw_to_server(&wire::request(1));
    sim.run();
    assert_eq!(
        sim.to_client(),
        [F::HELLO, F::Error(1, ErrorCode::HANDSHAKE)]
    );
    assert!(sim.app.accepted.is_empty());
}
