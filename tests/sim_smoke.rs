//! Smoke test for the simulator itself: a handshake and one request.

mod support;

use gracerpc::proto::{Outcome, Status};
use support::sim::Sim;
use support::wire::F;

#[test]
fn one_request_round_trip() {
    let mut sim = Sim::new();
    sim.run();
    let id = sim.send();
    sim.run();
    sim.start(id);
    sim.finish(id);
    sim.run();
    assert_eq!(
        sim.to_client(),
        [F::HELLO, F::Ready(100), F::Response(1, Status::OK)]
    );
    assert_eq!(sim.to_server(), [F::HELLO, F::Request(1)]);
    assert!(matches!(sim.outcome(id), Outcome::Completed { .. }));
}
