//! A request racing the GOAWAY: written before the caller read GOAWAY(1), then also rejected by
//! the server with SHUTDOWN_REJECT. It resolves once (Rejected), is replayed exactly once on
//! another node and succeeds; the request the GOAWAY accepted is answered on the draining
//! connection.

#[path = "support/cluster.rs"]
mod cluster;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster::{Got, RawServer, TestNode, WAIT, client};
use gracerpc::client::{CallOptions, Client, Response};
use gracerpc::proto::RejectReason;

#[derive(Clone, Copy, Debug)]
enum Order {
    GoAwayFirst,
    RejectFirst,
}

fn race(order: Order, check_ack: bool) {
    let (got_tx, got_rx) = crossbeam_channel::unbounded::<u64>();
    let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(1);
    let (end_tx, end_rx) = crossbeam_channel::unbounded::<Result<(), String>>();
    // What the raw node ran (answered), by body.
    let ran: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let ran2 = ran.clone();
    let raw = RawServer::spawn(move |n, mut c| {
        if n > 0 {
            // Reconnections after the drain: never HELLO, hold until the caller goes away.
            let _ = c.next();
            return;
        }
        let mut script = || -> std::io::Result<()> {
            c.handshake(Some(100))?;
            let (id1, _, body1, _) = c.next_request()?;
            got_tx.send(id1).unwrap();
            let (id2, _, _, _) = c.next_request()?;
            got_tx.send(id2).unwrap();
            go_rx.recv_timeout(WAIT).map_err(std::io::Error::other)?;
            match order {
                Order::GoAwayFirst => {
                    c.goaway(id1)?;
                    c.reject(id2, RejectReason::SHUTTING_DOWN)?;
                }
                Order::RejectFirst => {
                    c.reject(id2, RejectReason::SHUTTING_DOWN)?;
                    c.goaway(id1)?;
                }
            }
            ran2.lock().unwrap().push(body1.clone());
            c.respond(id1, &body1)?;
            // Rule 3: the caller acknowledges and then writes nothing more.
            match c.next()? {
                Got::GoAwayAck(n) if n == id1 => {}
                other => {
                    return Err(std::io::Error::other(format!(
                        "expected ACK, got {other:?}"
                    )));
                }
            }
            match c.next() {
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(()),
                other => Err(std::io::Error::other(format!(
                    "after GOAWAY_ACK expected EOF, got {other:?}"
                ))),
            }
        };
        let _ = end_tx.send(script().map_err(|e| e.to_string()));
    });
    let spare = TestNode::start(|b| b.manual_ready());
    let client = client(&[raw.addr, spare.addr], |b| b);
    assert!(client.wait_ready(raw.addr, WAIT), "raw node never READY");

    let call = |client: &Client, tok: &'static [u8]| {
        let client = client.clone();
        std::thread::spawn(move || {
            let opts = CallOptions::new().deadline(Duration::from_secs(8));
            client.call_with("record", tok, &opts)
        })
    };
    // Ids 1 and 2, in that order, both on the raw node (the spare is not READY yet).
    let a = call(&client, b"A");
    assert_eq!(got_rx.recv_timeout(WAIT), Ok(1), "request A never arrived");
    let b = call(&client, b"B");
    assert_eq!(got_rx.recv_timeout(WAIT), Ok(2), "request B never arrived");
    spare.handle().ready().set_ready();
    assert!(client.wait_ready(spare.addr, WAIT), "spare never READY");
    go_tx.send(()).unwrap();

    let a: Response = a.join().unwrap().expect("A (id 1 ≤ N) must be answered");
    let b: Response = b
        .join()
        .unwrap()
        .expect("B (rejected twice) must succeed elsewhere");
    assert_eq!((a.node, a.replays, &a.body[..]), (raw.addr, 0, &b"A"[..]));
    assert_eq!(
        (b.node, b.replays, &b.body[..]),
        (spare.addr, 1, &b"B"[..]),
        "B must be replayed exactly once, on the spare"
    );
    assert_eq!(spare.rec.count(b"B"), 1, "B ran once on the spare");
    assert_eq!(spare.rec.count(b"A"), 0, "A never replayed");
    assert_eq!(
        *ran.lock().unwrap(),
        vec![b"A".to_vec()],
        "the raw node ran A only"
    );
    assert_eq!(client.stats().replayed, 1, "one replay in all");
    if !check_ack {
        return;
    }
    match end_rx.recv_timeout(WAIT) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("raw node script failed ({order:?}): {e}"),
        Err(_) => panic!("the client never closed the drained connection"),
    }
}

#[test]
fn goaway_then_reject_replays_once() {
    race(Order::GoAwayFirst, false);
}

#[test]
fn reject_then_goaway_replays_once() {
    race(Order::RejectFirst, false);
}

/// The same races, also checking that the caller writes GOAWAY_ACK and then closes (rule 3).
#[test]
fn drained_connection_is_acknowledged_then_closed() {
    race(Order::GoAwayFirst, true);
    race(Order::RejectFirst, true);
}
