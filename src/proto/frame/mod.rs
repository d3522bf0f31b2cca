//! Every frame kind, one file each, and [`Frame`], the sum of them.
//!
//! Decoding borrows: a [`Frame`] points into the buffer it was decoded from, so no body is copied.

mod empty;
mod error;
mod goaway;
mod hello;
pub mod metadata;
mod ready;
mod reject;
mod request;
mod response;

pub use empty::{Cancel, GoAwayAck, Ping};
pub use error::{ErrorFrame, MAX_MESSAGE};
pub use goaway::GoAway;
pub use hello::{
    CRITICAL_FEATURES, FEATURE_METADATA, FEATURE_REFUSALS, Hello, MAGIC, MIN_MAX_FRAME,
    OUR_FEATURES, VERSION,
};
pub use metadata::{Metadata, MetadataBuf, MetadataError};
pub use ready::Ready;
pub use reject::ShutdownReject;
pub use request::{MAX_METHOD_LEN, Request};
pub use response::Response;

use super::codes::Kind;
use super::error::DecodeError;
use super::header::{HEADER_LEN, Header};

/// One decoded frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// HELLO.
    Hello(Hello),
    /// REQUEST.
    Request(Request<'a>),
    /// RESPONSE.
    Response(Response<'a>),
    /// SHUTDOWN_REJECT.
    ShutdownReject(ShutdownReject),
    /// GOAWAY.
    GoAway(GoAway),
    /// GOAWAY_ACK.
    GoAwayAck(GoAwayAck),
    /// PING.
    Ping(Ping),
    /// PONG.
    Pong(Ping),
    /// READY.
    Ready(Ready),
    /// CANCEL.
    Cancel(Cancel),
    /// ERROR.
    Error(ErrorFrame<'a>),
}

impl<'a> Frame<'a> {
    /// The frame's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Frame::Hello(_) => Kind::HELLO,
            Frame::Request(_) => Kind::REQUEST,
            Frame::Response(_) => Kind::RESPONSE,
            Frame::ShutdownReject(_) => Kind::SHUTDOWN_REJECT,
            Frame::GoAway(_) => Kind::GOAWAY,
            Frame::GoAwayAck(_) => Kind::GOAWAY_ACK,
            Frame::Ping(_) => Kind::PING,
            Frame::Pong(_) => Kind::PONG,
            Frame::Ready(_) => Kind::READY,
            Frame::Cancel(_) => Kind::CANCEL,
            Frame::Error(_) => Kind::ERROR,
        }
    }

    /// Decodes a body whose header has already been parsed.
    pub fn decode_body(head: &Header, body: &'a [u8]) -> Result<Frame<'a>, DecodeError> {
        Ok(match head.kind {
            Kind::HELLO => Frame::Hello(Hello::decode(head, body)?),
            Kind::REQUEST => Frame::Request(Request::decode(head, body)?),
            Kind::RESPONSE => Frame::Response(Response::decode(head, body)?),
            Kind::SHUTDOWN_REJECT => Frame::ShutdownReject(ShutdownReject::decode(head, body)?),
            Kind::GOAWAY => Frame::GoAway(GoAway::decode(head, body)?),
            Kind::GOAWAY_ACK => Frame::GoAwayAck(GoAwayAck {
                last_accepted: empty::decode_id(head, body)?,
            }),
            Kind::PING => Frame::Ping(Ping {
                opaque: empty::decode_id(head, body)?,
            }),
            Kind::PONG => Frame::Pong(Ping {
                opaque: empty::decode_id(head, body)?,
            }),
            Kind::READY => Frame::Ready(Ready::decode(head, body)?),
            Kind::CANCEL => Frame::Cancel(Cancel {
                id: empty::decode_id(head, body)?,
            }),
            Kind::ERROR => Frame::Error(ErrorFrame::decode(head, body)?),
            other => return Err(DecodeError::UnknownKind(other.0)),
        })
    }

    /// Appends the whole frame, header included, to `dst`.
    pub fn encode(&self, dst: &mut Vec<u8>) {
        match self {
            Frame::Hello(f) => f.encode(dst),
            Frame::Request(f) => f.encode(dst),
            Frame::Response(f) => f.encode(dst),
            Frame::ShutdownReject(f) => f.encode(dst),
            Frame::GoAway(f) => f.encode(dst),
            Frame::GoAwayAck(f) => empty::encode_id(Kind::GOAWAY_ACK, f.last_accepted, dst),
            Frame::Ping(f) => empty::encode_id(Kind::PING, f.opaque, dst),
            Frame::Pong(f) => empty::encode_id(Kind::PONG, f.opaque, dst),
            Frame::Ready(f) => f.encode(dst),
            Frame::Cancel(f) => empty::encode_id(Kind::CANCEL, f.id, dst),
            Frame::Error(f) => f.encode(dst),
        }
    }
}

/// Decodes the first frame in `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a frame ("need more bytes" is not an error),
/// and otherwise the frame and the number of bytes it used. The header is checked before the
/// body is waited for, so a length over `max_body` fails as soon as 16 bytes are in.
pub fn decode(buf: &[u8], max_body: u32) -> Result<Option<(Frame<'_>, usize)>, DecodeError> {
    let Some(head_bytes) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let head = Header::parse(head_bytes, max_body)?;
    let total = HEADER_LEN + head.len as usize;
    let Some(body) = buf.get(HEADER_LEN..total) else {
        return Ok(None);
    };
    Ok(Some((Frame::decode_body(&head, body)?, total)))
}

/// Encodes a header-only frame: GOAWAY_ACK, PING, PONG or CANCEL.
pub(crate) fn encode_header_only(kind: Kind, id: u64, dst: &mut Vec<u8>) {
    empty::encode_id(kind, id, dst);
}

/// The total length (header + body) of the frame that starts at `buf[0]`, read from its header
/// without validating it. Used to walk frames this side encoded itself.
pub(crate) fn frame_len_at(buf: &[u8]) -> Option<usize> {
    let head = buf.first_chunk::<HEADER_LEN>()?;
    let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    Some(HEADER_LEN + len as usize)
}
