//! The first bytes of a connection: garbage, bad HELLOs, frames before HELLO, a second HELLO,
//! and connections that stop or end in the middle of a frame.

use std::time::{Duration, Instant};

use gracerpc::proto::ErrorCode;
use gracerpc::proto::frame::{CRITICAL_FEATURES, MAGIC};

use crate::common::{
    Target, echo_ok, expect_error_close, expect_handshake_refused, hello_body, hello_with,
    raw_hello,
};
use crate::peer::{OwnedFrame, QUICK, frames};

/// Bytes that are no frame at all where HELLO should be (a TLS ClientHello's first bytes: 0x16
/// is no frame kind) get UNKNOWN_KIND from the header alone.
#[test]
fn garbage_before_hello_gets_unknown_kind() {
    let t = Target::start();
    let mut p = t.raw();
    p.send_ok(
        &[
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0xde, 0xad, 0xbe,
            0xef, 0x00, 0x11, 0x22,
        ],
        "garbage",
    );
    expect_handshake_refused(&mut p, ErrorCode::UNKNOWN_KIND);
    t.finish();
}

/// Garbage after a good handshake: kind 0x00 is no kind either.
#[test]
fn garbage_after_hello_gets_unknown_kind() {
    let t = Target::start();
    let mut p = t.peer();
    p.send_ok(&[0u8; 40], "zeros");
    let before = expect_error_close(&mut p, ErrorCode::UNKNOWN_KIND, Some(0));
    assert!(before.is_empty(), "{before:?}");
    t.finish();
}

#[test]
fn wrong_magic_in_hello_gets_handshake() {
    let t = Target::start();
    let mut body = hello_body();
    body[..4].copy_from_slice(b"GRPC");
    assert_ne!(body[..4], MAGIC);
    let mut p = t.raw();
    p.send_ok(&raw_hello(0, &body), "HELLO with a wrong magic");
    expect_handshake_refused(&mut p, ErrorCode::HANDSHAKE);
    t.finish();
}

#[test]
fn hello_with_a_nonzero_id_gets_handshake() {
    let t = Target::start();
    let mut p = t.raw();
    p.send_ok(&raw_hello(7, &hello_body()), "HELLO with id 7");
    expect_handshake_refused(&mut p, ErrorCode::HANDSHAKE);
    t.finish();
}

#[test]
fn hello_with_a_short_body_gets_handshake() {
    let t = Target::start();
    let mut p = t.raw();
    p.send_ok(&raw_hello(0, &hello_body()[..12]), "HELLO of 12 bytes");
    expect_handshake_refused(&mut p, ErrorCode::HANDSHAKE);
    t.finish();
}

#[test]
fn hello_with_min_above_max_version_gets_handshake() {
    let t = Target::start();
    let mut p = t.raw();
    p.send_ok(&hello_with(3, 2, 0, 1 << 20), "HELLO 3..=2");
    expect_handshake_refused(&mut p, ErrorCode::HANDSHAKE);
    t.finish();
}

#[test]
fn hello_with_max_frame_below_1024_gets_handshake() {
    let t = Target::start();
    let mut p = t.raw();
    p.send_ok(&hello_with(1, 1, 0, 1023), "HELLO max_frame 1023");
    expect_handshake_refused(&mut p, ErrorCode::HANDSHAKE);
    t.finish();
}

/// Version ranges that do not meet 1..=1, above and below.
#[test]
fn hello_with_an_unknown_version_range_gets_unsupported_version() {
    let t = Target::start();
    for (min, max) in [(2, 5), (0, 0), (u16::MAX, u16::MAX)] {
        let mut p = t.raw();
        p.send_ok(&hello_with(min, max, 0, 1 << 20), "HELLO");
        expect_handshake_refused(&mut p, ErrorCode::UNSUPPORTED_VERSION);
    }
    t.finish();
}

/// A newer caller offering 1..=3 gets version 1 and works.
#[test]
fn hello_with_a_wider_version_range_works() {
    let t = Target::start();
    let mut p = t.raw();
    p.send_ok(&hello_with(1, 3, 0, 1 << 20), "HELLO 1..=3");
    p.wait_ready(QUICK);
    echo_ok(&mut p, 1, b"v1");
    p.close_and_expect_eof(QUICK, "close");
    t.finish();
}

/// Bits 0..=15 are optional: unknown ones are ignored and the connection works.
#[test]
fn hello_with_unknown_optional_feature_bits_works() {
    let t = Target::start();
    let mut p = t.raw();
    p.send_ok(
        &hello_with(1, 1, 0x0000_ffff, 1 << 20),
        "HELLO features 0xffff",
    );
    p.wait_ready(QUICK);
    echo_ok(&mut p, 1, b"optional bits ignored");
    p.close_and_expect_eof(QUICK, "close");
    t.finish();
}

