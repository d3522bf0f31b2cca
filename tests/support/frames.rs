//! Frame builders for raw test peers: each returns the exact bytes of one frame, encoded by the
//! core's own encoders, plus a few deliberately broken byte strings.
//!
//! Standalone: included by `peer.rs`; tests use it as `peer::frames::request(1, "echo", b"x")`.
#![allow(dead_code)]

use gracerpc::proto::frame::{Cancel, GoAwayAck, Hello, Ping, Request};
use gracerpc::proto::{Frame, HEADER_LEN, Kind};

/// The largest frame body the test peer announces and accepts.
pub const PEER_MAX_FRAME: u32 = 16 << 20;

/// Deadline budget used by [`request`]: long enough never to expire in a test.
pub const LONG_DEADLINE_US: u32 = 30_000_000;

fn encode(f: Frame<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    f.encode(&mut out);
    out
}

/// Our HELLO: this protocol version, no features, [`PEER_MAX_FRAME`].
pub fn hello() -> Vec<u8> {
    encode(Frame::Hello(Hello::ours(PEER_MAX_FRAME)))
}

/// A REQUEST with a long deadline, not idempotent.
pub fn request(id: u64, method: &str, body: &[u8]) -> Vec<u8> {
    request_with(id, method, body, LONG_DEADLINE_US, false)
}

/// A REQUEST with every field chosen.
pub fn request_with(
    id: u64,
    method: &str,
    body: &[u8],
    deadline_us: u32,
    idempotent: bool,
) -> Vec<u8> {
    encode(Frame::Request(Request {
        id,
        deadline_us,
        idempotent,
        method,
        metadata: gracerpc::proto::frame::Metadata::EMPTY,
        body,
    }))
}

/// CANCEL(id).
pub fn cancel(id: u64) -> Vec<u8> {
    encode(Frame::Cancel(Cancel { id }))
}

/// GOAWAY_ACK(last_accepted).
pub fn goaway_ack(last_accepted: u64) -> Vec<u8> {
    encode(Frame::GoAwayAck(GoAwayAck { last_accepted }))
}

/// PING(opaque).
pub fn ping(opaque: u64) -> Vec<u8> {
    encode(Frame::Ping(Ping { opaque }))
}

/// A header with a kind no version defines (0xee) and an empty body: UNKNOWN_KIND.
pub fn unknown_kind() -> Vec<u8> {
    raw_header(0xee, 0, 0, 0)
}

/// A REQUEST header claiming a body of `len` bytes, with no body after it.
pub fn oversize_request_header(id: u64, len: u32) -> Vec<u8> {
    raw_header(Kind::REQUEST.0, 0, len, id)
}

/// Sixteen header bytes spelled out: kind, flags, reserved 0, length, id (big-endian).
pub fn raw_header(kind: u8, flags: u8, len: u32, id: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER_LEN);
    b.push(kind);
    b.push(flags);
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&len.to_be_bytes());
    b.extend_from_slice(&id.to_be_bytes());
    b
}
