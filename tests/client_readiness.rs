//! Balancing against node readiness: a connected node that has not sent READY gets nothing; a
//! warming node (READY at 10 %) gets a smaller share; an overloaded node is not evicted.

#[path = "support/cluster.rs"]
mod cluster;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cluster::{RawServer, TestNode, WAIT, client, state_of, token, wait_all_ready, wait_until};
use gracerpc::client::{CallOptions, Client, NodeState, Response};
use gracerpc::proto::RejectReason;

/// `calls` record calls spread over `threads` closed-loop threads; every one must succeed.
fn load(client: &Client, threads: usize, calls: u64, tag: usize) -> Vec<Response> {
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let client = client.clone();
            std::thread::spawn(move || {
                let opts = CallOptions::new().deadline(Duration::from_secs(5));
                let end = Instant::now() + Duration::from_secs(20);
                let mut out = Vec::new();
                for seq in 0..calls / threads as u64 {
                    assert!(Instant::now() < end, "load took longer than 20 s");
                    let tok = token(tag * 100 + t, seq);
                    match client.call_with("record", &tok, &opts) {
                        Ok(r) => out.push(r),
                        Err(e) => panic!("call failed: {e} ({e:?})"),
                    }
                }
                out
            })
        })
        .collect();
    hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
}

fn count_on(rs: &[Response], addr: SocketAddr) -> usize {
    rs.iter().filter(|r| r.node == addr).count()
}

#[test]
fn connected_node_without_ready_gets_no_request() {
    let pending = TestNode::start(|b| b.manual_ready());
    let full = TestNode::plain();
    let client = client(&[pending.addr, full.addr], |b| b);
    wait_all_ready(&client, &[full.addr]);
    wait_until("the client connected to the node not ready", WAIT, || {
        pending.handle().connections() >= 1
    });
    assert_eq!(state_of(&client, pending.addr), Some(NodeState::Connecting));

    let rs = load(&client, 4, 400, 0);
    assert_eq!(count_on(&rs, full.addr), 400);
    assert_eq!(pending.rec.total(), 0, "a node not READY ran requests");
    assert_eq!(client.stats().replayed, 0, "nothing was even sent to it");

    // Once READY, it is chosen (so the check above was not vacuous).
    pending.handle().ready().set_ready();
    wait_all_ready(&client, &[pending.addr]);
    let rs = load(&client, 4, 400, 1);
    assert!(
        count_on(&rs, pending.addr) > 0,
        "the node got nothing even after READY"
    );
}

#[test]
fn warming_node_gets_a_smaller_share() {
    let warming = TestNode::start(|b| b.manual_ready());
    warming.handle().ready().set_capacity(10);
    let full = TestNode::plain();
    for n in [&warming, &full] {
        n.rec.delay_us.store(500, Ordering::Relaxed);
    }
    let client = client(&[warming.addr, full.addr], |b| b);
    wait_all_ready(&client, &[warming.addr, full.addr]);
    let snap = client
        .nodes()
        .into_iter()
        .find(|s| s.addr == warming.addr)
        .unwrap();
    assert_eq!((snap.state, snap.capacity), (NodeState::Warming, 10));

    let rs = load(&client, 8, 800, 0);
    let (w, f) = (count_on(&rs, warming.addr), count_on(&rs, full.addr));
    eprintln!("warming {w}, full {f}");
    assert_eq!(w + f, 800);
    // Equal weights would give about half each; 10 % capacity must give far less.
    assert!(w * 3 < f, "warming node got {w} calls, full node {f}");
}

