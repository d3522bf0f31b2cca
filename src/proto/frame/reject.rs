//! SHUTDOWN_REJECT (0x04), server → caller (protocol.md, "SHUTDOWN_REJECT").
//!
//! Header id: the request id. Body: `reason u16`. Whatever the reason, the request was received
//! and never run: the caller may send it elsewhere.

use byteorder::{BigEndian, ByteOrder};

use crate::proto::codes::{Kind, RejectReason};
use crate::proto::error::DecodeError;
use crate::proto::header::Header;

/// A SHUTDOWN_REJECT frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShutdownReject {
    /// The request id rejected.
    pub id: u64,
    /// Why it was not run.
    pub reason: RejectReason,
}

impl ShutdownReject {
    pub(crate) fn decode(head: &Header, body: &[u8]) -> Result<ShutdownReject, DecodeError> {
        let bad = |what| DecodeError::Malformed {
            kind: Kind::SHUTDOWN_REJECT,
            what,
        };
        if head.id == 0 {
            return Err(bad("request id 0"));
        }
        if body.len() != 2 {
            return Err(bad("body must be 2 bytes"));
        }
        Ok(ShutdownReject {
            id: head.id,
            reason: RejectReason(BigEndian::read_u16(body)),
        })
    }

    /// Appends the whole frame to `dst`.
    pub fn encode(&self, dst: &mut Vec<u8>) {
        Header {
            kind: Kind::SHUTDOWN_REJECT,
            flags: 0,
            len: 2,
            id: self.id,
        }
        .encode(dst);
        dst.extend_from_slice(&self.reason.0.to_be_bytes());
    }
}
