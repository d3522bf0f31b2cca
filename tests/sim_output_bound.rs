//! The caller's output is bounded: a server that stops reading cannot grow it without limit
//! (issue 11, finding 6). Requests past the bound are refused unsent (`OutputFull`), and the
//! connection takes them again once the server reads.

mod support;

use gracerpc::proto::{ApiMisuse, ClientConnConfig};
use support::sim::{SEC, Sim, SimConfig};

#[test]
fn output_to_a_server_that_does_not_read_is_bounded() {
    let max_out = 64 * 1024;
    let mut sim = Sim::with(SimConfig {
        client: Some(ClientConnConfig {
            max_out,
            ..ClientConnConfig::default()
        }),
        ..SimConfig::default()
    });
    sim.run();
    sim.c2s.hold = true; // the server's receive buffer is full: nothing more is written
    let deadline = sim.now + 60 * SEC;
    let mut sent = 0;
    let refused = loop {
        match sim.try_send(deadline) {
            Ok(_) => sent += 1,
            Err(e) => break e,
        }
        sim.run();
        assert!(sent < 1_000_000, "the output took a million requests");
    };
    assert!(
        matches!(refused, ApiMisuse::OutputFull { max, .. } if max == max_out),
        "{refused:?}"
    );
    assert!(sent > 0);
    assert!(
        sim.client().out_len() <= max_out,
        "{} bytes queued",
        sim.client().out_len()
    );
    // The server reads again: the output drains and requests are taken again.
    sim.c2s.hold = false;
    sim.run();
    assert_eq!(sim.client().out_len(), 0);
    assert!(sim.try_send(deadline).is_ok());
}
