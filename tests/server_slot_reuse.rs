//! Connection tokens carry a generation: a completion that arrives after its connection closed
//! and its slab slot was reused by a new connection goes nowhere. To make a misdelivery visible,
//! the new connection has a request with the *same id* in flight when the old answer lands.

#[path = "support/peer.rs"]
mod peer;

use std::time::Duration;

use gracerpc::proto::Status;
use gracerpc::server::{Request, Server};
use peer::{Gate, OwnedFrame, QUICK, connect_ready, frames, wait_until};

#[test]
fn a_completion_for_a_closed_connection_never_reaches_the_connection_reusing_its_slot() {
    let gate = Gate::new();
    let server = Server::builder()
        .workers(2)
        .handler("block", gate.handler())
        .inline_handler("echo", |r: &Request<'_>| Ok(r.body.to_vec()))
        .spawn()
        .expect("spawn");
    let addr = server.local_addr();

    // A: one request held in a handler, then A vanishes with a reset (unread input waiting),
    // so the server drops the connection at once and frees its slot.
    let mut a = peer::Peer::connect(addr).expect("connect A");
    a.send_ok(&frames::hello(), "HELLO");
    a.send_request(7, "block", b"answer-for-A");
    gate.wait_started(b"answer-for-A", QUICK);
    a.abort_with_reset(QUICK);
    wait_until(QUICK, "the server to drop connection A", || {
        server.connections() == 0
    });
    assert_eq!(server.in_flight(), 1, "A's request is still running");

    // B: a new connection (the slab hands out A's slot again) with its own id 7 in flight.
    let mut b = connect_ready(addr);
    b.send_request(7, "block", b"answer-for-B");
    gate.wait_started(b"answer-for-B", QUICK);
    assert_eq!(server.connections(), 1);

    // A's handler returns; its completion must be dropped, not written to B.
    gate.release(b"answer-for-A");
    gate.wait_finished(b"answer-for-A", QUICK);
    wait_until(QUICK, "A's completion to be processed", || {
        server.in_flight() == 1
    });
    b.expect_silence(
        Duration::from_millis(200),
        "B's request is still held: A's answer must go nowhere",
    );

    // B still works: its own answer, then a fresh request.
    gate.release(b"answer-for-B");
    let got = b.collect_answers(&[7], QUICK);
    assert_eq!(
        got[&7],
        OwnedFrame::Response {
            id: 7,
            status: Status::OK,
            body: b"answer-for-B".to_vec()
        }
    );
    b.send_request(8, "echo", b"still-alive");
    let got = b.collect_answers(&[8], QUICK);
    assert_eq!(
        got[&8],
        OwnedFrame::Response {
            id: 8,
            status: Status::OK,
            body: b"still-alive".to_vec()
        }
    );
    wait_until(QUICK, "in-flight counter back to 0", || {
        server.in_flight() == 0
    });
    peer::shutdown_clean(server, &mut b, "B's close");
}
