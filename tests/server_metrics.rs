//! The server's metrics count what the protocol core decides on its own (NOT_READY before
//! READY, OVERLOADED over the per-connection limit, DEADLINE for no time left, SHUTTING_DOWN
//! after GOAWAY), time requests answered later, and count the answers the server gives for
//! them (CANCELLED, DEADLINE_EXCEEDED) and the late answers it drops.

#[path = "support/peer.rs"]
mod peer;
#[path = "support/prom.rs"]
mod prom;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gracerpc::proto::{RejectReason, Status};
use gracerpc::server::{Request, Responder, Server, ServerHandle};
use peer::{OwnedFrame, Peer, QUICK, connect_hello, connect_ready, frames, wait_until};
use prom::scrape;

/// Responders the `hold` handler kept.
type Kept = Arc<Mutex<Vec<Responder>>>;

fn server(
    kept: &Kept,
    f: impl FnOnce(gracerpc::server::Builder) -> gracerpc::server::Builder,
) -> ServerHandle {
    let k = kept.clone();
    f(Server::builder()
        .metrics()
        .inline_handler("echo", |r: &Request<'_>| Ok(r.body.to_vec()))
        .deferred_handler("hold", move |_r: &Request<'_>, resp: Responder| {
            k.lock().unwrap().push(resp)
        }))
    .spawn()
    .expect("spawn")
}

fn has(s: &ServerHandle, line: &str) {
    let text = scrape(s);
    assert!(
        text.lines().any(|l| l == line),
        "missing {line:?} in\n{text}"
    );
}

fn expect_reject(p: &mut Peer, id: u64, want: RejectReason) {
    match p.expect_frame(QUICK, "a SHUTDOWN_REJECT") {
        OwnedFrame::Reject { id: got, reason } => {
            assert_eq!((got, reason), (id, want), "rejection of {id}")
        }
        other => panic!("expected SHUTDOWN_REJECT {id} {want:?}, got {other:?}"),
    }
}

#[test]
fn rejections_decided_by_the_protocol_core_are_counted() {
    let kept = Kept::default();
    let s = server(&kept, |b| b.manual_ready().max_in_flight_per_connection(1));
    // Before READY: the connection itself rejects NOT_READY (rule 6).
    let mut p = connect_hello(s.local_addr());
    p.send_request(1, "echo", b"early");
    expect_reject(&mut p, 1, RejectReason::NOT_READY);
    has(
        &s,
        "gracerpc_requests_rejected_total{reason=\"not_ready\"} 1",
    );

    s.ready().set_ready();
    p.wait_ready(QUICK);
    // One deferred request held: the next is over the per-connection limit (rule 10).
    p.send_request(2, "hold", b"");
    wait_until(QUICK, "the hold handler to keep its responder", || {
        kept.lock().unwrap().len() == 1
    });
    p.send_request(3, "echo", b"over");
    expect_reject(&mut p, 3, RejectReason::OVERLOADED);
    has(
        &s,
        "gracerpc_requests_rejected_total{reason=\"overloaded\"} 1",
    );
    // No time left (rule 11).
    p.send_ok(&frames::request_with(4, "echo", b"", 0, false), "REQUEST 4");
    expect_reject(&mut p, 4, RejectReason::DEADLINE);
    has(
        &s,
        "gracerpc_requests_rejected_total{reason=\"deadline\"} 1",
    );

    // A deferred answer is timed like any other.
    let r = kept.lock().unwrap().pop().expect("the held responder");
    assert!(r.ok(b"late".to_vec()));
    let got = p.collect_answers(&[2], QUICK);
    assert!(matches!(
        got[&2],
        OwnedFrame::Response {
            status: Status::OK,
            ..
        }
    ));
    has(
        &s,
        "gracerpc_request_duration_seconds_count{method=\"hold\"} 1",
    );

    // After GOAWAY the connection rejects SHUTTING_DOWN (rule 2).
    s.shutdown();
    p.expect_matching(QUICK, "GOAWAY", |f| matches!(f, OwnedFrame::GoAway { .. }));
    p.send_request(5, "echo", b"after");
    expect_reject(&mut p, 5, RejectReason::SHUTTING_DOWN);
    has(
        &s,
        "gracerpc_requests_rejected_total{reason=\"shutting_down\"} 1",
    );
    p.send_ok(&frames::goaway_ack(4), "GOAWAY_ACK");
    drop(p);
    s.wait().expect("drain");
}

#[test]
fn answers_the_server_gives_for_deferred_requests_are_counted() {
    let kept = Kept::default();
    let s = server(&kept, |b| b.deferred_grace(Duration::from_millis(10)));
    let mut p = connect_ready(s.local_addr());
    // Never answered: the server answers DEADLINE_EXCEEDED at the deadline plus the grace.
    p.send_ok(
        &frames::request_with(1, "hold", b"", 50_000, false),
        "REQUEST 1",
    );
    // Cancelled while it runs: CANCELLED.
    p.send_request(2, "hold", b"");
    wait_until(QUICK, "both responders kept", || {
        kept.lock().unwrap().len() == 2
    });
    p.send_ok(&frames::cancel(2), "CANCEL 2");
    let got = p.collect_answers(&[1, 2], QUICK);
    assert!(matches!(
        got[&1],
        OwnedFrame::Response {
            status: Status::DEADLINE_EXCEEDED,
            ..
        }
    ));
    assert!(matches!(
        got[&2],
        OwnedFrame::Response {
            status: Status::CANCELLED,
            ..
        }
    ));
    has(
        &s,
        "gracerpc_requests_completed_total{status=\"deadline_exceeded\"} 1",
    );
    has(
        &s,
        "gracerpc_requests_completed_total{status=\"cancelled\"} 1",
    );
    // Their responders answer afterwards: dropped, and counted.
    for r in kept.lock().unwrap().drain(..) {
        assert!(!r.ok(b"too late".to_vec()), "the server answered already");
    }
    has(&s, "gracerpc_late_answers_total 2");
    // Neither was the handler's answer: no latency recorded.
    has(
        &s,
        "gracerpc_request_duration_seconds_count{method=\"hold\"} 0",
    );
}
