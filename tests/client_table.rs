//! The node table's concurrency promises: choosing never waits for the update side, and a node
//! is never chosen after an eviction the choosing thread has observed.

#[path = "support/cluster.rs"]
mod cluster;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use cluster::{TestNode, WAIT, client, wait_all_ready};
use gracerpc::client::{CallOptions, NodeState, NodeTable};

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 10_000 + i as u16))
}

#[test]
fn choose_completes_while_the_update_side_is_held() {
    let table = Arc::new(NodeTable::new());
    for i in 0..4 {
        let n = table.upsert(addr(i)).unwrap();
        table.set_capacity(&n, 100, Instant::now());
    }
    let (locked_tx, locked_rx) = crossbeam_channel::bounded::<()>(0);
    let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
    let holder = {
        let table = table.clone();
        std::thread::spawn(move || {
            let _guard = table.update_lock();
            locked_tx.send(()).unwrap();
            // Blocked on purpose, holding the update side, until the choosers are done.
            let _ = release_rx.recv_timeout(WAIT * 2);
        })
    };
    locked_rx.recv_timeout(WAIT).unwrap();
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<usize>();
    for _ in 0..4 {
        let table = table.clone();
        let done_tx = done_tx.clone();
        std::thread::spawn(move || {
            let mut chosen = 0;
            for _ in 0..10_000 {
                chosen += usize::from(table.choose(Instant::now(), None).is_some());
            }
            // Single-store updates do not take the lock either.
            let n = table.find(addr(0)).unwrap().clone();
            table.set_state(&n, NodeState::Draining, Instant::now());
            table.set_capacity(&n, 100, Instant::now());
            let _ = done_tx.send(chosen);
        });
    }
    for i in 0..4 {
        match done_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(chosen) => assert_eq!(chosen, 10_000, "every choice found a node"),
            Err(_) => panic!(
                "chooser {i} did not finish within 5 s while the update lock was held: \
                 the choose path waits for writers"
            ),
        }
    }
    release_tx.send(()).unwrap();
    holder.join().unwrap();
}

#[test]
fn calls_complete_while_the_update_side_is_held() {
    let node = TestNode::plain();
    let client = client(&[node.addr], |b| b);
    wait_all_ready(&client, &[node.addr]);
    let _guard = client.table().update_lock();
    let opts = CallOptions::new().deadline(Duration::from_secs(5));
    for i in 0..100u32 {
        let body = i.to_be_bytes();
        let r = client.call_with("echo", &body, &opts);
        assert_eq!(r.map(|r| r.body).as_deref(), Ok(&body[..]));
    }
}

/// Heavy concurrent eviction and re-admission. One writer per node flips it between evicted
/// (Draining / Down / Removed) and admitted (Ready / Warming), publishing a generation around
/// each store:
///
/// ```text
/// writer:  set_state(evicted) ; gen := odd  ...  gen := even ; set_state/set_capacity(admitted)
/// chooser: g0 := gen (acquire) ; n := choose() ; g1 := gen (acquire)
/// ```
///
/// If a chooser read an odd `g0`, the eviction store happened-before its `choose`. A choice of
/// that node must then have read a later, admitting store, which is sequenced after the writer
/// moved `gen` past `g0`; so `g1 != g0`. `choose` returning the node with `g1 == g0` means it
/// saw a state older than an eviction that happened-before it: a real bug, never a timing
/// artefact.
#[test]
fn evicted_node_is_never_chosen_after_the_eviction_was_observed() {
    const NODES: usize = 4;
    const CHOOSERS: usize = 3;
    const RUN: Duration = Duration::from_millis(1500);
    let table = Arc::new(NodeTable::new());
    let gens: Arc<Vec<AtomicU64>> = Arc::new((0..NODES).map(|_| AtomicU64::new(0)).collect());
    for i in 0..NODES {
        let n = table.upsert(addr(i)).unwrap();
        table.set_capacity(&n, 100, Instant::now());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(NODES + CHOOSERS));
    let mut writers = Vec::new();
    for i in 0..NODES {
        let (table, gens, stop, start) = (table.clone(), gens.clone(), stop.clone(), start.clone());
        writers.push(std::thread::spawn(move || {
            let node = table.find(addr(i)).unwrap().clone();
            let evicted = [NodeState::Draining, NodeState::Down, NodeState::Removed];
            let mut rounds = 0u64;
            start.wait();
            while !stop.load(Ordering::Acquire) {
                let now = Instant::now();
                table.set_state(&node, evicted[(rounds % 3) as usize], now);
                gens[i].store(2 * rounds + 1, Ordering::Release);
                spin(rounds * 7 + i as u64);
                gens[i].store(2 * rounds + 2, Ordering::Release);
                if rounds.is_multiple_of(2) {
                    table.set_capacity(&node, if rounds.is_multiple_of(4) { 100 } else { 30 }, now);
                } else {
                    table.set_state(&node, NodeState::Ready, now);
                }
                spin(rounds * 13 + i as u64);
                rounds += 1;
            }
            rounds
        }));
    }
    let mut choosers = Vec::new();
    for _ in 0..CHOOSERS {
        let (table, gens, stop, start) = (table.clone(), gens.clone(), stop.clone(), start.clone());
        choosers.push(std::thread::spawn(move || {
            let (mut checked, mut opportunities) = (0u64, 0u64);
            start.wait();
            while !stop.load(Ordering::Acquire) {
                let before: Vec<u64> = gens.iter().map(|g| g.load(Ordering::Acquire)).collect();
                opportunities += u64::from(before.iter().any(|g| g % 2 == 1));
                let Some(n) = table.choose(Instant::now(), None) else {
                    continue;
                };
                let i = n.index();
                let g0 = before[i];
                if g0 % 2 == 1 {
                    checked += 1;
                    let g1 = gens[i].load(Ordering::Acquire);
                    assert_ne!(
                        g1, g0,
                        "node {i} was chosen although its eviction (generation {g0}) \
                         happened-before the choice and no re-admission had started"
                    );
                }
            }
            (checked, opportunities)
        }));
    }
    std::thread::sleep(RUN); // the length of the run, not a synchronisation
    stop.store(true, Ordering::Release);
    let rounds: Vec<u64> = writers.into_iter().map(|h| h.join().unwrap()).collect();
    let (checked, opportunities) = choosers
        .into_iter()
        .map(|h| h.join().unwrap())
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    eprintln!(
        "writer rounds {rounds:?}; {opportunities} choices made with a node seen evicted, \
         {checked} of them chose it after its re-admission began"
    );
    assert!(
        opportunities > 1000,
        "too few choices overlapped an eviction"
    );
    assert!(
        rounds.iter().all(|&r| r > 100),
        "writers barely ran: {rounds:?}"
    );
}

/// A short busy wait of varying length, so the interleavings vary.
fn spin(seed: u64) {
    for _ in 0..(seed % 64) {
        std::hint::spin_loop();
    }
}
