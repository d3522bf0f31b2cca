//! A caller that vanishes without closing (no FIN, no RST: its packets simply stop): the server
//! notices through its idle PING going unanswered and frees the connection; a connection with a
//! request outstanding (a long `work` call) is never treated as idle — it stays, and its answer
//! is delivered once the wire is back.
//!
//! The callers live in a network namespace of their own, joined to the server's by a veth pair
//! (`support/netns.rs`); taking the callers' end down makes them vanish. Needs root and `ip`;
//! skips with a message elsewhere.

#[path = "support/netns.rs"]
mod netns;
#[path = "support/peer.rs"]
mod peer;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gracerpc::proto::Frame;
use gracerpc::proto::frame::Ping;
use gracerpc::server::Server;
use netns::Side;
use peer::{Gate, OwnedFrame, QUICK, connect_ready, frames, wait_report, wait_until};

const IDLE: Duration = Duration::from_millis(300);
const PING_TIMEOUT: Duration = Duration::from_millis(300);
const LINGER: Duration = Duration::from_millis(200);
/// Scheduling slack on a busy machine.
const SLACK: Duration = Duration::from_secs(1);

fn pong(opaque: u64) -> Vec<u8> {
    let mut b = Vec::new();
    Frame::Pong(Ping { opaque }).encode(&mut b);
    b
}

#[test]
fn a_vanished_idle_caller_is_freed_and_a_busy_one_is_kept_and_answered() {
    let Some(net) = netns::pair_or_skip("vanished") else {
        return;
    };
    let gate = Gate::new();
    let work = gate.handler();
    let listen = SocketAddr::from((net.addr_a(), 0)).to_string();
    let server = net.enter(Side::A, move || {
        Server::builder()
            .listen(listen)
            .workers(2)
            .idle_timeout(IDLE, PING_TIMEOUT)
            .linger(LINGER)
            .handler("work", work)
            .spawn()
            .expect("spawn the server in namespace A")
    });
    let addr = server.local_addr();
    let (mut idle, mut busy) =
        net.enter(Side::B, move || (connect_ready(addr), connect_ready(addr)));
    busy.send_request(1, "work", b"long");
    gate.wait_started(b"long", QUICK);
    assert_eq!(server.connections(), 2);

    // While the wire works, the idle caller answers the server's PING and is kept.
    match idle.expect_matching(IDLE + QUICK, "PING on the idle connection", |f| {
        matches!(f, OwnedFrame::Ping(_))
    }) {
        OwnedFrame::Ping(o) => idle.send_ok(&pong(o), "PONG"),
        _ => unreachable!(),
    }
    // Then both callers vanish.
    net.cut(Side::B);
    let cut = Instant::now();

    let bound = IDLE + PING_TIMEOUT + 2 * LINGER + SLACK;
    wait_until(
        bound,
        "the server to free the vanished idle connection",
        || server.connections() == 1,
    );
    let freed = cut.elapsed();
    assert!(
        freed >= PING_TIMEOUT,
        "freed {freed:?} after the cut: before its PING could time out"
    );

    // The busy connection has a request outstanding: never idle, never probed, kept however
    // long its handler takes.
    let hold = Instant::now() + 2 * (IDLE + PING_TIMEOUT);
    while Instant::now() < hold {
        assert_eq!(
            server.connections(),
            1,
            "a connection with a request outstanding was dropped as idle"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.in_flight(), 1);

    net.mend(Side::B);
    // The wire is back (and the server's clock of the connection's last input restarts).
    busy.send_ok(&frames::ping(7), "PING");
    busy.expect_matching(QUICK, "PONG once the wire is back", |f| {
        *f == OwnedFrame::Pong(7)
    });
    gate.release(b"long");
    let got = busy.collect_answers(&[1], QUICK);
    assert!(
        matches!(&got[&1], OwnedFrame::Response { body, .. } if body == b"long"),
        "the busy caller's answer: {:?}",
        got[&1]
    );
    wait_until(QUICK, "in_flight() back to 0", || server.in_flight() == 0);
    eprintln!("vanished idle caller freed {freed:?} after the wire was cut");

    // Idle now, and not answering PINGs: the busy caller closes before that matters.
    busy.close_and_expect_eof(QUICK, "the busy caller's close");
    wait_until(QUICK, "connections() down to 0", || {
        server.connections() == 0
    });
    server.shutdown();
    let (report, _server) = wait_report(server, QUICK);
    assert!(report.clean, "{report:?}");
    drop(idle);
}
