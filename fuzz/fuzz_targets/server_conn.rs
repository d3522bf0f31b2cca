//! Fuzz target `server_conn`: the logic lives in `fuzz/harness/server_conn.rs`, which `tests/fuzz_corpus.rs`
//! also runs on every committed corpus and regression input.
#![no_main]

#[path = "../harness/server_conn.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
