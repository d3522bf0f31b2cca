//! How a `CallSet`'s requests reach the wire: a round's requests go out together, one `send`
//! per connection, so the node is woken once per round. A round no longer than a write batch
//! does not send its first request alone when the connection is idle (that woke the node twice
//! per round, and cost fan-in — 4 threads × 16 calls in flight — a fifth of its calls/s).
//!
//! What the node receives is counted in TCP data segments (`TCP_INFO`'s
//! `tcpi_data_segs_in` on the node's socket): on loopback with `TCP_NODELAY` each `send` of a
//! few hundred bytes is one segment. (`TCP_INFO` is Linux's.)
#![cfg(target_os = "linux")]

#[path = "support/cluster.rs"]
mod cluster;

use std::io::{self, Write};
use std::os::fd::AsRawFd;

use cluster::{RawServer, WAIT, client};
use gracerpc::client::{CallOptions, CallSet};
use gracerpc::proto::frame::Response;
use gracerpc::proto::{Frame, Status};

/// Calls in flight: one round's worth, below the set's write batch (32).
const DEPTH: usize = 16;
const ROUNDS: usize = 40;

/// Data segments received on `s` so far.
fn data_segments_in(s: &std::net::TcpStream) -> io::Result<u32> {
    // SAFETY: `tcp_info` is plain old data; the kernel fills at most `len` bytes of it.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: a valid socket, and a buffer of `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(info.tcpi_data_segs_in)
}

#[test]
fn a_rounds_requests_reach_the_node_in_one_segment() {
    let (tx, rx) = crossbeam_channel::bounded::<u32>(1);
    // The node reads a whole round, then answers it in one write: the set reads the answers
    // in one go and polls its futures in one round, each pushing the next call.
    let raw = RawServer::first_ready(100, move |c| {
        let before = data_segments_in(&c.stream)?;
        for _ in 0..ROUNDS {
            let mut out = Vec::new();
            for _ in 0..DEPTH {
                let (id, _, body, _) = c.next_request()?;
                let answer = Response {
                    id,
                    status: Status::OK,
                    body: &body,
                };
                Frame::Response(answer).encode(&mut out);
            }
            c.stream.write_all(&out)?;
        }
        let segments = data_segments_in(&c.stream)? - before;
        let _ = tx.send(segments);
        // Until the caller closes.
        while c.next().is_ok() {}
        Ok(())
    });
    let client = client(&[raw.addr], |b| b);
    assert!(
        client.wait_ready(raw.addr, WAIT),
        "the raw node never READY"
    );

    let opts = CallOptions::new().deadline(WAIT);
    let mut set = CallSet::with_capacity(DEPTH);
    let mut started = 0;
    while started < DEPTH {
        assert!(set.push(client.call_ref("echo", b"x", &opts)).is_ok());
        started += 1;
    }
    let mut ended = 0;
    while let Some(r) = set.next_timeout(WAIT) {
        r.expect("every call is answered");
        ended += 1;
        if started < ROUNDS * DEPTH {
            assert!(set.push(client.call_ref("echo", b"x", &opts)).is_ok());
            started += 1;
        }
    }
    assert_eq!(ended, ROUNDS * DEPTH, "a call never ended");

    let segments = rx
        .recv_timeout(WAIT)
        .expect("the raw node never counted its segments");
    // One per round; a little slack for a round split by a late poll. A first request
    // written alone would make it two per round.
    assert!(
        segments as usize <= ROUNDS + ROUNDS / 4,
        "{ROUNDS} rounds of {DEPTH} requests reached the node in {segments} segments: a round's \
         requests were not written together"
    );
}
