//! Async handlers on a user-supplied tokio runtime: "started" is the first poll winning the
//! QUEUED → RUNNING compare-and-swap; a task that lost runs no user code; one dropped before its
//! first poll is SHUTDOWN_REJECT (never INTERNAL); a started one cancelled by CANCEL or its
//! deadline gets a RESPONSE status (never a reject) and its future is dropped.
#![cfg(feature = "tokio")]

#[path = "support/peer.rs"]
mod peer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use gracerpc::proto::{RejectReason, Status};
use gracerpc::server::{OwnedRequest, Server, ServerHandle};
use peer::{OwnedFrame, QUICK, connect_ready, frames, wait_until};

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .expect("runtime")
}

/// A current-thread runtime polls its tasks only inside `block_on`: until then, spawned tasks
/// wait unpolled.
fn idle_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

fn status(f: &OwnedFrame) -> Status {
    match f {
        OwnedFrame::Response { status, .. } => *status,
        other => panic!("expected a RESPONSE, got {other:?}"),
    }
}

/// Sets its flag when dropped: shows a future was dropped (cancelled).
struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn pending_forever(
    started: Arc<AtomicUsize>,
    dropped: Arc<AtomicBool>,
) -> impl Fn(OwnedRequest) -> std::pin::Pin<Box<dyn Future<Output = gracerpc::server::Reply> + Send>>
+ Send
+ Sync
+ 'static {
    move |_req: OwnedRequest| {
        let (started, dropped) = (started.clone(), dropped.clone());
        Box::pin(async move {
            let _flag = DropFlag(dropped);
            started.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
            Ok(Vec::new())
        })
    }
}

fn spawn(f: impl FnOnce(gracerpc::server::Builder) -> gracerpc::server::Builder) -> ServerHandle {
    f(Server::builder().workers(1)).spawn().expect("spawn")
}

#[test]
fn an_async_handler_awaits_and_answers() {
    let rt = multi_thread();
    let s = spawn(|b| {
        b.async_handler(rt.handle(), "sleepy", |req: OwnedRequest| async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(req.body)
        })
    });
    let mut p = connect_ready(s.local_addr());
    for id in 1..=20 {
        p.send_request(id, "sleepy", &id.to_be_bytes());
    }
    let ids: Vec<u64> = (1..=20).collect();
    let got = p.collect_answers(&ids, QUICK);
    for id in ids {
        assert_eq!(
            got[&id],
            OwnedFrame::Response {
                id,
                status: Status::OK,
                body: id.to_be_bytes().to_vec()
            }
        );
    }
    wait_until(QUICK, "in_flight back to 0", || s.in_flight() == 0);
}

#[test]
fn a_task_dropped_before_its_first_poll_is_rejected_never_internal() {
    let rt = idle_runtime();
    let ran = Arc::new(AtomicUsize::new(0));
    let s = {
        let ran = ran.clone();
        spawn(|b| {
            b.async_handler(rt.handle(), "m", move |_req: OwnedRequest| {
                ran.fetch_add(1, Ordering::SeqCst);
                async { Ok(Vec::new()) }
            })
        })
    };
    let mut p = connect_ready(s.local_addr());
    p.send_request(1, "m", b"");
    wait_until(QUICK, "the request to be in flight", || s.in_flight() == 1);
    drop(rt); // shut down with the task never polled
    let got = p.collect_answers(&[1], QUICK);
    assert_eq!(
        got[&1],
        OwnedFrame::Reject {
            id: 1,
            reason: RejectReason::SHUTTING_DOWN
        }
    );
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[test]
fn a_task_that_lost_the_start_runs_no_user_code() {
    let rt = idle_runtime();
    let ran = Arc::new(AtomicUsize::new(0));
    let s = {
        let ran = ran.clone();
        spawn(|b| {
            b.async_handler(rt.handle(), "m", move |_req: OwnedRequest| {
                ran.fetch_add(1, Ordering::SeqCst);
                async { Ok(Vec::new()) }
            })
        })
    };
    let mut p = connect_ready(s.local_addr());
    p.send_request(1, "m", b"");
    wait_until(QUICK, "the request to be in flight", || s.in_flight() == 1);
    // Cancelled while its task waits for the runtime: the loop wins and rejects it.
    p.send_ok(&frames::cancel(1), "CANCEL");
    let got = p.collect_answers(&[1], QUICK);
    assert_eq!(
        got[&1],
        OwnedFrame::Reject {
            id: 1,
            reason: RejectReason::CANCELLED
        }
    );
    // Now the runtime polls the task: it loses the compare-and-swap.
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(20)).await });
    assert_eq!(
        ran.load(Ordering::SeqCst),
        0,
        "user code ran after a reject"
    );
    p.expect_silence(Duration::from_millis(50), "no second answer");
}

#[test]
fn a_started_task_cancelled_by_cancel_gets_a_response_and_its_future_is_dropped() {
    let rt = multi_thread();
    let (started, dropped) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let s = spawn(|b| {
        b.async_handler(
            rt.handle(),
            "wait",
            pending_forever(started.clone(), dropped.clone()),
        )
    });
    let mut p = connect_ready(s.local_addr());
    p.send_request(1, "wait", b"");
    wait_until(QUICK, "the future to start", || {
        started.load(Ordering::SeqCst) == 1
    });
    p.send_ok(&frames::cancel(1), "CANCEL");
    let got = p.collect_answers(&[1], QUICK);
    assert_eq!(status(&got[&1]), Status::CANCELLED);
    wait_until(QUICK, "the future to be dropped", || {
        dropped.load(Ordering::SeqCst)
    });
    wait_until(QUICK, "in_flight back to 0", || s.in_flight() == 0);
}

#[test]
fn a_started_task_past_its_deadline_gets_a_response_and_its_future_is_dropped() {
    let rt = multi_thread();
    let (started, dropped) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let s = spawn(|b| {
        b.async_handler(
            rt.handle(),
            "wait",
            pending_forever(started.clone(), dropped.clone()),
        )
    });
    let mut p = connect_ready(s.local_addr());
    p.send_ok(
        &frames::request_with(1, "wait", b"", 150_000, false),
        "REQUEST",
    );
    let got = p.collect_answers(&[1], QUICK);
    assert_eq!(status(&got[&1]), Status::DEADLINE_EXCEEDED);
    assert_eq!(started.load(Ordering::SeqCst), 1);
    wait_until(QUICK, "the future to be dropped", || {
        dropped.load(Ordering::SeqCst)
    });
    assert_eq!(s.expired(), 1);
}

#[test]
fn a_panicking_async_handler_answers_internal() {
    let rt = multi_thread();
    let s = spawn(|b| {
        b.async_handler(rt.handle(), "boom", |_req: OwnedRequest| async move {
            if true {
                panic!("async handler panics");
            }
            Ok(Vec::new())
        })
    });
    let mut p = connect_ready(s.local_addr());
    p.send_request(1, "boom", b"");
    let got = p.collect_answers(&[1], QUICK);
    assert_eq!(status(&got[&1]), Status::INTERNAL);
}
