//! `Client::close(bound)`: outstanding calls finish within the bound; calls still running when it
//! passes end with an error that says they may have run; later calls fail with `Closed`. Closing
//! (or dropping the client) never resets an answer still on its way (protocol.md rule 4).

#[path = "support/cluster.rs"]
mod cluster;

use std::future::Future;
use std::io::Read;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use cluster::{Got, RawServer, TestNode, WAIT, client, wait_all_ready, wait_until};
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
                (i, client.call_with("sleep", b"300", &opts))
            })
        })
        .collect();
    wait_until("4 calls running on the server", WAIT, || {
        node.handle().in_flight() == 4
    });
    let t0 = Instant::now();
    client.close(Duration::from_secs(3));
    let closed_at = Instant::now();
    // Each handler records its call before answering: close returned only after every call
    // had its answer. (A call thread's own clock reading after its call returns can come
    // after close returns on a loaded machine: it proves nothing either way.)
    assert_eq!(
        node.rec.count(b"300"),
        4,
        "close returned before every call's handler had finished"
    );
    assert!(
        closed_at - t0 < Duration::from_secs(2),
        "close waited {:?} for calls of 300 ms",
        closed_at - t0
    );
    for h in calls {
        let (i, r) = h.join().unwrap();
        assert_eq!(r.map(|r| r.body), Ok(b"300".to_vec()), "call {i}");
    }
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

#[test]
fn close_reads_an_answer_still_on_its_way_instead_of_resetting_it() {
    late_answer_meets_no_reset(|client| client.close(Duration::from_secs(2)));
}

#[test]
fn dropping_a_client_reads_an_answer_still_on_its_way_instead_of_resetting_it() {
    late_answer_meets_no_reset(drop);
}

/// A call given up on, then the client closed by `close`; its answer comes after the
/// client's EOF and must not meet an RST.
fn late_answer_meets_no_reset(close: impl FnOnce(gracerpc::client::Client)) {
    // protocol.md rule 4, the caller's side: a closing client shuts its write side and reads
    // until the node closes. This node answers a call the caller gave up on only once it has
    // read the caller's EOF, then answers again: had the client closed its socket (not just
    // its write side), the first answer would have drawn an RST (on loopback, before `write`
    // returns) and the second write would fail.
    let (got_request, request_seen) = crossbeam_channel::bounded::<()>(1);
    let (report, after_answer) = crossbeam_channel::bounded::<Result<usize, String>>(1);
    let raw = RawServer::spawn(move |_, mut c| {
        let outcome = (|| {
            c.handshake(Some(8))
                .map_err(|e| format!("handshake: {e}"))?;
            let (id, _, body, _) = c.next_request().map_err(|e| format!("request: {e}"))?;
            let _ = got_request.send(());
            loop {
                match c.next() {
                    Ok(Got::Cancel(_)) => {}
                    Ok(other) => return Err(format!("expected CANCEL or EOF, got {other:?}")),
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(format!("waiting for the caller's EOF: {e}")),
                }
            }
            c.respond(id, &body).map_err(|e| format!("answer: {e}"))?;
            c.respond(id, &body)
                .map_err(|e| format!("second answer (the first was reset): {e}"))?;
            let mut b = [0u8; 64];
            c.stream
                .read(&mut b)
                .map_err(|e| format!("read after the answers: {e}"))
        })();
        let _ = report.send(outcome);
    });
    let client = client(&[raw.addr], |b| b);
    wait_all_ready(&client, &[raw.addr]);
    let mut fut = client.call_async("x", b"given up".to_vec(), CallOptions::new());
    let _ = Pin::new(&mut fut).poll(&mut Context::from_waker(Waker::noop()));
    request_seen
        .recv_timeout(WAIT)
        .expect("the node never got the request");
    drop(fut); // CANCEL: its answer is still to come
    let t0 = Instant::now();
    close(client);
    let outcome = after_answer
        .recv_timeout(WAIT)
        .expect("the node's script never finished");
    assert_eq!(
        outcome,
        Ok(0),
        "the node's writes and read after its late answers (0 = the caller's EOF, no reset)"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "close took {:?} though the node closed at once",
        t0.elapsed()
    );
}
