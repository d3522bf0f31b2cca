//! `accept()` failing for want of file descriptors (EMFILE) does not strand the connections
//! left in the backlog: the listener is edge-triggered, so without a retry they would wait for
//! the next arrival (issue 11, finding 8).
//!
//! A test binary of its own: it lowers RLIMIT_NOFILE for the whole process.

#[path = "support/peer.rs"]
mod peer;

use std::fs::File;
use std::time::Duration;

use gracerpc::server::{Request, Server};
use peer::{OwnedFrame, Peer, frames};

fn set_nofile(soft: libc::rlim_t) -> libc::rlimit {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on valid pointers to initialized structs.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut old), 0);
        let new = libc::rlimit {
            rlim_cur: soft,
            rlim_max: old.rlim_max,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &new), 0, "setrlimit");
    }
    old
}

#[test]
fn a_connection_left_in_the_backlog_by_emfile_is_accepted_once_descriptors_free_up() {
    let server = Server::builder()
        .workers(1)
        .inline_handler("echo", |r: &Request<'_>| Ok(r.body.to_vec()))
        .spawn()
        .expect("spawn");
    let addr = server.local_addr();

    // Use up every descriptor but one, which the caller's socket takes: the server's accept
    // then fails with EMFILE.
    let old = set_nofile(256);
    let mut fillers = Vec::new();
    while let Ok(f) = File::open("/dev/null") {
        fillers.push(f);
        assert!(fillers.len() < 100_000, "RLIMIT_NOFILE had no effect");
    }
    fillers.pop();
    let mut p = Peer::connect(addr).expect("connect (the kernel completes it from the backlog)");
    // The accept has failed by now (give the loop a moment to see the connection).
    std::thread::sleep(Duration::from_millis(200));
    drop(fillers);
    set_nofile(old.rlim_cur);

    // Nothing else arrives at the listener: only a retry can accept this connection.
    p.send_ok(&frames::hello(), "HELLO");
    match p.next_frame(Duration::from_secs(3)) {
        Ok(OwnedFrame::Hello { .. }) => {}
        other => panic!(
            "the server never accepted a connection left in its backlog by EMFILE: {other:?}"
        ),
    }
    drop(p);
    server.shutdown();
    let _ = server.wait();
}
