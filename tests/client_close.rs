//! `Client::close(bound)`: outstanding calls finish within the bound; calls still running when it
//! passes end with an error that says they may have run; later calls fail with `Closed`.

#[path = "support/cluster.rs"]
mod cluster;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cluster::{TestNode, WAIT, client, wait_all_ready, wait_until};
use gracerpc::client::{CallError, CallOptions};

#[test]
fn close_lets_outstanding_calls_finish() {
    let node = TestNode::start(|b| b.workers(4));
    let client = client(&[node.addr], |b| b);
    wait_all_ready(&client, &[node.addr]);
    let calls: Vec<_> = (0..4)
        .map(|i| {
            let client = client.clone();
            std::thread::spawn(move || {
                let opts = CallOptions::new().deadline(Duration::from_secs(8));
                let r = client.call_with("sleep", b"300", &opts);
                (i, r, Instant::now())
            })
        })
        .collect();
    wait_until("4 calls running on the server", WAIT, || {
        node.handle().in_flight() == 4
    });
    let t0 = Instant::now();
    client.close(Duration::from_secs(3));
    let closed_at = Instant::now();
    assert!(
        closed_at - t0 < Duration::from_secs(2),
        "close waited {:?} for calls of 300 ms",
        closed_at - t0
    );
    for h in calls {
        let (i, r, at) = h.join().unwrap();
        assert_eq!(r.map(|r| r.body), Ok(b"300".to_vec()), "call {i}");
        assert!(at <= closed_at, "call {i} finished after close returned");
    }
    assert_eq!(node.rec.count(b"300"), 4);
    let after = client.call_with("echo", b"x", &CallOptions::new());
    assert_eq!(after, Err(CallError::Closed));
    assert!(!after.unwrap_err().may_have_run());
}

#[test]
fn close_bound_ends_calls_that_outlive_it_as_may_have_run() {
    let node = TestNode::start(|b| b.workers(4));
    let client = client(&[node.addr], |b| b);
    wait_all_ready(&client, &[node.addr]);
    let calls: Vec<_> = [false, true]
        .into_iter()
        .map(|idempotent| {
            let client = client.clone();
            std::thread::spawn(move || {
                let opts = CallOptions::new()
                    .deadline(Duration::from_secs(8))
                    .idempotent(idempotent);
                let r = client.call_with("block", b"held", &opts);
                (idempotent, r, Instant::now())
            })
        })
        .collect();
    wait_until("both calls running", WAIT, || {
        node.rec.blocked.load(Ordering::Acquire) == 2
    });
    let bound = Duration::from_millis(200);
    let t0 = Instant::now();
    client.close(bound);
    let took = t0.elapsed();
    assert!(
        took >= bound && took < bound + Duration::from_millis(300),
        "close({bound:?}) took {took:?}"
    );
    for h in calls {
        let (idempotent, r, at) = h.join().unwrap();
        let e = r.expect_err("the call outlived close's bound");
        assert!(
            e.may_have_run(),
            "idempotent={idempotent}: {e:?} says it never ran, but the handler is running it"
        );
        assert!(
            at - t0 < bound + Duration::from_millis(300),
            "idempotent={idempotent}: returned {:?} after close began",
            at - t0
        );
    }
    node.rec.open_gate();
}

#[test]
fn close_bound_ends_a_lone_call_whose_thread_reads_its_own_answer() {
    // One call alone on its connection: its thread waits on the socket itself (no I/O thread
    // hop), and close's bound must still end that wait.
    let node = TestNode::start(|b| b.workers(1));
    let client = client(&[node.addr], |b| b);
    wait_all_ready(&client, &[node.addr]);
    let call = {
        let client = client.clone();
        std::thread::spawn(move || {
            let opts = CallOptions::new().deadline(Duration::from_secs(8));
            let r = client.call_with("block", b"lone", &opts);
            (r, Instant::now())
        })
    };
    wait_until("the call running", WAIT, || {
        node.rec.blocked.load(Ordering::Acquire) == 1
    });
    let bound = Duration::from_millis(200);
    let t0 = Instant::now();
    client.close(bound);
    let (r, at) = call.join().unwrap();
    let e = r.expect_err("the call outlived close's bound");
    assert!(e.may_have_run(), "{e:?} says it never ran");
    assert!(
        at - t0 < bound + Duration::from_millis(300),
        "returned {:?} after close began",
        at - t0
    );
    node.rec.open_gate();
}
