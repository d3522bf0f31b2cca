//! ERROR (0x0b), either direction (protocol.md, "ERROR", rule 7).
//!
//! Header id: the request id concerned, or 0. Body: `code u16` · `message` (UTF-8, up to 256
//! bytes; a receiver decodes it lossily and never rejects a frame for its message).

use byteorder::{BigEndian, ByteOrder};

use crate::proto::codes::{ErrorCode, Kind};
use crate::proto::error::DecodeError;
use crate::proto::header::{Header, body_len};

/// The longest message a sender puts in an ERROR frame.
pub const MAX_MESSAGE: usize = 256;

/// An ERROR frame; the message borrows from the decoded buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorFrame<'a> {
    /// The request id concerned, or 0.
    pub id: u64,
    /// Which rule was broken.
    pub code: ErrorCode,
    /// Human-readable detail.
    pub message: &'a [u8],
}

impl<'a> ErrorFrame<'a> {
    pub(crate) fn decode(head: &Header, body: &'a [u8]) -> Result<ErrorFrame<'a>, DecodeError> {
        if body.len() < 2 {
            let what = "body shorter than 2 bytes";
            return Err(DecodeError::Malformed {
                kind: Kind::ERROR,
                what,
            });
        }
        Ok(ErrorFrame {
            id: head.id,
            code: ErrorCode(BigEndian::read_u16(&body[..2])),
            message: &body[2..],
        })
    }

    /// Appends the whole frame to `dst`; a message over [`MAX_MESSAGE`] bytes is cut.
    pub fn encode(&self, dst: &mut Vec<u8>) {
        let message = &self.message[..self.message.len().min(MAX_MESSAGE)];
        let len = body_len(2 + message.len());
        Header {
            kind: Kind::ERROR,
            flags: 0,
            len,
            id: self.id,
        }
        .encode(dst);
        dst.extend_from_slice(&self.code.0.to_be_bytes());
        dst.extend_from_slice(message);
    }
}
