//! A `CallSet` alone on its connection reads its answers on its own thread; what the node does
//! meanwhile is handled by the same core as on the I/O thread: a GOAWAY replays what the node
//! did not accept (on another node) and keeps what it did, and a connection lost with calls
//! read by the node ends them at once as "outcome unknown", not at their deadline.

#[path = "support/cluster.rs"]
mod cluster;

use std::time::{Duration, Instant};

use cluster::{RawServer, TestNode, WAIT, client};
use gracerpc::client::{CallError, CallFuture, CallOptions, CallSet, Client, Response};
use gracerpc::proto::RejectReason;

const CALLS: usize = 8;
const DEADLINE: Duration = Duration::from_secs(8);

/// A set of [`CALLS`] calls of `record`, its first round sent.
fn sent(client: &Client) -> CallSet<CallFuture<'static>> {
    let opts = CallOptions::new().deadline(DEADLINE);
    let mut set = CallSet::with_capacity(CALLS);
    for i in 0..CALLS {
        let body = format!("call {i}").into_bytes();
        assert!(
            set.push(client.call_async("record", body, opts.clone()))
                .is_ok()
        );
    }
    // The set sends its round (then, draining, reads the raw node's connection: the only one
    // ready).
    assert!(set.next_timeout(Duration::from_millis(1)).is_none());
    set
}

/// Drains `set` on another thread; each output with when it came.
fn drain<F>(mut set: CallSet<F>) -> std::thread::JoinHandle<Vec<(F::Output, Instant)>>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send,
{
    std::thread::spawn(move || {
        let mut out = Vec::new();
        while let Some(r) = set.next_timeout(DEADLINE * 2) {
            out.push((r, Instant::now()));
        }
        assert!(
            set.is_empty(),
            "calls still pending after twice their deadline"
        );
        out
    })
}

#[test]
fn a_goaway_while_a_set_reads_replays_what_the_node_did_not_accept() {
    let (got_tx, got_rx) = crossbeam_channel::unbounded::<Vec<u64>>();
    let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(1);
    let raw = RawServer::first_ready(100, move |c| {
        let mut ids = Vec::new();
        for _ in 0..CALLS {
            ids.push(c.next_request()?.0);
        }
        got_tx.send(ids.clone()).unwrap();
        go_rx.recv_timeout(WAIT).map_err(std::io::Error::other)?;
        // Accepts the first half: answers them after the GOAWAY; rejects the rest.
        ids.sort_unstable();
        let half = ids[CALLS / 2 - 1];
        c.goaway(half)?;
        for &id in &ids[..CALLS / 2] {
            c.respond(id, b"from the raw node")?;
        }
        for &id in &ids[CALLS / 2..] {
            c.reject(id, RejectReason::SHUTTING_DOWN)?;
        }
        // Until the caller closes.
        while c.next().is_ok() {}
        Ok(())
    });
    let spare = TestNode::start(|b| b.manual_ready());
    let client = client(&[raw.addr, spare.addr], |b| b);
    assert!(client.wait_ready(raw.addr, WAIT), "raw node never READY");

    let set = sent(&client);
    let ids = got_rx
        .recv_timeout(WAIT)
        .expect("the raw node never got every request");
    assert_eq!(ids.len(), CALLS);
    let outputs = drain(set);
    spare.handle().ready().set_ready();
    assert!(client.wait_ready(spare.addr, WAIT), "spare never READY");
    go_tx.send(()).unwrap();

    let outputs = outputs.join().unwrap();
    assert_eq!(outputs.len(), CALLS);
    let bodies: Vec<Vec<u8>> = outputs
        .into_iter()
        .map(|(r, _)| r.map(|r: Response| r.body).expect("every call ends well"))
        .collect();
    let from_raw = bodies.iter().filter(|b| *b == b"from the raw node").count();
    assert_eq!(
        from_raw,
        CALLS / 2,
        "the accepted half is answered by the draining node"
    );
    // The rejected half ran once, on the spare.
    assert_eq!(
        spare.rec.total(),
        (CALLS / 2) as u64,
        "replays on the spare"
    );
}

#[test]
fn a_connection_lost_while_a_set_reads_ends_its_calls_at_once() {
    let (got_tx, got_rx) = crossbeam_channel::unbounded::<()>();
    let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(1);
    let raw = RawServer::first_ready(100, move |c| {
        for _ in 0..CALLS {
            c.next_request()?;
        }
        got_tx.send(()).unwrap();
        go_rx.recv_timeout(WAIT).map_err(std::io::Error::other)?;
        c.close();
        Ok(())
    });
    let client = client(&[raw.addr], |b| b);
    assert!(client.wait_ready(raw.addr, WAIT), "raw node never READY");

    let set = sent(&client);
    got_rx
        .recv_timeout(WAIT)
        .expect("the raw node never got every request");
    let outputs = drain(set);
    let lost_at = Instant::now();
    go_tx.send(()).unwrap();

    let outputs = outputs.join().unwrap();
    assert_eq!(outputs.len(), CALLS);
    for (r, at) in outputs {
        assert!(
            matches!(r, Err(CallError::OutcomeUnknown)),
            "a call the node read and never answered: {r:?}"
        );
        let took = at.duration_since(lost_at);
        assert!(
            took < DEADLINE / 2,
            "ended {took:?} after the connection was lost: it waited for its deadline"
        );
    }
}
