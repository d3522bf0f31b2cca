//! Fuzz target `client_conn`: the logic lives in `fuzz/harness/client_conn.rs`, which `tests/fuzz_corpus.rs`
//! also runs on every committed corpus and regression input.
#![no_main]

#[path = "../harness/client_conn.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
