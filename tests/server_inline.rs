//! Inline handlers run on the event-loop thread (no hand-off to a worker) and answer like any
//! other; worker handlers run on worker threads; an unknown method is refused (a v1 caller gets
//! UNKNOWN_METHOD).

#[path = "support/peer.rs"]
mod peer;

use std::sync::{Arc, Mutex};

use gracerpc::proto::Status;
use gracerpc::server::{Failure, Request, Server};
use peer::{OwnedFrame, Peer, QUICK, connect_ready, wait_report};

fn thread_name() -> String {
    std::thread::current().name().unwrap_or("?").to_owned()
}

#[test]
fn inline_handlers_run_on_the_loop_thread_and_answer() {
    let threads: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let (t1, t2, t3) = (threads.clone(), threads.clone(), threads.clone());
    let server = Server::builder()
        .workers(2)
        .inline_handler("upper", move |r: &Request<'_>| {
            t1.lock().unwrap().push(("upper".into(), thread_name()));
            Ok(r.body.to_ascii_uppercase())
        })
        .inline_handler("fail", move |_: &Request<'_>| {
            t2.lock().unwrap().push(("fail".into(), thread_name()));
            Err(Failure::new(Status::INVALID_ARGUMENT, "no"))
        })
        .handler("pooled", move |r: &Request<'_>| {
            t3.lock().unwrap().push(("pooled".into(), thread_name()));
            Ok(r.body.to_vec())
        })
        .spawn()
        .expect("spawn");
    let mut p = connect_ready(server.local_addr());
    p.send_request(1, "upper", b"abc");
    p.send_request(2, "fail", b"");
    p.send_request(3, "pooled", b"xyz");
    p.send_request(4, "nosuch", b"");
    let got = p.collect_answers(&[1, 2, 3, 4], QUICK);
    assert_eq!(
        got[&1],
        OwnedFrame::Response {
            id: 1,
            status: Status::OK,
            body: b"ABC".to_vec()
        }
    );
    assert_eq!(
        got[&2],
        OwnedFrame::Response {
            id: 2,
            status: Status::INVALID_ARGUMENT,
            body: b"no".to_vec()
        }
    );
    assert!(
        matches!(&got[&3], OwnedFrame::Response { status: Status::OK, body, .. } if body == b"xyz")
    );
    // The peer's HELLO sets REFUSALS: an unknown method is refused (not run, final).
    assert!(matches!(
        &got[&4],
        OwnedFrame::Response {
            status: Status::REFUSED_UNKNOWN_METHOD,
            ..
        }
    ));
    for (method, thread) in threads.lock().unwrap().iter() {
        match method.as_str() {
            "upper" | "fail" => assert_eq!(thread, "gracerpc-server", "{method} ran inline"),
            _ => assert!(
                thread.starts_with("gracerpc-worker-"),
                "{method} ran on {thread}"
            ),
        }
    }
    assert_eq!(threads.lock().unwrap().len(), 3);

    server.shutdown();
    p.expect_frame(QUICK, "GOAWAY");
    p.close_and_expect_eof(QUICK, "caller's close");
    let (report, server) = wait_report(server, QUICK);
    assert!(report.clean, "{report:?}");
    assert_eq!(server.in_flight(), 0);
}

/// A v1 caller (no REFUSALS in its HELLO) gets the v1 status for an unknown method, which it
/// reads as "ran" and so never replays (protocol.md §6.2).
#[test]
fn a_v1_caller_gets_unknown_method() {
    let server = Server::builder().spawn().expect("spawn");
    let mut p = Peer::connect(server.local_addr()).expect("connect");
    let mut hello = Vec::new();
    gracerpc::proto::Frame::Hello(gracerpc::proto::frame::Hello {
        features: 0,
        ..gracerpc::proto::frame::Hello::ours(1 << 20)
    })
    .encode(&mut hello);
    p.send_ok(&hello, "v1 HELLO");
    assert!(matches!(
        p.expect_frame(QUICK, "HELLO"),
        OwnedFrame::Hello { .. }
    ));
    p.wait_ready(QUICK);
    p.send_request(1, "nosuch", b"");
    let got = p.collect_answers(&[1], QUICK);
    assert!(
        matches!(
            &got[&1],
            OwnedFrame::Response {
                status: Status::UNKNOWN_METHOD,
                ..
            }
        ),
        "{got:?}"
    );
    drop(p);
    server.shutdown();
    server.wait().expect("report");
}
