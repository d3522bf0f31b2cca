//! Deferred handlers: a responder answers later from any thread, exactly once; dropped it answers
//! INTERNAL; kept and never answered the server answers DEADLINE_EXCEEDED at the deadline plus
//! the grace (so it cannot hold a drain); over the cap a request is OVERLOADED before it starts;
//! CANCEL of a running one answers CANCELLED; a later answer is dropped and counted.

#[path = "support/peer.rs"]
mod peer;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gracerpc::proto::{RejectReason, Status};
use gracerpc::server::{Builder, Request, Responder, Server, ServerHandle};
use peer::{OwnedFrame, QUICK, connect_ready, frames, wait_report, wait_until};

/// Responders a handler kept, for the test to answer (or not).
#[derive(Clone, Default)]
struct Kept(Arc<Mutex<Vec<Responder>>>);

impl Kept {
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn take(&self) -> Vec<Responder> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
    fn wait(&self, n: usize) {
        wait_until(QUICK, "the handler to keep its responder", || {
            self.len() >= n
        });
    }
}

fn server(f: impl FnOnce(Builder) -> Builder) -> ServerHandle {
    f(Server::builder().workers(2)).spawn().expect("spawn")
}

fn keeping(kept: &Kept) -> impl Fn(&Request<'_>, Responder) + Send + Sync + 'static {
    let kept = kept.clone();
    move |_req: &Request<'_>, r: Responder| kept.0.lock().unwrap().push(r)
}

fn response(f: &OwnedFrame) -> (Status, Vec<u8>) {
    match f {
        OwnedFrame::Response { status, body, .. } => (*status, body.clone()),
        other => panic!("expected a RESPONSE, got {other:?}"),
    }
}

#[test]
fn a_responder_answers_from_another_thread() {
    let s = server(|b| {
        b.deferred_handler("later", |req: &Request<'_>, r: Responder| {
            let body = req.body.to_vec();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                assert!(r.ok(body), "the first answer goes out");
            });
        })
    });
    let mut p = connect_ready(s.local_addr());
    p.send_request(1, "later", b"hi");
    let got = p.collect_answers(&[1], QUICK);
    assert_eq!(response(&got[&1]), (Status::OK, b"hi".to_vec()));
    wait_until(QUICK, "in_flight back to 0", || s.in_flight() == 0);
    assert_eq!(s.late_answers(), 0);
}

#[test]
fn an_inline_deferred_handler_answers_through_its_responder() {
    let s = server(|b| {
        b.deferred_handler_with(
            "later",
            |req: &Request<'_>, r: Responder| {
                let _ = r.ok(req.body.to_vec());
            },
            gracerpc::server::Placement::Inline,
        )
    });
    let mut p = connect_ready(s.local_addr());
    for id in 1..=50 {
        p.send_request(id, "later", &id.to_be_bytes());
    }
    let ids: Vec<u64> = (1..=50).collect();
    let got = p.collect_answers(&ids, QUICK);
    for id in ids {
        assert_eq!(response(&got[&id]), (Status::OK, id.to_be_bytes().to_vec()));
    }
}

#[test]
fn a_dropped_responder_answers_internal() {
    let s = server(|b| {
        b.deferred_handler("drop", |_req: &Request<'_>, r: Responder| drop(r))
            .deferred_handler("panic", |_req: &Request<'_>, _r: Responder| {
                panic!("handler panics holding its responder")
            })
    });
    let mut p = connect_ready(s.local_addr());
    p.send_request(1, "drop", b"");
    p.send_request(2, "panic", b"");
    let got = p.collect_answers(&[1, 2], QUICK);
    assert_eq!(response(&got[&1]).0, Status::INTERNAL);
    assert_eq!(response(&got[&2]).0, Status::INTERNAL);
    wait_until(QUICK, "in_flight back to 0", || s.in_flight() == 0);
}

