//! Rule 7: bad bytes on one connection get ERROR with the matching code, then that connection is
//! closed the rule-4 way (write side shut: the peer sees a clean EOF, never a reset), while
//! another connection of the same server keeps working throughout.

#[path = "support/peer.rs"]
mod peer;

use gracerpc::proto::{ErrorCode, Status};
use gracerpc::server::{Request, Server, ServerHandle};
use peer::{OwnedFrame, Peer, QUICK, connect_ready, frames, wait_until};

const MAX_FRAME: u32 = 4096;

fn server() -> ServerHandle {
    Server::builder()
        .max_frame(MAX_FRAME)
        .inline_handler("echo", |r: &Request<'_>| Ok(r.body.to_vec()))
        .spawn()
        .expect("spawn")
}

fn echo_works(p: &mut Peer, id: u64) {
    p.send_request(id, "echo", b"ok");
    let got = p.collect_answers(&[id], QUICK);
    assert_eq!(
        got[&id],
        OwnedFrame::Response {
            id,
            status: Status::OK,
            body: b"ok".to_vec()
        },
        "the healthy connection must keep working"
    );
}

/// Sends `bad` on a fresh connection and expects ERROR(`code`) then a clean EOF; the healthy
/// connection `good` is used before and after.
fn bad_bytes_get_error_and_close(bad: &[u8], code: ErrorCode, after_hello: bool) {
    let server = server();
    let mut good = connect_ready(server.local_addr());
    echo_works(&mut good, 1);

    let mut evil = if after_hello {
        connect_ready(server.local_addr())
    } else {
        Peer::connect(server.local_addr()).expect("connect")
    };
    evil.send_ok(bad, "bad bytes");
    let got = evil.read_to_eof(QUICK, "ERROR then the server's FIN");
    let errors: Vec<_> = got
        .iter()
        .filter(|f| matches!(f, OwnedFrame::Error { .. }))
        .collect();
    assert_eq!(errors.len(), 1, "exactly one ERROR: {got:?}");
    match errors[0] {
        OwnedFrame::Error { code: c, .. } => assert_eq!(*c, code, "{got:?}"),
        _ => unreachable!(),
    }
    assert!(
        matches!(got.last(), Some(OwnedFrame::Error { .. })),
        "ERROR is the last frame: {got:?}"
    );
    echo_works(&mut good, 2);
    evil.shutdown_write();
    wait_until(QUICK, "the server to close the bad connection", || {
        server.connections() == 1
    });
    echo_works(&mut good, 3);

    peer::shutdown_clean(server, &mut good, "good caller's close");
}

#[test]
fn an_unknown_frame_kind_gets_error_unknown_kind_and_only_that_connection_closes() {
    bad_bytes_get_error_and_close(&frames::unknown_kind(), ErrorCode::UNKNOWN_KIND, true);
}

#[test]
fn an_oversize_length_gets_error_too_large_from_the_header_alone() {
    // Only the 16 header bytes are sent: the refusal must not wait for the body.
    let header = frames::oversize_request_header(1, MAX_FRAME + 1);
    bad_bytes_get_error_and_close(&header, ErrorCode::TOO_LARGE, true);
}

#[test]
fn a_huge_length_gets_error_too_large() {
    let header = frames::oversize_request_header(1, u32::MAX);
    bad_bytes_get_error_and_close(&header, ErrorCode::TOO_LARGE, true);
}

#[test]
fn a_malformed_body_gets_error_malformed() {
    // A REQUEST whose method length runs past its body.
    let mut bad = frames::raw_header(0x02, 0, 6, 1);
    bad.extend_from_slice(&[0, 0, 1, 0, 9, b'x']);
    bad_bytes_get_error_and_close(&bad, ErrorCode::MALFORMED, true);
}

#[test]
fn a_request_id_going_backwards_gets_error_id_order() {
    let mut bad = frames::request(5, "echo", b"a");
    bad.extend(frames::request(5, "echo", b"b"));
    let server = server();
    let mut evil = connect_ready(server.local_addr());
    evil.send_ok(&bad, "two REQUESTs with id 5");
    let got = evil.read_to_eof(QUICK, "answer, ERROR, then FIN");
    assert!(
        matches!(got.first(), Some(OwnedFrame::Response { id: 5, .. })),
        "{got:?}"
    );
    assert!(
        matches!(
            got.last(),
            Some(OwnedFrame::Error {
                code: ErrorCode::ID_ORDER,
                id: 5,
                ..
            })
        ),
        "{got:?}"
    );
    evil.shutdown_write();
    server.shutdown();
    let (report, _server) = peer::wait_report(server, QUICK);
    assert_eq!(report.abandoned, 0, "{report:?}");
}

#[test]
fn garbage_instead_of_hello_gets_error_and_close() {
    // Not a frame at all: an HTTP request where HELLO should be. Its first byte ('G' = 0x47)
    // is no frame kind, so the header alone fails with UNKNOWN_KIND.
    bad_bytes_get_error_and_close(
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        ErrorCode::UNKNOWN_KIND,
        false,
    );
}

#[test]
fn a_request_before_hello_gets_error_handshake() {
    let server = server();
    let mut evil = Peer::connect(server.local_addr()).expect("connect");
    evil.send_ok(&frames::request(1, "echo", b"x"), "REQUEST before HELLO");
    let got = evil.read_to_eof(QUICK, "HELLO, ERROR, then FIN");
    assert!(
        matches!(got.first(), Some(OwnedFrame::Hello { .. })),
        "{got:?}"
    );
    assert!(
        matches!(
            got.last(),
            Some(OwnedFrame::Error {
                code: ErrorCode::HANDSHAKE,
                ..
            })
        ),
        "{got:?}"
    );
    evil.shutdown_write();
    server.shutdown();
    let (report, _server) = peer::wait_report(server, QUICK);
    assert_eq!(report.abandoned, 0, "{report:?}");
}
