//! Back-pressure on one connection: the server stops reading a peer's requests while more than
//! `max_output_per_connection` bytes of answers wait for it, and reads again once they drain —
//! also when they drain in the very write that follows the resumed read (no event comes then:
//! the requests are in the socket already, and the write never blocked).
//!
//! A peer pipelines many requests from one thread and reads every answer as fast as it can on
//! another, with a small output limit: the server pauses and resumes reading hundreds of times.
//! Every answer must come, in order, with no stall.

#[path = "support/peer.rs"]
mod peer;

use std::io::Write;
use std::time::Duration;

use gracerpc::proto::Status;
use gracerpc::server::{Request, Server};
use peer::{OwnedFrame, connect_ready, frames};

const REQUESTS: u64 = 20_000;
/// The longest the reader waits for the next answer: far above any scheduling delay on a loaded
/// machine, far below the stall it guards against (which never ends by itself).
const NEXT_ANSWER: Duration = Duration::from_secs(10);

#[test]
fn a_peer_that_reads_as_fast_as_it_writes_is_paused_and_resumed_without_a_stall() {
    let server = Server::builder()
        .inline_handler("echo", |r: &Request<'_>| Ok(r.body.to_vec()))
        .max_output_per_connection(16 * 1024)
        .spawn()
        .expect("server");
    let mut p = connect_ready(server.local_addr());
    let mut w = p.try_clone_stream();
    let body = vec![b'x'; 1000];
    let writer = std::thread::spawn(move || {
        // Batches of 64 requests per write, blocking: the server's pauses hold the writer too.
        let mut batch = Vec::new();
        for first in (1..=REQUESTS).step_by(64) {
            batch.clear();
            for id in first..(first + 64).min(REQUESTS + 1) {
                batch.extend_from_slice(&frames::request(id, "echo", &body));
            }
            w.write_all(&batch).expect("write");
        }
    });
    for id in 1..=REQUESTS {
        match p.next_frame(NEXT_ANSWER) {
            Ok(OwnedFrame::Response {
                id: got,
                status: Status::OK,
                body: b,
            }) if got == id && b.len() == 1000 => {}
            other => panic!(
                "answer {id} of {REQUESTS} expected in order, got {other:?} (a stall: reading \
                 was never resumed)"
            ),
        }
    }
    writer.join().expect("writer");
}
