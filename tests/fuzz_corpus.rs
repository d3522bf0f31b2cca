//! Replays every committed fuzz corpus and regression input through the same function the fuzz
//! target calls, so `cargo test` guards them without cargo-fuzz (see README, "Fuzzing").

#[path = "../fuzz/harness/client_conn.rs"]
mod client_conn;
#[path = "../fuzz/harness/decode_frame.rs"]
mod decode_frame;
#[path = "../fuzz/harness/decode_stream.rs"]
mod decode_stream;
#[path = "../fuzz/harness/node_table.rs"]
mod node_table;
#[path = "../fuzz/harness/server_conn.rs"]
mod server_conn;

use std::fs;
use std::path::Path;

/// Runs `f` on every file in `fuzz/corpus/<target>` and `fuzz/regressions/<target>`; returns
/// how many there were.
fn replay(target: &str, f: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        let mut paths: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for path in paths {
            let data = fs::read(&path).unwrap();
            let result = std::panic::catch_unwind(|| f(&data));
            assert!(result.is_ok(), "{} fails", path.display());
            n += 1;
        }
    }
    n
}

#[test]
fn decode_frame_corpus() {
    assert!(replay("decode_frame", decode_frame::run) > 0, "no corpus");
}

#[test]
fn decode_stream_corpus() {
    assert!(replay("decode_stream", decode_stream::run) > 0, "no corpus");
}

#[test]
fn server_conn_corpus() {
    assert!(replay("server_conn", server_conn::run) > 0, "no corpus");
}

#[test]
fn client_conn_corpus() {
    assert!(replay("client_conn", client_conn::run) > 0, "no corpus");
}

#[test]
fn node_table_corpus() {
    assert!(replay("node_table", node_table::run) > 0, "no corpus");
}