#[test]
fn a_kept_responder_is_answered_at_its_deadline_and_a_later_answer_is_dropped_and_counted() {
    let kept = Kept::default();
    let s = server(|b| {
        b.deferred_grace(Duration::from_millis(50))
            .deferred_handler("keep", keeping(&kept))
    });
    let mut p = connect_ready(s.local_addr());
    let sent = Instant::now();
    p.send_ok(
        &frames::request_with(1, "keep", b"", 200_000, false),
        "REQUEST",
    );
    kept.wait(1);
    let got = p.collect_answers(&[1], QUICK);
    assert_eq!(response(&got[&1]).0, Status::DEADLINE_EXCEEDED);
    assert!(
        sent.elapsed() >= Duration::from_millis(240),
        "answered before the deadline plus the grace: {:?}",
        sent.elapsed()
    );
    let r = kept.take().pop().expect("kept");
    assert!(r.is_answered(), "the responder sees the server answered");
    assert!(!r.ok(b"too late".to_vec()), "a later answer is dropped");
    assert_eq!(s.late_answers(), 1, "and counted");
    assert_eq!(s.expired(), 1);
    p.expect_silence(Duration::from_millis(100), "no second answer");
    wait_until(QUICK, "in_flight back to 0", || s.in_flight() == 0);
}

#[test]
fn a_leaked_responder_does_not_hold_the_drain() {
    let started = Arc::new(AtomicUsize::new(0));
    let s = server(|b| {
        let started = started.clone();
        b.drain_budget(Duration::from_secs(60))
            .deferred_grace(Duration::from_millis(50))
            .deferred_handler("leak", move |_req: &Request<'_>, r: Responder| {
                started.fetch_add(1, Ordering::SeqCst);
                std::mem::forget(r)
            })
    });
    let mut p = connect_ready(s.local_addr());
    p.send_ok(
        &frames::request_with(1, "leak", b"", 300_000, false),
        "REQUEST",
    );
    // Running, not only accepted: a request still queued for a worker when the drain begins is
    // rejected SHUTTING_DOWN (never ran), which is right but not what this test is about.
    wait_until(QUICK, "the handler to run", || {
        started.load(Ordering::SeqCst) == 1
    });
    s.shutdown();
    let got = p.collect_answers(&[1], QUICK);
    assert_eq!(response(&got[&1]).0, Status::DEADLINE_EXCEEDED);
    p.close_and_expect_eof(QUICK, "caller's close");
    let (report, _s) = wait_report(s, Duration::from_secs(20));
    assert!(report.clean, "{report:?}");
    assert!(
        report.total < Duration::from_secs(20),
        "the drain waited for the leaked responder: {report:?}"
    );
    assert_eq!(report.deferred_in_flight, 1, "{report:?}");
    assert_eq!(report.deferred_expired, 1, "{report:?}");
    assert_eq!(report.abandoned, 0, "{report:?}");
}

#[test]
fn over_the_deferred_cap_a_request_is_overloaded_before_it_starts() {
    let kept = Kept::default();
    let runs = Arc::new(AtomicUsize::new(0));
    let s = server(|b| {
        let (kept, runs) = (kept.clone(), runs.clone());
        b.max_deferred(2)
            .deferred_handler("keep", move |_req: &Request<'_>, r: Responder| {
                runs.fetch_add(1, Ordering::SeqCst);
                kept.0.lock().unwrap().push(r);
            })
    });
    let mut p = connect_ready(s.local_addr());
    p.send_request(1, "keep", b"");
    p.send_request(2, "keep", b"");
    kept.wait(2);
    p.send_request(3, "keep", b"");
    let got = p.collect_answers(&[3], QUICK);
    assert_eq!(
        got[&3],
        OwnedFrame::Reject {
            id: 3,
            reason: RejectReason::OVERLOADED
        }
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "the rejected request started"
    );
    for r in kept.take() {
        assert!(r.ok(b"done".to_vec()));
    }
    let got = p.collect_answers(&[1, 2], QUICK);
    assert_eq!(response(&got[&1]).0, Status::OK);
    // Room again once answered.
    p.send_request(4, "keep", b"");
    kept.wait(1);
    for r in kept.take() {
        assert!(r.ok(b"done".to_vec()));
    }
    assert_eq!(response(&p.collect_answers(&[4], QUICK)[&4]).0, Status::OK);
}

#[test]
fn cancel_of_a_running_deferred_request_answers_cancelled() {
    let kept = Kept::default();
    let s = server(|b| b.deferred_handler("keep", keeping(&kept)));
    let mut p = connect_ready(s.local_addr());
    p.send_request(1, "keep", b"");
    kept.wait(1);
    p.send_ok(&frames::cancel(1), "CANCEL");
    let got = p.collect_answers(&[1], QUICK);
    assert_eq!(response(&got[&1]).0, Status::CANCELLED);
    let r = kept.take().pop().expect("kept");
    assert!(r.is_answered());
    assert!(!r.ok(b"late".to_vec()));
    assert_eq!(s.late_answers(), 1);
    wait_until(QUICK, "in_flight back to 0", || s.in_flight() == 0);
}

