//! `NoNodeAvailable` says why, per node (issue 11, "errors carry their cause"), and a node that
//! has refused connections for 1 s fails a call fast — while a shorter gap (a
//! restart, see client_restart.rs) is waited out.

#[path = "support/cluster.rs"]
mod cluster;

use std::time::{Duration, Instant};

use cluster::{RawServer, dead_addr, wait_until};
use gracerpc::client::{CallError, CallOptions, NodeCause, NodeState};

#[test]
fn a_node_refusing_for_a_second_fails_a_long_call_fast_with_its_cause() {
    let dead = dead_addr();
    let client = cluster::client(&[dead], |b| b);
    let t0 = Instant::now();
    let r = client.call_with(
        "x",
        b"y",
        &CallOptions::new().deadline(Duration::from_secs(30)),
    );
    let took = t0.elapsed();
    match r {
        Err(CallError::NoNodeAvailable { nodes }) => {
            assert_eq!(nodes.len(), 1);
            assert_eq!(
                (nodes[0].addr, &nodes[0].cause),
                (dead, &NodeCause::Refused)
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        took >= Duration::from_millis(900),
        "gave up after {took:?}: a restart takes longer than that"
    );
    assert!(
        took < Duration::from_secs(10),
        "waited {took:?} of a 30 s deadline"
    );
    // The node keeps refusing: the next call is told at once.
    let t0 = Instant::now();
    let r = client.call_with(
        "x",
        b"y",
        &CallOptions::new().deadline(Duration::from_secs(30)),
    );
    assert_eq!(r.unwrap_err().kind(), "no_node_available");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
}

#[test]
fn a_draining_node_is_named_as_draining() {
    // First connection: READY then GOAWAY(0), held open. Later ones: HELLO only, never READY.
    let raw = RawServer::spawn(|n, mut c| {
        let _ = (|| -> std::io::Result<()> {
            if n == 0 {
                c.handshake(Some(100))?;
                c.goaway(0)?;
            } else {
                c.handshake(None)?;
            }
            while c.next().is_ok() {}
            Ok(())
        })();
    });
    let client = cluster::client(&[raw.addr], |b| b);
    wait_until("the node draining", cluster::WAIT, || {
        cluster::state_of(&client, raw.addr) == Some(NodeState::Draining)
    });
    let r = client.call_with(
        "x",
        b"y",
        &CallOptions::new().deadline(Duration::from_millis(300)),
    );
    match r {
        Err(CallError::NoNodeAvailable { nodes }) => {
            assert_eq!(nodes.len(), 1);
            assert_eq!(nodes[0].cause, NodeCause::Draining, "{nodes:?}");
            let text = CallError::NoNodeAvailable { nodes }.to_string();
            assert!(
                text.contains(&raw.addr.to_string()) && text.contains("GOAWAY"),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
}
