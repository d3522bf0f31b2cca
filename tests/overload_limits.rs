//! Overload on a real server over loopback: a burst far above capacity is answered in full
//! (every request run once or rejected OVERLOADED unrun, never both, never twice) without memory
//! growing with the burst; and each limit — `max_connections`, `max_in_flight_per_connection`,
//! the work `queue` shared by every connection — is enforced.

#[path = "support/peer.rs"]
mod peer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gracerpc::proto::{RejectReason, Status};
use gracerpc::server::{Request, Server};
use peer::{
    OwnedFrame, Peer, PeerError, QUICK, connect_ready, frames, gated_server, wait_report,
    wait_until,
};

/// A value from this process's `/proc/self/status`, in KiB.
fn status_kib(key: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    s.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/self/status"))
}

fn is_ok(f: &OwnedFrame, id: u64) -> bool {
    matches!(f, OwnedFrame::Response { id: i, status: Status::OK, .. } if *i == id)
}

fn overloaded(id: u64) -> OwnedFrame {
    OwnedFrame::Reject {
        id,
        reason: RejectReason::OVERLOADED,
    }
}

// ---- a burst far above capacity ----

const PEERS: u64 = 10;
const PER_PEER: u64 = 5_000;
/// Request body size: the burst carries PEERS × PER_PEER × BODY ≈ 50 MB.
const BODY: usize = 1024;
/// Requests per write.
const CHUNK: u64 = 100;
/// Memory the whole burst may add to this process (server, peers and test together): half the
/// bytes the burst carries. A server that buffered the burst, or kept rejected requests, or let
/// answers pile up, would go past it.
const RSS_BOUND_KIB: u64 = 24 * 1024;

/// Executions per token (the token is the first 8 bytes of the body: peer << 32 | id).
#[derive(Clone, Default)]
struct Runs(Arc<Mutex<HashMap<u64, u32>>>);

impl Runs {
    fn count(&self, token: u64) -> u32 {
        self.0.lock().unwrap().get(&token).copied().unwrap_or(0)
    }
    fn total(&self) -> u64 {
        self.0.lock().unwrap().values().map(|&n| u64::from(n)).sum()
    }
}

/// One peer's burst: pipelines PER_PEER requests in chunks, then reads every answer. Returns
/// how many ran (OK) and how many were rejected OVERLOADED.
fn burst(addr: std::net::SocketAddr, peer_no: u64, runs: Runs) -> (u64, u64) {
    let mut p = connect_ready(addr);
    let mut body = vec![0xabu8; BODY];
    let mut chunk = Vec::with_capacity((CHUNK as usize) * (BODY + 64));
    let mut id = 1;
    while id <= PER_PEER {
        chunk.clear();
        for i in id..(id + CHUNK).min(PER_PEER + 1) {
            body[..8].copy_from_slice(&((peer_no << 32) | i).to_be_bytes());
            chunk.extend_from_slice(&frames::request(i, "work", &body));
        }
        p.send_ok(&chunk, "a chunk of the burst");
        id += CHUNK;
    }
    let ids: Vec<u64> = (1..=PER_PEER).collect();
    let answers = p.collect_answers(&ids, Duration::from_secs(20));
    let (mut ok, mut rejected) = (0, 0);
    for (&id, f) in &answers {
        let token = (peer_no << 32) | id;
        if is_ok(f, id) {
            ok += 1;
            assert_eq!(runs.count(token), 1, "token {token:#x} answered OK");
        } else {
            assert_eq!(*f, overloaded(id), "peer {peer_no}: the only other answer");
            assert_eq!(runs.count(token), 0, "rejected {token:#x} ran");
            rejected += 1;
        }
    }
    p.close_and_expect_eof(QUICK, "caller's close after the burst");
    (ok, rejected)
}

