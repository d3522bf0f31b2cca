//! REQUEST (0x02), caller → server (protocol.md, "REQUEST").
//!
//! Header id: the request id (≥ 1, strictly increasing per connection). Flag 0x01: IDEMPOTENT;
//! flag 0x02: METADATA.
//! Body: `deadline_us u32` · `method_len u8` · `method` (1..=255 bytes of UTF-8) · with
//! METADATA, `meta_len u16` · entries (see `metadata.rs`) · `payload`.

use byteorder::{BigEndian, ByteOrder};

use super::metadata::Metadata;
use crate::proto::codes::Kind;
use crate::proto::error::DecodeError;
use crate::proto::header::{FLAG_IDEMPOTENT, FLAG_METADATA, Header, body_len};

/// Bytes before the method name in a REQUEST body.
pub const FIXED_LEN: usize = 5;
/// The longest method name.
pub const MAX_METHOD_LEN: usize = 255;

/// A REQUEST frame; method and payload borrow from the decoded buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The request id.
    pub id: u64,
    /// The caller's remaining budget in microseconds when it wrote the frame; 0 means expired.
    pub deadline_us: u32,
    /// Whether the caller marked the request safe to run more than once.
    pub idempotent: bool,
    /// The method name.
    pub method: &'a str,
    /// The metadata (flag METADATA); empty without it. Encoded only if non-empty.
    pub metadata: Metadata<'a>,
    /// The payload.
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    pub(crate) fn decode(head: &Header, body: &'a [u8]) -> Result<Request<'a>, DecodeError> {
        let bad = |what| DecodeError::Malformed {
            kind: Kind::REQUEST,
            what,
        };
        if head.id == 0 {
            return Err(bad("request id 0"));
        }
        if body.len() < FIXED_LEN {
            return Err(bad("body shorter than 5 bytes"));
        }
        let deadline_us = BigEndian::read_u32(&body[..4]);
        let mlen = body[4] as usize;
        if mlen == 0 {
            return Err(bad("empty method name"));
        }
        let rest = &body[FIXED_LEN..];
        if rest.len() < mlen {
            return Err(bad("method name runs past the body"));
        }
        let method =
            std::str::from_utf8(&rest[..mlen]).map_err(|_| bad("method name not UTF-8"))?;
        let mut rest = &rest[mlen..];
        let mut metadata = Metadata::EMPTY;
        if head.flags & FLAG_METADATA != 0 {
            let (len, after) = rest
                .split_at_checked(2)
                .ok_or(bad("metadata length runs past the body"))?;
            let (entries, payload) = after
                .split_at_checked(BigEndian::read_u16(len) as usize)
                .ok_or(bad("metadata runs past the body"))?;
            metadata = Metadata::from_entries(entries).map_err(bad)?;
            rest = payload;
        }
        Ok(Request {
            id: head.id,
            deadline_us,
            idempotent: head.flags & FLAG_IDEMPOTENT != 0,
            method,
            metadata,
            body: rest,
        })
    }

    /// Appends the whole frame to `dst`. The method must be 1..=255 bytes (checked by callers).
    pub fn encode(&self, dst: &mut Vec<u8>) {
        debug_assert!((1..=MAX_METHOD_LEN).contains(&self.method.len()));
        let meta = self.metadata.as_bytes();
        let meta_len = if meta.is_empty() { 0 } else { 2 + meta.len() };
        let len = FIXED_LEN + self.method.len() + meta_len + self.body.len();
        let mut flags = if self.idempotent { FLAG_IDEMPOTENT } else { 0 };
        if !meta.is_empty() {
            flags |= FLAG_METADATA;
        }
        Header {
            kind: Kind::REQUEST,
            flags,
            len: body_len(len),
            id: self.id,
        }
        .encode(dst);
        let mut fixed = [0u8; FIXED_LEN];
        BigEndian::write_u32(&mut fixed[..4], self.deadline_us);
        fixed[4] = self.method.len() as u8;
        dst.extend_from_slice(&fixed);
        dst.extend_from_slice(self.method.as_bytes());
        if !meta.is_empty() {
            dst.extend_from_slice(&(meta.len() as u16).to_be_bytes());
            dst.extend_from_slice(meta);
        }
        dst.extend_from_slice(self.body);
    }

    /// Body length of a REQUEST carrying `method` and `payload`.
    pub fn body_len(method: &str, payload: &[u8]) -> usize {
        FIXED_LEN + method.len() + payload.len()
    }

    /// Body length of a REQUEST carrying `method`, `metadata` and `payload`.
    pub fn body_len_with(method: &str, metadata: Metadata<'_>, payload: &[u8]) -> usize {
        let meta = metadata.as_bytes().len();
        Request::body_len(method, payload) + if meta == 0 { 0 } else { 2 + meta }
    }
}
