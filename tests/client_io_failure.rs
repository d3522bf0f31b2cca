//! Deadlines do not depend on one thread (issue 11, findings 1 and 5): a call ends at its
//! deadline even while the client's I/O thread is stalled; the I/O thread's failure ends every
//! waiting and every new call with `CallError::IoFailed`; a panic in a user `Discovery::poll`
//! is caught and the client goes on.

#[path = "support/cluster.rs"]
mod cluster;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use cluster::{RawServer, TestNode, token, wait_all_ready, wait_until};
use gracerpc::client::{CallError, CallOptions, Client, Discovery, block_on};

/// Generous: a loaded machine may be slow to schedule a woken thread.
const SLACK: Duration = Duration::from_secs(2);

/// Runs `f` on a thread of its own; its result, or a panic message if it has not returned
/// within `limit` (on the code before the fix, such calls never returned at all).
fn bounded<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} did not return within {limit:?}"))
}

/// A node that completes the handshake and then reads requests without ever answering.
fn silent_node() -> RawServer {
    RawServer::spawn(|_, mut c| {
        if c.handshake(Some(100)).is_ok() {
            while c.next().is_ok() {}
        }
    })
}

/// A discovery that lists `nodes` once, then stalls each `poll` while `stall` is set (at most
/// 10 s), or panics once `panic` is set.
struct Rigged {
    nodes: Option<Vec<SocketAddr>>,
    stall: Arc<AtomicBool>,
    panic: Arc<AtomicBool>,
    polls: Arc<AtomicU32>,
}

impl Discovery for Rigged {
    fn poll(&mut self) -> Option<Vec<SocketAddr>> {
        self.polls.fetch_add(1, Ordering::AcqRel);
        assert!(
            !self.panic.load(Ordering::Acquire),
            "a bug in the discovery"
        );
        let end = Instant::now() + Duration::from_secs(10);
        while self.stall.load(Ordering::Acquire) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.nodes.take()
    }
}

struct Rig {
    client: Client,
    stall: Arc<AtomicBool>,
    panic: Arc<AtomicBool>,
    polls: Arc<AtomicU32>,
}

fn rig(nodes: &[SocketAddr]) -> Rig {
    let (stall, panic, polls) = Default::default();
    let d = Rigged {
        nodes: Some(nodes.to_vec()),
        stall: Arc::clone(&stall),
        panic: Arc::clone(&panic),
        polls: Arc::clone(&polls),
    };
    let client = Client::builder().discovery(d).build().unwrap();
    wait_all_ready(&client, nodes);
    Rig {
        client,
        stall,
        panic,
        polls,
    }
}

impl Rig {
    /// Stalls the I/O thread inside the discovery, and waits until it is stalled there.
    fn stall_io(&self) {
        self.stall.store(true, Ordering::Release);
        let p = self.polls.load(Ordering::Acquire);
        wait_until("the I/O thread polled the discovery", cluster::WAIT, || {
            self.polls.load(Ordering::Acquire) > p
        });
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stall.store(false, Ordering::Release);
    }
}

#[test]
fn blocking_call_ends_at_its_deadline_while_the_io_thread_is_stalled() {
    let silent = silent_node();
    let rig = rig(&[silent.addr]);
    rig.stall_io();
    let client = rig.client.clone();
    let deadline = Duration::from_millis(300);
    let (r, took) = bounded("a 300 ms call", deadline + SLACK * 3, move || {
        let t0 = Instant::now();
        let r = client.call_with("x", b"y", &CallOptions::new().deadline(deadline));
        (r, t0.elapsed())
    });
    assert_eq!(
        r.unwrap_err(),
        CallError::DeadlineExceeded { may_have_run: true }
    );
    assert!(took < deadline + SLACK, "took {took:?}");
}

#[test]
fn future_ends_at_its_deadline_while_the_io_thread_is_stalled() {
    let silent = silent_node();
    let rig = rig(&[silent.addr]);
    rig.stall_io();
    let client = rig.client.clone();
    let deadline = Duration::from_millis(300);
    let (r, took) = bounded("a 300 ms future", deadline + SLACK * 3, move || {
        let t0 = Instant::now();
        let fut = client.call_async("x", b"y".to_vec(), CallOptions::new().deadline(deadline));
        (block_on(fut), t0.elapsed())
    });
    assert_eq!(
        r.unwrap_err(),
        CallError::DeadlineExceeded { may_have_run: true }
    );
    assert!(took < deadline + SLACK, "took {took:?}");
}

