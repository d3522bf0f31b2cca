//! The `decode_frame` target: decode one frame, re-encode it, and check the bytes.
//!
//! Shared by `fuzz/fuzz_targets/decode_frame.rs` and `tests/fuzz_corpus.rs`.

use gracerpc::proto::{Frame, HEADER_LEN, Kind, decode};

/// The receiver's maximum body length the target decodes with.
pub const MAX_BODY: u32 = 64 * 1024;

/// Decodes the first frame of `data`; a frame must re-encode to its canonical bytes.
///
/// The canonical bytes are the input's, except where the protocol lets a receiver accept more
/// than a sender writes: a HELLO body longer than 16 bytes (the extra is ignored) and an ERROR
/// message longer than 256 bytes (a sender cuts it).
pub fn run(data: &[u8]) {
    let (frame, used) = match decode(data, MAX_BODY) {
        Ok(Some(found)) => found,
        Ok(None) => {
            // Need more bytes: the input is a proper prefix of a frame, so it is short.
            assert!(data.len() < HEADER_LEN + MAX_BODY as usize);
            return;
        }
        Err(e) => {
            // Every decode error has a code and a message.
            let _ = (e.code(), e.to_string());
            return;
        }
    };
    assert!((HEADER_LEN..=data.len()).contains(&used));
    let input = &data[..used];
    let mut out = Vec::new();
    frame.encode(&mut out);
    assert_eq!(out, canonical(&frame, input), "re-encoding {frame:?}");
    // The re-encoded bytes decode, using all of them, to the same frame (for an ERROR whose
    // message was cut, to the frame with the cut message), which encodes to the same bytes.
    let (again, used_again) = decode(&out, MAX_BODY)
        .expect("re-encoded frame decodes")
        .expect("re-encoded frame is whole");
    assert_eq!(used_again, out.len());
    if out.len() == used {
        assert_eq!(again, frame);
    }
    let mut out_again = Vec::new();
    again.encode(&mut out_again);
    assert_eq!(out_again, out);
    // One byte less is never an error: the header is the same, only the body is short.
    assert_eq!(decode(&input[..used - 1], MAX_BODY), Ok(None));
}

/// The bytes a sender writes for the frame decoded from `input`.
fn canonical(frame: &Frame<'_>, input: &[u8]) -> Vec<u8> {
    let keep = match frame.kind() {
        Kind::HELLO => 16,
        Kind::ERROR => 2 + gracerpc::proto::frame::MAX_MESSAGE,
        _ => return input.to_vec(),
    };
    let body = &input[HEADER_LEN..];
    let body = &body[..body.len().min(keep)];
    let mut out = input[..HEADER_LEN].to_vec();
    let len = u32::try_from(body.len()).expect("short body");
    out[4..8].copy_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    out
}
