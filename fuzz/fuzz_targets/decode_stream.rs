//! Fuzz target `decode_stream`: the logic lives in `fuzz/harness/decode_stream.rs`, which `tests/fuzz_corpus.rs`
//! also runs on every committed corpus and regression input.
#![no_main]

#[path = "../harness/decode_stream.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