#[test]
fn a_burst_far_above_capacity_is_answered_in_full_in_bounded_memory() {
    let runs = Runs::default();
    let r = runs.clone();
    let server = Server::builder()
        .workers(2)
        .queue(8)
        .handler("work", move |req: &Request<'_>| {
            let token = u64::from_be_bytes(req.body[..8].try_into().unwrap());
            *r.0.lock().unwrap().entry(token).or_default() += 1;
            std::thread::sleep(Duration::from_micros(20));
            Ok(req.body[..8].to_vec())
        })
        .spawn()
        .expect("spawn");
    let addr = server.local_addr();
    // Warm-up: threads, buffers and the allocator's arenas exist before the baseline.
    burst(addr, 999, runs.clone());
    let warm_runs = runs.total();
    let base = status_kib("VmRSS");

    let t0 = Instant::now();
    let peers: Vec<_> = (0..PEERS)
        .map(|n| {
            let runs = runs.clone();
            std::thread::spawn(move || burst(addr, n, runs))
        })
        .collect();
    let (mut ok, mut rejected) = (0, 0);
    for p in peers {
        let (o, r) = p.join().expect("a burst peer failed");
        ok += o;
        rejected += r;
    }
    let took = t0.elapsed();
    let peak = status_kib("VmHWM");
    let after = status_kib("VmRSS");

    assert_eq!(ok + rejected, PEERS * PER_PEER, "every request answered");
    assert!(rejected > 0, "a queue of 8 must overflow in this burst");
    assert!(ok > 0, "some of the burst must run");
    assert_eq!(
        runs.total() - warm_runs,
        ok,
        "executions = OK answers: nothing rejected ran, nothing ran twice"
    );
    eprintln!(
        "burst of {} requests ({} MB) in {took:?}: {ok} ran, {rejected} OVERLOADED; RSS {base} kB \
         before, {after} kB after, peak {peak} kB",
        PEERS * PER_PEER,
        (PEERS * PER_PEER * BODY as u64) >> 20
    );
    assert!(
        peak.saturating_sub(base) < RSS_BOUND_KIB,
        "memory grew with the burst: RSS {base} kB before, peak {peak} kB (bound +{RSS_BOUND_KIB} \
         kB)"
    );
    wait_until(QUICK, "in_flight() back to 0 after the burst", || {
        server.in_flight() == 0
    });
    wait_until(QUICK, "connections() back to 0 after the burst", || {
        server.connections() == 0
    });
    server.shutdown();
    let (report, _server) = wait_report(server, QUICK);
    assert!(report.clean, "{report:?}");
}

// ---- each limit ----

/// Proves every frame sent before it was handled: frames are handled in order.
fn sync(p: &mut Peer, opaque: u64) {
    p.send_ok(&frames::ping(opaque), "PING");
    p.expect_matching(QUICK, "PONG", |f| *f == OwnedFrame::Pong(opaque));
}