#[test]
fn a_closed_connection_releases_its_deferred_requests_once() {
    let kept = Kept::default();
    let s = server(|b| b.deferred_handler("keep", keeping(&kept)));
    let mut p = connect_ready(s.local_addr());
    for id in 1..=3 {
        p.send_request(id, "keep", b"");
    }
    kept.wait(3);
    // A protocol violation ends the connection with three deferred requests running: their
    // answers can go nowhere.
    p.send_ok(&frames::unknown_kind(), "a frame of an unknown kind");
    p.close_and_expect_eof(QUICK, "the server's close after ERROR");
    wait_until(QUICK, "in_flight back to 0 after the close", || {
        s.in_flight() == 0
    });
    let mut rs = kept.take();
    // One answers (late), one is dropped (quietly), one leaks.
    assert!(!rs.pop().expect("kept").ok(b"late".to_vec()));
    drop(rs.pop());
    std::mem::forget(rs.pop());
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        s.in_flight(),
        0,
        "in_flight decremented twice (wrapped) or left up"
    );
    assert_eq!(s.late_answers(), 1);
}

/// Bounded stress of the one-answer rule: responders answer from other threads at random times
/// around the deadline plus a 1 ms grace, so they race the server's own answer; some requests
/// are cancelled, some responders dropped. Every id must be answered exactly once (the peer
/// panics on a second answer) and in_flight must come back to exactly 0.
#[test]
fn racing_answers_resolve_each_request_exactly_once() {
    let counter = Arc::new(AtomicUsize::new(0));
    let s = server(|b| {
        let counter = counter.clone();
        b.deferred_grace(Duration::from_millis(1))
            .workers(2)
            .deferred_handler("race", move |req: &Request<'_>, r: Responder| {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let id = req.id;
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_micros((id * 997 % 12_000) + 500));
                    if n.is_multiple_of(7) {
                        drop(r);
                    } else {
                        let _ = r.ok(b"x".to_vec());
                    }
                });
            })
    });
    let rounds = 4;
    let per_round = 200u64;
    let mut answered = 0;
    for round in 0..rounds {
        let mut p = connect_ready(s.local_addr());
        for id in 1..=per_round {
            let deadline_us = 2_000 + (id as u32 * 31 % 8_000);
            p.send_ok(
                &frames::request_with(id, "race", b"", deadline_us, false),
                "REQUEST",
            );
            if (id + round).is_multiple_of(5) {
                p.send_ok(&frames::cancel(id), "CANCEL");
            }
        }
        let ids: Vec<u64> = (1..=per_round).collect();
        let got = p.collect_answers(&ids, Duration::from_secs(30));
        answered += got.len();
        p.expect_silence(Duration::from_millis(30), "no second answer");
    }
    assert_eq!(answered, (rounds * per_round) as usize);
    wait_until(Duration::from_secs(10), "in_flight back to 0", || {
        s.in_flight() == 0
    });
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(s.in_flight(), 0);
}

#[test]
fn deferred_requests_running_at_shutdown_are_answered_by_their_responders() {
    let kept = Kept::default();
    let s = server(|b| {
        b.deferred_handler_with("keep", keeping(&kept), gracerpc::server::Placement::Inline)
    });
    let mut p = connect_ready(s.local_addr());
    for id in 1..=5 {
        p.send_request(id, "keep", b"");
    }
    kept.wait(5);
    s.shutdown();
    let goaway = p.expect_matching(QUICK, "GOAWAY", |f| matches!(f, OwnedFrame::GoAway { .. }));
    assert!(
        matches!(
            goaway,
            OwnedFrame::GoAway {
                last_accepted: 5,
                ..
            }
        ),
        "{goaway:?}"
    );
    p.send_ok(&frames::goaway_ack(5), "GOAWAY_ACK");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        s.in_flight(),
        5,
        "started deferred requests were dropped at the drain"
    );
    for r in kept.take() {
        assert!(
            r.ok(b"done".to_vec()),
            "the responder's answer goes out during the drain"
        );
    }
    let ids: Vec<u64> = (1..=5).collect();
    let got = p.collect_answers(&ids, QUICK);
    for id in ids {
        assert_eq!(response(&got[&id]).0, Status::OK);
    }
    p.close_and_expect_eof(QUICK, "caller's close");
    let (report, _s) = wait_report(s, QUICK);
    assert!(report.clean, "{report:?}");
    assert_eq!(report.deferred_in_flight, 5, "{report:?}");
}
