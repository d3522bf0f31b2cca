//! How typed values become payloads: the [`Codec`] trait and its default, [`Postcard`].

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A serde format for typed services. Caller and server must use the same one.
///
/// Contract, for rolling upgrades (see the module docs): `decode` ignores bytes after the value
/// (written by a newer schema with fields added at the end), and reads a message that ends
/// early — an older schema without the trailing fields — with those fields absent (their zero
/// encoding), rather than failing.
pub trait Codec: Send + Sync + 'static {
    /// Appends `value`'s encoding to `dst`.
    fn encode<T: Serialize + ?Sized>(value: &T, dst: &mut Vec<u8>) -> Result<(), CodecError>;
    /// Decodes a value from `bytes`.
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError>;
}

/// Why a value did not encode or decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodecError {
    message: String,
}

impl CodecError {
    /// An error with a message (for codecs written outside this crate).
    pub fn new(message: impl fmt::Display) -> CodecError {
        CodecError {
            message: message.to_string(),
        }
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CodecError {}

/// [postcard](https://docs.rs/postcard): compact (varint integers, no field names), fast, and
/// maintained; the default codec.
#[derive(Clone, Copy, Debug, Default)]
pub struct Postcard;

/// The most trailing bytes an older schema's message may lack: a few fields added at the end.
const MAX_MISSING: usize = 256;

impl Codec for Postcard {
    #[inline]
    fn encode<T: Serialize + ?Sized>(value: &T, dst: &mut Vec<u8>) -> Result<(), CodecError> {
        // postcard's wire format through our own encoder (`encode.rs`: fewer instructions,
        // the same bytes).
        super::encode::encode(value, dst).map_err(CodecError::new)
    }

    #[inline]
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        match postcard::from_bytes(bytes) {
            Ok(v) => Ok(v),
            // An older schema's message, without the fields added since at its end: postcard
            // encodes None, 0, false and empty as zero bytes, so those fields read as absent.
            // A rare path (only while versions are mixed), so the copy is fine.
            Err(postcard::Error::DeserializeUnexpectedEnd) => {
                let mut padded = Vec::with_capacity(bytes.len() + MAX_MISSING);
                padded.extend_from_slice(bytes);
                padded.resize(bytes.len() + MAX_MISSING, 0);
                postcard::from_bytes(&padded).map_err(CodecError::new)
            }
            Err(e) => Err(CodecError::new(e)),
        }
    }
}
