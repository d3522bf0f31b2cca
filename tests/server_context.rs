//! Request context: a handler sees the remaining deadline, the caller's address, the request id
//! and the caller's metadata; a downstream call made with `CallOptions::from_request` inherits
//! the remaining deadline and the trace context; metadata goes only where both HELLOs set
//! feature bit 1.

#[path = "support/peer.rs"]
mod peer;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gracerpc::client::{CallOptions, Client};
use gracerpc::proto::frame::{Hello, Metadata, MetadataBuf, Request as ReqFrame};
use gracerpc::proto::{ErrorCode, Frame, Status};
use gracerpc::server::{Request, Server};
use peer::{OwnedFrame, Peer, QUICK};

#[derive(Clone, Debug, Default)]
struct Seen {
    remaining: Duration,
    peer: Option<std::net::SocketAddr>,
    id: u64,
    tenant: Option<String>,
    traceparent: Option<String>,
}

const TRACE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

#[test]
fn a_handler_sees_deadline_peer_id_and_metadata_and_a_downstream_call_inherits_them() {
    // The back service records what it sees.
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let back = {
        let seen = seen.clone();
        Server::builder()
            .handler("back.look", move |r: &Request<'_>| {
                seen.lock().unwrap().push(Seen {
                    remaining: r.remaining(),
                    peer: Some(r.peer()),
                    id: r.request_id(),
                    tenant: r.metadata().get_str("tenant").map(str::to_owned),
                    traceparent: r.traceparent().map(str::to_owned),
                });
                Ok(b"seen".to_vec())
            })
            .spawn()
            .expect("back")
    };
    let back_client = Client::builder()
        .nodes([back.local_addr()])
        .build()
        .expect("client");
    // The front passes the call on with the remaining deadline and the trace context (and the
    // tenant, chosen explicitly).
    let front = {
        let seen = seen.clone();
        Server::builder()
            .handler("front.call", move |r: &Request<'_>| {
                seen.lock().unwrap().push(Seen {
                    remaining: r.remaining(),
                    peer: Some(r.peer()),
                    id: r.request_id(),
                    tenant: r.metadata().get_str("tenant").map(str::to_owned),
                    traceparent: r.traceparent().map(str::to_owned),
                });
                let opts = CallOptions::from_request(r).propagate(r, "tenant");
                back_client
                    .call_with("back.look", b"", &opts)
                    .map(|r| r.body)
                    .map_err(|e| gracerpc::server::Failure::new(Status::APP_ERROR, e.to_string()))
            })
            .spawn()
            .expect("front")
    };
    let client = Client::builder()
        .nodes([front.local_addr()])
        .build()
        .expect("client");
    let opts = CallOptions::new()
        .deadline(Duration::from_secs(3))
        .header("traceparent", TRACE)
        .and_then(|o| o.header("tenant", "acme"))
        .expect("metadata within limits");
    assert_eq!(
        client
            .call_with("front.call", b"", &opts)
            .expect("call")
            .body,
        b"seen"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let (f, b) = (&seen[0], &seen[1]);
    for s in [f, b] {
        assert_eq!(s.traceparent.as_deref(), Some(TRACE), "{s:?}");
        assert_eq!(s.tenant.as_deref(), Some("acme"), "{s:?}");
        assert!(s.id >= 1);
        assert!(s.peer.is_some_and(|p| p.ip().is_loopback()));
    }
    assert!(
        f.remaining <= Duration::from_secs(3) && f.remaining > Duration::from_millis(1500),
        "front sees the caller's budget: {f:?}"
    );
    assert!(
        b.remaining <= f.remaining,
        "the downstream deadline is the remaining one, never longer: {f:?} then {b:?}"
    );
    // Without `propagate("tenant")` only the trace context goes on. (`Request` is
    // `#[non_exhaustive]`: a real one, seen by a handler.)
    let probe = Server::builder()
        .inline_handler("probe", |r: &Request<'_>| {
            let o = CallOptions::from_request(r);
            let within = o.deadline.is_some_and(|d| d <= Duration::from_millis(700));
            let m = o.metadata.as_metadata();
            Ok(format!(
                "{within} {} {}",
                m.get_str("traceparent").unwrap_or("-"),
                m.get("tenant").is_some()
            )
            .into_bytes())
        })
        .spawn()
        .expect("probe");
    let probe_client = Client::builder()
        .nodes([probe.local_addr()])
        .build()
        .expect("client");
    let opts = CallOptions::new()
        .deadline(Duration::from_millis(700))
        .header("traceparent", TRACE)
        .and_then(|o| o.header("tenant", "acme"))
        .expect("metadata within limits");
    let got = probe_client
        .call_with("probe", b"", &opts)
        .expect("probe call");
    assert_eq!(
        String::from_utf8_lossy(&got.body),
        format!("true {TRACE} false")
    );
}

#[test]
fn metadata_on_a_connection_that_did_not_negotiate_it_is_malformed() {
    let server = Server::builder()
        .handler("echo", |r: &Request<'_>| Ok(r.body.to_vec()))
        .spawn()
        .expect("spawn");
    let mut p = Peer::connect(server.local_addr()).expect("connect");
    // A HELLO without feature bit 1.
    let mut hello = Vec::new();
    Frame::Hello(Hello {
        features: 0,
        ..Hello::ours(1 << 20)
    })
    .encode(&mut hello);
    p.send_ok(&hello, "HELLO");
    p.wait_ready(QUICK);
    let mut m = MetadataBuf::new();
    m.insert("tenant", b"acme").unwrap();
    let mut req = Vec::new();
    Frame::Request(ReqFrame {
        id: 1,
        deadline_us: 1_000_000,
        idempotent: false,
        method: "echo",
        metadata: m.as_metadata(),
        body: b"x",
    })
    .encode(&mut req);
    p.send_ok(&req, "REQUEST with metadata");
    let f = p.expect_matching(QUICK, "ERROR", |f| matches!(f, OwnedFrame::Error { .. }));
    assert!(
        matches!(
            f,
            OwnedFrame::Error {
                code: ErrorCode::MALFORMED,
                ..
            }
        ),
        "{f:?}"
    );
    let _ = Metadata::EMPTY;
}

#[test]
fn a_client_sends_metadata_only_where_the_server_negotiated_it() {
    use gracerpc::proto::{ClientConn, ClientConnConfig};
    let now = std::time::Instant::now();
    let mut c = ClientConn::new(now, ClientConnConfig::default());
    let mut server_hello = Vec::new();
    Frame::Hello(Hello {
        features: 0,
        ..Hello::ours(1 << 20)
    })
    .encode(&mut server_hello);
    let (f, _) = gracerpc::proto::decode(&server_hello, 1 << 20)
        .unwrap()
        .unwrap();
    c.handle_frame(now, f).unwrap();
    let (f, _) = gracerpc::proto::decode(
        &[0x09, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 100],
        1 << 20,
    )
    .unwrap()
    .unwrap();
    c.handle_frame(now, f).unwrap();
    assert!(!c.metadata_on());
    let mut m = MetadataBuf::new();
    m.insert("tenant", b"acme").unwrap();
    let n0 = c.out_len();
    c.send_request_with(
        now,
        "echo",
        m.as_metadata(),
        b"x",
        now + Duration::from_secs(1),
        false,
        0,
    )
    .unwrap();
    let out = &c.out()[n0..];
    let (f, _) = gracerpc::proto::decode(out, 1 << 20).unwrap().unwrap();
    match f {
        Frame::Request(r) => assert!(r.metadata.is_empty(), "metadata sent to a v1 server"),
        other => panic!("{other:?}"),
    }
}
