//! A node whose connection drops without GOAWAY, after it read the requests: the non-idempotent
//! call fails with `OutcomeUnknown` (it may have run), the idempotent one succeeds on another
//! node, and neither waits for its deadline.

#[path = "support/cluster.rs"]
mod cluster;

use std::time::{Duration, Instant};

use cluster::{RawServer, TestNode, WAIT, client};
use gracerpc::client::{CallError, CallOptions};
use gracerpc::proto::HEADER_LEN;
use gracerpc::proto::frame::Request;

const DEADLINE: Duration = Duration::from_secs(8);

#[derive(Clone, Copy, Debug)]
enum Drop {
    /// Read both requests, then close (FIN).
    Fin,
    /// Leave both requests unread in the socket and close: the kernel answers with RST.
    Reset,
}

fn lost(how: Drop) {
    let (got_tx, got_rx) = crossbeam_channel::unbounded::<()>();
    let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(1);
    let raw = RawServer::first_ready(100, move |c| {
        match how {
            Drop::Fin => {
                c.next_request()?;
                c.next_request()?;
            }
            Drop::Reset => {
                let one = HEADER_LEN + Request::body_len("record", b"A");
                c.peek_at_least(2 * one)?;
            }
        }
        got_tx.send(()).unwrap();
        go_rx.recv_timeout(WAIT).map_err(std::io::Error::other)?;
        if let Drop::Fin = how {
            c.close();
        }
        // Drop::Reset: the connection is dropped with the requests unread when this returns.
        Ok(())
    });
    let spare = TestNode::start(|b| b.manual_ready());
    let client = client(&[raw.addr, spare.addr], |b| b);
    assert!(client.wait_ready(raw.addr, WAIT), "raw node never READY");

    let call = |tok: &'static [u8], idempotent: bool| {
        let client = client.clone();
        std::thread::spawn(move || {
            let opts = CallOptions::new().deadline(DEADLINE).idempotent(idempotent);
            let r = client.call_with("record", tok, &opts);
            (r, Instant::now())
        })
    };
    let a = call(b"A", false);
    let b = call(b"B", true);
    got_rx
        .recv_timeout(WAIT)
        .expect("the raw node never got both requests");
    spare.handle().ready().set_ready();
    assert!(client.wait_ready(spare.addr, WAIT), "spare never READY");
    let dropped_at = Instant::now();
    go_tx.send(()).unwrap();

    let (a, a_at) = a.join().unwrap();
    let (b, b_at) = b.join().unwrap();
    match &a {
        Err(e @ CallError::OutcomeUnknown) => {
            assert!(e.may_have_run(), "outcome unknown must say it may have run")
        }
        other => panic!("non-idempotent call on a lost connection ({how:?}): {other:?}"),
    }
    let b = b.unwrap_or_else(|e| panic!("idempotent call must be retried elsewhere: {e}"));
    assert_eq!((b.node, &b.body[..]), (spare.addr, &b"B"[..]));
    assert_eq!(spare.rec.count(b"B"), 1);
    assert_eq!(
        spare.rec.count(b"A"),
        0,
        "a call that may have run is never replayed"
    );
    assert_eq!(client.stats().retried, 1);
    for (name, at) in [("A", a_at), ("B", b_at)] {
        let took = at - dropped_at;
        assert!(
            took < Duration::from_secs(2),
            "{name} took {took:?} after the connection dropped: it waited for its deadline"
        );
    }
}

#[test]
fn fin_after_requests_read() {
    lost(Drop::Fin);
}

#[test]
fn reset_with_requests_unread() {
    lost(Drop::Reset);
}
