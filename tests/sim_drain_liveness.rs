//! Liveness after GOAWAY (rule 8, rule 3 step 4): a draining connection keeps PINGing, and ends
//! at the announced drain budget plus the margin; either way its unanswered requests resolve as
//! Unknown at once, not at their own (much later) deadline.

mod support;

use gracerpc::proto::{ClientConnConfig, ConnError, Outcome, ServerConnConfig, Status};
use support::sim::{Ev, MS, SEC, Sim, SimConfig};
use support::wire::{self, F};

/// A raw server that handshakes; the caller sends one request with a 60 s deadline, and the
/// server answers GOAWAY(1) (5 s budget) and then goes silent.
fn silent_after_goaway(client: ClientConnConfig) -> Sim {
    let mut sim = Sim::with(SimConfig {
        server: None,
        client: Some(client),
        ..SimConfig::default()
    });
    sim.raw_to_client(&wire::hello_ours());
    sim.raw_to_client(&wire::ready(100));
    sim.run();
    let deadline = sim.now + 60 * SEC;
    let id = sim.send_with(deadline);
    sim.run();
    sim.raw_to_client(&wire::go_away(id));
    sim.run();
    assert!(sim.client().is_draining(), "{}", sim.dump());
    sim
}

#[test]
fn draining_connection_pings_and_a_silent_server_is_found_out() {
    let mut sim = silent_after_goaway(ClientConnConfig {
        ping_interval: 200 * MS,
        ping_timeout: 200 * MS,
        ..ClientConnConfig::default()
    });
    let goaway_at = sim.elapsed();
    sim.run_for(10 * SEC);
    assert_eq!(
        sim.to_server(),
        [F::HELLO, F::Request(1), F::GoAwayAck(1), F::Ping(0)],
        "{}",
        sim.dump()
    );
    assert_eq!(sim.outcome(1), Outcome::Unknown, "{}", sim.dump());
    let lost = Ev::Client(gracerpc::proto::ClientEvent::Closed {
        error: Some(ConnError::Lost("PING not answered in time")),
    });
    let took = sim.time_of(&lost) - goaway_at;
    assert!(
        took <= 400 * MS,
        "the silence after GOAWAY was found out after {took:?}, not at interval + timeout"
    );
    assert!(sim.client_closed());
}

#[test]
fn draining_connection_ends_at_the_announced_budget_plus_margin() {
    // No PING in time (a huge interval): the announced budget (5 s) bounds the wait.
    let mut sim = silent_after_goaway(ClientConnConfig {
        ping_interval: 3600 * SEC,
        drain_margin: SEC,
        ..ClientConnConfig::default()
    });
    let goaway_at = sim.elapsed();
    sim.run_for(30 * SEC);
    assert_eq!(sim.outcome(1), Outcome::Unknown, "{}", sim.dump());
    let lost = Ev::Client(gracerpc::proto::ClientEvent::Closed {
        error: Some(ConnError::Lost(
            "the drain budget passed without the answers owed",
        )),
    });
    assert_eq!(sim.time_of(&lost) - goaway_at, 6 * SEC, "{}", sim.dump());
    assert!(sim.client_closed());
}

#[test]
fn a_draining_server_that_answers_pings_keeps_its_connection_until_the_answer() {
    // A real server draining with a 10 s budget and a request running 3 s: the caller PINGs
    // meanwhile, the server answers, and the request completes.
    let mut sim = Sim::with(SimConfig {
        server: Some(ServerConnConfig::default()),
        client: Some(ClientConnConfig {
            ping_interval: 500 * MS,
            ping_timeout: 500 * MS,
            ..ClientConnConfig::default()
        }),
        ..SimConfig::default()
    });
    sim.run();
    let id = sim.send_with(sim.now + 60 * SEC);
    sim.run();
    sim.start(id);
    sim.start_drain(10 * SEC);
    sim.run_for(3 * SEC);
    let pings = sim.to_server().iter().filter(|f| **f == F::Ping(0)).count();
    assert!(pings >= 3, "{pings} PINGs while draining: {}", sim.dump());
    assert!(
        !sim.client_closed(),
        "the connection was given up: {}",
        sim.dump()
    );
    sim.finish(id);
    sim.run_until_closed();
    assert!(
        matches!(sim.outcome(id), Outcome::Completed { status, .. } if status == Status::OK),
        "{}",
        sim.dump()
    );
    assert!(!sim.saw(&Ev::ServerReset), "{}", sim.dump());
}
