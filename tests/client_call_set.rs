//! `CallSet`: many futures in flight polled from the calling thread, which writes their
//! requests per round and reads their answers itself when every future waits for nothing but
//! a call on one connection. Every call still resolves exactly once, on time, and other
//! threads' calls on the same connection, and futures that wait for other things, are served.

#[path = "support/flag.rs"]
mod flag;
#[path = "support/peer.rs"]
mod peer;
#[path = "support/witness.rs"]
mod witness;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use flag::Flag;
use gracerpc::client::{CallError, CallOptions, CallSet, Client};
use gracerpc::server::{Request, Responder, Server, ServerHandle};
use peer::QUICK;
use witness::Deliveries;

/// Calls to `held` are kept by the handler until the test answers them.
type Held = Arc<Mutex<Vec<Responder>>>;

/// A server with an inline `echo` and a deferred `held`, and a client ready to call it.
fn server() -> (ServerHandle, Client, Held) {
    let held: Held = Arc::default();
    let keep = held.clone();
    let server = Server::builder()
        .inline_handler("echo", |r: &Request<'_>| Ok(r.body.to_vec()))
        .deferred_handler("held", move |_: &Request<'_>, r: Responder| {
            keep.lock().unwrap().push(r)
        })
        .drain_budget(Duration::from_secs(10))
        .spawn()
        .expect("server");
    let client = peer::ready_client(server.local_addr());
    (server, client, held)
}

fn wait_held(held: &Held, n: usize) {
    peer::wait_until(QUICK, "the handler to hold the calls", || {
        held.lock().unwrap().len() >= n
    });
}

fn answer_all(held: &Held) {
    for r in held.lock().unwrap().drain(..) {
        let _ = r.ok(b"late".to_vec());
    }
}

#[test]
fn every_call_in_a_set_gets_its_own_answer_once() {
    let (_server, client, _) = server();
    let opts = CallOptions::new();
    let total = 3000u32;
    let mut set = CallSet::with_capacity(64);
    let (mut started, mut seen) = (0u32, vec![false; total as usize]);
    let call = |i: u32| {
        let fut = client.call_async("echo", i.to_be_bytes().to_vec(), opts.clone());
        async move { (i, fut.await) }
    };
    while started < 64 {
        assert!(set.push(call(started)).is_ok());
        started += 1;
    }
    assert!(
        set.push(call(started)).is_err(),
        "a full set took a 65th future"
    );
    while let Some((i, r)) = set.next() {
        let r = r.expect("call");
        assert_eq!(
            r.body,
            i.to_be_bytes(),
            "call {i} got another call's answer"
        );
        assert!(
            !std::mem::replace(&mut seen[i as usize], true),
            "call {i} ended twice"
        );
        if started < total {
            assert!(set.push(call(started)).is_ok(), "no room after an output");
            started += 1;
        }
    }
    assert!(seen.iter().all(|&s| s), "a call never ended");
    assert!(set.is_empty());
}

/// A set whose futures wait for nothing but calls on one connection reads their answers on
/// its own thread: most wake-ups happen there, not on the client's I/O thread (a few may,
/// before the set takes the reading over or at the I/O thread's tick).
#[test]
fn a_set_alone_on_its_connection_reads_the_answers_itself() {
    let (_server, client, _) = server();
    let opts = CallOptions::new();
    let count = Deliveries::default();
    let call = || count.watch(client.call_ref("echo", b"x", &opts));
    let mut set = CallSet::with_capacity(32);
    let total = 5000;
    let mut started = 0;
    while started < 32 {
        assert!(set.push(call()).is_ok());
        started += 1;
    }
    while let Some(r) = set.next() {
        r.expect("call");
        if started < total {
            assert!(set.push(call()).is_ok());
            started += 1;
        }
    }
    count.assert_mostly_on_caller();
}

/// A future of the set that waits for a call and a flag: the flag's wake-up is seen while the
/// call is still held, and the held calls of the other futures end when answered.
#[test]
fn a_future_in_a_set_that_waits_for_something_else_is_not_starved() {
    let (_server, client, held) = server();
    let opts = CallOptions::new().deadline(Duration::from_secs(30));
    let flag = Flag::default();
    type Lane<'a> = Pin<Box<dyn Future<Output = &'static str> + 'a>>;
    let mut set: CallSet<Lane<'_>> = CallSet::with_capacity(4);
    for _ in 0..3 {
        let call = client.call_ref("held", b"x", &opts);
        assert!(
            set.push(Box::pin(
                async move { call.await.map_or("failed", |_| "call") }
            ))
            .is_ok()
        );
    }
    let (call, f) = (client.call_ref("held", b"x", &opts), flag.clone());
    let race: Lane<'_> = Box::pin(async move {
        let mut call = Box::pin(call);
        let mut f = f;
        std::future::poll_fn(move |cx| {
            if call.as_mut().poll(cx).is_ready() {
                return Poll::Ready("call");
            }
            Pin::new(&mut f).poll(cx).map(|()| "flag")
        })
        .await
    });
    assert!(set.push(race).is_ok());
    // The set polls and sends; then every call is held.
    assert!(set.next_timeout(Duration::from_millis(1)).is_none());
    wait_held(&held, 4);
    let raiser = {
        let flag = flag.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            flag.raise();
        })
    };
    let t0 = Instant::now();
    // A wait longer than the bound, so only the flag's wake-up can end it in time.
    let first = set.next_timeout(QUICK * 4);
    assert_eq!(first, Some("flag"), "the flag's wake-up was not seen");
    let took = t0.elapsed();
    assert!(
        took < QUICK,
        "the flag's wake-up was seen {took:?} after it was raised"
    );
    raiser.join().unwrap();
    answer_all(&held);
    let mut rest = Vec::new();
    while let Some(r) = set.next_timeout(QUICK) {
        rest.push(r);
    }
    assert!(set.is_empty(), "held calls did not end once answered");
    assert_eq!(rest, ["call"; 3]);
}

