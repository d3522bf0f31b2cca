//! A node with a tiny work queue under more load than it can take: the requests it turns away
//! (SHUTDOWN_REJECT OVERLOADED, never run) are replayed on the other node, so every call
//! succeeds and every token runs exactly once across the cluster.

#[path = "support/cluster.rs"]
mod cluster;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cluster::{TestNode, WAIT, client, token, wait_all_ready, wait_until};
use gracerpc::client::CallOptions;

const CALLERS: usize = 24;
const CALLS_EACH: u64 = 40;
const DEADLINE: Duration = Duration::from_secs(10);

#[test]
fn calls_turned_away_by_an_overloaded_node_succeed_elsewhere_exactly_once() {
    // One worker and a queue of one: capacity two requests at a time, each taking 2 ms.
    let small = TestNode::start(|b| b.workers(1).queue(1));
    small.rec.delay_us.store(2_000, Ordering::Relaxed);
    let big = TestNode::start(|b| b.workers(4));
    let addrs = [small.addr, big.addr];
    let client = client(&addrs, |b| b.default_deadline(DEADLINE));
    wait_all_ready(&client, &addrs);

    let t0 = Instant::now();
    let callers: Vec<_> = (0..CALLERS)
        .map(|w| {
            let client = client.clone();
            std::thread::spawn(move || {
                let opts = CallOptions::new().deadline(DEADLINE);
                let mut by_node = [0u64; 2];
                for seq in 0..CALLS_EACH {
                    let tok = token(w, seq);
                    let r = client
                        .call_with("record", &tok, &opts)
                        .unwrap_or_else(|e| panic!("call {w}/{seq} failed: {e}"));
                    assert_eq!(r.body, tok, "echoed token");
                    by_node[usize::from(r.node == addrs[1])] += 1;
                }
                by_node
            })
        })
        .collect();
    let mut by_node = [0u64; 2];
    for c in callers {
        let n = c.join().expect("a caller failed");
        by_node[0] += n[0];
        by_node[1] += n[1];
    }
    let took = t0.elapsed();
    let stats = client.stats();
    eprintln!(
        "{} calls in {took:?}: {} on the small node, {} on the big one; {} replayed",
        CALLERS as u64 * CALLS_EACH,
        by_node[0],
        by_node[1],
        stats.replayed
    );

    // Exactly once across the cluster, and where the client says it ran.
    for w in 0..CALLERS {
        for seq in 0..CALLS_EACH {
            let tok = token(w, seq);
            let (s, b) = (small.rec.count(&tok), big.rec.count(&tok));
            assert_eq!(
                s + b,
                1,
                "token {} ran {s} times on the small node, {b} on the big one",
                String::from_utf8_lossy(&tok)
            );
        }
    }
    let total = CALLERS as u64 * CALLS_EACH;
    assert_eq!(small.rec.total() + big.rec.total(), total);
    assert_eq!(small.rec.total(), by_node[0]);
    assert_eq!(big.rec.total(), by_node[1]);
    assert!(
        stats.replayed > 0,
        "{CALLERS} callers against a node with room for 2 must see it overloaded"
    );
    assert_eq!(stats.retried, 0, "no outcome was ever unknown");
    assert!(
        by_node[0] > 0,
        "the small node ran nothing: it was not tested"
    );
    wait_until("in_flight() back to 0 on the small node", WAIT, || {
        small.handle().in_flight() == 0
    });
    client.close(WAIT);
}
