//! Frame builders for raw peers (`wire::go_away(7)`), and [`F`], an owned summary of a decoded
//! frame that tests compare against.

use gracerpc::proto::frame::{
    Cancel, ErrorFrame, GoAway, GoAwayAck, Hello, Ping, Ready, Request, Response, ShutdownReject,
    VERSION,
};
use gracerpc::proto::{ErrorCode, Frame, GoAwayReason, Kind, RejectReason, Status};

/// A decoded frame, reduced to what the tests compare: ids, codes, kinds. Bodies, methods and
/// deadlines are left out so scripts stay short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum F {
    /// HELLO.
    Hello {
        /// Lowest version.
        min: u16,
        /// Highest version.
        max: u16,
        /// Feature bits.
        features: u32,
    },
    /// REQUEST.
    Request(u64),
    /// RESPONSE.
    Response(u64, Status),
    /// SHUTDOWN_REJECT.
    Reject(u64, RejectReason),
    /// GOAWAY(last_accepted).
    GoAway(u64),
    /// GOAWAY_ACK(last_accepted).
    GoAwayAck(u64),
    /// PING.
    Ping(u64),
    /// PONG.
    Pong(u64),
    /// READY(capacity).
    Ready(u8),
    /// CANCEL.
    Cancel(u64),
    /// ERROR(id, code).
    Error(u64, ErrorCode),
}

impl F {
    /// Summarises a decoded frame.
    pub fn of(f: &Frame<'_>) -> F {
        match f {
            Frame::Hello(h) => F::Hello {
                min: h.min_version,
                max: h.max_version,
                features: h.features,
            },
            Frame::Request(r) => F::Request(r.id),
            Frame::Response(r) => F::Response(r.id, r.status),
            Frame::ShutdownReject(r) => F::Reject(r.id, r.reason),
            Frame::GoAway(g) => F::GoAway(g.last_accepted),
            Frame::GoAwayAck(a) => F::GoAwayAck(a.last_accepted),
            Frame::Ping(p) => F::Ping(p.opaque),
            Frame::Pong(p) => F::Pong(p.opaque),
            Frame::Ready(r) => F::Ready(r.capacity),
            Frame::Cancel(c) => F::Cancel(c.id),
            Frame::Error(e) => F::Error(e.id, e.code),
        }
    }

    /// The HELLO this implementation sends.
    pub const HELLO: F = F::Hello {
        min: VERSION,
        max: VERSION,
        features: gracerpc::proto::frame::OUR_FEATURES,
    };

    /// The id a frame is about, for frames that answer or carry a request.
    pub fn request_id(&self) -> Option<u64> {
        match *self {
            F::Request(id) | F::Response(id, _) | F::Reject(id, _) | F::Cancel(id) => Some(id),
            _ => None,
        }
    }
}

fn enc(f: Frame<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    f.encode(&mut v);
    v
}

/// HELLO with the given versions and features.
pub fn hello(min_version: u16, max_version: u16, features: u32) -> Vec<u8> {
    enc(Frame::Hello(Hello {
        min_version,
        max_version,
        features,
        max_frame: 1 << 20,
    }))
}

/// Our own HELLO.
pub fn hello_ours() -> Vec<u8> {
    hello(VERSION, VERSION, 0)
}

/// REQUEST `id` with a deadline budget.
pub fn request_with(id: u64, deadline_us: u32) -> Vec<u8> {
    enc(Frame::Request(Request {
        id,
        deadline_us,
        idempotent: false,
        method: "echo",
        metadata: gracerpc::proto::frame::Metadata::EMPTY,
        body: b"hi",
    }))
}

/// REQUEST `id` with a 10 s budget.
pub fn request(id: u64) -> Vec<u8> {
    request_with(id, 10_000_000)
}

/// RESPONSE(OK) for `id`.
pub fn response(id: u64) -> Vec<u8> {
    enc(Frame::Response(Response {
        id,
        status: Status::OK,
        body: b"ok",
    }))
}

/// SHUTDOWN_REJECT for `id`.
pub fn reject(id: u64, reason: RejectReason) -> Vec<u8> {
    enc(Frame::ShutdownReject(ShutdownReject { id, reason }))
}

/// GOAWAY(last_accepted) with a 5 s budget.
pub fn go_away(last_accepted: u64) -> Vec<u8> {
    enc(Frame::GoAway(GoAway {
        last_accepted,
        drain_budget_ms: 5_000,
        reason: GoAwayReason::SHUTDOWN,
    }))
}

/// GOAWAY_ACK.
pub fn go_away_ack(last_accepted: u64) -> Vec<u8> {
    enc(Frame::GoAwayAck(GoAwayAck { last_accepted }))
}

/// PING.
pub fn ping(opaque: u64) -> Vec<u8> {
    enc(Frame::Ping(Ping { opaque }))
}

/// PONG.
pub fn pong(opaque: u64) -> Vec<u8> {
    enc(Frame::Pong(Ping { opaque }))
}

/// READY.
pub fn ready(capacity: u8) -> Vec<u8> {
    enc(Frame::Ready(Ready { capacity }))
}

/// CANCEL.
pub fn cancel(id: u64) -> Vec<u8> {
    enc(Frame::Cancel(Cancel { id }))
}

/// ERROR.
pub fn error(id: u64, code: ErrorCode) -> Vec<u8> {
    enc(Frame::Error(ErrorFrame {
        id,
        code,
        message: b"test",
    }))
}

/// A bare 16-byte header: kind, flags, body length, id (protocol.md, "Frame header").
pub fn header(kind: Kind, flags: u8, len: u32, id: u64) -> Vec<u8> {
    let mut b = vec![kind.0, flags, 0, 0];
    b.extend_from_slice(&len.to_be_bytes());
    b.extend_from_slice(&id.to_be_bytes());
    b
}
