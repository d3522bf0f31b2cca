//! HELLO (0x01): opens every connection, in both directions (protocol.md, "HELLO").
//!
//! Body, 16 bytes (a longer body is accepted; the extra bytes are for later versions):
//! `magic "GRAC"` · `min_version u16` · `max_version u16` · `features u32` · `max_frame u32`.

use byteorder::{BigEndian, ByteOrder};

use crate::proto::codes::Kind;
use crate::proto::error::DecodeError;
use crate::proto::header::Header;

/// The four bytes every HELLO body starts with.
pub const MAGIC: [u8; 4] = *b"GRAC";
/// The protocol version this implementation speaks.
pub const VERSION: u16 = 1;
/// Feature bits 16..=31 are critical: a receiver must understand them or refuse the connection.
pub const CRITICAL_FEATURES: u32 = 0xffff_0000;
/// Optional feature bit 0: the sender understands refusal statuses (protocol.md §3.3, §6.2). A
/// server sends a status in [`Status::REFUSALS`](crate::proto::Status::REFUSALS) only to a
/// caller that set it; a caller classifies such a status as refused only when the server set it.
pub const FEATURE_REFUSALS: u32 = 0x0000_0001;
/// Optional feature bit 1: the sender reads and writes request metadata (protocol.md §3.3,
/// §4.2). REQUEST flag `0x02` is sent only where both HELLOs set it.
pub const FEATURE_METADATA: u32 = 0x0000_0002;
/// The feature bits this implementation sends and understands.
pub const OUR_FEATURES: u32 = FEATURE_REFUSALS | FEATURE_METADATA;
/// The smallest `max_frame` a peer may announce.
pub const MIN_MAX_FRAME: u32 = 1024;

const BODY_LEN: usize = 16;

/// A HELLO frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Lowest protocol version the sender speaks.
    pub min_version: u16,
    /// Highest protocol version the sender speaks.
    pub max_version: u16,
    /// Feature bits; bits 0..=15 optional, 16..=31 critical.
    pub features: u32,
    /// The largest frame body the sender accepts.
    pub max_frame: u32,
}

impl Hello {
    /// The HELLO this implementation sends.
    pub fn ours(max_frame: u32) -> Hello {
        Hello {
            min_version: VERSION,
            max_version: VERSION,
            features: OUR_FEATURES,
            max_frame,
        }
    }

    pub(crate) fn decode(head: &Header, body: &[u8]) -> Result<Hello, DecodeError> {
        let bad = |what| DecodeError::Malformed {
            kind: Kind::HELLO,
            what,
        };
        if head.id != 0 {
            return Err(bad("id must be 0"));
        }
        if body.len() < BODY_LEN {
            return Err(bad("body shorter than 16 bytes"));
        }
        if body[..4] != MAGIC {
            return Err(bad("wrong magic"));
        }
        let hello = Hello {
            min_version: BigEndian::read_u16(&body[4..6]),
            max_version: BigEndian::read_u16(&body[6..8]),
            features: BigEndian::read_u32(&body[8..12]),
            max_frame: BigEndian::read_u32(&body[12..16]),
        };
        if hello.min_version > hello.max_version {
            return Err(bad("min_version above max_version"));
        }
        if hello.max_frame < MIN_MAX_FRAME {
            return Err(bad("max_frame below 1024"));
        }
        Ok(hello)
    }

    /// Appends the whole frame to `dst`.
    pub fn encode(&self, dst: &mut Vec<u8>) {
        Header {
            kind: Kind::HELLO,
            flags: 0,
            len: BODY_LEN as u32,
            id: 0,
        }
        .encode(dst);
        let mut b = [0u8; BODY_LEN];
        b[..4].copy_from_slice(&MAGIC);
        BigEndian::write_u16(&mut b[4..6], self.min_version);
        BigEndian::write_u16(&mut b[6..8], self.max_version);
        BigEndian::write_u32(&mut b[8..12], self.features);
        BigEndian::write_u32(&mut b[12..16], self.max_frame);
        dst.extend_from_slice(&b);
    }
}