#[test]
fn call_waiting_for_a_node_ends_at_its_deadline_while_the_io_thread_is_stalled() {
    let node = TestNode::start(|b| b.manual_ready()); // connected, never READY
    let (stall, panic, polls) = Default::default();
    let client = Client::builder()
        .discovery(Rigged {
            nodes: Some(vec![node.addr]),
            stall: Arc::clone(&stall),
            panic: Arc::clone(&panic),
            polls: Arc::clone(&polls),
        })
        .build()
        .unwrap();
    wait_until("the client connected", cluster::WAIT, || {
        node.handle().connections() >= 1
    });
    let rig = Rig {
        client,
        stall,
        panic,
        polls,
    };
    rig.stall_io();
    let client = rig.client.clone();
    let deadline = Duration::from_millis(300);
    let (r, took) = bounded("a 300 ms call", deadline + SLACK * 3, move || {
        let t0 = Instant::now();
        let r = client.call_with("x", b"y", &CallOptions::new().deadline(deadline));
        (r, t0.elapsed())
    });
    assert_eq!(r.unwrap_err().kind(), "no_node_available");
    assert!(took < deadline + SLACK, "took {took:?}");
}

#[test]
fn a_panic_in_discovery_is_caught_and_calls_go_on() {
    let node = TestNode::plain();
    let rig = rig(&[node.addr]);
    rig.panic.store(true, Ordering::Release);
    wait_until("the client caught the panic", cluster::WAIT, || {
        rig.client.discovery_error().is_some()
    });
    let err = rig.client.discovery_error();
    assert!(
        err.as_deref()
            .is_some_and(|e| e.contains("a bug in the discovery")),
        "{err:?}"
    );
    assert_eq!(rig.client.io_failure(), None);
    let client = rig.client.clone();
    bounded("calls after the panic", cluster::WAIT * 2, move || {
        for i in 0..50 {
            let r = client.call_with("record", &token(0, i), &CallOptions::new());
            assert!(r.is_ok(), "call {i}: {r:?}");
        }
    });
    assert_eq!(node.rec.total(), 50);
}

#[test]
fn io_thread_failure_ends_every_waiting_call_and_every_new_call() {
    let silent = silent_node();
    let pending = TestNode::start(|b| b.manual_ready());
    let client = cluster::client(&[silent.addr, pending.addr], |b| b);
    wait_all_ready(&client, &[silent.addr]);
    let long = CallOptions::new().deadline(Duration::from_secs(60));
    // Three calls wait on the silent node: two blocking, one future.
    let mut waiting = Vec::new();
    for i in 0..2 {
        let c = client.clone();
        let long = long.clone();
        waiting.push(std::thread::spawn(move || {
            c.call_with("x", &token(1, i), &long)
        }));
    }
    let c = client.clone();
    let long_async = long.clone();
    waiting.push(std::thread::spawn(move || {
        block_on(c.call_async("x", b"f".to_vec(), long_async))
    }));
    wait_until("three calls outstanding", cluster::WAIT, || {
        client
            .nodes()
            .iter()
            .any(|n| n.addr == silent.addr && n.outstanding == 3)
    });
    client.crash_io_thread_for_tests();
    let done = bounded("the waiting calls", SLACK * 3, move || {
        waiting
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    // `may_have_run` is whether its frame had been written (on a loaded machine one may still
    // have been queued for the I/O thread, which then never wrote it): either is the truth.
    for r in done {
        match r {
            Err(CallError::IoFailed { cause, .. }) => {
                assert!(cause.contains("panicked"), "{cause}")
            }
            other => panic!("a waiting call ended {other:?}"),
        }
    }
    assert!(client.io_failure().is_some());
    // A new call is told at once, and that it did not run.
    let c = client.clone();
    let r = bounded("a new call", SLACK * 3, move || {
        c.call_with("x", b"new", &long)
    });
    assert!(
        matches!(
            r,
            Err(CallError::IoFailed {
                may_have_run: false,
                ..
            })
        ),
        "{r:?}"
    );
    client.close(Duration::ZERO);
}

#[test]
fn close_racing_calls_that_wait_for_a_node_strands_none() {
    // Finding 5: a call between its `closed` check and its waiter registration when
    // `close(ZERO)` runs must still end. Many rounds of many callers.
    for round in 0..40 {
        let client = Client::builder().build().unwrap(); // no node: every call waits
        let callers: Vec<_> = (0..6)
            .map(|_| {
                let c = client.clone();
                std::thread::spawn(move || {
                    let opts = CallOptions::new().deadline(Duration::from_secs(30));
                    c.call_with("x", b"y", &opts)
                })
            })
            .collect();
        client.close(Duration::ZERO);
        let rs = bounded("callers after close", Duration::from_secs(10), move || {
            callers
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        });
        for r in rs {
            assert_eq!(r.unwrap_err(), CallError::Closed, "round {round}");
        }
    }
}