#[test]
fn overloaded_node_is_not_evicted() {
    // A node that is READY but answers every request OVERLOADED (never runs it).
    let seen = Arc::new(AtomicUsize::new(0));
    let seen2 = seen.clone();
    let busy = RawServer::spawn(move |_, mut c| {
        let _ = (|| -> std::io::Result<()> {
            c.handshake(Some(100))?;
            loop {
                let (id, ..) = c.next_request()?;
                seen2.fetch_add(1, Ordering::AcqRel);
                c.reject(id, RejectReason::OVERLOADED)?;
            }
        })();
    });
    let full = TestNode::plain();
    let client = client(&[busy.addr, full.addr], |b| b);
    wait_all_ready(&client, &[busy.addr, full.addr]);
    let events = client.subscribe();

    let mut rs = Vec::new();
    for round in 0..50 {
        rs.extend(load(&client, 4, 100, round));
        if seen.load(Ordering::Acquire) >= 20 {
            break;
        }
    }
    let rejected = seen.load(Ordering::Acquire);
    assert!(
        rejected >= 20,
        "the busy node was chosen only {rejected} times"
    );
    assert_eq!(
        count_on(&rs, full.addr),
        rs.len(),
        "every call succeeds elsewhere"
    );
    assert_eq!(full.rec.total() as usize, rs.len(), "each ran once");
    assert_eq!(client.stats().replayed as usize, rejected);
    let changes: Vec<_> = events.try_iter().filter(|e| e.addr == busy.addr).collect();
    assert!(
        changes.is_empty(),
        "an overloaded node changed state: {changes:?}"
    );
    assert_eq!(state_of(&client, busy.addr), Some(NodeState::Ready));
}

#[test]
fn real_overloaded_server_is_not_evicted() {
    // One worker, a queue of one, a slow handler: beyond two outstanding it answers OVERLOADED.
    let small = TestNode::start(|b| b.workers(1).queue(1));
    small.rec.delay_us.store(5_000, Ordering::Relaxed);
    let big = TestNode::start(|b| b.workers(4));
    big.rec.delay_us.store(5_000, Ordering::Relaxed);
    let client = client(&[small.addr, big.addr], |b| b);
    wait_all_ready(&client, &[small.addr, big.addr]);
    let events = client.subscribe();

    let rs = load(&client, 12, 1200, 0);
    let changes: Vec<_> = events.try_iter().filter(|e| e.addr == small.addr).collect();
    eprintln!(
        "small {}, big {}, {:?}",
        count_on(&rs, small.addr),
        count_on(&rs, big.addr),
        client.stats()
    );
    assert!(
        client.stats().replayed > 0,
        "the small node was never overloaded"
    );
    assert!(
        changes.is_empty(),
        "an overloaded node changed state: {changes:?}"
    );
    assert_eq!(state_of(&client, small.addr), Some(NodeState::Ready));
    assert!(
        count_on(&rs, small.addr) > 0,
        "the small node still takes calls"
    );
    assert_eq!(
        (small.rec.total() + big.rec.total()) as usize,
        rs.len(),
        "each call ran once"
    );
}

#[test]
fn sequential_calls_spread_over_idle_nodes() {
    // One caller, one call at a time: every node is idle at every choice, so the choice is a
    // tie each time. Ties must be broken at random, or the first node listed takes everything
    // (and every low-concurrency caller in a fleet picks that same node).
    let nodes: Vec<TestNode> = (0..3).map(|_| TestNode::plain()).collect();
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let client = client(&addrs, |b| b);
    wait_all_ready(&client, &addrs);
    let rs = load(&client, 1, 600, 0);
    let shares: Vec<usize> = addrs.iter().map(|&a| count_on(&rs, a)).collect();
    assert!(
        shares.iter().all(|&s| s >= 100),
        "600 sequential calls over 3 idle nodes split {shares:?}"
    );
}

#[test]
fn overload_everywhere_is_waited_out_not_failed() {
    // The survivors of a drain can be briefly full: a call they turn away as OVERLOADED (never
    // run) must be replayed after a pause, within its deadline, not fail after a burst of
    // instant replays against the same full nodes.
    let nodes: Vec<TestNode> = (0..2)
        .map(|_| TestNode::start(|b| b.workers(1).queue(1)))
        .collect();
    for n in &nodes {
        n.rec.delay_us.store(3_000, Ordering::Relaxed);
    }
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let client = client(&addrs, |b| b);
    wait_all_ready(&client, &addrs);
    let rs = load(&client, 12, 360, 0);
    let ran: u64 = nodes.iter().map(|n| n.rec.total()).sum();
    eprintln!("{} ok, {:?}", rs.len(), client.stats());
    assert_eq!(ran as usize, rs.len(), "each call ran once");
    assert!(client.stats().replayed > 0, "the nodes were never full");
}
