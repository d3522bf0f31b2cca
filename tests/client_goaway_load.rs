//! Three nodes under concurrent load of a non-idempotent `record` call; one is shut down mid-load.
//! No call fails, the node is not chosen once the client has processed its GOAWAY, and every
//! token runs exactly once. With one connection per node, and with three (each gets GOAWAY).

#[path = "support/cluster.rs"]
mod cluster;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cluster::{TestNode, WAIT, client, token, wait_all_ready, wait_event, wait_until};
use gracerpc::client::{CallError, CallOptions, NodeState, Response};

const THREADS: usize = 8;
const MAX_CALLS_PER_THREAD: u64 = 4_000;
const LOAD_LIMIT: Duration = Duration::from_secs(20);

struct Done {
    token: Vec<u8>,
    started: Instant,
    /// The calling thread had seen the victim non-choosable before this call started.
    victim_gone: bool,
    result: Result<Response, CallError>,
}

#[test]
fn shutdown_under_load_loses_nothing_and_runs_nothing_twice() {
    shutdown_under_load(1);
}

#[test]
fn shutdown_under_load_with_three_connections_per_node() {
    shutdown_under_load(3);
}

/// The test, with a client of `lanes` connections per node.
fn shutdown_under_load(lanes: usize) {
    let mut nodes: Vec<TestNode> = (0..3).map(|_| TestNode::start(|b| b.workers(1))).collect();
    for n in &nodes {
        n.rec.delay_us.store(300, Ordering::Relaxed);
    }
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let victim = addrs[1];
    let client = client(&addrs, |b| b.connections_per_node(lanes));
    wait_all_ready(&client, &addrs);
    let events = client.subscribe();

    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..THREADS)
        .map(|w| {
            let client = client.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut done = Vec::new();
                let mut victim_gone = false;
                let end = Instant::now() + LOAD_LIMIT;
                let opts = CallOptions::new().deadline(Duration::from_secs(5));
                for seq in 0..MAX_CALLS_PER_THREAD {
                    if stop.load(Ordering::Acquire) || Instant::now() >= end {
                        break;
                    }
                    // Sticky: once this thread saw the victim unchoosable, it never comes back
                    // (nothing listens on its port any more).
                    victim_gone |= client
                        .table()
                        .find(victim)
                        .is_some_and(|n| !n.state().is_choosable());
                    let token = token(w, seq);
                    let started = Instant::now();
                    let result = client.call_with("record", &token, &opts);
                    done.push(Done {
                        token,
                        started,
                        victim_gone,
                        result,
                    });
                }
                done
            })
        })
        .collect();

    // Let every node take a share of the load, then shut the victim down mid-load.
    wait_until("the victim ran 200 calls", WAIT, || {
        nodes[1].rec.total() >= 200
    });
    let before_all: u64 = nodes.iter().map(|n| n.rec.total()).sum();
    nodes[1].begin_shutdown();
    let (ev, seen_at) = wait_event(&events, victim, WAIT, "GOAWAY processed", |e| {
        e.state != NodeState::Ready && e.state != NodeState::Warming
    });
    assert_eq!(
        ev.state,
        NodeState::Draining,
        "the first state change after shutdown must come from GOAWAY (got {ev:?})"
    );
    // Keep the load on the survivors for a while.
    wait_until("the survivors ran 1000 more calls", WAIT, || {
        nodes[0].rec.total() + nodes[2].rec.total() >= before_all + 1000
    });
    stop.store(true, Ordering::Release);
    let done: Vec<Done> = workers
        .into_iter()
        .flat_map(|h| h.join().expect("load thread panicked"))
        .collect();
    let report = nodes[1].wait_stopped();
    eprintln!(
        "{} calls, replayed {:?}, victim drain report {report:?}",
        done.len(),
        client.stats()
    );

    // Zero calls failed.
    let failed: Vec<_> = done.iter().filter(|d| d.result.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} calls failed, e.g. {:?}",
        failed.len(),
        done.len(),
        failed.iter().take(5).map(|d| &d.result).collect::<Vec<_>>()
    );

    // Every token ran exactly once, on the node that answered, and nothing else ran.
    let per_node: Vec<HashMap<Vec<u8>, u32>> = nodes.iter().map(|n| n.rec.tokens()).collect();
    for d in &done {
        let resp = d.result.as_ref().unwrap();
        assert_eq!(resp.body, d.token, "answer for the wrong request");
        let runs: Vec<u32> = per_node
            .iter()
            .map(|m| m.get(&d.token).copied().unwrap_or(0))
            .collect();
        assert_eq!(
            runs.iter().sum::<u32>(),
            1,
            "token {} ran {runs:?} times (per node)",
            String::from_utf8_lossy(&d.token)
        );
        let ran_on = addrs[runs.iter().position(|&c| c == 1).unwrap()];
        assert_eq!(
            ran_on,
            resp.node,
            "token {} ran on {ran_on} but was answered by {}",
            String::from_utf8_lossy(&d.token),
            resp.node
        );
    }
    let executed: usize = per_node.iter().map(HashMap::len).sum();
    assert_eq!(executed, done.len(), "handlers ran tokens no call returned");

    // Not chosen after its GOAWAY: a call that started after the client processed GOAWAY (its
    // thread saw the node unchoosable, or it started after the event reached this thread) never
    // reached the victim's handler.
    let mut after = 0;
    for d in done.iter().filter(|d| d.victim_gone || d.started > seen_at) {
        after += 1;
        assert_eq!(
            per_node[1].get(&d.token),
            None,
            "token {} started after GOAWAY was processed but ran on the draining node",
            String::from_utf8_lossy(&d.token)
        );
        assert_ne!(d.result.as_ref().unwrap().node, victim);
    }
    assert!(
        after >= 1000,
        "only {after} calls after GOAWAY: the test proved little"
    );
    assert!(
        per_node[0].len() > 100 && per_node[2].len() > 100,
        "survivors share the load"
    );
}
