//! GOAWAY (0x05), server → caller (protocol.md, "GOAWAY", rules 2–4).
//!
//! Header id: `last_accepted`, the highest request id the server had read on this connection when
//! it wrote the frame (0: none). Body: `drain_budget_ms u32` · `reason u16`.

use byteorder::{BigEndian, ByteOrder};

use crate::proto::codes::{GoAwayReason, Kind};
use crate::proto::error::DecodeError;
use crate::proto::header::Header;

/// A GOAWAY frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoAway {
    /// Every id up to this one will be answered; every id above it is rejected.
    pub last_accepted: u64,
    /// How long the server will wait for the answers to be read and the caller to close.
    pub drain_budget_ms: u32,
    /// Why the server is going away.
    pub reason: GoAwayReason,
}

impl GoAway {
    pub(crate) fn decode(head: &Header, body: &[u8]) -> Result<GoAway, DecodeError> {
        if body.len() != 6 {
            let what = "body must be 6 bytes";
            return Err(DecodeError::Malformed {
                kind: Kind::GOAWAY,
                what,
            });
        }
        Ok(GoAway {
            last_accepted: head.id,
            drain_budget_ms: BigEndian::read_u32(&body[..4]),
            reason: GoAwayReason(BigEndian::read_u16(&body[4..6])),
        })
    }

    /// Appends the whole frame to `dst`.
    pub fn encode(&self, dst: &mut Vec<u8>) {
        Header {
            kind: Kind::GOAWAY,
            flags: 0,
            len: 6,
            id: self.last_accepted,
        }
        .encode(dst);
        let mut b = [0u8; 6];
        BigEndian::write_u32(&mut b[..4], self.drain_budget_ms);
        BigEndian::write_u16(&mut b[4..6], self.reason.0);
        dst.extend_from_slice(&b);
    }
}
