//! `ServerHandle::wait` joins the worker threads, and names in the report those still running
//! a handler when the budget ran out (issue 11, finding 9).

#[path = "support/peer.rs"]
mod peer;

use std::cell::RefCell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gracerpc::server::{Request, Server};
use peer::{Gate, QUICK, connect_ready, wait_report, wait_until};

/// Worker threads that ended (their thread-local destructors ran).
static ENDED: AtomicUsize = AtomicUsize::new(0);
/// Handlers that started.
static STARTED: AtomicUsize = AtomicUsize::new(0);

/// Set in a worker thread by a handler; its drop (at thread exit) is slow on purpose, so that a
/// `wait()` that does not join returns long before it.
struct EndMark;

impl Drop for EndMark {
    fn drop(&mut self) {
        std::thread::sleep(Duration::from_millis(300));
        ENDED.fetch_add(1, Ordering::SeqCst);
    }
}

thread_local! {
    static MARK: RefCell<Option<EndMark>> = const { RefCell::new(None) };
}

#[test]
fn wait_returns_after_the_workers_have_ended() {
    let server = Server::builder()
        .workers(2)
        .drain_budget(Duration::from_secs(5))
        .handler("mark", |_: &Request<'_>| {
            MARK.with(|m| *m.borrow_mut() = Some(EndMark));
            STARTED.fetch_add(1, Ordering::SeqCst);
            // Hold until both workers run one, so that each thread carries a mark.
            let t = Instant::now();
            while STARTED.load(Ordering::SeqCst) < 2 && t.elapsed() < QUICK {
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(Vec::new())
        })
        .spawn()
        .expect("spawn");
    let mut p = connect_ready(server.local_addr());
    p.send_request(1, "mark", b"");
    p.send_request(2, "mark", b"");
    p.collect_answers(&[1, 2], QUICK);
    assert_eq!(STARTED.load(Ordering::SeqCst), 2);
    drop(p);
    server.shutdown();
    let (report, _server) = wait_report(server, QUICK);
    assert!(report.clean, "{report:?}");
    assert!(report.stuck_workers.is_empty(), "{report:?}");
    assert_eq!(
        ENDED.load(Ordering::SeqCst),
        2,
        "wait() returned while worker threads were still running"
    );
}

#[test]
fn a_worker_stuck_past_the_budget_is_named_in_the_report() {
    const BUDGET: Duration = Duration::from_millis(400);
    let gate = Gate::new();
    let name = std::sync::Arc::new(Mutex::new(String::new()));
    let seen = name.clone();
    let hang = gate.handler();
    let server = Server::builder()
        .workers(3)
        .drain_budget(BUDGET)
        .handler("hang", move |r: &Request<'_>| {
            let me = std::thread::current().name().unwrap_or("").to_owned();
            *seen.lock().unwrap_or_else(|e| e.into_inner()) = me;
            hang(r)
        })
        .spawn()
        .expect("spawn");
    let mut p = connect_ready(server.local_addr());
    p.send_request(1, "hang", b"stuck");
    gate.wait_started(b"stuck", QUICK);
    wait_until(QUICK, "the handler to note its thread", || {
        !name.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
    });

    let t0 = Instant::now();
    server.shutdown();
    let (report, _server) = wait_report(server, BUDGET + QUICK);
    let took = t0.elapsed();
    assert!(
        took < BUDGET + Duration::from_millis(700),
        "wait() took {took:?}: the two idle workers end at once, the stuck one is not waited for"
    );
    let expected = name.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(expected.starts_with("gracerpc-worker-"), "{expected}");
    assert_eq!(report.stuck_workers, vec![expected], "{report:?}");
    assert!(
        report
            .to_string()
            .contains("1 workers still running a handler"),
        "{report}"
    );
    drop(p);
    drop(gate);
}
