//! RESPONSE (0x03), server → caller (protocol.md, "RESPONSE").
//!
//! Header id: the request id. Body: `status u16` · `payload`.

use byteorder::{BigEndian, ByteOrder};

use crate::proto::codes::{Kind, Status};
use crate::proto::error::DecodeError;
use crate::proto::header::{Header, body_len};

/// A RESPONSE frame; the payload borrows from the decoded buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response<'a> {
    /// The request id answered.
    pub id: u64,
    /// The handler's status.
    pub status: Status,
    /// The payload.
    pub body: &'a [u8],
}

impl<'a> Response<'a> {
    pub(crate) fn decode(head: &Header, body: &'a [u8]) -> Result<Response<'a>, DecodeError> {
        if head.id == 0 {
            return Err(DecodeError::Malformed {
                kind: Kind::RESPONSE,
                what: "request id 0",
            });
        }
        if body.len() < 2 {
            let what = "body shorter than 2 bytes";
            return Err(DecodeError::Malformed {
                kind: Kind::RESPONSE,
                what,
            });
        }
        Ok(Response {
            id: head.id,
            status: Status(BigEndian::read_u16(&body[..2])),
            body: &body[2..],
        })
    }

    /// Appends the whole frame to `dst`.
    pub fn encode(&self, dst: &mut Vec<u8>) {
        let len = body_len(2 + self.body.len());
        Header {
            kind: Kind::RESPONSE,
            flags: 0,
            len,
            id: self.id,
        }
        .encode(dst);
        dst.extend_from_slice(&self.status.0.to_be_bytes());
        dst.extend_from_slice(self.body);
    }
}
