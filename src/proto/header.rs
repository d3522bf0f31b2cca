//! The fixed 16-byte frame header (protocol.md, "Frame header").
//!
//! ```text
//!  0        1        2        4                 8                                16
//!  +--------+--------+--------+-----------------+---------------------------------+
//!  |  kind  | flags  |reserved|   body length   |               id                |
//!  |   u8   |   u8   |  u16=0 |     u32 BE      |             u64 BE              |
//!  +--------+--------+--------+-----------------+---------------------------------+
//! ```

use byteorder::{BigEndian, ByteOrder};

use super::codes::Kind;
use super::error::DecodeError;

/// Bytes in every frame header.
pub const HEADER_LEN: usize = 16;

/// REQUEST flag: the request may safely run more than once.
pub const FLAG_IDEMPOTENT: u8 = 0x01;
/// REQUEST flag: a metadata block follows the method name (only where both HELLOs set feature
/// bit 1, protocol.md §4.2).
pub const FLAG_METADATA: u8 = 0x02;

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The frame kind.
    pub kind: Kind,
    /// Kind-specific flags; bits a kind does not define must be zero.
    pub flags: u8,
    /// Length of the body that follows the header.
    pub len: u32,
    /// The request id (or the kind-specific id; see protocol.md).
    pub id: u64,
}

impl Header {
    /// Parses a header and checks what the header alone can show: a known kind, flags the kind
    /// defines, zero reserved bytes, and a body length within `max_body` (rule 7). The body is
    /// never looked at, so an oversize frame is refused before a byte of it is buffered.
    pub fn parse(bytes: &[u8; HEADER_LEN], max_body: u32) -> Result<Header, DecodeError> {
        let kind = Kind(bytes[0]);
        let flags = bytes[1];
        let reserved = BigEndian::read_u16(&bytes[2..4]);
        let len = BigEndian::read_u32(&bytes[4..8]);
        let id = BigEndian::read_u64(&bytes[8..16]);
        let allowed = allowed_flags(kind).ok_or(DecodeError::UnknownKind(kind.0))?;
        if flags & !allowed != 0 || reserved != 0 {
            return Err(DecodeError::ReservedBits { kind });
        }
        // protocol.md rule 7: a length above the receiver's maximum is an error from the header alone.
        if len > max_body {
            return Err(DecodeError::TooLarge {
                kind,
                len,
                max: max_body,
            });
        }
        Ok(Header {
            kind,
            flags,
            len,
            id,
        })
    }

    /// Appends the 16 header bytes to `dst`.
    pub fn encode(&self, dst: &mut Vec<u8>) {
        let mut b = [0u8; HEADER_LEN];
        b[0] = self.kind.0;
        b[1] = self.flags;
        BigEndian::write_u32(&mut b[4..8], self.len);
        BigEndian::write_u64(&mut b[8..16], self.id);
        dst.extend_from_slice(&b);
    }
}

/// The flags each kind defines, or `None` for a kind this version does not know.
fn allowed_flags(kind: Kind) -> Option<u8> {
    match kind {
        Kind::REQUEST => Some(FLAG_IDEMPOTENT | FLAG_METADATA),
        Kind::HELLO
        | Kind::RESPONSE
        | Kind::SHUTDOWN_REJECT
        | Kind::GOAWAY
        | Kind::GOAWAY_ACK
        | Kind::PING
        | Kind::PONG
        | Kind::READY
        | Kind::CANCEL
        | Kind::ERROR => Some(0),
        _ => None,
    }
}

/// Body length as a `u32`. Callers check sizes against the negotiated maximum first, so a body
/// longer than `u32::MAX` is an API misuse that never reaches this point.
pub(crate) fn body_len(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}
