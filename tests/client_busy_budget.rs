//! The overload policy (issue 11): busy rejections (OVERLOADED, NOT_READY) are waited out within
//! the deadline and draw on a client-wide retry budget; when the cluster turns nearly every
//! call away the budget runs out and calls fail fast with `CallError::Busy`; replays after
//! SHUTTING_DOWN never draw on it.

#[path = "support/cluster.rs"]
mod cluster;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cluster::{RawServer, TestNode, client, token, wait_all_ready};
use gracerpc::client::{CallError, CallOptions};
use gracerpc::proto::RejectReason;

/// A node that is READY and turns every request away with `reason`; counts them.
fn rejecting(reason: RejectReason) -> (RawServer, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let seen2 = seen.clone();
    let raw = RawServer::spawn(move |_, mut c| {
        let _ = (|| -> std::io::Result<()> {
            c.handshake(Some(100))?;
            loop {
                let (id, ..) = c.next_request()?;
                seen2.fetch_add(1, Ordering::AcqRel);
                c.reject(id, reason)?;
            }
        })();
    });
    (raw, seen)
}

#[test]
fn a_cluster_that_turns_everything_away_spends_the_budget_then_calls_fail_fast() {
    let (busy, seen) = rejecting(RejectReason::OVERLOADED);
    let client = client(&[busy.addr], |b| b.retry_budget(10, 0.1));
    wait_all_ready(&client, &[busy.addr]);
    let opts = CallOptions::new().deadline(Duration::from_secs(20));
    let t0 = Instant::now();
    let e = client.call_with("record", b"a", &opts).unwrap_err();
    assert_eq!(
        e,
        CallError::Busy {
            reason: RejectReason::OVERLOADED
        },
        "{e}"
    );
    assert!(!e.may_have_run());
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "the call waited for its deadline instead of the budget: {:?}",
        t0.elapsed()
    );
    // 10 tokens, replays while more than 5 are left: the call was turned away 5 times.
    assert_eq!(seen.load(Ordering::Acquire), 5);
    // The bucket is empty: the next call is turned away once and fails at once.
    let e = client.call_with("record", b"b", &opts).unwrap_err();
    assert_eq!(e.kind(), "busy", "{e}");
    assert_eq!(seen.load(Ordering::Acquire), 6);
}

#[test]
fn busy_rejections_within_the_budget_are_waited_out() {
    // NOT_READY on one node, a healthy one beside it: every call succeeds, each ran once.
    let (busy, seen) = rejecting(RejectReason::NOT_READY);
    let ok = TestNode::plain();
    let client = client(&[busy.addr, ok.addr], |b| b);
    wait_all_ready(&client, &[busy.addr, ok.addr]);
    let opts = CallOptions::new().deadline(Duration::from_secs(5));
    for i in 0..300 {
        let r = client.call_with("record", &token(0, i), &opts);
        assert!(r.is_ok(), "call {i}: {r:?}");
    }
    assert_eq!(ok.rec.total(), 300);
    assert!(
        seen.load(Ordering::Acquire) > 0,
        "the busy node was never tried"
    );
}

#[test]
fn replays_after_shutting_down_never_draw_on_the_budget() {
    // A budget that allows no busy replay at all (2 tokens: one rejection leaves 1, not more
    // than half). A node that answers every request SHUTTING_DOWN (and comes back each time
    // it is reconnected) must still cost no call an error.
    let (stopping, seen) = rejecting(RejectReason::SHUTTING_DOWN);
    let ok = TestNode::plain();
    let client = client(&[stopping.addr, ok.addr], |b| b.retry_budget(2, 0.001));
    wait_all_ready(&client, &[stopping.addr, ok.addr]);
    let opts = CallOptions::new().deadline(Duration::from_secs(5));
    let end = Instant::now() + Duration::from_secs(20);
    let mut i = 0;
    while seen.load(Ordering::Acquire) < 20 {
        assert!(
            Instant::now() < end,
            "the stopping node was chosen only {seen:?} times"
        );
        let r = client.call_with("record", &token(1, i), &opts);
        assert!(r.is_ok(), "call {i}: {r:?}");
        i += 1;
        if i % 50 == 0 {
            // Let the stopping node come back (it is reconnected and READY again).
            let _ = client.wait_ready(stopping.addr, Duration::from_secs(1));
        }
    }
    assert_eq!(ok.rec.total(), i);
}
