//! Request metadata (protocol.md §4.2, "Metadata"): key/value headers carried in a REQUEST whose
//! header sets flag `0x02` METADATA, on a connection where both HELLOs set feature bit 1
//! ([`FEATURE_METADATA`](super::FEATURE_METADATA)).
//!
//! Block, after the method name: `meta_len u16` (bytes of entries that follow) · entries, each
//! `key_len u8` · `key` · `value_len u16` · `value`. Keys are 1..=64 bytes of lowercase ASCII
//! letters, digits, `-`, `_` and `.`; at most [`MAX_ENTRIES`] entries and [`MAX_META_LEN`] bytes
//! of entries. Decoding borrows and checks the whole block once; iterating allocates nothing.

use byteorder::{BigEndian, ByteOrder};
use std::fmt;

/// Entries in one request's metadata, at most.
pub const MAX_ENTRIES: usize = 16;
/// Bytes of entries (the `meta_len` field) in one request's metadata, at most.
pub const MAX_META_LEN: usize = 4096;
/// The longest key.
pub const MAX_KEY_LEN: usize = 64;

/// Why metadata cannot be built or sent.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetadataError {
    /// More than [`MAX_ENTRIES`] entries.
    TooManyEntries {
        /// The limit.
        max: usize,
    },
    /// The entries take more than [`MAX_META_LEN`] bytes encoded.
    TooLarge {
        /// Bytes the entries would take.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A key is empty, longer than [`MAX_KEY_LEN`], or has a byte outside `[a-z0-9._-]`.
    BadKey {
        /// The key, lossily as text.
        key: String,
    },
}

impl fmt::Display for MetadataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetadataError::TooManyEntries { max } => {
                write!(f, "metadata has more than {max} entries: send fewer")
            }
            MetadataError::TooLarge { len, max } => write!(
                f,
                "metadata takes {len} bytes encoded, over the limit of {max}: shorten values"
            ),
            MetadataError::BadKey { key } => write!(
                f,
                "metadata key {key:?} is not 1..={MAX_KEY_LEN} bytes of [a-z0-9._-]: rename it"
            ),
        }
    }
}

impl std::error::Error for MetadataError {}

/// Whether `key` is a valid metadata key.
pub fn valid_key(key: &[u8]) -> bool {
    (1..=MAX_KEY_LEN).contains(&key.len())
        && key
            .iter()
            .all(|&b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.'))
}

/// A request's metadata: checked entries, borrowed from the frame (the bytes after `meta_len`).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Metadata<'a> {
    raw: &'a [u8],
}

impl fmt::Debug for Metadata<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(v).into_owned())),
            )
            .finish()
    }
}

impl<'a> Metadata<'a> {
    /// No metadata.
    pub const EMPTY: Metadata<'static> = Metadata { raw: &[] };

    /// Checks encoded entries (what follows `meta_len`).
    pub fn from_entries(raw: &'a [u8]) -> Result<Metadata<'a>, &'static str> {
        if raw.len() > MAX_META_LEN {
            return Err("metadata longer than 4096 bytes");
        }
        let mut at = 0;
        let mut n = 0;
        while at < raw.len() {
            n += 1;
            if n > MAX_ENTRIES {
                return Err("more than 16 metadata entries");
            }
            let klen = raw[at] as usize;
            let key = raw
                .get(at + 1..at + 1 + klen)
                .ok_or("metadata key runs past the block")?;
            if !valid_key(key) {
                return Err("metadata key not 1..=64 bytes of [a-z0-9._-]");
            }
            at += 1 + klen;
            let vlen =
                raw.get(at..at + 2)
                    .map(BigEndian::read_u16)
                    .ok_or("metadata value length runs past the block")? as usize;
            at += 2;
            if raw.len() - at < vlen {
                return Err("metadata value runs past the block");
            }
            at += vlen;
        }
        Ok(Metadata { raw })
    }

    /// The encoded entries (what follows `meta_len`).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The entries in wire order.
    pub fn iter(&self) -> Iter<'a> {
        Iter { raw: self.raw }
    }

    /// The value of the first entry named `key`.
    pub fn get(&self, key: &str) -> Option<&'a [u8]> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The value of `key` as UTF-8 text, if it is.
    pub fn get_str(&self, key: &str) -> Option<&'a str> {
        self.get(key).and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// The entries of a [`Metadata`].
#[derive(Clone, Debug)]
pub struct Iter<'a> {
    raw: &'a [u8],
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<(&'a str, &'a [u8])> {
        // The block was checked when the Metadata was made: these reads stay in bounds.
        let (&klen, rest) = self.raw.split_first()?;
        let (key, rest) = rest.split_at_checked(klen as usize)?;
        let (vlen, rest) = rest.split_at_checked(2)?;
        let (value, rest) = rest.split_at_checked(BigEndian::read_u16(vlen) as usize)?;
        self.raw = rest;
        Some((std::str::from_utf8(key).ok()?, value))
    }
}

/// Metadata a caller builds: owned entries, checked as they are added.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MetadataBuf {
    raw: Vec<u8>,
    entries: usize,
}

impl fmt::Debug for MetadataBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.as_metadata(), f)
    }
}

impl MetadataBuf {
    /// No entries.
    pub fn new() -> MetadataBuf {
        MetadataBuf::default()
    }

    /// Adds an entry, keeping the block within its limits.
    pub fn insert(&mut self, key: &str, value: &[u8]) -> Result<(), MetadataError> {
        if !valid_key(key.as_bytes()) {
            return Err(MetadataError::BadKey {
                key: key.to_owned(),
            });
        }
        if self.entries >= MAX_ENTRIES {
            return Err(MetadataError::TooManyEntries { max: MAX_ENTRIES });
        }
        let len = self.raw.len() + 1 + key.len() + 2 + value.len();
        if len > MAX_META_LEN {
            return Err(MetadataError::TooLarge {
                len,
                max: MAX_META_LEN,
            });
        }
        self.raw.push(key.len() as u8);
        self.raw.extend_from_slice(key.as_bytes());
        self.raw
            .extend_from_slice(&(value.len() as u16).to_be_bytes());
        self.raw.extend_from_slice(value);
        self.entries += 1;
        Ok(())
    }

    /// The entries, borrowed.
    pub fn as_metadata(&self) -> Metadata<'_> {
        Metadata { raw: &self.raw }
    }

    /// Copies checked entries.
    pub fn from_metadata(m: Metadata<'_>) -> MetadataBuf {
        MetadataBuf {
            raw: m.raw.to_vec(),
            entries: m.iter().count(),
        }
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
}
