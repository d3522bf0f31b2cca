//! Workers write their answers to plaintext connections themselves (`src/server/wire.rs`), with
//! no hand-off to the event loop. What must hold all the same:
//! * a write the socket takes only in part leaves the rest for the loop, which writes it before
//!   anything else: answers reach a caller that reads late whole, none interleaved with another;
//! * the loop counts those answers off without being woken for them, with no further traffic;
//! * a caller that resets while workers still owe it answers harms nobody: what they write
//!   later goes nowhere — not to the connection that took its descriptor;
//! * a drain after them ends clean.

#[path = "support/peer.rs"]
mod peer;
#[path = "support/prom.rs"]
mod prom;

use std::os::fd::AsRawFd;

use std::time::Duration;

use gracerpc::proto::Status;
use gracerpc::server::{Request, Server};
use peer::{Executions, Gate, OwnedFrame, QUICK, connect_ready, wait_until};

/// Bytes of each answer: together far more than the socket buffers hold.
const ANSWER: usize = 128 * 1024;
const CALLS: u64 = 64;

#[test]
fn answers_a_caller_reads_late_arrive_whole_though_the_socket_took_them_in_parts() {
    let runs = Executions::default();
    let seen = runs.clone();
    let server = Server::builder()
        .workers(2)
        .handler("big", move |r: &Request<'_>| {
            seen.record(r.id);
            // Every byte names its request: a frame cut into or mixed with another shows.
            Ok(vec![r.id as u8; ANSWER])
        })
        .spawn()
        .expect("spawn");
    let mut caller = connect_ready(server.local_addr());
    // A small receive buffer: the server's writes fill the socket early.
    shrink_receive_buffer(&caller.try_clone_stream(), 16 * 1024);
    for id in 1..=CALLS {
        caller.send_request(id, "big", b"");
    }
    // Every answer is produced (and written, queued or left in part) before a byte is read.
    wait_until(QUICK, "every handler to run", || {
        runs.total() == CALLS as usize
    });
    assert!(
        server.in_flight() > 0,
        "answers of {} bytes cannot all be written to a caller that reads nothing",
        CALLS as usize * ANSWER
    );
    let ids: Vec<u64> = (1..=CALLS).collect();
    let got = caller.collect_answers(&ids, QUICK * 4);
    for id in ids {
        match &got[&id] {
            OwnedFrame::Response { status, body, .. } => {
                assert_eq!(*status, Status::OK, "id {id}");
                assert_eq!(body.len(), ANSWER, "id {id}: answer cut");
                assert!(
                    body.iter().all(|&b| b == id as u8),
                    "id {id}: answer mixed with another"
                );
            }
            other => panic!("id {id}: {other:?}"),
        }
    }
    wait_until(QUICK, "every answer counted off", || {
        server.in_flight() == 0
    });
    let report = peer::shutdown_clean(server, &mut caller, "the caller's close");
    assert_eq!(report.abandoned, 0, "{report:?}");
}

#[test]
fn an_answer_a_worker_wrote_is_counted_off_with_no_further_traffic() {
    let server = Server::builder()
        .workers(1)
        .metrics()
        .handler("echo", |r: &Request<'_>| Ok(r.body.to_vec()))
        .spawn()
        .expect("spawn");
    let mut caller = connect_ready(server.local_addr());
    for id in 1..=3 {
        caller.send_request(id, "echo", b"once");
        let got = caller.collect_answers(&[id], QUICK);
        assert!(matches!(got[&id], OwnedFrame::Response { .. }), "{got:?}");
        // Counted and timed before the answer went out, as the loop does with its own.
        let text = prom::scrape(&server);
        for line in [
            format!("gracerpc_requests_completed_total{{status=\"ok\"}} {id}"),
            format!("gracerpc_request_duration_seconds_count{{method=\"echo\"}} {id}"),
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        // Nothing more arrives: the loop must come to count the answer off on its own.
        wait_until(QUICK, "the answer counted off", || server.in_flight() == 0);
    }
    peer::shutdown_clean(server, &mut caller, "the caller's close");
}

#[test]
fn a_caller_reset_mid_answers_harms_no_other_connection_and_its_late_answers_go_nowhere() {
    let gate = Gate::new();
    let runs = Executions::default();
    let seen = runs.clone();
    let server = Server::builder()
        .workers(4)
        .handler("hold", gate.handler())
        .handler("big", move |r: &Request<'_>| {
            seen.record(r.id);
            Ok(vec![r.id as u8; ANSWER])
        })
        .spawn()
        .expect("spawn");
    let addr = server.local_addr();
    let held = |c: u8| vec![c; ANSWER];

    // A: answers it does not read fill its socket (tails and queued output), and two more are
    // still being computed when it resets.
    let mut a = connect_ready(addr);
    shrink_receive_buffer(&a.try_clone_stream(), 16 * 1024);
    for id in 1..=32 {
        a.send_request(id, "big", b"");
    }
    a.send_request(33, "hold", &held(b'a'));
    a.send_request(34, "hold", &held(b'b'));
    wait_until(QUICK, "A's big answers to be produced", || {
        runs.total() == 32
    });
    gate.wait_started(&held(b'a'), QUICK);
    gate.wait_started(&held(b'b'), QUICK);
    a.abort_with_reset(QUICK);
    wait_until(QUICK, "the server to drop A", || server.connections() == 0);

    // B: most likely on A's descriptor, with the same ids in flight.
    let mut b = connect_ready(addr);
    b.send_request(33, "hold", &held(b'x'));
    b.send_request(34, "hold", &held(b'y'));
    gate.wait_started(&held(b'x'), QUICK);
    gate.wait_started(&held(b'y'), QUICK);

    // A's last answers are written by their workers now: into nothing.
    gate.release(&held(b'a'));
    gate.release(&held(b'b'));
    gate.wait_finished(&held(b'a'), QUICK);
    gate.wait_finished(&held(b'b'), QUICK);
    wait_until(QUICK, "A's answers counted off", || server.in_flight() == 2);
    b.expect_silence(
        Duration::from_millis(200),
        "B's requests are still held: A's answers must go nowhere",
    );

    gate.release(&held(b'x'));
    gate.release(&held(b'y'));
    let got = b.collect_answers(&[33, 34], QUICK);
    for (id, c) in [(33, b'x'), (34, b'y')] {
        match &got[&id] {
            OwnedFrame::Response { status, body, .. } => {
                assert_eq!(*status, Status::OK, "id {id}");
                assert!(
                    *body == held(c),
                    "id {id}: not B's own answer, or not whole"
                );
            }
            other => panic!("id {id}: {other:?}"),
        }
    }
    b.send_request(35, "big", b"");
    let got = b.collect_answers(&[35], QUICK);
    assert!(
        matches!(&got[&35], OwnedFrame::Response { body, .. } if body.len() == ANSWER),
        "{:?}",
        got[&35].answer_id()
    );
    wait_until(QUICK, "every request counted off", || {
        server.in_flight() == 0
    });
    peer::shutdown_clean(server, &mut b, "B's close");
}

fn shrink_receive_buffer(stream: &std::net::TcpStream, bytes: libc::c_int) {
    // SAFETY: a valid socket and a c_int option value of the size given.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw const bytes).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
}
