//! READY (0x09), server → caller (protocol.md, "READY", rule 6).
//!
//! Header id: 0. Body: `capacity u8`, 1..=100 (percent). Sent again whenever it changes.

use crate::proto::codes::Kind;
use crate::proto::error::DecodeError;
use crate::proto::header::Header;

/// A READY frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ready {
    /// The share of full load the server wants, in percent (1..=100); below 100 while warming up.
    pub capacity: u8,
}

impl Ready {
    pub(crate) fn decode(head: &Header, body: &[u8]) -> Result<Ready, DecodeError> {
        let bad = |what| DecodeError::Malformed {
            kind: Kind::READY,
            what,
        };
        if head.id != 0 {
            return Err(bad("id must be 0"));
        }
        match body {
            [c @ 1..=100] => Ok(Ready { capacity: *c }),
            [_] => Err(bad("capacity outside 1..=100")),
            _ => Err(bad("body must be 1 byte")),
        }
    }

    /// Appends the whole frame to `dst`.
    pub fn encode(&self, dst: &mut Vec<u8>) {
        Header {
            kind: Kind::READY,
            flags: 0,
            len: 1,
            id: 0,
        }
        .encode(dst);
        dst.push(self.capacity);
    }
}
