//! The papercuts a new user hit, each pinned: statuses importable from `server` and `client`;
//! `?` in a handler; closures that need no annotation; a dropped `ServerHandle` stops its
//! server (unless detached); readable `CallError` bodies; a response over the caller's
//! `max_frame` names the limit; `Request` accessors.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use gracerpc::client::{CallError, Client};
use gracerpc::proto::frame::{Hello, Request as WireRequest};
use gracerpc::proto::{Frame, Incoming, ServerConn, ServerConnConfig, decode};
// Both re-exports name the same type; neither needs `gracerpc::proto`.
use gracerpc::server::{Server, Status};

fn client(addr: std::net::SocketAddr) -> Client {
    let c = Client::builder().nodes([addr]).build().expect("client");
    assert!(c.wait_ready(addr, Duration::from_secs(10)), "ready");
    c
}

#[test]
fn status_is_reexported_by_server_and_client() {
    let s: gracerpc::client::Status = Status::APP_ERROR;
    assert_eq!(s, gracerpc::proto::Status::APP_ERROR);
}

#[test]
fn handlers_infer_their_types_and_use_question_mark() {
    // No annotation on `r`, no `map_err`: a `std::error::Error` converts into a Failure.
    let server = Server::builder()
        .handler("echo", |r| Ok(r.body().to_vec()))
        .inline_handler("double", |r| {
            let n: u64 = std::str::from_utf8(r.body())?.parse()?;
            Ok((n * 2).to_string().into_bytes())
        })
        .spawn()
        .expect("server");
    let c = client(server.local_addr());
    assert_eq!(c.call("echo", b"hi").unwrap(), b"hi");
    assert_eq!(c.call("double", b"21").unwrap(), b"42");
    let err = c.call("double", b"x").unwrap_err();
    let CallError::Status { status, body } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*status, Status::APP_ERROR);
    assert_eq!(body, b"invalid digit found in string");
    // Debug shows the body as text, not a byte array.
    let dbg = format!("{err:?}");
    assert!(dbg.contains("\"invalid digit found in string\""), "{dbg}");
    let bytes = CallError::Status {
        status: Status::APP_ERROR,
        body: vec![0xff, 0x00],
    };
    assert!(format!("{bytes:?}").contains("[255, 0]"));
}

#[test]
fn request_accessors() {
    let server = Server::builder()
        .inline_handler("meta", |r| {
            assert!(r.remaining() <= Duration::from_secs(3));
            assert!(r.deadline() > Instant::now());
            assert!(r.id() >= 1);
            Ok(format!("{} {} {}", r.method(), r.idempotent(), r.body().len()).into_bytes())
        })
        .spawn()
        .unwrap();
    let c = client(server.local_addr());
    let opts = gracerpc::client::CallOptions::new()
        .idempotent(true)
        .deadline(Duration::from_secs(3));
    let r = c.call_with("meta", b"abc", &opts).unwrap();
    assert_eq!(r.body, b"meta true 3");
}

/// Waits until nothing accepts connections on `addr` (the server closed its listener).
fn wait_refused(addr: std::net::SocketAddr) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn dropping_the_handle_shuts_the_server_down() {
    let server = Server::builder().spawn().unwrap();
    let addr = server.local_addr();
    drop(server);
    assert!(wait_refused(addr), "a dropped handle left {addr} serving");
}

#[test]
fn a_detached_server_keeps_serving() {
    let server = Server::builder()
        .inline_handler("echo", |r| Ok(r.body().to_vec()))
        .spawn()
        .unwrap();
    let addr = server.local_addr();
    server.detach();
    let c = client(addr);
    assert_eq!(c.call("echo", b"still here").unwrap(), b"still here");
}

#[test]
fn a_response_over_the_callers_max_frame_names_the_limit() {
    let now = Instant::now();
    let mut s = ServerConn::new(now, ServerConnConfig::default());
    s.set_ready(Some(100));
    let peer = Hello {
        max_frame: 1024,
        ..Hello::ours(1024)
    };
    s.handle_frame(now, Frame::Hello(peer)).unwrap();
    let req = Frame::Request(WireRequest {
        id: 1,
        deadline_us: 1_000_000,
        idempotent: false,
        method: "big",
        metadata: gracerpc::proto::frame::Metadata::EMPTY,
        body: b"",
    });
    let Ok(Incoming::Request(acc)) = s.handle_frame(now, req) else {
        panic!("not accepted");
    };
    let id = acc.id;
    s.respond(id, Status::OK, &[7u8; 4000]).unwrap();
    let mut out = s.out().to_vec();
    let mut found = None;
    while let Ok(Some((f, used))) = decode(&out, 1 << 20) {
        if let Frame::Response(r) = f {
            found = Some((r.status, String::from_utf8_lossy(r.body).into_owned()));
        }
        out.drain(..used);
    }
    let (status, msg) = found.expect("a response");
    assert_eq!(status, Status::INTERNAL);
    assert!(
        msg.contains("4002 bytes") && msg.contains("max_frame of 1024"),
        "{msg}"
    );
}
