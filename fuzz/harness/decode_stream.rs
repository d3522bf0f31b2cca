//! The `decode_stream` target: a byte stream decoded whole and decoded as it arrives in pieces
//! (split where the input says) must yield the same frames and the same error.
//!
//! Shared by `fuzz/fuzz_targets/decode_stream.rs` and `tests/fuzz_corpus.rs`.

use gracerpc::proto::{DecodeError, InBuf, decode};

/// The receiver's maximum body length the target decodes with (small, so that both the
/// oversize check and whole frames are reached).
pub const MAX_BODY: u32 = 4096;

/// What decoding a stream gave: the bytes of each frame, then how it stopped.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The bytes each frame was decoded from, in order.
    pub frames: Vec<Vec<u8>>,
    /// The error that stopped decoding, if one did.
    pub error: Option<DecodeError>,
    /// Bytes left over (part of a frame) when no error stopped decoding.
    pub rest: usize,
}

/// The first byte says how many of the following bytes choose read sizes (up to 16); the rest
/// is the stream.
pub fn run(data: &[u8]) {
    let Some((&n, data)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 17).min(data.len());
    let (sizes, stream) = data.split_at(n);
    let whole = decode_whole(stream);
    let pieces = decode_pieces(stream, sizes);
    assert_eq!(whole, pieces, "stream split with read sizes {sizes:?}");
}

/// Decodes `stream` as one buffer.
pub fn decode_whole(stream: &[u8]) -> Decoded {
    let mut frames = Vec::new();
    let mut at = 0;
    loop {
        match decode(&stream[at..], MAX_BODY) {
            Ok(Some((frame, used))) => {
                // Decoding borrows: the frame's parts point into the buffer.
                let _ = frame.kind();
                frames.push(stream[at..at + used].to_vec());
                at += used;
            }
            Ok(None) => {
                return Decoded {
                    frames,
                    error: None,
                    rest: stream.len() - at,
                };
            }
            Err(e) => {
                return Decoded {
                    frames,
                    error: Some(e),
                    rest: 0,
                };
            }
        }
    }
}

/// Decodes `stream` fed piecewise into an [`InBuf`], read sizes cycling through `sizes`
/// (a size of 0 reads 1 byte), decoding whatever frames are complete after each read.
pub fn decode_pieces(stream: &[u8], sizes: &[u8]) -> Decoded {
    let mut buf = InBuf::new();
    let mut frames = Vec::new();
    let mut at = 0;
    let mut reads = 0usize;
    while at < stream.len() {
        let size = match sizes {
            [] => stream.len(),
            _ => usize::from(sizes[reads % sizes.len()]).max(1),
        };
        let chunk = &stream[at..(at + size).min(stream.len())];
        at += chunk.len();
        // Alternate between the two ways a driver fills the buffer.
        if reads.is_multiple_of(2) {
            buf.extend(chunk);
        } else {
            let room = buf.spare(chunk.len(), usize::MAX);
            assert!(room.len() >= chunk.len(), "spare gave too little room");
            room[..chunk.len()].copy_from_slice(chunk);
            buf.filled(chunk.len());
        }
        reads += 1;
        loop {
            match decode(buf.data(), MAX_BODY) {
                Ok(Some((_, used))) => {
                    frames.push(buf.data()[..used].to_vec());
                    buf.consume(used);
                }
                Ok(None) => break,
                Err(e) => {
                    return Decoded {
                        frames,
                        error: Some(e),
                        rest: 0,
                    };
                }
            }
        }
        buf.shrink_if_empty(1024);
    }
    Decoded {
        frames,
        error: None,
        rest: buf.data().len(),
    }
}
