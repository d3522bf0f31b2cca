//! `gracerpc serve --admin-listen`: `/readyz` turns 503 from the signal, before GOAWAY is sent
//! (with and without `--unready-delay`); `/metrics` counts what happened and passes
//! `promtool check metrics`; `/livez` answers.

#[path = "support/peer.rs"]
mod peer;
#[path = "support/serve.rs"]
mod serve;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gracerpc::client::Client;
use peer::{OwnedFrame, PeerError, QUICK, connect_ready, frames};
use serve::ServeProc;

/// Starts a node with its admin endpoint on a free port; returns it and the admin address.
fn start(args: &[&str]) -> (ServeProc, SocketAddr) {
    let mut all = vec!["--admin-listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let node = ServeProc::start("admin", &all);
    let addr = admin_addr(&node);
    (node, addr)
}

/// The admin address `node` logged.
fn admin_addr(node: &ServeProc) -> SocketAddr {
    // Its end, so the line is whole (stderr arrives in pieces).
    let line = node.wait_log_line("/metrics", QUICK);
    line.split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no admin address in {line:?}"))
}

/// `GET path` over HTTP/1.0; the status and the body.
fn get(admin: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(admin).expect("connect to the admin endpoint");
    s.set_read_timeout(Some(QUICK)).expect("read timeout");
    write!(s, "GET {path} HTTP/1.0\r\nHost: {admin}\r\n\r\n").expect("send the request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read the answer");
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

fn wait_status(admin: SocketAddr, path: &str, want: u16, what: &str) {
    let t = Instant::now();
    while get(admin, path).0 != want {
        assert!(t.elapsed() < QUICK, "{what}: {path} never answered {want}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn readyz_turns_503_before_goaway_is_sent() {
    let (mut node, admin) = start(&[]);
    wait_status(admin, "/readyz", 200, "once ready");
    assert_eq!(get(admin, "/livez").0, 200);
    let mut p = connect_ready(node.addr);
    node.signal(libc::SIGTERM);
    p.expect_matching(QUICK, "GOAWAY", |f| matches!(f, OwnedFrame::GoAway { .. }));
    // The flag turned before the GOAWAY was written, so the first probe after it sees 503.
    assert_eq!(
        get(admin, "/readyz").0,
        503,
        "/readyz must be 503 by the time GOAWAY arrives"
    );
    p.send_ok(&frames::goaway_ack(0), "GOAWAY_ACK");
    drop(p);
    let st = node.expect_exit(QUICK, "SIGTERM with an acked caller");
    assert_eq!(st.code(), Some(0), "{st}");
}

#[test]
fn with_an_unready_delay_readyz_is_503_while_the_node_still_serves() {
    let (mut node, admin) = start(&["--unready-delay", "1s"]);
    wait_status(admin, "/readyz", 200, "once ready");
    let mut p = connect_ready(node.addr);
    let signalled = Instant::now();
    node.signal(libc::SIGTERM);
    wait_status(admin, "/readyz", 503, "after SIGTERM");
    let unready_after = signalled.elapsed();
    match p.next_frame(Duration::from_millis(1)) {
        Err(PeerError::Timeout) => {}
        other => panic!("nothing may arrive while /readyz is 503 in the delay: {other:?}"),
    }
    // Still serving: a call made now is answered.
    p.send_request(1, "echo", b"late");
    let answer = p.expect_frame(QUICK, "the answer inside the unready delay");
    assert!(
        matches!(answer, OwnedFrame::Response { id: 1, .. }),
        "served inside the delay: {answer:?}"
    );
    p.expect_matching(QUICK, "GOAWAY", |f| matches!(f, OwnedFrame::GoAway { .. }));
    let goaway_after = signalled.elapsed();
    assert!(
        goaway_after >= unready_after + Duration::from_millis(500),
        "GOAWAY came {goaway_after:?} after the signal, /readyz was 503 after {unready_after:?}: \
         the delay must keep them apart"
    );
    p.send_ok(&frames::goaway_ack(1), "GOAWAY_ACK");
    drop(p);
    node.expect_exit(QUICK, "SIGTERM after the unready delay");
}

/// The admin listener is handed over with the RPC one (`serve --upgrade`) and the new process
/// serves it: it must not inherit a non-blocking socket that its HTTP server's accept thread
/// takes for a dead one (it was, and every request to the port then hung).
#[test]
fn the_admin_endpoint_is_served_after_a_handoff() {
    let dir = serve::TempDir::new("admin-handoff");
    let sock = dir.file("up.sock");
    let sock = sock.to_str().expect("utf-8 temp path");
    let (mut old, admin) = start(&["--upgrade", sock]);
    wait_status(admin, "/readyz", 200, "the old node, once ready");
    let mut new = ServeProc::start("admin-new", &["--upgrade", sock]);
    assert_eq!(
        admin_addr(&new),
        admin,
        "the new node serves the same admin port"
    );
    old.wait_log_line("handoff committed", QUICK);
    let st = old.expect_exit(Duration::from_secs(30), "the old node drains and exits");
    assert!(st.success(), "old node: {st:?}\n{}", old.log());
    // Only the new process holds the port now; every request must be answered.
    for i in 0..20 {
        let (status, body) = get(admin, if i % 2 == 0 { "/readyz" } else { "/metrics" });
        assert_eq!(status, 200, "request {i} after the handoff: {body}");
    }
    new.signal(libc::SIGTERM);
    assert!(new.expect_exit(QUICK, "the new node drains").success());
}

#[test]
fn metrics_count_calls_and_pass_promtool() {
    let (_node, admin) = start(&[]);
    wait_status(admin, "/readyz", 200, "once ready");
    let client = Client::builder()
        .nodes([_node.addr])
        .build()
        .expect("client");
    assert!(client.wait_ready(_node.addr, QUICK), "node never ready");
    for _ in 0..5 {
        client.call("echo", b"x").expect("echo");
    }
    assert!(client.call("no-such-method", b"x").is_err());
    // An answer a worker wrote itself is counted off the in-flight gauge at the event loop's
    // next turn (nothing wakes the loop for it): the gauge settles within milliseconds of the
    // caller's answer, so the scrape waits for it (bounded).
    let t = Instant::now();
    let text = loop {
        let (status, text) = get(admin, "/metrics");
        assert_eq!(status, 200, "{text}");
        if text.lines().any(|l| l == "gracerpc_requests_in_flight 0") || t.elapsed() > QUICK {
            break text;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    for line in [
        "gracerpc_requests_completed_total{status=\"ok\"} 5",
        "gracerpc_requests_completed_total{status=\"unknown_method\"} 1",
        "gracerpc_requests_accepted_total 6",
        "gracerpc_request_duration_seconds_count{method=\"echo\"} 5",
        "gracerpc_requests_in_flight 0",
        "gracerpc_ready 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert_eq!(get(admin, "/nope").0, 404);
    client.close(Duration::from_secs(1));

    let Some(promtool) = find("promtool") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool missing in CI (.ci/run installs the prometheus package)"
        );
        eprintln!(
            "skipping the promtool check: promtool not installed (apt-get install prometheus)"
        );
        return;
    };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition:\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn find(tool: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}
