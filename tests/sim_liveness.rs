//! PING/PONG, the idle timeout, the caller's half-close and CANCEL.

mod support;

use gracerpc::proto::{
    ClientConnConfig, ClientEvent, ConnError, ErrorCode, Outcome, ProtocolError, RejectReason,
    ServerConnConfig, Status,
};
use support::sim::{Ev, MS, SEC, Sim, SimConfig};
use support::wire::F;

/// Server idle timeout 1 s, PING timeout 500 ms; the caller never pings on its own.
fn idle_sim() -> Sim {
    Sim::with(SimConfig {
        server: Some(ServerConnConfig {
            idle_timeout: SEC,
            ping_timeout: 500 * MS,
            ..ServerConnConfig::default()
        }),
        client: Some(ClientConnConfig {
            ping_interval: 3600 * SEC,
            ..ClientConnConfig::default()
        }),
        ..SimConfig::default()
    })
}

#[test]
fn idle_connection_is_pinged_and_the_pong_keeps_it() {
    let mut sim = idle_sim();
    sim.run_for(2500 * MS);
    assert_eq!(
        sim.to_client(),
        [F::HELLO, F::Ready(100), F::Ping(0), F::Ping(0)]
    );
    assert_eq!(sim.to_server(), [F::HELLO, F::Pong(0), F::Pong(0)]);
    assert_eq!(sim.time_of(&Ev::ClientGot(F::Ping(0))), SEC);
    assert!(!sim.server_closed() && !sim.client_closed());
    assert!(sim.server().error().is_none());
}

#[test]
fn unanswered_ping_times_out() {
    let mut sim = idle_sim();
    sim.run();
    sim.client_frozen = true;
    sim.run_for(5 * SEC);
    let err = ConnError::Protocol(ProtocolError {
        code: ErrorCode::TIMEOUT,
        id: 0,
        detail: "PING not answered in time",
    });
    assert_eq!(sim.time_of(&Ev::ServerErr(err)), 1500 * MS);
    assert_eq!(sim.time_of(&Ev::ServerShutdownWrite), 1500 * MS);
    assert_eq!(
        sim.time_of(&Ev::ServerClose),
        3500 * MS,
        "after the 2 s linger"
    );
}

#[test]
fn connection_with_a_request_pending_is_never_idle() {
    let mut sim = idle_sim();
    sim.run();
    let id = sim.send();
    sim.run();
    sim.start(id);
    sim.run_for(5 * SEC); // the handler runs 5 idle timeouts long
    assert!(!sim.to_client().contains(&F::Ping(0)), "{}", sim.dump());
    assert!(sim.server().error().is_none());
    sim.finish(id);
    sim.run();
    assert!(matches!(sim.outcome(id), Outcome::Completed { .. }));
}

#[test]
fn caller_pings_a_silent_server() {
    let mut sim = Sim::with(SimConfig {
        client: Some(ClientConnConfig {
            ping_interval: SEC,
            ..ClientConnConfig::default()
        }),
        ..SimConfig::default()
    });
    sim.run_for(1500 * MS);
    assert_eq!(sim.to_server(), [F::HELLO, F::Ping(0)]);
    assert_eq!(sim.to_client(), [F::HELLO, F::Ready(100), F::Pong(0)]);
}

#[test]
fn caller_half_close_still_gets_every_response_then_close() {
    let mut sim = Sim::new();
    sim.run();
    sim.send_n(2);
    sim.run();
    sim.start_all();
    sim.client_shutdown_write();
    sim.run();
    assert!(sim.saw(&Ev::ServerEof));
    assert!(!sim.server_closed(), "answers still owed");
    sim.finish(1);
    sim.run();
    assert!(!sim.server_closed(), "answers still owed");
    sim.finish(2);
    sim.run_until_closed();
    assert!(matches!(sim.outcome(1), Outcome::Completed { .. }));
    assert!(matches!(sim.outcome(2), Outcome::Completed { .. }));
    sim.expect_order(&[
        Ev::ServerEof,
        Ev::ClientGot(F::Response(2, Status::OK)),
        Ev::ServerClose,
        Ev::ClientEof,
    ]);
    assert!(!sim.saw(&Ev::ServerShutdownWrite));
    assert_eq!(sim.finished_answers, 2);
}

#[test]
fn cancel_of_a_pending_id_surfaces_as_incoming_cancel() {
    let mut sim = Sim::new();
    sim.run();
    sim.send_n(2);
    sim.run();
    sim.start(1);
    assert_eq!(sim.cancel(1), Some(1000));
    assert_eq!(sim.cancel(2), Some(1001));
    assert_eq!(sim.cancel(2), None);
    sim.run();
    assert_eq!(
        sim.to_server(),
        [
            F::HELLO,
            F::Request(1),
            F::Request(2),
            F::Cancel(1),
            F::Cancel(2)
        ]
    );
    sim.expect_order(&[
        Ev::CancelHint(1),
        Ev::CancelHint(2),
        Ev::AppRejected(2, RejectReason::CANCELLED),
    ]);
    // 1 had started: it runs to the end; its answer, like 2's reject, is dropped silently.
    sim.finish(1);
    sim.run();
    assert_eq!(
        sim.to_client()[2..],
        [
            F::Reject(2, RejectReason::CANCELLED),
            F::Response(1, Status::OK)
        ]
    );
    assert!(
        sim.outcomes().is_empty(),
        "a cancelled id resolves locally, once"
    );
    assert!(!sim.events().iter().any(|e| matches!(e, Ev::ClientErr(_))));
    assert_eq!(sim.client_events(), [ClientEvent::Ready(100)]);
    assert_eq!(sim.finished_answers, 2);
}

#[test]
fn cancel_after_the_answer_is_ignored_by_the_server() {
    let mut sim = Sim::new();
    sim.run();
    sim.send();
    sim.run();
    sim.start(1);
    sim.finish(1);
    // CANCEL crosses RESPONSE on the wire: the caller sends it before it reads the answer.
    sim.cancel(1);
    sim.run();
    assert!(sim.to_server().contains(&F::Cancel(1)));
    assert!(!sim.saw(&Ev::CancelHint(1)));
    assert!(sim.server().error().is_none());
}

#[test]
fn ping_outstanding_when_the_connection_fails_does_not_spin() {
    let mut sim = Sim::with(SimConfig {
        client: None,
        server: Some(ServerConnConfig {
            idle_timeout: SEC,
            ping_timeout: 500 * MS,
            ..ServerConnConfig::default()
        }),
        ..SimConfig::default()
    });
    sim.raw_to_server(&support::wire::hello_ours());
    sim.run_for(1100 * MS);
    assert_eq!(sim.to_client().last(), Some(&F::Ping(0)));
    // Bad bytes while the PING is out: the connection fails; the PING deadline must not stay
    // due (the simulator fails on a timer that stays in the past).
    sim.raw_to_server(&support::wire::header(gracerpc::proto::Kind(0x7f), 0, 0, 0));
    sim.run_for(5 * SEC);
    assert_eq!(sim.time_of(&Ev::ServerShutdownWrite), 1100 * MS);
    assert_eq!(sim.time_of(&Ev::ServerClose), 3100 * MS);
}