/// A HELLO body longer than 16 bytes is accepted (a later version may append fields).
#[test]
fn hello_with_extra_body_bytes_works() {
    let t = Target::start();
    let mut body = hello_body();
    body.extend_from_slice(b"future fields");
    let mut p = t.raw();
    p.send_ok(&raw_hello(0, &body), "HELLO of 29 bytes");
    p.wait_ready(QUICK);
    echo_ok(&mut p, 1, b"x");
    p.close_and_expect_eof(QUICK, "close");
    t.finish();
}

#[test]
fn hello_with_a_critical_feature_bit_gets_unsupported_feature() {
    let t = Target::start();
    for bit in [0x0001_0000, 0x8000_0000, CRITICAL_FEATURES | 1] {
        let mut p = t.raw();
        p.send_ok(&hello_with(1, 1, bit, 1 << 20), "HELLO with a critical bit");
        expect_handshake_refused(&mut p, ErrorCode::UNSUPPORTED_FEATURE);
    }
    t.finish();
}

#[test]
fn request_before_hello_gets_handshake_and_never_runs() {
    let t = Target::start();
    let mut p = t.raw();
    p.send_ok(&frames::request(1, "count", b"x"), "REQUEST first");
    // The ERROR names the request it concerns.
    let before = expect_error_close(&mut p, ErrorCode::HANDSHAKE, Some(1));
    assert!(
        matches!(before.as_slice(), [OwnedFrame::Hello { .. }]),
        "{before:?}"
    );
    assert_eq!(t.runs.total(), 0);
    t.finish();
}

#[test]
fn ping_before_hello_gets_handshake() {
    let t = Target::start();
    let mut p = t.raw();
    p.send_ok(&frames::ping(1), "PING first");
    expect_handshake_refused(&mut p, ErrorCode::HANDSHAKE);
    t.finish();
}

#[test]
fn a_second_hello_gets_unexpected_frame() {
    let t = Target::start();
    let mut p = t.peer();
    p.send_ok(&frames::hello(), "second HELLO");
    let before = expect_error_close(&mut p, ErrorCode::UNEXPECTED_FRAME, Some(0));
    assert!(before.is_empty(), "{before:?}");
    t.finish();
}

/// Seven bytes of a HELLO header, then silence: the HELLO timeout ends it with HANDSHAKE (the
/// partial bytes do not count as input), cleanly.
#[test]
fn a_header_cut_short_before_hello_times_out_with_handshake() {
    let hello_timeout = Duration::from_millis(300);
    let t = Target::start_with(|b| b.hello_timeout(hello_timeout));
    let mut p = t.raw();
    let t0 = Instant::now();
    p.send_ok(&frames::hello()[..7], "7 bytes of HELLO");
    expect_handshake_refused(&mut p, ErrorCode::HANDSHAKE);
    let took = t0.elapsed();
    assert!(
        took >= hello_timeout - Duration::from_millis(20) && took < QUICK,
        "refused after {took:?}, HELLO timeout {hello_timeout:?}"
    );
    t.finish();
}

/// After HELLO, nine bytes of a REQUEST header, then silence: the connection is idle (no frame
/// arrived), the server PINGs, the peer cannot answer mid-frame, and the PING timeout ends it
/// with TIMEOUT, cleanly.
#[test]
fn a_header_cut_short_after_hello_times_out_with_timeout() {
    let t = Target::start_with(|b| {
        b.idle_timeout(Duration::from_millis(200), Duration::from_millis(200))
    });
    let mut p = t.peer();
    p.send_ok(&frames::request(1, "count", b"x")[..9], "9 header bytes");
    let before = expect_error_close(&mut p, ErrorCode::TIMEOUT, Some(0));
    assert_eq!(
        before,
        vec![OwnedFrame::Ping(0)],
        "PING, then ERROR TIMEOUT"
    );
    assert_eq!(t.runs.total(), 0);
    t.finish();
}

/// A whole REQUEST header and half its body, then silence: same as a cut header.
#[test]
fn a_body_cut_short_times_out_with_timeout_and_never_runs() {
    let t = Target::start_with(|b| {
        b.idle_timeout(Duration::from_millis(200), Duration::from_millis(200))
    });
    let mut p = t.peer();
    let req = frames::request(1, "count", &[7u8; 200]);
    p.send_ok(&req[..16 + 100], "header and half the body");
    let before = expect_error_close(&mut p, ErrorCode::TIMEOUT, Some(0));
    assert_eq!(
        before,
        vec![OwnedFrame::Ping(0)],
        "PING, then ERROR TIMEOUT"
    );
    assert_eq!(t.runs.total(), 0, "half a request never runs");
    t.finish();
}

/// The caller closes (FIN) in the middle of a frame: nothing to answer, no ERROR, a clean close.
#[test]
fn fin_in_the_middle_of_a_frame_closes_cleanly_without_running_it() {
    let t = Target::start();
    let mut p = t.peer();
    let req = frames::request(1, "count", b"torn");
    p.send_ok(&req[..req.len() - 2], "all but 2 bytes");
    let rest = p.close_and_expect_eof(QUICK, "the server's close after our FIN");
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(t.runs.total(), 0);
    t.finish();
}
