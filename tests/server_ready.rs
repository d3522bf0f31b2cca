//! The start sequence (rule 6): no REQUEST runs before READY; READY goes out when the
//! application says so; with a warm-up the advertised capacity climbs to 100 over time.

#[path = "support/peer.rs"]
mod peer;

use std::time::{Duration, Instant};

use gracerpc::proto::{RejectReason, Status};
use gracerpc::server::Server;
use peer::{Executions, OwnedFrame, PeerError, QUICK, connect_hello, wait_report};

#[test]
fn no_request_runs_before_ready() {
    let runs = Executions::default();
    let server = Server::builder()
        .manual_ready()
        .handler("count", runs.echo_handler())
        .spawn()
        .expect("spawn");
    let mut p = connect_hello(server.local_addr());
    assert!(!server.ready().is_ready());
    p.expect_silence(
        Duration::from_millis(150),
        "the application has not said ready: no READY",
    );

    for id in 1..=3 {
        p.send_request(id, "count", b"too early");
    }
    let got = p.collect_answers(&[1, 2, 3], QUICK);
    for id in 1..=3 {
        assert_eq!(
            got[&id],
            OwnedFrame::Reject {
                id,
                reason: RejectReason::NOT_READY
            }
        );
    }
    assert_eq!(runs.total(), 0, "a request ran before READY");

    server.ready().set_ready();
    assert!(server.ready().is_ready());
    assert_eq!(p.wait_ready(QUICK), 100);
    // A connection opened after the start sequence gets READY at once.
    let mut late = connect_hello(server.local_addr());
    assert_eq!(late.wait_ready(QUICK), 100);

    p.send_request(4, "count", b"now");
    late.send_request(1, "count", b"late");
    assert_eq!(
        p.collect_answers(&[4], QUICK)[&4],
        OwnedFrame::Response {
            id: 4,
            status: Status::OK,
            body: b"now".to_vec()
        }
    );
    assert!(matches!(
        late.collect_answers(&[1], QUICK)[&1],
        OwnedFrame::Response {
            status: Status::OK,
            ..
        }
    ));
    assert_eq!(runs.total(), 2);
    assert_eq!((runs.count(2), runs.count(3)), (0, 0));

    server.shutdown();
    for c in [&mut p, &mut late] {
        c.expect_frame(QUICK, "GOAWAY");
        c.close_and_expect_eof(QUICK, "caller's close");
    }
    let (report, _server) = wait_report(server, QUICK);
    assert!(report.clean, "{report:?}");
}

#[test]
fn warm_up_raises_the_advertised_capacity_to_100() {
    const WARMUP: Duration = Duration::from_millis(900);
    let runs = Executions::default();
    let server = Server::builder()
        .manual_ready()
        .warmup(WARMUP)
        .handler("count", runs.echo_handler())
        .spawn()
        .expect("spawn");
    let mut p = connect_hello(server.local_addr());
    let t0 = Instant::now();
    server.ready().set_ready();

    let mut seen = Vec::new();
    let mut answer = None;
    let mut sent = false;
    let deadline = t0 + WARMUP + QUICK;
    while seen.last() != Some(&100) {
        let left = deadline.saturating_duration_since(Instant::now());
        match p.next_frame(left) {
            Ok(OwnedFrame::Ready(c)) => seen.push(c),
            Ok(f @ OwnedFrame::Response { id: 1, .. }) if answer.is_none() => answer = Some(f),
            Ok(other) => panic!("only READY frames expected during warm-up, got {other:?}"),
            Err(PeerError::Timeout) => panic!("capacity never reached 100; READY seen: {seen:?}"),
            Err(e) => panic!("during warm-up: {e}; READY seen: {seen:?}"),
        }
        if seen.len() == 1 && !sent {
            // Usable from the first READY, at reduced capacity.
            p.send_request(1, "count", b"warm");
            sent = true;
        }
    }
    let full_after = t0.elapsed();
    assert_eq!(seen[0], 10, "the ramp starts at 10 %: {seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "capacity only rises: {seen:?}"
    );
    assert!(
        seen.iter().all(|c| c % 10 == 0),
        "ramp steps of 10 %: {seen:?}"
    );
    assert!(seen.len() >= 3, "the ramp has intermediate steps: {seen:?}");
    assert!(
        full_after + Duration::from_millis(50) >= WARMUP,
        "100 % reached after {full_after:?}, before the {WARMUP:?} warm-up ended"
    );
    let answer = answer.unwrap_or_else(|| p.collect_answers(&[1], QUICK).remove(&1).unwrap());
    assert!(
        matches!(
            answer,
            OwnedFrame::Response {
                status: Status::OK,
                ..
            }
        ),
        "a request sent at 10 % capacity runs: {answer:?}"
    );
    p.expect_silence(Duration::from_millis(100), "no READY after 100 %");

    server.shutdown();
    p.expect_frame(QUICK, "GOAWAY");
    p.close_and_expect_eof(QUICK, "caller's close");
    let (report, _server) = wait_report(server, QUICK);
    assert!(report.clean, "{report:?}");
}
