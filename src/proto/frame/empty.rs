//! The frames whose whole content is the header id: GOAWAY_ACK (0x06), PING (0x07), PONG (0x08)
//! and CANCEL (0x0a) (protocol.md). Their body must be empty.

use crate::proto::codes::Kind;
use crate::proto::error::DecodeError;
use crate::proto::header::Header;

/// GOAWAY_ACK: the caller read GOAWAY(`last_accepted`) and writes nothing more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoAwayAck {
    /// The `last_accepted` of the GOAWAY acknowledged.
    pub last_accepted: u64,
}

/// PING or PONG: an opaque value the PONG echoes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ping {
    /// Opaque to the receiver.
    pub opaque: u64,
}

/// CANCEL: the caller no longer wants the answer to `id`. A hint: the server may still run it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cancel {
    /// The request id.
    pub id: u64,
}

/// Checks that a header-only frame has an empty body and returns its id.
pub(crate) fn decode_id(head: &Header, body: &[u8]) -> Result<u64, DecodeError> {
    if !body.is_empty() {
        return Err(DecodeError::Malformed {
            kind: head.kind,
            what: "body must be empty",
        });
    }
    if head.kind == Kind::CANCEL && head.id == 0 {
        return Err(DecodeError::Malformed {
            kind: head.kind,
            what: "request id 0",
        });
    }
    Ok(head.id)
}

/// Appends a header-only frame to `dst`.
pub(crate) fn encode_id(kind: Kind, id: u64, dst: &mut Vec<u8>) {
    Header {
        kind,
        flags: 0,
        len: 0,
        id,
    }
    .encode(dst);
}