/// While a set's thread reads its connection, a call another thread makes on it is answered
/// (the reader hands it over), and the set's own calls still end when answered.
#[test]
fn another_threads_call_on_the_sets_connection_is_answered_meanwhile() {
    let (_server, client, held) = server();
    let opts = CallOptions::new().deadline(Duration::from_secs(30));
    let mut set = CallSet::with_capacity(16);
    for _ in 0..16 {
        assert!(
            set.push(client.call_async("held", b"x".to_vec(), opts.clone()))
                .is_ok()
        );
    }
    // The set's thread waits for its held calls with no timeout of its own: it reads the
    // connection for as long as nothing of its own comes.
    let driver = std::thread::spawn(move || {
        let mut outputs = Vec::new();
        while let Some(r) = set.next_timeout(QUICK * 4) {
            outputs.push((r, Instant::now()));
        }
        (outputs, set.is_empty())
    });
    wait_held(&held, 16);
    let (tx, rx) = std::sync::mpsc::channel();
    let other = {
        let client = client.clone();
        std::thread::spawn(move || {
            for i in 0..50u32 {
                let r = client.call("echo", &i.to_be_bytes()).expect("echo");
                assert_eq!(r, i.to_be_bytes());
            }
            tx.send(()).unwrap();
        })
    };
    rx.recv_timeout(QUICK)
        .expect("another thread's calls were not answered while the set read");
    other.join().unwrap();
    let answered = Instant::now();
    answer_all(&held);
    let (outputs, empty) = driver.join().unwrap();
    assert!(empty, "held calls still pending after they were answered");
    assert_eq!(outputs.len(), 16);
    for (r, at) in outputs {
        r.expect("held call");
        assert!(at >= answered, "a held call ended before it was answered");
    }
}

/// Calls in a set whose server never answers end at their deadline, as elsewhere.
#[test]
fn calls_in_a_set_end_at_their_deadline() {
    let (_server, client, held) = server();
    let opts = CallOptions::new().deadline(Duration::from_millis(300));
    let mut set = CallSet::with_capacity(8);
    for _ in 0..8 {
        assert!(set.push(client.call_ref("held", b"x", &opts)).is_ok());
    }
    let t0 = Instant::now();
    let mut ends = 0;
    while let Some(r) = set.next_timeout(QUICK) {
        assert!(
            matches!(r, Err(CallError::DeadlineExceeded { may_have_run: true })),
            "{r:?}"
        );
        ends += 1;
    }
    assert_eq!(
        ends, 8,
        "calls still pending {QUICK:?} after a 300 ms deadline"
    );
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(300), "ended early: {took:?}");
    answer_all(&held);
}

/// Dropping a set cancels its calls; the connection keeps working for the next caller.
#[test]
fn a_dropped_set_cancels_its_calls_and_the_connection_goes_on() {
    let (_server, client, held) = server();
    let opts = CallOptions::new().deadline(Duration::from_secs(30));
    {
        let mut set = CallSet::with_capacity(8);
        for _ in 0..8 {
            assert!(set.push(client.call_ref("held", b"x", &opts)).is_ok());
        }
        assert!(set.next_timeout(Duration::from_millis(1)).is_none());
        wait_held(&held, 8);
        assert_eq!(client.nodes()[0].outstanding, 8);
    }
    // Dropped with the set: forgotten by the connection at once (CANCEL sent).
    assert_eq!(
        client.nodes()[0].outstanding,
        0,
        "the dropped set's calls are still outstanding"
    );
    for i in 0..20u32 {
        let r = client
            .call("echo", &i.to_be_bytes())
            .expect("echo after the drop");
        assert_eq!(r, i.to_be_bytes());
    }
    let mut set = CallSet::with_capacity(4);
    for _ in 0..4 {
        assert!(set.push(client.call_ref("echo", b"y", &opts)).is_ok());
    }
    let mut n = 0;
    for r in set {
        assert_eq!(r.expect("echo").body, b"y");
        n += 1;
    }
    assert_eq!(n, 4);
    answer_all(&held);
}

/// A set moved to another thread between calls of `next` still writes what its rounds queued
/// and is woken on the thread that waits now.
#[test]
fn a_set_moved_to_another_thread_goes_on_there() {
    let (_server, client, _) = server();
    let opts = CallOptions::new().deadline(Duration::from_secs(30));
    let mut set = CallSet::with_capacity(64);
    for i in 0..64u32 {
        let fut = client.call_async("echo", i.to_be_bytes().to_vec(), opts.clone());
        assert!(set.push(fut).is_ok());
    }
    // One output here (the set's first round queues and writes requests on this thread)...
    let first = set.next().expect("an output").expect("echo");
    assert_eq!(first.body.len(), 4);
    // ...the rest on another thread.
    let rest = std::thread::spawn(move || {
        let mut n = 0;
        while let Some(r) = set.next_timeout(QUICK) {
            r.expect("echo");
            n += 1;
        }
        (n, set.is_empty())
    })
    .join()
    .unwrap();
    assert_eq!(rest, (63, true), "calls left unanswered after the move");
}
