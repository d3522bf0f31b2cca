//! Inline handlers run on the event-loop thread (no hand-off to a worker) and answer like any
//! other; worker handlers run on worker threads; an unknown method gets UNKNOWN_METHOD.

#[path = "support/peer.rs"]
mod peer;

use std::sync::{Arc, Mutex};

use gracerpc::proto::Status;
use gracerpc::server::{Failure, Request, Server};
use peer::{OwnedFrame, QUICK, connect_ready, wait_report};

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
    assert!(matches!(
        &got[&4],
        OwnedFrame::Response {
            status: Status::UNKNOWN_METHOD,
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
