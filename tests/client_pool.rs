//! `ClientBuilder::connections_per_node(n)`: a client keeps `n` connections ("lanes") to each
//! node; a calling thread keeps to one of them; a lost lane leaves the node usable and is
//! replaced beside the others. (A node shut down or restarted under load with several lanes:
//! `client_goaway_load.rs` and `client_restart.rs` run with three.)

#[path = "support/cluster.rs"]
mod cluster;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster::{Got, RawServer, WAIT, client, wait_all_ready, wait_until};
use gracerpc::client::{CallOptions, NodeState};

type Seen = Arc<Mutex<HashMap<Vec<u8>, HashSet<usize>>>>;

/// A raw node that answers every request with its body and notes, per body, the connections
/// it came on. With `close_one`, the first connection to answer a request closes after it.
fn echo_node(close_one: bool) -> (RawServer, Seen) {
    let seen: Seen = Arc::default();
    let closed_one = Arc::new(AtomicBool::new(!close_one));
    let seen2 = seen.clone();
    let raw = RawServer::spawn(move |n, mut c| {
        if c.handshake(Some(100)).is_err() {
            return;
        }
        while let Ok(got) = c.next() {
            if let Got::Request { id, body, .. } = got {
                seen2
                    .lock()
                    .unwrap()
                    .entry(body.clone())
                    .or_default()
                    .insert(n);
                if c.respond(id, &body).is_err() || !closed_one.swap(true, Ordering::AcqRel) {
                    break;
                }
            }
        }
        c.close();
    });
    (raw, seen)
}

/// Every one of the client's `lanes` connections to `raw` READY.
fn wait_lanes(client: &gracerpc::client::Client, raw: &RawServer, lanes: usize) {
    wait_all_ready(client, &[raw.addr]);
    wait_until("every connection READY", WAIT, || {
        client.connections(raw.addr) == lanes
    });
}

#[test]
fn each_thread_keeps_to_one_of_the_nodes_connections() {
    const LANES: usize = 3;
    let (raw, seen) = echo_node(false);
    let client = client(&[raw.addr], |b| b.connections_per_node(LANES));
    wait_lanes(&client, &raw, LANES);
    std::thread::scope(|s| {
        for t in 0..8 {
            let client = &client;
            s.spawn(move || {
                let body = format!("thread {t}").into_bytes();
                let opts = CallOptions::new().deadline(Duration::from_secs(5));
                for _ in 0..50 {
                    assert_eq!(
                        client.call_with("x", &body, &opts).expect("call").body,
                        body
                    );
                }
            });
        }
    });
    assert_eq!(
        raw.accepted.load(Ordering::Acquire),
        LANES,
        "a client of {LANES} connections per node opened another"
    );
    let seen = seen.lock().unwrap();
    let mut used = HashSet::<usize>::new();
    for (body, conns) in seen.iter() {
        assert_eq!(
            conns.len(),
            1,
            "{}'s calls went over connections {conns:?}",
            String::from_utf8_lossy(body)
        );
        used.extend(conns);
    }
    assert_eq!(seen.len(), 8);
    assert!(
        used.len() >= 2,
        "8 threads all on one of {LANES} connections: {used:?}"
    );
}

#[test]
fn a_lost_connection_leaves_the_node_usable_and_is_replaced() {
    const LANES: usize = 3;
    // The first connection to answer a call closes after it; the others serve on.
    let (raw, _) = echo_node(true);
    let client = client(&[raw.addr], |b| b.connections_per_node(LANES));
    wait_lanes(&client, &raw, LANES);
    let events = client.subscribe();
    std::thread::scope(|s| {
        for t in 0..6 {
            let client = &client;
            s.spawn(move || {
                let body = format!("thread {t}").into_bytes();
                // (Idempotent: a call on the lane that closes may end Unknown, and is retried.)
                let opts = CallOptions::new()
                    .deadline(Duration::from_secs(5))
                    .idempotent(true);
                for _ in 0..50 {
                    assert_eq!(
                        client.call_with("x", &body, &opts).expect("call").body,
                        body
                    );
                }
            });
        }
    });
    wait_until("the lost connection replaced", WAIT, || {
        raw.accepted.load(Ordering::Acquire) > LANES && client.connections(raw.addr) == LANES
    });
    let left: Vec<_> = events
        .try_iter()
        .filter(|e| e.addr == raw.addr && !e.state.is_choosable())
        .collect();
    assert!(
        left.is_empty(),
        "the node stopped being choosable when one of its {LANES} connections closed: {left:?}"
    );
    assert!(
        client
            .table()
            .find(raw.addr)
            .is_some_and(|n| n.state() == NodeState::Ready)
    );
}
