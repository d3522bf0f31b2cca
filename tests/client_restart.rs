//! A single-node service restarted on the same port under load: calls made during the restart
//! wait for the node to come back and succeed within their deadline; each runs exactly once.

#[path = "support/cluster.rs"]
mod cluster;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cluster::{TestNode, WAIT, token, wait_all_ready, wait_until};
use gracerpc::client::{CallError, CallOptions, Response};

const THREADS: usize = 4;
const DEADLINE: Duration = Duration::from_secs(5);
const OUTAGE: Duration = Duration::from_millis(300);

#[test]
fn calls_during_a_restart_wait_and_succeed() {
    restart_under_load(1);
}

#[test]
fn calls_during_a_restart_wait_and_succeed_with_three_connections() {
    restart_under_load(3);
}

/// The test, with a client of `lanes` connections to the node.
fn restart_under_load(lanes: usize) {
    let mut node = TestNode::start(|b| b.workers(1));
    node.rec.delay_us.store(200, Ordering::Relaxed);
    let addr = node.addr;
    // The default reconnection backoff (capped at 100 ms).
    let client = gracerpc::client::Client::builder()
        .nodes([addr])
        .connections_per_node(lanes)
        .build()
        .unwrap();
    wait_all_ready(&client, &[addr]);

    let stop = Arc::new(AtomicBool::new(false));
    type Done = (Vec<u8>, Instant, Instant, Result<Response, CallError>);
    let workers: Vec<_> = (0..THREADS)
        .map(|w| {
            let client = client.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut done: Vec<Done> = Vec::new();
                let end = Instant::now() + Duration::from_secs(20);
                let opts = CallOptions::new().deadline(DEADLINE);
                for seq in 0..20_000 {
                    if stop.load(Ordering::Acquire) || Instant::now() >= end {
                        break;
                    }
                    let token = token(w, seq);
                    let t0 = Instant::now();
                    let r = client.call_with("record", &token, &opts);
                    done.push((token, t0, Instant::now(), r));
                }
                done
            })
        })
        .collect();

    wait_until("100 calls before the restart", WAIT, || {
        node.rec.total() >= 100
    });
    let down_at = Instant::now();
    node.stop();
    // The scenario: the process is gone for a while (not a synchronisation sleep).
    std::thread::sleep(OUTAGE);
    node.start_again();
    let up_at = Instant::now();
    wait_all_ready(&client, &[addr]);
    let before = node.rec.total();
    wait_until("100 calls after the restart", WAIT, || {
        node.rec.total() >= before + 100
    });
    stop.store(true, Ordering::Release);
    let done: Vec<Done> = workers
        .into_iter()
        .flat_map(|h| h.join().expect("load thread panicked"))
        .collect();

    let failed: Vec<_> = done.iter().filter(|d| d.3.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} calls failed across the restart, e.g. {:?}",
        failed.len(),
        done.len(),
        failed.iter().take(5).map(|d| &d.3).collect::<Vec<_>>()
    );
    let tokens: HashMap<Vec<u8>, u32> = node.rec.tokens();
    for (tok, t0, t1, _) in &done {
        assert_eq!(
            tokens.get(tok).copied(),
            Some(1),
            "token {} must run exactly once",
            String::from_utf8_lossy(tok)
        );
        assert!(*t1 - *t0 <= DEADLINE + Duration::from_millis(200));
    }
    assert_eq!(
        tokens.len(),
        done.len(),
        "handlers ran tokens no call returned"
    );
    // Calls in flight while the node was away: they waited for it and finished soon after it
    // came back (the reconnection backoff is capped at 100 ms).
    let waited: Vec<_> = done
        .iter()
        .filter(|(_, t0, t1, _)| *t0 < up_at && *t1 > up_at)
        .collect();
    assert!(
        !waited.is_empty(),
        "no call was in flight across the restart (down for {:?}): the test proved nothing",
        up_at - down_at
    );
    for (tok, _, t1, _) in &waited {
        assert!(
            *t1 - up_at < Duration::from_secs(1),
            "{} finished {:?} after the node was back",
            String::from_utf8_lossy(tok),
            *t1 - up_at
        );
    }
    let waited = waited.len();
    eprintln!(
        "{} calls, {waited} waited across the restart ({:?} down), {:?}",
        done.len(),
        up_at - down_at,
        client.stats()
    );
}
