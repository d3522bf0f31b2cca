//! A network partition between a caller and one node, on two test hosts in network namespaces
//! the test creates (`support/netns.rs`): a `gracerpc serve` node runs in namespace A
//! (`ip netns exec`), a second node and the `Client` in namespace B. Mid-load, A's end of the
//! link goes down: B's packets to it vanish without a trace. The client detects the dead node
//! through its PING timeout, evicts it, and every idempotent call still succeeds (on the other
//! node) within its deadline; when the link returns the node is re-admitted and called again.
//!
//! Needs root and `ip`; skips with a message elsewhere.

#[path = "support/netns.rs"]
mod netns;
#[path = "support/serve.rs"]
mod serve;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gracerpc::client::{CallError, CallOptions, Client, NodeEvent, NodeState};
use netns::Side;
use serve::ServeProc;

const PING_INTERVAL: Duration = Duration::from_millis(200);
const PING_TIMEOUT: Duration = Duration::from_millis(300);
const DEADLINE: Duration = Duration::from_secs(5);
const CALLERS: usize = 8;
const MAX_CALLS: usize = 20_000;
/// Scheduling slack on a busy machine.
const SLACK: Duration = Duration::from_secs(1);

struct Done {
    at: Instant,
    took: Duration,
    result: Result<SocketAddr, CallError>,
}

/// Waits for an event about `addr` in one of `states`.
fn wait_state(
    events: &crossbeam_channel::Receiver<NodeEvent>,
    addr: SocketAddr,
    states: &[NodeState],
    timeout: Duration,
    what: &str,
) -> Instant {
    let end = Instant::now() + timeout;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(ev) if ev.addr == addr && states.contains(&ev.state) => return ev.at,
            Ok(_) => {}
            Err(_) => panic!("{what}: no event for {addr} in {states:?} within {timeout:?}"),
        }
    }
}

#[test]
fn a_partitioned_node_is_evicted_by_ping_timeout_and_readmitted_when_the_link_returns() {
    let Some(net) = netns::pair_or_skip("partition") else {
        return;
    };
    let exe = env!("CARGO_BIN_EXE_gracerpc");
    let far_listen = SocketAddr::from((net.addr_a(), 0)).to_string();
    let mut far = net.command(Side::A, exe);
    far.args(["serve", "--listen", &far_listen, "--workers", "2"]);
    let mut far = ServeProc::spawn("far node (namespace A)", far);
    let mut near = net.command(Side::B, exe);
    near.args(["serve", "--listen", "127.0.0.1:0", "--workers", "2"]);
    let mut near = ServeProc::spawn("near node (namespace B)", near);
    let (far_addr, near_addr) = (far.addr, near.addr);

    // The client's I/O thread is spawned in namespace B: every connection it opens is B's.
    let client = net.enter(Side::B, move || {
        Client::builder()
            .nodes([far_addr, near_addr])
            .ping(PING_INTERVAL, PING_TIMEOUT)
            .reconnect_backoff(Duration::from_millis(5), Duration::from_millis(100))
            .build()
            .expect("client")
    });
    for a in [far_addr, near_addr] {
        assert!(client.wait_ready(a, serve::START), "{a} never READY");
    }
    let events = client.subscribe();

    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = crossbeam_channel::unbounded::<Done>();
    let callers: Vec<_> = (0..CALLERS)
        .map(|w| {
            let (client, stop, tx) = (client.clone(), stop.clone(), tx.clone());
            std::thread::spawn(move || {
                let opts = CallOptions::new().deadline(DEADLINE).idempotent(true);
                for seq in 0..MAX_CALLS {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let body = format!("{w}-{seq}");
                    let t0 = Instant::now();
                    let result = client
                        .call_with("echo", body.as_bytes(), &opts)
                        .map(|r| r.node);
                    let _ = tx.send(Done {
                        at: Instant::now(),
                        took: t0.elapsed(),
                        result,
                    });
                    // A modest rate: the test is about detection, not throughput.
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        })
        .collect();
    drop(tx);
    std::thread::sleep(Duration::from_millis(500));

    // Partition: A's end goes down; what B sends to A disappears.
    net.cut(Side::A);
    let cut = Instant::now();
    let evicted = wait_state(
        &events,
        far_addr,
        &[NodeState::Down, NodeState::Connecting],
        PING_INTERVAL + PING_TIMEOUT + SLACK,
        "eviction of the partitioned node",
    );
    let detect = evicted.saturating_duration_since(cut);
    assert!(
        !client
            .table()
            .find(far_addr)
            .is_some_and(|n| n.state().is_choosable()),
        "the partitioned node is still choosable"
    );
    // Calls go on, on the near node, for a while; the far one is not re-admitted meanwhile.
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !client
            .table()
            .find(far_addr)
            .is_some_and(|n| n.state().is_choosable()),
        "the partitioned node was re-admitted while the link was down: {:?}",
        client.nodes()
    );

    net.mend(Side::A);
    let mended = Instant::now();
    let readmitted = wait_state(
        &events,
        far_addr,
        &[NodeState::Ready],
        Duration::from_secs(6),
        "re-admission of the node once the link returned",
    );
    let back = readmitted.saturating_duration_since(mended);
    // And it is called again.
    let end = Instant::now() + Duration::from_secs(5);
    let mut done = Vec::new();
    loop {
        let d = rx
            .recv_timeout(end.saturating_duration_since(Instant::now()))
            .expect("no call reached the re-admitted node within 5 s");
        let hit = d.at > readmitted && d.result.as_ref().is_ok_and(|n| *n == far_addr);
        done.push(d);
        if hit {
            break;
        }
    }
    stop.store(true, Ordering::Release);
    let end = Instant::now() + DEADLINE + SLACK;
    loop {
        match rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
            Ok(d) => done.push(d),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                panic!("callers still running past a deadline: a call hangs")
            }
        }
    }
    for c in callers {
        c.join().expect("a caller panicked");
    }

    let mut during = 0;
    for d in &done {
        if let Err(e) = &d.result {
            panic!("an idempotent call failed across the partition: {e}");
        }
        assert!(d.took <= DEADLINE, "a call took {:?}", d.took);
        during += usize::from(d.at > evicted && d.at < mended);
    }
    let slowest = done.iter().map(|d| d.took).max().unwrap_or_default();
    eprintln!(
        "{} calls, {during} during the partition; dead node evicted {detect:?} after the cut, \
         re-admitted {back:?} after the link returned; slowest call {slowest:?}; retried {}",
        done.len(),
        client.stats().retried
    );
    assert!(during > 0, "no call completed during the partition");
    assert!(
        detect <= PING_INTERVAL + PING_TIMEOUT + SLACK,
        "eviction took {detect:?}"
    );

    client.close(Duration::from_secs(2));
    for n in [&mut far, &mut near] {
        n.signal(libc::SIGTERM);
        n.expect_exit(Duration::from_secs(15), "SIGTERM at the end");
    }
}