#[test]
fn max_connections_closes_the_extra_connection_unanswered() {
    let server = Server::builder()
        .max_connections(3)
        .inline_handler("echo", |r: &Request<'_>| Ok(r.body.to_vec()))
        .spawn()
        .expect("spawn");
    let addr = server.local_addr();
    let mut open: Vec<Peer> = (0..3).map(|_| connect_ready(addr)).collect();
    assert_eq!(server.connections(), 3);

    // The fourth is accepted by the kernel and closed by the server at once: no HELLO, a clean
    // EOF (it sent nothing, so nothing can be lost and no RST is due).
    let mut extra = Peer::connect(addr).expect("connect");
    match extra.next_frame(QUICK) {
        Err(PeerError::Eof) => {}
        other => panic!("the connection over max_connections: expected a clean EOF, got {other:?}"),
    }
    assert_eq!(server.connections(), 3, "the limit holds");
    // Those within the limit are unaffected.
    for (n, p) in open.iter_mut().enumerate() {
        p.send_request(1, "echo", b"still here");
        let got = p.collect_answers(&[1], QUICK);
        assert!(is_ok(&got[&1], 1), "connection {n}: {:?}", got[&1]);
    }

    // Room again once one closes.
    open.pop()
        .unwrap()
        .close_and_expect_eof(QUICK, "caller's close");
    wait_until(QUICK, "connections() down to 2", || {
        server.connections() == 2
    });
    let mut again = connect_ready(addr);
    again.send_request(1, "echo", b"x");
    assert!(is_ok(&again.collect_answers(&[1], QUICK)[&1], 1));
    open.push(again);

    server.shutdown();
    for p in &mut open {
        p.expect_matching(QUICK, "GOAWAY", |f| matches!(f, OwnedFrame::GoAway { .. }));
        p.close_and_expect_eof(QUICK, "caller's close");
    }
    let (report, _server) = wait_report(server, QUICK);
    assert!(report.clean, "{report:?}");
}

#[test]
fn max_in_flight_per_connection_rejects_a_pipelined_burst_beyond_it_unrun() {
    let (runs, gate, server) =
        gated_server(|b| b.workers(8).queue(256).max_in_flight_per_connection(4));
    let mut p = connect_ready(server.local_addr());
    let mut other = connect_ready(server.local_addr());
    // 100 requests in one write: the first 4 are accepted, the other 96 turned away at once,
    // while the 4 still block (nothing has been answered, so the count never went down).
    let burst: Vec<u8> = (1..=100)
        .flat_map(|id| frames::request(id, "block", format!("{id}").as_bytes()))
        .collect();
    p.send_ok(&burst, "100 pipelined requests");
    let rejected: Vec<u64> = (5..=100).collect();
    let got = p.collect_answers(&rejected, QUICK);
    for id in 5..=100 {
        assert_eq!(got[&id], overloaded(id));
    }
    gate.wait_started_count(4, QUICK);
    // Another connection has its own allowance.
    let burst: Vec<u8> = (1..=4)
        .flat_map(|id| frames::request(id, "block", format!("o{id}").as_bytes()))
        .collect();
    other.send_ok(&burst, "4 requests on another connection");
    gate.wait_started_count(8, QUICK);
    wait_until(QUICK, "in_flight() = the 8 accepted", || {
        server.in_flight() == 8
    });

    gate.release_all();
    let got = p.collect_answers(&[1, 2, 3, 4], QUICK);
    let got_other = other.collect_answers(&[1, 2, 3, 4], QUICK);
    for id in 1..=4 {
        assert!(is_ok(&got[&id], id), "{:?}", got[&id]);
        assert!(is_ok(&got_other[&id], id), "{:?}", got_other[&id]);
    }
    for id in 5..=100 {
        assert_eq!(runs.count(id), 0, "rejected id {id} ran");
    }
    assert_eq!(runs.total(), 8);
    wait_until(QUICK, "in_flight() back to 0", || server.in_flight() == 0);

    server.shutdown();
    for c in [&mut p, &mut other] {
        c.expect_matching(QUICK, "GOAWAY", |f| matches!(f, OwnedFrame::GoAway { .. }));
        c.close_and_expect_eof(QUICK, "caller's close");
    }
    let (report, _server) = wait_report(server, QUICK);
    assert!(report.clean, "{report:?}");
}

#[test]
fn the_work_queue_is_one_limit_for_every_connection() {
    let (runs, gate, server) = gated_server(|b| b.workers(1).queue(2));
    let addr = server.local_addr();
    let mut peers: Vec<Peer> = (0..5).map(|_| connect_ready(addr)).collect();
    peers[0].send_request(1, "block", b"running");
    gate.wait_started(b"running", QUICK);
    // Two more, from two other connections, fill the queue: accepted, not answered.
    for (n, p) in peers.iter_mut().enumerate().skip(1).take(2) {
        p.send_request(1, "block", format!("queued {n}").as_bytes());
        sync(p, 1);
    }
    // The queue is full for everyone: two more connections are turned away at once.
    for p in peers.iter_mut().skip(3) {
        p.send_request(1, "block", b"no room");
        assert_eq!(p.collect_answers(&[1], QUICK)[&1], overloaded(1));
    }
    wait_until(QUICK, "in_flight() = 1 running + 2 queued", || {
        server.in_flight() == 3
    });
    assert_eq!(gate.started().len(), 1, "only one handler running");

    gate.release_all();
    for (n, p) in peers.iter_mut().enumerate().take(3) {
        let got = p.collect_answers(&[1], QUICK);
        assert!(is_ok(&got[&1], 1), "connection {n}: {:?}", got[&1]);
    }
    assert_eq!(runs.total(), 3, "the two rejected requests never ran");
    wait_until(QUICK, "in_flight() back to 0", || server.in_flight() == 0);

    server.shutdown();
    for p in &mut peers {
        p.expect_matching(QUICK, "GOAWAY", |f| matches!(f, OwnedFrame::GoAway { .. }));
        p.close_and_expect_eof(QUICK, "caller's close");
    }
    let (report, _server) = wait_report(server, QUICK);
    assert!(report.clean, "{report:?}");
}
