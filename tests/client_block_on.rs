//! `block_on` reads a lone call's answer from the socket itself, but only when nothing else can
//! wake the future: a future that also waits for something else (here a flag another thread
//! raises) must see that wake-up at once, not after the call ends.

#[path = "support/flag.rs"]
mod flag;
#[path = "support/peer.rs"]
mod peer;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use flag::Flag;
use gracerpc::client::{CallOptions, Client, block_on};
use gracerpc::server::{Request, Responder, Server, ServerHandle};
use peer::QUICK;

/// Whichever of a call and a flag ends first.
struct Race<C> {
    call: Pin<Box<C>>,
    flag: Flag,
}

impl<C: Future> Future for Race<C> {
    type Output = &'static str;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<&'static str> {
        if self.call.as_mut().poll(cx).is_ready() {
            return Poll::Ready("call");
        }
        match Pin::new(&mut self.flag).poll(cx) {
            Poll::Ready(()) => Poll::Ready("flag"),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A server with an inline `echo`, and a client ready to call it.
fn echo() -> (ServerHandle, Client) {
    let server = Server::builder()
        .inline_handler("echo", |r: &Request<'_>| Ok(r.body.to_vec()))
        .drain_budget(Duration::from_secs(10))
        .spawn()
        .expect("server");
    let client = peer::ready_client(server.local_addr());
    (server, client)
}

#[test]
fn a_future_waiting_for_a_call_and_something_else_sees_the_other_wake_up() {
    let held: Arc<Mutex<Vec<Responder>>> = Arc::default();
    let keep = held.clone();
    let server = Server::builder()
        .deferred_handler("held", move |_: &Request<'_>, r: Responder| {
            keep.lock().unwrap().push(r)
        })
        .spawn()
        .expect("server");
    let client = peer::ready_client(server.local_addr());

    let flag = Flag::default();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = {
        let (client, flag) = (client.clone(), flag.clone());
        std::thread::spawn(move || {
            let opts = CallOptions::new().deadline(Duration::from_secs(30));
            let race = Race {
                call: Box::pin(client.call_ref("held", b"x", &opts)),
                flag,
            };
            let first = block_on(race);
            tx.send((first, Instant::now())).unwrap();
        })
    };
    // The call is outstanding (its handler holds it) before the flag is raised.
    peer::wait_until(QUICK, "the handler to hold the call", || {
        !held.lock().unwrap().is_empty()
    });
    let raised = Instant::now();
    flag.raise();
    let (first, seen) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("block_on never saw the flag: it was blocked reading the call's socket");
    assert_eq!(first, "flag");
    let late = seen.duration_since(raised);
    assert!(
        late < Duration::from_secs(2),
        "the flag was seen {late:?} after it was raised"
    );
    waiter.join().unwrap();
    for r in held.lock().unwrap().drain(..) {
        let _ = r.ok(b"late".to_vec());
    }
}

#[test]
fn block_on_one_call_at_a_time_gets_every_answer() {
    let (_server, client) = echo();
    let opts = CallOptions::new();
    for i in 0..2000u32 {
        let body = i.to_be_bytes();
        let r = block_on(client.call_ref("echo", &body, &opts)).expect("call");
        assert_eq!(r.body, body, "call {i}");
    }
}

/// A call raced against a flag nobody raises: `block_on` cannot read for it (the flag holds a
/// waker), so the reading the call took when it was sent goes back to the I/O thread, which
/// delivers the answer.
#[test]
fn a_call_block_on_does_not_read_for_is_answered_through_the_io_thread() {
    let (_server, client) = echo();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = {
        let client = client.clone();
        std::thread::spawn(move || {
            let opts = CallOptions::new().deadline(Duration::from_secs(30));
            for _ in 0..200 {
                let race = Race {
                    call: Box::pin(client.call_ref("echo", b"x", &opts)),
                    flag: Flag::default(),
                };
                if block_on(race) != "call" {
                    return;
                }
            }
            tx.send(()).unwrap();
        })
    };
    rx.recv_timeout(Duration::from_secs(10))
        .expect("200 raced calls did not all end within 10 s: an answer was never delivered");
    waiter.join().unwrap();
}

/// After a blocking call, an idle connection stays out of the I/O thread's poll until its next
/// tick (so back-to-back calls cost no `epoll_ctl`); a GOAWAY that comes meanwhile is still
/// seen, and acknowledged, within that tick: the server's drain ends long before its 10 s
/// budget.
#[test]
fn a_goaway_after_blocking_calls_on_an_idle_connection_is_seen() {
    let (server, client) = echo();
    for _ in 0..10 {
        client.call("echo", b"x").expect("call");
    }
    let t0 = Instant::now();
    server.shutdown();
    peer::wait_until(QUICK, "the caller to see the GOAWAY", || {
        client
            .nodes()
            .iter()
            .all(|n| n.state != gracerpc::client::NodeState::Ready)
    });
    server.wait().expect("drain report");
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the drain took {took:?}: the caller never answered the GOAWAY"
    );
}
