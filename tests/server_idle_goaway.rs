//! The close sequence reaches idle connections too: GOAWAY arrives promptly on a connection that
//! never sent a request (N = 0) and on one whose requests are all answered (N = its last id),
//! and once the sequence has begun a new connect is refused, not accepted and then reset.

#[path = "support/peer.rs"]
mod peer;

use std::io;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use gracerpc::proto::GoAwayReason;
use gracerpc::server::{Request, Server};
use peer::{OwnedFrame, QUICK, connect_ready, frames, wait_report};

const BUDGET: Duration = Duration::from_secs(10);
/// What GOAWAY announces: the budget less the linger kept at its end, min(linger 2 s, B/4).
const ANNOUNCED: Duration = Duration::from_secs(8);
/// "Promptly": generous for a loaded test machine, far below any budget.
const PROMPT: Duration = Duration::from_secs(1);

#[test]
fn idle_connections_get_goaway_promptly_and_new_connects_are_refused() {
    let server = Server::builder()
        .drain_budget(BUDGET)
        .inline_handler("echo", |r: &Request<'_>| Ok(r.body.to_vec()))
        .spawn()
        .expect("spawn");
    let addr = server.local_addr();
    let mut idle = connect_ready(addr);
    let mut used = connect_ready(addr);
    used.send_request(1, "echo", b"one");
    used.send_request(2, "echo", b"two");
    used.collect_answers(&[1, 2], QUICK);

    let t0 = Instant::now();
    server.shutdown();
    for (p, n, name) in [(&mut idle, 0, "idle"), (&mut used, 2, "used")] {
        let f = p.expect_frame(PROMPT, &format!("GOAWAY on the {name} connection"));
        assert_eq!(
            f,
            OwnedFrame::GoAway {
                last_accepted: n,
                drain_budget_ms: ANNOUNCED.as_millis() as u32,
                reason: GoAwayReason::SHUTDOWN
            },
            "{name} connection"
        );
    }
    let took = t0.elapsed();
    assert!(took < PROMPT, "GOAWAY took {took:?}");

    // The server is still draining (both callers connected), and its listener is closed.
    assert_eq!(server.connections(), 2);
    match TcpStream::connect_timeout(&addr, QUICK) {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
        Err(e) => panic!("a connect during the drain must be refused, got {e}"),
        Ok(s) => panic!(
            "a connect during the drain was accepted (local {:?}): it would be reset at exit",
            s.local_addr()
        ),
    }

    for (p, n) in [(&mut idle, 0), (&mut used, 2)] {
        p.send_ok(&frames::goaway_ack(n), "GOAWAY_ACK");
        let rest = p.close_and_expect_eof(QUICK, "caller's close after GOAWAY_ACK");
        assert!(rest.is_empty(), "{rest:?}");
    }
    let (report, _server) = wait_report(server, QUICK);
    assert!(report.clean, "{report:?}");
    assert_eq!(report.goaway_sent, 2, "{report:?}");
    assert_eq!(report.abandoned, 0, "{report:?}");
}

#[test]
fn a_server_with_no_connections_stops_at_once() {
    let server = Server::builder().spawn().expect("spawn");
    let addr = server.local_addr();
    let t0 = Instant::now();
    server.shutdown();
    let (report, _server) = wait_report(server, QUICK);
    assert!(t0.elapsed() < PROMPT, "took {:?}", t0.elapsed());
    assert!(report.clean, "{report:?}");
    assert_eq!(report.goaway_sent, 0, "{report:?}");
    let e = TcpStream::connect_timeout(&addr, QUICK).expect_err("connect after the stop");
    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
}
