//! Deadlines and cancellation: a slow or silent node gives `DeadlineExceeded { may_have_run:
//! true }` on time; no node at all gives `NoNodeAvailable` after the deadline; dropping a call
//! sends CANCEL, so a queued job never runs.

#[path = "support/cluster.rs"]
mod cluster;

use std::pin::pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use cluster::{RawServer, TestNode, WAIT, client, dead_addr, wait_all_ready, wait_until};
use gracerpc::client::{CallError, CallOptions, Client, NodeCause, NodeReport, NodeState};

/// How late past its deadline a call may return (scheduling on a busy 2-core machine).
const LATE: Duration = Duration::from_millis(60);

fn timed(client: &Client, method: &str, body: &[u8], deadline: Duration) -> (CallError, Duration) {
    let t0 = Instant::now();
    let opts = CallOptions::new().deadline(deadline);
    let r = client.call_with(method, body, &opts);
    let took = t0.elapsed();
    eprintln!("{method}: deadline {deadline:?} took {took:?}");
    (r.expect_err("the call must not succeed"), took)
}

fn assert_on_time(took: Duration, deadline: Duration, what: &str) {
    assert!(
        took >= deadline,
        "{what}: returned after {took:?}, before its deadline {deadline:?}"
    );
    assert!(
        took <= deadline + LATE,
        "{what}: returned {:?} after its deadline {deadline:?}",
        took - deadline
    );
}

#[test]
fn slow_handler_gives_deadline_exceeded_may_have_run() {
    let node = TestNode::plain();
    let client = client(&[node.addr], |b| b);
    wait_all_ready(&client, &[node.addr]);
    for ms in [150u64, 220, 90, 310, 170] {
        let deadline = Duration::from_millis(ms);
        let (e, took) = timed(&client, "sleep", b"1000", deadline);
        assert_eq!(e, CallError::DeadlineExceeded { may_have_run: true });
        assert!(e.may_have_run());
        assert_on_time(took, deadline, "slow handler");
    }
}

#[test]
fn silent_node_gives_deadline_exceeded_may_have_run() {
    // Reads requests and never answers nor closes.
    let raw = RawServer::spawn(|_, mut c| {
        let _ = c.handshake(Some(100));
        while c.next().is_ok() {}
    });
    let client = client(&[raw.addr], |b| b);
    wait_all_ready(&client, &[raw.addr]);
    for ms in [130u64, 250] {
        let deadline = Duration::from_millis(ms);
        let (e, took) = timed(&client, "record", b"x", deadline);
        assert_eq!(e, CallError::DeadlineExceeded { may_have_run: true });
        assert_on_time(took, deadline, "silent node");
    }
}

#[test]
fn no_node_at_all_gives_no_node_available_after_the_deadline() {
    let empty = Client::builder().build().unwrap();
    let deadline = Duration::from_millis(200);
    let (e, took) = timed(&empty, "record", b"x", deadline);
    assert_eq!(e, CallError::NoNodeAvailable { nodes: vec![] });
    assert!(!e.may_have_run());
    assert_on_time(took, deadline, "empty client");

    // A listed node that refuses connections is no better.
    let dead = dead_addr();
    let refused = client(&[dead], |b| b);
    let (e, took) = timed(&refused, "record", b"x", deadline);
    let cause = |addr, cause| NodeReport { addr, cause };
    assert_eq!(
        e,
        CallError::NoNodeAvailable {
            nodes: vec![cause(dead, NodeCause::Refused)]
        }
    );
    assert_on_time(took, deadline, "refused node");

    // A node that accepts but never says HELLO/READY.
    let mute = RawServer::spawn(|_, mut c| while c.next().is_ok() {});
    let mute_client = client(&[mute.addr], |b| b);
    let (e, took) = timed(&mute_client, "record", b"x", deadline);
    assert_eq!(
        e,
        CallError::NoNodeAvailable {
            nodes: vec![cause(mute.addr, NodeCause::NotReady)]
        }
    );
    assert_on_time(took, deadline, "node never READY");
}

#[test]
fn dropping_a_call_sends_cancel_and_the_queued_job_never_runs() {
    let node = TestNode::start(|b| b.workers(1));
    let client = client(&[node.addr], |b| b);
    wait_all_ready(&client, &[node.addr]);
    let opts = CallOptions::new().deadline(Duration::from_secs(8));

    // Occupy the only worker.
    let blocker = {
        let (client, opts) = (client.clone(), opts.clone());
        std::thread::spawn(move || client.call_with("block", b"blocker", &opts))
    };
    wait_until("the blocker runs", WAIT, || {
        node.rec.blocked.load(Ordering::Acquire) == 1
    });

    // A call that gets written and queued behind it, then dropped.
    let mut cx = Context::from_waker(Waker::noop());
    {
        let mut fut = pin!(client.call_async("record", b"dropped".to_vec(), opts.clone()));
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        wait_until("the server queued the request", WAIT, || {
            node.handle().in_flight() == 2
        });
    } // dropped here: CANCEL goes out
    wait_until("the server dropped the cancelled request", WAIT, || {
        node.handle().in_flight() == 1
    });
    assert_eq!(
        node.rec.count(b"dropped"),
        0,
        "the cancelled job must not have run"
    );

    // Release the worker; a later call on the same FIFO queue proves the cancelled job is gone
    // (had it stayed queued, it would run first).
    node.rec.open_gate();
    assert!(blocker.join().unwrap().is_ok());
    let after = client.call_with("record", b"after", &opts).unwrap();
    assert_eq!(after.body, b"after");
    assert_eq!(node.rec.count(b"dropped"), 0, "the cancelled job ran");
    assert_eq!(client.table().find(node.addr).unwrap().outstanding(), 0);
}

#[test]
fn refusals_that_began_before_a_call_do_not_end_it_before_its_deadline() {
    // A node refusing for 300 ms already: past the call's 200 ms budget, short of the 1 s a
    // node may refuse before calls give up on it (a restart). The call waits for it until its
    // own deadline — failing at once, or a few ms early, would count the node's refusals
    // before the call against the call's budget.
    let dead = dead_addr();
    let refused = client(&[dead], |b| b);
    wait_until("the node's first refusal", WAIT, || {
        refused.nodes().first().map(|n| n.state) == Some(NodeState::Down)
    });
    // Not a synchronisation: the refusals must have lasted this long before the call.
    std::thread::sleep(Duration::from_millis(300));
    let deadline = Duration::from_millis(200);
    let (e, took) = timed(&refused, "record", b"x", deadline);
    assert_eq!(e.kind(), "no_node_available", "{e:?}");
    assert_on_time(took, deadline, "node refusing since before the call");
}
