//! Fuzz target `node_table`: the logic lives in `fuzz/harness/node_table.rs`, which `tests/fuzz_corpus.rs`
//! also runs on every committed corpus and regression input.
#![no_main]

#[path = "../harness/node_table.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
